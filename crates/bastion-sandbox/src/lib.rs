//! The only place in the workspace that starts processes.
//!
//! Every other crate is denied `Command::new` by clippy, so every child the gateway
//! runs passes through [`spawn`], which enforces the environment contract:
//! - the child gets exactly the variables listed in its [`SpawnSpec`]; nothing is
//!   inherited from the gateway unless `dangerous_inherit_env` is set, so gateway
//!   secrets (signing keys, IdP credentials, other upstreams' tokens) never reach it;
//! - the program is executed directly (no shell), so arguments are passed literally;
//! - stdin/stdout are pipes for the MCP stdio transport, stderr is piped so the
//!   caller can capture it with a bound;
//! - the child is killed when its handle is dropped and put in its own process
//!   group, so a gateway restart does not leave orphans holding the terminal.
//!
//! Namespaces, landlock, seccomp and rlimits arrive with the sandbox issue and are
//! applied here, so callers do not change.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::process::{Child, Command};

/// What to run.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// Program path or name (looked up in the child's `PATH` when not absolute).
    pub program: OsString,
    /// Arguments, passed literally.
    pub args: Vec<OsString>,
    /// Working directory; the gateway's when `None`.
    pub cwd: Option<PathBuf>,
    /// The complete environment of the child (values already resolved).
    pub env: Vec<(OsString, OsString)>,
    /// Inherit the gateway's environment as well (unsafe: leaks its secrets).
    pub dangerous_inherit_env: bool,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The OS refused to start it (not found, permission denied, …).
    #[error("cannot start {program:?}: {source}")]
    Io {
        /// The program that failed.
        program: OsString,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Starts `spec` with piped stdio.
pub fn spawn(spec: &SpawnSpec) -> Result<Child, SpawnError> {
    let mut cmd = build(spec);
    cmd.spawn().map_err(|source| SpawnError::Io {
        program: spec.program.clone(),
        source,
    })
}

#[expect(
    clippy::disallowed_methods,
    reason = "this crate is the one place allowed to construct commands"
)]
fn build(spec: &SpawnSpec) -> Command {
    let program = resolve_program(spec);
    let mut cmd = Command::new(program);
    cmd.args(&spec.args);
    if !spec.dangerous_inherit_env {
        cmd.env_clear();
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    cmd
}

/// Resolves a bare program name against the child's own `PATH` (not the
/// gateway's), so clearing the environment does not change which binary runs
/// compared with what the configuration says.
fn resolve_program(spec: &SpawnSpec) -> OsString {
    let prog = std::path::Path::new(&spec.program);
    if prog.components().count() != 1 {
        return spec.program.clone();
    }
    let path = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| {
            if spec.dangerous_inherit_env {
                std::env::var_os("PATH")
            } else {
                None
            }
        })
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(prog);
        if candidate.is_file() {
            return candidate.into_os_string();
        }
    }
    spec.program.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn run_env(spec: SpawnSpec) -> String {
        let mut child = spawn(&spec).expect("spawn");
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .await
            .expect("read");
        let _ = child.wait().await;
        out
    }

    #[tokio::test]
    async fn child_gets_only_listed_env() {
        // The test process has PATH (and more) set; none of it may reach the child.
        assert!(std::env::var_os("PATH").is_some());
        let out = run_env(SpawnSpec {
            program: "env".into(),
            args: vec![],
            cwd: None,
            env: vec![("ONLY_THIS".into(), "1".into())],
            dangerous_inherit_env: false,
        })
        .await;
        assert_eq!(out.trim(), "ONLY_THIS=1");
    }

    #[tokio::test]
    async fn args_are_literal() {
        let out = run_env(SpawnSpec {
            program: "echo".into(),
            args: vec!["; touch pwned".into(), "$(id)".into()],
            cwd: None,
            env: vec![],
            dangerous_inherit_env: false,
        })
        .await;
        assert_eq!(out.trim(), "; touch pwned $(id)");
    }

    #[tokio::test]
    async fn missing_program_is_an_error() {
        let err = spawn(&SpawnSpec {
            program: "/nonexistent/bastion-test".into(),
            args: vec![],
            cwd: None,
            env: vec![],
            dangerous_inherit_env: false,
        });
        assert!(err.is_err());
    }
}

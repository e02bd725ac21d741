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
//! - the child is put in its own process group, and [`kill_tree`] ends the whole
//!   group: a server started through a wrapper (`npx`, `sh -c`, `uv run`) leaves
//!   no grandchild behind when its session ends; the handle's drop kills the
//!   child itself as a last resort.
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

/// Ends `child` and everything it started that stayed in its process group
/// (SIGKILL to the group), then the child itself. Call before reaping: while
/// the child is unreaped its pid cannot be reused, so the signal cannot reach
/// an unrelated group. Idempotent; a group already gone is not an error.
pub fn kill_tree(child: &mut Child) {
    if let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        // ESRCH: the group is already empty.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.start_kill();
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

    /// The processes whose process group is `pgid` (from /proc).
    fn group_members(pgid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp ...: comm may hold spaces and ')'.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            // A zombie has exited; only live members count.
            if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
                && fields.first() != Some(&"Z")
            {
                out.push(pid);
            }
        }
        out
    }

    #[tokio::test]
    async fn kill_tree_ends_every_process_the_child_started() {
        use tokio::io::AsyncBufReadExt;
        // A wrapper that starts two grandchildren, as `npx` or `sh -c` do.
        let mut child = spawn(&SpawnSpec {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "sleep 300 & sleep 300 & echo started; wait".into(),
            ],
            cwd: None,
            env: vec![],
            dangerous_inherit_env: false,
        })
        .expect("spawn");
        let pgid = child.id().expect("pid");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        assert_eq!(
            lines.next_line().await.expect("read").as_deref(),
            Some("started")
        );
        assert!(group_members(pgid).len() >= 3, "sh and two sleeps run");

        kill_tree(&mut child);
        let _ = child.wait().await;
        let mut left = group_members(pgid);
        for _ in 0..100 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            left = group_members(pgid);
        }
        assert!(left.is_empty(), "left behind: {left:?}");
        // Again, on a reaped child: nothing to do, no error.
        kill_tree(&mut child);
    }
}

//! Secrets and secret references.
//!
//! A [`Secret`] cannot be printed: `Debug` is redacted and there is no `Display` or
//! `Serialize`; the value is reached only through [`Secret::expose_secret`]. A
//! [`SecretRef`] is how configuration names a secret without containing it
//! (`env:NAME` or `file:/path`); it is resolved once at start-up so a missing
//! secret stops the gateway instead of failing a request later.

use std::path::PathBuf;

pub use bastion_auth::Secret;

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the gateway process.
    Env(String),
    /// The contents of a file (trailing newline removed).
    File(PathBuf),
}

/// A reference that could not be parsed or resolved. Never contains the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Not of the form `env:NAME` or `file:/path`.
    #[error("expected a secret reference `env:NAME` or `file:/path`, not an inline value")]
    NotAReference,
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The file could not be read.
    #[error("cannot read secret file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
}

impl SecretRef {
    /// Parses `env:NAME` or `file:/path`.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        if let Some(name) = s.strip_prefix("env:") {
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Ok(SecretRef::Env(name.to_owned()));
            }
        } else if let Some(path) = s.strip_prefix("file:")
            && !path.is_empty()
        {
            return Ok(SecretRef::File(PathBuf::from(path)));
        }
        Err(SecretError::NotAReference)
    }

    /// Reads the secret now.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(Secret::new)
                .map_err(|_| SecretError::MissingEnv(name.clone())),
            SecretRef::File(path) => {
                check_private(path)?;
                std::fs::read_to_string(path)
                    .map(|s| Secret::new(s.trim_end_matches(['\n', '\r']).to_owned()))
                    .map_err(|e| SecretError::File {
                        path: path.display().to_string(),
                        reason: e.kind().to_string(),
                    })
            }
        }
    }
}

/// A secret file must not be readable or writable by group or others (0600):
/// anything looser means another local account may already have it.
fn check_private(path: &std::path::Path) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|e| SecretError::File {
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(SecretError::File {
            path: path.display().to_string(),
            reason: format!(
                "permissions {:o} let other accounts read it; chmod 600 it",
                meta.permissions().mode() & 0o777
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose_secret(), "hunter2");
    }

    #[test]
    fn parses_and_resolves_references() {
        assert_eq!(
            SecretRef::parse("Bearer abc"),
            Err(SecretError::NotAReference)
        );
        assert_eq!(SecretRef::parse("env:"), Err(SecretError::NotAReference));
        assert_eq!(SecretRef::parse("env:A-B"), Err(SecretError::NotAReference));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "s3cret\n").unwrap();
        let r = SecretRef::parse(&format!("file:{}", p.display())).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = r.resolve().unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(r.resolve().unwrap().expose_secret(), "s3cret");
        let missing = SecretRef::parse("env:BASTION_TEST_SURELY_UNSET_VAR").unwrap();
        assert!(matches!(missing.resolve(), Err(SecretError::MissingEnv(_))));
    }
}

//! Private key files on disk (the development issuer's key, the audit
//! checkpoint key).
//!
//! Invariants: an existing file is used only when no one but its owner can
//! read it (mode 0600 or stricter); a missing one is created with mode 0600,
//! never over a file that appeared meanwhile; errors never contain the key.

use std::io::Write as _;
use std::path::Path;

/// Reads the key text at `path`, or creates the file with `create()`'s text.
/// Returns the text and whether it was created now.
pub fn load_or_create(
    path: &Path,
    create: impl FnOnce() -> Result<String, String>,
) -> Result<(String, bool), String> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| e.kind().to_string())?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "permissions {:o} are too open (want 0600)",
                    mode & 0o777
                ));
            }
            Ok((text, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = create()?;
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| e.kind().to_string())?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| e.kind().to_string())?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| e.kind().to_string())?;
            Ok((text, true))
        }
        Err(e) => Err(e.kind().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_0600_reused_and_refused_when_readable_by_others() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("k");
        let (t, created) = load_or_create(&p, || Ok("secret".into())).unwrap();
        assert_eq!((t.as_str(), created), ("secret", true));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (t, created) = load_or_create(&p, || Err("must not create".into())).unwrap();
        assert_eq!((t.as_str(), created), ("secret", false));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&p, || Ok(String::new())).unwrap_err();
        assert!(e.contains("too open") && !e.contains("secret"), "{e}");
    }
}

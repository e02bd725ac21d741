//! [`Secret`]: a value that must never be logged, audited or echoed.
//!
//! `Debug` is redacted and there is no `Display` or `Serialize`; the value is
//! reached only through [`Secret::expose_secret`], which marks the one place that
//! must send it.

use std::fmt;

/// A value that must never be logged, audited or echoed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value, for the one place that must send it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
        assert_eq!(s.expose_secret(), "hunter2");
    }
}

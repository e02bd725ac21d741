//! HTTP header names of the Streamable HTTP transport and the mirrored request
//! metadata of 2026-07-28 (SEP-2243).
//!
//! The body is the source of truth; mirrored headers are hints for intermediaries.
//! [`expected_name`] says which body field `Mcp-Name` must equal, and
//! [`decode_value`] undoes the `=?base64?…?=` encoding before any comparison.

use base64::Engine as _;
use serde_json::Value;

/// Session header (legacy lane only).
pub const SESSION_ID: &str = "mcp-session-id";
/// Protocol version header (both lanes).
pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// Mirrored `method` (modern lane).
pub const METHOD: &str = "mcp-method";
/// Mirrored `params.name` / `params.uri` / `params.taskId` (modern lane).
pub const NAME: &str = "mcp-name";
/// SSE resumption header (legacy lane).
pub const LAST_EVENT_ID: &str = "last-event-id";
/// Prefix of tool-parameter mirrors (`x-mcp-header`).
pub const PARAM_PREFIX: &str = "mcp-param-";

/// The body field that `Mcp-Name` mirrors for `method`, and its value, or `None`
/// when the method has no mirrored name.
pub fn expected_name<'a>(
    method: &str,
    params: Option<&'a Value>,
) -> Option<(&'static str, Option<&'a Value>)> {
    let field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    Some((field, params.and_then(|p| p.get(field))))
}

/// A header value that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderValueError {
    /// Not visible ASCII (or contains CR/LF/control characters).
    #[error("header value contains invalid characters")]
    InvalidCharacters,
    /// The `=?base64?…?=` payload is not valid base64 or not UTF-8.
    #[error("header value has an invalid base64 encoding")]
    InvalidBase64,
}

/// Decodes a mirrored header value: plain visible ASCII as is, or the
/// `=?base64?<b64>?=` sentinel form decoded to UTF-8.
pub fn decode_value(raw: &[u8]) -> Result<String, HeaderValueError> {
    if raw
        .iter()
        .any(|b| !(0x20..=0x7e).contains(b) && *b != b'\t')
    {
        return Err(HeaderValueError::InvalidCharacters);
    }
    let s = std::str::from_utf8(raw).map_err(|_| HeaderValueError::InvalidCharacters)?;
    let s = s.trim_matches([' ', '\t']);
    let lower = s.get(..9).map(str::to_ascii_lowercase);
    if lower.as_deref() == Some("=?base64?") && s.ends_with("?=") && s.len() >= 11 {
        let inner = s
            .get(9..s.len() - 2)
            .ok_or(HeaderValueError::InvalidBase64)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(inner)
            .map_err(|_| HeaderValueError::InvalidBase64)?;
        return String::from_utf8(bytes).map_err(|_| HeaderValueError::InvalidBase64);
    }
    Ok(s.to_owned())
}

/// Whether a mirrored header value equals a body value: strings compare exactly
/// (case-sensitive), integers numerically, booleans by their JSON spelling.
pub fn matches_body(header: &str, body: &Value) -> bool {
    match body {
        Value::String(s) => s == header,
        Value::Number(n) => match (n.as_i64(), header.parse::<i64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => n.to_string() == header,
        },
        Value::Bool(b) => header == if *b { "true" } else { "false" },
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_sentinel_and_rejects_controls() {
        assert_eq!(decode_value(b"tools/call").unwrap(), "tools/call");
        assert_eq!(
            decode_value(b"=?base64?w6lsw6k=?=").unwrap(),
            "\u{e9}l\u{e9}"
        );
        assert_eq!(decode_value(b"=?BASE64?aGk=?=").unwrap(), "hi");
        assert_eq!(
            decode_value(b"a\r\nb"),
            Err(HeaderValueError::InvalidCharacters)
        );
        assert_eq!(
            decode_value(b"=?base64?***?="),
            Err(HeaderValueError::InvalidBase64)
        );
    }

    #[test]
    fn compares_like_the_spec() {
        assert!(matches_body("echo", &json!("echo")));
        assert!(!matches_body("Echo", &json!("echo")));
        assert!(matches_body("42", &json!(42)));
        assert!(matches_body("042", &json!(42)));
        assert!(!matches_body("x", &json!({"a":1})));
        assert_eq!(
            expected_name("tools/call", Some(&json!({"name":"t"}))),
            Some(("name", Some(&json!("t"))))
        );
        assert_eq!(expected_name("tools/list", None), None);
    }
}

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
            .get(9..)
            .and_then(|r| r.strip_suffix("?="))
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

/// Encodes a value for a mirrored header: plain when it is visible ASCII with no
/// leading/trailing space and cannot be mistaken for the sentinel, else the
/// `=?base64?…?=` form.
pub fn encode_value(v: &str) -> String {
    let sentinel = v.len() >= 11
        && v.get(..9)
            .is_some_and(|p| p.eq_ignore_ascii_case("=?base64?"))
        && v.ends_with("?=");
    let plain = !v.is_empty()
        && v.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !v.starts_with(' ')
        && !v.ends_with(' ')
        && !sentinel;
    if plain {
        v.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
        )
    }
}

/// One `x-mcp-header` annotation of a tool's input schema: the header suffix
/// (`Mcp-Param-<name>`) and the property path it mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// Header name suffix as declared.
    pub name: String,
    /// Property path from the arguments object.
    pub path: Vec<String>,
}

/// The `x-mcp-header` annotations of an input schema, reached through
/// `properties` keys only (depth-bounded). Invalid declarations (non-token
/// names, duplicates ignoring case) make the whole tool invalid: `None`.
pub fn param_headers(schema: &Value) -> Option<Vec<ParamHeader>> {
    fn walk(
        schema: &Value,
        path: &mut Vec<String>,
        out: &mut Vec<ParamHeader>,
        depth: usize,
    ) -> bool {
        if depth > 8 {
            return true;
        }
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return true;
        };
        for (k, sub) in props {
            path.push(k.clone());
            if let Some(h) = sub.get("x-mcp-header") {
                let Some(name) = h.as_str() else { return false };
                let token = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                let ty = sub.get("type").and_then(Value::as_str);
                if !token || matches!(ty, Some("number" | "object" | "array" | "null")) {
                    return false;
                }
                if out.iter().any(|p| p.name.eq_ignore_ascii_case(name)) {
                    return false;
                }
                out.push(ParamHeader {
                    name: name.to_owned(),
                    path: path.clone(),
                });
            }
            if !walk(sub, path, out, depth.saturating_add(1)) {
                return false;
            }
            path.pop();
        }
        true
    }
    let mut out = Vec::new();
    walk(schema, &mut Vec::new(), &mut out, 0).then_some(out)
}

/// The argument a [`ParamHeader`] mirrors, as header text (before encoding):
/// strings as is, integers in decimal, booleans as `true`/`false`.
pub fn param_value(arguments: &Value, p: &ParamHeader) -> Option<String> {
    let mut v = arguments;
    for k in &p.path {
        v = v.get(k)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
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
    fn encodes_and_reads_param_headers() {
        assert_eq!(encode_value("us-west1"), "us-west1");
        assert_eq!(
            decode_value(encode_value(" lead").as_bytes()).unwrap(),
            " lead"
        );
        assert_eq!(
            decode_value(encode_value("h\u{e9}").as_bytes()).unwrap(),
            "h\u{e9}"
        );
        assert_eq!(
            decode_value(encode_value("=?base64?aGk=?=").as_bytes()).unwrap(),
            "=?base64?aGk=?="
        );
        let schema = json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "opts":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"}}}}});
        let hs = param_headers(&schema).unwrap();
        assert_eq!(hs.len(), 2);
        let args = json!({"region":"eu","opts":{"n":5}});
        assert_eq!(param_value(&args, &hs[0]).as_deref(), Some("eu"));
        assert_eq!(param_value(&args, &hs[1]).as_deref(), Some("5"));
        let dup = json!({"properties":{"a":{"x-mcp-header":"X"},"b":{"x-mcp-header":"x"}}});
        assert_eq!(param_headers(&dup), None);
        let bad = json!({"properties":{"a":{"x-mcp-header":"has space"}}});
        assert_eq!(param_headers(&bad), None);
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

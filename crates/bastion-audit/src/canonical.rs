//! Canonical JSON (RFC 8785, JCS) for the values the trail holds.
//!
//! Object members are sorted by their UTF-16 code units, there is no
//! insignificant whitespace, strings are escaped minimally (`"`, `\` and
//! control characters only) and integers are written in decimal. A record is
//! hashed as these bytes, so two implementations that follow RFC 8785 agree on
//! every hash. Audit records hold no floating-point numbers; one that does is
//! refused rather than written in a form another implementation might not
//! reproduce.

use serde_json::Value;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A non-integer number.
    #[error("audit records hold integers only (found {0})")]
    Float(String),
}

/// The canonical bytes of `v`.
pub fn to_vec(v: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write(v, &mut out)?;
    Ok(out)
}

/// Appends the canonical bytes of `v` to `out`.
pub fn write(v: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.extend_from_slice(n.to_string().as_bytes());
            } else {
                return Err(CanonicalError::Float(n.to_string()));
            }
        }
        Value::String(s) => string(s, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(x, out)?;
            }
            out.push(b']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            // RFC 8785 §3.2.3: sort by UTF-16 code units.
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                if let Some(x) = m.get(k) {
                    write(x, out)?;
                }
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc8785_shapes() {
        let v = json!({"b": [1, "x\u{1}\"\\\n"], "a": {"z": null, "é": true, "\u{10000}": false, "\u{ffff}": 0}, "n": -7});
        let s = String::from_utf8(to_vec(&v).unwrap()).unwrap();
        // U+10000 sorts before U+FFFF in UTF-16 (a surrogate pair starts 0xD800).
        assert_eq!(
            s,
            "{\"a\":{\"z\":null,\"é\":true,\"\u{10000}\":false,\"\u{ffff}\":0},\"b\":[1,\"x\\u0001\\\"\\\\\\n\"],\"n\":-7}"
        );
        assert!(to_vec(&json!({"x": 1.5})).is_err());
    }
}

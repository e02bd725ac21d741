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
    write_any(v, out, false)
}

/// The canonical bytes of any JSON value, numbers with a fraction or an
/// exponent included (RFC 8785 §3.2.2.3: the ECMAScript shortest form), for
/// documents the gateway does not author, such as tool definitions.
pub fn to_vec_any(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Cannot fail: floats are allowed here.
    let _ = write_any(v, &mut out, true);
    out
}

fn write_any(v: &Value, out: &mut Vec<u8>, floats: bool) -> Result<(), CanonicalError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.extend_from_slice(n.to_string().as_bytes());
            } else if floats && let Some(f) = n.as_f64() {
                es_number(f, out);
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
                write_any(x, out, floats)?;
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
                    write_any(x, out, floats)?;
                }
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// ECMAScript `Number.prototype.toString` of a finite double: the shortest
/// digits that round-trip (Rust's `{:e}` gives exactly those), placed as
/// ECMA-262 §6.1.6.1.20 says.
fn es_number(f: f64, out: &mut Vec<u8>) {
    if f == 0.0 || !f.is_finite() {
        out.push(b'0');
        return;
    }
    if f < 0.0 {
        out.push(b'-');
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let k = digits.len() as i64;
    // The value is 0.d1d2…dk × 10^n.
    // `{:e}` of a finite f64 has an exponent in -324..=308 and at most 17
    // digits, so none of the saturating operations below ever saturates.
    let n = exp.parse::<i64>().unwrap_or(0).saturating_add(1);
    let s = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat(n.saturating_sub(k) as usize))
    } else if 0 < n && n <= 21 {
        let (a, b) = digits.split_at(n as usize);
        format!("{a}.{b}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat(n.saturating_neg() as usize))
    } else {
        let (first, rest) = digits.split_at(1);
        let e = n.saturating_sub(1);
        let sign = if e < 0 { '-' } else { '+' };
        if rest.is_empty() {
            format!("{first}e{sign}{}", e.abs())
        } else {
            format!("{first}.{rest}e{sign}{}", e.abs())
        }
    };
    out.extend_from_slice(s.as_bytes());
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

    #[test]
    fn rfc8785_numbers() {
        // RFC 8785 Appendix B and ECMAScript corner cases.
        for (f, want) in [
            (1.5, "1.5"),
            (1.0, "1"),
            (-0.0, "0"),
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (-2.5e30, "-2.5e+30"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (333333333.3333333, "333333333.3333333"),
        ] {
            let got = String::from_utf8(to_vec_any(&json!(f))).unwrap();
            assert_eq!(got, want, "{f:e}");
        }
        assert_eq!(
            to_vec_any(&json!({"b": 2.50, "a": [1, 0.5]})),
            b"{\"a\":[1,0.5],\"b\":2.5}"
        );
    }
}

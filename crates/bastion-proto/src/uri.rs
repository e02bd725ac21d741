//! Canonical resource URIs (RFC 3986 §6.2.2, syntax-based normalization).
//!
//! The gateway routes, decides and forwards a resource by one spelling of its
//! URI, so that `file:///srv/public/../secret/key` and `file:///srv/secret/key`
//! are the same resource to routing, labels, scopes and Cedar conditions, and
//! the upstream receives exactly the URI that was decided. [`canonical`]:
//! - lower-cases the scheme and the host (not the user information);
//! - decodes percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`)
//!   and upper-cases the hex digits of every other percent-encoding;
//! - removes dot segments (RFC 3986 §5.2.4) from the path.
//!
//! It refuses (fail closed) what no normalization makes safe to route: no
//! scheme, a path that climbs above its root (`..` past the first segment),
//! an encoded path separator or NUL (`%2F`, `%5C`, `%00`: an upstream that
//! decodes them would see a different path than the one decided), control
//! characters, and malformed percent-encodings. Query and fragment are kept
//! as they are (only their percent-encodings are case-normalized).
//!
//! Invariants: the result is a fixed point (`canonical(canonical(u)) ==
//! canonical(u)`), and its path has no `.` or `..` segment.

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// No `scheme:` at the start.
    #[error("not an absolute URI (no scheme)")]
    NoScheme,
    /// `..` would climb above the path's root.
    #[error("the path climbs above its root")]
    Climbs,
    /// `%2F`, `%5C` or `%00` in the path.
    #[error("the path has an encoded separator or NUL")]
    EncodedSeparator,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadPercent,
    /// A control character (spaces and other printable characters that
    /// RFC 3986 would have encoded are kept: clients send them, and they do
    /// not change which resource a path names).
    #[error("the URI has a control character")]
    Control,
    /// Longer than [`MAX_URI`].
    #[error("the URI is longer than {MAX_URI} bytes")]
    TooLong,
}

/// Longest URI accepted.
pub const MAX_URI: usize = 8192;

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    // `to_digit(16)` accepts exactly 0-9, a-f and A-F.
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn upper_hex(n: u8) -> char {
    char::from_digit(u32::from(n), 16)
        .unwrap_or('0')
        .to_ascii_uppercase()
}

/// Normalizes percent-encodings in `s`: unreserved ones decoded, others with
/// upper-case hex digits. `path` refuses encoded separators and NUL.
fn percent(s: &str, path: bool) -> Result<String, UriError> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'%' {
            // `s` is a str and `%` is ASCII, so char boundaries line up:
            // copy the whole UTF-8 sequence starting here.
            let ch = s
                .get(i..)
                .and_then(|r| r.chars().next())
                .ok_or(UriError::BadPercent)?;
            out.push(ch);
            i = i.saturating_add(ch.len_utf8());
            continue;
        }
        let (Some(h), Some(l)) = (
            b.get(i.saturating_add(1)).copied().and_then(hex),
            b.get(i.saturating_add(2)).copied().and_then(hex),
        ) else {
            return Err(UriError::BadPercent);
        };
        // Two hex digits (each below 16): one byte.
        let v = (h << 4) | l;
        if path && matches!(v, b'/' | b'\\' | 0) {
            return Err(UriError::EncodedSeparator);
        }
        if unreserved(v) {
            out.push(char::from(v));
        } else {
            out.push('%');
            out.push(upper_hex(h));
            out.push(upper_hex(l));
        }
        i = i.saturating_add(3);
    }
    Ok(out)
}

/// Removes dot segments; `Err` when `..` climbs above the root.
fn remove_dots(path: &str) -> Result<String, UriError> {
    let (absolute, body) = match path.strip_prefix('/') {
        Some(b) => (true, b),
        None => (false, path),
    };
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = body.split('/').collect();
    let last = segs.len().saturating_sub(1);
    // A trailing `.` or `..` leaves a directory path (`a/b/..` is `a/`).
    let mut trailing_dir = false;
    for (n, seg) in segs.iter().enumerate() {
        match *seg {
            "." => trailing_dir = n == last,
            ".." => {
                if out.pop().is_none() {
                    return Err(UriError::Climbs);
                }
                trailing_dir = n == last;
            }
            s => {
                out.push(s);
                trailing_dir = false;
            }
        }
    }
    let mut p = String::with_capacity(path.len());
    if absolute {
        p.push('/');
    }
    p.push_str(&out.join("/"));
    if trailing_dir && !out.is_empty() {
        p.push('/');
    }
    Ok(p)
}

/// The canonical spelling of resource URI `uri` (see the module docs).
pub fn canonical(uri: &str) -> Result<String, UriError> {
    if uri.len() > MAX_URI {
        return Err(UriError::TooLong);
    }
    if uri.chars().any(char::is_control) {
        return Err(UriError::Control);
    }
    let (scheme, rest) = uri.split_once(':').ok_or(UriError::NoScheme)?;
    let mut sb = scheme.bytes();
    if !sb.next().is_some_and(|b| b.is_ascii_alphabetic())
        || !sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err(UriError::NoScheme);
    }
    // Fragment, then query, split off first: they are not part of the path.
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (hier, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let mut out = scheme.to_ascii_lowercase();
    out.push(':');
    let path = match hier.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            let (authority, path) = after.split_at(end);
            out.push_str("//");
            // userinfo@host:port: only the host is case-insensitive.
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            if let Some(u) = user {
                out.push_str(&percent(u, false)?);
                out.push('@');
            }
            out.push_str(&percent(hostport, false)?.to_ascii_lowercase());
            path
        }
        None => hier,
    };
    let path = percent(path, true)?;
    out.push_str(&remove_dots(&path)?);
    if let Some(q) = query {
        out.push('?');
        out.push_str(&percent(q, false)?);
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(&percent(f, false)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_digits_are_exactly_the_ascii_hex_digits() {
        for b in 0..=u8::MAX {
            let want = match b {
                b'0'..=b'9' => Some(u32::from(b) - u32::from(b'0')),
                b'a'..=b'f' => Some(u32::from(b) - u32::from(b'a') + 10),
                b'A'..=b'F' => Some(u32::from(b) - u32::from(b'A') + 10),
                _ => None,
            };
            assert_eq!(hex(b).map(u32::from), want, "byte {b:#04x}");
        }
        assert_eq!(canonical("demo://h/a%2a%7E%41").unwrap(), "demo://h/a%2A~A");
    }

    #[test]
    fn dot_segments_resolve_to_the_same_resource() {
        assert_eq!(
            canonical("file:///srv/public/../secret/key").unwrap(),
            "file:///srv/secret/key"
        );
        assert_eq!(canonical("file:///srv/./a//b").unwrap(), "file:///srv/a//b");
        assert_eq!(canonical("demo://readme").unwrap(), "demo://readme");
        assert_eq!(canonical("demo://notes/1/..").unwrap(), "demo://notes/");
        assert_eq!(canonical("urn:isbn:123").unwrap(), "urn:isbn:123");
    }

    #[test]
    fn case_and_encodings_are_normalized() {
        assert_eq!(
            canonical("FILE://EXAMPLE.com/%7Euser/%2e%2E/x%3a?q=%3a#F").unwrap(),
            "file://example.com/x%3A?q=%3A#F"
        );
        assert_eq!(
            canonical("s://User@HOST:80/p").unwrap(),
            "s://User@host:80/p"
        );
        assert_eq!(canonical("file:///caf%C3%A9").unwrap(), "file:///caf%C3%A9");
        assert_eq!(canonical("file:///café").unwrap(), "file:///café");
    }

    #[test]
    fn what_cannot_be_made_safe_is_refused() {
        assert_eq!(canonical("file:///../etc/passwd"), Err(UriError::Climbs));
        assert_eq!(
            canonical("file:///srv/%2e%2e/%2E%2E/x"),
            Err(UriError::Climbs)
        );
        assert_eq!(
            canonical("file:///srv/..%2Fx"),
            Err(UriError::EncodedSeparator)
        );
        assert_eq!(
            canonical("file:///srv/a%5Cb"),
            Err(UriError::EncodedSeparator)
        );
        assert_eq!(
            canonical("file:///srv/a%00"),
            Err(UriError::EncodedSeparator)
        );
        assert_eq!(canonical("/srv/x"), Err(UriError::NoScheme));
        assert_eq!(canonical("1x:/a"), Err(UriError::NoScheme));
        assert_eq!(canonical("file:///a%zz"), Err(UriError::BadPercent));
        assert_eq!(canonical("file:///a%4"), Err(UriError::BadPercent));
        assert_eq!(canonical("file:///a b/../c").unwrap(), "file:///c");
        assert_eq!(canonical("file:///a\nb"), Err(UriError::Control));
        assert_eq!(canonical("rel/../../x"), Err(UriError::NoScheme));
        assert_eq!(canonical("x:a/../../b"), Err(UriError::Climbs));
    }

    proptest! {
        #[test]
        fn canonical_is_a_fixed_point_without_dot_segments(
            scheme in "[a-zA-Z][a-zA-Z0-9+.-]{0,5}",
            host in "[a-zA-Z0-9.%-]{0,8}",
            segs in proptest::collection::vec(
                prop_oneof!["\\.", "\\.\\.", "%2[eE]", "%2[eE]%2[eE]", "[a-zA-Z0-9_~%-]{1,6}", ""],
                0..8),
            query in proptest::option::of("[a-z=&%0-9]{0,6}"),
        ) {
            let mut u = format!("{scheme}://{host}/{}", segs.join("/"));
            if let Some(q) = query {
                u.push('?');
                u.push_str(&q);
            }
            if let Ok(c) = canonical(&u) {
                prop_assert_eq!(canonical(&c), Ok(c.clone()));
                let path_end = c.find('?').unwrap_or(c.len());
                let path = &c[..path_end];
                let after = path.splitn(4, '/').nth(3).unwrap_or("");
                for seg in after.split('/') {
                    prop_assert!(seg != "." && seg != "..", "{} -> {}", u, c);
                }
            }
        }
    }
}

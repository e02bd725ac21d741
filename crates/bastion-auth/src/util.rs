//! Small shared helpers: time, hashing, bounded HTTP bodies, audience comparison.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// base64url without padding.
pub(crate) fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Largest metadata, JWKS, introspection or token response read.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// Reads a response body of at most [`MAX_BODY`] bytes.
pub(crate) async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|_| "body read failed".to_owned())?
    {
        if out.len().saturating_add(chunk.len()) > MAX_BODY {
            return Err(format!("response larger than {MAX_BODY} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Whether `candidate` (an `aud` value) names the canonical resource `canonical`.
///
/// Policy (RS-07, documented in docs/auth.md): the scheme and the authority
/// (host and port) compare case-insensitively, because RFC 3986 makes them
/// case-insensitive and some issuers echo the resource in upper case; everything
/// else is compared byte for byte, so `/mcp/` (trailing slash), `/mcp2`, another
/// port or a look-alike host never match. No other normalization is applied.
pub fn audience_matches(candidate: &str, canonical: &str) -> bool {
    fn split(s: &str) -> Option<(&str, &str, &str)> {
        let (scheme, rest) = s.split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        Some((scheme, authority, tail))
    }
    match (split(candidate), split(canonical)) {
        (Some((s1, a1, t1)), Some((s2, a2, t2))) => {
            s1.eq_ignore_ascii_case(s2) && a1.eq_ignore_ascii_case(a2) && t1 == t2
        }
        _ => false,
    }
}

/// Whether an http(s) URL may be fetched for discovery: https anywhere, plain
/// http only to loopback (a local test identity provider).
pub(crate) fn fetchable(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        },
        _ => false,
    }
}

/// A short, secret-free description of a transport error.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection refused or unreachable"
    } else if e.is_body() || e.is_decode() {
        "broken response"
    } else if e.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    let mut src = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({})", detail.chars().take(120).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_policy() {
        let gw = "https://gw.example.test/mcp";
        assert!(audience_matches(gw, gw));
        assert!(audience_matches("HTTPS://GW.EXAMPLE.TEST/mcp", gw));
        for bad in [
            "https://gw.example.test/mcp/",
            "https://gw.example.test/mcp2",
            "https://gw.example.test.evil/mcp",
            "http://gw.example.test/mcp",
            "https://gw.example.test:8443/mcp",
            "https://gw.example.test/MCP",
            "gw.example.test/mcp",
            "",
        ] {
            assert!(!audience_matches(bad, gw), "{bad}");
        }
    }

    #[test]
    fn only_https_or_loopback_http_is_fetchable() {
        let ok = |s: &str| fetchable(&url::Url::parse(s).unwrap());
        assert!(ok("https://idp.example/jwks"));
        assert!(ok("http://127.0.0.1:4444/jwks"));
        assert!(ok("http://[::1]:4444/jwks"));
        assert!(!ok("http://idp.example/jwks"));
        assert!(!ok("http://169.254.169.254/latest"));
        assert!(!ok("file:///etc/passwd"));
    }
}

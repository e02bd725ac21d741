//! Configuration: TOML parsed into raw structs (`deny_unknown_fields`), then
//! validated into the runtime [`Config`].
//!
//! Invariants of a validated [`Config`]:
//! - every error names the file, the key and what was expected;
//! - secrets are resolved (a missing one stops start-up) and held as [`Secret`]s;
//! - upstream names are unique and their tool prefixes cannot shadow each other;
//! - the testing auth mode (`dangerous_none`) only ever listens on loopback;
//! - every knob that weakens security is named `dangerous_*` and listed by
//!   [`Config::dangerous_settings`] so start-up can log it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bastion_proto::ProtocolVersion;
use serde::Deserialize;
use url::Url;

use crate::secret::{Secret, SecretRef};

/// A configuration error: where and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The TOML is malformed or has unknown/mistyped keys.
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{file}: {key}: expected {expected}")]
    Invalid {
        /// The file.
        file: String,
        /// Dotted key path, e.g. `upstream[1].url`.
        key: String,
        /// What was expected.
        expected: String,
    },
}

// ---------------------------------------------------------------- raw shapes

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default, rename = "upstream")]
    upstreams: Vec<RawUpstream>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    max_body_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
    max_concurrent_requests: Option<usize>,
    max_sessions: Option<usize>,
    session_idle_timeout_secs: Option<u64>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    mode: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: String,
    transport: String,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    dangerous_inherit_env: bool,
    #[serde(default)]
    dangerous_allow_plain_http: bool,
    prefix: Option<String>,
    protocol: Option<String>,
    timeout_secs: Option<u64>,
}

// ---------------------------------------------------------------- runtime shapes

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listener and HTTP hygiene.
    pub server: ServerConfig,
    /// Client authentication.
    pub auth: AuthMode,
    /// Audit trail.
    pub audit: AuditConfig,
    /// Upstream MCP servers, in configuration order.
    pub upstreams: Vec<UpstreamConfig>,
}

/// Listener and HTTP hygiene settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Canonical URI of the MCP endpoint.
    pub public_url: Url,
    /// Exact origins (`scheme://host[:port]`) allowed besides loopback ones.
    pub allowed_origins: Vec<String>,
    /// Exact `Host` values allowed (lower-case `host[:port]`).
    pub allowed_hosts: Vec<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Longest a client request may take end to end.
    pub request_timeout: Duration,
    /// Requests processed at once; more are shed with 503.
    pub max_concurrent_requests: usize,
    /// Live sessions at once; more `initialize`s are refused.
    pub max_sessions: usize,
    /// A session unused this long is ended.
    pub session_idle_timeout: Duration,
    /// TLS listener settings (TLS 1.3 only).
    pub tls: Option<TlsConfig>,
}

/// Certificate and key for the TLS 1.3 listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication: loopback-only testing mode.
    DangerousNone,
}

/// Audit trail settings.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// JSON-lines file the events are appended to.
    pub path: PathBuf,
}

/// Which protocol revision the gateway speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolPin {
    /// Pinned in configuration.
    Pinned(ProtocolVersion),
    /// Detected on first contact, then pinned for the life of the process.
    Auto,
}

/// One upstream MCP server.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Unique name, used in errors, audit events and the default prefix.
    pub name: String,
    /// Prefix added to tool and prompt names (`<name>__` by default).
    pub prefix: String,
    /// How to reach it.
    pub transport: UpstreamTransport,
    /// Protocol revision.
    pub protocol: ProtocolPin,
    /// Longest one upstream request may take.
    pub timeout: Duration,
}

/// How to reach an upstream.
#[derive(Debug, Clone)]
pub enum UpstreamTransport {
    /// Streamable HTTP.
    Http {
        /// Endpoint URL.
        url: Url,
        /// Extra headers (e.g. the gateway's own credential for that upstream).
        headers: Vec<(http::HeaderName, Secret)>,
    },
    /// A child process speaking newline-delimited JSON-RPC on stdio.
    Stdio {
        /// Program.
        command: String,
        /// Arguments, literal.
        args: Vec<String>,
        /// Working directory.
        cwd: Option<PathBuf>,
        /// The child's whole environment.
        env: Vec<(String, Secret)>,
        /// Whether the gateway's environment is inherited too.
        dangerous_inherit_env: bool,
    },
}

/// Default body limit: 4 MiB is well above any real MCP request.
pub const DEFAULT_MAX_BODY: usize = 4 << 20;

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        Config::parse(&text, &file)
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        Validator { file }.config(raw)
    }

    /// The `dangerous_*` settings in effect, for the start-up log.
    pub fn dangerous_settings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.auth == AuthMode::DangerousNone {
            out.push("auth.mode = \"dangerous_none\" (no client authentication)".to_owned());
        }
        for u in &self.upstreams {
            if let UpstreamTransport::Stdio {
                dangerous_inherit_env: true,
                ..
            } = u.transport
            {
                out.push(format!("upstream {}: dangerous_inherit_env = true", u.name));
            }
            if let UpstreamTransport::Http { url, .. } = &u.transport
                && url.scheme() == "http"
                && !is_loopback_host(url.host_str().unwrap_or(""))
            {
                out.push(format!(
                    "upstream {}: dangerous_allow_plain_http = true",
                    u.name
                ));
            }
        }
        out
    }
}

struct Validator<'a> {
    file: &'a str,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, expected: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key: key.into(),
            expected: expected.into(),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let auth = match raw.auth.mode.as_deref() {
            Some("dangerous_none") => AuthMode::DangerousNone,
            None => {
                return Err(self.err(
                    "auth.mode",
                    "an authentication mode; this build supports only \"dangerous_none\" (loopback testing)",
                ));
            }
            Some(_) => {
                return Err(self.err(
                    "auth.mode",
                    "\"dangerous_none\" (the only mode this build supports)",
                ));
            }
        };
        let server = self.server(raw.server, auth)?;
        let audit = AuditConfig {
            path: raw
                .audit
                .path
                .unwrap_or_else(|| PathBuf::from("bastion-audit.jsonl")),
        };
        if raw.upstreams.is_empty() {
            return Err(self.err("upstream", "at least one [[upstream]] table"));
        }
        let mut upstreams: Vec<UpstreamConfig> = Vec::new();
        for (i, u) in raw.upstreams.into_iter().enumerate() {
            let u = self.upstream(i, u)?;
            if let Some(other) = upstreams.iter().find(|o| o.name == u.name) {
                return Err(self.err(
                    format!("upstream[{i}].name"),
                    format!("a unique name ({:?} is used twice)", other.name),
                ));
            }
            if let Some(other) = upstreams.iter().find(|o| {
                o.prefix == u.prefix
                    || (!o.prefix.is_empty() && !u.prefix.is_empty())
                        && (o.prefix.starts_with(&u.prefix) || u.prefix.starts_with(&o.prefix))
            }) {
                return Err(self.err(
                    format!("upstream[{i}].prefix"),
                    format!(
                        "a prefix that cannot collide with upstream {:?}'s prefix {:?}",
                        other.name, other.prefix
                    ),
                ));
            }
            upstreams.push(u);
        }
        Ok(Config {
            server,
            auth,
            audit,
            upstreams,
        })
    }

    fn server(&self, raw: RawServer, auth: AuthMode) -> Result<ServerConfig, ConfigError> {
        let listen_str = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen: SocketAddr = listen_str.parse().map_err(|_| {
            self.err(
                "server.listen",
                "an IP:port socket address such as \"127.0.0.1:8080\"",
            )
        })?;
        if auth == AuthMode::DangerousNone && !listen.ip().is_loopback() {
            return Err(self.err(
                "server.listen",
                "a loopback address while auth.mode = \"dangerous_none\" (an unauthenticated gateway must not be reachable from the network)",
            ));
        }
        let scheme = if raw.tls.is_some() { "https" } else { "http" };
        let public_url = match &raw.public_url {
            Some(s) => Url::parse(s)
                .map_err(|_| self.err("server.public_url", "an absolute http(s) URL"))?,
            None => Url::parse(&format!("{scheme}://{listen}/mcp"))
                .map_err(|_| self.err("server.listen", "an address usable in a URL"))?,
        };
        if !matches!(public_url.scheme(), "http" | "https") || public_url.host_str().is_none() {
            return Err(self.err("server.public_url", "an absolute http(s) URL with a host"));
        }
        if public_url.fragment().is_some() {
            return Err(self.err("server.public_url", "a URL without a fragment"));
        }
        let mut allowed_origins = Vec::new();
        for (i, o) in raw.allowed_origins.iter().enumerate() {
            let key = format!("server.allowed_origins[{i}]");
            let url = Url::parse(o)
                .map_err(|_| self.err(&key, "an origin such as \"https://app.example.com\""))?;
            if url.path() != "/"
                || url.query().is_some()
                || !matches!(url.scheme(), "http" | "https")
            {
                return Err(self.err(&key, "an origin (scheme://host[:port]) with no path"));
            }
            allowed_origins.push(url.origin().ascii_serialization());
        }
        let mut allowed_hosts = Vec::new();
        for (i, h) in raw.allowed_hosts.iter().enumerate() {
            if h.is_empty() || h.contains(['/', ' ', '@']) {
                return Err(self.err(format!("server.allowed_hosts[{i}]"), "a host[:port] value"));
            }
            allowed_hosts.push(h.to_ascii_lowercase());
        }
        let tls = raw.tls.map(|t| TlsConfig {
            cert: t.cert,
            key: t.key,
        });
        let positive = |v: Option<u64>, default: u64, key: &str| -> Result<u64, ConfigError> {
            match v {
                Some(0) => Err(self.err(key, "a positive number")),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        Ok(ServerConfig {
            listen,
            public_url,
            allowed_origins,
            allowed_hosts,
            max_body_bytes: positive(
                raw.max_body_bytes.map(|v| v as u64),
                DEFAULT_MAX_BODY as u64,
                "server.max_body_bytes",
            )? as usize,
            request_timeout: Duration::from_secs(positive(
                raw.request_timeout_secs,
                300,
                "server.request_timeout_secs",
            )?),
            max_concurrent_requests: positive(
                raw.max_concurrent_requests.map(|v| v as u64),
                1024,
                "server.max_concurrent_requests",
            )? as usize,
            max_sessions: positive(
                raw.max_sessions.map(|v| v as u64),
                10_000,
                "server.max_sessions",
            )? as usize,
            session_idle_timeout: Duration::from_secs(positive(
                raw.session_idle_timeout_secs,
                3600,
                "server.session_idle_timeout_secs",
            )?),
            tls,
        })
    }

    fn upstream(&self, i: usize, raw: RawUpstream) -> Result<UpstreamConfig, ConfigError> {
        let key = |k: &str| format!("upstream[{i}].{k}");
        let name_ok = !raw.name.is_empty()
            && raw.name.len() <= 64
            && raw
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(self.err(key("name"), "1-64 characters of [A-Za-z0-9_-]"));
        }
        let prefix = raw.prefix.unwrap_or_else(|| format!("{}__", raw.name));
        if prefix.len() > 64
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(self.err(key("prefix"), "at most 64 characters of [A-Za-z0-9_.-]"));
        }
        let protocol = match raw.protocol.as_deref() {
            None | Some("auto") => ProtocolPin::Auto,
            Some(v) => ProtocolPin::Pinned(ProtocolVersion::parse(v).ok_or_else(|| {
                self.err(
                    key("protocol"),
                    format!(
                        "\"auto\" or one of {:?}",
                        ProtocolVersion::supported_strings()
                    ),
                )
            })?),
        };
        let timeout = Duration::from_secs(match raw.timeout_secs {
            Some(0) => return Err(self.err(key("timeout_secs"), "a positive number of seconds")),
            Some(n) => n,
            None => 300,
        });
        let transport = match raw.transport.as_str() {
            "http" => {
                if raw.command.is_some()
                    || !raw.args.is_empty()
                    || !raw.env.is_empty()
                    || raw.cwd.is_some()
                {
                    return Err(self.err(
                        key("transport"),
                        "no command/args/env/cwd for an http upstream",
                    ));
                }
                let url_s = raw
                    .url
                    .ok_or_else(|| self.err(key("url"), "the upstream's MCP endpoint URL"))?;
                let url = Url::parse(&url_s)
                    .map_err(|_| self.err(key("url"), "an absolute http(s) URL"))?;
                let host = url.host_str().unwrap_or("");
                match url.scheme() {
                    "https" => {}
                    "http" if is_loopback_host(host) || raw.dangerous_allow_plain_http => {}
                    _ => {
                        return Err(self.err(
                            key("url"),
                            "an https URL (plain http only to loopback, or with dangerous_allow_plain_http = true)",
                        ));
                    }
                }
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(self.err(
                        key("url"),
                        "a URL without credentials (use headers with secret references)",
                    ));
                }
                let mut headers = Vec::new();
                for (h, v) in raw.headers {
                    let hk = format!("upstream[{i}].headers.{h}");
                    let name = http::HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| self.err(&hk, "a valid HTTP header name"))?;
                    if is_reserved_header(name.as_str()) {
                        return Err(self.err(&hk, "a header the gateway does not set itself"));
                    }
                    let secret = SecretRef::parse(&v)
                        .and_then(|r| r.resolve())
                        .map_err(|e| self.err(&hk, e.to_string()))?;
                    if http::HeaderValue::from_str(secret.expose_secret()).is_err() {
                        return Err(self.err(&hk, "a secret that is a valid header value"));
                    }
                    headers.push((name, secret));
                }
                UpstreamTransport::Http { url, headers }
            }
            "stdio" => {
                if raw.url.is_some() || !raw.headers.is_empty() {
                    return Err(self.err(key("transport"), "no url/headers for a stdio upstream"));
                }
                let command = raw
                    .command
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| self.err(key("command"), "the program to run"))?;
                let mut env = Vec::new();
                for (k, v) in raw.env {
                    let ek = format!("upstream[{i}].env.{k}");
                    if k.is_empty() || k.contains(['=', '\0']) {
                        return Err(self.err(&ek, "a valid environment variable name"));
                    }
                    // `env:`/`file:` values are references resolved now; anything else is a
                    // literal the operator chose to write into the file.
                    let value = if v.starts_with("env:") || v.starts_with("file:") {
                        SecretRef::parse(&v)
                            .and_then(|r| r.resolve())
                            .map_err(|e| self.err(&ek, e.to_string()))?
                    } else {
                        Secret::new(v)
                    };
                    env.push((k, value));
                }
                UpstreamTransport::Stdio {
                    command,
                    args: raw.args,
                    cwd: raw.cwd,
                    env,
                    dangerous_inherit_env: raw.dangerous_inherit_env,
                }
            }
            _ => return Err(self.err(key("transport"), "\"http\" or \"stdio\"")),
        };
        Ok(UpstreamConfig {
            name: raw.name,
            prefix,
            transport,
            protocol,
            timeout,
        })
    }
}

/// Headers the gateway manages itself and a config must not override.
fn is_reserved_header(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-length"
            | "content-type"
            | "accept"
            | "connection"
            | "transfer-encoding"
            | "mcp-session-id"
            | "mcp-protocol-version"
            | "mcp-method"
            | "mcp-name"
            | "last-event-id"
    )
}

/// Whether `host` names the loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for ProtocolPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolPin::Pinned(v) => write!(f, "{v}"),
            ProtocolPin::Auto => f.write_str("auto"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080/mcp"
[auth]
mode = "dangerous_none"
[[upstream]]
name = "fixture"
transport = "http"
url = "http://127.0.0.1:3000/mcp"
prefix = ""
"#;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn accepts_the_contract_shape() {
        let c = Config::parse(BASE, "t.toml").unwrap();
        assert_eq!(c.upstreams.len(), 1);
        assert_eq!(c.upstreams[0].prefix, "");
        assert_eq!(c.server.listen.port(), 8080);
        assert_eq!(c.upstreams[0].protocol, ProtocolPin::Auto);
    }

    #[test]
    fn errors_name_file_key_and_expectation() {
        let e = err(&format!("{BASE}\nbogus = 1\n"));
        assert!(e.starts_with("t.toml: "), "{e}");
        assert!(e.contains("bogus"), "{e}");
        let e = err(&BASE.replace("127.0.0.1:8080\"\npublic", "0.0.0.0:8080\"\npublic"));
        assert!(e.contains("server.listen") && e.contains("loopback"), "{e}");
        let e = err(&BASE.replace("transport = \"http\"", "transport = \"carrier-pigeon\""));
        assert!(e.contains("upstream[0].transport"), "{e}");
        let e = err(&BASE.replace("dangerous_none", "none"));
        assert!(e.contains("auth.mode"), "{e}");
    }

    #[test]
    fn header_values_must_be_references() {
        let e = err(&format!(
            "{BASE}headers = {{ Authorization = \"Bearer abc\" }}\n"
        ));
        assert!(
            e.contains("upstream[0].headers.authorization") || e.contains("headers.Authorization"),
            "{e}"
        );
        assert!(
            !e.contains("Bearer abc"),
            "error must not echo the inline secret: {e}"
        );
    }

    #[test]
    fn refuses_plain_http_to_remote_and_colliding_prefixes() {
        let e = err(&BASE.replace("http://127.0.0.1:3000/mcp", "http://mcp.example.com/mcp"));
        assert!(e.contains("upstream[0].url"), "{e}");
        let two = format!(
            "{BASE}\n[[upstream]]\nname = \"b\"\ntransport = \"stdio\"\ncommand = \"x\"\nprefix = \"\"\n"
        );
        assert!(err(&two).contains("upstream[1].prefix"));
        let nested = BASE.replace("prefix = \"\"", "prefix = \"a__\"")
            + "\n[[upstream]]\nname = \"b\"\ntransport = \"stdio\"\ncommand = \"x\"\nprefix = \"a__b\"\n";
        assert!(err(&nested).contains("upstream[1].prefix"));
    }
}

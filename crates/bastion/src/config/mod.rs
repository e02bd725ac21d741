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

pub mod import;
pub mod secret;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bastion_proto::ProtocolVersion;
use serde::Deserialize;
use url::Url;

use crate::config::secret::{Secret, SecretRef};
use bastion_detect::spotlight::Mode as SpotlightMode;
use bastion_detect::verdict::{
    Direction, OnHazard, OnInjection, OnSensitive, Policy as DetectPolicy,
};

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
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    integrity: RawIntegrity,
    #[serde(default)]
    detection: RawDetection,
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
    session_absolute_timeout_secs: Option<u64>,
    max_sessions_per_principal: Option<usize>,
    max_streams_per_principal: Option<usize>,
    session_hijack_action: Option<String>,
    #[serde(default)]
    dangerous_allow_session_scope_escalation: bool,
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
    issuer: Option<String>,
    jwks_url: Option<String>,
    #[serde(default)]
    required_scopes: Vec<String>,
    scopes_supported: Option<Vec<String>>,
    leeway_secs: Option<u64>,
    algorithms: Option<Vec<String>>,
    groups_claim: Option<String>,
    roles_claim: Option<String>,
    #[serde(default)]
    scope_implies: BTreeMap<String, Vec<String>>,
    introspection: Option<RawIntrospection>,
    dpop: Option<RawDpop>,
    jwks_refresh_cooldown_secs: Option<u64>,
    jwks_max_age_secs: Option<u64>,
    dev_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntrospection {
    endpoint: Option<String>,
    client_id: String,
    client_secret: String,
    max_cache_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDpop {
    #[serde(default)]
    required: bool,
    max_age_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamAuth {
    kind: String,
    token: Option<String>,
    token_endpoint: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    audience: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawState {
    backend: Option<String>,
    path: Option<PathBuf>,
    integrity_key: Option<String>,
    url: Option<String>,
    key_prefix: Option<String>,
    #[serde(default)]
    dangerous_allow_plain_redis: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    metrics_token: Option<String>,
    token: Option<String>,
    tls: Option<RawTls>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    dangerous_allow_all: bool,
    reload_interval_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawItem {
    #[serde(default)]
    labels: Vec<String>,
    risk: Option<i64>,
    #[serde(default)]
    required_scopes: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<PathBuf>,
    signing_key: Option<String>,
    checkpoint_every: Option<u64>,
    fsync: Option<String>,
    rotate_bytes: Option<u64>,
    max_queue: Option<usize>,
    #[serde(default)]
    syslog: Vec<RawSyslog>,
    otlp: Option<RawOtlp>,
    #[serde(default)]
    stdout: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    endpoint: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    dangerous_allow_plain_http: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSyslog {
    address: String,
    tls: Option<bool>,
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    #[serde(default)]
    dangerous_allow_plain: bool,
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
    auth: Option<RawUpstreamAuth>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    required_scopes: Vec<String>,
    #[serde(default)]
    tools: BTreeMap<String, RawItem>,
    #[serde(default)]
    prompts: BTreeMap<String, RawItem>,
    #[serde(default)]
    resources: BTreeMap<String, RawItem>,
    pin: Option<String>,
    manifest: Option<PathBuf>,
    manifest_key: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIntegrity {
    relist_interval_secs: Option<u64>,
    max_argument_bytes: Option<usize>,
    max_argument_depth: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDetection {
    threshold: Option<f32>,
    spotlight: Option<SpotlightMode>,
    tool_definitions: Option<RawDirection>,
    tool_results: Option<RawDirection>,
    resources: Option<RawDirection>,
    prompts: Option<RawDirection>,
    server_requests: Option<RawDirection>,
    arguments: Option<RawDirection>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDirection {
    threshold: Option<f32>,
    injection: Option<OnInjection>,
    secrets: Option<OnSensitive>,
    personal_data: Option<OnSensitive>,
    hazards: Option<OnHazard>,
    spotlight: Option<SpotlightMode>,
    spotlight_all: Option<bool>,
    dangerous_exempt_tools: Option<Vec<String>>,
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
    /// Where state lives and the keys that protect it.
    pub state: StateConfig,
    /// Authorization policies.
    pub policy: PolicyConfig,
    /// The admin listener (metrics).
    pub admin: AdminConfig,
    /// Tool integrity (`[integrity]`).
    pub integrity: IntegrityConfig,
    /// The detection engine's actions per direction (`[detection]`).
    pub detection: DetectionConfig,
    /// Upstream MCP servers, in configuration order.
    pub upstreams: Vec<UpstreamConfig>,
}

/// Tool-integrity settings (`[integrity]`).
#[derive(Debug, Clone)]
pub struct IntegrityConfig {
    /// How often every upstream is listed again to catch silent changes
    /// (and how old a session's view of an upstream's tools may get before a
    /// call re-lists them first).
    pub relist_interval: Duration,
    /// Largest `tools/call` arguments object, as compact JSON.
    pub max_argument_bytes: usize,
    /// Deepest nesting of `tools/call` arguments.
    pub max_argument_depth: usize,
}

impl Default for IntegrityConfig {
    fn default() -> Self {
        IntegrityConfig {
            relist_interval: Duration::from_secs(300),
            max_argument_bytes: 256 << 10,
            max_argument_depth: 32,
        }
    }
}

/// What the detection engine's verdicts do, per direction (`[detection]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionConfig {
    /// Tool, prompt and template definitions and server instructions.
    pub tool_definitions: DetectPolicy,
    /// `tools/call` results.
    pub tool_results: DetectPolicy,
    /// `resources/read` contents.
    pub resources: DetectPolicy,
    /// `prompts/get` messages.
    pub prompts: DetectPolicy,
    /// Server-initiated sampling and elicitation requests.
    pub server_requests: DetectPolicy,
    /// Tool-call and prompt arguments.
    pub arguments: DetectPolicy,
    /// Exposed tool names whose arguments skip the hazard checks (a shell tool whose
    /// commands legitimately pipe).
    pub dangerous_exempt_tools: Vec<String>,
}

/// Default score at or above which a message counts as an injection (the operating point
/// measured in docs/detection.md).
pub const DEFAULT_DETECTION_THRESHOLD: f32 = 0.5;

impl DetectionConfig {
    /// The policy for `d`.
    pub fn policy(&self, d: Direction) -> &DetectPolicy {
        match d {
            Direction::ToolDefinitions => &self.tool_definitions,
            Direction::ToolResults => &self.tool_results,
            Direction::Resources => &self.resources,
            Direction::Prompts => &self.prompts,
            Direction::ServerRequests => &self.server_requests,
            Direction::Arguments => &self.arguments,
        }
    }

    /// The defaults of direction `d`: injections in definitions are flagged (and keep trust
    /// on first use from approving them), in results and resources spotlighted, in prompts
    /// flagged (a prompt is meant to instruct), in server requests and arguments blocked or
    /// flagged; secrets are redacted from what reaches the client and refuse a call that
    /// would carry one upstream; personal data is flagged; hazardous arguments are blocked.
    pub fn default_policy(d: Direction) -> DetectPolicy {
        let base = DetectPolicy {
            threshold: DEFAULT_DETECTION_THRESHOLD,
            injection: OnInjection::Flag,
            secrets: OnSensitive::Redact,
            personal_data: OnSensitive::Flag,
            hazards: OnHazard::Allow,
            spotlight: SpotlightMode::Datamark,
            spotlight_all: false,
        };
        match d {
            Direction::ToolDefinitions => DetectPolicy {
                secrets: OnSensitive::Flag,
                ..base
            },
            Direction::ToolResults | Direction::Resources => DetectPolicy {
                injection: OnInjection::Spotlight,
                ..base
            },
            Direction::Prompts => base,
            Direction::ServerRequests => DetectPolicy {
                injection: OnInjection::Block,
                ..base
            },
            Direction::Arguments => DetectPolicy {
                secrets: OnSensitive::Block,
                hazards: OnHazard::Block,
                ..base
            },
        }
    }
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            tool_definitions: Self::default_policy(Direction::ToolDefinitions),
            tool_results: Self::default_policy(Direction::ToolResults),
            resources: Self::default_policy(Direction::Resources),
            prompts: Self::default_policy(Direction::Prompts),
            server_requests: Self::default_policy(Direction::ServerRequests),
            arguments: Self::default_policy(Direction::Arguments),
            dangerous_exempt_tools: Vec::new(),
        }
    }
}

/// How an upstream's definitions are pinned (`pin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    /// Only approved definitions are exposed.
    Strict,
    /// The first inventory is approved; every later change waits for approval.
    Tofu,
    /// Changes are recorded and reported, never withheld.
    DangerousMonitor,
}

impl PinMode {
    /// Its configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Strict => "strict",
            PinMode::Tofu => "tofu",
            PinMode::DangerousMonitor => "dangerous_monitor",
        }
    }
}

/// The admin listener (`[admin]`): `/metrics` for Prometheus.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// Where to listen; `None`: no admin listener.
    pub listen: Option<SocketAddr>,
    /// Bearer token `/metrics` requires (mandatory off loopback).
    pub metrics_token: Option<Secret>,
    /// The operator token of the admin API (`/admin/*`); without it the admin
    /// API accepts only OAuth access tokens that policy allows `admin/*`.
    pub token: Option<Secret>,
    /// TLS 1.3 for the admin listener (required off loopback: operator and
    /// scrape tokens must not travel in clear).
    pub tls: Option<TlsConfig>,
    /// `Host` values the admin listener answers besides its own address
    /// (lower-case `host[:port]`); every other one is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

/// Authorization settings (`[policy]`).
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Glob patterns of Cedar policy files; relative ones are resolved against
    /// the configuration file's directory.
    pub files: Vec<String>,
    /// With no policy at all, allow everything (testing only).
    pub dangerous_allow_all: bool,
    /// How often the files are checked for changes (besides SIGHUP).
    pub reload_interval: Duration,
}

/// What the operator says about one tool, prompt or resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemPolicy {
    /// Labels policies can test (`resource.labels.contains("read-only")`).
    pub labels: Vec<String>,
    /// Risk score policies can test (`resource.risk`).
    pub risk: i64,
    /// OAuth scopes a request for it needs (besides the upstream's).
    pub required_scopes: Vec<String>,
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
    /// A session this old is ended however busy it is.
    pub session_absolute_timeout: Duration,
    /// Live sessions one principal may hold; a new one evicts its least recently
    /// used.
    pub max_sessions_per_principal: usize,
    /// Long-lived streams (GET streams, `subscriptions/listen`) one principal
    /// may hold open at once; they also count against
    /// `max_concurrent_requests` while open.
    pub max_streams_per_principal: usize,
    /// What a change of Origin, User-Agent or client address inside a session does.
    pub session_hijack_action: HijackAction,
    /// Keep a session when a request brings more scopes than it was created with
    /// (default: the session ends and the client re-initializes).
    pub dangerous_allow_session_scope_escalation: bool,
    /// TLS listener settings (TLS 1.3 only).
    pub tls: Option<TlsConfig>,
}

/// What a hijack indicator inside a session does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HijackAction {
    /// A security event; the request is served.
    Event,
    /// A security event, and the request is refused like an unknown session.
    Block,
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
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// OAuth 2.1 resource server (the default).
    OAuth(Box<OAuthConfig>),
    /// A local development issuer whose key the gateway holds: loopback only.
    DangerousDevIssuer {
        /// Where the signing key lives (created on first use, mode 0600).
        key_file: PathBuf,
        /// Scopes every MCP request needs.
        required_scopes: Vec<String>,
    },
    /// No authentication: loopback-only testing mode.
    DangerousNone,
}

impl AuthMode {
    /// Whether this is `dangerous_none`.
    pub fn is_none(&self) -> bool {
        matches!(self, AuthMode::DangerousNone)
    }
}

/// OAuth resource-server settings (`[auth]` with `mode = "oauth"`).
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The trusted issuer.
    pub issuer: String,
    /// JWKS URL override (otherwise discovered).
    pub jwks_url: Option<Url>,
    /// Scopes every MCP request needs.
    pub required_scopes: Vec<String>,
    /// Scopes advertised in the Protected Resource Metadata.
    pub scopes_supported: Vec<String>,
    /// Clock leeway (at most 60 s).
    pub leeway: Duration,
    /// Accepted JWS algorithms.
    pub algorithms: Vec<bastion_auth::Algorithm>,
    /// Claim with group names.
    pub groups_claim: Option<String>,
    /// Claim with role names.
    pub roles_claim: Option<String>,
    /// Scope hierarchy.
    pub scope_implies: BTreeMap<String, Vec<String>>,
    /// Opaque-token introspection.
    pub introspection: Option<bastion_auth::IntrospectionConfig>,
    /// DPoP.
    pub dpop: bastion_auth::DpopConfig,
    /// Least time between unknown-`kid` refreshes.
    pub jwks_refresh_cooldown: Duration,
    /// Key-set age after which it is refreshed in the background.
    pub jwks_max_age: Duration,
}

/// The gateway's own credential towards one HTTP upstream (never the client's).
#[derive(Debug, Clone)]
pub enum UpstreamAuth {
    /// No credential (or only the static `headers`).
    None,
    /// A static bearer token from a secret reference.
    Static(Secret),
    /// OAuth client credentials or RFC 8693 token exchange.
    OAuth(Box<UpstreamOAuth>),
}

/// Where an upstream token comes from.
#[derive(Debug, Clone)]
pub struct UpstreamOAuth {
    /// The grant.
    pub grant: bastion_auth::GrantKind,
    /// The token endpoint, or the issuer whose metadata names it.
    pub token_endpoint: TokenEndpoint,
    /// The gateway's client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// Scopes to request.
    pub scope: Option<String>,
    /// RFC 8707 resource (default: the upstream URL).
    pub resource: Option<String>,
    /// RFC 8693 audience.
    pub audience: Option<String>,
}

/// A token endpoint, configured or discovered.
#[derive(Debug, Clone)]
pub enum TokenEndpoint {
    /// Configured.
    Url(Url),
    /// From this issuer's metadata.
    Discover(String),
}

/// State settings (`[state]`).
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// The root keys for sealed handles and state integrity; `None`: a random
    /// key per process.
    pub integrity_key: Option<Secret>,
    /// Where sessions live.
    pub backend: StateBackend,
}

/// Where sessions live.
#[derive(Debug, Clone)]
pub enum StateBackend {
    /// Sessions in this process; durable state in a SQLite file.
    Embedded {
        /// The SQLite file (`None`: durable state kept in memory only).
        path: Option<PathBuf>,
    },
    /// Redis, shared by several instances.
    Redis {
        /// `redis://` or `rediss://` URL (may carry a password: a secret).
        url: Secret,
        /// Prefix of every key.
        prefix: String,
        /// Plain `redis://` to another host (`dangerous_allow_plain_redis`).
        dangerous_plain: bool,
    },
}

/// Audit trail settings (`[audit]`).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The chained log (rotated files sit beside it as `<path>.<first seq>`).
    pub path: PathBuf,
    /// The Ed25519 checkpoint key; `None`: a key file `<path>.key` (0600),
    /// created on first start.
    pub signing_key: Option<Secret>,
    /// A signed checkpoint after this many records (and at rotation, when
    /// idle, and at shutdown).
    pub checkpoint_every: u64,
    /// When appends reach the disk.
    pub fsync: bastion_audit::Fsync,
    /// Rotate the live file past this size.
    pub rotate_bytes: u64,
    /// Events waiting to be written past which new requests are refused (503).
    pub max_queue: usize,
    /// Syslog collectors the trail is exported to.
    pub syslog: Vec<std::sync::Arc<SyslogConfig>>,
    /// The OpenTelemetry collector the trail is exported to.
    pub otlp: Option<std::sync::Arc<OtlpConfig>>,
    /// Also copy every record to standard output as JSON lines.
    pub stdout: bool,
}

/// OTLP/HTTP export (`[audit.otlp]`).
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The collector's base URL (`/v1/logs` and `/v1/traces` are appended).
    pub endpoint: Url,
    /// Extra headers (secret references), e.g. an API key.
    pub headers: Vec<(http::HeaderName, Secret)>,
}

/// One syslog collector (`[[audit.syslog]]`).
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// `host:port`.
    pub address: String,
    /// TLS (RFC 5425); `None`: plain TCP (RFC 6587).
    pub tls: Option<SyslogTls>,
}

/// TLS to a syslog collector.
#[derive(Debug, Clone)]
pub struct SyslogTls {
    /// Client configuration trusting `ca_file`.
    pub client: std::sync::Arc<rustls::ClientConfig>,
    /// The name the collector's certificate must carry.
    pub server_name: String,
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
    /// The gateway's own credential for it.
    pub auth: UpstreamAuth,
    /// Labels of the upstream (`Bastion::Upstream` `labels`).
    pub labels: Vec<String>,
    /// OAuth scopes every request for this upstream needs.
    pub required_scopes: Vec<String>,
    /// Per tool (the upstream's own name): labels, risk, scopes.
    pub tools: BTreeMap<String, ItemPolicy>,
    /// Per prompt (the upstream's own name).
    pub prompts: BTreeMap<String, ItemPolicy>,
    /// Per resource URI prefix (the longest matching prefix applies; resource
    /// templates match on their template text).
    pub resources: BTreeMap<String, ItemPolicy>,
    /// How its definitions are pinned.
    pub pin: PinMode,
    /// A signed manifest its definitions must match.
    pub manifest: Option<ManifestSource>,
}

/// A signed manifest (`manifest`, `manifest_key`).
#[derive(Debug, Clone)]
pub struct ManifestSource {
    /// The manifest file; its detached signature is `<path>.sig`.
    pub path: PathBuf,
    /// `ed25519:<base64>` public key.
    pub key: String,
}

impl UpstreamConfig {
    /// Whether any tool, prompt or resource setting names required scopes.
    pub fn has_item_scopes(&self) -> bool {
        self.tools
            .values()
            .chain(self.prompts.values())
            .chain(self.resources.values())
            .any(|i| !i.required_scopes.is_empty())
    }

    /// The operator's settings for a tool, prompt or resource of this upstream.
    pub fn item(&self, kind: bastion_policy::ItemKind, name: &str) -> Option<&ItemPolicy> {
        match kind {
            bastion_policy::ItemKind::Tool => self.tools.get(name),
            bastion_policy::ItemKind::Prompt => self.prompts.get(name),
            bastion_policy::ItemKind::Resource => self
                .resources
                .iter()
                .filter(|(p, _)| name.starts_with(p.as_str()))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, v)| v),
        }
    }
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
        Self::read(path, false)
    }

    /// Loads `path` for an operator command (tools, audit, policy,
    /// access review, dev tokens): validated as strictly as [`Config::load`],
    /// except that upstream secrets which cannot be resolved in the
    /// operator's environment are left empty, since these commands never
    /// talk to an upstream. Never use the result to serve.
    pub fn load_for_operator(path: &Path) -> Result<Config, ConfigError> {
        Self::read(path, true)
    }

    fn read(path: &Path, operator: bool) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Validator {
            file: &file,
            base: path.parent(),
            operator,
        }
        .config(raw)
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        Validator {
            file,
            base: None,
            operator: false,
        }
        .config(raw)
    }

    /// The `dangerous_*` settings in effect, for the start-up log.
    pub fn dangerous_settings(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.auth {
            AuthMode::DangerousNone => {
                out.push("auth.mode = \"dangerous_none\" (no client authentication)".to_owned());
            }
            AuthMode::DangerousDevIssuer { .. } => out.push(
                "auth.mode = \"dangerous_dev_issuer\" (tokens minted by a local key; not for production)"
                    .to_owned(),
            ),
            AuthMode::OAuth(_) => {}
        }
        if let StateBackend::Redis {
            dangerous_plain: true,
            ..
        } = &self.state.backend
        {
            out.push("state.dangerous_allow_plain_redis = true (session records cross the network unencrypted)".to_owned());
        }
        if self.audit.fsync == bastion_audit::Fsync::DangerousNone {
            out.push(
                "audit.fsync = \"dangerous_none\" (a crash can lose the records of answered requests)"
                    .to_owned(),
            );
        }
        for u in &self.upstreams {
            if u.pin == PinMode::DangerousMonitor {
                out.push(format!(
                    "upstream {:?} pin = \"dangerous_monitor\" (changed tool definitions are reported, not withheld)",
                    u.name
                ));
            }
        }
        for d in Direction::ALL {
            let p = self.detection.policy(d);
            for (what, off) in [
                ("injection", p.injection == OnInjection::Allow),
                ("secrets", p.secrets == OnSensitive::Allow),
                (
                    "hazards",
                    d == Direction::Arguments && p.hazards == OnHazard::Allow,
                ),
            ] {
                if off {
                    out.push(format!(
                        "detection.{}.{what} = \"allow\" (not detected or recorded)",
                        d.as_str()
                    ));
                }
            }
        }
        if !self.detection.dangerous_exempt_tools.is_empty() {
            out.push(format!(
                "detection.arguments.dangerous_exempt_tools = {:?} (their arguments skip the hazard checks)",
                self.detection.dangerous_exempt_tools
            ));
        }
        if self.policy.dangerous_allow_all {
            out.push(
                "policy.dangerous_allow_all = true (with no policy files, every request is allowed)"
                    .to_owned(),
            );
        }
        if self.server.dangerous_allow_session_scope_escalation {
            out.push(
                "server.dangerous_allow_session_scope_escalation = true (sessions survive a scope increase)"
                    .to_owned(),
            );
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
    /// The configuration file's directory (relative policy globs start there).
    base: Option<&'a Path>,
    /// Loading for an operator command, which never talks to an upstream:
    /// upstream secrets that cannot be resolved here become empty values
    /// instead of errors (the gateway that uses them resolves them itself).
    operator: bool,
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
        let explicit_public_url = raw.server.public_url.is_some();
        let auth = self.auth(raw.auth)?;
        if matches!(auth, AuthMode::OAuth(_)) && !explicit_public_url {
            return Err(self.err(
                "server.public_url",
                "the canonical URL of the MCP endpoint (every token's audience must be this exact value)",
            ));
        }
        let server = self.server(raw.server, &auth)?;
        // Bearer tokens must not cross a network in clear text (RS-24): the
        // resource clients reach is https, unless it is this machine.
        if matches!(auth, AuthMode::OAuth(_))
            && server.public_url.scheme() != "https"
            && !is_loopback_host(server.public_url.host_str().unwrap_or(""))
        {
            return Err(self.err(
                "server.public_url",
                "an https URL (clients send bearer tokens to it; plain http only on loopback)",
            ));
        }
        let oauth_issuer = match &auth {
            AuthMode::OAuth(o) => Some(o.issuer.clone()),
            _ => None,
        };
        let state = self.state(raw.state)?;
        let audit = self.audit(raw.audit)?;
        let policy = self.policy(raw.policy)?;
        let admin = self.admin(raw.admin)?;
        let integrity = self.integrity(raw.integrity)?;
        let detection = self.detection(raw.detection)?;
        if raw.upstreams.is_empty() {
            return Err(self.err("upstream", "at least one [[upstream]] table"));
        }
        let mut upstreams: Vec<UpstreamConfig> = Vec::new();
        for (i, u) in raw.upstreams.into_iter().enumerate() {
            let u = self.upstream(i, u, oauth_issuer.as_deref())?;
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
            state,
            policy,
            admin,
            integrity,
            detection,
            upstreams,
        })
    }

    /// Resolves the secret reference `r` (at `key`) now.
    fn secret(&self, key: &str, r: &str) -> Result<Secret, ConfigError> {
        if key.starts_with("upstream[") {
            return self.upstream_secret(key, r);
        }
        SecretRef::parse(r)
            .and_then(|r| r.resolve())
            .map_err(|e| self.err(key, e.to_string()))
    }

    /// Resolves an upstream's secret reference: an error for the gateway; for
    /// an operator command (which never reaches an upstream) a reference
    /// that is well formed but cannot be resolved here is an empty value.
    fn upstream_secret(&self, key: &str, r: &str) -> Result<Secret, ConfigError> {
        let parsed = SecretRef::parse(r).map_err(|e| self.err(key, e.to_string()))?;
        match parsed.resolve() {
            Ok(s) => Ok(s),
            Err(_) if self.operator => Ok(Secret::new(String::new())),
            Err(e) => Err(self.err(key, e.to_string())),
        }
    }

    /// Header names and secret-reference values (at `key`.<name>); names the
    /// gateway sets itself are refused when `reserved` says so.
    fn header_secrets(
        &self,
        key: &str,
        raw: BTreeMap<String, String>,
        reserved: fn(&str) -> bool,
    ) -> Result<Vec<(http::HeaderName, Secret)>, ConfigError> {
        let mut headers = Vec::new();
        for (h, v) in raw {
            let hk = format!("{key}.{h}");
            let name = http::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| self.err(&hk, "a valid HTTP header name"))?;
            if reserved(name.as_str()) {
                return Err(self.err(&hk, "a header the gateway does not set itself"));
            }
            let secret = self.secret(&hk, &v)?;
            if http::HeaderValue::from_str(secret.expose_secret()).is_err() {
                return Err(self.err(&hk, "a secret that is a valid header value"));
            }
            headers.push((name, secret));
        }
        Ok(headers)
    }

    fn admin(&self, raw: RawAdmin) -> Result<AdminConfig, ConfigError> {
        let listen = raw
            .listen
            .map(|l| {
                l.parse::<SocketAddr>()
                    .map_err(|_| self.err("admin.listen", "an IP:port socket address"))
            })
            .transpose()?;
        let metrics_token = raw
            .metrics_token
            .map(|t| self.secret("admin.metrics_token", &t))
            .transpose()?;
        if let Some(a) = listen
            && !a.ip().is_loopback()
            && metrics_token.is_none()
        {
            return Err(self.err(
                "admin.metrics_token",
                "a secret reference: the admin listener is off loopback, so scrapes must present a bearer token",
            ));
        }
        let token = raw
            .token
            .map(|t| self.secret("admin.token", &t))
            .transpose()?;
        if token
            .as_ref()
            .is_some_and(|t| t.expose_secret().trim().len() < 16)
        {
            return Err(self.err("admin.token", "a secret of at least 16 characters"));
        }
        let tls = raw.tls.map(|t| TlsConfig {
            cert: t.cert,
            key: t.key,
        });
        if let Some(a) = listen
            && !a.ip().is_loopback()
            && tls.is_none()
        {
            return Err(self.err(
                "admin.tls",
                "a certificate and key ([admin.tls] cert, key): the admin listener is off loopback, so its tokens must not travel in clear",
            ));
        }
        let mut allowed_hosts = Vec::new();
        for (i, h) in raw.allowed_hosts.iter().enumerate() {
            if h.is_empty() || h.contains(['/', ' ', '@']) {
                return Err(self.err(format!("admin.allowed_hosts[{i}]"), "a host[:port] value"));
            }
            allowed_hosts.push(h.to_ascii_lowercase());
        }
        Ok(AdminConfig {
            listen,
            metrics_token,
            token,
            tls,
            allowed_hosts,
        })
    }

    fn integrity(&self, raw: RawIntegrity) -> Result<IntegrityConfig, ConfigError> {
        let d = IntegrityConfig::default();
        let relist = raw
            .relist_interval_secs
            .unwrap_or(d.relist_interval.as_secs());
        if !(1..=86_400).contains(&relist) {
            return Err(self.err("integrity.relist_interval_secs", "1 to 86400 seconds"));
        }
        let bytes = raw.max_argument_bytes.unwrap_or(d.max_argument_bytes);
        if !(64..=DEFAULT_MAX_BODY).contains(&bytes) {
            return Err(self.err(
                "integrity.max_argument_bytes",
                format!("64 to {DEFAULT_MAX_BODY} bytes"),
            ));
        }
        let depth = raw.max_argument_depth.unwrap_or(d.max_argument_depth);
        if !(1..=100).contains(&depth) {
            return Err(self.err("integrity.max_argument_depth", "1 to 100"));
        }
        Ok(IntegrityConfig {
            relist_interval: Duration::from_secs(relist),
            max_argument_bytes: bytes,
            max_argument_depth: depth,
        })
    }

    fn detection(&self, raw: RawDetection) -> Result<DetectionConfig, ConfigError> {
        let threshold_ok = |t: f32| t > 0.0 && t <= 1.0;
        let threshold = raw.threshold.unwrap_or(DEFAULT_DETECTION_THRESHOLD);
        if !threshold_ok(threshold) {
            return Err(self.err("detection.threshold", "a number above 0 and at most 1"));
        }
        let mut out = DetectionConfig::default();
        let mut exempt = Vec::new();
        for (d, raw_dir) in [
            (Direction::ToolDefinitions, raw.tool_definitions),
            (Direction::ToolResults, raw.tool_results),
            (Direction::Resources, raw.resources),
            (Direction::Prompts, raw.prompts),
            (Direction::ServerRequests, raw.server_requests),
            (Direction::Arguments, raw.arguments),
        ] {
            let key = |k: &str| format!("detection.{}.{k}", d.as_str());
            let mut p = DetectionConfig::default_policy(d);
            p.threshold = threshold;
            if let Some(m) = raw.spotlight {
                p.spotlight = m;
            }
            let r = raw_dir.unwrap_or_default();
            if let Some(t) = r.threshold {
                if !threshold_ok(t) {
                    return Err(self.err(key("threshold"), "a number above 0 and at most 1"));
                }
                p.threshold = t;
            }
            // Each direction takes only the settings that mean something there, so a
            // misplaced one is an error rather than silently ignored.
            let definitions = d == Direction::ToolDefinitions;
            let arguments = d == Direction::Arguments;
            if let Some(i) = r.injection {
                if i == OnInjection::Spotlight && (definitions || arguments) {
                    return Err(self.err(
                        key("injection"),
                        "\"allow\", \"flag\" or \"block\" (only content reaching the model is spotlighted)",
                    ));
                }
                p.injection = i;
            }
            for (name, given, slot) in [
                ("secrets", r.secrets, &mut p.secrets),
                ("personal_data", r.personal_data, &mut p.personal_data),
            ] {
                if let Some(v) = given {
                    if definitions && matches!(v, OnSensitive::Redact | OnSensitive::Block) {
                        return Err(self.err(
                            key(name),
                            "\"allow\" or \"flag\" (a definition is pinned as sent; an operator rejects it)",
                        ));
                    }
                    *slot = v;
                }
            }
            if let Some(h) = r.hazards {
                if !arguments {
                    return Err(self.err(key("hazards"), "only under [detection.arguments]"));
                }
                p.hazards = h;
            }
            if r.spotlight.is_some() || r.spotlight_all.is_some() {
                if definitions || arguments {
                    return Err(self.err(
                        key("spotlight"),
                        "only for content reaching the model (tool_results, resources, prompts, server_requests)",
                    ));
                }
                if let Some(m) = r.spotlight {
                    p.spotlight = m;
                }
                if let Some(a) = r.spotlight_all {
                    p.spotlight_all = a;
                }
            }
            if let Some(list) = r.dangerous_exempt_tools {
                if !arguments {
                    return Err(self.err(
                        key("dangerous_exempt_tools"),
                        "only under [detection.arguments]",
                    ));
                }
                if list.iter().any(|t| t.trim().is_empty()) {
                    return Err(self.err(key("dangerous_exempt_tools"), "tool names"));
                }
                exempt = list;
            }
            match d {
                Direction::ToolDefinitions => out.tool_definitions = p,
                Direction::ToolResults => out.tool_results = p,
                Direction::Resources => out.resources = p,
                Direction::Prompts => out.prompts = p,
                Direction::ServerRequests => out.server_requests = p,
                Direction::Arguments => out.arguments = p,
            }
        }
        out.dangerous_exempt_tools = exempt;
        Ok(out)
    }

    fn audit(&self, raw: RawAudit) -> Result<AuditConfig, ConfigError> {
        let signing_key = raw
            .signing_key
            .map(|s| self.secret("audit.signing_key", &s))
            .transpose()?;
        if let Some(k) = &signing_key {
            bastion_audit::Signer::from_text(k.expose_secret())
                .map_err(|e| self.err("audit.signing_key", e.to_string()))?;
        }
        let checkpoint_every = match raw.checkpoint_every {
            Some(0) => {
                return Err(self.err("audit.checkpoint_every", "a positive number of records"));
            }
            Some(n) => n,
            None => 1000,
        };
        let fsync = match raw.fsync.as_deref() {
            None | Some("batch") => bastion_audit::Fsync::Batch,
            Some("always") => bastion_audit::Fsync::Always,
            Some("dangerous_none") => bastion_audit::Fsync::DangerousNone,
            Some(_) => {
                return Err(self.err(
                    "audit.fsync",
                    "\"batch\" (default: one fdatasync per group of records), \"always\" or \"dangerous_none\"",
                ));
            }
        };
        let rotate_bytes = match raw.rotate_bytes {
            Some(n) if n < 4096 => {
                return Err(self.err("audit.rotate_bytes", "at least 4096 bytes"));
            }
            Some(n) => n,
            None => 256 << 20,
        };
        let max_queue = match raw.max_queue {
            Some(0) => return Err(self.err("audit.max_queue", "a positive number of events")),
            Some(n) => n,
            None => 100_000,
        };
        let mut syslog = Vec::new();
        for (i, s) in raw.syslog.into_iter().enumerate() {
            syslog.push(std::sync::Arc::new(self.syslog(i, s)?));
        }
        let otlp = raw
            .otlp
            .map(|o| self.otlp(o).map(std::sync::Arc::new))
            .transpose()?;
        Ok(AuditConfig {
            path: raw
                .path
                .unwrap_or_else(|| PathBuf::from("bastion-audit.jsonl")),
            signing_key,
            checkpoint_every,
            fsync,
            rotate_bytes,
            max_queue,
            syslog,
            otlp,
            stdout: raw.stdout,
        })
    }

    fn otlp(&self, raw: RawOtlp) -> Result<OtlpConfig, ConfigError> {
        let endpoint = Url::parse(&raw.endpoint)
            .map_err(|_| self.err("audit.otlp.endpoint", "an absolute http(s) URL"))?;
        match endpoint.scheme() {
            "https" => {}
            "http"
                if is_loopback_host(endpoint.host_str().unwrap_or(""))
                    || raw.dangerous_allow_plain_http => {}
            _ => {
                return Err(self.err(
                    "audit.otlp.endpoint",
                    "an https URL (plain http only to loopback, or with dangerous_allow_plain_http = true)",
                ));
            }
        }
        let headers = self.header_secrets("audit.otlp.headers", raw.headers, |_| false)?;
        Ok(OtlpConfig { endpoint, headers })
    }

    fn syslog(&self, i: usize, raw: RawSyslog) -> Result<SyslogConfig, ConfigError> {
        let key = |k: &str| format!("audit.syslog[{i}].{k}");
        let (host, port) = raw
            .address
            .rsplit_once(':')
            .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            .ok_or_else(|| self.err(key("address"), "host:port of the collector"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let _ = port;
        if !raw.tls.unwrap_or(true) {
            if !is_loopback_host(host) && !raw.dangerous_allow_plain {
                return Err(self.err(
                    key("tls"),
                    "true (audit records must not cross a network in clear text; plain TCP only to loopback, or with dangerous_allow_plain = true)",
                ));
            }
            return Ok(SyslogConfig {
                address: raw.address,
                tls: None,
            });
        }
        let ca = raw.ca_file.ok_or_else(|| {
            self.err(
                key("ca_file"),
                "the PEM CA certificate(s) the collector's certificate chains to",
            )
        })?;
        let pem = std::fs::read(&ca)
            .map_err(|e| self.err(key("ca_file"), format!("a readable PEM file ({e})")))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            let c = c.map_err(|_| self.err(key("ca_file"), "PEM certificates"))?;
            roots
                .add(c)
                .map_err(|_| self.err(key("ca_file"), "valid CA certificates"))?;
        }
        if roots.is_empty() {
            return Err(self.err(key("ca_file"), "at least one PEM certificate"));
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|_| self.err(key("tls"), "a usable TLS configuration"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = raw.server_name.unwrap_or_else(|| host.to_owned());
        if rustls::pki_types::ServerName::try_from(server_name.clone()).is_err() {
            return Err(self.err(key("server_name"), "a DNS name or IP address"));
        }
        Ok(SyslogConfig {
            address: raw.address,
            tls: Some(SyslogTls {
                client: std::sync::Arc::new(client),
                server_name,
            }),
        })
    }

    fn policy(&self, raw: RawPolicy) -> Result<PolicyConfig, ConfigError> {
        if raw.files.is_empty() && !raw.dangerous_allow_all {
            return Err(self.err(
                "policy.files",
                "at least one glob of Cedar policy files (without policies every request is denied; dangerous_allow_all = true allows everything, for testing only)",
            ));
        }
        let mut files = Vec::new();
        for (i, f) in raw.files.iter().enumerate() {
            if f.is_empty() || glob::Pattern::new(f).is_err() {
                return Err(self.err(format!("policy.files[{i}]"), "a valid glob pattern"));
            }
            let p = Path::new(f);
            files.push(match self.base {
                Some(b) if p.is_relative() && !b.as_os_str().is_empty() => {
                    // Escape the directory so its own characters are not glob syntax.
                    format!("{}/{f}", glob::Pattern::escape(&b.display().to_string()))
                }
                _ => f.clone(),
            });
        }
        let reload_interval = Duration::from_secs(match raw.reload_interval_secs {
            Some(0) => {
                return Err(self.err(
                    "policy.reload_interval_secs",
                    "a positive number of seconds",
                ));
            }
            Some(n) => n,
            None => 2,
        });
        Ok(PolicyConfig {
            files,
            dangerous_allow_all: raw.dangerous_allow_all,
            reload_interval,
        })
    }

    fn item(&self, key: &str, raw: RawItem) -> Result<ItemPolicy, ConfigError> {
        let risk = raw.risk.unwrap_or(0);
        if !(0..=1000).contains(&risk) {
            return Err(self.err(format!("{key}.risk"), "an integer from 0 to 1000"));
        }
        self.labels(&format!("{key}.labels"), &raw.labels)?;
        self.scopes(&format!("{key}.required_scopes"), &raw.required_scopes)?;
        Ok(ItemPolicy {
            labels: raw.labels,
            risk,
            required_scopes: raw.required_scopes,
        })
    }

    fn labels(&self, key: &str, v: &[String]) -> Result<(), ConfigError> {
        if v.iter().any(|l| l.is_empty() || l.len() > 64) {
            return Err(self.err(key, "labels of 1-64 characters"));
        }
        Ok(())
    }

    fn scopes(&self, key: &str, v: &[String]) -> Result<(), ConfigError> {
        // RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`.
        if v.iter().any(|s| {
            s.is_empty()
                || !s
                    .bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        }) {
            return Err(self.err(key, "OAuth scope tokens (RFC 6749 §3.3)"));
        }
        Ok(())
    }

    fn server(&self, raw: RawServer, auth: &AuthMode) -> Result<ServerConfig, ConfigError> {
        let listen_str = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen: SocketAddr = listen_str.parse().map_err(|_| {
            self.err(
                "server.listen",
                "an IP:port socket address such as \"127.0.0.1:8080\"",
            )
        })?;
        if !matches!(auth, AuthMode::OAuth(_)) && !listen.ip().is_loopback() {
            return Err(self.err(
                "server.listen",
                "a loopback address while auth.mode is \"dangerous_none\" or \"dangerous_dev_issuer\" (a gateway without real authentication must not be reachable from the network)",
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
            session_absolute_timeout: Duration::from_secs(positive(
                raw.session_absolute_timeout_secs,
                86_400,
                "server.session_absolute_timeout_secs",
            )?),
            max_sessions_per_principal: positive(
                raw.max_sessions_per_principal.map(|v| v as u64),
                32,
                "server.max_sessions_per_principal",
            )? as usize,
            max_streams_per_principal: positive(
                raw.max_streams_per_principal.map(|v| v as u64),
                16,
                "server.max_streams_per_principal",
            )? as usize,
            session_hijack_action: match raw.session_hijack_action.as_deref() {
                None | Some("event") => HijackAction::Event,
                Some("block") => HijackAction::Block,
                Some(_) => {
                    return Err(self.err(
                        "server.session_hijack_action",
                        "\"event\" (the default) or \"block\"",
                    ));
                }
            },
            dangerous_allow_session_scope_escalation: raw.dangerous_allow_session_scope_escalation,
            tls,
        })
    }

    fn state(&self, raw: RawState) -> Result<StateConfig, ConfigError> {
        let integrity_key = match raw.integrity_key {
            None => None,
            Some(r) => {
                let s = self.secret("state.integrity_key", &r)?;
                crate::state::keyring::Keyring::from_secret(&s)
                    .map_err(|e| self.err("state.integrity_key", e.to_string()))?;
                Some(s)
            }
        };
        let backend = match raw.backend.as_deref() {
            None | Some("embedded") => {
                if raw.url.is_some() {
                    return Err(self.err("state.url", "no url with the embedded backend"));
                }
                StateBackend::Embedded { path: raw.path }
            }
            Some("redis") => {
                if raw.path.is_some() {
                    return Err(self.err("state.path", "no path with the redis backend"));
                }
                let u = raw.url.ok_or_else(|| {
                    self.err("state.url", "the Redis URL (redis:// or rediss://)")
                })?;
                // A URL with a password is a secret: env:/file: references work too.
                let url = if u.starts_with("env:") || u.starts_with("file:") {
                    SecretRef::parse(&u)
                        .and_then(|r| r.resolve())
                        .map_err(|e| self.err("state.url", e.to_string()))?
                } else {
                    Secret::new(u)
                };
                let parsed = Url::parse(url.expose_secret())
                    .map_err(|_| self.err("state.url", "a redis:// or rediss:// URL"))?;
                let host = parsed.host_str().unwrap_or("");
                match parsed.scheme() {
                    "rediss" => {}
                    "redis" if is_loopback_host(host) || raw.dangerous_allow_plain_redis => {}
                    "redis" => {
                        return Err(self.err(
                            "state.url",
                            "rediss:// (TLS) for a Redis that is not on loopback, or dangerous_allow_plain_redis = true",
                        ));
                    }
                    _ => return Err(self.err("state.url", "a redis:// or rediss:// URL")),
                }
                if integrity_key.is_none() {
                    return Err(self.err(
                        "state.integrity_key",
                        "a secret reference: instances sharing Redis must share the keys that protect its values",
                    ));
                }
                let prefix = raw.key_prefix.unwrap_or_else(|| "bastion:".to_owned());
                if prefix.is_empty() || prefix.len() > 64 || prefix.contains(char::is_whitespace) {
                    return Err(self.err("state.key_prefix", "1-64 characters without spaces"));
                }
                let dangerous_plain = parsed.scheme() == "redis" && !is_loopback_host(host);
                StateBackend::Redis {
                    url,
                    prefix,
                    dangerous_plain,
                }
            }
            Some(_) => return Err(self.err("state.backend", "\"embedded\" or \"redis\"")),
        };
        Ok(StateConfig {
            integrity_key,
            backend,
        })
    }

    fn auth(&self, raw: RawAuth) -> Result<AuthMode, ConfigError> {
        let mode = raw.mode.as_deref().unwrap_or("oauth");
        let scopes = |list: &[String], key: &str| -> Result<Vec<String>, ConfigError> {
            for (i, s) in list.iter().enumerate() {
                // RFC 6749 §3.3 scope-token.
                if s.is_empty()
                    || !s.bytes().all(|b| {
                        b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)
                    })
                {
                    return Err(self.err(format!("{key}[{i}]"), "an RFC 6749 scope token"));
                }
            }
            Ok(list.to_vec())
        };
        let required_scopes = scopes(&raw.required_scopes, "auth.required_scopes")?;
        match mode {
            "dangerous_none" => return Ok(AuthMode::DangerousNone),
            "dangerous_dev_issuer" => {
                return Ok(AuthMode::DangerousDevIssuer {
                    key_file: raw
                        .dev_key_file
                        .unwrap_or_else(|| PathBuf::from(".bastion/dev-issuer.key")),
                    required_scopes,
                });
            }
            "oauth" => {}
            _ => {
                return Err(self.err(
                    "auth.mode",
                    "\"oauth\" (the default), \"dangerous_dev_issuer\" or \"dangerous_none\"",
                ));
            }
        }
        let issuer = raw
            .issuer
            .ok_or_else(|| self.err("auth.issuer", "the issuer URL of the identity provider"))?;
        let iu = Url::parse(&issuer).map_err(|_| {
            self.err(
                "auth.issuer",
                "an absolute https URL (http only on loopback)",
            )
        })?;
        let loopback = is_loopback_host(iu.host_str().unwrap_or(""));
        if !(iu.scheme() == "https" || iu.scheme() == "http" && loopback) || iu.query().is_some() {
            return Err(self.err(
                "auth.issuer",
                "an https URL without query (http only on loopback)",
            ));
        }
        let jwks_url = match raw.jwks_url {
            None => None,
            Some(u) => {
                let url =
                    Url::parse(&u).map_err(|_| self.err("auth.jwks_url", "an absolute URL"))?;
                let lb = is_loopback_host(url.host_str().unwrap_or(""));
                if !(url.scheme() == "https" || url.scheme() == "http" && lb) {
                    return Err(self.err("auth.jwks_url", "an https URL (http only on loopback)"));
                }
                Some(url)
            }
        };
        let scopes_supported = match raw.scopes_supported {
            Some(list) => scopes(&list, "auth.scopes_supported")?,
            None => required_scopes.clone(),
        };
        if scopes_supported.iter().any(|s| s == "offline_access") {
            return Err(self.err(
                "auth.scopes_supported",
                "resource scopes only (MCP servers should not advertise offline_access)",
            ));
        }
        let leeway = match raw.leeway_secs {
            Some(n) if n > 60 => return Err(self.err("auth.leeway_secs", "at most 60 seconds")),
            Some(n) => n,
            None => 30,
        };
        let algorithms = match raw.algorithms {
            None => bastion_auth::DEFAULT_ALGORITHMS.to_vec(),
            Some(list) => {
                let mut out = Vec::new();
                for (i, a) in list.iter().enumerate() {
                    let alg = bastion_auth::DEFAULT_ALGORITHMS
                        .iter()
                        .find(|x| format!("{x:?}") == *a)
                        .ok_or_else(|| {
                            self.err(
                                format!("auth.algorithms[{i}]"),
                                "an asymmetric JWS algorithm (ES256, ES384, EdDSA, RS256, RS384, RS512, PS256, PS384, PS512)",
                            )
                        })?;
                    out.push(*alg);
                }
                if out.is_empty() {
                    return Err(self.err("auth.algorithms", "at least one algorithm"));
                }
                out
            }
        };
        let introspection = match raw.introspection {
            None => None,
            Some(ri) => {
                let endpoint = match ri.endpoint {
                    None => None,
                    Some(u) => {
                        // It receives the gateway's client secret and every client
                        // token: never in clear text across a network.
                        let url = Url::parse(&u).ok().filter(|url| {
                            url.scheme() == "https"
                                || url.scheme() == "http"
                                    && is_loopback_host(url.host_str().unwrap_or(""))
                        });
                        Some(url.ok_or_else(|| {
                            self.err(
                                "auth.introspection.endpoint",
                                "an https URL (http only on loopback)",
                            )
                        })?)
                    }
                };
                let max_cache = match ri.max_cache_secs {
                    Some(n) if n > 3600 => {
                        return Err(
                            self.err("auth.introspection.max_cache_secs", "at most 3600 seconds")
                        );
                    }
                    Some(n) => n,
                    None => 60,
                };
                let client_secret = SecretRef::parse(&ri.client_secret)
                    .and_then(|r| r.resolve())
                    .map_err(|e| self.err("auth.introspection.client_secret", e.to_string()))?;
                Some(bastion_auth::IntrospectionConfig {
                    endpoint,
                    client_id: ri.client_id,
                    client_secret,
                    max_cache: Duration::from_secs(max_cache),
                })
            }
        };
        let rd = raw.dpop.unwrap_or_default();
        let dpop = bastion_auth::DpopConfig {
            required: rd.required,
            max_age: Duration::from_secs(match rd.max_age_secs {
                Some(0) => return Err(self.err("auth.dpop.max_age_secs", "a positive number")),
                Some(n) if n > 600 => {
                    return Err(self.err("auth.dpop.max_age_secs", "at most 600 seconds"));
                }
                Some(n) => n,
                None => 60,
            }),
            skew: Duration::from_secs(5),
        };
        Ok(AuthMode::OAuth(Box::new(OAuthConfig {
            issuer,
            jwks_url,
            required_scopes,
            scopes_supported,
            leeway: Duration::from_secs(leeway),
            algorithms,
            groups_claim: raw.groups_claim,
            roles_claim: raw.roles_claim,
            scope_implies: raw.scope_implies,
            introspection,
            dpop,
            jwks_refresh_cooldown: Duration::from_secs(match raw.jwks_refresh_cooldown_secs {
                // Zero would let forged kids trigger a fetch per request.
                Some(0) => {
                    return Err(self.err("auth.jwks_refresh_cooldown_secs", "at least 1 second"));
                }
                Some(n) => n,
                None => 10,
            }),
            jwks_max_age: Duration::from_secs(raw.jwks_max_age_secs.unwrap_or(300).max(1)),
        })))
    }

    fn upstream_auth(
        &self,
        i: usize,
        raw: Option<RawUpstreamAuth>,
        url: &Url,
        oauth_issuer: Option<&str>,
    ) -> Result<UpstreamAuth, ConfigError> {
        let key = |k: &str| format!("upstream[{i}].auth.{k}");
        let Some(raw) = raw else {
            return Ok(UpstreamAuth::None);
        };
        let secret = |v: &Option<String>, k: &str| -> Result<Secret, ConfigError> {
            let v = v
                .as_deref()
                .ok_or_else(|| self.err(key(k), "a secret reference (env:NAME or file:/path)"))?;
            let s = self.upstream_secret(&key(k), v)?;
            if http::HeaderValue::from_str(&format!("Bearer {}", s.expose_secret())).is_err() {
                return Err(self.err(key(k), "a secret usable in an HTTP header"));
            }
            Ok(s)
        };
        let grant = match raw.kind.as_str() {
            "none" => return Ok(UpstreamAuth::None),
            "static" => return Ok(UpstreamAuth::Static(secret(&raw.token, "token")?)),
            "client_credentials" => bastion_auth::GrantKind::ClientCredentials,
            "token_exchange" => bastion_auth::GrantKind::TokenExchange,
            _ => {
                return Err(self.err(
                    key("kind"),
                    "\"none\", \"static\", \"client_credentials\" or \"token_exchange\"",
                ));
            }
        };
        if grant == bastion_auth::GrantKind::TokenExchange && oauth_issuer.is_none() {
            return Err(self.err(
                key("kind"),
                "token_exchange needs auth.mode = \"oauth\" (there is no client token to exchange otherwise)",
            ));
        }
        // Token exchange sends the client's token (whose audience is this gateway)
        // to the token endpoint: only to the gateway's own issuer, never to a
        // party that could replay it here.
        if grant == bastion_auth::GrantKind::TokenExchange {
            let ours = oauth_issuer.unwrap_or_default();
            let origin = |u: &str| Url::parse(u).ok().map(|u| u.origin().ascii_serialization());
            if raw.issuer.as_deref().is_some_and(|i| i != ours) {
                return Err(self.err(
                    key("issuer"),
                    "the [auth] issuer (token exchange presents the client's token there)",
                ));
            }
            if let Some(te) = &raw.token_endpoint
                && origin(te) != origin(ours)
            {
                return Err(self.err(
                    key("token_endpoint"),
                    "an endpoint of the [auth] issuer (token exchange presents the client's token there)",
                ));
            }
        }
        let token_endpoint = match (&raw.token_endpoint, &raw.issuer, grant) {
            (Some(u), _, _) => {
                let url = Url::parse(u)
                    .map_err(|_| self.err(key("token_endpoint"), "an absolute URL"))?;
                let lb = is_loopback_host(url.host_str().unwrap_or(""));
                if !(url.scheme() == "https" || url.scheme() == "http" && lb) {
                    return Err(self.err(
                        key("token_endpoint"),
                        "an https URL (http only on loopback)",
                    ));
                }
                TokenEndpoint::Url(url)
            }
            (None, Some(iss), _) => TokenEndpoint::Discover(iss.clone()),
            (None, None, bastion_auth::GrantKind::TokenExchange) => {
                TokenEndpoint::Discover(oauth_issuer.unwrap_or_default().to_owned())
            }
            (None, None, _) => {
                return Err(self.err(
                    key("token_endpoint"),
                    "the token endpoint URL, or `issuer` to discover it",
                ));
            }
        };
        let client_id = raw
            .client_id
            .filter(|c| !c.is_empty())
            .ok_or_else(|| self.err(key("client_id"), "the gateway's client id at that issuer"))?;
        Ok(UpstreamAuth::OAuth(Box::new(UpstreamOAuth {
            grant,
            token_endpoint,
            client_id,
            client_secret: secret(&raw.client_secret, "client_secret")?,
            scope: raw.scope,
            resource: Some(raw.resource.unwrap_or_else(|| url.to_string())),
            audience: raw.audience,
        })))
    }

    fn upstream(
        &self,
        i: usize,
        raw: RawUpstream,
        oauth_issuer: Option<&str>,
    ) -> Result<UpstreamConfig, ConfigError> {
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
        let mut auth = UpstreamAuth::None;
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
                let headers = self.header_secrets(
                    &format!("upstream[{i}].headers"),
                    raw.headers,
                    is_reserved_header,
                )?;
                auth = self.upstream_auth(i, raw.auth, &url, oauth_issuer)?;
                UpstreamTransport::Http { url, headers }
            }
            "stdio" => {
                if raw.url.is_some() || !raw.headers.is_empty() || raw.auth.is_some() {
                    return Err(self.err(
                        key("transport"),
                        "no url/headers/auth for a stdio upstream (pass its credentials in env)",
                    ));
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
                        self.upstream_secret(&ek, &v)?
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
        self.labels(&key("labels"), &raw.labels)?;
        self.scopes(&key("required_scopes"), &raw.required_scopes)?;
        let items = |kind: &str, m: BTreeMap<String, RawItem>| {
            m.into_iter()
                .map(|(n, r)| Ok((n.clone(), self.item(&key(&format!("{kind}.{n}")), r)?)))
                .collect::<Result<BTreeMap<_, _>, ConfigError>>()
        };
        let tools = items("tools", raw.tools)?;
        let prompts = items("prompts", raw.prompts)?;
        let resources = items("resources", raw.resources)?;
        let pin = match raw.pin.as_deref() {
            None | Some("tofu") => PinMode::Tofu,
            Some("strict") => PinMode::Strict,
            Some("dangerous_monitor") => PinMode::DangerousMonitor,
            Some(_) => {
                return Err(self.err(key("pin"), "\"strict\", \"tofu\" or \"dangerous_monitor\""));
            }
        };
        let manifest = match (raw.manifest, raw.manifest_key) {
            (None, None) => None,
            (Some(p), Some(k)) => {
                if bastion_audit::chain::parse_public(&k).is_err() {
                    return Err(self.err(key("manifest_key"), "ed25519:<base64 of 32 bytes>"));
                }
                let path = match self.base {
                    Some(b) if p.is_relative() => b.join(p),
                    _ => p,
                };
                Some(ManifestSource { path, key: k })
            }
            (Some(_), None) => {
                return Err(self.err(
                    key("manifest_key"),
                    "the manifest's public key (ed25519:<base64>) next to manifest",
                ));
            }
            (None, Some(_)) => {
                return Err(self.err(key("manifest"), "the manifest path next to manifest_key"));
            }
        };
        Ok(UpstreamConfig {
            name: raw.name,
            prefix,
            transport,
            protocol,
            timeout,
            auth,
            labels: raw.labels,
            required_scopes: raw.required_scopes,
            tools,
            prompts,
            resources,
            pin,
            manifest,
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
[policy]
dangerous_allow_all = true
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

    const OAUTH: &str = r#"
[policy]
files = ["policies/*.cedar"]
[server]
listen = "0.0.0.0:8080"
public_url = "https://gw.example.test/mcp"
[auth]
issuer = "https://idp.example.test"
required_scopes = ["mcp:tools"]
[[upstream]]
name = "fixture"
transport = "http"
url = "https://up.example.test/mcp"
"#;

    #[test]
    fn auth_contract_shape_is_oauth_by_default() {
        let c = Config::parse(OAUTH, "t.toml").unwrap();
        let AuthMode::OAuth(o) = &c.auth else {
            panic!("oauth expected")
        };
        assert_eq!(o.issuer, "https://idp.example.test");
        assert_eq!(o.required_scopes, ["mcp:tools"]);
        assert_eq!(o.scopes_supported, ["mcp:tools"]);
        assert!(o.leeway <= Duration::from_secs(60));
        assert!(!o.algorithms.contains(&bastion_auth::Algorithm::HS256));
        assert!(c.dangerous_settings().is_empty());
    }

    #[test]
    fn auth_settings_that_weaken_security_are_refused() {
        let cases = [
            (
                OAUTH.replace("issuer = \"https://idp.example.test\"\n", ""),
                "auth.issuer",
            ),
            (
                OAUTH.replace("public_url = \"https://gw.example.test/mcp\"\n", ""),
                "server.public_url",
            ),
            (
                OAUTH.replace("https://idp.example.test", "http://idp.example.test"),
                "auth.issuer",
            ),
            (
                OAUTH.replace("https://gw.example.test/mcp", "http://gw.example.test/mcp"),
                "server.public_url",
            ),
            (
                OAUTH.replace("[auth]\n", "[auth]\nleeway_secs = 61\n"),
                "auth.leeway_secs",
            ),
            (
                OAUTH.replace("[auth]\n", "[auth]\nalgorithms = [\"HS256\"]\n"),
                "auth.algorithms[0]",
            ),
            (
                OAUTH.replace("[auth]\n", "[auth]\nalgorithms = [\"none\"]\n"),
                "auth.algorithms[0]",
            ),
            (
                OAUTH.replace(
                    "[auth]\n",
                    "[auth]\nscopes_supported = [\"offline_access\"]\n",
                ),
                "auth.scopes_supported",
            ),
            (
                OAUTH.replace("[\"mcp:tools\"]", "[\"mcp tools\"]"),
                "auth.required_scopes[0]",
            ),
            (
                OAUTH.replace("[auth]\n", "[auth]\nmode = \"dangerous_dev_issuer\"\n"),
                "server.listen",
            ),
            (
                OAUTH.replace("[auth]\n", "[auth]\nmode = \"dangerous_none\"\n"),
                "server.listen",
            ),
            (
                OAUTH.replace("[auth]\n", "[auth]\nmode = \"none\"\n"),
                "auth.mode",
            ),
            (
                format!(
                    "{OAUTH}[upstream.auth]\nkind = \"client_credentials\"\nclient_id = \"gw\"\nclient_secret = \"env:BASTION_TEST_UNSET_VAR\"\n"
                ),
                "upstream[0].auth.token_endpoint",
            ),
            (
                format!(
                    "{BASE}[upstream.auth]\nkind = \"token_exchange\"\nclient_id = \"gw\"\nclient_secret = \"env:X\"\n"
                ),
                "upstream[0].auth.kind",
            ),
            (
                format!("{OAUTH}[upstream.auth]\nkind = \"static\"\ntoken = \"literal-token\"\n"),
                "upstream[0].auth.token",
            ),
            (
                format!(
                    "{OAUTH}[upstream.auth]\nkind = \"token_exchange\"\ntoken_endpoint = \"https://evil.example.test/token\"\nclient_id = \"gw\"\nclient_secret = \"env:X\"\n"
                ),
                "upstream[0].auth.token_endpoint",
            ),
            (
                OAUTH.replace("[auth]\n", "[auth]\njwks_refresh_cooldown_secs = 0\n"),
                "auth.jwks_refresh_cooldown_secs",
            ),
            (
                format!(
                    "{OAUTH}[auth.introspection]\nclient_id = \"gw\"\nclient_secret = \"env:X\"\nendpoint = \"http://idp.example.test/introspect\"\n"
                ),
                "auth.introspection.endpoint",
            ),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.contains(key), "want {key}: {e}");
        }
    }

    #[test]
    fn state_contract_shape_and_refusals() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("state.key");
        std::fs::write(&key, format!("k1:{}", "A".repeat(44))).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let with = |state: &str| format!("{BASE}[state]\n{state}\n");
        let c = Config::parse(
            &with(&format!(
                "backend = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\nintegrity_key = \"file:{}\"",
                key.display()
            )),
            "t.toml",
        )
        .unwrap();
        assert!(matches!(c.state.backend, StateBackend::Redis { .. }));
        assert!(matches!(
            Config::parse(&with("backend = \"embedded\""), "t.toml")
                .unwrap()
                .state
                .backend,
            StateBackend::Embedded { .. }
        ));
        let k = key.display();
        for (state, want) in [
            (
                "backend = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"".to_owned(),
                "state.integrity_key",
            ),
            (
                format!("backend = \"redis\"\nintegrity_key = \"file:{k}\""),
                "state.url",
            ),
            (
                format!(
                    "backend = \"redis\"\nurl = \"redis://cache.example:6379\"\nintegrity_key = \"file:{k}\""
                ),
                "state.url",
            ),
            (
                format!(
                    "backend = \"redis\"\nurl = \"http://127.0.0.1\"\nintegrity_key = \"file:{k}\""
                ),
                "state.url",
            ),
            ("backend = \"memcached\"".to_owned(), "state.backend"),
            (
                "integrity_key = \"inline-not-a-reference\"".to_owned(),
                "state.integrity_key",
            ),
        ] {
            let e = err(&with(&state));
            assert!(e.contains(want), "want {want}: {e}");
        }
        // Plain Redis across a network only as a named dangerous setting.
        let c = Config::parse(
            &with(&format!(
                "backend = \"redis\"\nurl = \"redis://cache.example:6379\"\nintegrity_key = \"file:{k}\"\ndangerous_allow_plain_redis = true"
            )),
            "t.toml",
        )
        .unwrap();
        assert!(
            c.dangerous_settings()
                .iter()
                .any(|d| d.contains("plain_redis"))
        );
    }

    #[test]
    fn policy_contract_shape_and_refusals() {
        let without = BASE.replace("[policy]\ndangerous_allow_all = true\n", "");
        assert!(
            err(&without).contains("policy.files"),
            "no policy at all must not start"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bastion.toml");
        std::fs::write(
            &file,
            without.replace(
                "[server]",
                "[policy]\nfiles = [\"policies/*.cedar\", \"/etc/bastion/extra.cedar\"]\n[server]",
            ) + "labels = [\"internal\"]\nrequired_scopes = [\"files\"]\n[upstream.tools.read_file]\nlabels = [\"read-only\"]\nrisk = 10\nrequired_scopes = [\"files:read\"]\n[upstream.resources.\"file:///srv/\"]\nlabels = [\"srv\"]\n",
        )
        .unwrap();
        let c = Config::load(&file).unwrap();
        // Relative globs start at the configuration file's directory.
        assert_eq!(
            c.policy.files,
            [
                format!("{}/policies/*.cedar", dir.path().display()),
                "/etc/bastion/extra.cedar".to_owned()
            ]
        );
        assert!(!c.policy.dangerous_allow_all);
        let u = &c.upstreams[0];
        assert_eq!(u.labels, ["internal"]);
        assert_eq!(u.required_scopes, ["files"]);
        let t = u.item(bastion_policy::ItemKind::Tool, "read_file").unwrap();
        assert_eq!(
            (t.risk, t.required_scopes.as_slice()),
            (10, &["files:read".to_owned()][..])
        );
        assert_eq!(
            u.item(bastion_policy::ItemKind::Resource, "file:///srv/a.txt")
                .unwrap()
                .labels,
            ["srv"]
        );
        assert!(
            u.item(bastion_policy::ItemKind::Resource, "file:///etc/x")
                .is_none()
        );
        assert!(
            Config::parse(BASE, "t.toml")
                .unwrap()
                .dangerous_settings()
                .iter()
                .any(|d| d.contains("dangerous_allow_all"))
        );
        for (bad, key) in [
            (
                "[upstream.tools.x]\nrisk = -1\n",
                "upstream[0].tools.x.risk",
            ),
            (
                "required_scopes = [\"a b\"]\n",
                "upstream[0].required_scopes",
            ),
            ("[upstream.prompts.p]\nbogus = 1\n", "bogus"),
        ] {
            let e = err(&format!("{BASE}{bad}"));
            assert!(e.contains(key), "{bad}: {e}");
        }
        let e = err(&BASE.replace("dangerous_allow_all = true", "files = [\"[\"]"));
        assert!(e.contains("policy.files[0]"), "{e}");
    }

    #[test]
    fn the_admin_listener_needs_a_token_off_loopback() {
        let with = |admin: &str| format!("[admin]\n{admin}\n{BASE}");
        let c = Config::parse(&with("listen = \"127.0.0.1:9464\""), "t.toml").unwrap();
        assert!(c.admin.listen.is_some() && c.admin.metrics_token.is_none());
        let e = err(&with("listen = \"0.0.0.0:9464\""));
        assert!(e.contains("admin.metrics_token"), "{e}");
        let e = err(&with(
            "listen = \"0.0.0.0:9464\"\nmetrics_token = \"inline\"",
        ));
        assert!(e.contains("admin.metrics_token"), "{e}");
        // Off loopback the admin listener also needs TLS.
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("t");
        std::fs::write(&tok, "scrape-secret-token").unwrap();
        std::fs::set_permissions(&tok, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let token = format!("metrics_token = \"file:{}\"", tok.display());
        let e = err(&with(&format!("listen = \"0.0.0.0:9464\"\n{token}")));
        assert!(e.contains("admin.tls"), "{e}");
        let c = Config::parse(
            &with(&format!(
                "listen = \"0.0.0.0:9464\"\n{token}\nallowed_hosts = [\"Ops.Example:9464\"]\n[admin.tls]\ncert = \"c.pem\"\nkey = \"k.pem\""
            )),
            "t.toml",
        )
        .unwrap();
        assert!(c.admin.tls.is_some());
        assert_eq!(c.admin.allowed_hosts, ["ops.example:9464"]);
        assert!(
            Config::parse(BASE, "t.toml")
                .unwrap()
                .admin
                .listen
                .is_none()
        );
    }

    #[test]
    fn syslog_export_is_tls_unless_loopback() {
        let with = |t: &str| BASE.replace("[server]", &format!("{t}\n[server]"));
        let c = Config::parse(
            &with("[[audit.syslog]]\naddress = \"127.0.0.1:514\"\ntls = false"),
            "t.toml",
        )
        .unwrap();
        assert!(c.audit.syslog[0].tls.is_none());
        let e = err(&with(
            "[[audit.syslog]]\naddress = \"10.0.0.5:514\"\ntls = false",
        ));
        assert!(e.contains("audit.syslog[0].tls"), "{e}");
        let e = err(&with(
            "[[audit.syslog]]\naddress = \"logs.example.com:6514\"",
        ));
        assert!(e.contains("audit.syslog[0].ca_file"), "{e}");
        let e = err(&with("[[audit.syslog]]\naddress = \"nope\""));
        assert!(e.contains("audit.syslog[0].address"), "{e}");
        // OTLP: https, or plain http to loopback; headers are secret references.
        let e = err(&with(
            "[audit.otlp]\nendpoint = \"http://otel.example.com:4318\"",
        ));
        assert!(e.contains("audit.otlp.endpoint"), "{e}");
        let e = err(&with(
            "[audit.otlp]\nendpoint = \"https://otel.example.com\"\nheaders = { x-api-key = \"inline\" }",
        ));
        assert!(e.contains("audit.otlp.headers.x-api-key"), "{e}");
        assert!(
            Config::parse(
                &with("[audit.otlp]\nendpoint = \"http://127.0.0.1:4318\""),
                "t.toml"
            )
            .unwrap()
            .audit
            .otlp
            .is_some()
        );
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

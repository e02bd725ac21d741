//! Connections to upstream MCP servers.
//!
//! An [`Upstream`] is one configured server. A [`Conn`] is one initialized MCP
//! connection to it, owned by exactly one client context (a legacy client session,
//! or a principal on the stateless lane), so one client's upstream state
//! (subscriptions, log level, roots, pending server requests) is never shared with
//! another's.
//!
//! Invariants:
//! - ids are remapped: every request the gateway sends on a `Conn` gets a fresh
//!   conn-local integer id, and the caller's id is restored on the response, so
//!   concurrent clients and the gateway's own requests never collide;
//! - every request has a deadline; on expiry the upstream is sent
//!   `notifications/cancelled` and the caller gets [`UpstreamError::Timeout`];
//! - messages the upstream sends toward the client (notifications and server
//!   requests) are delivered as [`Upcall`]s to the sink of the call they belong to,
//!   or to the context's unsolicited sink when they belong to no call;
//! - a stdio child that crashes fails its pending calls at once, and a new one is
//!   started on next use, no sooner than the upstream's restart backoff allows;
//! - an upstream's revisions are pinned in configuration or detected once (a
//!   `server/discover` probe and an `initialize` probe) and then fixed for the life
//!   of the process; a connection speaks the client's era when the upstream
//!   supports it, and is bridged otherwise (see `docs/protocol.md`);
//! - nothing reaches an upstream without a [`Pass`]: a [`Permitted<Call>`] that
//!   only an authorization decision mints (naming upstream, method and item,
//!   checked against the message sent), or the [`Internal`] capability for the
//!   gateway's own housekeeping (inventory listing, `logging/setLevel`), which
//!   admits only those methods. The transports' `call`/`notify` are private to
//!   this module; a cancelled or timed-out call tells its upstream itself.

pub mod forward;
pub mod http;
pub mod stdio;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bastion_proto::{
    Era, ErrorObject, Id, Message, Notification, ProtocolVersion, Request, Response, codes, meta,
};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::{ProtocolPin, UpstreamConfig, UpstreamTransport};
use bastion_policy::Permitted;

/// What one permit lets the gateway send: `method` to upstream `upstream`,
/// about `item` (the upstream's own tool or prompt name, resource URI or
/// task id; `None` for methods that name nothing, such as lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Index of the upstream.
    pub upstream: usize,
    /// The JSON-RPC method sent.
    pub method: String,
    /// The item the message names, as the upstream knows it.
    pub item: Option<String>,
}

impl Call {
    /// A call of `method` on upstream `upstream` about `item`.
    pub fn new(upstream: usize, method: &str, item: Option<&str>) -> Call {
        Call {
            upstream,
            method: method.to_owned(),
            item: item.map(str::to_owned),
        }
    }
}

/// The gateway's own traffic to an upstream, decided by no client: listing
/// definitions for the integrity inventory and relaying a session's log
/// level. Only the session and inventory code create one; it admits only
/// [`Internal::METHODS`], so it can never carry a call, a read or a get.
#[derive(Debug)]
pub struct Internal {
    purpose: &'static str,
}

impl Internal {
    /// The only methods internal traffic may send.
    pub const METHODS: &'static [&'static str] = &[
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
        "logging/setLevel",
    ];

    /// For the integrity inventory and re-lists (`integrity`/`inventory`).
    pub(crate) fn inventory() -> Internal {
        Internal {
            purpose: "inventory",
        }
    }

    /// For session housekeeping (`logging/setLevel` of a 2025-era session).
    pub(crate) fn session() -> Internal {
        Internal { purpose: "session" }
    }

    /// What it is for (audit records).
    pub fn purpose(&self) -> &'static str {
        self.purpose
    }
}

/// What lets a message go upstream.
#[derive(Debug)]
pub enum Pass<'a> {
    /// An authorization decision for exactly this call.
    Permit(Permitted<Call>),
    /// The gateway's own housekeeping.
    Internal(&'a Internal),
}

/// The item a message names, as the permit must name it.
pub fn item_of(method: &str, params: Option<&Value>) -> Option<String> {
    let p = params?;
    let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
    match method {
        "tools/call" | "prompts/get" => s("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => s("uri"),
        "completion/complete" => {
            let r = p.get("ref")?;
            r.get("name")
                .or_else(|| r.get("uri"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
        "tasks/get" | "tasks/update" | "tasks/cancel" | "tasks/result" => s("taskId"),
        _ => None,
    }
}

impl Pass<'_> {
    /// Whether this pass admits `method` naming `params`'s item on upstream
    /// `upstream`. A mismatch is a gateway bug; the message is not sent.
    fn admits(
        &self,
        upstream: usize,
        method: &str,
        params: Option<&Value>,
    ) -> Result<(), UpstreamError> {
        let ok = match self {
            Pass::Permit(p) => {
                let c = p.get();
                c.upstream == upstream && c.method == method && c.item == item_of(method, params)
            }
            Pass::Internal(_) => Internal::METHODS.contains(&method),
        };
        if ok {
            Ok(())
        } else {
            Err(UpstreamError::NotPermitted(
                method.chars().take(64).collect(),
            ))
        }
    }
}

/// A message from an upstream toward the client.
#[derive(Debug)]
pub struct Upcall {
    /// Index of the upstream in the configuration.
    pub upstream: usize,
    /// How to answer it, when it is a request.
    pub reply: ReplyPath,
    /// A request or a notification.
    pub msg: Message,
}

/// Where upcalls go.
pub type UpcallTx = mpsc::Sender<Upcall>;

/// How to send a response back to the upstream that asked.
#[derive(Debug, Clone)]
pub enum ReplyPath {
    /// POST to the upstream's HTTP session.
    Http(Arc<http::HttpShared>),
    /// Write to the child's stdin.
    Stdio(mpsc::Sender<bytes::Bytes>),
    /// Answered inside the gateway (bridging `input_required` to a 2025-era client).
    Local(Arc<Mutex<Option<tokio::sync::oneshot::Sender<Response>>>>),
}

impl ReplyPath {
    /// Sends a response (to a server-initiated request) upstream: the only
    /// message a reply path carries from outside this module, and only to the
    /// upstream that asked.
    pub async fn send(&self, resp: Response) -> Result<(), UpstreamError> {
        self.send_message(Message::Response(resp)).await
    }

    async fn send_message(&self, msg: Message) -> Result<(), UpstreamError> {
        match self {
            ReplyPath::Http(h) => h.post_no_reply(&msg).await,
            ReplyPath::Stdio(tx) => tx
                .send(stdio::frame(&msg))
                .await
                .map_err(|_| UpstreamError::Unavailable("the upstream process has exited".into())),
            ReplyPath::Local(slot) => {
                let Message::Response(resp) = msg else {
                    return Ok(());
                };
                if let Some(tx) = slot.lock().take() {
                    let _ = tx.send(resp);
                }
                Ok(())
            }
        }
    }
}

/// Why an upstream exchange failed. Messages are the gateway's own words, never
/// upstream payloads, so they are safe to show the client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Not reachable, crashed, or restarting.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// No answer within the deadline.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// Answered with something that is not valid MCP.
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    /// The upstream ended its session; the connection must be re-established.
    #[error("upstream session expired")]
    SessionExpired,
    /// The message does not match the permit it was sent with (a gateway
    /// fault: nothing was sent).
    #[error("not permitted: {0} does not match its authorization")]
    NotPermitted(String),
}

impl UpstreamError {
    /// The JSON-RPC error a client sees, naming the upstream.
    pub fn to_error_object(&self, upstream: &str) -> ErrorObject {
        let code = match self {
            UpstreamError::Timeout(_) => codes::UPSTREAM_TIMEOUT,
            UpstreamError::NotPermitted(_) => codes::INTERNAL_ERROR,
            UpstreamError::Unavailable(_)
            | UpstreamError::Protocol(_)
            | UpstreamError::SessionExpired => codes::UPSTREAM_UNAVAILABLE,
        };
        ErrorObject::with_data(
            code,
            format!("upstream {upstream:?}: {self}"),
            json!({ "upstream": upstream }),
        )
    }
}

/// What the client said in its `initialize` (or, on the stateless lane, its
/// per-request `_meta`), passed on to upstreams so they see the real client.
#[derive(Debug, Clone)]
pub struct ClientHello {
    /// The client's protocol revision.
    pub version: ProtocolVersion,
    /// The client's capabilities object.
    pub capabilities: Value,
    /// The client's self-reported info.
    pub client_info: Value,
}

/// Which eras an upstream speaks (fixed once known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eras {
    /// Answers `initialize` (2025-era sessions).
    pub legacy: bool,
    /// Answers `server/discover` for 2026-07-28 (stateless).
    pub modern: bool,
}

impl Eras {
    /// The wire era to use for a client of `want`: its own when supported.
    pub fn choose(self, want: Era) -> Era {
        match want {
            Era::Legacy if self.legacy => Era::Legacy,
            Era::Modern if self.modern => Era::Modern,
            Era::Legacy => Era::Modern,
            Era::Modern => Era::Legacy,
        }
    }
}

/// Restart backoff shared by every connection to one upstream.
#[derive(Debug)]
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

/// The gateway's own credential towards one upstream (C2.1): a static token, or
/// tokens from an OAuth grant. The client's token is never among them; for token
/// exchange it is only the *subject* presented to the gateway's issuer.
#[derive(Clone, Default)]
pub struct Creds {
    /// What kind.
    pub kind: CredKind,
    /// Upstream name, for audit records.
    pub upstream: String,
    /// Latest client tokens (token exchange).
    pub subjects: Option<Arc<crate::transport::auth::SubjectTokens>>,
    /// Where issuance events go.
    pub audit: Option<Arc<dyn crate::audit::AuditSink>>,
    /// Token exchange: the gateway's own client-credentials source at the
    /// same issuer, for its inventories (see [`GATEWAY_PRINCIPAL`]).
    pub own: Option<Arc<bastion_auth::TokenSource>>,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds")
            .field("kind", &self.kind)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// The credential kinds.
#[derive(Debug, Clone, Default)]
pub enum CredKind {
    /// None (or only configured static headers).
    #[default]
    None,
    /// `Authorization: Bearer <secret>`.
    Static(crate::config::secret::Secret),
    /// Client credentials or token exchange.
    OAuth(Arc<bastion_auth::TokenSource>),
}

/// The principal the gateway's own traffic runs as (start-up and periodic
/// inventories, revision probes). No client principal can have this form:
/// theirs are "issuer subject", with a space.
pub const GATEWAY_PRINCIPAL: &str = "bastion-integrity-monitor";

impl Creds {
    /// The `Authorization` value for a request made on behalf of `principal`.
    pub async fn header(
        &self,
        principal: Option<&str>,
    ) -> Result<Option<reqwest::header::HeaderValue>, UpstreamError> {
        let token = match &self.kind {
            CredKind::None => return Ok(None),
            CredKind::Static(s) => s.clone(),
            CredKind::OAuth(src) => match src.grant() {
                bastion_auth::GrantKind::ClientCredentials => {
                    self.fetch(src, None, principal).await?
                }
                // The gateway's own traffic to a token-exchange upstream has
                // no client token behind it: it uses the gateway's own
                // client-credentials token from the same client and issuer.
                bastion_auth::GrantKind::TokenExchange if principal == Some(GATEWAY_PRINCIPAL) => {
                    let own = self.own.as_ref().ok_or_else(|| {
                        UpstreamError::Unavailable("no credential of the gateway's own".into())
                    })?;
                    self.fetch(own, None, principal).await?
                }
                bastion_auth::GrantKind::TokenExchange => {
                    // The request's own token when one is being served (a
                    // client request, or a task spawned for it); the
                    // principal's latest only for background traffic with no
                    // request behind it (e.g. a GET stream's upstream
                    // reconnect), so one request never runs on another's
                    // credential.
                    let subject = crate::transport::auth::current_subject().or_else(|| {
                        principal.and_then(|p| self.subjects.as_ref().and_then(|m| m.get(p)))
                    });
                    let Some(subject) = subject else {
                        return Err(UpstreamError::Unavailable(
                            "no current client token to exchange for an upstream token".into(),
                        ));
                    };
                    self.fetch(src, Some(&subject), principal).await?
                }
            },
        };
        let mut v =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| {
                    UpstreamError::Unavailable("upstream credential is not a valid header".into())
                })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }

    /// Whether the gateway can obtain its own credential for this upstream
    /// (what its inventories use); `Err` says why not.
    pub async fn check_own(&self) -> Result<(), UpstreamError> {
        self.header(Some(GATEWAY_PRINCIPAL)).await.map(|_| ())
    }

    /// A token from `src` (audited when freshly issued or refused).
    async fn fetch(
        &self,
        src: &bastion_auth::TokenSource,
        subject: Option<&crate::config::secret::Secret>,
        principal: Option<&str>,
    ) -> Result<crate::config::secret::Secret, UpstreamError> {
        let r = src.token(subject).await;
        if let Some(a) = &self.audit
            && (r.as_ref().is_ok_and(|i| i.fresh) || r.is_err())
        {
            let mut ev = crate::audit::AuditEvent::new(
                crate::audit::EventKind::Credential,
                if r.is_ok() {
                    crate::audit::Outcome::Ok
                } else {
                    crate::audit::Outcome::Error
                },
            );
            ev.upstream = Some(self.upstream.clone());
            ev.credential = Some(src.grant().as_str());
            ev.principal = principal
                .and_then(|p| p.split_once(' '))
                .map(|(_, sub)| sub.to_owned());
            match &r {
                Ok(i) => ev.reason = Some(format!("issued, expires in {} s", i.expires_in)),
                Err(e) => ev.reason = Some(e.to_string()),
            }
            a.emit(ev);
        }
        r.map(|i| i.token).map_err(|e| {
            UpstreamError::Unavailable(format!("cannot obtain the upstream credential: {e}"))
        })
    }
}

/// The most rounds of `input_required` the gateway drives for a 2025-era client
/// before giving up (a loop guard; the TypeScript SDK uses 10).
const MAX_INPUT_ROUNDS: usize = 10;

/// One configured upstream.
#[derive(Debug)]
pub struct Upstream {
    /// Position in the configuration (stable id within this process).
    pub index: usize,
    /// Its configuration.
    pub cfg: UpstreamConfig,
    backoff: Mutex<Backoff>,
    http_client: Option<reqwest::Client>,
    /// The eras it speaks, once pinned or detected.
    eras: Mutex<Option<Eras>>,
    /// Serializes detection so concurrent first contacts probe once.
    detecting: tokio::sync::Mutex<()>,
    /// 2026-07-28 connections, one per principal: the revision is stateless, so
    /// every request carries its own envelope and one connection serves all of a
    /// principal's contexts; principals never share one.
    shared: tokio::sync::Mutex<std::collections::HashMap<String, Arc<Conn>>>,
    /// The gateway's own credential for it.
    creds: Creds,
    /// Bumped whenever any connection to it announces a changed list, so
    /// every context re-lists before its next call (tool integrity).
    pub list_changes: Arc<std::sync::atomic::AtomicU64>,
}

/// Counts a `notifications/*/list_changed` toward `changes`.
pub(crate) fn note_list_change(changes: &std::sync::atomic::AtomicU64, msg: &Message) {
    if let Message::Notification(n) = msg
        && n.method.ends_with("/list_changed")
    {
        changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Upstream {
    /// Builds the runtime state for one upstream.
    pub fn new(index: usize, cfg: UpstreamConfig, creds: Creds) -> Result<Self, UpstreamError> {
        let http_client = match &cfg.transport {
            UpstreamTransport::Http { .. } => Some(http::client()?),
            UpstreamTransport::Stdio { .. } => None,
        };
        let eras = match cfg.protocol {
            ProtocolPin::Pinned(v) => Some(match v.era() {
                Era::Legacy => Eras {
                    legacy: true,
                    modern: false,
                },
                Era::Modern => Eras {
                    legacy: false,
                    modern: true,
                },
            }),
            ProtocolPin::Auto => None,
        };
        Ok(Upstream {
            index,
            cfg,
            backoff: Mutex::new(Backoff {
                failures: 0,
                not_before: None,
            }),
            http_client,
            eras: Mutex::new(eras),
            detecting: tokio::sync::Mutex::new(()),
            shared: tokio::sync::Mutex::new(std::collections::HashMap::new()),
            creds,
            list_changes: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        })
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The gateway's credentials towards it.
    pub fn creds(&self) -> &Creds {
        &self.creds
    }

    /// The legacy revision to offer in `initialize`: the pinned one, else the
    /// client's (so the upstream sees what the client speaks).
    fn offer_version(&self, hello: &ClientHello) -> ProtocolVersion {
        if let ProtocolPin::Pinned(v) = self.cfg.protocol
            && v.era() == Era::Legacy
        {
            return v;
        }
        match hello.version.era() {
            Era::Legacy => hello.version,
            Era::Modern => ProtocolVersion::LATEST_LEGACY,
        }
    }

    fn check_backoff(&self) -> Result<(), UpstreamError> {
        let b = self.backoff.lock();
        if let Some(t) = b.not_before {
            let now = Instant::now();
            if now < t {
                return Err(UpstreamError::Unavailable(format!(
                    "restarting after {} failure(s); retry in {} ms",
                    b.failures,
                    t.saturating_duration_since(now).as_millis()
                )));
            }
        }
        Ok(())
    }

    fn record(&self, ok: bool) {
        let mut b = self.backoff.lock();
        if ok {
            b.failures = 0;
            b.not_before = None;
        } else {
            b.failures = b.failures.saturating_add(1);
            // 250 ms doubling up to 30 s: a crash loop costs little, a fixed
            // upstream is back quickly.
            let ms = 250u64.saturating_mul(1 << b.failures.min(7)).min(30_000);
            b.not_before = Instant::now().checked_add(Duration::from_millis(ms));
        }
    }

    fn transport(
        &self,
        unsolicited: UpcallTx,
        principal: Option<&str>,
    ) -> Result<Transport, UpstreamError> {
        Ok(match &self.cfg.transport {
            UpstreamTransport::Http { url, headers } => {
                let client = self
                    .http_client
                    .clone()
                    .ok_or_else(|| UpstreamError::Unavailable("no HTTP client".into()))?;
                Transport::Http(http::HttpConn::new(
                    self.index,
                    client,
                    url.clone(),
                    headers.clone(),
                    self.creds.clone(),
                    principal.map(str::to_owned),
                    unsolicited,
                    self.list_changes.clone(),
                ))
            }
            UpstreamTransport::Stdio { .. } => Transport::Stdio(stdio::StdioConn::spawn(
                self.index,
                &self.cfg,
                unsolicited,
                self.list_changes.clone(),
            )?),
        })
    }

    /// The eras this upstream speaks: pinned, or detected now (once).
    ///
    /// `principal` is whose request caused the probe (a token-exchange upstream
    /// can only be reached on some principal's behalf).
    pub async fn eras(self: &Arc<Self>, principal: Option<&str>) -> Result<Eras, UpstreamError> {
        if let Some(e) = *self.eras.lock() {
            return Ok(e);
        }
        let _g = self.detecting.lock().await;
        if let Some(e) = *self.eras.lock() {
            return Ok(e);
        }
        let probe_hello = ClientHello {
            version: ProtocolVersion::LATEST_LEGACY,
            capabilities: json!({}),
            client_info: json!({"name": "mcp-bastion", "version": env!("CARGO_PKG_VERSION")}),
        };
        // Each probe uses its own connection: a stdio server fixes its era on the
        // first message it reads.
        let modern = match self
            .open(&probe_hello, Era::Modern, sink_nowhere(), principal)
            .await
        {
            Ok(c) => {
                c.close().await;
                true
            }
            Err(_) => false,
        };
        let legacy = match self
            .open(&probe_hello, Era::Legacy, sink_nowhere(), principal)
            .await
        {
            Ok(c) => {
                c.close().await;
                true
            }
            Err(_) => false,
        };
        if !legacy && !modern {
            return Err(UpstreamError::Unavailable(
                "answers neither server/discover (2026-07-28) nor initialize (2025 revisions)"
                    .into(),
            ));
        }
        let e = Eras { legacy, modern };
        tracing::info!(upstream = %self.name(), legacy, modern, "upstream revisions detected and pinned");
        *self.eras.lock() = Some(e);
        Ok(e)
    }

    /// Opens and initializes a new 2025-era connection for one client context.
    pub async fn connect_legacy(
        self: &Arc<Self>,
        hello: &ClientHello,
        unsolicited: UpcallTx,
        principal: &str,
    ) -> Result<Arc<Conn>, UpstreamError> {
        self.check_backoff()?;
        let res = self
            .open(hello, Era::Legacy, unsolicited, Some(principal))
            .await;
        self.record(res.is_ok());
        res
    }

    /// The principal's 2026-07-28 connection, opened on first use or after it died.
    pub async fn modern_conn(
        self: &Arc<Self>,
        principal: &str,
    ) -> Result<Arc<Conn>, UpstreamError> {
        let mut map = self.shared.lock().await;
        if let Some(c) = map.get(principal)
            && c.alive()
        {
            return Ok(c.clone());
        }
        self.check_backoff()?;
        let hello = ClientHello {
            version: ProtocolVersion::V2026_07_28,
            capabilities: json!({}),
            client_info: json!({"name": "mcp-bastion", "version": env!("CARGO_PKG_VERSION")}),
        };
        let res = self
            .open(&hello, Era::Modern, sink_nowhere(), Some(principal))
            .await;
        self.record(res.is_ok());
        let c = res?;
        if let Some(old) = map.insert(principal.to_owned(), c.clone()) {
            old.close().await;
        }
        Ok(c)
    }

    /// Closes every shared 2026-07-28 connection (shutdown).
    pub async fn close_shared(&self) {
        let all: Vec<Arc<Conn>> = self.shared.lock().await.drain().map(|(_, c)| c).collect();
        for c in all {
            c.close().await;
        }
    }

    async fn open(
        self: &Arc<Self>,
        hello: &ClientHello,
        era: Era,
        unsolicited: UpcallTx,
        principal: Option<&str>,
    ) -> Result<Arc<Conn>, UpstreamError> {
        let transport = self.transport(unsolicited, principal)?;
        let version = match era {
            Era::Legacy => self.offer_version(hello),
            Era::Modern => ProtocolVersion::V2026_07_28,
        };
        let conn = Arc::new(Conn {
            upstream: self.clone(),
            transport,
            era,
            hello: hello.clone(),
            next_id: AtomicI64::new(1),
            dead: AtomicBool::new(false),
            init: Mutex::new(Value::Null),
        });
        match era {
            Era::Legacy => conn.handshake_legacy(version).await?,
            Era::Modern => conn.discover().await?,
        }
        Ok(conn)
    }
}

/// The 2026-07-28 per-request `_meta` envelope for `hello`.
pub fn envelope(hello: &ClientHello, log_level: Option<&Value>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(
        meta::PROTOCOL_VERSION.into(),
        Value::from(ProtocolVersion::V2026_07_28.as_str()),
    );
    m.insert(meta::CLIENT_CAPABILITIES.into(), hello.capabilities.clone());
    m.insert(meta::CLIENT_INFO.into(), hello.client_info.clone());
    if let Some(l) = log_level {
        m.insert(meta::LOG_LEVEL.into(), l.clone());
    }
    Value::Object(m)
}

/// A sink for probe connections: nothing they send is wanted.
fn sink_nowhere() -> UpcallTx {
    let (tx, _rx) = mpsc::channel(1);
    tx
}

enum Transport {
    Http(http::HttpConn),
    Stdio(stdio::StdioConn),
}

impl Transport {
    /// A handle that writes one message to the upstream from anywhere (a
    /// drop guard, a spawned task).
    fn writer(&self) -> Option<ReplyPath> {
        Some(match self {
            Transport::Http(h) => ReplyPath::Http(h.shared.clone()),
            Transport::Stdio(s) => ReplyPath::Stdio(s.writer()),
        })
    }
}

/// Sends `notifications/cancelled` for a call dropped before its response.
struct CancelOnDrop {
    writer: Option<ReplyPath>,
    up_id: Id,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(w) = self.writer.take() else { return };
        let n = Message::Notification(Notification {
            method: "notifications/cancelled".into(),
            params: Some(json!({"requestId": self.up_id.to_value(), "reason": "cancelled"})),
        });
        // Best effort, off the dropping task (which may be aborting).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = w.send_message(n).await;
            });
        }
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Http(_) => f.write_str("Http"),
            Transport::Stdio(_) => f.write_str("Stdio"),
        }
    }
}

/// One MCP connection to an upstream: an initialized 2025-era session, or a
/// 2026-07-28 stateless channel carrying one client context's envelope.
#[derive(Debug)]
pub struct Conn {
    /// The upstream.
    pub upstream: Arc<Upstream>,
    transport: Transport,
    /// The era spoken on this connection's wire.
    pub era: Era,
    /// What the gateway said in `initialize` (2025-era connections).
    hello: ClientHello,
    next_id: AtomicI64,
    dead: AtomicBool,
    init: Mutex<Value>,
}

impl Conn {
    async fn handshake_legacy(&self, offered: ProtocolVersion) -> Result<(), UpstreamError> {
        let init = Request {
            id: Id::Num(0),
            method: "initialize".into(),
            params: Some(json!({
                "protocolVersion": offered.as_str(),
                "capabilities": self.hello.capabilities,
                "clientInfo": self.hello.client_info,
            })),
        };
        let resp = self.call(init, None, &[], false).await?;
        let result = resp.outcome.map_err(|e| {
            UpstreamError::Protocol(format!("initialize refused with code {}", e.code))
        })?;
        let negotiated = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .and_then(ProtocolVersion::parse)
            .filter(|v| v.era() == Era::Legacy)
            .ok_or_else(|| {
                UpstreamError::Protocol(
                    "initialize answered with an unsupported protocolVersion".into(),
                )
            })?;
        if let Transport::Http(h) = &self.transport {
            h.shared.set_version(negotiated);
        }
        *self.init.lock() = result;
        self.notify(Notification {
            method: "notifications/initialized".into(),
            params: None,
        })
        .await?;
        if let Transport::Http(h) = &self.transport {
            h.start_listening();
        }
        Ok(())
    }

    /// 2026-07-28: no handshake; `server/discover` tells capabilities.
    async fn discover(&self) -> Result<(), UpstreamError> {
        let req = Request {
            id: Id::Num(0),
            method: "server/discover".into(),
            params: Some(json!({"_meta": envelope(&self.hello, None)})),
        };
        let resp = self.call(req, None, &[], false).await?;
        let result = resp.outcome.map_err(|e| {
            UpstreamError::Protocol(format!("server/discover refused with code {}", e.code))
        })?;
        let supported = result
            .get("supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|v| {
                v.iter()
                    .any(|s| s.as_str() == Some(ProtocolVersion::V2026_07_28.as_str()))
            });
        if !supported {
            return Err(UpstreamError::Protocol(
                "server/discover does not list 2026-07-28".into(),
            ));
        }
        let mut init = json!({
            "capabilities": result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        });
        if let Some(obj) = init.as_object_mut() {
            if let Some(i) = result.get("instructions") {
                obj.insert("instructions".into(), i.clone());
            }
            if let Some(si) = meta::meta(Some(&result)).and_then(|m| m.get(meta::SERVER_INFO)) {
                obj.insert("serverInfo".into(), si.clone());
            }
        }
        *self.init.lock() = init;
        Ok(())
    }

    /// Whether the connection can still be used.
    pub fn alive(&self) -> bool {
        !self.dead.load(Ordering::SeqCst)
            && match &self.transport {
                Transport::Http(h) => h.alive(),
                Transport::Stdio(s) => s.alive(),
            }
    }

    /// The upstream's `initialize` result (or the equivalent from `server/discover`).
    pub fn init_result(&self) -> Value {
        self.init.lock().clone()
    }

    /// Whether the upstream declared capability `cap` (e.g. `tools`).
    pub fn has_capability(&self, cap: &str) -> bool {
        self.init
            .lock()
            .get("capabilities")
            .and_then(|c| c.get(cap))
            .is_some_and(|v| !v.is_null())
    }

    /// Sends `req` under `pass` and waits for its response, delivering
    /// related upcalls to `events`. `headers` are extra HTTP headers for this
    /// request (mirrored `Mcp-Param-*`). On a 2026-07-28 connection serving a
    /// 2025-era client (`ask_client`), `input_required` rounds are driven here
    /// by asking the client through server requests. The response carries
    /// `req`'s original id. A message the pass does not admit is not sent.
    pub async fn send(
        &self,
        pass: Pass<'_>,
        req: Request,
        events: Option<UpcallTx>,
        headers: &[(::http::HeaderName, ::http::HeaderValue)],
        ask_client: bool,
    ) -> Result<Response, UpstreamError> {
        pass.admits(self.upstream.index, &req.method, req.params.as_ref())?;
        self.call(req, events, headers, ask_client).await
    }

    /// Sends a client notification under `pass` (2025-era connections only:
    /// 2026-07-28 defines none from client to server over HTTP).
    pub async fn send_notification(
        &self,
        pass: Pass<'_>,
        n: Notification,
    ) -> Result<(), UpstreamError> {
        pass.admits(self.upstream.index, &n.method, n.params.as_ref())?;
        self.notify(n).await
    }

    async fn call(
        &self,
        req: Request,
        events: Option<UpcallTx>,
        headers: &[(::http::HeaderName, ::http::HeaderValue)],
        ask_client: bool,
    ) -> Result<Response, UpstreamError> {
        if self.era == Era::Legacy || !ask_client {
            return self.call_once(req, events, headers).await;
        }
        let mut req = req;
        for _ in 0..MAX_INPUT_ROUNDS {
            let resp = self.call_once(req.clone(), events.clone(), headers).await?;
            let Ok(result) = &resp.outcome else {
                return Ok(resp);
            };
            if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
                return Ok(resp);
            }
            let answers = self.ask_client(result, events.as_ref()).await?;
            let Some(p) = req.params.as_mut().and_then(Value::as_object_mut) else {
                return Ok(resp);
            };
            p.insert("inputResponses".into(), answers);
            match result.get("requestState") {
                Some(s) => p.insert("requestState".into(), s.clone()),
                None => p.remove("requestState"),
            };
        }
        Err(UpstreamError::Protocol(format!(
            "upstream asked for input more than {MAX_INPUT_ROUNDS} times"
        )))
    }

    /// Sends each of an `input_required` result's requests to the 2025-era client
    /// as a server request and collects the answers by key.
    async fn ask_client(
        &self,
        result: &Value,
        events: Option<&UpcallTx>,
    ) -> Result<Value, UpstreamError> {
        let mut waits = Vec::new();
        if let Some(reqs) = result.get("inputRequests").and_then(Value::as_object) {
            for (key, r) in reqs {
                let Some(method) = r.get("method").and_then(Value::as_str) else {
                    continue;
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let up = Upcall {
                    upstream: self.upstream.index,
                    reply: ReplyPath::Local(Arc::new(Mutex::new(Some(tx)))),
                    msg: Message::Request(Request {
                        id: Id::Str(key.clone()),
                        method: method.to_owned(),
                        params: r.get("params").cloned(),
                    }),
                };
                let sink = events.ok_or_else(|| {
                    UpstreamError::Protocol(
                        "upstream asked for input on a request that cannot carry it".into(),
                    )
                })?;
                sink.send(up)
                    .await
                    .map_err(|_| UpstreamError::Unavailable("client went away".into()))?;
                waits.push((key.clone(), rx));
            }
        }
        let mut answers = serde_json::Map::new();
        for (key, rx) in waits {
            // A refusal or no answer leaves the key out: the upstream decides.
            if let Ok(Ok(Response { outcome: Ok(v), .. })) =
                tokio::time::timeout(self.upstream.cfg.timeout, rx).await
            {
                answers.insert(key, v);
            }
        }
        Ok(Value::Object(answers))
    }

    async fn call_once(
        &self,
        mut req: Request,
        events: Option<UpcallTx>,
        headers: &[(::http::HeaderName, ::http::HeaderValue)],
    ) -> Result<Response, UpstreamError> {
        let client_id = std::mem::replace(
            &mut req.id,
            Id::Num(self.next_id.fetch_add(1, Ordering::Relaxed)),
        );
        let up_id = req.id.clone();
        let deadline = self.upstream.cfg.timeout;
        let modern = self.era == Era::Modern;
        // A call that ends without its response (timed out, or its request
        // cancelled by the client, which drops this future) tells a 2025-era
        // upstream to stop working on it. 2026-07-28 has no such message:
        // closing the request's HTTP exchange cancels it.
        let mut guard = CancelOnDrop {
            writer: (!modern).then(|| self.transport.writer()).flatten(),
            up_id: up_id.clone(),
        };
        let fut = async {
            match &self.transport {
                Transport::Http(h) => h.call(req, events, headers, modern).await,
                Transport::Stdio(s) => s.call(req, events).await,
            }
        };
        let res = match tokio::time::timeout(deadline, fut).await {
            Ok(r) => {
                guard.writer = None;
                r
            }
            Err(_) => Err(UpstreamError::Timeout(deadline)),
        };
        drop(guard);
        match res {
            Ok(mut resp) => {
                resp.id = Some(client_id);
                Ok(resp)
            }
            Err(e) => {
                if matches!(e, UpstreamError::SessionExpired) {
                    self.dead.store(true, Ordering::SeqCst);
                }
                Err(e)
            }
        }
    }

    /// Sends a notification (2025-era connections only: 2026-07-28 defines none
    /// from client to server over HTTP).
    async fn notify(&self, n: Notification) -> Result<(), UpstreamError> {
        if self.era == Era::Modern {
            return Ok(());
        }
        let msg = Message::Notification(n);
        match &self.transport {
            Transport::Http(h) => h.shared.post_no_reply(&msg).await,
            Transport::Stdio(s) => s.send(&msg).await,
        }
    }

    /// Ends the connection: DELETE the HTTP session or stop the child.
    pub async fn close(&self) {
        self.dead.store(true, Ordering::SeqCst);
        match &self.transport {
            Transport::Http(h) => h.close().await,
            Transport::Stdio(s) => s.close(),
        }
    }
}

/// The gateway's own implementation info (its `serverInfo` to clients, its
/// `clientInfo` to upstreams on its own connections).
pub fn server_info() -> serde_json::Value {
    serde_json::json!({"name": "mcp-bastion", "title": "mcp-bastion MCP security gateway", "version": env!("CARGO_PKG_VERSION")})
}

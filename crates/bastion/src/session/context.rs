//! Client contexts: what the gateway holds for one client.
//!
//! A [`Context`] is one client's view of the upstreams: its own upstream
//! connections (opened on demand), the names it has been shown and where they
//! route, and the server-initiated requests waiting for its answer. A legacy
//! [`Session`] wraps a context with the session id and negotiated revision; on the
//! stateless lane a context is keyed by principal and declared capabilities.
//!
//! Invariants:
//! - a context's connections are used by that context only;
//! - a server-initiated request is forwarded under a context-unique id, and the
//!   client's answer is accepted only for an id this context issued (an answer to
//!   anything else is refused, not relayed);
//! - routes are rebuilt from each list result, and a name two upstreams both
//!   claim is withheld (fail closed) rather than routed to either.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Instant;

use bastion_proto::{Era, Id, ProtocolVersion, Request, Response};
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use crate::upstream::{ClientHello, Conn, ReplyPath, Upcall, UpcallTx, Upstream, UpstreamError};

/// What a legacy session is bound to at creation, beyond its principal
/// (issuer and subject, in the context): requests that differ are refused or
/// flagged (C3.2, C3.3).
#[derive(Debug, Clone)]
pub struct Binding {
    /// The OAuth client the session was created by.
    pub client_id: Option<String>,
    /// The scopes it was created with; a request bringing more is an escalation.
    pub scopes: BTreeSet<String>,
    /// `Origin` at creation.
    pub origin: Option<String>,
    /// `User-Agent` at creation.
    pub user_agent: Option<String>,
    /// Client address at creation.
    pub client_ip: Option<std::net::IpAddr>,
    /// When it was created (absolute timeout).
    pub created: Instant,
}

/// A server-initiated request waiting for the client's answer.
#[derive(Debug)]
pub struct PendingServerRequest {
    /// Which upstream asked.
    pub upstream: usize,
    /// How to answer it.
    pub reply: ReplyPath,
    /// The upstream's own id for it.
    pub upstream_id: Id,
    /// Its method.
    pub method: String,
    /// The progress token it carries, if any (the client may report
    /// progress on it, to that upstream only).
    pub progress_token: Option<serde_json::Value>,
}

/// Where an exposed tool routes, and which arguments it mirrors into headers.
#[derive(Debug, Clone)]
pub struct ToolRoute {
    /// Upstream index.
    pub upstream: usize,
    /// The upstream's own name for it.
    pub name: String,
    /// Its `x-mcp-header` annotations (2026-07-28 `Mcp-Param-*`).
    pub params: Vec<bastion_proto::headers::ParamHeader>,
    /// The annotation hints the upstream set to true (untrusted; for policies).
    pub annotations: Vec<String>,
    /// Hash of the definition this context last listed (empty: not listed).
    pub hash: String,
}

/// Where exposed names route.
#[derive(Debug, Default)]
pub struct Routes {
    /// Exposed tool name → route.
    pub tools: HashMap<String, ToolRoute>,
    /// Exposed prompt name → (upstream, upstream's name, definition hash).
    pub prompts: HashMap<String, (usize, String, String)>,
    /// Canonical resource URI → the upstreams that list it.
    pub resources: HashMap<String, BTreeSet<usize>>,
    /// URI-template literal prefix → the upstreams that declare it.
    pub templates: BTreeMap<String, BTreeSet<usize>>,
    /// Whether every upstream this context may list has had its resources
    /// and templates listed (claims are complete); cleared on a change.
    pub resources_complete: bool,
    /// When each upstream's tools were last listed in this context, and the
    /// upstream's list-change count then.
    pub tools_listed: HashMap<usize, (std::time::Instant, u64)>,
}

impl Routes {
    /// The upstreams that claim `uri`: those that list it, and those with a
    /// template whose (non-empty) literal prefix it starts with.
    pub fn claimants(&self, uri: &str) -> BTreeSet<usize> {
        let mut out = self.resources.get(uri).cloned().unwrap_or_default();
        for (prefix, ups) in &self.templates {
            if !prefix.is_empty() && uri.starts_with(prefix.as_str()) {
                out.extend(ups);
            }
        }
        out
    }

    /// Whether a template of upstream `idx` with literal prefix `prefix`
    /// shares its namespace with another upstream's template (one prefix
    /// starts with the other): then neither owns it.
    pub fn template_contested(&self, idx: usize, prefix: &str) -> bool {
        self.templates.iter().any(|(p, ups)| {
            (p.starts_with(prefix) || prefix.starts_with(p.as_str()))
                && !p.is_empty()
                && !prefix.is_empty()
                && ups.iter().any(|u| *u != idx)
        })
    }

    /// Forgets upstream `idx`'s resource and template claims (re-listed).
    pub fn forget_resources(&mut self, idx: usize) {
        for ups in self
            .resources
            .values_mut()
            .chain(self.templates.values_mut())
        {
            ups.remove(&idx);
        }
        self.resources.retain(|_, u| !u.is_empty());
        self.templates.retain(|_, u| !u.is_empty());
        self.resources_complete = false;
    }
}

/// One client's view of the upstreams.
#[derive(Debug)]
pub struct Context {
    /// The era this context's client speaks.
    pub era: Era,
    /// Who the client is (shared 2026-07-28 upstream connections are per principal).
    pub principal: String,
    /// Log level a 2025-era client set, sent as `_meta` logLevel to 2026-07-28 upstreams.
    pub log_level: Mutex<Option<serde_json::Value>>,
    hello: RwLock<ClientHello>,
    slots: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    unsolicited_tx: UpcallTx,
    /// Receiver of messages that belong to no call (GET stream / listen stream).
    pub unsolicited_rx: tokio::sync::Mutex<mpsc::Receiver<Upcall>>,
    server_requests: Mutex<HashMap<Id, PendingServerRequest>>,
    next_server_request: AtomicI64,
    /// Where exposed names route.
    pub routes: RwLock<Routes>,
    /// Client request id → the task serving it, stopped when the client cancels.
    tasks: Mutex<HashMap<Id, tokio::task::AbortHandle>>,
    last_used: Mutex<Instant>,
    closed: AtomicBool,
    /// Risk the session has accumulated (detections add to it); policies see
    /// it as `context.session_risk`.
    risk: AtomicI64,
    /// Resource URIs this context subscribed to upstream (bounded).
    subscriptions: Mutex<BTreeSet<String>>,
}

/// Upstream resource subscriptions one context may hold.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// Server requests one context may have waiting for its client's answer.
pub const MAX_PENDING_SERVER_REQUESTS: usize = 64;

/// Outstanding unsolicited messages kept while no stream is open to take them.
const UNSOLICITED_BUFFER: usize = 256;

impl Context {
    /// A context with one (empty) connection slot per upstream.
    pub fn new(hello: ClientHello, upstreams: usize, era: Era, principal: &str) -> Self {
        let (tx, rx) = mpsc::channel(UNSOLICITED_BUFFER);
        Context {
            era,
            principal: principal.to_owned(),
            log_level: Mutex::new(None),
            hello: RwLock::new(hello),
            slots: (0..upstreams)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            unsolicited_tx: tx,
            unsolicited_rx: tokio::sync::Mutex::new(rx),
            server_requests: Mutex::new(HashMap::new()),
            next_server_request: AtomicI64::new(1),
            routes: RwLock::new(Routes::default()),
            tasks: Mutex::new(HashMap::new()),
            last_used: Mutex::new(Instant::now()),
            closed: AtomicBool::new(false),
            risk: AtomicI64::new(0),
            subscriptions: Mutex::new(BTreeSet::new()),
        }
    }

    /// The risk the session has accumulated so far.
    pub fn risk(&self) -> i64 {
        self.risk.load(Ordering::Relaxed)
    }

    /// Adds to the session's risk (saturating).
    pub fn add_risk(&self, n: i64) {
        let _ = self
            .risk
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                Some(r.saturating_add(n))
            });
    }

    /// Records a subscription to `uri`; `false` when the context already
    /// holds [`MAX_SUBSCRIPTIONS`] others.
    pub fn subscribe(&self, uri: &str) -> bool {
        let mut s = self.subscriptions.lock();
        if s.contains(uri) {
            return true;
        }
        if s.len() >= MAX_SUBSCRIPTIONS {
            return false;
        }
        s.insert(uri.to_owned());
        true
    }

    /// Forgets a subscription.
    pub fn unsubscribe(&self, uri: &str) {
        self.subscriptions.lock().remove(uri);
    }

    /// Marks the context used now (idle expiry).
    pub fn touch(&self) {
        *self.last_used.lock() = Instant::now();
    }

    /// When it was last used.
    pub fn last_used(&self) -> Instant {
        *self.last_used.lock()
    }

    /// The client's hello.
    pub fn hello(&self) -> ClientHello {
        self.hello.read().clone()
    }

    /// The connection to `up`, opened now if there is none or the last one died:
    /// the upstream's 2026-07-28 connection for this principal when that is the
    /// era to speak, else this context's own 2025-era session.
    pub async fn conn(&self, up: &Arc<Upstream>) -> Result<Arc<Conn>, UpstreamError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(UpstreamError::Unavailable("client context closed".into()));
        }
        if up.eras(Some(&self.principal)).await?.choose(self.era) == Era::Modern {
            return up.modern_conn(&self.principal).await;
        }
        let slot = self
            .slots
            .get(up.index)
            .ok_or_else(|| UpstreamError::Unavailable("unknown upstream".into()))?;
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref()
            && c.alive()
        {
            return Ok(c.clone());
        }
        if let Some(old) = guard.take() {
            old.close().await;
        }
        let hello = self.hello();
        let conn = up
            .connect_legacy(&hello, self.unsolicited_tx.clone(), &self.principal)
            .await?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// The connection to upstream `index` if one is open and alive.
    pub async fn existing_conn(&self, index: usize) -> Option<Arc<Conn>> {
        let slot = self.slots.get(index)?;
        let g = slot.lock().await;
        g.as_ref().filter(|c| c.alive()).cloned()
    }

    /// Records a server-initiated request and returns the id the client sees.
    /// Bounded: a context holds at most [`MAX_PENDING_SERVER_REQUESTS`];
    /// beyond that, `None` (the upstream is refused).
    pub fn register_server_request(
        &self,
        upstream: usize,
        reply: ReplyPath,
        r: &Request,
    ) -> Option<Id> {
        let id = Id::Str(format!(
            "bastion-{}",
            self.next_server_request.fetch_add(1, Ordering::Relaxed)
        ));
        let mut m = self.server_requests.lock();
        if m.len() >= MAX_PENDING_SERVER_REQUESTS {
            return None;
        }
        m.insert(
            id.clone(),
            PendingServerRequest {
                upstream,
                reply,
                upstream_id: r.id.clone(),
                method: r.method.clone(),
                progress_token: bastion_proto::meta::meta(r.params.as_ref())
                    .and_then(|m| m.get("progressToken"))
                    .cloned(),
            },
        );
        Some(id)
    }

    /// The upstream whose pending server request carries progress `token`.
    pub fn server_request_upstream(&self, token: &serde_json::Value) -> Option<usize> {
        self.server_requests
            .lock()
            .values()
            .find(|p| p.progress_token.as_ref() == Some(token))
            .map(|p| p.upstream)
    }

    /// Takes the pending server request the client is answering.
    pub fn take_server_request(&self, id: &Id) -> Option<PendingServerRequest> {
        self.server_requests.lock().remove(id)
    }

    /// Rewrites an upstream request for the client (fresh id, remembered);
    /// `None` when too many are pending.
    pub fn forward_server_request(
        &self,
        upcall_upstream: usize,
        reply: ReplyPath,
        mut r: Request,
    ) -> Option<Request> {
        r.id = self.register_server_request(upcall_upstream, reply, &r)?;
        Some(r)
    }

    /// Spawns the task serving client request `id` and records it so a
    /// cancellation can stop it. The map is held while spawning, so the task's
    /// own removal (`take_task` at its end) always comes after the insertion.
    pub fn spawn_tracked<T: Send + 'static>(
        &self,
        id: &Id,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        let mut tasks = self.tasks.lock();
        let task = tokio::spawn(crate::transport::auth::carry(fut));
        tasks.insert(id.clone(), task.abort_handle());
        task
    }

    /// Forgets (and returns) the task serving client request `id`.
    pub fn take_task(&self, id: &Id) -> Option<tokio::task::AbortHandle> {
        self.tasks.lock().remove(id)
    }

    /// Closes every upstream connection (DELETE / kill).
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for slot in &self.slots {
            if let Some(c) = slot.lock().await.take() {
                c.close().await;
            }
        }
        // Fail the upstream's pending server requests: nobody will answer them.
        let pending: Vec<PendingServerRequest> = self
            .server_requests
            .lock()
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in pending {
            let _ = p
                .reply
                .send(Response::error(
                    Some(p.upstream_id),
                    bastion_proto::ErrorObject::new(
                        bastion_proto::codes::INTERNAL_ERROR,
                        "client session ended",
                    ),
                ))
                .await;
        }
    }
}

/// A legacy-lane session.
#[derive(Debug)]
pub struct Session {
    /// The id the client sends in `Mcp-Session-Id`.
    pub id: String,
    /// What the session was bound to when it was created.
    pub binding: Binding,
    /// Digest of the id for audit events.
    pub digest: String,
    /// The negotiated revision.
    pub version: ProtocolVersion,
    /// The client's context.
    pub ctx: Context,
    /// Whether a GET stream is open (one at a time).
    pub listening: AtomicBool,
    /// Logs of its SSE streams, for resumption.
    pub streams: crate::transport::streams::StreamLogs,
}

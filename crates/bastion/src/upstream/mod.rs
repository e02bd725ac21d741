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
//!   started on next use, no sooner than the upstream's restart backoff allows.

pub mod http;
pub mod stdio;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bastion_proto::{
    ErrorObject, Id, Message, Notification, ProtocolVersion, Request, Response, codes,
};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::{ProtocolPin, UpstreamConfig, UpstreamTransport};

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
}

impl ReplyPath {
    /// Sends a response (to a server-initiated request) upstream.
    pub async fn send(&self, resp: Response) -> Result<(), UpstreamError> {
        let msg = Message::Response(resp);
        match self {
            ReplyPath::Http(h) => h.post_no_reply(&msg).await,
            ReplyPath::Stdio(tx) => tx
                .send(stdio::frame(&msg))
                .await
                .map_err(|_| UpstreamError::Unavailable("the upstream process has exited".into())),
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
}

impl UpstreamError {
    /// The JSON-RPC error a client sees, naming the upstream.
    pub fn to_error_object(&self, upstream: &str) -> ErrorObject {
        let code = match self {
            UpstreamError::Timeout(_) => codes::UPSTREAM_TIMEOUT,
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

/// Restart backoff shared by every connection to one upstream.
#[derive(Debug)]
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

/// One configured upstream.
#[derive(Debug)]
pub struct Upstream {
    /// Position in the configuration (stable id within this process).
    pub index: usize,
    /// Its configuration.
    pub cfg: UpstreamConfig,
    backoff: Mutex<Backoff>,
    http_client: Option<reqwest::Client>,
    /// The revision negotiated on first contact (pinned afterwards).
    pinned: Mutex<Option<ProtocolVersion>>,
}

impl Upstream {
    /// Builds the runtime state for one upstream.
    pub fn new(index: usize, cfg: UpstreamConfig) -> Result<Self, UpstreamError> {
        let http_client = match &cfg.transport {
            UpstreamTransport::Http { .. } => Some(http::client()?),
            UpstreamTransport::Stdio { .. } => None,
        };
        let pinned = match cfg.protocol {
            ProtocolPin::Pinned(v) => Some(v),
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
            pinned: Mutex::new(pinned),
        })
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The revision to offer in `initialize`: the pinned one, else the client's
    /// (legacy revisions pass through so the upstream sees what the client speaks).
    fn offer_version(&self, hello: &ClientHello) -> ProtocolVersion {
        if let Some(v) = *self.pinned.lock() {
            return v;
        }
        match hello.version.era() {
            bastion_proto::Era::Legacy => hello.version,
            bastion_proto::Era::Modern => ProtocolVersion::LATEST_LEGACY,
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
                    (t - now).as_millis()
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
            b.not_before = Some(Instant::now() + Duration::from_millis(ms));
        }
    }

    /// Opens and initializes a new connection for one client context.
    pub async fn connect(
        self: &Arc<Self>,
        hello: &ClientHello,
        unsolicited: UpcallTx,
    ) -> Result<Arc<Conn>, UpstreamError> {
        self.check_backoff()?;
        let res = self.connect_inner(hello, unsolicited).await;
        self.record(res.is_ok());
        res
    }

    async fn connect_inner(
        self: &Arc<Self>,
        hello: &ClientHello,
        unsolicited: UpcallTx,
    ) -> Result<Arc<Conn>, UpstreamError> {
        let transport = match &self.cfg.transport {
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
                    unsolicited.clone(),
                ))
            }
            UpstreamTransport::Stdio { .. } => Transport::Stdio(stdio::StdioConn::spawn(
                self.index,
                &self.cfg,
                unsolicited.clone(),
            )?),
        };
        let conn = Arc::new(Conn {
            upstream: self.clone(),
            transport,
            next_id: AtomicI64::new(1),
            dead: AtomicBool::new(false),
            version: Mutex::new(self.offer_version(hello)),
            init: Mutex::new(Value::Null),
            inflight: Mutex::new(std::collections::HashMap::new()),
        });
        let offered = self.offer_version(hello);
        let init = Request {
            id: Id::Num(0),
            method: "initialize".into(),
            params: Some(json!({
                "protocolVersion": offered.as_str(),
                "capabilities": hello.capabilities,
                "clientInfo": hello.client_info,
            })),
        };
        let resp = conn.call(init, None).await?;
        let result = resp.outcome.map_err(|e| {
            UpstreamError::Protocol(format!("initialize refused with code {}", e.code))
        })?;
        let negotiated = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .and_then(ProtocolVersion::parse)
            .filter(|v| v.era() == bastion_proto::Era::Legacy)
            .ok_or_else(|| {
                UpstreamError::Protocol(
                    "initialize answered with an unsupported protocolVersion".into(),
                )
            })?;
        {
            let mut pinned = self.pinned.lock();
            if pinned.is_none() {
                *pinned = Some(negotiated);
                tracing::info!(upstream = %self.name(), version = %negotiated, "upstream revision detected and pinned");
            }
        }
        *conn.version.lock() = negotiated;
        if let Transport::Http(h) = &conn.transport {
            h.shared.set_version(negotiated);
        }
        *conn.init.lock() = result;
        conn.notify(Notification {
            method: "notifications/initialized".into(),
            params: None,
        })
        .await?;
        if let Transport::Http(h) = &conn.transport {
            h.start_listening();
        }
        Ok(conn)
    }
}

enum Transport {
    Http(http::HttpConn),
    Stdio(stdio::StdioConn),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Http(_) => f.write_str("Http"),
            Transport::Stdio(_) => f.write_str("Stdio"),
        }
    }
}

/// One initialized MCP connection to an upstream.
#[derive(Debug)]
pub struct Conn {
    /// The upstream.
    pub upstream: Arc<Upstream>,
    transport: Transport,
    next_id: AtomicI64,
    dead: AtomicBool,
    version: Mutex<ProtocolVersion>,
    init: Mutex<Value>,
    /// Client id → upstream id of requests in flight, for cancellation.
    inflight: Mutex<std::collections::HashMap<Id, Id>>,
}

impl Conn {
    /// Whether the connection can still be used.
    pub fn alive(&self) -> bool {
        !self.dead.load(Ordering::SeqCst)
            && match &self.transport {
                Transport::Http(h) => h.alive(),
                Transport::Stdio(s) => s.alive(),
            }
    }

    /// The upstream's `initialize` result (capabilities, serverInfo, instructions).
    pub fn init_result(&self) -> Value {
        self.init.lock().clone()
    }

    /// The negotiated revision.
    pub fn version(&self) -> ProtocolVersion {
        *self.version.lock()
    }

    /// Whether the upstream declared capability `cap` (e.g. `tools`).
    pub fn has_capability(&self, cap: &str) -> bool {
        self.init
            .lock()
            .get("capabilities")
            .and_then(|c| c.get(cap))
            .is_some_and(|v| !v.is_null())
    }

    /// How to answer this connection's server-initiated requests.
    pub fn reply_path(&self) -> ReplyPath {
        match &self.transport {
            Transport::Http(h) => ReplyPath::Http(h.shared.clone()),
            Transport::Stdio(s) => ReplyPath::Stdio(s.writer()),
        }
    }

    /// Sends `req` and waits for its response, delivering related upcalls to
    /// `events`. The response carries `req`'s original id.
    pub async fn call(
        &self,
        mut req: Request,
        events: Option<UpcallTx>,
    ) -> Result<Response, UpstreamError> {
        let client_id = std::mem::replace(
            &mut req.id,
            Id::Num(self.next_id.fetch_add(1, Ordering::Relaxed)),
        );
        let up_id = req.id.clone();
        self.inflight
            .lock()
            .insert(client_id.clone(), up_id.clone());
        let deadline = self.upstream.cfg.timeout;
        let fut = async {
            match &self.transport {
                Transport::Http(h) => h.call(req, events).await,
                Transport::Stdio(s) => s.call(req, events).await,
            }
        };
        let res = match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r,
            Err(_) => {
                // Tell the upstream to stop working on it; best effort.
                let _ = self
                    .notify(Notification {
                        method: "notifications/cancelled".into(),
                        params: Some(
                            json!({"requestId": up_id.to_value(), "reason": "gateway timeout"}),
                        ),
                    })
                    .await;
                Err(UpstreamError::Timeout(deadline))
            }
        };
        self.inflight.lock().remove(&client_id);
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

    /// Forwards a client's `notifications/cancelled` for one of its in-flight
    /// requests, translating the client's id to the upstream id. Unknown ids are
    /// ignored (the request already finished).
    pub async fn cancel(&self, client_id: &Id, reason: Option<Value>) {
        let up_id = self.inflight.lock().get(client_id).cloned();
        if let Some(up_id) = up_id {
            let mut params = json!({"requestId": up_id.to_value()});
            if let (Some(r), Some(obj)) = (reason, params.as_object_mut()) {
                obj.insert("reason".into(), r);
            }
            let _ = self
                .notify(Notification {
                    method: "notifications/cancelled".into(),
                    params: Some(params),
                })
                .await;
        }
    }

    /// Sends a notification.
    pub async fn notify(&self, n: Notification) -> Result<(), UpstreamError> {
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

//! Audit events and the sinks they go to.
//!
//! Every client request and every upstream exchange emits exactly one
//! [`AuditEvent`] through an [`AuditSink`]. Events never hold secrets: session ids
//! are recorded as a short SHA-256 digest, credentials are never read into them,
//! and error details are the gateway's own messages, not upstream payloads.
//!
//! The JSON-lines sink writes on its own thread so a slow disk never blocks a
//! request; if a write fails the sink reports itself unhealthy and the gateway
//! refuses new requests (fail closed) rather than serve without an audit trail.
//! A later issue makes the trail tamper-evident; the event schema stays.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A client HTTP request to `/mcp` (one per request, on every exit path).
    Request,
    /// One exchange between the gateway and an upstream.
    Upstream,
    /// A session began or ended.
    Session,
    /// An upstream process or connection changed state.
    Lifecycle,
    /// Gateway start or stop.
    Gateway,
    /// An authentication attempt: the token validation and its precise outcome.
    Auth,
    /// The gateway obtained a credential of its own for an upstream.
    Credential,
    /// An authorization decision (or the filtering of one list page).
    Authz,
    /// The policy set was loaded, replaced, or a new one refused.
    Policy,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Served.
    Ok,
    /// Refused by a gateway check (bad input, origin, lane mix, limits).
    Refused,
    /// Failed (upstream error, timeout, internal error).
    Error,
}

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Event kind.
    pub kind: EventKind,
    /// Outcome.
    pub outcome: Outcome,
    /// Gateway-assigned request id (also in the `x-request-id` response header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Who: the authenticated subject (`anonymous` in `dangerous_none` mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The issuer that vouched for the principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The OAuth client the token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// How the credential was checked (`jwt`, `introspection`, `dev_issuer`),
    /// or the grant of an upstream credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<&'static str>,
    /// The token's `jti` (an identifier, not the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Scopes granted (auth events) or required (insufficient-scope refusals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    /// The client's address (as the gateway's listener saw it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// Digest of the session id (never the id itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `legacy` or `modern`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<&'static str>,
    /// HTTP method of the client request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    /// JSON-RPC method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Tool/prompt name or resource URI as the client named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Upstream involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// HTTP status returned to the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// JSON-RPC error code, if the outcome was an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// Gateway-side reason (never upstream payloads or secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wall time spent, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// The principal's groups (authorization events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// The principal's roles (authorization events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The policy action (`tools/call`, `tools/list`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The Cedar resource decided on (`Bastion::Tool::"files/read_file"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// `allow`, `deny`, or `filter` (one list page filtered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    /// The policies that decided it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// A filtered list page: the items considered (upstream-side names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<String>>,
    /// A filtered list page: the items withheld.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<String>>,
}

impl AuditEvent {
    /// A blank event of `kind` stamped now.
    pub fn new(kind: EventKind, outcome: Outcome) -> Self {
        AuditEvent {
            ts_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            kind,
            outcome,
            request_id: None,
            principal: None,
            issuer: None,
            client_id: None,
            credential: None,
            token_id: None,
            scopes: None,
            client_addr: None,
            session: None,
            lane: None,
            http_method: None,
            method: None,
            target: None,
            upstream: None,
            status: None,
            error_code: None,
            reason: None,
            duration_us: None,
            groups: None,
            roles: None,
            action: None,
            resource: None,
            decision: None,
            policies: None,
            items: None,
            hidden: None,
        }
    }
}

/// A digest that identifies a session in the trail without revealing its id
/// (an id is a bearer credential on the legacy lane).
pub fn session_digest(id: &str) -> String {
    let d = Sha256::digest(id.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Where events go.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Records one event. Must not block on I/O.
    fn emit(&self, event: AuditEvent);
    /// Whether events are still being recorded; `false` makes the gateway refuse
    /// new requests.
    fn healthy(&self) -> bool;
}

/// How often the writer thread drains and flushes (bounds how long an event
/// waits in memory).
const WRITER_PERIOD: std::time::Duration = std::time::Duration::from_millis(2);

/// Appends events as JSON lines to a file, on a dedicated thread.
#[derive(Debug)]
pub struct JsonlSink {
    tx: std::sync::mpsc::SyncSender<AuditEvent>,
    healthy: Arc<AtomicBool>,
}

impl JsonlSink {
    /// Opens (creating, appending) `path` and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        // Bounded: if the disk stalls, requests wait rather than memory growing
        // without limit or events being dropped.
        let (tx, rx) = std::sync::mpsc::sync_channel::<AuditEvent>(65_536);
        let healthy = Arc::new(AtomicBool::new(true));
        let h = healthy.clone();
        std::thread::Builder::new()
            .name("bastion-audit".into())
            .spawn(move || {
                // The writer wakes on its own every few milliseconds and drains what
                // queued meanwhile: senders never have to wake it, which on a busy
                // gateway would cost a futex wake-up (a context switch) per event.
                let mut w = std::io::BufWriter::new(file);
                loop {
                    std::thread::sleep(WRITER_PERIOD);
                    let mut ok = true;
                    let mut wrote = false;
                    let mut closed = false;
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => {
                                ok &= write_line(&mut w, &ev);
                                wrote = true;
                            }
                            Err(std::sync::mpsc::TryRecvError::Empty) => break,
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                    if wrote {
                        ok &= w.flush().is_ok();
                    }
                    if !ok {
                        h.store(false, Ordering::SeqCst);
                    }
                    if closed {
                        return;
                    }
                }
            })?;
        Ok(JsonlSink { tx, healthy })
    }
}

fn write_line(w: &mut impl Write, ev: &AuditEvent) -> bool {
    serde_json::to_writer(&mut *w, ev).is_ok() && w.write_all(b"\n").is_ok()
}

impl AuditSink for JsonlSink {
    fn emit(&self, event: AuditEvent) {
        if self.tx.send(event).is_err() {
            self.healthy.store(false, Ordering::SeqCst);
        }
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }
}

/// Keeps events in memory (tests and `bastion demo`'s summary).
#[derive(Debug, Default)]
pub struct MemorySink {
    events: parking_lot::Mutex<Vec<AuditEvent>>,
    /// Set to simulate a failing trail.
    pub broken: AtomicBool,
}

impl MemorySink {
    /// A copy of everything recorded so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().clone()
    }
}

impl AuditSink for MemorySink {
    fn emit(&self, event: AuditEvent) {
        self.events.lock().push(event);
    }

    fn healthy(&self) -> bool {
        !self.broken.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_sink_writes_one_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        let sink = JsonlSink::open(&p).unwrap();
        let mut ev = AuditEvent::new(EventKind::Request, Outcome::Ok);
        ev.method = Some("tools/list".into());
        ev.session = Some(session_digest("secret-session-id"));
        sink.emit(ev.clone());
        sink.emit(ev);
        for _ in 0..100 {
            let text = std::fs::read_to_string(&p).unwrap();
            if text.lines().count() == 2 {
                assert!(!text.contains("secret-session-id"));
                let v: serde_json::Value =
                    serde_json::from_str(text.lines().next().unwrap()).unwrap();
                assert_eq!(v["method"], "tools/list");
                assert!(sink.healthy());
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("events not written");
    }
}

//! Audit events and the sinks they go to.
//!
//! Every client request and every upstream exchange emits exactly one
//! [`AuditEvent`] through an [`AuditSink`]. Events never hold secrets: session ids
//! are recorded as a short SHA-256 digest, credentials are never read into them,
//! and error details are the gateway's own messages, not upstream payloads.
//!
//! [`ChainSink`] hands events to the `bastion-audit` writer: a hash chain of
//! canonical records with signed checkpoints, written on its own thread so a
//! slow disk never blocks a request. The gateway waits for [`AuditSink::barrier`]
//! before it answers, so an answered request's record is on disk; a write
//! failure or a queue past its bound makes the sink unhealthy and the gateway
//! refuses new requests (fail closed) rather than serve without a trail.

pub mod export;
pub mod forensics;
pub mod metrics;
pub mod otlp;

use std::path::Path;
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
    /// A tool, prompt, template or instructions definition was pinned,
    /// changed, quarantined, approved, rejected or rolled back.
    Integrity,
    /// The detection engine acted on a message (flagged, redacted,
    /// spotlighted or blocked it).
    Detection,
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
    /// A tool call's or prompt's arguments, redacted ([`redact_arguments`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
    /// Bytes of the client's request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Bytes of the answer (single JSON answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// An integrity event: what changed (kind, name, versions, hashes,
    /// structured diff, risk, findings, who decided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<serde_json::Value>,
    /// A detection event: direction, action, score, rule IDs and where they
    /// matched (JSON Pointers), never the matched text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detection: Option<serde_json::Value>,
}

impl AuditEvent {
    /// Sets issuer and subject from a context's principal key (`"<iss> <sub>"`).
    pub fn set_principal(&mut self, key: &str) {
        if let Some((iss, sub)) = key.split_once(' ') {
            self.issuer = Some(iss.to_owned());
            self.principal = Some(sub.to_owned());
        }
    }

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
            arguments: None,
            bytes_in: None,
            bytes_out: None,
            change: None,
            detection: None,
        }
    }
}

/// Argument names whose values are never recorded.
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "api_key",
    "authorization",
    "auth",
    "cookie",
    "credential",
    "private_key",
    "privatekey",
    "session",
    "otp",
];

/// Value prefixes of well-known credentials, redacted whole even when the
/// detection engine's validators would not call the rest a key (a truncated
/// or test token is still not for the trail): GitHub, OpenAI/Anthropic-style,
/// Slack, AWS, Google, JWTs, PEM keys.
const SECRET_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "github_pat_",
    "sk-",
    "xoxb-",
    "xoxp-",
    "AKIA",
    "ASIA",
    "AIza",
    "eyJ",
    "-----BEGIN",
];

/// A tool call's arguments as the trail keeps them: values under secret-like
/// names and values that start like credentials become `"[REDACTED]"`;
/// secrets and personal data the detection engine finds anywhere in a string
/// become typed placeholders (`[REDACTED:github_token]`, `[REDACTED:email]`);
/// strings longer than 256 characters are cut (with their full length
/// noted); depth and size are bounded (4 KiB; past it, `"[TRUNCATED]"`).
pub fn redact_arguments(
    engine: &bastion_detect::Engine,
    v: &serde_json::Value,
) -> serde_json::Value {
    use serde_json::Value;
    let all = bastion_detect::RedactKinds {
        secrets: true,
        personal_data: true,
    };
    fn walk(
        engine: &bastion_detect::Engine,
        all: bastion_detect::RedactKinds,
        v: &Value,
        depth: usize,
        budget: &mut usize,
    ) -> Value {
        if *budget == 0 || depth > 6 {
            return Value::from("[TRUNCATED]");
        }
        match v {
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, x) in m {
                    if *budget == 0 {
                        out.insert("…".into(), Value::from("[TRUNCATED]"));
                        break;
                    }
                    let lk = k.to_ascii_lowercase().replace('-', "_");
                    let secret = SECRET_NAMES.iter().any(|n| lk.contains(n));
                    *budget = budget.saturating_sub(k.len().saturating_add(4));
                    let key: String = k.chars().take(64).collect();
                    out.insert(
                        key,
                        if secret {
                            Value::from("[REDACTED]")
                        } else {
                            walk(engine, all, x, depth.saturating_add(1), budget)
                        },
                    );
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(
                a.iter()
                    .take(32)
                    .map(|x| walk(engine, all, x, depth.saturating_add(1), budget))
                    .collect(),
            ),
            Value::String(s) => {
                if SECRET_PREFIXES
                    .iter()
                    .any(|p| s.trim_start().starts_with(p))
                {
                    return Value::from("[REDACTED]");
                }
                // Redact before cutting, so a secret straddling the cut is found whole.
                let redacted = engine.redact(s, all).map(|(clean, _)| clean);
                let s = redacted.as_deref().unwrap_or(s);
                let n = s.chars().count();
                let kept: String = s.chars().take(256.min(*budget)).collect();
                *budget = budget.saturating_sub(kept.len().saturating_add(2));
                if n > kept.chars().count() {
                    Value::from(format!("{kept}…[{n} chars]"))
                } else {
                    Value::from(kept)
                }
            }
            other => {
                *budget = budget.saturating_sub(8);
                other.clone()
            }
        }
    }
    let mut budget = 4096;
    walk(engine, all, v, 0, &mut budget)
}

/// The event schema version every record's event carries (`schema`).
pub const SCHEMA: &str = "bastion.audit/1";

/// The OCSF classification of an event, so a SIEM can ingest records without
/// a custom parser (docs/audit-schema.md has the table): class, category,
/// activity, type, status and severity ids.
pub fn ocsf(ev: &AuditEvent) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    // (class_uid, category_uid, activity_id, activity_name)
    let (class, category, activity, name): (u64, u64, u64, String) = match ev.kind {
        EventKind::Request => (
            6003,
            6,
            match ev.http_method.as_deref() {
                Some("GET") => 2,
                Some("DELETE") => 4,
                _ => 99,
            },
            ev.method.clone().unwrap_or_else(|| "request".into()),
        ),
        EventKind::Upstream => (
            6003,
            6,
            99,
            ev.method.clone().unwrap_or_else(|| "upstream".into()),
        ),
        EventKind::Authz => (
            6003,
            6,
            99,
            format!("authorize {}", ev.action.as_deref().unwrap_or("")),
        ),
        EventKind::Auth => (3002, 3, 1, "logon".into()),
        EventKind::Credential => (3002, 3, 99, "upstream credential".into()),
        EventKind::Session => (3002, 3, 99, "session".into()),
        EventKind::Lifecycle => (1007, 1, 99, "upstream process".into()),
        EventKind::Gateway => {
            let stop = ev.reason.as_deref().is_some_and(|r| r.contains("stopped"));
            (
                6002,
                6,
                if stop { 4 } else { 3 },
                if stop { "stop" } else { "start" }.into(),
            )
        }
        EventKind::Policy => (6002, 6, 8, "policy update".into()),
        // Detection Finding (Findings category): a definition changed or was
        // decided on.
        EventKind::Integrity => (
            2004,
            2,
            1,
            ev.change
                .as_ref()
                .and_then(|c| c.get("change"))
                .and_then(serde_json::Value::as_str)
                .map(|c| format!("tool integrity {c}"))
                .unwrap_or_else(|| "tool integrity".into()),
        ),
        // Detection Finding too: the activity names what was done, and where.
        EventKind::Detection => {
            let field = |k: &str| {
                ev.detection
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            (
                2004,
                2,
                1,
                format!("detection {} {}", field("action"), field("direction")),
            )
        }
    };
    let (status, severity) = match ev.outcome {
        Outcome::Ok => (1, 1),
        Outcome::Refused => (2, 3),
        Outcome::Error => (2, 4),
    };
    let mut m = serde_json::Map::new();
    m.insert("class_uid".into(), Value::from(class));
    m.insert("category_uid".into(), Value::from(category));
    m.insert("activity_id".into(), Value::from(activity));
    m.insert("activity_name".into(), Value::from(name));
    m.insert(
        "type_uid".into(),
        Value::from(class.saturating_mul(100).saturating_add(activity)),
    );
    m.insert("status_id".into(), Value::from(status));
    m.insert("severity_id".into(), Value::from(severity));
    m
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
    /// Resolves once every event emitted before the call is durable (the
    /// gateway awaits it before it answers a request).
    fn barrier(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
    /// Writes what is queued and closes the trail (a final checkpoint).
    fn close(&self) {}
    /// Events waiting to be written.
    fn queue_depth(&self) -> usize {
        0
    }
}

/// The tamper-evident trail (`bastion-audit`): events become records of a
/// hash chain with signed checkpoints, written by one thread under the
/// configured fsync policy.
#[derive(Debug)]
pub struct ChainSink {
    writer: bastion_audit::Writer,
}

/// Why the trail could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The key file.
    #[error("audit signing key {path}: {msg}")]
    Key {
        /// Where.
        path: String,
        /// What.
        msg: String,
    },
    /// The log.
    #[error("audit log {path}: {source}")]
    Log {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl ChainSink {
    /// Opens the trail `cfg` describes; without a configured key, uses (or
    /// creates, mode 0600) `<path>.key`.
    pub fn open(cfg: &crate::config::AuditConfig) -> Result<ChainSink, OpenError> {
        let signer = match &cfg.signing_key {
            Some(k) => {
                bastion_audit::Signer::from_text(k.expose_secret()).map_err(|e| OpenError::Key {
                    path: "audit.signing_key".into(),
                    msg: e.to_string(),
                })?
            }
            None => key_file(Path::new(&format!("{}.key", cfg.path.display())))?,
        };
        let writer = bastion_audit::Writer::open(bastion_audit::WriterConfig {
            path: cfg.path.clone(),
            signer,
            checkpoint_every: cfg.checkpoint_every,
            checkpoint_idle: std::time::Duration::from_secs(5),
            fsync: cfg.fsync,
            rotate_bytes: cfg.rotate_bytes,
            max_queue: cfg.max_queue,
        })
        .map_err(|source| OpenError::Log {
            path: cfg.path.display().to_string(),
            source,
        })?;
        Ok(ChainSink { writer })
    }

    /// The checkpoint public key (`ed25519:<base64>`), for `audit verify --key`.
    pub fn public_key(&self) -> &str {
        self.writer.public_key()
    }
}

/// Loads the checkpoint key from `path`, creating it (0600) when absent.
fn key_file(path: &Path) -> Result<bastion_audit::Signer, OpenError> {
    let err = |msg: String| OpenError::Key {
        path: path.display().to_string(),
        msg,
    };
    let (text, created) = bastion_auth::keyfile::load_or_create(path, || {
        bastion_audit::Signer::generate()
            .map(|(_, text)| text)
            .map_err(|e| e.to_string())
    })
    .map_err(err)?;
    let signer = bastion_audit::Signer::from_text(&text).map_err(|e| err(e.to_string()))?;
    if created {
        tracing::warn!(
            key = %path.display(),
            public = %signer.public(),
            "audit checkpoint key created; keep its public key elsewhere to verify the trail against (bastion audit verify --key)"
        );
    }
    Ok(signer)
}

impl AuditSink for ChainSink {
    fn emit(&self, event: AuditEvent) {
        match serde_json::to_value(&event) {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.insert("schema".into(), serde_json::Value::from(SCHEMA));
                    o.insert("ocsf".into(), serde_json::Value::Object(ocsf(&event)));
                }
                self.writer.append(v);
            }
            Err(e) => {
                // Recorded as a failure rather than lost.
                self.writer.append(serde_json::json!({
                    "ts_ms": event.ts_ms, "kind": "audit", "outcome": "error",
                    "reason": format!("an event could not be serialized: {e}")}));
            }
        }
    }

    fn healthy(&self) -> bool {
        self.writer.healthy()
    }

    fn barrier(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        let n = self.writer.enqueued();
        Box::pin(self.writer.wait_durable(n))
    }

    fn close(&self) {
        self.writer.close();
    }

    fn queue_depth(&self) -> usize {
        self.writer.queue_depth()
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
    fn arguments_are_recorded_without_secrets_and_bounded() {
        let v = serde_json::json!({
            "path": "/srv/reports/q3.csv",
            "api_key": "abc",
            "Authorization": "Bearer x",
            "nested": {"db_password": "p", "note": "ghp_0123456789abcdef", "n": 3},
            "long": "x".repeat(1000),
            "list": (0..100).collect::<Vec<i32>>(),
        });
        let engine = bastion_detect::Engine::new().unwrap();
        let r = redact_arguments(&engine, &v);
        assert_eq!(r["path"], "/srv/reports/q3.csv");
        assert_eq!(r["api_key"], "[REDACTED]");
        assert_eq!(r["Authorization"], "[REDACTED]");
        assert_eq!(r["nested"]["db_password"], "[REDACTED]");
        assert_eq!(r["nested"]["note"], "[REDACTED]");
        assert_eq!(r["nested"]["n"], 3);
        assert!(r["long"].as_str().unwrap().ends_with("…[1000 chars]"));
        assert_eq!(r["list"].as_array().unwrap().len(), 32);
        // Secrets and personal data anywhere in a string are typed by the engine.
        let r = redact_arguments(
            &engine,
            &serde_json::json!({"msg": "push with ghp_0123456789abcdefghijABCDEFGHIJ012345 then mail ada@example.org"}),
        );
        assert_eq!(
            r["msg"],
            "push with [REDACTED:github_token] then mail [REDACTED:email]"
        );
        let huge = serde_json::json!({"a": "y".repeat(250), "b": "y".repeat(250),
            "c": (0..50).map(|i| format!("{i}").repeat(100)).collect::<Vec<_>>()});
        assert!(
            serde_json::to_string(&redact_arguments(&engine, &huge))
                .unwrap()
                .len()
                < 6000
        );
    }

    #[test]
    fn chain_sink_writes_verifiable_records_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::AuditConfig {
            path: dir.path().join("a.jsonl"),
            signing_key: None,
            checkpoint_every: 1000,
            fsync: bastion_audit::Fsync::Batch,
            rotate_bytes: 1 << 30,
            max_queue: 1000,
            syslog: Vec::new(),
            otlp: None,
            stdout: false,
        };
        let sink = ChainSink::open(&cfg).unwrap();
        let mut ev = AuditEvent::new(EventKind::Request, Outcome::Ok);
        ev.method = Some("tools/list".into());
        ev.session = Some(session_digest("secret-session-id"));
        sink.emit(ev.clone());
        sink.emit(ev);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(sink.barrier());
        let text = std::fs::read_to_string(&cfg.path).unwrap();
        assert_eq!(
            text.lines().count(),
            2,
            "durable before the barrier resolves"
        );
        assert!(!text.contains("secret-session-id"));
        sink.close();
        let key = std::fs::metadata(dir.path().join("a.jsonl.key")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        let r = bastion_audit::verify(
            std::slice::from_ref(&cfg.path),
            &bastion_audit::VerifyOptions::default(),
        );
        assert!(r.ok(), "{:?}", r.problem);
        assert_eq!(r.records, 2);
    }
}

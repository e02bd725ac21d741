//! The one exchange with an upstream: a request sent on a connection under
//! its [`Pass`], bridged between the client's revision and the connection's,
//! timed, and recorded (an `upstream` audit event and the upstream metrics).
//!
//! Invariants: every request the gateway sends upstream goes through
//! [`Forwarder::forward`] (so each is recorded once, outcome and latency);
//! a 2026-07-28 client's envelope never reaches a 2025-era session, and a
//! 2025-era client never sees 2026-07-28 result fields.

use std::sync::Arc;

use bastion_proto::{Era, ErrorObject, Request, Response, meta};
use http::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::audit::metrics::Metrics;
use crate::audit::{AuditEvent, AuditSink, EventKind, Outcome};
use crate::session::context::Context;
use crate::upstream::{Conn, Pass, UpcallTx, Upstream};

/// Sends and records upstream exchanges; needs only the trail and the
/// metrics.
pub struct Forwarder {
    audit: Arc<dyn AuditSink>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl Forwarder {
    /// A forwarder recording to `audit` and `metrics`.
    pub fn new(audit: Arc<dyn AuditSink>, metrics: Arc<Metrics>) -> Self {
        Forwarder { audit, metrics }
    }

    /// Sends `req` on `conn` under `pass`, bridging the revisions and
    /// recording the exchange.
    pub(crate) async fn forward(
        &self,
        ctx: &Context,
        conn: &Arc<Conn>,
        pass: Pass<'_>,
        req: Request,
        events: Option<UpcallTx>,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Response, ErrorObject> {
        let up = &conn.upstream;
        let mut req = req;
        match (conn.era, ctx.era) {
            // A 2026-07-28 client's envelope means nothing to a 2025-era session.
            (Era::Legacy, Era::Modern) => strip_modern_meta(&mut req),
            // A 2025-era client's request gets the envelope its session implies;
            // the gateway's own requests on a 2026-07-28 context (inventory
            // listings) get the context's, where the client's is missing.
            (Era::Modern, client)
                if client == Era::Legacy
                    || req
                        .params
                        .as_ref()
                        .and_then(|p| p.get("_meta"))
                        .and_then(|m| m.get(meta::PROTOCOL_VERSION))
                        .is_none() =>
            {
                let env = crate::upstream::envelope(&ctx.hello(), ctx.log_level.lock().as_ref());
                let params = req.params.get_or_insert_with(|| json!({}));
                if let (Some(m), Some(env)) = (meta::meta_mut(params), env.as_object()) {
                    for (k, v) in env {
                        if client == Era::Legacy || !m.contains_key(k) {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            _ => {}
        }
        let method = req.method.clone();
        let t0 = std::time::Instant::now();
        let res = conn
            .send(pass, req, events, headers, ctx.era == Era::Legacy)
            .await;
        let secs = Some(t0.elapsed().as_secs_f64());
        match res {
            Ok(mut r) => {
                if conn.era == Era::Modern
                    && ctx.era == Era::Legacy
                    && let Ok(v) = r.outcome.as_mut()
                {
                    legacyize_result(v);
                }
                let outcome = if r.outcome.is_ok() {
                    Outcome::Ok
                } else {
                    Outcome::Error
                };
                self.record(up, &method, outcome, None, secs);
                Ok(r)
            }
            Err(e) => {
                self.record(up, &method, Outcome::Error, Some(e.to_string()), secs);
                Err(e.to_error_object(up.name()))
            }
        }
    }

    /// Records one upstream exchange: an audit event and the metrics.
    pub(crate) fn record(
        &self,
        up: &Upstream,
        method: &str,
        outcome: Outcome,
        reason: Option<String>,
        secs: Option<f64>,
    ) {
        self.metrics.upstream(
            up.name(),
            match outcome {
                Outcome::Ok => "ok",
                Outcome::Refused => "refused",
                Outcome::Error => "error",
            },
            secs,
        );
        let mut ev = AuditEvent::new(EventKind::Upstream, outcome);
        ev.upstream = Some(up.name().to_owned());
        ev.method = Some(method.to_owned());
        ev.reason = reason;
        self.audit.emit(ev);
    }
}

/// Removes the per-request envelope of 2026-07-28 (`_meta` protocol version,
/// client capabilities, client info, log level). The gateway has validated it;
/// each upstream connection states its own revision, and a 2025-era upstream
/// would rightly refuse a request that mixes revisions.
fn strip_modern_meta(req: &mut Request) {
    let Some(params) = req.params.as_mut().and_then(Value::as_object_mut) else {
        return;
    };
    let now_empty = match params.get_mut("_meta").and_then(Value::as_object_mut) {
        Some(m) => {
            for k in [
                meta::PROTOCOL_VERSION,
                meta::CLIENT_CAPABILITIES,
                meta::CLIENT_INFO,
                meta::LOG_LEVEL,
            ] {
                m.remove(k);
            }
            m.is_empty()
        }
        None => false,
    };
    if now_empty {
        params.remove("_meta");
    }
}

/// Removes the 2026-07-28 result fields a 2025-era client does not know.
fn legacyize_result(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        if o.get("resultType").and_then(Value::as_str) == Some("complete") {
            o.remove("resultType");
        }
        o.remove("ttlMs");
        o.remove("cacheScope");
    }
}

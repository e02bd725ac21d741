//! Bridging a 2026-07-28 client to a 2025-era upstream: server-initiated
//! requests become `input_required` results.
//!
//! When a 2025-era upstream sends sampling, elicitation or roots requests while
//! serving a stateless client's call, the gateway holds the upstream call open as
//! a [`Continuation`], answers the client with `resultType: "input_required"`
//! carrying those requests as `inputRequests` and a sealed `requestState` naming
//! the continuation, and, when the client retries with `inputResponses`, answers
//! the upstream's requests and resumes waiting. Continuations are single use,
//! bound (through the seal) to principal, method and target, and expire.

use std::time::Instant;

use bastion_proto::{ErrorObject, Id, Response, codes};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::upstream::{ReplyPath, Upcall};

/// How long a continuation waits for the client's retry.
pub const CONTINUATION_TTL_SECS: u64 = 300;

/// When a continuation parked now expires (now, i.e. already expired, if the
/// clock could not represent it: fail closed).
pub fn continuation_deadline() -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(std::time::Duration::from_secs(CONTINUATION_TTL_SECS))
        .unwrap_or(now)
}

/// Continuations one principal may have waiting at once.
pub const MAX_CONTINUATIONS_PER_PRINCIPAL: usize = 64;

/// Continuations waiting at once, all principals together.
pub const MAX_CONTINUATIONS: usize = 10_000;

/// One upstream request waiting for the client's input.
#[derive(Debug)]
pub struct Ask {
    /// Key in `inputRequests` / `inputResponses`.
    pub key: String,
    /// How to answer the upstream.
    pub reply: ReplyPath,
    /// The upstream's id for its request.
    pub upstream_id: Id,
    /// The request as the client sees it.
    pub request: Value,
}

/// An upstream call held open while the client supplies input.
#[derive(Debug)]
pub struct Continuation {
    /// The dispatch still running upstream.
    pub task: JoinHandle<Response>,
    /// Its messages toward the client.
    pub rx: mpsc::Receiver<Upcall>,
    /// The client context.
    pub ctx: std::sync::Arc<crate::session::context::Context>,
    /// Requests still unanswered.
    pub asks: Vec<Ask>,
    /// Whether the client asked for log messages.
    pub log: bool,
    /// When it is abandoned.
    pub expires: Instant,
}

impl Continuation {
    /// Gives up: the upstream's pending requests are refused and the call stopped.
    pub async fn abandon(self) {
        for a in self.asks {
            let _ = a
                .reply
                .send(Response::error(
                    Some(a.upstream_id),
                    ErrorObject::new(
                        codes::INTERNAL_ERROR,
                        "the client did not supply the input in time",
                    ),
                ))
                .await;
        }
        self.task.abort();
    }
}

/// The client capability a server request needs.
pub fn capability_for(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// Builds the `input_required` result for `asks`.
pub fn input_required(asks: &[Ask], request_state: String) -> Value {
    let reqs: Map<String, Value> = asks
        .iter()
        .map(|a| (a.key.clone(), a.request.clone()))
        .collect();
    json!({
        "resultType": "input_required",
        "inputRequests": reqs,
        "requestState": request_state,
    })
}

/// Answers the asks the client supplied; returns those still unanswered.
pub async fn answer(asks: Vec<Ask>, responses: Option<&Map<String, Value>>) -> Vec<Ask> {
    let mut left = Vec::new();
    for a in asks {
        match responses.and_then(|r| r.get(&a.key)) {
            Some(v) => {
                let _ = a
                    .reply
                    .send(Response::result(a.upstream_id, v.clone()))
                    .await;
            }
            None => left.push(a),
        }
    }
    left
}

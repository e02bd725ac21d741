//! One refusal type for the HTTP surface. A [`Refusal`] carries everything a
//! refused client request is answered and recorded with: the HTTP status, the
//! JSON-RPC error (code, message, data), the id it answers and the audit
//! outcome (`refused` for the client's fault or the gateway's decision,
//! `error` for a failure such as an upstream timeout).
//!
//! Invariant: a refusal of a request the gateway has begun to record becomes
//! its answer and its `request` audit event in one function
//! (`transport/http.rs::Rec::refuse`), so no path can answer without the
//! record or record without the answer. Refusals before a request is
//! recorded (load shedding, unknown paths, the admin listener's Host check)
//! are answered with [`Refusal::into_response`] alone.

use axum::response::{IntoResponse as _, Response as HttpResponse};
use bastion_proto::{ErrorObject, Id, Message, Response};
use http::{StatusCode, header};

use crate::audit::Outcome;

/// A refused client request.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The id of the request answered (`None` when unknown or unparsable).
    pub id: Option<Id>,
    /// The JSON-RPC error (boxed: refusals travel in `Result`s on the hot
    /// path, and the common case is `Ok`).
    pub error: Box<ErrorObject>,
    /// How the audit event records it.
    pub outcome: Outcome,
}

impl Refusal {
    /// A refusal: the client's fault or the gateway's decision.
    pub fn new(status: StatusCode, error: ErrorObject) -> Self {
        Refusal {
            status,
            id: None,
            error: Box::new(error),
            outcome: Outcome::Refused,
        }
    }

    /// A failure on the gateway's side (a timeout, an internal error): the
    /// request is answered the same way, and recorded as an error.
    pub fn failure(status: StatusCode, error: ErrorObject) -> Self {
        Refusal {
            outcome: Outcome::Error,
            ..Refusal::new(status, error)
        }
    }

    /// The same refusal answering request `id`.
    #[must_use]
    pub fn to(mut self, id: Option<Id>) -> Self {
        self.id = id;
        self
    }

    /// The answer: the status and a JSON-RPC error response.
    pub fn into_response(self) -> HttpResponse {
        rpc_error(self.status, self.id, *self.error)
    }
}

/// A JSON-RPC error as an HTTP response.
pub fn rpc_error(status: StatusCode, id: Option<Id>, e: ErrorObject) -> HttpResponse {
    let body = Message::Response(Response::error(id, e)).to_vec();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

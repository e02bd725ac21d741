//! Bounds on what clients hold open.
//!
//! - [`concurrency`]: the gateway-wide limit on requests in progress
//!   (`server.max_concurrent_requests`). A permit is taken before the request
//!   is served and travels with the response body, so an SSE stream (a GET
//!   stream, `subscriptions/listen`, a request's event stream) counts until
//!   it ends, not only until its headers leave. Over the limit: 503 at once
//!   (load shedding), never a queue.
//! - [`Limits::stream`]: long-lived streams (GET streams and listens) per
//!   principal (`server.max_streams_per_principal`), so one principal cannot
//!   take the whole gateway-wide allowance from the others.
//!
//! Invariant: every permit is released when what holds it is dropped
//! (stream ended, client gone, task aborted); counts never leak.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The gateway's bounds on open requests and streams.
#[derive(Debug)]
pub struct Limits {
    requests: Arc<Semaphore>,
    streams: Mutex<HashMap<String, usize>>,
    per_principal: usize,
}

impl Limits {
    /// `requests` in progress at once; `per_principal` long-lived streams.
    pub fn new(requests: usize, per_principal: usize) -> Arc<Limits> {
        Arc::new(Limits {
            requests: Arc::new(Semaphore::new(requests)),
            streams: Mutex::new(HashMap::new()),
            per_principal,
        })
    }

    /// A long-lived stream for `principal`, or `None` when it holds its
    /// share already.
    pub fn stream(self: &Arc<Self>, principal: &str) -> Option<StreamPermit> {
        let mut m = self.streams.lock();
        let n = m.entry(principal.to_owned()).or_insert(0);
        if *n >= self.per_principal {
            return None;
        }
        *n = n.saturating_add(1);
        Some(StreamPermit {
            limits: self.clone(),
            principal: principal.to_owned(),
        })
    }

    /// Streams `principal` holds now.
    pub fn streams_of(&self, principal: &str) -> usize {
        self.streams.lock().get(principal).copied().unwrap_or(0)
    }

    /// Requests in progress now (streams included).
    pub fn in_progress(&self, max: usize) -> usize {
        max.saturating_sub(self.requests.available_permits())
    }
}

/// One principal's long-lived stream; released on drop.
#[derive(Debug)]
pub struct StreamPermit {
    limits: Arc<Limits>,
    principal: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut m = self.limits.streams.lock();
        if let Some(n) = m.get_mut(&self.principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.principal);
            }
        }
    }
}

/// A response body that holds its request's concurrency permit until the
/// body ends or is dropped.
struct Held {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The middleware's state: the limits and the answer given over them.
pub type LimitState = (Arc<Limits>, fn() -> Response);

/// The gateway-wide concurrency limit as an axum middleware (see the module
/// docs): over the limit, `overloaded()`'s answer.
pub async fn concurrency(
    State((limits, overloaded)): State<LimitState>,
    req: Request,
    next: Next,
) -> Response {
    let Ok(permit) = limits.requests.clone().try_acquire_owned() else {
        return overloaded();
    };
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::new(Held {
            inner: body,
            _permit: permit,
        }),
    )
}

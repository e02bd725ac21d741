//! One stream driver for both lanes: how a dispatched request and the
//! upstream messages about it become the HTTP answer.
//!
//! Until the first message the client can take, the driver waits (under the
//! request's deadline, counted once from the start: messages the client
//! cannot take do not extend it) for one of: a message (an SSE client gets a
//! stream from here on; a JSON-only one cannot take it), a server request the
//! lane answers by suspending the call (`input_required`, 2026-07-28), or the
//! final response (one JSON or SSE answer). Once streaming, every message
//! passes the same way until the final response ends the stream.
//!
//! What differs between the lanes is a [`Side`]: what an upstream message
//! becomes for this client (both pass the upstream → client pipeline), how
//! the final response is made, how an event is encoded (2025-11-25 streams
//! are resumable: each event is recorded under an id), and whether a client
//! closing the stream cancels the request (2026-07-28) or only stops
//! delivery (2025-11-25, where the request goes on and stays resumable).
//!
//! Invariants: the request's `request` audit event is finished exactly once
//! on every path (answer, refusal, timeout, cancellation, client gone,
//! suspension); a message reaches the client only as the side's `turn` made
//! it; the final response is never lost behind a message that was ready
//! first (messages are taken first when both are ready).

use std::convert::Infallible;
use std::future::Future;

use axum::body::Body;
use bastion_proto::{ErrorObject, Id, Message, Response, codes};
use bytes::Bytes;
use http::StatusCode;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Accept, Outcome, Rec, Refusal, outcome_of, single, sse_response};
use crate::upstream::Upcall;

/// What one upstream message becomes for the client.
pub(super) enum Turn<A> {
    /// Deliver it.
    Send(Message),
    /// Nothing reaches the client (refused, filtered, or answered upstream).
    Skip,
    /// A server request the lane answers by suspending the call.
    Ask(A),
}

/// How the dispatch task ended.
pub(super) enum Last {
    /// Its final response and the HTTP status for a single answer.
    Answer(Response, StatusCode),
    /// Cancelled by the client: no response is owed.
    Cancelled(ErrorObject),
}

/// One lane's side of the driver.
pub(super) trait Side: Send + Sized + 'static {
    /// What a suspending server request carries (`Infallible` for a lane
    /// that never suspends).
    type Ask: Send;
    /// Whether the client closing the stream cancels the request.
    const GONE_CANCELS: bool;

    /// The id of the request served.
    fn id(&self) -> Id;
    /// The messages about the request, and the dispatch task.
    fn parts(
        &mut self,
    ) -> (
        &mut mpsc::Receiver<Upcall>,
        &mut tokio::task::JoinHandle<Response>,
    );
    /// An upstream message on its way to this client.
    fn turn(&mut self, up: Upcall) -> impl Future<Output = Turn<Self::Ask>> + Send;
    /// The dispatch task's outcome.
    fn last(&mut self, res: Result<Response, tokio::task::JoinError>) -> Last;
    /// Ends the exchange on a server request: the response that says so.
    fn suspend(self, ask: Self::Ask) -> impl Future<Output = Response> + Send;
    /// The stream starts.
    fn open(&mut self);
    /// One SSE event carrying `m`.
    fn event(&mut self, m: &Message) -> Bytes;
    /// The stream ended (with or without a final response).
    fn close(&mut self);
}

/// Drives `side`'s request to its answer (see the module docs).
pub(super) async fn drive<S: Side>(
    mut side: S,
    acc: Accept,
    mut rec: Rec,
    deadline: std::time::Duration,
) -> axum::response::Response {
    // `rx_open` stops polling the channel once every sender is gone.
    let mut rx_open = true;
    let timer = tokio::time::sleep(deadline);
    tokio::pin!(timer);
    let first = loop {
        let (rx, task) = side.parts();
        tokio::select! {
            biased;
            up = rx.recv(), if rx_open => {
                let Some(up) = up else { rx_open = false; continue };
                match side.turn(up).await {
                    Turn::Send(m) if acc.sse => break m,
                    Turn::Send(_) => {
                        // A JSON-only client cannot take messages about this request.
                        tracing::debug!("JSON-only client: message about an in-flight request dropped");
                    }
                    Turn::Skip => {}
                    Turn::Ask(a) => {
                        let resp = side.suspend(a).await;
                        rec.finish(StatusCode::OK, Outcome::Ok, None);
                        return single(resp, acc, StatusCode::OK);
                    }
                }
            }
            res = task => {
                return match side.last(res) {
                    Last::Answer(resp, status) => rec.answer(resp, acc, status),
                    Last::Cancelled(e) => {
                        rec.finish(StatusCode::OK, Outcome::Error, Some(&e));
                        // An SSE client gets an empty stream; a JSON-only one
                        // the error the SDKs use (-32800).
                        if acc.sse {
                            sse_response(Body::empty())
                        } else {
                            single(Response::error(Some(side.id()), e), acc, StatusCode::OK)
                        }
                    }
                };
            }
            () = &mut timer => {
                side.parts().1.abort();
                let e = ErrorObject::new(
                    codes::UPSTREAM_TIMEOUT,
                    format!("request timed out after {deadline:?}"),
                );
                return rec.refuse(Refusal::failure(StatusCode::GATEWAY_TIMEOUT, e).to(Some(side.id())));
            }
        }
    };
    let (btx, brx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    side.open();
    tokio::spawn(crate::transport::auth::carry(async move {
        let gone = |side: &mut S, rec: &mut Rec| {
            side.parts().1.abort();
            side.close();
            let e = ErrorObject::new(
                codes::INVALID_REQUEST,
                "client closed the stream (cancelled)",
            );
            rec.finish(StatusCode::OK, Outcome::Error, Some(&e));
        };
        let ev = side.event(&first);
        let mut client_gone = btx.send(Ok(ev)).await.is_err();
        if client_gone && S::GONE_CANCELS {
            gone(&mut side, &mut rec);
            return;
        }
        loop {
            let (rx, task) = side.parts();
            tokio::select! {
                biased;
                up = rx.recv(), if rx_open => {
                    let Some(up) = up else { rx_open = false; continue };
                    match side.turn(up).await {
                        Turn::Send(m) => {
                            let ev = side.event(&m);
                            if !client_gone && btx.send(Ok(ev)).await.is_err() {
                                client_gone = true;
                                if S::GONE_CANCELS {
                                    gone(&mut side, &mut rec);
                                    return;
                                }
                            }
                        }
                        Turn::Skip => {}
                        Turn::Ask(a) => {
                            let resp = side.suspend(a).await;
                            rec.finish(StatusCode::OK, Outcome::Ok, None);
                            let ev = super::sse::encode_message(None, &Message::Response(resp).to_vec());
                            if !client_gone {
                                let _ = btx.send(Ok(ev)).await;
                            }
                            return;
                        }
                    }
                }
                res = task => {
                    match side.last(res) {
                        Last::Answer(resp, _) => {
                            rec.finish(StatusCode::OK, outcome_of(&resp), resp.outcome.as_ref().err());
                            let ev = side.event(&Message::Response(resp));
                            side.close();
                            if !client_gone {
                                let _ = btx.send(Ok(ev)).await;
                            }
                        }
                        Last::Cancelled(e) => {
                            // The stream ends with no response.
                            rec.finish(StatusCode::OK, Outcome::Error, Some(&e));
                            side.close();
                        }
                    }
                    return;
                }
            }
        }
    }));
    sse_response(Body::from_stream(ReceiverStream::new(brx)))
}

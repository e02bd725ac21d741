//! Streamable HTTP client side: one upstream HTTP MCP session.
//!
//! Requests are POSTed with `Accept: application/json, text/event-stream`; a JSON
//! reply is the response, an SSE reply carries related notifications and
//! server-initiated requests before the response. After `initialize` a GET stream
//! is held open for unsolicited messages (reconnecting with `Last-Event-ID`), and
//! the session is DELETEd when its client context ends.
//!
//! Security: redirects are never followed (an upstream cannot bounce the gateway
//! to another host), bodies and SSE events are size-bounded, and only the
//! configured headers (the gateway's own credentials for this upstream) are sent:
//! nothing from the client request is forwarded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bastion_proto::{Message, ProtocolVersion, Request, Response, headers as h, sse};
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};

use super::{ReplyPath, Upcall, UpcallTx, UpstreamError};
use crate::config::secret::Secret;

/// Largest upstream message accepted.
pub const MAX_MESSAGE: usize = 32 << 20;

/// The HTTP client used for all upstream traffic of one upstream.
pub fn client() -> Result<reqwest::Client, UpstreamError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| UpstreamError::Unavailable(format!("cannot build HTTP client: {e}")))
}

/// State shared by a session's calls, its GET listener and its reply path.
pub struct HttpShared {
    upstream: usize,
    list_changes: Arc<std::sync::atomic::AtomicU64>,
    client: reqwest::Client,
    url: url::Url,
    headers: Vec<(http::HeaderName, Secret)>,
    /// The gateway's own credential for this upstream.
    creds: super::Creds,
    /// Whose context this connection serves (token exchange uses its token).
    principal: Option<String>,
    session: RwLock<Option<HeaderValue>>,
    version: RwLock<Option<HeaderValue>>,
    alive: AtomicBool,
}

impl std::fmt::Debug for HttpShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpShared")
            .field("upstream", &self.upstream)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl HttpShared {
    pub(super) fn set_version(&self, v: ProtocolVersion) {
        *self.version.write() = Some(HeaderValue::from_static(v.as_str()));
    }

    /// The `Authorization` value for the next request: the gateway's own
    /// credential for this upstream, never anything from the client.
    async fn credential(&self) -> Result<Option<HeaderValue>, UpstreamError> {
        self.creds.header(self.principal.as_deref()).await
    }

    fn builder(
        &self,
        method: reqwest::Method,
        cred: Option<HeaderValue>,
    ) -> reqwest::RequestBuilder {
        let mut b = self.client.request(method, self.url.clone());
        if let Some(c) = cred {
            b = b.header(reqwest::header::AUTHORIZATION, c);
        }
        for (k, v) in &self.headers {
            if let Ok(mut hv) = HeaderValue::from_str(v.expose_secret()) {
                hv.set_sensitive(true);
                b = b.header(k, hv);
            }
        }
        if let Some(s) = self.session.read().clone() {
            b = b.header(h::SESSION_ID, s);
        }
        if let Some(v) = self.version.read().clone() {
            b = b.header(h::PROTOCOL_VERSION, v);
        }
        b
    }

    fn post(&self, msg: &Message, cred: Option<HeaderValue>) -> reqwest::RequestBuilder {
        self.builder(reqwest::Method::POST, cred)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(msg.to_vec())
    }

    /// POSTs a notification or a response (expects 202, accepts any 2xx).
    pub async fn post_no_reply(&self, msg: &Message) -> Result<(), UpstreamError> {
        let cred = self.credential().await?;
        let resp = self.post(msg, cred).send().await.map_err(transport_error)?;
        check_status(&resp, self.session.read().is_some())?;
        Ok(())
    }
}

fn transport_error(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Unavailable("connection timed out".into())
    } else if e.is_connect() {
        UpstreamError::Unavailable("connection refused or unreachable".into())
    } else {
        UpstreamError::Unavailable("connection failed".into())
    }
}

fn check_status(resp: &reqwest::Response, had_session: bool) -> Result<(), UpstreamError> {
    let s = resp.status();
    if s.is_success() {
        return Ok(());
    }
    if s == reqwest::StatusCode::NOT_FOUND && had_session {
        return Err(UpstreamError::SessionExpired);
    }
    Err(UpstreamError::Protocol(format!(
        "HTTP status {}",
        s.as_u16()
    )))
}

/// One upstream HTTP MCP session.
#[derive(Debug)]
pub struct HttpConn {
    pub(super) shared: Arc<HttpShared>,
    unsolicited: UpcallTx,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl HttpConn {
    #[allow(
        clippy::too_many_arguments,
        reason = "one connection's full description"
    )]
    pub(super) fn new(
        upstream: usize,
        client: reqwest::Client,
        url: url::Url,
        headers: Vec<(http::HeaderName, Secret)>,
        creds: super::Creds,
        principal: Option<String>,
        unsolicited: UpcallTx,
        list_changes: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        HttpConn {
            shared: Arc::new(HttpShared {
                upstream,
                list_changes,
                client,
                url,
                headers,
                creds,
                principal,
                session: RwLock::new(None),
                version: RwLock::new(None),
                alive: AtomicBool::new(true),
            }),
            unsolicited,
            listener: Mutex::new(None),
        }
    }

    pub(super) fn alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    pub(super) async fn call(
        &self,
        req: Request,
        events: Option<UpcallTx>,
        extra: &[(http::HeaderName, HeaderValue)],
        modern: bool,
    ) -> Result<Response, UpstreamError> {
        let is_init = req.method == "initialize";
        let id = req.id.clone();
        let had_session = self.shared.session.read().is_some();
        // Mirrored headers are computed before the request is moved into its body.
        let mut mirrored: Vec<(&'static str, String)> = Vec::new();
        if modern {
            mirrored.push((
                h::PROTOCOL_VERSION,
                ProtocolVersion::V2026_07_28.as_str().to_owned(),
            ));
            mirrored.push((h::METHOD, h::encode_value(&req.method)));
            if let Some((_, Some(v))) = h::expected_name(&req.method, req.params.as_ref()) {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                mirrored.push((h::NAME, h::encode_value(&text)));
            }
        }
        let cred = self.shared.credential().await?;
        let mut b = self.shared.post(&Message::Request(req), cred);
        for (k, v) in mirrored {
            b = b.header(k, v);
        }
        for (k, v) in extra {
            b = b.header(k, v);
        }
        let resp = b.send().await.map_err(transport_error)?;
        if let Err(e) = check_status(&resp, had_session) {
            if matches!(e, UpstreamError::SessionExpired) {
                self.shared.alive.store(false, Ordering::SeqCst);
                return Err(e);
            }
            // A JSON-RPC error in a 4xx body is the upstream's answer: relay it.
            let is_json = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"));
            if resp.status().is_client_error() && is_json {
                let body = read_bounded(resp).await?;
                if let Ok(Message::Response(mut r)) = Message::parse(&body, MAX_MESSAGE)
                    && r.outcome.is_err()
                {
                    r.id = Some(id);
                    return Ok(r);
                }
            }
            return Err(e);
        }
        if is_init && let Some(sid) = resp.headers().get(h::SESSION_ID) {
            *self.shared.session.write() = Some(sid.clone());
        }
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let sink = events.unwrap_or_else(|| self.unsolicited.clone());
        if ctype.starts_with("text/event-stream") {
            let mut dec = sse::Decoder::new(MAX_MESSAGE);
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk
                    .map_err(|_| UpstreamError::Unavailable("response stream broke".into()))?;
                let events = dec
                    .feed(&chunk)
                    .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                for ev in events.into_iter().filter(sse::Event::is_message) {
                    match Message::parse(ev.data.as_bytes(), MAX_MESSAGE) {
                        Ok(Message::Response(r)) if r.id.as_ref() == Some(&id) => return Ok(r),
                        Ok(Message::Response(_)) => {
                            tracing::debug!(
                                upstream = self.shared.upstream,
                                "ignoring response for another id"
                            );
                        }
                        Ok(msg) => {
                            super::note_list_change(&self.shared.list_changes, &msg);
                            let _ = sink
                                .send(Upcall {
                                    upstream: self.shared.upstream,
                                    reply: ReplyPath::Http(self.shared.clone()),
                                    msg,
                                })
                                .await;
                        }
                        Err(e) => {
                            tracing::warn!(upstream = self.shared.upstream, error = %e, "invalid message on upstream SSE stream");
                        }
                    }
                }
            }
            Err(UpstreamError::Protocol(
                "SSE stream ended without a response".into(),
            ))
        } else if ctype.starts_with("application/json") {
            let body = read_bounded(resp).await?;
            match Message::parse(&body, MAX_MESSAGE) {
                Ok(Message::Response(r)) if r.id.as_ref() == Some(&id) => Ok(r),
                Ok(_) => Err(UpstreamError::Protocol(
                    "JSON reply is not the response to the request".into(),
                )),
                Err(e) => Err(UpstreamError::Protocol(e.to_string())),
            }
        } else {
            Err(UpstreamError::Protocol(format!(
                "unexpected content type {ctype:?}"
            )))
        }
    }

    /// Holds the GET stream open for unsolicited messages.
    pub(super) fn start_listening(&self) {
        let shared = self.shared.clone();
        let sink = self.unsolicited.clone();
        let task = tokio::spawn(async move {
            let mut last_event: Option<String> = None;
            let mut delay = Duration::from_millis(500);
            while shared.alive.load(Ordering::SeqCst) {
                let cred = match shared.credential().await {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay = delay.saturating_mul(2).min(Duration::from_secs(30));
                        continue;
                    }
                };
                let mut b = shared
                    .builder(reqwest::Method::GET, cred)
                    .header(ACCEPT, "text/event-stream");
                if let Some(id) = &last_event {
                    b = b.header(h::LAST_EVENT_ID, id.as_str());
                }
                let resp = match b.send().await {
                    Ok(r) => r,
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay = delay.saturating_mul(2).min(Duration::from_secs(30));
                        continue;
                    }
                };
                match resp.status().as_u16() {
                    200 => {}
                    // The upstream offers no GET stream: nothing to listen to.
                    405 => return,
                    404 => {
                        shared.alive.store(false, Ordering::SeqCst);
                        return;
                    }
                    _ => {
                        tokio::time::sleep(delay).await;
                        delay = delay.saturating_mul(2).min(Duration::from_secs(30));
                        continue;
                    }
                }
                delay = Duration::from_millis(500);
                let mut dec = sse::Decoder::new(MAX_MESSAGE);
                let mut body = resp.bytes_stream();
                while let Some(Ok(chunk)) = body.next().await {
                    let Ok(events) = dec.feed(&chunk) else { break };
                    for ev in events {
                        if let Some(id) = &ev.id {
                            last_event = Some(id.clone());
                        }
                        if let Some(r) = ev.retry {
                            delay = Duration::from_millis(r.min(60_000));
                        }
                        if !ev.is_message() {
                            continue;
                        }
                        if let Ok(msg) = Message::parse(ev.data.as_bytes(), MAX_MESSAGE) {
                            if matches!(msg, Message::Response(_)) {
                                continue;
                            }
                            super::note_list_change(&shared.list_changes, &msg);
                            let _ = sink
                                .send(Upcall {
                                    upstream: shared.upstream,
                                    reply: ReplyPath::Http(shared.clone()),
                                    msg,
                                })
                                .await;
                        }
                    }
                }
                tokio::time::sleep(delay).await;
            }
        });
        *self.listener.lock() = Some(task);
    }

    pub(super) async fn close(&self) {
        self.shared.alive.store(false, Ordering::SeqCst);
        if let Some(t) = self.listener.lock().take() {
            t.abort();
        }
        if self.shared.session.read().is_some() {
            let shared = self.shared.clone();
            let _ = tokio::time::timeout(Duration::from_secs(5), async move {
                if let Ok(cred) = shared.credential().await {
                    let _ = shared.builder(reqwest::Method::DELETE, cred).send().await;
                }
            })
            .await;
        }
    }
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        if let Some(t) = self.listener.lock().take() {
            t.abort();
        }
    }
}

async fn read_bounded(resp: reqwest::Response) -> Result<bytes::Bytes, UpstreamError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_MESSAGE as u64)
    {
        return Err(UpstreamError::Protocol("response too large".into()));
    }
    let mut out = bytes::BytesMut::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| UpstreamError::Unavailable("response body broke".into()))?;
        if out.len().saturating_add(chunk.len()) > MAX_MESSAGE {
            return Err(UpstreamError::Protocol("response too large".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

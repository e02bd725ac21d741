//! The client-facing HTTP surface: `/mcp` for both protocol revisions.
//!
//! HTTP hygiene is a tower stack (request id → sensitive headers → tracing →
//! load shedding and concurrency limit); everything that decides what a request
//! *means* is in [`handle`], which reads top-down:
//! audit health → Host → Origin → HTTP method → content negotiation → body limit →
//! JSON-RPC parse → lane → lane rules → [`Gateway::dispatch`] → JSON or SSE reply.
//!
//! Every exit path of [`handle`] emits exactly one `request` audit event (streams
//! emit it when they end), and every refusal carries an HTTP status and a JSON-RPC
//! error naming what was wrong.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request as HttpRequest, State};
use axum::response::{IntoResponse, Response as HttpResponse};
use bastion_proto::{
    ErrorObject, Id, Message, Notification, ProtocolVersion, Request, Response, codes,
    headers as h, meta, sse,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use rand::RngCore;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tower::ServiceBuilder;

use crate::audit::{AuditEvent, EventKind, Outcome, session_digest};
use crate::config::is_loopback_host;
use crate::context::{Context, Session};
use crate::gateway::{Gateway, Lane, modernize_result, server_info};
use crate::upstream::{ClientHello, Upcall};

/// The principal of every request until authentication lands (`dangerous_none`).
const ANONYMOUS: &str = "anonymous";

/// Builds the router with its middleware stack.
pub fn router(gw: Arc<Gateway>) -> Router {
    let limit = gw.cfg.server.max_concurrent_requests;
    Router::new()
        .route("/mcp", axum::routing::any(handle))
        .fallback(not_found)
        .with_state(gw)
        .layer(
            ServiceBuilder::new()
                .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
                    RequestIds::default(),
                ))
                .layer(
                    tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer::new([
                        header::AUTHORIZATION,
                        header::COOKIE,
                    ]),
                )
                .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
                .layer(tower_http::trace::TraceLayer::new_for_http())
                .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
                .load_shed()
                .concurrency_limit(limit),
        )
}

async fn overloaded(_: tower::BoxError) -> HttpResponse {
    rpc_error(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        ErrorObject::new(codes::GATEWAY_REFUSED, "gateway overloaded; retry later"),
    )
}

async fn not_found() -> HttpResponse {
    rpc_error(
        StatusCode::NOT_FOUND,
        None,
        ErrorObject::new(
            codes::INVALID_REQUEST,
            "not found: the MCP endpoint is /mcp",
        ),
    )
}

/// Request ids: a random per-process prefix and a counter (unique, cheap).
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    n: Arc<AtomicU64>,
}

impl Default for RequestIds {
    fn default() -> Self {
        let mut b = [0u8; 6];
        rand::rng().fill_bytes(&mut b);
        RequestIds {
            prefix: b
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
                .into(),
            n: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(
        &mut self,
        _: &http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// A JSON-RPC error as an HTTP response.
pub fn rpc_error(status: StatusCode, id: Option<Id>, e: ErrorObject) -> HttpResponse {
    let body = Message::Response(Response::error(id, e)).to_vec();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The audit record of one client request, emitted exactly once.
struct Rec {
    gw: Arc<Gateway>,
    ev: AuditEvent,
    t0: Instant,
    done: bool,
}

impl Rec {
    fn new(gw: &Arc<Gateway>, req: &HttpRequest) -> Self {
        let mut ev = AuditEvent::new(EventKind::Request, Outcome::Ok);
        ev.request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        ev.http_method = Some(req.method().as_str().to_owned());
        ev.principal = Some(ANONYMOUS.to_owned());
        Rec {
            gw: gw.clone(),
            ev,
            t0: Instant::now(),
            done: false,
        }
    }

    fn message(&mut self, m: &Message) {
        self.ev.method = m.method().map(str::to_owned);
        if let Message::Request(Request { params, .. })
        | Message::Notification(Notification { params, .. }) = m
        {
            self.ev.target = params
                .as_ref()
                .and_then(|p| p.get("name").or_else(|| p.get("uri")))
                .and_then(Value::as_str)
                .map(|s| s.chars().take(256).collect());
        }
    }

    fn finish(&mut self, status: StatusCode, outcome: Outcome, error: Option<&ErrorObject>) {
        if self.done {
            return;
        }
        self.done = true;
        self.ev.status = Some(status.as_u16());
        self.ev.outcome = outcome;
        if let Some(e) = error {
            self.ev.error_code = Some(e.code);
            self.ev.reason = Some(e.message.chars().take(512).collect());
        }
        self.ev.duration_us = Some(self.t0.elapsed().as_micros() as u64);
        self.gw.audit.emit(self.ev.clone());
    }

    /// Refuses the request: audit + HTTP status + JSON-RPC error.
    fn refuse(&mut self, status: StatusCode, id: Option<Id>, e: ErrorObject) -> HttpResponse {
        self.finish(status, Outcome::Refused, Some(&e));
        rpc_error(status, id, e)
    }
}

impl Drop for Rec {
    fn drop(&mut self) {
        // A path that forgot to finish (e.g. a panic unwinding, a dropped stream)
        // still leaves a trace.
        if !self.done {
            self.finish(StatusCode::INTERNAL_SERVER_ERROR, Outcome::Error, None);
        }
    }
}

/// What the client accepts.
#[derive(Debug, Clone, Copy)]
struct Accept {
    json: bool,
    sse: bool,
}

fn accept(headers: &HeaderMap) -> Accept {
    let Some(v) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Accept {
            json: true,
            sse: true,
        };
    };
    let mut a = Accept {
        json: false,
        sse: false,
    };
    for part in v.split(',') {
        let mt = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mt.as_str() {
            "application/json" | "application/*" => a.json = true,
            "text/event-stream" | "text/*" => a.sse = true,
            "*/*" => {
                a.json = true;
                a.sse = true;
            }
            _ => {}
        }
    }
    a
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Host check (DNS-rebinding defence): the authority must be the gateway's own.
fn host_allowed(gw: &Gateway, headers: &HeaderMap, uri: &http::Uri) -> bool {
    let host = header_str(headers, "host")
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()));
    let Some(host) = host else { return false };
    let host = host.to_ascii_lowercase();
    let s = &gw.cfg.server;
    if s.allowed_hosts.contains(&host) {
        return true;
    }
    let pu = &s.public_url;
    if let Some(ph) = pu.host_str() {
        let ph = ph.to_ascii_lowercase();
        let port = pu.port_or_known_default();
        if host == ph || Some(host.as_str()) == port.map(|p| format!("{ph}:{p}")).as_deref() {
            return true;
        }
    }
    if s.listen.ip().is_loopback() {
        let port = s.listen.port();
        let (name, p) = match host.rsplit_once(':') {
            Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => {
                (n, p.parse::<u16>().ok())
            }
            _ => (host.as_str(), None),
        };
        let name_ok = is_loopback_host(name);
        return name_ok && p.is_none_or(|p| p == port);
    }
    false
}

/// Origin check: absent is fine (non-browser clients); present must be allowed.
fn origin_allowed(gw: &Gateway, headers: &HeaderMap) -> bool {
    let Some(raw) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(o) = raw.to_str() else { return false };
    let Ok(url) = url::Url::parse(o) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") || url.path() != "/" && !o.ends_with(url.path()) {
        return false;
    }
    let origin = url.origin().ascii_serialization();
    let s = &gw.cfg.server;
    if origin == s.public_url.origin().ascii_serialization() || s.allowed_origins.contains(&origin)
    {
        return true;
    }
    s.listen.ip().is_loopback() && url.host_str().is_some_and(is_loopback_host)
}

/// The `/mcp` handler.
async fn handle(State(gw): State<Arc<Gateway>>, req: HttpRequest) -> HttpResponse {
    let mut rec = Rec::new(&gw, &req);
    if !gw.audit.healthy() {
        return rec.refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            ErrorObject::new(
                codes::INTERNAL_ERROR,
                "audit trail unavailable; refusing to serve",
            ),
        );
    }
    if !host_allowed(&gw, req.headers(), req.uri()) {
        return rec.refuse(
            StatusCode::FORBIDDEN,
            None,
            ErrorObject::new(codes::GATEWAY_REFUSED, "Host header is not allowed"),
        );
    }
    if !origin_allowed(&gw, req.headers()) {
        return rec.refuse(
            StatusCode::FORBIDDEN,
            None,
            ErrorObject::new(codes::GATEWAY_REFUSED, "Origin is not allowed"),
        );
    }
    match *req.method() {
        Method::POST => post(gw, req, rec).await,
        Method::GET => get(gw, req, rec).await,
        Method::DELETE => delete(gw, req, rec).await,
        _ => {
            let mut r = rec.refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                ErrorObject::new(
                    codes::INVALID_REQUEST,
                    "method not allowed: use POST, GET or DELETE",
                ),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            r
        }
    }
}

/// Looks up the session named by the request, or the error to answer with.
fn session_of(
    gw: &Gateway,
    headers: &HeaderMap,
) -> Result<Arc<Session>, (StatusCode, ErrorObject)> {
    let Some(sid) = header_str(headers, h::SESSION_ID) else {
        return Err((
            StatusCode::BAD_REQUEST,
            ErrorObject::new(
                codes::SESSION_REQUIRED,
                "Bad Request: Mcp-Session-Id header is required (send initialize first, or use the 2026-07-28 revision's _meta)",
            ),
        ));
    };
    gw.sessions.read().get(sid).cloned().ok_or((
        StatusCode::NOT_FOUND,
        ErrorObject::new(codes::SESSION_REQUIRED, "Session not found"),
    ))
}

async fn post(gw: Arc<Gateway>, req: HttpRequest, mut rec: Rec) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let ctype = header_str(&headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    if !ctype.to_ascii_lowercase().starts_with("application/json") {
        return rec.refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            ErrorObject::new(
                codes::INVALID_REQUEST,
                "Content-Type must be application/json",
            ),
        );
    }
    let acc = accept(&headers);
    if !acc.json && !acc.sse {
        return rec.refuse(
            StatusCode::NOT_ACCEPTABLE,
            None,
            ErrorObject::new(
                codes::INVALID_REQUEST,
                "Not Acceptable: Accept must include application/json and text/event-stream",
            ),
        );
    }
    let limit = gw.cfg.server.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return rec.refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                ErrorObject::new(
                    codes::INVALID_REQUEST,
                    format!("request body exceeds {limit} bytes"),
                ),
            );
        }
    };
    let msg = match Message::parse(&bytes, limit) {
        Ok(m) => m,
        Err(e) => return rec.refuse(StatusCode::BAD_REQUEST, e.id(), e.to_error_object()),
    };
    rec.message(&msg);
    let msg_params = match &msg {
        Message::Request(r) => r.params.as_ref(),
        Message::Notification(n) => n.params.as_ref(),
        Message::Response(_) => None,
    };
    let meta_version = meta::protocol_version(msg_params).cloned();
    let req_id = match &msg {
        Message::Request(r) => Some(r.id.clone()),
        _ => None,
    };
    let has_session = headers.contains_key(h::SESSION_ID);
    let is_initialize = matches!(&msg, Message::Request(r) if r.method == "initialize");
    let header_version = header_str(&headers, h::PROTOCOL_VERSION);
    let header_modern = header_version
        .and_then(ProtocolVersion::parse)
        .is_some_and(|v| v.era() == bastion_proto::Era::Modern);

    if (has_session || is_initialize) && meta_version.is_some() {
        return rec.refuse(
            StatusCode::BAD_REQUEST,
            req_id,
            ErrorObject::new(
                codes::INVALID_REQUEST,
                "request mixes protocol revisions: 2026-07-28 _meta cannot be combined with a session or initialize",
            ),
        );
    }
    if has_session || is_initialize {
        rec.ev.lane = Some(Lane::Legacy.as_str());
        if header_modern {
            return rec.refuse(
                StatusCode::BAD_REQUEST,
                req_id,
                ErrorObject::new(
                    codes::INVALID_REQUEST,
                    "request mixes protocol revisions: MCP-Protocol-Version 2026-07-28 with a session or initialize",
                ),
            );
        }
        if is_initialize && let Message::Request(r) = msg {
            return initialize(gw, r, acc, rec).await;
        }
        return legacy_post(gw, &headers, msg, acc, rec).await;
    }
    if meta_version.is_some() || header_version.is_some() || headers.contains_key(h::METHOD) {
        rec.ev.lane = Some(Lane::Modern.as_str());
        return modern_post(gw, &headers, msg, acc, rec).await;
    }
    rec.ev.lane = Some(Lane::Legacy.as_str());
    let (status, e) = match session_of(&gw, &headers) {
        Err(x) => x,
        Ok(_) => (
            StatusCode::BAD_REQUEST,
            ErrorObject::new(codes::INVALID_REQUEST, "bad request"),
        ),
    };
    rec.refuse(status, req_id, e)
}

async fn initialize(gw: Arc<Gateway>, r: Request, acc: Accept, mut rec: Rec) -> HttpResponse {
    if gw.sessions.read().len() >= gw.cfg.server.max_sessions {
        return rec.refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(r.id),
            ErrorObject::new(codes::GATEWAY_REFUSED, "too many sessions; retry later"),
        );
    }
    let params = r.params.clone().unwrap_or_else(|| json!({}));
    let Some(requested) = params.get("protocolVersion").and_then(Value::as_str) else {
        return rec.refuse(
            StatusCode::BAD_REQUEST,
            Some(r.id),
            ErrorObject::new(
                codes::INVALID_PARAMS,
                "params.protocolVersion must be a string",
            ),
        );
    };
    // Negotiation: echo a supported legacy revision, else offer the latest legacy one.
    let version = ProtocolVersion::parse(requested)
        .filter(|v| v.era() == bastion_proto::Era::Legacy)
        .unwrap_or(ProtocolVersion::LATEST_LEGACY);
    let capabilities = params
        .get("capabilities")
        .filter(|c| c.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let client_info = params
        .get("clientInfo")
        .cloned()
        .unwrap_or_else(|| json!({"name": "unknown", "version": "0"}));
    let hello = ClientHello {
        version,
        capabilities,
        client_info,
    };
    let id = new_session_id();
    let session = Arc::new(Session {
        digest: session_digest(&id),
        id: id.clone(),
        version,
        ctx: Context::new(hello, gw.upstreams.len()),
        listening: std::sync::atomic::AtomicBool::new(false),
    });
    let (caps, instructions) = gw.open_all(&session.ctx).await;
    let mut result = json!({
        "protocolVersion": version.as_str(),
        "capabilities": caps,
        "serverInfo": server_info(),
    });
    if let (Some(i), Some(obj)) = (instructions, result.as_object_mut()) {
        obj.insert("instructions".into(), Value::from(i));
    }
    gw.sessions.write().insert(id.clone(), session.clone());
    rec.ev.session = Some(session.digest.clone());
    let mut sev = AuditEvent::new(EventKind::Session, Outcome::Ok);
    sev.session = Some(session.digest.clone());
    sev.reason = Some(format!("session started ({version})"));
    gw.audit.emit(sev);
    rec.finish(StatusCode::OK, Outcome::Ok, None);
    let mut resp = single(Response::result(r.id, result), acc, StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(h::SESSION_ID, v);
    }
    resp
}

/// A session id: 256 bits from a CSPRNG, base64url without padding.
fn new_session_id() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    // ThreadRng is a ChaCha CSPRNG seeded and periodically reseeded from the OS.
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

async fn legacy_post(
    gw: Arc<Gateway>,
    headers: &HeaderMap,
    msg: Message,
    acc: Accept,
    mut rec: Rec,
) -> HttpResponse {
    let req_id = match &msg {
        Message::Request(r) => Some(r.id.clone()),
        _ => None,
    };
    let session = match session_of(&gw, headers) {
        Ok(s) => s,
        Err((status, e)) => return rec.refuse(status, req_id, e),
    };
    rec.ev.session = Some(session.digest.clone());
    if let Some(v) = header_str(headers, h::PROTOCOL_VERSION)
        && ProtocolVersion::parse(v) != Some(session.version)
    {
        return rec.refuse(
            StatusCode::BAD_REQUEST,
            req_id,
            ErrorObject::with_data(
                codes::INVALID_REQUEST,
                format!(
                    "Bad Request: unsupported MCP-Protocol-Version {v:?}; this session negotiated {}",
                    session.version
                ),
                json!({"supported": [session.version.as_str()], "requested": v}),
            ),
        );
    }
    session.ctx.touch();
    match msg {
        Message::Request(r) => {
            run_request(gw, Ctx::Session(session), Lane::Legacy, r, acc, rec).await
        }
        Message::Notification(n) => {
            gw.notify(&session.ctx, n).await;
            rec.finish(StatusCode::ACCEPTED, Outcome::Ok, None);
            StatusCode::ACCEPTED.into_response()
        }
        Message::Response(r) => match gw.answer(&session.ctx, r).await {
            Ok(()) => {
                rec.finish(StatusCode::ACCEPTED, Outcome::Ok, None);
                StatusCode::ACCEPTED.into_response()
            }
            Err(e) => rec.refuse(StatusCode::BAD_REQUEST, None, e),
        },
    }
}

async fn modern_post(
    gw: Arc<Gateway>,
    headers: &HeaderMap,
    msg: Message,
    acc: Accept,
    mut rec: Rec,
) -> HttpResponse {
    let (id, method, params) = match &msg {
        Message::Request(r) => (Some(r.id.clone()), r.method.as_str(), r.params.as_ref()),
        Message::Notification(n) => (None, n.method.as_str(), n.params.as_ref()),
        Message::Response(_) => {
            return rec.refuse(
                StatusCode::BAD_REQUEST,
                None,
                ErrorObject::new(
                    codes::INVALID_REQUEST,
                    "clients must not send responses in the 2026-07-28 revision",
                ),
            );
        }
    };
    if let Err((status, e)) = check_modern(headers, method, params) {
        return rec.refuse(status, id, e);
    }
    let Message::Request(r) = msg else {
        // The revision defines no client notifications over HTTP; accept and drop.
        rec.finish(StatusCode::ACCEPTED, Outcome::Ok, None);
        return StatusCode::ACCEPTED.into_response();
    };
    let m = meta::meta(r.params.as_ref());
    let hello = ClientHello {
        version: ProtocolVersion::V2026_07_28,
        capabilities: m
            .and_then(|m| m.get(meta::CLIENT_CAPABILITIES))
            .cloned()
            .unwrap_or_else(|| json!({})),
        client_info: m
            .and_then(|m| m.get(meta::CLIENT_INFO))
            .cloned()
            .unwrap_or_else(|| json!({"name": "unknown", "version": "0"})),
    };
    let ctx = gw.stateless_context(ANONYMOUS, hello);
    run_request(gw, Ctx::Stateless(ctx), Lane::Modern, r, acc, rec).await
}

/// The 2026-07-28 request rules, checked before any routing: protocol version
/// header and `_meta` present, supported and equal; `Mcp-Method`/`Mcp-Name`
/// present and equal to the body; client capabilities declared.
fn check_modern(
    headers: &HeaderMap,
    method: &str,
    params: Option<&Value>,
) -> Result<(), (StatusCode, ErrorObject)> {
    let bad = |code: i64, msg: String| (StatusCode::BAD_REQUEST, ErrorObject::new(code, msg));
    let supported = || json!([ProtocolVersion::V2026_07_28.as_str()]);
    let meta_v = meta::protocol_version(params);
    let header_v = headers.get(h::PROTOCOL_VERSION);
    let Some(header_v) = header_v else {
        return Err(bad(
            codes::HEADER_MISMATCH,
            "MCP-Protocol-Version header is required".into(),
        ));
    };
    let header_v = bastion_proto::headers::decode_value(header_v.as_bytes())
        .map_err(|e| bad(codes::HEADER_MISMATCH, format!("MCP-Protocol-Version: {e}")))?;
    let Some(meta_v) = meta_v else {
        return Err(bad(
            codes::INVALID_PARAMS,
            format!("params._meta[\"{}\"] is required", meta::PROTOCOL_VERSION),
        ));
    };
    let Some(meta_v) = meta_v.as_str() else {
        return Err(bad(
            codes::INVALID_PARAMS,
            "protocol version in _meta must be a string".into(),
        ));
    };
    if meta_v != header_v {
        return Err(bad(
            codes::HEADER_MISMATCH,
            format!(
                "MCP-Protocol-Version header {header_v:?} does not match _meta protocol version {meta_v:?}"
            ),
        ));
    }
    if ProtocolVersion::parse(meta_v).is_none_or(|v| v.era() != bastion_proto::Era::Modern) {
        return Err((
            StatusCode::BAD_REQUEST,
            ErrorObject::with_data(
                codes::UNSUPPORTED_PROTOCOL_VERSION,
                format!("Unsupported protocol version {meta_v:?}"),
                json!({"supported": supported(), "requested": meta_v}),
            ),
        ));
    }
    match headers
        .get(h::METHOD)
        .map(|v| bastion_proto::headers::decode_value(v.as_bytes()))
    {
        None => {
            return Err(bad(
                codes::HEADER_MISMATCH,
                "Mcp-Method header is required".into(),
            ));
        }
        Some(Err(e)) => return Err(bad(codes::HEADER_MISMATCH, format!("Mcp-Method: {e}"))),
        Some(Ok(v)) if v != method => {
            return Err(bad(
                codes::HEADER_MISMATCH,
                format!("Mcp-Method header {v:?} does not match body method {method:?}"),
            ));
        }
        Some(Ok(_)) => {}
    }
    if headers.get_all(h::METHOD).iter().count() > 1 || headers.get_all(h::NAME).iter().count() > 1
    {
        return Err(bad(
            codes::HEADER_MISMATCH,
            "mirrored headers must not be repeated".into(),
        ));
    }
    if let Some((field, body_value)) = bastion_proto::headers::expected_name(method, params) {
        let hv = headers
            .get(h::NAME)
            .map(|v| bastion_proto::headers::decode_value(v.as_bytes()));
        match (hv, body_value) {
            (None, _) => {
                return Err(bad(
                    codes::HEADER_MISMATCH,
                    "Mcp-Name header is required".into(),
                ));
            }
            (Some(Err(e)), _) => return Err(bad(codes::HEADER_MISMATCH, format!("Mcp-Name: {e}"))),
            (Some(Ok(v)), Some(b)) if bastion_proto::headers::matches_body(&v, b) => {}
            (Some(Ok(v)), _) => {
                return Err(bad(
                    codes::HEADER_MISMATCH,
                    format!("Mcp-Name header {v:?} does not match params.{field}"),
                ));
            }
        }
    }
    let caps = meta::meta(params).and_then(|m| m.get(meta::CLIENT_CAPABILITIES));
    if !caps.is_some_and(Value::is_object) {
        return Err(bad(
            codes::INVALID_PARAMS,
            format!(
                "params._meta[\"{}\"] is required",
                meta::CLIENT_CAPABILITIES
            ),
        ));
    }
    Ok(())
}

/// The client context a request runs in.
#[derive(Clone)]
enum Ctx {
    Session(Arc<Session>),
    Stateless(Arc<Context>),
}

impl Ctx {
    fn ctx(&self) -> &Context {
        match self {
            Ctx::Session(s) => &s.ctx,
            Ctx::Stateless(c) => c,
        }
    }
}

/// A response as a single JSON body, or a one-event SSE stream when the client
/// accepts only SSE.
fn single(resp: Response, acc: Accept, status: StatusCode) -> HttpResponse {
    let bytes = Message::Response(resp).to_vec();
    if acc.json {
        (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    } else {
        let ev = sse::encode_message(None, &bytes);
        sse_response(Body::from(ev))
    }
}

fn sse_response(body: Body) -> HttpResponse {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache, no-transform"),
            (http::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// HTTP status for a final response on the modern lane (method-not-found is 404).
fn final_status(lane: Lane, resp: &Response) -> StatusCode {
    match (&resp.outcome, lane) {
        (Err(e), Lane::Modern) if e.code == codes::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

fn finish_response(lane: Lane, method: &str, mut resp: Response) -> Response {
    if lane == Lane::Modern {
        match resp.outcome.as_mut() {
            Ok(r) => modernize_result(method, r),
            // 2026-07-28 moved "resource not found" to -32602 and forbids -32002.
            Err(e) if e.code == codes::RESOURCE_NOT_FOUND_LEGACY => e.code = codes::INVALID_PARAMS,
            Err(_) => {}
        }
    }
    resp
}

/// Converts an upcall for this client, or disposes of it. `None` = nothing to send.
async fn upcall_for_client(
    gw: &Gateway,
    ctx: &Context,
    lane: Lane,
    log: bool,
    up: Upcall,
) -> Option<Message> {
    match lane {
        Lane::Legacy => gw.upcall_to_client(ctx, up),
        Lane::Modern => match up.msg {
            Message::Notification(n) => {
                let keep = match n.method.as_str() {
                    "notifications/progress" => true,
                    "notifications/message" => log,
                    // Request streams carry only notifications about the request.
                    _ => false,
                };
                keep.then_some(Message::Notification(n))
            }
            Message::Request(r) => {
                // Stateless clients cannot be sent requests; the input_required bridge
                // is where they go. Until then the upstream gets a clear refusal.
                let _ = up
                    .reply
                    .send(Response::error(
                        Some(r.id),
                        ErrorObject::new(
                            codes::METHOD_NOT_FOUND,
                            "the client uses the stateless 2026-07-28 revision and cannot receive this request",
                        ),
                    ))
                    .await;
                None
            }
            Message::Response(_) => None,
        },
    }
}

/// Runs a request: waits for the response or the first related message, then
/// answers with JSON (nothing else to say) or an SSE stream (messages first).
async fn run_request(
    gw: Arc<Gateway>,
    c: Ctx,
    lane: Lane,
    req: Request,
    acc: Accept,
    mut rec: Rec,
) -> HttpResponse {
    let method = req.method.clone();
    let log = lane == Lane::Modern
        && meta::meta(req.params.as_ref()).is_some_and(|m| m.contains_key(meta::LOG_LEVEL));
    let (tx, mut rx) = mpsc::channel::<Upcall>(64);
    let task = {
        let gw = gw.clone();
        let c = c.clone();
        tokio::spawn(async move { gw.dispatch(c.ctx(), lane, req, tx).await })
    };
    let deadline = gw.cfg.server.request_timeout;
    let mut task = task;
    // Phase 1: until the first message to relay, the answer may still be plain JSON.
    let first = loop {
        tokio::select! {
            biased;
            res = &mut task => {
                let resp = match res {
                    Ok(r) => finish_response(lane, &method, r),
                    Err(_) => Response::error(None, ErrorObject::new(codes::INTERNAL_ERROR, "internal error")),
                };
                let status = final_status(lane, &resp);
                let outcome = if resp.outcome.is_ok() { Outcome::Ok } else { Outcome::Error };
                rec.finish(status, outcome, resp.outcome.as_ref().err());
                return single(resp, acc, status);
            }
            up = rx.recv() => {
                let Some(up) = up else { continue };
                if let Some(m) = upcall_for_client(&gw, c.ctx(), lane, log, up).await {
                    if acc.sse {
                        break m;
                    }
                    // JSON-only client: requests go to its GET stream; notifications
                    // about this request cannot be delivered and are dropped.
                    if let (Message::Request(_), Ctx::Session(_)) = (&m, &c) {
                        tracing::debug!("JSON-only client: server request deferred to the GET stream");
                    }
                }
            }
            _ = tokio::time::sleep(deadline) => {
                task.abort();
                let e = ErrorObject::new(codes::UPSTREAM_TIMEOUT, format!("request timed out after {deadline:?}"));
                rec.finish(StatusCode::GATEWAY_TIMEOUT, Outcome::Error, Some(&e));
                return rpc_error(StatusCode::GATEWAY_TIMEOUT, None, e);
            }
        }
    };
    // Phase 2: stream.
    let (btx, brx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let mut client_gone = btx
            .send(Ok(sse::encode_message(None, &first.to_vec())))
            .await
            .is_err();
        loop {
            tokio::select! {
                biased;
                res = &mut task => {
                    let resp = match res {
                        Ok(r) => finish_response(lane, &method, r),
                        Err(_) => Response::error(None, ErrorObject::new(codes::INTERNAL_ERROR, "internal error")),
                    };
                    let outcome = if resp.outcome.is_ok() { Outcome::Ok } else { Outcome::Error };
                    rec.finish(StatusCode::OK, outcome, resp.outcome.as_ref().err());
                    if !client_gone {
                        let _ = btx.send(Ok(sse::encode_message(None, &Message::Response(resp).to_vec()))).await;
                    }
                    return;
                }
                up = rx.recv() => {
                    let Some(up) = up else { continue };
                    if client_gone {
                        continue;
                    }
                    if let Some(m) = upcall_for_client(&gw, c.ctx(), lane, log, up).await
                        && btx.send(Ok(sse::encode_message(None, &m.to_vec()))).await.is_err()
                    {
                        client_gone = true;
                        if lane == Lane::Modern {
                            // 2026-07-28: closing the stream cancels the request.
                            task.abort();
                            let e = ErrorObject::new(codes::INVALID_REQUEST, "client closed the stream (cancelled)");
                            rec.finish(StatusCode::OK, Outcome::Error, Some(&e));
                            return;
                        }
                    }
                }
            }
        }
    });
    sse_response(Body::from_stream(ReceiverStream::new(brx)))
}

async fn get(gw: Arc<Gateway>, req: HttpRequest, mut rec: Rec) -> HttpResponse {
    rec.ev.lane = Some(Lane::Legacy.as_str());
    let headers = req.headers();
    if !headers.contains_key(h::SESSION_ID) {
        return rec.refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            ErrorObject::new(
                codes::INVALID_REQUEST,
                "GET needs an Mcp-Session-Id (2025 revisions); the 2026-07-28 revision uses subscriptions/listen",
            ),
        );
    }
    let session = match session_of(&gw, headers) {
        Ok(s) => s,
        Err((status, e)) => return rec.refuse(status, None, e),
    };
    rec.ev.session = Some(session.digest.clone());
    if !accept(headers).sse {
        return rec.refuse(
            StatusCode::NOT_ACCEPTABLE,
            None,
            ErrorObject::new(
                codes::INVALID_REQUEST,
                "Not Acceptable: GET requires Accept: text/event-stream",
            ),
        );
    }
    if session
        .listening
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return rec.refuse(
            StatusCode::CONFLICT,
            None,
            ErrorObject::new(
                codes::INVALID_REQUEST,
                "Conflict: only one GET stream per session",
            ),
        );
    }
    session.ctx.touch();
    rec.finish(StatusCode::OK, Outcome::Ok, None);
    let (btx, brx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let mut rx = session.ctx.unsolicited_rx.lock().await;
        let mut keepalive = tokio::time::interval(Duration::from_secs(15));
        keepalive.tick().await;
        loop {
            tokio::select! {
                up = rx.recv() => {
                    let Some(up) = up else { break };
                    let Some(m) = gw.upcall_to_client(&session.ctx, up) else { continue };
                    if btx.send(Ok(sse::encode_message(None, &m.to_vec()))).await.is_err() {
                        break;
                    }
                    session.ctx.touch();
                }
                _ = keepalive.tick() => {
                    if btx.send(Ok(Bytes::from_static(sse::KEEP_ALIVE))).await.is_err() {
                        break;
                    }
                }
            }
        }
        drop(rx);
        session.listening.store(false, Ordering::SeqCst);
    });
    sse_response(Body::from_stream(ReceiverStream::new(brx)))
}

async fn delete(gw: Arc<Gateway>, req: HttpRequest, mut rec: Rec) -> HttpResponse {
    rec.ev.lane = Some(Lane::Legacy.as_str());
    if !req.headers().contains_key(h::SESSION_ID) {
        return rec.refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            ErrorObject::new(codes::INVALID_REQUEST, "DELETE needs an Mcp-Session-Id"),
        );
    }
    let session = match session_of(&gw, req.headers()) {
        Ok(s) => s,
        Err((status, e)) => return rec.refuse(status, None, e),
    };
    rec.ev.session = Some(session.digest.clone());
    gw.end_session(&session.id).await;
    let mut sev = AuditEvent::new(EventKind::Session, Outcome::Ok);
    sev.session = Some(session.digest.clone());
    sev.reason = Some("session ended by client".into());
    gw.audit.emit(sev);
    rec.finish(StatusCode::OK, Outcome::Ok, None);
    StatusCode::OK.into_response()
}

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
use crate::gateway::{Gateway, Lane, modernize_result, server_info};
use crate::pipeline::authz::Caller;
use crate::pipeline::listen::Filter;
use crate::session::context::{Context, Session};
use crate::upstream::{ClientHello, Pass, Upcall};

mod driver;

/// Builds the router with its middleware stack.
pub fn router(gw: Arc<Gateway>) -> Router {
    let limits = gw.limits.clone();
    let mut r = Router::new().route("/mcp", axum::routing::any(handle));
    if gw.auth.enabled() {
        for p in gw.auth.prm_paths() {
            r = r.route(p, axum::routing::get(prm));
        }
    }
    if gw.auth.dev_issuer().is_some() {
        r = r
            .route(
                &format!("{}/jwks", crate::transport::auth::DEV_ISSUER_PATH),
                axum::routing::get(dev_jwks),
            )
            .route(
                &format!(
                    "/.well-known/oauth-authorization-server{}",
                    crate::transport::auth::DEV_ISSUER_PATH
                ),
                axum::routing::get(dev_metadata),
            );
    }
    r.fallback(not_found)
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
                // Spans name the path only: a query string could carry a token
                // a client put there by mistake (RS-14/RS-19).
                .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
                    |req: &http::Request<Body>| {
                        tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
                    },
                ))
                // Requests in progress, streams until they end (load shed at
                // the limit, never queued).
                .layer(axum::middleware::from_fn_with_state(
                    (limits, overloaded as fn() -> HttpResponse),
                    crate::transport::limits::concurrency,
                )),
        )
}

/// The admin listener's routes: `GET /metrics` (Prometheus text format),
/// behind a bearer token when one is configured.
pub fn admin_router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .merge(crate::admin::routes())
        // Every admin route, `/metrics` included, answers only its own
        // authority (DNS rebinding would otherwise let a web page read it).
        .layer(axum::middleware::from_fn_with_state(gw.clone(), admin_host))
        .with_state(gw)
}

/// The admin listener's Host check (see [`authority_allowed`]); a refusal is
/// a JSON error and an audit event.
async fn admin_host(
    State(gw): State<Arc<Gateway>>,
    req: HttpRequest,
    next: axum::middleware::Next,
) -> HttpResponse {
    let a = &gw.cfg.admin;
    let ok = a.listen.is_some_and(|listen| {
        authority_allowed(req.headers(), req.uri(), listen, None, &a.allowed_hosts)
            || header_str(req.headers(), "host")
                .is_some_and(|h| h.eq_ignore_ascii_case(&listen.to_string()))
    });
    if !ok {
        let mut ev = crate::audit::AuditEvent::new(
            crate::audit::EventKind::Request,
            crate::audit::Outcome::Refused,
        );
        ev.method = Some(format!("admin {}", req.uri().path()));
        ev.reason = Some("admin listener: Host header is not allowed".into());
        gw.audit.emit(ev);
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": "Host header is not allowed"})),
        )
            .into_response();
    }
    next.run(req).await
}

async fn metrics(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> HttpResponse {
    if let Some(t) = &gw.cfg.admin.metrics_token {
        let want = format!("Bearer {}", t.expose_secret());
        let got = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Constant-time comparison: the token is a secret.
        let same = crate::admin::constant_time_eq(got, want.as_bytes());
        if !same {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the admin bearer token\n",
            )
                .into_response();
        }
    }
    let body = gw.metrics.render(
        gw.audit.queue_depth(),
        gw.audit.healthy(),
        gw.sessions.read().len(),
        gw.authz.policies.engine().len(),
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn overloaded() -> HttpResponse {
    rpc_error(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        ErrorObject::new(codes::GATEWAY_REFUSED, "gateway overloaded; retry later"),
    )
}

/// RFC 9728 Protected Resource Metadata.
async fn prm(State(gw): State<Arc<Gateway>>) -> HttpResponse {
    gw.auth.prm_response()
}

/// The development issuer's key set.
async fn dev_jwks(State(gw): State<Arc<Gateway>>) -> HttpResponse {
    match gw.auth.dev_issuer() {
        Some(d) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            d.jwks().to_string(),
        )
            .into_response(),
        None => not_found().await,
    }
}

/// The development issuer's RFC 8414 metadata (keys only: it has no endpoints;
/// `bastion dev-token` mints its tokens).
async fn dev_metadata(State(gw): State<Arc<Gateway>>) -> HttpResponse {
    match gw.auth.dev_issuer() {
        Some(d) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json!({
                "issuer": d.issuer(),
                "jwks_uri": format!("{}/jwks", d.issuer()),
                "response_types_supported": [],
                "grant_types_supported": [],
            })
            .to_string(),
        )
            .into_response(),
        None => not_found().await,
    }
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

use crate::transport::refusal::Refusal;
pub use crate::transport::refusal::rpc_error;

/// The audit record of one client request, emitted exactly once.
struct Rec {
    gw: Arc<Gateway>,
    ev: AuditEvent,
    t0: Instant,
    done: bool,
    /// The principal's binding key (issuer and subject), once authenticated.
    pkey: String,
    /// The principal, once authenticated.
    who: Option<bastion_auth::Principal>,
    /// The client's address.
    client_ip: Option<std::net::IpAddr>,
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
        let client_ip = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        ev.client_addr = client_ip.map(|ip| ip.to_string());
        Rec {
            gw: gw.clone(),
            client_ip,
            ev,
            t0: Instant::now(),
            done: false,
            pkey: String::new(),
            who: None,
        }
    }

    /// The caller, for authorization (anonymous only before authentication,
    /// which no dispatching path is).
    fn caller(&self) -> Arc<Caller> {
        Arc::new(Caller::new(
            self.who
                .clone()
                .unwrap_or_else(bastion_auth::Principal::anonymous),
            self.client_ip,
            self.ev.request_id.clone(),
        ))
    }

    /// Refuses with the 403 `insufficient_scope` step-up challenge.
    fn step_up(&mut self, id: Id, caller: &Caller, scopes: Vec<String>) -> HttpResponse {
        let (f, resp) = self.gw.auth.step_up(&caller.principal, scopes, Some(id));
        self.auth_event(&Err(f));
        let e = ErrorObject::new(
            codes::UNAUTHORIZED,
            "the access token lacks the scopes this request needs",
        );
        self.finish(StatusCode::FORBIDDEN, Outcome::Refused, Some(&e));
        resp
    }

    /// Records who the request comes from.
    fn principal(&mut self, p: &bastion_auth::Principal) {
        self.ev.principal = Some(p.subject.clone());
        self.ev.issuer = Some(p.issuer.clone());
        self.ev.client_id = p.client_id.clone();
        self.pkey = p.key();
    }

    /// Emits the authentication event for this request's credential check.
    fn auth_event(
        &self,
        r: &Result<
            (
                bastion_auth::Principal,
                Option<crate::config::secret::Secret>,
            ),
            bastion_auth::AuthFailure,
        >,
    ) {
        let outcome = if r.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Refused
        };
        let mut ev = AuditEvent::new(EventKind::Auth, outcome);
        ev.request_id = self.ev.request_id.clone();
        ev.http_method = self.ev.http_method.clone();
        let p = match r {
            Ok((p, _)) => Some(p),
            Err(f) => {
                ev.status = Some(f.status());
                ev.reason = Some(f.reason.to_string());
                if !f.required_scopes.is_empty() {
                    ev.scopes = Some(f.required_scopes.join(" "));
                }
                f.principal.as_deref()
            }
        };
        if let Some(p) = p {
            ev.principal = Some(p.subject.clone());
            ev.issuer = Some(p.issuer.clone());
            ev.client_id = p.client_id.clone();
            ev.credential = Some(p.kind.as_str());
            ev.token_id = p.token_id.clone();
            if r.is_ok() {
                ev.scopes = Some(p.scope_string());
            }
        }
        self.gw.audit.emit(ev);
    }

    fn message(&mut self, m: &Message) {
        self.ev.method = m.method().map(str::to_owned);
        if let Message::Request(Request { params, method, .. }) = m
            && matches!(method.as_str(), "tools/call" | "prompts/get")
            && let Some(a) = params.as_ref().and_then(|p| p.get("arguments"))
        {
            self.ev.arguments = Some(crate::audit::redact_arguments(&self.gw.detect, a));
        }
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
        self.gw.metrics.request(
            self.ev.lane,
            self.ev.method.as_deref(),
            match outcome {
                Outcome::Ok => "ok",
                Outcome::Refused => "refused",
                Outcome::Error => "error",
            },
            self.t0.elapsed().as_secs_f64(),
        );
        self.gw.audit.emit(self.ev.clone());
    }

    /// Finishes with the final response `resp` and answers with it: the
    /// response is serialized once, and its size recorded.
    fn answer(&mut self, resp: Response, acc: Accept, status: StatusCode) -> HttpResponse {
        let outcome = outcome_of(&resp);
        let error = resp.outcome.as_ref().err().cloned();
        let bytes = Message::Response(resp).to_vec();
        self.ev.bytes_out = Some(bytes.len() as u64);
        self.finish(status, outcome, error.as_ref());
        single_bytes(bytes, acc, status)
    }

    /// Refuses the request: the one place a [`Refusal`] becomes its audit
    /// event (outcome, status, error code and reason, duration, metrics) and
    /// its answer (the HTTP status and the JSON-RPC error).
    fn refuse(&mut self, r: Refusal) -> HttpResponse {
        self.finish(r.status, r.outcome, Some(r.error.as_ref()));
        r.into_response()
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
    let s = &gw.cfg.server;
    authority_allowed(
        headers,
        uri,
        s.listen,
        Some(&s.public_url),
        &s.allowed_hosts,
    )
}

/// Whether the request's `Host` (else its URI authority) names a listener on
/// `listen`: one of `allowed`, the host of `public_url`, or, for a loopback
/// listener, a loopback name with its port. Anything else (a DNS-rebinding
/// page's own name) is refused.
pub(crate) fn authority_allowed(
    headers: &HeaderMap,
    uri: &http::Uri,
    listen: std::net::SocketAddr,
    public_url: Option<&url::Url>,
    allowed: &[String],
) -> bool {
    let host = header_str(headers, "host")
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()));
    let Some(host) = host else { return false };
    let host = host.to_ascii_lowercase();
    if allowed.contains(&host) {
        return true;
    }
    if let Some(pu) = public_url
        && let Some(ph) = pu.host_str()
    {
        let ph = ph.to_ascii_lowercase();
        let port = pu.port_or_known_default();
        if host == ph || Some(host.as_str()) == port.map(|p| format!("{ph}:{p}")).as_deref() {
            return true;
        }
    }
    if listen.ip().is_loopback() {
        let port = listen.port();
        // `name[:port]`, where an IPv6 name is bracketed: `[::1]:8080`.
        let (name, rest) = match host.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((ip, rest)) => (ip, rest),
                None => return false,
            },
            None => match host.find(':') {
                Some(i) => (host.get(..i).unwrap_or(""), host.get(i..).unwrap_or("")),
                None => (host.as_str(), ""),
            },
        };
        let port_ok = match rest.strip_prefix(':') {
            Some(p) => p.parse::<u16>().is_ok_and(|p| p == port),
            None => rest.is_empty(),
        };
        return is_loopback_host(name) && port_ok;
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
/// Serves `/mcp`. The answer leaves only once the records of everything this
/// request did are durable (group commit: concurrent requests share a sync),
/// so a crash never loses the record of an answered request.
async fn handle(State(gw): State<Arc<Gateway>>, req: HttpRequest) -> HttpResponse {
    let resp = serve_mcp(gw.clone(), req).await;
    gw.audit.barrier().await;
    resp
}

async fn serve_mcp(gw: Arc<Gateway>, mut req: HttpRequest) -> HttpResponse {
    let mut rec = Rec::new(&gw, &req);
    if !gw.audit.healthy() {
        return rec.refuse(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorObject::new(
                codes::INTERNAL_ERROR,
                "audit trail unavailable; refusing to serve",
            ),
        ));
    }
    if !host_allowed(&gw, req.headers(), req.uri()) {
        return rec.refuse(Refusal::new(
            StatusCode::FORBIDDEN,
            ErrorObject::new(codes::GATEWAY_REFUSED, "Host header is not allowed"),
        ));
    }
    if !origin_allowed(&gw, req.headers()) {
        return rec.refuse(Refusal::new(
            StatusCode::FORBIDDEN,
            ErrorObject::new(codes::GATEWAY_REFUSED, "Origin is not allowed"),
        ));
    }
    // Authentication: every request, sessions never authenticate (C0.2, C0.3).
    // The client's credentials are removed from the request here, whatever the
    // outcome, so nothing downstream can forward them.
    let method = req.method().clone();
    let auth = gw.auth.authenticate(req.headers_mut(), &method).await;
    if gw.auth.enabled() {
        rec.auth_event(&auth);
    }
    let (principal, subject) = match auth {
        Ok(p) => p,
        Err(f) => {
            if let Some(p) = &f.principal {
                rec.principal(p);
            }
            let e = ErrorObject::new(codes::UNAUTHORIZED, f.reason.to_string());
            let status = StatusCode::from_u16(f.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            rec.finish(status, Outcome::Refused, Some(&e));
            return gw.auth.refusal(&f, None);
        }
    };
    rec.principal(&principal);
    rec.who = Some(principal);
    crate::transport::auth::with_subject(subject, async move {
        match *req.method() {
            Method::POST => post(gw, req, rec).await,
            Method::GET => get(gw, req, rec).await,
            Method::DELETE => delete(gw, req, rec).await,
            _ => {
                let mut r = rec.refuse(Refusal::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    ErrorObject::new(
                        codes::INVALID_REQUEST,
                        "method not allowed: use POST, GET or DELETE",
                    ),
                ));
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                r
            }
        }
    })
    .await
}

fn missing_session() -> ErrorObject {
    ErrorObject::new(
        codes::SESSION_REQUIRED,
        "Bad Request: Mcp-Session-Id header is required (send initialize first, or use the 2026-07-28 revision's _meta)",
    )
}

/// Rebuilds a session another instance created from its stored record: the
/// same binding, a fresh context whose upstream connections open on demand.
fn rehydrate(
    gw: &Gateway,
    sid: &str,
    r: crate::state::store::SessionRecord,
) -> Option<Arc<Session>> {
    let version = ProtocolVersion::parse(&r.version)?;
    let age = bastion_auth::now_secs().saturating_sub(r.created);
    let created = std::time::Instant::now()
        .checked_sub(Duration::from_secs(age))
        .unwrap_or_else(std::time::Instant::now);
    let hello = ClientHello {
        version,
        capabilities: r.capabilities,
        client_info: r.client_info,
    };
    let session = Arc::new(Session {
        digest: session_digest(sid),
        binding: crate::session::context::Binding {
            client_id: r.client_id,
            scopes: r.scopes.into_iter().collect(),
            origin: r.origin,
            user_agent: r.user_agent,
            client_ip: r.client_ip.and_then(|ip| ip.parse().ok()),
            created,
        },
        id: sid.to_owned(),
        version,
        ctx: Context::new(
            hello,
            gw.upstreams.len(),
            bastion_proto::Era::Legacy,
            &r.principal,
        ),
        listening: std::sync::atomic::AtomicBool::new(false),
        streams: crate::transport::streams::StreamLogs::default(),
    });
    let mut map = gw.sessions.write();
    if map.len() >= gw.cfg.server.max_sessions {
        return None;
    }
    Some(map.entry(sid.to_owned()).or_insert(session).clone())
}

/// The stored form of a session.
fn record_of(s: &Session) -> crate::state::store::SessionRecord {
    let hello = s.ctx.hello();
    let age = s.binding.created.elapsed().as_secs();
    crate::state::store::SessionRecord {
        principal: s.ctx.principal.clone(),
        client_id: s.binding.client_id.clone(),
        scopes: s.binding.scopes.iter().cloned().collect(),
        origin: s.binding.origin.clone(),
        user_agent: s.binding.user_agent.clone(),
        client_ip: s.binding.client_ip.map(|ip| ip.to_string()),
        created: bastion_auth::now_secs().saturating_sub(age),
        version: s.version.as_str().to_owned(),
        capabilities: hello.capabilities,
        client_info: hello.client_info,
    }
}

/// Looks up the session named by the request, or the error to answer with.
///
/// A session belongs to the principal (issuer, subject) and client that created
/// it: any other gets exactly the answer of an unknown session (no oracle,
/// RS-10) and leaves a security event. A session past its absolute lifetime, or
/// presented with more scopes than it was created with (privilege escalation,
/// C3.3), is ended, so the client re-initializes under a new id. A changed
/// Origin, User-Agent or client address is a hijack indicator: an event, and a
/// refusal when `session_hijack_action = "block"`.
async fn session_of(gw: &Gateway, headers: &HeaderMap, rec: &Rec) -> Result<Arc<Session>, Refusal> {
    let Some(sid) = header_str(headers, h::SESSION_ID) else {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, missing_session()));
    };
    let not_found = || {
        Refusal::new(
            StatusCode::NOT_FOUND,
            ErrorObject::new(codes::SESSION_REQUIRED, "Session not found"),
        )
    };
    let event = |digest: String, reason: String| {
        let mut ev = AuditEvent::new(EventKind::Session, Outcome::Refused);
        ev.request_id = rec.ev.request_id.clone();
        ev.principal = rec.ev.principal.clone();
        ev.issuer = rec.ev.issuer.clone();
        ev.client_id = rec.ev.client_id.clone();
        ev.client_addr = rec.ev.client_addr.clone();
        ev.session = Some(digest);
        ev.reason = Some(reason);
        gw.audit.emit(ev);
    };
    let local = gw.sessions.read().get(sid).cloned();
    // With a shared store the record is authoritative: deleted or invalidated on
    // another instance means gone here too; a session another instance created
    // is rebuilt here from its record.
    let s = match &gw.store {
        crate::state::store::Backend::Embedded(_) => local,
        crate::state::store::Backend::Redis(r) => {
            match r.get_session(sid, gw.cfg.server.session_idle_timeout).await {
                Err(crate::state::store::StoreError::Unavailable(m)) => {
                    return Err(Refusal::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorObject::new(
                            codes::INTERNAL_ERROR,
                            format!("session store unavailable ({m}); retry later"),
                        ),
                    ));
                }
                Err(crate::state::store::StoreError::Tampered) => {
                    event(
                        session_digest(sid),
                        "session record failed its integrity check".into(),
                    );
                    gw.end_session(sid).await;
                    return Err(not_found());
                }
                Ok(None) => {
                    // Ended elsewhere: drop what this instance still holds.
                    gw.end_session(sid).await;
                    None
                }
                Ok(Some(record)) => match local {
                    Some(s) => Some(s),
                    // Another principal's session is never rebuilt here; it is
                    // refused below exactly like an unknown one.
                    None if record.principal == rec.pkey => rehydrate(gw, sid, record),
                    None => {
                        event(
                            session_digest(sid),
                            "session belongs to another principal".into(),
                        );
                        return Err(not_found());
                    }
                },
            }
        }
    };
    let Some(s) = s else {
        event(session_digest(sid), "unknown session".into());
        return Err(not_found());
    };
    let client_id = rec.who.as_ref().and_then(|p| p.client_id.clone());
    if s.ctx.principal != rec.pkey || s.binding.client_id != client_id {
        event(
            s.digest.clone(),
            "session belongs to another principal".into(),
        );
        return Err(not_found());
    }
    if s.binding.created.elapsed() > gw.cfg.server.session_absolute_timeout {
        gw.end_session_because(&s.id, "expired: absolute timeout", Outcome::Ok)
            .await;
        return Err(not_found());
    }
    if let Some(p) = &rec.who
        && !p.scopes.is_subset(&s.binding.scopes)
        && !gw.cfg.server.dangerous_allow_session_scope_escalation
    {
        gw.end_session_because(
            &s.id,
            "ended: request brought more scopes than the session was created with",
            Outcome::Refused,
        )
        .await;
        return Err(not_found());
    }
    let header = |n: &str| header_str(headers, n).map(str::to_owned);
    let mut changed = Vec::new();
    if header(header::ORIGIN.as_str()) != s.binding.origin {
        changed.push("Origin");
    }
    if header(header::USER_AGENT.as_str()) != s.binding.user_agent {
        changed.push("User-Agent");
    }
    if rec.client_ip != s.binding.client_ip {
        changed.push("client address");
    }
    if !changed.is_empty() {
        let block = gw.cfg.server.session_hijack_action == crate::config::HijackAction::Block;
        event(
            s.digest.clone(),
            format!(
                "hijack indicator: {} changed within the session{}",
                changed.join(", "),
                if block { " (blocked)" } else { "" }
            ),
        );
        if block {
            return Err(not_found());
        }
    }
    Ok(s)
}

async fn post(gw: Arc<Gateway>, req: HttpRequest, mut rec: Rec) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let ctype = header_str(&headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    if !ctype.to_ascii_lowercase().starts_with("application/json") {
        return rec.refuse(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorObject::new(
                codes::INVALID_REQUEST,
                "Content-Type must be application/json",
            ),
        ));
    }
    let acc = accept(&headers);
    if !acc.json && !acc.sse {
        return rec.refuse(Refusal::new(
            StatusCode::NOT_ACCEPTABLE,
            ErrorObject::new(
                codes::INVALID_REQUEST,
                "Not Acceptable: Accept must include application/json and text/event-stream",
            ),
        ));
    }
    let limit = gw.cfg.server.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return rec.refuse(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorObject::new(
                    codes::INVALID_REQUEST,
                    format!("request body exceeds {limit} bytes"),
                ),
            ));
        }
    };
    let msg = match Message::parse(&bytes, limit) {
        Ok(m) => m,
        Err(e) => {
            return rec
                .refuse(Refusal::new(StatusCode::BAD_REQUEST, e.to_error_object()).to(e.id()));
        }
    };
    rec.message(&msg);
    rec.ev.bytes_in = Some(bytes.len() as u64);
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

    // A 2025-era client may send mirrored headers harmlessly; what makes a request
    // modern is 2026-07-28 metadata: `_meta` protocol version or a protocol
    // version header that is not a 2025-era one.
    let header_not_legacy = header_version.is_some_and(|v| {
        ProtocolVersion::parse(v).is_none_or(|p| p.era() != bastion_proto::Era::Legacy)
    });
    let modern_markers = meta_version.is_some() || header_modern || header_not_legacy;
    if has_session && modern_markers {
        return rec.refuse(Refusal::new(StatusCode::BAD_REQUEST, ErrorObject::new(
                codes::INVALID_REQUEST,
                "request mixes protocol revisions: 2026-07-28 metadata cannot be combined with an Mcp-Session-Id",
            )).to(req_id));
    }
    // `initialize` with 2026-07-28 metadata is a modern request for a method that
    // revision removed (404 below); without it, it starts a legacy session.
    if has_session || (is_initialize && !modern_markers) {
        rec.ev.lane = Some(Lane::Legacy.as_str());
        if is_initialize && let Message::Request(r) = msg {
            return initialize(gw, &headers, r, acc, rec).await;
        }
        return legacy_post(gw, &headers, msg, acc, rec).await;
    }
    if modern_markers {
        rec.ev.lane = Some(Lane::Modern.as_str());
        return modern_post(gw, &headers, msg, acc, rec).await;
    }
    // No session, not initialize, no 2026-07-28 metadata: a 2025-era request
    // outside any session.
    rec.ev.lane = Some(Lane::Legacy.as_str());
    rec.refuse(Refusal::new(StatusCode::BAD_REQUEST, missing_session()).to(req_id))
}

async fn initialize(
    gw: Arc<Gateway>,
    headers: &HeaderMap,
    r: Request,
    acc: Accept,
    mut rec: Rec,
) -> HttpResponse {
    if gw.sessions.read().len() >= gw.cfg.server.max_sessions {
        return rec.refuse(
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorObject::new(codes::GATEWAY_REFUSED, "too many sessions; retry later"),
            )
            .to(Some(r.id)),
        );
    }
    let params = r.params.clone().unwrap_or_else(|| json!({}));
    let Some(requested) = params.get("protocolVersion").and_then(Value::as_str) else {
        return rec.refuse(
            Refusal::new(
                StatusCode::BAD_REQUEST,
                ErrorObject::new(
                    codes::INVALID_PARAMS,
                    "params.protocolVersion must be a string",
                ),
            )
            .to(Some(r.id)),
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
    let Some(id) = new_session_id() else {
        return rec.refuse(
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorObject::new(codes::INTERNAL_ERROR, "cannot create a session id"),
            )
            .to(Some(r.id)),
        );
    };
    // One principal holds a bounded number of sessions: a new one evicts its
    // least recently used.
    let cap = gw.cfg.server.max_sessions_per_principal;
    loop {
        let mine: Vec<(std::time::Instant, String)> = gw
            .sessions
            .read()
            .values()
            .filter(|s| s.ctx.principal == rec.pkey)
            .map(|s| (s.ctx.last_used(), s.id.clone()))
            .collect();
        if mine.len() < cap {
            break;
        }
        let Some((_, lru)) = mine.into_iter().min() else {
            break;
        };
        if !gw
            .end_session_because(&lru, "evicted: per-principal session cap", Outcome::Ok)
            .await
        {
            break;
        }
    }
    let header = |n: &str| header_str(headers, n).map(str::to_owned);
    let binding = crate::session::context::Binding {
        client_id: rec.who.as_ref().and_then(|p| p.client_id.clone()),
        scopes: rec
            .who
            .as_ref()
            .map(|p| p.scopes.clone())
            .unwrap_or_default(),
        origin: header(header::ORIGIN.as_str()),
        user_agent: header(header::USER_AGENT.as_str()),
        client_ip: rec.client_ip,
        created: std::time::Instant::now(),
    };
    let session = Arc::new(Session {
        digest: session_digest(&id),
        binding,
        id: id.clone(),
        version,
        ctx: Context::new(
            hello,
            gw.upstreams.len(),
            bastion_proto::Era::Legacy,
            &rec.pkey,
        ),
        listening: std::sync::atomic::AtomicBool::new(false),
        streams: crate::transport::streams::StreamLogs::default(),
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
    if let crate::state::store::Backend::Redis(store) = &gw.store {
        match store
            .put_session(
                &id,
                &record_of(&session),
                gw.cfg.server.session_idle_timeout,
                gw.cfg.server.max_sessions_per_principal,
            )
            .await
        {
            Ok(evicted) => {
                let ids: Vec<String> = gw
                    .sessions
                    .read()
                    .keys()
                    .filter(|k| evicted.contains(&crate::state::store::digest(k)))
                    .cloned()
                    .collect();
                for e in ids {
                    gw.end_session_because(&e, "evicted: per-principal session cap", Outcome::Ok)
                        .await;
                }
            }
            Err(e) => {
                gw.end_session(&id).await;
                return rec.refuse(
                    Refusal::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorObject::new(codes::INTERNAL_ERROR, format!("{e}; retry later")),
                    )
                    .to(Some(r.id)),
                );
            }
        }
    }
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
fn new_session_id() -> Option<String> {
    use base64::Engine as _;
    use rand::TryRngCore as _;
    let mut b = [0u8; 32];
    // Straight from the operating system's CSPRNG; if it fails, no session.
    rand::rngs::OsRng.try_fill_bytes(&mut b).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
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
    let session = match session_of(&gw, headers, &rec).await {
        Ok(s) => s,
        Err(r) => return rec.refuse(r.to(req_id)),
    };
    rec.ev.session = Some(session.digest.clone());
    if let Some(v) = header_str(headers, h::PROTOCOL_VERSION)
        && ProtocolVersion::parse(v) != Some(session.version)
    {
        return rec.refuse(Refusal::new(StatusCode::BAD_REQUEST, ErrorObject::with_data(
                codes::INVALID_REQUEST,
                format!(
                    "Bad Request: unsupported MCP-Protocol-Version {v:?}; this session negotiated {}",
                    session.version
                ),
                json!({"supported": [session.version.as_str()], "requested": v}),
            )).to(req_id));
    }
    session.ctx.touch();
    match msg {
        Message::Request(r) => legacy_request(gw, session, r, acc, rec).await,
        Message::Notification(n) => {
            let caller = rec.caller();
            // A notification has no response: 202 either way; one that went
            // nowhere is recorded as refused, with why.
            match gw.notify(&session.ctx, &caller, n).await {
                Ok(()) => rec.finish(StatusCode::ACCEPTED, Outcome::Ok, None),
                Err(why) => rec.finish(
                    StatusCode::ACCEPTED,
                    Outcome::Refused,
                    Some(&ErrorObject::new(codes::GATEWAY_REFUSED, why)),
                ),
            }
            StatusCode::ACCEPTED.into_response()
        }
        Message::Response(r) => match gw.answer(&session.ctx, r).await {
            Ok(()) => {
                rec.finish(StatusCode::ACCEPTED, Outcome::Ok, None);
                StatusCode::ACCEPTED.into_response()
            }
            Err(e) => rec.refuse(Refusal::new(StatusCode::BAD_REQUEST, e)),
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
            return rec.refuse(Refusal::new(
                StatusCode::BAD_REQUEST,
                ErrorObject::new(
                    codes::INVALID_REQUEST,
                    "clients must not send responses in the 2026-07-28 revision",
                ),
            ));
        }
    };
    if let Err(r) = check_modern(headers, method, params) {
        return rec.refuse(r.to(id));
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
    let Some(ctx) = gw.stateless_context(&rec.pkey, hello).await else {
        return rec.refuse(
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorObject::new(
                    codes::GATEWAY_REFUSED,
                    "too many client contexts; retry later",
                ),
            )
            .to(Some(r.id)),
        );
    };
    let client_params: Vec<(http::HeaderName, HeaderValue)> = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with(h::PARAM_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    modern_request(gw, ctx, r, acc, rec, client_params).await
}

/// The 2026-07-28 request rules, checked before any routing: protocol version
/// header and `_meta` present, supported and equal; `Mcp-Method`/`Mcp-Name`
/// present and equal to the body; client capabilities declared.
fn check_modern(headers: &HeaderMap, method: &str, params: Option<&Value>) -> Result<(), Refusal> {
    let bad =
        |code: i64, msg: String| Refusal::new(StatusCode::BAD_REQUEST, ErrorObject::new(code, msg));
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
        return Err(Refusal::new(
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

/// A response as a single JSON body, or a one-event SSE stream when the client
/// accepts only SSE.
fn single(resp: Response, acc: Accept, status: StatusCode) -> HttpResponse {
    single_bytes(Message::Response(resp).to_vec(), acc, status)
}

/// [`single`] for a response already serialized.
fn single_bytes(bytes: Vec<u8>, acc: Accept, status: StatusCode) -> HttpResponse {
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

/// HTTP status for a final response on the modern lane: the spec ties statuses
/// to error codes there (404 method not found, 400 for malformed requests).
fn final_status(lane: Lane, resp: &Response) -> StatusCode {
    match (&resp.outcome, lane) {
        (Err(e), Lane::Modern) => match e.code {
            codes::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
            codes::PARSE_ERROR
            | codes::INVALID_REQUEST
            | codes::INVALID_PARAMS
            | codes::HEADER_MISMATCH
            | codes::MISSING_REQUIRED_CLIENT_CAPABILITY
            | codes::UNSUPPORTED_PROTOCOL_VERSION => StatusCode::BAD_REQUEST,
            _ => StatusCode::OK,
        },
        _ => StatusCode::OK,
    }
}

fn outcome_of(resp: &Response) -> Outcome {
    if resp.outcome.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Error
    }
}

// ---------------------------------------------------------------- legacy lane

/// Runs a legacy-lane request: waits for the response or the first related
/// message, then answers with JSON (nothing else to say) or an SSE stream
/// (messages first). A client disconnect does not cancel the upstream work.
async fn legacy_request(
    gw: Arc<Gateway>,
    session: Arc<Session>,
    req: Request,
    acc: Accept,
    mut rec: Rec,
) -> HttpResponse {
    let caller = rec.caller();
    if let Some(scopes) = gw.step_up(&session.ctx, &caller, &req) {
        return rec.step_up(req.id, &caller, scopes);
    }
    let (tx, rx) = mpsc::channel::<Upcall>(64);
    let client_id = req.id.clone();
    let task = {
        let gw = gw.clone();
        let s = session.clone();
        let id = client_id.clone();
        let caller = caller.clone();
        session.ctx.spawn_tracked(&client_id, async move {
            let resp = gw
                .dispatch(&s.ctx, Lane::Legacy, req, tx, Vec::new(), &caller)
                .await;
            s.ctx.take_task(&id);
            resp
        })
    };
    let deadline = gw.cfg.server.request_timeout;
    let side = LegacySide {
        gw,
        session,
        caller,
        rx,
        task,
        client_id,
        stream: None,
    };
    driver::drive(side, acc, rec, deadline).await
}

/// A 2025-11-25 request's side of the stream driver: each message passes
/// the upstream → client pipeline for a 2025-era client
/// (`Gateway::to_legacy_client`); a stream is resumable (every event is
/// recorded under an event id, and keeps being recorded after the client
/// drops the connection, so it can resume with GET + Last-Event-ID, C3.4);
/// a cancelled request owes no response; nothing suspends.
struct LegacySide {
    gw: Arc<Gateway>,
    session: Arc<Session>,
    caller: Arc<Caller>,
    rx: mpsc::Receiver<Upcall>,
    task: tokio::task::JoinHandle<Response>,
    client_id: Id,
    /// The resumable stream, once open.
    stream: Option<u32>,
}

impl driver::Side for LegacySide {
    type Ask = Infallible;
    const GONE_CANCELS: bool = false;

    fn id(&self) -> Id {
        self.client_id.clone()
    }

    fn parts(
        &mut self,
    ) -> (
        &mut mpsc::Receiver<Upcall>,
        &mut tokio::task::JoinHandle<Response>,
    ) {
        (&mut self.rx, &mut self.task)
    }

    async fn turn(&mut self, up: Upcall) -> driver::Turn<Infallible> {
        match self
            .gw
            .to_legacy_client(&self.caller, &self.session.ctx, up)
            .await
        {
            Some(m) => driver::Turn::Send(m),
            None => driver::Turn::Skip,
        }
    }

    fn last(&mut self, res: Result<Response, tokio::task::JoinError>) -> driver::Last {
        match res {
            Ok(resp) => driver::Last::Answer(resp, StatusCode::OK),
            // Cancelled by the client (`notifications/cancelled`).
            Err(_) => {
                driver::Last::Cancelled(ErrorObject::new(REQUEST_CANCELLED, "request cancelled"))
            }
        }
    }

    async fn suspend(self, ask: Infallible) -> Response {
        match ask {}
    }

    fn open(&mut self) {
        self.stream = Some(self.session.streams.open());
    }

    fn event(&mut self, m: &Message) -> Bytes {
        let data = Bytes::from(m.to_vec());
        let Some(n) = self.stream else {
            return sse::encode_message(None, &data);
        };
        let seq = self.session.streams.record(n, data.clone());
        let id = self
            .gw
            .event_ids
            .mint(&self.session.id, &self.session.ctx.principal, n, seq);
        sse::encode_message(Some(&id), &data)
    }

    fn close(&mut self) {
        if let Some(n) = self.stream.take() {
            self.session.streams.finish(n);
        }
    }
}

/// The code SDKs use for a request the client cancelled.
const REQUEST_CANCELLED: i64 = -32800;

fn internal_error() -> Response {
    Response::error(
        None,
        ErrorObject::new(codes::INTERNAL_ERROR, "internal error"),
    )
}

// ---------------------------------------------------------------- modern lane

/// The name a modern request targets (`params.name`, `uri` or `taskId`), used to
/// bind sealed state to it.
fn target_of(req: &Request) -> String {
    bastion_proto::headers::expected_name(&req.method, req.params.as_ref())
        .and_then(|(_, v)| v)
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

/// A modern-lane call in flight.
struct Flight {
    task: tokio::task::JoinHandle<Response>,
    caller: Arc<Caller>,
    rx: mpsc::Receiver<Upcall>,
    ctx: Arc<Context>,
    method: String,
    target: String,
    client_id: Id,
    log: bool,
}

/// Serves a 2026-07-28 request: opens sealed state, resumes bridged calls,
/// streams `subscriptions/listen`, or dispatches.
async fn modern_request(
    gw: Arc<Gateway>,
    ctx: Arc<Context>,
    mut req: Request,
    acc: Accept,
    mut rec: Rec,
    client_params: Vec<(http::HeaderName, HeaderValue)>,
) -> HttpResponse {
    let method = req.method.clone();
    let target = target_of(&req);
    let log = meta::meta(req.params.as_ref()).is_some_and(|m| m.contains_key(meta::LOG_LEVEL));
    if method == "subscriptions/listen" {
        return listen(gw, ctx, req, acc, rec).await;
    }
    let state = req
        .params
        .as_ref()
        .and_then(|p| p.get("requestState"))
        .cloned();
    if let Some(state) = state {
        let bad = |why: String| {
            ErrorObject::with_data(
                codes::INVALID_PARAMS,
                "Invalid or expired requestState",
                json!({"reason": "invalid_request_state", "detail": why}),
            )
        };
        let Some(sealed) = state.as_str() else {
            return rec.refuse(
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    bad("requestState must be a string".into()),
                )
                .to(Some(req.id)),
            );
        };
        match gw.sealer.open(sealed, &ctx.principal, &method, &target) {
            Err(e) => {
                return rec.refuse(
                    Refusal::new(StatusCode::BAD_REQUEST, bad(e.to_string())).to(Some(req.id)),
                );
            }
            Ok(st) => match st.inner {
                // A list cursor is not a request state (and is sealed under
                // another method name, so this is only the backstop).
                crate::session::seal::Inner::Cursor { .. } => {
                    return rec.refuse(
                        Refusal::new(StatusCode::BAD_REQUEST, bad("not a requestState".into()))
                            .to(Some(req.id)),
                    );
                }
                crate::session::seal::Inner::Upstream { s } => {
                    if let Some(p) = req.params.as_mut().and_then(Value::as_object_mut) {
                        p.insert("requestState".into(), Value::from(s));
                    }
                }
                crate::session::seal::Inner::Continuation { c } => {
                    let cont = gw.continuations.lock().remove(&c);
                    let Some(cont) = cont else {
                        return rec.refuse(
                            Refusal::new(
                                StatusCode::BAD_REQUEST,
                                bad("the continuation was already used or has expired".into()),
                            )
                            .to(Some(req.id)),
                        );
                    };
                    let responses = req
                        .params
                        .as_ref()
                        .and_then(|p| p.get("inputResponses"))
                        .and_then(Value::as_object);
                    let left = crate::session::bridge::answer(cont.asks, responses).await;
                    let flight = Flight {
                        task: cont.task,
                        caller: rec.caller(),
                        rx: cont.rx,
                        ctx: cont.ctx,
                        method,
                        target,
                        client_id: req.id,
                        log: cont.log,
                    };
                    if !left.is_empty() {
                        // Still missing answers: ask again for what is left.
                        let resp = suspend(&gw, flight, left);
                        rec.finish(StatusCode::OK, Outcome::Ok, None);
                        return single(resp, acc, StatusCode::OK);
                    }
                    return drive(gw, flight, acc, rec).await;
                }
            },
        }
    }
    let caller = rec.caller();
    if let Some(scopes) = gw.step_up(&ctx, &caller, &req) {
        return rec.step_up(req.id, &caller, scopes);
    }
    let (tx, rx) = mpsc::channel::<Upcall>(64);
    let client_id = req.id.clone();
    let task = {
        let gw = gw.clone();
        let ctx = ctx.clone();
        let caller = caller.clone();
        tokio::spawn(crate::transport::auth::carry(async move {
            gw.dispatch(&ctx, Lane::Modern, req, tx, client_params, &caller)
                .await
        }))
    };
    let flight = Flight {
        task,
        caller,
        rx,
        ctx,
        method,
        target,
        client_id,
        log,
    };
    drive(gw, flight, acc, rec).await
}

/// The final response of a modern call: the client's id, 2026-07-28 result
/// fields, and any upstream `requestState` sealed.
fn finish_modern(gw: &Gateway, f: &Flight, mut resp: Response) -> Response {
    resp.id = Some(f.client_id.clone());
    match resp.outcome.as_mut() {
        Ok(r) => {
            modernize_result(&f.method, r);
            if r.get("resultType").and_then(Value::as_str) == Some("input_required")
                && let Some(s) = r.get("requestState").and_then(Value::as_str)
            {
                let sealed = seal_for(
                    gw,
                    f,
                    crate::session::seal::Inner::Upstream { s: s.to_owned() },
                );
                if let Some(o) = r.as_object_mut() {
                    o.insert("requestState".into(), Value::from(sealed));
                }
            }
        }
        // 2026-07-28 moved "resource not found" to -32602 and forbids -32002.
        Err(e) if e.code == codes::RESOURCE_NOT_FOUND_LEGACY => e.code = codes::INVALID_PARAMS,
        Err(_) => {}
    }
    resp
}

/// Seals `inner` for this flight's principal, method and target.
fn seal_for(gw: &Gateway, f: &Flight, inner: crate::session::seal::Inner) -> String {
    gw.sealer.seal(
        crate::session::seal::State {
            inner,
            p: f.ctx.principal.clone(),
            m: f.method.clone(),
            n: f.target.clone(),
            e: 0,
        },
        crate::session::bridge::CONTINUATION_TTL_SECS,
    )
}

/// The first ask plus every other one already queued: an upstream that sends
/// several requests at once gets them answered in one client round.
async fn collect_asks(
    gw: &Gateway,
    f: &mut Flight,
    first: crate::session::bridge::Ask,
    n: &mut usize,
) -> Vec<crate::session::bridge::Ask> {
    let mut asks = vec![first];
    while let Ok(more) = f.rx.try_recv() {
        if let driver::Turn::Ask(a) = step(gw, f, more, n).await {
            asks.push(a);
        }
    }
    asks
}

async fn step(
    gw: &Gateway,
    f: &Flight,
    up: Upcall,
    n: &mut usize,
) -> driver::Turn<crate::session::bridge::Ask> {
    let Some(up) = gw.to_client().upcall(&f.caller, &f.ctx, up).await else {
        return driver::Turn::Skip;
    };
    match up.msg {
        Message::Notification(n) => {
            let keep = match n.method.as_str() {
                "notifications/progress" => true,
                "notifications/message" => f.log,
                // Request streams carry only notifications about the request.
                _ => false,
            };
            if keep {
                driver::Turn::Send(Message::Notification(n))
            } else {
                driver::Turn::Skip
            }
        }
        Message::Request(r) => {
            let declared = crate::session::bridge::capability_for(&r.method)
                .is_some_and(|cap| f.ctx.hello().capabilities.get(cap).is_some());
            if !declared {
                // MUST NOT send inputRequests the client has not declared support for.
                let _ = up
                    .reply
                    .send(Response::error(
                        Some(r.id),
                        ErrorObject::new(
                            codes::METHOD_NOT_FOUND,
                            format!(
                                "the client did not declare the capability {} needs",
                                r.method
                            ),
                        ),
                    ))
                    .await;
                return driver::Turn::Skip;
            }
            *n = n.saturating_add(1);
            let mut request = json!({"method": r.method});
            if let (Some(p), Some(o)) = (r.params, request.as_object_mut()) {
                o.insert("params".into(), p);
            }
            driver::Turn::Ask(crate::session::bridge::Ask {
                key: format!("bastion-{n}"),
                reply: up.reply,
                upstream_id: r.id,
                request,
            })
        }
        Message::Response(_) => driver::Turn::Skip,
    }
}

/// Parks the flight as a continuation and returns the `input_required` result.
fn suspend(gw: &Gateway, f: Flight, asks: Vec<crate::session::bridge::Ask>) -> Response {
    let mut key = [0u8; 16];
    rand::rng().fill_bytes(&mut key);
    let c: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let state = seal_for(
        gw,
        &f,
        crate::session::seal::Inner::Continuation { c: c.clone() },
    );
    let mut result = crate::session::bridge::input_required(&asks, state);
    modernize_result(&f.method, &mut result);
    let id = f.client_id.clone();
    let cont = crate::session::bridge::Continuation {
        task: f.task,
        rx: f.rx,
        ctx: f.ctx,
        asks,
        log: f.log,
        expires: crate::session::bridge::continuation_deadline(),
    };
    // Bounded per principal and in all: a call over the bound is given up
    // (its upstream requests refused) rather than held.
    let refused = {
        let mut m = gw.continuations.lock();
        let mine = m
            .values()
            .filter(|k| k.ctx.principal == cont.ctx.principal)
            .count();
        if mine >= crate::session::bridge::MAX_CONTINUATIONS_PER_PRINCIPAL
            || m.len() >= crate::session::bridge::MAX_CONTINUATIONS
        {
            Some(cont)
        } else {
            m.insert(c, cont);
            None
        }
    };
    if let Some(cont) = refused {
        tokio::spawn(cont.abandon());
        return Response::error(
            Some(id),
            ErrorObject::new(
                codes::GATEWAY_REFUSED,
                "too many calls wait for client input; answer or abandon one first",
            ),
        );
    }
    Response::result(id, result)
}

/// Drives a modern call to its end: a JSON answer if nothing precedes the
/// response, an SSE stream otherwise; a bridged server request ends the
/// exchange with `input_required`. Closing the stream cancels the call.
async fn drive(gw: Arc<Gateway>, f: Flight, acc: Accept, rec: Rec) -> HttpResponse {
    let deadline = gw.cfg.server.request_timeout;
    driver::drive(ModernSide { gw, f, asked: 0 }, acc, rec, deadline).await
}

/// A 2026-07-28 request's side of the stream driver: each message passes
/// the upstream → client pipeline (`step`); a server request suspends the
/// call (`input_required` with a sealed `requestState`); closing the stream
/// cancels the request; events carry no id (2026-07-28 streams are not
/// resumed).
struct ModernSide {
    gw: Arc<Gateway>,
    f: Flight,
    /// Server requests asked of the client so far (their keys).
    asked: usize,
}

impl driver::Side for ModernSide {
    type Ask = crate::session::bridge::Ask;
    const GONE_CANCELS: bool = true;

    fn id(&self) -> Id {
        self.f.client_id.clone()
    }

    fn parts(
        &mut self,
    ) -> (
        &mut mpsc::Receiver<Upcall>,
        &mut tokio::task::JoinHandle<Response>,
    ) {
        (&mut self.f.rx, &mut self.f.task)
    }

    async fn turn(&mut self, up: Upcall) -> driver::Turn<Self::Ask> {
        step(&self.gw, &self.f, up, &mut self.asked).await
    }

    fn last(&mut self, res: Result<Response, tokio::task::JoinError>) -> driver::Last {
        let resp = finish_modern(&self.gw, &self.f, res.unwrap_or_else(|_| internal_error()));
        let status = final_status(Lane::Modern, &resp);
        driver::Last::Answer(resp, status)
    }

    async fn suspend(mut self, ask: Self::Ask) -> Response {
        let asks = collect_asks(&self.gw, &mut self.f, ask, &mut self.asked).await;
        suspend(&self.gw, self.f, asks)
    }

    fn open(&mut self) {}

    fn event(&mut self, m: &Message) -> Bytes {
        sse::encode_message(None, &m.to_vec())
    }

    fn close(&mut self) {}
}

/// `subscriptions/listen`: one long-lived stream per request. What it asks
/// for is decided per upstream and per URI first ([`Gateway::plan_listen`]);
/// the gateway then asks each upstream for what it was granted (2026-07-28
/// upstreams through their own listen streams, 2025-era ones through their
/// session's unsolicited messages and `resources/subscribe`), acknowledges,
/// and relays each notification through the upstream → client pipeline if
/// that upstream's granted filter allows it, tagged with this request's id.
/// Closing the stream ends the upstream listens.
async fn listen(
    gw: Arc<Gateway>,
    ctx: Arc<Context>,
    req: Request,
    acc: Accept,
    mut rec: Rec,
) -> HttpResponse {
    if !acc.sse {
        return rec.refuse(
            Refusal::new(
                StatusCode::NOT_ACCEPTABLE,
                ErrorObject::new(
                    codes::INVALID_REQUEST,
                    "subscriptions/listen needs Accept: text/event-stream",
                ),
            )
            .to(Some(req.id)),
        );
    }
    let caller = rec.caller();
    let Some(stream_permit) = gw.limits.stream(&rec.pkey) else {
        return rec.refuse(
            Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorObject::new(
                    codes::GATEWAY_REFUSED,
                    "too many open streams for this principal; close one first",
                ),
            )
            .to(Some(req.id)),
        );
    };
    let asked = Filter::from_params(req.params.as_ref());
    let (granted, acked) = match gw.plan_listen(&caller, &ctx, &req, &asked).await {
        Ok(p) => p,
        Err(e) => return rec.refuse(Refusal::new(StatusCode::BAD_REQUEST, e).to(Some(req.id))),
    };
    let sub_id = req.id.to_value();
    let (utx, mut urx) = mpsc::channel::<Upcall>(64);
    let mut upstream_tasks = Vec::new();
    let mut filters: std::collections::HashMap<usize, Filter> = std::collections::HashMap::new();
    for g in granted {
        let Some(up) = gw.upstreams.get(g.upstream) else {
            continue;
        };
        let Ok(conn) = ctx.conn(up).await else {
            continue;
        };
        if conn.era == bastion_proto::Era::Modern {
            let Some(permit) = g.listen else { continue };
            let listen_req = Request {
                id: Id::Num(0),
                method: "subscriptions/listen".into(),
                params: Some(json!({
                    "notifications": g.filter.to_value(),
                    "_meta": req.params.as_ref().and_then(|p| p.get("_meta")).cloned().unwrap_or_else(|| json!({})),
                })),
            };
            let tx = utx.clone();
            upstream_tasks.push(tokio::spawn(crate::transport::auth::carry(async move {
                let _ = conn
                    .send(Pass::Permit(permit), listen_req, Some(tx), &[], false)
                    .await;
            })));
        } else {
            for (uri, permit) in g.subscribe {
                // Upstream subscriptions are bounded per context.
                if !ctx.subscribe(&uri) {
                    continue;
                }
                let sub = Request {
                    id: Id::Num(0),
                    method: "resources/subscribe".into(),
                    params: Some(json!({"uri": uri})),
                };
                let _ = conn.send(Pass::Permit(permit), sub, None, &[], false).await;
            }
        }
        filters.insert(g.upstream, g.filter);
    }
    drop(utx);
    // Acknowledge only once every upstream listen is live, so a change the client
    // makes right after the acknowledgement is not missed. Anything else that
    // arrives meanwhile is kept.
    let mut early = Vec::new();
    let mut waiting = upstream_tasks.len();
    let ack_deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(ack_deadline);
    while waiting > 0 {
        tokio::select! {
            u = urx.recv() => match u {
                Some(Upcall { msg: Message::Notification(n), .. }) if n.method == "notifications/subscriptions/acknowledged" => waiting = waiting.saturating_sub(1),
                Some(other) => early.push(other),
                None => break,
            },
            _ = &mut ack_deadline => break,
        }
    }
    rec.finish(StatusCode::OK, Outcome::Ok, None);
    // The stream lives no longer than the credential that opened it.
    let life = rec.who.as_ref().map(|p| gw.auth.lifetime(p));
    let (btx, brx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let tag = move |mut n: Notification| -> Message {
        let p = n.params.get_or_insert_with(|| json!({}));
        if let Some(m) = meta::meta_mut(p) {
            m.insert(meta::SUBSCRIPTION_ID.into(), sub_id.clone());
        }
        Message::Notification(n)
    };
    let ack = tag(Notification {
        method: "notifications/subscriptions/acknowledged".into(),
        params: Some(json!({"notifications": acked.to_value()})),
    });
    tokio::spawn(crate::transport::auth::carry(async move {
        // Held for the stream's life: it counts against the principal's streams.
        let _stream = stream_permit;
        // Relays one upcall through the upstream → client pipeline if its
        // upstream's granted filter allows it; false once the client is gone.
        let forward = async |up: Upcall| -> bool {
            let allowed = matches!(&up.msg, Message::Notification(n)
                if filters.get(&up.upstream).is_some_and(|f| f.allows(n)));
            if !allowed {
                return true;
            }
            let Some(up) = gw.to_client().upcall(&caller, &ctx, up).await else {
                return true;
            };
            let Message::Notification(n) = up.msg else {
                return true;
            };
            btx.send(Ok(sse::encode_message(None, &tag(n).to_vec())))
                .await
                .is_ok()
        };
        let stop = |tasks: &[tokio::task::JoinHandle<()>]| tasks.iter().for_each(|t| t.abort());
        if btx
            .send(Ok(sse::encode_message(None, &ack.to_vec())))
            .await
            .is_err()
        {
            stop(&upstream_tasks);
            return;
        }
        for up in early {
            if !forward(up).await {
                stop(&upstream_tasks);
                return;
            }
        }
        // 2025-era upstreams' change notifications reach one listen stream per
        // context (the receiver is single-consumer); 2026-07-28 upstreams have a
        // listen stream of their own per client stream.
        let mut unsolicited = ctx.unsolicited_rx.try_lock().ok();
        let mut keepalive = tokio::time::interval(Duration::from_secs(15));
        keepalive.tick().await;
        // With no 2026-07-28 upstream listening, the channel is closed at
        // once: the stream then lives on the sessions' unsolicited messages.
        let mut urx_open = true;
        loop {
            let up = tokio::select! {
                _ = expired(life.as_ref()) => break,
                // The gateway is stopping: long-lived streams end so the
                // graceful shutdown does not wait on them.
                _ = gw.closing.cancelled() => break,
                u = urx.recv(), if urx_open => {
                    if u.is_none() {
                        urx_open = false;
                        continue;
                    }
                    u
                }
                Some(u) = async {
                    match unsolicited.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => Some(u),
                _ = keepalive.tick() => {
                    if revoked(life.as_ref())
                        || btx.send(Ok(Bytes::from_static(sse::KEEP_ALIVE))).await.is_err()
                    {
                        break;
                    }
                    continue;
                }
            };
            let Some(up) = up else { break };
            if !forward(up).await {
                break;
            }
        }
        stop(&upstream_tasks);
    }));
    sse_response(Body::from_stream(ReceiverStream::new(brx)))
}

/// Completes when the stream's credential expires (never without one).
async fn expired(life: Option<&crate::transport::auth::Lifetime>) {
    match life {
        Some(l) => l.expired().await,
        None => std::future::pending().await,
    }
}

/// Whether the stream's credential was revoked.
fn revoked(life: Option<&crate::transport::auth::Lifetime>) -> bool {
    life.is_some_and(crate::transport::auth::Lifetime::revoked)
}

async fn get(gw: Arc<Gateway>, req: HttpRequest, mut rec: Rec) -> HttpResponse {
    rec.ev.lane = Some(Lane::Legacy.as_str());
    let headers = req.headers();
    if !headers.contains_key(h::SESSION_ID) {
        return rec.refuse(Refusal::new(StatusCode::METHOD_NOT_ALLOWED, ErrorObject::new(
                codes::INVALID_REQUEST,
                "GET needs an Mcp-Session-Id (2025 revisions); the 2026-07-28 revision uses subscriptions/listen",
            )));
    }
    let session = match session_of(&gw, headers, &rec).await {
        Ok(s) => s,
        Err(r) => return rec.refuse(r),
    };
    rec.ev.session = Some(session.digest.clone());
    if !accept(headers).sse {
        return rec.refuse(Refusal::new(
            StatusCode::NOT_ACCEPTABLE,
            ErrorObject::new(
                codes::INVALID_REQUEST,
                "Not Acceptable: GET requires Accept: text/event-stream",
            ),
        ));
    }
    // Resumption (C3.4): the event id must have been minted for this session and
    // principal; the stream it names is replayed after it.
    let mut resumed: Option<(u32, Vec<(u32, Bytes)>)> = None;
    if let Some(last) = header_str(headers, h::LAST_EVENT_ID) {
        let Some((n, seq)) = gw
            .event_ids
            .verify(last, &session.id, &session.ctx.principal)
        else {
            let mut ev = AuditEvent::new(EventKind::Session, Outcome::Refused);
            ev.request_id = rec.ev.request_id.clone();
            ev.principal = rec.ev.principal.clone();
            ev.session = Some(session.digest.clone());
            ev.reason = Some("Last-Event-ID not minted for this session".into());
            gw.audit.emit(ev);
            return rec.refuse(Refusal::new(
                StatusCode::BAD_REQUEST,
                ErrorObject::new(
                    codes::INVALID_REQUEST,
                    "Last-Event-ID does not name an event of this session",
                ),
            ));
        };
        match session.streams.resume(n, seq) {
            Some(r) if !r.get => {
                // A request's response stream: replay it, then its live
                // messages until it ends. It is not the session's GET stream.
                session.ctx.touch();
                rec.finish(StatusCode::OK, Outcome::Ok, None);
                let (btx, brx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
                let gw2 = gw.clone();
                tokio::spawn(async move {
                    let ev = |seq: u32, data: &Bytes| {
                        let id = gw2
                            .event_ids
                            .mint(&session.id, &session.ctx.principal, n, seq);
                        sse::encode_message(Some(&id), data)
                    };
                    for (seq, data) in &r.replay {
                        if btx.send(Ok(ev(*seq, data))).await.is_err() {
                            return;
                        }
                    }
                    if let Some(mut live) = r.live {
                        while let Some((seq, data)) = live.recv().await {
                            if btx.send(Ok(ev(seq, &data))).await.is_err() {
                                return;
                            }
                        }
                    }
                });
                return sse_response(Body::from_stream(ReceiverStream::new(brx)));
            }
            Some(r) => resumed = Some((n, r.replay)),
            // Dropped from the bounded log: a fresh GET stream.
            None => {}
        }
    }
    let Some(stream_permit) = gw.limits.stream(&rec.pkey) else {
        return rec.refuse(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorObject::new(
                codes::GATEWAY_REFUSED,
                "too many open streams for this principal; close one first",
            ),
        ));
    };
    if session
        .listening
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return rec.refuse(Refusal::new(
            StatusCode::CONFLICT,
            ErrorObject::new(
                codes::INVALID_REQUEST,
                "Conflict: only one GET stream per session",
            ),
        ));
    }
    session.ctx.touch();
    rec.finish(StatusCode::OK, Outcome::Ok, None);
    // The stream lives no longer than the credential that opened it.
    let life = rec.who.as_ref().map(|p| gw.auth.lifetime(p));
    let (n, replay) = match resumed {
        Some((n, replay)) => {
            session.streams.reopen(n);
            (n, replay)
        }
        None => (session.streams.open_get(), Vec::new()),
    };
    let caller = rec.caller();
    let (btx, brx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(crate::transport::auth::carry(async move {
        // Held for the stream's life: it counts against the principal's streams.
        let _stream = stream_permit;
        let mut rx = session.ctx.unsolicited_rx.lock().await;
        let mut keepalive = tokio::time::interval(Duration::from_secs(15));
        keepalive.tick().await;
        let id = |seq: u32| {
            gw.event_ids
                .mint(&session.id, &session.ctx.principal, n, seq)
        };
        for (seq, data) in &replay {
            if btx
                .send(Ok(sse::encode_message(Some(&id(*seq)), data)))
                .await
                .is_err()
            {
                session.listening.store(false, Ordering::SeqCst);
                return;
            }
        }
        loop {
            tokio::select! {
                _ = expired(life.as_ref()) => break,
                // The gateway is stopping: long-lived streams end so the
                // graceful shutdown does not wait on them.
                _ = gw.closing.cancelled() => break,
                up = rx.recv() => {
                    let Some(up) = up else { break };
                    let Some(m) = gw.to_legacy_client(&caller, &session.ctx, up).await else { continue };
                    let data = Bytes::from(m.to_vec());
                    let seq = session.streams.record(n, data.clone());
                    if btx.send(Ok(sse::encode_message(Some(&id(seq)), &data))).await.is_err() {
                        break;
                    }
                    session.ctx.touch();
                }
                _ = keepalive.tick() => {
                    if revoked(life.as_ref())
                        || btx.send(Ok(Bytes::from_static(sse::KEEP_ALIVE))).await.is_err()
                    {
                        break;
                    }
                }
            }
        }
        drop(rx);
        session.streams.finish(n);
        session.listening.store(false, Ordering::SeqCst);
    }));
    sse_response(Body::from_stream(ReceiverStream::new(brx)))
}

async fn delete(gw: Arc<Gateway>, req: HttpRequest, mut rec: Rec) -> HttpResponse {
    rec.ev.lane = Some(Lane::Legacy.as_str());
    if !req.headers().contains_key(h::SESSION_ID) {
        return rec.refuse(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorObject::new(codes::INVALID_REQUEST, "DELETE needs an Mcp-Session-Id"),
        ));
    }
    let session = match session_of(&gw, req.headers(), &rec).await {
        Ok(s) => s,
        Err(r) => return rec.refuse(r),
    };
    rec.ev.session = Some(session.digest.clone());
    if let crate::state::store::Backend::Redis(store) = &gw.store
        && let Err(e) = store
            .delete_session(&session.id, &session.ctx.principal)
            .await
    {
        // Not deleted everywhere: say so rather than pretend.
        return rec.refuse(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorObject::new(codes::INTERNAL_ERROR, format!("{e}; retry later")),
        ));
    }
    gw.end_session(&session.id).await;
    let mut sev = AuditEvent::new(EventKind::Session, Outcome::Ok);
    sev.session = Some(session.digest.clone());
    sev.reason = Some("session ended by client".into());
    gw.audit.emit(sev);
    rec.finish(StatusCode::OK, Outcome::Ok, None);
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_256_bit_base64url_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let id = new_session_id().unwrap();
            assert_eq!(id.len(), 43, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{id}"
            );
            assert!(seen.insert(id));
        }
    }
}

//! The admin API on the admin listener: the operator's tool-integrity
//! workflow (`/admin/tools/*`), which `bastion tools` drives.
//!
//! Invariants: every request presents a bearer credential: the configured
//! operator token (compared in constant time), or an OAuth access token the
//! gateway verifies like any other, whose principal the policies must allow
//! `admin/read` (reads) or `admin/approve` (decisions); a decision is applied
//! by the running gateway at once (memory and store) and recorded with its
//! actor; errors are JSON `{"error": …}` with a status that says which.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse as _, Response as HttpResponse};
use http::{HeaderMap, Method, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::gateway::Gateway;
use crate::integrity::DefKind;
use crate::integrity::pins::{ActionError, OperatorAction};

/// The header a CLI user names themselves in (recorded next to the token's
/// identity; informative only, since the token is shared).
pub const OPERATOR_HEADER: &str = "x-bastion-operator";

/// Routes of the admin API (merged into the admin router).
pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/admin/tools", axum::routing::get(list))
        .route("/admin/tools/pending", axum::routing::get(pending))
        .route("/admin/tools/history", axum::routing::get(history))
        .route("/admin/tools/diff", axum::routing::get(diff))
        .route("/admin/tools/{action}", axum::routing::post(decision))
}

fn error(status: StatusCode, msg: impl Into<String>) -> HttpResponse {
    (status, axum::Json(json!({"error": msg.into()}))).into_response()
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who is asking, if they may: the actor's name for the records.
async fn authorize(
    gw: &Gateway,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
    action: &str,
) -> Result<String, HttpResponse> {
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(json!({"error": "the admin API needs the operator token or an access token allowed admin actions"})),
        )
            .into_response()
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(unauthorized)?;
    if let Some(t) = &gw.cfg.admin.token
        && constant_time_eq(presented.as_bytes(), t.expose_secret().trim().as_bytes())
    {
        let operator: String = headers
            .get(OPERATOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_alphanumeric() || "._-@".contains(*c))
            .take(64)
            .collect();
        return Ok(if operator.is_empty() {
            "admin-token".to_owned()
        } else {
            format!("admin-token ({operator})")
        });
    }
    if gw.auth.verifier().is_none() {
        return Err(unauthorized());
    }
    let mut h = headers.clone();
    let (principal, _) = gw
        .auth
        .authenticate(&mut h, &Method::POST)
        .await
        .map_err(|_| unauthorized())?;
    let caller = crate::pipeline::authz::Caller::new(principal, Some(peer.ip()), None);
    if !gw.authz.authorize_admin(&caller, action) {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!("{action} is not allowed for this principal"),
        ));
    }
    Ok(format!(
        "{} {}",
        caller.principal.issuer, caller.principal.subject
    ))
}

/// Authorizes the request, then brings the pins up to date with the store
/// (another instance may have decided meanwhile). Returns the actor.
async fn admitted(
    gw: &Gateway,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
    action: &str,
) -> Result<String, HttpResponse> {
    let actor = authorize(gw, headers, peer, action).await?;
    gw.pins
        .refresh(&gw.store)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(actor)
}

fn action_error(e: ActionError) -> HttpResponse {
    match e {
        ActionError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        ActionError::Conflict(m) => error(StatusCode::CONFLICT, m),
        ActionError::Store(s) => error(StatusCode::SERVICE_UNAVAILABLE, s.to_string()),
    }
}

type Q = Query<HashMap<String, String>>;

/// A bad request's message.
#[derive(Debug)]
struct BadRequest(&'static str);

impl BadRequest {
    fn response(self) -> HttpResponse {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

fn item_of(q: &HashMap<String, String>) -> Result<(String, DefKind, String), BadRequest> {
    let upstream = q
        .get("upstream")
        .cloned()
        .ok_or(BadRequest("upstream is required"))?;
    let kind = match q.get("kind") {
        None => DefKind::Tool,
        Some(k) => {
            DefKind::parse(k).ok_or(BadRequest("kind is tool, prompt, template or instructions"))?
        }
    };
    let name = match kind {
        DefKind::Instructions => String::new(),
        _ => q
            .get("name")
            .cloned()
            .ok_or(BadRequest("name is required"))?,
    };
    Ok((upstream, kind, name))
}

fn item(q: &HashMap<String, String>) -> Result<(String, DefKind, String), Box<HttpResponse>> {
    item_of(q).map_err(|e| Box::new(e.response()))
}

fn version(q: &HashMap<String, String>, key: &str) -> Result<Option<u32>, BadRequest> {
    q.get(key)
        .map(|v| {
            v.trim_start_matches('v')
                .parse::<u32>()
                .map_err(|_| BadRequest("versions are numbers"))
        })
        .transpose()
}

async fn list(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Q,
) -> HttpResponse {
    if let Err(r) = admitted(&gw, &headers, peer, "admin/read").await {
        return r;
    }
    axum::Json(Value::from(
        gw.pins.list(q.get("upstream").map(String::as_str)),
    ))
    .into_response()
}

async fn pending(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> HttpResponse {
    if let Err(r) = admitted(&gw, &headers, peer, "admin/read").await {
        return r;
    }
    axum::Json(Value::from(gw.pins.pending())).into_response()
}

async fn history(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Q,
) -> HttpResponse {
    if let Err(r) = admitted(&gw, &headers, peer, "admin/read").await {
        return r;
    }
    let (u, k, n) = match item(&q) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match gw.pins.history(&u, k, &n) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => action_error(e),
    }
}

async fn diff(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Q,
) -> HttpResponse {
    if let Err(r) = admitted(&gw, &headers, peer, "admin/read").await {
        return r;
    }
    let (u, k, n) = match item(&q) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let (from, to) = match (version(&q, "from"), version(&q, "to")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r.response(),
    };
    match gw.pins.diff(&u, k, &n, from, to) {
        Ok(d) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/x-diff; charset=utf-8")],
            d,
        )
            .into_response(),
        Err(e) => action_error(e),
    }
}

/// The body of a decision.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    upstream: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<u32>,
}

/// `POST /admin/tools/{approve|reject|rollback}`.
async fn decision(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Result<axum::Json<DecisionBody>, axum::extract::rejection::JsonRejection>,
) -> HttpResponse {
    let action = match action.as_str() {
        "approve" => OperatorAction::Approve,
        "reject" => OperatorAction::Reject,
        "rollback" => OperatorAction::Rollback,
        _ => return error(StatusCode::NOT_FOUND, "no such admin action"),
    };
    let actor = match admitted(&gw, &headers, peer, "admin/approve").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let axum::Json(b) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let mut q = HashMap::new();
    q.insert("upstream".to_owned(), b.upstream);
    if let Some(k) = b.kind {
        q.insert("kind".to_owned(), k);
    }
    if let Some(n) = b.name {
        q.insert("name".to_owned(), n);
    }
    let (u, k, n) = match item(&q) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match gw
        .pins
        .decide(
            &gw.store,
            gw.audit.as_ref(),
            action,
            &u,
            k,
            &n,
            b.version,
            &actor,
        )
        .await
    {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => action_error(e),
    }
}

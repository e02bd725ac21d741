//! The gateway's state and the steps shared by both directions.
//!
//! [`Gateway`] owns the upstream registry, the session and stateless-context
//! tables, the sealer, keyring, store, pins, limits and the audit sink.
//! [`Gateway::dispatch`] hands a client request to
//! [`pipeline::requests`](crate::pipeline::requests), which serves it with
//! one function per method; the steps those functions share live here:
//! routing (`tool_route`, `route_name`, `route_uri`), the permit
//! (`permit`), the one way upstream (`send` → `forward`, under a `Pass`),
//! screening of what comes back (`screen_response`), lists fanned out and
//! merged under sealed cursors (`list_collecting`), client notifications
//! (`notify`) and answers to server requests (`answer`).
//!
//! Invariants: nothing reaches an upstream without a `Pass` (a grant for this
//! request's principal and item, or the `Internal` capability only session
//! and inventory code create); a name or URI two upstreams claim is withheld,
//! never guessed; every failure is a JSON-RPC error, never a panic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bastion_proto::{Era, ErrorObject, Id, ProtocolVersion, Request, Response, codes, meta};
use futures::future::join_all;
use http::{HeaderName, HeaderValue};
use parking_lot::RwLock;
use serde_json::{Map, Value, json};

use crate::audit::{AuditEvent, AuditSink, EventKind, Outcome};
use crate::config::Config;
use crate::integrity::DefKind;
use crate::pipeline::authz::{Caller, Grant, Item};
use crate::pipeline::screen::Origin;
use crate::session::context::{Context, Session, ToolRoute};
use crate::state::store::Store as _;
use crate::upstream::{Call, Internal, Pass, Upcall, UpcallTx, Upstream, UpstreamError};
use bastion_detect::verdict::Direction;
use bastion_policy::ItemKind;

/// Which lane a request is served on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// 2025-era: sessions, `initialize`.
    Legacy,
    /// 2026-07-28: stateless.
    Modern,
}

impl Lane {
    /// Name used in audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Legacy => "legacy",
            Lane::Modern => "modern",
        }
    }
}

/// The gateway's shared state.
#[derive(Debug)]
pub struct Gateway {
    /// Validated configuration.
    pub cfg: Arc<Config>,
    /// Upstreams in configuration order.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Live legacy sessions by id.
    pub sessions: RwLock<HashMap<String, Arc<Session>>>,
    /// Stateless-lane contexts by (principal, declared capabilities).
    pub stateless: RwLock<HashMap<String, Arc<Context>>>,
    /// Audit sink.
    pub audit: Arc<dyn AuditSink>,
    /// Seals every `requestState` handed to clients.
    pub sealer: crate::session::seal::Sealer,
    /// Bridged upstream calls waiting for client input, by id.
    pub continuations: parking_lot::Mutex<HashMap<String, crate::session::bridge::Continuation>>,
    /// Client authentication.
    pub auth: crate::transport::auth::ClientAuth,
    /// The state keys (sealed handles, store integrity, stream event ids).
    pub keyring: crate::state::keyring::Keyring,
    /// Mints and checks resumable-stream event ids.
    pub event_ids: crate::transport::streams::EventIds,
    /// Where session records live.
    pub store: crate::state::store::Backend,
    /// Which principal and upstream each task belongs to.
    pub tasks: crate::pipeline::tasks::TaskOwners,
    /// Authorization: the policies in force and the decisions they make.
    pub authz: crate::pipeline::authz::Authorizer,
    /// Prometheus metrics (shared with the screener).
    pub metrics: Arc<crate::audit::metrics::Metrics>,
    /// Sends and records every upstream exchange.
    pub(crate) forwarder: crate::upstream::forward::Forwarder,
    /// Carries out the detection engine's verdicts on the request path.
    pub screen: crate::pipeline::screen::Screener,
    /// Tool integrity: pins, quarantine, approvals.
    pub pins: crate::integrity::pins::Pins,
    /// Bounds on open requests and streams.
    pub limits: Arc<crate::transport::limits::Limits>,
    /// Cancelled when the gateway starts to stop: long-lived streams end.
    pub closing: tokio_util::sync::CancellationToken,
    /// The detection engine (injection, secrets, personal data, argument hazards).
    pub detect: Arc<bastion_detect::Engine>,
    /// Whether any upstream or item requires scopes (decided once from the
    /// configuration, so requests skip the step-up check when none does).
    scoped: bool,
}

/// Why the gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An upstream could not be set up.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Authentication could not be set up.
    #[error("authentication: {0}")]
    Auth(#[from] crate::transport::auth::SetupError),
    /// The policies could not be loaded.
    #[error("policy: {0}")]
    Policy(#[from] crate::pipeline::authz::LoadError),
    /// A signed manifest could not be verified.
    #[error("upstream {0:?}: {1}")]
    Manifest(String, crate::integrity::ManifestError),
    /// The detection engine could not be built (the gateway does not run without it).
    #[error("detection engine: {0}")]
    Detection(#[from] bastion_detect::CompileError),
}

/// The HTTP client for the identity provider (discovery, JWKS, introspection,
/// token endpoints): bounded time, no redirects (a redirect could move a client
/// secret or a subject token to another host).
fn idp_client() -> Result<reqwest::Client, StartError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|_| crate::transport::auth::SetupError::new("cannot build the HTTP client").into())
}

/// A merged list.
pub(crate) struct Listed {
    /// The result for the client.
    value: Value,
    /// The upstreams that answered.
    pub(crate) answered: Vec<usize>,
}

/// A route learnt from a list: exposed name, upstream, its own name, header
/// mirrors, annotation hints.
type NewRoute = (
    String,
    usize,
    String,
    Vec<bastion_proto::headers::ParamHeader>,
    Vec<String>,
    String,
);

/// Which object key and capability a list method uses.
pub(crate) struct ListKind {
    pub(crate) key: &'static str,
    capability: &'static str,
    named: Option<NameSpace>,
    /// The list method without `/list`.
    method_base: &'static str,
}

#[derive(Clone, Copy)]
pub(crate) enum NameSpace {
    Tools,
    Prompts,
}

pub(crate) fn list_kind(method: &str) -> Option<ListKind> {
    Some(match method {
        "tools/list" => TOOLS,
        "prompts/list" => PROMPTS,
        "resources/list" => RESOURCES,
        "resources/templates/list" => TEMPLATES,
        _ => return None,
    })
}

pub use crate::upstream::server_info;

pub(crate) fn err(code: i64, msg: impl Into<String>) -> ErrorObject {
    ErrorObject::new(code, msg)
}

impl Gateway {
    /// Builds the gateway from a validated configuration.
    pub fn new(cfg: Config, audit: Arc<dyn AuditSink>) -> Result<Arc<Self>, StartError> {
        // Fail closed: without its detectors the gateway does not start. Built
        // first, as the slowest step, so the start-up events that follow come
        // close together.
        let detect = Arc::new(bastion_detect::Engine::new()?);
        let policies = crate::pipeline::authz::Policies::load(&cfg.policy)?;
        let scoped = cfg
            .upstreams
            .iter()
            .any(|u| !u.required_scopes.is_empty() || u.has_item_scopes());
        {
            let mut ev = AuditEvent::new(EventKind::Policy, Outcome::Ok);
            ev.reason = Some(format!(
                "policy set loaded at start: {} policies",
                policies.engine().len()
            ));
            ev.target = Some(policies.digest());
            audit.emit(ev);
        }
        let http = idp_client()?;
        let auth = crate::transport::auth::ClientAuth::new(&cfg, http.clone())?;
        let keyring = match &cfg.state.integrity_key {
            Some(s) => crate::state::keyring::Keyring::from_secret(s)
                .map_err(|e| crate::transport::auth::SetupError::new(&e.to_string()))?,
            None => crate::state::keyring::Keyring::random(),
        };
        let sealer = crate::session::seal::Sealer::new(&keyring, cfg.server.public_url.as_str());
        let store = match &cfg.state.backend {
            crate::config::StateBackend::Embedded { path } => {
                crate::state::store::Backend::Embedded(crate::state::store::Sqlite::new(
                    path.clone(),
                ))
            }
            crate::config::StateBackend::Redis { url, prefix, .. } => {
                crate::state::store::Backend::Redis(Box::new(
                    crate::state::store::RedisStore::new(url.expose_secret(), prefix, &keyring)
                        .map_err(|e| crate::transport::auth::SetupError::new(&e.to_string()))?,
                ))
            }
        };
        let mut upstreams = Vec::new();
        for (i, u) in cfg.upstreams.iter().cloned().enumerate() {
            let mut own = None;
            let kind = match &u.auth {
                crate::config::UpstreamAuth::None => crate::upstream::CredKind::None,
                crate::config::UpstreamAuth::Static(s) => {
                    crate::upstream::CredKind::Static(s.clone())
                }
                crate::config::UpstreamAuth::OAuth(o) => {
                    let token_endpoint = match &o.token_endpoint {
                        crate::config::TokenEndpoint::Url(u) => {
                            bastion_auth::TokenEndpoint::Url(u.clone())
                        }
                        crate::config::TokenEndpoint::Discover(iss) => {
                            // The client-facing issuer's cache already knows its
                            // metadata; another issuer gets its own.
                            match auth.verifier() {
                                Some(v) if v.config().issuer == *iss => {
                                    bastion_auth::TokenEndpoint::Discover(v.keys().clone())
                                }
                                _ => bastion_auth::TokenEndpoint::Discover(
                                    bastion_auth::KeyCache::new(
                                        bastion_auth::KeySource::Discover {
                                            issuer: iss.clone(),
                                        },
                                        http.clone(),
                                        Duration::from_secs(10),
                                        Duration::from_secs(300),
                                    ),
                                ),
                            }
                        }
                    };
                    let source = bastion_auth::TokenSourceConfig {
                        grant: o.grant,
                        token_endpoint,
                        client_id: o.client_id.clone(),
                        client_secret: o.client_secret.clone(),
                        scope: o.scope.clone(),
                        resource: o.resource.clone(),
                        audience: o.audience.clone(),
                        refresh_margin: Duration::from_secs(30),
                    };
                    // A token-exchange upstream is inventoried (its trust-on-
                    // first-use baseline) with the gateway's own client
                    // credentials: same client, issuer, scope and resource.
                    if o.grant == bastion_auth::GrantKind::TokenExchange {
                        own = Some(Arc::new(bastion_auth::TokenSource::new(
                            bastion_auth::TokenSourceConfig {
                                grant: bastion_auth::GrantKind::ClientCredentials,
                                ..source.clone()
                            },
                            http.clone(),
                        )));
                    }
                    crate::upstream::CredKind::OAuth(Arc::new(bastion_auth::TokenSource::new(
                        source,
                        http.clone(),
                    )))
                }
            };
            let creds = crate::upstream::Creds {
                kind,
                upstream: u.name.clone(),
                subjects: auth.subjects().cloned(),
                audit: Some(audit.clone()),
                own,
            };
            upstreams.push(Arc::new(Upstream::new(i, u, creds)?));
        }
        let mut manifests = HashMap::new();
        for u in &cfg.upstreams {
            if let Some(m) = &u.manifest {
                let loaded = crate::integrity::load_manifest(&m.path, &m.key)
                    .map_err(|e| StartError::Manifest(u.name.clone(), e))?;
                tracing::info!(upstream = %u.name, digest = %loaded.digest, "signed tool manifest verified");
                manifests.insert(u.name.clone(), loaded);
            }
        }
        let pins = crate::integrity::pins::Pins::new(
            &cfg.upstreams,
            manifests,
            detect.clone(),
            cfg.detection.tool_definitions,
        );
        let limits = crate::transport::limits::Limits::new(
            cfg.server.max_concurrent_requests,
            cfg.server.max_streams_per_principal,
        );
        let metrics = Arc::new(crate::audit::metrics::Metrics::new());
        let screen = crate::pipeline::screen::Screener::new(
            detect.clone(),
            cfg.detection.clone(),
            audit.clone(),
            metrics.clone(),
            cfg.upstreams.iter().map(|u| u.name.clone()).collect(),
        );
        let authz = crate::pipeline::authz::Authorizer::new(
            policies,
            upstreams.clone(),
            metrics.clone(),
            audit.clone(),
            auth.required_scopes().to_vec(),
        );
        Ok(Arc::new(Gateway {
            closing: tokio_util::sync::CancellationToken::new(),
            screen,
            authz,
            limits,
            pins,
            detect,
            cfg: Arc::new(cfg),
            upstreams,
            sessions: RwLock::new(HashMap::new()),
            stateless: RwLock::new(HashMap::new()),
            sealer,
            event_ids: crate::transport::streams::EventIds::new(&keyring),
            store,
            tasks: crate::pipeline::tasks::TaskOwners::default(),
            keyring,
            continuations: parking_lot::Mutex::new(HashMap::new()),
            auth,
            forwarder: crate::upstream::forward::Forwarder::new(audit.clone(), metrics.clone()),
            metrics,
            scoped,
            audit,
        }))
    }

    /// Tool integrity over this gateway's upstreams, pins and store.
    pub fn integrity(&self) -> crate::integrity::inventory::Inventory<'_> {
        crate::integrity::inventory::Inventory {
            upstreams: &self.upstreams,
            pins: &self.pins,
            store: &self.store,
            audit: self.audit.as_ref(),
            forwarder: &self.forwarder,
            limits: &self.cfg.integrity,
        }
    }

    /// The upstream → client pipeline over this gateway's parts.
    pub fn to_client(&self) -> crate::pipeline::to_client::ToClient<'_> {
        crate::pipeline::to_client::ToClient {
            integrity: self.integrity(),
            screen: &self.screen,
            authz: &self.authz,
            sealer: &self.sealer,
            upstreams: &self.upstreams,
        }
    }

    /// Decides a `subscriptions/listen`: its URIs canonical and routed to
    /// their one owner, then each decided ([`crate::pipeline::listen::plan`]).
    pub async fn plan_listen(
        &self,
        caller: &Caller,
        ctx: &Context,
        req: &Request,
        asked: &crate::pipeline::listen::Filter,
    ) -> Result<
        (
            Vec<crate::pipeline::listen::Granted>,
            crate::pipeline::listen::Filter,
        ),
        ErrorObject,
    > {
        let mut routed = Vec::new();
        for uri in crate::pipeline::listen::canonical_uris(asked)? {
            if let Some(idx) = self.route_uri(ctx, caller, req, &uri).await {
                routed.push((uri, idx));
            }
        }
        Ok(crate::pipeline::listen::plan(
            &self.authz,
            &self.upstreams,
            caller,
            ctx,
            asked,
            routed,
        ))
    }

    /// Start-up: the pins are loaded and every upstream inventoried before
    /// the first client is served. Returns whether the inventory was
    /// complete (else the listener retries the missing kinds soon).
    pub async fn start_integrity(&self) -> Result<bool, String> {
        if matches!(&self.store, crate::state::store::Backend::Embedded(_))
            && matches!(
                &self.cfg.state.backend,
                crate::config::StateBackend::Embedded { path: None }
            )
        {
            tracing::warn!(
                "tool pins are kept in memory only: set [state] path so approvals survive a restart"
            );
        }
        self.integrity().start().await
    }

    /// Opens every upstream for a new context concurrently; failures degrade
    /// only that upstream. Returns the merged `initialize` view.
    pub async fn open_all(&self, ctx: &Context) -> (Value, Option<String>) {
        let conns = join_all(self.upstreams.iter().map(|u| async move {
            let r = ctx.conn(u).await;
            if let Err(e) = &r {
                self.forwarder.record(u, "initialize", Outcome::Error, Some(e.to_string()), None);
                tracing::warn!(upstream = %u.name(), error = %e, "upstream unavailable at initialize");
            }
            r.ok()
        }))
        .await;
        let mut caps = Map::new();
        let mut instructions = Vec::new();
        for c in conns.into_iter().flatten() {
            let init = c.init_result();
            if let Some(uc) = init.get("capabilities").and_then(Value::as_object) {
                merge_capabilities(&mut caps, uc);
            }
            let text = init.get("instructions").and_then(Value::as_str);
            // Instructions are pinned like tools: changed ones are withheld
            // until approved.
            if !self
                .integrity()
                .judge_instructions(c.upstream.index, text)
                .await
            {
                continue;
            }
            if let Some(i) = text
                && !i.trim().is_empty()
            {
                instructions.push(format!("[{}] {}", c.upstream.name(), i.trim()));
            }
        }
        let instr = (!instructions.is_empty()).then(|| instructions.join("\n\n"));
        (Value::Object(caps), instr)
    }

    /// Serves one client request from `caller` in `ctx`. Upstream messages
    /// related to it go to `events`. Never fails: every error becomes a
    /// JSON-RPC error response.
    pub async fn dispatch(
        &self,
        ctx: &Context,
        lane: Lane,
        req: Request,
        events: UpcallTx,
        client_params: Vec<(HeaderName, HeaderValue)>,
        caller: &Caller,
    ) -> Response {
        let id = req.id.clone();
        match self
            .dispatch_inner(ctx, lane, req, events, client_params, caller)
            .await
        {
            Ok(r) => r,
            Err(e) => Response::error(Some(id), e),
        }
    }

    async fn dispatch_inner(
        &self,
        ctx: &Context,
        lane: Lane,
        req: Request,
        events: UpcallTx,
        client_params: Vec<(HeaderName, HeaderValue)>,
        caller: &Caller,
    ) -> Result<Response, ErrorObject> {
        crate::pipeline::requests::Asked {
            gw: self,
            ctx,
            lane,
            caller,
            events,
            client_params,
        }
        .serve(req)
        .await
    }

    /// `logging/setLevel` (2025-11-25): to every upstream with logging, on the
    /// gateway's own session with it; a 2026-07-28 upstream gets the level on
    /// each later request instead.
    pub(crate) async fn set_level(
        &self,
        ctx: &Context,
        req: Request,
    ) -> Result<Response, ErrorObject> {
        let mut any = false;
        for up in &self.upstreams {
            if let Ok(c) = ctx.conn(up).await
                && c.has_capability("logging")
            {
                any = true;
                if c.era == Era::Modern {
                    // 2026-07-28 has no setLevel: the level rides on each request.
                    if let Some(l) = req.params.as_ref().and_then(|p| p.get("level")) {
                        *ctx.log_level.lock() = Some(l.clone());
                    }
                } else {
                    // Protocol housekeeping of the gateway's own session with
                    // the upstream: no tool, resource or prompt is involved.
                    let _ = self
                        .forwarder
                        .forward(
                            ctx,
                            &c,
                            Pass::Internal(&Internal::session()),
                            req.clone(),
                            None,
                            &[],
                        )
                        .await;
                }
            }
        }
        if any {
            Ok(Response::result(req.id, json!({})))
        } else {
            Err(err(codes::METHOD_NOT_FOUND, "no upstream supports logging"))
        }
    }

    /// Decides `action` on `item` with the request's arguments, then checks
    /// the scopes it needs. A denial of an item the principal may not see at
    /// all is `hidden()` (the unknown-item answer); a visible item refused for
    /// its arguments gets a policy refusal.
    ///
    /// The permit names `method` (the message sent) on `item`; the action
    /// decided is the method's, except that subscribing reveals a resource's
    /// changes and so needs the same permission as reading it.
    pub(crate) fn permit(
        &self,
        caller: &Caller,
        ctx: &Context,
        method: &str,
        item: Item<'_>,
        arguments: Option<&Value>,
        hidden: impl FnOnce() -> ErrorObject,
    ) -> Result<Grant, ErrorObject> {
        let action = match method {
            "resources/subscribe" | "resources/unsubscribe" => "resources/read",
            m => m,
        };
        let call = Call::new(item.upstream, method, Some(item.name));
        let grant = match self
            .authz
            .authorize_item(caller, ctx, action, item, arguments, call)
        {
            bastion_policy::Decision::Allow(g) => g,
            bastion_policy::Decision::Deny(_) => {
                if arguments.is_some()
                    && self
                        .authz
                        .allowed_without_arguments(caller, ctx, action, item)
                {
                    return Err(ErrorObject::with_data(
                        codes::GATEWAY_REFUSED,
                        format!("{action} refused by policy for these arguments"),
                        json!({"reason": "policy"}),
                    ));
                }
                return Err(hidden());
            }
        };
        // The HTTP layer already answered a missing scope with a 403 step-up
        // challenge (see `Gateway::step_up`); this is the backstop.
        if self
            .authz
            .missing_scopes(caller, item.upstream, Some((item.kind, item.name)))
            .is_some()
        {
            return Err(ErrorObject::with_data(
                codes::UNAUTHORIZED,
                "the access token lacks the scopes this request needs",
                json!({"error": "insufficient_scope"}),
            ));
        }
        Ok(grant)
    }

    /// Before dispatch: the scopes `req` needs that `caller` lacks, for the
    /// 403 `insufficient_scope` step-up challenge. Only items the principal may
    /// use are answered this way (anything else is dispatched and gets the
    /// unknown-item answer), so a challenge reveals nothing a list would not.
    pub fn step_up(&self, ctx: &Context, caller: &Caller, req: &Request) -> Option<Vec<String>> {
        if !self.scoped {
            return None;
        }
        let params = req.params.as_ref();
        let s = |k: &str| params.and_then(|p| p.get(k)).and_then(Value::as_str);
        let (idx, kind, name, action) = match req.method.as_str() {
            "tools/call" => {
                let (i, n) = self.route_name(ctx, NameSpace::Tools, s("name")?)?;
                (i, ItemKind::Tool, n, "tools/call")
            }
            "prompts/get" => {
                let (i, n) = self.route_name(ctx, NameSpace::Prompts, s("name")?)?;
                (i, ItemKind::Prompt, n, "prompts/get")
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = bastion_proto::uri::canonical(s("uri")?).ok()?;
                let claims = ctx.routes.read().claimants(&uri);
                let i = match claims.len() {
                    1 => claims.into_iter().next()?,
                    _ => return None,
                };
                (i, ItemKind::Resource, uri, "resources/read")
            }
            _ => return None,
        };
        let missing = self
            .authz
            .missing_scopes(caller, idx, Some((kind, &name)))?;
        let item = Item {
            upstream: idx,
            kind,
            name: &name,
            annotations: &[],
        };
        self.authz
            .allowed_without_arguments(caller, ctx, action, item)
            .then_some(missing)
    }

    /// Sends a permitted request to the upstream its permit names, over this
    /// context's connection: the one way a client's request goes upstream.
    pub(crate) async fn send(
        &self,
        ctx: &Context,
        caller: &Caller,
        grant: Grant,
        req: Request,
        events: Option<UpcallTx>,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Response, ErrorObject> {
        let idx = grant.get().upstream;
        let up = self
            .upstreams
            .get(idx)
            .ok_or_else(|| err(codes::INTERNAL_ERROR, "route to unknown upstream"))?;
        let conn = ctx.conn(up).await.map_err(|e| {
            self.forwarder
                .record(up, &req.method, Outcome::Error, Some(e.to_string()), None);
            e.to_error_object(up.name())
        })?;
        let mut resp = self
            .forwarder
            .forward(ctx, &conn, Pass::Permit(grant), req, events, headers)
            .await?;
        // A 2026-07-28 upstream's request for client input reaches a
        // 2026-07-28 client inside the result: each server request in it is
        // decided as the upcall it is. (For a 2025-era client the connection
        // turns them into server requests, which take the upcall pipeline.)
        if ctx.era == Era::Modern
            && let Ok(result) = resp.outcome.as_mut()
            && let Err(e) = self
                .to_client()
                .decide_input_requests(caller, ctx, idx, result)
        {
            resp.outcome = Err(e);
        }
        Ok(resp)
    }

    /// Serves a client notification. Only the notifications the protocol
    /// defines from client to server go anywhere, each decided like the
    /// request it is about: a cancellation stops the client's own request (its
    /// connection then tells the upstream), progress reaches only the upstream
    /// whose server request it reports on, `roots/list_changed` only the
    /// upstreams the principal may use; what is relayed is screened like
    /// arguments. Anything else is dropped. `Err` names why it went nowhere.
    pub async fn notify(
        &self,
        ctx: &Context,
        caller: &Caller,
        n: bastion_proto::Notification,
    ) -> Result<(), String> {
        match n.method.as_str() {
            // The gateway already completed each upstream's handshake itself.
            "notifications/initialized" => Ok(()),
            "notifications/cancelled" => {
                let cid = n
                    .params
                    .as_ref()
                    .and_then(|p| p.get("requestId"))
                    .and_then(Id::from_value)
                    .ok_or("notifications/cancelled without a requestId")?;
                // Stop waiting: a cancelled request gets no response. Its
                // upstream call is dropped with the task, and the connection
                // sends the upstream its own cancellation.
                match ctx.take_task(&cid) {
                    Some(task) => {
                        task.abort();
                        let mut ev = AuditEvent::new(EventKind::Upstream, Outcome::Error);
                        ev.set_principal(&ctx.principal);
                        ev.reason = Some("request cancelled by the client".into());
                        self.audit.emit(ev);
                        Ok(())
                    }
                    None => Err("cancellation of no request in flight".into()),
                }
            }
            "notifications/progress" => {
                let token = n
                    .params
                    .as_ref()
                    .and_then(|p| p.get("progressToken"))
                    .cloned()
                    .ok_or("notifications/progress without a progressToken")?;
                let idx = ctx
                    .server_request_upstream(&token)
                    .ok_or("progress about no pending server request")?;
                self.relay_notification(ctx, caller, idx, n).await
            }
            "notifications/roots/list_changed" => {
                let mut sent = 0usize;
                for up in &self.upstreams {
                    if self
                        .relay_notification(ctx, caller, up.index, n.clone())
                        .await
                        .is_ok()
                    {
                        sent = sent.saturating_add(1);
                    }
                }
                if sent == 0 {
                    Err("no open upstream session the principal may use".into())
                } else {
                    Ok(())
                }
            }
            other => Err(format!(
                "client notification {:?} is not one the protocol defines; dropped",
                other.chars().take(64).collect::<String>()
            )),
        }
    }

    /// Relays one client notification to upstream `idx`, over this
    /// context's open 2025-era session only, when the principal may use that
    /// upstream; its params are screened like arguments first.
    async fn relay_notification(
        &self,
        ctx: &Context,
        caller: &Caller,
        idx: usize,
        mut n: bastion_proto::Notification,
    ) -> Result<(), String> {
        let conn = ctx
            .existing_conn(idx)
            .await
            .filter(|c| c.era == Era::Legacy)
            .ok_or("no open 2025-era session with that upstream")?;
        let grant = self
            .may_use_upstream(caller, ctx, Call::new(idx, &n.method, None))
            .ok_or("the principal may not use that upstream")?;
        if let Some(p) = n.params.as_ref() {
            let origin = Origin {
                direction: Direction::Arguments,
                upstream: idx,
                method: &n.method,
                target: &n.method,
            };
            match self.screen.arguments(ctx, origin, &n.method, p) {
                Ok(Some(redacted)) => n.params = Some(redacted),
                Ok(None) => {}
                Err(e) => return Err(e.message),
            }
        }
        conn.send_notification(Pass::Permit(grant), n)
            .await
            .map_err(|e| e.to_string())
    }

    /// A permit for `call` when `caller` may list anything on its upstream
    /// (tools, prompts, resources or templates): the question for traffic
    /// about an upstream as a whole that no single item decides.
    pub(crate) fn may_use_upstream(
        &self,
        caller: &Caller,
        ctx: &Context,
        call: Call,
    ) -> Option<Grant> {
        for action in [
            "tools/list",
            "prompts/list",
            "resources/list",
            "resources/templates/list",
        ] {
            if let bastion_policy::Decision::Allow(g) =
                self.authz
                    .authorize_upstream(caller, ctx, action, call.clone())
            {
                return Some(g);
            }
        }
        None
    }

    /// Relays the client's answer to a server-initiated request.
    pub async fn answer(&self, ctx: &Context, resp: Response) -> Result<(), ErrorObject> {
        let id = resp
            .id
            .clone()
            .ok_or_else(|| err(codes::INVALID_REQUEST, "a response needs an id"))?;
        let pending = ctx.take_server_request(&id).ok_or_else(|| {
            err(
                codes::INVALID_REQUEST,
                "no pending server request has this id",
            )
        })?;
        let upstream = self
            .upstreams
            .get(pending.upstream)
            .ok_or_else(|| err(codes::INTERNAL_ERROR, "unknown upstream"))?;
        // What the client answers leaves for the upstream: screened like
        // arguments (a model's sampling answer can carry a secret).
        let outcome = match resp.outcome {
            Ok(v) => {
                let origin = Origin {
                    direction: Direction::Arguments,
                    upstream: pending.upstream,
                    method: &pending.method,
                    target: &pending.method,
                };
                match self.screen.arguments(ctx, origin, &pending.method, &v) {
                    Ok(Some(redacted)) => Ok(redacted),
                    Ok(None) => Ok(v),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        pending
            .reply
            .send(Response {
                id: Some(pending.upstream_id),
                outcome,
            })
            .await
            .map_err(|e| e.to_error_object(upstream.name()))
    }

    /// Screens a successful response on its way to the client; a blocked one
    /// becomes the gateway's refusal. A result that asks for client input
    /// (2026-07-28 `input_required`) carries server requests, screened as
    /// such.
    pub(crate) fn screen_response(&self, ctx: &Context, origin: Origin<'_>, resp: &mut Response) {
        let result = match resp.outcome.as_mut() {
            Ok(r) => r,
            Err(e) => {
                // An upstream's error text reaches the client (and often the
                // model) too. It cannot be marked, so an injection in it is
                // refused whatever the policy's mark would be.
                let mut v = json!({"message": e.message, "data": e.data});
                match self.screen.inbound(ctx, origin, &mut v) {
                    Ok(()) => {
                        if let Some(m) = v.get("message").and_then(Value::as_str) {
                            e.message = m.to_owned();
                        }
                        e.data = v.get("data").cloned().filter(|d| !d.is_null());
                    }
                    Err(refusal) => *e = refusal,
                }
                return;
            }
        };
        // The server requests inside an `input_required` result were decided
        // and screened one by one when it arrived (`Gateway::send`), and the
        // rest of it is the sealed state: screening it again would mark twice.
        if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
            return;
        }
        if let Err(e) = self.screen.inbound(ctx, origin, result) {
            resp.outcome = Err(e);
        }
    }

    /// Delivers an upcall to a 2025-era client: the upstream → client
    /// pipeline, then a server request under a context-unique id (refused to
    /// the upstream when too many already wait for this client).
    pub async fn to_legacy_client(
        &self,
        caller: &Caller,
        ctx: &Context,
        up: Upcall,
    ) -> Option<bastion_proto::Message> {
        use bastion_proto::Message;
        let up = self.to_client().upcall(caller, ctx, up).await?;
        match up.msg {
            Message::Request(r) => {
                let id = r.id.clone();
                let reply = up.reply.clone();
                match ctx.forward_server_request(up.upstream, up.reply, r) {
                    Some(r) => Some(Message::Request(r)),
                    None => {
                        let e = err(
                            codes::GATEWAY_REFUSED,
                            "too many server requests wait for this client",
                        );
                        let _ = reply.send(Response::error(Some(id), e)).await;
                        None
                    }
                }
            }
            Message::Notification(n) => Some(Message::Notification(n)),
            Message::Response(_) => None,
        }
    }

    pub(crate) fn tool_route(&self, ctx: &Context, name: &str) -> Option<ToolRoute> {
        if let Some(r) = ctx.routes.read().tools.get(name) {
            return Some(r.clone());
        }
        None
    }

    pub(crate) fn route_name(
        &self,
        ctx: &Context,
        ns: NameSpace,
        name: &str,
    ) -> Option<(usize, String)> {
        let routes = ctx.routes.read();
        let hit = match ns {
            NameSpace::Tools => routes.tools.get(name).map(|r| (r.upstream, r.name.clone())),
            NameSpace::Prompts => routes.prompts.get(name).map(|(i, n, _)| (*i, n.clone())),
        };
        if hit.is_some() {
            return hit;
        }
        drop(routes);
        // Not listed yet: route by prefix (longest non-empty first, then the one
        // upstream allowed an empty prefix).
        let mut best: Option<&Arc<Upstream>> = None;
        for u in &self.upstreams {
            let p = &u.cfg.prefix;
            if !p.is_empty()
                && name.starts_with(p.as_str())
                && best.is_none_or(|b| b.cfg.prefix.len() < p.len())
            {
                best = Some(u);
            }
        }
        let up = best.or_else(|| self.upstreams.iter().find(|u| u.cfg.prefix.is_empty()))?;
        let original = name.strip_prefix(up.cfg.prefix.as_str())?;
        if original.is_empty() {
            return None;
        }
        Some((up.index, original.to_owned()))
    }

    /// The one upstream that owns `uri` in this context: the only claimant
    /// among the upstreams whose resources and templates this context has
    /// listed (listed first when it has not), or, when nothing claims it, the
    /// only upstream offering resources. `None` when nothing or more than one
    /// upstream claims it (a contested URI is recorded).
    pub(crate) async fn route_uri(
        &self,
        ctx: &Context,
        caller: &Caller,
        like: &Request,
        uri: &str,
    ) -> Option<usize> {
        self.ensure_resource_claims(ctx, caller, like).await;
        let claims = ctx.routes.read().claimants(uri);
        match claims.len() {
            1 => return claims.into_iter().next(),
            0 => {}
            _ => {
                let mut ev = AuditEvent::new(EventKind::Upstream, Outcome::Refused);
                ev.set_principal(&ctx.principal);
                ev.method = Some(like.method.clone());
                ev.target = Some(uri.chars().take(256).collect());
                ev.reason = Some(format!(
                    "resource URI claimed by more than one upstream ({}); refused",
                    claims
                        .iter()
                        .filter_map(|i| self.upstreams.get(*i).map(|u| u.name().to_owned()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                self.audit.emit(ev);
                return None;
            }
        }
        // Not listed: the only upstream offering resources, if there is exactly one.
        let mut found = None;
        for up in &self.upstreams {
            if let Ok(c) = ctx.conn(up).await
                && c.has_capability("resources")
            {
                if found.is_some() {
                    return None;
                }
                found = Some(up.index);
            }
        }
        found
    }

    /// Lists every page of resources and templates once per context (and
    /// again after a change), so that ownership is decided on every claim,
    /// not on whichever list the client happened to ask for first.
    async fn ensure_resource_claims(&self, ctx: &Context, caller: &Caller, like: &Request) {
        if ctx.routes.read().resources_complete {
            return;
        }
        let mut complete = true;
        for kind in [RESOURCES, TEMPLATES] {
            let mut req = list_request(like, &format!("{}/list", kind.method_base));
            let mut done = false;
            for _ in 0..MAX_LIST_PAGES {
                match self.list_collecting(ctx, &req, &kind, caller).await {
                    Ok(l) => match l.value.get("nextCursor").cloned() {
                        Some(c) => set_param(&mut req, "cursor", c),
                        None => {
                            done = true;
                            break;
                        }
                    },
                    Err(_) => break,
                }
            }
            complete &= done;
        }
        if complete {
            ctx.routes.write().resources_complete = true;
        }
    }

    pub(crate) async fn list(
        &self,
        ctx: &Context,
        req: &Request,
        kind: &ListKind,
        caller: &Caller,
    ) -> Result<Value, ErrorObject> {
        if kind.named.is_none() {
            // Resource ownership is decided on every upstream's claims.
            self.ensure_resource_claims(ctx, caller, req).await;
        }
        self.list_collecting(ctx, req, kind, caller)
            .await
            .map(|l| l.value)
    }

    /// Upstream `idx`'s configured name ("" for none).
    pub(crate) fn upstream_name(&self, idx: usize) -> &str {
        self.upstreams.get(idx).map_or("", |u| u.name())
    }

    /// The gateway's cursor for the pages still to come: sealed to the
    /// context's principal and the list method (see [`crate::session::seal`]).
    fn seal_cursor(&self, ctx: &Context, method: &str, next: BTreeMap<usize, String>) -> String {
        self.sealer.seal(
            crate::session::seal::State {
                inner: crate::session::seal::Inner::Cursor {
                    c: next.into_iter().map(|(i, c)| (i.to_string(), c)).collect(),
                },
                p: ctx.principal.clone(),
                m: cursor_purpose(method),
                n: String::new(),
                e: 0,
            },
            CURSOR_TTL_SECS,
        )
    }

    /// Opens a cursor the client sent back; `None` when it is not one this
    /// gateway issued to this principal for this list, or has expired.
    fn open_cursor(
        &self,
        ctx: &Context,
        method: &str,
        v: &Value,
    ) -> Option<BTreeMap<usize, String>> {
        let st = self
            .sealer
            .open(v.as_str()?, &ctx.principal, &cursor_purpose(method), "")
            .ok()?;
        match st.inner {
            crate::session::seal::Inner::Cursor { c } if !c.is_empty() => c
                .into_iter()
                .map(|(i, c)| Some((i.parse().ok()?, c)))
                .collect(),
            _ => None,
        }
    }

    /// Fans a list out for `caller`, merges the pages, records routes: only
    /// upstreams it may list are asked (each under a permit of its own) and
    /// only items it may use are shown and routed.
    pub(crate) async fn list_collecting(
        &self,
        ctx: &Context,
        req: &Request,
        kind: &ListKind,
        caller: &Caller,
    ) -> Result<Listed, ErrorObject> {
        let cursor = req
            .params
            .as_ref()
            .and_then(|p| p.get("cursor"))
            .map(|c| {
                self.open_cursor(ctx, &req.method, c)
                    .ok_or_else(|| err(codes::INVALID_PARAMS, "invalid cursor"))
            })
            .transpose()?;
        let targets: Vec<(usize, Option<String>)> = match &cursor {
            Some(m) => m.iter().map(|(i, c)| (*i, Some(c.clone()))).collect(),
            None => self.upstreams.iter().map(|u| (u.index, None)).collect(),
        };
        // List-change counts before asking, so a change announced meanwhile
        // makes the next call re-list.
        let epochs: Vec<u64> = self
            .upstreams
            .iter()
            .map(|u| u.list_changes.load(std::sync::atomic::Ordering::SeqCst))
            .collect();
        // Each upstream asked is a permit of its own.
        let action = crate::pipeline::authz::list_action(&req.method);
        let targets: Vec<(usize, Option<String>, Pass<'_>)> = targets
            .into_iter()
            .filter_map(|(i, cur)| {
                match self.authz.authorize_upstream(
                    caller,
                    ctx,
                    action,
                    Call::new(i, &req.method, None),
                ) {
                    bastion_policy::Decision::Allow(g) => Some((i, cur, Pass::Permit(g))),
                    bastion_policy::Decision::Deny(_) => None,
                }
            })
            .collect();
        let results = join_all(targets.into_iter().map(|(idx, cur, pass)| {
            let mut sub = req.clone();
            async move {
                let up = self.upstreams.get(idx)?;
                let conn = match ctx.conn(up).await {
                    Ok(c) => c,
                    Err(e) => return Some((idx, Err(e.to_error_object(up.name())))),
                };
                if !conn.has_capability(kind.capability) {
                    return None;
                }
                let params = sub.params.get_or_insert_with(|| json!({}));
                if let Some(obj) = params.as_object_mut() {
                    match cur {
                        Some(c) => obj.insert("cursor".into(), Value::from(c)),
                        None => obj.remove("cursor"),
                    };
                }
                Some((
                    idx,
                    self.forwarder
                        .forward(ctx, &conn, pass, sub, None, &[])
                        .await,
                ))
            }
        }))
        .await;

        let mut items = Vec::new();
        let mut next = BTreeMap::new();
        let mut failures = Vec::new();
        let mut any_ok = false;
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut collisions = Vec::new();
        let mut new_routes: Vec<NewRoute> = Vec::new();
        let mut new_uris: Vec<(String, usize, bool)> = Vec::new();
        // For each shown resource or template: its upstream, canonical URI
        // (or template prefix), and whether it is a template.
        let mut owners: Vec<Option<(usize, String, bool)>> = Vec::new();
        let mut answered = Vec::new();
        let mut listed_fully = Vec::new();
        for (idx, res) in results.into_iter().flatten() {
            let Some(up) = self.upstreams.get(idx) else {
                continue;
            };
            let result = match res.and_then(|r| r.outcome) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{}: {}", up.name(), e.message));
                    continue;
                }
            };
            any_ok = true;
            answered.push(idx);
            if let Some(c) = result.get("nextCursor").and_then(Value::as_str) {
                next.insert(idx, c.to_owned());
            }
            let Some(list) = result.get(kind.key).and_then(Value::as_array) else {
                continue;
            };
            let keep: Vec<bool> = {
                let (item_kind, field) = match (kind.named, kind.key) {
                    (Some(NameSpace::Tools), _) => (ItemKind::Tool, "name"),
                    (Some(NameSpace::Prompts), _) => (ItemKind::Prompt, "name"),
                    (None, "resources") => (ItemKind::Resource, "uri"),
                    (None, _) => (ItemKind::Resource, "uriTemplate"),
                };
                let names = list
                    .iter()
                    .map(|i| {
                        let raw = i.get(field).and_then(Value::as_str).unwrap_or("");
                        let name = if field == "uri" {
                            bastion_proto::uri::canonical(raw).unwrap_or_else(|_| raw.to_owned())
                        } else {
                            raw.to_owned()
                        };
                        (name, crate::pipeline::authz::annotations_of(i))
                    })
                    .collect();
                self.authz
                    .visible_items(caller, ctx, &req.method, idx, item_kind, names)
            };
            let def_kind = match (kind.named, kind.key) {
                (Some(NameSpace::Tools), _) => Some(DefKind::Tool),
                (Some(NameSpace::Prompts), _) => Some(DefKind::Prompt),
                (None, "resourceTemplates") => Some(DefKind::Template),
                (None, _) => None,
            };
            for (item, keep) in list.iter().zip(keep) {
                // Tool integrity: only an approved definition is shown; an
                // unapproved tool or prompt is still routed (with its hash)
                // so a call to it is refused with a clear error.
                let (hash, approved) = match def_kind {
                    Some(k) => {
                        self.integrity()
                            .judge(idx, k, item, crate::integrity::pins::Seen::Session)
                            .await
                    }
                    None => (String::new(), true),
                };
                let mut item = item.clone();
                match kind.named {
                    Some(ns) => {
                        let Some(orig) =
                            item.get("name").and_then(Value::as_str).map(str::to_owned)
                        else {
                            continue;
                        };
                        let annotations = crate::pipeline::authz::annotations_of(&item);
                        let params = match ns {
                            NameSpace::Tools => {
                                let schema = item.get("inputSchema").unwrap_or(&Value::Null);
                                match bastion_proto::headers::param_headers(schema) {
                                    Some(p) => p,
                                    None => {
                                        // 2026-07-28: a tool whose x-mcp-header annotations are
                                        // invalid MUST be excluded.
                                        let mut ev =
                                            AuditEvent::new(EventKind::Upstream, Outcome::Refused);
                                        ev.upstream = Some(up.name().to_owned());
                                        ev.target = Some(orig.clone());
                                        ev.reason = Some(
                                            "tool excluded: invalid x-mcp-header annotation".into(),
                                        );
                                        self.audit.emit(ev);
                                        continue;
                                    }
                                }
                            }
                            NameSpace::Prompts => Vec::new(),
                        };
                        let exposed = format!("{}{}", up.cfg.prefix, orig);
                        if let Some(prev) = seen.insert(exposed.clone(), idx)
                            && prev != idx
                        {
                            collisions.push(exposed.clone());
                        }
                        if let Some(obj) = item.as_object_mut() {
                            obj.insert("name".into(), Value::from(exposed.clone()));
                        }
                        // Withheld items are routed too (never shown): a call to one
                        // is then decided, refused and recorded like any other,
                        // and answered like an unknown name.
                        new_routes.push((exposed, idx, orig, params, annotations, hash));
                        if !keep || !approved {
                            continue;
                        }
                    }
                    None => {
                        let (field, is_template) = if kind.key == "resources" {
                            ("uri", false)
                        } else {
                            ("uriTemplate", true)
                        };
                        let Some(raw) = item.get(field).and_then(Value::as_str) else {
                            continue;
                        };
                        // A resource is routed, decided and shown by its
                        // canonical URI; one that has none is withheld.
                        let key = if is_template {
                            raw.split('{').next().unwrap_or("").to_owned()
                        } else {
                            match bastion_proto::uri::canonical(raw) {
                                Ok(c) => c,
                                Err(_) => continue,
                            }
                        };
                        if !is_template && let Some(obj) = item.as_object_mut() {
                            obj.insert("uri".into(), Value::from(key.clone()));
                        }
                        // Every listed URI and template is a claim, shown or
                        // not, so that two upstreams claiming one namespace are
                        // found whichever the principal may see.
                        new_uris.push((key.clone(), idx, is_template));
                        if !keep || !approved {
                            continue;
                        }
                        // A listed resource's name, title and description
                        // reach the client and often its model: screened like
                        // the resource itself; one that is blocked is withheld.
                        if self
                            .screen
                            .inbound(
                                ctx,
                                Origin {
                                    direction: Direction::Resources,
                                    upstream: idx,
                                    method: &req.method,
                                    target: &key,
                                },
                                &mut item,
                            )
                            .is_err()
                        {
                            continue;
                        }
                        owners.push(Some((idx, key, is_template)));
                        items.push(item);
                        continue;
                    }
                }
                owners.push(None);
                items.push(item);
            }
            if def_kind == Some(DefKind::Tool) && cursor.is_none() && !next.contains_key(&idx) {
                listed_fully.push(idx);
            }
        }
        if !any_ok && !failures.is_empty() {
            return Err(ErrorObject::with_data(
                codes::UPSTREAM_UNAVAILABLE,
                format!("no upstream could answer {}", req.method),
                json!({"failures": failures}),
            ));
        }
        // A name two upstreams claim is withheld: routing it to either would be a guess.
        if !collisions.is_empty() && kind.named.is_some() {
            items.retain(|i| {
                i.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(|n| !collisions.iter().any(|c| c == n))
            });
            let mut ev = AuditEvent::new(EventKind::Upstream, Outcome::Refused);
            ev.method = Some(req.method.clone());
            ev.reason = Some(format!(
                "name collision between upstreams; withheld: {collisions:?}"
            ));
            self.audit.emit(ev);
        }
        {
            let mut routes = ctx.routes.write();
            for idx in listed_fully {
                let epoch = epochs.get(idx).copied().unwrap_or(u64::MAX);
                routes
                    .tools_listed
                    .insert(idx, (std::time::Instant::now(), epoch));
            }
            for (exposed, idx, orig, params, annotations, hash) in new_routes {
                if collisions.contains(&exposed) {
                    continue;
                }
                match kind.named {
                    Some(NameSpace::Tools) => {
                        routes.tools.insert(
                            exposed,
                            ToolRoute {
                                upstream: idx,
                                name: orig,
                                params,
                                annotations,
                                hash,
                            },
                        );
                    }
                    Some(NameSpace::Prompts) => {
                        routes.prompts.insert(exposed, (idx, orig, hash));
                    }
                    None => {}
                }
            }
            for (u, idx, is_template) in new_uris {
                if is_template {
                    routes.templates.entry(u).or_default().insert(idx);
                } else {
                    routes.resources.entry(u).or_default().insert(idx);
                }
            }
            // A URI or template two upstreams claim (a URI listed by both or
            // inside another's template; templates whose namespaces overlap)
            // is owned by neither: withheld, like a name collision.
            let mut contested = Vec::new();
            let mut kept = Vec::with_capacity(items.len());
            for (item, owner) in items.into_iter().zip(owners) {
                let taken = match &owner {
                    Some((idx, key, false)) => routes.claimants(key).iter().any(|u| u != idx),
                    Some((idx, key, true)) => routes.template_contested(*idx, key),
                    None => false,
                };
                if taken {
                    if let Some((_, key, _)) = owner {
                        contested.push(key);
                    }
                } else {
                    kept.push(item);
                }
            }
            items = kept;
            if !contested.is_empty() {
                let mut ev = AuditEvent::new(EventKind::Upstream, Outcome::Refused);
                ev.method = Some(req.method.clone());
                ev.reason = Some(format!(
                    "resource namespace claimed by more than one upstream; withheld: {:?}",
                    contested.iter().take(32).collect::<Vec<_>>()
                ));
                self.audit.emit(ev);
            }
        }
        let mut out = Map::new();
        out.insert(kind.key.into(), Value::Array(items));
        if !next.is_empty() {
            out.insert(
                "nextCursor".into(),
                Value::from(self.seal_cursor(ctx, &req.method, next)),
            );
        }
        Ok(Listed {
            value: Value::Object(out),
            answered,
        })
    }

    /// The stateless lane's `server/discover` result.
    pub(crate) async fn discover(&self, ctx: &Context) -> Value {
        let (caps, instructions) = self.open_all(ctx).await;
        let mut out = json!({
            "supportedVersions": [ProtocolVersion::V2026_07_28.as_str()],
            "capabilities": caps,
        });
        if let (Some(i), Some(obj)) = (instructions, out.as_object_mut()) {
            obj.insert("instructions".into(), Value::from(i));
        }
        out
    }

    /// Closes and forgets a session.
    pub async fn end_session(&self, id: &str) -> bool {
        let s = self.sessions.write().remove(id);
        match s {
            Some(s) => {
                s.ctx.close().await;
                true
            }
            None => false,
        }
    }

    /// Ends a session and records why.
    pub async fn end_session_because(&self, id: &str, reason: &str, outcome: Outcome) -> bool {
        let principal = self
            .sessions
            .read()
            .get(id)
            .map(|s| s.ctx.principal.clone());
        if !self.end_session(id).await {
            return false;
        }
        let mut ev = AuditEvent::new(EventKind::Session, outcome);
        ev.session = Some(crate::audit::session_digest(id));
        if let Some(p) = principal.as_deref() {
            ev.set_principal(p);
        }
        ev.reason = Some(reason.to_owned());
        self.audit.emit(ev);
        true
    }

    /// Ends every session and stateless context of a principal at once
    /// (incident response), on every instance when the store is shared. Returns
    /// how many sessions ended (here, or in the shared store).
    pub async fn invalidate_principal(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<usize, crate::state::store::StoreError> {
        let key = format!("{issuer} {subject}");
        let shared = match &self.store {
            crate::state::store::Backend::Redis(r) => Some(r.invalidate_principal(&key).await?),
            crate::state::store::Backend::Embedded(_) => None,
        };
        let ids: Vec<String> = self
            .sessions
            .read()
            .values()
            .filter(|s| s.ctx.principal == key)
            .map(|s| s.id.clone())
            .collect();
        let mut n: usize = 0;
        for id in ids {
            if self
                .end_session_because(&id, "invalidated (incident response)", Outcome::Refused)
                .await
            {
                n = n.saturating_add(1);
            }
        }
        let prefix = format!("{key}\u{0}");
        let ctxs: Vec<Arc<Context>> = {
            let mut m = self.stateless.write();
            let keys: Vec<String> = m
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            keys.into_iter().filter_map(|k| m.remove(&k)).collect()
        };
        for c in ctxs {
            c.close().await;
        }
        Ok(shared.map_or(n, |m| m.max(n)))
    }

    /// Revokes a token by its `jti` until `until` (its expiry), durably and, on
    /// a shared store, for every instance.
    pub async fn revoke_token(
        &self,
        jti: &str,
        until: u64,
    ) -> Result<(), crate::state::store::StoreError> {
        self.store
            .add_revocation(crate::state::store::RevocationKind::Token, jti, until)
            .await?;
        if let Some(v) = self.auth.verifier() {
            v.revocations().revoke_token(jti, until);
        }
        self.audit_admin(&format!("token revoked (jti {jti})"));
        Ok(())
    }

    /// Refuses every token of a principal and ends its sessions, durably and on
    /// every instance; returns how many sessions ended.
    pub async fn revoke_subject(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<usize, crate::state::store::StoreError> {
        self.store
            .add_revocation(
                crate::state::store::RevocationKind::Subject,
                &format!("{issuer} {subject}"),
                0,
            )
            .await?;
        if let Some(v) = self.auth.verifier() {
            v.revocations().revoke_subject(issuer, subject);
        }
        self.audit_admin(&format!("subject revoked ({subject} at {issuer})"));
        self.invalidate_principal(issuer, subject).await
    }

    /// Lifts a subject revocation; returns whether one was in place.
    pub async fn restore_subject(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<bool, crate::state::store::StoreError> {
        let had = self
            .store
            .remove_revocation(
                crate::state::store::RevocationKind::Subject,
                &format!("{issuer} {subject}"),
            )
            .await?;
        if let Some(v) = self.auth.verifier() {
            v.revocations().restore_subject(issuer, subject);
        }
        self.audit_admin(&format!("subject restored ({subject} at {issuer})"));
        Ok(had)
    }

    /// Loads the store's revocations into the verifier (at start, and every
    /// second with a shared store so a revocation on one instance holds on all).
    pub async fn sync_revocations(&self) -> Result<(), crate::state::store::StoreError> {
        let Some(v) = self.auth.verifier() else {
            return Ok(());
        };
        let (tokens, subjects) = self.store.revocations().await?;
        let subjects = subjects
            .into_iter()
            .filter_map(|k| k.split_once(' ').map(|(i, s)| (i.to_owned(), s.to_owned())))
            .collect();
        match &self.store {
            // The shared list is the whole truth: mirror it.
            crate::state::store::Backend::Redis(_) => v.revocations().replace(tokens, subjects),
            // The file only adds to what this process holds.
            crate::state::store::Backend::Embedded(_) => {
                for (jti, until) in tokens {
                    v.revocations().revoke_token(&jti, until);
                }
                for (i, s) in subjects {
                    v.revocations().revoke_subject(&i, &s);
                }
            }
        }
        Ok(())
    }

    fn audit_admin(&self, what: &str) {
        let mut ev = AuditEvent::new(EventKind::Gateway, Outcome::Ok);
        ev.reason = Some(what.to_owned());
        self.audit.emit(ev);
    }

    /// Ends sessions idle longer than the idle timeout or older than the
    /// absolute timeout.
    pub async fn reap_idle(&self) {
        let limit = self.cfg.server.session_idle_timeout;
        let absolute = self.cfg.server.session_absolute_timeout;
        let stale: Vec<(String, &'static str)> = self
            .sessions
            .read()
            .values()
            .filter_map(|s| {
                if s.binding.created.elapsed() > absolute {
                    Some((s.id.clone(), "expired: absolute timeout"))
                } else if s.ctx.last_used().elapsed() > limit {
                    Some((s.id.clone(), "expired: idle timeout"))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in stale {
            self.end_session_because(&id, why, Outcome::Ok).await;
        }
        let expired: Vec<crate::session::bridge::Continuation> = {
            let mut c = self.continuations.lock();
            let now = std::time::Instant::now();
            let keys: Vec<String> = c
                .iter()
                .filter(|(_, v)| v.expires < now)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter().filter_map(|k| c.remove(&k)).collect()
        };
        for c in expired {
            c.abandon().await;
        }
        let stale_ctx: Vec<String> = self
            .stateless
            .read()
            .iter()
            .filter(|(_, c)| c.last_used().elapsed() > limit)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale_ctx {
            let c = self.stateless.write().remove(&k);
            if let Some(c) = c {
                c.close().await;
            }
        }
    }

    /// Closes every session and upstream connection (shutdown).
    pub async fn shutdown(&self) {
        for up in &self.upstreams {
            up.close_shared().await;
        }
        let all: Vec<Arc<Session>> = self.sessions.write().drain().map(|(_, s)| s).collect();
        for s in all {
            s.ctx.close().await;
        }
        let ctxs: Vec<Arc<Context>> = self.stateless.write().drain().map(|(_, c)| c).collect();
        for c in ctxs {
            c.close().await;
        }
    }

    /// The stateless-lane context for a principal and declared capabilities.
    ///
    /// Each context may hold upstream sessions (and stdio children), so they
    /// are bounded: a principal holds at most `max_sessions_per_principal`
    /// (a new one replaces its least recently used), and all principals
    /// together at most `max_sessions`. `None` only when the gateway-wide
    /// bound is reached by contexts of other principals; one principal can
    /// never fill it.
    pub async fn stateless_context(
        &self,
        principal: &str,
        hello: crate::upstream::ClientHello,
    ) -> Option<Arc<Context>> {
        let key = format!(
            "{principal}\u{0}{}",
            serde_json::to_string(&hello.capabilities).unwrap_or_default()
        );
        if let Some(c) = self.stateless.read().get(&key) {
            c.touch();
            return Some(c.clone());
        }
        let prefix = format!("{principal}\u{0}");
        let cap = self.cfg.server.max_sessions_per_principal;
        let (ctx, evicted) = {
            let mut w = self.stateless.write();
            if let Some(c) = w.get(&key) {
                return Some(c.clone());
            }
            let mut evicted = None;
            let mine: Vec<(std::time::Instant, String)> = w
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, c)| (c.last_used(), k.clone()))
                .collect();
            if mine.len() >= cap
                && let Some((_, lru)) = mine.into_iter().min()
            {
                evicted = w.remove(&lru);
            }
            if evicted.is_none() && w.len() >= self.cfg.server.max_sessions {
                // Full: the principal holding the most contexts gives up its
                // least recently used one, unless that is the requester itself
                // (then it is refused). A stateless context is a cache the
                // next request re-creates, so this costs the heaviest user a
                // reconnect, and nobody can hold everyone else out.
                let mine_now = w.keys().filter(|k| k.starts_with(&prefix)).count();
                let mut per: HashMap<&str, (usize, std::time::Instant, &String)> = HashMap::new();
                for (k, c) in w.iter() {
                    let who = k.split('\u{0}').next().unwrap_or("");
                    let used = c.last_used();
                    let e = per.entry(who).or_insert((0, used, k));
                    e.0 = e.0.saturating_add(1);
                    if used < e.1 {
                        (e.1, e.2) = (used, k);
                    }
                }
                let victim = per
                    .into_values()
                    .filter(|(n, _, _)| *n > mine_now)
                    .max_by_key(|(n, used, _)| (*n, std::cmp::Reverse(*used)))
                    .map(|(_, _, k)| k.clone());
                match victim {
                    Some(k) => evicted = w.remove(&k),
                    None => return None,
                }
            }
            let c = Arc::new(Context::new(
                hello,
                self.upstreams.len(),
                Era::Modern,
                principal,
            ));
            w.insert(key, c.clone());
            (c, evicted)
        };
        if let Some(old) = evicted {
            old.close().await;
        }
        Some(ctx)
    }
}

/// How long a list cursor stays valid.
const CURSOR_TTL_SECS: u64 = 3600;

/// The method a cursor is sealed under: its list's, marked so that a cursor
/// never opens as a `requestState` of the same method.
fn cursor_purpose(method: &str) -> String {
    format!("{method}#cursor")
}

pub(crate) const TOOLS: ListKind = ListKind {
    key: "tools",
    capability: "tools",
    named: Some(NameSpace::Tools),
    method_base: "tools",
};

pub(crate) const PROMPTS: ListKind = ListKind {
    key: "prompts",
    capability: "prompts",
    named: Some(NameSpace::Prompts),
    method_base: "prompts",
};

const RESOURCES: ListKind = ListKind {
    key: "resources",
    capability: "resources",
    named: None,
    method_base: "resources",
};

const TEMPLATES: ListKind = ListKind {
    key: "resourceTemplates",
    capability: "resources",
    named: None,
    method_base: "resources/templates",
};

/// Most pages the gateway reads of one list on its own initiative.
const MAX_LIST_PAGES: usize = 100;

/// A `tools/list`-style request derived from `req` (same `_meta`, no cursor).
pub(crate) fn list_request(req: &Request, method: &str) -> Request {
    let mut params = json!({});
    if let (Some(m), Some(o)) = (
        req.params.as_ref().and_then(|p| p.get("_meta")),
        params.as_object_mut(),
    ) {
        o.insert("_meta".into(), m.clone());
    }
    Request {
        id: req.id.clone(),
        method: method.to_owned(),
        params: Some(params),
    }
}

pub(crate) fn set_param(req: &mut Request, key: &str, v: Value) {
    if let Some(obj) = req.params.as_mut().and_then(Value::as_object_mut) {
        obj.insert(key.into(), v);
    }
}

/// Unions upstream capabilities: an object capability present anywhere is
/// present; boolean flags inside it (e.g. `listChanged`, `subscribe`) are ORed.
pub fn merge_capabilities(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        // Tasks (2025-11-25 experimental) need per-task routing the gateway does
        // not offer yet; never advertise what cannot be relayed.
        if k == "tasks" {
            continue;
        }
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => {
                for (bk, bv) in b {
                    match (a.get(bk), bv) {
                        (Some(Value::Bool(true)), _) => {}
                        (Some(Value::Object(_)), Value::Object(_)) | (None, _) | (Some(_), _) => {
                            a.insert(bk.clone(), bv.clone());
                        }
                    }
                }
            }
            (Some(_), _) => {}
            (None, v) => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Adds the 2026-07-28 result fields: `resultType` and the gateway's serverInfo.
pub fn modernize_result(method: &str, result: &mut Value) {
    let Some(obj) = result.as_object_mut() else {
        return;
    };
    obj.entry("resultType")
        .or_insert_with(|| Value::from("complete"));
    if matches!(
        method,
        "server/discover"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    ) {
        // The gateway's view can differ per principal: never let a shared cache keep it.
        obj.insert("cacheScope".into(), Value::from("private"));
        obj.entry("ttlMs").or_insert_with(|| Value::from(0));
        if obj
            .get("ttlMs")
            .and_then(Value::as_f64)
            .is_none_or(|t| t < 0.0)
        {
            obj.insert("ttlMs".into(), Value::from(0));
        }
    }
    if let Some(m) = meta::meta_mut(result) {
        m.insert(meta::SERVER_INFO.into(), server_info());
    }
}

//! Authorization in the gateway: the policy set in force, who a request comes
//! from, and the decisions the request path asks for.
//!
//! Owns:
//! - [`Policies`]: the Cedar policy set loaded from `[policy] files`, replaced
//!   atomically on reload. A reload that fails (a file does not parse or
//!   validate, a glob matches nothing) keeps the set in force and is an error
//!   event; decisions never see a half-loaded set.
//! - [`Caller`]: the authenticated principal of one request with the facts
//!   policies may test (client address, request id).
//! - The decision helpers on [`Gateway`]: every decision is one `authz` audit
//!   event with principal, action, resource, decision, policy ids and duration.
//!
//! Invariants: an item is usable (listed, called, read, fetched) only when the
//! principal may list its upstream *and* the item's own action is allowed, so
//! lists and calls cannot disagree; a denied item is answered exactly like an
//! unknown one by the callers of these helpers.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bastion_policy::{
    Access, Circumstances, Decision, DenyReason, Engine, ItemKind, Permitted, PolicyError, Source,
    Target, Who,
};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit::metrics::Metrics;
use crate::audit::{AuditEvent, AuditSink, EventKind, Outcome};
use crate::config::PolicyConfig;
use crate::session::context::Context;
use crate::upstream::{Call, Upstream};

/// Who a request comes from, with what policies may test about it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated principal.
    pub principal: bastion_auth::Principal,
    scopes: Vec<String>,
    /// The client's address (empty when unknown).
    pub client_ip: String,
    /// The gateway-assigned request id, for the audit trail.
    pub request_id: Option<String>,
}

impl Caller {
    /// The caller of one request.
    pub fn new(
        principal: bastion_auth::Principal,
        client_ip: Option<std::net::IpAddr>,
        request_id: Option<String>,
    ) -> Caller {
        Caller {
            scopes: principal.scopes.iter().cloned().collect(),
            principal,
            client_ip: client_ip.map(|i| i.to_string()).unwrap_or_default(),
            request_id,
        }
    }

    fn who(&self) -> Who<'_> {
        Who {
            subject: &self.principal.subject,
            issuer: &self.principal.issuer,
            client_id: self.principal.client_id.as_deref(),
            scopes: &self.scopes,
            groups: &self.principal.groups,
            roles: &self.principal.roles,
        }
    }
}

/// Why the policy files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A glob matched nothing or a file could not be read.
    #[error("{0}")]
    Files(String),
    /// The policies were refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Reads every file the globs match (sorted, each once) and a digest of their
/// names and contents.
pub fn read_sources(globs: &[String]) -> Result<(Vec<Source>, String), LoadError> {
    let mut paths = std::collections::BTreeSet::new();
    for g in globs {
        let matches = glob::glob(g).map_err(|e| LoadError::Files(format!("{g}: {e}")))?;
        let before = paths.len();
        for m in matches {
            let p = m.map_err(|e| LoadError::Files(e.to_string()))?;
            if p.is_file() {
                paths.insert(p);
            }
        }
        if paths.len() == before {
            return Err(LoadError::Files(format!("{g}: matches no policy file")));
        }
    }
    let mut h = Sha256::new();
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| LoadError::Files(format!("{}: {e}", p.display())))?;
        let name = p.display().to_string();
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
        out.push(Source { name, text });
    }
    let digest = h
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((out, digest))
}

/// Loads the policy set `cfg` names.
pub fn load_engine(cfg: &PolicyConfig) -> Result<(Engine, String), LoadError> {
    if cfg.files.is_empty() {
        return Ok((
            Engine::new(&[], cfg.dangerous_allow_all)?,
            "none".to_owned(),
        ));
    }
    let (sources, digest) = read_sources(&cfg.files)?;
    Ok((Engine::new(&sources, cfg.dangerous_allow_all)?, digest))
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The files did not change.
    Unchanged,
    /// A new set is in force.
    Replaced {
        /// How many policies it has.
        policies: usize,
    },
    /// The new files were refused; the previous set stays in force.
    Kept(String),
}

/// The policy set in force.
#[derive(Debug)]
pub struct Policies {
    cfg: PolicyConfig,
    engine: RwLock<Arc<Engine>>,
    digest: Mutex<String>,
    /// One reload at a time (SIGHUP and the file watch may race).
    reloading: tokio::sync::Mutex<()>,
}

impl Policies {
    /// Loads the set at start; any error stops start-up.
    pub fn load(cfg: &PolicyConfig) -> Result<Policies, LoadError> {
        let (engine, digest) = load_engine(cfg)?;
        Ok(Policies {
            cfg: cfg.clone(),
            engine: RwLock::new(Arc::new(engine)),
            digest: Mutex::new(digest),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The set in force now.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.read().clone()
    }

    /// The digest of the files in force.
    pub fn digest(&self) -> String {
        self.digest.lock().clone()
    }

    /// How often the files are checked.
    pub fn interval(&self) -> std::time::Duration {
        self.cfg.reload_interval
    }

    /// Re-reads the files; replaces the set only when they changed and the new
    /// set validates. Every change or refusal is a `policy` audit event.
    pub async fn reload(&self, audit: &dyn AuditSink, why: &str) -> Reloaded {
        let _one = self.reloading.lock().await;
        if self.cfg.files.is_empty() {
            return Reloaded::Unchanged;
        }
        let cfg = self.cfg.clone();
        // File reads and Cedar validation are blocking work.
        let loaded = tokio::task::spawn_blocking(move || {
            let (sources, digest) = read_sources(&cfg.files)?;
            Ok::<_, LoadError>((sources, digest, cfg.dangerous_allow_all))
        })
        .await;
        let result = match loaded {
            Ok(Ok((sources, digest, allow))) => {
                if digest == *self.digest.lock() {
                    return Reloaded::Unchanged;
                }
                tokio::task::spawn_blocking(move || {
                    Engine::new(&sources, allow)
                        .map(|e| (e, digest))
                        .map_err(LoadError::from)
                })
                .await
                .unwrap_or_else(|_| Err(LoadError::Files("policy validation panicked".into())))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LoadError::Files("policy reload panicked".into())),
        };
        match result {
            Ok((engine, digest)) => {
                let n = engine.len();
                *self.engine.write() = Arc::new(engine);
                let mut ev = AuditEvent::new(EventKind::Policy, Outcome::Ok);
                ev.reason = Some(format!("policy set replaced ({why}): {n} policies"));
                ev.target = Some(digest.clone());
                audit.emit(ev);
                tracing::info!(policies = n, digest = %digest, "policy set replaced ({why})");
                *self.digest.lock() = digest;
                Reloaded::Replaced { policies: n }
            }
            Err(e) => {
                let msg = e.to_string();
                let mut ev = AuditEvent::new(EventKind::Policy, Outcome::Error);
                ev.reason = Some(format!(
                    "new policy set refused ({why}); the previous one stays in force: {}",
                    msg.chars().take(1024).collect::<String>()
                ));
                audit.emit(ev);
                tracing::error!(error = %msg, "new policy set refused; keeping the previous one");
                Reloaded::Kept(msg)
            }
        }
    }
}

/// The list action for a list method.
pub fn list_action(method: &str) -> &'static str {
    match method {
        "prompts/list" => "prompts/list",
        "resources/list" => "resources/list",
        "resources/templates/list" => "resources/templates/list",
        _ => "tools/list",
    }
}

/// The list action that shows items of `kind`.
fn list_action_for(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Tool => "tools/list",
        ItemKind::Prompt => "prompts/list",
        ItemKind::Resource => "resources/list",
    }
}

/// The use action of items of `kind`.
pub fn use_action(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Tool => "tools/call",
        ItemKind::Prompt => "prompts/get",
        ItemKind::Resource => "resources/read",
    }
}

fn kind_type(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Tool => "Bastion::Tool",
        ItemKind::Prompt => "Bastion::Prompt",
        ItemKind::Resource => "Bastion::Resource",
    }
}

/// The Cedar entity id of an item, as audit records and `policy explain` spell it.
pub fn item_uid(kind: ItemKind, upstream: &str, name: &str) -> String {
    format!(
        "{}::{}",
        kind_type(kind),
        serde_json::Value::from(format!("{upstream}/{name}"))
    )
}

/// The Cedar entity id of an upstream.
pub fn upstream_uid(name: &str) -> String {
    format!("Bastion::Upstream::{}", serde_json::Value::from(name))
}

/// The annotation hints an upstream set to true on a tool (untrusted).
pub fn annotations_of(tool: &Value) -> Vec<String> {
    tool.get("annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| k.chars().take(64).collect())
                .take(16)
                .collect()
        })
        .unwrap_or_default()
}

/// An `authz` event with who and what; the decision is filled in by the caller.
fn authz_base(caller: &Caller, action: &str, resource: String) -> AuditEvent {
    let p = &caller.principal;
    let mut ev = AuditEvent::new(EventKind::Authz, Outcome::Ok);
    ev.request_id = caller.request_id.clone();
    ev.principal = Some(p.subject.clone());
    ev.issuer = Some(p.issuer.clone());
    ev.client_id = p.client_id.clone();
    ev.client_addr = (!caller.client_ip.is_empty()).then(|| caller.client_ip.clone());
    ev.groups = Some(p.groups.clone());
    ev.roles = Some(p.roles.clone());
    ev.scopes = Some(p.scope_string());
    ev.action = Some(action.to_owned());
    ev.resource = Some(resource);
    ev
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The denial of a question about an upstream that does not exist (or a
/// call on another upstream than its item's).
fn no_such_upstream<T>() -> Decision<T> {
    Decision::Deny(bastion_policy::Denied {
        reason: DenyReason::Error,
        policies: Vec::new(),
        errors: vec!["no such upstream".into()],
    })
}

/// One question for the policies.
struct Question<'a> {
    action: &'a str,
    target: Target<'a>,
    /// The Cedar spelling of the resource, for the audit record.
    resource: String,
    arguments: Option<&'a Value>,
}

/// One item to decide on.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// Its upstream's index.
    pub upstream: usize,
    /// Which kind.
    pub kind: ItemKind,
    /// The upstream's own name (URI or URI template for resources).
    pub name: &'a str,
    /// Annotation hints the upstream set (untrusted).
    pub annotations: &'a [String],
}

/// The decisions the request path asks for, with what they need and nothing
/// else of the gateway: the policy set in force, the upstreams (names,
/// labels, item settings), the trail and the metrics.
pub struct Authorizer {
    /// The policy set in force and its reload.
    pub policies: Policies,
    upstreams: Vec<Arc<Upstream>>,
    metrics: Arc<Metrics>,
    audit: Arc<dyn AuditSink>,
    /// The scopes every request needs (named in a step-up challenge).
    baseline_scopes: Vec<String>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("policies", &self.policies)
            .field("upstreams", &self.upstreams.len())
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// An authorizer over `policies` for `upstreams` (by index).
    pub fn new(
        policies: Policies,
        upstreams: Vec<Arc<Upstream>>,
        metrics: Arc<Metrics>,
        audit: Arc<dyn AuditSink>,
        baseline_scopes: Vec<String>,
    ) -> Self {
        Authorizer {
            policies,
            upstreams,
            metrics,
            audit,
            baseline_scopes,
        }
    }

    /// Decides `q` for `caller` and records the decision.
    fn decide_audited<T>(
        &self,
        engine: &Engine,
        caller: &Caller,
        ctx: &Context,
        q: Question<'_>,
        subject: T,
    ) -> Decision<T> {
        let Question {
            action,
            target,
            resource,
            arguments,
        } = q;
        let t0 = Instant::now();
        let access = Access {
            who: caller.who(),
            action,
            target,
            context: Circumstances {
                time: now(),
                client_ip: &caller.client_ip,
                session_risk: ctx.risk(),
                arguments,
            },
        };
        let d = engine.decide(&access, subject);
        self.metrics
            .decision(action, if d.is_allow() { "allow" } else { "deny" });
        let mut ev = self.authz_event(caller, action, resource, &d);
        ev.duration_us = Some(t0.elapsed().as_micros() as u64);
        self.audit.emit(ev);
        d
    }

    fn authz_event<T>(
        &self,
        caller: &Caller,
        action: &str,
        resource: String,
        d: &Decision<T>,
    ) -> AuditEvent {
        let mut ev = authz_base(caller, action, resource);
        match d {
            Decision::Allow(p) => {
                ev.decision = Some("allow");
                ev.policies = Some(p.policies().to_vec());
            }
            Decision::Deny(d) => {
                ev.outcome = Outcome::Refused;
                ev.decision = Some("deny");
                ev.policies = Some(d.policies.clone());
                ev.reason = Some(match d.reason {
                    DenyReason::NoPermit => "no policy permits it".to_owned(),
                    DenyReason::Forbidden => "forbidden by policy".to_owned(),
                    DenyReason::Error => format!(
                        "evaluation error (denied): {}",
                        d.errors.join("; ").chars().take(512).collect::<String>()
                    ),
                });
            }
        }
        ev
    }

    /// May `caller` perform the admin action `action` (`admin/read`,
    /// `admin/approve`) on the gateway? Decided and recorded like any other.
    pub fn authorize_admin(&self, caller: &Caller, action: &str) -> bool {
        let engine = self.policies.engine();
        let t0 = Instant::now();
        let access = Access {
            who: caller.who(),
            action,
            target: Target::Gateway,
            context: Circumstances {
                time: now(),
                client_ip: &caller.client_ip,
                session_risk: 0,
                arguments: None,
            },
        };
        let d = engine.decide(&access, ());
        self.metrics
            .decision(action, if d.is_allow() { "allow" } else { "deny" });
        let mut ev = self.authz_event(caller, action, "Bastion::Gateway::\"gateway\"".into(), &d);
        ev.duration_us = Some(t0.elapsed().as_micros() as u64);
        self.audit.emit(ev);
        d.is_allow()
    }

    /// May `caller` send `action` (a list method, a server-initiated request,
    /// or a method the gateway passes through) to upstream `call.upstream`?
    /// The Allow carries `call`: the permit to send exactly it.
    pub fn authorize_upstream(
        &self,
        caller: &Caller,
        ctx: &Context,
        action: &str,
        call: Call,
    ) -> Decision<Call> {
        let engine = self.policies.engine();
        let idx = call.upstream;
        let Some(up) = self.upstreams.get(idx) else {
            // No such upstream: denied without asking the policies (even
            // `dangerous_allow_all` permits nothing that does not exist).
            return no_such_upstream();
        };
        self.decide_audited(
            &engine,
            caller,
            ctx,
            Question {
                action,
                target: Target::Upstream {
                    name: up.name(),
                    labels: &up.cfg.labels,
                },
                resource: upstream_uid(up.name()),
                arguments: None,
            },
            call,
        )
    }

    /// May `caller` do `action` on `item`? Requires the upstream's list action
    /// too, so that "usable" and "listed" are one rule. `arguments` is `None`
    /// when filtering a list. The Allow carries `call`, which must be on the
    /// item's upstream (anything else is denied).
    pub fn authorize_item(
        &self,
        caller: &Caller,
        ctx: &Context,
        action: &str,
        item: Item<'_>,
        arguments: Option<&Value>,
        call: Call,
    ) -> Decision<Call> {
        let engine = self.policies.engine();
        let engine = engine.as_ref();
        let Some(up) = self
            .upstreams
            .get(item.upstream)
            .filter(|_| call.upstream == item.upstream)
        else {
            return no_such_upstream();
        };
        if let Decision::Deny(d) = self.decide_audited(
            engine,
            caller,
            ctx,
            Question {
                action: list_action_for(item.kind),
                target: Target::Upstream {
                    name: up.name(),
                    labels: &up.cfg.labels,
                },
                resource: upstream_uid(up.name()),
                arguments: None,
            },
            (),
        ) {
            return Decision::Deny(d);
        }
        let settings = up.cfg.item(item.kind, item.name);
        let none: &[String] = &[];
        self.decide_audited(
            engine,
            caller,
            ctx,
            Question {
                action,
                target: Target::Item {
                    kind: item.kind,
                    upstream: up.name(),
                    name: item.name,
                    labels: settings.map(|s| s.labels.as_slice()).unwrap_or(none),
                    upstream_labels: &up.cfg.labels,
                    risk: settings.map(|s| s.risk).unwrap_or(0),
                    annotations: item.annotations,
                },
                resource: item_uid(item.kind, up.name(), item.name),
                arguments,
            },
            call,
        )
    }

    /// Filters one upstream's page of a list: keeps the items `caller` may
    /// use. Decides each item without recording it and records one event for
    /// the page (the items considered and those withheld), so a 500-tool list
    /// is one audit record, not 500.
    pub fn visible_items(
        &self,
        caller: &Caller,
        ctx: &Context,
        method: &str,
        idx: usize,
        kind: ItemKind,
        items: Vec<(String, Vec<String>)>,
    ) -> Vec<bool> {
        let t0 = Instant::now();
        let engine = self.policies.engine();
        let Some(up) = self.upstreams.get(idx) else {
            return vec![false; items.len()];
        };
        let none: &[String] = &[];
        let time = now();
        let risk = ctx.risk();
        let action = match method {
            "resources/templates/list" | "resources/list" => "resources/read",
            _ => use_action(kind),
        };
        let keep: Vec<bool> = items
            .iter()
            .map(|(name, annotations)| {
                let settings = up.cfg.item(kind, name);
                engine
                    .decide(
                        &Access {
                            who: caller.who(),
                            action,
                            target: Target::Item {
                                kind,
                                upstream: up.name(),
                                name,
                                labels: settings.map(|s| s.labels.as_slice()).unwrap_or(none),
                                upstream_labels: &up.cfg.labels,
                                risk: settings.map(|s| s.risk).unwrap_or(0),
                                annotations,
                            },
                            context: Circumstances {
                                time,
                                client_ip: &caller.client_ip,
                                session_risk: risk,
                                arguments: None,
                            },
                        },
                        (),
                    )
                    .is_allow()
            })
            .collect();
        self.metrics.decision(action, "filter");
        // One record for the page: which items were considered, which withheld.
        let mut ev = authz_base(caller, action, upstream_uid(up.name()));
        ev.decision = Some("filter");
        ev.method = Some(method.to_owned());
        ev.items = Some(items.iter().take(1000).map(|(n, _)| n.clone()).collect());
        ev.hidden = Some(
            items
                .iter()
                .zip(&keep)
                .filter(|(_, k)| !**k)
                .take(1000)
                .map(|((n, _), _)| n.clone())
                .collect(),
        );
        ev.duration_us = Some(t0.elapsed().as_micros() as u64);
        self.audit.emit(ev);
        keep
    }

    /// Whether `action` on `item` is allowed when no arguments are weighed:
    /// for a call that was denied, whether the arguments were the reason (then
    /// the client may be told the call was refused, the item's existence being
    /// no secret to someone who may see it; otherwise it gets the unknown-item
    /// answer), and for the step-up check, whether the item is one the
    /// principal may use at all.
    pub fn allowed_without_arguments(
        &self,
        caller: &Caller,
        ctx: &Context,
        action: &str,
        item: Item<'_>,
    ) -> bool {
        self.authorize_item(
            caller,
            ctx,
            action,
            item,
            None,
            Call::new(item.upstream, action, None),
        )
        .is_allow()
    }

    /// The scopes a request for `item` (or for upstream `idx` as a whole)
    /// needs beyond the ones every request needs.
    pub fn item_scopes(&self, idx: usize, item: Option<(ItemKind, &str)>) -> Vec<String> {
        let Some(up) = self.upstreams.get(idx) else {
            return Vec::new();
        };
        let mut out = up.cfg.required_scopes.clone();
        if let Some((kind, name)) = item
            && let Some(s) = up.cfg.item(kind, name)
        {
            for sc in &s.required_scopes {
                if !out.contains(sc) {
                    out.push(sc.clone());
                }
            }
        }
        out
    }

    /// The scopes `caller` lacks for `item`; when any are missing, also every
    /// scope the operation needs (the step-up challenge names all of them).
    pub fn missing_scopes(
        &self,
        caller: &Caller,
        idx: usize,
        item: Option<(ItemKind, &str)>,
    ) -> Option<Vec<String>> {
        let needed = self.item_scopes(idx, item);
        if caller.principal.has_scopes(needed.iter()) {
            return None;
        }
        let mut all = self.baseline_scopes.clone();
        for s in needed {
            if !all.contains(&s) {
                all.push(s);
            }
        }
        Some(all)
    }
}

/// Proof that an upstream request was permitted: what `Gateway::send` requires.
pub type Grant = Permitted<Call>;

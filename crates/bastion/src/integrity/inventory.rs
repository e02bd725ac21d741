//! Tool integrity in the request path: every listed definition is judged
//! against the pins before it is shown or routed, a call is forwarded only
//! when the definition its context last listed is the approved one (after
//! re-listing a view older than the re-list interval), its arguments are
//! validated against that pinned schema, a structured result against the
//! pinned output schema; upstream `list_changed` notifications re-list at
//! once; an inventory of every upstream runs at start-up (the `tofu`
//! baseline) and every `relist_interval_secs`.
//!
//! Invariants: nothing unapproved is forwarded (unless the upstream is
//! `dangerous_monitor`); a definition that cannot be judged (store down,
//! schema invalid) is treated as unapproved; nothing here waits on a client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bastion_proto::{Era, ErrorObject, Id, ProtocolVersion, Request, codes};
use serde_json::{Value, json};

use crate::audit::AuditSink;
use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::config::IntegrityConfig;
use crate::integrity::pins::Pins;
use crate::integrity::pins::{Seen, Standing};
use crate::integrity::{self, DefKind, Schema};
use crate::session::context::{Context, ToolRoute};
use crate::state::store::Backend;
use crate::upstream::GATEWAY_PRINCIPAL;
use crate::upstream::Upstream;
use crate::upstream::forward::Forwarder;

/// Most pages one inventory reads from one upstream list.
const MAX_PAGES: usize = 100;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn err(code: i64, msg: impl Into<String>) -> ErrorObject {
    ErrorObject::new(code, msg)
}

/// A tool's route from its definition; `None` when its `x-mcp-header`
/// annotations are invalid (2026-07-28: such a tool is excluded).
pub fn route_for(idx: usize, def: &Value, hash: String) -> Option<ToolRoute> {
    let name = def.get("name").and_then(Value::as_str)?.to_owned();
    let schema = def.get("inputSchema").unwrap_or(&Value::Null);
    let params = bastion_proto::headers::param_headers(schema)?;
    Some(ToolRoute {
        upstream: idx,
        name,
        params,
        annotations: crate::pipeline::authz::annotations_of(def),
        hash,
    })
}

/// Tool integrity over the upstreams: judging definitions against the pins,
/// the per-call checks, and the inventories. Its dependencies are all it
/// touches: the upstreams (to list them, under the inventory capability),
/// the pins and the store they persist to, the trail, the exchange recorder
/// and the integrity limits. A view: cheap to make, borrowed from the
/// gateway (`Gateway::integrity`).
#[derive(Clone, Copy)]
pub struct Inventory<'a> {
    /// The configured upstreams, by index.
    pub upstreams: &'a [Arc<Upstream>],
    /// Pins, decisions, manifests.
    pub pins: &'a Pins,
    /// Where pins persist.
    pub store: &'a Backend,
    /// The audit trail.
    pub audit: &'a dyn AuditSink,
    /// Sends the inventory's own listings (and records them).
    pub forwarder: &'a Forwarder,
    /// Re-list interval and argument bounds.
    pub limits: &'a IntegrityConfig,
}

impl std::fmt::Debug for Inventory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("upstreams", &self.upstreams.len())
            .finish_non_exhaustive()
    }
}

impl Inventory<'_> {
    /// Judges one listed definition: its hash, and whether it may be shown
    /// and used. Records what it has not seen before.
    pub async fn judge(
        &self,
        idx: usize,
        kind: DefKind,
        def: &Value,
        seen: crate::integrity::pins::Seen,
    ) -> (String, bool) {
        let Some(up) = self.upstreams.get(idx) else {
            return (String::new(), false);
        };
        let hash = integrity::hash(def);
        let Some(name) = integrity::key_of(kind, def) else {
            return (hash, false);
        };
        let mut standing = self.pins.standing(up.name(), kind, name, &hash);
        // A manifest-approved version is recorded once too, so its schemas
        // and history are there.
        let unrecorded_manifest_match = standing == Standing::Approved
            && self.pins.has_manifest(up.name())
            && !self.pins.is_recorded(up.name(), kind, name, &hash);
        if unrecorded_manifest_match
            || matches!(standing, Standing::Unseen | Standing::ManifestMismatch)
        {
            standing = self
                .pins
                .observe(
                    self.store,
                    self.audit,
                    up.name(),
                    kind,
                    name,
                    def,
                    &hash,
                    seen,
                )
                .await;
        }
        let exposed = self.pins.exposed(up.name(), standing);
        (hash, exposed)
    }

    /// Reads every page of one list from an upstream in `ctx`.
    async fn list_all(
        &self,
        ctx: &Context,
        idx: usize,
        kind: DefKind,
    ) -> Result<Option<Vec<Value>>, ErrorObject> {
        let (Some(up), Some(method)) = (self.upstreams.get(idx), kind.list_method()) else {
            return Ok(None);
        };
        let conn = ctx
            .conn(up)
            .await
            .map_err(|e| e.to_error_object(up.name()))?;
        let cap = if kind == DefKind::Template {
            "resources"
        } else {
            kind.list_key()
        };
        if !conn.has_capability(cap) {
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = serde_json::Map::new();
            if let Some(c) = &cursor {
                params.insert("cursor".into(), Value::from(c.clone()));
            }
            let req = Request {
                id: Id::Str(format!(
                    "bastion-inventory-{}",
                    NEXT_ID.fetch_add(1, Ordering::Relaxed)
                )),
                method: method.to_owned(),
                params: Some(Value::Object(params)),
            };
            let r = self
                .forwarder
                .forward(
                    ctx,
                    &conn,
                    crate::upstream::Pass::Internal(&crate::upstream::Internal::inventory()),
                    req,
                    None,
                    &[],
                )
                .await?;
            let v = r.outcome?;
            if let Some(a) = v.get(kind.list_key()).and_then(Value::as_array) {
                out.extend(a.iter().cloned());
            }
            match v.get("nextCursor").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
                _ => return Ok(Some(out)),
            }
        }
        Ok(Some(out))
    }

    /// Re-lists one upstream's tools in `ctx` and brings the context's routes
    /// in line: changed hashes replace old ones, vanished tools lose their
    /// route, new ones gain one.
    pub async fn relist_tools(&self, ctx: &Context, idx: usize) -> Result<(), ErrorObject> {
        let Some(up) = self.upstreams.get(idx) else {
            return Ok(());
        };
        let epoch = up.list_changes.load(Ordering::SeqCst);
        let Some(list) = self.list_all(ctx, idx, DefKind::Tool).await? else {
            return Ok(());
        };
        let mut fresh = Vec::new();
        for def in &list {
            let (hash, _) = self.judge(idx, DefKind::Tool, def, Seen::Session).await;
            if let Some(r) = route_for(idx, def, hash) {
                fresh.push(r);
            }
        }
        let mut routes = ctx.routes.write();
        routes.tools.retain(|_, r| r.upstream != idx);
        for r in fresh {
            let exposed = format!("{}{}", up.cfg.prefix, r.name);
            routes.tools.insert(exposed, r);
        }
        routes.tools_listed.insert(idx, (Instant::now(), epoch));
        Ok(())
    }

    /// Re-lists one upstream's prompts in `ctx` (their hashes).
    pub(crate) async fn relist_prompts(
        &self,
        ctx: &Context,
        idx: usize,
    ) -> Result<(), ErrorObject> {
        let Some(up) = self.upstreams.get(idx) else {
            return Ok(());
        };
        let Some(list) = self.list_all(ctx, idx, DefKind::Prompt).await? else {
            return Ok(());
        };
        let mut fresh = Vec::new();
        for def in &list {
            let (hash, _) = self.judge(idx, DefKind::Prompt, def, Seen::Session).await;
            if let Some(n) = def.get("name").and_then(Value::as_str) {
                fresh.push((n.to_owned(), hash));
            }
        }
        let mut routes = ctx.routes.write();
        routes.prompts.retain(|_, (i, _, _)| *i != idx);
        for (n, h) in fresh {
            routes
                .prompts
                .insert(format!("{}{n}", up.cfg.prefix), (idx, n, h));
        }
        Ok(())
    }

    /// An upstream said its list changed: re-list now, so the change is
    /// judged (and recorded) before the client hears of it.
    pub async fn on_list_changed(&self, ctx: &Context, idx: usize, method: &str) {
        let r = match method {
            "notifications/tools/list_changed" => self.relist_tools(ctx, idx).await,
            "notifications/prompts/list_changed" => self.relist_prompts(ctx, idx).await,
            "notifications/resources/list_changed" => {
                // Ownership is decided again on the new claims.
                ctx.routes.write().forget_resources(idx);
                self.list_all(ctx, idx, DefKind::Template).await.map(|_| ())
            }
            _ => return,
        };
        if let Err(e) = r {
            tracing::warn!(error = %e.message, "re-list after list_changed failed");
        }
    }

    /// Before a call: a view of the upstream's tools older than the re-list
    /// interval (or never taken) is refreshed first, so a silent change is
    /// caught in the request path.
    /// Returns whether it re-listed.
    pub async fn ensure_fresh(&self, ctx: &Context, idx: usize) -> Result<bool, ErrorObject> {
        let Some(up) = self.upstreams.get(idx) else {
            return Ok(false);
        };
        let epoch = up.list_changes.load(Ordering::SeqCst);
        let stale = ctx
            .routes
            .read()
            .tools_listed
            .get(&idx)
            .is_none_or(|(t, e)| *e != epoch || t.elapsed() >= self.limits.relist_interval);
        if stale {
            self.relist_tools(ctx, idx).await?;
        }
        Ok(stale)
    }

    /// The integrity checks of one `tools/call`: the definition is the
    /// approved one, the arguments are within bounds and valid against its
    /// pinned input schema. Returns its pinned output schema.
    pub fn check_call(
        &self,
        route: &ToolRoute,
        exposed: &str,
        args: &Value,
    ) -> Result<Option<Arc<Schema>>, ErrorObject> {
        let Some(up) = self.upstreams.get(route.upstream) else {
            return Err(err(codes::INTERNAL_ERROR, "no such upstream"));
        };
        let standing = self
            .pins
            .standing(up.name(), DefKind::Tool, &route.name, &route.hash);
        if route.hash.is_empty() || !self.pins.exposed(up.name(), standing) {
            let mut ev = AuditEvent::new(EventKind::Integrity, Outcome::Refused);
            ev.upstream = Some(up.name().to_owned());
            ev.target = Some(route.name.clone());
            ev.reason = Some(format!("call refused: {}", standing.reason()));
            ev.change = Some(
                json!({"change": "call_refused", "kind": "tool", "name": route.name,
                "hash": route.hash, "standing": standing.as_str()}),
            );
            self.audit.emit(ev);
            return Err(ErrorObject::with_data(
                codes::GATEWAY_REFUSED,
                format!("tool {exposed:?} is quarantined: {}", standing.reason()),
                json!({"tool": exposed, "standing": standing.as_str()}),
            ));
        }
        let limits = self.limits;
        if integrity::size_exceeds(args, limits.max_argument_bytes) {
            return Err(ErrorObject::with_data(
                codes::INVALID_PARAMS,
                format!(
                    "invalid arguments for tool {exposed:?}: larger than {} bytes",
                    limits.max_argument_bytes
                ),
                json!({"tool": exposed, "path": "/"}),
            ));
        }
        if let Some(path) = integrity::depth_exceeds(args, limits.max_argument_depth) {
            return Err(ErrorObject::with_data(
                codes::INVALID_PARAMS,
                format!(
                    "invalid arguments for tool {exposed:?}: nested deeper than {} levels at {path}",
                    limits.max_argument_depth
                ),
                json!({"tool": exposed, "path": path}),
            ));
        }
        match self.pins.schemas(up.name(), &route.name, &route.hash) {
            Ok((input, output)) => {
                if let Some(s) = input {
                    s.check(args).map_err(|m| {
                        ErrorObject::with_data(
                            codes::INVALID_PARAMS,
                            format!("invalid arguments for tool {exposed:?}: {m}"),
                            json!({"tool": exposed}),
                        )
                    })?;
                }
                Ok(output)
            }
            Err(e) => Err(ErrorObject::with_data(
                codes::GATEWAY_REFUSED,
                format!("tool {exposed:?} cannot be called: {e}"),
                json!({"tool": exposed}),
            )),
        }
    }

    /// The integrity check of `prompts/get`: the prompt's definition as this
    /// context listed it (listed now if it was not) is the approved one.
    pub async fn check_prompt(
        &self,
        ctx: &Context,
        idx: usize,
        exposed: &str,
        original: &str,
    ) -> Result<(), ErrorObject> {
        let Some(up) = self.upstreams.get(idx) else {
            return Err(err(codes::INTERNAL_ERROR, "no such upstream"));
        };
        let known = |ctx: &Context| {
            ctx.routes
                .read()
                .prompts
                .get(exposed)
                .filter(|(i, n, _)| *i == idx && n == original)
                .map(|(_, _, h)| h.clone())
        };
        let hash = match known(ctx) {
            Some(h) => h,
            None => {
                self.relist_prompts(ctx, idx).await?;
                known(ctx).unwrap_or_default()
            }
        };
        let standing = self
            .pins
            .standing(up.name(), DefKind::Prompt, original, &hash);
        if hash.is_empty() || !self.pins.exposed(up.name(), standing) {
            let mut ev = AuditEvent::new(EventKind::Integrity, Outcome::Refused);
            ev.upstream = Some(up.name().to_owned());
            ev.target = Some(original.to_owned());
            ev.reason = Some(format!("prompt refused: {}", standing.reason()));
            ev.change = Some(
                json!({"change": "call_refused", "kind": "prompt", "name": original,
                "hash": hash, "standing": standing.as_str()}),
            );
            self.audit.emit(ev);
            return Err(ErrorObject::with_data(
                codes::GATEWAY_REFUSED,
                format!("prompt {exposed:?} is quarantined: {}", standing.reason()),
                json!({"prompt": exposed, "standing": standing.as_str()}),
            ));
        }
        Ok(())
    }

    /// Checks a tool's structured result against its pinned output schema.
    pub fn check_result(
        &self,
        exposed: &str,
        output: Option<&Arc<Schema>>,
        result: &Value,
    ) -> Result<(), ErrorObject> {
        let Some(schema) = output else {
            return Ok(());
        };
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        let Some(sc) = result.get("structuredContent") else {
            return Ok(());
        };
        schema.check(sc).map_err(|m| {
            ErrorObject::with_data(
                codes::GATEWAY_REFUSED,
                format!("tool {exposed:?} returned a structured result its output schema does not allow: {m}"),
                json!({"tool": exposed}),
            )
        })
    }

    /// Judges an upstream's instructions; `None` when they must be withheld.
    pub async fn judge_instructions(&self, idx: usize, text: Option<&str>) -> bool {
        let def = integrity::instructions_def(text);
        self.judge(idx, DefKind::Instructions, &def, Seen::Session)
            .await
            .1
    }

    /// Lists every kind of definition of every upstream once in a context
    /// of its own, judges each, and records the inventory per kind (the first
    /// one of each kind is its `tofu` baseline). A kind whose listing failed
    /// is left out (a partial listing would read as removals); an upstream
    /// that cannot be reached is skipped. Returns whether every kind of every
    /// upstream was inventoried (else the caller retries soon).
    pub async fn inventory_all(&self) -> bool {
        let ctx_for = |era: Era| {
            Context::new(
                crate::upstream::ClientHello {
                    version: match era {
                        Era::Legacy => ProtocolVersion::LATEST_LEGACY,
                        Era::Modern => ProtocolVersion::V2026_07_28,
                    },
                    capabilities: json!({}),
                    client_info: crate::upstream::server_info(),
                },
                self.upstreams.len(),
                era,
                GATEWAY_PRINCIPAL,
            )
        };
        let legacy = ctx_for(Era::Legacy);
        let modern = ctx_for(Era::Modern);
        let mut all_complete = true;
        for (idx, up) in self.upstreams.iter().enumerate() {
            // A token-exchange upstream is reached with the gateway's own
            // credential; without one (its issuer refuses the client
            // credentials grant) it cannot be inventoried, and trying to
            // connect would back it off for the users.
            if let Err(e) = up.creds().check_own().await {
                all_complete = false;
                tracing::warn!(upstream = %up.name(), error = %e,
                    "not inventoried: no credential of the gateway's own; its definitions stay \
                     unapproved (quarantined under tofu) until a baseline can be taken or an \
                     operator approves them");
                continue;
            }
            // An upstream may show each revision's clients different tools:
            // the inventory covers every revision it speaks.
            let both = up
                .eras(Some(GATEWAY_PRINCIPAL))
                .await
                .is_ok_and(|e| e.legacy && e.modern);
            let mut ctxs = vec![&legacy];
            if both {
                ctxs.push(&modern);
            }
            // Kind → the union over revisions; `None` once any revision's
            // listing of that kind failed.
            let mut items: BTreeMap<DefKind, Option<BTreeMap<String, String>>> = BTreeMap::new();
            for (n, ctx) in ctxs.into_iter().enumerate() {
                // One upstream has one instructions text (from the first
                // revision; sessions of the other judge theirs as they open).
                for (kind, found) in self.inventory(ctx, idx, n == 0).await {
                    let slot = items.entry(kind).or_insert_with(|| Some(BTreeMap::new()));
                    match (found, slot.as_mut()) {
                        (Ok(m), Some(into)) => {
                            for (name, hash) in m {
                                into.entry(name).or_insert(hash);
                            }
                        }
                        (Err(e), _) => {
                            tracing::warn!(upstream = %up.name(), kind = kind.as_str(),
                                error = %e.message, "integrity inventory of this kind failed");
                            *slot = None;
                        }
                        (Ok(_), None) => {}
                    }
                }
            }
            let kinds: BTreeMap<DefKind, BTreeMap<String, String>> = items
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            if kinds.len() < DefKind::ALL.len() {
                all_complete = false;
            }
            if kinds.is_empty() {
                continue;
            }
            if let Err(e) = self
                .pins
                .record_inventory(self.store, self.audit, up.name(), kinds)
                .await
            {
                all_complete = false;
                tracing::warn!(upstream = %up.name(), error = %e, "integrity inventory not recorded");
            }
        }
        legacy.close().await;
        modern.close().await;
        all_complete
    }

    /// Lists and judges every kind of definition of one upstream in `ctx`:
    /// kind → its items (name → hash), or why the listing failed. A kind the
    /// upstream does not declare is an empty listing (so a later appearance
    /// is a change, not a first use). Every kind is answered.
    async fn inventory(
        &self,
        ctx: &Context,
        idx: usize,
        instructions: bool,
    ) -> Vec<(DefKind, Result<BTreeMap<String, String>, ErrorObject>)> {
        let mut out = Vec::new();
        for kind in [DefKind::Tool, DefKind::Prompt, DefKind::Template] {
            let r = match self.list_all(ctx, idx, kind).await {
                Ok(list) => {
                    let mut m = BTreeMap::new();
                    for def in list.iter().flatten() {
                        let (hash, _) = self.judge(idx, kind, def, Seen::Inventory).await;
                        if let Some(n) = integrity::key_of(kind, def) {
                            m.insert(n.to_owned(), hash);
                        }
                    }
                    Ok(m)
                }
                Err(e) => Err(e),
            };
            out.push((kind, r));
        }
        if instructions {
            let r = match self.upstreams.get(idx) {
                Some(up) => match ctx.conn(up).await {
                    Ok(conn) => {
                        let init = conn.init_result();
                        let text = init.get("instructions").and_then(Value::as_str);
                        let def = integrity::instructions_def(text);
                        let (hash, _) = self
                            .judge(idx, DefKind::Instructions, &def, Seen::Inventory)
                            .await;
                        Ok([(String::new(), hash)].into())
                    }
                    Err(e) => Err(e.to_error_object(up.name())),
                },
                None => Ok(BTreeMap::new()),
            };
            out.push((DefKind::Instructions, r));
        }
        out
    }

    /// With an empty prefix, two upstreams can expose the same tool or prompt
    /// name. Start-up lists every upstream once (the gateway's own listing,
    /// under the inventory capability) and refuses to start on such a
    /// collision (it would otherwise only be found, and withheld, at run
    /// time). An upstream that cannot be reached now is skipped with a
    /// warning: its names are still checked, and withheld on collision,
    /// whenever they are listed.
    pub async fn startup_name_check(&self) -> Result<(), String> {
        if self.upstreams.len() < 2 || !self.upstreams.iter().any(|u| u.cfg.prefix.is_empty()) {
            return Ok(());
        }
        let hello = crate::upstream::ClientHello {
            version: ProtocolVersion::LATEST_LEGACY,
            capabilities: json!({}),
            client_info: crate::upstream::server_info(),
        };
        let ctx = Context::new(
            hello,
            self.upstreams.len(),
            Era::Legacy,
            "bastion-startup-check",
        );
        // (kind, exposed name) → the first upstream exposing it.
        let mut owners: BTreeMap<(DefKind, String), usize> = BTreeMap::new();
        let mut found = std::collections::BTreeSet::new();
        for (idx, up) in self.upstreams.iter().enumerate() {
            for kind in [DefKind::Tool, DefKind::Prompt] {
                let list = match self.list_all(&ctx, idx, kind).await {
                    Ok(l) => l.unwrap_or_default(),
                    Err(e) => {
                        tracing::warn!(upstream = %up.name(), error = %e.message,
                            "start-up name check incomplete");
                        continue;
                    }
                };
                for def in &list {
                    let Some(name) = def.get("name").and_then(Value::as_str) else {
                        continue;
                    };
                    let exposed = format!("{}{name}", up.cfg.prefix);
                    let first = *owners.entry((kind, exposed.clone())).or_insert(idx);
                    if first != idx {
                        found.insert(format!("{} {exposed:?}", kind.list_key()));
                    }
                }
            }
        }
        ctx.close().await;
        if found.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "upstreams expose colliding names (give one of them a prefix): {}",
                found.into_iter().collect::<Vec<_>>().join(", ")
            ))
        }
    }

    /// Start-up: the pins are loaded and every upstream inventoried before
    /// the first client is served.
    /// Returns whether the inventory was complete.
    pub async fn start(&self) -> Result<bool, String> {
        self.pins
            .load(self.store)
            .await
            .map_err(|e| format!("tool pins could not be loaded: {e}"))?;
        let complete = self.inventory_all().await;
        if !complete {
            tracing::warn!(
                "the start-up inventory is incomplete; the kinds missing are retried and stay unapproved until then"
            );
        }
        Ok(complete)
    }
}

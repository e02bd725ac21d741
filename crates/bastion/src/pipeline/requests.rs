//! Client → upstream, one function per method.
//!
//! [`Asked::serve`] is the routing table: which function serves which method
//! on which lane. Every function runs the same steps in the same order, each
//! a named call (docs/architecture.md has the table):
//!
//! 1. route: name or URI to the one upstream that owns it
//!    (`Gateway::tool_route`, `route_name`, `route_uri`; URIs canonical);
//! 2. authorize: `Gateway::permit` (per item, per request principal, scopes
//!    backstopped) mints the [`Grant`] that is the only way upstream;
//! 3. integrity: `ensure_fresh`, `check_call` / `check_prompt` (pins,
//!    quarantine, arguments against the pinned schema);
//! 4. screen arguments: `Screener::arguments` (secrets redacted or refused);
//! 5. send: `Gateway::send` under the grant;
//! 6. on the way back: `check_result`, `Gateway::screen_response`, task ids
//!    sealed (`pipeline::tasks::seal_ids`).
//!
//! Invariant: no function here writes to an upstream except through
//! `Gateway::send` with a grant decided for this request's principal and item
//! (`logging/setLevel` is the gateway's own session housekeeping:
//! `Gateway::set_level`, under the session's `Internal` capability).

use bastion_detect::verdict::Direction;
use bastion_policy::ItemKind;
use bastion_proto::{ErrorObject, Request, Response, codes};
use http::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::gateway::{Gateway, Lane, NameSpace, TOOLS, err, list_kind, list_request, set_param};
use crate::pipeline::authz::{Caller, Item};
use crate::pipeline::screen::Origin;
use crate::session::context::{Context, ToolRoute};
use crate::upstream::{Call, UpcallTx};

/// One client request, with what every step needs: the gateway, the
/// request's context and principal, its lane, where related upstream
/// messages go, and the client's `Mcp-*` parameter headers.
pub(crate) struct Asked<'a> {
    pub(crate) gw: &'a Gateway,
    pub(crate) ctx: &'a Context,
    pub(crate) lane: Lane,
    pub(crate) caller: &'a Caller,
    pub(crate) events: UpcallTx,
    pub(crate) client_params: Vec<(HeaderName, HeaderValue)>,
}

impl Asked<'_> {
    /// Serves the request by its method and lane.
    pub(crate) async fn serve(self, req: Request) -> Result<Response, ErrorObject> {
        let (lane, method) = (self.lane, req.method.as_str());
        if lane == Lane::Modern && LEGACY_ONLY.contains(&method) {
            return Err(err(
                codes::METHOD_NOT_FOUND,
                format!("Method not found: {method} is not part of the 2026-07-28 revision"),
            ));
        }
        if let Some(kind) = list_kind(method) {
            let v = self.gw.list(self.ctx, &req, &kind, self.caller).await?;
            return Ok(Response::result(req.id, v));
        }
        match method {
            "ping" if lane == Lane::Legacy => Ok(Response::result(req.id, json!({}))),
            "server/discover" if lane == Lane::Modern => {
                Ok(Response::result(req.id, self.gw.discover(self.ctx).await))
            }
            "logging/setLevel" if lane == Lane::Legacy => self.gw.set_level(self.ctx, req).await,
            "tools/call" => self.tools_call(req).await,
            "prompts/get" => self.prompts_get(req).await,
            // 2026-07-28 removed `tasks/result` (the extension inlines the
            // outcome in `tasks/get`): "Method not found", as the revision says.
            "tasks/result" if lane == Lane::Modern => Err(err(
                codes::METHOD_NOT_FOUND,
                "Method not found: tasks/result is not part of the 2026-07-28 tasks extension",
            )),
            // Tasks on 2026-07-28 exist only for a request that declares the
            // extension; without it the answer is the missing-capability error,
            // before any task id is looked at.
            "tasks/get" | "tasks/update" | "tasks/cancel"
                if lane == Lane::Modern && !declares_tasks(&self.ctx.hello().capabilities) =>
            {
                Err(ErrorObject::with_data(
                    codes::MISSING_REQUIRED_CLIENT_CAPABILITY,
                    format!("Missing required client capability: {TASKS_EXTENSION}"),
                    json!({"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}),
                ))
            }
            "tasks/get" | "tasks/update" | "tasks/cancel" | "tasks/result" => self.task(req).await,
            "completion/complete" => self.complete(req).await,
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                self.resource(req).await
            }
            "initialize" | "ping" | "logging/setLevel" | "server/discover" => Err(err(
                codes::METHOD_NOT_FOUND,
                format!("method {method:?} is not part of this protocol revision"),
            )),
            _ => self.other(req).await,
        }
    }

    /// `tools/call`: route, permit, integrity, screen arguments, send, check
    /// the result against its pinned schema, screen it, seal task ids.
    async fn tools_call(self, req: Request) -> Result<Response, ErrorObject> {
        let Asked {
            gw,
            ctx,
            lane,
            caller,
            events,
            client_params,
        } = self;
        let name = param_str(&req, "name")?;
        let route = route_tool(gw, ctx, caller, &req, &name).await?;
        let args = arguments(&req);
        let item = Item {
            upstream: route.upstream,
            kind: ItemKind::Tool,
            name: &route.name,
            annotations: &route.annotations,
        };
        let grant = gw.permit(caller, ctx, "tools/call", item, Some(args), || {
            unknown_name(NameSpace::Tools, &name)
        })?;
        // Tool integrity: a view older than the re-list interval is
        // refreshed, then only the approved definition is called, with
        // arguments its pinned schema allows.
        let route = if gw.integrity().ensure_fresh(ctx, route.upstream).await? {
            gw.tool_route(ctx, &name)
                .filter(|r| r.upstream == route.upstream && r.name == route.name)
                .ok_or_else(|| unknown_name(NameSpace::Tools, &name))?
        } else {
            route
        };
        let output = gw.integrity().check_call(&route, &name, args)?;
        let origin = |direction| Origin {
            direction,
            upstream: route.upstream,
            method: "tools/call",
            target: &name,
        };
        let redacted = gw
            .screen
            .arguments(ctx, origin(Direction::Arguments), &route.name, args)?;
        let (req, headers) = call_upstream_form(req, &route, lane, &client_params, redacted)?;
        let mut resp = gw
            .send(ctx, caller, grant, req, Some(events), &headers)
            .await?;
        if let Ok(r) = &resp.outcome
            && let Err(e) = gw.integrity().check_result(&name, output.as_ref(), r)
        {
            refuse_result(gw, &route, &mut resp, e);
        }
        // The upstream's result was checked against its pinned schema as
        // sent; now what reaches the model is screened.
        gw.screen_response(ctx, origin(Direction::ToolResults), &mut resp);
        seal_created_tasks(gw, ctx, &route, &mut resp);
        Ok(resp)
    }

    /// `prompts/get`: route, permit, integrity, screen arguments, send, screen.
    async fn prompts_get(self, req: Request) -> Result<Response, ErrorObject> {
        let Asked {
            gw,
            ctx,
            caller,
            events,
            ..
        } = self;
        let name = param_str(&req, "name")?;
        let (idx, original) = gw
            .route_name(ctx, NameSpace::Prompts, &name)
            .ok_or_else(|| unknown_name(NameSpace::Prompts, &name))?;
        let args = arguments(&req);
        let grant = gw.permit(
            caller,
            ctx,
            "prompts/get",
            Item {
                upstream: idx,
                kind: ItemKind::Prompt,
                name: &original,
                annotations: &[],
            },
            Some(args),
            || unknown_name(NameSpace::Prompts, &name),
        )?;
        gw.integrity()
            .check_prompt(ctx, idx, &name, &original)
            .await?;
        let origin = |direction| Origin {
            direction,
            upstream: idx,
            method: "prompts/get",
            target: &name,
        };
        let redacted = gw
            .screen
            .arguments(ctx, origin(Direction::Arguments), &original, args)?;
        let mut req = req;
        set_param(&mut req, "name", Value::from(original));
        if let Some(a) = redacted {
            set_param(&mut req, "arguments", a);
        }
        let mut resp = gw.send(ctx, caller, grant, req, Some(events), &[]).await?;
        gw.screen_response(ctx, origin(Direction::Prompts), &mut resp);
        Ok(resp)
    }

    /// Task follow-ups (`tasks/get`, `tasks/update`, `tasks/cancel`,
    /// `tasks/result`): the sealed id opened for this principal, decided as
    /// its tool, sent under the upstream's own id, screened, ids resealed.
    async fn task(self, req: Request) -> Result<Response, ErrorObject> {
        let Asked {
            gw,
            ctx,
            caller,
            events,
            client_params,
            ..
        } = self;
        let task = param_str(&req, "taskId")?;
        // Task ids are bearer-like handles: the client only ever sees
        // sealed ones (bound to its principal and the upstream), so a
        // task is served only to the principal it was issued to, and
        // only while it may still use the tool that created it (or,
        // for a task created on another instance, that upstream); any
        // other gets the unknown-task answer, and the trail an event.
        let unknown = || {
            ErrorObject::with_data(
                codes::INVALID_PARAMS,
                "Unknown task",
                json!({"taskId": task}),
            )
        };
        let opened =
            crate::pipeline::tasks::open(&gw.sealer, &ctx.principal, &task).and_then(|t| {
                let up = gw.upstreams.iter().find(|u| u.name() == t.u)?;
                Some((up.index, t.t))
            });
        let Some((idx, raw)) = opened else {
            let mut ev = AuditEvent::new(EventKind::Session, Outcome::Refused);
            ev.set_principal(&ctx.principal);
            ev.reason = Some("task id not issued to this principal".into());
            gw.audit.emit(ev);
            return Err(unknown());
        };
        let tool = gw.tasks.tool(idx, &raw, &ctx.principal);
        let call = Call::new(idx, &req.method, Some(&raw));
        let decision = match &tool {
            Some(tool) => gw.authz.authorize_item(
                caller,
                ctx,
                "tools/call",
                Item {
                    upstream: idx,
                    kind: ItemKind::Tool,
                    name: tool,
                    annotations: &[],
                },
                None,
                call,
            ),
            None => gw.authz.authorize_upstream(caller, ctx, "tools/list", call),
        };
        let bastion_policy::Decision::Allow(grant) = decision else {
            return Err(unknown());
        };
        let method = req.method.clone();
        let mut req = req;
        set_param(&mut req, "taskId", Value::from(raw));
        let mut resp = gw
            .send(ctx, caller, grant, req, Some(events), &client_params)
            .await?;
        // A task's result is its tool's result, and what `tasks/get`
        // reports about it reaches the model too.
        let tool = tool.unwrap_or_default();
        gw.screen_response(
            ctx,
            Origin {
                direction: Direction::ToolResults,
                upstream: idx,
                method: &method,
                target: &tool,
            },
            &mut resp,
        );
        if let Ok(r) = &mut resp.outcome {
            let up = gw.upstream_name(idx);
            if let Err(e) = crate::pipeline::tasks::seal_ids(&gw.sealer, &ctx.principal, up, r) {
                resp.outcome = Err(e);
            }
        }
        Ok(resp)
    }

    /// `completion/complete`: decided as the prompt or resource template it
    /// completes; the values screened like what they complete.
    async fn complete(self, req: Request) -> Result<Response, ErrorObject> {
        let Asked {
            gw,
            ctx,
            caller,
            events,
            ..
        } = self;
        let r = req
            .params
            .as_ref()
            .and_then(|p| p.get("ref"))
            .ok_or_else(|| err(codes::INVALID_PARAMS, "params.ref is required"))?;
        let mut req = req.clone();
        let completes_resource = r.get("type").and_then(Value::as_str) == Some("ref/resource");
        let completing = r
            .get("name")
            .or_else(|| r.get("uri"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let grant = match r.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                let (idx, original) = gw
                    .route_name(ctx, NameSpace::Prompts, name)
                    .ok_or_else(|| unknown_name(NameSpace::Prompts, name))?;
                let grant = gw.permit(
                    caller,
                    ctx,
                    "completion/complete",
                    Item {
                        upstream: idx,
                        kind: ItemKind::Prompt,
                        name: &original,
                        annotations: &[],
                    },
                    None,
                    || unknown_name(NameSpace::Prompts, name),
                )?;
                if let Some(obj) = req
                    .params
                    .as_mut()
                    .and_then(|p| p.get_mut("ref"))
                    .and_then(Value::as_object_mut)
                {
                    obj.insert("name".into(), Value::from(original));
                }
                grant
            }
            Some("ref/resource") => {
                let uri = r.get("uri").and_then(Value::as_str).unwrap_or("");
                let unknown = || {
                    err(
                        codes::INVALID_PARAMS,
                        format!("unknown resource template {uri:?}"),
                    )
                };
                let idx = gw
                    .route_uri(ctx, caller, &req, uri)
                    .await
                    .ok_or_else(unknown)?;
                gw.permit(
                    caller,
                    ctx,
                    "completion/complete",
                    Item {
                        upstream: idx,
                        kind: ItemKind::Resource,
                        name: uri,
                        annotations: &[],
                    },
                    None,
                    unknown,
                )?
            }
            _ => {
                return Err(err(
                    codes::INVALID_PARAMS,
                    "params.ref.type must be ref/prompt or ref/resource",
                ));
            }
        };
        let upstream = grant.get().upstream;
        let direction = if completes_resource {
            Direction::Resources
        } else {
            Direction::Prompts
        };
        let mut resp = gw.send(ctx, caller, grant, req, Some(events), &[]).await?;
        // Completion values are text the client shows, and may hand
        // to its model: screened like what they complete.
        gw.screen_response(
            ctx,
            Origin {
                direction,
                upstream,
                method: "completion/complete",
                target: &completing,
            },
            &mut resp,
        );
        Ok(resp)
    }

    /// `resources/read`, `resources/subscribe`, `resources/unsubscribe`: the
    /// URI canonical, routed to its one owner, decided (subscribing as
    /// reading), subscriptions bounded, contents screened.
    async fn resource(self, req: Request) -> Result<Response, ErrorObject> {
        let Asked {
            gw,
            ctx,
            lane,
            caller,
            events,
            ..
        } = self;
        let raw = param_str(&req, "uri")?;
        let uri = crate::pipeline::listen::canonical_uri(&raw)?;
        let mut req = req;
        set_param(&mut req, "uri", Value::from(uri.clone()));
        let not_found = || {
            let code = if lane == Lane::Modern {
                codes::INVALID_PARAMS
            } else {
                codes::RESOURCE_NOT_FOUND_LEGACY
            };
            ErrorObject::with_data(code, "Resource not found", json!({"uri": uri}))
        };
        let idx = gw
            .route_uri(ctx, caller, &req, &uri)
            .await
            .ok_or_else(not_found)?;
        // Subscribing reveals a resource's changes: the same permission as
        // reading it.
        let grant = gw.permit(
            caller,
            ctx,
            &req.method,
            Item {
                upstream: idx,
                kind: ItemKind::Resource,
                name: &uri,
                annotations: &[],
            },
            None,
            not_found,
        )?;
        let method = req.method.clone();
        // Upstream subscriptions are bounded per context.
        if method == "resources/subscribe" && !ctx.subscribe(&uri) {
            return Err(err(
                codes::GATEWAY_REFUSED,
                format!(
                    "too many resource subscriptions in this session (at most {})",
                    crate::session::context::MAX_SUBSCRIPTIONS
                ),
            ));
        }
        if method == "resources/unsubscribe" {
            ctx.unsubscribe(&uri);
        }
        let mut resp = gw.send(ctx, caller, grant, req, Some(events), &[]).await?;
        if method == "resources/read" {
            gw.screen_response(
                ctx,
                Origin {
                    direction: Direction::Resources,
                    upstream: idx,
                    method: &method,
                    target: &uri,
                },
                &mut resp,
            );
        }
        Ok(resp)
    }

    /// Any other method: passed through only when exactly one upstream could
    /// mean it and a policy names the method as an action on that upstream.
    async fn other(self, req: Request) -> Result<Response, ErrorObject> {
        let Asked {
            gw,
            ctx,
            caller,
            events,
            client_params,
            ..
        } = self;
        // Other methods pass through when exactly one upstream could mean
        // them, and only when a policy names the method as an action on
        // that upstream: the schema knows no such action, so only
        // `dangerous_allow_all` ever lets one through (deny by default).
        let not_found = || {
            err(
                codes::METHOD_NOT_FOUND,
                format!("method {:?} not found", req.method),
            )
        };
        if gw.upstreams.len() != 1 {
            return Err(not_found());
        }
        match gw.authz.authorize_upstream(
            caller,
            ctx,
            &req.method,
            Call::new(
                0,
                &req.method,
                crate::upstream::item_of(&req.method, req.params.as_ref()).as_deref(),
            ),
        ) {
            bastion_policy::Decision::Allow(g) => {
                gw.send(ctx, caller, g, req, Some(events), &client_params)
                    .await
            }
            bastion_policy::Decision::Deny(_) => Err(not_found()),
        }
    }
}

/// Methods of 2025-11-25 that 2026-07-28 removed.
const LEGACY_ONLY: [&str; 5] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// The 2026-07-28 tasks extension.
const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// Whether declared client capabilities include the tasks extension.
fn declares_tasks(caps: &Value) -> bool {
    caps.get("extensions")
        .and_then(|e| e.get(TASKS_EXTENSION))
        .is_some_and(|v| !v.is_null())
}

fn param_str(req: &Request, key: &str) -> Result<String, ErrorObject> {
    req.params
        .as_ref()
        .and_then(|p| p.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            err(
                codes::INVALID_PARAMS,
                format!("params.{key} must be a string"),
            )
        })
}

/// The `Mcp-Param-*` headers a `tools/call` carries upstream, computed from the
/// body (the source of truth). On the modern lane the client's own mirrors must
/// agree with the body first (400 + -32020 otherwise); unknown `Mcp-Param-*`
/// headers pass through untouched, as the spec requires of intermediaries.
fn param_headers_for(
    route: &ToolRoute,
    req: &Request,
    lane: Lane,
    client: &[(HeaderName, HeaderValue)],
) -> Result<Vec<(HeaderName, HeaderValue)>, ErrorObject> {
    let args = req
        .params
        .as_ref()
        .and_then(|p| p.get("arguments"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut out = Vec::new();
    for p in &route.params {
        let header = format!(
            "{}{}",
            bastion_proto::headers::PARAM_PREFIX,
            p.name.to_ascii_lowercase()
        );
        let body = bastion_proto::headers::param_value(&args, p);
        if lane == Lane::Modern {
            let given: Vec<&HeaderValue> = client
                .iter()
                .filter(|(k, _)| k.as_str() == header)
                .map(|(_, v)| v)
                .collect();
            let mismatch = |why: &str| {
                ErrorObject::with_data(
                    codes::HEADER_MISMATCH,
                    format!("Mcp-Param-{} {why}", p.name),
                    json!({"header": format!("Mcp-Param-{}", p.name)}),
                )
            };
            match (given.as_slice(), &body) {
                ([], None) => {}
                ([], Some(_)) => {
                    return Err(mismatch("header is required: the argument is present"));
                }
                ([v], b) => {
                    let decoded = bastion_proto::headers::decode_value(v.as_bytes())
                        .map_err(|e| mismatch(&e.to_string()))?;
                    let body_v = args_value(&args, p);
                    if !b.as_ref().is_some_and(|_| {
                        body_v.is_some_and(|bv| bastion_proto::headers::matches_body(&decoded, bv))
                    }) {
                        return Err(mismatch("does not match the argument in the body"));
                    }
                }
                _ => return Err(mismatch("must not be repeated")),
            }
        }
        if let Some(v) = body
            && let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(header.as_bytes()),
                HeaderValue::from_str(&bastion_proto::headers::encode_value(&v)),
            )
        {
            out.push((k, v));
        }
    }
    for (k, v) in client {
        if !route.params.iter().any(|p| {
            k.as_str().eq_ignore_ascii_case(&format!(
                "{}{}",
                bastion_proto::headers::PARAM_PREFIX,
                p.name
            ))
        }) {
            out.push((k.clone(), v.clone()));
        }
    }
    Ok(out)
}

fn args_value<'a>(args: &'a Value, p: &bastion_proto::headers::ParamHeader) -> Option<&'a Value> {
    let mut v = args;
    for k in &p.path {
        v = v.get(k)?;
    }
    Some(v)
}

fn unknown_name(ns: NameSpace, name: &str) -> ErrorObject {
    match ns {
        NameSpace::Tools => ErrorObject::with_data(
            codes::INVALID_PARAMS,
            format!("Unknown tool: {name}"),
            json!({"name": name}),
        ),
        NameSpace::Prompts => ErrorObject::with_data(
            codes::INVALID_PARAMS,
            format!("Unknown prompt: {name}"),
            json!({"name": name}),
        ),
    }
}

/// A request's `arguments` (an empty object when absent).
fn arguments(req: &Request) -> &Value {
    static NONE: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({}));
    req.params
        .as_ref()
        .and_then(|p| p.get("arguments"))
        .unwrap_or(&NONE)
}

/// Routes a tool name to its one upstream. A name not listed in this context
/// yet is listed once, so routing, header mirroring and policy use the
/// upstream's real definition.
async fn route_tool(
    gw: &Gateway,
    ctx: &Context,
    caller: &Caller,
    req: &Request,
    name: &str,
) -> Result<ToolRoute, ErrorObject> {
    if let Some(r) = gw.tool_route(ctx, name) {
        return Ok(r);
    }
    let answered = gw
        .list_collecting(ctx, &list_request(req, "tools/list"), &TOOLS, caller)
        .await
        .map(|l| l.answered)
        .unwrap_or_default();
    if let Some(r) = gw.tool_route(ctx, name) {
        return Ok(r);
    }
    // Still not there. When its upstream answered the list, the tool is
    // unknown or withheld from this principal: the same answer either way.
    // When that upstream is down, route by prefix so the error names it.
    let (upstream, original) = gw
        .route_name(ctx, NameSpace::Tools, name)
        .filter(|(i, _)| !answered.contains(i))
        .ok_or_else(|| unknown_name(NameSpace::Tools, name))?;
    Ok(ToolRoute {
        upstream,
        name: original,
        params: Vec::new(),
        annotations: Vec::new(),
        hash: String::new(),
    })
}

/// The call as the upstream receives it: its own tool name, the screened
/// arguments, and the `Mcp-Param-*` headers mirroring what is sent.
fn call_upstream_form(
    mut req: Request,
    route: &ToolRoute,
    lane: Lane,
    client_params: &[(HeaderName, HeaderValue)],
    redacted: Option<Value>,
) -> Result<(Request, Vec<(HeaderName, HeaderValue)>), ErrorObject> {
    let mut headers = param_headers_for(route, &req, lane, client_params)?;
    set_param(&mut req, "name", Value::from(route.name.clone()));
    if let Some(a) = redacted {
        set_param(&mut req, "arguments", a);
        // The client's headers were checked against what it sent; the
        // upstream's mirror what is sent on, so a redacted value does not
        // travel in a header.
        headers = param_headers_for(route, &req, Lane::Legacy, client_params)?;
    }
    Ok((req, headers))
}

/// A result that breaks the tool's pinned output schema is refused, and the
/// trail says which definition it broke.
fn refuse_result(gw: &Gateway, route: &ToolRoute, resp: &mut Response, e: ErrorObject) {
    let mut ev = AuditEvent::new(EventKind::Integrity, Outcome::Refused);
    ev.upstream = Some(gw.upstream_name(route.upstream).to_owned());
    ev.target = Some(route.name.clone());
    ev.reason = Some(e.message.clone());
    ev.change = Some(
        json!({"change": "result_refused", "kind": "tool", "name": route.name, "hash": route.hash}),
    );
    gw.audit.emit(ev);
    resp.outcome = Err(e);
}

/// A task the call created is handed to the client under its sealed id, and
/// remembered as this principal's, by this tool.
fn seal_created_tasks(gw: &Gateway, ctx: &Context, route: &ToolRoute, resp: &mut Response) {
    let Ok(r) = &mut resp.outcome else { return };
    if r.get("resultType").and_then(Value::as_str) != Some("task") && r.get("task").is_none() {
        return;
    }
    let up = gw.upstream_name(route.upstream);
    match crate::pipeline::tasks::seal_ids(&gw.sealer, &ctx.principal, up, r) {
        Ok(raw) => {
            for t in raw {
                gw.tasks
                    .record(route.upstream, &t, &ctx.principal, &route.name);
            }
        }
        Err(e) => resp.outcome = Err(e),
    }
}

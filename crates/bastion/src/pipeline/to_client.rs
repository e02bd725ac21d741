//! Upstream → client: the one function every message an upstream sends
//! toward a client passes before any stream delivers it ([`ToClient::upcall`]),
//! and the same decision for the server requests a 2026-07-28 upstream puts
//! in an `input_required` result ([`ToClient::decide_input_requests`]).
//!
//! Order: integrity (a `list_changed` is re-listed and judged before the
//! client hears of it) → decide (a server request needs the capability the
//! client declared, and sampling and elicitation a policy permit) → screen
//! (the detection policy for server requests, on notifications as on
//! requests) → seal task ids (the client knows a task only by the id
//! [`crate::pipeline::tasks`] seals) → deliver (the caller's lane: a legacy stream, a modern request
//! stream or `input_required`, a listen stream).
//!
//! Invariants: a server request that is refused is answered to its upstream
//! with an error and never reaches the client; a notification has no reply
//! to carry a refusal, so one that is blocked is dropped (with its detection
//! event); nothing an upstream sends reaches a client without passing here.

use bastion_detect::verdict::Direction;
use bastion_proto::{ErrorObject, Message, Response, codes};
use serde_json::{Map, Value, json};

use std::sync::Arc;

use crate::integrity::inventory::Inventory;
use crate::pipeline::authz::Authorizer;
use crate::pipeline::authz::Caller;
use crate::pipeline::screen::Origin;
use crate::pipeline::screen::Screener;
use crate::pipeline::tasks::seal_ids;
use crate::session::context::Context;
use crate::session::seal::Sealer;
use crate::upstream::Upstream;
use crate::upstream::{Call, Upcall};

/// What a server request needs to reach a client: the client capability
/// (`None`: none) and the policy action (`None`: not a policy question).
/// `None` for a method the gateway does not relay.
fn server_request_rule(method: &str) -> Option<(Option<&'static str>, Option<&'static str>)> {
    Some(match method {
        "ping" => (None, None),
        "roots/list" => (Some("roots"), None),
        "sampling/createMessage" => (Some("sampling"), Some("sampling/createMessage")),
        "elicitation/create" => (Some("elicitation"), Some("elicitation/create")),
        _ => return None,
    })
}

/// The upstream → client pipeline's dependencies, and nothing else: tool
/// integrity (to re-list on a change), the screener, the authorizer (server
/// requests that need a policy permit), the sealer (task ids) and the
/// upstreams' names. A view borrowed from the gateway (`Gateway::to_client`).
#[derive(Clone, Copy)]
pub struct ToClient<'a> {
    /// Tool integrity: re-listing and judging on `list_changed`.
    pub integrity: Inventory<'a>,
    /// The detection policy carried out.
    pub screen: &'a Screener,
    /// Policy decisions for sampling and elicitation.
    pub authz: &'a Authorizer,
    /// Seals task ids for the client.
    pub sealer: &'a Sealer,
    /// The configured upstreams, by index.
    pub upstreams: &'a [Arc<Upstream>],
}

impl std::fmt::Debug for ToClient<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToClient").finish_non_exhaustive()
    }
}

impl ToClient<'_> {
    fn upstream_name(&self, idx: usize) -> &str {
        self.upstreams.get(idx).map_or("", |u| u.name())
    }

    /// The upstream → client pipeline for one upcall from the upstream
    /// `up.upstream` to `caller`'s context: `None` when it must not reach the
    /// client (a refused server request has been answered upstream).
    pub async fn upcall(&self, caller: &Caller, ctx: &Context, mut up: Upcall) -> Option<Upcall> {
        let idx = up.upstream;
        match &mut up.msg {
            Message::Notification(n) => {
                // Tool integrity: a changed list is re-listed and judged
                // before the client hears of it.
                if n.method.ends_with("/list_changed") {
                    self.integrity.on_list_changed(ctx, idx, &n.method).await;
                }
                if let Some(params) = n.params.as_mut() {
                    let method = n.method.clone();
                    self.screen
                        .inbound(
                            ctx,
                            Origin {
                                direction: Direction::ServerRequests,
                                upstream: idx,
                                method: &method,
                                target: &method,
                            },
                            params,
                        )
                        .ok()?;
                    // The client knows tasks only by their sealed ids.
                    seal_ids(self.sealer, &ctx.principal, self.upstream_name(idx), params).ok()?;
                }
                Some(up)
            }
            Message::Request(r) => {
                let method = r.method.clone();
                let decided = self
                    .decide_server_request(caller, ctx, idx, &method, r.params.as_mut())
                    .and_then(|()| match r.params.as_mut() {
                        Some(p) => {
                            seal_ids(self.sealer, &ctx.principal, self.upstream_name(idx), p)
                                .map(drop)
                        }
                        None => Ok(()),
                    });
                match decided {
                    Ok(()) => Some(up),
                    Err(e) => {
                        let id = r.id.clone();
                        let _ = up.reply.send(Response::error(Some(id), e)).await;
                        None
                    }
                }
            }
            // Responses are matched to their request inside the connection.
            Message::Response(_) => None,
        }
    }

    /// Decides one server request of upstream `idx` for `caller`'s client:
    /// a method the gateway relays, a capability the client declared, a
    /// policy permit for sampling and elicitation, and its params screened.
    pub fn decide_server_request(
        &self,
        caller: &Caller,
        ctx: &Context,
        idx: usize,
        method: &str,
        params: Option<&mut Value>,
    ) -> Result<(), ErrorObject> {
        let shown: String = method.chars().take(64).collect();
        let Some((capability, action)) = server_request_rule(method) else {
            return Err(ErrorObject::new(
                codes::METHOD_NOT_FOUND,
                format!("the gateway does not relay server requests {shown:?}"),
            ));
        };
        if let Some(cap) = capability
            && ctx.hello().capabilities.get(cap).is_none_or(Value::is_null)
        {
            // MUST NOT send requests the client has not declared support for.
            return Err(ErrorObject::new(
                codes::METHOD_NOT_FOUND,
                format!("the client did not declare the capability {shown} needs"),
            ));
        }
        if let Some(action) = action
            && !self
                .authz
                .authorize_upstream(caller, ctx, action, Call::new(idx, action, None))
                .is_allow()
        {
            return Err(ErrorObject::new(
                codes::GATEWAY_REFUSED,
                format!("{action} refused by the gateway's policy"),
            ));
        }
        // What the server asks the client's model or user is screened like
        // any content reaching them (C4.1).
        if let Some(p) = params {
            self.screen.inbound(
                ctx,
                Origin {
                    direction: Direction::ServerRequests,
                    upstream: idx,
                    method,
                    target: method,
                },
                p,
            )?;
        }
        Ok(())
    }

    /// A 2026-07-28 upstream's `input_required` result on its way to a
    /// 2026-07-28 client: each of its `inputRequests` is decided as the server
    /// request it is; refused ones are removed (the upstream decides on a
    /// retry that lacks their answers, as it would for a client that
    /// declined), and a result left with none becomes the gateway's refusal.
    pub fn decide_input_requests(
        &self,
        caller: &Caller,
        ctx: &Context,
        idx: usize,
        result: &mut Value,
    ) -> Result<(), ErrorObject> {
        if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
            return Ok(());
        }
        let Some(reqs) = result
            .get_mut("inputRequests")
            .and_then(Value::as_object_mut)
        else {
            return Ok(());
        };
        let mut kept = Map::new();
        let mut refusals = Vec::new();
        for (key, mut r) in std::mem::take(reqs) {
            let method = r
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            match self.decide_server_request(caller, ctx, idx, &method, r.get_mut("params")) {
                Ok(()) => {
                    kept.insert(key, r);
                }
                Err(e) => refusals.push(e.message),
            }
        }
        let none_left = kept.is_empty() && !refusals.is_empty();
        *reqs = kept;
        if none_left {
            return Err(ErrorObject::with_data(
                codes::GATEWAY_REFUSED,
                "the upstream asked the client for input the gateway refused",
                json!({"refused": refusals}),
            ));
        }
        Ok(())
    }
}

//! `subscriptions/listen` (2026-07-28) through the client → upstream
//! pipeline: what a listen asks for is decided per upstream and per URI
//! before anything is sent upstream.
//!
//! - list-change notifications of a kind are asked of an upstream only when
//!   the principal may list that kind there (`tools/list`, `prompts/list`,
//!   `resources/list`);
//! - each resource URI is canonicalized, routed to the one upstream that owns
//!   it, and decided as `resources/read` (subscribing reveals a resource's
//!   changes); a URI that does not route or is denied is left out;
//! - a listen names at most [`MAX_LISTEN_URIS`] URIs, and the resulting
//!   upstream subscriptions count against the context's bound.
//!
//! Every message sent upstream for a listen carries a permit for exactly it;
//! the relay then passes each notification through the upstream → client
//! pipeline and delivers it only if that upstream's granted filter allows it.

use std::collections::BTreeMap;

use bastion_policy::{Decision, ItemKind};
use bastion_proto::{ErrorObject, Notification, codes};
use serde_json::{Map, Value, json};

use std::sync::Arc;

use crate::pipeline::authz::Authorizer;
use crate::pipeline::authz::{Caller, Grant, Item};
use crate::session::context::Context;
use crate::upstream::Call;
use crate::upstream::Upstream;

/// Most resource URIs one `subscriptions/listen` may name.
pub const MAX_LISTEN_URIS: usize = 64;

/// Which notification types a `subscriptions/listen` asks for (or, per
/// upstream, was granted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `notifications/tools/list_changed`.
    pub tools: bool,
    /// `notifications/prompts/list_changed`.
    pub prompts: bool,
    /// `notifications/resources/list_changed`.
    pub resources: bool,
    /// `notifications/resources/updated` for these (canonical) URIs.
    pub uris: Vec<String>,
}

impl Filter {
    /// The filter a listen's params ask for (URIs as given).
    pub fn from_params(p: Option<&Value>) -> Filter {
        let n = p.and_then(|p| p.get("notifications"));
        let flag = |k: &str| {
            n.and_then(|n| n.get(k))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        Filter {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris: n
                .and_then(|n| n.get("resourceSubscriptions"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether nothing is asked (or granted).
    pub fn is_empty(&self) -> bool {
        !self.tools && !self.prompts && !self.resources && self.uris.is_empty()
    }

    /// Whether notification `n` is one this filter lets through.
    pub fn allows(&self, n: &Notification) -> bool {
        match n.method.as_str() {
            "notifications/tools/list_changed" => self.tools,
            "notifications/prompts/list_changed" => self.prompts,
            "notifications/resources/list_changed" => self.resources,
            "notifications/resources/updated" => n
                .params
                .as_ref()
                .and_then(|p| p.get("uri"))
                .and_then(Value::as_str)
                .and_then(|u| bastion_proto::uri::canonical(u).ok())
                .is_some_and(|u| self.uris.contains(&u)),
            _ => false,
        }
    }

    /// The wire form (`notifications` of a listen or its acknowledgement).
    pub fn to_value(&self) -> Value {
        let mut o = Map::new();
        if self.tools {
            o.insert("toolsListChanged".into(), Value::Bool(true));
        }
        if self.prompts {
            o.insert("promptsListChanged".into(), Value::Bool(true));
        }
        if self.resources {
            o.insert("resourcesListChanged".into(), Value::Bool(true));
        }
        if !self.uris.is_empty() {
            o.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(o)
    }

    fn union(&mut self, other: &Filter) {
        self.tools |= other.tools;
        self.prompts |= other.prompts;
        self.resources |= other.resources;
        for u in &other.uris {
            if !self.uris.contains(u) {
                self.uris.push(u.clone());
            }
        }
    }
}

/// What one upstream was granted for a listen.
#[derive(Debug)]
pub struct Granted {
    /// The upstream.
    pub upstream: usize,
    /// What it may tell this client.
    pub filter: Filter,
    /// The permit for its own `subscriptions/listen` (2026-07-28 upstreams).
    pub listen: Option<Grant>,
    /// A permit per URI for `resources/subscribe` (2025-era upstreams).
    pub subscribe: Vec<(String, Grant)>,
}

impl Granted {
    fn empty(upstream: usize) -> Granted {
        Granted {
            upstream,
            filter: Filter::default(),
            listen: None,
            subscribe: Vec::new(),
        }
    }
}

/// A listen's resource URIs, bounded and canonical (the one spelling that
/// is routed, decided and subscribed to). `Err` for a listen that names too
/// many or malformed URIs.
pub fn canonical_uris(asked: &Filter) -> Result<Vec<String>, ErrorObject> {
    if asked.uris.len() > MAX_LISTEN_URIS {
        return Err(ErrorObject::new(
            codes::INVALID_PARAMS,
            format!("a listen may name at most {MAX_LISTEN_URIS} resource URIs"),
        ));
    }
    asked.uris.iter().map(|raw| canonical_uri(raw)).collect()
}

/// The one spelling of a client's resource URI that is routed, decided and
/// sent (`bastion_proto::uri::canonical`); a URI that has none is invalid
/// params, naming it.
pub(crate) fn canonical_uri(raw: &str) -> Result<String, ErrorObject> {
    bastion_proto::uri::canonical(raw).map_err(|e| {
        ErrorObject::with_data(
            codes::INVALID_PARAMS,
            format!("invalid resource URI: {e}"),
            json!({"uri": raw}),
        )
    })
}

/// Decides a listen: per upstream, what it may tell this client, with the
/// permits to ask for it. `routed` holds each canonical URI with the one
/// upstream that owns it (URIs that route nowhere are left out by the
/// caller). The second value is the union granted (what the
/// acknowledgement echoes). Needs only the authorizer and the upstreams.
pub fn plan(
    authz: &Authorizer,
    upstreams: &[Arc<Upstream>],
    caller: &Caller,
    ctx: &Context,
    asked: &Filter,
    routed: Vec<(String, usize)>,
) -> (Vec<Granted>, Filter) {
    let mut per: BTreeMap<usize, Granted> = BTreeMap::new();
    // Resource URIs: owned by one upstream, readable.
    for (uri, idx) in routed {
        let item = Item {
            upstream: idx,
            kind: ItemKind::Resource,
            name: &uri,
            annotations: &[],
        };
        let sub = authz.authorize_item(
            caller,
            ctx,
            "resources/read",
            item,
            None,
            Call::new(idx, "resources/subscribe", Some(&uri)),
        );
        let Decision::Allow(sub) = sub else { continue };
        let listen = authz.authorize_item(
            caller,
            ctx,
            "resources/read",
            item,
            None,
            Call::new(idx, "subscriptions/listen", None),
        );
        let g = per.entry(idx).or_insert_with(|| Granted::empty(idx));
        if !g.filter.uris.contains(&uri) {
            g.filter.uris.push(uri.clone());
            g.subscribe.push((uri, sub));
        }
        if g.listen.is_none()
            && let Decision::Allow(l) = listen
        {
            g.listen = Some(l);
        }
    }
    // List changes: per kind, on the upstreams the principal may list it.
    for up in upstreams {
        for (asked_kind, action) in [
            (asked.tools, "tools/list"),
            (asked.prompts, "prompts/list"),
            (asked.resources, "resources/list"),
        ] {
            if !asked_kind {
                continue;
            }
            if let Decision::Allow(l) = authz.authorize_upstream(
                caller,
                ctx,
                action,
                Call::new(up.index, "subscriptions/listen", None),
            ) {
                let g = per
                    .entry(up.index)
                    .or_insert_with(|| Granted::empty(up.index));
                match action {
                    "tools/list" => g.filter.tools = true,
                    "prompts/list" => g.filter.prompts = true,
                    _ => g.filter.resources = true,
                }
                if g.listen.is_none() {
                    g.listen = Some(l);
                }
            }
        }
    }
    let mut all = Filter::default();
    let granted: Vec<Granted> = per
        .into_values()
        .filter(|g| !g.filter.is_empty())
        .inspect(|g| all.union(&g.filter))
        .collect();
    (granted, all)
}

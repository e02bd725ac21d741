//! Authorization for mcp-bastion: Cedar policies, deny by default, decisions
//! as values.
//!
//! [`Engine::decide`] is total: it returns [`Decision::Allow`] with a
//! [`Permitted`] (which only this crate can create, so a path that requires one
//! cannot be reached without a decision) or [`Decision::Deny`] with the reason
//! and the policies that caused it. No policy, no matching permit, a matching
//! `forbid`, a request that does not fit the schema, or any evaluation error
//! is a denial (C1.3, C10.2). An empty policy set does not start unless the
//! operator says `dangerous_allow_all`.
//!
//! The schema (`policy/schema.cedarschema`, namespace `Bastion`) is compiled
//! in; every policy is validated strictly against it when loaded, so a policy
//! that names an attribute the gateway never provides is refused at start, not
//! silently never matching.
//!
//! This crate does no I/O and nothing async.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::str::FromStr as _;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use serde_json::Value;

/// The schema every policy is validated against.
pub const SCHEMA: &str = include_str!("../../../policy/schema.cedarschema");

/// One policy file.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where it came from (used in policy ids and errors).
    pub name: String,
    /// Its text.
    pub text: String,
}

/// Why a policy set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The shipped schema does not parse (a build defect).
    #[error("policy schema: {0}")]
    Schema(String),
    /// A file does not parse.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Policies parse but do not validate against the schema.
    #[error("policies do not validate against the schema: {0}")]
    Invalid(String),
    /// Two policies share an id.
    #[error("policy id {0:?} is used twice")]
    DuplicateId(String),
    /// No policy at all, and `dangerous_allow_all` is not set.
    #[error(
        "no policies: refusing to start (every request would be denied); set dangerous_allow_all = true only for testing"
    )]
    Empty,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// `sub` (the `Bastion::User` entity id).
    pub subject: &'a str,
    /// `iss`.
    pub issuer: &'a str,
    /// The OAuth client.
    pub client_id: Option<&'a str>,
    /// Granted scopes.
    pub scopes: &'a [String],
    /// Groups.
    pub groups: &'a [String],
    /// Roles.
    pub roles: &'a [String],
}

/// What is asked about.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// An upstream as a whole (list actions, server-initiated requests).
    Upstream {
        /// Its name.
        name: &'a str,
        /// Operator-assigned labels.
        labels: &'a [String],
    },
    /// A tool, resource or prompt of an upstream.
    Item {
        /// Which kind.
        kind: ItemKind,
        /// Its upstream.
        upstream: &'a str,
        /// Its name (URI for resources) as the upstream knows it.
        name: &'a str,
        /// Operator-assigned labels.
        labels: &'a [String],
        /// The upstream's operator-assigned labels.
        upstream_labels: &'a [String],
        /// Operator-assigned risk score.
        risk: i64,
        /// Tool annotation hints that are true (untrusted: the upstream says so).
        annotations: &'a [String],
    },
    /// The gateway (admin actions).
    Gateway,
}

/// Kinds of upstream items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKind {
    /// `Bastion::Tool`.
    Tool,
    /// `Bastion::Resource`.
    Resource,
    /// `Bastion::Prompt`.
    Prompt,
}

impl ItemKind {
    fn type_name(self, t: &Types) -> &EntityTypeName {
        match self {
            ItemKind::Tool => &t.tool,
            ItemKind::Resource => &t.resource,
            ItemKind::Prompt => &t.prompt,
        }
    }
}

/// The circumstances.
#[derive(Debug, Clone, Copy)]
pub struct Circumstances<'a> {
    /// Now, seconds since the epoch.
    pub time: u64,
    /// The client's address.
    pub client_ip: &'a str,
    /// The session's accumulated risk score.
    pub session_risk: i64,
    /// The call's arguments (tools/call), flattened into tags.
    pub arguments: Option<&'a Value>,
}

/// One authorization question.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// Who.
    pub who: Who<'a>,
    /// The action, spelled as the MCP method (`tools/call`).
    pub action: &'a str,
    /// On what.
    pub target: Target<'a>,
    /// In which circumstances.
    pub context: Circumstances<'a>,
}

/// An allowed `T`. Only this crate creates one, so code that requires a
/// `Permitted<T>` cannot run without an Allow decision.
#[derive(Debug)]
pub struct Permitted<T> {
    value: T,
    policies: Vec<String>,
}

impl<T> Permitted<T> {
    /// The permitted value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// The permitted value, consumed.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The policies that permitted it.
    pub fn policies(&self) -> &[String] {
        &self.policies
    }
}

/// Why a request was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No policy permits it.
    NoPermit,
    /// A `forbid` policy matched.
    Forbidden,
    /// The request did not fit the schema or a policy failed to evaluate.
    Error,
}

/// A denial and its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Why.
    pub reason: DenyReason,
    /// The policies that caused it (the matching `forbid`s).
    pub policies: Vec<String>,
    /// Evaluation or request errors, if any.
    pub errors: Vec<String>,
}

/// A decision: a value with its reasons.
#[derive(Debug)]
pub enum Decision<T> {
    /// Allowed.
    Allow(Permitted<T>),
    /// Denied.
    Deny(Denied),
}

impl<T> Decision<T> {
    /// Whether it is an Allow.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// Principal, action, resource, context and entities of one request.
type Parts = (EntityUid, EntityUid, EntityUid, Context, Vec<Entity>);

/// A validated policy set.
#[derive(Debug)]
pub struct Engine {
    /// Per resource named by some policy's `resource == …` scope: that
    /// resource's policies plus every policy whose scope is not an exact
    /// resource. Policies scoped to another exact resource cannot match, so
    /// leaving them out changes no decision and saves evaluating them.
    slices: std::collections::HashMap<EntityUid, PolicySet>,
    /// The policies whose resource scope is not an exact resource.
    general: PolicySet,
    count: usize,
    allow_all: bool,
    authorizer: Authorizer,
    /// The actions the schema declares. Requests are not schema-checked per
    /// decision (for speed), so an action outside the schema would otherwise
    /// match a policy whose action is unconstrained: it is refused instead.
    actions: HashSet<String>,
}

/// The schema's entity type names, parsed once: parsing one is a run of the
/// Cedar parser, several microseconds each, and every decision needs five.
struct Types {
    user: EntityTypeName,
    action: EntityTypeName,
    gateway: EntityTypeName,
    upstream: EntityTypeName,
    tool: EntityTypeName,
    resource: EntityTypeName,
    prompt: EntityTypeName,
    arguments: EntityTypeName,
}

static TYPES: std::sync::LazyLock<Option<Types>> = std::sync::LazyLock::new(|| {
    let t = |s: &str| EntityTypeName::from_str(s).ok();
    Some(Types {
        user: t("Bastion::User")?,
        action: t("Bastion::Action")?,
        gateway: t("Bastion::Gateway")?,
        upstream: t("Bastion::Upstream")?,
        tool: t("Bastion::Tool")?,
        resource: t("Bastion::Resource")?,
        prompt: t("Bastion::Prompt")?,
        arguments: t("Bastion::Arguments")?,
    })
});

fn uid(pick: impl Fn(&Types) -> &EntityTypeName, id: &str) -> Option<EntityUid> {
    let t = pick(TYPES.as_ref()?).clone();
    Some(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

fn strings(v: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        v.iter()
            .map(|s| RestrictedExpression::new_string(s.clone())),
    )
}

/// Flattens JSON arguments into string tags (bounded).
fn flatten(v: &Value, prefix: &str, depth: usize, out: &mut Vec<(String, RestrictedExpression)>) {
    const MAX_TAGS: usize = 256;
    const MAX_LEN: usize = 4096;
    if out.len() >= MAX_TAGS || depth > 8 {
        return;
    }
    let mut put = |k: &str, s: String| {
        if !k.is_empty() {
            out.push((
                k.to_owned(),
                RestrictedExpression::new_string(s.chars().take(MAX_LEN).collect()),
            ));
        }
    };
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(v, &key(k), depth.saturating_add(1), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(v, &key(&i.to_string()), depth.saturating_add(1), out);
            }
        }
        Value::String(s) => put(prefix, s.clone()),
        Value::Number(n) => put(prefix, n.to_string()),
        Value::Bool(b) => put(prefix, b.to_string()),
        Value::Null => {}
    }
}

/// Splits a policy set by exact resource scope (see [`Engine`]). Falls back to
/// one slice (the whole set) when slicing would copy too much.
fn slice(all: &PolicySet) -> (std::collections::HashMap<EntityUid, PolicySet>, PolicySet) {
    use cedar_policy::ResourceConstraint;
    let mut general = PolicySet::new();
    let mut exact: std::collections::HashMap<EntityUid, Vec<cedar_policy::Policy>> =
        std::collections::HashMap::new();
    for p in all.policies() {
        match p.resource_constraint() {
            ResourceConstraint::Eq(uid) => exact.entry(uid).or_default().push(p.clone()),
            _ => {
                let _ = general.add(p.clone());
            }
        }
    }
    let general_n = general.policies().count();
    if exact.len().saturating_mul(general_n) > 200_000 {
        return (std::collections::HashMap::new(), all.clone());
    }
    let mut slices = std::collections::HashMap::new();
    for (uid, ps) in exact {
        let mut set = general.clone();
        for p in ps {
            let _ = set.add(p);
        }
        slices.insert(uid, set);
    }
    (slices, general)
}

impl Engine {
    /// Parses and strictly validates `sources`.
    pub fn new(sources: &[Source], dangerous_allow_all: bool) -> Result<Engine, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(SCHEMA).map_err(|e| PolicyError::Schema(e.to_string()))?;
        let mut policies = PolicySet::new();
        let mut count = 0usize;
        for src in sources {
            let set = PolicySet::from_str(&src.text).map_err(|e| PolicyError::Parse {
                file: src.name.clone(),
                message: e.to_string(),
            })?;
            for (i, p) in set.policies().enumerate() {
                // `@id("…")` names a policy in decisions and audit records;
                // otherwise "<file>#<n>".
                let id = p
                    .annotation("id")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{}#{i}", src.name));
                policies
                    .add(p.new_id(PolicyId::new(&id)))
                    .map_err(|_| PolicyError::DuplicateId(id.clone()))?;
                count = count.saturating_add(1);
            }
        }
        if count == 0 && !dangerous_allow_all {
            return Err(PolicyError::Empty);
        }
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !result.validation_passed() {
            let msgs: Vec<String> = result
                .validation_errors()
                .map(|e| format!("{}: {e}", e.policy_id()))
                .collect();
            return Err(PolicyError::Invalid(msgs.join("; ")));
        }
        let actions = schema
            .actions()
            .map(|a| a.id().unescaped().to_owned())
            .collect();
        let (slices, general) = slice(&policies);
        Ok(Engine {
            slices,
            general,
            count,
            allow_all: dangerous_allow_all && count == 0,
            actions,
            authorizer: Authorizer::new(),
        })
    }

    /// How many policies.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Decides `access`; the Allow carries `subject`.
    pub fn decide<T>(&self, access: &Access<'_>, subject: T) -> Decision<T> {
        if self.allow_all {
            return Decision::Allow(Permitted {
                value: subject,
                policies: vec!["dangerous_allow_all".into()],
            });
        }
        match self.evaluate(access) {
            Ok((true, policies)) => Decision::Allow(Permitted {
                value: subject,
                policies,
            }),
            Ok((false, policies)) => Decision::Deny(Denied {
                reason: if policies.is_empty() {
                    DenyReason::NoPermit
                } else {
                    DenyReason::Forbidden
                },
                policies,
                errors: Vec::new(),
            }),
            Err(errors) => Decision::Deny(Denied {
                reason: DenyReason::Error,
                policies: Vec::new(),
                errors,
            }),
        }
    }

    /// The items of `items` that `who` may use (`tools/call`, `resources/read`
    /// or `prompts/get`): lists and calls are decided by the same rule, so they
    /// can never disagree.
    pub fn visible<'a, I: Copy>(
        &self,
        make: impl Fn(I) -> Access<'a>,
        items: impl IntoIterator<Item = I>,
    ) -> Vec<I> {
        items
            .into_iter()
            .filter(|i| self.decide(&make(*i), ()).is_allow())
            .collect()
    }

    /// The request's parts: principal, action, resource, context, entities.
    fn parts(a: &Access<'_>) -> Result<Parts, Vec<String>> {
        let err = |m: &str| vec![m.to_owned()];
        let principal = uid(|t| &t.user, a.who.subject).ok_or_else(|| err("principal"))?;
        let action = uid(|t| &t.action, a.action).ok_or_else(|| err("action"))?;
        let mut entities: Vec<Entity> = Vec::with_capacity(4);
        let mut attrs = vec![
            (
                "issuer".to_owned(),
                RestrictedExpression::new_string(a.who.issuer.to_owned()),
            ),
            ("scopes".to_owned(), strings(a.who.scopes)),
            ("groups".to_owned(), strings(a.who.groups)),
            ("roles".to_owned(), strings(a.who.roles)),
        ];
        if let Some(c) = a.who.client_id {
            attrs.push((
                "client_id".to_owned(),
                RestrictedExpression::new_string(c.to_owned()),
            ));
        }
        entities.push(
            Entity::new_with_tags(principal.clone(), attrs, [], [])
                .map_err(|e| vec![e.to_string()])?,
        );
        let resource = match a.target {
            Target::Gateway => {
                let u = uid(|t| &t.gateway, "gateway").ok_or_else(|| err("resource"))?;
                entities.push(Entity::new_no_attrs(u.clone(), HashSet::new()));
                u
            }
            Target::Upstream { name, labels } => {
                let u = uid(|t| &t.upstream, name).ok_or_else(|| err("resource"))?;
                entities.push(
                    Entity::new_with_tags(
                        u.clone(),
                        [
                            (
                                "name".to_owned(),
                                RestrictedExpression::new_string(name.to_owned()),
                            ),
                            ("labels".to_owned(), strings(labels)),
                        ],
                        [],
                        [],
                    )
                    .map_err(|e| vec![e.to_string()])?,
                );
                u
            }
            Target::Item {
                kind,
                upstream,
                name,
                labels,
                upstream_labels,
                risk,
                annotations,
            } => {
                let up = uid(|t| &t.upstream, upstream).ok_or_else(|| err("upstream"))?;
                entities.push(
                    Entity::new_with_tags(
                        up.clone(),
                        [
                            (
                                "name".to_owned(),
                                RestrictedExpression::new_string(upstream.to_owned()),
                            ),
                            ("labels".to_owned(), strings(upstream_labels)),
                        ],
                        [],
                        [],
                    )
                    .map_err(|e| vec![e.to_string()])?,
                );
                let u = uid(|t| kind.type_name(t), &format!("{upstream}/{name}"))
                    .ok_or_else(|| err("resource"))?;
                let mut attrs = vec![
                    (
                        "upstream".to_owned(),
                        RestrictedExpression::new_string(upstream.to_owned()),
                    ),
                    (
                        "name".to_owned(),
                        RestrictedExpression::new_string(name.to_owned()),
                    ),
                    ("labels".to_owned(), strings(labels)),
                    ("risk".to_owned(), RestrictedExpression::new_long(risk)),
                ];
                if kind == ItemKind::Tool {
                    attrs.push(("annotations".to_owned(), strings(annotations)));
                }
                entities.push(
                    Entity::new_with_tags(u.clone(), attrs, [up], [])
                        .map_err(|e| vec![e.to_string()])?,
                );
                u
            }
        };
        let t = a.context.time;
        let days = t / 86_400;
        let mut pairs = vec![
            (
                "time".to_owned(),
                RestrictedExpression::new_long(i64::try_from(t).unwrap_or(i64::MAX)),
            ),
            (
                "hour".to_owned(),
                RestrictedExpression::new_long(((t % 86_400) / 3600) as i64),
            ),
            // 1970-01-01 was a Thursday (3 with Monday = 0).
            (
                "weekday".to_owned(),
                RestrictedExpression::new_long((days.saturating_add(3) % 7) as i64),
            ),
            (
                "client_ip".to_owned(),
                RestrictedExpression::new_string(a.context.client_ip.to_owned()),
            ),
            (
                "session_risk".to_owned(),
                RestrictedExpression::new_long(a.context.session_risk),
            ),
        ];
        // Arguments are present only when the question is about one call.
        if let Some(v) = a.context.arguments {
            let args_uid = uid(|t| &t.arguments, "request").ok_or_else(|| err("arguments"))?;
            let mut tags = Vec::new();
            flatten(v, "", 0, &mut tags);
            entities.push(
                Entity::new_with_tags(args_uid.clone(), [], [], tags)
                    .map_err(|e| vec![e.to_string()])?,
            );
            pairs.push((
                "arguments".to_owned(),
                RestrictedExpression::new_entity_uid(args_uid),
            ));
        }
        let context = Context::from_pairs(pairs).map_err(|e| vec![e.to_string()])?;
        Ok((principal, action, resource, context, entities))
    }

    fn evaluate(&self, a: &Access<'_>) -> Result<(bool, Vec<String>), Vec<String>> {
        if !self.actions.contains(a.action) {
            return Err(vec![format!(
                "{:?} is not an action of the schema",
                a.action
            )]);
        }
        let (principal, action, resource, context, entities) = Self::parts(a)?;
        // The request and entities are built here, in the schema's shape (the
        // tests check it against the schema); the policies were validated
        // strictly at load. Re-checking both per request would only add cost.
        let resource_uid = resource.clone();
        let request = Request::new(principal, action, resource, context, None)
            .map_err(|e| vec![e.to_string()])?;
        let entities = Entities::from_entities(entities, None).map_err(|e| vec![e.to_string()])?;
        let set = match self.slices.get(&resource_uid) {
            Some(s) => s,
            None => &self.general,
        };
        let resp = self.authorizer.is_authorized(&request, set, &entities);
        let errors: Vec<String> = resp.diagnostics().errors().map(|e| e.to_string()).collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let policies: Vec<String> = resp.diagnostics().reason().map(|p| p.to_string()).collect();
        Ok((resp.decision() == cedar_policy::Decision::Allow, policies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request and entities built per decision fit the schema (they are not
    /// re-checked per request, for speed).
    #[test]
    fn requests_fit_the_schema() {
        let (schema, _) = Schema::from_cedarschema_str(SCHEMA).unwrap();
        let none: Vec<String> = Vec::new();
        let some = vec!["x".to_string()];
        let args = serde_json::json!({"path": "/a", "n": 3, "deep": {"k": [true, null]}});
        let who = Who {
            subject: "alice",
            issuer: "https://idp",
            client_id: Some("app"),
            scopes: &some,
            groups: &some,
            roles: &none,
        };
        let ctx = Circumstances {
            time: 1_732_000_000,
            client_ip: "10.0.0.1",
            session_risk: 3,
            arguments: Some(&args),
        };
        let item = |kind| Target::Item {
            kind,
            upstream: "up",
            name: "n",
            labels: &some,
            upstream_labels: &some,
            risk: 5,
            annotations: &some,
        };
        for (action, target) in [
            ("tools/call", item(ItemKind::Tool)),
            ("resources/read", item(ItemKind::Resource)),
            ("prompts/get", item(ItemKind::Prompt)),
            ("completion/complete", item(ItemKind::Prompt)),
            (
                "resources/templates/list",
                Target::Upstream {
                    name: "up",
                    labels: &some,
                },
            ),
            (
                "tools/list",
                Target::Upstream {
                    name: "up",
                    labels: &some,
                },
            ),
            (
                "sampling/createMessage",
                Target::Upstream {
                    name: "up",
                    labels: &none,
                },
            ),
            ("admin/approve", Target::Gateway),
        ] {
            let a = Access {
                who,
                action,
                target,
                context: ctx,
            };
            // With arguments (a call) and without (filtering a list).
            for arguments in [Some(&args), None] {
                let a = Access {
                    context: Circumstances { arguments, ..ctx },
                    ..a
                };
                let (p, act, r, c, entities) = Engine::parts(&a).unwrap();
                Request::new(p, act, r, c, Some(&schema)).unwrap();
                Entities::from_entities(entities, Some(&schema)).unwrap();
            }
        }
    }
}

//! The operator's policy tools: `bastion policy check`, `bastion policy
//! explain` and `bastion access-review`.
//!
//! `explain` decides exactly as the gateway does: an item (tool, prompt,
//! resource) needs its upstream's list action *and* its own action, with the
//! operator's labels and risk from the configuration. `access-review` reads the
//! audit trail, rebuilds what each principal was seen as and which items exist,
//! and sets what the policies in force grant against what was used (C1.6).
//!
//! Nothing here touches a running gateway; all of it is read-only.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::path::Path;

use bastion_policy::{Access, Circumstances, Decision, DenyReason, Engine, ItemKind, Target, Who};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::Config;

/// A principal as `explain` and `access-review` see it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Subject {
    /// `sub`.
    pub sub: String,
    /// `iss`.
    pub issuer: String,
    /// The OAuth client.
    pub client_id: Option<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
}

impl Subject {
    /// Parses `--principal`: a bare subject, or a JSON object with `sub` and
    /// optionally `issuer`, `client_id`, `scopes`, `groups`, `roles`.
    pub fn parse(s: &str) -> Result<Subject, String> {
        let t = s.trim();
        if !t.starts_with('{') {
            if t.is_empty() {
                return Err("--principal is empty".into());
            }
            return Ok(Subject {
                sub: t.to_owned(),
                ..Subject::default()
            });
        }
        let v: Value =
            serde_json::from_str(t).map_err(|e| format!("--principal is not JSON: {e}"))?;
        let list = |k: &str| -> Result<Vec<String>, String> {
            match v.get(k) {
                None => Ok(Vec::new()),
                Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("--principal {k}: strings only"))
                    })
                    .collect(),
                Some(_) => Err(format!("--principal {k}: a list of strings")),
            }
        };
        Ok(Subject {
            sub: v
                .get("sub")
                .and_then(Value::as_str)
                .ok_or("--principal needs \"sub\"")?
                .to_owned(),
            issuer: v
                .get("issuer")
                .or_else(|| v.get("iss"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            client_id: v
                .get("client_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            scopes: if v.get("scopes").is_some() {
                list("scopes")?
            } else {
                list("scope")?
            },
            groups: list("groups")?,
            roles: list("roles")?,
        })
    }

    fn who(&self) -> Who<'_> {
        Who {
            subject: &self.sub,
            issuer: &self.issuer,
            client_id: self.client_id.as_deref(),
            scopes: &self.scopes,
            groups: &self.groups,
            roles: &self.roles,
        }
    }
}

/// What `--resource` names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Named {
    /// An upstream.
    Upstream(String),
    /// A tool, prompt or resource: kind, upstream, its own name.
    Item(ItemKind, String, String),
    /// The gateway (admin actions).
    Gateway,
}

impl Named {
    /// Parses `Bastion::Tool::"up/name"` (Cedar) or `tool:up/name`,
    /// `prompt:up/name`, `resource:up/uri`, `upstream:name`, `gateway`.
    pub fn parse(s: &str) -> Result<Named, String> {
        let s = s.trim();
        let (ty, id) = if let Some(rest) = s.strip_prefix("Bastion::") {
            let (ty, q) = rest
                .split_once("::")
                .ok_or_else(|| format!("{s}: expected Bastion::<Type>::\"<id>\""))?;
            let id: String = serde_json::from_str(q)
                .map_err(|_| format!("{s}: the id must be a quoted string"))?;
            (ty.to_ascii_lowercase(), id)
        } else if s == "gateway" {
            ("gateway".to_owned(), String::new())
        } else {
            let (ty, id) = s
                .split_once(':')
                .ok_or_else(|| format!("{s}: expected tool:UPSTREAM/NAME, upstream:NAME, …"))?;
            (ty.to_ascii_lowercase(), id.to_owned())
        };
        let item = |k: ItemKind| {
            let (u, n) = id
                .split_once('/')
                .filter(|(u, n)| !u.is_empty() && !n.is_empty())
                .ok_or_else(|| format!("{s}: an item id is \"<upstream>/<name>\""))?;
            Ok(Named::Item(k, u.to_owned(), n.to_owned()))
        };
        match ty.as_str() {
            "tool" => item(ItemKind::Tool),
            "prompt" => item(ItemKind::Prompt),
            "resource" => item(ItemKind::Resource),
            "upstream" if !id.is_empty() => Ok(Named::Upstream(id)),
            "gateway" => Ok(Named::Gateway),
            _ => Err(format!(
                "{s}: the type is Tool, Prompt, Resource, Upstream or Gateway"
            )),
        }
    }

    /// The Cedar spelling.
    pub fn uid(&self) -> String {
        match self {
            Named::Upstream(u) => crate::pipeline::authz::upstream_uid(u),
            Named::Item(k, u, n) => crate::pipeline::authz::item_uid(*k, u, n),
            Named::Gateway => "Bastion::Gateway::\"gateway\"".to_owned(),
        }
    }
}

/// `--context`: `{"arguments": {...}, "time": 1732000000, "client_ip": "…",
/// "session_risk": 0}`; everything optional (time defaults to now).
#[derive(Debug, Clone, Default)]
pub struct Situation {
    /// The call's arguments (absent: the question a list filter asks).
    pub arguments: Option<Value>,
    /// Seconds since the epoch.
    pub time: u64,
    /// Client address.
    pub client_ip: String,
    /// Session risk.
    pub session_risk: i64,
}

impl Situation {
    /// Parses `--context`.
    pub fn parse(s: Option<&str>) -> Result<Situation, String> {
        let now = bastion_auth::now_secs();
        let Some(s) = s else {
            return Ok(Situation {
                time: now,
                ..Situation::default()
            });
        };
        let v: Value =
            serde_json::from_str(s).map_err(|e| format!("--context is not JSON: {e}"))?;
        let o = v.as_object().ok_or("--context must be a JSON object")?;
        for k in o.keys() {
            if !matches!(
                k.as_str(),
                "arguments" | "time" | "client_ip" | "session_risk"
            ) {
                return Err(format!(
                    "--context: unknown key {k:?} (arguments, time, client_ip, session_risk)"
                ));
            }
        }
        Ok(Situation {
            arguments: o.get("arguments").cloned(),
            time: match o.get("time") {
                None => now,
                Some(t) => t
                    .as_u64()
                    .ok_or("--context time: seconds since the epoch")?,
            },
            client_ip: o
                .get("client_ip")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            session_risk: match o.get("session_risk") {
                None => 0,
                Some(r) => r.as_i64().ok_or("--context session_risk: an integer")?,
            },
        })
    }
}

/// One step of an explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The action decided.
    pub action: String,
    /// On what.
    pub resource: String,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Why, in words.
    pub reason: String,
    /// The policies that decided it.
    pub policies: Vec<String>,
    /// Evaluation errors.
    pub errors: Vec<String>,
}

/// A decision and how it was reached.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The final decision.
    pub decision: &'static str,
    /// The steps (the upstream's list gate, then the item's own action).
    pub steps: Vec<Step>,
}

fn step<T>(action: &str, resource: String, d: &Decision<T>) -> Step {
    match d {
        Decision::Allow(p) => Step {
            action: action.to_owned(),
            resource,
            decision: "allow",
            reason: format!("permitted by {}", p.policies().join(", ")),
            policies: p.policies().to_vec(),
            errors: Vec::new(),
        },
        Decision::Deny(d) => Step {
            action: action.to_owned(),
            resource,
            decision: "deny",
            reason: match d.reason {
                DenyReason::NoPermit => "no policy permits it (deny by default)".to_owned(),
                DenyReason::Forbidden => format!("forbidden by {}", d.policies.join(", ")),
                DenyReason::Error => {
                    "the request does not fit the schema or a policy failed (denied)".to_owned()
                }
            },
            policies: d.policies.clone(),
            errors: d.errors.clone(),
        },
    }
}

/// Decides `action` on `what` for `who` as the gateway would.
pub fn explain(
    engine: &Engine,
    cfg: Option<&Config>,
    who: &Subject,
    action: &str,
    what: &Named,
    sit: &Situation,
) -> Explanation {
    let none: &[String] = &[];
    let ctx = |arguments| Circumstances {
        time: sit.time,
        client_ip: &sit.client_ip,
        session_risk: sit.session_risk,
        arguments,
    };
    let up_cfg = |u: &str| cfg.and_then(|c| c.upstreams.iter().find(|x| x.name == u));
    let mut steps = Vec::new();
    match what {
        Named::Gateway => {
            let d = engine.decide(
                &Access {
                    who: who.who(),
                    action,
                    target: Target::Gateway,
                    context: ctx(sit.arguments.as_ref()),
                },
                (),
            );
            steps.push(step(action, what.uid(), &d));
        }
        Named::Upstream(u) => {
            let labels = up_cfg(u).map(|c| c.labels.as_slice()).unwrap_or(none);
            let d = engine.decide(
                &Access {
                    who: who.who(),
                    action,
                    target: Target::Upstream { name: u, labels },
                    context: ctx(None),
                },
                (),
            );
            steps.push(step(action, what.uid(), &d));
        }
        Named::Item(kind, u, n) => {
            let uc = up_cfg(u);
            let labels = uc.map(|c| c.labels.as_slice()).unwrap_or(none);
            let list = match kind {
                ItemKind::Tool => "tools/list",
                ItemKind::Prompt => "prompts/list",
                ItemKind::Resource => "resources/list",
            };
            let gate = engine.decide(
                &Access {
                    who: who.who(),
                    action: list,
                    target: Target::Upstream { name: u, labels },
                    context: ctx(None),
                },
                (),
            );
            steps.push(step(list, crate::pipeline::authz::upstream_uid(u), &gate));
            let settings = uc.and_then(|c| c.item(*kind, n));
            let d = engine.decide(
                &Access {
                    who: who.who(),
                    action,
                    target: Target::Item {
                        kind: *kind,
                        upstream: u,
                        name: n,
                        labels: settings.map(|s| s.labels.as_slice()).unwrap_or(none),
                        upstream_labels: labels,
                        risk: settings.map(|s| s.risk).unwrap_or(0),
                        annotations: none,
                    },
                    context: ctx(sit.arguments.as_ref()),
                },
                (),
            );
            steps.push(step(action, what.uid(), &d));
        }
    }
    let decision = if steps.iter().all(|s| s.decision == "allow") {
        "allow"
    } else {
        "deny"
    };
    Explanation { decision, steps }
}

/// Prints an explanation for people.
pub fn explain_text(e: &Explanation) -> String {
    let mut out = format!("decision: {}\n", e.decision);
    for s in &e.steps {
        out.push_str(&format!(
            "  {} {} on {}: {}\n",
            s.decision, s.action, s.resource, s.reason
        ));
        for err in &s.errors {
            out.push_str(&format!("    error: {err}\n"));
        }
    }
    out
}

/// Parses `30d`, `12h`, `90m`, `3600s` (or plain seconds).
pub fn parse_since(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (n, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("--since {s:?}: a number with d, h, m or s"))?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("--since {s:?}: the unit is d, h, m or s")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("--since {s:?} is too large"))
}

/// Use of one item by one principal.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Allowed uses.
    pub count: u64,
    /// Last use (ms since the epoch).
    pub last_ms: u64,
}

/// One principal's review.
#[derive(Debug, Clone, Serialize)]
pub struct PrincipalReview {
    /// Who (as last seen in the trail).
    pub principal: Subject,
    /// Items the policies in force grant (of those the trail knows).
    pub granted: Vec<String>,
    /// Items used, with counts.
    pub used: BTreeMap<String, Usage>,
    /// Granted but not used in the period: least-privilege candidates.
    pub unused: Vec<String>,
    /// Used in the period but no longer granted by the policies in force.
    pub used_not_granted: Vec<String>,
    /// Requests the policies denied in the period.
    pub denied: u64,
}

/// The access review.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    /// Start of the period (ms since the epoch).
    pub since_ms: u64,
    /// Audit records read.
    pub records: u64,
    /// Lines that were not audit records (reported, not silently skipped).
    pub unreadable: u64,
    /// Items known from the trail.
    pub items: usize,
    /// Per principal.
    pub principals: Vec<PrincipalReview>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn item_kind_of_action(action: &str) -> Option<ItemKind> {
    Some(match action {
        "tools/call" => ItemKind::Tool,
        "prompts/get" => ItemKind::Prompt,
        "resources/read" => ItemKind::Resource,
        _ => return None,
    })
}

/// Reads audit JSON lines from `paths` and reviews them against `engine`.
pub fn access_review(
    engine: &Engine,
    cfg: Option<&Config>,
    paths: &[&Path],
    since_ms: u64,
) -> Result<Review, String> {
    let mut who: BTreeMap<(String, String), Subject> = BTreeMap::new();
    let mut items: BTreeSet<Named> = BTreeSet::new();
    let mut used: BTreeMap<(String, String), BTreeMap<String, Usage>> = BTreeMap::new();
    let mut denied: BTreeMap<(String, String), u64> = BTreeMap::new();
    let (mut records, mut unreadable) = (0u64, 0u64);
    for p in paths {
        let f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
        for line in std::io::BufReader::new(f).lines() {
            let line = line.map_err(|e| format!("{}: {e}", p.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let Ok(mut ev) = serde_json::from_str::<Value>(&line) else {
                unreadable = unreadable.saturating_add(1);
                continue;
            };
            // A chained record carries the event inside; checkpoints carry none.
            if ev.get("checkpoint").is_some() {
                continue;
            }
            if let Some(inner) = ev.get_mut("event").map(Value::take) {
                ev = inner;
            }
            records = records.saturating_add(1);
            if ev.get("kind").and_then(Value::as_str) != Some("authz") {
                continue;
            }
            if ev.get("ts_ms").and_then(Value::as_u64).unwrap_or(0) < since_ms {
                continue;
            }
            let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let key = (s("issuer"), s("principal"));
            who.insert(
                key.clone(),
                Subject {
                    sub: key.1.clone(),
                    issuer: key.0.clone(),
                    client_id: ev
                        .get("client_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    scopes: s("scopes").split_whitespace().map(str::to_owned).collect(),
                    groups: strings(ev.get("groups")),
                    roles: strings(ev.get("roles")),
                },
            );
            let action = s("action");
            let Ok(res) = Named::parse(&s("resource")) else {
                continue;
            };
            match ev.get("decision").and_then(Value::as_str) {
                Some("filter") => {
                    if let (Some(k), Named::Upstream(u)) = (item_kind_of_action(&action), &res) {
                        for n in strings(ev.get("items")) {
                            if !n.is_empty() {
                                items.insert(Named::Item(k, u.clone(), n));
                            }
                        }
                    }
                }
                Some("allow") => {
                    if let Named::Item(..) = res
                        && item_kind_of_action(&action).is_some()
                    {
                        let u = used.entry(key).or_default().entry(res.uid()).or_default();
                        u.count = u.count.saturating_add(1);
                        u.last_ms = u
                            .last_ms
                            .max(ev.get("ts_ms").and_then(Value::as_u64).unwrap_or(0));
                        items.insert(res);
                    }
                }
                Some("deny") => {
                    let n = denied.entry(key).or_default();
                    *n = n.saturating_add(1);
                    if let Named::Item(..) = res {
                        items.insert(res);
                    }
                }
                _ => {}
            }
        }
    }
    let sit = Situation {
        time: bastion_auth::now_secs(),
        ..Situation::default()
    };
    let mut principals = Vec::new();
    for (key, subject) in who {
        let granted: Vec<String> = items
            .iter()
            .filter(|it| {
                let Named::Item(k, ..) = it else { return false };
                let action = crate::pipeline::authz::use_action(*k);
                explain(engine, cfg, &subject, action, it, &sit).decision == "allow"
            })
            .map(Named::uid)
            .collect();
        let u = used.remove(&key).unwrap_or_default();
        let unused = granted
            .iter()
            .filter(|g| !u.contains_key(*g))
            .cloned()
            .collect();
        let used_not_granted = u.keys().filter(|k| !granted.contains(k)).cloned().collect();
        principals.push(PrincipalReview {
            denied: denied.get(&key).copied().unwrap_or(0),
            principal: subject,
            granted,
            used: u,
            unused,
            used_not_granted,
        });
    }
    Ok(Review {
        since_ms,
        records,
        unreadable,
        items: items.len(),
        principals,
    })
}

/// The review as a table.
pub fn review_table(r: &Review) -> String {
    let mut out = format!(
        "{} audit records, {} items known, {} principals\n\n{:<40} {:>7} {:>5} {:>7} {:>7} {:>6}\n",
        r.records,
        r.items,
        r.principals.len(),
        "PRINCIPAL",
        "GRANTED",
        "USED",
        "UNUSED",
        "REVOKED",
        "DENIED"
    );
    for p in &r.principals {
        out.push_str(&format!(
            "{:<40} {:>7} {:>5} {:>7} {:>7} {:>6}\n",
            p.principal.sub.chars().take(40).collect::<String>(),
            p.granted.len(),
            p.used.len(),
            p.unused.len(),
            p.used_not_granted.len(),
            p.denied
        ));
    }
    for p in &r.principals {
        if p.unused.is_empty() && p.used_not_granted.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{} ({})\n", p.principal.sub, p.principal.issuer));
        for u in &p.unused {
            out.push_str(&format!("  granted, unused: {u}\n"));
        }
        for u in &p.used_not_granted {
            out.push_str(&format!("  used, no longer granted: {u}\n"));
        }
    }
    if r.unreadable > 0 {
        out.push_str(&format!(
            "\nwarning: {} lines were not audit records\n",
            r.unreadable
        ));
    }
    out
}

/// The review as JSON.
pub fn review_json(r: &Review) -> Value {
    serde_json::to_value(r).unwrap_or_else(|e| json!({"error": e.to_string()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_principals_and_periods_parse_or_say_why() {
        assert_eq!(
            Named::parse(r#"Bastion::Tool::"files/read_file""#),
            Ok(Named::Item(
                ItemKind::Tool,
                "files".into(),
                "read_file".into()
            ))
        );
        assert_eq!(
            Named::parse("resource:docs/file:///srv/a.txt"),
            Ok(Named::Item(
                ItemKind::Resource,
                "docs".into(),
                "file:///srv/a.txt".into()
            ))
        );
        assert_eq!(
            Named::parse("upstream:files"),
            Ok(Named::Upstream("files".into()))
        );
        assert_eq!(Named::parse("gateway"), Ok(Named::Gateway));
        for bad in [
            "files/read_file",
            "tool:read_file",
            r#"Bastion::Tool::files"#,
            "widget:x/y",
        ] {
            assert!(Named::parse(bad).is_err(), "{bad}");
        }
        // The Cedar spelling round-trips.
        let n = Named::Item(ItemKind::Prompt, "p".into(), "a \"b\"".into());
        assert_eq!(Named::parse(&n.uid()), Ok(n));

        let s = Subject::parse(r#"{"sub": "ann", "groups": ["a"], "scope": "x y"}"#).unwrap();
        assert_eq!((s.sub.as_str(), s.scopes.len()), ("ann", 2));
        assert_eq!(Subject::parse("bob").unwrap().sub, "bob");
        assert!(Subject::parse(r#"{"groups": []}"#).is_err());
        assert!(Subject::parse(r#"{"sub": "a", "groups": [1]}"#).is_err());

        assert_eq!(parse_since("30d"), Ok(30 * 86_400));
        assert_eq!(parse_since("90m"), Ok(5400));
        assert_eq!(parse_since("15"), Ok(15));
        assert!(parse_since("3w").is_err());
        assert!(parse_since("99999999999999999999d").is_err());
        assert!(Situation::parse(Some(r#"{"argumentz": {}}"#)).is_err());
        let sit = Situation::parse(Some(r#"{"arguments": {"p": 1}, "time": 5}"#)).unwrap();
        assert_eq!((sit.time, sit.arguments.is_some()), (5, true));
    }
}

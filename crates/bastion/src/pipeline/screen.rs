//! The detection engine in the request path: what reaches the model (tool
//! results, resource contents, prompt messages, server-initiated sampling and
//! elicitation requests) and what leaves for an upstream (tool-call and
//! prompt arguments) is scanned, and the verdict of its direction's policy
//! (`[detection]`) is carried out: flag, redact, spotlight or block.
//!
//! Invariants:
//! - a verdict other than `allow` is one `detection` audit event with the
//!   direction, action, score, rule IDs and JSON Pointers, never the text;
//!   it feeds `bastion_detections_total` and the session's risk;
//! - redaction happens before spotlighting, and a blocked message is never
//!   passed on in any form;
//! - an injection the gateway cannot mark (found outside a content block's
//!   text, e.g. in `structuredContent`) while the policy says spotlight is
//!   blocked instead (fail closed);
//! - the decisions are the engine's ([`bastion_detect::verdict::decide`]);
//!   this module only carries them out.

use bastion_detect::verdict::{
    Action, Direction, OnHazard, OnInjection, OnSensitive, Policy, Verdict, decide,
};
use bastion_detect::{Category, Report, spotlight};
use bastion_proto::{ErrorObject, codes};
use rand::RngCore as _;
use serde_json::{Value, json};

use std::sync::Arc;

use crate::audit::metrics::Metrics;
use crate::audit::{AuditEvent, AuditSink, EventKind, Outcome};
use crate::config::DetectionConfig;
use crate::session::context::Context;

/// Carries out the detection engine's verdicts: what it needs and nothing
/// else of the gateway (the engine, the `[detection]` policy, the trail, the
/// metrics, the upstreams' names).
pub struct Screener {
    engine: Arc<bastion_detect::Engine>,
    detection: DetectionConfig,
    audit: Arc<dyn AuditSink>,
    metrics: Arc<Metrics>,
    upstreams: Vec<String>,
}

impl std::fmt::Debug for Screener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screener")
            .field("upstreams", &self.upstreams)
            .finish_non_exhaustive()
    }
}

/// What a screened message is and where it comes from or goes.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The policy that applies.
    pub direction: Direction,
    /// Index of the upstream it comes from or goes to.
    pub upstream: usize,
    /// The JSON-RPC method it belongs to.
    pub method: &'a str,
    /// The tool, prompt or resource as the client named it.
    pub target: &'a str,
}

/// Weakest finding that, sitting where the gateway cannot mark it, turns a
/// spotlight into a block (low: weak findings add up).
const UNMARKABLE_WEIGHT: f32 = 0.1;

/// Whether the string at `path` is a content block's text (what spotlighting
/// transforms): `…/text`, outside `structuredContent` and `_meta`.
fn markable(path: &str) -> bool {
    path.ends_with("/text")
        && !path
            .split('/')
            .any(|seg| seg == "structuredContent" || seg == "_meta")
}

/// Applies `f` to every markable text in `v` (the strings [`markable`] accepts).
fn each_text(v: &mut Value, depth: usize, f: &mut dyn FnMut(&mut String)) {
    // Deeper than any JSON the wire parser accepts (128), so nothing is skipped.
    if depth > 160 {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                if k == "structuredContent" || k == "_meta" {
                    continue;
                }
                if let Value::String(s) = item
                    && k == "text"
                {
                    f(s);
                } else {
                    each_text(item, depth.saturating_add(1), f);
                }
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                each_text(item, depth.saturating_add(1), f);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

impl Screener {
    /// A screener over `engine` with the `[detection]` policy; `upstreams`
    /// are the upstreams' names by index (for events and provenance).
    pub fn new(
        engine: Arc<bastion_detect::Engine>,
        detection: DetectionConfig,
        audit: Arc<dyn AuditSink>,
        metrics: Arc<Metrics>,
        upstreams: Vec<String>,
    ) -> Self {
        Screener {
            engine,
            detection,
            audit,
            metrics,
            upstreams,
        }
    }

    /// Screens a message on its way to the client (a result, a resource, a
    /// prompt, a server request's params) in place. `Err` when it is blocked.
    pub fn inbound(
        &self,
        ctx: &Context,
        origin: Origin<'_>,
        message: &mut Value,
    ) -> Result<(), ErrorObject> {
        let report = self.engine.scan_value(message);
        let policy = self.detection.policy(origin.direction);
        let mut verdict = decide(&report, policy);
        if verdict.injection && policy.injection == OnInjection::Spotlight {
            // Spotlighting marks content blocks' text only; an injection elsewhere
            // would reach the model unmarked.
            let unmarkable = report.findings.iter().any(|f| {
                f.category.is_attack() && f.weight >= UNMARKABLE_WEIGHT && !markable(&f.path)
            });
            if unmarkable {
                verdict.action = Action::Block;
                verdict.spotlight = None;
                verdict.redact = bastion_detect::RedactKinds {
                    secrets: false,
                    personal_data: false,
                };
            }
        }
        self.record(ctx, origin, &verdict, &report);
        if verdict.action == Action::Block {
            return Err(self.refusal(origin, policy, &verdict));
        }
        if verdict.redact.secrets || verdict.redact.personal_data {
            self.engine.redact_value(message, verdict.redact);
        }
        if let Some(mode) = verdict.spotlight {
            let upstream = self
                .upstreams
                .get(origin.upstream)
                .map_or("", String::as_str);
            let source = match origin.direction {
                Direction::ToolResults => format!("result of tool \"{}\"", origin.target),
                Direction::Resources => format!("resource {}", origin.target),
                Direction::Prompts => format!("prompt \"{}\"", origin.target),
                Direction::ServerRequests => format!("{} request", origin.method),
                Direction::ToolDefinitions | Direction::Arguments => origin.target.to_owned(),
            };
            let mut nonce = [0u8; 16];
            rand::rng().fill_bytes(&mut nonce);
            let from = spotlight::Provenance {
                upstream,
                source: &source,
            };
            each_text(message, 0, &mut |s: &mut String| {
                *s = spotlight::apply(s, mode, from, &nonce);
            });
        }
        Ok(())
    }

    /// Screens a call's arguments on their way to `origin.upstream`, for the
    /// tool (or prompt) whose upstream-side name is `name`. Returns redacted
    /// arguments when the policy redacts; `Err` when the call is refused.
    pub fn arguments(
        &self,
        ctx: &Context,
        origin: Origin<'_>,
        name: &str,
        arguments: &Value,
    ) -> Result<Option<Value>, ErrorObject> {
        let exempt = self
            .detection
            .dangerous_exempt_tools
            .iter()
            .any(|t| t == origin.target);
        // Hazards are about where a tool sends its arguments: a prompt's
        // arguments fill a template.
        let tool = (origin.method == "tools/call" && !exempt).then_some(name);
        let report = self.engine.scan_arguments(tool, arguments);
        let policy = self.detection.policy(Direction::Arguments);
        let verdict = decide(&report, policy);
        self.record(ctx, origin, &verdict, &report);
        if verdict.action == Action::Block {
            return Err(self.refusal(origin, policy, &verdict));
        }
        if verdict.redact.secrets || verdict.redact.personal_data {
            let mut redacted = arguments.clone();
            self.engine.redact_value(&mut redacted, verdict.redact);
            return Ok(Some(redacted));
        }
        Ok(None)
    }

    /// The client's (or upstream's) error for a blocked message: the
    /// direction and the rule IDs, nothing of the content.
    fn refusal(&self, origin: Origin<'_>, policy: &Policy, verdict: &Verdict) -> ErrorObject {
        let what = match origin.direction {
            Direction::ToolResults => {
                format!("the result of tool {:?} was withheld", origin.target)
            }
            Direction::Resources => format!("resource {:?} was withheld", origin.target),
            Direction::Prompts => format!("prompt {:?} was withheld", origin.target),
            Direction::ServerRequests => format!("the upstream's {} was refused", origin.method),
            Direction::Arguments => format!("{} {:?} was refused", origin.method, origin.target),
            Direction::ToolDefinitions => format!("{:?} was withheld", origin.target),
        };
        // The reason is what the policy blocks on (an injection found while
        // secrets block is not why a call was refused).
        let hazard = verdict.rules.iter().any(|r| r.starts_with("hazard."));
        let why = if verdict.injection
            && matches!(
                policy.injection,
                OnInjection::Block | OnInjection::Spotlight
            ) {
            "it carries a likely prompt injection"
        } else if hazard && policy.hazards == OnHazard::Block {
            "an argument is hazardous for the tool it goes to"
        } else if policy.secrets == OnSensitive::Block || policy.personal_data == OnSensitive::Block
        {
            "it carries a secret or personal data"
        } else {
            "it carries a likely prompt injection"
        };
        ErrorObject::with_data(
            codes::GATEWAY_REFUSED,
            format!("{what} by the gateway: {why}"),
            json!({
                "reason": "detection",
                "direction": origin.direction.as_str(),
                "rules": verdict.rules,
            }),
        )
    }

    /// One audit event, the metrics and the session's risk for a verdict
    /// other than `allow`.
    fn record(&self, ctx: &Context, origin: Origin<'_>, verdict: &Verdict, report: &Report) {
        if !verdict.notable() {
            return;
        }
        ctx.add_risk(verdict.risk);
        for r in &verdict.rules {
            self.metrics.detection(r, verdict.action.as_str());
        }
        // Pointers name object keys, which the sender chose: only safe ones are kept.
        let mut paths: Vec<String> = Vec::new();
        for f in &report.findings {
            let p = bastion_detect::safe_pointer(&f.path);
            if verdict.rules.contains(&f.rule) && !paths.contains(&p) && paths.len() < 16 {
                paths.push(p);
            }
        }
        let categories: Vec<&str> = {
            let mut c: Vec<&str> = Vec::new();
            for f in report
                .findings
                .iter()
                .filter(|f| verdict.rules.contains(&f.rule))
            {
                let name = Category::name(f.category);
                if !c.contains(&name) {
                    c.push(name);
                }
            }
            c
        };
        let outcome = if verdict.action == Action::Block {
            Outcome::Refused
        } else {
            Outcome::Ok
        };
        let mut ev = AuditEvent::new(EventKind::Detection, outcome);
        ev.set_principal(&ctx.principal);
        ev.method = Some(origin.method.to_owned());
        ev.target = Some(origin.target.to_owned());
        ev.upstream = self.upstreams.get(origin.upstream).cloned();
        ev.reason = Some(format!(
            "{} {}",
            origin.direction.as_str(),
            verdict.action.as_str()
        ));
        ev.detection = Some(json!({
            "direction": origin.direction.as_str(),
            "action": verdict.action.as_str(),
            "score": (f64::from(verdict.score) * 1000.0).round() / 1000.0,
            "injection": verdict.injection,
            "rules": verdict.rules,
            "categories": categories,
            "paths": paths,
            "session_risk": ctx.risk(),
        }));
        self.audit.emit(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_text_is_markable() {
        assert!(markable("/content/0/text"));
        assert!(markable("/contents/1/text"));
        assert!(markable("/messages/0/content/text"));
        assert!(!markable("/structuredContent/text"));
        assert!(!markable("/content/0/_meta/text"));
        assert!(!markable("/content/0/uri"));
        let mut v = json!({"content": [{"type": "text", "text": "a"}, {"type": "resource", "resource": {"uri": "x", "text": "b"}}],
            "structuredContent": {"text": "c"}, "_meta": {"text": "d"}});
        let mut seen = Vec::new();
        each_text(&mut v, 0, &mut |s: &mut String| {
            seen.push(s.clone());
            s.push('!');
        });
        assert_eq!(seen, ["a", "b"]);
        assert_eq!(v["content"][1]["resource"]["text"], "b!");
        assert_eq!(v["structuredContent"]["text"], "c");
    }
}

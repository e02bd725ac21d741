//! Prometheus metrics (`prometheus-client`), served on the admin listener.
//!
//! Owns the registry and the metric families. Labels are bounded: lane,
//! JSON-RPC method (only the MCP methods the gateway knows; anything else is
//! `other`), outcome, policy action and decision, upstream name (from the
//! configuration). Principals, sessions, tool names and addresses are never
//! labels: they are unbounded and they belong to the audit trail.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;
type HistFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 0.5 ms ... ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    request_seconds: HistFamily,
    decisions: Family<Labels, Counter>,
    upstream_requests: Family<Labels, Counter>,
    upstream_seconds: HistFamily,
    detections: Family<Labels, Counter>,
    audit_queue: Gauge<i64, std::sync::atomic::AtomicI64>,
    audit_healthy: Gauge<i64, std::sync::atomic::AtomicI64>,
    sessions: Gauge<i64, std::sync::atomic::AtomicI64>,
    policies: Gauge<i64, std::sync::atomic::AtomicI64>,
}

/// The method label: a known MCP method, or `other` (bounded cardinality).
fn method_label(m: &str) -> &str {
    const KNOWN: &[&str] = &[
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
        "server/discover",
        "subscriptions/listen",
        "tasks/get",
        "tasks/result",
        "tasks/cancel",
        "tasks/update",
        "tasks/list",
        "notifications/initialized",
        "notifications/cancelled",
    ];
    KNOWN.iter().find(|k| **k == m).copied().unwrap_or("other")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every family registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("bastion");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Client requests to /mcp by lane, JSON-RPC method and outcome",
            requests.clone(),
        );
        let request_seconds: HistFamily = Family::new_with_constructor(latency);
        registry.register(
            "request_duration_seconds",
            "Time to answer a client request, by lane",
            request_seconds.clone(),
        );
        let decisions = Family::<Labels, Counter>::default();
        registry.register(
            "authz_decisions",
            "Authorization decisions by action and decision",
            decisions.clone(),
        );
        let upstream_requests = Family::<Labels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Requests to upstreams by upstream and outcome",
            upstream_requests.clone(),
        );
        let upstream_seconds: HistFamily = Family::new_with_constructor(latency);
        registry.register(
            "upstream_request_duration_seconds",
            "Upstream request latency by upstream",
            upstream_seconds.clone(),
        );
        let detections = Family::<Labels, Counter>::default();
        registry.register(
            "detections",
            "Detector findings by rule and action",
            detections.clone(),
        );
        let audit_queue = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "audit_queue_depth",
            "Audit events waiting to be written",
            audit_queue.clone(),
        );
        let audit_healthy = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "audit_healthy",
            "1 while the audit trail records, 0 when new requests are refused",
            audit_healthy.clone(),
        );
        let sessions = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "sessions",
            "Live 2025-11-25 sessions on this instance",
            sessions.clone(),
        );
        let policies = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register("policies", "Policies in the set in force", policies.clone());
        Metrics {
            registry,
            requests,
            request_seconds,
            decisions,
            upstream_requests,
            upstream_seconds,
            detections,
            audit_queue,
            audit_healthy,
            sessions,
            policies,
        }
    }

    /// One answered client request.
    pub fn request(&self, lane: Option<&str>, method: Option<&str>, outcome: &str, secs: f64) {
        let lane = lane.unwrap_or("none").to_owned();
        self.requests
            .get_or_create(&vec![
                ("lane".into(), lane.clone()),
                (
                    "method".into(),
                    method_label(method.unwrap_or("")).to_owned(),
                ),
                ("outcome".into(), outcome.to_owned()),
            ])
            .inc();
        self.request_seconds
            .get_or_create(&vec![("lane".into(), lane)])
            .observe(secs);
    }

    /// One authorization decision (a filtered list page counts as `filter`).
    pub fn decision(&self, action: &str, decision: &str) {
        self.decisions
            .get_or_create(&vec![
                ("action".into(), method_label(action).to_owned()),
                ("decision".into(), decision.to_owned()),
            ])
            .inc();
    }

    /// One upstream exchange.
    pub fn upstream(&self, upstream: &str, outcome: &str, secs: Option<f64>) {
        self.upstream_requests
            .get_or_create(&vec![
                ("upstream".into(), upstream.to_owned()),
                ("outcome".into(), outcome.to_owned()),
            ])
            .inc();
        if let Some(s) = secs {
            self.upstream_seconds
                .get_or_create(&vec![("upstream".into(), upstream.to_owned())])
                .observe(s);
        }
    }

    /// One detector finding (the detection engine reports here).
    pub fn detection(&self, rule: &str, action: &str) {
        self.detections
            .get_or_create(&vec![
                ("rule".into(), rule.to_owned()),
                ("action".into(), action.to_owned()),
            ])
            .inc();
    }

    /// The text exposition, with the gauges read now.
    pub fn render(
        &self,
        audit_queue: usize,
        audit_healthy: bool,
        sessions: usize,
        policies: usize,
    ) -> String {
        self.audit_queue
            .set(i64::try_from(audit_queue).unwrap_or(i64::MAX));
        self.audit_healthy.set(i64::from(audit_healthy));
        self.sessions
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
        self.policies
            .set(i64::try_from(policies).unwrap_or(i64::MAX));
        let mut om = String::new();
        if encode(&mut om, &self.registry).is_err() {
            om.clear();
        }
        to_text_format(&om)
    }
}

/// OpenMetrics (what `prometheus-client` writes) to the Prometheus text format
/// 0.0.4 every scraper and `promtool` read: a counter's HELP and TYPE name its
/// `_total` series, and there is no `# EOF`.
fn to_text_format(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

//! OTLP/HTTP (protobuf) export of the audit trail: every record becomes an
//! OpenTelemetry log record (body: the record line, byte for byte), and every
//! client request a server span (start = answer time - duration).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value as Any,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::OtlpConfig;

fn kv(k: &str, v: Any) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue { value: Some(v) }),
        ..KeyValue::default()
    }
}

fn s(v: &str) -> Any {
    Any::StringValue(v.to_owned())
}

/// The OTLP destination.
#[derive(Debug)]
pub struct Otlp {
    cfg: Arc<OtlpConfig>,
    client: reqwest::Client,
    resource: Resource,
    scope: InstrumentationScope,
}

impl Otlp {
    /// A destination for `cfg`.
    pub fn new(cfg: Arc<OtlpConfig>, client: reqwest::Client, host: String) -> Otlp {
        Otlp {
            resource: Resource {
                attributes: vec![
                    kv("service.name", s("mcp-bastion")),
                    kv("service.version", s(env!("CARGO_PKG_VERSION"))),
                    kv("host.name", s(&host)),
                ],
                ..Resource::default()
            },
            scope: InstrumentationScope {
                name: "mcp-bastion.audit".into(),
                version: crate::audit::SCHEMA.into(),
                ..InstrumentationScope::default()
            },
            cfg,
            client,
        }
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> std::io::Result<()> {
        let url = format!("{}{path}", self.cfg.endpoint.as_str().trim_end_matches('/'));
        let mut b = self
            .client
            .post(url)
            .header("content-type", "application/x-protobuf");
        for (k, v) in &self.cfg.headers {
            b = b.header(k, v.expose_secret());
        }
        let r = b.body(body).send().await.map_err(|e| {
            // reqwest errors can carry the URL only; never a header value.
            std::io::Error::other(e.without_url().to_string())
        })?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "collector answered {}",
                r.status()
            )))
        }
    }
}

fn severity(outcome: Option<&str>) -> (i32, &'static str) {
    // OTLP SeverityNumber: INFO 9, WARN 13, ERROR 17.
    match outcome {
        Some("ok") | None => (9, "INFO"),
        Some("refused") => (13, "WARN"),
        _ => (17, "ERROR"),
    }
}

/// The log records and spans for `batch`.
pub fn convert(batch: &[(u64, String)]) -> (Vec<LogRecord>, Vec<Span>) {
    let now = bastion_auth::now_secs().saturating_mul(1_000_000_000);
    let mut logs = Vec::with_capacity(batch.len());
    let mut spans = Vec::new();
    for (seq, line) in batch {
        let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        let ev = v.get("event");
        let st = |k: &str| ev.and_then(|e| e.get(k)).and_then(Value::as_str);
        let ts_ns = ev
            .and_then(|e| e.get("ts_ms"))
            .and_then(Value::as_u64)
            .map_or(now, |ms| ms.saturating_mul(1_000_000));
        let (num, text) = severity(st("outcome"));
        let mut attributes = vec![
            kv(
                "bastion.audit.seq",
                Any::IntValue(i64::try_from(*seq).unwrap_or(i64::MAX)),
            ),
            kv("event.name", s(st("kind").unwrap_or("checkpoint"))),
        ];
        for (attr, key) in [
            ("bastion.outcome", "outcome"),
            ("enduser.id", "principal"),
            ("bastion.request_id", "request_id"),
            ("rpc.method", "method"),
        ] {
            if let Some(x) = st(key) {
                attributes.push(kv(attr, s(x)));
            }
        }
        logs.push(LogRecord {
            time_unix_nano: ts_ns,
            observed_time_unix_nano: now,
            severity_number: num,
            severity_text: text.into(),
            body: Some(AnyValue {
                value: Some(s(line)),
            }),
            attributes,
            ..LogRecord::default()
        });
        if st("kind") == Some("request") {
            let dur_ns = ev
                .and_then(|e| e.get("duration_us"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .saturating_mul(1000);
            let id = st("request_id").map_or_else(|| seq.to_string(), str::to_owned);
            let h = Sha256::digest(id.as_bytes());
            let mut attrs = Vec::new();
            for (attr, key) in [
                ("rpc.method", "method"),
                ("http.request.method", "http_method"),
                ("bastion.lane", "lane"),
                ("bastion.target", "target"),
                ("enduser.id", "principal"),
            ] {
                if let Some(x) = st(key) {
                    attrs.push(kv(attr, s(x)));
                }
            }
            if let Some(code) = ev.and_then(|e| e.get("status")).and_then(Value::as_i64) {
                attrs.push(kv("http.response.status_code", Any::IntValue(code)));
            }
            attrs.push(kv(
                "bastion.audit.seq",
                Any::IntValue(i64::try_from(*seq).unwrap_or(i64::MAX)),
            ));
            spans.push(Span {
                trace_id: h.get(..16).unwrap_or_default().to_vec(),
                span_id: h.get(16..24).unwrap_or_default().to_vec(),
                name: st("method").unwrap_or("request").to_owned(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: ts_ns.saturating_sub(dur_ns),
                end_time_unix_nano: ts_ns,
                attributes: attrs,
                status: Some(Status {
                    code: if st("outcome") == Some("ok") { 1 } else { 2 },
                    message: st("reason").unwrap_or("").to_owned(),
                }),
                ..Span::default()
            });
        }
    }
    (logs, spans)
}

/// Sends the log at `log` to an OpenTelemetry collector (OTLP/HTTP, protobuf):
/// every record as a log record, every client request as a span.
pub async fn export(
    cfg: Arc<crate::config::OtlpConfig>,
    log: PathBuf,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "OTLP exporter: cannot build the HTTP client");
            return;
        }
    };
    let d = Otlp::new(cfg, client, crate::audit::export::hostname());
    crate::audit::export::run(d, log, stop).await;
}

impl crate::audit::export::Destination for Otlp {
    fn name(&self) -> &str {
        self.cfg.endpoint.as_str()
    }

    async fn connect(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn send(&mut self, batch: &[(u64, String)]) -> std::io::Result<()> {
        let (logs, spans) = convert(batch);
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(self.scope.clone()),
                    log_records: logs,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        self.post("/v1/logs", req.encode_to_vec()).await?;
        if !spans.is_empty() {
            let req = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(self.resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(self.scope.clone()),
                        spans,
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                }],
            };
            self.post("/v1/traces", req.encode_to_vec()).await?;
        }
        Ok(())
    }

    async fn close(&mut self) {}
}

//! `bench-load`: an MCP load generator for `tools/call` over Streamable HTTP.
//!
//! It opens one MCP session (`initialize` + `notifications/initialized`, keeping the
//! `Mcp-Session-Id` and `MCP-Protocol-Version` the server hands out; one session
//! per worker with `--session-per-worker`), then runs N workers for a warm-up period
//! and a measured period. Each worker owns one keep-alive HTTP/1.1 connection and
//! sends `tools/call` requests back to back, so the concurrency is exactly N
//! requests in flight. Every response is parsed (JSON
//! or SSE) and counted as an error when it is not HTTP 200, carries a JSON-RPC
//! error, or is a tool result with `isError: true`.
//!
//! A call counts when it completes inside the measured window (as in wrk), so the
//! throughput is not skewed by calls still in flight at either edge; calls in
//! flight when the window closes are dropped. It reports requests, errors,
//! throughput and latency percentiles (microseconds) of the window, as text or
//! (`--json`) as one JSON object.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::watch;

const PROTOCOL_VERSION: &str = "2025-11-25";

#[derive(Debug, Parser)]
#[command(name = "bench-load", about = "MCP tools/call load generator")]
struct Args {
    /// MCP endpoint, e.g. http://127.0.0.1:8080/mcp (plain HTTP only).
    #[arg(long)]
    url: String,
    /// Workers, i.e. requests in flight; each has its own connection.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Length of the measured period.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Load before the measured period (connections, caches, JIT-less warm-up of
    /// the servers' allocators and pools); not counted.
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Keep measuring past the duration until at least this many calls completed
    /// (for slow targets, whose percentiles need samples).
    #[arg(long, default_value_t = 0)]
    min_requests: u64,
    /// Tool to call.
    #[arg(long, default_value = "echo")]
    tool: String,
    /// Tool arguments as a JSON object.
    #[arg(long, default_value = r#"{"message":"hello from bench-load"}"#)]
    arguments: String,
    /// Extra request header `Name: value` (repeatable), e.g. an Authorization header.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Per-request timeout; a timed-out request counts as an error.
    #[arg(long, default_value_t = 30.0)]
    timeout_secs: f64,
    /// Runtime worker threads. One by default, so the generator takes at most one
    /// core away from the servers under test.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Give every worker its own MCP session (N clients with one call in flight
    /// each) instead of one session shared by all workers (one client with N calls
    /// in flight).
    #[arg(long)]
    session_per_worker: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Where to connect and what to put in the request line and Host header.
#[derive(Debug, Clone)]
struct Target {
    addr: String,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("only http:// URLs are supported: {url}");
        }
        let auth = uri
            .authority()
            .ok_or_else(|| anyhow!("URL has no host: {url}"))?;
        let port = auth.port_u16().unwrap_or(80);
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Self {
            addr: format!("{}:{port}", auth.host()),
            authority: auth.as_str().to_owned(),
            path,
        })
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    send: SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(target: &Target) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(&target.addr)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        tcp.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        // The connection task ends when the server closes or `send` is dropped.
        tokio::spawn(conn);
        Ok(Self { send })
    }

    async fn post(
        &mut self,
        target: &Target,
        method: Method,
        headers: &HeaderMap,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(target.path.as_str())
            .body(Full::new(body))?;
        *req.headers_mut() = headers.clone();
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}

/// Finds the JSON-RPC response with `id` in a body that is either one JSON value
/// or an SSE stream (where it is one of possibly several `data:` events; priming
/// events and notifications are skipped).
fn find_response(headers: &HeaderMap, body: &[u8], id: &Value) -> anyhow::Result<Value> {
    let is_sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_sse {
        return serde_json::from_slice(body).context("response body is not JSON");
    }
    let text = std::str::from_utf8(body).context("SSE body is not UTF-8")?;
    let mut data = String::new();
    // An event ends at a blank line; its data is its `data:` lines joined by '\n'.
    for line in text.lines().chain(std::iter::once("")) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if !data.is_empty() {
                if let Ok(v) = serde_json::from_str::<Value>(&data)
                    && v.get("id") == Some(id)
                    && (v.get("result").is_some() || v.get("error").is_some())
                {
                    return Ok(v);
                }
                data.clear();
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    bail!("SSE stream ended without the response")
}

/// Why a call failed, when it did.
fn check_call(status: StatusCode, headers: &HeaderMap, body: &[u8], id: &Value) -> Option<String> {
    if status != StatusCode::OK {
        let snippet =
            String::from_utf8_lossy(body.get(..body.len().min(200)).unwrap_or(body)).into_owned();
        return Some(format!("HTTP {status}: {snippet}"));
    }
    match find_response(headers, body, id) {
        Err(e) => Some(format!("{e:#}")),
        Ok(v) => {
            if let Some(e) = v.get("error") {
                Some(format!("JSON-RPC error: {e}"))
            } else if v.pointer("/result/isError") == Some(&Value::Bool(true)) {
                Some(format!(
                    "tool error: {}",
                    v.get("result").unwrap_or(&Value::Null)
                ))
            } else if v.get("result").is_none() {
                Some("response has neither result nor error".to_owned())
            } else {
                None
            }
        }
    }
}

fn base_headers(target: &Target, extra: &[String]) -> anyhow::Result<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_str(&target.authority)?);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    for raw in extra {
        let (k, v) = raw
            .split_once(':')
            .ok_or_else(|| anyhow!("--header must look like 'Name: value': {raw}"))?;
        h.insert(
            HeaderName::from_bytes(k.trim().as_bytes())?,
            HeaderValue::from_str(v.trim())?,
        );
    }
    Ok(h)
}

/// The session every worker uses: the headers to send on each request.
async fn open_session(target: &Target, base: &HeaderMap) -> anyhow::Result<HeaderMap> {
    let mut conn = Conn::open(target).await?;
    let id = json!(0);
    let init = json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "bench-load", "version": env!("CARGO_PKG_VERSION")}
        }
    });
    let (status, rh, body) = conn
        .post(
            target,
            Method::POST,
            base,
            Bytes::from(serde_json::to_vec(&init)?),
        )
        .await
        .context("initialize")?;
    if status != StatusCode::OK {
        bail!(
            "initialize: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let resp = find_response(&rh, &body, &id).context("initialize")?;
    let version = resp
        .pointer("/result/protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("initialize failed: {resp}"))?;
    let mut h = base.clone();
    // Servers without sessions (stateless ones) send no id: then there is none to keep.
    if let Some(sid) = rh.get("mcp-session-id") {
        h.insert("mcp-session-id", sid.clone());
    }
    h.insert("mcp-protocol-version", HeaderValue::from_str(version)?);
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, body) = conn
        .post(
            target,
            Method::POST,
            &h,
            Bytes::from(serde_json::to_vec(&note)?),
        )
        .await
        .context("notifications/initialized")?;
    if !status.is_success() {
        bail!(
            "notifications/initialized: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(h)
}

/// Ends the session (best effort: the numbers are already in).
async fn close_session(target: &Target, headers: &HeaderMap) {
    if !headers.contains_key("mcp-session-id") {
        return;
    }
    if let Ok(mut conn) = Conn::open(target).await {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            conn.post(target, Method::DELETE, headers, Bytes::new()),
        )
        .await;
    }
}

/// What the run shares with every worker.
struct Plan {
    target: Target,
    /// The request body is `prefix + id + suffix`: only the id changes per call.
    body_prefix: String,
    body_suffix: String,
    measure_from: Instant,
    timeout: Duration,
    /// Calls completed inside the measured window so far.
    completed: AtomicU64,
}

/// One finished call (or failed connection attempt) inside the measured window.
#[derive(Debug)]
struct Sample {
    done: Instant,
    /// `None` when no request was sent (the connection could not be opened).
    latency_us: Option<u64>,
    failure: Option<String>,
}

#[derive(Debug, Default)]
struct WorkerResult {
    samples: Vec<Sample>,
    reconnects: u64,
}

impl WorkerResult {
    fn record(
        &mut self,
        plan: &Plan,
        done: Instant,
        latency: Option<Duration>,
        failure: Option<String>,
    ) {
        if done < plan.measure_from {
            return;
        }
        plan.completed.fetch_add(1, Ordering::Relaxed);
        self.samples.push(Sample {
            done,
            latency_us: latency.map(|l| u64::try_from(l.as_micros()).unwrap_or(u64::MAX)),
            failure,
        });
    }
}

/// Runs calls until `stop` turns true; a call in flight at that moment is dropped
/// (it ends after the window, so it would not be counted anyway).
async fn worker(
    plan: Arc<Plan>,
    index: usize,
    headers: HeaderMap,
    mut stop: watch::Receiver<bool>,
) -> WorkerResult {
    let mut out = WorkerResult::default();
    tokio::select! {
        () = calls(&plan, index, &headers, &mut out) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    out
}

async fn calls(plan: &Plan, index: usize, headers: &HeaderMap, out: &mut WorkerResult) {
    let mut conn: Option<Conn> = None;
    // Ids are unique per worker and per call, so a misrouted response is detected.
    let mut seq: u64 = 0;
    loop {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(&plan.target).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    out.record(plan, Instant::now(), None, Some(format!("{e:#}")));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // A connection the server chose to close (after a response with
        // `Connection: close`, or an idle limit) is replaced outside the timed part:
        // that is connection management, not a failed call.
        if c.send.ready().await.is_err() {
            conn = None;
            out.reconnects = out.reconnects.saturating_add(1);
            continue;
        }
        seq = seq.saturating_add(1);
        let id = (index as u64) << 40 | seq;
        let body = format!("{}{id}{}", plan.body_prefix, plan.body_suffix);
        let t0 = Instant::now();
        let r = tokio::time::timeout(
            plan.timeout,
            c.post(&plan.target, Method::POST, headers, Bytes::from(body)),
        )
        .await;
        let done = Instant::now();
        let failure = match r {
            Err(_) => {
                conn = None;
                Some(format!("timed out after {:?}", plan.timeout))
            }
            Ok(Err(e)) => {
                // The connection broke while the call was in flight.
                conn = None;
                out.reconnects = out.reconnects.saturating_add(1);
                Some(format!("transport: {e:#}"))
            }
            Ok(Ok((status, headers, body))) => check_call(status, &headers, &body, &json!(id)),
        };
        out.record(
            plan,
            done,
            Some(done.saturating_duration_since(t0)),
            failure,
        );
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()).saturating_sub(1))
        .copied()
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency == 0 || args.threads == 0 {
        bail!("--concurrency and --threads must be at least 1");
    }
    let rt = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let target = Target::parse(&args.url)?;
    let arguments: Value =
        serde_json::from_str(&args.arguments).context("--arguments is not JSON")?;
    let base = base_headers(&target, &args.headers)?;
    let mut sessions = Vec::new();
    for _ in 0..if args.session_per_worker {
        args.concurrency
    } else {
        1
    } {
        sessions.push(open_session(&target, &base).await?);
    }

    let params = json!({"name": args.tool, "arguments": arguments});
    let body_prefix = r#"{"jsonrpc":"2.0","method":"tools/call","params":"#.to_owned()
        + &serde_json::to_string(&params)?
        + r#","id":"#;
    let start = Instant::now();
    let measure_from = start
        .checked_add(Duration::from_secs_f64(args.warmup_secs))
        .context("--warmup-secs is too large")?;
    let stop_at = measure_from
        .checked_add(Duration::from_secs_f64(args.duration_secs))
        .context("--duration-secs is too large")?;
    let plan = Arc::new(Plan {
        target: target.clone(),
        body_prefix,
        body_suffix: "}".to_owned(),
        measure_from,
        timeout: Duration::from_secs_f64(args.timeout_secs),
        completed: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let headers = i
                .checked_rem(sessions.len())
                .and_then(|j| sessions.get(j))
                .cloned()
                .unwrap_or_default();
            tokio::spawn(worker(plan.clone(), i, headers, stop_rx.clone()))
        })
        .collect();

    // The window ends at the nominal end, or later if fewer than --min-requests
    // calls have completed by then.
    tokio::time::sleep_until(stop_at.into()).await;
    while plan.completed.load(Ordering::Relaxed) < args.min_requests {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let window_end = Instant::now();
    let _ = stop_tx.send(true);
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await.context("worker task")?);
    }
    for h in &sessions {
        close_session(&target, h).await;
    }

    let samples = || {
        results
            .iter()
            .flat_map(|r| r.samples.iter())
            .filter(|s| s.done <= window_end)
    };
    let mut lat: Vec<u64> = samples().filter_map(|s| s.latency_us).collect();
    lat.sort_unstable();
    let requests = lat.len() as u64;
    let errors = samples().filter(|s| s.failure.is_some()).count() as u64;
    let first_error = samples()
        .filter(|s| s.failure.is_some())
        .min_by_key(|s| s.done)
        .and_then(|s| s.failure.clone());
    let reconnects: u64 = results.iter().map(|r| r.reconnects).sum();
    let secs = window_end
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    let rps = if secs > 0.0 {
        requests as f64 / secs
    } else {
        0.0
    };
    let mean = if lat.is_empty() {
        0
    } else {
        lat.iter()
            .fold(0u64, |a, b| a.saturating_add(*b))
            .checked_div(requests)
            .unwrap_or(0)
    };
    let (p50, p90, p99) = (
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
    );
    let max = lat.last().copied().unwrap_or(0);

    if args.json {
        let out = json!({
            "url": args.url,
            "tool": args.tool,
            "concurrency": args.concurrency,
            "sessions": sessions.len(),
            "warmup_secs": args.warmup_secs,
            "duration_secs": args.duration_secs,
            "min_requests": args.min_requests,
            "measured_secs": secs,
            "requests": requests,
            "errors": errors,
            "reconnects": reconnects,
            "throughput_rps": rps,
            "latency_us": {"p50": p50, "p90": p90, "p99": p99, "max": max, "mean": mean},
            "first_error": first_error,
        });
        println!("{out}");
    } else {
        println!(
            "{} tool={} concurrency={} measured={secs:.2}s requests={requests} errors={errors} \
             reconnects={reconnects} rps={rps:.1} p50={p50}us p90={p90}us p99={p99}us max={max}us mean={mean}us",
            args.url, args.tool, args.concurrency
        );
        if let Some(e) = first_error {
            println!("first error: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn finds_the_response_among_sse_events() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        let body = "id: 1\nretry: 1000\ndata: \n\n\
                    event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                    event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\r\n\r\n";
        let v = find_response(&h, body.as_bytes(), &json!(7)).unwrap();
        assert_eq!(v["id"], 7);
        assert!(find_response(&h, body.as_bytes(), &json!(8)).is_err());
    }

    #[test]
    fn classifies_failures() {
        let h = HeaderMap::new();
        let id = json!(1);
        assert!(
            check_call(
                StatusCode::OK,
                &h,
                br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                &id
            )
            .is_none()
        );
        assert!(
            check_call(
                StatusCode::OK,
                &h,
                br#"{"jsonrpc":"2.0","id":1,"result":{"isError":true}}"#,
                &id
            )
            .is_some()
        );
        assert!(
            check_call(
                StatusCode::OK,
                &h,
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#,
                &id
            )
            .is_some()
        );
        assert!(check_call(StatusCode::BAD_REQUEST, &h, b"", &id).is_some());
    }
}

//! Export of the audit trail to syslog collectors (RFC 5424 messages,
//! octet-counted over TCP per RFC 6587, or over TLS per RFC 5425).
//!
//! The exporter reads the chained log itself, the source of truth, rather
//! than a copy of the events: a collector outage loses nothing (the exporter
//! resumes from the position it persisted, `<log>.export-<address>.pos`), and
//! the signed checkpoints reach the collector too, which anchors the log's
//! length outside the machine. Delivery is at least once from the last
//! persisted position; every message carries the record's `seq`, so a
//! collector can drop duplicates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::config::SyslogConfig;

/// A connected collector.
type Conn = Box<dyn AsyncWrite + Unpin + Send>;

pub(crate) fn hostname() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let h: String = h
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if h.is_empty() { "-".into() } else { h }
}

/// One RFC 5424 message for a record line, octet-count framed.
pub fn frame(line: &str, host: &str, pid: u32) -> Vec<u8> {
    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    let ev = v.get("event");
    let (severity, msgid, ts) = match ev {
        Some(e) => (
            match e.get("outcome").and_then(Value::as_str) {
                Some("ok") => 6,
                Some("refused") => 4,
                _ => 3,
            },
            e.get("kind")
                .and_then(Value::as_str)
                .unwrap_or("event")
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(32)
                .collect::<String>(),
            e.get("ts_ms")
                .and_then(Value::as_u64)
                .unwrap_or_else(|| bastion_auth::now_secs().saturating_mul(1000)),
        ),
        None => (
            6,
            "checkpoint".to_owned(),
            bastion_auth::now_secs().saturating_mul(1000),
        ),
    };
    // Facility 13: log audit.
    // Severity is 3..=6, so the priority (13 * 8 + severity) is 107..=110.
    let pri = 104u8.saturating_add(severity);
    let msg = format!(
        "<{pri}>1 {} {host} bastion {pid} {msgid} - {line}",
        crate::audit::forensics::rfc3339(ts)
    );
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

async fn connect(cfg: &SyslogConfig) -> std::io::Result<Conn> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(&cfg.address),
    )
    .await
    .map_err(|_| std::io::Error::other("connect timed out"))??;
    tcp.set_nodelay(true)?;
    let Some(tls) = &cfg.tls else {
        return Ok(Box::new(tcp));
    };
    let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
    let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone())
        .map_err(|_| std::io::Error::other("bad TLS server name"))?;
    let s = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
    Ok(Box::new(s))
}

/// Where the exporter stands in the log.
struct Cursor {
    next_seq: u64,
    live_first: Option<u64>,
    live_offset: u64,
}

fn first_seq(p: &Path) -> Option<u64> {
    use std::io::BufRead as _;
    let f = std::fs::File::open(p).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(f).read_line(&mut line).ok()?;
    serde_json::from_str::<Value>(&line)
        .ok()?
        .get("seq")?
        .as_u64()
}

/// The record lines at or after the cursor, advancing the read position (not
/// `next_seq`: that moves only once a line is sent).
fn pending(log: &Path, c: &mut Cursor) -> Vec<(u64, String)> {
    use std::io::{Read as _, Seek as _};
    let len = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let first = first_seq(log);
    let mut out = Vec::new();
    if first != c.live_first || len < c.live_offset {
        // Rotation (or start): read every file for what is still to send.
        if let Ok(records) = crate::audit::forensics::read(&crate::audit::forensics::log_files(log))
        {
            for r in records {
                if r.seq >= c.next_seq {
                    out.push((r.seq, r.line));
                }
            }
        }
        c.live_first = first;
        c.live_offset = len;
        return out;
    }
    if len == c.live_offset {
        return out;
    }
    let Ok(mut f) = std::fs::File::open(log) else {
        return out;
    };
    if f.seek(std::io::SeekFrom::Start(c.live_offset)).is_err() {
        return out;
    }
    let mut buf = Vec::new();
    if f.take(len.saturating_sub(c.live_offset))
        .read_to_end(&mut buf)
        .is_err()
    {
        return out;
    }
    // Only whole lines; a line being written is read next time.
    let whole = buf
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i.saturating_add(1));
    c.live_offset = c.live_offset.saturating_add(whole as u64);
    for line in buf.get(..whole).unwrap_or_default().split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let Ok(s) = std::str::from_utf8(line) else {
            continue;
        };
        let seq = serde_json::from_str::<Value>(s)
            .ok()
            .and_then(|v| v.get("seq").and_then(Value::as_u64));
        if let Some(seq) = seq
            && seq >= c.next_seq
        {
            out.push((seq, s.to_owned()));
        }
    }
    out
}

fn pos_file(log: &Path, address: &str) -> PathBuf {
    let safe: String = address
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    PathBuf::from(format!("{}.export-{safe}.pos", log.display()))
}

fn save_pos(p: &Path, next: u64) {
    let tmp = p.with_extension("pos.tmp");
    if std::fs::write(&tmp, next.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, p);
    }
}

/// Where records go.
pub(crate) trait Destination: Send {
    /// A name for positions and logs.
    fn name(&self) -> &str;
    /// Connects (or checks the destination is usable).
    fn connect(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
    /// Delivers `batch` (in order). An error: nothing of it counts as sent.
    fn send(
        &mut self,
        batch: &[(u64, String)],
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
    /// Closes the connection.
    fn close(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

struct Syslog {
    cfg: Arc<SyslogConfig>,
    conn: Option<Conn>,
    host: String,
    pid: u32,
}

impl Destination for Syslog {
    fn name(&self) -> &str {
        &self.cfg.address
    }

    async fn connect(&mut self) -> std::io::Result<()> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.cfg).await?);
        }
        Ok(())
    }

    async fn send(&mut self, batch: &[(u64, String)]) -> std::io::Result<()> {
        let Some(s) = self.conn.as_mut() else {
            return Err(std::io::Error::other("not connected"));
        };
        let mut r = Ok(());
        for (_, line) in batch {
            r = s.write_all(&frame(line, &self.host, self.pid)).await;
            if r.is_err() {
                break;
            }
        }
        if r.is_ok() {
            r = s.flush().await;
        }
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    async fn close(&mut self) {
        if let Some(mut s) = self.conn.take() {
            let _ = s.shutdown().await;
        }
    }
}

/// Sends the log at `log` to one syslog collector until `stop` turns true,
/// then makes a last pass (bounded by the caller's timeout) and returns.
pub async fn syslog(
    cfg: Arc<SyslogConfig>,
    log: PathBuf,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let d = Syslog {
        cfg,
        conn: None,
        host: hostname(),
        pid: std::process::id(),
    };
    run(d, log, stop).await;
}

struct Stdout;

impl Destination for Stdout {
    fn name(&self) -> &str {
        "stdout"
    }

    async fn connect(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn send(&mut self, batch: &[(u64, String)]) -> std::io::Result<()> {
        let mut out = tokio::io::stdout();
        for (_, line) in batch {
            out.write_all(line.as_bytes()).await?;
            out.write_all(b"\n").await?;
        }
        out.flush().await
    }

    async fn close(&mut self) {}
}

/// Copies the log at `log` to standard output as JSON lines (for container
/// log pipelines), with the same resumption as the other exporters.
pub async fn stdout(log: PathBuf, stop: tokio::sync::watch::Receiver<bool>) {
    run(Stdout, log, stop).await;
}

/// Waits `backoff` (or until asked to stop); returns the next, doubled up to
/// 30 s.
async fn pause(stop: &mut tokio::sync::watch::Receiver<bool>, backoff: Duration) -> Duration {
    tokio::select! {
        _ = tokio::time::sleep(backoff) => {}
        _ = stop.changed() => {}
    }
    backoff.saturating_mul(2).min(Duration::from_secs(30))
}

pub(crate) async fn run<D: Destination>(
    mut d: D,
    log: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let pos = pos_file(&log, d.name());
    let mut c = Cursor {
        next_seq: std::fs::read_to_string(&pos)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        live_first: None,
        live_offset: 0,
    };
    let mut connected = false;
    let mut backoff = Duration::from_millis(200);
    loop {
        let stopping = *stop.borrow();
        if !connected {
            match d.connect().await {
                Ok(()) => {
                    connected = true;
                    backoff = Duration::from_millis(200);
                    // Resume from the last position sent, whatever was read before.
                    c.live_first = None;
                }
                Err(e) => {
                    tracing::warn!(destination = %d.name(), error = %e, "audit export destination unreachable; will retry");
                    if stopping {
                        return;
                    }
                    backoff = pause(&mut stop, backoff).await;
                    continue;
                }
            }
        }
        let batch = pending(&log, &mut c);
        let mut failed = false;
        for chunk in batch.chunks(512) {
            match d.send(chunk).await {
                Ok(()) => {
                    if let Some((seq, _)) = chunk.last() {
                        c.next_seq = seq.saturating_add(1);
                        save_pos(&pos, c.next_seq);
                    }
                }
                Err(e) => {
                    tracing::warn!(destination = %d.name(), error = %e, "audit export failed; will resend");
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            // Reconnect and resend from the last batch delivered.
            connected = false;
            if stopping {
                return;
            }
            backoff = pause(&mut stop, backoff).await;
            continue;
        }
        if stopping {
            d.close().await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_rfc5424_and_octet_counted() {
        let line = r#"{"event":{"kind":"auth","outcome":"refused","ts_ms":1732000000123},"prev":"00","seq":7,"v":1}"#;
        let f = String::from_utf8(frame(line, "gw1", 42)).unwrap();
        let (len, msg) = f.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert_eq!(
            msg,
            format!("<108>1 2024-11-19T07:06:40.123Z gw1 bastion 42 auth - {line}")
        );
        let cp = r#"{"checkpoint":{"kid":"k"},"prev":"00","seq":8,"v":1}"#;
        assert!(
            String::from_utf8(frame(cp, "gw1", 42))
                .unwrap()
                .contains(" checkpoint - {")
        );
    }
}

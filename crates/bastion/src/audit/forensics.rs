//! Forensic tools over the audit trail: `bastion audit timeline`, `export`
//! and `impact`.
//!
//! They read the chained log (every file of it, in chain order) and never
//! change it. `export` copies the selected records byte for byte, so their
//! hashes can still be checked against the chain and its signed checkpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The files of the log whose live file is `path`: rotated ones and the live
/// one, in chain order.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = bastion_audit::writer::rotated(path)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    if path.exists() {
        out.push(path.to_owned());
    }
    out
}

/// One record: its sequence number, the raw line, and the event (if it is
/// one; checkpoints have none).
#[derive(Debug, Clone)]
pub struct Record {
    /// Sequence number.
    pub seq: u64,
    /// The line as written.
    pub line: String,
    /// The event, for event records.
    pub event: Option<Value>,
}

/// Reads every record of `files` (already in chain order). Lines that are not
/// records are reported as errors, not skipped.
pub fn read(files: &[PathBuf]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .map_err(|_| format!("{}:{}: not a record", f.display(), i.saturating_add(1)))?;
            let seq = v.get("seq").and_then(Value::as_u64).ok_or_else(|| {
                format!(
                    "{}:{}: no sequence number",
                    f.display(),
                    i.saturating_add(1)
                )
            })?;
            out.push(Record {
                seq,
                line: line.to_owned(),
                event: v.get("event").cloned(),
            });
        }
    }
    out.sort_by_key(|r| r.seq);
    Ok(out)
}

/// What to select.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The principal (`sub`).
    pub principal: Option<String>,
    /// The session: its id (hashed here) or its digest as the trail records it.
    pub session: Option<String>,
    /// Events at or after this time (ms since the epoch).
    pub since_ms: u64,
}

impl Filter {
    fn session_digest(&self) -> Option<String> {
        self.session.as_ref().map(|s| {
            let is_digest = s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
            if is_digest {
                s.to_ascii_lowercase()
            } else {
                crate::audit::session_digest(s)
            }
        })
    }

    /// Whether `ev` is selected.
    pub fn matches(&self, ev: &Value) -> bool {
        let s = |k: &str| ev.get(k).and_then(Value::as_str);
        if ev.get("ts_ms").and_then(Value::as_u64).unwrap_or(0) < self.since_ms {
            return false;
        }
        if let Some(p) = &self.principal
            && s("principal") != Some(p.as_str())
        {
            return false;
        }
        if let Some(d) = self.session_digest()
            && s("session") != Some(d.as_str())
        {
            return false;
        }
        true
    }
}

/// Counts one more (saturating: a count never wraps).
fn bump(n: &mut u64) {
    *n = n.saturating_add(1);
}

/// RFC 3339 (UTC, milliseconds) for ms since the epoch.
#[allow(
    clippy::arithmetic_side_effects,
    reason = "days <= u64::MAX / 86_400_000 (about 2.1e11), so every intermediate of the civil-from-days arithmetic stays below 2^48"
)]
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

/// One line of a human-readable timeline.
pub fn timeline_line(seq: u64, ev: &Value) -> String {
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("");
    let mut out = format!(
        "{} #{seq} {:<10} {:<8}",
        rfc3339(ev.get("ts_ms").and_then(Value::as_u64).unwrap_or(0)),
        s("kind"),
        s("outcome")
    );
    for (label, key) in [
        ("who", "principal"),
        ("session", "session"),
        ("from", "client_addr"),
        ("method", "method"),
        ("action", "action"),
        ("target", "target"),
        ("resource", "resource"),
        ("upstream", "upstream"),
        ("decision", "decision"),
    ] {
        let v = s(key);
        if !v.is_empty() {
            out.push_str(&format!(" {label}={v}"));
        }
    }
    if let Some(st) = ev.get("status").and_then(Value::as_u64) {
        out.push_str(&format!(" status={st}"));
    }
    let r = s("reason");
    if !r.is_empty() {
        out.push_str(&format!(" reason={r:?}"));
    }
    out
}

/// What a principal touched.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Impact {
    /// The principal.
    pub principal: String,
    /// First and last event (RFC 3339).
    pub first_seen: Option<String>,
    /// Last event.
    pub last_seen: Option<String>,
    /// Events about it.
    pub events: u64,
    /// Client requests: served, refused, failed.
    pub requests: BTreeMap<String, u64>,
    /// Upstreams reached, with exchange counts.
    pub upstreams: BTreeMap<String, u64>,
    /// Tools called (allowed), with counts.
    pub tools: BTreeMap<String, u64>,
    /// Resources read (allowed), with counts.
    pub resources: BTreeMap<String, u64>,
    /// Prompts fetched (allowed), with counts.
    pub prompts: BTreeMap<String, u64>,
    /// Requests the policies denied, by Cedar resource.
    pub denied: BTreeMap<String, u64>,
    /// Sessions (digests).
    pub sessions: BTreeSet<String>,
    /// Client addresses.
    pub client_addrs: BTreeSet<String>,
    /// OAuth clients.
    pub clients: BTreeSet<String>,
}

/// The impact of `principal` over `records`.
pub fn impact(records: &[Record], principal: &str, since_ms: u64) -> Impact {
    let mut im = Impact {
        principal: principal.to_owned(),
        ..Impact::default()
    };
    let (mut first, mut last) = (u64::MAX, 0u64);
    let mut requests_of_session: BTreeSet<String> = BTreeSet::new();
    for r in records {
        let Some(ev) = &r.event else { continue };
        let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        if s("principal") != principal {
            continue;
        }
        let ts = ev.get("ts_ms").and_then(Value::as_u64).unwrap_or(0);
        if ts < since_ms {
            continue;
        }
        im.events = im.events.saturating_add(1);
        first = first.min(ts);
        last = last.max(ts);
        for (set, key) in [
            (&mut im.sessions, "session"),
            (&mut im.client_addrs, "client_addr"),
            (&mut im.clients, "client_id"),
        ] {
            let v = s(key);
            if !v.is_empty() {
                set.insert(v);
            }
        }
        match s("kind").as_str() {
            "request" => {
                bump(im.requests.entry(s("outcome")).or_default());
                let sess = s("session");
                if !sess.is_empty() {
                    requests_of_session.insert(sess);
                }
            }
            "authz" => {
                let res = s("resource");
                let up = res
                    .split_once("::\"")
                    .and_then(|(_, rest)| rest.split('/').next())
                    .unwrap_or("")
                    .trim_end_matches('"')
                    .to_owned();
                match s("decision").as_str() {
                    "allow" => {
                        let bucket = match s("action").as_str() {
                            "tools/call" => Some(&mut im.tools),
                            "resources/read" => Some(&mut im.resources),
                            "prompts/get" => Some(&mut im.prompts),
                            _ => None,
                        };
                        if let Some(b) = bucket
                            && !res.starts_with("Bastion::Upstream")
                        {
                            bump(b.entry(res.clone()).or_default());
                            if !up.is_empty() {
                                bump(im.upstreams.entry(up).or_default());
                            }
                        }
                    }
                    "deny" => bump(im.denied.entry(res).or_default()),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if im.events > 0 {
        im.first_seen = Some(rfc3339(first));
        im.last_seen = Some(rfc3339(last));
    }
    im
}

/// Writes an evidence bundle for the records `filter` selects into `out`:
/// `events.jsonl` (the records byte for byte), `checkpoints.jsonl` (every
/// signed checkpoint of the log), `verification.txt` (the whole log
/// verified), and `manifest.json` (what, from where, SHA-256 of every file).
/// Returns the number of records exported.
pub fn export(
    files: &[PathBuf],
    filter: &Filter,
    out: &Path,
    opts: &bastion_audit::VerifyOptions,
) -> Result<u64, String> {
    let records = read(files)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let write = |name: &str, data: &[u8]| -> Result<String, String> {
        let p = out.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(bastion_audit::chain::hash(data))
    };
    let mut events = String::new();
    let mut checkpoints = String::new();
    let mut n = 0u64;
    let (mut first, mut last) = (None, None);
    for r in &records {
        match &r.event {
            Some(ev) if filter.matches(ev) => {
                events.push_str(&r.line);
                events.push('\n');
                n = n.saturating_add(1);
                first.get_or_insert(r.seq);
                last = Some(r.seq);
            }
            Some(_) => {}
            None => {
                checkpoints.push_str(&r.line);
                checkpoints.push('\n');
            }
        }
    }
    let report = bastion_audit::verify(files, opts);
    let verification = format!(
        "{} records and {} checkpoints in {} file(s) verified; checkpoint keys: {}\nresult: {}\n",
        report.records,
        report.checkpoints,
        report.files.len(),
        report.keys.join(", "),
        match &report.problem {
            None => "ok".to_owned(),
            Some(p) => format!("FAILED: first bad record: {p}"),
        }
    );
    let h_events = write("events.jsonl", events.as_bytes())?;
    let h_cps = write("checkpoints.jsonl", checkpoints.as_bytes())?;
    let h_ver = write("verification.txt", verification.as_bytes())?;
    let mut sources = Vec::new();
    for f in files {
        let data = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        sources.push(json!({"file": f.display().to_string(), "sha256": hex(&Sha256::digest(&data)), "bytes": data.len()}));
    }
    let manifest = json!({
        "bundle": "mcp-bastion audit evidence v1",
        "exported_at": rfc3339(bastion_auth::now_secs().saturating_mul(1000)),
        "selection": {
            "principal": filter.principal,
            "session_digest": filter.session_digest(),
            "since": rfc3339(filter.since_ms),
        },
        "records": n,
        "first_seq": first,
        "last_seq": last,
        "verified": report.ok(),
        "files": {
            "events.jsonl": h_events,
            "checkpoints.jsonl": h_cps,
            "verification.txt": h_ver,
        },
        "sources": sources,
    });
    write(
        "manifest.json",
        serde_json::to_string_pretty(&manifest)
            .map_err(|e| e.to_string())?
            .as_bytes(),
    )?;
    Ok(n)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_732_000_000_123), "2024-11-19T07:06:40.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}

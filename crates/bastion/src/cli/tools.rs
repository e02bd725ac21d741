//! `bastion tools` and `bastion manifest`: the operator's side of tool
//! integrity. `tools` talks to the running gateway's admin API (the gateway
//! owns the pins and the audit trail, so a decision is applied and recorded
//! by it at once); `manifest` signs and verifies manifests offline.
//!
//! Invariants: the operator token is read from the configuration's secret
//! reference (or `BASTION_ADMIN_TOKEN`) and sent only to the configured
//! admin listener; output for people is plain text, `--json` is for scripts.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::Config;
use crate::integrity;

/// What `bastion tools` does.
#[derive(Debug, Clone)]
pub enum ToolsAction {
    /// Every pinned item.
    List {
        /// Only this upstream.
        upstream: Option<String>,
    },
    /// Pending versions.
    Pending,
    /// A unified diff.
    Diff {
        /// Item.
        item: ItemArg,
        /// From this version (default: the accepted one).
        from: Option<u32>,
        /// To this version (default: the newest pending one).
        to: Option<u32>,
    },
    /// Approve a version (default: the newest pending one).
    Approve(ItemArg, Option<u32>),
    /// Reject a version (default: the newest pending one).
    Reject(ItemArg, Option<u32>),
    /// Every version.
    History(ItemArg),
    /// Make an earlier approved version the accepted one.
    Rollback(ItemArg, u32),
}

/// One item on the command line.
#[derive(Debug, Clone)]
pub struct ItemArg {
    /// Upstream name.
    pub upstream: String,
    /// `tool`, `prompt`, `template` or `instructions`.
    pub kind: String,
    /// The upstream's own name (empty for instructions).
    pub name: String,
}

/// A failed command: the message, and the exit status.
#[derive(Debug)]
pub struct CliError(pub String, pub i32);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

fn fail(m: impl Into<String>) -> CliError {
    CliError(m.into(), 1)
}

/// Runs `action` against the gateway configured in `cfg`; returns what to print.
pub async fn run(cfg: &Config, action: ToolsAction, as_json: bool) -> Result<String, CliError> {
    let listen = cfg.admin.listen.ok_or_else(|| {
        fail("the configuration has no [admin] listen: `bastion tools` talks to the running gateway's admin API")
    })?;
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    }
    let base = format!("http://{addr}");
    let token = match std::env::var("BASTION_ADMIN_TOKEN") {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => cfg
            .admin
            .token
            .as_ref()
            .map(|t| t.expose_secret().trim().to_owned())
            .ok_or_else(|| {
                fail("no operator token: set [admin] token in the configuration or BASTION_ADMIN_TOKEN")
            })?,
    };
    let operator = std::env::var("USER").unwrap_or_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let item_query = |i: &ItemArg| {
        vec![
            ("upstream".to_owned(), i.upstream.clone()),
            ("kind".to_owned(), i.kind.clone()),
            ("name".to_owned(), i.name.clone()),
        ]
    };
    let (method, path, query, body): (reqwest::Method, &str, Vec<(String, String)>, Option<Value>) =
        match &action {
            ToolsAction::List { upstream } => (
                reqwest::Method::GET,
                "/admin/tools",
                upstream
                    .iter()
                    .map(|u| ("upstream".to_owned(), u.clone()))
                    .collect(),
                None,
            ),
            ToolsAction::Pending => (reqwest::Method::GET, "/admin/tools/pending", vec![], None),
            ToolsAction::History(i) => (
                reqwest::Method::GET,
                "/admin/tools/history",
                item_query(i),
                None,
            ),
            ToolsAction::Diff { item, from, to } => {
                let mut q = item_query(item);
                if let Some(f) = from {
                    q.push(("from".into(), f.to_string()));
                }
                if let Some(t) = to {
                    q.push(("to".into(), t.to_string()));
                }
                (reqwest::Method::GET, "/admin/tools/diff", q, None)
            }
            ToolsAction::Approve(i, v) | ToolsAction::Reject(i, v) => (
                reqwest::Method::POST,
                if matches!(action, ToolsAction::Approve(..)) {
                    "/admin/tools/approve"
                } else {
                    "/admin/tools/reject"
                },
                vec![],
                Some(json!({"upstream": i.upstream, "kind": i.kind, "name": i.name, "version": v})),
            ),
            ToolsAction::Rollback(i, v) => (
                reqwest::Method::POST,
                "/admin/tools/rollback",
                vec![],
                Some(json!({"upstream": i.upstream, "kind": i.kind, "name": i.name, "version": v})),
            ),
        };
    let mut req = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(&token)
        .header(crate::admin::OPERATOR_HEADER, operator)
        .query(&query);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| {
        fail(format!(
            "cannot reach the gateway's admin API at {base}: {}",
            if e.is_connect() {
                "connection refused (is `bastion serve` running?)".to_owned()
            } else {
                e.to_string()
            }
        ))
    })?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| fail(e.to_string()))?;
    if !status.is_success() {
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        return Err(CliError(
            format!("{}: {msg}", status.as_u16()),
            if status.as_u16() == 404 { 4 } else { 1 },
        ));
    }
    if matches!(action, ToolsAction::Diff { .. }) {
        return Ok(text);
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n");
    }
    Ok(match action {
        ToolsAction::List { .. } => list_text(&v),
        ToolsAction::Pending => pending_text(&v),
        ToolsAction::History(_) => history_text(&v),
        _ => format!(
            "{} {} {:?} version {}: {} (accepted: v{})\n",
            g(&v, "upstream").as_str().unwrap_or(""),
            g(&v, "kind").as_str().unwrap_or(""),
            g(&v, "name").as_str().unwrap_or(""),
            g(&v, "version"),
            g(&v, "action").as_str().unwrap_or(""),
            g(&v, "accepted")
        ),
    })
}

/// A member of `v`, `null` when absent.
fn g<'a>(v: &'a Value, k: &str) -> &'a Value {
    v.get(k).unwrap_or(&Value::Null)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn short(h: &Value) -> String {
    h.as_str()
        .map(|h| h.trim_start_matches("sha256:").chars().take(12).collect())
        .unwrap_or_else(|| "-".into())
}

fn list_text(v: &Value) -> String {
    let mut out =
        String::from("UPSTREAM\tKIND\tNAME\tMODE\tACCEPTED\tHASH\tPENDING\tAPPROVED BY\n");
    for r in v.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\tv{}\t{}\t{}\t{}\n",
            s(g(r, "upstream")),
            s(g(r, "kind")),
            s(g(r, "name")),
            s(g(r, "mode")),
            s(g(r, "accepted")),
            short(g(r, "hash")),
            s(g(r, "pending")),
            s(g(r, "approved_by")),
        ));
    }
    out
}

fn pending_text(v: &Value) -> String {
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "nothing pending\n".into();
    }
    let mut out =
        String::from("UPSTREAM\tKIND\tNAME\tVERSION\tACCEPTED\tRISK\tHASH\tWHY\tFINDINGS\n");
    for r in list {
        let findings: Vec<String> = g(&r, "findings")
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .chain(
                g(&r, "hints")
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| format!("hint: {}", s(h))),
            )
            .collect();
        out.push_str(&format!(
            "{}\t{}\t{}\tv{}\tv{}\t{}\t{}\t{}\t{}\n",
            s(g(&r, "upstream")),
            s(g(&r, "kind")),
            s(g(&r, "name")),
            s(g(&r, "version")),
            s(g(&r, "accepted")),
            s(g(&r, "risk")),
            short(g(&r, "hash")),
            s(g(&r, "why")),
            findings.join("; ")
        ));
    }
    out
}

fn history_text(v: &Value) -> String {
    let mut out = format!(
        "{} {} {:?} (mode {}; accepted v{})\n",
        s(g(v, "upstream")),
        s(g(v, "kind")),
        s(g(v, "name")),
        s(g(v, "mode")),
        s(g(v, "accepted"))
    );
    out.push_str("VERSION\tSTATE\tFIRST SEEN\tDECIDED BY\tRISK\tHASH\n");
    for x in g(v, "versions").as_array().into_iter().flatten() {
        let marker = if g(x, "version") == g(v, "accepted") {
            "*"
        } else {
            ""
        };
        out.push_str(&format!(
            "v{}{marker}\t{}\t{}\t{}\t{}\t{}\n",
            s(g(x, "version")),
            s(g(x, "state")),
            g(x, "first_seen")
                .as_u64()
                .map(|t| crate::audit::forensics::rfc3339(t.saturating_mul(1000)))
                .unwrap_or_default(),
            s(g(x, "decided_by")),
            s(g(x, "risk")),
            short(g(x, "hash")),
        ));
    }
    out
}

/// `bastion manifest sign`: signs the manifest at `path` with the Ed25519
/// key in `key_file` (created, mode 0600, when missing), writes
/// `<path>.sig`, and returns the `manifest_key` line for the configuration.
pub fn manifest_sign(path: &Path, key_file: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let m = integrity::parse_manifest(&bytes, &path.display().to_string())
        .map_err(|e| fail(e.to_string()))?;
    let (text, created) = bastion_auth::keyfile::load_or_create(key_file, || {
        bastion_audit::chain::Signer::generate()
            .map(|(_, t)| t)
            .map_err(|e| e.to_string())
    })
    .map_err(|e| fail(format!("{}: {e}", key_file.display())))?;
    let signer = bastion_audit::chain::Signer::from_text(&text).map_err(|e| fail(e.to_string()))?;
    let sig = signer.sign_detached(&bytes);
    let sig_path = integrity::signature_path(path);
    std::fs::write(&sig_path, format!("{sig}\n"))
        .map_err(|e| fail(format!("{}: {e}", sig_path.display())))?;
    let count: usize = m.items.values().map(|x| x.len()).sum();
    Ok(format!(
        "{}signed {} ({count} definitions, sha256 {}) -> {}\nmanifest_key = \"{}\"\n",
        if created {
            format!("created signing key {}\n", key_file.display())
        } else {
            String::new()
        },
        path.display(),
        m.digest,
        sig_path.display(),
        signer.public()
    ))
}

/// `bastion manifest verify`.
pub fn manifest_verify(path: &Path, key: &str) -> Result<String, CliError> {
    let m = integrity::load_manifest(path, key).map_err(|e| CliError(e.to_string(), 3))?;
    let mut out = format!("valid: {} (sha256 {})\n", path.display(), m.digest);
    for (kind, items) in &m.items {
        for (name, hash) in items {
            out.push_str(&format!("{}\t{name}\t{hash}\n", kind.as_str()));
        }
    }
    Ok(out)
}

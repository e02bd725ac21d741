//! `bastion audit`: verify the trail, and the forensics commands that read it
//! (timeline, evidence export, impact). Read-only on the trail: nothing here
//! writes a log file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::args::{AuditCmd, LogArgs};
use crate::audit::forensics;
use crate::config::Config;

/// Runs one `bastion audit` subcommand.
pub(crate) fn run(config: Option<&Path>, cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Verify {
            key,
            open_tail,
            partial,
            paths,
        } => verify(&key, config, open_tail, partial, &paths),
        AuditCmd::Timeline {
            log,
            principal,
            session,
            since,
            json,
        } => timeline(&log, config, principal, session, since.as_deref(), json),
        AuditCmd::Export {
            log,
            session,
            principal,
            since,
            out,
        } => export(&log, config, principal, session, since.as_deref(), &out),
        AuditCmd::Impact {
            log,
            principal,
            since,
            json,
        } => impact(&log, config, &principal, since.as_deref(), json),
    }
}

/// The start of `since` (30d, 12h, ...) in milliseconds since the epoch; 0
/// when not given.
fn since_ms(since: Option<&str>) -> anyhow::Result<u64> {
    Ok(match since {
        None => 0,
        Some(s) => {
            let secs = super::policy::parse_since(s).map_err(anyhow::Error::msg)?;
            bastion_auth::now_secs()
                .saturating_sub(secs)
                .saturating_mul(1000)
        }
    })
}

fn verify(
    key: &[String],
    config: Option<&Path>,
    open_tail: bool,
    partial: bool,
    paths: &[PathBuf],
) -> anyhow::Result<()> {
    let mut keys = Vec::new();
    for k in key {
        keys.push(bastion_audit::chain::parse_public(k)?);
    }
    if let Some(c) = config {
        let cfg = Config::load_for_operator(c)?;
        let text = match &cfg.audit.signing_key {
            Some(s) => s.expose_secret().to_owned(),
            None => {
                let p = format!("{}.key", cfg.audit.path.display());
                std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?
            }
        };
        let s = bastion_audit::Signer::from_text(&text)?;
        keys.push(bastion_audit::chain::parse_public(&s.public())?);
    }
    // `audit/bastion-audit.jsonl*` also matches the trail's signing key, kept
    // beside the log as `<log>.key`: that file is not part of the chain.
    let (keys_beside, logs): (Vec<&PathBuf>, Vec<&PathBuf>) = paths.iter().partition(|p| {
        p.extension().is_some_and(|e| e == "key")
            && paths
                .iter()
                .any(|l| l.as_os_str() == p.with_extension("").as_os_str())
    });
    for k in &keys_beside {
        eprintln!(
            "skipped {}: the trail's signing key, not a log file",
            k.display()
        );
    }
    let logs: Vec<PathBuf> = logs.into_iter().cloned().collect();
    let pinned = !key.is_empty() || config.is_some();
    let r = bastion_audit::verify(
        &logs,
        &bastion_audit::VerifyOptions {
            keys,
            open_tail,
            partial,
        },
    );
    println!(
        "{} records, {} checkpoints in {} file(s); checkpoint keys: {}{}",
        r.records,
        r.checkpoints,
        r.files.len(),
        if r.keys.is_empty() {
            "none".to_owned()
        } else {
            r.keys.join(", ")
        },
        if !pinned && r.problem.is_none() {
            " (not pinned: pass --key or --config to check who signed)"
        } else {
            ""
        }
    );
    match r.problem {
        None => println!("ok"),
        Some(p) => {
            eprintln!("FAILED: first bad record: {p}");
            std::process::exit(1);
        }
    }
    Ok(())
}

fn timeline(
    log: &LogArgs,
    config: Option<&Path>,
    principal: Option<String>,
    session: Option<String>,
    since: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    if principal.is_none() && session.is_none() {
        anyhow::bail!("give --principal and/or --session");
    }
    let (files, _) = log.resolve(config)?;
    let filter = forensics::Filter {
        principal,
        session,
        since_ms: since_ms(since)?,
    };
    let records = forensics::read(&files).map_err(anyhow::Error::msg)?;
    let mut out = std::io::stdout().lock();
    let mut n: u64 = 0;
    for r in &records {
        let Some(ev) = &r.event else { continue };
        if !filter.matches(ev) {
            continue;
        }
        n = n.saturating_add(1);
        if json {
            writeln!(out, "{}", serde_json::json!({"seq": r.seq, "event": ev}))?;
        } else {
            writeln!(out, "{}", forensics::timeline_line(r.seq, ev))?;
        }
    }
    if !json {
        writeln!(out, "{n} events")?;
    }
    Ok(())
}

fn export(
    log: &LogArgs,
    config: Option<&Path>,
    principal: Option<String>,
    session: Option<String>,
    since: Option<&str>,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    if principal.is_none() && session.is_none() {
        anyhow::bail!("give --session and/or --principal");
    }
    let (files, keys) = log.resolve(config)?;
    let filter = forensics::Filter {
        principal,
        session,
        since_ms: since_ms(since)?,
    };
    let n = forensics::export(
        &files,
        &filter,
        out,
        &bastion_audit::VerifyOptions {
            keys,
            open_tail: true,
            partial: false,
        },
    )
    .map_err(anyhow::Error::msg)?;
    println!("{n} records exported to {}", out.display());
    Ok(())
}

fn impact(
    log: &LogArgs,
    config: Option<&Path>,
    principal: &str,
    since: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let (files, _) = log.resolve(config)?;
    let records = forensics::read(&files).map_err(anyhow::Error::msg)?;
    let im = forensics::impact(&records, principal, since_ms(since)?);
    if json {
        println!("{}", serde_json::to_string_pretty(&im)?);
        return Ok(());
    }
    println!(
        "principal {}: {} events, first seen {}, last seen {}",
        im.principal,
        im.events,
        im.first_seen.as_deref().unwrap_or("-"),
        im.last_seen.as_deref().unwrap_or("-")
    );
    println!("requests: {:?}", im.requests);
    for (label, m) in [
        ("upstreams", &im.upstreams),
        ("tools", &im.tools),
        ("resources", &im.resources),
        ("prompts", &im.prompts),
        ("denied", &im.denied),
    ] {
        println!("{label}:");
        for (k, v) in m {
            println!("  {k}  ×{v}");
        }
    }
    println!("sessions: {}", im.sessions.len());
    println!(
        "client addresses: {}",
        im.client_addrs
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "clients: {}",
        im.clients.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

//! The one-shot commands: detection over a file, policy checks and
//! explanations, the access review, tool review on a running gateway,
//! manifests, configuration checks and imports, development tokens. Each
//! reads its inputs, prints its answer and exits non-zero when the answer is
//! a refusal (so scripts can branch on it).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::args::{ManifestCmd, PolicyCmd, ToolsCmd};
use crate::config::Config;

/// `bastion detect`: one verdict per row, then precision/recall; exit 1 when
/// a row scored as an attack.
pub(crate) fn detect(
    kind: super::detect::DetectKind,
    threshold: f32,
    file: &Path,
) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&threshold) {
        anyhow::bail!("--threshold must be within 0..=1");
    }
    let engine = bastion_detect::Engine::new()?;
    let stdout = std::io::stdout().lock();
    let out = std::io::BufWriter::new(stdout);
    let clean = if file.as_os_str() == "-" {
        super::detect::run(&engine, kind, threshold, std::io::stdin().lock(), out)?
    } else {
        let input =
            std::fs::File::open(file).with_context(|| format!("open {}", file.display()))?;
        super::detect::run(
            &engine,
            kind,
            threshold,
            std::io::BufReader::new(input),
            out,
        )?
    };
    if !clean {
        std::process::exit(1);
    }
    Ok(())
}

/// Loads policies from a configuration and/or explicit files.
fn load_policies(
    config: Option<&Config>,
    files: &[PathBuf],
) -> anyhow::Result<(bastion_policy::Engine, usize)> {
    let mut sources = Vec::new();
    if let Some(c) = config
        && !c.policy.files.is_empty()
    {
        let (s, _) = crate::pipeline::authz::read_sources(&c.policy.files)?;
        sources.extend(s);
    }
    for f in files {
        sources.push(bastion_policy::Source {
            name: f.display().to_string(),
            text: std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        });
    }
    let n = sources.len();
    let allow_all = config.is_some_and(|c| c.policy.dangerous_allow_all) && files.is_empty();
    Ok((bastion_policy::Engine::new(&sources, allow_all)?, n))
}

/// `bastion policy check|explain`; explain exits 3 on a denial.
pub(crate) fn policy(config: Option<&Path>, cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Check { files } => {
            if config.is_none() && files.is_empty() {
                anyhow::bail!("give -c FILE and/or policy files to check");
            }
            let cfg = config.map(Config::load_for_operator).transpose()?;
            let (engine, n) = load_policies(cfg.as_ref(), &files)?;
            println!(
                "ok: {} policies in {n} file(s) validate against the schema",
                engine.len()
            );
        }
        PolicyCmd::Explain {
            policies,
            principal,
            action,
            resource,
            context,
            json,
        } => {
            if config.is_none() && policies.is_empty() {
                anyhow::bail!("give -c FILE or --policies FILE...");
            }
            let cfg = config.map(Config::load_for_operator).transpose()?;
            let (engine, _) = load_policies(cfg.as_ref(), &policies)?;
            let who = super::policy::Subject::parse(&principal).map_err(anyhow::Error::msg)?;
            let what = super::policy::Named::parse(&resource).map_err(anyhow::Error::msg)?;
            let sit =
                super::policy::Situation::parse(context.as_deref()).map_err(anyhow::Error::msg)?;
            let e = super::policy::explain(&engine, cfg.as_ref(), &who, &action, &what, &sit);
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                print!("{}", super::policy::explain_text(&e));
            }
            if e.decision != "allow" {
                std::process::exit(3);
            }
        }
    }
    Ok(())
}

/// `bastion access-review`: granted against used, per principal.
pub(crate) fn access_review(
    config: &Path,
    since: &str,
    audit: &[PathBuf],
    json: bool,
) -> anyhow::Result<()> {
    let cfg = Config::load_for_operator(config)?;
    let (engine, _) = load_policies(Some(&cfg), &[])?;
    let secs = super::policy::parse_since(since).map_err(anyhow::Error::msg)?;
    let since_ms = bastion_auth::now_secs()
        .saturating_sub(secs)
        .saturating_mul(1000);
    let paths: Vec<&Path> = if audit.is_empty() {
        vec![cfg.audit.path.as_path()]
    } else {
        audit.iter().map(PathBuf::as_path).collect()
    };
    let r = super::policy::access_review(&engine, Some(&cfg), &paths, since_ms)
        .map_err(anyhow::Error::msg)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&super::policy::review_json(&r))?
        );
    } else {
        print!("{}", super::policy::review_table(&r));
    }
    Ok(())
}

/// `bastion tools ...` against the running gateway's admin API.
pub(crate) fn tools(
    rt: &tokio::runtime::Runtime,
    config: &Path,
    json: bool,
    cmd: ToolsCmd,
) -> anyhow::Result<()> {
    use super::tools::ToolsAction;
    let cfg = Config::load_for_operator(config)?;
    let action = match cmd {
        ToolsCmd::List { upstream } => ToolsAction::List { upstream },
        ToolsCmd::Pending => ToolsAction::Pending,
        ToolsCmd::Diff { item, from, to } => ToolsAction::Diff {
            item: item.into_item()?,
            from,
            to,
        },
        ToolsCmd::Approve { item, version } => ToolsAction::Approve(item.into_item()?, version),
        ToolsCmd::Reject { item, version } => ToolsAction::Reject(item.into_item()?, version),
        ToolsCmd::History { item } => ToolsAction::History(item.into_item()?),
        ToolsCmd::Rollback { item, to } => ToolsAction::Rollback(item.into_item()?, to),
    };
    match rt.block_on(super::tools::run(&cfg, action, json)) {
        Ok(out) => print!("{out}"),
        Err(e) => {
            eprintln!("bastion tools: {}", e.0);
            std::process::exit(e.1);
        }
    }
    Ok(())
}

/// `bastion manifest sign|verify`.
pub(crate) fn manifest(cmd: ManifestCmd) -> anyhow::Result<()> {
    let r = match cmd {
        ManifestCmd::Sign { key, manifest } => super::tools::manifest_sign(&manifest, &key),
        ManifestCmd::Verify { key, manifest } => super::tools::manifest_verify(&manifest, &key),
    };
    match r {
        Ok(out) => print!("{out}"),
        Err(e) => {
            eprintln!("bastion manifest: {}", e.0);
            std::process::exit(e.1);
        }
    }
    Ok(())
}

/// `bastion check-config`: loads the file as `serve` would and checks what
/// `serve` would refuse at start (the policy files: each glob matches, each
/// file validates against the schema; the listeners' certificates and keys
/// load), naming each problem; then the dangerous settings in it. Exit 0:
/// `serve` would start on it; 1: it would not (each reason on stderr).
pub(crate) fn check_config(file: &Path, skip_unresolved_secrets: bool) -> anyhow::Result<()> {
    let cfg = if skip_unresolved_secrets {
        Config::load_for_operator(file)?
    } else {
        Config::load(file)?
    };
    let mut problems = Vec::new();
    if (!cfg.policy.files.is_empty() || !cfg.policy.dangerous_allow_all)
        && let Err(e) = load_policies(Some(&cfg), &[])
    {
        problems.push(format!("policy: {e:#}"));
    }
    if let Some(t) = &cfg.server.tls
        && let Err(e) = crate::transport::listener::tls_config(t)
    {
        problems.push(format!("[server.tls]: {e}"));
    }
    if let Some(t) = &cfg.admin.tls
        && let Err(e) = crate::transport::listener::tls_config(t)
    {
        problems.push(format!("[admin.tls]: {e}"));
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{}: {p}", file.display());
        }
        anyhow::bail!(
            "{}: {} problem(s); `serve` would refuse to start",
            file.display(),
            problems.len()
        );
    }
    println!(
        "{}: ok ({} upstream(s))",
        file.display(),
        cfg.upstreams.len()
    );
    for d in cfg.dangerous_settings() {
        println!("warning: {d}");
    }
    Ok(())
}

/// `bastion import`: `mcpServers` JSON to `[[upstream]]` tables; secrets are
/// named, never copied.
pub(crate) fn import(file: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let out = crate::config::import::convert(&text).with_context(|| file.display().to_string())?;
    print!("{}", out.toml);
    for (var, why) in &out.required_env {
        eprintln!("set {var} in the gateway's environment ({why}); the value was not copied");
    }
    for s in &out.skipped {
        eprintln!("skipped {s}");
    }
    Ok(())
}

/// `bastion dev-token`: a short-lived token from the development issuer.
pub(crate) fn dev_token(
    config: &Path,
    sub: &str,
    scope: &[String],
    ttl: u64,
    client_id: &str,
) -> anyhow::Result<()> {
    let cfg = Config::load_for_operator(config)?;
    if ttl == 0 || ttl > 3600 {
        anyhow::bail!("--ttl must be between 1 and 3600 seconds");
    }
    let scopes: Vec<String> = scope
        .iter()
        .flat_map(|s| s.split([' ', ',']))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    println!(
        "{}",
        super::serve::dev_token(&cfg, sub, &scopes, ttl, client_id)?
    );
    Ok(())
}

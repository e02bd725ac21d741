//! The `bastion` command line.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use std::io::Write as _;

use anyhow::Context as _;
use bastion::audit::{AuditEvent, AuditSink, ChainSink, EventKind, Outcome};
use bastion::config::Config;
use bastion::gateway::Gateway;
use clap::{Parser, Subcommand};

/// A gateway allocates and frees many small buffers per request (JSON values,
/// headers, bodies): mimalloc's thread-local free lists make that cheaper than
/// glibc's allocator (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mcp-bastion: a security gateway for the Model Context Protocol.
#[derive(Debug, Parser)]
#[command(name = "bastion", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the gateway.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and exit (0 = valid).
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
    },
    /// Convert an `mcpServers` JSON file (Claude Desktop, VS Code, Cursor) into
    /// `[[upstream]]` tables on stdout.
    Import {
        /// The JSON file.
        file: PathBuf,
    },
    /// Run the gateway on loopback in front of the built-in demo upstream.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Mint a short-lived access token from the development issuer of a
    /// `dangerous_dev_issuer` configuration (local use only).
    DevToken {
        /// Configuration file (TOML) with `auth.mode = "dangerous_dev_issuer"`.
        #[arg(long, short)]
        config: PathBuf,
        /// Subject (user) of the token.
        #[arg(long)]
        sub: String,
        /// Scopes, space-separated or repeated.
        #[arg(long)]
        scope: Vec<String>,
        /// Lifetime in seconds (at most 3600).
        #[arg(long, default_value_t = 600)]
        ttl: u64,
        /// Client id recorded in the token.
        #[arg(long, default_value = "bastion-dev-token")]
        client_id: String,
    },
    /// Check policy files, or explain one decision.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Per principal: what the policies grant against what the audit trail
    /// shows was used (least-privilege review).
    AccessReview {
        /// Configuration file (TOML): its policies, upstream labels and audit file.
        #[arg(long, short)]
        config: PathBuf,
        /// The period reviewed: 30d, 12h, 90m, 3600s.
        #[arg(long, default_value = "30d")]
        since: String,
        /// Audit files to read (default: the configuration's `[audit] path`).
        #[arg(long)]
        audit: Vec<PathBuf>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The audit trail: verify it.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Tool integrity: review, approve, reject and roll back definitions on
    /// the running gateway (through its admin API).
    Tools {
        /// The gateway's configuration (its [admin] listen and token).
        #[arg(long, short)]
        config: PathBuf,
        /// Machine-readable output.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: ToolsCmd,
    },
    /// Signed tool manifests.
    Manifest {
        #[command(subcommand)]
        cmd: ManifestCmd,
    },
    /// Run the detection engine over a JSONL file (one `{"id", "tool" | "text", "label"?}`
    /// per line): one verdict per line, then precision/recall when labelled.
    Detect {
        /// What the rows hold.
        #[arg(long, value_enum)]
        kind: bastion::cli::detect::DetectKind,
        /// Score at or above which a row is an attack.
        #[arg(long, default_value_t = 0.5)]
        threshold: f32,
        /// The JSONL file ("-" for standard input).
        file: PathBuf,
    },
    /// The built-in demo MCP server on stdio (what `demo` runs as its upstream).
    #[command(hide = true)]
    DemoUpstream,
}

/// Names one pinned item.
#[derive(Debug, clap::Args)]
struct ItemArgs {
    /// The upstream's name.
    upstream: String,
    /// The item's own name on that upstream (omit for --kind instructions).
    name: Option<String>,
    /// tool, prompt, template or instructions.
    #[arg(long, default_value = "tool")]
    kind: String,
}

impl ItemArgs {
    fn into_item(self) -> anyhow::Result<bastion::cli::tools::ItemArg> {
        if self.kind != "instructions" && self.name.is_none() {
            anyhow::bail!("name the {} (or use --kind instructions)", self.kind);
        }
        Ok(bastion::cli::tools::ItemArg {
            upstream: self.upstream,
            kind: self.kind,
            name: self.name.unwrap_or_default(),
        })
    }
}

#[derive(Debug, Subcommand)]
enum ToolsCmd {
    /// Every pinned definition and its accepted version.
    List {
        /// Only this upstream.
        #[arg(long)]
        upstream: Option<String>,
    },
    /// Definitions waiting for review, riskiest first.
    Pending,
    /// A unified diff of the canonical JSON (default: accepted vs newest pending).
    Diff {
        #[command(flatten)]
        item: ItemArgs,
        /// From this version.
        #[arg(long)]
        from: Option<u32>,
        /// To this version.
        #[arg(long)]
        to: Option<u32>,
    },
    /// Approve a version (default: the newest pending one); it is exposed at once.
    Approve {
        #[command(flatten)]
        item: ItemArgs,
        /// The version to approve.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Reject a version (default: the newest pending one).
    Reject {
        #[command(flatten)]
        item: ItemArgs,
        /// The version to reject.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Every version, who decided it and when.
    History {
        #[command(flatten)]
        item: ItemArgs,
    },
    /// Make an earlier approved version the only accepted one again.
    Rollback {
        #[command(flatten)]
        item: ItemArgs,
        /// The version to return to.
        #[arg(long)]
        to: u32,
    },
}

#[derive(Debug, Subcommand)]
enum ManifestCmd {
    /// Sign a manifest: writes MANIFEST.sig and prints the manifest_key line.
    Sign {
        /// The Ed25519 private key file (created with mode 0600 when missing).
        #[arg(long)]
        key: PathBuf,
        /// The manifest (JSON with "tools", optionally "prompts",
        /// "resourceTemplates", "instructions").
        manifest: PathBuf,
    },
    /// Verify a manifest's signature and list what it pins (exit 3 if invalid).
    Verify {
        /// The public key, ed25519:<base64>.
        #[arg(long)]
        key: String,
        /// The manifest.
        manifest: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Verify the chain and every checkpoint of one log (rotated files in any
    /// order); exit 0 only when all of it verifies, else name the first bad
    /// record.
    Verify {
        /// Trusted checkpoint public key(s), `ed25519:<base64>` (repeatable).
        #[arg(long)]
        key: Vec<String>,
        /// Take the trusted key from this configuration's `[audit]` signing key.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Accept a last record that is not a checkpoint (a live or crashed log).
        #[arg(long)]
        open_tail: bool,
        /// Accept a chain that does not start at record 0 (older files removed).
        #[arg(long)]
        partial: bool,
        /// The log files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// The events of a principal and/or session, in order.
    Timeline {
        #[command(flatten)]
        log: LogArgs,
        /// The principal (`sub`).
        #[arg(long)]
        principal: Option<String>,
        /// The session: its id, or its digest as the trail records it.
        #[arg(long)]
        session: Option<String>,
        /// Only events in this period: 30d, 12h, 90m, 3600s.
        #[arg(long)]
        since: Option<String>,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write an evidence bundle (events, checkpoints, verification, manifest).
    Export {
        #[command(flatten)]
        log: LogArgs,
        /// The session: its id, or its digest.
        #[arg(long)]
        session: Option<String>,
        /// The principal (`sub`).
        #[arg(long)]
        principal: Option<String>,
        /// Only events in this period.
        #[arg(long)]
        since: Option<String>,
        /// The bundle's directory (created; existing files are not overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// What a principal touched: upstreams, tools, resources, prompts,
    /// sessions, volumes, first and last seen.
    Impact {
        #[command(flatten)]
        log: LogArgs,
        /// The principal (`sub`).
        #[arg(long)]
        principal: String,
        /// Only events in this period.
        #[arg(long)]
        since: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Which log to read.
#[derive(Debug, clap::Args)]
struct LogArgs {
    /// The configuration whose `[audit] path` (with its rotated files) to read;
    /// also the checkpoint key for verification.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Log files instead (any order).
    #[arg(long = "log")]
    files: Vec<PathBuf>,
}

impl LogArgs {
    /// The files in chain order, and the trusted key when a config names one.
    fn resolve(&self) -> anyhow::Result<(Vec<PathBuf>, Vec<Vec<u8>>)> {
        let mut keys = Vec::new();
        let mut files = self.files.clone();
        if let Some(c) = &self.config {
            let cfg = Config::load(c)?;
            files.extend(bastion::audit::forensics::log_files(&cfg.audit.path));
            let text = match &cfg.audit.signing_key {
                Some(s) => Some(s.expose_secret().to_owned()),
                None => std::fs::read_to_string(format!("{}.key", cfg.audit.path.display())).ok(),
            };
            if let Some(t) = text {
                let s = bastion_audit::Signer::from_text(&t)?;
                keys.push(bastion_audit::chain::parse_public(&s.public())?);
            }
        }
        if files.is_empty() {
            anyhow::bail!("give --config FILE or --log FILE...");
        }
        Ok((files, keys))
    }
}

fn since_ms(since: Option<&str>) -> anyhow::Result<u64> {
    Ok(match since {
        None => 0,
        Some(s) => {
            let secs = bastion::cli::policy::parse_since(s).map_err(anyhow::Error::msg)?;
            bastion_auth::now_secs()
                .saturating_sub(secs)
                .saturating_mul(1000)
        }
    })
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Validate policies strictly against the schema (exit 0 = valid).
    Check {
        /// Configuration file whose `[policy] files` to check.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Policy files to check (instead of, or besides, the configuration's).
        files: Vec<PathBuf>,
    },
    /// Decide one request and say why (exit 0 = allow, 3 = deny).
    Explain {
        /// Configuration file: its policies and the upstreams' labels and risk.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Policy files (instead of a configuration).
        #[arg(long = "policies")]
        policies: Vec<PathBuf>,
        /// A subject, or JSON: {"sub": "...", "groups": [...], "scopes": [...], "roles": [...], "issuer": "...", "client_id": "..."}.
        #[arg(long)]
        principal: String,
        /// The action, spelled as the MCP method (tools/call, tools/list, ...).
        #[arg(long)]
        action: String,
        /// Bastion::Tool::"upstream/name", or tool:upstream/name, prompt:…, resource:…, upstream:NAME, gateway.
        #[arg(long)]
        resource: String,
        /// JSON: {"arguments": {...}, "time": SECONDS, "client_ip": "...", "session_risk": N}.
        #[arg(long)]
        context: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
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
        let (s, _) = bastion::pipeline::authz::read_sources(&c.policy.files)?;
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BASTION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::DemoUpstream => rt.block_on(bastion::cli::demo::run_upstream())?,
        Cmd::Detect {
            kind,
            threshold,
            file,
        } => {
            if !(0.0..=1.0).contains(&threshold) {
                anyhow::bail!("--threshold must be within 0..=1");
            }
            let engine = bastion_detect::Engine::new()?;
            let stdout = std::io::stdout().lock();
            let out = std::io::BufWriter::new(stdout);
            let clean = if file.as_os_str() == "-" {
                bastion::cli::detect::run(&engine, kind, threshold, std::io::stdin().lock(), out)?
            } else {
                let input = std::fs::File::open(&file)
                    .with_context(|| format!("open {}", file.display()))?;
                bastion::cli::detect::run(
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
        }
        Cmd::Audit {
            cmd:
                AuditCmd::Verify {
                    key,
                    config,
                    open_tail,
                    partial,
                    paths,
                },
        } => {
            let mut keys = Vec::new();
            for k in &key {
                keys.push(bastion_audit::chain::parse_public(k)?);
            }
            if let Some(c) = config {
                let cfg = Config::load(&c)?;
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
            let r = bastion_audit::verify(
                &paths,
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
                if key.is_empty() && r.problem.is_none() {
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
        }
        Cmd::Audit {
            cmd:
                AuditCmd::Timeline {
                    log,
                    principal,
                    session,
                    since,
                    json,
                },
        } => {
            if principal.is_none() && session.is_none() {
                anyhow::bail!("give --principal and/or --session");
            }
            let (files, _) = log.resolve()?;
            let filter = bastion::audit::forensics::Filter {
                principal,
                session,
                since_ms: since_ms(since.as_deref())?,
            };
            let records = bastion::audit::forensics::read(&files).map_err(anyhow::Error::msg)?;
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
                    writeln!(
                        out,
                        "{}",
                        bastion::audit::forensics::timeline_line(r.seq, ev)
                    )?;
                }
            }
            if !json {
                writeln!(out, "{n} events")?;
            }
        }
        Cmd::Audit {
            cmd:
                AuditCmd::Export {
                    log,
                    session,
                    principal,
                    since,
                    out,
                },
        } => {
            if principal.is_none() && session.is_none() {
                anyhow::bail!("give --session and/or --principal");
            }
            let (files, keys) = log.resolve()?;
            let filter = bastion::audit::forensics::Filter {
                principal,
                session,
                since_ms: since_ms(since.as_deref())?,
            };
            let n = bastion::audit::forensics::export(
                &files,
                &filter,
                &out,
                &bastion_audit::VerifyOptions {
                    keys,
                    open_tail: true,
                    partial: false,
                },
            )
            .map_err(anyhow::Error::msg)?;
            println!("{n} records exported to {}", out.display());
        }
        Cmd::Audit {
            cmd:
                AuditCmd::Impact {
                    log,
                    principal,
                    since,
                    json,
                },
        } => {
            let (files, _) = log.resolve()?;
            let records = bastion::audit::forensics::read(&files).map_err(anyhow::Error::msg)?;
            let im = bastion::audit::forensics::impact(
                &records,
                &principal,
                since_ms(since.as_deref())?,
            );
            if json {
                println!("{}", serde_json::to_string_pretty(&im)?);
            } else {
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
            }
        }
        Cmd::Policy {
            cmd: PolicyCmd::Check { config, files },
        } => {
            if config.is_none() && files.is_empty() {
                anyhow::bail!("give --config FILE and/or policy files to check");
            }
            let cfg = config.as_deref().map(Config::load).transpose()?;
            let (engine, n) = load_policies(cfg.as_ref(), &files)?;
            println!(
                "ok: {} policies in {n} file(s) validate against the schema",
                engine.len()
            );
        }
        Cmd::Policy {
            cmd:
                PolicyCmd::Explain {
                    config,
                    policies,
                    principal,
                    action,
                    resource,
                    context,
                    json,
                },
        } => {
            if config.is_none() && policies.is_empty() {
                anyhow::bail!("give --config FILE or --policies FILE...");
            }
            let cfg = config.as_deref().map(Config::load).transpose()?;
            let (engine, _) = load_policies(cfg.as_ref(), &policies)?;
            let who =
                bastion::cli::policy::Subject::parse(&principal).map_err(anyhow::Error::msg)?;
            let what = bastion::cli::policy::Named::parse(&resource).map_err(anyhow::Error::msg)?;
            let sit = bastion::cli::policy::Situation::parse(context.as_deref())
                .map_err(anyhow::Error::msg)?;
            let e =
                bastion::cli::policy::explain(&engine, cfg.as_ref(), &who, &action, &what, &sit);
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                print!("{}", bastion::cli::policy::explain_text(&e));
            }
            if e.decision != "allow" {
                std::process::exit(3);
            }
        }
        Cmd::AccessReview {
            config,
            since,
            audit,
            json,
        } => {
            let cfg = Config::load(&config)?;
            let (engine, _) = load_policies(Some(&cfg), &[])?;
            let secs = bastion::cli::policy::parse_since(&since).map_err(anyhow::Error::msg)?;
            let since_ms = bastion_auth::now_secs()
                .saturating_sub(secs)
                .saturating_mul(1000);
            let paths: Vec<&std::path::Path> = if audit.is_empty() {
                vec![cfg.audit.path.as_path()]
            } else {
                audit.iter().map(PathBuf::as_path).collect()
            };
            let r = bastion::cli::policy::access_review(&engine, Some(&cfg), &paths, since_ms)
                .map_err(anyhow::Error::msg)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&bastion::cli::policy::review_json(&r))?
                );
            } else {
                print!("{}", bastion::cli::policy::review_table(&r));
            }
        }
        Cmd::Tools { config, json, cmd } => {
            use bastion::cli::tools::ToolsAction;
            let cfg = Config::load(&config)?;
            let action = match cmd {
                ToolsCmd::List { upstream } => ToolsAction::List { upstream },
                ToolsCmd::Pending => ToolsAction::Pending,
                ToolsCmd::Diff { item, from, to } => ToolsAction::Diff {
                    item: item.into_item()?,
                    from,
                    to,
                },
                ToolsCmd::Approve { item, version } => {
                    ToolsAction::Approve(item.into_item()?, version)
                }
                ToolsCmd::Reject { item, version } => {
                    ToolsAction::Reject(item.into_item()?, version)
                }
                ToolsCmd::History { item } => ToolsAction::History(item.into_item()?),
                ToolsCmd::Rollback { item, to } => ToolsAction::Rollback(item.into_item()?, to),
            };
            match rt.block_on(bastion::cli::tools::run(&cfg, action, json)) {
                Ok(out) => print!("{out}"),
                Err(e) => {
                    eprintln!("bastion tools: {}", e.0);
                    std::process::exit(e.1);
                }
            }
        }
        Cmd::Manifest { cmd } => {
            let r = match cmd {
                ManifestCmd::Sign { key, manifest } => {
                    bastion::cli::tools::manifest_sign(&manifest, &key)
                }
                ManifestCmd::Verify { key, manifest } => {
                    bastion::cli::tools::manifest_verify(&manifest, &key)
                }
            };
            match r {
                Ok(out) => print!("{out}"),
                Err(e) => {
                    eprintln!("bastion manifest: {}", e.0);
                    std::process::exit(e.1);
                }
            }
        }
        Cmd::CheckConfig { file } => {
            let cfg = Config::load(&file)?;
            println!(
                "{}: ok ({} upstream(s))",
                file.display(),
                cfg.upstreams.len()
            );
            for d in cfg.dangerous_settings() {
                println!("warning: {d}");
            }
        }
        Cmd::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let out = bastion::config::import::convert(&text)
                .with_context(|| file.display().to_string())?;
            print!("{}", out.toml);
            for (var, why) in &out.required_env {
                eprintln!(
                    "set {var} in the gateway's environment ({why}); the value was not copied"
                );
            }
            for s in &out.skipped {
                eprintln!("skipped {s}");
            }
        }
        Cmd::DevToken {
            config,
            sub,
            scope,
            ttl,
            client_id,
        } => {
            let cfg = Config::load(&config)?;
            if ttl == 0 || ttl > 3600 {
                anyhow::bail!("--ttl must be between 1 and 3600 seconds");
            }
            let scopes: Vec<String> = scope
                .iter()
                .flat_map(|s| s.split([' ', ',']))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            println!("{}", dev_token(&cfg, &sub, &scopes, ttl, &client_id)?);
        }
        Cmd::Serve { config } => {
            init_tracing();
            let cfg = Config::load(&config)?;
            rt.block_on(serve(cfg, None))?;
        }
        Cmd::Demo { listen } => {
            init_tracing();
            let exe = std::env::current_exe()?.display().to_string();
            let dir = demo_state_dir()?;
            let audit = dir.join("demo-audit.jsonl").display().to_string();
            let key = dir.join("demo-dev-issuer.key").display().to_string();
            let policy = dir.join("demo-policy.cedar");
            std::fs::write(&policy, bastion::cli::demo::DEMO_POLICY)
                .with_context(|| format!("writing {}", policy.display()))?;
            let policy = policy.display().to_string();
            let text = bastion::cli::demo::demo_config_toml(&listen, &exe, &audit, &key, &policy);
            let cfg = Config::parse(&text, "<demo>")?;
            let url = cfg.server.public_url.to_string();
            let token = dev_token(
                &cfg,
                "demo-user",
                &["mcp:tools".to_owned()],
                3600,
                "bastion-demo",
            )?;
            rt.block_on(serve(
                cfg,
                Some(bastion::cli::demo::banner(&url, &audit, &token, &policy)),
            ))?;
        }
    }
    Ok(())
}

/// A per-user directory (mode 0700) for the demo's signing key: never a shared
/// temporary directory, where another user could plant a key they know.
fn demo_state_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").into()))
        .map(PathBuf::from)
        .context("neither XDG_RUNTIME_DIR nor HOME is set")?;
    let dir = base.join("mcp-bastion");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let meta = std::fs::metadata(&dir)?;
    let base_owner = std::fs::metadata(&base)?.uid();
    if meta.uid() != base_owner || meta.permissions().mode() & 0o077 != 0 {
        anyhow::bail!(
            "{} must be owned by you and not accessible to others (mode 0700)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Mints a development-issuer token for `cfg` (which must use that mode).
fn dev_token(
    cfg: &Config,
    sub: &str,
    scopes: &[String],
    ttl: u64,
    client_id: &str,
) -> anyhow::Result<String> {
    let bastion::config::AuthMode::DangerousDevIssuer { key_file, .. } = &cfg.auth else {
        anyhow::bail!("dev-token needs auth.mode = \"dangerous_dev_issuer\" in the configuration");
    };
    let public = &cfg.server.public_url;
    let issuer = format!(
        "{}{}",
        public.origin().ascii_serialization(),
        bastion::transport::auth::DEV_ISSUER_PATH
    );
    let dev = bastion_auth::DevIssuer::load_or_create(&issuer, key_file)?;
    Ok(dev.mint(public.as_str(), sub, scopes, ttl, client_id)?)
}

async fn serve(cfg: Config, banner: Option<String>) -> anyhow::Result<()> {
    for d in cfg.dangerous_settings() {
        tracing::warn!("dangerous setting in effect: {d}");
    }
    let chain = Arc::new(ChainSink::open(&cfg.audit)?);
    tracing::info!(path = %cfg.audit.path.display(), key = %chain.public_key(), "audit trail open");
    let sink: Arc<dyn AuditSink> = chain;
    let listen = cfg.server.listen;
    let gw = Gateway::new(cfg, sink.clone())?;
    gw.startup_name_check().await.map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(%listen, url = %gw.cfg.server.public_url, upstreams = gw.upstreams.len(), "bastion listening");
    sink.emit(AuditEvent::new(EventKind::Gateway, Outcome::Ok));
    if let Some(b) = banner {
        println!("{b}");
    }
    let router = bastion::transport::http::router(gw.clone());
    // The admin listener (metrics) runs beside the MCP one and stops with the
    // process.
    if let Some(admin) = gw.cfg.admin.listen {
        let l = tokio::net::TcpListener::bind(admin)
            .await
            .with_context(|| format!("binding the admin listener {admin}"))?;
        // A certificate that cannot be loaded stops the start (fail closed),
        // rather than leaving the admin API silently absent.
        if let Some(t) = &gw.cfg.admin.tls {
            bastion::transport::listener::tls_config(t).context("the admin listener's TLS")?;
        }
        tracing::info!(%admin, tls = gw.cfg.admin.tls.is_some(), "admin listener (metrics, admin API)");
        let g = gw.clone();
        tokio::spawn(async move {
            if let Err(e) = bastion::transport::listener::serve_admin(g, l).await {
                tracing::error!(error = %e, "admin listener stopped");
            }
        });
    }
    // SIGINT or SIGTERM: stop accepting, then end every session so upstream
    // sessions are DELETEd and stdio children reaped.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    // Exporters read the trail itself and resume where they stopped.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut exporters: Vec<_> = gw
        .cfg
        .audit
        .syslog
        .iter()
        .map(|s| {
            tokio::spawn(bastion::audit::export::syslog(
                s.clone(),
                gw.cfg.audit.path.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    if gw.cfg.audit.stdout {
        exporters.push(tokio::spawn(bastion::audit::export::stdout(
            gw.cfg.audit.path.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(o) = &gw.cfg.audit.otlp {
        exporters.push(tokio::spawn(bastion::audit::otlp::export(
            o.clone(),
            gw.cfg.audit.path.clone(),
            stop_rx.clone(),
        )));
    }
    let res = bastion::transport::listener::serve(gw, listener, router, shutdown).await;
    let mut ev = AuditEvent::new(EventKind::Gateway, Outcome::Ok);
    ev.reason = Some("gateway stopped".into());
    sink.emit(ev);
    // Everything queued is written and a final checkpoint signs the log.
    sink.close();
    // A last export pass sends the final records (bounded: a collector that is
    // down gets them on the next start).
    let _ = stop_tx.send(true);
    for e in exporters {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), e).await;
    }
    res?;
    Ok(())
}

//! The `bastion` command line.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use bastion::audit::{AuditEvent, AuditSink, EventKind, JsonlSink, Outcome};
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
    /// The built-in demo MCP server on stdio (what `demo` runs as its upstream).
    #[command(hide = true)]
    DemoUpstream,
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
        Cmd::DemoUpstream => rt.block_on(bastion::demo::run_upstream())?,
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
            let out =
                bastion::import::convert(&text).with_context(|| file.display().to_string())?;
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
            let audit = std::env::temp_dir()
                .join("bastion-demo-audit.jsonl")
                .display()
                .to_string();
            let key = demo_state_dir()?
                .join("demo-dev-issuer.key")
                .display()
                .to_string();
            let text = bastion::demo::demo_config_toml(&listen, &exe, &audit, &key);
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
                Some(bastion::demo::banner(&url, &audit, &token)),
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
        bastion::auth::DEV_ISSUER_PATH
    );
    let dev = bastion_auth::DevIssuer::load_or_create(&issuer, key_file)?;
    Ok(dev.mint(public.as_str(), sub, scopes, ttl, client_id)?)
}

async fn serve(cfg: Config, banner: Option<String>) -> anyhow::Result<()> {
    for d in cfg.dangerous_settings() {
        tracing::warn!("dangerous setting in effect: {d}");
    }
    let sink: Arc<dyn AuditSink> = Arc::new(
        JsonlSink::open(&cfg.audit.path)
            .with_context(|| format!("opening audit file {}", cfg.audit.path.display()))?,
    );
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
    let router = bastion::server::router(gw.clone());
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
    bastion::listener::serve(gw, listener, router, shutdown).await?;
    Ok(())
}

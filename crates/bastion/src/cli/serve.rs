//! `bastion serve` and `bastion demo`: start the gateway (audit trail,
//! gateway state, startup checks, listeners, exporters) and stop it cleanly
//! on SIGINT/SIGTERM; and the development issuer's tokens (`dev-token`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::audit::{AuditEvent, AuditSink, ChainSink, EventKind, Outcome};
use crate::config::Config;
use crate::gateway::Gateway;

/// Logs to stderr, filtered by `BASTION_LOG` (default `info`), coloured only
/// on a terminal.
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BASTION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: log files and collectors get
    // plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Runs the gateway on loopback in front of the built-in demo upstream (this
/// same executable, `demo-upstream`), with a policy and a token to try it.
pub(crate) async fn demo(listen: &str) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?.display().to_string();
    let dir = demo_state_dir()?;
    let audit = dir.join("demo-audit.jsonl").display().to_string();
    let key = dir.join("demo-dev-issuer.key").display().to_string();
    let policy = dir.join("demo-policy.cedar");
    std::fs::write(&policy, super::demo::DEMO_POLICY)
        .with_context(|| format!("writing {}", policy.display()))?;
    let policy = policy.display().to_string();
    let text = super::demo::demo_config_toml(listen, &exe, &audit, &key, &policy);
    let cfg = Config::parse(&text, "<demo>")?;
    // Written where the banner says, so every command it prints works.
    let config = dir.join("demo.toml");
    std::fs::write(&config, &text).with_context(|| format!("writing {}", config.display()))?;
    let config = config.display().to_string();
    let url = cfg.server.public_url.to_string();
    let token = dev_token(
        &cfg,
        "demo-user",
        &["mcp:tools".to_owned()],
        3600,
        "bastion-demo",
    )?;
    serve(
        cfg,
        Some(super::demo::banner(
            &url, &audit, &token, &policy, &config, &exe,
        )),
    )
    .await
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
pub(crate) fn dev_token(
    cfg: &Config,
    sub: &str,
    scopes: &[String],
    ttl: u64,
    client_id: &str,
) -> anyhow::Result<String> {
    let crate::config::AuthMode::DangerousDevIssuer { key_file, .. } = &cfg.auth else {
        anyhow::bail!("dev-token needs auth.mode = \"dangerous_dev_issuer\" in the configuration");
    };
    let public = &cfg.server.public_url;
    let issuer = format!(
        "{}{}",
        public.origin().ascii_serialization(),
        crate::transport::auth::DEV_ISSUER_PATH
    );
    let dev = bastion_auth::DevIssuer::load_or_create(&issuer, key_file)?;
    Ok(dev.mint(public.as_str(), sub, scopes, ttl, client_id)?)
}

/// Runs the gateway until SIGINT or SIGTERM; `banner` is printed once it
/// listens.
pub(crate) async fn serve(cfg: Config, banner: Option<String>) -> anyhow::Result<()> {
    for d in cfg.dangerous_settings() {
        tracing::warn!("dangerous setting in effect: {d}");
    }
    let chain = Arc::new(ChainSink::open(&cfg.audit)?);
    tracing::info!(path = %cfg.audit.path.display(), key = %chain.public_key(), "audit trail open");
    let sink: Arc<dyn AuditSink> = chain;
    let listen = cfg.server.listen;
    let gw = Gateway::new(cfg, sink.clone())?;
    gw.integrity()
        .startup_name_check()
        .await
        .map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(%listen, url = %gw.cfg.server.public_url, upstreams = gw.upstreams.len(), "bastion listening");
    sink.emit(AuditEvent::new(EventKind::Gateway, Outcome::Ok));
    if let Some(b) = banner {
        println!("{b}");
    }
    let router = crate::transport::http::router(gw.clone());
    // The admin listener (metrics) runs beside the MCP one and stops with the
    // process.
    if let Some(admin) = gw.cfg.admin.listen {
        let l = tokio::net::TcpListener::bind(admin)
            .await
            .with_context(|| format!("binding the admin listener {admin}"))?;
        // A certificate that cannot be loaded stops the start (fail closed),
        // rather than leaving the admin API silently absent.
        if let Some(t) = &gw.cfg.admin.tls {
            crate::transport::listener::tls_config(t).context("the admin listener's TLS")?;
        }
        tracing::info!(%admin, tls = gw.cfg.admin.tls.is_some(), "admin listener (metrics, admin API)");
        let g = gw.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::transport::listener::serve_admin(g, l).await {
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
            tokio::spawn(crate::audit::export::syslog(
                s.clone(),
                gw.cfg.audit.path.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    if gw.cfg.audit.stdout {
        exporters.push(tokio::spawn(crate::audit::export::stdout(
            gw.cfg.audit.path.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(o) = &gw.cfg.audit.otlp {
        exporters.push(tokio::spawn(crate::audit::otlp::export(
            o.clone(),
            gw.cfg.audit.path.clone(),
            stop_rx.clone(),
        )));
    }
    let res = crate::transport::listener::serve(gw, listener, router, shutdown).await;
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

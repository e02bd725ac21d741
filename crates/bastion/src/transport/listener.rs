//! Listeners (the MCP one and the admin one): plain HTTP on loopback, or TLS
//! 1.3 only (rustls) when a certificate is configured. Both shut down gracefully on the given signal and
//! then end every session so upstream children are reaped.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::TlsConfig;
use crate::gateway::Gateway;

/// Why the listener could not run.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Bind or accept failure.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// Certificate or key unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The tool-integrity state could not be loaded.
    #[error("tool integrity: {0}")]
    Integrity(String),
}

/// Builds a rustls server config that accepts TLS 1.3 only.
pub fn tls_config(t: &TlsConfig) -> Result<rustls::ServerConfig, ListenError> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&t.cert)
            .map_err(|e| ListenError::Tls(format!("{}: {e}", t.cert.display())))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| ListenError::Tls(format!("{}: {e}", t.cert.display())))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&t.key)
            .map_err(|e| ListenError::Tls(format!("{}: {e}", t.key.display())))?,
    ))
    .map_err(|e| ListenError::Tls(format!("{}: {e}", t.key.display())))?
    .ok_or_else(|| ListenError::Tls(format!("{}: no private key found", t.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ListenError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ListenError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ListenError> {
    // SIGHUP is taken over first: its default action ends the process, and
    // an operator may send it while the start-up inventory runs.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    // Tool integrity: pins loaded and every upstream inventoried before the
    // first request is served (the `tofu` baseline is taken here).
    let complete = gw.start_integrity().await.map_err(ListenError::Integrity)?;
    let monitor = {
        let gw = gw.clone();
        tokio::spawn(async move {
            // Every re-list interval; an incomplete inventory (a kind without
            // its baseline stays unapproved) is retried sooner, 2 s doubling
            // up to the interval.
            let every = gw.cfg.integrity.relist_interval;
            let mut retry = Duration::from_secs(2).min(every);
            let mut complete = complete;
            loop {
                let wait = if complete { every } else { retry };
                tokio::time::sleep(wait).await;
                complete = gw.integrity().inventory_all().await;
                retry = if complete {
                    Duration::from_secs(2).min(every)
                } else {
                    retry.saturating_mul(2).min(every)
                };
            }
        })
    };
    let reaper = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(30));
            loop {
                t.tick().await;
                gw.reap_idle().await;
            }
        })
    };
    // Revocations: loaded now; with a shared store, mirrored every second so a
    // revocation made on one instance holds on all of them.
    if let Err(e) = gw.sync_revocations().await {
        tracing::warn!(error = %e, "revocations not loaded yet; retrying");
    }
    let syncer = {
        let gw = gw.clone();
        tokio::spawn(async move {
            if !matches!(gw.store, crate::state::store::Backend::Redis(_)) {
                return;
            }
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                t.tick().await;
                if let Err(e) = gw.sync_revocations().await {
                    tracing::warn!(error = %e, "revocation sync failed; keeping the last list");
                }
                // Approvals and quarantines made on another instance.
                if let Err(e) = gw.pins.refresh(&gw.store).await {
                    tracing::warn!(error = %e, "tool pin sync failed; keeping the last pins");
                }
            }
        })
    };
    // Policies: re-read on SIGHUP and whenever the files change (checked every
    // `reload_interval_secs`); a set that does not validate is refused and the
    // one in force stays.
    let watcher = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let mut hup = hup;
            let mut t = tokio::time::interval(gw.authz.policies.interval());
            t.tick().await;
            loop {
                let why = tokio::select! {
                    _ = t.tick() => "file change",
                    Some(()) = async {
                        match hup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    } => "SIGHUP",
                };
                gw.authz.policies.reload(gw.audit.as_ref(), why).await;
            }
        })
    };
    // Once the signal comes, long-lived streams end (they would otherwise
    // hold the graceful shutdown open for as long as their clients stay).
    let shutdown = {
        let closing = gw.closing.clone();
        async move {
            shutdown.await;
            closing.cancel();
        }
    };
    let res = match &gw.cfg.server.tls {
        None => axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ListenError::Io),
        Some(t) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(t)?));
            serve_tls(listener, acceptor, router, shutdown).await
        }
    };
    reaper.abort();
    monitor.abort();
    syncer.abort();
    watcher.abort();
    gw.shutdown().await;
    res
}

/// Serves the admin listener on `listener`: TLS 1.3 when `[admin.tls]` is
/// set (required off loopback, see the configuration), plain HTTP on
/// loopback. Runs until the process ends.
pub async fn serve_admin(gw: Arc<Gateway>, listener: TcpListener) -> Result<(), ListenError> {
    let router = crate::transport::http::admin_router(gw.clone());
    match &gw.cfg.admin.tls {
        None => axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .map_err(ListenError::Io),
        Some(t) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(t)?));
            serve_tls(listener, acceptor, router, std::future::pending()).await
        }
    }
}

async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ListenError> {
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => r?,
            _ = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            // A slow or failed handshake costs only its own task.
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req = req.map(axum::body::Body::new);
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    router.clone().oneshot(req)
                });
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

//! Wiring: listeners, the accept loop, logging and shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::clock;
use crate::config::{Config, LogConfig, LogFormat};
use crate::http::{AppState, ConnInfo, router};

/// Time an HTTP/1.1 client has to send request headers (also the idle keep-alive limit).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound, not yet running, xmpp-edge.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    router: Router,
}

impl Server {
    /// Binds the listeners of `config` and starts the upstream pools.
    pub async fn bind(config: Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.server.listen).await?;
        let state = Arc::new(AppState::new(config).map_err(std::io::Error::other)?);
        state.upstreams.spawn_background();
        let router = router(Arc::clone(&state));
        Ok(Self {
            listener,
            state,
            router,
        })
    }

    /// The address the HTTP listener is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Shared state (session table, config) for tests and the admin API.
    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` resolves, then ends every session with
    /// `system-shutdown` and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => self.serve(stream, peer),
                    Err(e) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        let sessions = self.state.sessions.bosh_sessions();
        tracing::info!(
            bosh = sessions.len(),
            websocket = self.state.sessions.ws_count(),
            "shutting down"
        );
        self.state.begin_shutdown();
        let now = clock::now();
        for session in &sessions {
            session.shutdown(now);
        }
        // Let the answers to held requests reach their sockets.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    fn serve(&self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            peer,
            local: stream.local_addr().unwrap_or(peer),
        };
        let service = self.router.clone().map_request(
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(info);
                req
            },
        );
        tokio::spawn(async move {
            let result = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades()
                .await;
            if let Err(e) = result {
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
        });
    }
}

/// Starts logging: `RUST_LOG` if set, else the configured level.
pub fn init_logging(config: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Binds and runs `config` until a shutdown signal.
pub async fn run(config: Config) -> std::io::Result<()> {
    let listen = config.server.listen;
    let paths = config.bosh.paths.clone();
    let ws_paths = config.websocket.paths.clone();
    let server = Server::bind(config).await?;
    let addr = server.local_addr()?;
    let shown = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    tracing::info!(%listen, "xmpp-edge {} listening", env!("CARGO_PKG_VERSION"));
    for path in paths {
        tracing::info!("BOSH endpoint: http://{shown}{path}");
    }
    for path in ws_paths {
        tracing::info!("WebSocket endpoint: ws://{shown}{path}");
    }
    tracing::info!("discovery: http://{shown}/.well-known/host-meta");
    server.run(shutdown_signal()).await;
    Ok(())
}

//! Wiring: listeners, the accept loop, logging and shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use crate::admission::ConnectionSlot;
use crate::config::{Config, LogConfig, LogFormat};
use crate::http::{AppState, SetupError, conn};
use crate::metrics::Limit;
use crate::tls_front::{self, TlsFrontError};

/// What the process is asked to do (signals, or a test).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Drain and stop (SIGTERM, SIGINT). A second one stops at once.
    Drain,
    /// Stop now, without waiting for sessions.
    Now,
    /// Re-read the configuration file (SIGHUP).
    Reload,
}

/// Why xmpp-edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// The configuration key.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration cannot be put in force.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The HTTPS certificates cannot be loaded.
    #[error("tls.certificates: {0}")]
    Tls(#[from] TlsFrontError),
}

/// A bound, not yet running, xmpp-edge.
pub struct Server {
    listener: TcpListener,
    tls_listener: Option<TcpListener>,
    metrics_listener: Option<TcpListener>,
    admin_listener: Option<TcpListener>,
    cluster_listener: Option<TcpListener>,
    state: Arc<AppState>,
    /// The plain listener only redirects to HTTPS.
    redirecting: bool,
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}

impl Server {
    /// Binds the listeners of `config` and starts the upstream pools.
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let listener = bind("server.listen", config.server.listen).await?;
        let front_tls = tls_front::load(&config.tls)?;
        let tls_listener = match front_tls {
            Some(_) => Some(bind("tls.listen", config.tls.listen).await?),
            None => None,
        };
        let metrics_listener = match config.metrics.enabled {
            true => Some(bind("metrics.listen", config.metrics.listen).await?),
            false => None,
        };
        let admin_listener = match config.admin.enabled {
            true => Some(bind("admin.listen", config.admin.listen).await?),
            false => None,
        };
        let cluster_listener = match config.cluster.enabled {
            true => Some(bind("cluster.listen", config.cluster.listen).await?),
            false => None,
        };
        let redirecting = config.tls.redirect_http;
        let state = Arc::new(AppState::new(config)?);
        state.front_tls.store(front_tls);
        if let Some(addr) = tls_listener.as_ref().and_then(|l| l.local_addr().ok()) {
            state
                .tls_port
                .store(addr.port(), std::sync::atomic::Ordering::Relaxed);
        }
        state.runtime().upstreams.spawn_background();
        Ok(Self {
            redirecting,
            listener,
            tls_listener,
            metrics_listener,
            admin_listener,
            cluster_listener,
            state,
        })
    }

    /// The address the HTTP listener is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The HTTPS listener's address, if certificates are configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The metrics listener's address, if it is enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The admin listener's address, if it is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The cluster listener's address, in cluster mode.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Shared state (session table, config) for tests and the admin API.
    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` resolves, then drains (see [`crate::shutdown`]).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(Control::Drain).await;
        });
        self.run_controlled(rx).await;
    }

    /// Serves, acting on `control`: reloads, and a drain that keeps
    /// serving existing sessions until they are gone or the grace period
    /// is over. A second stop request ends at once.
    pub async fn run_controlled(mut self, mut control: mpsc::Receiver<Control>) {
        let mut side_tasks = Vec::new();
        if let Some(listener) = self.metrics_listener.take() {
            let router = crate::admin::metrics_router(Arc::clone(&self.state));
            side_tasks.push(tokio::spawn(serve_plain(listener, router)));
        }
        if let Some(listener) = self.admin_listener.take() {
            let router = crate::admin::admin_router(Arc::clone(&self.state));
            side_tasks.push(tokio::spawn(serve_plain(listener, router)));
        }
        if let (Some(listener), Some(cluster)) =
            (self.cluster_listener.take(), self.state.cluster.clone())
        {
            side_tasks.extend(crate::cluster::spawn(
                cluster,
                Arc::clone(&self.state),
                listener,
            ));
        }
        if let Some(listener) = self.tls_listener.take() {
            side_tasks.push(tokio::spawn(accept_tls(listener, Arc::clone(&self.state))));
            side_tasks.push(tokio::spawn(watch_certificates(Arc::clone(&self.state))));
        }
        let cut_short = Arc::new(Notify::new());
        let mut drain: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
        let mut control_open = true;
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if let Some(slot) = connection_slot(&self.state) {
                            conn::spawn_plain(stream, peer, self.redirecting, Arc::clone(&self.state), slot);
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                message = control.recv(), if control_open => match message {
                    Some(Control::Reload) => {
                        let state = Arc::clone(&self.state);
                        tokio::spawn(async move {
                            let _ = crate::reload::reload(&state).await;
                        });
                    }
                    Some(Control::Drain) if drain.is_none() => {
                        let state = Arc::clone(&self.state);
                        let cut = Arc::clone(&cut_short);
                        drain = Some(Box::pin(async move {
                            crate::shutdown::drain(&state, async move { cut.notified().await }).await;
                        }));
                    }
                    Some(Control::Drain | Control::Now) => {
                        if drain.is_none() {
                            tracing::info!("stopping at once");
                            break;
                        }
                        cut_short.notify_one();
                    }
                    None => {
                        control_open = false;
                        if drain.is_none() {
                            break;
                        }
                    }
                },
                () = async {
                    if let Some(d) = drain.as_mut() {
                        d.await;
                    }
                }, if drain.is_some() => break,
            }
        }
        // Let the last answers (terminate bodies, close frames) reach their sockets.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for task in side_tasks {
            task.abort();
        }
        tracing::info!("stopped");
    }
}

/// A place for a new client connection, or `None` (counted) at
/// `limits.max_connections`; the connection is then closed at once.
fn connection_slot(state: &Arc<AppState>) -> Option<ConnectionSlot> {
    let slot = state.admission.connection(&state.runtime().config.limits);
    if slot.is_none() {
        state.metrics.limit_hit(Limit::Connections);
    }
    slot
}

/// The HTTPS accept loop; runs until aborted.
async fn accept_tls(listener: TcpListener, state: Arc<AppState>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(config) = state.front_tls.load_full() else {
                    continue;
                };
                if let Some(slot) = connection_slot(&state) {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    conn::spawn_tls(stream, peer, acceptor, Arc::clone(&state), slot);
                }
            }
            Err(e) => {
                tracing::warn!("accept failed on the HTTPS listener: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Re-reads the certificates when their files change; a bad new file is
/// logged and the old certificates stay.
async fn watch_certificates(state: Arc<AppState>) {
    let mut seen = tls_front::fingerprint(&state.runtime().config.tls);
    loop {
        let tls = state.runtime().config.tls.clone();
        tokio::time::sleep(Duration::from_secs(u64::from(tls.reload_check_secs))).await;
        let now = tls_front::fingerprint(&tls);
        if now == seen {
            continue;
        }
        seen = now;
        match tls_front::load(&tls) {
            Ok(Some(config)) => {
                state.front_tls.store(Some(config));
                tracing::info!("TLS certificates re-read");
            }
            Ok(None) => {}
            Err(e) => tracing::error!("new TLS certificates rejected, the old ones stay: {e}"),
        }
    }
}

/// Serves a small side listener (metrics, admin) until aborted.
async fn serve_plain(listener: TcpListener, router: Router) {
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!("side listener stopped: {e}");
    }
}

/// Starts logging: `RUST_LOG` if set, else the configured level.
pub fn init_logging(config: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

/// Turns SIGTERM and SIGINT into [`Control::Drain`] and SIGHUP into
/// [`Control::Reload`].
fn forward_signals(tx: mpsc::Sender<Control>) {
    let stop = tx.clone();
    tokio::spawn(async move {
        let ctrl_c = async {
            loop {
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
                if stop.send(Control::Drain).await.is_err() {
                    return;
                }
            }
        };
        #[cfg(unix)]
        let term = async {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return std::future::pending().await;
            };
            while term.recv().await.is_some() {
                if stop.send(Control::Drain).await.is_err() {
                    return;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::join!(ctrl_c, term);
    });
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            if tx.send(Control::Reload).await.is_err() {
                return;
            }
        }
    });
}

/// Binds and runs `config` (read from `path`, if any) until stopped.
pub async fn run(config: Config, path: Option<PathBuf>) -> Result<(), StartError> {
    let listen = config.server.listen;
    let paths = config.bosh.paths.clone();
    let ws_paths = config.websocket.paths.clone();
    let server = Server::bind(config).await?;
    server.state().set_config_path(path);
    let addr = server.local_addr().map_err(|source| StartError::Bind {
        key: "server.listen",
        addr: listen,
        source,
    })?;
    let shown = |addr: SocketAddr| {
        if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        }
    };
    tracing::info!(%listen, "xmpp-edge {} listening", env!("CARGO_PKG_VERSION"));
    for path in paths {
        tracing::info!("BOSH endpoint: http://{}{path}", shown(addr));
    }
    for path in ws_paths {
        tracing::info!("WebSocket endpoint: ws://{}{path}", shown(addr));
    }
    tracing::info!("discovery: http://{}/.well-known/host-meta", shown(addr));
    if let Some(t) = server.tls_addr() {
        tracing::info!("HTTPS: https://{}/ (BOSH, WebSocket, discovery)", shown(t));
    }
    if let Some(m) = server.metrics_addr() {
        tracing::info!(
            "metrics: http://{}/metrics (and /healthz, /readyz)",
            shown(m)
        );
    }
    if let Some(a) = server.admin_addr() {
        tracing::info!("status page: http://{}/", shown(a));
    }
    if let (Some(c), Some(cluster)) = (server.cluster_addr(), server.state().cluster.clone()) {
        tracing::info!(node = %cluster.tag(), "cluster listener: {c} (HTTP/2, peers only)");
    }
    let (tx, rx) = mpsc::channel(4);
    forward_signals(tx);
    server.run_controlled(rx).await;
    Ok(())
}

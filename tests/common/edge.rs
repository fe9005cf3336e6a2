//! xmpp-edge started in-process on an ephemeral loopback port.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use xmpp_edge::app::Server;
use xmpp_edge::config::{self, Config};
use xmpp_edge::http::AppState;

/// A running xmpp-edge; shut down when dropped.
pub struct Edge {
    /// The HTTP listener.
    pub addr: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: SocketAddr,
    /// The admin API and status page.
    pub admin_addr: SocketAddr,
    /// The HTTPS listener, when certificates are configured.
    pub tls_addr: Option<SocketAddr>,
    /// Shared state, to look at the session table.
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Test configuration: `extra` TOML is appended to a base that serves
/// `localhost` from `upstream` on an ephemeral port with short timers.
pub fn config(upstream: &str, extra: &str) -> Config {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n[hosts.localhost]\nupstreams = [\"{upstream}\"]\n"
    );
    config::load_str(&text, "test-config").expect("test config")
}

impl Edge {
    /// Starts xmpp-edge with `config` (side listeners on ephemeral loopback
    /// ports). Logs go to the test output when `RUST_LOG` is set.
    pub async fn start(mut config: Config) -> Self {
        config.metrics.listen = "127.0.0.1:0".parse().unwrap();
        config.admin.listen = "127.0.0.1:0".parse().unwrap();
        config.metrics.enabled = true;
        config.admin.enabled = true;
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr().expect("addr");
        let metrics_addr = server.metrics_addr().expect("metrics listener");
        let admin_addr = server.admin_addr().expect("admin listener");
        let tls_addr = server.tls_addr();
        let state = server.state();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics_addr,
            admin_addr,
            tls_addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops accepting and ends all sessions with system-shutdown.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

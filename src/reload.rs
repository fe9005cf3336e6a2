//! Configuration reload (SIGHUP, `POST /admin/reload`): the file is read and
//! checked again, and if it is good, new sessions and requests use it. Live
//! sessions keep the configuration they started with. A bad file changes
//! nothing.

use std::path::Path;
use std::sync::Arc;

use crate::config::{self, Config, ConfigError};
use crate::http::{AppState, Runtime, SetupError};

/// Why a reload was refused (the old configuration stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// xmpp-edge was started without a configuration file.
    #[error("no configuration file to reload (started without --config)")]
    NoFile,
    /// The file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration is valid but cannot be put in force (a CA file,
    /// the token file).
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The HTTPS certificates cannot be loaded.
    #[error("tls.certificates: {0}")]
    Tls(#[from] crate::tls_front::TlsFrontError),
}

/// What a successful reload did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReloadReport {
    /// Changed keys that only take effect after a restart (kept as they were).
    pub needs_restart: Vec<&'static str>,
}

/// Re-reads the configuration file and puts it in force.
pub async fn reload(state: &AppState) -> Result<ReloadReport, ReloadError> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let path = state.config_path().ok_or(ReloadError::NoFile)?;
    let result = reload_from(state, &path);
    let outcome = if result.is_ok() { "ok" } else { "rejected" };
    state.metrics.reloads.with_label_values(&[outcome]).inc();
    match &result {
        Ok(report) => tracing::info!(
            file = %path.display(),
            needs_restart = ?report.needs_restart,
            "configuration reloaded"
        ),
        Err(e) => tracing::error!("configuration reload rejected, the old one stays: {e}"),
    }
    result
}

fn reload_from(state: &AppState, path: &Path) -> Result<ReloadReport, ReloadError> {
    let mut config = config::load_file(path)?;
    let old = state.runtime();
    let needs_restart = keep_fixed(&old.config, &mut config);
    let front_tls = crate::tls_front::load(&config.tls)?;
    let runtime = Runtime::new(config, &state.metrics, Some(&old))?;
    let upstreams = Arc::clone(&runtime.upstreams);
    state.replace_runtime(runtime);
    old.upstreams.retire();
    if front_tls.is_some() {
        state.front_tls.store(front_tls);
    }
    upstreams.spawn_background();
    Ok(ReloadReport { needs_restart })
}

/// Keys bound to sockets or to the router cannot change in a running
/// process: the old values are kept, and the keys reported.
fn keep_fixed(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($field:ident).+, $name:literal) => {
            if new.$($field).+ != old.$($field).+ {
                new.$($field).+ = old.$($field).+.clone();
                changed.push($name);
            }
        };
    }
    keep!(server.listen, "server.listen");
    keep!(bosh.paths, "bosh.paths");
    keep!(websocket.paths, "websocket.paths");
    keep!(metrics, "metrics");
    keep!(admin.listen, "admin.listen");
    keep!(admin.enabled, "admin.enabled");
    keep!(log, "log");
    keep!(tls.listen, "tls.listen");
    keep!(tls.redirect_http, "tls.redirect_http");
    // The node's identity, listener and peers are set up once, at start.
    keep!(cluster, "cluster");
    if new.tls.certificates.is_empty() != old.tls.certificates.is_empty() {
        // Turning HTTPS on or off needs a listener bound or closed.
        new.tls.certificates = old.tls.certificates.clone();
        changed.push("tls.certificates (turning HTTPS on or off)");
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_and_router_keys_are_kept_and_reported() {
        let old = Config::default();
        let mut new = Config::default();
        new.server.listen = "127.0.0.1:1".parse().unwrap();
        new.bosh.max_wait_secs = 20;
        new.bosh.paths = vec!["/bosh".into()];
        let changed = keep_fixed(&old, &mut new);
        assert_eq!(changed, vec!["server.listen", "bosh.paths"]);
        assert_eq!(new.server.listen, old.server.listen);
        assert_eq!(new.bosh.paths, old.bosh.paths);
        assert_eq!(new.bosh.max_wait_secs, 20, "limits do change");
    }
}

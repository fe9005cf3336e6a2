//! The real `xmpp-edge` binary as a child process, for what only a process
//! has: signals (SIGTERM drain, SIGHUP reload), its exit, the CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::prosody::{free_port, free_port_except};

/// A running xmpp-edge process, killed when dropped.
pub struct EdgeProcess {
    child: Child,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_xmpp-edge")
}

impl EdgeProcess {
    /// Writes a configuration with free loopback ports and `extra` TOML (which
    /// must not repeat `[server]`, `[metrics]` or `[admin]` keys given here
    /// unless through `server_extra`), then starts the binary.
    pub fn start(name: &str, server_extra: &str, extra: &str) -> Self {
        Self::start_at(name, [127, 0, 0, 1].into(), server_extra, extra)
    }

    /// Like [`Self::start`], with every listener on the loopback address `ip`
    /// (all of 127/8 is loopback on Linux: one address per replica).
    pub fn start_at(name: &str, ip: std::net::IpAddr, server_extra: &str, extra: &str) -> Self {
        // A port found free on 127.0.0.1 may be taken on `ip` (or taken by
        // someone else meanwhile): try other ports a few times.
        for attempt in 0.. {
            let mut process = Self::spawn(name, ip, server_extra, extra);
            match process.wait_listening() {
                Ok(()) => return process,
                Err(log) if attempt < 3 && log.contains("Address already in use") => {
                    process.kill();
                }
                Err(log) => panic!("xmpp-edge did not start:\n{log}"),
            }
        }
        unreachable!()
    }

    fn spawn(name: &str, ip: std::net::IpAddr, server_extra: &str, extra: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "xmpp-edge-proc-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let metrics_port = free_port_except(&[port]);
        let admin_port = free_port_except(&[port, metrics_port]);
        let addr = SocketAddr::new(ip, port);
        let metrics_addr = SocketAddr::new(ip, metrics_port);
        let admin_addr = SocketAddr::new(ip, admin_port);
        let config_path = dir.join("xmpp-edge.toml");
        std::fs::write(
            &config_path,
            config_text(addr, metrics_addr, admin_addr, server_extra, extra),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(binary())
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "xmpp_edge=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start xmpp-edge");
        Self {
            child,
            dir,
            config_path,
            addr,
            metrics_addr,
            admin_addr,
        }
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log());
            }
            if std::net::TcpStream::connect(self.admin_addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(self.log())
    }

    /// Rewrites the configuration file (for reload tests).
    pub fn rewrite_config(&self, server_extra: &str, extra: &str) {
        let text = config_text(
            self.addr,
            self.metrics_addr,
            self.admin_addr,
            server_extra,
            extra,
        );
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Writes raw text as the configuration file.
    pub fn write_config_raw(&self, text: &str) {
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Sends a signal (`TERM`, `HUP`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kills the process at once (SIGKILL): no drain, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The directory holding its files.
    pub fn path(&self, name: &str) -> PathBuf {
        Path::new(&self.dir).join(name)
    }
}

fn config_text(
    addr: SocketAddr,
    metrics: SocketAddr,
    admin: SocketAddr,
    server_extra: &str,
    extra: &str,
) -> String {
    format!(
        "[server]\nlisten = \"{addr}\"\n{server_extra}\n[metrics]\nlisten = \"{metrics}\"\n\
         [admin]\nlisten = \"{admin}\"\n{extra}\n"
    )
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

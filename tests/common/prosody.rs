//! Starts a real Prosody (Debian package `prosody`) on a free loopback port
//! with the configuration in `tests/prosody/`, and stops it on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Test accounts created in every Prosody: (user, password).
pub const USERS: &[(&str, &str)] = &[
    ("alice", "alice-secret"),
    ("bob", "bob-secret"),
    ("carol", "carol-secret"),
];

/// A running Prosody; killed when dropped.
pub struct Prosody {
    child: Child,
    dir: PathBuf,
    /// The c2s port on 127.0.0.1.
    pub port: u16,
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn find_prosody() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let path = Path::new(dir).join("prosody");
        if path.exists() {
            return path;
        }
    }
    panic!(
        "Prosody is not installed. The integration tests need a real Prosody: \
         install it with `apt-get install -y prosody` (scripts/test does this)."
    );
}

impl Prosody {
    /// Starts Prosody with the test users registered.
    pub fn start() -> Self {
        let prosody = find_prosody();
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("xmpp-edge-prosody-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        let template = include_str!("../prosody/prosody.cfg.lua");
        let config = template
            .replace("@DIR@", &dir.display().to_string())
            .replace("@C2S_PORT@", &port.to_string())
            .replace("@LOGLEVEL@", "info");
        let config_path = dir.join("prosody.cfg.lua");
        std::fs::write(&config_path, config).unwrap();
        for (user, password) in USERS {
            let status = Command::new("prosodyctl")
                .arg("--config")
                .arg(&config_path)
                .args(["register", user, "localhost", password])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("prosodyctl is missing (apt-get install -y prosody)");
            assert!(status.success(), "prosodyctl register {user} failed");
        }
        // `timeout` bounds the server's life even if this process is killed.
        let child = Command::new("timeout")
            .args(["--signal=KILL", "900"])
            .arg(&prosody)
            .arg("-F")
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start prosody");
        let server = Self { child, dir, port };
        server.wait_listening();
        server
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Prosody did not start listening; log:\n{}", self.log());
    }

    /// `host:port` of the c2s listener.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Prosody's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prosody.log")).unwrap_or_default()
    }

    fn server_pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("prosody.pid"))
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.server_pid() {
            let _ = Command::new("kill").args([signal, &pid]).status();
        }
    }

    /// Kills the server abruptly, like a crash: connections are reset with no closing tag.
    pub fn crash(&mut self) {
        self.signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the server to shut down cleanly (it sends `system-shutdown` stream errors).
    pub fn shutdown(&mut self) {
        self.signal("-TERM");
        let _ = self.child.wait();
    }

    /// Stops the server (abruptly).
    pub fn stop(&mut self) {
        self.crash();
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

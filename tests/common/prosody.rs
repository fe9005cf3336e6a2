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
    /// The direct-TLS c2s port, when enabled.
    pub tls_port: Option<u16>,
}

/// How to run it.
#[derive(Default)]
pub struct ProsodyOptions<'a> {
    /// Certificate and key for `localhost` (enables STARTTLS).
    pub tls: Option<&'a super::tls::TestCerts>,
    /// `c2s_require_encryption = true`.
    pub require_encryption: bool,
    /// Also listen for direct TLS (XEP-0368).
    pub direct_tls: bool,
    /// A fixed c2s port (to restart a server where it was).
    pub port: Option<u16>,
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A free TCP port on 127.0.0.1 that is none of `taken`. [`free_port`]
/// releases each port it finds, so two calls in a row may return the same one.
pub fn free_port_except(taken: &[u16]) -> u16 {
    loop {
        let port = free_port();
        if !taken.contains(&port) {
            return port;
        }
    }
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
        Self::start_with(ProsodyOptions::default())
    }

    /// Starts Prosody with `options` and the test users registered.
    pub fn start_with(options: ProsodyOptions<'_>) -> Self {
        let prosody = find_prosody();
        let port = options.port.unwrap_or_else(free_port);
        let tls_port = options.direct_tls.then(|| free_port_except(&[port]));
        let dir =
            std::env::temp_dir().join(format!("xmpp-edge-prosody-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        let template = include_str!("../prosody/prosody.cfg.lua");
        let config = template
            .replace("@DIR@", &dir.display().to_string())
            .replace("@C2S_PORT@", &port.to_string())
            .replace(
                "@DIRECT_TLS_PORT@",
                &tls_port.map(|p| p.to_string()).unwrap_or_default(),
            )
            .replace(
                "@REQUIRE_ENCRYPTION@",
                if options.require_encryption {
                    "true"
                } else {
                    "false"
                },
            )
            .replace(
                "@VHOST_OPTIONS@",
                &options.tls.map_or(String::new(), |t| {
                    // Session tickets on (Prosody turns them off by
                    // default), so TLS resumption can be observed.
                    format!(
                        "ssl = {{ certificate = \"{}\"; key = \"{}\"; options = {{ no_ticket = false }} }}",
                        t.cert.display(),
                        t.key.display()
                    )
                }),
            )
            .replace("@LOGLEVEL@", "info");
        let config_path = dir.join("prosody.cfg.lua");
        std::fs::write(&config_path, config).unwrap();
        if let Some(tls) = options.tls {
            // Direct TLS picks its certificate by SNI from this directory.
            std::fs::copy(&tls.cert, dir.join("certs/localhost.crt")).unwrap();
            std::fs::copy(&tls.key, dir.join("certs/localhost.key")).unwrap();
        }
        for ((user, password), host) in USERS
            .iter()
            .flat_map(|u| [(u, "localhost"), (u, "example.test")])
        {
            let status = Command::new("prosodyctl")
                .arg("--config")
                .arg(&config_path)
                .args(["register", user, host, password])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("prosodyctl is missing (apt-get install -y prosody)");
            assert!(status.success(), "prosodyctl register {user} failed");
        }
        let child = Command::new(&prosody)
            .arg("-F")
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start prosody");
        // If this test process dies without running destructors, the
        // watchdog still stops the server.
        let watchdog = format!(
            "while kill -0 {test} 2>/dev/null && kill -0 {server} 2>/dev/null; do sleep 1; done; kill -9 {server} 2>/dev/null",
            test = std::process::id(),
            server = child.id()
        );
        let _ = Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let server = Self {
            child,
            dir,
            port,
            tls_port,
        };
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

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is read.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server run again.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Kills the server abruptly, like a crash: connections are reset with no closing tag.
    pub fn crash(&mut self) {
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

//! Starts a real ejabberd (Debian package `ejabberd`) on a free loopback port
//! with the configuration in `tests/ejabberd/`, and stops it on drop.
//!
//! The server is a private Erlang VM run as the current user (root in CI),
//! started directly with `erl` rather than through `ejabberdctl` (which would
//! switch to the `ejabberd` system user and use `/etc/ejabberd`):
//!
//! - its own temp directory holds the configuration, the Mnesia spool, the
//!   logs, and `HOME` (so no `~/.erlang.cookie` or `~/.erlang` is used);
//! - the Erlang node name is unique per instance
//!   (`xmpp-edge-<test pid>-<c2s port>@127.0.0.1`) with its own cookie;
//! - Erlang distribution runs without epmd: the node listens on a second free
//!   port on 127.0.0.1 (`-erl_epmd_port`, `inet_dist_use_interface`), no epmd
//!   is started (`-start_epmd false`), and `ERL_EPMD_PORT=0` keeps the node
//!   from registering with an epmd someone else runs on 4369;
//! - no name is ever resolved through the system resolver: long node names
//!   on an IP address plus `ERL_INET_ETC_DIR` stop the kernel's boot-time
//!   lookup of the machine's own host name (which `-sname` and plain `erl`
//!   do with getaddrinfo, before any inetrc is read), and the `inetrc`
//!   (`{lookup, [file]}`) answers `localhost` from a file;
//! - the test users are registered by the node itself right after ejabberd
//!   has started (`-eval` calling `ejabberd_auth:try_register/3`), which is
//!   faster than one `ejabberdctl register` VM per user; [`Ejabberd::ctl`]
//!   still runs any ejabberdctl command against the node;
//! - the VM runs in its own process group; dropping the handle, or the
//!   watchdog when the test process dies without running destructors, kills
//!   the whole group (beam.smp and its helpers erl_child_setup, eimp, memsup).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use super::prosody::USERS;
use super::prosody::{free_port, free_port_except};

/// The Erlang runtime (Debian package `erlang-base`, a dependency of `ejabberd`).
const ERL: &str = "/usr/bin/erl";

/// How long a start may take. ejabberd is ready 1.5-2 s after `erl` starts
/// on a 2-core machine, 2-4 s with two starting at once, but took over 20 s
/// while other builds loaded the machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running ejabberd; killed when dropped.
pub struct Ejabberd {
    child: Child,
    dir: PathBuf,
    /// The c2s port on 127.0.0.1.
    pub port: u16,
    /// The Erlang distribution port on 127.0.0.1 (used by [`Ejabberd::ctl`]).
    pub dist_port: u16,
    /// The Erlang node name, `xmpp-edge-<pid>-<port>@127.0.0.1`.
    pub node: String,
    cookie: String,
    erl_libs: String,
    /// The VM was waited for: its pid (and process group id) may be reused.
    reaped: bool,
    /// How long [`Ejabberd::start`] took until the users were registered and
    /// the c2s port accepted connections.
    pub startup: Duration,
}

/// The erl binary and the directory holding ejabberd's OTP application
/// (`ERL_LIBS`), as Debian's `ejabberdctl` sets them.
fn find_ejabberd() -> (PathBuf, String) {
    let missing = || -> ! {
        panic!(
            "ejabberd is not installed. The ejabberd integration tests need a real \
             ejabberd: install it with `apt-get install -y ejabberd` (scripts/test does this)."
        )
    };
    let Ok(ctl) = std::fs::read_to_string("/usr/sbin/ejabberdctl") else {
        missing()
    };
    let erl_libs = ctl
        .lines()
        .find_map(|l| l.trim().strip_prefix("ERL_LIBS="))
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_owned())
        .unwrap_or_else(|| "/usr/lib/x86_64-linux-gnu".to_owned());
    let has_app = std::fs::read_dir(&erl_libs)
        .map(|entries| {
            entries.flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with("ejabberd-")
                    && e.path().join("ebin/ejabberd.app").exists()
            })
        })
        .unwrap_or(false);
    let erl = Path::new(ERL);
    if !has_app || !erl.exists() {
        missing();
    }
    (erl.to_owned(), erl_libs)
}

/// An Erlang string literal.
fn erl_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A cookie nobody else knows; not cryptographic, the node listens on loopback only.
fn cookie(port: u16) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("c{:x}{:x}{port}", nanos, std::process::id())
}

/// The environment of every Erlang VM of one instance (server and ctl).
fn erlang_env(command: &mut Command, dir: &Path, erl_libs: &str) {
    command
        .current_dir(dir)
        .env_remove("ERL_FLAGS")
        .env_remove("ERL_AFLAGS")
        .env_remove("ERL_ZFLAGS")
        .env("HOME", dir)
        .env("ERL_LIBS", erl_libs)
        .env("ERL_INETRC", dir.join("inetrc"))
        .env("ERL_INET_ETC_DIR", dir.join("etc"))
        // Registration with an epmd is attempted even with -erl_epmd_port;
        // port 0 refuses at once.
        .env("ERL_EPMD_PORT", "0")
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env("ERL_CRASH_DUMP_BYTES", "0")
        .env("ERL_CRASH_DUMP", dir.join("erl_crash.dump"));
}

impl Ejabberd {
    /// Starts ejabberd with the test users registered.
    pub fn start() -> Self {
        Self::start_with_loglevel("info")
    }

    /// Starts ejabberd logging at `level` (`info`, `debug`, ...).
    pub fn start_with_loglevel(level: &str) -> Self {
        Self::start_with(level, false, None)
    }

    /// Starts ejabberd logging at `level`, expecting a PROXY protocol header
    /// on every c2s connection when `proxy_protocol`, on `port` if given.
    pub fn start_with(level: &str, proxy_protocol: bool, port: Option<u16>) -> Self {
        let started = Instant::now();
        let (erl, erl_libs) = find_ejabberd();
        let port = port.unwrap_or_else(free_port);
        let dist_port = free_port_except(&[port]);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("xmpp-edge-ejabberd-{pid}-{port}"));
        let template = include_str!("../ejabberd/ejabberd.yml");
        let config = template
            .replace("@C2S_PORT@", &port.to_string())
            .replace(
                "@PROXY_PROTOCOL@",
                if proxy_protocol { "true" } else { "false" },
            )
            .replace("@LOGLEVEL@", level);
        assert!(
            !config
                .lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains('@')),
            "unfilled placeholder in ejabberd.yml:\n{config}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["spool", "logs", "modules", "etc"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("ejabberd.yml"), config).unwrap();
        // Host names come from these files only: no resolver, no DNS query.
        std::fs::write(dir.join("etc/resolv.conf"), "domain invalid\n").unwrap();
        std::fs::write(dir.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(
            dir.join("inetrc"),
            "{lookup, [file]}.\n{host, {127,0,0,1}, [\"localhost\"]}.\n",
        )
        .unwrap();
        let node = format!("xmpp-edge-{pid}-{port}@127.0.0.1");
        let cookie = cookie(port);
        let users: Vec<String> = USERS
            .iter()
            .map(|(u, p)| format!("{{<<{}>>, <<{}>>}}", erl_string(u), erl_string(p)))
            .collect();
        let ready = dir.join("registered");
        // Runs after `-s ejabberd` returned (application started).
        let register = format!(
            "Rs = [ejabberd_auth:try_register(U, <<\"localhost\">>, P) || {{U, P}} <- [{}]], \
             ok = file:write_file({}, io_lib:format(\"~p.~n\", [Rs])).",
            users.join(", "),
            erl_string(&ready.display().to_string())
        );
        let console = std::fs::File::create(dir.join("console.log")).unwrap();
        let mut command = Command::new(&erl);
        erlang_env(&mut command, &dir, &erl_libs);
        command
            .env("EJABBERD_CONFIG_PATH", dir.join("ejabberd.yml"))
            .env("EJABBERD_LOG_PATH", dir.join("logs/ejabberd.log"))
            .env("CONTRIB_MODULES_PATH", dir.join("modules"))
            .env("CONTRIB_MODULES_CONF_DIR", dir.join("modules"))
            .args(["-name", &node, "-setcookie", &cookie, "-noinput"])
            .args([
                "-erl_epmd_port",
                &dist_port.to_string(),
                "-start_epmd",
                "false",
            ])
            .args(["-kernel", "inet_dist_use_interface", "{127,0,0,1}"])
            .args(["-mnesia", "dir"])
            .arg(erl_string(&dir.join("spool").display().to_string()))
            .args(["-s", "ejabberd", "-eval", &register])
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .process_group(0);
        let child = command.spawn().expect("cannot start erl for ejabberd");
        assert!(!dir.to_string_lossy().contains('\''), "{}", dir.display());
        // If this test process dies without running destructors, the
        // watchdog still kills the VM's whole process group. A killed test
        // process may stay a zombie for a while, which `kill -0` still sees.
        let watchdog = format!(
            "alive() {{ [ -e /proc/$1 ] && ! grep -q '^State:[[:space:]]*Z' /proc/$1/status 2>/dev/null; }}; \
             while alive {pid} && alive {server}; do sleep 0.5; done; \
             alive {pid} || {{ kill -KILL -{server} 2>/dev/null; sleep 1; rm -rf '{dir}'; }}",
            server = child.id(),
            dir = dir.display()
        );
        let _ = Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut server = Self {
            child,
            dir,
            port,
            dist_port,
            node,
            cookie,
            erl_libs,
            reaped: false,
            startup: Duration::ZERO,
        };
        server.wait_ready(started);
        server.startup = started.elapsed();
        server
    }

    fn wait_ready(&mut self, started: Instant) {
        let ready = self.dir.join("registered");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.reaped = true;
                panic!(
                    "ejabberd exited during startup ({status})\n{}",
                    self.diagnostics()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "ejabberd did not start within {START_TIMEOUT:?}\n{}",
                    self.diagnostics()
                );
            }
            // The file is written in one call, but may be seen half-written.
            match std::fs::read_to_string(&ready) {
                Ok(result) if result.ends_with(".\n") => {
                    assert_eq!(
                        result.trim(),
                        format!("[{}].", vec!["ok"; USERS.len()].join(",")),
                        "registering the test users failed\n{}",
                        self.diagnostics()
                    );
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(25)),
            }
        }
        // The listener was started with the application; check anyway.
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "ejabberd does not accept on {}\n{}",
                    self.addr(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn diagnostics(&self) -> String {
        let console = std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        format!(
            "--- erl console ---\n{console}\n--- ejabberd.log ---\n{}",
            self.log()
        )
    }

    /// The process id of the Erlang VM (beam.smp).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port` of the c2s listener.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// ejabberd's log so far (`ejabberd.log`; errors are also in `error.log`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/ejabberd.log")).unwrap_or_default()
    }

    /// Runs an ejabberdctl command (`register`, `connected_users_info`, ...)
    /// against this node; returns whether it succeeded and its output.
    /// Blocking: each call boots a short-lived hidden Erlang node (about 1 s).
    pub fn ctl(&self, args: &[&str]) -> (bool, String) {
        static CALLS: AtomicU32 = AtomicU32::new(0);
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let ctl_node = format!("ctl-{}-{}-{n}@127.0.0.1", std::process::id(), self.port);
        let out_path = self.dir.join(format!("ctl-{n}.out"));
        let out = std::fs::File::create(&out_path).unwrap();
        let mut command = Command::new(ERL);
        erlang_env(&mut command, &self.dir, &self.erl_libs);
        let mut child = command
            .args(["-name", &ctl_node, "-setcookie", &self.cookie])
            .args(["-hidden", "-noinput", "-dist_listen", "false"])
            .args([
                "-erl_epmd_port",
                &self.dist_port.to_string(),
                "-start_epmd",
                "false",
            ])
            .args(["-s", "ejabberd_ctl", "-extra", &self.node])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("cannot run erl for ejabberdctl");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        let _ = std::fs::remove_file(&out_path);
        (status.is_some_and(|s| s.success()), output)
    }

    /// Kills the server abruptly, like a crash: connections are reset with no
    /// closing tag (SIGKILL to the VM and its helpers).
    pub fn crash(&mut self) {
        if !self.reaped {
            // Until it is waited for, the VM's pid is reserved, so its process
            // group id cannot name anyone else's processes.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }

    /// Shuts the server down cleanly (SIGTERM: Erlang's `init:stop()`).
    /// ejabberd 23.01 sends each client
    /// `<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`,
    /// sometimes followed by `</stream:stream>`, and closes the connection.
    /// It queues that error and then kills the sessions, so a session busy
    /// at that moment (typically one opened milliseconds before) may be
    /// closed with nothing sent. Killed after 30 s if it has not exited.
    pub fn shutdown(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                // Exited; its helpers (erl_child_setup, eimp, memsup) follow
                // when their pipes close.
                self.reaped = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.crash();
    }

    /// Stops the server (abruptly).
    pub fn stop(&mut self) {
        self.crash();
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! Load generator for xmpp-edge. Every mode is bounded in count and time,
//! talks only to the addresses it is given, and prints one JSON line.

// Measuring wall-clock time is this tool's job; the product's rule of
// reading time through one clock does not apply here.
#![allow(clippy::disallowed_methods)]

mod delay;
mod http;
mod modes;
mod procstat;
mod soak;
mod stats;
mod xmpp;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

/// Load generator for xmpp-edge.
#[derive(Debug, Parser)]
#[command(name = "loadtest")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

/// Where to log in and what to watch, for the session modes.
#[derive(Debug, clap::Args)]
struct SessionArgs {
    /// Transport.
    #[arg(long, value_enum, default_value = "websocket")]
    transport: xmpp::Transport,
    /// Endpoint address (xmpp-edge, a peer, or the XMPP server for `tcp`).
    #[arg(long, default_value = "127.0.0.1:5280")]
    addr: SocketAddr,
    /// HTTP path; default /http-bind (BOSH) or /xmpp-websocket.
    #[arg(long)]
    path: Option<String>,
    /// XMPP domain.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Log in with SASL PLAIN as this user (else ANONYMOUS).
    #[arg(long)]
    user: Option<String>,
    /// Password for --user.
    #[arg(long, default_value = "")]
    password: String,
    /// Use the pre-RFC 7395 WebSocket framing (`<stream:stream>` messages).
    #[arg(long)]
    ws_legacy: bool,
    /// Connect from 127.0.0.1 .. 127.0.0.N, round robin.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Processes to report memory and CPU of (repeatable).
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 64)]
    login_concurrency: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

impl SessionArgs {
    fn common(&self) -> modes::Common {
        let path = self.path.clone().unwrap_or_else(|| {
            match self.transport {
                xmpp::Transport::Bosh => "/http-bind",
                _ => "/xmpp-websocket",
            }
            .to_owned()
        });
        modes::Common {
            target: xmpp::Target {
                transport: self.transport,
                addr: self.addr,
                path,
                domain: self.domain.clone(),
                credentials: self.user.clone().map(|u| (u, self.password.clone())),
                ws_legacy: self.ws_legacy,
            },
            sources: (1..=self.sources.max(1))
                .map(|i| std::net::IpAddr::from([127, 0, 0, i]))
                .collect(),
            pids: self.pids.clone(),
            login_concurrency: self.login_concurrency,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// N sessions logged in and idle; the target's memory per session.
    Idle {
        #[command(flatten)]
        session: SessionArgs,
        /// Sessions.
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        /// Seconds to stay idle before the final check.
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
    },
    /// Pairs ping-pong messages; throughput, round trips, target CPU.
    Echo {
        #[command(flatten)]
        session: SessionArgs,
        /// Sessions (pairs of two).
        #[arg(long, default_value_t = 2)]
        sessions: usize,
        /// Round trips per pair.
        #[arg(long, default_value_t = 1000)]
        messages: usize,
    },
    /// A fixed offered rate of messages; latency at that rate (open loop).
    Flood {
        #[command(flatten)]
        session: SessionArgs,
        /// Sessions (pairs of two).
        #[arg(long, default_value_t = 20)]
        sessions: usize,
        /// Messages per second, all pairs together.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// Sessions created and ended at a fixed rate; set-up latency.
    Churn {
        #[command(flatten)]
        session: SessionArgs,
        /// New sessions per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Seconds.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Logins in flight before new ones are counted as skipped.
        #[arg(long, default_value_t = 500)]
        max_in_flight: usize,
    },
    /// BOSH session creation latency: create a session (up to the server's
    /// features), end it, repeat.
    Create {
        /// xmpp-edge's HTTP address.
        #[arg(long, default_value = "127.0.0.1:5280")]
        addr: SocketAddr,
        /// BOSH path.
        #[arg(long, default_value = "/http-bind")]
        path: String,
        /// XMPP domain.
        #[arg(long, default_value = "localhost")]
        domain: String,
        /// Sessions to create.
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// Sessions created at the same time.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Pause between sessions of one worker, milliseconds (lets a warm pool refill).
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
    /// A long mixed BOSH/WebSocket run with session churn, watching the
    /// target's memory, fds and threads for growth (see soak.rs).
    Soak(soak::SoakArgs),
    /// Forward TCP from `listen` to `target`, adding a one-way delay in each
    /// direction (a simulated network round trip); runs until stopped.
    DelayProxy {
        /// Where to listen (loopback).
        #[arg(long)]
        listen: SocketAddr,
        /// Where to forward to (loopback).
        #[arg(long)]
        target: SocketAddr,
        /// One-way delay, milliseconds.
        #[arg(long)]
        delay_ms: u64,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Idle {
            session,
            sessions,
            hold_secs,
        } => {
            let common = session.common();
            let run = modes::idle(&common, sessions, Duration::from_secs(hold_secs));
            bounded(session.timeout_secs, run).await
        }
        Mode::Echo {
            session,
            sessions,
            messages,
        } => {
            bounded(
                session.timeout_secs,
                modes::echo(&session.common(), sessions, messages),
            )
            .await
        }
        Mode::Flood {
            session,
            sessions,
            rate,
            secs,
        } => {
            let common = session.common();
            let run = modes::flood(&common, sessions, rate, Duration::from_secs(secs));
            bounded(session.timeout_secs, run).await
        }
        Mode::Churn {
            session,
            rate,
            secs,
            max_in_flight,
        } => {
            let common = session.common();
            let run = modes::churn(&common, rate, Duration::from_secs(secs), max_in_flight);
            bounded(session.timeout_secs, run).await
        }
        Mode::Soak(args) => soak::run(args).await,
        Mode::DelayProxy {
            listen,
            target,
            delay_ms,
        } => {
            if !listen.ip().is_loopback() || !target.ip().is_loopback() {
                eprintln!("loadtest: the delay proxy only runs on loopback");
                std::process::exit(2);
            }
            delay::run(listen, target, Duration::from_millis(delay_ms))
                .await
                .map(|()| serde_json::Value::Null)
                .map_err(|e| e.to_string())
        }
        Mode::Create {
            addr,
            path,
            domain,
            count,
            concurrency,
            pause_ms,
            timeout_secs,
        } => {
            let run = create(
                addr,
                path,
                domain,
                count,
                concurrency.max(1),
                Duration::from_millis(pause_ms),
            );
            match tokio::time::timeout(Duration::from_secs(timeout_secs), run).await {
                Ok(line) => Ok(line),
                Err(_) => Err(format!("timed out after {timeout_secs} s")),
            }
        }
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::exit(1);
        }
    }
}

/// Runs `run` for at most `secs` seconds.
async fn bounded(
    secs: u64,
    run: impl std::future::Future<Output = serde_json::Value>,
) -> Result<serde_json::Value, String> {
    tokio::time::timeout(Duration::from_secs(secs), run)
        .await
        .map_err(|_| format!("timed out after {secs} s"))
}

const HTTPBIND: &str = "xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'";

async fn create(
    addr: SocketAddr,
    path: String,
    domain: String,
    count: usize,
    concurrency: usize,
    pause: Duration,
) -> serde_json::Value {
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (path, domain) = (path.clone(), domain.clone());
        let share = count / concurrency + usize::from(worker < count % concurrency);
        workers.spawn(async move {
            let mut samples = Vec::with_capacity(share);
            let mut errors = 0usize;
            for i in 0..share {
                let rid = 1_000 + (worker * 100_000 + i) as u64 * 10;
                let body = format!(
                    "<body rid='{rid}' to='{domain}' wait='10' hold='1' ver='1.6' xmpp:version='1.0' {HTTPBIND}/>"
                );
                let t0 = Instant::now();
                match http::post(addr, &path, &body).await {
                    Ok(reply) if reply.contains("<stream:features") => {
                        samples.push(t0.elapsed());
                        if let Some(sid) = attr(&reply, "sid") {
                            let end = format!("<body rid='{}' sid='{sid}' type='terminate' {HTTPBIND}/>", rid + 1);
                            let _ = http::post(addr, &path, &end).await;
                        }
                    }
                    _ => errors += 1,
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            (samples, errors)
        });
    }
    let mut samples = Vec::with_capacity(count);
    let mut errors = 0;
    while let Some(joined) = workers.join_next().await {
        if let Ok((s, e)) = joined {
            samples.extend(s);
            errors += e;
        }
    }
    let summary = stats::Summary::of(&mut samples);
    serde_json::json!({
        "mode": "create",
        "sessions": samples.len(),
        "errors": errors,
        "concurrency": concurrency,
        "seconds": started.elapsed().as_secs_f64(),
        "latency_ms": summary.to_json(),
    })
}

fn attr(xml: &str, name: &str) -> Option<String> {
    let key = format!(" {name}='");
    let at = xml.find(&key)? + key.len();
    Some(xml[at..at + xml[at..].find('\'')?].to_owned())
}

//! The floor of any connection manager's CPU: a bare TCP relay, one task per
//! client, copying bytes both ways to one upstream address with tokio's
//! `copy_bidirectional`, parsing nothing.
//!
//! `scripts/bench` puts it between `loadtest --transport tcp` and Prosody in
//! the alternating rounds: its CPU per message is what reading and writing
//! each message once on each side costs on the machine (system calls, the
//! kernel's loopback TCP, tokio's wake-ups), which every front end pays
//! before it frames, parses or checks anything.
//!
//!   tcp-relay --listen 127.0.0.1:5300 --upstream 127.0.0.1:5222 [--max-secs 3600]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(about = "Relays TCP connections to one upstream, byte for byte")]
struct Args {
    /// Where clients connect.
    #[arg(long)]
    listen: SocketAddr,
    /// Where every client connection is relayed to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Exits after this many seconds whatever happens (bench runs stop it sooner).
    #[arg(long, default_value_t = 3600)]
    max_secs: u64,
}

// The same runtime shape as xmpp-edge's: one worker per core.
#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tcp-relay: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let upstream = args.upstream;
    let serve = async move {
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    tokio::spawn(relay(client, upstream));
                }
                // Out of files, for instance: wait rather than spin.
                Err(e) => {
                    eprintln!("tcp-relay: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(args.max_secs), serve).await;
    ExitCode::SUCCESS
}

async fn relay(mut client: TcpStream, upstream: SocketAddr) {
    let mut server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tcp-relay: cannot reach {upstream}: {e}");
            return;
        }
    };
    // Like xmpp-edge: small stanzas go out at once.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

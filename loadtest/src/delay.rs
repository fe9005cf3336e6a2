//! A TCP forwarder that delays every chunk by a fixed one-way latency in
//! each direction, to measure what round trips cost without leaving
//! loopback or touching the kernel's queueing settings.
//!
//! Both sockets acknowledge at once (TCP_QUICKACK), as xmpp-edge does on its
//! upstream sockets: otherwise the forwarder's own delayed ACKs, meeting an
//! upstream that leaves Nagle on, would add 40 ms stalls that are an
//! artifact of the forwarder, not of the network it stands for.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Forwards connections on `listen` to `target`, each direction `delay` late.
pub async fn run(listen: SocketAddr, target: SocketAddr, delay: Duration) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (inbound, _) = listener.accept().await?;
        tokio::spawn(async move {
            // The connect to the target costs one round trip too.
            tokio::time::sleep(delay * 2).await;
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::join!(pipe(ir, ow, delay), pipe(or, iw, delay));
        });
    }
}

async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
            ack_now(&from);
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

fn ack_now(half: &OwnedReadHalf) {
    #[cfg(target_os = "linux")]
    {
        let stream: &TcpStream = half.as_ref();
        let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = half;
}

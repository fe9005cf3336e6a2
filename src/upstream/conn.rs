//! One upstream TCP connection: connecting, reading and splitting, queued
//! writes, and the two ways of ending (clean close and abort).
//!
//! Memory while idle: no read buffer is kept (a 4 KiB chunk is reserved only
//! to read and released once nothing partial remains), and writes go straight
//! to the socket from a queue of `Bytes` without a `BufWriter`.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::parse_host_port;
use crate::upstream::negotiate::{STREAM_CLOSE, item_to_event, stream_header};
use crate::upstream::{UpstreamAction, UpstreamEvent, UpstreamFailure};
use crate::xml::splitter::{Splitter, SplitterLimits};

/// Bytes reserved for one read.
const READ_CHUNK: usize = 4096;

/// How a finished session leaves the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Our closing tag is queued: flush, wait for the server's, close.
    Close,
    /// Close TCP without a closing tag.
    Abort,
}

/// Settings for every upstream connection.
#[derive(Clone, Debug)]
pub struct ConnSettings {
    /// Per-address connect timeout.
    pub connect_timeout: Duration,
    /// Wait for the server's closing tag after ours.
    pub close_timeout: Duration,
    /// Bounds on server elements.
    pub splitter: SplitterLimits,
}

/// A connected upstream stream.
#[derive(Debug)]
pub struct UpstreamConn {
    stream: TcpStream,
    read_buf: BytesMut,
    splitter: Splitter,
    write_queue: VecDeque<Bytes>,
    /// No more reads: the server closed its stream or the connection failed.
    read_done: bool,
    secure: bool,
}

// === impl UpstreamConn ===

impl UpstreamConn {
    /// Connects to the first reachable address among `targets` (`host:port`), in order.
    pub async fn connect(
        targets: &[String],
        settings: &ConnSettings,
    ) -> Result<Self, UpstreamFailure> {
        let mut last_error = String::from("no upstream configured");
        for target in targets {
            let addrs = match resolve(target).await {
                Ok(addrs) => addrs,
                Err(e) => {
                    last_error = format!("{target}: {e}");
                    continue;
                }
            };
            for addr in addrs {
                match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr)).await
                {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(Self {
                            stream,
                            read_buf: BytesMut::new(),
                            splitter: Splitter::new(settings.splitter),
                            write_queue: VecDeque::new(),
                            read_done: false,
                            secure: false,
                        });
                    }
                    Ok(Err(e)) => last_error = format!("{addr}: {e}"),
                    Err(_) => last_error = format!("{addr}: timed out"),
                }
            }
        }
        Err(UpstreamFailure::Connect(last_error))
    }

    /// Address of the server.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// Queues an action; says whether the session is leaving the connection.
    pub fn apply(&mut self, action: UpstreamAction) -> Option<Finish> {
        match action {
            UpstreamAction::Open(open) => {
                if open.restart {
                    // The server answers a new header only after reading ours,
                    // and everything before it has been split already.
                    self.splitter.reset();
                }
                self.write_queue
                    .push_back(stream_header(&open, self.secure));
                None
            }
            UpstreamAction::Send(bytes) => {
                if !bytes.is_empty() {
                    self.write_queue.push_back(bytes);
                }
                None
            }
            UpstreamAction::Close => {
                self.write_queue.push_back(Bytes::from_static(STREAM_CLOSE));
                Some(Finish::Close)
            }
            UpstreamAction::Abort => Some(Finish::Abort),
        }
    }

    /// Whether queued bytes wait for the socket.
    pub fn has_pending_writes(&self) -> bool {
        !self.write_queue.is_empty()
    }

    /// Whether reading is over (server closed, or the connection failed).
    pub fn read_done(&self) -> bool {
        self.read_done
    }

    /// Writes as much of the queue as the socket takes without waiting.
    pub fn try_flush(&mut self) -> Result<(), UpstreamFailure> {
        while !self.write_queue.is_empty() {
            let slices: Vec<IoSlice<'_>> = self
                .write_queue
                .iter()
                .take(16)
                .map(|b| IoSlice::new(b))
                .collect();
            match self.stream.try_write_vectored(&slices) {
                Ok(0) => return Err(UpstreamFailure::Lost("write returned 0".into())),
                Ok(mut written) => {
                    while written > 0 {
                        let Some(front) = self.write_queue.front_mut() else {
                            break;
                        };
                        if written >= front.len() {
                            written -= front.len();
                            self.write_queue.pop_front();
                        } else {
                            front.advance(written);
                            written = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(UpstreamFailure::Lost(e.to_string())),
            }
        }
        Ok(())
    }

    /// Waits until the socket can be read (cancel-safe).
    pub async fn readable(&self) -> io::Result<()> {
        self.stream.readable().await
    }

    /// Waits until the socket can be written (cancel-safe).
    pub async fn writable(&self) -> io::Result<()> {
        self.stream.writable().await
    }

    /// Reads what is available and appends the resulting events to `out`.
    ///
    /// A failure is reported as a final [`UpstreamEvent::Failed`].
    pub fn read_events(&mut self, out: &mut Vec<UpstreamEvent>) {
        if self.read_done {
            return;
        }
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 4 {
            self.read_buf.reserve(READ_CHUNK);
        }
        match self.stream.try_read_buf(&mut self.read_buf) {
            Ok(0) => {
                self.read_done = true;
                if !self.splitter.is_closed() {
                    out.push(UpstreamEvent::Failed(UpstreamFailure::Lost(
                        "the server closed the connection without a closing tag".into(),
                    )));
                }
                return;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                self.read_done = true;
                out.push(UpstreamEvent::Failed(UpstreamFailure::Lost(e.to_string())));
                return;
            }
        }
        loop {
            match self.splitter.feed(&mut self.read_buf) {
                Ok(Some(item)) => match item_to_event(item) {
                    Ok(event) => {
                        let closed = matches!(event, UpstreamEvent::StreamClosed);
                        out.push(event);
                        if closed {
                            self.read_done = true;
                            break;
                        }
                    }
                    Err(failure) => {
                        self.read_done = true;
                        out.push(UpstreamEvent::Failed(failure));
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    self.read_done = true;
                    out.push(UpstreamEvent::Failed(UpstreamFailure::Protocol(e)));
                    break;
                }
            }
        }
        if self.read_buf.is_empty() {
            // Release the chunk; stanzas cut from it keep their own reference.
            self.read_buf = BytesMut::new();
        }
    }

    /// Flushes our closing tag, waits up to `timeout` for the server to end
    /// its side (UP-50), then closes TCP.
    pub async fn close_gracefully(mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            while self.has_pending_writes() {
                if self.writable().await.is_err() || self.try_flush().is_err() {
                    return;
                }
            }
            let mut sink = Vec::new();
            while !self.read_done {
                if self.readable().await.is_err() {
                    return;
                }
                self.read_events(&mut sink);
                sink.clear();
            }
        })
        .await;
        let _ = self.stream.shutdown().await;
    }

    /// Closes TCP without a closing tag, after a short best-effort flush of
    /// what the client had already sent.
    pub async fn abort(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while self.has_pending_writes() {
                if self.writable().await.is_err() || self.try_flush().is_err() {
                    return;
                }
            }
        })
        .await;
        drop(self.stream);
    }
}

/// Resolves `host:port`; IP literals never touch a resolver.
async fn resolve(target: &str) -> io::Result<Vec<SocketAddr>> {
    let (host, port) = parse_host_port(target)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not host:port"))?;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    Ok(tokio::net::lookup_host((host, port)).await?.collect())
}

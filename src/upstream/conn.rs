//! One upstream connection: reading and splitting, queued writes, TLS, and
//! the two ways of ending (clean close and abort).
//!
//! Memory while idle: no read buffer is kept (a 4 KiB chunk is reserved only
//! to read and released once nothing partial remains), and writes go straight
//! to the socket from a queue of `Bytes` without a `BufWriter`. With TLS,
//! rustls's `ClientConnection` is driven directly on the socket's readiness,
//! so waiting for data never holds a buffer either; tokio-rustls is only used
//! to run handshakes.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rustls::ClientConnection;
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::upstream::negotiate::{STREAM_CLOSE, item_to_event, stream_header};
use crate::upstream::{UpstreamAction, UpstreamEvent, UpstreamFailure};
use crate::xml::splitter::{Item, Splitter, SplitterLimits};

/// Bytes reserved for one read.
const READ_CHUNK: usize = 4096;
/// Plaintext rustls may hold before our queue keeps the rest.
const TLS_BUFFER_LIMIT: usize = 64 * 1024;

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
    /// Time for TLS handshakes and stream negotiation.
    pub handshake_timeout: Duration,
    /// Wait for the server's closing tag after ours.
    pub close_timeout: Duration,
    /// A write making no progress this long means the connection is dead.
    pub write_timeout: Duration,
    /// Client data waiting for the server beyond which the client is not read.
    pub max_write_queue: usize,
    /// Bounds on server elements.
    pub splitter: SplitterLimits,
}

/// A connected upstream stream.
pub struct UpstreamConn {
    stream: TcpStream,
    tls: Option<Box<ClientConnection>>,
    read_buf: BytesMut,
    splitter: Splitter,
    write_queue: VecDeque<Bytes>,
    /// No more reads: the server closed its stream or the connection failed.
    read_done: bool,
    /// Since when queued bytes have waited without the socket taking any.
    stalled_since: Option<Instant>,
}

impl std::fmt::Debug for UpstreamConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConn")
            .field("peer", &self.stream.peer_addr().ok())
            .field("tls", &self.tls.is_some())
            .field("queued", &self.write_queue.len())
            .finish_non_exhaustive()
    }
}

/// `io::Write` over a non-blocking socket: `WouldBlock` passes through.
struct TryWriter<'a>(&'a TcpStream);

impl Write for TryWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `io::Read` over a non-blocking socket.
struct TryReader<'a>(&'a TcpStream);

impl Read for TryReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

// === impl UpstreamConn ===

impl UpstreamConn {
    /// Wraps a connected socket (and its TLS state, if any).
    pub fn new(stream: TcpStream, tls: Option<ClientConnection>, limits: SplitterLimits) -> Self {
        let tls = tls.map(|mut t| {
            t.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
            Box::new(t)
        });
        Self {
            stream,
            tls,
            read_buf: BytesMut::new(),
            splitter: Splitter::new(limits),
            write_queue: VecDeque::new(),
            read_done: false,
            stalled_since: None,
        }
    }

    /// Whether TLS protects the connection.
    pub fn is_secure(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether the TLS session was resumed (UP-8); `None` without TLS.
    pub fn tls_resumed(&self) -> Option<bool> {
        self.tls
            .as_ref()
            .and_then(|t| t.handshake_kind())
            .map(|k| k == rustls::HandshakeKind::Resumed)
    }

    /// Whether a pre-dialed connection is still usable: open, and quiet
    /// apart from TLS housekeeping (session tickets), which is processed.
    pub fn is_idle_alive(&mut self) -> bool {
        matches!(self.fill(), Ok(false)) && self.read_buf.is_empty()
    }

    /// Queues raw bytes (already-serialised XML).
    pub fn queue(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.write_queue.push_back(bytes);
        }
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
                let header = stream_header(&open, self.is_secure());
                self.queue(header);
                None
            }
            UpstreamAction::Send(bytes) => {
                self.queue(bytes);
                None
            }
            UpstreamAction::Close => {
                self.queue(Bytes::from_static(STREAM_CLOSE));
                if let Some(tls) = &mut self.tls {
                    // UP-50: close_notify follows our closing tag.
                    let _ = Self::move_plaintext(tls, &mut self.write_queue);
                    tls.send_close_notify();
                }
                Some(Finish::Close)
            }
            UpstreamAction::Abort => Some(Finish::Abort),
        }
    }

    /// Expects a new stream header next (after STARTTLS).
    pub fn reset_splitter(&mut self) {
        self.splitter.reset();
    }

    /// Bytes queued for the server and not yet handed to TLS or the socket.
    pub fn queued_bytes(&self) -> usize {
        self.write_queue.iter().map(Bytes::len).sum()
    }

    /// Whether queued bytes wait for the socket.
    pub fn has_pending_writes(&self) -> bool {
        !self.write_queue.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Whether reading is over (server closed, or the connection failed).
    pub fn read_done(&self) -> bool {
        self.read_done
    }

    /// Writes as much of the queue as the socket takes without waiting.
    pub fn try_flush(&mut self) -> Result<(), UpstreamFailure> {
        let written = self.write_some()?;
        if self.write_queue.is_empty() && self.write_queue.capacity() > 0 {
            self.write_queue = VecDeque::new();
        }
        self.stalled_since = if !self.has_pending_writes() {
            None
        } else if written > 0 {
            Some(crate::clock::now())
        } else {
            self.stalled_since.or_else(|| Some(crate::clock::now()))
        };
        Ok(())
    }

    /// Since when the server has taken none of the bytes waiting for it
    /// (UP-42); `None` while nothing waits or writes make progress.
    pub fn write_stalled_since(&self) -> Option<Instant> {
        self.stalled_since
    }

    /// Bytes handed to the socket.
    fn write_some(&mut self) -> Result<usize, UpstreamFailure> {
        let lost = |e: io::Error| UpstreamFailure::Lost(e.to_string());
        let Some(tls) = &mut self.tls else {
            return Self::flush_plain(&self.stream, &mut self.write_queue).map_err(lost);
        };
        let mut total = 0;
        loop {
            Self::move_plaintext(tls, &mut self.write_queue).map_err(lost)?;
            if !tls.wants_write() {
                return Ok(total);
            }
            match tls.write_tls(&mut TryWriter(&self.stream)) {
                Ok(0) => return Err(UpstreamFailure::Lost("write returned 0".into())),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) => return Err(lost(e)),
            }
        }
    }

    fn flush_plain(stream: &TcpStream, queue: &mut VecDeque<Bytes>) -> io::Result<usize> {
        let mut total = 0;
        while !queue.is_empty() {
            let slices: Vec<IoSlice<'_>> = queue.iter().take(16).map(|b| IoSlice::new(b)).collect();
            match stream.try_write_vectored(&slices) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
                Ok(written) => {
                    advance_queue(queue, written);
                    total += written;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Hands queued plaintext to rustls, as much as its buffer limit takes.
    fn move_plaintext(tls: &mut ClientConnection, queue: &mut VecDeque<Bytes>) -> io::Result<()> {
        while let Some(front) = queue.front() {
            let taken = tls.writer().write(front)?;
            if taken == 0 {
                break;
            }
            advance_queue(queue, taken);
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

    /// Waits until the socket can be read (`read`) or written (`write`),
    /// whichever comes first (cancel-safe). One waiter instead of two keeps
    /// the session's task smaller.
    pub async fn ready(&self, read: bool, write: bool) -> io::Result<tokio::io::Ready> {
        let interest = match (read, write) {
            (true, true) => tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE,
            (false, true) => tokio::io::Interest::WRITABLE,
            _ => tokio::io::Interest::READABLE,
        };
        self.stream.ready(interest).await
    }

    /// Acknowledges received data at once. Servers that leave Nagle on
    /// (Prosody does, and cannot turn it off under TLS) hold their second
    /// small write until our ACK, which Linux would delay by up to 40 ms:
    /// a stream header and its features in two TLS records took 45 ms.
    /// Quick-ACK mode is not sticky, so it is re-armed after every read.
    fn ack_now(&self) {
        #[cfg(target_os = "linux")]
        {
            let _ = socket2::SockRef::from(&self.stream).set_tcp_quickack(true);
        }
    }

    /// Reads what the socket has into the read buffer; `Ok(true)` at end of stream.
    fn fill(&mut self) -> Result<bool, UpstreamFailure> {
        let lost = |e: io::Error| UpstreamFailure::Lost(e.to_string());
        let Some(tls) = &mut self.tls else {
            if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 4 {
                self.read_buf.reserve(READ_CHUNK);
            }
            // Through AsyncRead rather than try_read: a short read clears
            // tokio's readiness, which saves the read that would only say
            // EAGAIN (one syscall per relayed stanza). The relay loop waits
            // with `ready()`, so the no-op waker left here wakes nothing.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let polled = tokio_util::io::poll_read_buf(
                std::pin::Pin::new(&mut self.stream),
                &mut cx,
                &mut self.read_buf,
            );
            return match polled {
                std::task::Poll::Pending => Ok(false),
                std::task::Poll::Ready(Ok(0)) => Ok(true),
                std::task::Poll::Ready(Ok(_)) => {
                    self.ack_now();
                    Ok(false)
                }
                std::task::Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    Ok(false)
                }
                std::task::Poll::Ready(Err(e)) => Err(lost(e)),
            };
        };
        // One record batch per readiness event: tokio keeps the socket
        // readable while more is waiting, so the relay loop comes back.
        let mut eof = false;
        match tls.read_tls(&mut TryReader(&self.stream)) {
            Ok(0) => eof = true,
            Ok(_) => {
                #[cfg(target_os = "linux")]
                {
                    let _ = socket2::SockRef::from(&self.stream).set_tcp_quickack(true);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(lost(e)),
        }
        tls.process_new_packets()
            .map_err(|e| UpstreamFailure::Tls(e.to_string()))?;
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            match tls.reader().read(&mut chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => self.read_buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(eof),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
                Err(e) => return Err(lost(e)),
            }
        }
    }

    /// Reads and splits what is available into items (used while negotiating).
    pub fn read_items(&mut self, out: &mut Vec<Item>) -> Result<(), UpstreamFailure> {
        if self.read_done {
            return Ok(());
        }
        let eof = self.fill()?;
        while let Some(item) = self.splitter.feed(&mut self.read_buf)? {
            out.push(item);
        }
        self.release_idle_buffer();
        if eof {
            self.read_done = true;
            if !self.splitter.is_closed() {
                return Err(UpstreamFailure::Lost(
                    "the server closed the connection without a closing tag".into(),
                ));
            }
        }
        Ok(())
    }

    /// Reads what is available and appends the resulting events to `out`.
    ///
    /// A failure is reported as a final [`UpstreamEvent::Failed`].
    pub fn read_events(&mut self, out: &mut Vec<UpstreamEvent>) {
        if self.read_done {
            return;
        }
        let eof = match self.fill() {
            Ok(eof) => eof,
            Err(failure) => {
                self.read_done = true;
                out.push(UpstreamEvent::Failed(failure));
                return;
            }
        };
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
        self.release_idle_buffer();
        if eof && !self.read_done {
            self.read_done = true;
            out.push(UpstreamEvent::Failed(UpstreamFailure::Lost(
                "the server closed the connection without a closing tag".into(),
            )));
        }
    }

    fn release_idle_buffer(&mut self) {
        if self.read_buf.is_empty() {
            // Stanzas cut from the chunk keep their own reference.
            self.read_buf = BytesMut::new();
            self.splitter.compact();
        }
    }

    /// Writes everything queued, waiting for the socket as needed.
    pub async fn flush_all(&mut self) -> Result<(), UpstreamFailure> {
        while self.has_pending_writes() {
            self.writable()
                .await
                .map_err(|e| UpstreamFailure::Lost(e.to_string()))?;
            self.try_flush()?;
        }
        Ok(())
    }

    /// Runs a TLS handshake on this (plain) connection: after `<proceed/>`.
    pub async fn start_tls(
        self,
        config: Arc<rustls::ClientConfig>,
        domain: &str,
    ) -> Result<Self, UpstreamFailure> {
        if self.tls.is_some() || !self.read_buf.is_empty() || !self.write_queue.is_empty() {
            return Err(UpstreamFailure::Negotiation(
                "unexpected data around STARTTLS",
            ));
        }
        let limits = self.splitter.limits();
        let (stream, tls) = tls_handshake(self.stream, config, domain).await?;
        Ok(Self::new(stream, Some(tls), limits))
    }

    /// Flushes our closing tag, waits up to `timeout` for the server to end
    /// its side (UP-50), then closes TCP.
    pub async fn close_gracefully(mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            if self.flush_all().await.is_err() {
                return;
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
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush_all()).await;
        drop(self.stream);
    }
}

fn advance_queue(queue: &mut VecDeque<Bytes>, mut written: usize) {
    while written > 0 {
        let Some(front) = queue.front_mut() else {
            break;
        };
        if written >= front.len() {
            written -= front.len();
            queue.pop_front();
        } else {
            front.advance(written);
            written = 0;
        }
    }
}

/// Runs a client TLS handshake with SNI = `domain`, then hands back the
/// socket and the rustls state for readiness-driven I/O.
pub async fn tls_handshake(
    stream: TcpStream,
    config: Arc<rustls::ClientConfig>,
    domain: &str,
) -> Result<(TcpStream, ClientConnection), UpstreamFailure> {
    let name = ServerName::try_from(domain.to_owned())
        .map_err(|_| UpstreamFailure::Negotiation("the domain is not a valid TLS server name"))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = connector
        .connect(name, stream)
        .await
        .map_err(|e| UpstreamFailure::Tls(e.to_string()))?;
    Ok(tls.into_inner())
}

//! The HTTP/1.1 server of the public listeners.
//!
//! xmpp-edge's HTTP traffic is narrow: small POST bodies, small responses,
//! and connections that mostly sit parked in a long-poll or carry a
//! WebSocket. A general server keeps buffers per connection for its whole
//! life (hyper: an 8-16 KiB read buffer and an 8 KiB header buffer), which
//! was most of an idle BOSH session's memory. This one parses requests with
//! `httparse` (hyper's own parser) into a buffer that exists only while a
//! request is being read, and holds nothing but the socket while a request
//! is parked. It does what BOSH, WebSocket and discovery need: keep-alive,
//! pipelining (one request at a time), `Content-Length` and chunked request
//! bodies, `Expect: 100-continue`, WebSocket upgrades, HEAD, and the limits
//! (`limits.header_read_timeout_secs`, header size and count, body size).
//! HTTP/2 goes through hyper (`h2.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http::bosh::BodyError;
use crate::http::route::{self, Endpoint, Request};
use crate::http::{AppState, ConnInfo, Response, plain, websocket};
use crate::metrics::Limit;
use crate::relay::websocket::WsIo;

/// Largest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request.
const MAX_HEADERS: usize = 64;
/// How much a read asks for at a time while a request comes in.
const READ_CHUNK: usize = 2048;
/// Bytes a client may send ahead (pipelining) while its request is handled.
const MAX_AHEAD: usize = 64 * 1024;

/// How the body of a request is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

/// Why a connection ends early.
enum Stop {
    /// The client closed, or the socket failed: nothing more to say.
    Gone,
    /// Answer with this, then close.
    Answer(Box<Response>),
}

/// Serves HTTP/1.1 on `io` until the client leaves, the connection becomes
/// a WebSocket session, or an error ends it.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice"
)]
pub fn serve<S: WsIo>(
    mut io: S,
    info: ConnInfo,
    state: Arc<AppState>,
    redirecting: bool,
) -> impl Future<Output = ()> {
    // An `async move` block rather than an `async fn`: an async fn copies
    // its arguments into locals, and the frame keeps both copies for the
    // connection's whole life.
    async move {
        let mut buf = BytesMut::new();
        loop {
            let header_timeout = Duration::from_secs(u64::from(
                state.runtime().config.limits.header_read_timeout_secs,
            ));
            let mut head = match tokio::time::timeout(header_timeout, read_head(&mut io, &mut buf))
                .await
            {
                Ok(Ok(Some(head))) => head,
                Ok(Ok(None)) => return,
                Ok(Err(Stop::Gone)) => return,
                Ok(Err(Stop::Answer(response))) => {
                    let _ = write_response(&mut io, &response, Version::HTTP_11, true, false).await;
                    return;
                }
                Err(_) => {
                    // Slowloris, or a keep-alive connection left idle.
                    state.metrics.limit_hit(Limit::HeaderReadTimeout);
                    return;
                }
            };
            let runtime = state.runtime();
            let endpoint = route::endpoint(&runtime, head.uri.path());
            if !redirecting && endpoint == Endpoint::WebSocket && is_upgrade(&head) {
                // Boxed: only the handshake needs it, and inline it would
                // double the size of every connection's future (kept on the heap
                // for every parked BOSH request and idle keep-alive connection).
                Box::pin(upgrade(io, head, buf, &info, state)).await;
                return;
            }
            let limit = route::body_limit(&runtime, endpoint, &head.method);
            drop(runtime);
            let body = match tokio::time::timeout(
                header_timeout,
                read_body(&mut io, &mut buf, &head, limit),
            )
            .await
            {
                Ok(Ok(body)) => Ok(body),
                Ok(Err(BodyError::TooLarge)) => Err(BodyError::TooLarge),
                Ok(Err(BodyError::Io)) | Err(_) => Err(BodyError::Io),
            };
            // A body that could not be read leaves the stream unsynchronised.
            let body_broken = body.is_err();
            let request = Request {
                method: &head.method,
                uri: &head.uri,
                headers: std::mem::take(&mut head.headers),
                conn: &info,
                redirecting,
            };
            if buf.is_empty() {
                // A parked request holds no read buffer.
                buf = BytesMut::new();
            }
            // Boxed: the handler (a parked BOSH request) lives only as long as
            // the request, so the connection's own future stays small.
            let handled = Box::pin(route::handle(&state, request, body));
            let Some(response) = watch_client(&mut io, &mut buf, handled).await else {
                // The client went away; the handler was dropped (a parked BOSH
                // request tells its session).
                return;
            };
            let close = !head.keep_alive
                || body_broken
                || response
                    .headers()
                    .get(header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let head_only = head.method == Method::HEAD;
            if write_response(&mut io, &response, head.version, close, head_only)
                .await
                .is_err()
                || close
            {
                let _ = io.shutdown().await;
                return;
            }
            if buf.is_empty() {
                // Nothing pipelined: hold no buffer while idle.
                buf = BytesMut::new();
            }
        }
    }
}

/// Reads and parses one request head; `Ok(None)` when the client closed
/// between requests.
async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> Result<Option<Head>, Stop> {
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = to_head(&request)?;
                    buf.advance(len);
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(answer(
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "too many header fields\n",
                    ));
                }
                Err(e) => {
                    return Err(answer(
                        StatusCode::BAD_REQUEST,
                        format!("malformed request: {e}\n"),
                    ));
                }
            }
            if buf.len() >= MAX_HEAD {
                return Err(answer(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large\n",
                ));
            }
        }
        buf.reserve(READ_CHUNK);
        match io.read_buf(buf).await {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) | Err(_) => return Err(Stop::Gone),
            Ok(_) => {}
        }
    }
}

fn bad(message: &'static str) -> Stop {
    answer(StatusCode::BAD_REQUEST, message)
}

/// Answer with `status` and a short text, then close.
fn answer(status: StatusCode, body: impl Into<Bytes>) -> Stop {
    Stop::Answer(Box::new(plain(status, body)))
}

/// The typed head of a parsed request, with its body framing.
fn to_head(request: &httparse::Request<'_, '_>) -> Result<Head, Stop> {
    let method = Method::from_bytes(request.method.unwrap_or("").as_bytes())
        .map_err(|_| bad("bad method\n"))?;
    let uri = request
        .path
        .unwrap_or("")
        .parse::<Uri>()
        .map_err(|_| bad("bad request target\n"))?;
    let version = match request.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(bad("unsupported HTTP version\n")),
    };
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for h in request.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("bad header name\n"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad("bad header value\n"))?;
        headers.append(name, value);
    }
    let framing = framing(&headers)?;
    let connection = |token: &str| {
        headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let keep_alive = match version {
        Version::HTTP_11 => !connection("close"),
        _ => connection("keep-alive"),
    };
    Ok(Head {
        method,
        uri,
        version,
        headers,
        framing,
        keep_alive,
    })
}

/// RFC 9112 §6: chunked wins; a length must be one number; both at once
/// is refused (request smuggling).
fn framing(headers: &HeaderMap) -> Result<Framing, Stop> {
    let te = headers.get_all(header::TRANSFER_ENCODING);
    let has_te = te.iter().next().is_some();
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if has_te {
        if lengths.next().is_some() {
            return Err(bad("both Transfer-Encoding and Content-Length\n"));
        }
        let last = te
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .next_back()
            .unwrap_or("");
        return if last.eq_ignore_ascii_case("chunked") {
            Ok(Framing::Chunked)
        } else {
            Err(answer(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported transfer coding\n",
            ))
        };
    }
    let mut length = None;
    for value in lengths {
        let n = value
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| bad("bad Content-Length\n"))?;
        if length.is_some_and(|l| l != n) {
            return Err(bad("conflicting Content-Length\n"));
        }
        length = Some(n);
    }
    Ok(match length {
        Some(0) | None => Framing::None,
        Some(n) => Framing::Length(n),
    })
}

/// Reads the body (at most `limit` bytes), answering `Expect: 100-continue`.
async fn read_body<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    head: &Head,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if let Framing::Length(n) = head.framing
        && n > limit as u64
    {
        // Refused before a byte of it is read.
        return Err(BodyError::TooLarge);
    }
    if head.framing != Framing::None
        && head
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        && head.version == Version::HTTP_11
    {
        io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| BodyError::Io)?;
    }
    match head.framing {
        Framing::None => Ok(Bytes::new()),
        Framing::Length(n) => {
            let n = usize::try_from(n).map_err(|_| BodyError::TooLarge)?;
            while buf.len() < n {
                buf.reserve((n - buf.len()).min(64 * 1024));
                if io.read_buf(buf).await.map_err(|_| BodyError::Io)? == 0 {
                    return Err(BodyError::Io);
                }
            }
            Ok(buf.split_to(n).freeze())
        }
        Framing::Chunked => read_chunked(io, buf, limit).await,
    }
}

/// Decodes a chunked body (extensions and trailers are skipped).
async fn read_chunked<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let mut body = BytesMut::new();
    loop {
        let line = read_line(io, buf).await?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| BodyError::Io)?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(io, buf).await?.is_empty() {}
            return Ok(body.freeze());
        }
        if body.len() + size > limit {
            return Err(BodyError::TooLarge);
        }
        while buf.len() < size + 2 {
            buf.reserve(READ_CHUNK);
            if io.read_buf(buf).await.map_err(|_| BodyError::Io)? == 0 {
                return Err(BodyError::Io);
            }
        }
        body.extend_from_slice(&buf[..size]);
        if &buf[size..size + 2] != b"\r\n" {
            return Err(BodyError::Io);
        }
        buf.advance(size + 2);
    }
}

/// One CRLF-terminated line (without the CRLF), bounded.
async fn read_line<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> Result<String, BodyError> {
    loop {
        if let Some(at) = memchr::memmem::find(buf, b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..at]).into_owned();
            buf.advance(at + 2);
            return Ok(line);
        }
        if buf.len() > 1024 {
            return Err(BodyError::Io);
        }
        buf.reserve(READ_CHUNK);
        if io.read_buf(buf).await.map_err(|_| BodyError::Io)? == 0 {
            return Err(BodyError::Io);
        }
    }
}

/// Runs `handled` while watching the socket: bytes the client sends ahead
/// are kept for the next request; if it closes, `None` (the handler is
/// dropped, which is how a parked request learns its client is gone).
async fn watch_client<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    handled: impl Future<Output = Response>,
) -> Option<Response> {
    tokio::pin!(handled);
    let mut watching = true;
    loop {
        tokio::select! {
            biased;
            response = &mut handled => return Some(response),
            read = read_ahead(io, buf), if watching => match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => watching = buf.len() < MAX_AHEAD,
            },
        }
    }
}

/// Reads what the client sends while its request is handled, without
/// holding a buffer for the (usual) case where it sends nothing.
async fn read_ahead<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    let mut chunk = [0u8; 64];
    let n = io.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn is_upgrade(head: &Head) -> bool {
    let has_token = |name: HeaderName, token: &str| {
        head.headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    head.method == Method::GET
        && head.version == Version::HTTP_11
        && has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade")
}

/// Completes a WebSocket handshake and runs the session on this connection.
async fn upgrade<S: WsIo>(
    mut io: S,
    head: Head,
    buf: BytesMut,
    info: &ConnInfo,
    state: Arc<AppState>,
) {
    let Some(key) = head.headers.get(header::SEC_WEBSOCKET_KEY) else {
        let response = plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
        let _ = write_response(&mut io, &response, head.version, true, false).await;
        return;
    };
    let accepted = match websocket::accept(&state, info, &head.headers) {
        Ok(accepted) => accepted,
        Err(response) => {
            let _ = write_response(&mut io, &response, head.version, true, false).await;
            return;
        }
    };
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(tungstenite::handshake::derive_accept_key(key.as_bytes()).as_bytes());
    if let Some((name, value)) = websocket::subprotocol_header(&accepted) {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    if io.write_all(&out).await.is_err() || io.flush().await.is_err() {
        return;
    }
    // The session gets a task of its own, sized for it alone: this
    // connection's request state (head, buffers) is freed now.
    let read = buf.to_vec();
    tokio::spawn(websocket::run(state, accepted, io, read));
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("")
}

/// Writes `response` (head and body in one write).
async fn write_response<S: AsyncWrite + Unpin>(
    io: &mut S,
    response: &Response,
    version: Version,
    close: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let body = response.body();
    let mut out = Vec::with_capacity(256 + if head_only { 0 } else { body.len() });
    let status = response.status();
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        if name == header::CONNECTION || name == header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(httpdate::fmt_http_date(crate::clock::system_now()).as_bytes());
    if close {
        out.extend_from_slice(b"\r\nconnection: close");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"\r\nconnection: keep-alive");
    }
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    io.write_all(&out).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Head, u16> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let _ = request.parse(text.as_bytes());
        to_head(&request).map_err(|stop| match stop {
            Stop::Answer(r) => r.status().as_u16(),
            Stop::Gone => 0,
        })
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n")
            .ok()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(12));
        assert!(h.keep_alive);
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .ok()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
                .err(),
            Some(400),
            "smuggling"
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").err(),
            Some(501)
        );
    }

    #[test]
    fn keep_alive_by_version_and_connection() {
        assert!(
            !head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .ok()
                .unwrap()
                .keep_alive
        );
        assert!(!head("GET / HTTP/1.0\r\n\r\n").ok().unwrap().keep_alive);
        assert!(
            head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .ok()
                .unwrap()
                .keep_alive
        );
    }

    #[tokio::test]
    async fn chunked_bodies_are_decoded_and_bounded() {
        let mut io = tokio::io::repeat(0); // never read: everything is buffered
        let mut buf = BytesMut::from(
            &b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT"[..],
        );
        let body = read_chunked(&mut io, &mut buf, 100).await.unwrap();
        assert_eq!(&body[..], b"hello world");
        assert_eq!(&buf[..], b"NEXT");
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"[..]);
        assert_eq!(
            read_chunked(&mut io, &mut buf, 8).await.unwrap_err(),
            BodyError::TooLarge
        );
    }
}

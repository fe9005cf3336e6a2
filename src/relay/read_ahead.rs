//! A reader that asks the socket for a whole chunk whatever the caller asks.
//!
//! tungstenite reads into what is left of its small read buffer
//! (`websocket.read_buffer_bytes`), so a frame often arrived in two system
//! calls: the first filled the leftover space, the second fetched the rest.
//! Reading a whole chunk into the stack and keeping what the caller had no
//! room for makes that one call. The spill is freed as soon as it is
//! consumed, so an idle session holds nothing extra.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one read asks the socket for when the caller asks for less.
const CHUNK: usize = 4096;

/// `inner`, read a chunk at a time; writes pass straight through.
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    /// Bytes read but not yet handed out; empty (unallocated) when idle.
    spill: Vec<u8>,
    /// How much of `spill` was handed out.
    taken: usize,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            spill: Vec::new(),
            taken: 0,
        }
    }

    fn hand_out_spill(&mut self, buf: &mut ReadBuf<'_>) {
        let n = (self.spill.len() - self.taken).min(buf.remaining());
        buf.put_slice(&self.spill[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.spill.len() {
            self.spill = Vec::new();
            self.taken = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.taken < this.spill.len() {
            this.hand_out_spill(buf);
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= CHUNK {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let mut chunk = [MaybeUninit::<u8>::uninit(); CHUNK];
        let mut ahead = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut ahead))?;
        let got = ahead.filled();
        let n = got.len().min(buf.remaining());
        buf.put_slice(&got[..n]);
        if n < got.len() {
            this.spill.extend_from_slice(&got[n..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tokio::io::AsyncReadExt;

    /// Hands out `chunks` one per read (as a socket would, one segment at a
    /// time), counting the reads.
    struct Segments {
        chunks: VecDeque<Vec<u8>>,
        reads: usize,
    }

    impl AsyncRead for Segments {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            if let Some(mut chunk) = this.chunks.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    this.chunks.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    fn segments(sizes: &[usize]) -> (Segments, Vec<u8>) {
        let mut all = Vec::new();
        let mut chunks = VecDeque::new();
        for (i, &size) in sizes.iter().enumerate() {
            let chunk: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8).collect();
            all.extend_from_slice(&chunk);
            chunks.push_back(chunk);
        }
        (Segments { chunks, reads: 0 }, all)
    }

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order_with_one_socket_read_per_segment() {
        let sizes = [300, 17, 4000, 1, 900];
        let (inner, all) = segments(&sizes);
        let mut reader = ReadAhead::new(inner);
        let mut got = Vec::new();
        let mut small = [0u8; 212];
        while got.len() < all.len() {
            let n = reader.read(&mut small).await.unwrap();
            assert!(n > 0, "early end after {} bytes", got.len());
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, all);
        assert_eq!(reader.inner.reads, sizes.len());
        // Nothing is kept once it has been handed out.
        assert_eq!(reader.spill.capacity(), 0);
    }

    #[tokio::test]
    async fn large_reads_go_straight_to_the_socket() {
        let (inner, all) = segments(&[5000, 6000]);
        let mut reader = ReadAhead::new(inner);
        let mut got = Vec::new();
        let mut big = vec![0u8; 8192];
        while got.len() < all.len() {
            let n = reader.read(&mut big).await.unwrap();
            got.extend_from_slice(&big[..n]);
        }
        assert_eq!(got, all);
        assert_eq!(reader.inner.reads, 2);
        assert_eq!(reader.spill.capacity(), 0);
    }

    #[tokio::test]
    async fn end_of_stream_reads_as_zero() {
        let (inner, _) = segments(&[]);
        let mut reader = ReadAhead::new(inner);
        let mut small = [0u8; 16];
        assert_eq!(reader.read(&mut small).await.unwrap(), 0);
    }
}

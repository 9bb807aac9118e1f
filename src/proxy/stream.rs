//! Stream plumbing: replaying already-read bytes, and the client connection
//! that is plaintext or TLS.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use crate::limits::DATA_READ_AHEAD as READ_AHEAD;

/// A stream whose first bytes were already read (the ClientHello tlsfront
/// inspected): reads return those first, then continue from the inner stream.
/// It sits under TLS, so it can also read ahead in bulk (message content).
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    /// Read-ahead buffer: `ahead[start..end]` is read but not yet returned.
    /// Allocated only while read-ahead is on (or bytes remain), so idle
    /// sessions do not carry it.
    ahead: Vec<u8>,
    start: usize,
    end: usize,
    read_ahead: bool,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed {
            prefix,
            ahead: Vec::new(),
            start: 0,
            end: 0,
            read_ahead: false,
            inner,
        }
    }

    /// Turns bulk reads on (during message content) or off; the buffer is
    /// released once it is drained.
    pub fn set_read_ahead(&mut self, on: bool) {
        self.read_ahead = on;
        if !on && self.start == self.end {
            self.release();
        }
    }

    fn release(&mut self) {
        self.ahead = Vec::new();
        self.start = 0;
        self.end = 0;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            if this.prefix.is_empty() {
                // Release the ClientHello buffer: it would otherwise stay
                // allocated for the whole session.
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        if this.start == this.end {
            if !this.read_ahead || buf.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.ahead.len() < READ_AHEAD {
                this.ahead = vec![0; READ_AHEAD];
            }
            let mut bulk = ReadBuf::new(&mut this.ahead);
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut bulk))?;
            (this.start, this.end) = (0, bulk.filled().len());
            if this.end == 0 {
                return Poll::Ready(Ok(())); // end of stream
            }
        }
        let n = (this.end - this.start).min(buf.remaining());
        buf.put_slice(&this.ahead[this.start..this.start + n]);
        this.start += n;
        if this.start == this.end && !this.read_ahead {
            this.release();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The client side of a session: plaintext until STARTTLS (or never, on an
/// implicit-TLS listener), TLS afterwards.
pub enum ClientIo<S> {
    Plain(S),
    Tls(Box<TlsStream<Prefixed<S>>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            ClientIo::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            ClientIo::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl<S> ClientIo<S> {
    /// Bulk reads under TLS for message content; see [`Prefixed::set_read_ahead`].
    /// A plaintext client is read straight into the session buffer anyway.
    pub fn set_read_ahead(&mut self, on: bool) {
        if let ClientIo::Tls(tls) = self {
            tls.get_mut().0.set_read_ahead(on);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn read_ahead_returns_every_byte_in_order() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (mut a, b) = tokio::io::duplex(100_000);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            for piece in sent.chunks(7_777) {
                a.write_all(piece).await.unwrap();
            }
        });
        let mut p = Prefixed::new(Bytes::from_static(b"hello"), b);
        let mut out = Vec::new();
        let mut small = [0u8; 5000];
        let mut round = 0;
        loop {
            // Switch read-ahead on and off mid-stream; nothing may be lost.
            p.set_read_ahead(round % 3 != 2);
            round += 1;
            let n = p.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&small[..n]);
        }
        writer.await.unwrap();
        p.set_read_ahead(false);
        assert_eq!(&out[..5], b"hello");
        assert_eq!(&out[5..], &data[..]);
        assert!(p.ahead.is_empty(), "buffer released once drained and off");
    }

    #[tokio::test]
    async fn prefix_is_replayed_before_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let mut p = Prefixed::new(Bytes::from_static(b"hello"), b);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}

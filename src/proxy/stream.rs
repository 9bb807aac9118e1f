//! Stream plumbing: replaying already-read bytes, and the client connection
//! that is plaintext or TLS.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use crate::limits::DATA_READ_AHEAD as READ_AHEAD;

/// Bytes held for a peer that does not read, at most (beyond one write).
const MAX_HELD: usize = 64 * 1024;

/// What a corked stream reserves at once: an ECDSA server flight and its
/// ticket take about 1 KiB, an RSA chain with an intermediate about 4 KiB.
const CORKED_ROOM: usize = 4096;

/// A stream whose first bytes were already read (the ClientHello tlsfront
/// inspected): reads return those first, then continue from the inner stream.
/// It sits under TLS, so it can also read ahead in bulk (message content).
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    /// Read-ahead buffer: bytes read but not yet returned. Allocated only
    /// while read-ahead is on (or bytes remain), so idle sessions do not
    /// carry it; read into without zeroing it first (zeroing 64 KiB per
    /// message was 1.5 % of a TLS session's CPU in a profile).
    ahead: BytesMut,
    read_ahead: bool,
    /// Writes held back while `cork` is on, or not yet taken by the socket;
    /// see [`Prefixed::corked`].
    held: Vec<u8>,
    cork: bool,
    /// A read that must wait for the peer first sends what is held.
    drain_on_wait: bool,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed {
            prefix,
            ahead: BytesMut::new(),
            read_ahead: false,
            held: Vec::new(),
            cork: false,
            drain_on_wait: true,
            inner,
        }
    }

    /// Holds writes back until they must go: when a read has to wait for
    /// the peer (who may be waiting for them), at the next write once the
    /// cork is off, or at shutdown; a flush alone does not send them. Used
    /// for the TLS handshake, so its last bytes (TLS 1.3's session tickets,
    /// which no client waits for) leave with the first reply instead of in a
    /// write of their own.
    pub fn corked(mut self) -> Self {
        self.cork = true;
        // Room for a usual server flight and its tickets in one allocation
        // (rustls writes them a record at a time); released once sent.
        self.held = Vec::with_capacity(CORKED_ROOM);
        self
    }

    /// Ends the cork; what it holds goes out with the next write, or at once
    /// when a read has to wait, unless `lazy`: then only with the next write
    /// (or flush, or shutdown). Lazy is for bytes no peer waits for.
    pub fn uncork(&mut self, lazy: bool) {
        self.cork = false;
        self.drain_on_wait = !lazy;
    }

    /// Turns bulk reads on (during message content) or off; the buffer is
    /// released once it is drained.
    pub fn set_read_ahead(&mut self, on: bool) {
        self.read_ahead = on;
        self.release_if_done();
    }

    /// Gives the read-ahead buffer's memory back once it is drained and off.
    fn release_if_done(&mut self) {
        if self.ahead.is_empty() && !self.read_ahead {
            self.ahead = BytesMut::new();
        }
    }
}

impl<S: AsyncWrite + Unpin> Prefixed<S> {
    /// Writes what is held until it is all written (or the socket is full).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        // Released: a session keeps no write buffer of its own.
        self.held = Vec::new();
        self.drain_on_wait = true;
        Poll::Ready(Ok(()))
    }

    /// Takes `bufs` in full: held while corked, else sent after what is held.
    /// Uncorked, no more is taken while `MAX_HELD` bytes wait for a peer
    /// that does not read, so the buffer stays bounded.
    fn hold_then_drain<'b>(
        &mut self,
        cx: &mut Context<'_>,
        bufs: impl Iterator<Item = &'b [u8]>,
    ) -> Poll<io::Result<usize>> {
        if !self.cork && self.held.len() >= MAX_HELD {
            std::task::ready!(self.poll_drain(cx))?;
        }
        let before = self.held.len();
        for b in bufs {
            self.held.extend_from_slice(b);
        }
        let total = self.held.len() - before;
        if !self.cork {
            // Taken whatever the socket says: the bytes are held, and the
            // flush that follows every reply writes them out.
            if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(total))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let ready = this.poll_read_inner(cx, buf);
        // About to wait for the peer: what is held may be what it waits for.
        if ready.is_pending() && this.drain_on_wait && !this.held.is_empty() {
            std::task::ready!(this.poll_drain(cx))?;
        }
        ready
    }
}

impl<S: AsyncRead + Unpin> Prefixed<S> {
    fn poll_read_inner(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self;
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
        if this.ahead.is_empty() {
            if !this.read_ahead || buf.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            // Empty, so this takes the allocation back from its start.
            this.ahead.reserve(READ_AHEAD);
            let n = std::task::ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.ahead
            ))?;
            if n == 0 {
                return Poll::Ready(Ok(())); // end of stream
            }
        }
        let n = this.ahead.len().min(buf.remaining());
        buf.put_slice(&this.ahead[..n]);
        this.ahead.advance(n);
        this.release_if_done();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.cork || !self.held.is_empty() {
            return self.hold_then_drain(cx, std::iter::once(buf));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.cork {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.cork || !self.held.is_empty() {
            return self.hold_then_drain(cx, bufs.iter().map(|b| &b[..]));
        }
        // rustls writes its records vectored, most often one at a time: one
        // buffer goes as a plain send, which the kernel takes by a shorter
        // path than writev (no VFS layer; the profile showed vfs_writev).
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            return Pin::new(&mut self.inner).poll_write(cx, only);
        }
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
    use std::time::Duration;
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
        assert_eq!(
            p.ahead.capacity(),
            0,
            "buffer released once drained and off"
        );
    }

    /// Bytes the peer `b` has received so far, without waiting.
    fn received(b: &mut tokio::io::DuplexStream) -> Vec<u8> {
        let mut out = vec![0u8; 4096];
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut rb = ReadBuf::new(&mut out);
        match Pin::new(b).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) => rb.filled().to_vec(),
            _ => Vec::new(),
        }
    }

    #[tokio::test]
    async fn cork_holds_writes_until_a_read_waits_or_the_next_write() {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let mut p = Prefixed::new(Bytes::new(), a).corked();
        p.write_all(b"flight").await.unwrap();
        p.flush().await.unwrap();
        assert!(
            received(&mut b).is_empty(),
            "a flush alone sends nothing while corked"
        );
        // A read that must wait sends what is held: the peer may wait for it.
        let mut one = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(50), p.read(&mut one)).await;
        assert!(read.is_err(), "nothing to read yet");
        assert_eq!(received(&mut b), b"flight");

        // Lazy: held across a waiting read, sent with the next write.
        p.write_all(b"tickets").await.unwrap();
        p.uncork(true);
        let read = tokio::time::timeout(Duration::from_millis(50), p.read(&mut one)).await;
        assert!(read.is_err());
        assert!(
            received(&mut b).is_empty(),
            "lazy bytes wait for the next write"
        );
        p.write_all(b"+reply").await.unwrap();
        p.flush().await.unwrap();
        assert_eq!(received(&mut b), b"tickets+reply");
        assert!(
            p.held.is_empty() && p.held.capacity() == 0,
            "buffer released"
        );

        // A peer that does not read: writes wait instead of piling up.
        let (a, _b) = tokio::io::duplex(16);
        let mut r = Prefixed::new(Bytes::new(), a).corked();
        r.write_all(b"tickets").await.unwrap();
        r.uncork(true);
        let chunk = [0u8; 4096];
        let writes = async {
            for _ in 0..256 {
                r.write_all(&chunk).await.unwrap();
            }
        };
        let write = tokio::time::timeout(Duration::from_millis(50), writes).await;
        assert!(
            write.is_err(),
            "a megabyte taken by a peer that reads nothing"
        );
        assert!(r.held.len() <= MAX_HELD + chunk.len(), "{}", r.held.len());

        // Shutdown sends what is held.
        let mut q = Prefixed::new(Bytes::new(), p.inner).corked();
        q.write_all(b"alert").await.unwrap();
        q.uncork(true);
        q.shutdown().await.unwrap();
        assert_eq!(received(&mut b), b"alert");
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

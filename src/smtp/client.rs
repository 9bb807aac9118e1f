//! The client side's reading of SMTP replies, for every SMTP client in
//! tlsfront: the backend connection, `check` (through it) and `probe`.
//!
//! The one place in `smtp/` that awaits: a loop around [`ReplyParser`] over
//! the caller's stream, with a deadline. It owns no socket; the caller keeps
//! the stream, the buffer (bytes past the reply stay in it) and the parser,
//! whose bounds also bound the buffer.

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::limits;
use crate::smtp::reply::{Reply, ReplyError, ReplyParser};

/// Why no reply was read.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("no reply before the deadline")]
    Timeout,
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Malformed(#[from] ReplyError),
}

/// Reads from `io` into `buf` until `parser` yields a whole reply, or the
/// deadline passes. Bytes already in `buf` are parsed first; bytes after the
/// reply are left in `buf`.
pub async fn read_reply<S>(
    io: &mut S,
    buf: &mut BytesMut,
    parser: &mut ReplyParser,
    deadline: Instant,
) -> Result<Reply, ReadError>
where
    S: AsyncRead + Unpin + ?Sized,
{
    loop {
        if let Some(reply) = parser.parse(buf)? {
            return Ok(reply);
        }
        buf.reserve(1024);
        match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(Ok(0)) => return Err(ReadError::Closed),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ReadError::Io(e)),
        }
    }
}

/// Ends a session politely: QUIT, a glance at the goodbye, shutdown; all
/// within [`limits::QUIT_TIMEOUT`], errors ignored (the session is over).
pub async fn quit<S>(io: &mut S)
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let _ = tokio::time::timeout(limits::QUIT_TIMEOUT, async {
        io.write_all(b"QUIT\r\n").await?;
        let mut sink = [0u8; 512];
        let _ = io.read(&mut sink).await;
        io.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::DuplexStream;

    /// One reply from `a` with `buf` as already read, tlsfront's bounds and
    /// `wait` to get it.
    async fn read(
        a: &mut DuplexStream,
        buf: &mut BytesMut,
        wait: Duration,
    ) -> Result<Reply, ReadError> {
        let mut parser = ReplyParser::new(limits::MAX_REPLY_LINE, limits::MAX_REPLY_BYTES);
        read_reply(a, buf, &mut parser, Instant::now() + wait).await
    }

    const LONG: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_reply_split_across_reads_with_bytes_after_it() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            b.write_all(b"250-first\r\n25").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            b.write_all(b"0 last\r\n220 next").await.unwrap();
            b
        });
        let mut buf = BytesMut::new();
        let r = read(&mut a, &mut buf, LONG).await.unwrap();
        assert_eq!((r.code, r.lines.len()), (250, 2));
        // What came after stays for the caller (the backend refuses it).
        assert_eq!(&buf[..], b"220 next");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn buffered_reply_needs_no_read() {
        // A stream that would block forever: the reply is already in `buf`.
        let (mut a, _b) = tokio::io::duplex(64);
        let mut buf = BytesMut::from(&b"221 bye\r\n"[..]);
        let r = read(&mut a, &mut buf, LONG).await.unwrap();
        assert_eq!(r.code, 221);
        assert!(buf.is_empty());
    }

    #[tokio::test]
    async fn timeout_closed_and_malformed_are_told_apart() {
        let (mut a, b) = tokio::io::duplex(64);
        let short = Duration::from_millis(30);
        let e = read(&mut a, &mut BytesMut::new(), short).await.unwrap_err();
        assert!(matches!(e, ReadError::Timeout), "{e:?}");
        drop(b);
        let mut half = BytesMut::from(&b"250-half"[..]);
        let e = read(&mut a, &mut half, LONG).await.unwrap_err();
        assert!(matches!(e, ReadError::Closed), "{e:?}");
        let mut http = BytesMut::from(&b"HTTP/1.1 400\r\n"[..]);
        let e = read(&mut a, &mut http, LONG).await.unwrap_err();
        assert!(matches!(e, ReadError::Malformed(_)), "{e:?}");
    }

    /// A line that never ends is refused at the parser's bound, not buffered.
    #[tokio::test]
    async fn an_endless_line_is_refused_at_the_bound() {
        let (mut a, mut b) = tokio::io::duplex(8192);
        let writer = tokio::spawn(async move {
            let junk = vec![b'2'; 1024];
            for _ in 0..64 {
                if b.write_all(&junk).await.is_err() {
                    break;
                }
            }
        });
        let mut buf = BytesMut::new();
        let mut parser = ReplyParser::new(512, 4096);
        let e = read_reply(&mut a, &mut buf, &mut parser, Instant::now() + LONG)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ReadError::Malformed(ReplyError::LineTooLong(512))),
            "{e:?}"
        );
        assert!(buf.len() < 512 + 2048, "{}", buf.len());
        drop(a);
        writer.await.unwrap();
    }
}

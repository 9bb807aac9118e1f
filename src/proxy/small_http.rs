//! The two small HTTP listeners beside SMTP (the ACME HTTP-01 challenge on
//! port 80, the MTA-STS policy on 443): one capped accept loop and one
//! bounded request-head reader, so both stay as cheap to scan as they are.

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::limits;

/// Accepts on every listener until `shutdown`, answering each connection
/// with `answer` under `limits::CHALLENGE_TIMEOUT`; beyond
/// `limits::MAX_CHALLENGE_CONNECTIONS` at once a connection is closed
/// unanswered (a scanner's flood costs no more than that).
pub async fn serve<F, Fut>(listeners: Vec<TcpListener>, shutdown: CancellationToken, answer: F)
where
    F: Fn(TcpStream) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits::MAX_CHALLENGE_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let (answer, shutdown, slots) = (answer.clone(), shutdown.clone(), slots.clone());
        tasks.spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => c,
                    _ = shutdown.cancelled() => return,
                };
                let Ok((stream, _)) = conn else {
                    tokio::time::sleep(limits::ACCEPT_BACKOFF.0).await;
                    continue;
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    continue;
                };
                let answering = answer(stream);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(limits::CHALLENGE_TIMEOUT, answering).await;
                    drop(permit);
                });
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Reads a request head: up to its blank line (CRLF CRLF, or LF LF from a
/// lax client), the end of the stream, or `limits::MAX_CHALLENGE_REQUEST`
/// bytes, whichever comes first.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n")
        && !buf.windows(2).any(|w| w == b"\n\n")
        && buf.len() < limits::MAX_CHALLENGE_REQUEST
    {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_head_ends_at_its_blank_line_or_the_limit() {
        for (sent, head_len) in [
            (&b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"[..], 28),
            (&b"GET / HTTP/1.0\n\n"[..], 16),
        ] {
            let (mut a, mut b) = tokio::io::duplex(64 * 1024);
            a.write_all(sent).await.unwrap();
            let head = read_head(&mut b).await.unwrap();
            assert!(head.len() >= head_len.min(sent.len()), "{head:?}");
        }
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let endless = vec![b'x'; 4 * limits::MAX_CHALLENGE_REQUEST];
        tokio::spawn(async move {
            let _ = a.write_all(&endless).await;
        });
        let head = read_head(&mut b).await.unwrap();
        assert!(
            head.len() < limits::MAX_CHALLENGE_REQUEST + 1024,
            "{}",
            head.len()
        );
    }
}

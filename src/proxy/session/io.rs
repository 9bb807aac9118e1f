//! The client side of the wire: replies out (held back while a pipelined
//! group is answered, then one write), command lines and message content in,
//! every wait bounded by a timeout, the session lifetime and shutdown.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::limits;
use crate::outcome::CloseReason;
use crate::proxy::stream::ClientIo;
use crate::smtp::line::Line;

use super::replies::Local;
use super::{Flow, Input, Session, read_failure};

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    pub(super) fn io(&mut self) -> &mut ClientIo<S> {
        self.io
            .as_mut()
            .expect("client stream present outside the handshake")
    }

    /// Sends one reply: in one write, flushed (one TLS record when
    /// encrypted), together with any held back; or held back itself while a
    /// further pipelined command is already in the input buffer.
    pub(super) async fn send(&mut self, bytes: &[u8]) -> Flow {
        if self.held.len() + bytes.len() <= limits::HELD_REPLIES && self.rbuf.contains(&b'\n') {
            self.held.extend_from_slice(bytes);
            return Ok(());
        }
        if self.held.is_empty() {
            return self.write_out(bytes).await;
        }
        self.held.extend_from_slice(bytes);
        self.release_held().await
    }

    /// Writes the replies held back, if any: before every wait for the client.
    pub(super) async fn release_held(&mut self) -> Flow {
        if self.held.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.held);
        self.write_out(&out).await
    }

    pub(super) async fn write_out(&mut self, bytes: &[u8]) -> Flow {
        let io = self.io();
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        match tokio::time::timeout(limits::WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(CloseReason::ClientIoError),
            Err(_) => Err(CloseReason::ClientTimeout),
        }
    }

    /// One of tlsfront's own replies.
    pub(super) async fn answer(&mut self, reply: &Local) -> Flow {
        self.send(&reply.render()).await
    }

    /// A local error reply; too many of them end the session.
    pub(super) async fn refuse(&mut self, reply: &Local) -> Flow {
        self.errors += 1;
        if self.errors >= self.shared.settings.smtp.max_errors {
            self.answer(&Local::TooManyErrors).await?;
            return Err(CloseReason::ProtocolError);
        }
        self.answer(reply).await
    }

    /// Waits for more client input, bounded by `timeout` and the session
    /// lifetime. Waiting for a command also ends on shutdown; message content
    /// is read on to its end (the grace time bounds it).
    pub(super) async fn fill(&mut self, timeout: Duration, input: Input) -> Flow {
        self.release_held().await?;
        let lifetime_left = self.deadline.saturating_duration_since(Instant::now());
        let (wait, on_timeout) = if lifetime_left < timeout {
            (lifetime_left, CloseReason::SessionLifetime)
        } else {
            (timeout, CloseReason::ClientTimeout)
        };
        // Commands are read through a buffer on the stack, so a session
        // waiting for its next command holds no read buffer at all (the
        // dominant per-session cost of idle connections otherwise). DATA
        // reads straight into `rbuf`, which `data` sized for throughput.
        let in_data = input == Input::Content;
        if in_data {
            self.rbuf.reserve(limits::DATA_READ_MIN);
        } else if self.rbuf.is_empty() {
            // Also drops a DATA-sized buffer once the message is done.
            self.rbuf = BytesMut::new();
        }
        // On shutdown a session between transactions ends at once; one in a
        // transaction gets until the end of the grace time to finish it.
        let stop = if self.phase.in_transaction() {
            self.shared.drain_over.clone()
        } else {
            self.shared.shutdown.clone()
        };
        let until = Instant::now() + wait;
        let backend = self.shared.backend.clone();
        let result = loop {
            // Idle between transactions with a backend connection: lent as
            // soon as another session waits for one (`backend.max_connections`).
            let lend = !in_data && self.backend.is_some() && !self.phase.in_transaction();
            let mut wanted = std::pin::pin!(backend.when_wanted());
            if lend {
                wanted.as_mut().enable();
                if backend.wanted() && self.lend_backend() {
                    continue;
                }
            }
            let io = self.io.as_mut().expect("client stream present");
            let rbuf = &mut self.rbuf;
            let read = std::future::poll_fn(|cx| {
                if in_data {
                    // Cancel-safe, so a fresh future per poll is fine.
                    return std::pin::pin!(io.read_buf(&mut *rbuf)).poll(cx);
                }
                let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); limits::COMMAND_READ];
                let mut chunk = ReadBuf::uninit(&mut chunk);
                std::task::ready!(Pin::new(&mut *io).poll_read(cx, &mut chunk))?;
                rbuf.extend_from_slice(chunk.filled());
                Poll::Ready(Ok(chunk.filled().len()))
            });
            tokio::select! {
                r = tokio::time::timeout_at(until, read) => break r,
                _ = stop.cancelled(), if !in_data => {
                    self.answer(&Local::ShuttingDown).await?;
                    return Err(CloseReason::Shutdown);
                }
                // The read is cancel-safe: nothing read is lost by going round.
                _ = wanted, if lend => {
                    self.lend_backend();
                }
            }
        };
        match result {
            Ok(Ok(0)) => Err(CloseReason::ClientClosed),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(read_failure(&e)),
            Err(_) => {
                let _ = self.answer(&Local::Timeout).await;
                Err(on_timeout)
            }
        }
    }

    /// Takes, without waiting, what the client has already sent beyond the
    /// last read, until `rbuf` holds `limit` bytes. A TLS read returns one
    /// record (at most 16 KiB) at a time; batching them means fewer scanner
    /// passes and fewer, larger backend writes. An end of stream is left for
    /// the next `fill` to see.
    pub(super) async fn read_ready(&mut self, limit: usize) -> Flow {
        let io = self.io.as_mut().expect("client stream present");
        let rbuf = &mut self.rbuf;
        // Room for the whole batch up front: `read_buf` on a full BytesMut
        // would grow it by only 64 bytes.
        rbuf.reserve(limit.saturating_sub(rbuf.len()));
        std::future::poll_fn(|cx| {
            while rbuf.len() < limit {
                let read = std::pin::pin!(io.read_buf(&mut *rbuf));
                match read.poll(cx) {
                    std::task::Poll::Pending | std::task::Poll::Ready(Ok(0)) => break,
                    std::task::Poll::Ready(Ok(_)) => {}
                    std::task::Poll::Ready(Err(e)) => {
                        return std::task::Poll::Ready(Err(read_failure(&e)));
                    }
                }
            }
            std::task::Poll::Ready(Ok(()))
        })
        .await
    }

    pub(super) async fn next_line(&mut self) -> Result<Option<BytesMut>, CloseReason> {
        loop {
            match self.cutter.next_line(&mut self.rbuf) {
                Line::Complete(line) => return Ok(Some(line)),
                Line::TooLong => return Ok(None),
                Line::NeedMore => {
                    self.fill(self.shared.settings.smtp.command_timeout, Input::Command)
                        .await?
                }
            }
        }
    }
}

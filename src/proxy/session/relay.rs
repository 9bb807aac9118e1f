//! The backend session: opened on the first command that needs it (or taken
//! from the kept connections), commands relayed one at a time with their
//! replies passed back unchanged, AUTH exchanges, RSET, and what the client
//! is told when the backend breaks.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::outcome::BackendErrorName;
use crate::outcome::CloseReason;
use crate::proxy::backend::{BackendError, ClientIdentity, OpenError, Stage};
use crate::proxy::records::millis;
use crate::smtp::command::{self, Verb};
use crate::smtp::reply::Reply;

use super::replies::Local;
use super::{Flow, Session};

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Opens the backend session this session has not got yet. `Ok(false)`:
    /// the client already got a reply explaining why not.
    async fn open_backend(&mut self) -> Result<bool, CloseReason> {
        let helo = self
            .helo
            .clone()
            .unwrap_or_else(|| self.shared.settings.hostname.clone().into_bytes());
        self.record.backend_contacted = true;
        self.record.backend_addr = Some(self.shared.backend.addr().to_string());
        let identity = ClientIdentity {
            client: self.peer,
            local: self.local,
            esmtp: self.esmtp,
        };
        match self.shared.backend.session(&helo, Some(&identity)).await {
            Ok(conn) => {
                self.record.backend_reused = conn.reused();
                if !conn.reused() {
                    self.record.backend_connect_ms = Some(millis(conn.connect_time));
                }
                self.record.backend_identity = conn.identity.map(str::to_string);
                if let Some((version, suite)) = &conn.tls {
                    self.record.backend_tls_version = Some(version.clone());
                    self.record.backend_cipher_suite = Some(suite.clone());
                }
                self.backend = Some(Box::new(conn));
                Ok(true)
            }
            Err(OpenError::Unavailable(e)) => {
                tracing::warn!(session = %self.record.session, error = %crate::escape::log(&e), "backend unavailable");
                self.record.backend_error = Some(e.failure().into());
                self.answer(&Local::BackendUnavailable).await?;
                Ok(false)
            }
            Err(OpenError::Refused(reply)) => {
                tracing::warn!(session = %self.record.session, reply = %crate::escape::log(&reply.summary()), "backend refused the session");
                self.record.backend_error = Some(BackendErrorName::Refused(reply.code));
                self.send(&reply.raw).await?;
                if reply.code == 421 {
                    return Err(CloseReason::BackendClosing);
                }
                Ok(false)
            }
        }
    }

    /// Forwards one command line to the backend and its reply to the client.
    /// `Ok(None)`: no backend reply (the client got tlsfront's 4xx instead).
    pub(super) async fn relay(
        &mut self,
        line: &[u8],
        verb: Verb,
    ) -> Result<Option<Reply>, CloseReason> {
        // Boxed, and only when a connection must be found: opening one (a
        // wait in line, connect, greeting, EHLO, TLS) is most of this
        // future's size, and every command's future would carry it.
        if self.backend.is_none() && !Box::pin(self.open_backend()).await? {
            return Ok(None);
        }
        let conn = self.backend.as_mut().expect("opened");
        if verb.leaves_backend_state() {
            conn.mark_stateful();
        }
        let reply = if verb == Verb::Data {
            conn.data(line).await
        } else {
            conn.command(line, Stage::Command).await
        };
        match reply {
            Ok(reply) => {
                self.send(&reply.raw).await?;
                if reply.code == 421 {
                    self.backend = None;
                    return Err(CloseReason::BackendClosing);
                }
                Ok(Some(reply))
            }
            Err(e) => {
                self.backend_lost(&e).await?;
                Ok(None)
            }
        }
    }

    pub(super) async fn backend_lost(&mut self, error: &BackendError) -> Flow {
        tracing::warn!(session = %self.record.session, error = %crate::escape::log(error), "backend connection lost");
        self.record.backend_error = Some(error.failure().into());
        self.backend = None;
        self.phase = self.greeted_phase();
        let reply = match error {
            BackendError::Unsolicited { .. } => Local::BackendOutOfStep,
            _ => Local::BackendLost,
        };
        self.answer(&reply).await
    }

    pub(super) async fn auth(&mut self, line: &[u8]) -> Flow {
        let mut reply = self.relay(line, Verb::Auth).await?;
        // SASL exchange: each 334 challenge gets one client line, forwarded as
        // is. An over-long line, or one with control characters (a CR would
        // split it into two lines at some backends), cancels the exchange
        // instead ("*", RFC 4954 §4), which the backend answers with 501.
        while let Some(r) = reply.take().filter(|r| r.code == 334) {
            drop(r);
            let answer = match self.next_line().await? {
                Some(l) if command::forbidden_byte(&l).is_none() => l,
                _ => BytesMut::from(&b"*"[..]),
            };
            reply = self.relay(&answer, Verb::Auth).await?;
        }
        Ok(())
    }

    /// RSET: keeps the backend's transaction state in step with the
    /// client's; if the backend is gone, so is its transaction: RSET succeeds.
    pub(super) async fn rset(&mut self, line: &[u8]) -> Flow {
        let backend_reply = match self.backend.as_mut() {
            Some(conn) => match conn.command(line, Stage::Rset).await {
                Ok(reply) if reply.code != 421 => Some(reply),
                _ => {
                    self.backend = None;
                    None
                }
            },
            None => None,
        };
        self.phase = self.greeted_phase();
        match backend_reply {
            Some(reply) => self.send(&reply.raw).await,
            None => self.answer(&Local::Ok).await,
        }
    }
}

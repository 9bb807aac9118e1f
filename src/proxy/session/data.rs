//! DATA: the message content, streamed in bounded chunks through the
//! smuggling shield (only CRLF.CRLF ends it), and the backend's verdict,
//! passed on only once the backend is shown to be in step. A client that
//! vanishes mid-message leaves the backend without an end of data, so a
//! partial message is never accepted.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::BareLineEndings;
use crate::limits;
use crate::outcome::CloseReason;
use crate::proxy::backend::{BackendError, Stage};
use crate::smtp::command::Verb;
use crate::smtp::data::DataScanner;
use crate::smtp::trace;

use super::replies::Local;
use super::{DATA_PERMITS, Flow, Input, Session};

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// DATA, once `decide` allowed it: a share of the message memory budget,
    /// the backend proven in step, its 354, then the content streamed through
    /// the smuggling shield, and the backend's reply to the end of data.
    pub(super) async fn data(&mut self, line: &[u8]) -> Flow {
        // Message buffers come out of one budget shared by all sessions, so
        // thousands in DATA cannot exhaust memory.
        let Ok(_permit) = self
            .shared
            .data_memory
            .clone()
            .try_acquire_many_owned(DATA_PERMITS)
        else {
            tracing::warn!(session = %self.record.session, "message memory budget exhausted");
            return self.answer(&Local::NoMemoryForMessage).await;
        };
        // The replies to MAIL and RCPT must really have been theirs before
        // the message goes (a stale 250 taken for a refused recipient would
        // leave that recipient without a bounce): the backend's DATA proves
        // it with a NOOP first, see `BackendConn::data`.
        let Some(reply) = self.relay(line, Verb::Data).await? else {
            return Ok(());
        };
        if reply.code != 354 {
            return Ok(());
        }
        let data_timeout = self.shared.settings.smtp.data_timeout;
        let mut scanner = DataScanner::new();
        // Holds only what the scanner adds or alters (and the chunks around
        // it); clean content is written from `rbuf` and never lands here.
        let mut out = BytesMut::new();
        let mut backend_error: Option<BackendError> = None;
        let mut noop_sent = false;
        let reject_bare = self.shared.settings.smtp.bare_line_endings == BareLineEndings::Reject;
        if self.shared.settings.smtp.received_header {
            // Prepended, not inserted: the client's own bytes stay untouched.
            out.extend_from_slice(self.received_header().as_bytes());
        }
        // A read error met while batching, reported once the bytes read before
        // it are handled (they may complete the message).
        let mut read_error = None;
        self.io().set_read_ahead(true);
        loop {
            if !self.rbuf.is_empty() {
                let fed = scanner.feed_split(&self.rbuf, &mut out);
                self.record.bytes += fed.consumed as u64;
                // Rejecting: once a bare line end is seen nothing more is sent, and
                // the backend connection is dropped below (no end-of-data line).
                let refusing = reject_bare && scanner.bare_line_ends > 0;
                if backend_error.is_none() && !refusing {
                    // The NOOP that proves the end of data's reply goes with
                    // it to a backend that pipelines (see `end_of_data`).
                    let noop = fed.end && self.backend.as_ref().is_some_and(|c| c.pipelining());
                    // Content passed on unchanged goes straight from the read
                    // buffer; only chunks the scanner altered are copied.
                    let bytes: &[u8] = if out.is_empty() && !noop {
                        &self.rbuf[fed.tail]
                    } else {
                        out.extend_from_slice(&self.rbuf[fed.tail]);
                        if noop {
                            out.extend_from_slice(b"NOOP\r\n");
                        }
                        &out
                    };
                    if let Some(conn) = self.backend.as_mut().filter(|_| !bytes.is_empty()) {
                        // A backend that answers before the end of data (or
                        // sends anything) is out of step: its next reply
                        // could not be trusted to be the end-of-data reply.
                        let sent = match conn.expect_quiet(Stage::Content) {
                            Ok(()) => conn.write_all(bytes, Stage::Content).await,
                            Err(e) => Err(e),
                        };
                        match sent {
                            Ok(()) => noop_sent = noop,
                            // Keep reading to the end of data, then say 451.
                            Err(e) => backend_error = Some(e),
                        }
                    }
                }
                self.rbuf.advance(fed.consumed);
                out.clear();
                if fed.end {
                    break;
                }
            }
            if self.rbuf.capacity() - self.rbuf.len() < limits::DATA_CHUNK / 2 {
                self.rbuf.reserve(limits::DATA_CHUNK);
            }
            let mut result = match read_error.take() {
                Some(reason) => Err(reason),
                None => self.fill(data_timeout, Input::Content).await,
            };
            if result.is_ok()
                && let Err(reason) = self.read_ready(limits::DATA_CHUNK).await
            {
                if self.rbuf.is_empty() {
                    result = Err(reason);
                } else {
                    read_error = Some(reason);
                }
            }
            if let Err(reason) = result {
                // Dropping the backend connection without an end-of-data line
                // makes the backend discard the partial message.
                self.backend = None;
                return Err(match reason {
                    CloseReason::ClientClosed => CloseReason::ClientClosedInData,
                    other => other,
                });
            }
        }
        self.io().set_read_ahead(false);
        self.record.bare_line_endings += scanner.bare_line_ends;
        self.record.control_dot_lines += scanner.control_dot_lines;
        if scanner.control_dot_lines > 0 {
            tracing::warn!(
                session = %self.record.session,
                lines = scanner.control_dot_lines,
                "message lines that start with control characters and a dot (dot-stuffed)"
            );
        }
        if scanner.bare_line_ends > 0 {
            tracing::warn!(
                session = %self.record.session,
                bare = scanner.bare_line_ends,
                dots_stuffed = scanner.stuffed,
                "bare CR/LF line endings in message content ({})",
                if reject_bare { "rejected" } else { "normalised to CRLF" }
            );
        }
        self.phase = self.greeted_phase();
        if reject_bare && scanner.bare_line_ends > 0 && backend_error.is_none() {
            self.record.messages_rejected += 1;
            self.backend = None;
            return self.answer(&Local::BareLineEndings).await;
        }
        if let Some(error) = backend_error {
            self.record.messages_rejected += 1;
            tracing::warn!(session = %self.record.session, error = %crate::escape::log(&error), "backend failed during message content");
            self.record.backend_error = Some(error.failure().into());
            self.backend = None;
            return self.answer(&Local::BackendLostInData).await;
        }
        let timeout = self.shared.backend.settings.data_timeout;
        let conn = self.backend.as_mut().expect("backend present during DATA");
        // A 2xx is passed on only once the backend is shown to be in step: a
        // backend that answered early has its real answer still coming.
        let reply = match conn.end_of_data(timeout, noop_sent).await {
            Ok((reply, alive)) => {
                if !alive {
                    self.backend = None;
                }
                Ok(reply)
            }
            Err(e) => Err(e),
        };
        match reply {
            Ok(reply) => {
                if reply.is_success() {
                    self.record.messages_accepted += 1;
                } else {
                    self.record.messages_rejected += 1;
                }
                self.send(&reply.raw).await?;
                if reply.code == 421 {
                    self.backend = None;
                    return Err(CloseReason::BackendClosing);
                }
                Ok(())
            }
            Err(e) => {
                self.record.messages_rejected += 1;
                self.backend_lost(&e).await
            }
        }
    }

    fn received_header(&self) -> String {
        let helo = String::from_utf8_lossy(self.helo.as_deref().unwrap_or(b"unknown")).into_owned();
        let date = jiff::Zoned::now()
            .with_time_zone(jiff::tz::TimeZone::UTC)
            .strftime("%a, %d %b %Y %H:%M:%S +0000")
            .to_string();
        let r = &self.record;
        let tls = match (&r.tls_version, &r.cipher_suite) {
            (Some(v), Some(s)) => Some((
                v.as_str(),
                s.as_str(),
                r.kx_group.as_deref().unwrap_or("none"),
            )),
            _ => None,
        };
        trace::received_header(&trace::Hop {
            helo: &helo,
            client: self.peer,
            hostname: &self.shared.settings.hostname,
            session: &r.session,
            esmtp: self.esmtp,
            tls,
            date: &date,
        })
    }
}

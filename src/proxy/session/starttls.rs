//! STARTTLS (and implicit TLS): the connection changes hands to rustls.
//! Whatever the client pipelined after STARTTLS was sent in clear and is
//! dropped here, counted, never executed inside TLS (CVE-2011-0411).

use tokio::io::{AsyncRead, AsyncWrite};

use crate::outcome::{CloseReason, HandshakeFailure, Mode, TlsOutcome};
use crate::proxy::records::millis;
use crate::proxy::stream::ClientIo;
use crate::proxy::tls::Handshake;
use crate::smtp::line::LineCutter;

use super::Session;
use super::decide::Phase;
use super::replies::Local;

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// STARTTLS accepted (or an implicit-TLS connection): hand the connection
    /// to rustls. Consumes the session: on failure it ends, with its record.
    pub(super) async fn handshake(mut self: Box<Self>) -> Result<Box<Self>, ()> {
        let shared = self.shared.clone();
        let Some(front) = shared.tls() else {
            self.record.close_reason = CloseReason::ProtocolError;
            return Err(());
        };
        if self.record.mode == Mode::Starttls {
            // CVE-2011-0411: whatever was pipelined after STARTTLS was sent in
            // clear and must not be executed inside the TLS session.
            self.record.pipelined_after_starttls += self.rbuf.len() as u64;
            if !self.rbuf.is_empty() {
                tracing::warn!(session = %self.record.session, bytes = self.rbuf.len(), "discarded input pipelined after STARTTLS");
            }
            self.rbuf.clear();
            self.cutter = LineCutter::new(self.shared.settings.smtp.max_line);
            self.record.starttls_used = true;
            if let Err(reason) = self.answer(&Local::ReadyForTls).await {
                self.record.close_reason = reason;
                return Err(());
            }
            // The client's identity is forgotten after STARTTLS, so is the
            // backend session opened under it.
            if let Some(conn) = self.backend.take() {
                tokio::spawn((*conn).quit());
            }
        }
        // Nothing may stay held back in clear once the handshake starts.
        if let Err(reason) = self.release_held().await {
            self.record.close_reason = reason;
            return Err(());
        }
        let Some(ClientIo::Plain(stream)) = self.io.take() else {
            self.record.close_reason = CloseReason::ProtocolError;
            return Err(());
        };
        let Handshake {
            served,
            offer,
            elapsed,
            result,
        } = front.handshake(stream, &shared.handshake_turns).await;
        let r = &mut self.record;
        r.handshake_ms = Some(millis(elapsed));
        r.offer = offer;
        if let Some(served) = served {
            r.sni = served.sni;
            r.cert_subject = Some(served.cert_subject);
            r.cert_key_type = Some(served.cert_key_type);
            r.self_signed = served.self_signed;
        }
        match result {
            Ok((stream, negotiated)) => {
                r.tls = TlsOutcome::Established;
                r.tls_version = negotiated.version;
                r.cipher_suite = negotiated.suite;
                r.kx_group = negotiated.group;
                r.resumed = negotiated.resumed;
                self.io = Some(ClientIo::Tls(Box::new(stream)));
                self.tls_active = true;
                self.helo = None;
                self.phase = Phase::Fresh;
                Ok(self)
            }
            Err(failed) => {
                let timeout = failed.reason == HandshakeFailure::Timeout;
                (r.tls, r.close_reason) = if timeout {
                    (TlsOutcome::Timeout, CloseReason::HandshakeTimeout)
                } else {
                    (TlsOutcome::Failed, CloseReason::HandshakeFailed)
                };
                r.failure_reason = Some(failed.reason);
                r.failure_detail = Some(failed.detail);
                r.client_hello = failed.hello;
                Err(())
            }
        }
    }
}

//! HELO and EHLO: tlsfront's own greeting, offering what it relays faithfully.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::proxy::backend::Stage;
use crate::smtp::command::Command;
use crate::smtp::ehlo;

use super::decide::Phase;
use super::replies::Local;
use super::{Flow, Session};

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// HELO/EHLO with a name `decide` accepted: remember it, answer with
    /// tlsfront's own greeting (EHLO: the backend's extensions, filtered).
    pub(super) async fn greet(&mut self, line: &[u8], esmtp: bool) -> Flow {
        let name = Command::parse(line).first_arg().unwrap_or_default();
        // EHLO implies RSET (RFC 5321 §4.1.4): clear a transaction the backend holds.
        if self.phase.in_transaction()
            && let Some(conn) = self.backend.as_mut()
            && conn.command(b"RSET", Stage::Rset).await.is_err()
        {
            self.backend = None;
        }
        self.helo = Some(name.to_vec());
        self.esmtp = esmtp;
        self.record.helo = Some(String::from_utf8_lossy(name).into_owned());
        self.phase = Phase::Greeted;
        let hostname = self.shared.settings.hostname.clone();
        if !esmtp {
            return self.answer(&Local::HeloOk(hostname)).await;
        }
        let offer = ehlo::Offer {
            tls_active: self.tls_active,
            starttls_available: self.shared.tls_available(),
            auth_before_tls: self.shared.settings.smtp.auth_before_tls,
        };
        if offer.starttls_available && !offer.tls_active {
            self.record.starttls_offered = true;
        }
        let reply = ehlo::render(
            &hostname,
            &self.shared.backend.capabilities().keywords,
            offer,
        );
        self.send(&reply).await
    }
}

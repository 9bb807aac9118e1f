//! The open-relay guard: does the backend let tlsfront's connections relay?
//!
//! A legacy MTA trusts its own host: Sendmail relays for 127.0.0.1 by a
//! built-in rule, Postfix's default `mynetworks` holds the host's addresses.
//! Put tlsfront in front of it on loopback and every Internet client arrives
//! from a trusted address. The guard asks the backend the way tlsfront's
//! sessions reach it (same source address, same XCLIENT or PROXY identity,
//! standing for an outside client) to take a recipient in a domain it cannot
//! serve: `MAIL FROM:<>`, `RCPT TO:<relay-test@RANDOM.example.net>`, then
//! `RSET` and `QUIT`. No DATA is ever sent. `check` makes it a finding;
//! `run` logs it at start.
//!
//! `example.net` (RFC 2606) is nobody's mail domain, and a random label makes
//! sure no route or cache was set up for it. A refusal counts only when it
//! says relaying (`x.7.x`, or "relay" in its text): a recipient refused for
//! another reason (an unknown domain, with `reject_unknown_recipient_domain`)
//! says nothing either way.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::proxy::backend::{Backend, ClientIdentity, OpenError, Stage};
use crate::smtp::reply::Reply;

/// What the backend answered to the relay test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayVerdict {
    /// It accepted the recipient: through tlsfront, anyone can relay.
    Open { reply: String },
    /// It refused the recipient as relaying.
    Refused { reply: String },
    /// It refused the recipient (or the null sender) for another reason:
    /// relaying was not tested.
    Inconclusive { reply: String },
}

/// One relay test: what was asked, as whom, and the verdict.
#[derive(Debug, Clone)]
pub struct RelayTest {
    pub recipient: String,
    /// The address tlsfront's connection came from (`backend.source_address`,
    /// or the one the system chose).
    pub source: Option<IpAddr>,
    /// The identity passed ("xclient", "proxy_v1", "proxy_v2"), standing for
    /// an outside client, [`outside_client`].
    pub identity: Option<&'static str>,
    pub verdict: RelayVerdict,
}

/// The address an Internet client is given in the test's XCLIENT or PROXY
/// header: a documentation address (RFC 5737, RFC 3849) of the listener's
/// family, which no backend trusts.
pub fn outside_client(listener: SocketAddr) -> SocketAddr {
    match listener.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40000),
        IpAddr::V6(_) => SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            40000,
        ),
    }
}

/// `relay-test@tlsfront-<random hex>.example.net`.
pub fn test_recipient() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("relay-test@tlsfront-{:016x}.example.net", h.finish())
}

/// A refusal that says "relaying": an enhanced status code `x.7.y`
/// (security or policy), or the word in the text.
fn refuses_relaying(reply: &Reply) -> bool {
    let text = reply
        .lines
        .first()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .unwrap_or_default();
    let enhanced_policy = text
        .split_whitespace()
        .next()
        .and_then(|w| w.split('.').nth(1))
        == Some("7");
    enhanced_policy || text.contains("relay")
}

/// Runs the test on `backend` as tlsfront's sessions would reach it, saying
/// `helo` in EHLO; `listener` is one of tlsfront's listeners (the PROXY
/// header's destination, and the family of the outside client).
pub async fn test_relay(
    backend: &Backend,
    helo: &str,
    listener: SocketAddr,
) -> Result<RelayTest, OpenError> {
    let identity = ClientIdentity {
        client: outside_client(listener),
        local: listener,
        esmtp: true,
    };
    let mut conn = backend
        .open_session(helo.as_bytes(), Some(&identity))
        .await?;
    let recipient = test_recipient();
    let mut test = RelayTest {
        recipient: recipient.clone(),
        source: conn.local_ip(),
        identity: conn.identity,
        verdict: RelayVerdict::Inconclusive {
            reply: String::new(),
        },
    };
    let mail = conn.command(b"MAIL FROM:<>", Stage::Command).await?;
    test.verdict = if !mail.is_success() {
        RelayVerdict::Inconclusive {
            reply: format!("MAIL FROM:<> got {}", mail.summary()),
        }
    } else {
        let line = format!("RCPT TO:<{recipient}>");
        let rcpt = conn.command(line.as_bytes(), Stage::Command).await?;
        let reply = rcpt.summary();
        if rcpt.is_success() {
            RelayVerdict::Open { reply }
        } else if refuses_relaying(&rcpt) {
            RelayVerdict::Refused { reply }
        } else {
            RelayVerdict::Inconclusive { reply }
        }
    };
    // Nothing of the transaction stays behind.
    let _ = conn.command(b"RSET", Stage::Rset).await;
    conn.quit().await;
    Ok(test)
}

impl RelayTest {
    /// Who the backend saw: tlsfront's address, or the outside client passed on.
    fn seen_as(&self) -> String {
        let from = self
            .source
            .map_or_else(|| "tlsfront's address".to_string(), |ip| ip.to_string());
        match self.identity {
            Some(how) => format!("from {from}, with an outside client passed by {how}"),
            None => format!("from tlsfront's address {from}"),
        }
    }

    /// The one wording `check` and `run` share.
    pub fn message(&self) -> String {
        match &self.verdict {
            RelayVerdict::Open { reply } => format!(
                "OPEN RELAY: the backend accepted RCPT TO:<{}> ({reply}), a domain it does not serve, \
                 {}: through tlsfront every Internet client may relay. Fix: connect from an address \
                 the backend does not trust (backend.source_address or --source-address, e.g. \
                 127.0.0.2 when Postfix's mynetworks is 127.0.0.1/32; Sendmail trusts 127.0.0.1 and \
                 the host's own names by a built-in rule), or pass each client's address \
                 (backend.xclient, backend.proxy_protocol)",
                self.recipient,
                self.seen_as()
            ),
            RelayVerdict::Refused { reply } => format!(
                "refuses to relay {} (RCPT TO:<{}>: {reply})",
                self.seen_as(),
                self.recipient
            ),
            RelayVerdict::Inconclusive { reply } => format!(
                "relaying not tested: {reply} (RCPT TO:<{}> {}); see that the backend refuses a \
                 recipient it does not serve from tlsfront's address",
                self.recipient,
                self.seen_as()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn reply(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![Bytes::copy_from_slice(text.as_bytes())],
            raw: Bytes::new(),
        }
    }

    /// The words of real backends: Postfix's `defer_unauth_destination`,
    /// Sendmail's `check_rcpt`, Exim's and Exchange's; and refusals that do
    /// not concern relaying.
    #[test]
    fn relay_refusals_are_told_from_other_refusals() {
        for (code, text) in [
            (454, "4.7.1 <x@y.example.net>: Relay access denied"),
            (554, "5.7.1 <x@y.example.net>: Relay access denied"),
            (550, "5.7.1 <x@y.example.net>... Relaying denied"),
            (550, "relay not permitted"),
            (
                550,
                "5.7.54 SMTP; Unable to relay recipient in non-accepted domain",
            ),
        ] {
            assert!(refuses_relaying(&reply(code, text)), "{text}");
        }
        for (code, text) in [
            (
                450,
                "4.1.2 <x@y.example.net>: Recipient address rejected: Domain not found",
            ),
            (550, "5.1.1 User unknown"),
            (451, "Temporary local problem"),
        ] {
            assert!(!refuses_relaying(&reply(code, text)), "{text}");
        }
    }

    #[test]
    fn the_recipient_is_random_under_example_net() {
        let (a, b) = (test_recipient(), test_recipient());
        assert_ne!(a, b);
        assert!(a.starts_with("relay-test@tlsfront-") && a.ends_with(".example.net"));
    }

    #[test]
    fn the_outside_client_has_the_listeners_family() {
        let v4 = outside_client("0.0.0.0:25".parse().unwrap());
        let v6 = outside_client("[::]:25".parse().unwrap());
        assert_eq!(v4.ip().to_string(), "192.0.2.1");
        assert_eq!(v6.ip().to_string(), "2001:db8::1");
    }
}

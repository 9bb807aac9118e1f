//! What a modern sender makes of a legacy STARTTLS, shared by `check` (the
//! backend's own STARTTLS) and `probe` (any server whose modern handshake
//! failed).
//!
//! [`read_flight`] sends a broad TLS 1.2 ClientHello and reads the server's
//! plaintext first flight, bounded in time and bytes, never finishing the
//! handshake; [`assess`] reads that flight as a modern client would and says
//! why it would refuse it. The bytes themselves are parsed in [`flight`].

pub mod flight;

use std::time::Duration;

use bytes::BytesMut;
use serde::{Serialize, Serializer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cert::{self, KeyKind};
use crate::limits;
use crate::wire::clienthello::version_name;
use flight::{Flight, KeyExchange, Kx, ServerFlight};

/// How the raw TLS probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Flight(Flight),
    /// Timeout, connection closed, or the byte limit: the text says which.
    Io(String),
}

/// Sends the probe's ClientHello and reads the plaintext first flight; then
/// drops the connection without finishing the handshake. `buf` holds bytes
/// already read past the STARTTLS reply.
pub async fn read_flight<S>(mut stream: S, mut buf: BytesMut, timeout: Duration) -> ProbeOutcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut random = [0u8; 32];
    let _ = rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut random);
    let hello = flight::client_hello(random);
    match tokio::time::timeout(timeout, stream.write_all(&hello)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return ProbeOutcome::Io(format!("sending the ClientHello: {e}")),
        Err(_) => return ProbeOutcome::Io("sending the ClientHello timed out".into()),
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match flight::parse_flight(&buf) {
            Flight::NeedMore => {}
            done => return ProbeOutcome::Flight(done),
        }
        if buf.len() >= limits::MAX_PROBE_BYTES {
            return ProbeOutcome::Io(format!(
                "no ServerHelloDone within {} bytes",
                limits::MAX_PROBE_BYTES
            ));
        }
        buf.reserve(4096);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => {
                return ProbeOutcome::Io(format!(
                    "no complete server hello within {} s",
                    timeout.as_secs()
                ));
            }
            Ok(Ok(0)) => {
                return ProbeOutcome::Io(format!(
                    "connection closed after {} bytes of handshake",
                    buf.len()
                ));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return ProbeOutcome::Io(e.to_string()),
        }
    }
}

/// Why a modern client refuses a legacy TLS set-up, named as clients log it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Below TLS 1.2.
    OldProtocol,
    /// An RSA certificate key under 2048 bits.
    WeakRsa,
    /// A finite-field DH group under 2048 bits.
    WeakDh,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::OldProtocol => "protocol version too old",
            Refusal::WeakRsa => "ee key too small",
            Refusal::WeakDh => "dh key too small",
        }
    }
}

impl Serialize for Refusal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a client sees of a server's legacy STARTTLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Assessment {
    /// The server answered 220 to STARTTLS.
    pub accepted: bool,
    pub version: Option<String>,
    pub cipher_suite: Option<String>,
    /// `ecdhe`, `dhe` or `rsa`.
    pub key_exchange: Option<String>,
    pub group: Option<String>,
    pub dh_bits: Option<usize>,
    pub cert_subject: Option<String>,
    /// As in the records: `rsa_1024`, `ecdsa_p256`, ...
    pub key_type: Option<String>,
    pub key_bits: Option<usize>,
    /// The alert (or other failure) that ended the probe, if any.
    pub failure: Option<String>,
    pub refused_by_modern_clients: bool,
    /// Why, in the words clients log: `ee key too small`, `dh key too small`, ...
    pub reasons: Vec<Refusal>,
}

/// What a modern client would make of the server's TLS, from the probe.
pub fn assess(outcome: ProbeOutcome) -> Assessment {
    let mut v = Assessment {
        accepted: true,
        ..Assessment::default()
    };
    let flight: ServerFlight = match outcome {
        ProbeOutcome::Flight(Flight::Done(f)) => f,
        ProbeOutcome::Flight(Flight::Alert { description, .. }) => {
            v.failure = Some(format!(
                "alert {} to a TLS 1.2 ClientHello offering {} suites",
                flight::alert_name(description),
                flight::OFFERED_SUITES.len()
            ));
            return v;
        }
        ProbeOutcome::Flight(Flight::NotTls) => {
            v.failure = Some("the answer to the ClientHello is not TLS".into());
            return v;
        }
        ProbeOutcome::Flight(Flight::Malformed(what)) => {
            v.failure = Some(format!("malformed handshake: {what}"));
            return v;
        }
        ProbeOutcome::Flight(Flight::NeedMore) => {
            v.failure = Some("incomplete handshake".into());
            return v;
        }
        ProbeOutcome::Io(why) => {
            v.failure = Some(why);
            return v;
        }
    };
    v.version = Some(version_name(flight.version));
    v.cipher_suite = Some(flight::suite_name(flight.cipher_suite));
    v.key_exchange = flight::suite_kx(flight.cipher_suite).map(|k| {
        match k {
            Kx::Ecdhe => "ecdhe",
            Kx::Dhe => "dhe",
            Kx::Rsa => "rsa",
        }
        .to_string()
    });
    match &flight.key_exchange {
        Some(KeyExchange::Dhe { prime_bits }) => v.dh_bits = Some(*prime_bits),
        Some(KeyExchange::Ecdhe { group }) => v.group = Some(flight::group_name(*group)),
        None => {}
    }
    let leaf = flight
        .certificates
        .first()
        .and_then(|der| cert::parse(der).ok());
    if let Some(leaf) = &leaf {
        v.cert_subject = Some(leaf.subject.clone());
        v.key_type = Some(leaf.key.name());
        v.key_bits = leaf.key.bits();
    }

    if flight.version < 0x0303 {
        v.reasons.push(Refusal::OldProtocol);
    }
    if let Some(KeyKind::Rsa(bits)) = leaf.map(|l| l.key)
        && bits < 2048
    {
        v.reasons.push(Refusal::WeakRsa);
    }
    if v.dh_bits.is_some_and(|bits| bits < 2048) {
        v.reasons.push(Refusal::WeakDh);
    }
    v.refused_by_modern_clients = !v.reasons.is_empty();
    v
}

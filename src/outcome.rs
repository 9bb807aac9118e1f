//! Outcomes as data: the closed sets of names that the records, the logs, the
//! report (which reads them back) and the metrics all share. Each variant has
//! one stable snake_case name, written once (the `named!` table below), which
//! serde, `Display` and `as_str` all use; nothing here depends on any
//! dependency's `Debug` output, so a dependency upgrade cannot change the
//! record schema.

/// A closed enum whose variants each have one stable name: the one source for
/// serialising, parsing back, `Display` and `as_str`, with `ALL` for tests.
macro_rules! named {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// Every name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text,)*];

            /// The stable snake_case name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The variant with this name.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == name)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_name(&name)
                    .ok_or_else(|| serde::de::Error::unknown_variant(&name, Self::NAMES))
            }
        }
    };
}
// Other closed sets of record names (the ClientHello offer's classes) use it too.
pub(crate) use named;

named! {
    /// What happened to TLS on a connection.
    pub enum TlsOutcome {
        Established => "established",
        Failed => "failed",
        NotAttempted => "not_attempted",
        Timeout => "timeout",
    }
}

named! {
    /// Why a session ended.
    pub enum CloseReason {
        /// The client sent QUIT.
        ClientQuit => "client_quit",
        /// The client closed the connection between commands.
        ClientClosed => "client_closed",
        /// The client closed the connection in the middle of message content.
        ClientClosedInData => "client_closed_in_data",
        /// The client was silent longer than the command or data timeout.
        ClientTimeout => "client_timeout",
        /// Reading from or writing to the client failed.
        ClientIoError => "client_io_error",
        /// The TLS handshake failed (details in `failure_reason`).
        HandshakeFailed => "handshake_failed",
        /// The TLS handshake did not finish in time.
        HandshakeTimeout => "handshake_timeout",
        /// The backend sent 421 (it is closing): passed on, session ended.
        BackendClosing => "backend_closing",
        /// Too many bad commands, or a command tlsfront cannot relay safely.
        ProtocolError => "protocol_error",
        /// The session outlived `session_lifetime`.
        SessionLifetime => "session_lifetime",
        /// Refused at connect: `server.max_connections` reached.
        ConnectionLimit => "connection_limit",
        /// Refused at connect: `server.max_connections_per_client` reached.
        ClientConnectionLimit => "client_connection_limit",
        /// The client sent data before the greeting.
        EarlyTalker => "early_talker",
        /// A trusted balancer's PROXY header was missing or malformed.
        ProxyProtocolError => "proxy_protocol_error",
        /// tlsfront is shutting down.
        Shutdown => "shutdown",
        /// The session task ended without setting a reason (a bug, or an abort).
        Aborted => "aborted",
    }
}

named! {
    /// How a connection reached tlsfront.
    pub enum Origin {
        /// Straight from the client (no PROXY header expected).
        Direct => "direct",
        /// Relayed by a trusted balancer; the client's address is from its
        /// PROXY header (the balancer's own if the header was unreadable:
        /// close reason `proxy_protocol_error`).
        Proxied => "proxied",
        /// A trusted balancer's own connection: its PROXY header names no
        /// client (v2 LOCAL, v1 UNKNOWN), as balancers send for health checks.
        /// Never a sender.
        HealthCheck => "health_check",
    }
}

named! {
    /// Listener mode: STARTTLS in the SMTP dialogue (25/587) or TLS first (465).
    pub enum Mode {
        Starttls => "starttls",
        Implicit => "implicit",
    }
}

named! {
    /// Why a TLS handshake failed: judged by tlsfront from the ClientHello
    /// where it can (the real mismatch, whichever check rustls failed first),
    /// else mapped from the rustls error explicitly, variant by variant.
    pub enum HandshakeFailure {
        /// The handshake (ClientHello included) did not finish in time.
        Timeout => "handshake_timeout",
        /// STARTTLS, then the client closed without a byte.
        ClientClosedBeforeHello => "client_closed_before_hello",
        ClientClosed => "client_closed",
        ConnectionReset => "connection_reset",
        IoError => "io_error",
        /// Plaintext or anything but TLS after STARTTLS.
        NotTls => "not_tls",
        Sslv2Hello => "sslv2_hello",
        MalformedClientHello => "malformed_client_hello",
        /// Still incomplete after `limits::MAX_HELLO_RECORDS` TLS records.
        ClientHelloTooFragmented => "client_hello_too_fragmented",
        /// The client offers nothing from TLS 1.2 up.
        ClientTlsVersionTooOld => "client_tls_version_too_old",
        NoSharedVersion => "no_shared_version",
        NoSharedCipherSuite => "no_shared_cipher_suite",
        NoSharedGroup => "no_shared_group",
        NoSharedSignatureScheme => "no_shared_signature_scheme",
        /// Another incompatibility rustls found (detail in `failure_detail`).
        PeerIncompatible => "peer_incompatible",
        PeerMisbehaved => "peer_misbehaved",
        InvalidMessage => "invalid_message",
        // The peer's certificate (tlsfront as a client: probe, backend TLS).
        CertificateExpired => "invalid_certificate_expired",
        CertificateNotValidYet => "invalid_certificate_not_valid_yet",
        CertificateUnknownIssuer => "invalid_certificate_unknown_issuer",
        CertificateBadSignature => "invalid_certificate_bad_signature",
        CertificateNotValidForName => "invalid_certificate_not_valid_for_name",
        CertificateRevoked => "invalid_certificate_revoked",
        CertificateBadEncoding => "invalid_certificate_bad_encoding",
        CertificateOther => "invalid_certificate_other",
        // The peer aborted with an alert (the client refuses tlsfront's
        // certificate: unknown_ca, bad_certificate, certificate_expired ...).
        AlertCloseNotify => "alert_close_notify",
        AlertUnexpectedMessage => "alert_unexpected_message",
        AlertBadRecordMac => "alert_bad_record_mac",
        AlertRecordOverflow => "alert_record_overflow",
        AlertHandshakeFailure => "alert_handshake_failure",
        AlertBadCertificate => "alert_bad_certificate",
        AlertUnsupportedCertificate => "alert_unsupported_certificate",
        AlertCertificateRevoked => "alert_certificate_revoked",
        AlertCertificateExpired => "alert_certificate_expired",
        AlertCertificateUnknown => "alert_certificate_unknown",
        AlertIllegalParameter => "alert_illegal_parameter",
        AlertUnknownCa => "alert_unknown_ca",
        AlertAccessDenied => "alert_access_denied",
        AlertDecodeError => "alert_decode_error",
        AlertDecryptError => "alert_decrypt_error",
        AlertProtocolVersion => "alert_protocol_version",
        AlertInsufficientSecurity => "alert_insufficient_security",
        AlertInternalError => "alert_internal_error",
        AlertInappropriateFallback => "alert_inappropriate_fallback",
        AlertUserCanceled => "alert_user_canceled",
        AlertMissingExtension => "alert_missing_extension",
        AlertUnsupportedExtension => "alert_unsupported_extension",
        AlertUnrecognisedName => "alert_unrecognised_name",
        AlertCertificateRequired => "alert_certificate_required",
        AlertNoApplicationProtocol => "alert_no_application_protocol",
        AlertOther => "alert_other",
        /// Any other rustls error (its text is in `failure_detail`).
        TlsError => "tls_error",
    }
}

impl HandshakeFailure {
    /// A rustls error, mapped variant by variant.
    pub fn from_rustls(e: &rustls::Error) -> HandshakeFailure {
        use HandshakeFailure as F;
        use rustls::{CertificateError as C, Error as E, PeerIncompatible as P};
        match e {
            E::AlertReceived(a) => F::from_alert(*a),
            E::PeerIncompatible(P::NoCipherSuitesInCommon) => F::NoSharedCipherSuite,
            E::PeerIncompatible(P::NoKxGroupsInCommon) => F::NoSharedGroup,
            E::PeerIncompatible(P::NoSignatureSchemesInCommon) => F::NoSharedSignatureScheme,
            E::PeerIncompatible(
                P::Tls12NotOffered | P::Tls12NotOfferedOrEnabled | P::Tls13RequiredForQuic,
            ) => F::NoSharedVersion,
            E::PeerIncompatible(_) => F::PeerIncompatible,
            E::PeerMisbehaved(_) => F::PeerMisbehaved,
            E::InvalidMessage(_) => F::InvalidMessage,
            E::InvalidCertificate(c) => match c {
                C::Expired | C::ExpiredContext { .. } => F::CertificateExpired,
                C::NotValidYet | C::NotValidYetContext { .. } => F::CertificateNotValidYet,
                C::UnknownIssuer => F::CertificateUnknownIssuer,
                C::BadSignature | C::UnsupportedSignatureAlgorithmContext { .. } => {
                    F::CertificateBadSignature
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    F::CertificateNotValidForName
                }
                C::Revoked => F::CertificateRevoked,
                C::BadEncoding => F::CertificateBadEncoding,
                _ => F::CertificateOther,
            },
            _ => F::TlsError,
        }
    }

    fn from_alert(a: rustls::AlertDescription) -> HandshakeFailure {
        use HandshakeFailure as F;
        use rustls::AlertDescription as A;
        match a {
            A::CloseNotify => F::AlertCloseNotify,
            A::UnexpectedMessage => F::AlertUnexpectedMessage,
            A::BadRecordMac => F::AlertBadRecordMac,
            A::RecordOverflow => F::AlertRecordOverflow,
            A::HandshakeFailure => F::AlertHandshakeFailure,
            A::BadCertificate => F::AlertBadCertificate,
            A::UnsupportedCertificate => F::AlertUnsupportedCertificate,
            A::CertificateRevoked => F::AlertCertificateRevoked,
            A::CertificateExpired => F::AlertCertificateExpired,
            A::CertificateUnknown => F::AlertCertificateUnknown,
            A::IllegalParameter => F::AlertIllegalParameter,
            A::UnknownCA => F::AlertUnknownCa,
            A::AccessDenied => F::AlertAccessDenied,
            A::DecodeError => F::AlertDecodeError,
            A::DecryptError => F::AlertDecryptError,
            A::ProtocolVersion => F::AlertProtocolVersion,
            A::InsufficientSecurity => F::AlertInsufficientSecurity,
            A::InternalError => F::AlertInternalError,
            A::InappropriateFallback => F::AlertInappropriateFallback,
            A::UserCanceled => F::AlertUserCanceled,
            A::MissingExtension => F::AlertMissingExtension,
            A::UnsupportedExtension => F::AlertUnsupportedExtension,
            A::UnrecognisedName => F::AlertUnrecognisedName,
            A::CertificateRequired => F::AlertCertificateRequired,
            A::NoApplicationProtocol => F::AlertNoApplicationProtocol,
            _ => F::AlertOther,
        }
    }

    /// A failed handshake's I/O error: the rustls error inside it, if any.
    pub fn from_io(e: &std::io::Error) -> HandshakeFailure {
        if let Some(err) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return HandshakeFailure::from_rustls(err);
        }
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => HandshakeFailure::ClientClosed,
            std::io::ErrorKind::ConnectionReset => HandshakeFailure::ConnectionReset,
            _ => HandshakeFailure::IoError,
        }
    }
}

named! {
    /// Why the backend failed a session (the record's `backend_error`,
    /// except `refused_<code>`, see [`BackendErrorName`]).
    pub enum BackendFailure {
        ConnectFailed => "connect_failed",
        ConnectTimeout => "connect_timeout",
        GreetingTimeout => "greeting_timeout",
        ReplyTimeout => "reply_timeout",
        Closed => "closed",
        IoError => "io_error",
        MalformedReply => "malformed_reply",
        /// Backend TLS required and not obtained (EHLO refused under it too).
        TlsFailed => "tls_failed",
        /// The backend sent something no command asked for, or a NOOP showed
        /// its replies out of step.
        UnsolicitedReply => "unsolicited_reply",
        /// `xclient`/`proxy_protocol` could not be put in effect.
        IdentityNotPassed => "identity_not_passed",
        /// `backend.max_connections` stayed in use for `connect_timeout`.
        Busy => "busy",
    }
}

/// The record's `backend_error`: a failure, or the backend refusing the
/// session at its greeting or EHLO/HELO with a code (`refused_554`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorName {
    Failure(BackendFailure),
    Refused(u16),
}

impl std::fmt::Display for BackendErrorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendErrorName::Failure(b) => f.write_str(b.as_str()),
            BackendErrorName::Refused(code) => write!(f, "refused_{code}"),
        }
    }
}

impl serde::Serialize for BackendErrorName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl From<BackendFailure> for BackendErrorName {
    fn from(b: BackendFailure) -> Self {
        BackendErrorName::Failure(b)
    }
}

named! {
    /// A certificate key tlsfront obtains by ACME (`acme.key_types`, the state
    /// directory's folders, metrics labels, `check`).
    pub enum KeyType {
        /// The default: small, fast, and what every current sender verifies.
        EcdsaP256 => "ecdsa_p256",
        /// Beside it, for the rare sender that verifies only RSA.
        Rsa2048 => "rsa_2048",
    }
}

named! {
    /// How an ACME order ended (metrics label, the state file, `check`).
    pub enum AcmeResult {
        Issued => "issued",
        Failed => "failed",
    }
}

named! {
    /// What DNS publishes for one key of one MX name (`_25._tcp.NAME TLSA`),
    /// in the words `check --dane`, `probe` and the daemon share.
    pub enum TlsaStatus {
        /// A `3 1 1` record for the key is published and DNSSEC-validated.
        Published => "published",
        /// Published, but not DNSSEC-validated: senders ignore it.
        Unsigned => "unsigned",
        /// No record matches the key.
        Missing => "missing",
        /// The lookup failed (no answer, SERVFAIL, bogus signatures).
        LookupFailed => "lookup_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name of every outcome, spelled out: a rename is a schema change
    /// and must show up here (and in docs/records.md and the JSON schema).
    #[test]
    fn every_variant_and_its_name() {
        fn names<T: Copy + serde::Serialize>(
            all: &[T],
            as_str: fn(T) -> &'static str,
        ) -> Vec<&'static str> {
            all.iter()
                .map(|v| {
                    let name = as_str(*v);
                    assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{name}\""));
                    name
                })
                .collect()
        }
        assert_eq!(
            names(TlsOutcome::ALL, TlsOutcome::as_str),
            ["established", "failed", "not_attempted", "timeout"]
        );
        assert_eq!(
            names(CloseReason::ALL, CloseReason::as_str),
            [
                "client_quit",
                "client_closed",
                "client_closed_in_data",
                "client_timeout",
                "client_io_error",
                "handshake_failed",
                "handshake_timeout",
                "backend_closing",
                "protocol_error",
                "session_lifetime",
                "connection_limit",
                "client_connection_limit",
                "early_talker",
                "proxy_protocol_error",
                "shutdown",
                "aborted",
            ]
        );
        assert_eq!(names(Mode::ALL, Mode::as_str), ["starttls", "implicit"]);
        assert_eq!(
            names(Origin::ALL, Origin::as_str),
            ["direct", "proxied", "health_check"]
        );
        assert_eq!(
            names(KeyType::ALL, KeyType::as_str),
            ["ecdsa_p256", "rsa_2048"]
        );
        assert_eq!(
            names(AcmeResult::ALL, AcmeResult::as_str),
            ["issued", "failed"]
        );
        assert_eq!(
            names(TlsaStatus::ALL, TlsaStatus::as_str),
            ["published", "unsigned", "missing", "lookup_failed"]
        );
        assert_eq!(
            names(BackendFailure::ALL, BackendFailure::as_str),
            [
                "connect_failed",
                "connect_timeout",
                "greeting_timeout",
                "reply_timeout",
                "closed",
                "io_error",
                "malformed_reply",
                "tls_failed",
                "unsolicited_reply",
                "identity_not_passed",
                "busy",
            ]
        );
        let failures = names(HandshakeFailure::ALL, HandshakeFailure::as_str);
        assert_eq!(failures.len(), 52);
        assert_eq!(
            &failures[..17],
            [
                "handshake_timeout",
                "client_closed_before_hello",
                "client_closed",
                "connection_reset",
                "io_error",
                "not_tls",
                "sslv2_hello",
                "malformed_client_hello",
                "client_hello_too_fragmented",
                "client_tls_version_too_old",
                "no_shared_version",
                "no_shared_cipher_suite",
                "no_shared_group",
                "no_shared_signature_scheme",
                "peer_incompatible",
                "peer_misbehaved",
                "invalid_message",
            ]
        );
        for name in &failures[17..] {
            assert!(
                name.starts_with("alert_")
                    || name.starts_with("invalid_certificate_")
                    || *name == "tls_error",
                "{name}"
            );
        }
        // Names are unique and snake_case.
        let mut all: Vec<&str> = failures.clone();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), failures.len());
        assert!(failures.iter().all(|n| {
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }));
    }

    #[test]
    fn names_parse_back() {
        for r in CloseReason::ALL {
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(serde_json::from_str::<CloseReason>(&json).unwrap(), *r);
        }
        for f in HandshakeFailure::ALL {
            assert_eq!(HandshakeFailure::from_name(f.as_str()), Some(*f));
        }
        assert!(serde_json::from_str::<Mode>("\"smtps\"").is_err());
        assert_eq!(
            serde_json::to_string(&BackendErrorName::Refused(554)).unwrap(),
            "\"refused_554\""
        );
        assert_eq!(
            BackendErrorName::from(BackendFailure::UnsolicitedReply).to_string(),
            "unsolicited_reply"
        );
    }

    #[test]
    fn rustls_errors_map_explicitly() {
        use rustls::{
            AlertDescription as A, CertificateError as C, Error as E, PeerIncompatible as P,
        };
        let cases = [
            (E::AlertReceived(A::UnknownCA), "alert_unknown_ca"),
            (E::AlertReceived(A::BadCertificate), "alert_bad_certificate"),
            (E::AlertReceived(A::Unknown(250)), "alert_other"),
            (
                E::PeerIncompatible(P::NoCipherSuitesInCommon),
                "no_shared_cipher_suite",
            ),
            (
                E::PeerIncompatible(P::NoKxGroupsInCommon),
                "no_shared_group",
            ),
            (
                E::PeerIncompatible(P::NoSignatureSchemesInCommon),
                "no_shared_signature_scheme",
            ),
            (
                E::PeerIncompatible(P::ServerDoesNotSupportTls12Or13),
                "peer_incompatible",
            ),
            (
                E::InvalidCertificate(C::UnknownIssuer),
                "invalid_certificate_unknown_issuer",
            ),
            (
                E::InvalidCertificate(C::Expired),
                "invalid_certificate_expired",
            ),
            (E::General("x".into()), "tls_error"),
        ];
        for (e, want) in cases {
            assert_eq!(HandshakeFailure::from_rustls(&e).as_str(), want, "{e:?}");
        }
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, E::DecryptError);
        assert_eq!(HandshakeFailure::from_io(&io), HandshakeFailure::TlsError);
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(
            HandshakeFailure::from_io(&eof),
            HandshakeFailure::ClientClosed
        );
    }
}

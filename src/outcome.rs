//! Outcomes as data: the closed sets of names that the records, the logs, the
//! report (which reads them back) and the metrics all share. The
//! snake_case names are stable.

use serde::Serialize;

/// What happened to TLS on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsOutcome {
    Established,
    Failed,
    NotAttempted,
    Timeout,
}

impl TlsOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsOutcome::Established => "established",
            TlsOutcome::Failed => "failed",
            TlsOutcome::NotAttempted => "not_attempted",
            TlsOutcome::Timeout => "timeout",
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The client sent QUIT.
    ClientQuit,
    /// The client closed the connection between commands.
    ClientClosed,
    /// The client closed the connection in the middle of message content.
    ClientClosedInData,
    /// The client was silent longer than the command or data timeout.
    ClientTimeout,
    /// Reading from or writing to the client failed.
    ClientIoError,
    /// The TLS handshake failed (details in `failure_reason`).
    HandshakeFailed,
    /// The TLS handshake did not finish in time.
    HandshakeTimeout,
    /// The backend sent 421 (it is closing): passed on, session ended.
    BackendClosing,
    /// Too many bad commands, or a command tlsfront cannot relay safely.
    ProtocolError,
    /// The session outlived `session_lifetime`.
    SessionLifetime,
    /// Refused at connect: `server.max_connections` reached.
    ConnectionLimit,
    /// Refused at connect: `server.max_connections_per_client` reached.
    ClientConnectionLimit,
    /// The client sent data before the greeting.
    EarlyTalker,
    /// A trusted balancer's PROXY header was missing or malformed.
    ProxyProtocolError,
    /// tlsfront is shutting down.
    Shutdown,
    /// The session task ended without setting a reason (a bug, or an abort).
    Aborted,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientQuit => "client_quit",
            CloseReason::ClientClosed => "client_closed",
            CloseReason::ClientClosedInData => "client_closed_in_data",
            CloseReason::ClientTimeout => "client_timeout",
            CloseReason::ClientIoError => "client_io_error",
            CloseReason::HandshakeFailed => "handshake_failed",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::BackendClosing => "backend_closing",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::SessionLifetime => "session_lifetime",
            CloseReason::ConnectionLimit => "connection_limit",
            CloseReason::ClientConnectionLimit => "client_connection_limit",
            CloseReason::EarlyTalker => "early_talker",
            CloseReason::ProxyProtocolError => "proxy_protocol_error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Aborted => "aborted",
        }
    }
}

/// Listener mode: STARTTLS in the SMTP dialogue (25/587) or TLS first (465).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Starttls,
    Implicit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Starttls => "starttls",
            Mode::Implicit => "implicit",
        }
    }
}

/// Turns a Debug name like `NoCipherSuitesInCommon` into `no_cipher_suites_in_common`.
pub fn snake_case(name: &str) -> String {
    let ident: String = name
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let mut out = String::with_capacity(ident.len() + 8);
    let chars: Vec<char> = ident.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if i > 0
                && (prev_lower || (next_lower && chars[i - 1].is_ascii_uppercase()))
                && !out.ends_with('_')
            {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_names() {
        assert_eq!(
            snake_case("NoCipherSuitesInCommon"),
            "no_cipher_suites_in_common"
        );
        assert_eq!(snake_case("UnknownCA"), "unknown_ca");
        assert_eq!(
            snake_case("ServerDoesNotSupportTls12Or13"),
            "server_does_not_support_tls12_or13"
        );
        assert_eq!(snake_case("BadCertificate"), "bad_certificate");
        assert_eq!(
            snake_case("InvalidMessage(MissingData(\"x\"))"),
            "invalid_message"
        );
        assert_eq!(snake_case("Unknown(42)"), "unknown");
    }

    #[test]
    fn names_match_serde() {
        for r in [
            CloseReason::ClientQuit,
            CloseReason::ClientClosedInData,
            CloseReason::HandshakeTimeout,
        ] {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        for t in [TlsOutcome::Established, TlsOutcome::NotAttempted] {
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
    }
}

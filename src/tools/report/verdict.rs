//! The honest categories of a session and the legacy MTA's policy they are
//! judged against: what is a probe, what is a plaintext sender, and whether a
//! failed handshake would also have failed at the legacy MTA or fails only
//! because tlsfront is stricter (the regression an admin must see).
//!
//! Pure: a session's facts in, its [`Category`] out; the verdict's rules are
//! spelled out in [`RULES`] so the report states exactly what it judged by.

use serde::Serialize;

use crate::outcome::named;
use crate::wire::offer::{Offer, SuiteClass};

named! {
    /// What kind of session a record is, for the verdict.
    pub enum Category {
        /// Connect, greeting, EHLO/HELO, NOOP, RSET, QUIT at most, no TLS
        /// attempted (scanners, load-balancer health checks, early talkers).
        Probe => "probe",
        /// Refused at connect by a connection cap.
        RefusedAtConnect => "refused_at_connect",
        /// Went further (mail, the backend) without ever sending STARTTLS.
        Plaintext => "plaintext",
        /// TLS 1.2 or 1.3 established at tlsfront.
        ModernTls => "modern_tls",
        /// TLS established with another version: only records from elsewhere.
        OldTls => "old_tls",
        /// A handshake the legacy MTA would have completed: tlsfront is stricter.
        StricterThanLegacy => "stricter_than_legacy",
        /// A handshake the legacy MTA would have refused too.
        LegacyWouldFail => "legacy_would_fail",
        /// STARTTLS, then no usable ClientHello at all.
        NoClientHello => "no_client_hello",
        /// The offer was fine; the handshake failed later (the client refused
        /// the certificate, a timeout, a lost connection).
        AfterOffer => "after_offer",
    }
}

impl Category {
    /// Only these keep the verdict from saying yes.
    pub fn blocks(self) -> bool {
        matches!(self, Category::StricterThanLegacy | Category::OldTls)
    }

    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Category::StricterThanLegacy
                | Category::LegacyWouldFail
                | Category::NoClientHello
                | Category::AfterOffer
        )
    }

    /// How the text and HTML reports name the category.
    pub fn label(self) -> &'static str {
        match self {
            Category::Probe => "probes (connect/EHLO/QUIT only, never block)",
            Category::RefusedAtConnect => "refused at connect (connection caps)",
            Category::Plaintext => "plaintext senders (never tried STARTTLS)",
            Category::ModernTls => "modern TLS (1.2, 1.3)",
            Category::OldTls => "TLS below 1.2 (records from elsewhere)",
            Category::StricterThanLegacy => "TLS failed, stricter than the legacy MTA",
            Category::LegacyWouldFail => "TLS failed, the legacy MTA would fail too",
            Category::NoClientHello => "TLS failed, no ClientHello",
            Category::AfterOffer => "TLS failed after the offer (certificate, timeout)",
        }
    }
}

/// The rules the verdict applies, stated in every report.
pub const RULES: &[&str] = &[
    "probes (no TLS attempt and nothing past EHLO/NOOP/RSET/QUIT: scanners, health checks) and connections refused at connect are counted apart and never block",
    "plaintext senders (never sent STARTTLS) are listed as a fact about them, not a TLS failure of this host",
    "a failed handshake blocks only when the legacy MTA (its policy below) would have completed it: that sender lost TLS with tlsfront",
    "failures the legacy MTA would also have had, failures without a ClientHello and failures after the offer was accepted (certificate refused, timeout) do not block",
    "TLS established below 1.2 blocks (only records not written by tlsfront can hold it)",
    "with --legacy-log: any session that reached the legacy MTA from an address other than tlsfront's blocks",
];

/// What the legacy MTA accepted, as the report assumes it (`--legacy-tls`,
/// `--legacy-kx`): its protocol versions and key exchanges. Its certificate
/// is taken to be RSA, as on the legacy boxes tlsfront fronts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegacyPolicy {
    /// `TLSv1.0`, `TLSv1.1`, `TLSv1.2`, `TLSv1.3`, `SSLv3`.
    pub versions: Vec<String>,
    /// `ecdhe`, `dhe`, `rsa`.
    pub kx: Vec<String>,
}

impl Default for LegacyPolicy {
    /// OpenSSL 1.0.x defaults, what the legacy boxes run: TLS 1.0 to 1.2,
    /// ECDHE, DHE and RSA key exchange.
    fn default() -> Self {
        LegacyPolicy {
            versions: ["TLSv1.0", "TLSv1.1", "TLSv1.2"].map(String::from).to_vec(),
            kx: ["ecdhe", "dhe", "rsa"].map(String::from).to_vec(),
        }
    }
}

/// A version as the command line may give it: `1.0`, `tls1.2`, `TLSv1.3`, `ssl3`.
pub fn version_arg(s: &str) -> Result<String, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .trim_start_matches("tlsv")
        .trim_start_matches("tls")
        .trim_start_matches('v');
    Ok(match t {
        "1.0" | "1" | "10" => "TLSv1.0",
        "1.1" | "11" => "TLSv1.1",
        "1.2" | "12" => "TLSv1.2",
        "1.3" | "13" => "TLSv1.3",
        "sslv3" | "ssl3" | "ssl3.0" => "SSLv3",
        _ => {
            return Err(format!(
                "{s:?} is not a TLS version (1.0, 1.1, 1.2, 1.3, ssl3)"
            ));
        }
    }
    .to_string())
}

pub fn kx_arg(s: &str) -> Result<String, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        k @ ("ecdhe" | "dhe" | "rsa") => Ok(k.to_string()),
        _ => Err(format!("{s:?} is not a key exchange (ecdhe, dhe, rsa)")),
    }
}

impl LegacyPolicy {
    /// Would the legacy MTA have completed a handshake with this offer? A
    /// shared version, and for TLS 1.2 and older a suite whose key exchange
    /// it accepts, usable with its RSA certificate and in that version (AEAD
    /// suites only from TLS 1.2).
    pub fn accepts(&self, offer: &Offer) -> bool {
        offer
            .versions
            .iter()
            .filter(|v| self.versions.iter().any(|l| l == **v))
            .any(|v| {
                if *v == "TLSv1.3" {
                    return offer.suites.contains(&SuiteClass::Tls13);
                }
                offer.suites.iter().any(|c| {
                    c.kx().is_some_and(|kx| self.kx.iter().any(|k| k == kx))
                        && *c != SuiteClass::EcdheEcdsa
                        && (!c.aead() || *v == "TLSv1.2")
                })
            })
    }

    /// Versions below TLS 1.2 (which tlsfront never accepts) among the legacy ones.
    fn has_old_versions(&self) -> bool {
        self.versions
            .iter()
            .any(|v| matches!(v.as_str(), "TLSv1.0" | "TLSv1.1" | "SSLv3"))
    }
}

/// The facts of a session the category is judged from.
#[derive(Debug, Default, Clone, Copy)]
pub struct Facts<'a> {
    pub tls: Option<crate::outcome::TlsOutcome>,
    pub tls_version: Option<&'a str>,
    pub failure_reason: Option<&'a str>,
    pub close_reason: Option<&'a str>,
    /// Whether the record says anything happened past EHLO: mail, the backend
    /// contacted, a command refused for want of TLS. `None`: the record does
    /// not say (an older writer), taken as mail.
    pub went_further: Option<bool>,
    pub offer: Option<&'a Offer>,
}

/// The category of a session under `legacy`.
pub fn categorize(f: &Facts<'_>, legacy: &LegacyPolicy) -> Category {
    use crate::outcome::TlsOutcome as T;
    match f.tls {
        Some(T::Established) => match f.tls_version {
            Some("TLSv1.2" | "TLSv1.3") => Category::ModernTls,
            _ => Category::OldTls,
        },
        None | Some(T::NotAttempted) => {
            if matches!(
                f.close_reason,
                Some("connection_limit" | "client_connection_limit")
            ) {
                Category::RefusedAtConnect
            } else if f.went_further == Some(false) {
                Category::Probe
            } else {
                Category::Plaintext
            }
        }
        Some(T::Failed | T::Timeout) => failure(f.failure_reason, f.offer, legacy),
    }
}

/// A failed handshake judged by its reason and, when the record has it, what
/// the client offered.
fn failure(reason: Option<&str>, offer: Option<&Offer>, legacy: &LegacyPolicy) -> Category {
    let reason = reason.unwrap_or("unknown");
    match reason {
        "client_closed_before_hello"
        | "not_tls"
        | "malformed_client_hello"
        | "client_hello_too_fragmented" => Category::NoClientHello,
        // An SSLv2-format hello offers TLS 1.0 at most; old OpenSSL took it.
        "sslv2_hello" if legacy.has_old_versions() => Category::StricterThanLegacy,
        "sslv2_hello" => Category::LegacyWouldFail,
        "client_tls_version_too_old"
        | "no_shared_version"
        | "no_shared_cipher_suite"
        | "no_shared_group"
        | "no_shared_signature_scheme"
        | "peer_incompatible" => match offer {
            Some(o) if legacy.accepts(o) => Category::StricterThanLegacy,
            Some(_) => Category::LegacyWouldFail,
            // Without the offer the record cannot tell; the verdict must not
            // say yes on a guess.
            None if reason == "client_tls_version_too_old" && !legacy.has_old_versions() => {
                Category::LegacyWouldFail
            }
            None => Category::StricterThanLegacy,
        },
        // Waiting for, or cut off in, the ClientHello.
        "handshake_timeout" | "client_closed" | "connection_reset" | "io_error"
            if offer.is_none() =>
        {
            Category::NoClientHello
        }
        _ => Category::AfterOffer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::TlsOutcome;

    fn offer(versions: &[&'static str], suites: &[SuiteClass]) -> Offer {
        Offer {
            versions: versions.to_vec(),
            groups: vec!["X25519"],
            sigs: vec![],
            suites: suites.to_vec(),
        }
    }

    #[test]
    fn the_legacy_policy_accepts_what_old_openssl_did() {
        use SuiteClass::*;
        let legacy = LegacyPolicy::default();
        assert!(legacy.accepts(&offer(&["TLSv1.0"], &[RsaCbc])));
        assert!(legacy.accepts(&offer(&["TLSv1.2"], &[EcdheCbc])));
        assert!(legacy.accepts(&offer(&["TLSv1.2"], &[DheAead])));
        // AEAD suites need TLS 1.2; an ECDSA suite needs an ECDSA certificate.
        assert!(!legacy.accepts(&offer(&["TLSv1.1"], &[EcdheRsa, RsaAead])));
        assert!(!legacy.accepts(&offer(&["TLSv1.2"], &[EcdheEcdsa])));
        // Weak suites and TLS 1.3 are not in the default policy.
        assert!(!legacy.accepts(&offer(&["TLSv1.0"], &[Weak])));
        assert!(!legacy.accepts(&offer(&["TLSv1.3"], &[Tls13])));
        let narrow = LegacyPolicy {
            versions: vec!["TLSv1.2".into(), "TLSv1.3".into()],
            kx: vec!["ecdhe".into()],
        };
        assert!(!narrow.accepts(&offer(&["TLSv1.0"], &[RsaCbc])));
        assert!(!narrow.accepts(&offer(&["TLSv1.2"], &[RsaCbc, DheCbc])));
        assert!(narrow.accepts(&offer(&["TLSv1.3"], &[Tls13])));
    }

    fn failed<'a>(reason: &'a str, offer: Option<&'a Offer>) -> Facts<'a> {
        Facts {
            tls: Some(TlsOutcome::Failed),
            failure_reason: Some(reason),
            offer,
            ..Facts::default()
        }
    }

    #[test]
    fn failures_split_by_what_the_legacy_mta_would_have_done() {
        use SuiteClass::*;
        let legacy = LegacyPolicy::default();
        let tls10 = offer(&["TLSv1.0"], &[RsaCbc]);
        let weak = offer(&["TLSv1.0"], &[Weak]);
        let modern = offer(&["TLSv1.3"], &[Tls13]);
        let cases = [
            (
                failed("client_tls_version_too_old", Some(&tls10)),
                "stricter_than_legacy",
            ),
            (
                failed("no_shared_cipher_suite", Some(&weak)),
                "legacy_would_fail",
            ),
            (
                failed("client_tls_version_too_old", None),
                "stricter_than_legacy",
            ),
            (failed("no_shared_group", None), "stricter_than_legacy"),
            (failed("not_tls", None), "no_client_hello"),
            (
                failed("client_closed_before_hello", None),
                "no_client_hello",
            ),
            (failed("handshake_timeout", None), "no_client_hello"),
            (failed("handshake_timeout", Some(&modern)), "after_offer"),
            (failed("alert_unknown_ca", Some(&modern)), "after_offer"),
            (failed("sslv2_hello", None), "stricter_than_legacy"),
        ];
        for (facts, want) in cases {
            assert_eq!(categorize(&facts, &legacy).as_str(), want, "{facts:?}");
        }
        let modern_only = LegacyPolicy {
            versions: vec!["TLSv1.2".into()],
            kx: vec!["ecdhe".into()],
        };
        for reason in ["client_tls_version_too_old", "sslv2_hello"] {
            assert_eq!(
                categorize(&failed(reason, None), &modern_only),
                Category::LegacyWouldFail
            );
        }
        assert_eq!(
            categorize(
                &failed("client_tls_version_too_old", Some(&tls10)),
                &modern_only
            ),
            Category::LegacyWouldFail
        );
    }

    #[test]
    fn probes_plaintext_and_tls() {
        let legacy = LegacyPolicy::default();
        let plain = |went_further, close| Facts {
            tls: Some(TlsOutcome::NotAttempted),
            went_further,
            close_reason: close,
            ..Facts::default()
        };
        assert_eq!(
            categorize(&plain(Some(false), Some("client_quit")), &legacy),
            Category::Probe
        );
        assert_eq!(
            categorize(&plain(Some(true), Some("client_quit")), &legacy),
            Category::Plaintext
        );
        assert_eq!(categorize(&plain(None, None), &legacy), Category::Plaintext);
        assert_eq!(
            categorize(&plain(Some(false), Some("connection_limit")), &legacy),
            Category::RefusedAtConnect
        );
        let tls = |v| Facts {
            tls: Some(TlsOutcome::Established),
            tls_version: v,
            ..Facts::default()
        };
        assert_eq!(
            categorize(&tls(Some("TLSv1.3")), &legacy),
            Category::ModernTls
        );
        assert_eq!(categorize(&tls(Some("TLSv1.1")), &legacy), Category::OldTls);
        assert!(Category::OldTls.blocks() && Category::StricterThanLegacy.blocks());
        assert!(!Category::Probe.blocks() && !Category::Plaintext.blocks());
        assert_eq!(version_arg("1.0").unwrap(), "TLSv1.0");
        assert_eq!(version_arg("TLSv1.3").unwrap(), "TLSv1.3");
        assert!(version_arg("2.0").is_err() && kx_arg("psk").is_err());
    }
}

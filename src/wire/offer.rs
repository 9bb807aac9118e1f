//! What a client offered, in a few bytes: the compact summary of a
//! ClientHello that every record carries (not only failures), so a report can
//! say what a stricter policy would break and what the legacy MTA would have
//! accepted.
//!
//! The full lists of a ClientHello take up to kilobytes; the questions asked
//! of them need far less. Versions and groups keep their names (groups with
//! the finite-field ones folded into `ffdhe`); signature schemes and cipher
//! suites become classes ([`SigClass`], [`SuiteClass`]). Every list holds each
//! name once, from closed sets, so an offer is small whatever the client sent
//! (about 150 bytes for a broad OpenSSL hello) and needs no bounding.
//!
//! The classes are judged from names, so the same functions read the full
//! `client_hello` lists of records written before the offer existed.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize};

use super::clienthello::{self, ClientHello};
use crate::outcome::named;

named! {
    /// A kind of TLS 1.2-and-older cipher suite, by key exchange and cipher
    /// (or `tls13` for any TLS 1.3 suite).
    pub enum SuiteClass {
        /// A TLS 1.3 suite.
        Tls13 => "tls13",
        /// ECDHE key exchange, ECDSA certificate, AEAD cipher (GCM, CCM, ChaCha20).
        EcdheEcdsa => "ecdhe_ecdsa",
        /// ECDHE key exchange, RSA certificate, AEAD cipher.
        EcdheRsa => "ecdhe_rsa",
        /// ECDHE key exchange, CBC cipher (either certificate).
        EcdheCbc => "ecdhe_cbc",
        /// Finite-field DHE key exchange, AEAD cipher.
        DheAead => "dhe_aead",
        /// Finite-field DHE key exchange, CBC cipher.
        DheCbc => "dhe_cbc",
        /// RSA key exchange (no forward secrecy), AEAD cipher.
        RsaAead => "rsa_aead",
        /// RSA key exchange, CBC cipher.
        RsaCbc => "rsa_cbc",
        /// RC4, 3DES, DES, IDEA, NULL, export or anonymous suites.
        Weak => "weak",
        /// Anything else: PSK, SRP, static DH/ECDH, unknown code points.
        Other => "other",
    }
}

named! {
    /// A kind of signature scheme, as a certificate choice needs it.
    pub enum SigClass {
        /// ECDSA with SHA-256 or better.
        Ecdsa => "ecdsa",
        /// RSA-PSS (rsaEncryption keys): what TLS 1.3 needs of an RSA certificate.
        RsaPss => "rsa_pss",
        /// RSA PKCS#1 v1.5 with SHA-256 or better (TLS 1.2 only).
        RsaPkcs1 => "rsa_pkcs1",
        Ed25519 => "ed25519",
        Ed448 => "ed448",
        /// ML-DSA (post-quantum signatures).
        MlDsa => "mldsa",
        /// SHA-1 or SHA-224 schemes only a legacy server would sign with.
        Sha1 => "sha1",
        Other => "other",
    }
}

impl SuiteClass {
    /// The class of a suite by its code point. Every handshake's record
    /// classifies the client's suites (30 or more from OpenSSL), so the
    /// named ones are judged once, not by name matching each time.
    pub fn of_code(code: u16) -> Option<SuiteClass> {
        static NAMED: OnceLock<HashMap<u16, Option<SuiteClass>>> = OnceLock::new();
        let named = NAMED.get_or_init(|| {
            (0..=u16::MAX)
                .filter(|c| rustls::CipherSuite::from(*c).as_str().is_some())
                .chain(clienthello::LEGACY_SUITES.iter().map(|(c, _)| *c))
                .map(|c| (c, SuiteClass::of_name(&clienthello::suite_name(c))))
                .collect()
        });
        match named.get(&code) {
            Some(class) => *class,
            None => SuiteClass::of_name(&clienthello::suite_name(code)),
        }
    }

    /// The class of a suite by its name (`suite_name`'s), `None` for the
    /// signalling values (renegotiation info, fallback) that are no suite.
    pub fn of_name(name: &str) -> Option<SuiteClass> {
        if name.ends_with("_SCSV") {
            return None;
        }
        if name.starts_with("TLS13_")
            || matches!(
                name,
                "TLS_AES_128_GCM_SHA256"
                    | "TLS_AES_256_GCM_SHA384"
                    | "TLS_CHACHA20_POLY1305_SHA256"
                    | "TLS_AES_128_CCM_SHA256"
                    | "TLS_AES_128_CCM_8_SHA256"
            )
        {
            return Some(SuiteClass::Tls13);
        }
        let has = |part: &str| name.contains(part);
        if [
            "RC4", "3DES", "_DES", "DES40", "NULL", "EXPORT", "_anon_", "IDEA", "RC2",
        ]
        .iter()
        .any(|p| has(p))
        {
            return Some(SuiteClass::Weak);
        }
        let aead = has("_GCM") || has("_CCM") || has("CHACHA20_POLY1305");
        let cbc = has("_CBC_");
        let class = if name.starts_with("TLS_ECDHE_ECDSA_") || name.starts_with("TLS_ECDHE_RSA_") {
            match (aead, cbc, name.starts_with("TLS_ECDHE_ECDSA_")) {
                (true, _, true) => SuiteClass::EcdheEcdsa,
                (true, _, false) => SuiteClass::EcdheRsa,
                (false, true, _) => SuiteClass::EcdheCbc,
                _ => SuiteClass::Other,
            }
        } else if name.starts_with("TLS_DHE_") {
            match (aead, cbc) {
                (true, _) => SuiteClass::DheAead,
                (false, true) => SuiteClass::DheCbc,
                _ => SuiteClass::Other,
            }
        } else if name.starts_with("TLS_RSA_WITH_") {
            match (aead, cbc) {
                (true, _) => SuiteClass::RsaAead,
                (false, true) => SuiteClass::RsaCbc,
                _ => SuiteClass::Other,
            }
        } else {
            SuiteClass::Other
        };
        Some(class)
    }

    /// The key exchange of a TLS 1.2-and-older class: `ecdhe`, `dhe`, `rsa`
    /// (`None` for TLS 1.3, weak and other suites).
    pub fn kx(self) -> Option<&'static str> {
        match self {
            SuiteClass::EcdheEcdsa | SuiteClass::EcdheRsa | SuiteClass::EcdheCbc => Some("ecdhe"),
            SuiteClass::DheAead | SuiteClass::DheCbc => Some("dhe"),
            SuiteClass::RsaAead | SuiteClass::RsaCbc => Some("rsa"),
            SuiteClass::Tls13 | SuiteClass::Weak | SuiteClass::Other => None,
        }
    }

    /// AEAD suites exist from TLS 1.2 on; CBC ones in every version.
    pub fn aead(self) -> bool {
        matches!(
            self,
            SuiteClass::EcdheEcdsa
                | SuiteClass::EcdheRsa
                | SuiteClass::DheAead
                | SuiteClass::RsaAead
        )
    }
}

impl SigClass {
    /// The class of a signature scheme by its name (`scheme_name`'s).
    pub fn of_name(name: &str) -> SigClass {
        match name {
            "RSA_PKCS1_SHA1" | "ECDSA_SHA1_Legacy" => SigClass::Sha1,
            "ED25519" => SigClass::Ed25519,
            "ED448" => SigClass::Ed448,
            n if n.starts_with("RSA_PKCS1_SHA") => SigClass::RsaPkcs1,
            n if n.starts_with("ECDSA_NISTP") => SigClass::Ecdsa,
            n if n.starts_with("RSA_PSS_") => SigClass::RsaPss,
            n if n.starts_with("ML_DSA_") => SigClass::MlDsa,
            // SHA-224 and DSA schemes rustls does not name.
            "0x0301" | "0x0302" | "0x0303" | "0x0202" => SigClass::Sha1,
            _ => SigClass::Other,
        }
    }
}

/// The version names an offer keeps; anything else is `other`.
const VERSIONS: &[&str] = &["TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1.0", "SSLv3"];

/// Every group name an offer can hold: rustls' names (finite-field ones
/// folded), `ffdhe` and `other`.
fn group_names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<&'static str> = (0..=u16::MAX)
            .filter_map(|code| rustls::NamedGroup::from(code).as_str())
            .filter(|n| !n.starts_with("FFDHE"))
            .collect();
        names.extend(["ffdhe", "other"]);
        names
    })
}

/// The token of a version name: one of [`VERSIONS`] or `other`.
fn version_token(name: &str) -> &'static str {
    VERSIONS
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("other")
}

/// The token of a group name: rustls' name, `ffdhe` or `other`.
fn group_token(name: &str) -> &'static str {
    if name.starts_with("FFDHE") {
        return "ffdhe";
    }
    group_names()
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("other")
}

/// The compact summary of a ClientHello written into every record where the
/// client sent one. Lists are in the client's order, each name once. Names
/// are tokens of closed sets, so reading an offer back allocates no string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// `TLSv1.3` ... `SSLv3`, or `other`.
    #[serde(deserialize_with = "version_tokens")]
    pub versions: Vec<&'static str>,
    /// Named groups by their IANA names (`X25519MLKEM768`, `X25519`,
    /// `secp256r1` ...), every FFDHE group as `ffdhe`, unknown ones as `other`.
    #[serde(deserialize_with = "group_tokens")]
    pub groups: Vec<&'static str>,
    pub sigs: Vec<SigClass>,
    pub suites: Vec<SuiteClass>,
}

/// A list of names read as tokens by `token`, without allocating them.
fn tokens<'de, D: Deserializer<'de>>(
    d: D,
    token: fn(&str) -> &'static str,
) -> Result<Vec<&'static str>, D::Error> {
    struct Tokens(fn(&str) -> &'static str);
    struct One(fn(&str) -> &'static str);
    impl<'de> serde::de::DeserializeSeed<'de> for One {
        type Value = &'static str;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl serde::de::Visitor<'_> for One {
        type Value = &'static str;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a name")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok((self.0)(v))
        }
    }
    impl<'de> serde::de::Visitor<'de> for Tokens {
        type Value = Vec<&'static str>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of names")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(t) = seq.next_element_seed(One(self.0))? {
                push_once(&mut out, t);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Tokens(token))
}

fn version_tokens<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'static str>, D::Error> {
    tokens(d, version_token)
}

fn group_tokens<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'static str>, D::Error> {
    tokens(d, group_token)
}

fn push_once<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl Offer {
    /// The offer of a parsed ClientHello.
    pub fn of(hello: &ClientHello) -> Offer {
        let mut offer = Offer::default();
        for v in &hello.versions {
            push_once(
                &mut offer.versions,
                version_token(&clienthello::version_name(*v)),
            );
        }
        for g in &hello.groups {
            let token = match rustls::NamedGroup::from(*g).as_str() {
                Some(name) => group_token(name),
                None => "other",
            };
            push_once(&mut offer.groups, token);
        }
        for s in &hello.signature_schemes {
            let class = match rustls::SignatureScheme::from(*s).as_str() {
                Some(name) => SigClass::of_name(name),
                None => SigClass::of_name(&clienthello::scheme_name(*s)),
            };
            push_once(&mut offer.sigs, class);
        }
        for c in &hello.cipher_suites {
            if let Some(class) = SuiteClass::of_code(*c) {
                push_once(&mut offer.suites, class);
            }
        }
        offer
    }

    /// The offer of lists of names, as a record's `client_hello` holds them.
    pub fn of_names<V, G, S, C>(versions: V, groups: G, sigs: S, suites: C) -> Offer
    where
        V: IntoIterator<Item: AsRef<str>>,
        G: IntoIterator<Item: AsRef<str>>,
        S: IntoIterator<Item: AsRef<str>>,
        C: IntoIterator<Item: AsRef<str>>,
    {
        let mut offer = Offer::default();
        for v in versions {
            push_once(&mut offer.versions, version_token(v.as_ref()));
        }
        for g in groups {
            push_once(&mut offer.groups, group_token(g.as_ref()));
        }
        for s in sigs {
            push_once(&mut offer.sigs, SigClass::of_name(s.as_ref()));
        }
        for c in suites {
            if let Some(class) = SuiteClass::of_name(c.as_ref()) {
                push_once(&mut offer.suites, class);
            }
        }
        offer
    }

    pub fn offers_version(&self, name: &str) -> bool {
        self.versions.contains(&name)
    }

    /// Any post-quantum (ML-KEM, hybrid or pure) key exchange group.
    pub fn offers_pq_group(&self) -> bool {
        self.groups.iter().any(|g| g.contains("MLKEM"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::clienthello::{Peek, peek, tests::build_hello};

    #[test]
    fn a_suite_class_by_code_is_its_class_by_name() {
        for code in 0..=u16::MAX {
            assert_eq!(
                SuiteClass::of_code(code),
                SuiteClass::of_name(&clienthello::suite_name(code)),
                "0x{code:04x}"
            );
        }
    }

    #[test]
    fn suites_fall_into_classes_by_name() {
        let cases = [
            (0x1301, Some("tls13")),
            (0xc02b, Some("ecdhe_ecdsa")),
            (0xcca9, Some("ecdhe_ecdsa")),
            (0xc02f, Some("ecdhe_rsa")),
            (0xc013, Some("ecdhe_cbc")),
            (0xc023, Some("ecdhe_cbc")),
            (0x009e, Some("dhe_aead")),
            (0x0033, Some("dhe_cbc")),
            (0x009c, Some("rsa_aead")),
            (0x002f, Some("rsa_cbc")),
            (0x003d, Some("rsa_cbc")),
            (0x000a, Some("weak")),
            (0x0005, Some("weak")),
            (0x0016, Some("weak")),
            (0x0000, Some("weak")),
            (0x00a8, Some("other")), // PSK
            (0xfefe, Some("weak")),  // SSL_RSA_FIPS_WITH_DES_CBC_SHA
            (0xeeee, Some("other")),
            (0x00ff, None),
            (0x5600, None),
        ];
        for (code, want) in cases {
            let name = clienthello::suite_name(code);
            assert_eq!(
                SuiteClass::of_name(&name).map(SuiteClass::as_str),
                want,
                "{code:#06x} {name}"
            );
        }
        assert_eq!(SuiteClass::RsaCbc.kx(), Some("rsa"));
        assert!(SuiteClass::EcdheRsa.aead() && !SuiteClass::DheCbc.aead());
    }

    #[test]
    fn signature_schemes_fall_into_classes() {
        let cases = [
            (0x0403, "ecdsa"),
            (0x0603, "ecdsa"),
            (0x0804, "rsa_pss"),
            (0x0401, "rsa_pkcs1"),
            (0x0601, "rsa_pkcs1"),
            (0x0807, "ed25519"),
            (0x0808, "ed448"),
            (0x0905, "mldsa"),
            (0x0201, "sha1"),
            (0x0203, "sha1"),
            (0x0303, "sha1"),
            (0x0809, "other"),
            (0x0402, "other"),
        ];
        for (code, want) in cases {
            let name = clienthello::scheme_name(code);
            assert_eq!(
                SigClass::of_name(&name).as_str(),
                want,
                "{code:#06x} {name}"
            );
        }
    }

    /// A broad OpenSSL 3 hello: every version, ten groups, many suites.
    #[test]
    fn a_broad_hello_becomes_a_small_offer() {
        let rec = build_hello(
            &[0x0304, 0x0303, 0x0302, 0x0301, 0x7f1c],
            &[
                0x1302, 0x1303, 0x1301, 0xc02c, 0xc030, 0x009f, 0xcca9, 0xcca8, 0xccaa, 0xc02b,
                0xc02f, 0x009e, 0xc024, 0xc028, 0x006b, 0xc023, 0xc027, 0x0067, 0xc00a, 0xc014,
                0x0039, 0xc009, 0xc013, 0x0033, 0x009d, 0x009c, 0x003d, 0x003c, 0x0035, 0x002f,
                0x00ff,
            ],
            &[
                0x001d, 0x0017, 0x001e, 0x0019, 0x0018, 0x0100, 0x0101, 0x0102, 0x0103, 0x0104,
                0x1234,
            ],
            &[
                0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501,
                0x0601, 0x0303, 0x0203, 0x0201,
            ],
            Some("mx.example.test"),
        );
        let Peek::Hello(h) = peek(&rec) else {
            panic!("not parsed")
        };
        let offer = Offer::of(&h);
        let json = serde_json::to_string(&offer).unwrap();
        assert_eq!(
            json,
            r#"{"versions":["TLSv1.3","TLSv1.2","TLSv1.1","TLSv1.0","other"],"groups":["X25519","secp256r1","X448","secp521r1","secp384r1","ffdhe","other"],"sigs":["ecdsa","ed25519","ed448","rsa_pss","rsa_pkcs1","sha1"],"suites":["tls13","ecdhe_ecdsa","ecdhe_rsa","dhe_aead","ecdhe_cbc","dhe_cbc","rsa_aead","rsa_cbc"]}"#
        );
        // The full summary of the same hello, for comparison.
        let full = serde_json::to_string(&h.summary()).unwrap();
        assert!(
            json.len() < 320 && full.len() > 5 * json.len(),
            "{} {}",
            json.len(),
            full.len()
        );
        // Read back from the names a failure record keeps: the same offer.
        let s = h.summary();
        assert_eq!(
            Offer::of_names(
                &s.versions,
                &s.groups,
                &s.signature_schemes,
                &s.cipher_suites
            ),
            offer
        );
        assert_eq!(serde_json::from_str::<Offer>(&json).unwrap(), offer);
        assert!(offer.offers_version("TLSv1.0") && !offer.offers_pq_group());
        // Names from elsewhere become tokens of the closed sets.
        let odd: Offer = serde_json::from_str(
            r#"{"versions":["TLSv9","TLSv1.2","TLSv1.2"],"groups":["x\\y","secp256r1","FFDHE3072"],"sigs":[],"suites":[]}"#,
        )
        .unwrap();
        assert_eq!(odd.versions, ["other", "TLSv1.2"]);
        assert_eq!(odd.groups, ["other", "secp256r1", "ffdhe"]);
    }
}

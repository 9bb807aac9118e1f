//! Certificates as facts: DER in, what `run`, `check` and `probe` need out.
//!
//! The one certificate parser, so the record, `check`'s findings and
//! `probe`'s report name a key alike. Pure: no I/O, no clock (validity is
//! reported, judged by the caller). Key sizes are read from the key itself:
//! an RSA modulus's bit length, an EC key's named curve. (x509-parser's own
//! `key_size` counts bytes: 2040 for a 2047-bit modulus, 2048 for 2049 bits,
//! 528 for P-521.)

use thiserror::Error;
use x509_parser::public_key::PublicKey;

/// The certificate is not DER X.509 that x509-parser reads.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct CertError(String);

/// The facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    pub subject: String,
    pub issuer: String,
    /// The first subject common name, as written (not necessarily a host name).
    pub common_name: Option<String>,
    pub is_ca: bool,
    /// Validity window, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// DNS names of the subjectAltName extension, lower-cased.
    pub dns_names: Vec<String>,
    pub key: KeyKind,
    /// The subjectPublicKey bits, to compare with a private key's.
    pub public_key: Vec<u8>,
}

/// A certificate's key, with its size as the key itself says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// Bits of the modulus.
    Rsa(usize),
    /// ECDSA on a named NIST curve: 256, 384 or 521.
    Ec(usize),
    Ed25519,
    /// Anything else, by the OID of its algorithm (or of its EC curve).
    Other(String),
}

impl KeyKind {
    /// As in the records: `rsa_2048`, `ecdsa_p256`, `ed25519`.
    pub fn name(&self) -> String {
        match self {
            KeyKind::Rsa(bits) => format!("rsa_{bits}"),
            KeyKind::Ec(bits) => format!("ecdsa_p{bits}"),
            KeyKind::Ed25519 => "ed25519".into(),
            KeyKind::Other(oid) => format!("other_{oid}"),
        }
    }

    /// Which certificates can stand in for each other in certificate choice.
    pub fn family(&self) -> &'static str {
        match self {
            KeyKind::Rsa(_) => "rsa",
            KeyKind::Ec(_) => "ecdsa",
            KeyKind::Ed25519 => "ed25519",
            KeyKind::Other(_) => "other",
        }
    }

    pub fn bits(&self) -> Option<usize> {
        match self {
            KeyKind::Rsa(b) | KeyKind::Ec(b) => Some(*b),
            _ => None,
        }
    }
}

impl Cert {
    /// Subject and issuer are the same name (a root, or a self-signed leaf).
    pub fn self_issued(&self) -> bool {
        self.subject == self.issuer
    }

    /// The names this certificate answers for by SNI when none are
    /// configured: its DNS names, else (an old certificate without
    /// subjectAltName) its common name.
    pub fn sni_names(&self) -> Vec<String> {
        if self.dns_names.is_empty() {
            self.common_name
                .iter()
                .map(|cn| cn.to_ascii_lowercase())
                .collect()
        } else {
            self.dns_names.clone()
        }
    }
}

const OID_ED25519: &str = "1.3.101.112";

/// Bits of a big-endian unsigned number (leading zero bytes ignored).
pub fn bit_length(n: &[u8]) -> usize {
    match n.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => (n.len() - i - 1) * 8 + (8 - n[i].leading_zeros() as usize),
    }
}

/// The NIST curve of an EC key, by the OID in its algorithm parameters.
fn curve_bits(oid: &str) -> Option<usize> {
    match oid {
        "1.2.840.10045.3.1.7" => Some(256),
        "1.3.132.0.34" => Some(384),
        "1.3.132.0.35" => Some(521),
        _ => None,
    }
}

pub fn parse(der: &[u8]) -> Result<Cert, CertError> {
    let (_, x) = x509_parser::parse_x509_certificate(der).map_err(|e| CertError(e.to_string()))?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                dns_names.push(d.to_ascii_lowercase());
            }
        }
    }
    let common_name = x
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let spki = x.public_key();
    let algorithm = spki.algorithm.algorithm.to_id_string();
    let key = match spki.parsed() {
        Ok(PublicKey::RSA(r)) => KeyKind::Rsa(bit_length(r.modulus)),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .unwrap_or_default();
            match curve_bits(&curve) {
                Some(bits) => KeyKind::Ec(bits),
                None => KeyKind::Other(format!("{algorithm}_{curve}")),
            }
        }
        _ if algorithm == OID_ED25519 => KeyKind::Ed25519,
        _ => KeyKind::Other(algorithm),
    };
    Ok(Cert {
        subject: x.subject().to_string(),
        issuer: x.issuer().to_string(),
        common_name,
        is_ca: x.is_ca(),
        not_before: x.validity().not_before.timestamp(),
        not_after: x.validity().not_after.timestamp(),
        dns_names,
        key,
        public_key: spki.subject_public_key.data.to_vec(),
    })
}

/// RSA public keys of any size for tests (rcgen and aws-lc-rs only make the
/// usual ones); a certificate for one is signed by another key.
/// Whether a `*.domain` pattern covers `name`: one whole leftmost label
/// (RFC 6125 §6.4.3), never the bare domain.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
        None => false,
    }
}

/// The SubjectPublicKeyInfo, DER, as DANE's selector 1 hashes it.
pub fn spki(der: &[u8]) -> Result<Vec<u8>, CertError> {
    let (_, x) = x509_parser::parse_x509_certificate(der).map_err(|e| CertError(e.to_string()))?;
    Ok(x.tbs_certificate.subject_pki.raw.to_vec())
}

#[cfg(test)]
pub(crate) mod test_keys {
    use rcgen::PublicKeyData;

    pub(crate) struct RsaPublic(Vec<u8>);
    impl PublicKeyData for RsaPublic {
        fn der_bytes(&self) -> &[u8] {
            &self.0
        }
        fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
            &rcgen::PKCS_RSA_SHA256
        }
    }

    /// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER },
    /// with a modulus of exactly `bits` bits.
    pub(crate) fn rsa_public_key(bits: usize) -> RsaPublic {
        fn len(n: usize) -> Vec<u8> {
            if n < 128 {
                vec![n as u8]
            } else if n < 256 {
                vec![0x81, n as u8]
            } else {
                vec![0x82, (n >> 8) as u8, n as u8]
            }
        }
        let mut modulus = vec![0u8; bits.div_ceil(8)];
        modulus.fill(0x5b);
        let top = bits % 8;
        modulus[0] = if top == 0 { 0x80 } else { 1 << (top - 1) };
        if modulus[0] & 0x80 != 0 {
            modulus.insert(0, 0); // DER INTEGERs are signed
        }
        let mut int = vec![0x02];
        int.extend(len(modulus.len()));
        int.extend(modulus);
        int.extend([0x02, 0x03, 0x01, 0x00, 0x01]);
        let mut der = vec![0x30];
        der.extend(len(int.len()));
        der.extend(int);
        RsaPublic(der)
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::rsa_public_key;
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData};

    fn signed(params: CertificateParams, key: &impl PublicKeyData) -> Vec<u8> {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "CA");
        let issuer = rcgen::CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        params.signed_by(key, &issuer).unwrap().der().to_vec()
    }

    #[test]
    fn rsa_sizes_are_the_modulus_bit_length() {
        for bits in [1024, 2047, 2048, 2049, 3071, 4096] {
            let params = CertificateParams::new(vec!["mx.example.com".to_string()]).unwrap();
            let c = parse(&signed(params, &rsa_public_key(bits))).unwrap();
            assert_eq!(c.key, KeyKind::Rsa(bits));
            assert_eq!(c.key.name(), format!("rsa_{bits}"));
            assert_eq!(c.key.bits(), Some(bits));
        }
    }

    #[test]
    fn ec_sizes_are_the_named_curve() {
        for (alg, name) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, "ecdsa_p256"),
            (&rcgen::PKCS_ECDSA_P384_SHA384, "ecdsa_p384"),
            (&rcgen::PKCS_ECDSA_P521_SHA512, "ecdsa_p521"),
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            let params = CertificateParams::new(vec!["mx.example.com".to_string()]).unwrap();
            let c = parse(params.self_signed(&key).unwrap().der()).unwrap();
            assert_eq!(c.key.name(), name);
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let params = CertificateParams::new(vec!["mx.example.com".to_string()]).unwrap();
        let c = parse(params.self_signed(&key).unwrap().der()).unwrap();
        assert_eq!((c.key.name(), c.key.bits()), ("ed25519".to_string(), None));
    }

    #[test]
    fn names_subject_and_dates() {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["MX.Example.com".to_string(), "*.example.net".into()])
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Mail Server");
        params.not_before = rcgen::date_time_ymd(2029, 1, 1);
        params.not_after = rcgen::date_time_ymd(2031, 1, 1);
        let c = parse(params.self_signed(&key).unwrap().der()).unwrap();
        assert_eq!(c.subject, "CN=Mail Server");
        assert_eq!(c.common_name.as_deref(), Some("Mail Server"));
        assert!(c.self_issued());
        assert!(!c.is_ca);
        assert_eq!(c.dns_names, vec!["mx.example.com", "*.example.net"]);
        assert_eq!(c.sni_names(), c.dns_names);
        assert_eq!(c.not_before, 1_861_920_000);
        assert_eq!(c.not_after, 1_924_992_000);
    }

    /// Without subjectAltName, certificate choice falls back to the CN: `run`
    /// and `check` both use this one rule.
    #[test]
    fn sni_names_fall_back_to_the_common_name() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "MX.Legacy.test");
        let c = parse(params.self_signed(&key).unwrap().der()).unwrap();
        assert!(c.dns_names.is_empty());
        assert_eq!(c.sni_names(), vec!["mx.legacy.test"]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"not a certificate").is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[0, 0x7f, 0]), 15);
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(wildcard_match("*.example.com", "mx.example.com"));
        assert!(!wildcard_match("*.example.com", "a.b.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(!wildcard_match("mx.example.com", "mx.example.com"));
    }
}

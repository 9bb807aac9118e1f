//! Certificates as facts: DER in, what `run`, `check` and `probe` need out.
//!
//! The one certificate parser, so the record, `check`'s findings and
//! `probe`'s report name a key alike; and the one diagnosis of a
//! certificate and its key ([`Problem`], [`judge_validity`]), so `run`, a
//! reload and `check` say the same words. The parser is pure; reading the
//! PEM files ([`read_chain`], [`read_key`]) is the only I/O, and the clock
//! is the caller's. Key sizes are read from the key itself:
//! an RSA modulus's bit length, an EC key's named curve. (x509-parser's own
//! `key_size` counts bytes: 2040 for a 2047-bit modulus, 2048 for 2049 bits,
//! 528 for P-521.)

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use x509_parser::public_key::PublicKey;

use crate::limits;

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
    /// The Authority Information Access caIssuers URLs: where a public CA
    /// publishes the issuer's certificate. Private CAs usually give none.
    pub ca_issuers: Vec<String>,
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
/// id-ad-caIssuers (RFC 5280 §4.2.2.1).
const OID_CA_ISSUERS: &str = "1.3.6.1.5.5.7.48.2";

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
    let mut ca_issuers = Vec::new();
    for ext in x.extensions() {
        if let x509_parser::extensions::ParsedExtension::AuthorityInfoAccess(aia) =
            ext.parsed_extension()
        {
            for d in aia.iter() {
                if d.access_method.to_id_string() == OID_CA_ISSUERS
                    && let x509_parser::extensions::GeneralName::URI(uri) = d.access_location
                {
                    ca_issuers.push(uri.to_string());
                }
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
        ca_issuers,
    })
}

/// What keeps a certificate and its key from serving, in the words `run`,
/// a reload and `check` all say.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    #[error("cannot read the PEM chain: {0}")]
    ChainUnreadable(String),
    #[error("no CERTIFICATE block found (expected a PEM full chain: leaf first)")]
    NoCertificate,
    #[error("certificate {index} in the file: {error}")]
    CertificateUnparsable { index: usize, error: String },
    #[error("private key {path}: {error}")]
    KeyUnreadable { path: String, error: String },
    #[error(
        "RSA key of {0} bits: modern senders refuse it (\"ee key too small\"); use RSA 2048+ or ECDSA P-256"
    )]
    RsaTooSmall(usize),
    #[error("public key algorithm {0} is not usable for TLS here (use ECDSA or RSA)")]
    UnsupportedKeyType(String),
    #[error("the private key does not belong to the first certificate in the file")]
    KeyMismatch,
    #[error("the private key cannot be used: {0}")]
    KeyUnusable(String),
}

impl Problem {
    /// `check`'s stable code for it.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::ChainUnreadable(_) | Problem::NoCertificate => "certificate_unreadable",
            Problem::CertificateUnparsable { .. } => "certificate_unparsable",
            Problem::KeyUnreadable { .. } => "key_unreadable",
            Problem::RsaTooSmall(_) => "rsa_key_too_small",
            Problem::UnsupportedKeyType(_) => "unsupported_key_type",
            Problem::KeyMismatch => "key_mismatch",
            Problem::KeyUnusable(_) => "key_unusable",
        }
    }
}

/// The certificates of a PEM file, in order.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Problem> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| Problem::ChainUnreadable(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Problem::ChainUnreadable(e.to_string()))?;
    if chain.is_empty() {
        return Err(Problem::NoCertificate);
    }
    Ok(chain)
}

/// The private key of a PEM file (PKCS#8, SEC1 or PKCS#1). A file the
/// process may not read says how the service should get it instead.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Problem> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let denied = std::fs::File::open(path)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
        let hint = if denied {
            ": this user cannot read it; do not chmod it, give it to the service with \
             LoadCredential=NAME:FILE and key = \"%d/NAME\" (docs/operations.md, Private keys)"
        } else {
            ""
        };
        Problem::KeyUnreadable {
            path: path.display().to_string(),
            error: format!("{e}{hint}"),
        }
    })
}

/// What the leaf's own key rules out, before any private key is looked at.
pub fn leaf_key_problem(leaf: &Cert) -> Option<Problem> {
    match &leaf.key {
        KeyKind::Rsa(bits) if *bits < limits::MIN_RSA_BITS => Some(Problem::RsaTooSmall(*bits)),
        KeyKind::Other(oid) => Some(Problem::UnsupportedKeyType(oid.clone())),
        _ => None,
    }
}

/// Why a private key the TLS library refused is unusable: a small RSA key
/// by its size (aws-lc-rs only says it "failed to parse" one), else the
/// library's words.
pub fn unusable_key(key: &PrivateKeyDer<'_>, library_error: String) -> Problem {
    match private_key_kind(key) {
        Some(KeyKind::Rsa(bits)) if bits < limits::MIN_RSA_BITS => Problem::RsaTooSmall(bits),
        _ => Problem::KeyUnusable(library_error),
    }
}

/// One DER element: (tag, contents, the rest). Definite lengths up to 4 bytes.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const DER_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const DER_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const DER_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

fn der_curve_bits(oid: &[u8]) -> Option<usize> {
    match oid {
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07] => Some(256),
        [0x2b, 0x81, 0x04, 0x00, 0x22] => Some(384),
        [0x2b, 0x81, 0x04, 0x00, 0x23] => Some(521),
        _ => None,
    }
}

/// RSAPrivateKey ::= SEQUENCE { version, modulus, ... }: the modulus's bits.
fn pkcs1_bits(der: &[u8]) -> Option<usize> {
    let (0x30, body, _) = tlv(der)? else {
        return None;
    };
    let (0x02, _, rest) = tlv(body)? else {
        return None;
    };
    let (0x02, modulus, _) = tlv(rest)? else {
        return None;
    };
    Some(bit_length(modulus))
}

/// The kind and size of a private key, read from its DER (what the TLS
/// library may refuse to parse at all).
pub fn private_key_kind(key: &PrivateKeyDer<'_>) -> Option<KeyKind> {
    match key {
        PrivateKeyDer::Pkcs1(k) => pkcs1_bits(k.secret_pkcs1_der()).map(KeyKind::Rsa),
        PrivateKeyDer::Sec1(k) => {
            // ECPrivateKey ::= SEQUENCE { version, privateKey, [0] curve OID, ... }
            let (0x30, body, _) = tlv(k.secret_sec1_der())? else {
                return None;
            };
            let (_, _, rest) = tlv(body)?;
            let (_, _, mut rest) = tlv(rest)?;
            while let Some((tag, content, next)) = tlv(rest) {
                if tag == 0xa0 {
                    let (0x06, oid, _) = tlv(content)? else {
                        return None;
                    };
                    return der_curve_bits(oid).map(KeyKind::Ec);
                }
                rest = next;
            }
            None
        }
        PrivateKeyDer::Pkcs8(k) => {
            // PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, OCTET STRING key }
            let (0x30, body, _) = tlv(k.secret_pkcs8_der())? else {
                return None;
            };
            let (_, _, rest) = tlv(body)?;
            let (0x30, alg, rest) = tlv(rest)? else {
                return None;
            };
            let (0x06, oid, params) = tlv(alg)? else {
                return None;
            };
            match oid {
                DER_RSA_ENCRYPTION => {
                    let (0x04, inner, _) = tlv(rest)? else {
                        return None;
                    };
                    pkcs1_bits(inner).map(KeyKind::Rsa)
                }
                DER_EC_PUBLIC_KEY => {
                    let (0x06, curve, _) = tlv(params)? else {
                        return None;
                    };
                    der_curve_bits(curve).map(KeyKind::Ec)
                }
                DER_ED25519 => Some(KeyKind::Ed25519),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Where a certificate stands in its validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    NotYetValid,
    Expired,
    /// Less than [`limits::CERT_EXPIRY_WARNING`] left.
    ExpiresSoon,
    Valid,
}

/// A certificate's validity at `now`, judged, with whole days left (negative:
/// ago) and the words `check` and `run` say. `what` names it, e.g. "the leaf
/// (CN=mx.example.com)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub validity: Validity,
    pub days_left: i64,
    pub message: String,
}

/// `YYYY-MM-DD` of a Unix time.
pub fn date(ts: i64) -> String {
    jiff::Timestamp::from_second(ts)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| ts.to_string())
}

pub fn judge_validity(c: &Cert, what: &str, now: i64) -> Judged {
    let days_left = (c.not_after - now).div_euclid(86_400);
    let soon = limits::CERT_EXPIRY_WARNING.as_secs() as i64;
    let (validity, message) = if now < c.not_before {
        (
            Validity::NotYetValid,
            format!("{what} is valid only from {}", date(c.not_before)),
        )
    } else if now > c.not_after {
        (
            Validity::Expired,
            format!(
                "{what} expired on {} ({} days ago)",
                date(c.not_after),
                (now - c.not_after).div_euclid(86_400)
            ),
        )
    } else if c.not_after - now < soon {
        (
            Validity::ExpiresSoon,
            format!(
                "{what} expires on {} (in {days_left} days)",
                date(c.not_after)
            ),
        )
    } else {
        (
            Validity::Valid,
            format!("valid until {} ({days_left} days left)", date(c.not_after)),
        )
    };
    Judged {
        validity,
        days_left,
        message,
    }
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

    /// An Authority Information Access extension with one caIssuers URL,
    /// as public CAs put in their leaves.
    pub(crate) fn aia_ca_issuers(url: &str) -> rcgen::CustomExtension {
        // AccessDescription ::= SEQUENCE { OID id-ad-caIssuers, [6] IA5String }
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
        let mut uri = vec![0x86, url.len() as u8];
        uri.extend_from_slice(url.as_bytes());
        let mut desc = vec![0x30, (oid.len() + uri.len()) as u8];
        desc.extend_from_slice(&oid);
        desc.extend(uri);
        let mut aia = vec![0x30, desc.len() as u8];
        aia.extend(desc);
        rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], aia)
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
    fn aia_ca_issuers_urls_are_read() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["mx.example.com".to_string()]).unwrap();
        params
            .custom_extensions
            .push(test_keys::aia_ca_issuers("http://r11.i.lencr.org/"));
        let c = parse(params.self_signed(&key).unwrap().der()).unwrap();
        assert_eq!(c.ca_issuers, vec!["http://r11.i.lencr.org/"]);
        let plain = CertificateParams::new(vec!["mx.example.com".to_string()]).unwrap();
        let c = parse(plain.self_signed(&key).unwrap().der()).unwrap();
        assert!(c.ca_issuers.is_empty());
    }

    /// The private key's own kind and size, in each PEM form: what aws-lc-rs
    /// refuses to parse (a small RSA key) is still named by its size.
    #[test]
    fn private_keys_are_named_by_their_kind_and_size() {
        for (alg, kind) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, KeyKind::Ec(256)),
            (&rcgen::PKCS_ECDSA_P384_SHA384, KeyKind::Ec(384)),
            (&rcgen::PKCS_ED25519, KeyKind::Ed25519),
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
            assert_eq!(private_key_kind(&der), Some(kind));
        }
        // RSAPrivateKey { version 0, modulus of 1024 bits, exponent }, bare
        // (PKCS#1) and inside PKCS#8.
        let mut modulus = vec![0x00, 0x80];
        modulus.extend([0x11; 127]);
        let mut rsa = vec![0x02, 0x01, 0x00, 0x02, 0x81, modulus.len() as u8];
        rsa.extend(&modulus);
        rsa.extend([0x02, 0x03, 0x01, 0x00, 0x01]);
        let mut pkcs1 = vec![0x30, 0x81, rsa.len() as u8];
        pkcs1.extend(&rsa);
        let der = PrivateKeyDer::Pkcs1(pkcs1.clone().into());
        assert_eq!(private_key_kind(&der), Some(KeyKind::Rsa(1024)));
        let alg = [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
            0x00,
        ];
        let mut body = vec![0x02, 0x01, 0x00];
        body.extend(alg);
        body.extend([0x04, 0x81, pkcs1.len() as u8]);
        body.extend(&pkcs1);
        let mut pkcs8 = vec![0x30, 0x81, body.len() as u8];
        pkcs8.extend(body);
        let der = PrivateKeyDer::Pkcs8(pkcs8.into());
        assert_eq!(private_key_kind(&der), Some(KeyKind::Rsa(1024)));
        assert_eq!(
            unusable_key(&der, "failed to parse".into()),
            Problem::RsaTooSmall(1024)
        );
        // SEC1: ECPrivateKey { 1, key, [0] prime256v1 }.
        let mut sec1 = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
        sec1.extend([7u8; 32]);
        sec1.extend([
            0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ]);
        sec1[1] = (sec1.len() - 2) as u8;
        let der = PrivateKeyDer::Sec1(sec1.into());
        assert_eq!(private_key_kind(&der), Some(KeyKind::Ec(256)));
        // Truncated or foreign bytes: no kind, never a panic.
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x02, 0x01],
        ] {
            let der = PrivateKeyDer::Pkcs8(bytes.to_vec().into());
            assert_eq!(private_key_kind(&der), None);
        }
    }

    #[test]
    fn validity_is_judged_in_one_set_of_words() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["mx.example.com".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2029, 1, 1);
        params.not_after = rcgen::date_time_ymd(2031, 1, 1);
        let c = parse(params.self_signed(&key).unwrap().der()).unwrap();
        let day = 86_400;
        let j = |now| judge_validity(&c, "the leaf", now);
        assert_eq!(j(c.not_before - 1).validity, Validity::NotYetValid);
        assert_eq!(
            j(c.not_before - 1).message,
            "the leaf is valid only from 2029-01-01"
        );
        assert_eq!(j(c.not_after - 30 * day).validity, Validity::Valid);
        assert_eq!(
            j(c.not_after - 30 * day).message,
            "valid until 2031-01-01 (30 days left)"
        );
        let soon = j(c.not_after - 5 * day - 3600);
        assert_eq!(soon.validity, Validity::ExpiresSoon);
        assert_eq!(soon.message, "the leaf expires on 2031-01-01 (in 5 days)");
        // Two days and a bit after: two days ago, not three.
        let gone = j(c.not_after + 2 * day + 60);
        assert_eq!(gone.validity, Validity::Expired);
        assert_eq!(gone.message, "the leaf expired on 2031-01-01 (2 days ago)");
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

//! DANE for an MX host (RFC 7672) as data: the `_25._tcp.NAME. IN TLSA 3 1 1`
//! record of a key, which published records match a certificate, and the
//! status of a key against what DNS publishes, in the words `check --dane`,
//! `probe` and the daemon's rollover rule share. Pure: the lookups are
//! `crate::dns`'s.

use aws_lc_rs::digest;

use crate::outcome::TlsaStatus;

/// One TLSA record's fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tlsa {
    /// 2 DANE-TA (a CA in the chain), 3 DANE-EE (the server's own key); 0
    /// and 1 (PKIX) are not used for SMTP (RFC 7672 §3.1.3).
    pub usage: u8,
    /// 0 the whole certificate, 1 the SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0 exact, 1 SHA-256, 2 SHA-512.
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// `3 1 1`: the key itself, by the SHA-256 of its SubjectPublicKeyInfo;
    /// it survives every renewal that keeps the key.
    pub fn for_key(spki_der: &[u8]) -> Tlsa {
        Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: digest::digest(&digest::SHA256, spki_der).as_ref().to_vec(),
        }
    }

    /// `3 1 1 0a1b...` as in a zone file.
    pub fn rdata(&self) -> String {
        format!(
            "{} {} {} {}",
            self.usage,
            self.selector,
            self.matching,
            hex(&self.data)
        )
    }

    /// Whether this record accepts a chain (leaf first, DER, with each
    /// certificate's SubjectPublicKeyInfo). DANE-EE matches the leaf,
    /// DANE-TA any certificate above it; PKIX usages are never matched (SMTP
    /// senders treat them as unusable).
    pub fn matches(&self, chain: &[(&[u8], &[u8])]) -> bool {
        let candidates: &[(&[u8], &[u8])] = match self.usage {
            3 => &chain[..chain.len().min(1)],
            2 => chain.get(1..).unwrap_or_default(),
            _ => &[],
        };
        candidates.iter().any(|(cert, spki)| {
            let selected = match self.selector {
                0 => *cert,
                1 => *spki,
                _ => return false,
            };
            match self.matching {
                0 => selected == self.data.as_slice(),
                1 => digest::digest(&digest::SHA256, selected).as_ref() == self.data.as_slice(),
                2 => digest::digest(&digest::SHA512, selected).as_ref() == self.data.as_slice(),
                _ => false,
            }
        })
    }
}

/// The name TLSA records for SMTP on `host` live at.
pub fn owner(host: &str) -> String {
    format!("_25._tcp.{}.", host.trim_end_matches('.'))
}

/// The zone-file line to publish.
pub fn record_line(host: &str, tlsa: &Tlsa) -> String {
    format!("{} IN TLSA {}", owner(host), tlsa.rdata())
}

/// What DNS says about one key of one name: whether `published` (the
/// records found, `secure` when DNSSEC-validated) hold the key's `3 1 1` record.
pub fn status(key: &Tlsa, published: &[Tlsa], secure: bool) -> TlsaStatus {
    if !published.contains(key) {
        TlsaStatus::Missing
    } else if secure {
        TlsaStatus::Published
    } else {
        TlsaStatus::Unsigned
    }
}

/// What a status means for an admin, in the words check and probe share.
pub fn explain(status: TlsaStatus) -> &'static str {
    match status {
        TlsaStatus::Published => "published and DNSSEC-validated",
        TlsaStatus::Unsigned => {
            "published but not DNSSEC-validated: senders ignore TLSA records of an unsigned zone"
        }
        TlsaStatus::Missing => "not published",
        TlsaStatus::LookupFailed => "the lookup failed",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses hex digits (as in a zone file; spaces allowed).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    /// Leaf DER and SPKI, CA DER and SPKI, and the leaf key's SPKI as rcgen says.
    type Chain = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

    fn chain() -> Chain {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["mx.example.test".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let leaf_der = leaf.der().to_vec();
        let ca_der = issuer.der().to_vec();
        let leaf_spki = crate::cert::spki(&leaf_der).unwrap();
        let ca_spki = crate::cert::spki(&ca_der).unwrap();
        (
            leaf_der,
            leaf_spki,
            ca_der,
            ca_spki,
            key.subject_public_key_info(),
        )
    }

    #[test]
    fn the_3_1_1_record_of_a_key_matches_its_certificate_and_no_other() {
        let (leaf, leaf_spki, ca, ca_spki, leaf_key) = chain();
        // rcgen's SubjectPublicKeyInfo of a key is the certificate's, byte
        // for byte: the daemon computes a next key's record from the key alone.
        assert_eq!(leaf_key, leaf_spki);
        let key = rcgen::KeyPair::generate().unwrap();
        // The key's own SubjectPublicKeyInfo, as rcgen writes it, is the certificate's.
        let record = Tlsa::for_key(&leaf_spki);
        let presented: Vec<(&[u8], &[u8])> = vec![(&leaf, &leaf_spki), (&ca, &ca_spki)];
        assert!(record.matches(&presented));
        assert!(!Tlsa::for_key(&key.subject_public_key_info()).matches(&presented));
        // 3 1 1 of the CA's key does not match: usage 3 looks at the leaf only.
        assert!(!Tlsa::for_key(&ca_spki).matches(&presented));
        let ta = Tlsa {
            usage: 2,
            ..Tlsa::for_key(&ca_spki)
        };
        assert!(ta.matches(&presented));
        let full = Tlsa {
            usage: 3,
            selector: 0,
            matching: 0,
            data: leaf.clone(),
        };
        assert!(full.matches(&presented));
        let pkix = Tlsa {
            usage: 1,
            ..record.clone()
        };
        assert!(!pkix.matches(&presented));
        assert_eq!(record.rdata().len(), "3 1 1 ".len() + 64);
        assert_eq!(
            record_line("mx.example.test.", &record),
            format!("_25._tcp.mx.example.test. IN TLSA {}", record.rdata())
        );
        assert_eq!(unhex(&hex(&record.data)).unwrap(), record.data);
        assert_eq!(unhex("0a 1B").unwrap(), vec![0x0a, 0x1b]);
        assert!(unhex("abc").is_none());
    }

    #[test]
    fn status_needs_the_record_and_dnssec() {
        let a = Tlsa::for_key(b"a");
        let b = Tlsa::for_key(b"b");
        assert_eq!(
            status(&a, &[b.clone(), a.clone()], true),
            TlsaStatus::Published
        );
        assert_eq!(
            status(&a, std::slice::from_ref(&a), false),
            TlsaStatus::Unsigned
        );
        assert_eq!(status(&a, &[b], true), TlsaStatus::Missing);
        assert_eq!(status(&a, &[], true), TlsaStatus::Missing);
    }
}

//! TLS 1.3's key schedule with HMAC keys prepared once.
//!
//! rustls' aws-lc-rs provider runs every HKDF-Expand through aws-lc's one-shot
//! `HKDF`: each of the twenty-odd labels a handshake expands sets up the HMAC
//! key again (two hash compressions), and a secret that came out of an
//! extract is extracted again for every label. With the SHA-384 suite (the
//! one both rustls and OpenSSL clients prefer) that was about a tenth of a
//! whole STARTTLS session's CPU in a perf profile (docs/benchmarks.md).
//!
//! The same suites here take rustls' own HKDF-over-HMAC
//! ([`HkdfUsingHmac`], the construction RFC 5869 defines) on aws-lc-rs' HMAC,
//! whose key keeps the prepared inner and outer hash states: a secret is
//! extracted once, and each label is a copy of that state and two
//! compressions. Same algorithms, same bytes (the tests compare every
//! operation with the provider's), same AEAD, hash and limits.

use std::sync::LazyLock;

use aws_lc_rs::hmac as lc;
use rustls::crypto::aws_lc_rs::cipher_suite as provided;
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::{CipherSuiteCommon, CryptoProvider};
use rustls::{CipherSuite, SupportedCipherSuite, Tls13CipherSuite};

/// aws-lc-rs' HMAC as rustls' [`Hmac`].
struct AwsLcHmac(lc::Algorithm);

/// A key whose inner and outer states are computed once, when it is made.
struct AwsLcHmacKey(lc::Key);

impl Hmac for AwsLcHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        Box::new(AwsLcHmacKey(lc::Key::new(self.0, key)))
    }

    fn hash_output_len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }
}

impl Key for AwsLcHmacKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        // A context starts as a copy of the key's prepared state.
        let mut ctx = lc::Context::with_key(&self.0);
        ctx.update(first);
        for m in middle {
            ctx.update(m);
        }
        ctx.update(last);
        Tag::new(ctx.sign().as_ref())
    }

    fn tag_len(&self) -> usize {
        self.0.algorithm().digest_algorithm().output_len()
    }
}

static HMAC_SHA256: AwsLcHmac = AwsLcHmac(lc::HMAC_SHA256);
static HMAC_SHA384: AwsLcHmac = AwsLcHmac(lc::HMAC_SHA384);
static HKDF_SHA256: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA256);
static HKDF_SHA384: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA384);

/// The provider's TLS 1.3 suite `base` with the HKDF above.
fn rekeyed(base: SupportedCipherSuite) -> Tls13CipherSuite {
    let SupportedCipherSuite::Tls13(base) = base else {
        unreachable!("only TLS 1.3 suites are rekeyed")
    };
    let hkdf: &'static HkdfUsingHmac<'static> = match base.common.hash_provider.algorithm() {
        HashAlgorithm::SHA384 => &HKDF_SHA384,
        HashAlgorithm::SHA256 => &HKDF_SHA256,
        other => unreachable!("no TLS 1.3 suite of the provider hashes with {other:?}"),
    };
    Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: base.common.suite,
            hash_provider: base.common.hash_provider,
            confidentiality_limit: base.common.confidentiality_limit,
        },
        hkdf_provider: hkdf,
        aead_alg: base.aead_alg,
        quic: base.quic,
    }
}

// rustls wants `&'static` suites: one each, made on first use.
static AES_256_GCM_SHA384: LazyLock<Tls13CipherSuite> =
    LazyLock::new(|| rekeyed(provided::TLS13_AES_256_GCM_SHA384));
static AES_128_GCM_SHA256: LazyLock<Tls13CipherSuite> =
    LazyLock::new(|| rekeyed(provided::TLS13_AES_128_GCM_SHA256));
static CHACHA20_POLY1305_SHA256: LazyLock<Tls13CipherSuite> =
    LazyLock::new(|| rekeyed(provided::TLS13_CHACHA20_POLY1305_SHA256));

/// `suite` with HMAC keys prepared once if it is one of the provider's TLS 1.3
/// suites; any other suite (TLS 1.2's PRF is aws-lc's own) as it is.
pub fn prepared(suite: SupportedCipherSuite) -> SupportedCipherSuite {
    let ours: &'static Tls13CipherSuite = match suite.suite() {
        CipherSuite::TLS13_AES_256_GCM_SHA384 => &AES_256_GCM_SHA384,
        CipherSuite::TLS13_AES_128_GCM_SHA256 => &AES_128_GCM_SHA256,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => &CHACHA20_POLY1305_SHA256,
        _ => return suite,
    };
    SupportedCipherSuite::Tls13(ours)
}

/// rustls' aws-lc-rs provider with every suite [`prepared`].
pub fn provider() -> CryptoProvider {
    with_prepared_suites(rustls::crypto::aws_lc_rs::default_provider())
}

/// `p` with its suites [`prepared`], in the same order.
pub fn with_prepared_suites(mut p: CryptoProvider) -> CryptoProvider {
    for s in p.cipher_suites.iter_mut() {
        *s = prepared(*s);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::tls13::{HkdfExpander, OkmBlock};

    fn suites() -> Vec<(&'static Tls13CipherSuite, &'static Tls13CipherSuite)> {
        rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
            .iter()
            .filter_map(|s| match (s, prepared(*s)) {
                (SupportedCipherSuite::Tls13(a), SupportedCipherSuite::Tls13(b)) => Some((*a, b)),
                _ => None,
            })
            .collect()
    }

    fn bytes(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Every HKDF operation the key schedule uses gives the provider's bytes,
    /// for each suite, salts present and absent, secrets and labels of many
    /// lengths, outputs of one block and of several.
    #[test]
    fn every_operation_matches_the_provider() {
        let all = suites();
        assert_eq!(all.len(), 3, "three TLS 1.3 suites");
        for (theirs, ours) in all {
            assert!(
                !std::ptr::eq(theirs, ours),
                "{:?} was replaced",
                theirs.common.suite
            );
            assert_eq!(theirs.common.suite, ours.common.suite);
            let (a, b) = (theirs.hkdf_provider, ours.hkdf_provider);
            for len in [0usize, 1, 32, 48, 64, 129, 300] {
                let secret = bytes(len as u8, len);
                for salt in [None, Some(bytes(7, 48)), Some(bytes(9, 200))] {
                    let salt = salt.as_deref();
                    let pairs: [(Box<dyn HkdfExpander>, Box<dyn HkdfExpander>); 2] = [
                        (
                            a.extract_from_secret(salt, &secret),
                            b.extract_from_secret(salt, &secret),
                        ),
                        (a.extract_from_zero_ikm(salt), b.extract_from_zero_ikm(salt)),
                    ];
                    for (x, y) in pairs {
                        assert_eq!(x.hash_len(), y.hash_len());
                        let info: [&[u8]; 3] = [b"tls13 ", &secret, b"c hs traffic"];
                        assert_eq!(
                            x.expand_block(&info).as_ref(),
                            y.expand_block(&info).as_ref()
                        );
                        for out_len in [12usize, 16, 32, 48, 100, 255] {
                            let (mut o1, mut o2) = (vec![0; out_len], vec![1; out_len]);
                            x.expand_slice(&info, &mut o1).unwrap();
                            y.expand_slice(&info, &mut o2).unwrap();
                            assert_eq!(o1, o2, "{:?} expand {out_len}", theirs.common.suite);
                        }
                        let okm = x.expand_block(&[b"derived"]);
                        let (ex, ey) = (a.expander_for_okm(&okm), b.expander_for_okm(&okm));
                        assert_eq!(
                            ex.expand_block(&[b"key"]).as_ref(),
                            ey.expand_block(&[b"key"]).as_ref()
                        );
                        let block = OkmBlock::new(okm.as_ref());
                        assert_eq!(
                            a.hmac_sign(&block, &secret).as_ref(),
                            b.hmac_sign(&block, &secret).as_ref()
                        );
                    }
                }
            }
            // Too long an output is refused by both.
            let (x, y) = (
                a.extract_from_secret(None, b"s"),
                b.extract_from_secret(None, b"s"),
            );
            let too_long = 255 * x.hash_len() + 1;
            assert!(x.expand_slice(&[b"i"], &mut vec![0; too_long]).is_err());
            assert!(y.expand_slice(&[b"i"], &mut vec![0; too_long]).is_err());
        }
    }

    /// RFC 5869's first SHA-256 test case, through the prepared suite.
    #[test]
    fn rfc5869_test_case_1() {
        let hkdf = &AES_128_GCM_SHA256.hkdf_provider;
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        hkdf.extract_from_secret(Some(&salt), &ikm)
            .expand_slice(&[&info], &mut okm)
            .unwrap();
        let want =
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865";
        let got: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
    }

    /// The provider keeps its order, its TLS 1.2 suites, and gets the three
    /// prepared TLS 1.3 suites.
    #[test]
    fn the_provider_keeps_order_and_tls12() {
        let theirs = rustls::crypto::aws_lc_rs::default_provider();
        let ours = provider();
        let names = |p: &CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&theirs), names(&ours));
        for (t, o) in theirs.cipher_suites.iter().zip(&ours.cipher_suites) {
            match (t, o) {
                (SupportedCipherSuite::Tls13(t), SupportedCipherSuite::Tls13(o)) => {
                    assert!(!std::ptr::eq(*t, *o))
                }
                (SupportedCipherSuite::Tls12(t), SupportedCipherSuite::Tls12(o)) => {
                    assert!(std::ptr::eq(*t, *o))
                }
                _ => panic!("suite kind changed"),
            }
        }
    }
}

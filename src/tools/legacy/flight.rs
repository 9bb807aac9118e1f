//! The pure part of the legacy probe: the TLS 1.2 ClientHello a broad,
//! modern-ish client sends, and a parser for the server's plaintext first
//! flight (ServerHello, Certificate, ServerKeyExchange, ServerHelloDone).
//!
//! TLS 1.2 sends those messages in clear, so the backend's chosen version and
//! suite, its certificate and its DH prime can be read without finishing the
//! handshake. Bytes in, a [`Flight`] out; "need more" is a normal value; every
//! length is bounds-checked, so no input can make it panic.

use crate::cert::bit_length;
use crate::wire::clienthello::Reader as R;

/// How the key exchange of a suite works (decides how ServerKeyExchange reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kx {
    Ecdhe,
    Dhe,
    Rsa,
}

/// The TLS 1.2 suites the probe offers: what OpenSSL-based senders offer by
/// default (ECDHE and DHE with AEAD first), plus the CBC and RSA-key-exchange
/// suites old servers may only have. Order is the probe's preference.
pub const OFFERED_SUITES: &[(u16, &str, Kx)] = &[
    (0xc02c, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", Kx::Ecdhe),
    (0xc030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", Kx::Ecdhe),
    (0xc02b, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", Kx::Ecdhe),
    (0xc02f, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", Kx::Ecdhe),
    (
        0xcca9,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Kx::Ecdhe,
    ),
    (
        0xcca8,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Kx::Ecdhe,
    ),
    (0x009f, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", Kx::Dhe),
    (0x009e, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", Kx::Dhe),
    (0xccaa, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", Kx::Dhe),
    (0xc024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", Kx::Ecdhe),
    (0xc028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", Kx::Ecdhe),
    (0xc023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", Kx::Ecdhe),
    (0xc027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", Kx::Ecdhe),
    (0xc00a, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", Kx::Ecdhe),
    (0xc014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", Kx::Ecdhe),
    (0xc009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", Kx::Ecdhe),
    (0xc013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", Kx::Ecdhe),
    (0x006b, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", Kx::Dhe),
    (0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", Kx::Dhe),
    (0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA", Kx::Dhe),
    (0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", Kx::Dhe),
    (0x009d, "TLS_RSA_WITH_AES_256_GCM_SHA384", Kx::Rsa),
    (0x009c, "TLS_RSA_WITH_AES_128_GCM_SHA256", Kx::Rsa),
    (0x003d, "TLS_RSA_WITH_AES_256_CBC_SHA256", Kx::Rsa),
    (0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256", Kx::Rsa),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA", Kx::Rsa),
    (0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA", Kx::Rsa),
];

/// Groups offered: the ECDHE curves, and the RFC 7919 FFDHE groups that modern
/// OpenSSL also lists (a server that honours them picks a safe DH group).
const OFFERED_GROUPS: &[u16] = &[0x001d, 0x0017, 0x0018, 0x0019, 0x0100, 0x0101];

const SIGNATURE_SCHEMES: &[u16] = &[
    0x0403, 0x0503, 0x0603, 0x0807, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0203, 0x0201,
];

/// The IANA name of a suite the probe offers, or `0x....`.
pub fn suite_name(code: u16) -> String {
    OFFERED_SUITES
        .iter()
        .find(|s| s.0 == code)
        .map(|s| s.1.to_string())
        .unwrap_or_else(|| format!("0x{code:04x}"))
}

pub fn suite_kx(code: u16) -> Option<Kx> {
    OFFERED_SUITES.iter().find(|s| s.0 == code).map(|s| s.2)
}

pub fn group_name(g: u16) -> String {
    match g {
        0x0017 => "secp256r1".into(),
        0x0018 => "secp384r1".into(),
        0x0019 => "secp521r1".into(),
        0x001d => "X25519".into(),
        0x001e => "X448".into(),
        0x0100 => "ffdhe2048".into(),
        0x0101 => "ffdhe3072".into(),
        other => format!("0x{other:04x}"),
    }
}

/// A TLS 1.2 ClientHello record offering [`OFFERED_SUITES`]. No SNI (a legacy
/// MTA on loopback has one certificate) and no `supported_versions`, so a
/// server can answer with at most TLS 1.2 and its flight stays readable.
pub fn client_hello(random: [u8; 32]) -> Vec<u8> {
    fn u16s(out: &mut Vec<u8>, items: &[u16]) {
        out.extend_from_slice(&((items.len() * 2) as u16).to_be_bytes());
        for i in items {
            out.extend_from_slice(&i.to_be_bytes());
        }
    }
    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    let mut exts = Vec::new();
    let mut groups = Vec::new();
    u16s(&mut groups, OFFERED_GROUPS);
    ext(&mut exts, 0x000a, &groups);
    ext(&mut exts, 0x000b, &[1, 0]); // ec_point_formats: uncompressed
    let mut sigs = Vec::new();
    u16s(&mut sigs, SIGNATURE_SCHEMES);
    ext(&mut exts, 0x000d, &sigs);
    ext(&mut exts, 0x0017, &[]); // extended_master_secret
    ext(&mut exts, 0xff01, &[0]); // renegotiation_info: some old servers insist

    let mut body = Vec::new();
    body.extend_from_slice(&0x0303u16.to_be_bytes());
    body.extend_from_slice(&random);
    body.push(0); // no session id
    let suites: Vec<u16> = OFFERED_SUITES.iter().map(|s| s.0).collect();
    u16s(&mut body, &suites);
    body.extend_from_slice(&[1, 0]); // compression: null only
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);

    let mut hs = vec![1u8];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    // Record version 1.0: the most tolerant value for old servers.
    let mut rec = vec![22u8, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// What the server's key exchange revealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyExchange {
    /// Finite-field DH: the size of the prime p in bits.
    Dhe { prime_bits: usize },
    /// Elliptic-curve DH on a named group.
    Ecdhe { group: u16 },
}

/// The server's first flight, up to ServerHelloDone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFlight {
    /// The negotiated version (ServerHello, or its `supported_versions`).
    pub version: u16,
    pub cipher_suite: u16,
    /// DER certificates as sent, leaf first. Empty under TLS 1.3 (encrypted).
    pub certificates: Vec<Vec<u8>>,
    pub key_exchange: Option<KeyExchange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flight {
    /// Incomplete so far: read more.
    NeedMore,
    Done(ServerFlight),
    /// The server refused with an alert (level, description).
    Alert {
        level: u8,
        description: u8,
    },
    /// The first byte is not a TLS record (e.g. an SMTP reply).
    NotTls,
    Malformed(&'static str),
}

/// Largest record body TLS allows (2^14 plus expansion).
const MAX_RECORD: usize = 16384 + 2048;

/// Parses everything received so far. Stateless: call again with the whole
/// buffer after each read (the buffer is bounded by the caller).
pub fn parse_flight(buf: &[u8]) -> Flight {
    if buf.is_empty() {
        return Flight::NeedMore;
    }
    if !matches!(buf[0], 20..=23) {
        return Flight::NotTls;
    }
    // Reassemble the handshake stream from its records.
    let mut hs = Vec::new();
    let mut rest = buf;
    while rest.len() >= 5 {
        let kind = rest[0];
        if rest[1] != 3 {
            return Flight::Malformed("record version is not 3.x");
        }
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if len > MAX_RECORD {
            return Flight::Malformed("record too long");
        }
        if rest.len() < 5 + len {
            break;
        }
        let body = &rest[5..5 + len];
        rest = &rest[5 + len..];
        match kind {
            22 => hs.extend_from_slice(body),
            21 if body.len() >= 2 => {
                return Flight::Alert {
                    level: body[0],
                    description: body[1],
                };
            }
            21 => return Flight::Malformed("short alert"),
            _ => return Flight::Malformed("unexpected record before ServerHelloDone"),
        }
    }
    // A record cut short just means more is on its way.
    parse_handshake(&hs)
}

fn parse_handshake(hs: &[u8]) -> Flight {
    let mut r = R(hs);
    let mut hello: Option<(u16, u16)> = None;
    let mut certificates = Vec::new();
    let mut key_exchange = None;
    loop {
        if r.0.is_empty() {
            return Flight::NeedMore;
        }
        let Some(kind) = r.u8() else {
            return Flight::NeedMore;
        };
        let Some(body) = r.vec24() else {
            return Flight::NeedMore;
        };
        match (kind, hello) {
            (2, None) => match parse_server_hello(body) {
                Some((version, suite)) if version == 0x0304 => {
                    // The rest is encrypted: version and suite are all there is.
                    return Flight::Done(ServerFlight {
                        version,
                        cipher_suite: suite,
                        certificates,
                        key_exchange,
                    });
                }
                Some(h) => hello = Some(h),
                None => return Flight::Malformed("bad ServerHello"),
            },
            (_, None) => return Flight::Malformed("first handshake message is not ServerHello"),
            (11, Some(_)) => match parse_certificates(body) {
                Some(c) => certificates = c,
                None => return Flight::Malformed("bad Certificate message"),
            },
            (12, Some((_, suite))) => {
                key_exchange = match suite_kx(suite) {
                    Some(Kx::Dhe) => match parse_dhe(body) {
                        Some(k) => Some(k),
                        None => return Flight::Malformed("bad DHE ServerKeyExchange"),
                    },
                    Some(Kx::Ecdhe) => match parse_ecdhe(body) {
                        Some(k) => Some(k),
                        None => return Flight::Malformed("bad ECDHE ServerKeyExchange"),
                    },
                    _ => None,
                }
            }
            (14, Some((version, cipher_suite))) => {
                return Flight::Done(ServerFlight {
                    version,
                    cipher_suite,
                    certificates,
                    key_exchange,
                });
            }
            // CertificateStatus, CertificateRequest, anything else: not needed.
            (_, Some(_)) => {}
        }
    }
}

fn parse_server_hello(body: &[u8]) -> Option<(u16, u16)> {
    let mut r = R(body);
    let mut version = r.u16()?;
    r.take(32)?;
    r.vec8()?;
    let suite = r.u16()?;
    r.u8()?;
    if !r.0.is_empty() {
        let mut exts = R(r.vec16()?);
        while !exts.0.is_empty() {
            let kind = exts.u16()?;
            let data = exts.vec16()?;
            if kind == 43 && data.len() == 2 {
                version = u16::from_be_bytes([data[0], data[1]]);
            }
        }
    }
    Some((version, suite))
}

fn parse_certificates(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut outer = R(body);
    let mut list = R(outer.vec24()?);
    let mut out = Vec::new();
    while !list.0.is_empty() {
        out.push(list.vec24()?.to_vec());
    }
    Some(out)
}

fn parse_dhe(body: &[u8]) -> Option<KeyExchange> {
    let mut r = R(body);
    let p = r.vec16()?;
    r.vec16()?; // g
    r.vec16()?; // Ys
    Some(KeyExchange::Dhe {
        prime_bits: bit_length(p),
    })
}

fn parse_ecdhe(body: &[u8]) -> Option<KeyExchange> {
    let mut r = R(body);
    // 3 = named_curve; explicit curves are long dead.
    if r.u8()? != 3 {
        return None;
    }
    Some(KeyExchange::Ecdhe { group: r.u16()? })
}

/// Alert descriptions a probe can meet, for people.
pub fn alert_name(d: u8) -> String {
    match d {
        10 => "unexpected_message".into(),
        40 => "handshake_failure".into(),
        47 => "illegal_parameter".into(),
        50 => "decode_error".into(),
        70 => "protocol_version".into(),
        71 => "insufficient_security".into(),
        80 => "internal_error".into(),
        112 => "unrecognized_name".into(),
        other => format!("alert_{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::clienthello::version_name;

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 3, 3];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(body);
        v
    }

    fn server_hello(version: u16, suite: u16, exts: Option<&[u8]>) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend_from_slice(&[7; 32]);
        b.push(4);
        b.extend_from_slice(&[1, 2, 3, 4]);
        b.extend_from_slice(&suite.to_be_bytes());
        b.push(0);
        if let Some(e) = exts {
            b.extend_from_slice(&(e.len() as u16).to_be_bytes());
            b.extend_from_slice(e);
        }
        msg(2, &b)
    }

    fn certificate(certs: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for c in certs {
            list.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
            list.extend_from_slice(c);
        }
        let mut b = (list.len() as u32).to_be_bytes()[1..].to_vec();
        b.extend_from_slice(&list);
        msg(11, &b)
    }

    fn dhe_ske(p: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for part in [p, &[2u8][..], &[9u8; 16][..]] {
            b.extend_from_slice(&(part.len() as u16).to_be_bytes());
            b.extend_from_slice(part);
        }
        b.extend_from_slice(&[4, 1, 0, 2, 0xaa, 0xbb]); // signature
        msg(12, &b)
    }

    /// A DHE flight with a 1024-bit prime, split over two records.
    fn dhe_flight() -> Vec<u8> {
        let mut p = vec![0u8];
        p.push(0xc5);
        p.extend_from_slice(&[0x11; 127]);
        let mut hs = server_hello(0x0303, 0x009e, Some(&[0xff, 0x01, 0, 1, 0]));
        hs.extend(certificate(&[b"leafDER", b"intermediateDER"]));
        hs.extend(dhe_ske(&p));
        hs.extend(msg(14, &[]));
        let (a, b) = hs.split_at(50);
        let mut out = record(22, a);
        out.extend(record(22, b));
        out
    }

    #[test]
    fn dhe_flight_reveals_suite_certificates_and_prime_size() {
        let f = dhe_flight();
        let Flight::Done(flight) = parse_flight(&f) else {
            panic!("{:?}", parse_flight(&f))
        };
        assert_eq!(flight.version, 0x0303);
        assert_eq!(
            suite_name(flight.cipher_suite),
            "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(
            flight.certificates,
            vec![b"leafDER".to_vec(), b"intermediateDER".to_vec()]
        );
        assert_eq!(
            flight.key_exchange,
            Some(KeyExchange::Dhe { prime_bits: 1024 })
        );
        // Every strict prefix is incomplete, never an error.
        for n in 0..f.len() {
            assert_eq!(parse_flight(&f[..n]), Flight::NeedMore, "prefix {n}");
        }
    }

    #[test]
    fn ecdhe_and_rsa_flights() {
        let mut ske = vec![3, 0x00, 0x1d, 32];
        ske.extend_from_slice(&[5; 32]);
        let mut hs = server_hello(0x0303, 0xc02f, None);
        hs.extend(certificate(&[b"leaf"]));
        hs.extend(msg(12, &ske));
        hs.extend(msg(14, &[]));
        let Flight::Done(f) = parse_flight(&record(22, &hs)) else {
            panic!()
        };
        assert_eq!(f.key_exchange, Some(KeyExchange::Ecdhe { group: 0x1d }));
        assert_eq!(group_name(0x1d), "X25519");

        let mut hs = server_hello(0x0301, 0x002f, None);
        hs.extend(certificate(&[b"leaf"]));
        hs.extend(msg(14, &[]));
        let Flight::Done(f) = parse_flight(&record(22, &hs)) else {
            panic!()
        };
        assert_eq!(version_name(f.version), "TLSv1.0");
        assert_eq!(f.key_exchange, None);
    }

    #[test]
    fn tls13_answer_stops_at_the_server_hello() {
        let hs = server_hello(0x0303, 0x1301, Some(&[0, 43, 0, 2, 3, 4]));
        let Flight::Done(f) = parse_flight(&record(22, &hs)) else {
            panic!()
        };
        assert_eq!(f.version, 0x0304);
        assert!(f.certificates.is_empty());
    }

    #[test]
    fn alerts_plain_text_and_garbage() {
        assert_eq!(
            parse_flight(&record(21, &[2, 40])),
            Flight::Alert {
                level: 2,
                description: 40
            }
        );
        assert_eq!(alert_name(40), "handshake_failure");
        assert_eq!(
            parse_flight(b"454 4.7.0 TLS not available\r\n"),
            Flight::NotTls
        );
        assert!(matches!(
            parse_flight(&record(22, &msg(11, &[0, 0, 0]))),
            Flight::Malformed(_)
        ));
        assert!(matches!(
            parse_flight(&record(23, b"x")),
            Flight::Malformed(_)
        ));
        assert!(matches!(
            parse_flight(&[22, 3, 3, 0xff, 0xff]),
            Flight::Malformed(_)
        ));
        // A Certificate message whose inner length lies.
        let mut hs = server_hello(0x0303, 0xc02f, None);
        hs.extend(msg(11, &[0, 0, 9, 0, 0, 1, 0xaa]));
        assert!(matches!(
            parse_flight(&record(22, &hs)),
            Flight::Malformed(_)
        ));
    }

    #[test]
    fn client_hello_is_well_formed() {
        let ch = client_hello([1; 32]);
        assert_eq!(&ch[..3], &[22, 3, 1]);
        assert_eq!(u16::from_be_bytes([ch[3], ch[4]]) as usize, ch.len() - 5);
        // tlsfront's own ClientHello parser reads it back.
        let crate::wire::clienthello::Peek::Hello(h) = crate::wire::clienthello::peek(&ch) else {
            panic!("not a ClientHello");
        };
        assert_eq!(h.cipher_suites.len(), OFFERED_SUITES.len());
        assert!(h.versions.iter().all(|v| *v <= 0x0303));
    }

    /// Fuzz-style: random mutations, truncations and random bytes never panic,
    /// and a parse of any input terminates.
    #[test]
    fn survives_mutated_and_random_input() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let base = dhe_flight();
        for _ in 0..20_000 {
            let mut v = base.clone();
            for _ in 0..(next() % 8 + 1) {
                let i = (next() as usize) % v.len();
                match next() % 3 {
                    0 => v[i] = next() as u8,
                    1 => v.truncate(i.max(1)),
                    _ => v.insert(i, next() as u8),
                }
            }
            let _ = parse_flight(&v);
        }
        for _ in 0..5_000 {
            let n = (next() % 300) as usize;
            let v: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            let _ = parse_flight(&v);
            let mut t = vec![22, 3, 3];
            t.extend_from_slice(&v);
            let _ = parse_flight(&t);
        }
    }
}

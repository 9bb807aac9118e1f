//! A pure parser for the TLS ClientHello, read before the handshake starts.
//!
//! tlsfront reads the ClientHello itself (then replays it into rustls) for two
//! reasons: to pick the certificate (SNI and signature schemes), and to record
//! *what the client offered* when a handshake fails — the versions, suites and
//! groups that explain "no shared cipher" to an admin. rustls does not expose
//! the offered versions, and cannot describe a hello it refused to parse.

use serde::Serialize;

use crate::limits;

/// What a buffer holding the first bytes of a TLS connection contains so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// The ClientHello is not complete yet.
    NeedMore,
    /// The client sent something that is not a TLS handshake at all.
    NotTls,
    /// An SSL 2.0-style ClientHello (sent only by ancient clients).
    Sslv2,
    /// A TLS handshake record that is not a well-formed ClientHello.
    Malformed,
    /// The ClientHello is still incomplete after the most records allowed.
    TooFragmented,
    Hello(ClientHello),
}

/// The facts of a ClientHello, with code points kept as sent (GREASE removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub legacy_version: u16,
    /// From `supported_versions`, or the legacy version when that is absent.
    pub versions: Vec<u16>,
    pub cipher_suites: Vec<u16>,
    pub groups: Vec<u16>,
    pub signature_schemes: Vec<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
}

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;

/// Parses the records at the start of `buf` (possibly several, since a
/// handshake message may be fragmented), at most `MAX_HELLO_RECORDS`.
pub fn peek(buf: &[u8]) -> Peek {
    HelloReader::new(limits::MAX_HELLO_RECORDS).peek(buf)
}

/// Reads a ClientHello as its bytes arrive. Each call takes in only the
/// records completed since the last one and keeps their handshake bytes, so
/// a hello sent in many small records costs time linear in its size, not a
/// parse of the whole buffer per read.
#[derive(Debug)]
pub struct HelloReader {
    /// Bytes of the buffer taken in so far: whole records.
    taken: usize,
    /// The handshake bytes of those records, joined.
    handshake: Vec<u8>,
    records: usize,
    max_records: usize,
    /// Bytes looked at over all calls: the measure of the parse's cost.
    examined: usize,
}

impl HelloReader {
    /// A reader that gives up ([`Peek::TooFragmented`]) once `max_records`
    /// records have not completed the hello.
    pub fn new(max_records: usize) -> Self {
        HelloReader {
            taken: 0,
            handshake: Vec::new(),
            records: 0,
            max_records,
            examined: 0,
        }
    }

    /// What `buf`, everything read so far, holds. Each call must see the bytes
    /// of the call before (and maybe more); after an answer other than
    /// [`Peek::NeedMore`] the reader is done.
    pub fn peek(&mut self, buf: &[u8]) -> Peek {
        debug_assert!(buf.len() >= self.taken, "the buffer only grows");
        if self.taken == 0 {
            self.examined += buf.len().min(3);
            if buf.is_empty() {
                return Peek::NeedMore;
            }
            if buf[0] & 0x80 != 0 {
                // SSLv2 record header: 2-byte length with the top bit set, then msg type 1.
                return match buf.get(2) {
                    None => Peek::NeedMore,
                    Some(1) => Peek::Sslv2,
                    Some(_) => Peek::NotTls,
                };
            }
            if buf[0] != CONTENT_HANDSHAKE {
                return Peek::NotTls;
            }
        }
        loop {
            let rest = &buf[self.taken..];
            self.examined += rest.len().min(5);
            if rest.len() < 5 {
                return Peek::NeedMore;
            }
            if rest[0] != CONTENT_HANDSHAKE || rest[1] != 3 {
                return if self.records == 0 {
                    Peek::NotTls
                } else {
                    Peek::Malformed
                };
            }
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            if len == 0 || len > 16384 + 2048 {
                return Peek::Malformed;
            }
            if rest.len() < 5 + len {
                return Peek::NeedMore;
            }
            self.examined += len;
            self.handshake.extend_from_slice(&rest[5..5 + len]);
            self.taken += 5 + len;
            self.records += 1;
            let hs = &self.handshake;
            if hs.len() >= 4 {
                if hs[0] != HANDSHAKE_CLIENT_HELLO {
                    return Peek::Malformed;
                }
                let body_len =
                    (usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]);
                if hs.len() >= 4 + body_len {
                    self.examined += body_len;
                    return match parse_body(&hs[4..4 + body_len]) {
                        Some(hello) => Peek::Hello(hello),
                        None => Peek::Malformed,
                    };
                }
            }
            if self.records >= self.max_records {
                return Peek::TooFragmented;
            }
        }
    }

    /// Bytes looked at so far, over all calls: at most 8 header bytes per
    /// call besides each record taken in once and the hello's body once more.
    pub fn examined(&self) -> usize {
        self.examined
    }
}

/// A tiny cursor over big-endian TLS structures; every read is bounds-checked.
/// Shared with the server-flight parser in `serverhello`.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    pub(crate) fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    pub(crate) fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
    pub(crate) fn vec24(&mut self) -> Option<&'a [u8]> {
        let n = self.u24()?;
        self.take(n)
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn u16_list(bytes: &[u8]) -> Option<Vec<u16>> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .filter(|v| !is_grease(*v))
            .collect(),
    )
}

/// RFC 8701 GREASE values (0x0a0a, 0x1a1a, …) carry no meaning.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

fn parse_body(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    let mut hello = ClientHello {
        legacy_version: r.u16()?,
        ..ClientHello::default()
    };
    r.take(32)?; // random
    r.vec8()?; // legacy session id
    hello.cipher_suites = u16_list(r.vec16()?)?;
    r.vec8()?; // compression methods
    if !r.is_empty() {
        let mut exts = Reader(r.vec16()?);
        while !exts.is_empty() {
            let typ = exts.u16()?;
            let data = exts.vec16()?;
            let mut d = Reader(data);
            match typ {
                0 => {
                    let mut list = Reader(d.vec16()?);
                    while !list.is_empty() {
                        let kind = list.u8()?;
                        let name = list.vec16()?;
                        if kind == 0 && hello.sni.is_none() {
                            hello.sni = Some(String::from_utf8_lossy(name).to_ascii_lowercase());
                        }
                    }
                }
                10 => hello.groups = u16_list(d.vec16()?)?,
                13 => hello.signature_schemes = u16_list(d.vec16()?)?,
                16 => {
                    let mut list = Reader(d.vec16()?);
                    while !list.is_empty() {
                        hello
                            .alpn
                            .push(String::from_utf8_lossy(list.vec8()?).into_owned());
                    }
                }
                43 => hello.versions = u16_list(d.vec8()?)?,
                _ => {}
            }
        }
    }
    if hello.versions.is_empty() {
        hello.versions = vec![hello.legacy_version];
    }
    Some(hello)
}

/// Name of a protocol version code point.
pub fn version_name(v: u16) -> String {
    match v {
        0x0200 => "SSLv2".into(),
        0x0300 => "SSLv3".into(),
        0x0301 => "TLSv1.0".into(),
        0x0302 => "TLSv1.1".into(),
        0x0303 => "TLSv1.2".into(),
        0x0304 => "TLSv1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

/// The summary written into a record when a handshake fails.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HelloSummary {
    pub versions: Vec<String>,
    pub cipher_suites: Vec<String>,
    pub groups: Vec<String>,
    pub signature_schemes: Vec<String>,
    pub alpn: Vec<String>,
}

impl ClientHello {
    pub fn summary(&self) -> HelloSummary {
        HelloSummary {
            versions: self.versions.iter().map(|v| version_name(*v)).collect(),
            cipher_suites: self.cipher_suites.iter().map(|v| suite_name(*v)).collect(),
            groups: self.groups.iter().map(|v| group_name(*v)).collect(),
            signature_schemes: self
                .signature_schemes
                .iter()
                .map(|v| scheme_name(*v))
                .collect(),
            alpn: self.alpn.clone(),
        }
    }

    pub fn offers_tls13(&self) -> bool {
        self.versions.contains(&0x0304)
    }
}

/// `0x1234`: the name of a code point nobody named.
fn hex(code: u16) -> String {
    format!("0x{code:04x}")
}

/// The IANA name of a key-exchange group (rustls' table), or `0x....`.
pub fn group_name(code: u16) -> String {
    rustls::NamedGroup::from(code)
        .as_str()
        .map_or_else(|| hex(code), str::to_string)
}

/// The IANA name of a signature scheme (rustls' table), or `0x....`.
pub fn scheme_name(code: u16) -> String {
    rustls::SignatureScheme::from(code)
        .as_str()
        .map_or_else(|| hex(code), str::to_string)
}

/// Legacy suites rustls never implemented but old clients offer: naming them
/// is what turns "no shared cipher" into an explanation.
pub(crate) const LEGACY_SUITES: &[(u16, &str)] = &[
    (0x0004, "TLS_RSA_WITH_RC4_128_MD5"),
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA"),
    (0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA"),
    (0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    (0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA"),
    (0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    (0x003d, "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    (0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0x006b, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"),
    (0x009c, "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    (0x009d, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    (0x009e, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0x009f, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0x00ff, "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"),
    (0x5600, "TLS_FALLBACK_SCSV"),
    (0xc009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    (0xc00a, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    (0xc013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    (0xc014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    (0xc023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    (0xc024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    (0xc027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0xc028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
];

pub fn suite_name(code: u16) -> String {
    match LEGACY_SUITES.iter().find(|(c, _)| *c == code) {
        Some((_, name)) => (*name).to_string(),
        None => rustls::CipherSuite::from(code)
            .as_str()
            .map_or_else(|| hex(code), str::to_string),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a ClientHello record like a real client would.
    pub fn build_hello(
        versions: &[u16],
        suites: &[u16],
        groups: &[u16],
        sigs: &[u16],
        sni: Option<&str>,
    ) -> Vec<u8> {
        fn v16(b: &[u8]) -> Vec<u8> {
            let mut out = (b.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(b);
            out
        }
        fn list16(vals: &[u16]) -> Vec<u8> {
            vals.iter().flat_map(|v| v.to_be_bytes()).collect()
        }
        let mut exts = Vec::new();
        if let Some(name) = sni {
            let mut entry = vec![0u8];
            entry.extend(v16(name.as_bytes()));
            exts.extend(0u16.to_be_bytes());
            exts.extend(v16(&v16(&entry)));
        }
        exts.extend(10u16.to_be_bytes());
        exts.extend(v16(&v16(&list16(groups))));
        exts.extend(13u16.to_be_bytes());
        exts.extend(v16(&v16(&list16(sigs))));
        if versions.len() > 1 || versions.first() == Some(&0x0304) {
            let vs = list16(versions);
            let mut ext = vec![vs.len() as u8];
            ext.extend(vs);
            exts.extend(43u16.to_be_bytes());
            exts.extend(v16(&ext));
        }
        let mut body = 0x0303u16
            .min(*versions.iter().max().unwrap())
            .to_be_bytes()
            .to_vec();
        body.extend([7u8; 32]);
        body.push(0);
        body.extend(v16(&list16(suites)));
        body.extend([1u8, 0]);
        body.extend(v16(&exts));
        let mut hs = vec![1u8, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend(body);
        let mut rec = vec![22u8, 3, 1];
        rec.extend(v16(&hs));
        rec
    }

    #[test]
    fn modern_hello() {
        let rec = build_hello(
            &[0x0a0a, 0x0304, 0x0303],
            &[0x1301, 0xc02b],
            &[0x11ec, 0x001d, 0x0017],
            &[0x0403, 0x0804],
            Some("MX.Example.com"),
        );
        let Peek::Hello(h) = peek(&rec) else {
            panic!("not parsed")
        };
        assert_eq!(h.versions, vec![0x0304, 0x0303]);
        assert_eq!(h.sni.as_deref(), Some("mx.example.com"));
        let s = h.summary();
        assert_eq!(s.versions, vec!["TLSv1.3", "TLSv1.2"]);
        assert_eq!(
            s.cipher_suites,
            vec![
                "TLS13_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
            ]
        );
        assert_eq!(s.groups, vec!["X25519MLKEM768", "X25519", "secp256r1"]);
        assert_eq!(
            s.signature_schemes,
            vec!["ECDSA_NISTP256_SHA256", "RSA_PSS_SHA256"]
        );
    }

    #[test]
    fn old_hello_without_supported_versions() {
        let rec = build_hello(&[0x0301], &[0x002f, 0x0035], &[0x0017], &[0x0401], None);
        let Peek::Hello(h) = peek(&rec) else {
            panic!("not parsed")
        };
        assert_eq!(h.summary().versions, vec!["TLSv1.0"]);
        assert_eq!(
            h.summary().cipher_suites,
            vec![
                "TLS_RSA_WITH_AES_128_CBC_SHA",
                "TLS_RSA_WITH_AES_256_CBC_SHA"
            ]
        );
        assert!(!h.offers_tls13());
    }

    #[test]
    fn every_prefix_needs_more_and_fragments_join() {
        let rec = build_hello(&[0x0304], &[0x1301], &[0x001d], &[0x0403], Some("a.b"));
        for n in 0..rec.len() {
            assert_eq!(peek(&rec[..n]), Peek::NeedMore, "prefix {n}");
        }
        // Split the handshake message over two records.
        let hs = &rec[5..];
        let (a, b) = hs.split_at(10);
        let mut two = vec![22, 3, 1, 0, a.len() as u8];
        two.extend_from_slice(a);
        two.extend_from_slice(&[22, 3, 1, (b.len() >> 8) as u8, b.len() as u8]);
        two.extend_from_slice(b);
        assert_eq!(peek(&two), peek(&rec));
    }

    /// `hs`, a handshake message, in records of at most `size` bytes.
    fn in_records(hs: &[u8], size: usize) -> Vec<u8> {
        hs.chunks(size)
            .flat_map(|piece| {
                let mut rec = vec![22, 3, 1];
                rec.extend((piece.len() as u16).to_be_bytes());
                rec.extend_from_slice(piece);
                rec
            })
            .collect()
    }

    /// A hello of about 16 KiB (suites aplenty), as one handshake message.
    fn big_handshake() -> (Vec<u8>, Peek) {
        let suites: Vec<u16> = (0x0100..0x0100 + 8000).collect();
        let rec = build_hello(&[0x0304], &suites, &[0x001d], &[0x0403], Some("big.test"));
        let whole = peek(&rec);
        assert!(matches!(whole, Peek::Hello(_)));
        (rec[5..].to_vec(), whole)
    }

    #[test]
    fn a_hello_in_one_byte_records_costs_linear_work() {
        let (hs, whole) = big_handshake();
        let records = in_records(&hs, 1);
        // A client sending a byte at a time: one call per byte read.
        let mut reader = HelloReader::new(usize::MAX);
        let mut got = Peek::NeedMore;
        for n in 1..=records.len() {
            got = reader.peek(&records[..n]);
            if got != Peek::NeedMore {
                assert_eq!(n, records.len());
                break;
            }
        }
        assert_eq!(got, whole);
        // Re-parsing the buffer after every read looked at about n²/2 bytes
        // (here ~4·10⁹); taking in each record once looks at each byte a
        // bounded number of times.
        let n = records.len();
        assert!(
            reader.examined() <= 8 * n,
            "{} bytes examined for {n}",
            reader.examined()
        );
        // The same in reads of 1000 bytes.
        let mut reader = HelloReader::new(usize::MAX);
        let mut got = Peek::NeedMore;
        for end in (1000..n).step_by(1000).chain([n]) {
            got = reader.peek(&records[..end]);
        }
        assert_eq!(got, whole);
        assert!(reader.examined() <= 2 * n);
    }

    #[test]
    fn the_record_count_is_capped() {
        let rec = build_hello(&[0x0304], &[0x1301], &[0x001d], &[0x0403], Some("a.b"));
        let hs = &rec[5..];
        let max = limits::MAX_HELLO_RECORDS;
        // Exactly the records allowed: 63 of one byte, then the rest.
        let at_cap = [
            in_records(&hs[..max - 1], 1),
            in_records(&hs[max - 1..], 1000),
        ]
        .concat();
        assert_eq!(at_cap.len(), hs.len() + 5 * max);
        assert_eq!(peek(&at_cap), peek(&rec));
        assert!(matches!(peek(&rec), Peek::Hello(_)));
        // One byte records: refused once the cap is reached, before the rest
        // arrives (and whatever it holds).
        let ones = in_records(hs, 1);
        assert!(hs.len() > max);
        assert_eq!(peek(&ones[..6 * max]), Peek::TooFragmented);
        assert_eq!(peek(&ones[..6 * max - 1]), Peek::NeedMore);
        assert_eq!(peek(&ones), Peek::TooFragmented);
        let (big, _) = big_handshake();
        assert_eq!(peek(&in_records(&big, 1)), Peek::TooFragmented);
    }

    #[test]
    fn incremental_reads_agree_with_one_parse() {
        let rec = build_hello(&[0x0304], &[0x1301], &[0x001d], &[0x0403], Some("a.b"));
        let two = in_records(&rec[5..], 40);
        let mut bad_second = two.clone();
        bad_second[5 + 40] = 23; // the second record is not a handshake record
        for input in [rec.clone(), two, bad_second, b"EHLO x\r\n".to_vec()] {
            let want = peek(&input);
            for step in 1..=input.len() {
                let mut reader = HelloReader::new(limits::MAX_HELLO_RECORDS);
                let mut got = Peek::NeedMore;
                for end in (step..input.len()).step_by(step).chain([input.len()]) {
                    got = reader.peek(&input[..end]);
                    if got != Peek::NeedMore {
                        break;
                    }
                }
                assert_eq!(got, want, "reads of {step}");
            }
        }
    }

    #[test]
    fn not_tls_and_garbage() {
        assert_eq!(peek(b"EHLO x\r\n"), Peek::NotTls);
        assert_eq!(peek(b"GET / HTTP/1.1\r\n"), Peek::NotTls);
        assert_eq!(peek(&[0x80, 0x2e, 0x01, 0x03, 0x01]), Peek::Sslv2);
        assert_eq!(peek(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Peek::Malformed);
        assert_eq!(peek(&[22, 3, 1, 0, 5, 1, 0, 0, 1, 0]), Peek::Malformed);
        assert_eq!(peek(&[22, 3, 1, 0, 0]), Peek::Malformed);
    }

    #[test]
    fn grease_is_dropped() {
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x0a1a) && !is_grease(0x1301));
    }

    #[test]
    fn mutated_hellos_never_panic() {
        let good = build_hello(
            &[0x0304, 0x0303],
            &[0x1301, 0xc02b],
            &[0x001d],
            &[0x0403],
            Some("mx.test"),
        );
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut m = good.clone();
            for _ in 0..(next() % 4 + 1) {
                let pos = (next() as usize) % m.len();
                m[pos] = next() as u8;
            }
            let cut = (next() as usize) % (m.len() + 1);
            let _ = peek(&m[..cut]);
            let _ = peek(&m);
        }
    }
}

//! The HAProxy PROXY protocol (v1 text, v2 binary): pure encoding and decoding.
//!
//! Outbound, it tells the backend who the real client is (the legacy MTA
//! otherwise sees every client as tlsfront). Inbound, it lets a trusted L4
//! balancer in front of tlsfront pass the real client address on.

use std::net::{IpAddr, SocketAddr};

const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// A v1 header is at most 107 bytes (spec §2.1).
pub const V1_MAX: usize = 107;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The header announcing a connection from `source` to `destination`.
///
/// Always a TCP4 or TCP6 header, never UNKNOWN: when the two ends differ in
/// family (an IPv4 client reaching an IPv6 address, say) the IPv4 one is
/// written IPv4-mapped, so the backend always learns the real client.
pub fn encode(version: Version, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(canonical(source), canonical(destination));
    match version {
        Version::V1 => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        Version::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            out.push(0x21); // version 2, PROXY command
            match (src, dst) {
                (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                    out.push(0x11); // TCP over IPv4
                    out.extend(12u16.to_be_bytes());
                    out.extend(s.ip().octets());
                    out.extend(d.ip().octets());
                }
                (s, d) => {
                    out.push(0x21); // TCP over IPv6
                    out.extend(36u16.to_be_bytes());
                    out.extend(v6(s.ip()).octets());
                    out.extend(v6(d.ip()).octets());
                }
            }
            out.extend(src.port().to_be_bytes());
            out.extend(dst.port().to_be_bytes());
            out
        }
    }
}

/// Both IPv4, or both IPv6 (an IPv4 end mapped when the other is IPv6).
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    if src.is_ipv4() == dst.is_ipv4() {
        return (src, dst);
    }
    let map = |a: SocketAddr| SocketAddr::new(IpAddr::V6(v6(a.ip())), a.port());
    (map(src), map(dst))
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// IPv4-mapped IPv6 addresses become IPv4, so both ends share a family more often.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// The result of looking for a header at the start of a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    NeedMore,
    /// Not a PROXY header, or a broken one.
    Invalid(&'static str),
    /// A header of `consumed` bytes; `source` is `None` for UNKNOWN/LOCAL.
    Header {
        consumed: usize,
        source: Option<SocketAddr>,
    },
}

pub fn decode(buf: &[u8]) -> Decoded {
    if buf.is_empty() {
        return Decoded::NeedMore;
    }
    if buf[0] == V2_SIGNATURE[0] {
        return decode_v2(buf);
    }
    decode_v1(buf)
}

fn decode_v1(buf: &[u8]) -> Decoded {
    let prefix = b"PROXY ";
    let n = buf.len().min(prefix.len());
    if buf[..n] != prefix[..n] {
        return Decoded::Invalid("not a PROXY header");
    }
    let Some(lf) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Decoded::Invalid("v1 header too long")
        } else {
            Decoded::NeedMore
        };
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Decoded::Invalid("v1 header not ended by CRLF");
    }
    let Ok(line) = std::str::from_utf8(&buf[..lf - 1]) else {
        return Decoded::Invalid("v1 header not ASCII");
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let consumed = lf + 1;
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Decoded::Header {
            consumed,
            source: None,
        },
        ["PROXY", proto @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let (Ok(ip), Ok(port)) = (src.parse::<IpAddr>(), sport.parse::<u16>()) else {
                return Decoded::Invalid("v1 header with a bad address or port");
            };
            if ip.is_ipv4() != (*proto == "TCP4") {
                return Decoded::Invalid("v1 address does not match its family");
            }
            Decoded::Header {
                consumed,
                source: Some(SocketAddr::new(ip, port)),
            }
        }
        _ => Decoded::Invalid("malformed v1 header"),
    }
}

fn decode_v2(buf: &[u8]) -> Decoded {
    let n = buf.len().min(12);
    if buf[..n] != V2_SIGNATURE[..n] {
        return Decoded::Invalid("not a PROXY header");
    }
    if buf.len() < 16 {
        return Decoded::NeedMore;
    }
    let (ver_cmd, family) = (buf[12], buf[13]);
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Decoded::Invalid("unsupported PROXY version");
    }
    if buf.len() < 16 + len {
        return Decoded::NeedMore;
    }
    let body = &buf[16..16 + len];
    let consumed = 16 + len;
    match (ver_cmd & 0x0f, family) {
        // LOCAL: the balancer's own health check; no client address.
        (0x0, _) => Decoded::Header {
            consumed,
            source: None,
        },
        (0x1, 0x11) if body.len() >= 12 => {
            let ip = IpAddr::from([body[0], body[1], body[2], body[3]]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Decoded::Header {
                consumed,
                source: Some(SocketAddr::new(ip, port)),
            }
        }
        (0x1, 0x21) if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Decoded::Header {
                consumed,
                source: Some(SocketAddr::new(IpAddr::from(octets), port)),
            }
        }
        (0x1, 0x00) => Decoded::Header {
            consumed,
            source: None,
        },
        _ => Decoded::Invalid("unsupported PROXY v2 command or family"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_round_trip() {
        let h = encode(Version::V1, sa("192.0.2.1:4000"), sa("198.51.100.2:25"));
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.51.100.2 4000 25\r\n");
        assert_eq!(
            decode(&h),
            Decoded::Header {
                consumed: h.len(),
                source: Some(sa("192.0.2.1:4000"))
            }
        );
        let h6 = encode(
            Version::V1,
            sa("[2001:db8::1]:4000"),
            sa("[2001:db8::2]:25"),
        );
        assert_eq!(h6, b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 25\r\n");
        let mixed = encode(
            Version::V1,
            sa("[::ffff:192.0.2.1]:1"),
            sa("198.51.100.2:25"),
        );
        assert!(mixed.starts_with(b"PROXY TCP4 192.0.2.1 "));
        // Mixed families (an IPv4 client on a `[::]` listener, a v6 client
        // behind a v4 balancer): never UNKNOWN, the v4 end is mapped.
        assert_eq!(
            encode(Version::V1, sa("[2001:db8::1]:1"), sa("192.0.2.2:25")),
            b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.2 1 25\r\n"
        );
        for version in [Version::V1, Version::V2] {
            for (src, dst) in [
                ("192.0.2.1:4000", "[2001:db8::2]:25"),
                ("[2001:db8::1]:4000", "192.0.2.2:25"),
            ] {
                let h = encode(version, sa(src), sa(dst));
                let Decoded::Header {
                    source: Some(got), ..
                } = decode(&h)
                else {
                    panic!("{version:?} {src} -> {dst}: no source in {h:?}");
                };
                assert_eq!(canonical(got), canonical(sa(src)), "{version:?}");
            }
        }
    }

    #[test]
    fn v2_round_trip() {
        for (src, dst) in [
            ("192.0.2.1:4000", "198.51.100.2:25"),
            ("[2001:db8::1]:4000", "[2001:db8::2]:25"),
        ] {
            let mut h = encode(Version::V2, sa(src), sa(dst));
            let len = h.len();
            h.extend_from_slice(b"EHLO x\r\n");
            assert_eq!(
                decode(&h),
                Decoded::Header {
                    consumed: len,
                    source: Some(sa(src))
                }
            );
            for cut in 0..len {
                assert!(
                    matches!(decode(&h[..cut]), Decoded::NeedMore),
                    "prefix {cut}"
                );
            }
        }
    }

    #[test]
    fn invalid_headers() {
        assert!(matches!(decode(b"EHLO x\r\n"), Decoded::Invalid(_)));
        assert!(matches!(
            decode(b"PROXY TCP4 1.2.3.4\r\n"),
            Decoded::Invalid(_)
        ));
        assert!(matches!(
            decode(b"PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n"),
            Decoded::Invalid(_)
        ));
        assert!(matches!(
            decode(b"PROXY TCP4 1.2.3.4 1.2.3.4 99999 2\r\n"),
            Decoded::Invalid(_)
        ));
        assert!(matches!(
            decode(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n"),
            Decoded::Invalid(_)
        ));
        assert!(matches!(decode(&[b'P'; 200]), Decoded::Invalid(_)));
        assert_eq!(decode(b"PROX"), Decoded::NeedMore);
        assert_eq!(decode(b"PROXY TCP4 1.2.3.4 "), Decoded::NeedMore);
        let mut v1_too_long = b"PROXY TCP4 ".to_vec();
        v1_too_long.extend([b'1'; 120]);
        assert!(matches!(decode(&v1_too_long), Decoded::Invalid(_)));
    }
}

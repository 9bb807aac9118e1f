//! Parsers for the values a config key holds: durations, networks, host
//! names, certificate fingerprints, systemd credential paths. Pure functions of the text; [`super::validate`] turns a `None` into
//! an error naming the key.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::limits;

/// Parses "192.0.2.1" (a single address) or "192.0.2.0/24", "2001:db8::/64".
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = s.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// Whether `ip` is inside one of `nets`.
pub fn in_networks(ip: IpAddr, nets: &[(IpAddr, u8)]) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|(net, len)| match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if *len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(*len))
            };
            u32::from(a) & mask == u32::from(*n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if *len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(*len))
            };
            u128::from(a) & mask == u128::from(*n) & mask
        }
        _ => false,
    })
}

/// Parses "500ms", "30s", "5m", "1h", "7d", or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        "d" => Some(Duration::from_secs(n.checked_mul(86_400)?)),
        _ => None,
    }
}
/// Parses "sha256:AB:CD:..." or plain hex (colons optional).
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: String = s
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    // ASCII only: the loop below slices by bytes.
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Letters, digits and inner hyphens in dot-separated labels (RFC 1123 §2.1),
/// within the lengths of DNS.
pub(super) fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::MAX_HOSTNAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= limits::MAX_HOSTNAME_LABEL
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether a connection to `addr` would reach `listener`: the same port
/// (not 0, which tests use for "any"), and the same address, or a wildcard
/// listener of the same family and an address of this host (`is_local`).
/// `0.0.0.0:25` serves `127.0.0.1:25`: a backend there is tlsfront itself.
pub fn reaches(listener: SocketAddr, addr: SocketAddr, is_local: impl Fn(IpAddr) -> bool) -> bool {
    listener.port() != 0
        && listener.port() == addr.port()
        && (listener.ip() == addr.ip()
            || (listener.ip().is_unspecified()
                && listener.is_ipv4() == addr.is_ipv4()
                && is_local(addr.ip())))
}

/// How a certificate or key path names a systemd credential: `%d/NAME` is
/// `$CREDENTIALS_DIRECTORY/NAME`, as `%d` is in a unit file
/// (`LoadCredential=NAME:/etc/letsencrypt/live/mx.example.com/privkey.pem`).
pub const CREDENTIAL_PREFIX: &str = "%d/";

/// The credential NAME of a `%d/NAME` path, whatever directory it is in.
pub fn credential_name(path: &Path) -> Option<&str> {
    path.to_str()?.strip_prefix(CREDENTIAL_PREFIX)
}

/// Why a `%d/NAME` path cannot be read here: the words `run` and `check` share.
pub fn credential_not_loaded(name: &str) -> String {
    format!(
        "names the systemd credential {name:?}, but $CREDENTIALS_DIRECTORY is not set: \
         tlsfront was not started by systemd with LoadCredential={name}:/path/to/file \
         (`systemctl start tlsfront` runs `check` that way in ExecStartPre)"
    )
}

/// `%d/NAME` as `DIR/NAME` when systemd passed credentials in `dir`; any
/// other path as written. Without `dir` a credential path stays `%d/NAME`
/// (nothing by that name exists), so `check` by hand can say it is a
/// credential and `run` can refuse it in those words. A NAME that is not a
/// plain file name is an error, whatever `dir`.
pub fn resolve_credential(path: &Path, dir: Option<&Path>) -> Result<PathBuf, String> {
    let Some(name) = credential_name(path) else {
        return Ok(path.to_path_buf());
    };
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(format!(
            "{:?}: a credential is %d/NAME with NAME a LoadCredential= name (no \"/\")",
            path.display().to_string()
        ));
    }
    Ok(match dir {
        Some(dir) => dir.join(name),
        None => path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let nets: Vec<_> = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/64"]
            .iter()
            .map(|n| parse_cidr(n).unwrap())
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_networks(ip("10.1.2.3"), &nets));
        assert!(in_networks(ip("::ffff:10.1.2.3"), &nets));
        assert!(in_networks(ip("192.0.2.7"), &nets));
        assert!(!in_networks(ip("192.0.2.8"), &nets));
        assert!(in_networks(ip("2001:db8::abcd"), &nets));
        assert!(!in_networks(ip("2001:db8:1::1"), &nets));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("nonsense").is_none());
        assert!(in_networks(
            ip("8.8.8.8"),
            &[parse_cidr("0.0.0.0/0").unwrap()]
        ));
    }

    #[test]
    fn fingerprints() {
        let hex = "AB".repeat(32);
        assert_eq!(parse_fingerprint(&hex), Some([0xab; 32]));
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(
            parse_fingerprint(&format!("sha256:{colons}")),
            Some([0xab; 32])
        );
        assert_eq!(parse_fingerprint("abcd"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
        // 64 bytes, but not 64 ASCII characters: refused, never a panic.
        assert_eq!(parse_fingerprint(&format!("{}é", "a".repeat(62))), None);
    }

    #[test]
    fn a_wildcard_listener_is_reached_at_every_local_address() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let local = |ip: IpAddr| ip.is_loopback() || ip == "192.0.2.25".parse::<IpAddr>().unwrap();
        assert!(reaches(a("0.0.0.0:25"), a("127.0.0.1:25"), local));
        assert!(reaches(a("0.0.0.0:25"), a("192.0.2.25:25"), local));
        assert!(reaches(a("127.0.0.1:25"), a("127.0.0.1:25"), local));
        assert!(reaches(a("[::]:25"), a("[::1]:25"), local));
        // Another port, another host, another family (IPv6 sockets are v6-only).
        assert!(!reaches(a("0.0.0.0:25"), a("127.0.0.1:10025"), local));
        assert!(!reaches(a("0.0.0.0:25"), a("192.0.2.26:25"), local));
        assert!(!reaches(a("[::]:25"), a("127.0.0.1:25"), local));
        assert!(!reaches(a("127.0.0.1:25"), a("127.0.0.2:25"), local));
        assert!(!reaches(a("0.0.0.0:0"), a("127.0.0.1:0"), local));
    }

    #[test]
    fn credential_paths() {
        let dir = Path::new("/run/credentials/tlsfront.service");
        let r = |p: &str, d| resolve_credential(Path::new(p), d);
        assert_eq!(r("%d/mx.key", Some(dir)).unwrap(), dir.join("mx.key"));
        // Not started by systemd: left as written, and still known as one.
        assert_eq!(r("%d/mx.key", None).unwrap(), Path::new("%d/mx.key"));
        assert_eq!(credential_name(Path::new("%d/mx.key")), Some("mx.key"));
        assert_eq!(credential_name(&dir.join("mx.key")), None);
        // Other paths, relative ones included, are never touched.
        for p in ["/etc/tlsfront/mx.key", "mx.key", "d/mx.key", "%dmx.key"] {
            assert_eq!(r(p, Some(dir)).unwrap(), Path::new(p));
        }
        for bad in ["%d/", "%d/..", "%d/a/b", "%d/."] {
            assert!(
                r(bad, Some(dir)).unwrap_err().contains("LoadCredential"),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5 days"), None);
    }
}

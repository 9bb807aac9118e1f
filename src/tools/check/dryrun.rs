//! What `run` would do to the system, tried without serving: bind each
//! listener for a moment (as `run` binds it), and open the record file (as
//! `run` opens it, never truncated; a file the check created is removed
//! again). A port already taken is explained by who holds it, found the way
//! `ss -ltnp` finds it: the listening socket's inode in /proc/net/tcp{,6},
//! then the process with that inode among its file descriptors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::proxy::records;
use crate::proxy::server::bind_std;
use crate::tools::check::findings::{About, Finding, Section};

/// One listening TCP socket of /proc/net/tcp or tcp6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    pub addr: SocketAddr,
    pub inode: u64,
}

/// The kernel's hex address: 32-bit words as the host stores them.
fn hex_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The listening sockets of a /proc/net/tcp or tcp6 table.
pub fn parse_proc_net_tcp(table: &str) -> Vec<Listening> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() < 10 || f[3] != "0A" {
                return None;
            }
            let (ip, port) = f[1].split_once(':')?;
            Some(Listening {
                addr: SocketAddr::new(hex_ip(ip)?, u16::from_str_radix(port, 16).ok()?),
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// Whether a socket listening on `held` keeps `wanted` from being bound:
/// the same port, and the same address or a wildcard on either side.
fn clashes(held: SocketAddr, wanted: SocketAddr) -> bool {
    held.port() == wanted.port()
        && held.is_ipv4() == wanted.is_ipv4()
        && (held.ip() == wanted.ip() || held.ip().is_unspecified() || wanted.ip().is_unspecified())
}

/// Who holds a port: a process (PID and command), if this user may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
}

/// The process listening where `wanted` would bind, by the socket's inode
/// among the processes' file descriptors (only those this user may read).
pub fn holder(wanted: SocketAddr) -> Option<Holder> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| parse_proc_net_tcp(&t))
        .filter(|l| clashes(l.addr, wanted))
        .map(|l| l.inode)
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted_links: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if wanted_links.iter().any(|w| link.as_os_str() == w.as_str()) {
                let command = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default();
                return Some(Holder { pid, command });
            }
        }
    }
    None
}

/// Binds `addr` as `run` would and lets it go; says who holds it if taken.
/// `what` names it ("listener", "metrics endpoint").
pub fn try_bind(about: &About, what: &str, addr: SocketAddr) -> Finding {
    let err = match bind_std(addr) {
        Ok(l) => {
            drop(l);
            return about.ok("listener_bind", format!("{what} {addr}: can listen"));
        }
        Err(e) => e,
    };
    if err.kind() != std::io::ErrorKind::AddrInUse {
        return about.error(
            "listener_unavailable",
            format!("{what} {addr}: cannot listen: {err}; `run` would fail the same way"),
        );
    }
    match holder(addr) {
        // socket activation: tlsfront.socket holds it and passes it to run.
        Some(h) if h.pid == 1 => about.ok(
            "listener_socket_activated",
            format!(
                "{what} {addr}: held by systemd (PID 1), socket activation: `run` takes it \
                 from there (each ListenStream= must be a listener)"
            ),
        ),
        Some(h) if h.command == "tlsfront" => about.ok(
            "listener_held_by_tlsfront",
            format!(
                "{what} {addr}: held by tlsfront (PID {}), running now: a restart hands it over",
                h.pid
            ),
        ),
        Some(h) => about.error(
            "listener_busy",
            format!(
                "{what} {addr}: already in use by PID {} ({}): `run` would fail with \"Address \
                 already in use\"; move that service off the port first (for the legacy MTA: \
                 README, Deploy in front of Sendmail)",
                h.pid, h.command
            ),
        ),
        None => about.warning(
            "listener_busy_unknown",
            format!(
                "{what} {addr}: already in use by a process this user cannot see (systemd's \
                 socket when tlsfront.socket holds it; otherwise `run` would fail: `ss -ltnp` \
                 as root names it)"
            ),
        ),
    }
}

/// Opens the record file as `run` does (append, 0640, no symbolic link,
/// regular files only); a file that was not there is removed again, so
/// `check` as root leaves nothing the service could not open.
pub fn try_records(path: &Path) -> Finding {
    let about = About::new(Section::Config, format!("record file {}", path.display()));
    let existed = std::fs::symlink_metadata(path).is_ok();
    match records::open_record_file(path) {
        Ok(file) => {
            drop(file);
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            about.ok(
                "records_writable",
                if existed {
                    "opens for appending, as `run` opens it"
                } else {
                    "can be created, as `run` creates it (created and removed again)"
                },
            )
        }
        Err(e) => about.error("records_unwritable", format!("{e}: `run` would not start")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines_are_read() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 00000000:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1533 1 0 100 0 0 10 0\n\
            1: 0100007F:9375 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1546829 1 0 100 0 0 10 0\n\
            2: 0100007F:9375 0100007F:D0A2 01 00000000:00000000 00:00000000 00000000     0        0 1546830 1 0 100 0 0 10 0\n";
        let l = parse_proc_net_tcp(v4);
        assert_eq!(
            l,
            vec![
                Listening {
                    addr: "0.0.0.0:25".parse().unwrap(),
                    inode: 1533
                },
                Listening {
                    addr: "127.0.0.1:37749".parse().unwrap(),
                    inode: 1546829
                },
            ]
        );
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 00000000000000000000000001000000:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0 100 0 0 10 0\n";
        assert_eq!(
            parse_proc_net_tcp(v6)[0].addr,
            "[::1]:25".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn wildcards_clash_with_every_address_of_their_family() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(clashes(a("0.0.0.0:25"), a("127.0.0.1:25")));
        assert!(clashes(a("127.0.0.1:25"), a("0.0.0.0:25")));
        assert!(clashes(a("[::]:25"), a("[::1]:25")));
        assert!(!clashes(a("127.0.0.1:25"), a("127.0.0.2:25")));
        assert!(!clashes(a("0.0.0.0:25"), a("0.0.0.0:587")));
        assert!(!clashes(a("[::]:25"), a("0.0.0.0:25")));
    }

    /// A port this test holds is found, and named with this process.
    #[test]
    fn a_busy_port_names_its_holder() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let h = holder(addr).expect("this process is found");
        assert_eq!(h.pid, std::process::id());
        let about = About::new(Section::Config, "listeners");
        let f = try_bind(&about, "listener", addr);
        assert_eq!(f.code, "listener_busy", "{}", f.message);
        assert!(f.message.contains(&format!("PID {}", std::process::id())));
        drop(held);
        assert_eq!(try_bind(&about, "listener", addr).code, "listener_bind");
    }
}

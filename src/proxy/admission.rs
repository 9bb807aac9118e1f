//! Connection admission: the global cap and the per-client cap.
//!
//! Counting happens at accept time, before a session task exists, so a flood
//! from one address cannot crowd out everyone else. IPv6 clients are grouped
//! per /64, since one host usually owns a whole /64 and could otherwise dodge
//! the per-client cap by changing addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::outcome::CloseReason;

#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_client: usize,
    state: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// A place in the counts, given back when dropped (when the session ends).
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self
            .admission
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_client.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_client.remove(&self.key);
            }
        }
    }
}

/// The address a client is counted under: IPv4 as is (IPv4-mapped IPv6 too),
/// IPv6 by its /64 prefix.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

impl Admission {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max_total,
            max_per_client,
            state: Mutex::new(Counts::default()),
        })
    }

    /// Admits a new connection from `ip`, or says which limit it hit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, CloseReason> {
        let key = client_key(ip);
        let mut counts = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.max_total {
            return Err(CloseReason::ConnectionLimit);
        }
        let n = counts.per_client.entry(key).or_insert(0);
        if *n >= self.max_per_client {
            return Err(CloseReason::ClientConnectionLimit);
        }
        *n += 1;
        counts.total += 1;
        Ok(Ticket {
            admission: self.clone(),
            key,
        })
    }

    /// Sessions currently admitted.
    pub fn active(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_is_grouped_per_64() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(client_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn caps_and_release() {
        let a = Admission::new(3, 2);
        let t1 = a.admit(ip("2001:db8::1")).unwrap();
        let _t2 = a.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(
            a.admit(ip("2001:db8::3")).unwrap_err(),
            CloseReason::ClientConnectionLimit
        );
        let _t3 = a.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            a.admit(ip("192.0.2.2")).unwrap_err(),
            CloseReason::ConnectionLimit
        );
        drop(t1);
        assert_eq!(a.active(), 2);
        let _t4 = a.admit(ip("2001:db8::ffff")).unwrap();
        assert_eq!(a.active(), 3);
    }
}

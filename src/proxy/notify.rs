//! systemd's notify protocol: READY, RELOADING, STOPPING, STATUS and WATCHDOG
//! datagrams to `$NOTIFY_SOCKET`. Without that variable every call is a no-op,
//! so the same binary runs under systemd and by hand.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) => Notifier::to_socket(&path.to_string_lossy()),
            None => Notifier::disabled(),
        }
    }

    /// Notifies the socket at `path` (`@name`: abstract); a path that cannot
    /// be addressed gives a notifier that does nothing, as systemd's own
    /// clients do.
    pub fn to_socket(path: &str) -> Notifier {
        let target = (|| {
            let addr = match path.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name.as_bytes()).ok()?
                }
                None => SocketAddr::from_pathname(path).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        })();
        Notifier { target }
    }

    /// A notifier that sends nothing (not under systemd).
    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one state string, e.g. "READY=1\nSTATUS=serving".
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// The watchdog interval systemd expects pings within, if it set one for us.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_string_lossy() != std::process::id().to_string()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

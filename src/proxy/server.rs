//! Listeners: bind every configured address, accept connections and run a
//! session for each, and stop cleanly on shutdown.
//!
//! Accepting and handshaking are separate: a connection's TLS handshake runs
//! in its own task, so a slow client never holds up the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::{ListenerSpec, Settings, in_networks};
use crate::limits;
use crate::outcome::{CloseReason, Mode, Origin};
use crate::proxy::admission::Admission;
use crate::proxy::backend::Backend;
use crate::proxy::backend::tls::ClientConfigError;
use crate::proxy::records::RecordSink;
use crate::proxy::session::{self, Peer, Prelude, Shared};
use crate::proxy::tls::{TlsError, TlsFront};
use crate::wire::proxyproto;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("backend TLS: {0}")]
    BackendTls(#[from] ClientConfigError),
    #[error("socket activation: {0}")]
    Activation(String),
}

/// A bound, ready-to-run tlsfront.
pub struct Server {
    pub shared: Arc<Shared>,
    listeners: Vec<(TcpListener, ListenerSpec)>,
    /// The Prometheus endpoint, when `[metrics] listen` is set.
    metrics_listener: Option<TcpListener>,
}

impl Server {
    /// Loads certificates and binds every listener; nothing is accepted yet.
    pub async fn bind(settings: Settings, records: RecordSink) -> Result<Server, StartError> {
        let tls = TlsFront::build(&settings)?;
        match &tls {
            Some(front) if front.self_signed => tracing::warn!(
                hostname = %settings.hostname,
                "NO CERTIFICATE CONFIGURED: serving a self-signed certificate generated at start-up. \
                 Senders that verify certificates will refuse it; configure [[tls.certificate]] for production."
            ),
            Some(front) => {
                for e in front.entries() {
                    tracing::info!(source = %e.source, subject = %e.subject, key = %e.key_type, names = ?e.names, "certificate loaded");
                }
            }
            None => tracing::warn!(
                "no certificate and generate_self_signed = false: STARTTLS is not offered"
            ),
        }
        let mut inherited = inherited_listeners().map_err(StartError::Activation)?;
        let mut listeners = Vec::new();
        for spec in &settings.listeners {
            // A socket systemd passed for this address, else our own.
            let passed = inherited
                .iter()
                .position(|l| l.local_addr().ok() == Some(spec.addr))
                .map(|i| inherited.remove(i));
            let listener = match passed {
                Some(std_listener) => {
                    tracing::info!(address = %spec.addr, "using the socket passed by systemd");
                    std_listener
                        .set_nonblocking(true)
                        .and_then(|()| TcpListener::from_std(std_listener))
                        .map_err(|source| StartError::Bind {
                            addr: spec.addr,
                            source,
                        })?
                }
                None => bind_one(spec.addr).map_err(|source| StartError::Bind {
                    addr: spec.addr,
                    source,
                })?,
            };
            tracing::info!(address = %listener.local_addr().unwrap_or(spec.addr), mode = spec.mode.as_str(), "listening");
            listeners.push((listener, *spec));
        }
        if let Some(extra) = inherited.first() {
            let addr = extra
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            return Err(StartError::Activation(format!(
                "systemd passed a socket for {addr}, which is not a configured listener \
                 (the [[listener]] addresses must match the .socket unit's ListenStream=)"
            )));
        }
        let metrics_listener = match settings.metrics {
            Some(addr) => {
                let l = bind_one(addr).map_err(|source| StartError::Bind { addr, source })?;
                tracing::info!(address = %l.local_addr().unwrap_or(addr), "metrics endpoint listening");
                Some(l)
            }
            None => None,
        };
        let backend = Backend::new(settings.backend.clone())?;
        Ok(Server {
            shared: Shared::new(settings, tls.map(Arc::new), backend, records),
            listeners,
            metrics_listener,
        })
    }

    /// The addresses actually bound (useful with port 0 in tests).
    pub fn local_addrs(&self) -> Vec<(std::net::SocketAddr, crate::outcome::Mode)> {
        self.listeners
            .iter()
            .map(|(l, s)| (l.local_addr().unwrap_or(s.addr), s.mode))
            .collect()
    }

    /// The metrics endpoint's bound address, if metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shared.shutdown` is cancelled, then gives sessions in
    /// flight the configured grace time to finish.
    pub async fn run(self) {
        let shared = self.shared;
        let tracker = TaskTracker::new();
        let admission = shared.admission.clone();
        let refusals = Arc::new(Semaphore::new(limits::MAX_REFUSALS_IN_FLIGHT));

        // Learn the backend's extensions now and keep them fresh.
        let probe_shared = shared.clone();
        let prober = tokio::spawn(async move {
            let interval = probe_shared.settings.backend.probe_interval;
            let mut first = true;
            loop {
                match probe_shared
                    .backend
                    .probe(&probe_shared.settings.hostname)
                    .await
                {
                    Ok(Some(kw)) if first => {
                        tracing::info!(backend = %probe_shared.backend.addr(), keywords = ?kw, "backend reachable")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        backend = %probe_shared.backend.addr(),
                        error = %crate::escape::log(&e),
                        "backend probe failed; offering {} until it answers",
                        if probe_shared.backend.capabilities().learned { "its last known extensions" } else { "a conservative extension set" }
                    ),
                }
                first = false;
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = probe_shared.shutdown.cancelled() => return,
                }
            }
        });

        let metrics = match (self.metrics_listener, &shared.metrics) {
            (Some(listener), Some(m)) => Some(tokio::spawn(crate::proxy::metrics::serve(
                listener,
                m.clone(),
                admission.clone(),
                shared.backend.clone(),
            ))),
            _ => None,
        };

        let mut accepters = Vec::new();
        for (listener, spec) in self.listeners {
            let shared = shared.clone();
            let tracker = tracker.clone();
            accepters.push(tokio::spawn(accept_loop(
                listener,
                spec,
                shared,
                tracker,
                admission.clone(),
                refusals.clone(),
            )));
        }
        shared.shutdown.cancelled().await;
        for a in &accepters {
            a.abort();
        }
        tracker.close();
        let grace = shared.settings.shutdown_grace;
        tracing::info!(active = tracker.len(), grace = ?grace, "shutting down: no new connections");
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                active = tracker.len(),
                "grace time over: ending remaining sessions"
            );
            // Sessions waiting for a command say 421 now; a DATA transfer still
            // running is cut when the process ends (the backend then discards it).
            shared.drain_over.cancel();
            let _ = tokio::time::timeout(limits::REFUSAL_WRITE_TIMEOUT, tracker.wait()).await;
        }
        shared.backend.quit_idle().await;
        prober.abort();
        if let Some(m) = metrics {
            m.abort();
        }
    }
}

/// Listening sockets passed by systemd socket activation (`LISTEN_FDS`, for
/// this process per `LISTEN_PID`), starting at file descriptor 3. Each must be
/// a TCP socket on which `listen()` was called: anything else (a file, a UDP
/// socket, an accepted connection) refuses the start, never serves.
fn inherited_listeners() -> Result<Vec<std::net::TcpListener>, String> {
    use std::os::fd::AsRawFd;
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us {
        return Ok(Vec::new());
    }
    // listenfd checks SO_TYPE and the address family, sets close-on-exec and
    // clears LISTEN_FDS/LISTEN_PID, as sd_listen_fds(1) does (this runs at
    // start-up, while no other thread is busy reading the environment).
    let mut fds = listenfd::ListenFd::from_env();
    let count = fds.len();
    let mut out = Vec::new();
    for i in 0..count {
        let refuse = |why: String| {
            format!(
                "passed socket {} of {count} (LISTEN_FDS) is not a listening TCP socket: {why}",
                i + 1
            )
        };
        let listener = match fds.take_tcp_listener(i) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => return Err(refuse(e.to_string())),
        };
        // A connected or merely bound TCP socket passes the checks above.
        let fd = listener.as_raw_fd();
        match socket2::SockRef::from(&listener).is_listener() {
            Ok(true) => out.push(listener),
            Ok(false) => {
                return Err(refuse(format!(
                    "fd {fd} is a TCP socket that does not listen (a connection, or bound without listen())"
                )));
            }
            Err(e) => return Err(refuse(format!("fd {fd}: {e}"))),
        }
    }
    Ok(out)
}

/// Binds a listening socket as `run` does (and `check` tries): address
/// reuse on, so a restart does not wait for TIME_WAIT; an IPv6 socket is
/// IPv6-only (`IPV6_V6ONLY`, as nginx does), so `[::]:25` and `0.0.0.0:25`
/// bind side by side whatever `net.ipv6.bindv6only` says. IPv4 clients
/// come in through an IPv4 listener, never as mapped addresses.
pub fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(limits::LISTEN_BACKLOG as i32)?;
    Ok(socket.into())
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr)?)
}

async fn accept_loop(
    listener: TcpListener,
    spec: ListenerSpec,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    admission: Arc<Admission>,
    refusals: Arc<Semaphore>,
) {
    // Records name the address actually bound (port 0 resolves here).
    let spec = ListenerSpec {
        addr: listener.local_addr().unwrap_or(spec.addr),
        ..spec
    };
    let (first_backoff, max_backoff) = limits::ACCEPT_BACKOFF;
    let mut backoff = first_backoff;
    loop {
        // One connection per turn of the scheduler: every session with work
        // ready runs before the next accept. Idle, that is at once; past
        // saturation, new connections wait in the listen queue (in the
        // kernel, costing nothing) instead of each taking a share of the CPU
        // that sessions under way need to finish. Accepting all that is
        // queued (as before) let a flood of handshakes starve them.
        tokio::task::yield_now().await;
        shared.handshake_turns.room().await;
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!(listener = %spec.addr, error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
                continue;
            }
        };
        backoff = first_backoff;
        let _ = stream.set_nodelay(true);
        if spec.proxy_protocol && in_networks(peer.ip(), &shared.settings.trusted_proxies) {
            // A trusted balancer: the real client is in the PROXY header.
            let (shared, admission, refusals, tracker2) = (
                shared.clone(),
                admission.clone(),
                refusals.clone(),
                tracker.clone(),
            );
            tracker.spawn(async move {
                let mut stream = stream;
                match tokio::time::timeout(limits::PROXY_HEADER_TIMEOUT, read_proxy_header(&mut stream)).await {
                    Ok(Ok(client)) => {
                        // No client named: the balancer's own health check.
                        let client = match client {
                            Some(addr) => Peer { addr, origin: Origin::Proxied },
                            None => Peer { addr: peer, origin: Origin::HealthCheck },
                        };
                        dispatch(shared, stream, spec, client, &admission, &refusals, &tracker2);
                    }
                    Ok(Err(why)) => {
                        tracing::warn!(listener = %spec.addr, proxy = %peer, why, "bad PROXY header");
                        session::record_refused(&shared, spec, Peer { addr: peer, origin: Origin::Proxied }, CloseReason::ProxyProtocolError);
                    }
                    Err(_) => session::record_refused(&shared, spec, Peer { addr: peer, origin: Origin::Proxied }, CloseReason::ProxyProtocolError),
                }
            });
            continue;
        }
        dispatch(
            shared.clone(),
            stream,
            spec,
            Peer::direct(peer),
            &admission,
            &refusals,
            &tracker,
        );
    }
}

/// Admits a connection and runs its session, or refuses it at the caps.
fn dispatch(
    shared: Arc<Shared>,
    stream: TcpStream,
    spec: ListenerSpec,
    peer: Peer,
    admission: &Arc<Admission>,
    refusals: &Arc<Semaphore>,
    tracker: &TaskTracker,
) {
    match admission.admit(peer.addr.ip()) {
        Ok(ticket) => {
            tracker.spawn(async move {
                let early = spec.mode == Mode::Starttls
                    && talks_first(&stream, shared.settings.smtp.greeting_delay).await;
                let prelude = if early {
                    Prelude::EarlyTalker
                } else {
                    Prelude::Normal
                };
                let local = stream.local_addr().unwrap_or(spec.addr);
                session::run(shared, stream, spec, peer, local, prelude).await;
                drop(ticket);
            });
        }
        Err(reason) => match refusals.clone().try_acquire_owned() {
            Ok(permit) => {
                tracker.spawn(async move {
                    let local = stream.local_addr().unwrap_or(spec.addr);
                    session::run(shared, stream, spec, peer, local, Prelude::Refused(reason)).await;
                    drop(permit);
                });
            }
            // Too many refusals in flight already: close without a word.
            Err(_) => session::record_refused(&shared, spec, peer, reason),
        },
    }
}

/// Reads a PROXY v1 or v2 header, byte-exact, so nothing after it is consumed.
async fn read_proxy_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, &'static str> {
    let mut buf = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await.map_err(|_| "closed")?;
    buf.push(byte[0]);
    let need = if byte[0] == 0x0D {
        // v2: 16 fixed bytes, then the announced length.
        let mut fixed = [0u8; 15];
        stream.read_exact(&mut fixed).await.map_err(|_| "closed")?;
        buf.extend_from_slice(&fixed);
        usize::from(u16::from_be_bytes([buf[14], buf[15]]))
    } else {
        // v1: one line.
        while buf.last() != Some(&b'\n') && buf.len() < proxyproto::V1_MAX {
            stream.read_exact(&mut byte).await.map_err(|_| "closed")?;
            buf.push(byte[0]);
        }
        0
    };
    if need > 0 {
        if need > limits::MAX_PROXY_V2_PAYLOAD {
            return Err("PROXY v2 header too long");
        }
        let mut rest = vec![0u8; need];
        stream.read_exact(&mut rest).await.map_err(|_| "closed")?;
        buf.extend_from_slice(&rest);
    }
    match proxyproto::decode(&buf) {
        proxyproto::Decoded::Header { consumed, source } if consumed == buf.len() => Ok(source),
        proxyproto::Decoded::Invalid(why) => Err(why),
        _ => Err("malformed PROXY header"),
    }
}

/// Whether the client sent something before the greeting: input already
/// queued at accept time, or arriving within `delay`.
async fn talks_first(stream: &TcpStream, delay: Duration) -> bool {
    if !delay.is_zero() {
        let _ = tokio::time::timeout(delay, stream.readable()).await;
    }
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    // The socket is non-blocking: WouldBlock means the client is (rightly) waiting.
    matches!(socket2::SockRef::from(stream).peek(&mut byte), Ok(n) if n > 0)
}

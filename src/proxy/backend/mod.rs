//! The legacy MTA behind tlsfront: connecting to it, its session greeting and
//! EHLO, sending commands and reading replies with a deadline on every wait,
//! and the cache of its EHLO keywords that tlsfront's own EHLO reply offers.

pub mod guard;
pub mod tls;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

use crate::config::{BackendSettings, BackendTls};
use crate::limits;
use crate::outcome::BackendFailure;
use crate::smtp::client::{self, ReadError};
use crate::smtp::reply::{Reply, ReplyError, ReplyParser};
use crate::smtp::{ehlo, trace};
use crate::wire::proxyproto;

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {addr} within {timeout:?} ({stage})")]
    Timeout {
        addr: SocketAddr,
        stage: Stage,
        timeout: Duration,
    },
    #[error("{addr} closed the connection ({stage})")]
    Closed { addr: SocketAddr, stage: Stage },
    #[error("I/O error with {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("bad reply from {addr}: {source}")]
    Reply {
        addr: SocketAddr,
        source: ReplyError,
    },
    #[error("TLS with {addr} failed: {message}")]
    Tls { addr: SocketAddr, message: String },
    /// The backend sent bytes no command asked for: every later reply would
    /// be paired with the wrong command, so the connection is given up.
    #[error("{addr} sent data nobody asked for ({stage})")]
    Unsolicited { addr: SocketAddr, stage: Stage },
    /// `xclient` or `proxy_protocol` is configured but the client's identity
    /// could not be passed, and `allow_without_identity` is off.
    #[error("cannot pass the client's identity to {addr}: {message}")]
    Identity { addr: SocketAddr, message: String },
    /// `backend.max_connections` were all in use and none came free in time.
    #[error(
        "all {limit} connections to {addr} stayed in use for {waited:?} (backend.max_connections)"
    )]
    Busy {
        addr: SocketAddr,
        limit: usize,
        waited: Duration,
    },
}

impl BackendError {
    /// The record's name for this failure.
    pub fn failure(&self) -> BackendFailure {
        use BackendFailure as F;
        match self {
            BackendError::Connect { .. } => F::ConnectFailed,
            BackendError::Timeout {
                stage: Stage::Connect,
                ..
            } => F::ConnectTimeout,
            BackendError::Timeout {
                stage: Stage::Greeting,
                ..
            } => F::GreetingTimeout,
            BackendError::Timeout { .. } => F::ReplyTimeout,
            BackendError::Closed { .. } => F::Closed,
            BackendError::Io { .. } => F::IoError,
            BackendError::Reply { .. } => F::MalformedReply,
            BackendError::Tls { .. } => F::TlsFailed,
            BackendError::Unsolicited { .. } => F::UnsolicitedReply,
            BackendError::Identity { .. } => F::IdentityNotPassed,
            BackendError::Busy { .. } => F::Busy,
        }
    }
}

/// Where in the backend dialogue something happened: said in logs and
/// errors; the record names the kind of failure ([`BackendFailure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    ProxyHeader,
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    TlsHandshake,
    Xclient,
    EhloAfterXclient,
    /// A client's command relayed.
    Command,
    Rset,
    /// Message content.
    Content,
    EndOfData,
    NoopBeforeData,
    NoopAfterData,
    EndOfSession,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::ProxyHeader => "PROXY header",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::Helo => "HELO",
            Stage::StartTls => "STARTTLS",
            Stage::TlsHandshake => "TLS handshake",
            Stage::Xclient => "XCLIENT",
            Stage::EhloAfterXclient => "EHLO after XCLIENT",
            Stage::Command => "command",
            Stage::Rset => "RSET",
            Stage::Content => "message content",
            Stage::EndOfData => "end of data",
            Stage::NoopBeforeData => "NOOP before DATA",
            Stage::NoopAfterData => "NOOP after end of data",
            Stage::EndOfSession => "end of session",
        })
    }
}

/// Why a backend session could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    /// Down, unreachable, silent or incoherent: the client gets a 4xx of tlsfront's.
    #[error(transparent)]
    Unavailable(#[from] BackendError),
    /// The backend answered the greeting or EHLO/HELO with an error: passed on.
    #[error("backend refused the session: {}", .0.summary())]
    Refused(Reply),
}

/// What tlsfront knows of the backend's extensions.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Shared: every EHLO a session answers reads them (a copy is a count).
    pub keywords: Arc<[String]>,
    /// False until an EHLO reply was seen: the conservative set is in use.
    pub learned: bool,
}

#[derive(Debug)]
pub struct Backend {
    pub settings: BackendSettings,
    /// Built from `settings` with them: `Some` exactly when `settings.tls` asks for TLS.
    tls_config: Option<Arc<rustls::ClientConfig>>,
    caps: RwLock<Capabilities>,
    /// Connections open, kept and waited for.
    pool: Arc<Mutex<Pool>>,
    /// How the last new connection went (see [`Backend::up`]).
    health: AtomicU8,
    /// Woken when a session starts waiting for a connection: sessions idle
    /// between transactions then lend theirs.
    wanted: tokio::sync::Notify,
}

const HEALTH_UNKNOWN: u8 = 0;
const HEALTH_UP: u8 = 1;
const HEALTH_DOWN: u8 = 2;

/// The sessions' connections to the backend: at most `max_connections`
/// open at once (in use and kept together), each holding a [`Slot`]. A
/// session that finds none free waits in line; a connection put back or
/// closed goes straight to the first in line, so no newcomer overtakes it.
#[derive(Debug, Default)]
struct Pool {
    /// Kept connections left clean by finished sessions, oldest first.
    conns: Vec<Idle>,
    /// A task is closing expired connections (one while the pool is in use).
    reaper: bool,
    /// Slots taken: connections open or being opened (sessions, the probe).
    open: usize,
    /// Sessions waiting for a connection, first come first served.
    waiting: VecDeque<oneshot::Sender<Grant>>,
}

/// What a session gets from the pool.
#[derive(Debug)]
enum Grant {
    /// A kept connection (its slot inside), to be introduced with EHLO.
    Kept(Box<BackendConn>),
    /// Room to open a new connection.
    Slot(Slot),
}

/// One of `backend.max_connections`, held by a connection (or a session
/// opening one) and given back, to the first waiting session if any, when
/// dropped. Weak: kept connections hold slots and the pool holds them.
#[derive(Debug)]
struct Slot {
    pool: Option<Weak<Mutex<Pool>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take().and_then(|p| p.upgrade()) {
            let freed = Slot {
                pool: Some(Arc::downgrade(&pool)),
            };
            give_back(&pool, Grant::Slot(freed), 0);
        }
    }
}

fn lock(pool: &Mutex<Pool>) -> std::sync::MutexGuard<'_, Pool> {
    pool.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands a connection or a slot to the first session still waiting; with
/// nobody waiting, a connection is kept (the oldest beyond `keep` evicted
/// and returned for QUIT) and a slot is counted free. Nothing is dropped
/// while the lock is held (a dropped slot would take it again).
fn give_back(pool: &Mutex<Pool>, mut grant: Grant, keep: usize) -> Option<BackendConn> {
    let mut p = lock(pool);
    while let Some(next) = p.waiting.pop_front() {
        match next.send(grant) {
            Ok(()) => return None,
            // That session stopped waiting (its deadline passed): the next.
            Err(back) => grant = back,
        }
    }
    match grant {
        Grant::Slot(mut slot) => {
            slot.pool = None;
            debug_assert!(p.open > 0, "a slot given back that was never taken");
            p.open = p.open.saturating_sub(1);
            None
        }
        Grant::Kept(conn) => {
            p.conns.push(Idle {
                conn: *conn,
                since: Instant::now(),
            });
            (p.conns.len() > keep).then(|| p.conns.remove(0).conn)
        }
    }
}

#[derive(Debug)]
struct Idle {
    conn: BackendConn,
    since: Instant,
}

/// `EHLO <name>`, as sent to the backend.
fn ehlo_line(helo_name: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(helo_name.len() + 5);
    line.extend_from_slice(b"EHLO ");
    line.extend_from_slice(helo_name);
    line
}

impl Backend {
    /// The backend, with the client configuration of its TLS hop built (the
    /// CA file read) when `backend.tls` is set.
    pub fn new(settings: BackendSettings) -> Result<Arc<Backend>, tls::ClientConfigError> {
        let tls_config = tls::client_config(&settings)?;
        Ok(Self::with(settings, tls_config))
    }

    /// The backend reached without TLS on the hop, whatever `backend.tls`
    /// says: `check` looks at the backend's own STARTTLS in clear.
    pub fn plain(settings: BackendSettings) -> Arc<Backend> {
        Self::with(
            BackendSettings {
                tls: BackendTls::None,
                ..settings
            },
            None,
        )
    }

    fn with(
        settings: BackendSettings,
        tls_config: Option<Arc<rustls::ClientConfig>>,
    ) -> Arc<Backend> {
        Arc::new(Backend {
            settings,
            tls_config,
            caps: RwLock::new(Capabilities {
                keywords: ehlo::CONSERVATIVE.iter().map(|s| s.to_string()).collect(),
                learned: false,
            }),
            pool: Arc::new(Mutex::new(Pool::default())),
            health: AtomicU8::new(HEALTH_UNKNOWN),
            wanted: tokio::sync::Notify::new(),
        })
    }

    /// Whether the last new connection (a session's, the periodic probe's,
    /// the relay guard's) got a 220 greeting: `Some(false)` when it could not
    /// connect, the PROXY header or the TLS hop failed, or the greeting was
    /// missing, late or not 220; `None` before the first one ended. What
    /// follows the greeting (a refused EHLO) depends on the client, not on
    /// the backend's health, and reused connections try nothing new.
    pub fn up(&self) -> Option<bool> {
        match self.health.load(Ordering::Relaxed) {
            HEALTH_UP => Some(true),
            HEALTH_DOWN => Some(false),
            _ => None,
        }
    }

    /// Whether finished sessions may leave their connection for the next one.
    /// Not with identity forwarding: a PROXY header or XCLIENT binds the
    /// connection to one client.
    pub fn reuse_enabled(&self) -> bool {
        !self.settings.reuse_idle.is_zero()
            && self.settings.proxy_protocol.is_none()
            && !self.settings.xclient
    }

    /// A backend session for a client: a clean idle connection re-introduced
    /// with EHLO (which resets the backend's state, RFC 5321 §4.1.4) if one is
    /// kept, else a new one. A kept connection that turns out dead or answers
    /// the EHLO with anything but 250 is dropped and a new one opened, so the
    /// client sees exactly what a fresh connection would give it.
    ///
    /// With `backend.max_connections` open, the session waits its turn (at
    /// most `connect_timeout`) for one to be put back or closed.
    pub async fn session(
        self: &Arc<Self>,
        helo_name: &[u8],
        client: Option<&ClientIdentity>,
    ) -> Result<BackendConn, OpenError> {
        let mut grant = self.grant().await?;
        loop {
            let slot = match grant {
                Grant::Slot(slot) => Some(slot),
                // `command` first checks that the backend sent nothing (no
                // 421, no EOF) while the connection sat idle.
                Grant::Kept(mut conn) => {
                    match conn.command(&ehlo_line(helo_name), Stage::Ehlo).await {
                        Ok(reply) if reply.code == 250 => {
                            self.learn(&reply);
                            conn.ehlo = Some(reply);
                            conn.sessions += 1;
                            return Ok(*conn);
                        }
                        // Its slot goes with it to a new connection.
                        Ok(_) => {
                            let slot = conn.slot.take();
                            tokio::spawn(conn.quit());
                            slot
                        }
                        Err(_) => conn.slot.take(),
                    }
                }
            };
            // Every kept connection was a session's, with its slot: this
            // is only in case one ever is not.
            let Some(slot) = slot else {
                grant = self.grant().await?;
                continue;
            };
            // Another kept connection before a new one, if there is one.
            if let Some(conn) = self.take_idle() {
                drop(slot);
                grant = Grant::Kept(Box::new(conn));
                continue;
            }
            let mut conn = self.open_session(helo_name, client).await?;
            conn.slot = Some(slot);
            return Ok(conn);
        }
    }

    /// A kept connection, else room for a new one, else a place in line.
    async fn grant(&self) -> Result<Grant, BackendError> {
        let waiter = {
            let mut p = lock(&self.pool);
            if let Some(conn) = self.take_fresh(&mut p) {
                return Ok(Grant::Kept(Box::new(conn)));
            }
            if let Some(slot) = self.take_slot(&mut p) {
                return Ok(Grant::Slot(slot));
            }
            // Those whose deadline passed leave the line here (timeouts are
            // all alike, so they are at its front).
            while p.waiting.front().is_some_and(|w| w.is_closed()) {
                p.waiting.pop_front();
            }
            let (tx, rx) = oneshot::channel();
            p.waiting.push_back(tx);
            rx
        };
        self.wanted.notify_waiters();
        let wait = self.settings.connect_timeout;
        match tokio::time::timeout(wait, waiter).await {
            Ok(Ok(grant)) => Ok(grant),
            // The sender is dropped only with the pool, at shutdown.
            Ok(Err(_)) | Err(_) => Err(BackendError::Busy {
                addr: self.settings.addr,
                limit: self.settings.max_connections,
                waited: wait,
            }),
        }
    }

    /// Connections open (in use by sessions, kept, the probe's) and sessions waiting
    /// for one: the metrics' gauges.
    pub fn connections(&self) -> (usize, usize) {
        let p = lock(&self.pool);
        let waiting = p.waiting.iter().filter(|w| !w.is_closed()).count();
        (p.open, waiting)
    }

    /// Whether sessions are waiting for a connection: a session between
    /// transactions then gives its own back.
    pub fn wanted(&self) -> bool {
        lock(&self.pool).waiting.iter().any(|w| !w.is_closed())
    }

    /// Completes when a session starts waiting for a connection (enable it,
    /// then check [`Backend::wanted`], so no start is missed in between).
    pub fn when_wanted(&self) -> tokio::sync::futures::Notified<'_> {
        self.wanted.notified()
    }

    /// Offers back a connection whose session ended with no transaction open.
    /// It is kept for `reuse_idle_time` if it never saw an error reply and has
    /// sessions left; otherwise it is handed back for the caller to QUIT.
    #[must_use]
    pub fn put_back(self: &Arc<Self>, conn: BackendConn) -> Option<BackendConn> {
        let keep = self.reuse_enabled()
            && conn.clean
            && !conn.stateful
            && conn.rbuf.is_empty()
            && conn.sessions < self.settings.reuse_max_sessions;
        if !keep {
            return Some(conn);
        }
        let evicted = give_back(
            &self.pool,
            Grant::Kept(Box::new(conn)),
            limits::MAX_IDLE_BACKEND_CONNECTIONS,
        );
        if let Some(old) = evicted {
            tokio::spawn(old.quit());
        }
        let start_reaper = {
            let mut p = lock(&self.pool);
            !p.conns.is_empty() && !std::mem::replace(&mut p.reaper, true)
        };
        if start_reaper {
            tokio::spawn(self.clone().reap());
        }
        None
    }

    /// Closes kept connections as they expire; ends when none is left (the
    /// next `put_back` starts it again), so an idle tlsfront runs no timer.
    async fn reap(self: Arc<Self>) {
        let limit = self.settings.reuse_idle;
        loop {
            let (expired, next) = {
                let mut pool = lock(&self.pool);
                let fresh = pool
                    .conns
                    .iter()
                    .position(|i| i.since.elapsed() < limit)
                    .unwrap_or(pool.conns.len());
                let expired: Vec<Idle> = pool.conns.drain(..fresh).collect();
                let next = pool.conns.first().map(|i| i.since + limit);
                pool.reaper = next.is_some();
                (expired, next)
            };
            for i in expired {
                tokio::spawn(i.conn.quit());
            }
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => return,
            }
        }
    }

    /// At shutdown: says QUIT on every kept connection and waits (briefly) for it.
    pub async fn quit_idle(&self) {
        let all = std::mem::take(&mut lock(&self.pool).conns);
        let quits: Vec<_> = all
            .into_iter()
            .map(|i| tokio::spawn(i.conn.quit()))
            .collect();
        for q in quits {
            let _ = q.await;
        }
    }

    /// The newest kept connection that has not expired.
    fn take_idle(&self) -> Option<BackendConn> {
        self.take_fresh(&mut lock(&self.pool))
    }

    /// The newest kept connection, if it has not expired. The kept ones are
    /// in the order they came back, so when the newest has expired all have:
    /// the reaper closes them (not here: a connection dropped under the lock
    /// would take it again to give its slot back).
    fn take_fresh(&self, p: &mut Pool) -> Option<BackendConn> {
        let fresh = self.reuse_enabled()
            && p.conns
                .last()
                .is_some_and(|i| i.since.elapsed() < self.settings.reuse_idle);
        fresh.then(|| p.conns.pop()).flatten().map(|i| i.conn)
    }

    pub fn addr(&self) -> SocketAddr {
        self.settings.addr
    }

    /// Whether the backend's EHLO announced `keyword` (without copying the list).
    pub fn announces(&self, keyword: &[u8]) -> bool {
        self.caps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keywords
            .iter()
            .any(|k| ehlo::keyword(k).as_bytes().eq_ignore_ascii_case(keyword))
    }

    pub fn capabilities(&self) -> Capabilities {
        self.caps.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn learn(&self, reply: &Reply) {
        let same = |caps: &Capabilities| {
            caps.learned
                && ehlo::keyword_lines(&reply.lines).eq(caps.keywords.iter().map(|k| k.as_str()))
        };
        // Every backend session sees the same EHLO reply: checked under the
        // read lock, without copying it, and written only when it changed.
        if same(&self.caps.read().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        let mut caps = self.caps.write().unwrap_or_else(|e| e.into_inner());
        if same(&caps) {
            return;
        }
        let keywords = ehlo::keywords_of(&reply.lines);
        tracing::info!(backend = %self.settings.addr, keywords = ?keywords, "learned backend EHLO keywords");
        *caps = Capabilities {
            keywords: keywords.into(),
            learned: true,
        };
    }

    async fn connect(&self) -> Result<BackendConn, BackendError> {
        let addr = self.settings.addr;
        let started = Instant::now();
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        };
        let socket = socket.map_err(|source| BackendError::Connect { addr, source })?;
        if let Some(src) = self.settings.source {
            socket
                .bind(SocketAddr::new(src, 0))
                .map_err(|source| BackendError::Connect { addr, source })?;
        }
        let stream =
            match tokio::time::timeout(self.settings.connect_timeout, socket.connect(addr)).await {
                Err(_) => {
                    return Err(BackendError::Timeout {
                        addr,
                        stage: Stage::Connect,
                        timeout: self.settings.connect_timeout,
                    });
                }
                Ok(Err(source)) => return Err(BackendError::Connect { addr, source }),
                Ok(Ok(s)) => s,
            };
        // Replies are small and latency-bound: never wait for Nagle.
        let _ = stream.set_nodelay(true);
        Ok(BackendConn {
            identity: None,
            stream: tls::Stream::Plain(stream),
            addr,
            tls: None,
            rbuf: BytesMut::with_capacity(1024),
            wbuf: Vec::new(),
            parser: ReplyParser::new(self.settings.max_reply_line, self.settings.max_reply_size),
            connect_time: started.elapsed(),
            reply_timeout: self.settings.reply_timeout,
            greeting: None,
            ehlo: None,
            sessions: 1,
            clean: true,
            stateful: false,
            slot: None,
        })
    }

    /// Connects, sends the PROXY header, starts implicit TLS and reads the
    /// greeting: the steps that tell whether the backend is up.
    async fn greeted(
        &self,
        client: Option<&ClientIdentity>,
    ) -> Result<(BackendConn, Reply), OpenError> {
        let mut conn = self.connect().await?;
        if let (Some(version), Some(id)) = (self.settings.proxy_protocol, client) {
            let header = proxyproto::encode(version, id.client, id.local);
            conn.write_all(&header, Stage::ProxyHeader).await?;
            conn.identity = Some(match version {
                proxyproto::Version::V1 => "proxy_v1",
                proxyproto::Version::V2 => "proxy_v2",
            });
        }
        let tls_config = self.tls_config.as_ref();
        if let (BackendTls::Implicit, Some(config)) = (self.settings.tls, tls_config) {
            conn.upgrade(config, &self.settings.tls_name).await?;
        }
        let greeting = conn
            .read_reply(Stage::Greeting, self.settings.greeting_timeout)
            .await?;
        Ok((conn, greeting))
    }

    /// Connects, reads the greeting and introduces the client's HELO name
    /// (EHLO, falling back to HELO if EHLO is refused). With `client`, the
    /// client's identity is passed on as configured (PROXY header, XCLIENT).
    pub async fn open_session(
        &self,
        helo_name: &[u8],
        client: Option<&ClientIdentity>,
    ) -> Result<BackendConn, OpenError> {
        let greeted = self.greeted(client).await;
        let up = matches!(&greeted, Ok((_, g)) if g.code == 220);
        self.health
            .store(if up { HEALTH_UP } else { HEALTH_DOWN }, Ordering::Relaxed);
        let (mut conn, greeting) = greeted?;
        if greeting.code != 220 {
            return Err(OpenError::Refused(greeting));
        }
        conn.greeting = Some(greeting);
        let tls_config = self.tls_config.as_ref();
        let mut line = ehlo_line(helo_name);
        let mut reply = conn.command(&line, Stage::Ehlo).await?;
        if let (BackendTls::Starttls, Some(config)) = (self.settings.tls, tls_config) {
            if reply.code == 421 {
                return Err(OpenError::Refused(reply));
            }
            // STARTTLS needs EHLO: a refused EHLO (which anyone on the path
            // can inject) must not become a HELO session in clear.
            if reply.code != 250 {
                return Err(OpenError::Unavailable(BackendError::Tls {
                    addr: conn.addr,
                    message: format!(
                        "EHLO refused ({}), so STARTTLS cannot be used; backend.tls never falls back to plaintext",
                        reply.summary()
                    ),
                }));
            }
            // TLS is required on this hop: no STARTTLS, no session (never plaintext).
            let offered = ehlo::keywords_of(&reply.lines)
                .iter()
                .any(|k| ehlo::keyword(k).eq_ignore_ascii_case("STARTTLS"));
            if !offered {
                return Err(OpenError::Unavailable(BackendError::Tls {
                    addr: conn.addr,
                    message: "the backend does not offer STARTTLS".into(),
                }));
            }
            let go = conn.command(b"STARTTLS", Stage::StartTls).await?;
            if go.code != 220 {
                return Err(OpenError::Unavailable(BackendError::Tls {
                    addr: conn.addr,
                    message: format!("STARTTLS refused: {}", go.summary()),
                }));
            }
            conn.upgrade(config, &self.settings.tls_name).await?;
            reply = conn.command(&line, Stage::Ehlo).await?;
        }
        if reply.code == 250 {
            self.learn(&reply);
            if let (true, Some(id)) = (self.settings.xclient, client)
                && let Err(why) = self
                    .xclient(&mut conn, &reply, helo_name, id, &line)
                    .await?
            {
                self.without_identity(&conn, why)?;
            }
            conn.ehlo = Some(reply);
            return Ok(conn);
        }
        if reply.code == 421 {
            return Err(OpenError::Refused(reply));
        }
        line[..4].copy_from_slice(b"HELO");
        let reply = conn.command(&line, Stage::Helo).await?;
        if reply.code != 250 {
            return Err(OpenError::Refused(reply));
        }
        if self.settings.xclient && client.is_some() {
            self.without_identity(
                &conn,
                "EHLO refused, so XCLIENT could not be offered".into(),
            )?;
        }
        Ok(conn)
    }

    /// The client's identity could not be passed on: fail closed (451 to the
    /// client), unless the admin allowed sessions as tlsfront's own address.
    fn without_identity(&self, conn: &BackendConn, why: String) -> Result<(), OpenError> {
        if self.settings.allow_without_identity {
            tracing::warn!(backend = %self.settings.addr, why, "client identity not passed (allow_without_identity = true)");
            return Ok(());
        }
        Err(OpenError::Unavailable(BackendError::Identity {
            addr: conn.addr,
            message: why,
        }))
    }

    /// Sends XCLIENT with the attributes the backend announced, then EHLO
    /// again (XCLIENT restarts the session with a new greeting).
    async fn xclient(
        &self,
        conn: &mut BackendConn,
        ehlo: &Reply,
        helo_name: &[u8],
        id: &ClientIdentity,
        ehlo_line: &[u8],
    ) -> Result<Result<(), String>, OpenError> {
        let Some(announced) = ehlo::keywords_of(&ehlo.lines)
            .into_iter()
            .find(|k| ehlo::keyword(k).eq_ignore_ascii_case("XCLIENT"))
        else {
            return Ok(Err("the backend does not offer XCLIENT".into()));
        };
        let offered: Vec<String> = announced
            .split_whitespace()
            .skip(1)
            .map(|a| a.to_ascii_uppercase())
            .collect();
        if !offered.iter().any(|o| o == "ADDR") {
            return Ok(Err(format!(
                "the backend's XCLIENT does not take ADDR ({announced})"
            )));
        }
        let ip = id.client.ip().to_canonical();
        let addr = if ip.is_ipv6() {
            format!("IPV6:{ip}")
        } else {
            ip.to_string()
        };
        let mut line = String::from("XCLIENT");
        for (name, value) in [
            ("ADDR", addr),
            ("PORT", id.client.port().to_string()),
            // Reverse DNS is the backend's business; tlsfront does no lookups.
            ("NAME", "[UNAVAILABLE]".to_string()),
            ("HELO", trace::xtext(helo_name)),
            ("PROTO", if id.esmtp { "ESMTP" } else { "SMTP" }.to_string()),
        ] {
            if offered.iter().any(|o| o == name) {
                line.push_str(&format!(" {name}={value}"));
            }
        }
        let reply = conn.command(line.as_bytes(), Stage::Xclient).await?;
        if reply.code != 220 {
            // Typically: tlsfront's address is not in smtpd_authorized_xclient_hosts.
            return Ok(Err(format!("XCLIENT refused: {}", reply.summary())));
        }
        let reply = conn.command(ehlo_line, Stage::EhloAfterXclient).await?;
        if reply.code != 250 {
            return Err(OpenError::Refused(reply));
        }
        conn.identity = Some("xclient");
        Ok(Ok(()))
    }

    /// Learns the backend's EHLO keywords with a short session of its own,
    /// in one of `backend.max_connections`. `Ok(None)`: skipped, since all
    /// are in use (sessions re-learn the keywords with every EHLO then).
    pub async fn probe(&self, our_name: &str) -> Result<Option<Vec<String>>, OpenError> {
        let Some(slot) = self.free_slot() else {
            return Ok(None);
        };
        let conn = self.open_session(our_name.as_bytes(), None).await?;
        conn.quit().await;
        drop(slot);
        Ok(Some(self.capabilities().keywords.to_vec()))
    }

    /// One of `backend.max_connections` if one is free, without waiting.
    fn free_slot(&self) -> Option<Slot> {
        self.take_slot(&mut lock(&self.pool))
    }

    fn take_slot(&self, p: &mut Pool) -> Option<Slot> {
        (p.open < self.settings.max_connections).then(|| {
            p.open += 1;
            Slot {
                pool: Some(Arc::downgrade(&self.pool)),
            }
        })
    }
}

/// Who the backend session is for.
#[derive(Debug, Clone, Copy)]
pub struct ClientIdentity {
    pub client: SocketAddr,
    /// tlsfront's address the client connected to: the accepted socket's own
    /// local address (a `[::]` listener's bound address says nothing).
    pub local: SocketAddr,
    /// The client said EHLO (not HELO).
    pub esmtp: bool,
}

/// One SMTP session with the backend.
#[derive(Debug)]
pub struct BackendConn {
    /// How the client's identity reached the backend: "xclient", "proxy_v1", "proxy_v2".
    pub identity: Option<&'static str>,
    stream: tls::Stream,
    pub addr: SocketAddr,
    /// TLS version and suite of the backend hop, when TLS is used.
    pub tls: Option<(String, String)>,
    rbuf: BytesMut,
    /// Command lines on their way out (see [`Self::command`]).
    wbuf: Vec<u8>,
    parser: ReplyParser,
    pub connect_time: Duration,
    reply_timeout: Duration,
    /// The backend's greeting and EHLO reply (None after a HELO fallback),
    /// kept for `tlsfront check`.
    pub greeting: Option<Reply>,
    pub ehlo: Option<Reply>,
    /// Client sessions served, this one included (reuse stops at
    /// `reuse_max_sessions`).
    sessions: u32,
    /// No error reply (4xx/5xx) and no failure so far: only such a connection
    /// is reused, so the backend's per-connection error counters (Postfix's
    /// smtpd_soft_error_limit and its delays) never add up across clients.
    clean: bool,
    /// A command that can leave state beyond a transaction (AUTH, VRFY, an
    /// extension verb) went over this connection: it is never reused, since
    /// EHLO does not reset it everywhere (Postfix keeps SASL state across EHLO).
    stateful: bool,
    /// Its place among `backend.max_connections` (a session's connection;
    /// the probe's and `check`'s have none).
    slot: Option<Slot>,
}

impl BackendConn {
    pub fn local_ip(&self) -> Option<IpAddr> {
        self.stream.local_addr().ok().map(|a| a.ip())
    }

    /// Marks the connection as carrying state a later client must not inherit.
    pub fn mark_stateful(&mut self) {
        self.stateful = true;
    }

    /// Fails unless the backend has sent nothing since its last reply:
    /// before every command, and after a reply that ends a message, so no
    /// reply is ever paired with a command that did not ask for it.
    pub fn expect_quiet(&mut self, stage: Stage) -> Result<(), BackendError> {
        let addr = self.addr;
        let result = if !self.rbuf.is_empty() {
            Err(BackendError::Unsolicited { addr, stage })
        } else {
            match self.stream.waiting() {
                Ok(tls::Waiting::Nothing) => Ok(()),
                Ok(tls::Waiting::Data) => Err(BackendError::Unsolicited { addr, stage }),
                Ok(tls::Waiting::Closed) => Err(BackendError::Closed { addr, stage }),
                Err(source) => Err(BackendError::Io { addr, source }),
            }
        };
        self.clean &= result.is_ok();
        result
    }

    /// Proves the reply stream is in step: a NOOP must get one 250 and
    /// nothing more. Replies carry no request ids, so an extra reply that
    /// arrived late (held back by the backend's Nagle, say) would pair every
    /// later reply with the wrong command; here the stale reply takes the
    /// NOOP's place and is caught. Used before DATA and before a message is
    /// reported accepted, the two replies a sender acts on for good.
    ///
    /// `Ok(false)`: the backend closed without another word, so nothing
    /// contradicts the replies read so far, but the connection is gone.
    pub async fn confirm_in_step(&mut self, stage: Stage) -> Result<bool, BackendError> {
        match self.command(b"NOOP", stage).await {
            Ok(reply) if reply.code == 250 => Ok(true),
            Ok(_) => {
                self.clean = false;
                Err(BackendError::Unsolicited {
                    addr: self.addr,
                    stage,
                })
            }
            Err(BackendError::Closed { .. } | BackendError::Io { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The backend's reply to the end of data, with whether the connection
    /// is still usable. A 2xx is returned only once a NOOP got exactly one
    /// 250 after it (see [`Self::confirm_in_step`]). `noop_sent`: the NOOP
    /// went in the same write as the end of data, to a backend that offers
    /// PIPELINING (message content may open a pipelined group, NOOP may end
    /// it: RFC 2920 section 3.1), which saves a round trip per message; its
    /// reply is read whatever the end of data got, so the stream stays in
    /// step. The replies pair up as they would one round trip at a time: a
    /// stale reply still takes the end of data's place and leaves the real
    /// one to the NOOP, where anything but 250 is caught.
    pub async fn end_of_data(
        &mut self,
        timeout: Duration,
        noop_sent: bool,
    ) -> Result<(Reply, bool), BackendError> {
        let reply = self
            .read_reply_then(Stage::EndOfData, timeout, noop_sent)
            .await?;
        if !noop_sent {
            if !reply.is_success() {
                return Ok((reply, true));
            }
            let alive = self.confirm_in_step(Stage::NoopAfterData).await?;
            return Ok((reply, alive));
        }
        let stage = Stage::NoopAfterData;
        match self.read_reply(stage, self.reply_timeout).await {
            Ok(noop) if noop.code == 250 => Ok((reply, true)),
            Ok(_) if reply.is_success() => {
                self.clean = false;
                Err(BackendError::Unsolicited {
                    addr: self.addr,
                    stage,
                })
            }
            // Closed without another word: nothing contradicts the reply.
            Err(BackendError::Closed { .. } | BackendError::Io { .. }) => Ok((reply, false)),
            Err(e) if reply.is_success() => Err(e),
            // A refusal is passed on as it is (as without the NOOP); the
            // connection that answered the NOOP wrongly is not kept.
            Ok(_) | Err(_) => {
                self.clean = false;
                Ok((reply, false))
            }
        }
    }

    /// Whether this session's EHLO reply offered PIPELINING (RFC 2920).
    pub fn pipelining(&self) -> bool {
        self.ehlo
            .as_ref()
            .is_some_and(|r| ehlo::offers(&r.lines, "PIPELINING"))
    }

    /// DATA, after the NOOP that proves the replies to MAIL and RCPT were
    /// theirs (see [`Self::confirm_in_step`]). The NOOP waits for its reply
    /// even on a backend that offers PIPELINING: RFC 2920 lets NOOP only end
    /// a group, and Postfix takes a command after it for improper pipelining
    /// (`reject_unauth_pipelining` then refuses DATA, and
    /// `smtpd_forbid_unauth_pipelining`, on by default since Postfix 3.9,
    /// ends the session). DATA answered 2xx is out of step as well.
    pub async fn data(&mut self, line: &[u8]) -> Result<Reply, BackendError> {
        let (addr, stage) = (self.addr, Stage::NoopBeforeData);
        if !self.confirm_in_step(stage).await? {
            return Err(BackendError::Closed { addr, stage });
        }
        let reply = self.command(line, Stage::Command).await?;
        let stage = Stage::Command;
        if reply.is_success() {
            self.clean = false;
            return Err(BackendError::Unsolicited { addr, stage });
        }
        Ok(reply)
    }

    /// Sends one command line (CRLF appended) and reads its reply.
    pub async fn command(&mut self, line: &[u8], stage: Stage) -> Result<Reply, BackendError> {
        self.expect_quiet(stage)?;
        // The connection's one buffer for its command lines, lent out here.
        let mut out = std::mem::take(&mut self.wbuf);
        out.clear();
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        let written = self.write_all(&out, stage).await;
        self.wbuf = out;
        written?;
        self.read_reply(stage, self.reply_timeout).await
    }

    pub async fn write_all(&mut self, bytes: &[u8], stage: Stage) -> Result<(), BackendError> {
        let result = self.write_all_inner(bytes, stage).await;
        self.clean &= result.is_ok();
        result
    }

    async fn write_all_inner(&mut self, bytes: &[u8], stage: Stage) -> Result<(), BackendError> {
        let addr = self.addr;
        match tokio::time::timeout(self.reply_timeout, self.stream.write_all(bytes)).await {
            Err(_) => Err(BackendError::Timeout {
                addr,
                stage,
                timeout: self.reply_timeout,
            }),
            Ok(Err(source)) => Err(BackendError::Io { addr, source }),
            Ok(Ok(())) => Ok(()),
        }
    }

    pub async fn read_reply(
        &mut self,
        stage: Stage,
        timeout: Duration,
    ) -> Result<Reply, BackendError> {
        self.read_reply_then(stage, timeout, false).await
    }

    /// Reads one reply; `more`: a further reply was asked for in the same
    /// pipelined group, so bytes after this one are expected.
    async fn read_reply_then(
        &mut self,
        stage: Stage,
        timeout: Duration,
        more: bool,
    ) -> Result<Reply, BackendError> {
        let result = self.read_reply_inner(stage, timeout, more).await;
        self.clean &= matches!(&result, Ok(r) if r.code < 400);
        result
    }

    async fn read_reply_inner(
        &mut self,
        stage: Stage,
        timeout: Duration,
        more: bool,
    ) -> Result<Reply, BackendError> {
        let addr = self.addr;
        let deadline = tokio::time::Instant::now() + timeout;
        let reply =
            client::read_reply(&mut self.stream, &mut self.rbuf, &mut self.parser, deadline)
                .await
                .map_err(|e| match e {
                    ReadError::Timeout => BackendError::Timeout {
                        addr,
                        stage,
                        timeout,
                    },
                    ReadError::Closed => BackendError::Closed { addr, stage },
                    ReadError::Io(source) => BackendError::Io { addr, source },
                    ReadError::Malformed(source) => BackendError::Reply { addr, source },
                })?;
        // Anything after the last reply asked for was not asked for, and
        // makes this reply suspect too.
        if !more && !self.rbuf.is_empty() {
            return Err(BackendError::Unsolicited { addr, stage });
        }
        Ok(reply)
    }

    /// The raw connection and any bytes already read past the last reply:
    /// for `tlsfront check`, which speaks TLS on it after STARTTLS.
    pub fn into_parts(self) -> Option<(TcpStream, BytesMut)> {
        match self.stream {
            tls::Stream::Plain(s) => Some((s, self.rbuf)),
            _ => None,
        }
    }

    /// Runs the TLS handshake on the connection (after STARTTLS, or first
    /// thing for implicit TLS). Bytes the backend sent in clear after its 220
    /// would be an injection attempt: refused.
    async fn upgrade(
        &mut self,
        config: &std::sync::Arc<rustls::ClientConfig>,
        name: &str,
    ) -> Result<(), BackendError> {
        let addr = self.addr;
        let tls_err = |message: String| BackendError::Tls { addr, message };
        if !self.rbuf.is_empty() {
            return Err(tls_err("data received in clear after STARTTLS".into()));
        }
        let tls::Stream::Plain(tcp) = std::mem::replace(&mut self.stream, tls::Stream::Upgrading)
        else {
            return Err(tls_err("TLS is already active".into()));
        };
        let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| tls_err(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        match tokio::time::timeout(self.reply_timeout, connector.connect(server_name, tcp)).await {
            Err(_) => Err(BackendError::Timeout {
                addr,
                stage: Stage::TlsHandshake,
                timeout: self.reply_timeout,
            }),
            Ok(Err(e)) => Err(tls_err(e.to_string())),
            Ok(Ok(tls)) => {
                self.stream = tls::Stream::Tls(Box::new(tls));
                self.tls = self.stream.tls_facts();
                Ok(())
            }
        }
    }

    /// Taken from the idle connections rather than opened for this session.
    pub fn reused(&self) -> bool {
        self.sessions > 1
    }

    /// Ends the session politely, without waiting long for the goodbye.
    pub async fn quit(mut self) {
        client::quit(&mut self.stream).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(extra: &str) -> Arc<Backend> {
        backend_at("127.0.0.1:10025", extra)
    }

    fn backend_at(addr: &str, extra: &str) -> Arc<Backend> {
        let text = format!(
            "[server]\nhostname = \"mx.test\"\n[[listener]]\naddress = [\"127.0.0.1:2525\"]\n\
             [backend]\naddress = \"{addr}\"\n{extra}"
        );
        let raw = crate::config::parse(&text, "t.toml").unwrap();
        let settings = crate::config::validate(raw, &Default::default(), "t.toml")
            .unwrap()
            .backend;
        Backend::plain(settings)
    }

    fn slot(g: Grant) -> Slot {
        match g {
            Grant::Slot(s) => s,
            Grant::Kept(_) => panic!("no connection was kept"),
        }
    }

    fn ehlo_reply(text: &[u8]) -> Reply {
        let mut buf = bytes::BytesMut::from(text);
        crate::smtp::reply::ReplyParser::new(512, 65536)
            .parse(&mut buf)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_same_ehlo_reply_leaves_the_learned_keywords_alone_and_a_new_one_replaces_them() {
        let b = backend("");
        assert!(!b.capabilities().learned);
        b.learn(&ehlo_reply(
            b"250-legacy\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
        ));
        let first = b.capabilities();
        assert!(first.learned);
        assert_eq!(&first.keywords[..], ["SIZE 1000", "8BITMIME"]);
        // Seen again (another session, another greeting name): not rewritten.
        b.learn(&ehlo_reply(
            b"250-other\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
        ));
        assert!(Arc::ptr_eq(&first.keywords, &b.capabilities().keywords));
        // Changed (one fewer, then not UTF-8): learned anew, as keywords_of reads them.
        b.learn(&ehlo_reply(b"250-legacy\r\n250 SIZE 1000\r\n"));
        assert_eq!(&b.capabilities().keywords[..], ["SIZE 1000"]);
        b.learn(&ehlo_reply(b"250-legacy\r\n250 X-\xff\r\n"));
        let lossy = b.capabilities();
        assert_eq!(&lossy.keywords[..], ["X-\u{fffd}"]);
        b.learn(&ehlo_reply(b"250-legacy\r\n250 X-\xff\r\n"));
        assert!(Arc::ptr_eq(&lossy.keywords, &b.capabilities().keywords));
    }

    #[tokio::test(start_paused = true)]
    async fn slots_go_to_the_waiting_in_the_order_they_came() {
        let b = backend("max_connections = 2\nconnect_timeout = \"10s\"\n");
        let first = slot(b.grant().await.unwrap());
        let second = slot(b.grant().await.unwrap());
        assert_eq!(b.connections(), (2, 0));
        // Three wait, the second of them gives up before a slot is free.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiting = Vec::new();
        for (n, patience) in [(1, 10), (2, 1), (3, 10)] {
            let (b, tx) = (b.clone(), tx.clone());
            let wait = async move {
                let got = tokio::time::timeout(Duration::from_secs(patience), b.grant()).await;
                let _ = tx.send((n, got.map(|g| g.map(slot))));
            };
            waiting.push(tokio::spawn(wait));
            tokio::task::yield_now().await;
        }
        assert_eq!(b.connections(), (2, 3));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (n, gave_up) = rx.recv().await.unwrap();
        assert!(n == 2 && gave_up.is_err(), "{n}");
        assert_eq!(b.connections(), (2, 2));
        // A slot freed goes to the first still waiting, the next to the third.
        drop(first);
        let (n, got) = rx.recv().await.unwrap();
        assert_eq!(n, 1);
        let third_gets = got.unwrap().unwrap();
        drop(second);
        let (n, got) = rx.recv().await.unwrap();
        assert_eq!(n, 3);
        let last = got.unwrap().unwrap();
        assert_eq!(b.connections(), (2, 0));
        drop((third_gets, last));
        assert_eq!(b.connections(), (0, 0), "every slot counted free");
        for w in waiting {
            w.await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_probe_takes_a_free_slot_or_is_skipped() {
        // Nothing listens on the backend's port: a probe that connects fails.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let b = backend_at(&format!("127.0.0.1:{port}"), "max_connections = 1\n");
        let held = slot(b.grant().await.unwrap());
        assert!(
            matches!(b.probe("mx.test").await, Ok(None)),
            "skipped, not tried"
        );
        drop(held);
        assert!(
            b.probe("mx.test").await.is_err(),
            "tried once a slot was free"
        );
        assert_eq!(b.connections(), (0, 0), "the probe's slot given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_connect_timeout_is_busy() {
        let b = backend("max_connections = 1\nconnect_timeout = \"3s\"\n");
        let _held = slot(b.grant().await.unwrap());
        let started = tokio::time::Instant::now();
        match b.grant().await {
            Err(e @ BackendError::Busy { limit: 1, .. }) => {
                assert_eq!(e.failure(), BackendFailure::Busy);
                assert!(e.to_string().contains("backend.max_connections"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(!b.wanted(), "who gave up is no longer waiting");
    }
}

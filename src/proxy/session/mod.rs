//! One client connection, from greeting to close: an explicit state machine.
//!
//! tlsfront answers everything it can itself (greeting, EHLO, STARTTLS, NOOP,
//! RSET and QUIT outside a transaction) and opens the backend session only
//! when the client starts real work. Commands are handled strictly one at a
//! time, so replies to a pipelined group leave in the order of the commands,
//! and each reply leaves in one write.
//!
//! One file per phase of the dialogue: [`decide`] says what a command gets
//! (pure, table-tested), [`replies`] holds every reply tlsfront writes
//! itself, [`io`] the client's side of the wire, [`greet`] HELO/EHLO,
//! [`starttls`] the handover to TLS, [`relay`] the backend session and
//! [`data`] the message. This file owns the session's state and its loop.
//!
//! Invariants worth keeping in mind when changing these files:
//! - nothing read before the TLS handshake is ever used after it;
//! - the client never sees a 2xx for a message unless the backend sent it,
//!   and a NOOP showed the backend's replies to be in step;
//! - no reply from the backend is taken unless a command asked for it;
//! - a backend connection that carried anything but MAIL/RCPT/DATA/RSET/NOOP
//!   never serves another client;
//! - if the client vanishes mid-DATA, the backend connection is dropped
//!   without an end-of-data line, so a partial message is never accepted.

mod data;
pub mod decide;
mod greet;
mod io;
mod relay;
pub mod replies;
mod starttls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ListenerSpec, Settings};
use crate::limits;
use crate::outcome::{CloseReason, Mode, Origin};
use crate::proxy::admission::Admission;
use crate::proxy::backend::{Backend, BackendConn, Stage};
use crate::proxy::metrics::Metrics;
use crate::proxy::records::{Record, RecordGuard, RecordSink};
use crate::proxy::stream::ClientIo;
use crate::proxy::tls::{HandshakeTurns, TlsFront};
use crate::smtp::command::{Command, Verb};
use crate::smtp::line::LineCutter;

use decide::{Decision, Phase, Policy, Relayed, decide};
use replies::Local;

/// State shared by every session.
pub struct Shared {
    pub settings: Settings,
    /// Swapped whole on reload; a handshake takes the one current when it starts.
    tls: RwLock<Option<Arc<TlsFront>>>,
    pub backend: Arc<Backend>,
    /// The connection caps (and the count of sessions, for status reports).
    pub admission: Arc<Admission>,
    pub records: RecordSink,
    /// Prometheus metrics (`[metrics] listen` set); the record sink feeds them.
    pub metrics: Option<Arc<Metrics>>,
    /// Stop: no new connections; sessions outside a transaction end (421).
    pub shutdown: CancellationToken,
    /// The shutdown grace is over: sessions in a transaction end too.
    pub drain_over: CancellationToken,
    /// Message buffers in KiB, shared by all sessions in DATA.
    data_memory: Arc<tokio::sync::Semaphore>,
    /// Turns at the costly step of a TLS handshake (one per worker thread).
    pub handshake_turns: HandshakeTurns,
    next_id: AtomicU64,
    id_tag: u32,
}

impl Shared {
    pub fn new(
        settings: Settings,
        tls: Option<Arc<TlsFront>>,
        backend: Arc<Backend>,
        records: RecordSink,
    ) -> Arc<Shared> {
        // A per-process tag keeps session ids unique across restarts.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let id_tag = (now.as_secs() as u32).wrapping_mul(2_654_435_761)
            ^ now.subsec_nanos()
            ^ std::process::id();
        let metrics = settings.metrics.map(|_| Arc::new(Metrics::new()));
        if let (Some(m), Some(front)) = (&metrics, &tls) {
            m.set_certificates(front.entries());
        }
        let records = records.observed_by(
            metrics
                .clone()
                .map(|m| m as Arc<dyn crate::proxy::records::Observer>),
        );
        let data_memory_kib = settings.smtp.message_memory / 1024;
        Arc::new(Shared {
            admission: Admission::new(
                settings.max_connections,
                settings.max_connections_per_client,
            ),
            settings,
            tls: RwLock::new(tls),
            backend,
            records,
            metrics,
            shutdown: CancellationToken::new(),
            drain_over: CancellationToken::new(),
            data_memory: Arc::new(tokio::sync::Semaphore::new(data_memory_kib)),
            handshake_turns: HandshakeTurns::new(
                tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers()),
            ),
            next_id: AtomicU64::new(1),
            id_tag,
        })
    }

    /// The TLS front new handshakes use.
    pub fn tls(&self) -> Option<Arc<TlsFront>> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether STARTTLS can be offered (a certificate is loaded).
    pub fn tls_available(&self) -> bool {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Replaces the TLS front (certificate reload); sessions already in TLS keep theirs.
    pub fn set_tls(&self, front: Option<Arc<TlsFront>>) {
        if let Some(m) = &self.metrics {
            m.set_certificates(front.as_deref().map(TlsFront::entries).unwrap_or_default());
        }
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = front;
    }

    fn session_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}-{n}", self.id_tag)
    }
}

/// What the command loop does next.
enum Step {
    Continue,
    StartTls,
    Close(CloseReason),
}

type Flow = Result<(), CloseReason>;

/// What the session waits for from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Command,
    Content,
}

/// A failed client read, as a close reason.
fn read_failure(e: &std::io::Error) -> CloseReason {
    // A TLS peer that closes without close_notify: still just a close.
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        CloseReason::ClientClosed
    } else {
        CloseReason::ClientIoError
    }
}

/// Units of the message memory budget (`smtp.message_memory_mib`, default
/// [`limits::DATA_MEMORY_BUDGET`]) one message in flight takes: its
/// read buffer and the read-ahead of the client stream, in KiB.
const DATA_PERMITS: u32 = ((limits::DATA_CHUNK + limits::DATA_READ_AHEAD) / 1024) as u32;

pub struct Session<S> {
    shared: Arc<Shared>,
    io: Option<ClientIo<S>>,
    rbuf: BytesMut,
    cutter: LineCutter,
    record: RecordGuard,
    phase: Phase,
    helo: Option<Vec<u8>>,
    tls_active: bool,
    /// Boxed: most sessions (all idle ones) have none.
    backend: Option<Box<BackendConn>>,
    errors: u32,
    deadline: Instant,
    listener: ListenerSpec,
    /// Recipients accepted in the current transaction.
    rcpts_in_txn: usize,
    /// The client (as told by a trusted PROXY header, if any).
    peer: SocketAddr,
    /// tlsfront's own address on this connection (the accepted socket's).
    local: SocketAddr,
    /// The client greeted with EHLO rather than HELO.
    esmtp: bool,
    /// Replies held back while the client's next pipelined command is already
    /// read (RFC 2920 §3.1): they leave together, in one write (one TLS
    /// record), before tlsfront waits for the client again.
    held: Vec<u8>,
}

/// What the listener learned about a connection before its session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prelude {
    Normal,
    /// Input arrived before the greeting.
    EarlyTalker,
    /// Over a connection cap: refuse with 421 and close.
    Refused(CloseReason),
}

/// The other end of a connection: the client's address (from a trusted
/// balancer's PROXY header, when there is one) and how it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub origin: Origin,
}

impl Peer {
    /// A client connected straight to tlsfront.
    pub fn direct(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            origin: Origin::Direct,
        }
    }
}

/// A new record for a connection of `peer` on `listener`.
fn new_record(shared: &Shared, listener: ListenerSpec, peer: Peer) -> Record {
    let mut record = Record::new(
        shared.session_id(),
        listener.addr,
        listener.mode,
        peer.addr,
        &shared.settings.hostname,
        &shared.settings.host_id,
    );
    record.origin = peer.origin;
    record
}

/// Writes the record of a connection refused without a reply.
pub fn record_refused(shared: &Shared, listener: ListenerSpec, peer: Peer, reason: CloseReason) {
    let mut record = RecordGuard::new(new_record(shared, listener, peer), shared.records.clone());
    record.close_reason = reason;
}

/// Runs one connection to its end; the record is written however it ends.
///
/// The session is built outside the async body: an async fn keeps a slot for
/// every local alive across an await, moved-from or not, and the record and
/// arguments would otherwise sit in the task next to the session for its
/// whole life.
pub fn run<S>(
    shared: Arc<Shared>,
    stream: S,
    listener: ListenerSpec,
    peer: Peer,
    local: SocketAddr,
    prelude: Prelude,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let record = new_record(&shared, listener, peer);
    let peer = peer.addr;
    // Boxed: the handshake hands the session back, and a by-value session
    // would get a second slot in the task for that.
    let session = Box::new(Session {
        record: RecordGuard::new(record, shared.records.clone()),
        io: Some(ClientIo::Plain(stream)),
        // Empty until input arrives; see `fill`.
        rbuf: BytesMut::new(),
        cutter: LineCutter::new(shared.settings.smtp.max_line),
        phase: Phase::Fresh,
        helo: None,
        tls_active: false,
        backend: None,
        errors: 0,
        deadline: Instant::now() + shared.settings.smtp.session_lifetime,
        listener,
        rcpts_in_txn: 0,
        held: Vec::new(),
        peer,
        local,
        esmtp: false,
        shared,
    });
    drive(session, prelude)
}

async fn drive<S>(mut session: Box<Session<S>>, prelude: Prelude)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let listener = session.listener;
    match prelude {
        Prelude::Normal => {}
        Prelude::Refused(reason) => {
            // A TLS client would only see garbage in a plaintext 421.
            if listener.mode == Mode::Starttls {
                let _ = tokio::time::timeout(
                    limits::REFUSAL_WRITE_TIMEOUT,
                    session.answer(&Local::TooManyConnections),
                )
                .await;
            }
            Box::pin(session.close(reason)).await;
            return;
        }
        Prelude::EarlyTalker => {
            // RFC 5321 §4.3.1: the client must wait for the greeting. Senders that
            // don't are almost always spam engines; tell them and hang up.
            let _ = session.answer(&Local::EarlyTalker).await;
            Box::pin(session.close(CloseReason::EarlyTalker)).await;
            return;
        }
    }
    if listener.mode == Mode::Implicit {
        match Box::pin(session.handshake()).await {
            Ok(s) => session = s,
            Err(_) => return,
        }
    }
    let greeting = Local::Greeting(session.shared.settings.hostname.clone());
    if let Err(reason) = session.answer(&greeting).await {
        session.record.close_reason = reason;
        return;
    }
    loop {
        match session.step().await {
            Step::Continue => {}
            Step::Close(reason) => {
                Box::pin(session.close(reason)).await;
                return;
            }
            // Boxed, like every rarely used large state, so the task of an
            // idle session is little more than the `Session` itself.
            Step::StartTls => match Box::pin(session.handshake()).await {
                Ok(s) => session = s,
                Err(_) => return,
            },
        }
    }
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn close(&mut self, reason: CloseReason) {
        self.record.close_reason = reason;
        match self.io.as_mut() {
            // Under TLS the last replies are only queued in rustls (encrypted,
            // not yet written): the shutdown below writes them together with
            // the close_notify alert, one write instead of two.
            Some(ClientIo::Tls(tls)) if !self.held.is_empty() => {
                let held = std::mem::take(&mut self.held);
                let _ = std::io::Write::write_all(&mut tls.get_mut().1.writer(), &held);
            }
            Some(_) => {
                let _ = self.release_held().await;
            }
            None => {}
        }
        // The client first: its last reply does not wait for the backend's QUIT.
        if let Some(io) = self.io.as_mut() {
            let _ = tokio::time::timeout(limits::CLIENT_SHUTDOWN_TIMEOUT, io.shutdown()).await;
        }
        if let Some(conn) = self.backend.take() {
            let mut conn = *conn;
            // Anything the backend sent that nobody read: recorded, and the
            // connection is not kept.
            if let Err(e) = conn.expect_quiet(Stage::EndOfSession)
                && self.record.backend_error.is_none()
            {
                self.record.backend_error = Some(e.failure().into());
            }
            // A session that ended normally with no transaction open leaves
            // its backend connection for the next one (if reuse is on).
            let clean_end = matches!(reason, CloseReason::ClientQuit | CloseReason::ClientClosed)
                && !self.phase.in_transaction()
                && !self.shared.shutdown.is_cancelled();
            let unkept = if clean_end {
                self.shared.backend.put_back(conn)
            } else {
                Some(conn)
            };
            if let Some(conn) = unkept {
                conn.quit().await;
            }
        }
    }

    /// Reads and handles one command.
    async fn step(&mut self) -> Step {
        let line = match self.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => {
                let limit = self.shared.settings.smtp.max_line;
                return match self.refuse(&Local::LineTooLong { limit }).await {
                    Ok(()) => Step::Continue,
                    Err(r) => Step::Close(r),
                };
            }
            Err(reason) => return Step::Close(reason),
        };
        // Boxed: the command's state (backend dialogue, DATA) exists only
        // while a command runs, not while the session waits for the next.
        // Kept small (see `size_tests`), since every command allocates it.
        match Box::pin(self.command(&line)).await {
            Ok(step) => step,
            Err(reason) => Step::Close(reason),
        }
    }

    /// Between transactions, a session whose backend connection others wait
    /// for (`backend.max_connections` are open) gives it up: an idle client
    /// must not hold the legacy MTA's capacity. Its next MAIL takes its turn.
    /// Whether it gave it up. Called by `fill` as the wait for the next
    /// command starts and whenever someone joins the line during it.
    pub(super) fn lend_backend(&mut self) -> bool {
        if self.phase.in_transaction()
            || self.backend.is_none()
            || self.shared.shutdown.is_cancelled()
            || !self.shared.backend.wanted()
        {
            return false;
        }
        let Some(conn) = self.backend.take() else {
            return false;
        };
        let mut conn = *conn;
        let unkept = match conn.expect_quiet(Stage::EndOfSession) {
            Ok(()) => self.shared.backend.put_back(conn),
            Err(_) => Some(conn),
        };
        if let Some(conn) = unkept {
            tokio::spawn(conn.quit());
        }
        true
    }

    /// Carries out what `decide` says one command line gets.
    async fn command(&mut self, line: &[u8]) -> Result<Step, CloseReason> {
        let policy = self.policy(line);
        match decide(self.phase, line, &policy) {
            Decision::Answer {
                reply,
                error: false,
            } => self.answer(&reply).await?,
            Decision::Answer { reply, error: true } => self.refuse(&reply).await?,
            Decision::TlsRequired => {
                self.record.tls_required_refusals += 1;
                self.refuse(&Local::StartTlsFirst).await?;
            }
            Decision::Greet { esmtp } => self.greet(line, esmtp).await?,
            Decision::StartTls => return Ok(Step::StartTls),
            Decision::Rset => self.rset(line).await?,
            Decision::Quit => {
                // Held, not sent: `close` sends it, under TLS in one write
                // with the close_notify alert.
                self.held.extend_from_slice(&Local::Bye.render());
                return Ok(Step::Close(CloseReason::ClientQuit));
            }
            Decision::Relay {
                what,
                tls_would_refuse,
            } => {
                if tls_would_refuse {
                    self.record.tls_required_would_refuse += 1;
                }
                match what {
                    Relayed::Auth => self.auth(line).await?,
                    Relayed::Mail => {
                        if let Some(reply) = self.relay(line, Verb::Mail).await?
                            && reply.is_success()
                        {
                            self.phase = Phase::Mail;
                            self.rcpts_in_txn = 0;
                        }
                    }
                    Relayed::Rcpt => {
                        if let Some(reply) = self.relay(line, Verb::Rcpt).await?
                            && reply.is_success()
                        {
                            self.phase = Phase::Rcpt;
                            self.rcpts_in_txn += 1;
                            self.record.recipients += 1;
                        }
                    }
                    Relayed::Other(verb) => {
                        self.relay(line, verb).await?;
                    }
                }
            }
            // Boxed, like opening a backend connection (`relay`): the largest
            // states, so every other command's future stays small.
            Decision::Data => Box::pin(self.data(line)).await?,
            Decision::Close { reply, reason } => {
                self.answer(&reply).await?;
                return Ok(Step::Close(reason));
            }
        }
        Ok(Step::Continue)
    }

    /// What `decide` needs to know besides the phase and the line.
    fn policy(&self, line: &[u8]) -> Policy {
        let smtp = &self.shared.settings.smtp;
        let cmd = Command::parse(line);
        Policy {
            tls_active: self.tls_active,
            tls_available: self.shared.tls_available(),
            auth_before_tls: smtp.auth_before_tls,
            require_tls: self.listener.require_tls,
            recipients_full: self.rcpts_in_txn >= smtp.max_recipients,
            extension_relayed: cmd.verb == Verb::Other
                && smtp
                    .relay_verbs
                    .iter()
                    .any(|v| v.as_bytes().eq_ignore_ascii_case(cmd.verb_raw))
                && self.shared.backend.announces(cmd.verb_raw),
        }
    }

    fn greeted_phase(&self) -> Phase {
        if self.helo.is_some() {
            Phase::Greeted
        } else {
            Phase::Fresh
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    fn future_size<A, B, C, D, E, G, F>(_: impl FnOnce(A, B, C, D, E, G) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn future_size2<A, B, F>(_: impl FnOnce(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every command boxes its future (so an idle session holds none):
    /// small enough for the allocator's per-thread cache (glibc's tcache
    /// takes up to 1032 bytes). It was 4.2 KiB, a larger allocation and
    /// copy per command, before opening a backend connection and DATA were
    /// boxed on their own.
    #[test]
    fn a_command_future_stays_small() {
        type T = tokio::net::TcpStream;
        let command = future_size2(Session::<T>::command);
        assert!(command <= 1024, "a command's future is {command} bytes");
    }

    /// An idle session costs its task plus the boxed `Session`: keep both
    /// small (they were 6 KiB and 1.3 KiB before the large states were boxed).
    #[test]
    fn idle_session_state_stays_small() {
        type T = tokio::net::TcpStream;
        let task = future_size(run::<T>);
        let session = std::mem::size_of::<Session<T>>();
        assert!(task <= 1024, "session task future is {task} bytes");
        assert!(session <= 1200, "Session is {session} bytes");
    }
}

//! One client connection, from greeting to close: an explicit state machine.
//!
//! tlsfront answers everything it can itself (greeting, EHLO, STARTTLS, NOOP,
//! RSET and QUIT outside a transaction) and opens the backend session only
//! when the client starts real work. Commands are handled strictly one at a
//! time, so replies to a pipelined group leave in the order of the commands,
//! and each reply leaves in one write.
//!
//! Invariants worth keeping in mind when changing this file:
//! - nothing read before the TLS handshake is ever used after it;
//! - the client never sees a 2xx for a message unless the backend sent it;
//! - if the client vanishes mid-DATA, the backend connection is dropped
//!   without an end-of-data line, so a partial message is never accepted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{BareLineEndings, ListenerSpec, RequireTls, Settings};
use crate::limits;
use crate::outcome::{CloseReason, Mode};
use crate::proxy::admission::Admission;
use crate::proxy::backend::{Backend, BackendConn, BackendError, ClientIdentity, OpenError};
use crate::proxy::metrics::Metrics;
use crate::proxy::records::{Record, RecordGuard, RecordSink, millis};
use crate::proxy::stream::ClientIo;
use crate::proxy::tls::TlsFront;
use crate::smtp::command::{self, Command, Verb};
use crate::smtp::data::DataScanner;
use crate::smtp::line::{Line, LineCutter};
use crate::smtp::reply::{Reply, local};
use crate::smtp::{ehlo, trace};

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
        let records = records.with_metrics(metrics.clone());
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
            next_id: AtomicU64::new(1),
            id_tag,
        })
    }

    /// The TLS front new handshakes use.
    pub fn tls(&self) -> Option<Arc<TlsFront>> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
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

/// Where the session is in the SMTP dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No HELO/EHLO yet (at the start, and again right after STARTTLS).
    Fresh,
    /// Greeted; no transaction.
    Greeted,
    /// MAIL accepted by the backend.
    Mail,
    /// At least one RCPT accepted by the backend.
    Rcpt,
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

/// What the client is told when the backend session breaks mid-dialogue.
fn lost_text(error: &BackendError) -> &'static str {
    match error {
        BackendError::Unsolicited { .. } => {
            "4.4.2 Backend out of step (unexpected reply), try again later"
        }
        _ => "4.4.2 Backend connection lost, try again later",
    }
}

/// Units of the message memory budget (`smtp.message_memory_mib`, default
/// [`limits::DATA_MEMORY_BUDGET`]) one message in flight takes: its
/// read buffer and the read-ahead of the client stream, in KiB.
const DATA_PERMITS: u32 = ((limits::DATA_CHUNK + limits::DATA_READ_AHEAD) / 1024) as u32;

/// The most command input read at once (from the stack; see `Session::fill`).
const COMMAND_READ: usize = 4096;

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

/// Writes the record of a connection refused without a reply.
pub fn record_refused(
    shared: &Shared,
    listener: ListenerSpec,
    peer: SocketAddr,
    reason: CloseReason,
) {
    let mut record = RecordGuard::new(
        Record::new(
            shared.session_id(),
            listener.addr,
            listener.mode,
            peer,
            &shared.settings.hostname,
        ),
        shared.records.clone(),
    );
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
    peer: SocketAddr,
    local: SocketAddr,
    prelude: Prelude,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let record = Record::new(
        shared.session_id(),
        listener.addr,
        listener.mode,
        peer,
        &shared.settings.hostname,
    );
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
                    session.say(421, "4.7.0 Too many connections, try again later"),
                )
                .await;
            }
            Box::pin(session.close(reason)).await;
            return;
        }
        Prelude::EarlyTalker => {
            // RFC 5321 §4.3.1: the client must wait for the greeting. Senders that
            // don't are almost always spam engines; tell them and hang up.
            let _ = session
                .say(
                    554,
                    "5.5.1 Error: SMTP protocol synchronization (input before the greeting)",
                )
                .await;
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
    let greeting = format!("220 {} ESMTP\r\n", session.shared.settings.hostname);
    if let Err(reason) = session.send(greeting.as_bytes()).await {
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
    fn io(&mut self) -> &mut ClientIo<S> {
        self.io
            .as_mut()
            .expect("client stream present outside the handshake")
    }

    async fn close(&mut self, reason: CloseReason) {
        self.record.close_reason = reason;
        if self.io.is_some() {
            let _ = self.release_held().await;
        }
        if let Some(conn) = self.backend.take() {
            let mut conn = *conn;
            // Anything the backend sent that nobody read: recorded, and the
            // connection is not kept.
            if let Err(e) = conn.expect_quiet("end of session")
                && self.record.backend_error.is_none()
            {
                self.record.backend_error = Some(e.token().to_string());
            }
            // A session that ended normally with no transaction open leaves
            // its backend connection for the next one (if reuse is on).
            let clean_end = matches!(reason, CloseReason::ClientQuit | CloseReason::ClientClosed)
                && matches!(self.phase, Phase::Fresh | Phase::Greeted)
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
        if let Some(io) = self.io.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
        }
    }

    /// Sends one reply: in one write, flushed (one TLS record when
    /// encrypted), together with any held back; or held back itself while a
    /// further pipelined command is already in the input buffer.
    async fn send(&mut self, bytes: &[u8]) -> Flow {
        if self.held.len() + bytes.len() <= limits::HELD_REPLIES && self.rbuf.contains(&b'\n') {
            self.held.extend_from_slice(bytes);
            return Ok(());
        }
        if self.held.is_empty() {
            return self.write_out(bytes).await;
        }
        self.held.extend_from_slice(bytes);
        self.release_held().await
    }

    /// Writes the replies held back, if any: before every wait for the client.
    async fn release_held(&mut self) -> Flow {
        if self.held.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.held);
        self.write_out(&out).await
    }

    async fn write_out(&mut self, bytes: &[u8]) -> Flow {
        let io = self.io();
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        match tokio::time::timeout(limits::WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(CloseReason::ClientIoError),
            Err(_) => Err(CloseReason::ClientTimeout),
        }
    }

    async fn say(&mut self, code: u16, text: &str) -> Flow {
        self.send(&local(code, &[text])).await
    }

    /// A local error reply; too many of them end the session.
    async fn refuse(&mut self, code: u16, text: &str) -> Flow {
        self.errors += 1;
        if self.errors >= self.shared.settings.smtp.max_errors {
            self.say(421, "4.7.0 Too many errors, closing connection")
                .await?;
            return Err(CloseReason::ProtocolError);
        }
        self.say(code, text).await
    }

    /// Waits for more client input, bounded by `timeout` and the session
    /// lifetime. Waiting for a command also ends on shutdown; message content
    /// is read on to its end (the grace time bounds it).
    async fn fill(&mut self, timeout: Duration, input: Input) -> Flow {
        self.release_held().await?;
        let lifetime_left = self.deadline.saturating_duration_since(Instant::now());
        let (wait, on_timeout) = if lifetime_left < timeout {
            (lifetime_left, CloseReason::SessionLifetime)
        } else {
            (timeout, CloseReason::ClientTimeout)
        };
        // Commands are read through a buffer on the stack, so a session
        // waiting for its next command holds no read buffer at all (the
        // dominant per-session cost of idle connections otherwise). DATA
        // reads straight into `rbuf`, which `data` sized for throughput.
        let in_data = input == Input::Content;
        if in_data {
            self.rbuf.reserve(4096);
        } else if self.rbuf.is_empty() {
            // Also drops a DATA-sized buffer once the message is done.
            self.rbuf = BytesMut::new();
        }
        // On shutdown a session between transactions ends at once; one in a
        // transaction gets until the end of the grace time to finish it.
        let stop = if matches!(self.phase, Phase::Mail | Phase::Rcpt) {
            self.shared.drain_over.clone()
        } else {
            self.shared.shutdown.clone()
        };
        let io = self.io.as_mut().expect("client stream present");
        let rbuf = &mut self.rbuf;
        let read = std::future::poll_fn(|cx| {
            if in_data {
                // Cancel-safe, so a fresh future per poll is fine.
                return std::pin::pin!(io.read_buf(&mut *rbuf)).poll(cx);
            }
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); COMMAND_READ];
            let mut chunk = ReadBuf::uninit(&mut chunk);
            std::task::ready!(Pin::new(&mut *io).poll_read(cx, &mut chunk))?;
            rbuf.extend_from_slice(chunk.filled());
            Poll::Ready(Ok(chunk.filled().len()))
        });
        let read = tokio::time::timeout(wait, read);
        let result = tokio::select! {
            r = read => r,
                        _ = stop.cancelled(), if !in_data => {
                self.say(421, "4.3.2 Service shutting down, closing connection").await?;
                return Err(CloseReason::Shutdown);
            }
        };
        match result {
            Ok(Ok(0)) => Err(CloseReason::ClientClosed),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(read_failure(&e)),
            Err(_) => {
                let _ = self
                    .say(421, "4.4.2 Timeout exceeded, closing connection")
                    .await;
                Err(on_timeout)
            }
        }
    }

    /// Takes, without waiting, what the client has already sent beyond the
    /// last read, until `rbuf` holds `limit` bytes. A TLS read returns one
    /// record (at most 16 KiB) at a time; batching them means fewer scanner
    /// passes and fewer, larger backend writes. An end of stream is left for
    /// the next `fill` to see.
    async fn read_ready(&mut self, limit: usize) -> Flow {
        let io = self.io.as_mut().expect("client stream present");
        let rbuf = &mut self.rbuf;
        // Room for the whole batch up front: `read_buf` on a full BytesMut
        // would grow it by only 64 bytes.
        rbuf.reserve(limit.saturating_sub(rbuf.len()));
        std::future::poll_fn(|cx| {
            while rbuf.len() < limit {
                let read = std::pin::pin!(io.read_buf(&mut *rbuf));
                match read.poll(cx) {
                    std::task::Poll::Pending | std::task::Poll::Ready(Ok(0)) => break,
                    std::task::Poll::Ready(Ok(_)) => {}
                    std::task::Poll::Ready(Err(e)) => {
                        return std::task::Poll::Ready(Err(read_failure(&e)));
                    }
                }
            }
            std::task::Poll::Ready(Ok(()))
        })
        .await
    }

    async fn next_line(&mut self) -> Result<Option<BytesMut>, CloseReason> {
        loop {
            match self.cutter.next_line(&mut self.rbuf) {
                Line::Complete(line) => return Ok(Some(line)),
                Line::TooLong => return Ok(None),
                Line::NeedMore => {
                    self.fill(self.shared.settings.smtp.command_timeout, Input::Command)
                        .await?
                }
            }
        }
    }

    /// Reads and handles one command.
    async fn step(&mut self) -> Step {
        let line = match self.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => {
                let limit = self.shared.settings.smtp.max_line;
                return match self
                    .refuse(500, &format!("5.5.2 Line too long (limit {limit} bytes)"))
                    .await
                {
                    Ok(()) => Step::Continue,
                    Err(r) => Step::Close(r),
                };
            }
            Err(reason) => return Step::Close(reason),
        };
        // Boxed: the command's state (backend dialogue, DATA) exists only
        // while a command runs, not while the session waits for the next.
        match Box::pin(self.command(&line)).await {
            Ok(step) => step,
            Err(reason) => Step::Close(reason),
        }
    }

    async fn command(&mut self, line: &[u8]) -> Result<Step, CloseReason> {
        if let Some(byte) = command::forbidden_byte(line) {
            // Never valid SMTP: old parsers cut the line at a NUL, and a
            // backend that ends lines on CR would see several commands.
            let what = match byte {
                0 => "NUL character",
                b'\r' => "CR inside a line",
                _ => "control character",
            };
            self.refuse(500, &format!("5.5.2 Error: {what} in command"))
                .await?;
            return Ok(Step::Continue);
        }
        let cmd = Command::parse(line);
        let in_transaction = matches!(self.phase, Phase::Mail | Phase::Rcpt);
        match cmd.verb {
            Verb::Ehlo | Verb::Helo => self.helo(&cmd).await?,
            Verb::StartTls => {
                if self.tls_active {
                    self.refuse(554, "5.5.1 Error: TLS already active").await?;
                } else if self.shared.tls().is_none() {
                    self.refuse(502, "5.5.1 Error: command not implemented")
                        .await?;
                } else if !cmd.args.is_empty() {
                    self.refuse(501, "5.5.4 Syntax error (no parameters allowed)")
                        .await?;
                } else if in_transaction {
                    self.refuse(503, "5.5.1 Error: MAIL transaction in progress")
                        .await?;
                } else {
                    return Ok(Step::StartTls);
                }
            }
            Verb::Noop => self.say(250, "2.0.0 Ok").await?,
            Verb::Rset => {
                // Keep the backend's transaction state in step with the client's;
                // if the backend is gone, so is its transaction: RSET succeeds anyway.
                let backend_reply = match self.backend.as_mut() {
                    Some(conn) => match conn.command(line, "RSET").await {
                        Ok(reply) if reply.code != 421 => Some(reply),
                        _ => {
                            self.backend = None;
                            None
                        }
                    },
                    None => None,
                };
                self.phase = self.greeted_phase();
                match backend_reply {
                    Some(reply) => self.send(&reply.raw).await?,
                    None => self.say(250, "2.0.0 Ok").await?,
                }
            }
            Verb::Quit => {
                self.say(221, "2.0.0 Bye").await?;
                return Ok(Step::Close(CloseReason::ClientQuit));
            }
            Verb::Help => {
                self.say(
                    214,
                    "2.0.0 Commands: EHLO HELO STARTTLS MAIL RCPT DATA RSET NOOP QUIT VRFY",
                )
                .await?
            }
            Verb::Mail => {
                if self.phase == Phase::Fresh {
                    self.refuse(503, "5.5.1 Error: send HELO/EHLO first")
                        .await?;
                } else if in_transaction {
                    self.refuse(503, "5.5.1 Error: nested MAIL command").await?;
                } else if !self.tls_policy_allows().await? {
                    // refused (530) or counted by tls_policy_allows
                } else if let Some(reply) = self.relay(line, cmd.verb).await?
                    && reply.is_success()
                {
                    self.phase = Phase::Mail;
                    self.rcpts_in_txn = 0;
                }
            }
            Verb::Rcpt => {
                if !in_transaction {
                    self.refuse(503, "5.5.1 Error: need MAIL command").await?;
                } else if self.rcpts_in_txn >= self.shared.settings.smtp.max_recipients {
                    // RFC 5321 §4.5.3.1.10: 452 asks the client to send the rest later.
                    self.say(452, "4.5.3 Error: too many recipients").await?;
                } else if let Some(reply) = self.relay(line, cmd.verb).await?
                    && reply.is_success()
                {
                    self.phase = Phase::Rcpt;
                    self.rcpts_in_txn += 1;
                    self.record.recipients += 1;
                }
            }
            Verb::Data => {
                if !cmd.args.is_empty() {
                    self.refuse(501, "5.5.4 Syntax: DATA").await?;
                } else if self.phase == Phase::Mail {
                    self.refuse(554, "5.5.1 Error: no valid recipients").await?;
                } else if self.phase != Phase::Rcpt {
                    self.refuse(503, "5.5.1 Error: need RCPT command").await?;
                } else {
                    // Message buffers come out of one budget shared by all
                    // sessions, so thousands in DATA cannot exhaust memory.
                    match self
                        .shared
                        .data_memory
                        .clone()
                        .try_acquire_many_owned(DATA_PERMITS)
                    {
                        Ok(permit) => {
                            self.data(line).await?;
                            drop(permit);
                        }
                        Err(_) => {
                            tracing::warn!(session = %self.record.session, "message memory budget exhausted");
                            self.say(451, "4.3.1 Insufficient system resources, try again later")
                                .await?;
                        }
                    }
                }
            }
            Verb::Bdat => {
                // The chunk that follows would be read as commands: a message
                // smuggled into the command stream. Never offered, so end here.
                self.say(421, "4.5.0 BDAT was not offered, closing connection")
                    .await?;
                return Ok(Step::Close(CloseReason::ProtocolError));
            }
            Verb::Auth => {
                if !self.tls_active && !self.shared.settings.smtp.auth_before_tls {
                    self.refuse(
                        538,
                        "5.7.11 Encryption required for requested authentication mechanism",
                    )
                    .await?;
                } else if self.phase == Phase::Fresh {
                    self.refuse(503, "5.5.1 Error: send HELO/EHLO first")
                        .await?;
                } else if in_transaction {
                    self.refuse(503, "5.5.1 Error: MAIL transaction in progress")
                        .await?;
                } else {
                    self.auth(line).await?;
                }
            }
            Verb::Vrfy | Verb::Expn | Verb::Other => {
                if command::NEVER_RELAYED
                    .iter()
                    .any(|b| b.eq_ignore_ascii_case(cmd.verb_raw))
                {
                    self.refuse(502, "5.5.1 Error: command not implemented")
                        .await?;
                } else if cmd.verb == Verb::Other && !self.relays_verb(cmd.verb_raw) {
                    // Only verbs on the admin's list (`smtp.relay_verbs`) that
                    // the backend announced are relayed: message text pipelined
                    // after a failed DATA, a scanner's junk, or a verb that sets
                    // backend state (Sendmail's VERB) never reaches the backend.
                    self.refuse(500, "5.5.2 Error: command not recognized")
                        .await?;
                } else if self.phase == Phase::Fresh {
                    // Scanners' junk never reaches the backend.
                    self.refuse(503, "5.5.1 Error: send HELO/EHLO first")
                        .await?;
                } else if self.tls_policy_allows().await? {
                    self.relay(line, cmd.verb).await?;
                }
            }
            Verb::Invalid => self.refuse(500, "5.5.2 Error: bad syntax").await?,
        }
        Ok(Step::Continue)
    }

    /// `require_tls` on this listener: refuses (530) work before TLS, or in
    /// log-only mode counts what would have been refused.
    async fn tls_policy_allows(&mut self) -> Result<bool, CloseReason> {
        if self.tls_active {
            return Ok(true);
        }
        match self.listener.require_tls {
            RequireTls::Off => Ok(true),
            RequireTls::LogOnly => {
                self.record.tls_required_would_refuse += 1;
                Ok(true)
            }
            RequireTls::On => {
                self.record.tls_required_refusals += 1;
                self.refuse(530, "5.7.0 Must issue a STARTTLS command first")
                    .await?;
                Ok(false)
            }
        }
    }

    fn received_header(&self) -> String {
        let helo = String::from_utf8_lossy(self.helo.as_deref().unwrap_or(b"unknown")).into_owned();
        let date = jiff::Zoned::now()
            .with_time_zone(jiff::tz::TimeZone::UTC)
            .strftime("%a, %d %b %Y %H:%M:%S +0000")
            .to_string();
        let r = &self.record;
        let tls = match (&r.tls_version, &r.cipher_suite) {
            (Some(v), Some(s)) => Some((
                v.as_str(),
                s.as_str(),
                r.kx_group.as_deref().unwrap_or("none"),
            )),
            _ => None,
        };
        trace::received_header(&trace::Hop {
            helo: &helo,
            client: self.peer,
            hostname: &self.shared.settings.hostname,
            session: &r.session,
            esmtp: self.esmtp,
            tls,
            date: &date,
        })
    }

    /// Whether an extension verb is relayed: on the admin's allowlist and
    /// announced by the backend's EHLO.
    fn relays_verb(&self, verb: &[u8]) -> bool {
        self.shared
            .settings
            .smtp
            .relay_verbs
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(verb))
            && self
                .shared
                .backend
                .capabilities()
                .keywords
                .iter()
                .any(|k| ehlo::keyword(k).as_bytes().eq_ignore_ascii_case(verb))
    }

    fn greeted_phase(&self) -> Phase {
        if self.helo.is_some() {
            Phase::Greeted
        } else {
            Phase::Fresh
        }
    }

    async fn helo(&mut self, cmd: &Command<'_>) -> Flow {
        let Some(name) = cmd.first_arg() else {
            let verb = if cmd.verb == Verb::Ehlo {
                "EHLO"
            } else {
                "HELO"
            };
            return self
                .refuse(501, &format!("5.5.4 Syntax: {verb} hostname"))
                .await;
        };
        // A domain or address literal: printable ASCII only. It is passed to the
        // backend in its own EHLO, so nothing else may get through.
        if !name.iter().all(|b| (0x21..0x7f).contains(b)) || name.len() > 255 {
            return self.refuse(501, "5.5.4 Syntax: invalid host name").await;
        }
        // EHLO implies RSET (RFC 5321 §4.1.4): clear a transaction the backend holds.
        if matches!(self.phase, Phase::Mail | Phase::Rcpt)
            && let Some(conn) = self.backend.as_mut()
            && conn.command(b"RSET", "RSET").await.is_err()
        {
            self.backend = None;
        }
        self.helo = Some(name.to_vec());
        self.esmtp = cmd.verb == Verb::Ehlo;
        self.record.helo = Some(String::from_utf8_lossy(name).into_owned());
        self.phase = Phase::Greeted;
        let hostname = self.shared.settings.hostname.clone();
        if cmd.verb == Verb::Helo {
            return self.say(250, &hostname).await;
        }
        let offer = ehlo::Offer {
            tls_active: self.tls_active,
            starttls_available: self.shared.tls().is_some(),
            auth_before_tls: self.shared.settings.smtp.auth_before_tls,
        };
        if offer.starttls_available && !offer.tls_active {
            self.record.starttls_offered = true;
        }
        let reply = ehlo::render(
            &hostname,
            &self.shared.backend.capabilities().keywords,
            offer,
        );
        self.send(&reply).await
    }

    /// STARTTLS accepted (or an implicit-TLS connection): hand the connection
    /// to rustls. Consumes the session: on failure it ends, with its record.
    async fn handshake(mut self: Box<Self>) -> Result<Box<Self>, ()> {
        let shared = self.shared.clone();
        let Some(front) = shared.tls() else {
            self.record.close_reason = CloseReason::ProtocolError;
            return Err(());
        };
        if self.record.mode == Mode::Starttls {
            // CVE-2011-0411: whatever was pipelined after STARTTLS was sent in
            // clear and must not be executed inside the TLS session.
            self.record.pipelined_after_starttls += self.rbuf.len() as u64;
            if !self.rbuf.is_empty() {
                tracing::warn!(session = %self.record.session, bytes = self.rbuf.len(), "discarded input pipelined after STARTTLS");
            }
            self.rbuf.clear();
            self.cutter = LineCutter::new(self.shared.settings.smtp.max_line);
            self.record.starttls_used = true;
            if let Err(reason) = self.say(220, "2.0.0 Ready to start TLS").await {
                self.record.close_reason = reason;
                return Err(());
            }
            // The client's identity is forgotten after STARTTLS, so is the
            // backend session opened under it.
            if let Some(conn) = self.backend.take() {
                tokio::spawn((*conn).quit());
            }
        }
        // Nothing may stay held back in clear once the handshake starts.
        if let Err(reason) = self.release_held().await {
            self.record.close_reason = reason;
            return Err(());
        }
        let Some(ClientIo::Plain(stream)) = self.io.take() else {
            self.record.close_reason = CloseReason::ProtocolError;
            return Err(());
        };
        match front.handshake(stream, &mut self.record).await {
            Some(stream) => {
                self.io = Some(ClientIo::Tls(Box::new(stream)));
                self.tls_active = true;
                self.helo = None;
                self.phase = Phase::Fresh;
                Ok(self)
            }
            None => {
                self.record.close_reason = if self.record.tls == crate::outcome::TlsOutcome::Timeout
                {
                    CloseReason::HandshakeTimeout
                } else {
                    CloseReason::HandshakeFailed
                };
                Err(())
            }
        }
    }

    /// Makes sure a backend session exists. `Ok(false)`: the client already
    /// got a reply explaining why not.
    async fn ensure_backend(&mut self) -> Result<bool, CloseReason> {
        if self.backend.is_some() {
            return Ok(true);
        }
        let helo = self
            .helo
            .clone()
            .unwrap_or_else(|| self.shared.settings.hostname.clone().into_bytes());
        self.record.backend_contacted = true;
        self.record.backend_addr = Some(self.shared.backend.addr().to_string());
        let identity = ClientIdentity {
            client: self.peer,
            local: self.local,
            esmtp: self.esmtp,
        };
        match self.shared.backend.session(&helo, Some(&identity)).await {
            Ok(conn) => {
                self.record.backend_reused = conn.reused();
                if !conn.reused() {
                    self.record.backend_connect_ms = Some(millis(conn.connect_time));
                }
                self.record.backend_identity = conn.identity.map(str::to_string);
                if let Some((version, suite)) = &conn.tls {
                    self.record.backend_tls_version = Some(version.clone());
                    self.record.backend_cipher_suite = Some(suite.clone());
                }
                self.backend = Some(Box::new(conn));
                Ok(true)
            }
            Err(OpenError::Unavailable(e)) => {
                tracing::warn!(session = %self.record.session, error = %e, "backend unavailable");
                self.record.backend_error = Some(e.token().to_string());
                self.say(
                    451,
                    "4.4.1 Backend temporarily unavailable, try again later",
                )
                .await?;
                Ok(false)
            }
            Err(OpenError::Refused(reply)) => {
                tracing::warn!(session = %self.record.session, reply = %reply.summary(), "backend refused the session");
                self.record.backend_error = Some(format!("refused_{}", reply.code));
                self.send(&reply.raw).await?;
                if reply.code == 421 {
                    return Err(CloseReason::BackendClosing);
                }
                Ok(false)
            }
        }
    }

    /// Forwards one command line to the backend and its reply to the client.
    /// `Ok(None)`: no backend reply (the client got tlsfront's 4xx instead).
    async fn relay(&mut self, line: &[u8], verb: Verb) -> Result<Option<Reply>, CloseReason> {
        if !self.ensure_backend().await? {
            return Ok(None);
        }
        let conn = self.backend.as_mut().expect("ensured");
        if verb.leaves_backend_state() {
            conn.mark_stateful();
        }
        match conn.command(line, "command").await {
            Ok(reply) => {
                self.send(&reply.raw).await?;
                if reply.code == 421 {
                    self.backend = None;
                    return Err(CloseReason::BackendClosing);
                }
                Ok(Some(reply))
            }
            Err(e) => {
                self.backend_lost(&e).await?;
                Ok(None)
            }
        }
    }

    async fn backend_lost(&mut self, error: &BackendError) -> Flow {
        tracing::warn!(session = %self.record.session, error = %error, "backend connection lost");
        self.record.backend_error = Some(error.token().to_string());
        self.backend = None;
        self.phase = self.greeted_phase();
        self.say(451, lost_text(error)).await
    }

    async fn auth(&mut self, line: &[u8]) -> Flow {
        let mut reply = self.relay(line, Verb::Auth).await?;
        // SASL exchange: each 334 challenge gets one client line, forwarded as
        // is. An over-long line, or one with control characters (a CR would
        // split it into two lines at some backends), cancels the exchange
        // instead ("*", RFC 4954 §4), which the backend answers with 501.
        while let Some(r) = reply.take().filter(|r| r.code == 334) {
            drop(r);
            let answer = match self.next_line().await? {
                Some(l) if command::forbidden_byte(&l).is_none() => l,
                _ => BytesMut::from(&b"*"[..]),
            };
            reply = self.relay(&answer, Verb::Auth).await?;
        }
        Ok(())
    }

    async fn data(&mut self, line: &[u8]) -> Flow {
        // The replies to MAIL and RCPT must really have been theirs before
        // the message goes: a stale 250 taken for a refused recipient would
        // otherwise leave that recipient without a bounce.
        if let Some(conn) = self.backend.as_mut() {
            let addr = conn.addr;
            match conn.confirm_in_step("NOOP before DATA").await {
                Ok(true) => {}
                Ok(false) => {
                    let phase = "NOOP before DATA";
                    return self
                        .backend_lost(&BackendError::Closed { addr, phase })
                        .await;
                }
                Err(e) => return self.backend_lost(&e).await,
            }
        }
        let Some(reply) = self.relay(line, Verb::Data).await? else {
            return Ok(());
        };
        if reply.code != 354 {
            return Ok(());
        }
        let data_timeout = self.shared.settings.smtp.data_timeout;
        let mut scanner = DataScanner::new();
        // Holds only what the scanner adds or alters (and the chunks around
        // it); clean content is written from `rbuf` and never lands here.
        let mut out = BytesMut::new();
        let mut backend_error: Option<BackendError> = None;
        let reject_bare = self.shared.settings.smtp.bare_line_endings == BareLineEndings::Reject;
        if self.shared.settings.smtp.received_header {
            // Prepended, not inserted: the client's own bytes stay untouched.
            out.extend_from_slice(self.received_header().as_bytes());
        }
        // A read error met while batching, reported once the bytes read before
        // it are handled (they may complete the message).
        let mut read_error = None;
        self.io().set_read_ahead(true);
        loop {
            if !self.rbuf.is_empty() {
                let fed = scanner.feed_split(&self.rbuf, &mut out);
                self.record.bytes += fed.consumed as u64;
                // Rejecting: once a bare line end is seen nothing more is sent, and
                // the backend connection is dropped below (no end-of-data line).
                let refusing = reject_bare && scanner.bare_line_ends > 0;
                if backend_error.is_none() && !refusing {
                    // Content passed on unchanged goes straight from the read
                    // buffer; only chunks the scanner altered are copied.
                    let bytes: &[u8] = if out.is_empty() {
                        &self.rbuf[fed.tail]
                    } else {
                        out.extend_from_slice(&self.rbuf[fed.tail]);
                        &out
                    };
                    if let Some(conn) = self.backend.as_mut().filter(|_| !bytes.is_empty()) {
                        // A backend that answers before the end of data (or
                        // sends anything) is out of step: its next reply
                        // could not be trusted to be the end-of-data reply.
                        let sent = match conn.expect_quiet("message content") {
                            Ok(()) => conn.write_all(bytes, "message content").await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = sent {
                            // Keep reading to the end of data, then say 451.
                            backend_error = Some(e);
                        }
                    }
                }
                self.rbuf.advance(fed.consumed);
                out.clear();
                if fed.end {
                    break;
                }
            }
            if self.rbuf.capacity() - self.rbuf.len() < limits::DATA_CHUNK / 2 {
                self.rbuf.reserve(limits::DATA_CHUNK);
            }
            let mut result = match read_error.take() {
                Some(reason) => Err(reason),
                None => self.fill(data_timeout, Input::Content).await,
            };
            if result.is_ok()
                && let Err(reason) = self.read_ready(limits::DATA_CHUNK).await
            {
                if self.rbuf.is_empty() {
                    result = Err(reason);
                } else {
                    read_error = Some(reason);
                }
            }
            if let Err(reason) = result {
                // Dropping the backend connection without an end-of-data line
                // makes the backend discard the partial message.
                self.backend = None;
                return Err(match reason {
                    CloseReason::ClientClosed => CloseReason::ClientClosedInData,
                    other => other,
                });
            }
        }
        self.io().set_read_ahead(false);
        self.record.bare_line_endings += scanner.bare_line_ends;
        self.record.control_dot_lines += scanner.control_dot_lines;
        if scanner.control_dot_lines > 0 {
            tracing::warn!(
                session = %self.record.session,
                lines = scanner.control_dot_lines,
                "message lines that start with control characters and a dot (dot-stuffed)"
            );
        }
        if scanner.bare_line_ends > 0 {
            tracing::warn!(
                session = %self.record.session,
                bare = scanner.bare_line_ends,
                dots_stuffed = scanner.stuffed,
                "bare CR/LF line endings in message content ({})",
                if reject_bare { "rejected" } else { "normalised to CRLF" }
            );
        }
        self.phase = self.greeted_phase();
        if reject_bare && scanner.bare_line_ends > 0 && backend_error.is_none() {
            self.record.messages_rejected += 1;
            self.backend = None;
            return self
                .say(
                    550,
                    "5.5.2 Message contains bare CR or LF line endings; not accepted",
                )
                .await;
        }
        if let Some(error) = backend_error {
            self.record.messages_rejected += 1;
            tracing::warn!(session = %self.record.session, error = %error, "backend failed during message content");
            self.record.backend_error = Some(error.token().to_string());
            self.backend = None;
            return self
                .say(
                    451,
                    "4.4.2 Backend connection lost during message transfer; message not accepted",
                )
                .await;
        }
        let timeout = self.shared.backend.settings.data_timeout;
        let conn = self.backend.as_mut().expect("backend present during DATA");
        // A 2xx is passed on only once the backend is shown to be in step: a
        // backend that answered early has its real answer still coming.
        let mut gone = false;
        let reply = match conn.read_reply("end of data", timeout).await {
            Ok(reply) if reply.is_success() => {
                match conn.confirm_in_step("NOOP after end of data").await {
                    Ok(alive) => {
                        gone = !alive;
                        Ok(reply)
                    }
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        if gone {
            self.backend = None;
        }
        match reply {
            Ok(reply) => {
                if reply.is_success() {
                    self.record.messages_accepted += 1;
                } else {
                    self.record.messages_rejected += 1;
                }
                self.send(&reply.raw).await?;
                if reply.code == 421 {
                    self.backend = None;
                    return Err(CloseReason::BackendClosing);
                }
                Ok(())
            }
            Err(e) => {
                self.record.messages_rejected += 1;
                self.backend_lost(&e).await
            }
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    fn future_size<A, B, C, D, E, G, F>(_: impl FnOnce(A, B, C, D, E, G) -> F) -> usize {
        std::mem::size_of::<F>()
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

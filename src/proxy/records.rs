//! Handshake records: one JSON object per line per connection, for machines.
//!
//! Sessions hand their finished record to a single writer task over a channel,
//! so a slow disk never stalls a session and lines never interleave. The record
//! travels inside a [`RecordGuard`] that sends it when dropped, so a connection
//! writes exactly one record however its session ends, even when aborted.
//!
//! Records carry what peers sent (SNI, HELO, ClientHello lists), so each is
//! bounded before it leaves the guard ([`Record::bound`]) and the queue to the
//! writer is bounded too: a flood of hostile handshakes costs at most
//! `MAX_RECORD_BYTES` per connection on disk, and records the disk cannot
//! take are dropped and counted, never waited for. The file itself holds
//! client addresses: created 0640, never through a symbolic link, and only
//! a regular file (a FIFO would block the writer forever).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::limits::{
    self, MAX_QUEUED_RECORDS, MAX_RECORD_BYTES, MAX_RECORD_LIST, MAX_RECORD_STRING,
    RECORD_DROP_WARN_INTERVAL,
};
use crate::outcome::{BackendErrorName, CloseReason, HandshakeFailure, Mode, Origin, TlsOutcome};
use crate::wire::clienthello::HelloSummary;
use crate::wire::offer::Offer;

/// One connection's record. Field names are a stable interface (docs/records.md).
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// When the session ended (RFC 3339, UTC).
    pub ts: String,
    /// The tlsfront host that wrote it (`server.host_id`): with `session`,
    /// unique across a fleet's merged record files.
    pub host: String,
    pub session: String,
    pub listener: String,
    pub mode: Mode,
    /// How the connection came: direct, through a balancer, or the
    /// balancer's own health check (never a sender).
    pub origin: Origin,
    pub client_ip: String,
    pub client_port: u16,
    pub server_hostname: String,
    pub sni: Option<String>,
    pub starttls_offered: bool,
    pub starttls_used: bool,
    pub tls: TlsOutcome,
    pub tls_version: Option<String>,
    pub cipher_suite: Option<String>,
    pub kx_group: Option<String>,
    pub cert_subject: Option<String>,
    pub cert_key_type: Option<String>,
    pub self_signed: bool,
    pub resumed: Option<bool>,
    pub handshake_ms: Option<f64>,
    pub failure_reason: Option<HandshakeFailure>,
    pub failure_detail: Option<String>,
    /// What the client offered, in short (every session that sent a ClientHello).
    pub offer: Option<Offer>,
    /// The full lists the client offered (failed handshakes only).
    pub client_hello: Option<HelloSummary>,
    /// Bytes the client sent after STARTTLS before the handshake (discarded).
    pub pipelined_after_starttls: u64,
    pub helo: Option<String>,
    pub messages_accepted: u64,
    pub messages_rejected: u64,
    pub recipients: u64,
    pub bytes: u64,
    /// Bare CR/LF line endings found in message content (normalised or refused).
    pub bare_line_endings: u64,
    /// Message lines that would read as a dot line to a backend that drops
    /// control characters (`\0.`, `.\0`): dot-stuffed.
    pub control_dot_lines: u64,
    /// Commands refused with 530 because the listener requires TLS.
    pub tls_required_refusals: u64,
    /// Commands a `require_tls = "log"` listener would have refused.
    pub tls_required_would_refuse: u64,
    pub backend_contacted: bool,
    pub backend_addr: Option<String>,
    pub backend_connect_ms: Option<f64>,
    /// The backend connection was kept from an earlier session (`backend.reuse_idle_time`).
    pub backend_reused: bool,
    /// How the client's identity reached the backend: `xclient`, `proxy_v1`, `proxy_v2`.
    pub backend_identity: Option<String>,
    /// TLS on the backend hop (`backend.tls`), if any.
    pub backend_tls_version: Option<String>,
    pub backend_cipher_suite: Option<String>,
    /// The last backend failure seen by this session (docs/records.md).
    pub backend_error: Option<BackendErrorName>,
    pub close_reason: CloseReason,
    pub duration_ms: f64,
    /// Something the peer sent was cut to keep the record bounded (see [`Record::bound`]).
    pub truncated: bool,
}

impl Record {
    pub fn new(
        session: String,
        listener: SocketAddr,
        mode: Mode,
        client: SocketAddr,
        hostname: &str,
        host: &str,
    ) -> Self {
        Record {
            ts: String::new(),
            host: host.to_string(),
            session,
            listener: listener.to_string(),
            mode,
            origin: Origin::Direct,
            client_ip: client.ip().to_canonical().to_string(),
            client_port: client.port(),
            server_hostname: hostname.to_string(),
            sni: None,
            starttls_offered: false,
            starttls_used: false,
            tls: TlsOutcome::NotAttempted,
            tls_version: None,
            cipher_suite: None,
            kx_group: None,
            cert_subject: None,
            cert_key_type: None,
            self_signed: false,
            resumed: None,
            handshake_ms: None,
            failure_reason: None,
            failure_detail: None,
            offer: None,
            client_hello: None,
            pipelined_after_starttls: 0,
            helo: None,
            messages_accepted: 0,
            messages_rejected: 0,
            recipients: 0,
            bytes: 0,
            bare_line_endings: 0,
            control_dot_lines: 0,
            tls_required_refusals: 0,
            tls_required_would_refuse: 0,
            backend_contacted: false,
            backend_addr: None,
            backend_connect_ms: None,
            backend_reused: false,
            backend_identity: None,
            backend_tls_version: None,
            backend_cipher_suite: None,
            backend_error: None,
            close_reason: CloseReason::Aborted,
            duration_ms: 0.0,
            truncated: false,
        }
    }

    /// Bounds what a peer can make this record hold, before it is logged and
    /// written: `sni` keeps only host-name characters (so it cannot carry a
    /// line break or a terminal escape into a report), every string is cut to
    /// `MAX_RECORD_STRING` bytes of JSON, every ClientHello list to
    /// `MAX_RECORD_LIST` entries, and the whole line to `MAX_RECORD_BYTES`
    /// (the largest list gives way first). `truncated` says whether anything
    /// was cut or dropped. The facts derived from the full input (the
    /// `failure_reason`) are already set and stay exact.
    pub fn bound(&mut self) {
        let mut cut = false;
        if let Some(sni) = &mut self.sni {
            let before = sni.len();
            sni.retain(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            cut |= sni.len() != before;
        }
        for s in [
            &mut self.ts,
            &mut self.host,
            &mut self.session,
            &mut self.listener,
            &mut self.client_ip,
            &mut self.server_hostname,
        ] {
            cut |= cut_json(s, MAX_RECORD_STRING);
        }
        for s in [
            &mut self.sni,
            &mut self.tls_version,
            &mut self.cipher_suite,
            &mut self.kx_group,
            &mut self.cert_subject,
            &mut self.cert_key_type,
            &mut self.failure_detail,
            &mut self.helo,
            &mut self.backend_addr,
            &mut self.backend_identity,
            &mut self.backend_tls_version,
            &mut self.backend_cipher_suite,
        ]
        .into_iter()
        .flatten()
        {
            cut |= cut_json(s, MAX_RECORD_STRING);
        }
        if let Some(hello) = &mut self.client_hello {
            for list in hello_lists(hello) {
                if list.len() > MAX_RECORD_LIST {
                    list.truncate(MAX_RECORD_LIST);
                    cut = true;
                }
                for item in list.iter_mut() {
                    cut |= cut_json(item, MAX_RECORD_STRING);
                }
            }
        }
        cut |= self.fit(MAX_RECORD_BYTES);
        self.truncated |= cut;
    }

    /// Drops entries from the end of the largest ClientHello list (in bytes),
    /// one at a time, until the record's line (newline included) fits `max`
    /// bytes: a list stuffed by an attacker gives way before the others. With
    /// every string already cut, the lists are the only part that can be that
    /// large; if they could not give enough, the summary goes.
    fn fit(&mut self, max: usize) -> bool {
        let size = json_size(self) + 1;
        if size <= max {
            return false;
        }
        if let Some(hello) = &mut self.client_hello {
            let lists = hello_lists(hello);
            let mut sizes = lists
                .each_ref()
                .map(|l| l.iter().map(|s| list_entry_size(s)).sum::<usize>());
            let mut freed = 0;
            while freed < size - max {
                let Some(i) = (0..sizes.len())
                    .filter(|&i| !lists[i].is_empty())
                    .max_by_key(|&i| sizes[i])
                else {
                    break;
                };
                let entry = lists[i].pop().map_or(0, |s| list_entry_size(&s));
                sizes[i] -= entry;
                // Without the comma, which the last entry of a list does not have.
                freed += entry - 1;
            }
        }
        if json_size(self) + 1 > max {
            self.client_hello = None;
        }
        true
    }
}

fn hello_lists(h: &mut HelloSummary) -> [&mut Vec<String>; 5] {
    [
        &mut h.versions,
        &mut h.cipher_suites,
        &mut h.groups,
        &mut h.signature_schemes,
        &mut h.alpn,
    ]
}

/// Bytes `c` takes inside a JSON string as serde_json writes it.
fn json_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Bytes an entry takes in a JSON list: itself, its quotes and a comma.
fn list_entry_size(s: &str) -> usize {
    s.chars().map(json_char_len).sum::<usize>() + 3
}

/// Cuts `s` (at a character boundary) so that it takes at most `max` bytes
/// inside a JSON string; true if it cut.
fn cut_json(s: &mut String, max: usize) -> bool {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += json_char_len(c);
        if used > max {
            s.truncate(i);
            return true;
        }
    }
    false
}

/// The length of `record` as one JSON line, without building it.
fn json_size(record: &Record) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // A record of strings, numbers and booleans always serializes.
    let _ = serde_json::to_writer(&mut count, record);
    count.0
}

/// Milliseconds with microsecond resolution, for durations in records.
pub fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// Watches every finished record as it is sent (the metrics do), so the
/// sink need not know who counts what.
pub trait Observer: Send + Sync + std::fmt::Debug {
    fn observe(&self, record: &Record);
    /// A record the writer's full queue could not take.
    fn dropped(&self) {}
}

/// Where finished records go.
#[derive(Debug, Clone)]
pub struct RecordSink {
    tx: Option<mpsc::Sender<Record>>,
    /// Set by a reload: the writer reopens its file before the next record
    /// (so logrotate's rename-then-SIGHUP works).
    reopen: Option<Arc<AtomicBool>>,
    /// Sees every record sent (the metrics, when they are on).
    observer: Option<Arc<dyn Observer>>,
    drops: Arc<Drops>,
}

impl RecordSink {
    /// A sink that keeps nothing (records disabled).
    pub fn disabled() -> Self {
        RecordSink {
            tx: None,
            reopen: None,
            observer: None,
            drops: Arc::new(Drops::new()),
        }
    }

    /// A sink whose records arrive on a channel (tests and fuzzing inspect
    /// them), bounded as the writer's is.
    pub fn channel() -> (Self, mpsc::Receiver<Record>) {
        Self::channel_of(MAX_QUEUED_RECORDS)
    }

    /// Like [`RecordSink::channel`], holding at most `capacity` records.
    pub fn channel_of(capacity: usize) -> (Self, mpsc::Receiver<Record>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            RecordSink {
                tx: Some(tx),
                reopen: None,
                observer: None,
                drops: Arc::new(Drops::new()),
            },
            rx,
        )
    }

    /// Asks the writer to reopen the record file (after rotation).
    pub fn reopen(&self) {
        if let Some(flag) = &self.reopen {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// The same sink, also showing each record to `observer`.
    pub fn observed_by(self, observer: Option<Arc<dyn Observer>>) -> Self {
        RecordSink { observer, ..self }
    }

    /// Records dropped so far because the writer's queue was full.
    pub fn dropped(&self) -> u64 {
        self.drops.total.load(Ordering::Relaxed)
    }

    /// Never waits: a record the queue cannot take is dropped and counted.
    fn send(&self, record: Record) {
        if let Some(o) = &self.observer {
            o.observe(&record);
        }
        if let Some(tx) = &self.tx {
            match tx.try_send(record) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.drops.count();
                    if let Some(o) = &self.observer {
                        o.dropped();
                    }
                }
                // Only once the writer has stopped at shutdown.
                Err(TrySendError::Closed(_)) => {}
            }
        }
    }
}

/// Records lost to a full queue: counted, and warned about at most once per
/// `RECORD_DROP_WARN_INTERVAL` with the number since the last warning, so a
/// flood cannot flood the log too.
#[derive(Debug)]
struct Drops {
    total: AtomicU64,
    /// Drops already told in a warning.
    told: AtomicU64,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last warning, plus one (0: none yet).
    last_warning: AtomicU64,
}

impl Drops {
    fn new() -> Self {
        Drops {
            total: AtomicU64::new(0),
            told: AtomicU64::new(0),
            epoch: Instant::now(),
            last_warning: AtomicU64::new(0),
        }
    }

    fn count(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.warn(false);
    }

    /// Warns about drops not told yet, unless a warning went out within the
    /// interval (`force`: regardless, e.g. when the writer stops).
    fn warn(&self, force: bool) {
        let total = self.total.load(Ordering::Relaxed);
        if total == self.told.load(Ordering::Relaxed) {
            return;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        let interval = u64::try_from(RECORD_DROP_WARN_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if force {
            self.last_warning.store(now, Ordering::Relaxed);
        } else {
            let due = last == 0 || now.saturating_sub(last) >= interval;
            // One caller wins the slot; the others' drops go into the next warning.
            if !due
                || self
                    .last_warning
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
            {
                return;
            }
        }
        let before = self.told.swap(total, Ordering::AcqRel);
        if total > before {
            tracing::warn!(
                dropped = total - before,
                total,
                "record queue full: records dropped (the record file's disk does not keep up)"
            );
        }
    }
}

/// Owns a session's record and delivers it exactly once, on drop.
pub struct RecordGuard {
    /// `Some` until the guard drops and sends it on (moved, not copied).
    record: Option<Record>,
    started: Instant,
    sink: RecordSink,
}

impl RecordGuard {
    pub fn new(record: Record, sink: RecordSink) -> Self {
        RecordGuard {
            record: Some(record),
            started: Instant::now(),
            sink,
        }
    }
}

impl std::ops::Deref for RecordGuard {
    type Target = Record;
    fn deref(&self) -> &Record {
        self.record
            .as_ref()
            .expect("the record lives until the guard drops")
    }
}

impl std::ops::DerefMut for RecordGuard {
    fn deref_mut(&mut self) -> &mut Record {
        self.record
            .as_mut()
            .expect("the record lives until the guard drops")
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        let Some(mut r) = self.record.take() else {
            return;
        };
        r.duration_ms = millis(self.started.elapsed());
        r.ts = timestamp(SystemTime::now());
        r.bound();
        tracing::info!(
            session = %r.session,
            client = %format_args!("{}:{}", r.client_ip, r.client_port),
            listener = %r.listener,
            tls = r.tls.as_str(),
            version = r.tls_version.as_deref().unwrap_or("-"),
            suite = r.cipher_suite.as_deref().unwrap_or("-"),
            group = r.kx_group.as_deref().unwrap_or("-"),
            failure = r.failure_reason.map_or("-", |f| f.as_str()),
            helo = r.helo.as_deref().unwrap_or("-"),
            accepted = r.messages_accepted,
            rejected = r.messages_rejected,
            backend = r.backend_contacted,
            close = r.close_reason.as_str(),
            ms = r.duration_ms,
            "session end"
        );
        self.sink.send(r);
    }
}

pub fn timestamp(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => String::new(),
    }
}

/// Errors opening the record file (at start-up and on reopen). Each names the path.
#[derive(Debug, thiserror::Error)]
pub enum RecordFileError {
    #[error("cannot open record file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "record file {path} is a symbolic link: refused (it would be followed to another file); name the file itself"
    )]
    Symlink { path: PathBuf },
    #[error("record file {path} is not a regular file ({kind}): refused")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("cannot start the record writer: {0}")]
    Thread(std::io::Error),
}

/// Opens the record file for appending: created 0640 (it holds client
/// addresses and names), never through a symbolic link (`O_NOFOLLOW`), never
/// waiting for a FIFO's reader (`O_NONBLOCK`), and only a regular file.
pub fn open_record_file(path: &Path) -> Result<std::fs::File, RecordFileError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // What is at `path`, when opening it failed or gave something odd.
    let refusal = |ft: std::fs::FileType| {
        use std::os::unix::fs::FileTypeExt;
        let path = path.to_path_buf();
        if ft.is_symlink() {
            return Some(RecordFileError::Symlink { path });
        }
        let kind = match () {
            _ if ft.is_file() => return None,
            _ if ft.is_fifo() => "a FIFO",
            _ if ft.is_socket() => "a socket",
            _ if ft.is_dir() => "a directory",
            _ if ft.is_char_device() => "a character device",
            _ if ft.is_block_device() => "a block device",
            _ => "an unknown kind of file",
        };
        Some(RecordFileError::NotRegular { path, kind })
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| {
            std::fs::symlink_metadata(path)
                .ok()
                .and_then(|m| refusal(m.file_type()))
                .unwrap_or_else(|| RecordFileError::Open {
                    path: path.to_path_buf(),
                    source,
                })
        })?;
    let meta = file.metadata().map_err(|source| RecordFileError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    // A FIFO with a reader, or a device, opens fine: refused all the same.
    if let Some(e) = refusal(meta.file_type()) {
        return Err(e);
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = %format_args!("{mode:04o}"),
            "the record file is open to every user, and it holds client addresses and names: chmod o-rwx"
        );
    }
    Ok(file)
}

/// Starts the writer; returns the sink and a handle that finishes once every
/// sink clone is dropped and every record is on disk.
pub fn start_writer(
    path: &Path,
) -> Result<(RecordSink, std::thread::JoinHandle<()>), RecordFileError> {
    let file = open_record_file(path)?;
    let (tx, mut rx) = mpsc::channel::<Record>(MAX_QUEUED_RECORDS);
    let reopen = Arc::new(AtomicBool::new(false));
    let reopen_flag = reopen.clone();
    let drops = Arc::new(Drops::new());
    let writer_drops = drops.clone();
    let path = path.to_path_buf();
    // A plain thread: file writes block, and this keeps them off the runtime.
    let handle = std::thread::Builder::new()
        .name("tlsfront-records".into())
        .spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Some(first) = rx.blocking_recv() {
                if reopen_flag.swap(false, Ordering::SeqCst) {
                    let _ = out.flush();
                    match open_record_file(&path) {
                        Ok(f) => {
                            out = std::io::BufWriter::new(f);
                            tracing::info!(path = %path.display(), "record file reopened");
                        }
                        // Keep writing to the old file rather than lose records.
                        Err(e) => tracing::error!(
                            error = %e,
                            "cannot reopen the record file: records go on to the file already open"
                        ),
                    }
                }
                let mut next = Some(first);
                while let Some(record) = next {
                    let mut line = serde_json::to_vec(&record).unwrap_or_default();
                    line.push(b'\n');
                    if let Err(e) = out.write_all(&line) {
                        tracing::error!(path = %path.display(), error = %e, "cannot write record");
                    }
                    next = rx.try_recv().ok();
                }
                if let Err(e) = out.flush() {
                    tracing::error!(path = %path.display(), error = %e, "cannot flush records");
                }
                // Drops the senders could not tell yet (rate-limited).
                writer_drops.warn(false);
                // Records then gather for a moment while this thread sleeps:
                // a busy server writes them in batches, instead of waking
                // this thread (a futex and two context switches) per session.
                std::thread::sleep(limits::RECORD_BATCH_WAIT);
            }
            writer_drops.warn(true);
        })
        .map_err(RecordFileError::Thread)?;
    Ok((
        RecordSink {
            tx: Some(tx),
            reopen: Some(reopen),
            observer: None,
            drops,
        },
        handle,
    ))
}

#[cfg(test)]
impl Record {
    /// A plain record of a session that has not ended yet, for unit tests.
    pub(crate) fn sample() -> Record {
        Record::new(
            "s1".into(),
            "127.0.0.1:25".parse().expect("addr"),
            Mode::Starttls,
            "192.0.2.1:4000".parse().expect("addr"),
            "mx.example.test",
            "mx1",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_writes_exactly_one_line_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let (sink, handle) = start_writer(&path).unwrap();
        for i in 0..3 {
            let mut g = RecordGuard::new(
                Record::new(
                    format!("s{i}"),
                    "127.0.0.1:25".parse().unwrap(),
                    Mode::Starttls,
                    "[::ffff:192.0.2.1]:4000".parse().unwrap(),
                    "mx",
                    "host-a",
                ),
                sink.clone(),
            );
            g.messages_accepted = i;
        }
        drop(sink);
        handle.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["session"], "s2");
        assert_eq!(lines[2]["messages_accepted"], 2);
        assert_eq!(lines[0]["client_ip"], "192.0.2.1");
        assert_eq!(lines[0]["host"], "host-a");
        assert_eq!(lines[0]["tls"], "not_attempted");
        assert_eq!(lines[0]["close_reason"], "aborted");
        assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));
    }

    fn record() -> Record {
        Record::sample()
    }

    /// The biggest real offer: every suite name tlsfront knows, the rest of
    /// OpenSSL's `ALL` (140 suites) as code points, all rustls' groups and
    /// signature schemes. Kept whole, and well under the cap.
    #[test]
    fn a_real_client_hello_is_kept_whole() {
        let mut r = record();
        let known: Vec<String> = (0..=0xffffu16)
            .map(crate::wire::clienthello::suite_name)
            .filter(|n| !n.starts_with("0x"))
            .collect();
        let mut suites: Vec<String> = known.iter().take(140).cloned().collect();
        suites.extend((suites.len()..140).map(|i| format!("0x{:04x}", 0xc000 + i)));
        r.client_hello = Some(HelloSummary {
            versions: ["TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1.0"]
                .map(String::from)
                .to_vec(),
            cipher_suites: suites,
            groups: (0..=0xffffu16)
                .map(crate::wire::clienthello::group_name)
                .filter(|n| !n.starts_with("0x"))
                .collect(),
            signature_schemes: (0..=0xffffu16)
                .map(crate::wire::clienthello::scheme_name)
                .filter(|n| !n.starts_with("0x"))
                .collect(),
            alpn: vec!["smtp".into()],
        });
        r.sni = Some("mx.example.test".into());
        r.helo = Some("[IPv6:2001:db8::1]".into());
        r.failure_reason = Some(HandshakeFailure::NoSharedCipherSuite);
        r.failure_detail = Some("peer is incompatible: NoCipherSuitesInCommon".into());
        let before = r.clone();
        r.bound();
        assert!(!r.truncated);
        assert_eq!(format!("{r:?}"), format!("{before:?}"));
        // ~6.5 KiB now that every suite, group and scheme has its IANA name.
        let size = json_size(&r);
        assert!(size < MAX_RECORD_BYTES, "{size}");
    }

    /// Every peer-influenced part at its worst: strings of characters JSON
    /// escapes 6-fold, lists of thousands of long entries. The line stays
    /// under the cap, each list keeps its first entries, and the record says
    /// it was cut.
    #[test]
    fn the_worst_record_fits_the_cap_and_says_truncated() {
        let mut r = record();
        let nasty = "\x01".repeat(100_000);
        r.sni = Some(nasty.clone());
        r.helo = Some(nasty.clone());
        r.failure_detail = Some(nasty.clone());
        r.cert_subject = Some(nasty.clone());
        r.server_hostname = nasty.clone();
        let long = "\"".repeat(255);
        let list = |prefix: &str| -> Vec<String> {
            (0..10_000).map(|i| format!("{prefix}{i}{long}")).collect()
        };
        r.client_hello = Some(HelloSummary {
            versions: list("v"),
            cipher_suites: list("s"),
            groups: list("g"),
            signature_schemes: list("x"),
            alpn: list("a"),
        });
        r.bound();
        assert!(r.truncated);
        assert!(json_size(&r) < MAX_RECORD_BYTES, "{}", json_size(&r));
        assert_eq!(r.sni.as_deref(), Some(""));
        for s in [&r.helo, &r.failure_detail] {
            let s = s.as_deref().unwrap();
            assert_eq!(s.len(), MAX_RECORD_STRING / 6, "{s:?}");
        }
        let h = r.client_hello.as_ref().expect("some of the hello is kept");
        assert!(h.cipher_suites.len() <= MAX_RECORD_LIST);
        assert!(
            h.cipher_suites[0].starts_with("s0"),
            "{:?}",
            h.cipher_suites[0]
        );
        assert!(
            h.cipher_suites
                .iter()
                .all(|s| list_entry_size(s) <= MAX_RECORD_STRING + 3)
        );
    }

    #[test]
    fn sni_keeps_only_host_name_characters() {
        for (sent, kept, cut) in [
            ("mx.example.test", "mx.example.test", false),
            (
                "_dmarc.xn--bcher-kva.example",
                "_dmarc.xn--bcher-kva.example",
                false,
            ),
            (
                "a\r\nlegacy path retired: yes\x1b[2j",
                "alegacypathretiredyes2j",
                true,
            ),
            ("b\u{fffd}cher.example", "bcher.example", true),
        ] {
            let mut r = record();
            r.sni = Some(sent.into());
            r.bound();
            assert_eq!(r.sni.as_deref(), Some(kept), "{sent:?}");
            assert_eq!(r.truncated, cut, "{sent:?}");
        }
    }

    /// Counts what it is shown, as the metrics would.
    #[derive(Debug, Default)]
    struct Counting {
        seen: std::sync::atomic::AtomicU64,
        dropped: std::sync::atomic::AtomicU64,
    }

    impl Observer for Counting {
        fn observe(&self, _: &Record) {
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
        fn dropped(&self) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A full queue (the disk stalls) drops the record and counts it, in the
    /// sink and for its observer; the session's guard never waits.
    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let counting = Arc::new(Counting::default());
        let (sink, mut rx) = RecordSink::channel_of(2);
        let sink = sink.observed_by(Some(counting.clone()));
        let started = Instant::now();
        for _ in 0..5 {
            drop(RecordGuard::new(record(), sink.clone()));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(sink.dropped(), 3);
        assert_eq!(counting.dropped.load(Ordering::Relaxed), 3);
        // Every session is still seen.
        assert_eq!(counting.seen.load(Ordering::Relaxed), 5);
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok() && rx.try_recv().is_err());
        // Room again: the next record goes through.
        drop(RecordGuard::new(record(), sink.clone()));
        assert!(rx.try_recv().is_ok());
        assert_eq!(sink.dropped(), 3);
    }

    /// One warning per interval, telling how many were dropped since the last.
    #[test]
    fn drops_are_told_at_a_limited_rate() {
        let d = Drops::new();
        for _ in 0..1000 {
            d.count();
        }
        assert_eq!(d.total.load(Ordering::Relaxed), 1000);
        // The first drop was told at once; the rest wait for the interval...
        assert_eq!(d.told.load(Ordering::Relaxed), 1);
        d.warn(false);
        assert_eq!(d.told.load(Ordering::Relaxed), 1);
        // ... or for the writer's last word.
        d.warn(true);
        assert_eq!(d.told.load(Ordering::Relaxed), 1000);
    }
}

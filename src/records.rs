//! Handshake records: one JSON object per line per connection, for machines.
//!
//! Sessions hand their finished record to a single writer task over a channel,
//! so a slow disk never stalls a session and lines never interleave. The record
//! travels inside a [`RecordGuard`] that sends it when dropped, so a connection
//! writes exactly one record however its session ends, even when aborted.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::clienthello::HelloSummary;
use crate::metrics::Metrics;
use crate::outcome::{CloseReason, Mode, TlsOutcome};

/// One connection's record. Field names are a stable interface (see README).
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// When the session ended (RFC 3339, UTC).
    pub ts: String,
    pub session: String,
    pub listener: String,
    pub mode: Mode,
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
    pub failure_reason: Option<String>,
    pub failure_detail: Option<String>,
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
    /// The last backend failure seen by this session (see README).
    pub backend_error: Option<String>,
    pub close_reason: CloseReason,
    pub duration_ms: f64,
}

impl Record {
    pub fn new(
        session: String,
        listener: SocketAddr,
        mode: Mode,
        client: SocketAddr,
        hostname: &str,
    ) -> Self {
        Record {
            ts: String::new(),
            session,
            listener: listener.to_string(),
            mode,
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
            client_hello: None,
            pipelined_after_starttls: 0,
            helo: None,
            messages_accepted: 0,
            messages_rejected: 0,
            recipients: 0,
            bytes: 0,
            bare_line_endings: 0,
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
        }
    }
}

/// Milliseconds with microsecond resolution, for durations in records.
pub fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// Where finished records go.
#[derive(Debug, Clone)]
pub struct RecordSink {
    tx: Option<mpsc::UnboundedSender<Record>>,
    /// Set by a reload: the writer reopens its file before the next record
    /// (so logrotate's rename-then-SIGHUP works).
    reopen: Option<Arc<AtomicBool>>,
    /// Counts every record sent (when metrics are on).
    metrics: Option<Arc<Metrics>>,
}

impl RecordSink {
    /// A sink that keeps nothing (records disabled).
    pub fn disabled() -> Self {
        RecordSink {
            tx: None,
            reopen: None,
            metrics: None,
        }
    }

    /// A sink whose records arrive on a channel (tests and fuzzing inspect them).
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Record>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            RecordSink {
                tx: Some(tx),
                reopen: None,
                metrics: None,
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

    /// The same sink, also counting each record in `metrics`.
    pub fn with_metrics(self, metrics: Option<Arc<Metrics>>) -> Self {
        RecordSink { metrics, ..self }
    }

    fn send(&self, record: Record) {
        if let Some(m) = &self.metrics {
            m.observe(&record);
        }
        if let Some(tx) = &self.tx {
            // Only fails once the writer has stopped at shutdown.
            let _ = tx.send(record);
        }
    }
}

/// Owns a session's record and delivers it exactly once, on drop.
pub struct RecordGuard {
    record: Record,
    started: Instant,
    sink: RecordSink,
}

impl RecordGuard {
    pub fn new(record: Record, sink: RecordSink) -> Self {
        RecordGuard {
            record,
            started: Instant::now(),
            sink,
        }
    }
}

impl std::ops::Deref for RecordGuard {
    type Target = Record;
    fn deref(&self) -> &Record {
        &self.record
    }
}

impl std::ops::DerefMut for RecordGuard {
    fn deref_mut(&mut self) -> &mut Record {
        &mut self.record
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        let r = &mut self.record;
        r.duration_ms = millis(self.started.elapsed());
        r.ts = timestamp(SystemTime::now());
        tracing::info!(
            session = %r.session,
            client = %format_args!("{}:{}", r.client_ip, r.client_port),
            listener = %r.listener,
            tls = r.tls.as_str(),
            version = r.tls_version.as_deref().unwrap_or("-"),
            suite = r.cipher_suite.as_deref().unwrap_or("-"),
            group = r.kx_group.as_deref().unwrap_or("-"),
            failure = r.failure_reason.as_deref().unwrap_or("-"),
            helo = r.helo.as_deref().unwrap_or("-"),
            accepted = r.messages_accepted,
            rejected = r.messages_rejected,
            backend = r.backend_contacted,
            close = r.close_reason.as_str(),
            ms = r.duration_ms,
            "session end"
        );
        self.sink.send(r.clone());
    }
}

pub fn timestamp(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => String::new(),
    }
}

/// Errors opening the record file.
#[derive(Debug, thiserror::Error)]
#[error("cannot open record file {path}: {source}")]
pub struct RecordFileError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Starts the writer; returns the sink and a handle that finishes once every
/// sink clone is dropped and every record is on disk.
pub fn start_writer(
    path: &Path,
) -> Result<(RecordSink, std::thread::JoinHandle<()>), RecordFileError> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| RecordFileError {
                path: path.to_path_buf(),
                source,
            })
    };
    let file = open()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
    let reopen = Arc::new(AtomicBool::new(false));
    let reopen_flag = reopen.clone();
    let path = path.to_path_buf();
    // A plain thread: file writes block, and this keeps them off the runtime.
    let handle = std::thread::Builder::new()
        .name("tlsfront-records".into())
        .spawn(move || {
                        let mut out = std::io::BufWriter::new(file);
            while let Some(first) = rx.blocking_recv() {
                if reopen_flag.swap(false, Ordering::SeqCst) {
                    let _ = out.flush();
                    match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
                        Ok(f) => {
                            out = std::io::BufWriter::new(f);
                            tracing::info!(path = %path.display(), "record file reopened");
                        }
                        // Keep writing to the old file rather than lose records.
                        Err(e) => tracing::error!(path = %path.display(), error = %e, "cannot reopen record file"),
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
            }
        })
        .map_err(|source| RecordFileError {
            path: PathBuf::from("(writer thread)"),
            source,
        })?;
    Ok((
        RecordSink {
            tx: Some(tx),
            reopen: Some(reopen),
            metrics: None,
        },
        handle,
    ))
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
        assert_eq!(lines[0]["tls"], "not_attempted");
        assert_eq!(lines[0]["close_reason"], "aborted");
        assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));
    }
}

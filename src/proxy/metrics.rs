//! Prometheus metrics: counters fed from each finished [`Record`], gauges read
//! at scrape time, and a minimal HTTP/1.1 endpoint that serves them.
//!
//! Records are the one place every session ends, so the metrics see exactly
//! what the record file sees. Label values come only from the closed sets in
//! the records (outcome, close reason, failure reason, TLS names, backend
//! error) and from the configured certificates, never from client text (HELO,
//! SNI), so the number of series stays bounded whatever clients send.
//!
//! Beside the records: the build's version, whether the backend answered the
//! last connection attempt (read from [`Backend`] at scrape time) and the
//! last reload's result (set by the daemon). Every series of a closed label
//! set is there from the start at zero, so `rate()` and alerts see a series
//! before its first event.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::limits;
use crate::outcome::{
    AcmeResult, BackendFailure, CloseReason, HandshakeFailure, KeyType, Origin, TlsOutcome,
};
use crate::proxy::admission::Admission;
use crate::proxy::backend::Backend;
use crate::proxy::records::{Observer, Record};
use crate::proxy::tls::CertEntry;

type Labels1 = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];
type Labels3 = [(&'static str, String); 3];

/// Handshakes take milliseconds; a minute is the default timeout.
const HANDSHAKE_BUCKETS: [f64; 12] = [
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0,
];
/// Sessions: from an immediate refusal to the one-hour lifetime.
const SESSION_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Every metric tlsfront exports; built once, shared by sessions and the endpoint.
pub struct Metrics {
    registry: Registry,
    sessions: Family<Labels2, Counter>,
    handshake_failures: Family<Labels1, Counter>,
    tls_sessions: Family<Labels3, Counter>,
    handshake_duration: Histogram,
    session_duration: Histogram,
    backend_errors: Family<Labels1, Counter>,
    backend_connections: Family<Labels1, Counter>,
    messages: Family<Labels1, Counter>,
    active: Gauge,
    cert_expiry: Family<Labels3, Gauge>,
    records_dropped: Counter,
    health_checks: Counter,
    acme_orders: Family<Labels2, Counter>,
    backend_up: Gauge,
    backend_open: Gauge,
    backend_waiting: Gauge,
    last_reload_success: Gauge,
    last_reload_timestamp: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tlsfront");
        // The registry holds clones (handles to the same values) of each metric.
        let m = Metrics {
            sessions: Family::default(),
            handshake_failures: Family::default(),
            tls_sessions: Family::default(),
            handshake_duration: Histogram::new(HANDSHAKE_BUCKETS),
            session_duration: Histogram::new(SESSION_BUCKETS),
            backend_errors: Family::default(),
            backend_connections: Family::default(),
            messages: Family::default(),
            active: Gauge::default(),
            cert_expiry: Family::default(),
            records_dropped: Counter::default(),
            health_checks: Counter::default(),
            acme_orders: Family::default(),
            backend_up: Gauge::default(),
            backend_open: Gauge::default(),
            backend_waiting: Gauge::default(),
            last_reload_success: Gauge::default(),
            last_reload_timestamp: Gauge::default(),
            registry: Registry::default(),
        };
        let build_info = Family::<Labels1, Gauge>::default();
        build_info
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version of the running tlsfront in its label",
            build_info,
        );
        registry.register(
            "backend_up",
            "1 when the last new backend connection (a session's, the periodic probe's, the relay guard's) got the backend's 220 greeting, 0 when it failed or none has ended yet",
            m.backend_up.clone(),
        );
        registry.register(
            "backend_connections",
            "Backend connections open: in use by sessions, kept, and the periodic probe's (at most backend.max_connections)",
            m.backend_open.clone(),
        );
        registry.register(
            "backend_waiting_sessions",
            "Sessions waiting for a backend connection because backend.max_connections are open",
            m.backend_waiting.clone(),
        );
        registry.register(
            "last_reload_success",
            "1 when the last reload (SIGHUP, changed certificate files, an ACME certificate) put its certificates into service, 0 when it was refused; 1 at start",
            m.last_reload_success.clone(),
        );
        registry.register_with_unit(
            "last_reload_timestamp",
            "When the last reload was tried (or the process started), Unix time",
            Unit::Seconds,
            m.last_reload_timestamp.clone(),
        );
        registry.register(
            "sessions",
            "Sessions ended, by TLS outcome and close reason",
            m.sessions.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Failed or timed-out TLS handshakes, by failure reason",
            m.handshake_failures.clone(),
        );
        registry.register(
            "tls_sessions",
            "Established TLS sessions, by version, cipher suite and key exchange group",
            m.tls_sessions.clone(),
        );
        registry.register_with_unit(
            "tls_handshake_duration",
            "TLS handshakes (established or failed), ClientHello to end",
            Unit::Seconds,
            m.handshake_duration.clone(),
        );
        registry.register_with_unit(
            "session_duration",
            "Whole sessions, accept to close",
            Unit::Seconds,
            m.session_duration.clone(),
        );
        registry.register(
            "backend_errors",
            "Sessions whose backend connection failed, by the last backend error",
            m.backend_errors.clone(),
        );
        registry.register(
            "backend_sessions",
            "Sessions that got a backend connection, by how: a new one or one reused from an earlier session",
            m.backend_connections.clone(),
        );
        registry.register(
            "messages",
            "Messages relayed, by backend verdict (accepted or rejected)",
            m.messages.clone(),
        );
        registry.register("active_sessions", "Sessions in progress", m.active.clone());
        registry.register(
            "acme_orders",
            "ACME certificate orders, by key type and result (issued or failed)",
            m.acme_orders.clone(),
        );
        registry.register_with_unit(
            "certificate_expiry_timestamp",
            "notAfter of each certificate in service, Unix time",
            Unit::Seconds,
            m.cert_expiry.clone(),
        );
        registry.register(
            "records_dropped",
            "Records lost because the writer's queue was full (the disk did not keep up); the sessions still count here",
            m.records_dropped.clone(),
        );
        registry.register(
            "health_checks",
            "A trusted balancer's own connections (PROXY header naming no client): not in the session counts",
            m.health_checks.clone(),
        );
        // The start's configuration load is the first load.
        m.reload(true);
        // Every closed label set from the start at zero, so rate() and alerts
        // work before the first event. (The TLS parameters of tls_sessions and
        // the backend's refusal codes are open sets: they appear when seen.)
        let zero = |family: &Family<Labels1, Counter>, name: &'static str, values: &[&str]| {
            for v in values {
                let _ = family.get_or_create(&[(name, v.to_string())]);
            }
        };
        zero(&m.messages, "result", &["accepted", "rejected"]);
        zero(&m.backend_connections, "connection", &["new", "reused"]);
        zero(&m.backend_errors, "error", BackendFailure::NAMES);
        zero(&m.handshake_failures, "reason", HandshakeFailure::NAMES);
        // A failed or timed-out handshake without a finer reason counts under the outcome.
        zero(
            &m.handshake_failures,
            "reason",
            &[TlsOutcome::Failed.as_str(), TlsOutcome::Timeout.as_str()],
        );
        for outcome in TlsOutcome::NAMES {
            for close_reason in CloseReason::NAMES {
                let _ = m.sessions.get_or_create(&[
                    ("outcome", outcome.to_string()),
                    ("close_reason", close_reason.to_string()),
                ]);
            }
        }
        for key in KeyType::NAMES {
            for result in AcmeResult::NAMES {
                let _ = m
                    .acme_orders
                    .get_or_create(&[("key", key.to_string()), ("result", result.to_string())]);
            }
        }
        Metrics { registry, ..m }
    }

    /// Counts one finished session.
    fn count(&self, r: &Record) {
        // A balancer checking every second would swamp the session counts.
        if r.origin == Origin::HealthCheck {
            self.health_checks.inc();
            return;
        }
        self.sessions
            .get_or_create(&[
                ("outcome", r.tls.as_str().to_string()),
                ("close_reason", r.close_reason.as_str().to_string()),
            ])
            .inc();
        match r.tls {
            TlsOutcome::Established => {
                self.tls_sessions
                    .get_or_create(&[
                        ("version", token(r.tls_version.as_deref())),
                        ("suite", token(r.cipher_suite.as_deref())),
                        ("group", token(r.kx_group.as_deref())),
                    ])
                    .inc();
            }
            TlsOutcome::Failed | TlsOutcome::Timeout => {
                let reason = r.failure_reason.map_or(r.tls.as_str(), |f| f.as_str());
                self.handshake_failures
                    .get_or_create(&[("reason", reason.to_string())])
                    .inc();
            }
            TlsOutcome::NotAttempted => {}
        }
        if let Some(ms) = r.handshake_ms {
            self.handshake_duration.observe(ms / 1000.0);
        }
        self.session_duration.observe(r.duration_ms / 1000.0);
        // A connect time means a new connection was opened for this session.
        let connection = match (r.backend_reused, r.backend_connect_ms) {
            (true, _) => Some("reused"),
            (false, Some(_)) => Some("new"),
            (false, None) => None,
        };
        if let Some(connection) = connection {
            self.backend_connections
                .get_or_create(&[("connection", connection.to_string())])
                .inc();
        }
        if let Some(e) = &r.backend_error {
            self.backend_errors
                .get_or_create(&[("error", e.to_string())])
                .inc();
        }
        for (result, n) in [
            ("accepted", r.messages_accepted),
            ("rejected", r.messages_rejected),
        ] {
            if n > 0 {
                self.messages
                    .get_or_create(&[("result", result.to_string())])
                    .inc_by(n);
            }
        }
    }

    /// Replaces the certificate expiry series with the certificates now in
    /// service (at start and after each reload; old ones disappear). A
    /// certificate is named by what every client sees (its subject and key)
    /// and its place in the configuration, never by its file path.
    pub fn set_certificates(&self, entries: &[CertEntry]) {
        self.cert_expiry.clear();
        for (i, e) in entries.iter().enumerate() {
            self.cert_expiry
                .get_or_create(&[
                    ("index", i.to_string()),
                    ("subject", e.subject.clone()),
                    ("key", e.key_type.clone()),
                ])
                .set(e.not_after);
        }
    }

    /// A reload ended (or the configuration was loaded at start): its result and time.
    pub fn reload(&self, success: bool) {
        self.last_reload_success.set(i64::from(success));
        self.last_reload_timestamp
            .set(jiff::Timestamp::now().as_second());
    }

    /// The backend's state as of the last new connection to it: `None`
    /// (none has ended yet) reads as down.
    pub fn set_backend_up(&self, up: Option<bool>) {
        self.backend_up.set(i64::from(up == Some(true)));
    }

    /// Backend connections open, and sessions waiting for one.
    pub fn set_backend_connections(&self, (open, waiting): (usize, usize)) {
        self.backend_open.set(open as i64);
        self.backend_waiting.set(waiting as i64);
    }

    /// One ACME order ended.
    pub fn acme_order(&self, key: KeyType, result: AcmeResult) {
        self.acme_orders
            .get_or_create(&[
                ("key", key.as_str().to_string()),
                ("result", result.as_str().to_string()),
            ])
            .inc();
    }

    /// The OpenMetrics text exposition, with `active` sessions as of now.
    pub fn render(&self, active: usize) -> String {
        self.active.set(i64::try_from(active).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A label value from a record's token: kept if it looks like one (they all
/// do: rustls names, snake_case reasons), else `other`, so a surprise can
/// never become a new series per connection.
/// The metrics follow the records: every finished record is counted.
impl Observer for Metrics {
    fn observe(&self, record: &Record) {
        self.count(record);
    }
    fn dropped(&self) {
        self.records_dropped.inc();
    }
}

fn token(value: Option<&str>) -> String {
    match value {
        None => "none".to_string(),
        Some(v)
            if !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') =>
        {
            v.to_string()
        }
        Some(_) => "other".to_string(),
    }
}

/// What the endpoint answers to a request head. Pure, so it is tested without sockets.
fn respond(head: &[u8], body: impl FnOnce() -> String) -> Vec<u8> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics\n".to_string(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Serves `GET /metrics`, one request per connection, until the task is
/// aborted (the server does so once its sessions are over, so a shutdown's
/// drain can still be watched).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    admission: Arc<Admission>,
    backend: Arc<Backend>,
) {
    let slots = Arc::new(Semaphore::new(limits::MAX_METRICS_CONNECTIONS));
    loop {
        // A free slot before accepting: with every slot taken, a scrape waits
        // in the listen backlog (at most the head timeout, for clients that
        // hold a slot by sending slowly) rather than being closed.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (metrics, admission, backend) = (metrics.clone(), admission.clone(), backend.clone());
        tokio::spawn(async move {
            let served = tokio::time::timeout(
                limits::METRICS_TIMEOUT,
                answer(stream, &metrics, &admission, &backend),
            )
            .await;
            if !matches!(served, Ok(Ok(()))) {
                tracing::debug!(%peer, "metrics: request not served");
            }
            drop(permit);
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    metrics: &Metrics,
    admission: &Admission,
    backend: &Backend,
) -> std::io::Result<()> {
    let head =
        match tokio::time::timeout(limits::METRICS_HEADER_TIMEOUT, read_head(&mut stream)).await {
            Ok(Ok(Some(head))) => head,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        };
    let reply = respond(&head, || {
        metrics.set_backend_up(backend.up());
        metrics.set_backend_connections(backend.connections());
        metrics.render(admission.active())
    });
    stream.write_all(&reply).await?;
    stream.shutdown().await
}

/// The request head, up to its blank line; `None` if the client closed first
/// or sent more than [`limits::MAX_METRICS_REQUEST`] (then answered 431).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= limits::MAX_METRICS_REQUEST {
            let _ = stream
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::CloseReason;

    fn record() -> Record {
        Record::sample()
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn records_become_counters() {
        let m = Metrics::new();
        let mut ok = record();
        ok.tls = TlsOutcome::Established;
        ok.tls_version = Some("TLSv1.3".into());
        ok.cipher_suite = Some("TLS13_AES_256_GCM_SHA384".into());
        ok.kx_group = Some("X25519".into());
        ok.handshake_ms = Some(3.0);
        ok.messages_accepted = 2;
        ok.close_reason = CloseReason::ClientQuit;
        ok.duration_ms = 120.0;
        m.observe(&ok);
        m.observe(&ok);
        let mut bad = record();
        bad.tls = TlsOutcome::Failed;
        bad.failure_reason = Some(crate::outcome::HandshakeFailure::NoSharedCipherSuite);
        bad.handshake_ms = Some(1.0);
        bad.close_reason = CloseReason::HandshakeFailed;
        bad.helo = Some("evil\"} 1\nx".into());
        bad.sni = Some("attacker.example".into());
        m.observe(&bad);
        let mut lost = record();
        lost.backend_error = Some(crate::outcome::BackendFailure::ConnectFailed.into());
        lost.messages_rejected = 1;
        lost.close_reason = CloseReason::ClientQuit;
        m.observe(&lost);

        let text = m.render(3);
        let expect = [
            r#"tlsfront_sessions_total{outcome="established",close_reason="client_quit"} 2"#,
            r#"tlsfront_sessions_total{outcome="failed",close_reason="handshake_failed"} 1"#,
            r#"tlsfront_sessions_total{outcome="not_attempted",close_reason="client_quit"} 1"#,
            r#"tlsfront_tls_handshake_failures_total{reason="no_shared_cipher_suite"} 1"#,
            r#"tlsfront_tls_sessions_total{version="TLSv1.3",suite="TLS13_AES_256_GCM_SHA384",group="X25519"} 2"#,
            r#"tlsfront_backend_errors_total{error="connect_failed"} 1"#,
            r#"tlsfront_messages_total{result="accepted"} 4"#,
            r#"tlsfront_messages_total{result="rejected"} 1"#,
            r#"tlsfront_active_sessions 3"#,
            r#"tlsfront_tls_handshake_duration_seconds_count 3"#,
            r#"tlsfront_tls_handshake_duration_seconds_bucket{le="0.005"} 3"#,
            r#"tlsfront_tls_handshake_duration_seconds_bucket{le="0.002"} 1"#,
            r#"tlsfront_session_duration_seconds_count 4"#,
            r#"tlsfront_session_duration_seconds_bucket{le="0.1"} 2"#,
            r#"tlsfront_session_duration_seconds_bucket{le="0.5"} 4"#,
        ];
        for line in expect {
            assert!(has(&text, line), "missing {line:?} in\n{text}");
        }
        // Client-supplied text never reaches a label.
        assert!(
            !text.contains("evil") && !text.contains("attacker"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn closed_label_sets_start_at_zero() {
        let text = Metrics::new().render(0);
        let series = |prefix: &str| -> Vec<&str> {
            text.lines().filter(|l| l.starts_with(prefix)).collect()
        };
        for (prefix, n) in [
            (
                "tlsfront_sessions_total{",
                TlsOutcome::ALL.len() * CloseReason::ALL.len(),
            ),
            (
                "tlsfront_tls_handshake_failures_total{",
                HandshakeFailure::ALL.len() + 2,
            ),
            ("tlsfront_backend_errors_total{", BackendFailure::ALL.len()),
            (
                "tlsfront_acme_orders_total{",
                KeyType::ALL.len() * AcmeResult::ALL.len(),
            ),
            ("tlsfront_messages_total{", 2),
            ("tlsfront_backend_sessions_total{", 2),
        ] {
            let lines = series(prefix);
            assert_eq!(lines.len(), n, "{prefix}: {lines:#?}");
            assert!(lines.iter().all(|l| l.ends_with(" 0")), "{lines:#?}");
        }
        assert!(has(
            &text,
            &format!(
                r#"tlsfront_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            )
        ));
        // The load at start is the first load; no backend connection yet.
        assert!(has(&text, "tlsfront_last_reload_success 1"), "{text}");
        assert!(has(&text, "tlsfront_backend_up 0"), "{text}");
    }

    #[test]
    fn reloads_and_backend_state() {
        let m = Metrics::new();
        m.reload(false);
        m.set_backend_up(Some(true));
        m.set_backend_connections((7, 3));
        let text = m.render(0);
        assert!(has(&text, "tlsfront_last_reload_success 0"), "{text}");
        assert!(has(&text, "tlsfront_backend_up 1"), "{text}");
        assert!(has(&text, "tlsfront_backend_connections 7"), "{text}");
        assert!(has(&text, "tlsfront_backend_waiting_sessions 3"), "{text}");
        m.reload(true);
        m.set_backend_up(Some(false));
        let text = m.render(0);
        assert!(has(&text, "tlsfront_last_reload_success 1"), "{text}");
        assert!(has(&text, "tlsfront_backend_up 0"), "{text}");
        let at = text
            .lines()
            .find_map(|l| l.strip_prefix("tlsfront_last_reload_timestamp_seconds "))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            (at - jiff::Timestamp::now().as_second()).abs() < 5,
            "{text}"
        );
    }

    #[test]
    fn health_checks_are_counted_apart_from_sessions() {
        let m = Metrics::new();
        let mut check = record();
        check.origin = Origin::HealthCheck;
        check.close_reason = CloseReason::ClientQuit;
        m.observe(&check);
        m.observe(&check);
        let mut proxied = record();
        proxied.origin = Origin::Proxied;
        proxied.close_reason = CloseReason::ClientQuit;
        m.observe(&proxied);
        let text = m.render(0);
        assert!(has(&text, "tlsfront_health_checks_total 2"), "{text}");
        assert!(
            has(
                &text,
                r#"tlsfront_sessions_total{outcome="not_attempted",close_reason="client_quit"} 1"#
            ),
            "{text}"
        );
        assert!(
            has(&text, "tlsfront_session_duration_seconds_count 1"),
            "{text}"
        );
    }

    #[test]
    fn timeouts_and_failures_count_by_their_reason() {
        let m = Metrics::new();
        let mut r = record();
        r.tls = TlsOutcome::Timeout;
        r.close_reason = CloseReason::HandshakeTimeout;
        m.observe(&r);
        r.tls = TlsOutcome::Failed;
        r.failure_reason = Some(crate::outcome::HandshakeFailure::AlertUnknownCa);
        m.observe(&r);
        let text = m.render(0);
        assert!(
            has(
                &text,
                r#"tlsfront_tls_handshake_failures_total{reason="timeout"} 1"#
            ),
            "{text}"
        );
        assert!(
            has(
                &text,
                r#"tlsfront_tls_handshake_failures_total{reason="alert_unknown_ca"} 1"#
            ),
            "{text}"
        );
        assert!(has(&text, "tlsfront_active_sessions 0"), "{text}");
        assert!(
            has(&text, r#"tlsfront_messages_total{result="accepted"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn certificate_series_follow_the_certificates_in_service() {
        let settings = crate::config::test_settings();
        let front = crate::proxy::tls::TlsFront::build(&settings)
            .unwrap()
            .unwrap();
        let m = Metrics::new();
        m.set_certificates(front.entries());
        let text = m.render(0);
        let line = text
            .lines()
            .find(|l| l.starts_with("tlsfront_certificate_expiry_timestamp_seconds{"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            line.starts_with(
                r#"tlsfront_certificate_expiry_timestamp_seconds{index="0",subject="CN=mx.example.test",key="ecdsa_p256"} "#
            ),
            "{line}"
        );
        let value: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(value, front.entries()[0].not_after);
        assert!(value > jiff::Timestamp::now().as_second(), "{line}");
        // A reload to no certificate leaves no stale series behind.
        m.set_certificates(&[]);
        assert!(
            !m.render(0)
                .contains("tlsfront_certificate_expiry_timestamp_seconds{")
        );
    }

    #[test]
    fn only_get_metrics_is_served() {
        let ok = String::from_utf8(respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", || {
            "body\n".into()
        }))
        .unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 5\r\n") && ok.ends_with("\r\n\r\nbody\n"));
        assert!(ok.contains("Connection: close\r\n"));
        let q = String::from_utf8(respond(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", || {
            String::new()
        }))
        .unwrap();
        assert!(q.starts_with("HTTP/1.1 200"), "{q}");
        for (req, status) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "404"),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", "404"),
            (b"POST /metrics HTTP/1.1\r\n\r\n", "405"),
            (b"\r\n\r\n", "405"),
        ] {
            let r = String::from_utf8(respond(req, || panic!("rendered for {req:?}"))).unwrap();
            assert!(r.starts_with(&format!("HTTP/1.1 {status} ")), "{r}");
        }
    }
}

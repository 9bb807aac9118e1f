//! The Prometheus endpoint, scraped over plain TCP after real sessions; the
//! operator's gauges (build, backend up, last reload) through a daemon run
//! in process.

mod common;

use std::time::Duration;

use common::*;
use rustls::version::TLS13;

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

#[tokio::test]
async fn scrape_counts_sessions_failures_messages_and_certificates() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), METRICS).await;

    // Nothing happened yet: the endpoint answers, with zero sessions.
    let (code, body) = proxy.scrape("/metrics").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        sample(&body, "tlsfront_active_sessions"),
        Some(0.0),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    // One TLS 1.3 session delivering a message...
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    let r = c
        .mail("a@origin.test", "b@legacy.test", &sample_message("m"))
        .await;
    assert_eq!(r.code, 250, "{}", r.text);

    // ...while it is open, it is an active session.
    let (_, body) = proxy.scrape("/metrics").await;
    assert_eq!(
        sample(&body, "tlsfront_active_sessions"),
        Some(1.0),
        "{body}"
    );

    c.send("QUIT").await;
    c.expect(221).await;

    // One client that only speaks TLS 1.0.
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("STARTTLS").await;
    c.expect(220).await;
    c.send_raw(&tls10_client_hello()).await;
    assert!(c.closed().await);

    proxy.records(2).await;
    let want = [
        (
            r#"tlsfront_sessions_total{outcome="established",close_reason="client_quit"}"#,
            1.0,
        ),
        (
            r#"tlsfront_sessions_total{outcome="failed",close_reason="handshake_failed"}"#,
            1.0,
        ),
        (
            r#"tlsfront_tls_handshake_failures_total{reason="client_tls_version_too_old"}"#,
            1.0,
        ),
        (r#"tlsfront_messages_total{result="accepted"}"#, 1.0),
        (r#"tlsfront_messages_total{result="rejected"}"#, 0.0),
        ("tlsfront_active_sessions", 0.0),
        ("tlsfront_session_duration_seconds_count", 2.0),
    ];
    // Records and the admission count settle just after the client sees the close.
    let mut body = String::new();
    for _ in 0..200 {
        body = proxy.scrape("/metrics").await.1;
        if want.iter().all(|(s, v)| sample(&body, s) == Some(*v)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for (series, value) in want {
        assert_eq!(sample(&body, series), Some(value), "{series} in\n{body}");
    }
    let tls13 = body
        .lines()
        .find(|l| {
            l.starts_with("tlsfront_tls_sessions_total{") && l.contains(r#"version="TLSv1.3""#)
        })
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        tls13.ends_with(" 1") && tls13.contains(r#"suite="TLS13_"#),
        "{tls13}"
    );
    assert!(
        sample(&body, "tlsfront_tls_handshake_duration_seconds_count").unwrap_or(0.0) >= 2.0,
        "{body}"
    );

    // The certificate in service, with its notAfter in the future.
    let expiry = body
        .lines()
        .find(|l| {
            l.starts_with("tlsfront_certificate_expiry_timestamp_seconds{")
                && l.contains("mx.tlsfront.test ecdsa")
        })
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        expiry.contains(r#"index="0""#) && expiry.contains(r#"key="ecdsa_p256""#),
        "{expiry}"
    );
    // Labels name the certificate, never where it lives on disk.
    let dir = pki.dir.path().display().to_string();
    assert!(!body.contains(&dir), "{body}");
    assert!(!body.contains("source="), "{body}");
    let not_after: f64 = expiry.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(not_after > now, "{expiry}");

    // Client text (HELO, SNI) never becomes a label.
    assert!(!body.contains("client.test"), "{body}");

    let (code, _) = proxy.scrape("/").await;
    assert_eq!(code, 404);
    let (code, _) = proxy.scrape("/metrics/x").await;
    assert_eq!(code, 404);
    proxy.stop().await;
}

#[tokio::test]
async fn without_metrics_key_nothing_listens() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    assert!(proxy.metrics.is_none());
    proxy.stop().await;
}

#[tokio::test]
async fn slow_request_heads_do_not_hold_off_a_scrape() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, METRICS).await;
    let addr = proxy.metrics.unwrap();
    // As many slowloris clients as there are slots, each trickling its request
    // head a byte every 200 ms, never finishing it.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut slow = Vec::new();
    for _ in 0..tlsfront::limits::MAX_METRICS_CONNECTIONS {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stop = stop.clone();
        slow.push(tokio::spawn(async move {
            for b in b"GET /metrics HTTP/1.1\r\nX-Slow: "
                .iter()
                .cycle()
                .take(500)
            {
                if s.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }));
    }
    // Let every slow client be accepted and take its slot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A real scrape gets its answer within the head timeout (plus slack for a
    // loaded machine), not after the whole-answer timeout or never.
    let bound = tlsfront::limits::METRICS_HEADER_TIMEOUT + Duration::from_secs(3);
    assert!(bound < tlsfront::limits::METRICS_TIMEOUT);
    let scraped = tokio::time::timeout(bound, async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: tlsfront\r\n\r\n")
            .await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&raw).into_owned())
    })
    .await;
    stop.cancel();
    for t in slow {
        let _ = t.await;
    }
    let answer = scraped
        .expect("the scrape waited longer than the head timeout")
        .expect("the scrape's connection failed");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.contains("tlsfront_active_sessions"), "{answer}");
    proxy.stop().await;
}

/// A minimal TLS 1.0 ClientHello offering two RSA-kx CBC suites.
fn tls10_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x01];
    body.extend([0x42; 32]);
    body.push(0);
    body.extend([0x00, 0x04, 0x00, 0x2f, 0x00, 0x0a]);
    body.extend([0x01, 0x00]);
    let mut hs = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend(hs);
    rec
}

/// Scrapes until `series` reads `want` (bounded), and returns the last body.
async fn until(addr: std::net::SocketAddr, series: &str, want: f64) -> String {
    let mut body = String::new();
    for _ in 0..200 {
        body = scrape(addr, "/metrics").await.1;
        if sample(&body, series) == Some(want) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{series} never read {want}:\n{body}");
}

/// A config with the metrics on and the backend probed every 100 ms.
fn daemon_config(backend: std::net::SocketAddr, pki: &Pki) -> String {
    format!(
        "[server]\nhostname = \"mx.tlsfront.test\"\nshutdown_grace = \"1s\"\n\
         [[listener]]\naddress = [\"127.0.0.1:0\"]\n\
         [backend]\naddress = \"{backend}\"\nconnect_timeout = \"2s\"\ngreeting_timeout = \"2s\"\n\
         probe_interval = \"100ms\"\n\
         {METRICS}\
         [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
        pki.ecdsa.0.display(),
        pki.ecdsa.1.display()
    )
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// What an alert needs from the start: the version, every closed series at
/// zero, reload success and time; then a refused reload reads 0 until one
/// succeeds, and the backend going away reads as down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_backend_up_reload_and_zero_series() {
    use tlsfront::config::{Overrides, Settings};
    use tlsfront::proxy::daemon::Daemon;
    use tlsfront::proxy::notify::Notifier;
    use tlsfront::proxy::server::Server;

    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tlsfront.toml");
    let good = daemon_config(mta.addr, &pki);
    std::fs::write(&config, &good).unwrap();
    let load = {
        let config = config.clone();
        move || Settings::load(&config, true, &Overrides::default())
    };
    let started = now();
    let settings = load().unwrap();
    let server = Server::bind(settings, tlsfront::proxy::records::RecordSink::disabled())
        .await
        .unwrap();
    let addr = server.metrics_addr().unwrap();
    let shutdown = server.shared.shutdown.clone();
    let daemon = Daemon::new(server.shared.clone(), Notifier::disabled(), Box::new(load));
    let task = tokio::spawn(server.run());

    // The backend's greeting (the first probe, at start) reads as up.
    let body = until(addr, "tlsfront_backend_up", 1.0).await;
    let version = format!(
        r#"tlsfront_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&body, &version), Some(1.0), "{body}");
    assert_eq!(sample(&body, "tlsfront_last_reload_success"), Some(1.0));
    let at_start = sample(&body, "tlsfront_last_reload_timestamp_seconds").unwrap();
    assert!(at_start >= started.floor() && at_start <= now(), "{body}");
    // Closed label sets are there at zero before any session.
    for series in [
        r#"tlsfront_sessions_total{outcome="established",close_reason="client_quit"}"#,
        r#"tlsfront_sessions_total{outcome="not_attempted",close_reason="connection_limit"}"#,
        r#"tlsfront_tls_handshake_failures_total{reason="alert_unknown_ca"}"#,
        r#"tlsfront_tls_handshake_failures_total{reason="timeout"}"#,
        r#"tlsfront_backend_errors_total{error="connect_failed"}"#,
        r#"tlsfront_acme_orders_total{key="ecdsa_p256",result="failed"}"#,
        "tlsfront_records_dropped_total",
    ] {
        assert_eq!(sample(&body, series), Some(0.0), "{series}:\n{body}");
    }

    // A reload of a broken file is refused: 0, with its time...
    std::fs::write(&config, "[server\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(daemon.reload().is_err());
    let body = until(addr, "tlsfront_last_reload_success", 0.0).await;
    let refused = sample(&body, "tlsfront_last_reload_timestamp_seconds").unwrap();
    assert!(refused > at_start, "{body}");
    // ... until one succeeds.
    std::fs::write(&config, &good).unwrap();
    daemon.reload().unwrap();
    until(addr, "tlsfront_last_reload_success", 1.0).await;

    // The backend goes away: the next probe cannot connect.
    drop(mta);
    until(addr, "tlsfront_backend_up", 0.0).await;

    shutdown.cancel();
    tokio::time::timeout(T, task).await.unwrap().unwrap();
}

/// A backend that answers every connection with a 421 greeting takes no
/// mail: down (known, not merely "no connection yet").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_refusing_in_its_greeting_is_down() {
    use tlsfront::config::{Overrides, Settings};
    use tlsfront::proxy::server::Server;

    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript {
        greeting: "421 4.3.2 legacy.test too busy".into(),
        ..MtaScript::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tlsfront.toml");
    std::fs::write(&config, daemon_config(mta.addr, &pki)).unwrap();
    let settings = Settings::load(&config, true, &Overrides::default()).unwrap();
    let server = Server::bind(settings, tlsfront::proxy::records::RecordSink::disabled())
        .await
        .unwrap();
    let (addr, shared) = (server.metrics_addr().unwrap(), server.shared.clone());
    let task = tokio::spawn(server.run());
    for _ in 0..200 {
        if shared.backend.up().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(shared.backend.up(), Some(false));
    let (_, body) = scrape(addr, "/metrics").await;
    assert_eq!(sample(&body, "tlsfront_backend_up"), Some(0.0), "{body}");
    shared.shutdown.cancel();
    tokio::time::timeout(T, task).await.unwrap().unwrap();
}

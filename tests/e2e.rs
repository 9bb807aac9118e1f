//! End-to-end tests in-process: real rustls clients, tlsfront, a scripted backend.

mod common;

use common::*;
use rustls::version::{TLS12, TLS13};
use std::time::Duration;

const ECDHE_GROUPS: &[&str] = &["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"];

#[tokio::test]
async fn starttls_tls13_delivers_byte_identical_and_records_it() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let probes = mta.wait_connections(1).await;

    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    let msg = sample_message("tls13");
    let r = c.mail("sender@origin.test", "user@legacy.test", &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        r.text.contains("Message accepted"),
        "the final reply is the backend's own: {}",
        r.text
    );
    c.send("QUIT").await;
    c.expect(221).await;

    let mut expected = msg.clone();
    expected.extend_from_slice(b".\r\n");
    assert_eq!(
        mta.messages(),
        vec![expected],
        "message must arrive byte-identical"
    );
    assert_eq!(mta.connections(), probes + 1);
    let cmds = mta.commands();
    assert!(
        cmds.contains(&"EHLO client.test".to_string()),
        "backend EHLO uses the client's name: {cmds:?}"
    );
    assert!(cmds.contains(&"MAIL FROM:<sender@origin.test>".to_string()));

    let rec = proxy.records(1).await;
    let r = &rec[0];
    assert_eq!(r["tls"], "established");
    assert_eq!(r["tls_version"], "TLSv1.3");
    assert!(
        ECDHE_GROUPS.contains(&r["kx_group"].as_str().unwrap()),
        "{r}"
    );
    assert_eq!(r["starttls_offered"], true);
    assert_eq!(r["starttls_used"], true);
    assert_eq!(r["sni"], "mx.tlsfront.test");
    assert_eq!(r["cert_key_type"], "ecdsa_p256");
    assert_eq!(r["self_signed"], false);
    assert_eq!(r["helo"], "client.test");
    assert_eq!(r["messages_accepted"], 1);
    assert_eq!(r["recipients"], 1);
    assert_eq!(r["bytes"].as_u64().unwrap() as usize, msg.len() + 3);
    assert_eq!(r["backend_contacted"], true);
    assert_eq!(r["close_reason"], "client_quit");
    assert_eq!(
        r["client_port"].as_u64().unwrap(),
        u64::from(c.local.port())
    );
    proxy.stop().await;
}

#[tokio::test]
async fn tls12_client_gets_ecdhe_and_aead() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS12]), "mx.tlsfront.test")
        .await;
    assert_eq!(
        c.mail("a@origin.test", "b@legacy.test", &sample_message("tls12"))
            .await
            .code,
        250
    );
    c.send("QUIT").await;
    c.expect(221).await;
    let r = &proxy.records(1).await[0];
    assert_eq!(r["tls_version"], "TLSv1.2");
    let suite = r["cipher_suite"].as_str().unwrap();
    assert!(
        suite.starts_with("TLS_ECDHE_ECDSA_WITH_")
            && (suite.contains("GCM") || suite.contains("CHACHA")),
        "{suite}"
    );
    assert!(ECDHE_GROUPS.contains(&r["kx_group"].as_str().unwrap()));
    proxy.stop().await;
}

#[tokio::test]
async fn implicit_tls_listener_delivers() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let mut c = Client::implicit(
        proxy.implicit,
        pki.client_config(&[&TLS13]),
        "mx.tlsfront.test",
    )
    .await;
    c.send("EHLO implicit.test").await;
    let ehlo = c.expect(250).await;
    assert!(!ehlo.contains("STARTTLS"), "no STARTTLS inside TLS: {ehlo}");
    assert_eq!(
        c.mail("a@origin.test", "b@legacy.test", &sample_message("465"))
            .await
            .code,
        250
    );
    c.send("QUIT").await;
    c.expect(221).await;
    let r = &proxy.records(1).await[0];
    assert_eq!(r["mode"], "implicit");
    assert_eq!(r["tls"], "established");
    assert_eq!(r["starttls_used"], false);
    assert_eq!(r["messages_accepted"], 1);
    proxy.stop().await;
}

#[tokio::test]
async fn ehlo_offers_filtered_backend_extensions() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    // The start-up probe teaches tlsfront the backend's keywords.
    mta.wait_connections(1).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    let before = c.expect(250).await;
    assert!(before.starts_with("250-mx.tlsfront.test\n"), "{before}");
    for kw in [
        "PIPELINING",
        "8BITMIME",
        "SIZE 10000000",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "250 STARTTLS",
    ] {
        assert!(before.contains(kw), "missing {kw}: {before}");
    }
    for kw in ["AUTH", "CHUNKING", "XCLIENT"] {
        assert!(
            !before.contains(kw),
            "must not offer {kw} before TLS: {before}"
        );
    }
    assert_eq!(
        before.matches("STARTTLS").count(),
        1,
        "only tlsfront's own STARTTLS"
    );
    c.send("STARTTLS").await;
    c.expect(220).await;
    let mut c = c
        .tls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await
        .unwrap();
    c.send("MAIL FROM:<a@b.test>").await;
    c.expect(503).await; // EHLO again first after TLS
    c.send("EHLO client.test").await;
    let after = c.expect(250).await;
    assert!(after.contains("AUTH PLAIN LOGIN"), "{after}");
    assert!(
        !after.contains("STARTTLS") && !after.contains("CHUNKING"),
        "{after}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn commands_pipelined_after_starttls_are_discarded() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    let injected =
        b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\nRCPT TO:<victim@legacy.test>\r\n";
    c.send_raw(injected).await;
    c.expect(220).await;
    let mut c = c
        .tls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await
        .unwrap();
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("NOOP").await;
    c.expect(250).await;
    c.send("QUIT").await;
    c.expect(221).await;
    assert!(
        !mta.commands().iter().any(|l| l.contains("injected")),
        "plaintext injection reached the backend: {:?}",
        mta.commands()
    );
    let r = &proxy.records(1).await[0];
    assert_eq!(
        r["pipelined_after_starttls"].as_u64().unwrap() as usize,
        injected.len() - "STARTTLS\r\n".len()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn starttls_misuse_gets_rfc3207_replies() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("STARTTLS now").await;
    assert!(c.expect(501).await.contains("5.5.4"));
    c.send("MAIL FROM:<a@b.test>").await;
    c.expect(250).await;
    c.send("STARTTLS").await;
    assert!(c.expect(503).await.contains("transaction"));
    c.send("RSET").await;
    c.expect(250).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    c.send("STARTTLS").await;
    c.expect(554).await;
    c.send("QUIT").await;
    c.expect(221).await;
    proxy.stop().await;
}

#[tokio::test]
async fn scanners_never_reach_the_backend() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let probes = mta.wait_connections(1).await;
    // Connect and leave; EHLO/NOOP/RSET/QUIT; junk before HELO; a failed handshake.
    drop(Client::greeted(proxy.starttls).await);
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("GET / HTTP/1.1").await;
    c.expect(500).await;
    c.send("EHLO scanner.test").await;
    c.expect(250).await;
    c.send("NOOP").await;
    c.expect(250).await;
    c.send("RSET").await;
    c.expect(250).await;
    c.send("HELP").await;
    c.expect(214).await;
    c.send("QUIT").await;
    c.expect(221).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("STARTTLS").await;
    c.expect(220).await;
    c.send_raw(b"this is not a TLS ClientHello\r\n").await;
    assert!(c.closed().await);
    let recs = proxy.records(3).await;
    assert_eq!(mta.connections(), probes, "the backend was contacted");
    assert!(recs.iter().all(|r| r["backend_contacted"] == false));
    let failed = recs
        .iter()
        .find(|r| r["tls"] == "failed")
        .expect("failed handshake record");
    assert_eq!(failed["failure_reason"], "not_tls");
    assert_eq!(failed["close_reason"], "handshake_failed");
    proxy.stop().await;
}

#[tokio::test]
async fn failed_handshake_records_reason_and_client_hello() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;

    // A client that does not trust tlsfront's CA: it aborts with an alert.
    let other = Pki::new(&["mx.tlsfront.test"]);
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("STARTTLS").await;
    c.expect(220).await;
    assert!(
        c.tls(other.client_config(&[&TLS13]), "mx.tlsfront.test")
            .await
            .is_err()
    );

    // A TLS 1.0-only client offering RSA-kx CBC suites (a hand-made ClientHello).
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("STARTTLS").await;
    c.expect(220).await;
    c.send_raw(&tls10_client_hello()).await;
    assert!(c.closed().await);

    let recs = proxy.records(2).await;
    let untrusted = recs.iter().find(|r| {
        r["failure_reason"] == "alert_unknown_ca" || r["failure_reason"] == "alert_bad_certificate"
    });
    assert!(untrusted.is_some(), "{recs:?}");
    let old = recs
        .iter()
        .find(|r| r["failure_reason"] == "client_tls_version_too_old")
        .unwrap_or_else(|| panic!("{recs:?}"));
    assert_eq!(old["tls"], "failed");
    assert_eq!(
        old["client_hello"]["versions"],
        serde_json::json!(["TLSv1.0"])
    );
    assert_eq!(
        old["client_hello"]["cipher_suites"],
        serde_json::json!([
            "TLS_RSA_WITH_AES_128_CBC_SHA",
            "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        ])
    );
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

#[tokio::test]
async fn pipelined_transaction_keeps_reply_order() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript {
        reject_rcpt: Some("nobody".into()),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    c.send_raw(b"MAIL FROM:<a@origin.test>\r\nRCPT TO:<nobody@legacy.test>\r\nRCPT TO:<user@legacy.test>\r\nDATA\r\n")
        .await;
    c.expect(250).await;
    assert!(c.expect(550).await.contains("User unknown"));
    c.expect(250).await;
    c.expect(354).await;
    c.send_raw(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        .await;
    c.expect(250).await;
    c.expect(221).await;
    assert_eq!(mta.messages().len(), 1);
    let r = &proxy.records(1).await[0];
    assert_eq!(r["recipients"], 1);
    proxy.stop().await;
}

/// RFC 2920 §3.1: replies to a pipelined group leave together once the
/// group's last command is answered, in one TLS record, not one by one.
#[tokio::test]
async fn replies_to_a_pipelined_group_leave_together() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let delay = Duration::from_millis(150);
    let mta = Mta::start(MtaScript {
        envelope_delay: Some(delay),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    c.send_raw(b"MAIL FROM:<a@origin.test>\r\nRCPT TO:<one@legacy.test>\r\nRCPT TO:<two@legacy.test>\r\nDATA\r\n")
        .await;
    c.expect(250).await;
    // Held back until DATA was answered: the rest is already here. Sent one
    // by one, the next reply would still be a backend delay away.
    for code in [250, 250, 354] {
        let r = tokio::time::timeout(delay / 3, c.reply())
            .await
            .expect("reply not sent with the first one");
        assert_eq!(r.code, code, "{}", r.text);
    }
    c.send_raw(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        .await;
    c.expect(250).await;
    c.expect(221).await;
    assert_eq!(mta.messages().len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn backend_down_gets_4xx_and_nothing_is_accepted() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    // A port with nothing listening.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::start(dead, Some(&pki), "").await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    c.send("MAIL FROM:<a@origin.test>").await;
    assert!(c.expect(451).await.contains("4.4.1"));
    c.send("RCPT TO:<b@legacy.test>").await;
    c.expect(503).await;
    c.send("QUIT").await;
    c.expect(221).await;
    let r = &proxy.records(1).await[0];
    assert_eq!(r["messages_accepted"], 0);
    assert_eq!(r["backend_contacted"], true);
    assert_eq!(r["backend_error"], "connect_failed");
    proxy.stop().await;
}

#[tokio::test]
async fn backend_refusing_at_greeting_is_passed_on() {
    let mta = Mta::start(MtaScript {
        greeting: "554 5.3.2 legacy.test not accepting mail".into(),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@origin.test>").await;
    assert!(c.expect(554).await.contains("not accepting mail"));
    c.send("QUIT").await;
    c.expect(221).await;
    assert_eq!(proxy.records(1).await[0]["backend_error"], "refused_554");
    proxy.stop().await;
}

#[tokio::test]
async fn backend_vanishing_mid_data_never_yields_250() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript {
        close_in_data_after: Some(1000),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..20_000 {
        big.extend_from_slice(format!("line {i} of a long message body\r\n").as_bytes());
    }
    let r = c.mail("a@origin.test", "b@legacy.test", &big).await;
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.contains("4.4.2"));
    assert!(mta.messages().is_empty());
    c.send("QUIT").await;
    c.expect(221).await;
    let rec = &proxy.records(1).await[0];
    assert_eq!(rec["messages_accepted"], 0);
    assert_eq!(rec["messages_rejected"], 1);
    assert!(
        ["io_error", "closed"].contains(&rec["backend_error"].as_str().unwrap()),
        "{rec}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn client_vanishing_mid_data_leaves_no_message() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    c.send("MAIL FROM:<a@origin.test>").await;
    c.expect(250).await;
    c.send("RCPT TO:<b@legacy.test>").await;
    c.expect(250).await;
    c.send("DATA").await;
    c.expect(354).await;
    c.send_raw(b"Subject: cut\r\n\r\nhalf a message\r\n").await;
    drop(c);
    let r = &proxy.records(1).await[0];
    assert_eq!(r["close_reason"], "client_closed_in_data");
    // The backend saw its connection end before any end-of-data line.
    for _ in 0..100 {
        if !mta.log.lock().unwrap().partial.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(mta.messages().is_empty());
    assert_eq!(mta.log.lock().unwrap().partial.len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn smuggled_end_of_data_reaches_backend_as_content() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    let content = b"Subject: outer\r\n\r\nouter\n.\nMAIL FROM:<spoof@bank.test>\nRCPT TO:<x@legacy.test>\nDATA\ninner\r\n";
    assert_eq!(
        c.mail("a@origin.test", "b@legacy.test", content).await.code,
        250
    );
    let msgs = mta.messages();
    assert_eq!(msgs.len(), 1);
    let expected = b"Subject: outer\r\n\r\nouter\r\n..\r\nMAIL FROM:<spoof@bank.test>\r\nRCPT TO:<x@legacy.test>\r\nDATA\r\ninner\r\n.\r\n";
    assert_eq!(
        String::from_utf8_lossy(&msgs[0]),
        String::from_utf8_lossy(expected),
        "bare LFs become CRLF and the smuggled dot line is stuffed"
    );
    assert!(!mta.commands().iter().any(|c| c.contains("spoof")));
    c.send("QUIT").await;
    c.expect(221).await;
    assert_eq!(proxy.records(1).await[0]["bare_line_endings"], 5);
    proxy.stop().await;
}

#[tokio::test]
async fn bare_line_endings_can_be_rejected() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "[smtp]\nbare_line_endings = \"reject\"\n").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    let r = c
        .mail(
            "a@origin.test",
            "b@legacy.test",
            b"Subject: x\r\n\r\nbare\nline\r\n",
        )
        .await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(r.text.contains("5.5.2"));
    // The session goes on and a clean message still gets through.
    let r = c
        .mail("a@origin.test", "b@legacy.test", &sample_message("clean"))
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    c.send("QUIT").await;
    c.expect(221).await;
    assert_eq!(
        mta.messages().len(),
        1,
        "only the clean message reached the backend"
    );
    let r = &proxy.records(1).await[0];
    assert_eq!(r["messages_rejected"], 1);
    assert_eq!(r["messages_accepted"], 1);
    proxy.stop().await;
}

#[tokio::test]
async fn overlong_line_is_refused_and_session_survives() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "[smtp]\nmax_line_length = 1000\n").await;
    let mut c = Client::greeted(proxy.starttls).await;
    let long = format!("EHLO {}", "x".repeat(100_000));
    c.send(&long).await;
    assert!(c.expect(500).await.contains("5.5.2"));
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("QUIT").await;
    c.expect(221).await;
    proxy.stop().await;
}

#[tokio::test]
async fn without_certificate_no_starttls_is_offered() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::launch(
        mta.addr,
        None,
        "[tls]\ngenerate_self_signed = false\n",
        false,
    )
    .await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    let ehlo = c.expect(250).await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    c.send("STARTTLS").await;
    c.expect(502).await;
    proxy.stop().await;
}

#[tokio::test]
async fn self_signed_certificate_is_generated_and_marked() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c.starttls(insecure_client(), "mx.tlsfront.test").await;
    c.send("QUIT").await;
    c.expect(221).await;
    let r = &proxy.records(1).await[0];
    assert_eq!(r["tls"], "established");
    assert_eq!(r["self_signed"], true);
    assert_eq!(r["cert_subject"], "CN=mx.tlsfront.test");
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_lets_a_transaction_finish_then_says_421() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await; // shutdown_grace = 1s
    let mut busy = Client::greeted(proxy.starttls).await;
    busy.send("EHLO busy.test").await;
    busy.expect(250).await;
    busy.send("MAIL FROM:<a@origin.test>").await;
    busy.expect(250).await;
    busy.send("RCPT TO:<b@legacy.test>").await;
    busy.expect(250).await;
    let mut idle = Client::greeted(proxy.starttls).await;
    proxy.shutdown.cancel();
    assert!(
        idle.expect(421).await.contains("4.3.2"),
        "idle sessions end at once"
    );
    // The transaction in flight may still finish within the grace time.
    busy.send("DATA").await;
    busy.expect(354).await;
    busy.send_raw(b"Subject: in flight\r\n\r\nstill delivered\r\n.\r\n")
        .await;
    busy.expect(250).await;
    assert_eq!(mta.messages().len(), 1);
    // ... and then the session ends too.
    assert!(busy.expect(421).await.contains("4.3.2"));
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_grace_over_ends_a_stalled_transaction_with_421() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await; // shutdown_grace = 1s
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO stalled.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@origin.test>").await;
    c.expect(250).await;
    proxy.shutdown.cancel();
    let started = std::time::Instant::now();
    assert!(c.expect(421).await.contains("4.3.2"));
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "ended before the grace time"
    );
    assert!(mta.messages().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_ends_idle_sessions_with_421() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    proxy.shutdown.cancel();
    assert!(c.expect(421).await.contains("4.3.2"));
    let r = &proxy.records(1).await[0];
    assert_eq!(r["close_reason"], "shutdown");
    proxy.stop().await;
}

/// A client that accepts any certificate (for the self-signed case only).
fn insecure_client() -> std::sync::Arc<rustls::ClientConfig> {
    std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(tlsfront::proxy::backend::tls::unauthenticated())
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn backend_refusing_ehlo_and_helo_is_passed_on() {
    let mta = Mta::start(MtaScript {
        refuse_helo: Some("550 5.7.1 Go away".into()),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@origin.test>").await;
    assert!(c.expect(550).await.contains("Go away"));
    let cmds = mta.commands();
    assert!(
        cmds.contains(&"HELO client.test".to_string()),
        "HELO fallback: {cmds:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn malformed_backend_reply_is_never_passed_as_success() {
    let mta = Mta::start(MtaScript {
        mail_reply_raw: Some("2x0 broken\r\n".into()),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@origin.test>").await;
    assert!(c.expect(451).await.contains("4.4.2"));
    c.send("RCPT TO:<b@legacy.test>").await;
    c.expect(503).await;
    proxy.stop().await;
}

#[tokio::test]
async fn backend_connections_come_from_the_source_address() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "source_address = \"127.0.0.2\"\n").await;
    mta.wait_connections(1).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@origin.test>").await;
    c.expect(250).await;
    let peers = mta.log.lock().unwrap().peers.clone();
    assert!(peers.len() >= 2, "{peers:?}");
    assert!(
        peers.iter().all(|p| p.ip().to_string() == "127.0.0.2"),
        "{peers:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn ipv6_listener_serves() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::launch(
        mta.addr,
        None,
        "[[listener]]\naddress = [\"[::1]:0\"]\n",
        false,
    )
    .await;
    let v6 = proxy.implicit; // the second listener (here a STARTTLS one on ::1)
    assert!(v6.is_ipv6());
    let mut c = Client::greeted(v6).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("QUIT").await;
    c.expect(221).await;
    let r = &proxy.records(1).await[0];
    assert_eq!(r["client_ip"], "::1");
    proxy.stop().await;
}

/// The README's pair, `0.0.0.0:P` and `[::]:P`, binds on a host with
/// `net.ipv6.bindv6only = 0` (Debian's default), and each family's client is
/// served by its own listener.
#[tokio::test]
async fn dual_stack_pair_on_one_port_binds_and_serves_both_families() {
    let mta = Mta::start(MtaScript::default()).await;
    // A port free in both families: a dual-stack socket reserves it for a moment.
    let port = {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        s.set_only_v6(false).unwrap();
        s.bind(&"[::]:0".parse::<std::net::SocketAddr>().unwrap().into())
            .unwrap();
        s.local_addr().unwrap().as_socket().unwrap().port()
    };
    let proxy = Proxy::configured(
        mta.addr,
        None,
        "",
        &format!("address = [\"0.0.0.0:{port}\", \"[::]:{port}\"]\n"),
        "",
        false,
    )
    .await;
    for (client, ip) in [("127.0.0.1", "127.0.0.1"), ("[::1]", "::1")] {
        let addr: std::net::SocketAddr = format!("{client}:{port}").parse().unwrap();
        let mut c = Client::greeted(addr).await;
        c.send("EHLO client.test").await;
        c.expect(250).await;
        c.send("QUIT").await;
        c.expect(221).await;
        let records = proxy.records(if ip == "::1" { 2 } else { 1 }).await;
        let r = records.last().unwrap();
        assert_eq!(r["client_ip"], ip, "{r}");
        // Each family on its own listener: never an IPv4-mapped address.
        let listener = if ip == "::1" {
            format!("[::]:{port}")
        } else {
            format!("0.0.0.0:{port}")
        };
        assert_eq!(r["listener"], listener, "{r}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn configured_cipher_suites_are_tlsfronts_order_of_preference() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    // The rustls client offers AES-256-GCM first; tlsfront's list decides.
    let proxy = Proxy::start(
        mta.addr,
        Some(&pki),
        "[tls]\ncipher_suites = [\"TLS13_AES_128_GCM_SHA256\", \"TLS13_AES_256_GCM_SHA384\"]\n",
    )
    .await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    c.send("QUIT").await;
    c.expect(221).await;
    let r = &proxy.records(1).await[0];
    assert_eq!(r["cipher_suite"], "TLS13_AES_128_GCM_SHA256", "{r}");
    proxy.stop().await;
}

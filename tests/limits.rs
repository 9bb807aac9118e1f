//! Limits and policy: connection caps, early talkers, recipient cap, require_tls.

mod common;

use common::*;
use rustls::version::TLS13;

#[tokio::test]
async fn global_cap_answers_421_and_records_it() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::configured(mta.addr, None, "max_connections = 2", "", "", false).await;
    let _a = Client::greeted(proxy.starttls).await;
    let _b = Client::greeted(proxy.starttls).await;
    let mut c = Client::connect(proxy.starttls).await;
    assert!(c.expect(421).await.contains("4.7.0"));
    assert!(c.closed().await);
    let recs = proxy.records(1).await;
    assert_eq!(recs[0]["close_reason"], "connection_limit");
    drop(_a);
    // A place is free again once a session ends.
    let _ = proxy.records(2).await;
    let _d = Client::greeted(proxy.starttls).await;
    proxy.stop().await;
}

#[tokio::test]
async fn per_client_cap_answers_421() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::configured(
        mta.addr,
        None,
        "max_connections_per_client = 1",
        "",
        "",
        false,
    )
    .await;
    let _a = Client::greeted(proxy.starttls).await;
    let mut b = Client::connect(proxy.starttls).await;
    assert!(b.expect(421).await.contains("Too many connections"));
    let recs = proxy.records(1).await;
    assert_eq!(recs[0]["close_reason"], "client_connection_limit");
    proxy.stop().await;
}

#[tokio::test]
async fn early_talker_is_refused_and_recorded() {
    let mta = Mta::start(MtaScript::default()).await;
    let probes = mta.wait_connections(1).await;
    let proxy = Proxy::configured(
        mta.addr,
        None,
        "",
        "",
        "[smtp]\ngreeting_delay = \"300ms\"\n",
        false,
    )
    .await;
    let mut c = Client::connect(proxy.starttls).await;
    c.send("EHLO too.early.test").await;
    assert!(c.expect(554).await.contains("synchronization"));
    assert!(c.closed().await);
    let r = &proxy.records(1).await[0];
    assert_eq!(r["close_reason"], "early_talker");
    assert_eq!(r["backend_contacted"], false);
    // A patient client is served as usual.
    let mut ok = Client::greeted(proxy.starttls).await;
    ok.send("EHLO patient.test").await;
    ok.expect(250).await;
    assert!(mta.connections() <= probes + 1);
    proxy.stop().await;
}

#[tokio::test]
async fn recipients_beyond_the_cap_get_452() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "[smtp]\nmax_recipients = 2\n").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@origin.test>").await;
    c.expect(250).await;
    for i in 0..2 {
        c.send(&format!("RCPT TO:<u{i}@legacy.test>")).await;
        c.expect(250).await;
    }
    c.send("RCPT TO:<u2@legacy.test>").await;
    assert!(c.expect(452).await.contains("4.5.3"));
    assert!(
        !mta.commands().iter().any(|l| l.contains("u2@")),
        "the extra RCPT reached the backend"
    );
    // The cap is per message.
    c.send("DATA").await;
    c.expect(354).await;
    c.send_raw(b"Subject: x\r\n\r\nx\r\n.\r\n").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@origin.test>").await;
    c.expect(250).await;
    c.send("RCPT TO:<u3@legacy.test>").await;
    c.expect(250).await;
    proxy.stop().await;
}

#[tokio::test]
async fn require_tls_refuses_mail_before_starttls() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let probes = mta.wait_connections(0).await;
    let proxy = Proxy::configured(mta.addr, Some(&pki), "", "require_tls = true", "", false).await;
    let probes = mta.wait_connections(probes + 1).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@origin.test>").await;
    assert!(c.expect(530).await.contains("5.7.0"));
    c.send("VRFY postmaster").await;
    c.expect(530).await;
    assert_eq!(
        mta.connections(),
        probes,
        "refused work must not reach the backend"
    );
    c.send("STARTTLS").await;
    c.expect(220).await;
    let mut c = c
        .tls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await
        .unwrap();
    c.send("EHLO client.test").await;
    c.expect(250).await;
    assert_eq!(
        c.mail("a@origin.test", "b@legacy.test", &sample_message("req"))
            .await
            .code,
        250
    );
    c.send("QUIT").await;
    c.expect(221).await;
    let r = &proxy.records(1).await[0];
    assert_eq!(r["tls_required_refusals"], 2);
    assert_eq!(r["messages_accepted"], 1);
    proxy.stop().await;
}

#[tokio::test]
async fn require_tls_log_mode_records_what_it_would_refuse() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::configured(mta.addr, None, "", "require_tls = \"log\"", "", false).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    assert_eq!(
        c.mail("a@origin.test", "b@legacy.test", &sample_message("log"))
            .await
            .code,
        250
    );
    c.send("QUIT").await;
    c.expect(221).await;
    let r = &proxy.records(1).await[0];
    assert_eq!(r["tls_required_would_refuse"], 1);
    assert_eq!(r["tls_required_refusals"], 0);
    assert_eq!(r["tls"], "not_attempted");
    proxy.stop().await;
}

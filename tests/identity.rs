//! The client's identity for the backend: XCLIENT, PROXY headers to the
//! backend, a Received header, and PROXY headers from a trusted balancer.

mod common;

use common::*;
use rustls::version::TLS13;

#[tokio::test]
async fn xclient_passes_the_real_client_when_offered_and_allowed() {
    let mta = Mta::start(MtaScript {
        ehlo: [
            "legacy.test",
            "PIPELINING",
            "XCLIENT NAME ADDR PORT PROTO HELO LOGIN",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::start(mta.addr, None, "xclient = true\n").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client+one.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@x.test>").await;
    c.expect(250).await;
    let cmds = mta.commands();
    let x = cmds
        .iter()
        .find(|l| l.starts_with("XCLIENT "))
        .unwrap_or_else(|| panic!("{cmds:?}"));
    assert_eq!(
        *x,
        format!(
            "XCLIENT ADDR=127.0.0.1 PORT={} NAME=[UNAVAILABLE] HELO=client+2Bone.test PROTO=ESMTP",
            c.local.port()
        )
    );
    // After XCLIENT the backend session restarts: EHLO again, then the command.
    let pos = cmds.iter().position(|l| l.starts_with("XCLIENT")).unwrap();
    assert_eq!(cmds[pos + 1], "EHLO client+one.test");
    assert_eq!(cmds[pos + 2], "MAIL FROM:<a@x.test>");
    c.send("QUIT").await;
    c.expect(221).await;
    assert_eq!(proxy.records(1).await[0]["backend_identity"], "xclient");
    proxy.stop().await;
}

#[tokio::test]
async fn no_xclient_unless_configured() {
    let mta = Mta::start(MtaScript::default()).await; // offers XCLIENT
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@x.test>").await;
    c.expect(250).await;
    assert!(!mta.commands().iter().any(|l| l.starts_with("XCLIENT")));
    proxy.stop().await;
}

#[tokio::test]
async fn proxy_v1_header_to_the_backend() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "proxy_protocol = \"v1\"\n").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@x.test>").await;
    c.expect(250).await;
    let want = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}",
        c.local.port(),
        proxy.starttls.port()
    );
    assert!(mta.commands().contains(&want), "{:?}", mta.commands());
    c.send("QUIT").await;
    c.expect(221).await;
    assert_eq!(proxy.records(1).await[0]["backend_identity"], "proxy_v1");
    proxy.stop().await;
}

#[tokio::test]
async fn received_header_is_prepended_and_the_message_is_untouched() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "[smtp]\nreceived_header = true\n").await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    let msg = sample_message("trace");
    assert_eq!(
        c.mail("a@origin.test", "b@legacy.test", &msg).await.code,
        250
    );
    let stored = mta.messages().remove(0);
    let text = String::from_utf8_lossy(&stored);
    let expected_tail = [msg.as_slice(), b".\r\n"].concat();
    assert!(
        stored.ends_with(&expected_tail),
        "original bytes changed: {text}"
    );
    let header = &text[..stored.len() - expected_tail.len()];
    assert!(
        header.starts_with(&format!(
            "Received: from client.test ([127.0.0.1]:{})\r\n",
            c.local.port()
        )),
        "{header}"
    );
    assert!(
        header.contains("(using TLSv1.3 with cipher TLS13_"),
        "{header}"
    );
    assert!(
        header.contains("by mx.tlsfront.test (tlsfront) with ESMTPS id "),
        "{header}"
    );
    assert!(header.ends_with(" +0000\r\n"), "{header}");
    proxy.stop().await;
}

/// Connects as a trusted balancer would: PROXY header first, then SMTP.
async fn via_balancer(proxy: &Proxy, header: &[u8]) -> Client {
    let mut c = Client::connect(proxy.starttls).await;
    c.send_raw(header).await;
    c.expect(220).await;
    c
}

#[tokio::test]
async fn proxy_header_from_a_trusted_balancer_names_the_client() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::configured(
        mta.addr,
        None,
        "trusted_proxies = [\"127.0.0.0/8\"]",
        "proxy_protocol = true",
        "",
        false,
    )
    .await;
    let mut c = via_balancer(&proxy, b"PROXY TCP4 203.0.113.9 192.0.2.1 4444 25\r\n").await;
    c.send("QUIT").await;
    c.expect(221).await;
    let mut v2 = tlsfront::wire::proxyproto::encode(
        tlsfront::wire::proxyproto::Version::V2,
        "[2001:db8::9]:5555".parse().unwrap(),
        "[2001:db8::1]:25".parse().unwrap(),
    );
    let mut c = via_balancer(&proxy, &v2).await;
    c.send("QUIT").await;
    c.expect(221).await;
    // Bytes after the header are the client's: talking before the greeting
    // still counts as early talking (the header reader consumed nothing more).
    v2.extend_from_slice(b"EHLO too.early.test\r\n");
    let mut c = Client::connect(proxy.starttls).await;
    c.send_raw(&v2).await;
    c.expect(554).await;
    let mut bad = Client::connect(proxy.starttls).await;
    bad.send_raw(b"EHLO no.header.test\r\n").await;
    assert!(bad.closed().await);
    let recs = proxy.records(4).await;
    let ips: Vec<_> = recs
        .iter()
        .map(|r| r["client_ip"].as_str().unwrap().to_string())
        .collect();
    assert!(ips.contains(&"203.0.113.9".to_string()), "{ips:?}");
    assert!(ips.contains(&"2001:db8::9".to_string()), "{ips:?}");
    assert!(
        recs.iter()
            .any(|r| r["close_reason"] == "proxy_protocol_error"),
        "{recs:?}"
    );
    assert!(
        recs.iter()
            .any(|r| r["close_reason"] == "early_talker" && r["client_ip"] == "2001:db8::9"),
        "{recs:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_balancers_health_check_is_recorded_as_such_with_the_host() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::configured(
        mta.addr,
        None,
        "trusted_proxies = [\"127.0.0.0/8\"]\nhost_id = \"mx-b\"",
        "proxy_protocol = true",
        "",
        false,
    )
    .await;
    // HAProxy's `option smtpchk` over send-proxy-v2: a LOCAL header (no
    // client), EHLO, QUIT.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    let mut check = via_balancer(&proxy, &local).await;
    check.send("EHLO haproxy.test").await;
    check.expect(250).await;
    check.send("QUIT").await;
    check.expect(221).await;
    let v2 = tlsfront::wire::proxyproto::encode(
        tlsfront::wire::proxyproto::Version::V2,
        "203.0.113.7:6000".parse().unwrap(),
        "192.0.2.1:25".parse().unwrap(),
    );
    let mut c = via_balancer(&proxy, &v2).await;
    c.send("QUIT").await;
    c.expect(221).await;
    let recs = proxy.records(2).await;
    let by_origin = |o: &str| {
        recs.iter()
            .find(|r| r["origin"] == o)
            .unwrap_or_else(|| panic!("no {o} record in {recs:?}"))
    };
    let hc = by_origin("health_check");
    assert_eq!(hc["client_ip"], "127.0.0.1");
    assert_eq!(hc["helo"], "haproxy.test");
    assert_eq!(by_origin("proxied")["client_ip"], "203.0.113.7");
    assert!(recs.iter().all(|r| r["host"] == "mx-b"), "{recs:?}");
    assert_eq!(hc["backend_contacted"], false, "{hc}");
    proxy.stop().await;
}

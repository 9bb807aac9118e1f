//! Hostile input: every case asserts the reply, the record, what the backend
//! received, and that tlsfront goes on serving. (More hostile cases live in
//! e2e.rs: injection after STARTTLS, STARTTLS misuse, smuggling, malformed
//! backend replies, either side vanishing mid-DATA; and in limits.rs: caps
//! and early talkers.)

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rustls::version::TLS13;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A new session still gets greeted and served.
async fn still_serves(addr: SocketAddr) {
    let mut c = Client::greeted(addr).await;
    c.send("EHLO after.test").await;
    c.expect(250).await;
    c.send("QUIT").await;
    c.expect(221).await;
}

async fn ehlo(addr: SocketAddr) -> Client {
    let mut c = Client::greeted(addr).await;
    c.send("EHLO hostile.test").await;
    c.expect(250).await;
    c
}

const FAST: &str =
    "[smtp]\ncommand_timeout = \"1s\"\ndata_timeout = \"1s\"\n[tls]\nhandshake_timeout = \"1s\"\n";

#[tokio::test]
async fn megabyte_command_line() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = ehlo(proxy.starttls).await;
    let line = format!("MAIL FROM:<{}@x.test>", "a".repeat(1 << 20));
    c.send(&line).await;
    assert!(c.expect(500).await.contains("5.5.2 Line too long"));
    c.send("NOOP").await;
    c.expect(250).await;
    assert!(!mta.commands().iter().any(|l| l.starts_with("MAIL")));
    still_serves(proxy.starttls).await;
    proxy.stop().await;
}

#[tokio::test]
async fn line_without_crlf_held_open() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, FAST).await;
    let mut c = ehlo(proxy.starttls).await;
    c.send_raw(b"MAIL FROM:<slow@x.test>").await;
    assert!(c.expect(421).await.contains("4.4.2"));
    let r = &proxy.records(1).await[0];
    assert_eq!(r["close_reason"], "client_timeout");
    assert_eq!(r["backend_contacted"], false);
    still_serves(proxy.starttls).await;
    proxy.stop().await;
}

#[tokio::test]
async fn silent_client_after_greeting() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, FAST).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.expect(421).await;
    assert!(c.closed().await);
    assert_eq!(proxy.records(1).await[0]["close_reason"], "client_timeout");
    proxy.stop().await;
}

#[tokio::test]
async fn slowloris_in_the_handshake() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), FAST).await;
    let mut c = ehlo(proxy.starttls).await;
    c.send("STARTTLS").await;
    c.expect(220).await;
    c.send_raw(&[0x16, 0x03, 0x01, 0x02]).await; // a record header, then nothing
    assert!(c.closed().await);
    let r = &proxy.records(1).await[0];
    assert_eq!(r["tls"], "timeout");
    assert_eq!(r["failure_reason"], "handshake_timeout");
    assert_eq!(r["close_reason"], "handshake_timeout");
    still_serves(proxy.starttls).await;
    proxy.stop().await;
}

#[tokio::test]
async fn slowloris_in_data() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, FAST).await;
    let mut c = ehlo(proxy.starttls).await;
    c.send("MAIL FROM:<a@x.test>").await;
    c.expect(250).await;
    c.send("RCPT TO:<b@legacy.test>").await;
    c.expect(250).await;
    c.send("DATA").await;
    c.expect(354).await;
    c.send_raw(b"Subject: slow\r\n\r\nand then noth").await;
    assert!(c.expect(421).await.contains("4.4.2"));
    let r = &proxy.records(1).await[0];
    assert_eq!(r["close_reason"], "client_timeout");
    assert_eq!(r["messages_accepted"], 0);
    for _ in 0..100 {
        if !mta.log.lock().unwrap().partial.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(mta.messages().is_empty(), "a partial message was completed");
    still_serves(proxy.starttls).await;
    proxy.stop().await;
}

#[tokio::test]
async fn handshake_then_silence() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), FAST).await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    assert_eq!(c.reply().await.code, 421);
    let r = &proxy.records(1).await[0];
    assert_eq!(r["tls"], "established");
    assert_eq!(r["close_reason"], "client_timeout");
    proxy.stop().await;
}

/// Sends `hello` after STARTTLS and returns the record of the failed handshake.
async fn hello_fails(hello: &[u8]) -> serde_json::Value {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let probes = mta.wait_connections(1).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let mut c = ehlo(proxy.starttls).await;
    c.send("STARTTLS").await;
    c.expect(220).await;
    c.send_raw(hello).await;
    assert!(c.closed().await);
    let r = proxy.records(1).await[0].clone();
    assert_eq!(r["tls"], "failed");
    assert_eq!(r["close_reason"], "handshake_failed");
    assert!(
        mta.wait_connections(probes).await <= probes + 1,
        "backend contacted"
    );
    still_serves(proxy.starttls).await;
    proxy.stop().await;
    r
}

fn hello(version: u16, suites: &[u16]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    body.extend([0x42; 32]);
    body.push(0);
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([0x01, 0x00]);
    let mut hs = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x00, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend(hs);
    rec
}

#[tokio::test]
async fn sslv3_client_hello() {
    let r = hello_fails(&hello(0x0300, &[0x000a, 0x0005])).await;
    assert_eq!(r["failure_reason"], "client_tls_version_too_old");
    assert_eq!(r["client_hello"]["versions"], serde_json::json!(["SSLv3"]));
}

#[tokio::test]
async fn sslv2_client_hello() {
    // SSL 2.0 CLIENT-HELLO (msg type 1) as ancient clients send it.
    let r = hello_fails(&[
        0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
    ])
    .await;
    assert_eq!(r["failure_reason"], "sslv2_hello");
}

#[tokio::test]
async fn tls12_hello_with_only_cbc_rsa_suites() {
    let r = hello_fails(&hello(0x0303, &[0x002f, 0x0035, 0x003c])).await;
    assert_eq!(r["failure_reason"], "no_shared_cipher_suite", "{r}");
    assert_eq!(
        r["client_hello"]["versions"],
        serde_json::json!(["TLSv1.2"])
    );
}

#[tokio::test]
async fn tls_garbage() {
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x20];
    garbage.extend([0xff; 32]);
    let r = hello_fails(&garbage).await;
    assert_eq!(r["failure_reason"], "malformed_client_hello", "{r}");
}

/// A backend that greets with `greeting` bytes (or never, if empty) and then
/// holds the connection until the test ends.
async fn raw_backend(greeting: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            let g = greeting.clone();
            held.push(tokio::spawn(async move {
                let _ = s.write_all(&g).await;
                let mut sink = [0u8; 1024];
                while let Ok(n) = s.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            }));
        }
    });
    (addr, task)
}

#[tokio::test]
async fn backend_hangs_at_greeting() {
    let (addr, task) = raw_backend(Vec::new()).await;
    let proxy = Proxy::start(addr, None, "").await;
    let mut c = ehlo(proxy.starttls).await;
    c.send("MAIL FROM:<a@x.test>").await;
    assert!(c.expect(451).await.contains("4.4.1"));
    c.send("QUIT").await;
    c.expect(221).await;
    let r = &proxy.records(1).await[0];
    assert_eq!(r["backend_error"], "greeting_timeout");
    assert_eq!(r["messages_accepted"], 0);
    still_serves(proxy.starttls).await;
    proxy.stop().await;
    task.abort();
}

#[tokio::test]
async fn backend_sends_a_10mb_reply() {
    let mut huge = Vec::with_capacity(10 << 20);
    while huge.len() < 10 << 20 {
        huge.extend_from_slice(b"220-legacy.test the same line again and again\r\n");
    }
    let (addr, task) = raw_backend(huge).await;
    let proxy = Proxy::start(addr, None, "").await;
    let mut c = ehlo(proxy.starttls).await;
    c.send("MAIL FROM:<a@x.test>").await;
    assert!(c.expect(451).await.contains("4.4.1"));
    c.send("QUIT").await;
    c.expect(221).await;
    assert_eq!(
        proxy.records(1).await[0]["backend_error"],
        "malformed_reply"
    );
    still_serves(proxy.starttls).await;
    proxy.stop().await;
    task.abort();
}

#[tokio::test]
async fn pipelined_content_after_a_refused_data_never_reaches_the_backend() {
    let mta = Mta::start(MtaScript {
        reject_rcpt: Some("nobody".into()),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = ehlo(proxy.starttls).await;
    c.send_raw(
        b"MAIL FROM:<a@x.test>\r\nRCPT TO:<nobody@legacy.test>\r\nDATA\r\n\
          Subject: pipelined too early\r\n\r\nhello backend\r\nquit now\r\n.\r\nRSET\r\n",
    )
    .await;
    c.expect(250).await; // MAIL
    c.expect(550).await; // RCPT
    assert!(c.expect(554).await.contains("no valid recipients")); // DATA, answered by tlsfront
    c.expect(500).await; // "Subject: ..."
    c.expect(500).await; // ""
    c.expect(500).await; // "hello backend"
    c.expect(221).await; // "quit now": QUIT with an argument is still QUIT
    let cmds = mta.commands();
    assert!(
        !cmds.iter().any(|l| l == "DATA" || l.contains("hello")),
        "{cmds:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn ten_thousand_commands_in_one_packet() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = ehlo(proxy.starttls).await;
    let n = 10_000;
    c.send_raw("NOOP\r\n".repeat(n).as_bytes()).await;
    for _ in 0..n {
        assert_eq!(c.reply().await.code, 250);
    }
    c.send("QUIT").await;
    c.expect(221).await;
    still_serves(proxy.starttls).await;
    proxy.stop().await;
}

#[tokio::test]
async fn nul_bytes_and_non_ascii_helo() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send_raw(b"EHLO a\x00b.test\r\n").await;
    assert!(c.expect(500).await.contains("NUL"));
    c.send_raw(b"EHLO \xff\xfe.test\r\n").await;
    assert!(c.expect(501).await.contains("invalid host name"));
    c.send("EHLO good.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@x.test>").await;
    c.expect(250).await;
    assert!(mta.commands().contains(&"EHLO good.test".to_string()));
    proxy.stop().await;
}

#[tokio::test]
async fn proxy_protocol_header_from_untrusted_client_is_just_junk() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("PROXY TCP4 203.0.113.9 192.0.2.1 4444 25").await;
    c.expect(500).await;
    c.send("QUIT").await;
    c.expect(221).await;
    let r = &proxy.records(1).await[0];
    assert_eq!(
        r["client_ip"], "127.0.0.1",
        "the claimed address must not be believed"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn xclient_and_back_doors_never_reach_the_backend() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = ehlo(proxy.starttls).await;
    for cmd in [
        "XCLIENT ADDR=10.0.0.1",
        "XFORWARD ADDR=10.0.0.1",
        "DEBUG",
        "WIZ",
    ] {
        c.send(cmd).await;
        c.expect(502).await;
    }
    c.send("MAIL FROM:<a@x.test>").await;
    c.expect(250).await;
    let cmds = mta.commands();
    assert!(
        !cmds
            .iter()
            .any(|l| l.starts_with('X') || l == "DEBUG" || l == "WIZ"),
        "{cmds:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn bdat_ends_the_session() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = ehlo(proxy.starttls).await;
    c.send_raw(b"BDAT 20 LAST\r\nMAIL FROM:<x@y.test>\r\n")
        .await;
    c.expect(421).await;
    assert!(c.closed().await);
    assert_eq!(proxy.records(1).await[0]["close_reason"], "protocol_error");
    assert!(
        !mta.commands()
            .iter()
            .any(|l| l.starts_with("MAIL") || l.starts_with("BDAT"))
    );
    proxy.stop().await;
}

#[tokio::test]
async fn auth_before_tls_is_refused() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = ehlo(proxy.starttls).await;
    c.send("AUTH PLAIN AHVzZXIAcGFzcw==").await;
    assert!(c.expect(538).await.contains("5.7.11"));
    assert!(!mta.commands().iter().any(|l| l.starts_with("AUTH")));
    proxy.stop().await;
}

#[tokio::test]
async fn too_many_errors_end_the_session() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    for _ in 0..19 {
        c.send("\u{1}junk").await;
        c.expect(500).await;
    }
    c.send("\u{1}junk").await;
    assert!(c.expect(421).await.contains("Too many errors"));
    assert!(c.closed().await);
    assert_eq!(proxy.records(1).await[0]["close_reason"], "protocol_error");
    still_serves(proxy.starttls).await;
    proxy.stop().await;
}

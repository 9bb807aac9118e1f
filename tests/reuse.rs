//! Backend connection reuse (`backend.reuse_idle_time`): a clean session
//! leaves its backend connection for the next one, which re-introduces itself
//! with EHLO; anything unclean, expired, dead or bound to a client identity
//! is never reused.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One plaintext session through the proxy: EHLO as `helo`, one message.
async fn deliver(proxy: &Proxy, helo: &str, id: &str) {
    let mut c = Client::greeted(proxy.starttls).await;
    c.send(&format!("EHLO {helo}")).await;
    c.expect(250).await;
    let r = c
        .mail(
            "sender@origin.test",
            "user@legacy.test",
            &sample_message(id),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    c.send("QUIT").await;
    c.expect(221).await;
}

#[tokio::test]
async fn a_clean_session_leaves_its_connection_for_the_next() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "[metrics]\nlisten = \"127.0.0.1:0\"\n").await;
    let probes = mta.wait_connections(1).await;

    deliver(&proxy, "first.test", "one").await;
    deliver(&proxy, "second.test", "two").await;

    assert_eq!(mta.messages().len(), 2);
    assert_eq!(
        mta.connections(),
        probes + 1,
        "the second session used the first one's connection"
    );
    let cmds = mta.commands();
    let first = cmds.iter().position(|c| c == "EHLO first.test").unwrap();
    let second = cmds.iter().position(|c| c == "EHLO second.test").unwrap();
    assert!(first < second);
    assert!(
        !cmds[first..second].iter().any(|c| c == "QUIT"),
        "no QUIT between the sessions: {cmds:?}"
    );
    let recs = proxy.records(2).await;
    assert_eq!(recs[0]["backend_reused"], false);
    assert!(recs[0]["backend_connect_ms"].is_number());
    assert_eq!(recs[1]["backend_reused"], true, "{}", recs[1]);
    assert!(recs[1]["backend_connect_ms"].is_null());
    assert_eq!(recs[1]["messages_accepted"], 1);
    let (_, body) = proxy.scrape("/metrics").await;
    for (how, n) in [("new", 1.0), ("reused", 1.0)] {
        let series = format!("tlsfront_backend_sessions_total{{connection=\"{how}\"}}");
        assert_eq!(sample(&body, &series), Some(n), "{body}");
    }
    proxy.stop().await;
    // At shutdown the kept connection is closed with QUIT.
    for _ in 0..100 {
        if mta.commands().last().map(String::as_str) == Some("QUIT") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "kept connection not closed at shutdown: {:?}",
        mta.commands()
    );
}

#[tokio::test]
async fn an_error_reply_makes_the_connection_single_use() {
    let mta = Mta::start(MtaScript {
        reject_rcpt: Some("nobody@".into()),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let probes = mta.wait_connections(1).await;

    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO first.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@origin.test>").await;
    c.expect(250).await;
    c.send("RCPT TO:<nobody@legacy.test>").await;
    c.expect(550).await;
    c.send("RSET").await;
    c.expect(250).await;
    c.send("QUIT").await;
    c.expect(221).await;

    deliver(&proxy, "second.test", "two").await;
    assert_eq!(
        mta.connections(),
        probes + 2,
        "a connection that saw a 550 is not reused (the backend counts errors per connection)"
    );
    let recs = proxy.records(2).await;
    assert_eq!(recs[1]["backend_reused"], false);
    proxy.stop().await;
}

#[tokio::test]
async fn a_session_ending_inside_a_transaction_does_not_leave_its_connection() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let probes = mta.wait_connections(1).await;

    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO first.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@origin.test>").await;
    c.expect(250).await;
    c.send("QUIT").await;
    c.expect(221).await;

    deliver(&proxy, "second.test", "two").await;
    assert_eq!(mta.connections(), probes + 2);
    proxy.stop().await;
}

#[tokio::test]
async fn reuse_off_and_identity_forwarding_open_one_connection_per_session() {
    for extra in ["reuse_idle_time = \"0s\"\n", "xclient = true\n"] {
        let mta = Mta::start(MtaScript::default()).await;
        let proxy = Proxy::start(mta.addr, None, extra).await;
        let probes = mta.wait_connections(1).await;
        deliver(&proxy, "first.test", "one").await;
        deliver(&proxy, "second.test", "two").await;
        assert_eq!(mta.connections(), probes + 2, "{extra}");
        assert_eq!(mta.messages().len(), 2);
        let quits = mta.commands().iter().filter(|c| *c == "QUIT").count();
        assert!(quits >= 2, "each session said QUIT ({extra})");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_kept_connection_is_closed_when_its_idle_time_is_over() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "reuse_idle_time = \"200ms\"\n").await;
    let probes = mta.wait_connections(1).await;
    let quits_before = mta.commands().iter().filter(|c| *c == "QUIT").count();

    deliver(&proxy, "first.test", "one").await;
    let mut closed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if mta.commands().iter().filter(|c| *c == "QUIT").count() > quits_before {
            closed = true;
            break;
        }
    }
    assert!(closed, "idle connection not closed: {:?}", mta.commands());
    deliver(&proxy, "second.test", "two").await;
    assert_eq!(mta.connections(), probes + 2);
    proxy.stop().await;
}

/// A backend that drops each connection right after its first message (as a
/// backend whose idle timeout fired would): the next session must not notice.
#[tokio::test]
async fn a_kept_connection_the_backend_closed_is_replaced_transparently() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = tokio::spawn(async move {
        let mut accepted = 0usize;
        let mut messages = 0usize;
        while accepted < 10 {
            let Ok(Ok((mut s, _))) =
                tokio::time::timeout(Duration::from_secs(10), listener.accept()).await
            else {
                break;
            };
            accepted += 1;
            let _ = s.write_all(b"220 legacy.test ESMTP\r\n").await;
            let mut buf = Vec::new();
            let mut in_data = false;
            'conn: loop {
                let mut chunk = [0u8; 4096];
                let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await
                {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => break,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                    let line: Vec<u8> = buf.drain(..pos + 2).collect();
                    if in_data {
                        if line == b".\r\n" {
                            messages += 1;
                            let _ = s.write_all(b"250 2.0.0 queued\r\n").await;
                            // The backend's idle timeout, early.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            break 'conn;
                        }
                        continue;
                    }
                    let reply: &[u8] = match &line[..4.min(line.len())] {
                        b"EHLO" => b"250-legacy.test\r\n250 PIPELINING\r\n",
                        b"DATA" => {
                            in_data = true;
                            b"354 go\r\n"
                        }
                        b"QUIT" => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    let _ = s.write_all(reply).await;
                }
            }
        }
        messages
    });
    let proxy = Proxy::start(addr, None, "reuse_idle_time = \"5s\"\n").await;
    deliver(&proxy, "first.test", "one").await;
    // Let the backend's close arrive before the next session takes the connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    deliver(&proxy, "second.test", "two").await;
    deliver(&proxy, "third.test", "three").await;
    let recs = proxy.records(3).await;
    for r in &recs {
        assert_eq!(r["messages_accepted"], 1, "{r}");
        assert_eq!(r["backend_reused"], false, "{r}");
    }
    proxy.stop().await;
    assert_eq!(backend.await.unwrap(), 3);
}

//! Backend connection reuse (`backend.reuse_idle_time`): a clean session
//! leaves its backend connection for the next one, which re-introduces itself
//! with EHLO; anything unclean, expired, dead or bound to a client identity
//! is never reused. And the limit on backend connections
//! (`backend.max_connections`): past it sessions wait their turn, a session
//! between transactions gives its connection to the one waiting, and a wait
//! that outlasts `connect_timeout` ends in a 451.

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

/// EHLO and MAIL on a new session; returns it with MAIL's reply unread.
async fn mail_from(proxy: &Proxy, helo: &str) -> Client {
    let mut c = Client::greeted(proxy.starttls).await;
    c.send(&format!("EHLO {helo}")).await;
    c.expect(250).await;
    c.send(&format!("MAIL FROM:<a@{helo}>")).await;
    c
}

/// RCPT, DATA and a message, MAIL already accepted: the end of data's reply.
async fn rest_of_message(c: &mut Client, id: &str) -> Reply {
    c.send("RCPT TO:<user@legacy.test>").await;
    c.expect(250).await;
    c.send("DATA").await;
    c.expect(354).await;
    c.send_raw(&sample_message(id)).await;
    c.send_raw(b".\r\n").await;
    c.reply().await
}

/// The value of `series` once it equals `want` (polled, at most 5 s).
async fn gauge_reaches(proxy: &Proxy, series: &str, want: f64) -> String {
    let mut body = String::new();
    for _ in 0..100 {
        body = proxy.scrape("/metrics").await.1;
        if sample(&body, series) == Some(want) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} never reached {want}: {body}");
}

#[tokio::test]
async fn past_max_connections_sessions_wait_and_an_idle_session_lends_its_connection() {
    for (reuse, extra) in [
        (true, "max_connections = 1\n"),
        (false, "max_connections = 1\nreuse_idle_time = \"0s\"\n"),
    ] {
        let mta = Mta::start(MtaScript::default()).await;
        let proxy = Proxy::start(
            mta.addr,
            None,
            &format!("{extra}[metrics]\nlisten = \"127.0.0.1:0\"\n"),
        )
        .await;
        let probes = mta.wait_connections(1).await;

        let mut a = mail_from(&proxy, "first.test").await;
        a.expect(250).await;
        // The only connection is a's: b's MAIL waits for it.
        let mut b = mail_from(&proxy, "second.test").await;
        gauge_reaches(&proxy, "tlsfront_backend_waiting_sessions", 1.0).await;
        let body = proxy.scrape("/metrics").await.1;
        assert_eq!(
            sample(&body, "tlsfront_backend_connections"),
            Some(1.0),
            "{body}"
        );
        assert!(
            !mta.commands()
                .iter()
                .any(|c| c == "MAIL FROM:<a@second.test>"),
            "b reached the backend while a held its only connection: {:?}",
            mta.commands()
        );
        // a's message ends its transaction; a stays connected but lends its
        // connection (kept: handed over; not kept: closed, and b opens one).
        assert_eq!(rest_of_message(&mut a, "one").await.code, 250);
        b.expect(250).await;
        assert_eq!(rest_of_message(&mut b, "two").await.code, 250);
        // Now a waits for b's, which b gives back at QUIT.
        a.send("MAIL FROM:<a@first.test>").await;
        b.send("QUIT").await;
        b.expect(221).await;
        a.expect(250).await;
        assert_eq!(rest_of_message(&mut a, "three").await.code, 250);
        a.send("QUIT").await;
        a.expect(221).await;

        assert_eq!(mta.messages().len(), 3, "{extra}");
        let opened = mta.connections() - probes;
        assert_eq!(
            opened,
            if reuse { 1 } else { 3 },
            "{extra}: {:?}",
            mta.commands()
        );
        let recs = proxy.records(2).await;
        for r in &recs {
            assert!(r["backend_error"].is_null(), "{r}");
        }
        gauge_reaches(&proxy, "tlsfront_backend_waiting_sessions", 0.0).await;
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_session_that_waits_past_connect_timeout_gets_451_busy() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "max_connections = 1\n").await;
    mta.wait_connections(1).await;

    let mut a = mail_from(&proxy, "first.test").await;
    a.expect(250).await;
    let started = std::time::Instant::now();
    let mut b = mail_from(&proxy, "second.test").await;
    let r = b.reply().await;
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.contains("4.4.1"), "{}", r.text);
    // The proxy's test configuration waits 2 s (connect_timeout).
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    b.send("QUIT").await;
    b.expect(221).await;
    // a was never disturbed.
    assert_eq!(rest_of_message(&mut a, "one").await.code, 250);
    a.send("QUIT").await;
    a.expect(221).await;
    let recs = proxy.records(2).await;
    let busy = recs
        .iter()
        .find(|r| r["helo"] == "second.test")
        .expect("b's record");
    assert_eq!(busy["backend_error"], "busy", "{busy}");
    assert_eq!(busy["messages_accepted"], 0, "{busy}");
    assert_eq!(mta.messages().len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn a_session_idle_between_transactions_lends_its_connection_while_it_waits() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "max_connections = 1\n").await;
    let probes = mta.wait_connections(1).await;

    // a delivers, then sits idle holding the only connection.
    let mut a = mail_from(&proxy, "first.test").await;
    a.expect(250).await;
    assert_eq!(rest_of_message(&mut a, "one").await.code, 250);
    // b arrives after a went idle: a's wait for its next command lends it.
    let started = std::time::Instant::now();
    let mut b = mail_from(&proxy, "second.test").await;
    b.expect(250).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "b waited {:?} (connect_timeout is 2 s)",
        started.elapsed()
    );
    assert_eq!(rest_of_message(&mut b, "two").await.code, 250);
    b.send("QUIT").await;
    b.expect(221).await;
    // a's next message takes its turn and gets the connection back.
    a.send("MAIL FROM:<a@first.test>").await;
    a.expect(250).await;
    assert_eq!(rest_of_message(&mut a, "three").await.code, 250);
    a.send("QUIT").await;
    a.expect(221).await;
    assert_eq!(mta.messages().len(), 3);
    assert_eq!(mta.connections(), probes + 1, "{:?}", mta.commands());
    proxy.stop().await;
}

//! Issue 10's hostile findings, each as the attack that used to work: no
//! client inherits another's backend state, no backend reply is paired with a
//! command that did not ask for it, configured protections fail closed, and
//! no control byte reaches the backend inside a command.

mod common;

use std::time::Duration;

use common::*;

const RELAY_DOMAIN: &str = "external.example";

/// A backend that relays to `external.example` only for authenticated
/// connections and, like Postfix, keeps the SASL state across EHLO.
fn sasl_backend() -> MtaScript {
    MtaScript {
        relay_domain: Some(RELAY_DOMAIN.into()),
        ..MtaScript::default()
    }
}

/// EHLO, STARTTLS, EHLO again, AUTH PLAIN: an authenticated session.
async fn authenticate(mut c: Client, pki: &Pki) -> Client {
    c.send("EHLO user.test").await;
    c.expect(250).await;
    let mut c = c
        .starttls(
            pki.client_config(&[&rustls::version::TLS13]),
            "mx.tlsfront.test",
        )
        .await;
    c.send("EHLO user.test").await;
    c.expect(250).await;
    c.send("AUTH PLAIN AHVzZXIAcGFzcw==").await;
    c.expect(235).await;
    c
}

/// A plaintext sender that tries to relay: the RCPT reply it gets.
async fn try_relay(proxy: &Proxy) -> Reply {
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO anonymous.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<spam@anonymous.test>").await;
    c.expect(250).await;
    c.send(&format!("RCPT TO:<victim@{RELAY_DOMAIN}>")).await;
    let r = c.reply().await;
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    r
}

#[tokio::test]
async fn an_authenticated_backend_connection_is_never_handed_to_the_next_client() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(sasl_backend()).await;
    // Default settings: connection reuse is on (reuse_idle_time = 2s).
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    mta.wait_connections(1).await;

    // Port 25 with STARTTLS, then implicit TLS (465): either way, an
    // authenticated session's connection must not serve the next client.
    for implicit in [false, true] {
        let c = if implicit {
            let mut c = Client::implicit(
                proxy.implicit,
                pki.client_config(&[&rustls::version::TLS13]),
                "mx.tlsfront.test",
            )
            .await;
            c.send("EHLO user.test").await;
            c.expect(250).await;
            c.send("AUTH PLAIN AHVzZXIAcGFzcw==").await;
            c.expect(235).await;
            c
        } else {
            authenticate(Client::greeted(proxy.starttls).await, &pki).await
        };
        let mut c = c;
        // The authenticated user may relay (proves the backend's rule works).
        let r = c
            .mail(
                "user@user.test",
                &format!("friend@{RELAY_DOMAIN}"),
                &sample_message("ok"),
            )
            .await;
        assert_eq!(r.code, 250, "{}", r.text);
        c.send("QUIT").await;
        c.expect(221).await;

        let before = mta.connections();
        let r = try_relay(&proxy).await;
        assert_eq!(
            r.code, 554,
            "an anonymous client relayed on the authenticated connection (implicit: {implicit}): {}",
            r.text
        );
        assert_eq!(
            mta.connections(),
            before + 1,
            "the next client got a new connection"
        );
    }
    let recs = proxy.records(4).await;
    assert!(
        recs.iter()
            .filter(|r| r["helo"] == "anonymous.test")
            .all(|r| r["backend_reused"] == false),
        "{recs:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_connection_that_carried_vrfy_or_an_extension_verb_is_not_reused() {
    let mut script = MtaScript::default();
    script.ehlo.push("XSITE".into());
    let mta = Mta::start(script).await;
    let proxy = Proxy::configured(
        mta.addr,
        None,
        "",
        "",
        "[smtp]\nrelay_verbs = [\"xsite\"]\n",
        false,
    )
    .await;
    mta.wait_connections(1).await;
    for verb in ["VRFY postmaster", "XSITE hello"] {
        let mut c = Client::greeted(proxy.starttls).await;
        c.send("EHLO one.test").await;
        c.expect(250).await;
        c.send(verb).await;
        let r = c.reply().await;
        assert_ne!(r.code, 500, "{verb} was relayed: {}", r.text);
        c.send("QUIT").await;
        c.expect(221).await;
        let before = mta.connections();
        let mut c = Client::greeted(proxy.starttls).await;
        c.send("EHLO two.test").await;
        c.expect(250).await;
        c.send("MAIL FROM:<a@two.test>").await;
        c.expect(250).await;
        assert_eq!(mta.connections(), before + 1, "reused after {verb}");
        c.send("QUIT").await;
        c.expect(221).await;
    }
    assert!(mta.commands().iter().any(|l| l == "XSITE hello"));
    proxy.stop().await;
}

#[tokio::test]
async fn an_early_reply_during_data_is_never_taken_for_the_end_of_data_reply() {
    let mta = Mta::start(MtaScript {
        early_data_reply: Some("250 2.0.0 early".into()),
        data_end_reply: "554 5.7.1 Message refused".into(),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::launch(mta.addr, None, "", false).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@client.test>").await;
    c.expect(250).await;
    c.send("RCPT TO:<b@legacy.test>").await;
    c.expect(250).await;
    c.send("DATA").await;
    c.expect(354).await;
    c.send_raw(b"Subject: first chunk\r\n\r\nline one\r\n")
        .await;
    // Wait until the backend has sent its early reply (it is then in
    // tlsfront's socket buffer: loopback delivers on write).
    let mut seen = false;
    for _ in 0..200 {
        if mta.log.lock().unwrap().early_replies > 0 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the backend never sent its early reply");
    c.send_raw(b"line two\r\n.\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 451, "the early 250 reached the client: {}", r.text);
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    let rec = &proxy.records(1).await[0];
    assert_eq!(rec["messages_accepted"], 0, "{rec}");
    assert_eq!(rec["messages_rejected"], 1, "{rec}");
    assert_eq!(rec["backend_error"], "unsolicited_reply", "{rec}");
    proxy.stop().await;
}

/// A backend that answers the first RCPT twice; the second recipient is one
/// it refuses.
async fn doubling_backend() -> (Mta, Proxy, Client) {
    let mta = Mta::start(MtaScript {
        double_reply_once: Some("RCPT".into()),
        reject_rcpt: Some("nobody".into()),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::launch(mta.addr, None, "", false).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@client.test>").await;
    c.expect(250).await;
    (mta, proxy, c)
}

#[tokio::test]
async fn a_doubled_reply_is_never_paired_with_the_next_command() {
    let (mta, proxy, mut c) = doubling_backend().await;
    c.send("RCPT TO:<b@legacy.test>").await;
    let first = c.reply().await;
    assert_eq!(first.code, 250, "{}", first.text);
    // Once the twin has arrived, the next command must not take it.
    let mut sent = false;
    for _ in 0..200 {
        if mta.log.lock().unwrap().doubled {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sent, "the backend never sent its second reply");
    c.send("RCPT TO:<nobody@legacy.test>").await;
    let second = c.reply().await;
    assert_eq!(
        second.code, 451,
        "the stale 250 answered the refused recipient: {}",
        second.text
    );
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    let rec = &proxy.records(1).await[0];
    assert_eq!(rec["backend_error"], "unsolicited_reply", "{rec}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_message_is_never_accepted_on_a_reply_stream_out_of_step() {
    // Pipelined: RCPT, RCPT and DATA leave at once, so the twin may arrive
    // after tlsfront has sent the next command; however the replies pair
    // up, the message must not end in a 250 the backend did not give.
    let (mta, proxy, mut c) = doubling_backend().await;
    c.send_raw(b"RCPT TO:<b@legacy.test>\r\nRCPT TO:<nobody@legacy.test>\r\nDATA\r\n")
        .await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(c.reply().await.code);
    }
    if codes[2] == 354 {
        c.send_raw(b"Subject: x\r\n\r\nbody\r\n.\r\n").await;
        codes.push(c.reply().await.code);
    }
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    let rec = &proxy.records(1).await[0];
    assert_eq!(rec["messages_accepted"], 0, "{codes:?} {rec}");
    assert_ne!(codes.last(), Some(&250), "{codes:?}");
    assert_eq!(rec["backend_error"], "unsolicited_reply", "{codes:?} {rec}");
    assert!(mta.messages().len() <= 1);
    proxy.stop().await;
}

/// A scripted backend (without PIPELINING in its EHLO unless `pipelining`),
/// tlsfront in front of it, and a client that has said EHLO.
async fn behind_proxy(mut script: MtaScript, pipelining: bool) -> (Mta, Proxy, Client) {
    if !pipelining {
        script.ehlo.retain(|k| k != "PIPELINING");
    }
    let mta = Mta::start(script).await;
    let proxy = Proxy::launch(mta.addr, None, "", false).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    (mta, proxy, c)
}

/// A late twin of the RCPT reply while the client goes straight on to DATA:
/// the NOOP that precedes DATA (its own round trip, PIPELINING or not: RFC
/// 2920 lets NOOP only end a group) takes the twin, and the NOOP's own 250
/// must never reach the client as DATA's reply.
async fn late_twin_before_data(pipelining: bool) {
    let script = MtaScript {
        double_reply_once: Some("RCPT".into()),
        ..MtaScript::default()
    };
    let (mta, proxy, mut c) = behind_proxy(script, pipelining).await;
    c.send("MAIL FROM:<a@client.test>").await;
    c.expect(250).await;
    c.send("RCPT TO:<b@legacy.test>").await;
    c.expect(250).await;
    c.send("DATA").await;
    let r = c.reply().await;
    assert_eq!(
        r.code, 451,
        "DATA answered out of step: {} {}",
        r.code, r.text
    );
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    let rec = &proxy.records(1).await[0];
    assert_eq!(rec["backend_error"], "unsolicited_reply", "{rec}");
    assert_eq!(rec["messages_accepted"], 0, "{rec}");
    let commands = mta.commands();
    let noop = commands.iter().position(|l| l == "NOOP");
    let data = commands.iter().position(|l| l == "DATA");
    assert!(noop.is_some(), "no NOOP before DATA: {commands:?}");
    if let Some(data) = data {
        assert!(noop < Some(data), "{commands:?}");
    }
    assert!(mta.messages().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn a_late_twin_never_answers_data_on_a_pipelining_backend() {
    late_twin_before_data(true).await;
}

#[tokio::test]
async fn a_late_twin_never_answers_data_on_a_backend_without_pipelining() {
    late_twin_before_data(false).await;
}

/// The NOOP that proves the reply to the end of data goes in the same write
/// as the end of data to a backend that offers PIPELINING (one round trip
/// less per message), and after the reply to one that does not; the NOOP
/// before DATA never has DATA after it in the same write (improper
/// pipelining to Postfix).
async fn noop_after_end_of_data(pipelining: bool) {
    let script = MtaScript {
        hold_end_reply_for_next_line: true,
        ..MtaScript::default()
    };
    let (mta, proxy, mut c) = behind_proxy(script, pipelining).await;
    let r = c
        .mail("a@client.test", "b@legacy.test", &sample_message("one"))
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    // The connection stays in step: a second message on it.
    let r = c
        .mail("a@client.test", "b@legacy.test", &sample_message("two"))
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    let expected = if pipelining { 2 } else { 0 };
    assert_eq!(mta.log.lock().unwrap().next_with_end, expected);
    // Nothing after a command that must end a group (NOOP before DATA
    // included): a hardened Postfix would refuse the message.
    let improper = mta.log.lock().unwrap().improper_pipelining.clone();
    assert!(improper.is_empty(), "improper pipelining: {improper:?}");
    let commands = mta.commands();
    assert_eq!(mta.messages().len(), 2);
    let sessions = commands.iter().filter(|l| *l == "EHLO client.test").count();
    assert_eq!(sessions, 1, "one backend session for both: {commands:?}");
    // NOOP before each DATA and after each end of data.
    assert_eq!(
        commands.iter().filter(|l| *l == "NOOP").count(),
        4,
        "{commands:?}"
    );
    let rec = &proxy.records(1).await[0];
    assert_eq!(rec["messages_accepted"], 2, "{rec}");
    assert!(rec["backend_error"].is_null(), "{rec}");
    proxy.stop().await;
}

#[tokio::test]
async fn the_noop_after_end_of_data_goes_with_it_to_a_pipelining_backend() {
    noop_after_end_of_data(true).await;
}

#[tokio::test]
async fn the_noop_after_end_of_data_waits_for_the_reply_without_pipelining() {
    noop_after_end_of_data(false).await;
}

/// A stale 250 just ahead of the backend's refusal of the message: the
/// NOOP after the end of data gets the refusal, so the client never gets a
/// 250 for a message the backend refused (pipelined NOOP or not).
async fn stale_250_before_a_refused_message(pipelining: bool) {
    let script = MtaScript {
        early_data_reply: Some("250 2.0.0 stale".into()),
        data_end_reply: "554 5.7.1 Message refused".into(),
        ..MtaScript::default()
    };
    let (_mta, proxy, mut c) = behind_proxy(script, pipelining).await;
    c.send("MAIL FROM:<a@client.test>").await;
    c.expect(250).await;
    c.send("RCPT TO:<b@legacy.test>").await;
    c.expect(250).await;
    c.send("DATA").await;
    c.expect(354).await;
    // The whole message in one write, so the backend reads it at once and
    // sends the stale reply right before its refusal: both after the end
    // of data, where only the NOOP after it can tell them apart.
    c.send_raw(b"Subject: x\r\n\r\nbody\r\n.\r\n").await;
    let r = c.reply().await;
    assert_ne!(r.code, 250, "a refused message was confirmed: {}", r.text);
    assert_eq!(r.code, 451, "{}", r.text);
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    let rec = &proxy.records(1).await[0];
    assert_eq!(rec["messages_accepted"], 0, "{rec}");
    assert_eq!(rec["backend_error"], "unsolicited_reply", "{rec}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_stale_250_never_confirms_a_refused_message_on_a_pipelining_backend() {
    stale_250_before_a_refused_message(true).await;
}

#[tokio::test]
async fn a_stale_250_never_confirms_a_refused_message_without_pipelining() {
    stale_250_before_a_refused_message(false).await;
}

#[tokio::test]
async fn configured_backend_starttls_never_falls_back_to_helo_in_clear() {
    let pki = Pki::new(&["mx.tlsfront.test", "legacy.test"]);
    let mta = Mta::start(MtaScript {
        tls: Some(pki.server_config()),
        // What an attacker on the path injects: EHLO refused, HELO works.
        refuse_ehlo: Some("502 5.5.1 EHLO not implemented".into()),
        ..MtaScript::default()
    })
    .await;
    let extra = format!(
        "tls = \"starttls\"\ntls_ca_file = \"{}\"\ntls_name = \"legacy.test\"\n",
        pki.ca_pem.display()
    );
    let proxy = Proxy::launch(mta.addr, None, &extra, false).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@client.test>").await;
    let r = c.reply().await;
    assert_eq!(r.code, 451, "{}", r.text);
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    let cmds = mta.commands();
    assert!(
        !cmds
            .iter()
            .any(|l| l.starts_with("HELO") || l.starts_with("MAIL")),
        "plaintext session after a refused EHLO: {cmds:?}"
    );
    let rec = &proxy.records(1).await[0];
    assert_eq!(rec["backend_error"], "tls_failed", "{rec}");
    assert!(rec["backend_tls_version"].is_null());
    proxy.stop().await;
}

/// MAIL through a proxy configured with `extra`: (reply code, record).
async fn mail_via(mta: &Mta, extra: &str) -> (u16, serde_json::Value) {
    let proxy = Proxy::launch(mta.addr, None, extra, false).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@client.test>").await;
    let code = c.reply().await.code;
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    let rec = proxy.records(1).await[0].clone();
    proxy.stop().await;
    (code, rec)
}

#[tokio::test]
async fn xclient_that_is_not_in_effect_fails_closed() {
    // Not offered at all.
    let mut script = MtaScript::default();
    script.ehlo.retain(|k| !k.starts_with("XCLIENT"));
    let silent = Mta::start(script).await;
    // Offered, but tlsfront is not authorised to use it.
    let refusing = Mta::start(MtaScript {
        xclient_reply: Some("550 5.7.0 Error: insufficient authorization".into()),
        ..MtaScript::default()
    })
    .await;
    for mta in [&silent, &refusing] {
        let (code, rec) = mail_via(mta, "xclient = true\n").await;
        assert_eq!(code, 451, "{rec}");
        assert_eq!(rec["backend_error"], "identity_not_passed", "{rec}");
        assert!(rec["backend_identity"].is_null(), "{rec}");
        assert!(!mta.commands().iter().any(|l| l.starts_with("MAIL")));
        // The admin may choose to go on as tlsfront's own address.
        let (code, rec) = mail_via(mta, "xclient = true\nallow_without_identity = true\n").await;
        assert_eq!(code, 250, "{rec}");
        assert!(rec["backend_identity"].is_null(), "{rec}");
    }
}

/// On a wildcard listener the PROXY destination is the accepted socket's own
/// address (what the client connected to), never `0.0.0.0` or `::`, and
/// never `UNKNOWN`. Each family has its own listener (IPv6 sockets are
/// IPv6-only), so an IPv4 client is `TCP4`, an IPv6 one `TCP6`.
#[tokio::test]
async fn proxy_header_names_the_real_client_on_wildcard_listeners() {
    for (listen, client, family) in [
        ("0.0.0.0:0", "127.0.0.1", "TCP4"),
        ("[::]:0", "::1", "TCP6"),
    ] {
        let mta = Mta::start(MtaScript::default()).await;
        let proxy = Proxy::configured(
            mta.addr,
            None,
            "",
            &format!("address = [\"{listen}\"]\n"),
            "proxy_protocol = \"v1\"\n",
            false,
        )
        .await;
        let to = std::net::SocketAddr::new(client.parse().unwrap(), proxy.starttls.port());
        let mut c = Client::greeted(to).await;
        c.send("EHLO client.test").await;
        c.expect(250).await;
        c.send("MAIL FROM:<a@client.test>").await;
        c.expect(250).await;
        c.send("QUIT").await;
        c.expect(221).await;
        let want = format!(
            "PROXY {family} {client} {client} {} {}",
            c.local.port(),
            to.port()
        );
        let cmds = mta.commands();
        assert!(cmds.contains(&want), "{cmds:?}");
        assert_eq!(proxy.records(1).await[0]["backend_identity"], "proxy_v1");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn state_setting_and_unlisted_verbs_never_reach_the_backend() {
    let mut script = MtaScript::default();
    // A Sendmail/Exchange-like backend announcing them all.
    for kw in [
        "VERB",
        "ONEX",
        "XUSR",
        "X-EXPS GSSAPI NTLM",
        "X-ANONYMOUSTLS",
        "ETRN",
        "XSITE",
    ] {
        script.ehlo.push(kw.into());
    }
    let mta = Mta::start(script).await;
    let proxy = Proxy::launch(mta.addr, None, "", false).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    let ehlo = c.expect(250).await;
    for kw in ["VERB", "ONEX", "XUSR", "X-EXPS", "X-ANONYMOUSTLS", "XSITE"] {
        assert!(!ehlo.contains(kw), "{kw} offered: {ehlo}");
    }
    for line in [
        "VERB",
        "ONEX",
        "XUSR",
        "X-EXPS GSSAPI",
        "X-ANONYMOUSTLS",
        "XSITE x",
    ] {
        c.send(line).await;
        let r = c.reply().await;
        assert!(r.code == 500 || r.code == 502, "{line}: {}", r.text);
    }
    // ETRN is on the default list and announced: relayed.
    c.send("ETRN legacy.test").await;
    assert_eq!(
        c.reply().await.code,
        502,
        "the fake backend answers ETRN with 502"
    );
    c.send("QUIT").await;
    c.expect(221).await;
    let cmds = mta.commands();
    for verb in ["VERB", "ONEX", "XUSR", "X-EXPS", "X-ANONYMOUSTLS", "XSITE"] {
        assert!(
            !cmds.iter().any(|l| l.starts_with(verb)),
            "{verb} reached the backend: {cmds:?}"
        );
    }
    assert!(cmds.iter().any(|l| l.starts_with("ETRN")), "{cmds:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn control_bytes_inside_command_and_sasl_lines_are_refused() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::launch(mta.addr, Some(&pki), "", false).await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    // Three commands for a backend that ends lines on CR.
    c.send_raw(b"MAIL FROM:<a@client.test>\rRCPT TO:<x@legacy.test>\rDATA\r\n")
        .await;
    assert_eq!(c.reply().await.code, 500);
    c.send_raw(b"NOOP \x1b[2J\r\n").await;
    assert_eq!(c.reply().await.code, 500);
    c.send_raw(b"NOOP ok\tfine\r\n").await;
    assert_eq!(c.reply().await.code, 250, "TAB is allowed");
    let mut c = c
        .starttls(
            pki.client_config(&[&rustls::version::TLS13]),
            "mx.tlsfront.test",
        )
        .await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("AUTH LOGIN").await;
    c.expect(334).await;
    c.send_raw(b"dXNlcg==\rMAIL FROM:<evil@x>\r\n").await;
    assert_eq!(
        c.reply().await.code,
        501,
        "a SASL line with a CR cancels the exchange"
    );
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    let cmds = mta.commands();
    assert!(
        !cmds.iter().any(|l| l.contains('\r') || l.contains("MAIL")),
        "{cmds:?}"
    );
    assert!(cmds.contains(&"*".to_string()), "{cmds:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn messages_in_flight_share_one_memory_budget() {
    let mta = Mta::start(MtaScript::default()).await;
    // 1 MiB holds ten messages' buffers (96 KiB each); the eleventh waits.
    let proxy = Proxy::configured(
        mta.addr,
        None,
        "",
        "",
        "[smtp]\nmessage_memory_mib = 1\n",
        false,
    )
    .await;
    let mut senders = Vec::new();
    for i in 0..10 {
        let mut c = Client::greeted(proxy.starttls).await;
        c.send(&format!("EHLO s{i}.test")).await;
        c.expect(250).await;
        c.send("MAIL FROM:<a@s.test>").await;
        c.expect(250).await;
        c.send("RCPT TO:<b@legacy.test>").await;
        c.expect(250).await;
        c.send("DATA").await;
        c.expect(354).await;
        senders.push(c);
    }
    let mut late = Client::greeted(proxy.starttls).await;
    late.send("EHLO late.test").await;
    late.expect(250).await;
    late.send("MAIL FROM:<a@s.test>").await;
    late.expect(250).await;
    late.send("RCPT TO:<b@legacy.test>").await;
    late.expect(250).await;
    late.send("DATA").await;
    let r = late.reply().await;
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.contains("4.3.1"), "{}", r.text);
    // A finished message gives its share back.
    let mut first = senders.remove(0);
    first.send_raw(b"Subject: one\r\n\r\nbody\r\n.\r\n").await;
    first.expect(250).await;
    late.send("DATA").await;
    late.expect(354).await;
    late.send_raw(b"Subject: late\r\n\r\nbody\r\n.\r\n").await;
    late.expect(250).await;
    proxy.stop().await;
}

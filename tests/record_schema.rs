//! docs/record.schema.json against every kind of record tlsfront writes: a
//! health check, a scanner, an early talker, a refusal at connect, a
//! plaintext sender, STARTTLS and implicit TLS, failed handshakes (an old
//! client, garbage, a timeout), a backend that is down; and against every
//! record of the fuzz corpus's session inputs. (Every other test that reads
//! records through `Proxy::records` checks them too.) The schema's closed
//! sets are the code's, and the check itself refuses what it should.

mod common;

use std::collections::BTreeSet;

use common::schema::{assert_record, record_schema, validate};
use common::*;
use rustls::version::{TLS12, TLS13};
use serde_json::{Value, json};
use tlsfront::outcome::{BackendFailure, CloseReason, HandshakeFailure, Mode, Origin, TlsOutcome};
use tlsfront::wire::offer::{SigClass, SuiteClass};

const NAME: &str = "mx.tlsfront.test";

/// A TLS 1.0 ClientHello with RSA key exchange only.
fn tls10_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x01];
    body.extend([0x22; 32]);
    body.push(0);
    body.extend([0x00, 0x04, 0x00, 0x2f, 0x00, 0x0a]);
    body.extend([0x01, 0x00]);
    let mut hs = vec![0x01];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut out = vec![0x16, 0x03, 0x01];
    out.extend((hs.len() as u16).to_be_bytes());
    out.extend(hs);
    out
}

async fn starttls_then(proxy: &Proxy, bytes: &[u8]) {
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO old.example").await;
    c.expect(250).await;
    c.send("STARTTLS").await;
    c.expect(220).await;
    if !bytes.is_empty() {
        c.send_raw(bytes).await;
    }
    assert!(c.closed().await);
}

#[tokio::test]
async fn every_kind_of_record_matches_the_schema() {
    let pki = Pki::new(&[NAME]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::configured(
        mta.addr,
        Some(&pki),
        "max_connections_per_client = 2",
        "",
        "[smtp]\ngreeting_delay = \"300ms\"\n[tls]\nhandshake_timeout = \"1s\"\n",
        true,
    )
    .await;
    // An early talker.
    let mut c = Client::connect(proxy.starttls).await;
    c.send("EHLO too.early.test").await;
    c.expect(554).await;
    // A load balancer's health check: greeting, QUIT.
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("QUIT").await;
    c.expect(221).await;
    // A scanner: connect, close.
    drop(Client::connect(proxy.starttls).await);
    // Refused at connect: two open, the third over the per-client cap.
    let a = Client::greeted(proxy.starttls).await;
    let b = Client::greeted(proxy.starttls).await;
    let mut over = Client::connect(proxy.starttls).await;
    over.expect(421).await;
    drop((a, b));
    // Their sessions end (records written) before the next connection, so
    // the cap has room again.
    proxy.records(6).await;
    // A plaintext sender.
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO plain.example").await;
    c.expect(250).await;
    assert_eq!(
        c.mail("a@plain.example", "u@legacy.test", &sample_message("p"))
            .await
            .code,
        250
    );
    c.send("QUIT").await;
    c.expect(221).await;
    // STARTTLS with mail, and implicit TLS.
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c.starttls(pki.client_config(&[&TLS13, &TLS12]), NAME).await;
    assert_eq!(
        c.mail("a@tls.example", "u@legacy.test", &sample_message("t"))
            .await
            .code,
        250
    );
    c.send("QUIT").await;
    c.expect(221).await;
    let mut c = Client::implicit(proxy.implicit, pki.client_config(&[&TLS12]), NAME).await;
    c.send("QUIT").await;
    c.expect(221).await;
    // Failed handshakes: an old client, garbage, silence.
    starttls_then(&proxy, &tls10_hello()).await;
    starttls_then(&proxy, b"EHLO not tls\r\n").await;
    starttls_then(&proxy, b"").await;

    let records = proxy.records(12).await;
    proxy.stop().await;
    // A backend that is down.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let proxy = Proxy::start(down, Some(&pki), "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO x.example").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@x.example>").await;
    assert!(c.reply().await.code >= 400);
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    let mut all = records;
    all.extend(proxy.records(1).await);
    proxy.stop().await;

    let seen = |key: &str| -> BTreeSet<String> {
        all.iter()
            .filter_map(|r| r[key].as_str().map(str::to_string))
            .collect()
    };
    for close in [
        "client_quit",
        "client_closed",
        "early_talker",
        "client_connection_limit",
        "handshake_failed",
        "handshake_timeout",
    ] {
        assert!(
            seen("close_reason").contains(close),
            "no {close} record: {:?}",
            seen("close_reason")
        );
    }
    for tls in ["established", "failed", "not_attempted", "timeout"] {
        assert!(seen("tls").contains(tls), "no {tls} record");
    }
    for reason in ["client_tls_version_too_old", "not_tls", "handshake_timeout"] {
        assert!(
            seen("failure_reason").contains(reason),
            "no {reason} record"
        );
    }
    assert!(seen("mode").contains("implicit"));
    assert!(
        seen("backend_error").contains("connect_failed"),
        "{:?}",
        seen("backend_error")
    );
    assert!(
        all.iter()
            .any(|r| r["offer"].is_object() && r["tls"] == "established")
    );
    assert!(all.iter().any(|r| r["client_hello"].is_object()));
    for r in &all {
        assert_record(r);
    }
}

/// The session fuzz target's corpus, each record as the writer would write it.
#[test]
fn every_record_of_the_fuzz_corpus_matches_the_schema() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/session");
    let mut records = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        for mut r in tlsfront::fuzzing::session_records(&data) {
            // As the guard does before the writer gets it.
            r.ts = tlsfront::proxy::records::timestamp(std::time::SystemTime::now());
            r.bound();
            assert_record(&serde_json::to_value(&r).unwrap());
            records += 1;
        }
    }
    assert!(records > 100, "{records}");
}

fn enum_of(schema: &Value) -> BTreeSet<String> {
    let list = schema["enum"]
        .as_array()
        .or_else(|| {
            schema["anyOf"]
                .as_array()
                .and_then(|a| a.iter().find_map(|s| s["enum"].as_array()))
        })
        .expect("an enum");
    list.iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The closed sets in the schema are exactly those of the code.
#[test]
fn the_schema_enums_are_the_codes() {
    let s = record_schema();
    let p = &s["properties"];
    assert_eq!(enum_of(&p["tls"]), names(TlsOutcome::NAMES));
    assert_eq!(enum_of(&p["mode"]), names(Mode::NAMES));
    assert_eq!(enum_of(&p["origin"]), names(Origin::NAMES));
    assert_eq!(enum_of(&p["close_reason"]), names(CloseReason::NAMES));
    assert_eq!(
        enum_of(&p["failure_reason"]),
        names(HandshakeFailure::NAMES)
    );
    assert_eq!(enum_of(&p["backend_error"]), names(BackendFailure::NAMES));
    let offer = &s["$defs"]["offer"]["properties"];
    assert_eq!(enum_of(&offer["sigs"]["items"]), names(SigClass::NAMES));
    assert_eq!(enum_of(&offer["suites"]["items"]), names(SuiteClass::NAMES));
    // Every field a record has is in the schema, required.
    let record = tlsfront::proxy::records::Record::new(
        "s".into(),
        "127.0.0.1:25".parse().unwrap(),
        Mode::Starttls,
        "192.0.2.1:1".parse().unwrap(),
        "mx",
        "h",
    );
    let v = serde_json::to_value(&record).unwrap();
    let fields: BTreeSet<String> = v.as_object().unwrap().keys().cloned().collect();
    let required: BTreeSet<String> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, required);
}

/// The check refuses what the schema forbids.
#[test]
fn the_schema_check_refuses_bad_records() {
    let mut good: Value = serde_json::from_str(
        r#"{"ts":"2026-11-27T10:00:00.000Z","host":"mx1","session":"a-1","listener":"127.0.0.1:25",
        "mode":"starttls","origin":"direct","client_ip":"192.0.2.1","client_port":4000,"server_hostname":"mx",
        "sni":null,"starttls_offered":true,"starttls_used":false,"tls":"not_attempted",
        "tls_version":null,"cipher_suite":null,"kx_group":null,"cert_subject":null,
        "cert_key_type":null,"self_signed":false,"resumed":null,"handshake_ms":null,
        "failure_reason":null,"failure_detail":null,"offer":null,"client_hello":null,
        "pipelined_after_starttls":0,"helo":null,"messages_accepted":0,"messages_rejected":0,
        "recipients":0,"bytes":0,"bare_line_endings":0,"control_dot_lines":0,
        "tls_required_refusals":0,"tls_required_would_refuse":0,"backend_contacted":false,
        "backend_addr":null,"backend_connect_ms":null,"backend_reused":false,
        "backend_identity":null,"backend_tls_version":null,"backend_cipher_suite":null,
        "backend_error":"refused_554","close_reason":"client_quit","duration_ms":1.5,
        "truncated":false}"#,
    )
    .unwrap();
    assert_record(&good);
    let schema = record_schema();
    for (field, bad) in [
        ("tls", json!("mostly")),
        ("close_reason", json!("bored")),
        ("client_port", json!(70000)),
        ("messages_accepted", json!(-1)),
        ("ts", json!("yesterday")),
        ("sni", json!("a\r\nb")),
        ("backend_error", json!("refused_5xx")),
        (
            "offer",
            json!({"versions": ["TLSv9"], "groups": [], "sigs": [], "suites": []}),
        ),
        (
            "offer",
            json!({"versions": [], "groups": [], "sigs": ["dsa"], "suites": []}),
        ),
        ("host", json!("")),
    ] {
        let mut r = good.clone();
        r[field] = bad.clone();
        assert!(!validate(schema, &r).is_empty(), "{field} = {bad} passed");
    }
    good.as_object_mut().unwrap().remove("truncated");
    assert!(
        !validate(schema, &good).is_empty(),
        "a missing field passed"
    );
    good["truncated"] = json!(false);
    good["extra"] = json!(1);
    assert!(
        !validate(schema, &good).is_empty(),
        "an unknown field passed"
    );
}

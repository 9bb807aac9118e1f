//! The record file against hostile input: a ClientHello built to make the
//! record huge, an SNI built to forge text, and a record path that is a
//! symbolic link or a FIFO.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::*;
use tlsfront::limits;
use tlsfront::proxy::records;

/// Legacy suites rustls does not implement, so the handshake fails and the
/// record keeps the ClientHello summary; their IANA names are long.
const SUITES: [u16; 4] = [0xc024, 0xc028, 0x006b, 0x009f];

fn u16_list(items: impl Iterator<Item = u16>) -> Vec<u8> {
    let body: Vec<u8> = items.flat_map(u16::to_be_bytes).collect();
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn extension(out: &mut Vec<u8>, typ: u16, data: &[u8]) {
    out.extend(typ.to_be_bytes());
    out.extend((data.len() as u16).to_be_bytes());
    out.extend(data);
}

/// A TLS 1.2 ClientHello of about 31 KB, fragmented over several TLS records:
/// 7 500 suites, 2 000 groups, 2 000 signature schemes, 40 ALPN names of
/// 200 bytes, and `sni`.
fn hostile_hello(sni: &[u8]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([0x42; 32]);
    body.push(0);
    body.extend(u16_list((0..7500).map(|i| SUITES[i % SUITES.len()])));
    body.extend([0x01, 0x00]);
    let mut ext = Vec::new();
    let mut names = vec![0u8];
    names.extend((sni.len() as u16).to_be_bytes());
    names.extend(sni);
    let mut data = (names.len() as u16).to_be_bytes().to_vec();
    data.extend(names);
    extension(&mut ext, 0, &data);
    extension(&mut ext, 10, &u16_list((0..2000).map(|_| 0x001d)));
    extension(&mut ext, 13, &u16_list((0..2000).map(|_| 0x0804)));
    let mut alpn = Vec::new();
    for i in 0..40u8 {
        alpn.push(200);
        alpn.extend(std::iter::repeat_n(b'a' + i % 26, 200));
    }
    let mut data = (alpn.len() as u16).to_be_bytes().to_vec();
    data.extend(alpn);
    extension(&mut ext, 16, &data);
    extension(&mut ext, 43, &[2, 0x03, 0x03]);
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut hs = vec![0x01];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut out = Vec::new();
    for chunk in hs.chunks(16384) {
        out.extend([0x16, 0x03, 0x01]);
        out.extend((chunk.len() as u16).to_be_bytes());
        out.extend(chunk);
    }
    assert!(
        out.len() > 30_000 && out.len() <= limits::MAX_CLIENT_HELLO,
        "{}",
        out.len()
    );
    out
}

/// A 31 KB ClientHello made a 186 KB record; now the record stays under
/// `MAX_RECORD_BYTES`, keeps the start of each list, and says it was cut.
/// The SNI keeps only host-name characters, so it cannot forge report lines.
#[tokio::test]
async fn a_hostile_client_hello_makes_a_bounded_record_that_says_truncated() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    // The longest name tlsfront accepts, made of characters JSON escapes.
    c.send(&format!("EHLO {}", "\\\"".repeat(127))).await;
    c.expect(250).await;
    c.send("STARTTLS").await;
    c.expect(220).await;
    let hello = hostile_hello(b"A\r\nLegacy path retired: YES\x1b[2J.example");
    c.send_raw(&hello).await;
    assert!(c.closed().await);
    let r = proxy.records(1).await[0].clone();
    let text = std::fs::read_to_string(&proxy.records).unwrap();
    let line = text.lines().next().unwrap();
    assert!(
        line.len() <= limits::MAX_RECORD_BYTES,
        "a {} KB ClientHello made a {} KB record",
        hello.len() / 1000,
        line.len() / 1000
    );
    assert_eq!(r["tls"], "failed", "{r}");
    assert_eq!(r["failure_reason"], "no_shared_cipher_suite", "{r}");
    assert_eq!(r["truncated"], true, "{r}");
    let hello = &r["client_hello"];
    let suites = hello["cipher_suites"].as_array().unwrap();
    assert!(!suites.is_empty() && suites.len() <= limits::MAX_RECORD_LIST);
    assert_eq!(suites[0], "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "{r}");
    for list in ["groups", "signature_schemes", "alpn"] {
        assert!(
            hello[list].as_array().unwrap().len() <= limits::MAX_RECORD_LIST,
            "{list}: {r}"
        );
    }
    assert_eq!(r["sni"], "alegacypathretiredyes2j.example", "{r}");
    let helo = r["helo"].to_string();
    assert!(
        helo.len() - 2 <= limits::MAX_RECORD_STRING && helo.starts_with(r#""\\\""#),
        "{helo}"
    );
    proxy.stop().await;
}

/// Bytes of `line` once its `offer` is taken out: what the record took
/// before every session carried one.
fn without_offer(line: &str) -> usize {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    v.as_object_mut().unwrap().remove("offer");
    serde_json::to_string(&v).unwrap().len()
}

/// Every session that sent a ClientHello carries the short offer, the
/// established ones too (before, only failures kept what the client
/// offered); it adds about 200 bytes to the ~1 KB record of a modern sender.
#[tokio::test]
async fn established_and_failed_sessions_carry_the_offer() {
    use rustls::version::{TLS12, TLS13};
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13, &TLS12]), "mx.tlsfront.test")
        .await;
    c.send("QUIT").await;
    c.expect(221).await;
    // A TLS 1.0 sender with RSA key exchange only, as legacy boxes accepted.
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO old.example").await;
    c.expect(250).await;
    c.send("STARTTLS").await;
    c.expect(220).await;
    c.send_raw(&tls10_rsa_hello()).await;
    assert!(c.closed().await);
    let rs = proxy.records(2).await;
    let text = std::fs::read_to_string(&proxy.records).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (ok, old) = (&rs[0], &rs[1]);
    assert_eq!(ok["tls"], "established", "{ok}");
    assert_eq!(ok["client_hello"], serde_json::Value::Null, "{ok}");
    let offer = &ok["offer"];
    assert_eq!(
        offer["versions"],
        serde_json::json!(["TLSv1.3", "TLSv1.2"]),
        "{ok}"
    );
    assert!(
        offer["groups"]
            .as_array()
            .unwrap()
            .contains(&"X25519".into()),
        "{ok}"
    );
    assert_eq!(offer["suites"][0], "tls13", "{ok}");
    assert!(
        offer["sigs"].as_array().unwrap().contains(&"ecdsa".into()),
        "{ok}"
    );
    let added = lines[0].len() - without_offer(lines[0]);
    eprintln!(
        "record of a modern sender: {} bytes, {} without the offer (+{added})",
        lines[0].len(),
        without_offer(lines[0])
    );
    assert!(added < 220, "the offer adds {added} bytes: {}", lines[0]);

    assert_eq!(old["tls"], "failed", "{old}");
    assert_eq!(old["failure_reason"], "client_tls_version_too_old", "{old}");
    assert_eq!(
        old["offer"],
        serde_json::json!({"versions": ["TLSv1.0"], "groups": [], "sigs": [],
                           "suites": ["rsa_cbc", "weak"]}),
        "{old}"
    );
    assert!(old["client_hello"].is_object(), "{old}");
    eprintln!(
        "record of a failed TLS 1.0 sender: {} bytes, {} without the offer",
        lines[1].len(),
        without_offer(lines[1])
    );
    proxy.stop().await;
}

/// A TLS 1.0 ClientHello offering RSA key exchange only (AES-CBC, 3DES), no
/// extensions: what a sender of the 2000s sends.
fn tls10_rsa_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x01];
    body.extend([0x11; 32]);
    body.push(0);
    body.extend(u16_list([0x002f, 0x0035, 0x000a].into_iter()));
    body.extend([0x01, 0x00]);
    let mut hs = vec![0x01];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut out = vec![0x16, 0x03, 0x01];
    out.extend((hs.len() as u16).to_be_bytes());
    out.extend(hs);
    out
}

/// An ordinary session's record is not marked.
#[tokio::test]
async fn an_ordinary_record_is_not_truncated() {
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.example").await;
    c.expect(250).await;
    c.send("QUIT").await;
    c.expect(221).await;
    let r = proxy.records(1).await[0].clone();
    assert_eq!(r["truncated"], false, "{r}");
    assert_eq!(r["helo"], "client.example", "{r}");
    proxy.stop().await;
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The record file holds client addresses and names: created 0640 (less with
/// a stricter umask), never readable by other users.
#[test]
fn the_record_file_is_created_0640() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.jsonl");
    let (sink, writer) = records::start_writer(&path).unwrap();
    drop(sink);
    writer.join().unwrap();
    let m = mode(&path);
    assert_eq!(m & !0o640, 0, "mode {m:o}");
    assert_eq!(m & 0o600, 0o600, "mode {m:o}");
}

/// A symbolic link at the record path is refused (not followed), at start-up.
#[test]
fn a_symbolic_link_as_record_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, b"").unwrap();
    let link = dir.path().join("records.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let e = records::start_writer(&link).expect_err("a symlink is refused");
    let message = e.to_string();
    assert!(
        message.contains(&link.display().to_string()) && message.contains("symbolic link"),
        "{message}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"");
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::metadata(path).unwrap().file_type().is_fifo());
}

/// A FIFO without a reader blocked start-up forever, silently; now it is
/// refused at once with an error naming the path (so is any file that is not
/// a regular one).
#[test]
fn a_fifo_as_record_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.jsonl");
    mkfifo(&path);
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(records::start_writer(&p).err().map(|e| e.to_string()));
    });
    let outcome = rx.recv_timeout(Duration::from_secs(5));
    if outcome.is_err() {
        // Unblock the stuck open so the thread ends, then fail.
        let _ = std::fs::File::open(&path);
        panic!("start_writer still blocked on the FIFO after 5 s");
    }
    let message = outcome.unwrap().expect("a FIFO is refused");
    assert!(
        message.contains(&path.display().to_string()) && message.contains("not a regular file"),
        "{message}"
    );
}

/// The binary refuses the FIFO the same way: exit 2 at once, the path named.
#[tokio::test]
async fn run_with_a_fifo_record_path_exits_at_once_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.jsonl");
    mkfifo(&path);
    // An empty configuration: the flags say everything.
    let config = dir.path().join("tlsfront.toml");
    std::fs::write(&config, "").unwrap();
    let started = std::time::Instant::now();
    let out = common::bin::tlsfront(common::bin::args(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:9",
        "--records",
        path.to_str().unwrap(),
    ]))
    .await;
    if out.code != 2 {
        let _ = std::fs::File::open(&path);
    }
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        out.stderr.contains(&path.display().to_string())
            && out.stderr.contains("not a regular file"),
        "{}",
        out.stderr
    );
}

/// Reopening (SIGHUP, after logrotate) follows the same rules: a symbolic
/// link put at the path is not followed; the writer keeps its open file.
#[test]
fn reopen_refuses_a_symbolic_link_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.jsonl");
    let (sink, writer) = records::start_writer(&path).unwrap();
    let rotated = dir.path().join("records.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, b"").unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    sink.reopen();
    drop(records::RecordGuard::new(
        records::Record::new(
            "s1".into(),
            "127.0.0.1:25".parse().unwrap(),
            tlsfront::outcome::Mode::Starttls,
            "192.0.2.1:4000".parse().unwrap(),
            "mx",
            "host-a",
        ),
        sink.clone(),
    ));
    drop(sink);
    writer.join().unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"", "followed the link");
    let kept = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(kept.lines().count(), 1, "{kept}");
}

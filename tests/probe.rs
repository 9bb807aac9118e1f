//! `tlsfront probe`, run as the built binary: against tlsfront itself
//! (STARTTLS and implicit TLS, trusted through --cafile, names that match and
//! one that does not), against real weak `openssl s_server` STARTTLS set-ups
//! (1024-bit RSA; DHE only with a 1024-bit group), the exit-2 cases, and
//! mail domains looked up in a signed zone served on loopback (tests/zone).

mod common;
mod zone;

use std::path::{Path, PathBuf};

use common::bin::{Out, args, tlsfront};
use common::openssl::{openssl_available, s_server_with, starttls_front};
use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// The test CA of `pki` as a PEM file (the last block of its chain files).
fn ca_file(pki: &Pki) -> PathBuf {
    let chain = std::fs::read_to_string(&pki.ecdsa.0).unwrap();
    let at = chain.rfind("-----BEGIN CERTIFICATE-----").unwrap();
    let path = pki.dir.path().join("ca.pem");
    std::fs::write(&path, &chain[at..]).unwrap();
    path
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

async fn probe(list: &[&str]) -> Out {
    let mut a = args(&["probe", "--timeout", "5s", "--ehlo", "probe.test"]);
    a.extend(args(list));
    tlsfront(a).await
}

/// The delivery of each kind of sender: opportunistic, verifying, fallback.
fn senders(j: &Value) -> [String; 3] {
    ["opportunistic", "verifying", "fallback"].map(|k| {
        j["senders"][k]["delivery"]
            .as_str()
            .unwrap_or("-")
            .to_string()
    })
}

fn problems(j: &Value) -> String {
    j["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlsfront_itself_is_modern_and_names_are_checked() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let ca = ca_file(&pki);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let target = proxy.starttls.to_string();

    let out = probe(&[
        &target,
        "--name",
        "mx.tlsfront.test",
        "--cafile",
        &p(&ca),
        "--json",
    ])
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["ok"], true);
    assert_eq!(j["exit"], 0);
    assert_eq!(j["mode"], "starttls");
    assert!(j["greeting"].as_str().unwrap().starts_with("220 "), "{j:#}");
    let ehlo: Vec<&str> = j["ehlo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(ehlo.contains(&"STARTTLS"), "{ehlo:?}");
    assert_eq!(j["starttls_offered"], true);
    assert!(j["starttls_reply"].as_str().unwrap().starts_with("220"));
    let tls = &j["tls"];
    assert_eq!(tls["ok"], true);
    assert_eq!(tls["sni"], "mx.tlsfront.test");
    assert_eq!(tls["version"], "TLSv1.3");
    assert!(tls["cipher_suite"].as_str().unwrap().starts_with("TLS13_"));
    let group = tls["group"].as_str().unwrap();
    assert!(
        group.contains("X25519") || group.starts_with("secp"),
        "not an ECDHE group: {group}"
    );
    assert_eq!(tls["alpn"], Value::Null);
    let chain = j["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "leaf and CA as configured: {j:#}");
    assert_eq!(chain[0]["subject"], "CN=mx.tlsfront.test ecdsa");
    assert_eq!(chain[0]["sans"], json!(["mx.tlsfront.test"]));
    assert_eq!(chain[0]["key_type"], "ecdsa_p256");
    assert_eq!(chain[0]["key_bits"], 256);
    assert_eq!(chain[0]["issuer"], chain[1]["subject"]);
    assert!(chain[0]["days_left"].as_i64().unwrap() > 300);
    assert_eq!(j["verification"], "trusted");
    assert_eq!(
        j["names"],
        json!([{"name": "mx.tlsfront.test", "matches": true}])
    );
    // Second connection without SNI: tlsfront's one certificate again.
    assert_eq!(j["other_sni"]["sni"], Value::Null);
    assert_eq!(j["other_sni"]["same_certificate"], true);
    assert_eq!(j["legacy"], Value::Null);
    assert_eq!(senders(&j), ["tls", "verified_tls", "tls"]);

    // A name the certificate does not cover: exit 1, and the report says which.
    let out = probe(&[
        &target,
        "--name",
        "other.test",
        "--cafile",
        &p(&ca),
        "--json",
    ])
    .await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["ok"], false);
    assert_eq!(j["tls"]["ok"], true);
    assert_eq!(
        j["names"],
        json!([{"name": "other.test", "matches": false}])
    );
    assert!(problems(&j).contains("does not cover other.test"), "{j:#}");
    // Only senders that verify care.
    assert_eq!(senders(&j), ["tls", "fails", "tls"]);

    // The test CA is not among the system roots: untrusted (if there are roots).
    let out = probe(&[&target, "--name", "mx.tlsfront.test", "--json"]).await;
    let j = out.json();
    if j["roots"].as_array().unwrap().is_empty() {
        assert_eq!(j["verification"], "not_checked");
        assert_eq!(out.code, 0);
    } else {
        assert_eq!(out.code, 1, "{}", out.stdout);
        assert_eq!(j["verification"], "invalid_certificate_unknown_issuer");
        assert!(problems(&j).contains("does not verify"), "{j:#}");
        // tlsfront's own certificate from a private CA: opportunistic senders
        // deliver over TLS, only verifying ones fail.
        assert_eq!(senders(&j), ["tls", "fails", "tls"]);
    }

    // The same in human form: the sections an admin reads.
    let out = probe(&[&target, "--name", "mx.tlsfront.test", "--cafile", &p(&ca)]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for needle in [
        "greeting   220 ",
        "STARTTLS   220",
        "protocol   TLSv1.3",
        "ALPN       none",
        "[0] subject  CN=mx.tlsfront.test ecdsa",
        "key      ecdsa_p256 (256 bits)",
        "verification  trusted",
        "matches",
        "without SNI: same certificate",
        "verdict: OK",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} missing:\n{}",
            out.stdout
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_listener() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let ca = ca_file(&pki);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let target = proxy.implicit.to_string();
    let out = probe(&[
        &target,
        "--implicit",
        "--no-sni",
        "--name",
        "mx.tlsfront.test",
        "--cafile",
        &p(&ca),
        "--json",
    ])
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["mode"], "implicit");
    assert_eq!(j["port"], proxy.implicit.port());
    // Greeting and EHLO come over TLS; no STARTTLS step.
    assert!(j["greeting"].as_str().unwrap().starts_with("220 "), "{j:#}");
    assert!(!j["ehlo"].as_array().unwrap().is_empty());
    assert_eq!(j["starttls_reply"], Value::Null);
    assert_eq!(j["tls"]["version"], "TLSv1.3");
    assert_eq!(j["tls"]["sni"], Value::Null);
    assert_eq!(j["names"][0]["matches"], true);
    // --no-sni first, so the second connection sends SNI.
    assert_eq!(j["other_sni"]["sni"], "mx.tlsfront.test");
    assert_eq!(j["other_sni"]["same_certificate"], true);
    proxy.stop().await;
}

/// Probes a real weak STARTTLS: `openssl s_server` behind a scripted front.
async fn probe_weak(rsa_bits: u32, cipher: &str, json: bool) -> Option<Out> {
    probe_legacy(rsa_bits, cipher, &["-no_tls1_3"], json).await
}

async fn probe_legacy(rsa_bits: u32, cipher: &str, protocol: &[&str], json: bool) -> Option<Out> {
    if !openssl_available() {
        eprintln!("SKIPPED: the openssl binary is missing (apt-get install openssl)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cipher = cipher.to_string();
    let d = dir.path().to_path_buf();
    let protocol: Vec<String> = protocol.iter().map(|s| s.to_string()).collect();
    let server = tokio::task::spawn_blocking(move || {
        let protocol: Vec<&str> = protocol.iter().map(String::as_str).collect();
        s_server_with(&d, rsa_bits, &cipher, &protocol)
    })
    .await
    .unwrap();
    let (front, task) = starttls_front(server.addr).await;
    let target = front.to_string();
    let mut list = vec![target.as_str(), "--name", "weak.legacy.test"];
    if json {
        list.push("--json");
    }
    let out = probe(&list).await;
    task.abort();
    drop(server);
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_rsa_key_is_diagnosed() {
    let Some(out) = probe_weak(1024, "DEFAULT:@SECLEVEL=0", true).await else {
        return;
    };
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["ok"], false);
    assert_eq!(j["tls"]["ok"], false);
    assert!(j["tls"]["error"].as_str().is_some(), "{j:#}");
    // rustls saw the chain before refusing the key's signature.
    assert_eq!(j["chain"][0]["key_type"], "rsa_1024");
    assert_eq!(j["chain"][0]["key_bits"], 1024);
    let l = &j["legacy"];
    assert_eq!(l["version"], "TLSv1.2");
    assert_eq!(l["key_type"], "rsa_1024");
    assert_eq!(l["key_bits"], 1024);
    assert_eq!(l["cert_subject"], "CN=weak.legacy.test");
    assert_eq!(l["reasons"], json!(["ee key too small"]));
    // As posttls-finger -l may: an untrusted TLS connection, not a failure.
    assert_eq!(senders(&j), ["tls", "fails", "tls"]);
    let why = problems(&j);
    assert!(why.contains("RSA 1024 bits"), "{why}");
    assert!(why.contains("ee key too small"), "{why}");
    assert!(why.contains("EE certificate key too weak"), "{why}");

    let Some(out) = probe_weak(1024, "DEFAULT:@SECLEVEL=0", false).await else {
        return;
    };
    assert_eq!(out.code, 1);
    for needle in [
        "handshake FAILED",
        "what the server offers",
        "leaf       CN=weak.legacy.test (rsa_1024)",
        "opportunistic  TLS: over TLSv1.2, certificate not checked",
        "verifying      FAILS",
        "verdict: opportunistic senders deliver over TLS; verifying senders FAIL here:",
        "ee key too small",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} missing:\n{}",
            out.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_dh_only_server_is_diagnosed() {
    // DHE only, with a sound 2048-bit RSA key: the DH group is the weakness,
    // and rustls (ECDHE only) finds no suite in common.
    let Some(out) = probe_weak(2048, "kEDH:@SECLEVEL=0", true).await else {
        return;
    };
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["tls"]["ok"], false);
    assert_eq!(j["tls"]["error"], "alert_handshake_failure", "{j:#}");
    let l = &j["legacy"];
    assert_eq!(l["key_exchange"], "dhe");
    assert_eq!(l["dh_bits"], 1024);
    assert_eq!(l["key_type"], "rsa_2048");
    assert!(
        l["cipher_suite"]
            .as_str()
            .unwrap()
            .starts_with("TLS_DHE_RSA_WITH_")
    );
    assert_eq!(l["reasons"], json!(["dh key too small"]));
    // Postfix (posttls-finger -l may) completes it; OpenSSL-default senders do not.
    assert_eq!(senders(&j), ["tls", "fails", "tls"]);
    assert!(
        j["senders"]["opportunistic"]["detail"]
            .as_str()
            .unwrap()
            .contains("dh key too small"),
        "{j:#}"
    );
    let why = problems(&j);
    assert!(why.contains("1024-bit DH group"), "{why}");
    assert!(why.contains("dh key too small"), "{why}");
    assert!(!why.contains("ee key too small"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_1_only_server_is_diagnosed() {
    // A sound key and suites, but nothing newer than TLS 1.1.
    let Some(out) = probe_legacy(2048, "DEFAULT:@SECLEVEL=0", &["-tls1_1"], true).await else {
        return;
    };
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["tls"]["ok"], false);
    let l = &j["legacy"];
    assert_eq!(l["version"], "TLSv1.1", "{j:#}");
    assert_eq!(l["reasons"], json!(["protocol version too old"]));
    let why = problems(&j);
    assert!(why.contains("TLSv1.1 only"), "{why}");
    assert!(why.contains("unsupported protocol"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cannot_connect_not_smtp_and_bad_arguments_exit_2() {
    // Nothing listens.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let out = probe(&[&dead.to_string(), "--json"]).await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    assert!(
        j["error"].as_str().unwrap().contains("cannot connect"),
        "{j:#}"
    );

    // Something that is not SMTP.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let out = probe(&[&addr.to_string()]).await;
    task.abort();
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("probe failed: not SMTP"),
        "{}",
        out.stdout
    );

    // Bad arguments.
    assert_eq!(probe(&["host:notaport"]).await.code, 2);
    assert_eq!(probe(&["host", "--timeout", "soon"]).await.code, 2);
    let pki = Pki::new(&["x.test"]);
    let missing = pki.dir.path().join("missing.pem");
    assert_eq!(
        probe(&["127.0.0.1:1", "--cafile", &p(&missing)]).await.code,
        2
    );
}

/// A server that sends `greeting`, answers EHLO with `ehlo`, and closes.
async fn fake_smtp(
    greeting: &'static [u8],
    ehlo: &'static [u8],
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(greeting).await;
            let mut buf = [0u8; 512];
            // Bounded by the probe's own timeout: it writes EHLO, reads, quits.
            if matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                let _ = s.write_all(ehlo).await;
                let _ = s.read(&mut buf).await;
            }
        }
    });
    (addr, task)
}

/// A server's greeting and EHLO lines are its own text: ESC, CR and the like
/// are shown escaped, never sent to the terminal (stdout and stderr).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_text_is_printed_escaped() {
    let (addr, task) = fake_smtp(
        b"220 mx.test ESMTP\x1b[2J\rverdict: OK: a modern sender would deliver over verified TLS\r\n",
        b"250-mx.test\r\n250-X-EVIL\x1b]0;owned\x07\r\n250 SIZE 1000\r\n",
    )
    .await;
    let out = probe(&[&addr.to_string()]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains('\x1b') && !text.contains('\r') && !text.contains('\x07'),
            "{text:?}"
        );
    }
    assert!(
        out.stdout
            .contains(r"  greeting   220 mx.test ESMTP\x1b[2J\rverdict: OK"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(r"X-EVIL\x1b]0;owned\x07"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("verdict: OK")),
        "{}",
        out.stdout
    );
    task.abort();

    // A refused greeting ends the probe (exit 2) and is quoted on stderr too.
    let (addr, task) = fake_smtp(b"554 go away\x1b[2J\rprobe ok\r\n", b"").await;
    let out = probe(&[&addr.to_string()]).await;
    task.abort();
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
        assert!(text.contains(r"554 go away\x1b[2J\rprobe ok"), "{text}");
    }
}

#[tokio::test]
async fn a_huge_timeout_is_refused_not_a_panic() {
    // `Instant + Duration` overflows past ~292 years: refused at the argument.
    let mta = Mta::start(MtaScript::default()).await;
    for huge in ["18446744073709551615s", "8d"] {
        let out = tlsfront(args(&["probe", &mta.addr.to_string(), "--timeout", huge])).await;
        assert_eq!(out.code, 2, "{huge}: {}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("--timeout") && out.stderr.contains("at most"),
            "{}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn help_explains_probe() {
    let out = tlsfront(args(&["probe", "--help"])).await;
    assert_eq!(out.code, 0);
    for needle in [
        "HOST[:PORT]",
        "--implicit",
        "--no-sni",
        "--cafile",
        "ee key too small",
        "Exit status",
        "--no-mx",
        "--port",
        "implicit MX",
        "null MX",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} missing:\n{}",
            out.stdout
        );
    }
}

/// Without any readable roots the chain is "not checked", which does not
/// fail the probe (the library entry point, with the roots file moved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_roots_means_not_checked() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    let options = tlsfront::tools::probe::Options {
        host: "127.0.0.1".into(),
        port: proxy.starttls.port(),
        name: Some("mx.tlsfront.test".into()),
        implicit: false,
        no_sni: false,
        timeout: std::time::Duration::from_secs(5),
        ehlo: "probe.test".into(),
        cafile: None,
        system_roots: pki.dir.path().join("no-such-bundle.crt"),
        published: None,
        addresses: Vec::new(),
    };
    let r = tokio::time::timeout(T, tlsfront::tools::probe::run(&options))
        .await
        .unwrap();
    assert_eq!(r.verification.as_deref(), Some("not_checked"));
    assert!(r.roots.is_empty());
    assert!(r.ok, "{:?}", r.problems);
    assert_eq!(r.exit, 0);
    assert!(r.render().contains("chain not checked: no roots"));
    proxy.stop().await;
}

/// A server without STARTTLS: opportunistic senders deliver in clear (as
/// posttls-finger shows: no TLS attempted), only verifying senders fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_starttls_means_clear_for_opportunistic_senders() {
    let (addr, task) = fake_smtp(
        b"220 plain.test ESMTP\r\n",
        b"250-plain.test\r\n250 PIPELINING\r\n",
    )
    .await;
    let out = probe(&[&addr.to_string(), "--json"]).await;
    task.abort();
    assert_eq!(out.code, 1, "{}", out.stdout);
    let j = out.json();
    assert_eq!(senders(&j), ["plaintext", "fails", "plaintext"]);
    assert!(
        j["senders"]["opportunistic"]["detail"]
            .as_str()
            .unwrap()
            .contains("STARTTLS is not offered: delivers in clear"),
        "{j:#}"
    );
}

// ------------------------------------------- mail domains (tests/zone on loopback)

/// A signed zone with the mail domains of the tests, its trust anchor file,
/// and tlsfront serving a certificate for `mx1.tlsfront.test` only, at
/// 127.0.0.1, where every host name of the zone points.
struct MailDns {
    zone: zone::Zone,
    anchor: PathBuf,
    ca: PathBuf,
    proxy: Proxy,
    _mta: Mta,
    _pki: Pki,
}

impl MailDns {
    async fn start() -> MailDns {
        let zone = zone::Zone::start("tlsfront.test.", true).await;
        // MX hosts published worst first: the order must come from the preference.
        zone.mx("mail.tlsfront.test", 20, "mx2.tlsfront.test").await;
        zone.mx("mail.tlsfront.test", 10, "mx1.tlsfront.test").await;
        zone.mx("nullmx.tlsfront.test", 0, ".").await;
        for host in ["mx1", "mx2", "plain"] {
            zone.a(&format!("{host}.tlsfront.test"), "127.0.0.1").await;
        }
        let pki = Pki::new(&["mx1.tlsfront.test"]);
        let ca = ca_file(&pki);
        let anchor = pki.dir.path().join("anchor.key");
        zone.trust_anchor(&anchor);
        let mta = Mta::start(MtaScript::default()).await;
        let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
        MailDns {
            zone,
            anchor,
            ca,
            proxy,
            _mta: mta,
            _pki: pki,
        }
    }

    /// `probe TARGET` through the zone's server, on tlsfront's port.
    async fn probe(&self, target: &str, extra: &[&str]) -> Out {
        let (resolver, anchor, ca) = (self.zone.addr.to_string(), p(&self.anchor), p(&self.ca));
        let port = self.proxy.starttls.port().to_string();
        let mut list = vec![
            target,
            "--resolver",
            &resolver,
            "--trust-anchor",
            &anchor,
            "--cafile",
            &ca,
            "--port",
            &port,
        ];
        list.extend(extra);
        probe(&list).await
    }
}

/// `probe DOMAIN` probes each MX host in order of preference, at the
/// address the same resolver gives, with the MX name as SNI and as the name
/// the certificate must cover: mx1 is covered, mx2 is not (exit 1, the worst).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_domain_is_probed_mx_host_by_mx_host() {
    let dns = MailDns::start().await;
    let out = dns.probe("mail.tlsfront.test", &["--json"]).await;
    let j = out.json();
    assert_eq!(j["mail_hosts"], "mx", "{j:#}");
    assert_eq!(j["dnssec"], "secure", "{j:#}");
    assert_eq!(
        j["mx"],
        json!([
            {"preference": 10, "host": "mx1.tlsfront.test"},
            {"preference": 20, "host": "mx2.tlsfront.test"}
        ])
    );
    let hosts = j["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{j:#}");
    let port = u64::from(dns.proxy.starttls.port());
    for (h, name) in hosts.iter().zip(["mx1.tlsfront.test", "mx2.tlsfront.test"]) {
        assert_eq!(h["host"], name);
        assert_eq!(h["port"], port);
        assert_eq!(h["address"], format!("127.0.0.1:{port}"));
        assert_eq!(h["tls"]["sni"], name);
        assert_eq!(h["names"][0]["name"], name);
    }
    assert_eq!(hosts[0]["exit"], 0, "{j:#}");
    assert_eq!(senders(&hosts[0]), ["tls", "verified_tls", "tls"]);
    assert_eq!(hosts[1]["exit"], 1, "{j:#}");
    assert_eq!(hosts[1]["names"][0]["matches"], false);
    assert_eq!(j["exit"], 1);
    assert_eq!(out.code, 1, "{}", out.stderr);

    // The text: the MX list, one section per host, the overall line.
    let out = dns.probe("mail.tlsfront.test.", &[]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let text = &out.stdout;
    assert!(
        text.starts_with(
            "mail domain mail.tlsfront.test: MX 10 mx1.tlsfront.test, 20 mx2.tlsfront.test (DNSSEC secure)\n"
        ),
        "{text}"
    );
    let first = text.find("=== MX 10 mx1.tlsfront.test").unwrap();
    let second = text.find("=== MX 20 mx2.tlsfront.test").unwrap();
    assert!(first < second, "{text}");
    assert!(
        text.trim_end().ends_with(
            "overall: 2 mail hosts: mx1.tlsfront.test OK; mx2.tlsfront.test verifying senders FAIL; exit 1 (the worst)"
        ),
        "{text}"
    );
    dns.proxy.stop().await;
}

/// No MX records: the domain itself is the mail host (RFC 5321 §5.1); --no-mx
/// probes a name without looking up its MX records; HOST:PORT is one host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_mx_and_no_mx() {
    let dns = MailDns::start().await;
    let out = dns.probe("plain.tlsfront.test", &["--json"]).await;
    let j = out.json();
    assert_eq!(j["mail_hosts"], "implicit", "{j:#}");
    assert_eq!(j["mx"], json!([]));
    let hosts = j["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{j:#}");
    assert_eq!(hosts[0]["host"], "plain.tlsfront.test");
    assert_eq!(hosts[0]["tls"]["sni"], "plain.tlsfront.test");
    // The certificate names mx1 only.
    assert_eq!(hosts[0]["exit"], 1, "{j:#}");
    assert_eq!(out.code, 1);

    // --no-mx: the name itself, resolved by the system (localhost), one report.
    let out = dns
        .probe(
            "localhost",
            &["--no-mx", "--name", "mx1.tlsfront.test", "--json"],
        )
        .await;
    let j = out.json();
    assert_eq!(j["host"], "localhost", "{j:#}");
    assert_eq!(j["mail_hosts"], Value::Null);
    assert_eq!(j["tls"]["sni"], "mx1.tlsfront.test");
    // A mail domain has no single --name, and --port does not go with HOST:PORT.
    let out = dns.probe("mail.tlsfront.test", &["--name", "x.test"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--name is for one host"),
        "{}",
        out.stderr
    );
    let out = dns.probe("localhost:25", &[]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("give one"), "{}", out.stderr);
    dns.proxy.stop().await;
}

/// A null MX (RFC 7505): the domain accepts no mail, exit 1, nothing probed.
/// A domain that does not exist: exit 2 and an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_mx_and_nxdomain() {
    let dns = MailDns::start().await;
    let out = dns.probe("nullmx.tlsfront.test", &["--json"]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["mail_hosts"], "null", "{j:#}");
    assert_eq!(j["hosts"], json!([]));
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("accepts no mail (null MX, RFC 7505)"),
        "{j:#}"
    );
    let out = dns.probe("nullmx.tlsfront.test", &[]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .starts_with("mail domain nullmx.tlsfront.test: null MX"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("accepts no mail"), "{}", out.stderr);

    let out = dns.probe("nosuch.tlsfront.test", &["--json"]).await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["mail_hosts"], Value::Null, "{j:#}");
    assert_eq!(
        j["error"],
        "mail domain nosuch.tlsfront.test. does not exist (NXDOMAIN): mail to it bounces",
        "{j:#}"
    );
    let out = dns.probe("nosuch.tlsfront.test", &[]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("does not exist (NXDOMAIN)"),
        "{}",
        out.stderr
    );
    dns.proxy.stop().await;
}

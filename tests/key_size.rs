//! One certificate parser for `run`, `check` and `probe`: a key's size is
//! read from the key itself, so the record, `check`'s findings and `probe`'s
//! report name the same key the same way. Keys of odd sizes come from the
//! openssl binary (rcgen and aws-lc-rs only make the usual sizes), and so
//! does the size they are checked against (`openssl rsa -text`: a modulus
//! asked for with 2049 bits may come out with 2048): just over 2048 bits,
//! which `run` serves, and 2047 and 1024 bits, which it refuses.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::openssl::{openssl_available, s_server, starttls_front};
use common::*;
use tlsfront::config::Settings;
use tlsfront::tools::{check, probe};

/// `openssl req` for a self-signed RSA certificate of `bits` for `name`.
fn openssl_rsa(dir: &Path, bits: u32, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("rsa{bits}.pem"));
    let key = dir.join(format!("rsa{bits}.key"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", &format!("rsa:{bits}"), "-nodes"])
        .args(["-keyout", &key.display().to_string()])
        .args(["-out", &cert.display().to_string(), "-days", "30"])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// The modulus size of an RSA key file, as OpenSSL counts it.
fn openssl_bits(key: &Path) -> usize {
    let out = Command::new("openssl")
        .args(["rsa", "-noout", "-text", "-in", &key.display().to_string()])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // "Private-Key: (2047 bit, 2 primes)"
    text.split_once('(')
        .and_then(|(_, rest)| rest.split_once(" bit"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no key size in: {text}"))
}

fn settings(cert: &(PathBuf, PathBuf), backend: std::net::SocketAddr) -> Settings {
    let text = format!(
        "[server]\nhostname = \"mx.tlsfront.test\"\n[[listener]]\naddress = [\"127.0.0.1:0\"]\n\
         [backend]\naddress = \"{backend}\"\nconnect_timeout = \"3s\"\nreply_timeout = \"3s\"\n\
         [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.0.display(),
        cert.1.display()
    );
    tlsfront::config::validate(
        tlsfront::config::parse(&text, "t.toml").unwrap(),
        &Default::default(),
        "t.toml",
    )
    .unwrap()
}

fn probe_options(target: std::net::SocketAddr, name: &str) -> probe::Options {
    probe::Options {
        host: target.ip().to_string(),
        port: target.port(),
        name: Some(name.to_string()),
        implicit: false,
        no_sni: false,
        timeout: Duration::from_secs(5),
        ehlo: "probe.test".into(),
        cafile: None,
        system_roots: PathBuf::from("/nonexistent/roots.pem"),
        published: None,
        addresses: Vec::new(),
    }
}

fn finding<'a>(report: &'a check::Report, code: &str) -> &'a check::Finding {
    report
        .findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no finding {code}: {report:#?}"))
}

/// tlsfront serving only `cert`, and the record of one STARTTLS session.
async fn served(cert: &(PathBuf, PathBuf)) -> (Mta, Proxy, serde_json::Value) {
    let mta = Mta::start(MtaScript::default()).await;
    let extra = format!(
        "[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.0.display(),
        cert.1.display()
    );
    let proxy = Proxy::start(mta.addr, None, &extra).await;
    let cfg = Arc::new(
        rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(tlsfront::proxy::backend::tls::unauthenticated())
            .with_no_client_auth(),
    );
    let mut c = Client::greeted(proxy.starttls)
        .await
        .starttls(cfg, "mx.tlsfront.test")
        .await;
    c.send("QUIT").await;
    c.expect(221).await;
    let record = proxy.records(1).await[0].clone();
    (mta, proxy, record)
}

/// A modulus just over 2048 bits has no leading zero byte in DER: counting
/// bytes says 2048. The record, `check` and `probe` must all say its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_just_over_2048_bits_is_named_alike_by_the_record_check_and_probe() {
    if !openssl_available() {
        eprintln!("SKIPPED: the openssl binary is missing (apt-get install openssl)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = openssl_rsa(dir.path(), 2050, "mx.tlsfront.test");
    let bits = openssl_bits(&cert.1);
    assert!(bits > 2048 && !bits.is_multiple_of(8), "{bits}");
    let name = format!("rsa_{bits}");

    // run: the record of a session.
    let (mta, proxy, record) = served(&cert).await;
    assert_eq!(record["cert_key_type"], name.as_str(), "{record}");

    // check: the certificate rules.
    let report = check::run(
        &settings(&cert, mta.addr),
        "t.toml",
        check::Options {
            backend: false,
            ..check::Options::default()
        },
    )
    .await;
    assert_eq!(finding(&report, "key_type").message, format!("key {name}"));

    // probe: tlsfront as senders see it.
    let r = probe::run(&probe_options(proxy.starttls, "mx.tlsfront.test")).await;
    assert_eq!(r.chain[0].key_type, name, "{r:#?}");
    assert_eq!(r.chain[0].key_bits, Some(bits));
    proxy.stop().await;
}

/// Keys under 2048 bits: `run` refuses them naming their size, `check`
/// flags them with the same size, both on tlsfront's own certificate and on
/// a backend's STARTTLS, and `probe` reports the same size for that backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_2047_and_1024_bits_are_refused_by_run_and_named_alike_by_check_and_probe() {
    if !openssl_available() {
        eprintln!("SKIPPED: the openssl binary is missing (apt-get install openssl)");
        return;
    }
    for asked in [2047u32, 1024] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        // A legacy STARTTLS serving that key: its files are tlsfront's too.
        let server =
            tokio::task::spawn_blocking(move || s_server(&d, asked, "DEFAULT:@SECLEVEL=0"))
                .await
                .unwrap();
        let cert = (
            dir.path().join(format!("rsa{asked}.pem")),
            dir.path().join(format!("rsa{asked}.key")),
        );
        let bits = openssl_bits(&cert.1);
        assert!(bits < 2048, "{bits}");
        let (front, task) = starttls_front(server.addr).await;
        let name = format!("rsa_{bits}");

        // run
        let s = settings(&cert, front);
        let e = tlsfront::proxy::tls::TlsFront::build(&s)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("RSA key of {bits} bits")), "{e}");

        // check: tlsfront's certificate, and the backend's STARTTLS.
        let report = check::run(
            &s,
            "t.toml",
            check::Options {
                backend: true,
                ..check::Options::default()
            },
        )
        .await;
        let f = finding(&report, "rsa_key_too_small");
        assert!(
            f.message.contains(&format!("RSA key of {bits} bits")),
            "{}",
            f.message
        );
        let f = finding(&report, "backend_starttls_weak_rsa");
        assert!(
            f.message.contains(&format!("RSA {bits} bits")),
            "{}",
            f.message
        );
        let backend = report.backend.as_ref().unwrap();
        let t = backend.starttls.as_ref().unwrap();
        assert_eq!(t.key_type.as_deref(), Some(name.as_str()));
        assert_eq!(t.key_bits, Some(bits));

        // probe
        let r = probe::run(&probe_options(front, "weak.legacy.test")).await;
        assert_eq!(r.chain[0].key_type, name, "{r:#?}");
        assert_eq!(r.chain[0].key_bits, Some(bits));
        let l = r.legacy.as_ref().unwrap();
        assert_eq!(l.key_type.as_deref(), Some(name.as_str()));
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains(&format!("RSA {bits} bits"))),
            "{:?}",
            r.problems
        );
        task.abort();
        drop(server);
    }
}

/// An EC key is named by its curve: P-521 (66-byte coordinates) is
/// `ecdsa_p521` in the record and in `check`, not a size counted in bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p521_key_is_named_by_its_curve_in_the_record_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["mx.tlsfront.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mx.tlsfront.test");
    let cert = (dir.path().join("p521.pem"), dir.path().join("p521.key"));
    std::fs::write(&cert.0, params.self_signed(&key).unwrap().pem()).unwrap();
    std::fs::write(&cert.1, key.serialize_pem()).unwrap();
    let (mta, proxy, record) = served(&cert).await;
    assert_eq!(record["cert_key_type"], "ecdsa_p521", "{record}");
    let report = check::run(
        &settings(&cert, mta.addr),
        "t.toml",
        check::Options {
            backend: false,
            ..check::Options::default()
        },
    )
    .await;
    assert_eq!(finding(&report, "key_type").message, "key ecdsa_p521");
    proxy.stop().await;
}

/// What `run` says about a certificate and key it refuses is what `check`
/// says about them, word for word: the legacy box's 1024-bit key beside a
/// new certificate (aws-lc-rs only says it "failed to parse" such a key), a
/// file that holds no key, and a key of another certificate.
#[tokio::test]
async fn run_refuses_a_key_in_the_words_of_check() {
    use common::bin::{args, tlsfront};
    if !openssl_available() {
        eprintln!("SKIPPED: the openssl binary is missing (apt-get install openssl)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let new = openssl_rsa(dir.path(), 2048, "mx.tlsfront.test");
    let old = tempfile::tempdir().unwrap();
    let legacy = openssl_rsa(old.path(), 1024, "mx.tlsfront.test");
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let other = tempfile::tempdir().unwrap();
    let other = openssl_rsa(other.path(), 2048, "mx.tlsfront.test");
    for (key, code, words) in [
        (
            &legacy.1,
            "rsa_key_too_small",
            "RSA key of 1024 bits: modern senders refuse it",
        ),
        (&garbage, "key_unreadable", "private key "),
        (
            &other.1,
            "key_mismatch",
            "does not belong to the first certificate",
        ),
    ] {
        let flags = |cmd: &str| {
            args(&[
                cmd,
                "--listen",
                "127.0.0.1:0",
                "--backend",
                "127.0.0.1:9",
                "--hostname",
                "mx.tlsfront.test",
                "--cert",
                &new.0.display().to_string(),
                "--key",
                &key.display().to_string(),
            ])
        };
        let mut check_flags = flags("check");
        check_flags.extend(args(&["--no-backend", "--json", "--service-user", "root"]));
        let check = tlsfront(check_flags).await;
        assert_eq!(check.code, 1, "{}", check.stdout);
        let j = check.json();
        let finding = j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == code)
            .unwrap_or_else(|| panic!("no {code} in {j:#}"));
        let message = finding["message"].as_str().unwrap();
        assert!(message.contains(words), "{message}");
        let run = tlsfront(flags("run")).await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains(message),
            "run does not say check's words\n  check: {message}\n  run: {}",
            run.stderr
        );
    }
}

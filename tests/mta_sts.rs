//! MTA-STS end to end on loopback: tlsfront serves the policy itself
//! (`[mta_sts]`, HTTPS with the certificate it serves for the policy host),
//! a signed zone publishes the `_mta-sts` TXT record and the addresses, and
//! `check --mta-sts` fetches and judges it as a sender would (the test CA as
//! the trusted root, the zone as DNS): all well for this host; an MX pattern
//! that misses the host and a certificate a verifying sender rejects are
//! errors with their fix.

mod common;
mod zone;

use std::path::Path;

use common::*;
use tlsfront::config::{DnsSettings, Overrides, Settings};
use tlsfront::proxy::daemon::Daemon;
use tlsfront::proxy::mta_sts::PolicyServer;
use tlsfront::proxy::notify::Notifier;
use tlsfront::proxy::records::RecordSink;
use tlsfront::proxy::server::Server;
use tlsfront::tools::check::{self, Level, Report};
use zone::Zone;

fn settings(text: &str) -> Settings {
    let raw = tlsfront::config::parse(text, "t.toml").unwrap();
    tlsfront::config::validate(raw, &Overrides::default(), "t.toml").unwrap()
}

fn config(hostname: &str, cert: &(std::path::PathBuf, std::path::PathBuf), extra: &str) -> String {
    format!(
        "[server]\nhostname = \"{hostname}\"\n[[listener]]\naddress = [\"127.0.0.1:0\"]\n\
         [backend]\naddress = \"127.0.0.1:10025\"\n\
         [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
        cert.0.display(),
        cert.1.display()
    )
}

fn level(report: &Report, code: &str) -> Level {
    report
        .findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code} in {}", report.render()))
        .level
}

fn message<'a>(report: &'a Report, code: &str) -> &'a str {
    &report
        .findings
        .iter()
        .find(|f| f.code == code)
        .unwrap()
        .message
}

fn options(zone: &Zone, anchor: &Path, ca: &Path, port: u16) -> check::Options {
    check::Options {
        mta_sts: vec!["tlsfront.test".into()],
        dns: Some(DnsSettings {
            resolver: Some(zone.addr),
            trust_anchor: Some(anchor.to_path_buf()),
        }),
        // Only the test CA is trusted.
        system_roots: "/nonexistent".into(),
        cafile: Some(ca.to_path_buf()),
        policy_port: port,
        ..check::Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlsfront_serves_the_policy_and_check_finds_it_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&["mx.tlsfront.test", "mta-sts.tlsfront.test"]);
    let zone = Zone::start("tlsfront.test.", true).await;
    let anchor = dir.path().join("anchor.txt");
    zone.trust_anchor(&anchor);
    zone.a("mta-sts.tlsfront.test", "127.0.0.1").await;
    zone.txt("_mta-sts.tlsfront.test", "v=STSv1; id=20250101T000000")
        .await;
    let served = settings(&config(
        "mx.tlsfront.test",
        &pki.ecdsa,
        "[mta_sts]\ndomains = [\"tlsfront.test\"]\nlisten = [\"127.0.0.1:0\"]\nmode = \"enforce\"\n",
    ));
    let server = Server::bind(served.clone(), RecordSink::disabled())
        .await
        .unwrap();
    let policy = PolicyServer::bind(served.mta_sts.as_ref())
        .unwrap()
        .unwrap();
    let port = policy.local_addrs()[0].port();
    let daemon = Daemon::new(
        server.shared.clone(),
        Notifier::disabled(),
        Box::new(move || unreachable!("no reload here")),
    );
    daemon.attach_policy(policy);
    let shared = server.shared.clone();
    let shared_starttls = server.local_addrs()[0].0.port();
    let task = tokio::spawn({
        let daemon = daemon.clone();
        async move { daemon.serve(server).await }
    });

    // The policy as served, and everything consistent.
    let report = check::run(
        &served,
        "t.toml",
        options(&zone, &anchor, &pki.ca_pem, port),
    )
    .await;
    assert!(report.ok, "{}", report.render());
    assert_eq!(level(&report, "mta_sts_txt"), Level::Ok);
    assert_eq!(
        message(&report, "mta_sts_policy"),
        "mode enforce, mx [mx.tlsfront.test], max_age 604800s"
    );
    assert_eq!(level(&report, "mta_sts_certificate_ok"), Level::Ok);
    assert!(report.render().contains("mta-sts\n"));

    // probe --dane --mta-sts says the same, of the host as a sender meets it.
    let leaf: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_file_iter(&pki.ecdsa.0)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let record = tlsfront::dane::Tlsa::for_key(&tlsfront::cert::spki(leaf[0].as_ref()).unwrap());
    zone.tlsa("mx.tlsfront.test", 60, &record.rdata()).await;
    let probe = tlsfront::tools::probe::Options {
        host: "127.0.0.1".into(),
        port: shared_starttls,
        name: Some("mx.tlsfront.test".into()),
        implicit: false,
        no_sni: false,
        timeout: std::time::Duration::from_secs(5),
        ehlo: "probe.test".into(),
        cafile: Some(pki.ca_pem.clone()),
        system_roots: "/nonexistent".into(),
        published: Some(check::Options {
            dane: true,
            ..options(&zone, &anchor, &pki.ca_pem, port)
        }),
        addresses: Vec::new(),
    };
    let r = tlsfront::tools::probe::run(&probe).await;
    assert!(r.ok, "{}", r.render());
    let codes: Vec<&str> = r.published.iter().map(|f| f.code).collect();
    assert!(codes.contains(&"tlsa_current_published"), "{codes:?}");
    assert!(codes.contains(&"mta_sts_certificate_ok"), "{codes:?}");
    let policy = r
        .published
        .iter()
        .find(|f| f.code == "mta_sts_policy")
        .unwrap();
    assert_eq!(policy.message, message(&report, "mta_sts_policy"));
    let text = r.render();
    assert!(text.contains("published in DNS"), "{text}");
    assert!(text.contains("published and DNSSEC-validated"), "{text}");

    // Another host that the policy does not list: an error with the fix.
    let other = Pki::new(&["mx2.tlsfront.test"]);
    let s = settings(&config("mx2.tlsfront.test", &other.ecdsa, ""));
    let report = check::run(&s, "t.toml", options(&zone, &anchor, &pki.ca_pem, port)).await;
    assert_eq!(level(&report, "mta_sts_mx_not_listed"), Level::Error);
    assert!(message(&report, "mta_sts_mx_not_listed").contains("add mx: mx2.tlsfront.test"));
    assert_eq!(level(&report, "mta_sts_mx_other_host"), Level::Warning);

    // The listed host, but serving a certificate senders cannot verify
    // (its CA is not trusted): an error naming the cause.
    let untrusted = Pki::new(&["mx.tlsfront.test"]);
    let s = settings(&config("mx.tlsfront.test", &untrusted.ecdsa, ""));
    let report = check::run(&s, "t.toml", options(&zone, &anchor, &pki.ca_pem, port)).await;
    assert_eq!(level(&report, "mta_sts_certificate_rejected"), Level::Error);
    assert!(!report.ok);

    shared.shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

//! Certificate choice: by SNI, by the key type the client can verify, and the
//! default certificate for clients without SNI.

mod common;

use std::sync::Arc;

use common::*;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::version::{TLS12, TLS13};

fn cert_toml(
    path: &std::path::Path,
    key: &std::path::Path,
    names: &[&str],
    default: bool,
) -> String {
    format!(
        "[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\nnames = {:?}\ndefault = {default}\n",
        path.display(),
        key.display(),
        names
    )
}

/// A client that can only verify RSA signatures (an old stack, in effect).
fn rsa_only_client(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let all = provider.signature_verification_algorithms;
    let mapping: Vec<_> = all
        .mapping
        .iter()
        .filter(|(scheme, _)| format!("{scheme:?}").starts_with("RSA_"))
        .copied()
        .collect();
    provider.signature_verification_algorithms = WebPkiSupportedAlgorithms {
        all: all.all,
        mapping: Box::leak(mapping.into_boxed_slice()),
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&TLS12, &TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn served_key_type(
    proxy: &Proxy,
    cfg: Arc<rustls::ClientConfig>,
    sni: &str,
    n: usize,
) -> serde_json::Value {
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c.starttls(cfg, sni).await;
    c.send("QUIT").await;
    c.expect(221).await;
    proxy.records(n).await[n - 1].clone()
}

#[tokio::test]
async fn ecdsa_and_rsa_side_by_side() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let extra = format!(
        "{}{}",
        cert_toml(&pki.ecdsa.0, &pki.ecdsa.1, &[], true),
        cert_toml(&pki.rsa.0, &pki.rsa.1, &[], true)
    );
    let proxy = Proxy::start(mta.addr, Some(&pki), &extra).await;
    let r = served_key_type(&proxy, pki.client_config(&[&TLS13]), "mx.tlsfront.test", 1).await;
    assert_eq!(r["cert_key_type"], "ecdsa_p256", "{r}");
    let r = served_key_type(&proxy, rsa_only_client(&pki), "mx.tlsfront.test", 2).await;
    assert_eq!(r["cert_key_type"], "rsa_2048", "{r}");
    assert_eq!(r["tls"], "established");
    proxy.stop().await;
}

#[tokio::test]
async fn sni_selects_the_certificate_and_default_answers_the_rest() {
    let a = Pki::new(&["mx1.tlsfront.test"]);
    let b = Pki::new(&["mx2.tlsfront.test", "*.pool.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let extra = format!(
        "{}{}",
        cert_toml(&a.ecdsa.0, &a.ecdsa.1, &[], true),
        cert_toml(&b.ecdsa.0, &b.ecdsa.1, &[], false)
    );
    let proxy = Proxy::start(mta.addr, Some(&a), &extra).await;
    let r = served_key_type(&proxy, b.client_config(&[&TLS13]), "mx2.tlsfront.test", 1).await;
    assert_eq!(r["cert_subject"], "CN=mx2.tlsfront.test ecdsa");
    assert_eq!(r["sni"], "mx2.tlsfront.test");
    let r = served_key_type(
        &proxy,
        b.client_config(&[&TLS13]),
        "x.pool.tlsfront.test",
        2,
    )
    .await;
    assert_eq!(
        r["cert_subject"], "CN=mx2.tlsfront.test ecdsa",
        "wildcard name"
    );
    let c = Client::greeted(proxy.starttls).await;
    let mut c = c
        .starttls(a.client_config(&[&TLS13]), "mx1.tlsfront.test")
        .await;
    c.send("QUIT").await;
    c.expect(221).await;
    let r = &proxy.records(3).await[2];
    assert_eq!(r["cert_subject"], "CN=mx1.tlsfront.test ecdsa");
    // No SNI at all: the default certificate.
    let mut cfg = (*a.client_config(&[&TLS13])).clone();
    cfg.enable_sni = false;
    let r = served_key_type(&proxy, Arc::new(cfg), "mx1.tlsfront.test", 4).await;
    assert_eq!(r["sni"], serde_json::Value::Null);
    assert_eq!(r["cert_subject"], "CN=mx1.tlsfront.test ecdsa");
    proxy.stop().await;
}

#[tokio::test]
async fn bad_certificate_files_are_refused_with_the_path() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let other = Pki::new(&["mx.tlsfront.test"]);
    let settings = |extra: String| {
        let text = format!(
            "[server]\nhostname = \"mx.tlsfront.test\"\n[[listener]]\naddress = [\"127.0.0.1:0\"]\n\
             [backend]\naddress = \"127.0.0.1:9\"\n{extra}"
        );
        tlsfront::config::validate(
            tlsfront::config::parse(&text, "t.toml").unwrap(),
            &Default::default(),
            "t.toml",
        )
        .unwrap()
    };
    // Key of another certificate.
    let s = settings(cert_toml(&pki.ecdsa.0, &other.ecdsa.1, &[], true));
    let e = tlsfront::proxy::tls::TlsFront::build(&s)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("does not belong") && e.contains("ecdsa.pem"),
        "{e}"
    );
    // A key file given as the certificate.
    let s = settings(cert_toml(&pki.ecdsa.1, &pki.ecdsa.1, &[], true));
    let e = tlsfront::proxy::tls::TlsFront::build(&s)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no CERTIFICATE") && e.contains("ecdsa.key"),
        "{e}"
    );
    // Missing file.
    let s = settings(cert_toml(
        std::path::Path::new("/nonexistent/c.pem"),
        &pki.ecdsa.1,
        &[],
        true,
    ));
    let e = tlsfront::proxy::tls::TlsFront::build(&s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/c.pem"), "{e}");
}

/// A TLS 1.2 client offering only ECDHE-RSA suites, but ECDSA signature
/// schemes too (as OpenSSL clients do), must get the RSA certificate.
#[tokio::test]
async fn tls12_client_with_only_ecdhe_rsa_suites_gets_the_rsa_certificate() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let extra = format!(
        "{}{}",
        cert_toml(&pki.ecdsa.0, &pki.ecdsa.1, &[], true),
        cert_toml(&pki.rsa.0, &pki.rsa.1, &[], true)
    );
    let proxy = Proxy::start(mta.addr, Some(&pki), &extra).await;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .retain(|s| format!("{:?}", s.suite()).starts_with("TLS_ECDHE_RSA_"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let r = served_key_type(&proxy, cfg, "mx.tlsfront.test", 1).await;
    assert_eq!(r["cert_key_type"], "rsa_2048", "{r}");
    assert!(
        r["cipher_suite"]
            .as_str()
            .unwrap()
            .starts_with("TLS_ECDHE_RSA_"),
        "{r}"
    );
    proxy.stop().await;
}

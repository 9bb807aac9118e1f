//! TLS on the backend hop: STARTTLS or implicit, verified by CA or by a pinned
//! fingerprint, never falling back to plaintext.

mod common;

use common::*;

fn backend_with_tls(pki: &Pki, implicit: bool) -> MtaScript {
    MtaScript {
        tls: Some(pki.server_config()),
        implicit_tls: implicit,
        ..MtaScript::default()
    }
}

/// The reply to MAIL FROM (the first command that needs the backend).
async fn mail_from(proxy: &Proxy) -> u16 {
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    c.send("MAIL FROM:<a@origin.test>").await;
    let code = c.reply().await.code;
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    code
}

async fn deliver(proxy: &Proxy) -> Reply {
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("EHLO client.test").await;
    c.expect(250).await;
    let r = c
        .mail(
            "a@origin.test",
            "b@legacy.test",
            &sample_message("backend-tls"),
        )
        .await;
    c.send("QUIT").await;
    let _ = c.try_reply().await;
    r
}

#[tokio::test]
async fn starttls_to_the_backend_verified_by_ca() {
    let pki = Pki::new(&["mx.tlsfront.test", "legacy.test"]);
    let mta = Mta::start(backend_with_tls(&pki, false)).await;
    let extra = format!(
        "tls = \"starttls\"\ntls_ca_file = \"{}\"\ntls_name = \"legacy.test\"\n",
        pki.ca_pem.display()
    );
    let proxy = Proxy::start(mta.addr, None, &extra).await;
    assert_eq!(deliver(&proxy).await.code, 250);
    let cmds = mta.commands();
    let tls_at = cmds
        .iter()
        .position(|c| c == "<TLS>")
        .expect("TLS on the backend hop");
    let mail_at = cmds.iter().rposition(|c| c.starts_with("MAIL")).unwrap();
    assert!(tls_at < mail_at, "MAIL went in clear: {cmds:?}");
    assert_eq!(mta.messages().len(), 1);
    let r = &proxy.records(1).await[0];
    assert_eq!(r["backend_tls_version"], "TLSv1.3");
    assert!(
        r["backend_cipher_suite"]
            .as_str()
            .unwrap()
            .starts_with("TLS13_")
    );
    proxy.stop().await;
}

#[tokio::test]
async fn implicit_tls_to_the_backend_pinned_by_fingerprint() {
    let pki = Pki::new(&["legacy.test"]);
    let mta = Mta::start(backend_with_tls(&pki, true)).await;
    let leaf = rustls::pki_types::pem::PemObject::pem_file_iter(&pki.ecdsa.0)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let pin: rustls::pki_types::CertificateDer = leaf;
    let fp: Vec<String> = tlsfront::proxy::backend::tls::sha256(pin.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let extra = format!(
        "tls = \"implicit\"\ntls_fingerprint = \"sha256:{}\"\n",
        fp.join(":")
    );
    let proxy = Proxy::start(mta.addr, None, &extra).await;
    assert_eq!(deliver(&proxy).await.code, 250);
    assert_eq!(mta.commands().first().map(String::as_str), Some("<TLS>"));
    assert_eq!(mta.messages().len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn wrong_pin_or_missing_starttls_never_falls_back_to_plaintext() {
    let pki = Pki::new(&["legacy.test"]);
    // A pin that does not match: the session is refused, nothing sent.
    let mta = Mta::start(backend_with_tls(&pki, false)).await;
    let extra = format!(
        "tls = \"starttls\"\ntls_fingerprint = \"{}\"\n",
        "00".repeat(32)
    );
    let proxy = Proxy::start(mta.addr, None, &extra).await;
    assert_eq!(mail_from(&proxy).await, 451);
    assert!(!mta.commands().iter().any(|c| c.starts_with("MAIL")));
    assert_eq!(proxy.records(1).await[0]["backend_error"], "tls_failed");
    proxy.stop().await;
    // A backend that does not offer STARTTLS at all: refused too.
    let plain = Mta::start(MtaScript {
        ehlo: vec!["legacy.test".into(), "PIPELINING".into()],
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::start(plain.addr, None, "tls = \"starttls\"\n").await;
    assert_eq!(mail_from(&proxy).await, 451);
    assert!(!plain.commands().iter().any(|c| c.starts_with("MAIL")));
    proxy.stop().await;
}

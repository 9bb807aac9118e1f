//! DANE against a signed zone served on loopback (tests/zone): tlsfront's
//! validating resolver, `check --dane`, and the key rollover rule.

mod common;
mod zone;

use tlsfront::config::DnsSettings;
use tlsfront::dane::Tlsa;
use tlsfront::dns::{Dnssec, Resolver};
use tlsfront::tools::check;
use zone::Zone;

async fn resolver(zone: &Zone, dir: &std::path::Path) -> Resolver {
    let anchor = dir.join("anchor.txt");
    zone.trust_anchor(&anchor);
    Resolver::new(&DnsSettings {
        resolver: Some(zone.addr),
        trust_anchor: Some(anchor),
    })
    .unwrap()
}

#[tokio::test]
async fn tlsa_records_of_a_signed_zone_validate_and_an_unsigned_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let zone = Zone::start("tlsfront.test.", true).await;
    let record = Tlsa::for_key(b"some key");
    zone.tlsa("mx.tlsfront.test.", 60, &record.rdata()).await;
    let r = resolver(&zone, dir.path()).await;
    let answer = r.tlsa("mx.tlsfront.test").await.unwrap();
    assert_eq!(answer.records, vec![record.clone()]);
    assert_eq!(answer.dnssec, Dnssec::Secure);
    assert!(answer.ttl <= 60 && answer.ttl > 0, "{}", answer.ttl);

    let unsigned = Zone::start("plain.test.", false).await;
    unsigned.tlsa("mx.plain.test.", 60, &record.rdata()).await;
    let r = resolver(&unsigned, dir.path()).await;
    let answer = r.tlsa("mx.plain.test").await;
    match answer {
        Ok(a) => assert_ne!(a.dnssec, Dnssec::Secure, "{a:?}"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

#[tokio::test]
async fn a_record_added_later_is_seen_by_the_next_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let zone = Zone::start("tlsfront.test.", true).await;
    let a = Tlsa::for_key(b"a");
    let b = Tlsa::for_key(b"b");
    zone.tlsa("mx.tlsfront.test.", 1, &a.rdata()).await;
    let r = resolver(&zone, dir.path()).await;
    assert_eq!(
        r.tlsa("mx.tlsfront.test").await.unwrap().records,
        vec![a.clone()]
    );
    zone.tlsa("mx.tlsfront.test.", 1, &b.rdata()).await;
    let mut got = r.tlsa("mx.tlsfront.test").await.unwrap();
    got.records.sort_by(|x, y| x.data.cmp(&y.data));
    let mut want = vec![a, b];
    want.sort_by(|x, y| x.data.cmp(&y.data));
    assert_eq!(got.records, want);
    assert_eq!(got.dnssec, Dnssec::Secure);
}

fn settings(text: &str) -> tlsfront::config::Settings {
    let raw = tlsfront::config::parse(text, "t.toml").unwrap();
    tlsfront::config::validate(raw, &tlsfront::config::Overrides::default(), "t.toml").unwrap()
}

fn finding<'a>(report: &'a check::Report, code: &str) -> &'a check::Finding {
    report
        .findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code} in {}", report.render()))
}

/// `check --dane`: a record for another key is a mismatch reported with the
/// records to publish (current and next key); once they are out, all is well
/// but the stale record, which is named for removal.
#[tokio::test]
async fn check_dane_reports_mismatches_with_the_records_to_publish() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::Pki::new(&["mx.tlsfront.test"]);
    let zone = Zone::start("tlsfront.test.", true).await;
    let anchor = dir.path().join("anchor.txt");
    zone.trust_anchor(&anchor);
    let state = dir.path().join("state");
    let next_path = state.join("acme/ecdsa_p256/next-key.pem");
    std::fs::create_dir_all(next_path.parent().unwrap()).unwrap();
    let next_key =
        tlsfront::proxy::acme::generate_key(tlsfront::outcome::KeyType::EcdsaP256).unwrap();
    std::fs::write(&next_path, next_key.serialize_pem()).unwrap();
    let s = settings(&format!(
        "[server]\nhostname = \"mx.tlsfront.test\"\n[[listener]]\naddress = [\"127.0.0.1:2525\"]\n\
         [backend]\naddress = \"127.0.0.1:10025\"\n\
         [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n\
         [acme]\ndirectory = \"https://acme.invalid/dir\"\nstate_directory = \"{}\"\n\
         [dane]\nresolver = \"{}\"\ntrust_anchor = \"{}\"\n",
        pki.ecdsa.0.display(),
        pki.ecdsa.1.display(),
        state.display(),
        zone.addr,
        anchor.display()
    ));
    let leaf: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_file_iter(&pki.ecdsa.0)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let current = Tlsa::for_key(&tlsfront::cert::spki(leaf[0].as_ref()).unwrap());
    let next = tlsfront::proxy::acme::key_record(&next_path).unwrap();
    let wrong = Tlsa::for_key(b"an old key");
    zone.tlsa("mx.tlsfront.test", 60, &wrong.rdata()).await;
    let options = check::Options {
        dane: true,
        ..check::Options::default()
    };
    let report = check::run(&s, "t.toml", options.clone()).await;
    assert!(!report.ok, "{}", report.render());
    let f = finding(&report, "tlsa_current_missing");
    assert_eq!(f.level, check::Level::Error);
    assert!(
        f.message
            .contains(&tlsfront::dane::record_line("mx.tlsfront.test", &current)),
        "{}",
        f.message
    );
    let f = finding(&report, "tlsa_next_missing");
    assert_eq!(f.level, check::Level::Warning);
    assert!(f.message.contains(&next.rdata()), "{}", f.message);
    assert!(
        finding(&report, "tlsa_stale")
            .message
            .contains(&wrong.rdata())
    );
    let text = report.render();
    assert!(text.contains("dane\n"), "{text}");
    assert!(
        text.contains("_25._tcp.mx.tlsfront.test. IN TLSA 3 1 1 "),
        "{text}"
    );

    zone.tlsa("mx.tlsfront.test", 60, &current.rdata()).await;
    zone.tlsa("mx.tlsfront.test", 60, &next.rdata()).await;
    let report = check::run(&s, "t.toml", options.clone()).await;
    let f = finding(&report, "tlsa_current_published");
    assert!(
        f.message.contains("published and DNSSEC-validated"),
        "{}",
        f.message
    );
    assert_eq!(
        finding(&report, "tlsa_next_published").level,
        check::Level::Ok
    );
    assert_eq!(finding(&report, "tlsa_stale").level, check::Level::Warning);
    assert!(report.ok, "{}", report.render());
}

//! DANE against a signed zone served on loopback (tests/zone): tlsfront's
//! validating resolver, `check --dane`, and the key rollover rule.

mod zone;

use tlsfront::config::DnsSettings;
use tlsfront::dane::Tlsa;
use tlsfront::dns::{Dnssec, Resolver};
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

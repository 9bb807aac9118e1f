//! A DNS zone served on loopback for the DANE, MTA-STS, ACME and probe MX tests: one
//! zone, DNSSEC-signed (NSEC) by hickory-server in process, on UDP and TCP
//! at the same port. Records can be added and removed while it serves; the
//! zone is signed again after each change. `trust_anchor` writes the zone's
//! key as a DNSKEY trust anchor file, which tlsfront's resolver is given.
//!
//! hickory-server 0.26 leaves the wildcard's NSEC out of an NXDOMAIN answer
//! (and its NSEC3 answers for existing names do not validate), so a name the
//! tests look up always has a record of the type asked for: a TLSA name has
//! some TLSA record (the old key's, a wrong one), as on a real DANE host.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::proto::dnssec::crypto::EcdsaSigningKey;
use hickory_resolver::proto::dnssec::rdata::DNSKEY;
use hickory_resolver::proto::dnssec::{Algorithm, DnssecSigner, SigningKey};
use hickory_resolver::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_resolver::proto::rr::rdata::{A, MX, SOA, TLSA, TXT};
use hickory_resolver::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::Server;
use hickory_server::dnssec::NxProofKind;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, DnssecZoneHandler, ZoneHandler, ZoneType};

pub struct Zone {
    pub addr: SocketAddr,
    pub origin: Name,
    handler: Arc<InMemoryZoneHandler>,
    dnskey: Record,
    signed: bool,
    server: Option<Server<Catalog>>,
}

impl Zone {
    /// Serves `origin` (e.g. "tlsfront.test."), signed or not.
    pub async fn start(origin: &str, signed: bool) -> Zone {
        let origin = Name::from_str(origin).unwrap();
        let mut handler = InMemoryZoneHandler::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
            signed.then_some(NxProofKind::Nsec),
        );
        let soa = SOA::new(
            Name::from_str("ns.")
                .unwrap()
                .append_domain(&origin)
                .unwrap(),
            Name::from_str("hostmaster.")
                .unwrap()
                .append_domain(&origin)
                .unwrap(),
            1,
            3600,
            600,
            86400,
            1,
        );
        handler.upsert_mut(Record::from_rdata(origin.clone(), 1, RData::SOA(soa)), 1);
        let pkcs8 = EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).unwrap();
        let key = EcdsaSigningKey::from_pkcs8(&pkcs8, Algorithm::ECDSAP256SHA256).unwrap();
        let dnskey_data = DNSKEY::from_key(&key.to_public_key().unwrap());
        let dnskey = Record::from_rdata(
            origin.clone(),
            1,
            RData::DNSSEC(hickory_resolver::proto::dnssec::rdata::DNSSECRData::DNSKEY(
                dnskey_data.clone(),
            )),
        );
        if signed {
            let signer = DnssecSigner::new(
                dnskey_data,
                Box::new(key),
                origin.clone(),
                Duration::from_secs(86400),
            );
            handler.add_zone_signing_key_mut(signer).unwrap();
            handler.secure_zone_mut().unwrap();
        }
        let handler = Arc::new(handler);
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::new(&origin),
            vec![handler.clone() as Arc<dyn ZoneHandler>],
        );
        // The same port for both: a free TCP port whose UDP twin is free too.
        let mut pair = None;
        for _ in 0..50 {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = tcp.local_addr().unwrap();
            if let Ok(udp) = tokio::net::UdpSocket::bind(addr).await {
                pair = Some((udp, tcp, addr));
                break;
            }
        }
        let (udp, tcp, addr) = pair.expect("a free UDP and TCP port pair");
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 65535);
        Zone {
            addr,
            origin,
            handler,
            dnskey,
            signed,
            server: Some(server),
        }
    }

    /// A name inside the zone: absolute when it ends in the origin (with
    /// or without the dot), else relative to it.
    fn name(&self, name: &str) -> Name {
        let origin = self.origin.to_string();
        let origin = origin.trim_end_matches('.');
        let bare = name.trim_end_matches('.');
        if bare == origin || bare.ends_with(&format!(".{origin}")) {
            return Name::from_str(&format!("{bare}.")).unwrap();
        }
        Name::from_str(bare)
            .unwrap()
            .append_domain(&self.origin)
            .unwrap()
    }

    async fn changed(&self) {
        if self.signed {
            // Signing again adds the NSEC chain anew: the old one goes first.
            self.handler.records_mut().await.retain(|k, _| {
                !matches!(
                    k.record_type,
                    RecordType::NSEC | RecordType::NSEC3 | RecordType::NSEC3PARAM
                )
            });
            self.handler.secure_zone().await.unwrap();
        }
    }

    async fn add(&self, name: &str, ttl: u32, data: RData) {
        let serial = self.handler.serial().await;
        assert!(
            self.handler
                .upsert(Record::from_rdata(self.name(name), ttl, data), serial)
                .await
        );
        self.changed().await;
    }

    pub async fn a(&self, name: &str, ip: &str) {
        self.add(name, 1, RData::A(A::from_str(ip).unwrap())).await;
    }

    /// `NAME. IN MX PREFERENCE EXCHANGE`; `.` is the null MX's exchange.
    pub async fn mx(&self, name: &str, preference: u16, exchange: &str) {
        let exchange = match exchange {
            "." => Name::root(),
            e => self.name(e),
        };
        self.add(name, 1, RData::MX(MX::new(preference, exchange)))
            .await;
    }

    /// `_25._tcp.HOST. TTL IN TLSA USAGE SELECTOR MATCHING HEX`.
    pub async fn tlsa(&self, host: &str, ttl: u32, rdata: &str) {
        let mut f = rdata.split_whitespace();
        let mut num = || f.next().unwrap().parse::<u8>().unwrap();
        let (usage, selector, matching) = (num(), num(), num());
        let hex = rdata.split_whitespace().nth(3).unwrap();
        let data = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let tlsa = TLSA::new(
            CertUsage::from(usage),
            Selector::from(selector),
            Matching::from(matching),
            data,
        );
        self.add(&format!("_25._tcp.{host}"), ttl, RData::TLSA(tlsa))
            .await;
    }

    pub async fn txt(&self, name: &str, text: &str) {
        self.add(name, 1, RData::TXT(TXT::new(vec![text.to_string()])))
            .await;
    }

    /// Removes every record of `kind` at `name`.
    pub async fn remove(&self, name: &str, kind: RecordType) {
        let key = RrKey::new(LowerName::new(&self.name(name)), kind);
        self.handler.records_mut().await.remove(&key);
        self.changed().await;
    }

    /// The zone's key as a trust anchor file (one DNSKEY line).
    pub fn trust_anchor(&self, path: &Path) {
        std::fs::write(path, format!("{}\n", self.dnskey)).unwrap();
    }
}

impl Drop for Zone {
    fn drop(&mut self) {
        // The server's tasks end with the runtime; stop them now anyway.
        if let Some(server) = self.server.take() {
            drop(server);
        }
    }
}

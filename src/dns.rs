//! DNS questions with their DNSSEC status: TLSA records for DANE, TXT
//! records for MTA-STS, addresses for the policy host, MX records for
//! `probe DOMAIN`. A thin wrapper over
//! hickory-resolver, which validates DNSSEC itself (from the root's trust
//! anchor, or the DNSKEYs of a configured file), so the status shown does not
//! depend on whether the system's resolver validates. The resolver's address
//! and the trust anchor come from [`DnsSettings`]: the tests point both at a
//! signed zone served on loopback.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::rr::{RData, RecordType};
use thiserror::Error;

use crate::dane::Tlsa;
use crate::limits;

/// Where DNS questions go, and what DNSSEC trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// A resolver `IP:PORT`; `None`: the system's (`/etc/resolv.conf`).
    pub resolver: Option<SocketAddr>,
    /// DNSKEY trust anchors (a file of DNSKEY records); `None`: the root's.
    pub trust_anchor: Option<PathBuf>,
}

/// Whether an answer is DNSSEC-validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dnssec {
    /// Signed, and the signatures chain up to a trust anchor.
    Secure,
    /// Provably unsigned (the zone or a parent has no DS).
    Insecure,
    /// Signed, but the signatures do not validate.
    Bogus,
    /// The status could not be found out (no answer to judge, or no DNSSEC data).
    Indeterminate,
}

impl Dnssec {
    pub fn as_str(self) -> &'static str {
        match self {
            Dnssec::Secure => "secure",
            Dnssec::Insecure => "insecure",
            Dnssec::Bogus => "bogus",
            Dnssec::Indeterminate => "indeterminate",
        }
    }

    fn of(proof: Proof) -> Dnssec {
        match proof {
            Proof::Secure => Dnssec::Secure,
            Proof::Insecure => Dnssec::Insecure,
            Proof::Bogus => Dnssec::Bogus,
            _ => Dnssec::Indeterminate,
        }
    }
}

/// An answer: the records of the type asked for, the weakest DNSSEC status
/// among them, and their TTL (the shortest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    pub records: Vec<T>,
    pub dnssec: Dnssec,
    pub ttl: u32,
}

#[derive(Debug, Error)]
pub enum DnsError {
    #[error("DNS resolver setup: {0}")]
    Setup(String),
    #[error("trust anchor {path}: {message}")]
    TrustAnchor { path: String, message: String },
    #[error("{name} {kind}: {message}")]
    Lookup {
        name: String,
        kind: &'static str,
        message: String,
    },
    #[error("{name} {kind}: no answer within {}s", limits::DNS_TIMEOUT.as_secs())]
    Timeout { name: String, kind: &'static str },
    /// NXDOMAIN where the name must exist (a mail domain).
    #[error("{name} does not exist (NXDOMAIN)")]
    NoSuchName { name: String },
}

/// One MX record: the exchange in lower case without the final dot, empty
/// for the null MX's `.` (RFC 7505).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    pub exchange: String,
}

/// `IP` or `IP:PORT` (port 53 by default).
pub fn parse_resolver(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// A validating resolver.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// The system's resolver (or `settings.resolver`), validating with the
    /// root's trust anchor (or `settings.trust_anchor`'s keys).
    pub fn new(settings: &DnsSettings) -> Result<Resolver, DnsError> {
        let mut builder = match settings.resolver {
            None => TokioResolver::builder_tokio().map_err(|e| DnsError::Setup(e.to_string()))?,
            Some(addr) => {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = addr.port();
                        c
                    })
                    .collect();
                let server = NameServerConfig::new(addr.ip(), true, connections);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    TokioRuntimeProvider::default(),
                )
            }
        };
        let opts = builder.options_mut();
        opts.validate = true;
        // Renewals and checks must see a record soon after it is published.
        opts.cache_size = 0;
        if let Some(path) = &settings.trust_anchor {
            let anchors = TrustAnchors::from_file(path).map_err(|e| DnsError::TrustAnchor {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            builder = builder.with_trust_anchor(Arc::new(anchors));
        }
        let inner = builder
            .build()
            .map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(Resolver { inner })
    }

    /// The records of `kind` at `name` (fully qualified), `Ok` and empty when
    /// the name or the type does not exist.
    async fn lookup(
        &self,
        name: &str,
        kind: RecordType,
        label: &'static str,
    ) -> Result<Answer<RData>, DnsError> {
        Ok(self
            .query(name, kind, label)
            .await?
            .unwrap_or_else(|| Answer {
                records: Vec::new(),
                dnssec: Dnssec::Indeterminate,
                ttl: 0,
            }))
    }

    /// As [`Resolver::lookup`], but `None` when the name does not exist.
    async fn query(
        &self,
        name: &str,
        kind: RecordType,
        label: &'static str,
    ) -> Result<Option<Answer<RData>>, DnsError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let err = |message: String| DnsError::Lookup {
            name: fqdn.clone(),
            kind: label,
            message,
        };
        let answer =
            tokio::time::timeout(limits::DNS_TIMEOUT, self.inner.lookup(fqdn.as_str(), kind))
                .await
                .map_err(|_| DnsError::Timeout {
                    name: fqdn.clone(),
                    kind: label,
                })?;
        let lookup = match answer {
            Ok(l) => l,
            Err(e) if e.is_nx_domain() => return Ok(None),
            Err(e) if e.is_no_records_found() => {
                return Ok(Some(Answer {
                    records: Vec::new(),
                    dnssec: Dnssec::Indeterminate,
                    ttl: 0,
                }));
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let mut records = Vec::new();
        let mut dnssec = Dnssec::Secure;
        let mut ttl = u32::MAX;
        for r in lookup.answers() {
            if r.record_type() != kind {
                continue;
            }
            let status = Dnssec::of(r.proof);
            dnssec = match (dnssec, status) {
                (Dnssec::Bogus, _) | (_, Dnssec::Bogus) => Dnssec::Bogus,
                (Dnssec::Indeterminate, _) | (_, Dnssec::Indeterminate) => Dnssec::Indeterminate,
                (Dnssec::Insecure, _) | (_, Dnssec::Insecure) => Dnssec::Insecure,
                _ => Dnssec::Secure,
            };
            ttl = ttl.min(r.ttl);
            records.push(r.data.clone());
        }
        if records.is_empty() {
            dnssec = Dnssec::Indeterminate;
            ttl = 0;
        }
        Ok(Some(Answer {
            records,
            dnssec,
            ttl,
        }))
    }

    /// The MX records of `domain`, as DNS gives them (unsorted); empty when
    /// it has none, [`DnsError::NoSuchName`] when the domain does not exist.
    pub async fn mx(&self, domain: &str) -> Result<Answer<Mx>, DnsError> {
        let a = self
            .query(domain, RecordType::MX, "MX")
            .await?
            .ok_or_else(|| DnsError::NoSuchName {
                name: format!("{}.", domain.trim_end_matches('.')),
            })?;
        Ok(Answer {
            records: a
                .records
                .into_iter()
                .filter_map(|r| match r {
                    RData::MX(mx) => Some(Mx {
                        preference: mx.preference,
                        exchange: mx
                            .exchange
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_ascii_lowercase(),
                    }),
                    _ => None,
                })
                .collect(),
            dnssec: a.dnssec,
            ttl: a.ttl,
        })
    }

    /// `_25._tcp.HOST` TLSA records.
    pub async fn tlsa(&self, host: &str) -> Result<Answer<Tlsa>, DnsError> {
        let a = self
            .lookup(&crate::dane::owner(host), RecordType::TLSA, "TLSA")
            .await?;
        Ok(Answer {
            records: a
                .records
                .into_iter()
                .filter_map(|r| match r {
                    RData::TLSA(t) => Some(Tlsa {
                        usage: t.cert_usage.into(),
                        selector: t.selector.into(),
                        matching: t.matching.into(),
                        data: t.cert_data,
                    }),
                    _ => None,
                })
                .collect(),
            dnssec: a.dnssec,
            ttl: a.ttl,
        })
    }

    /// TXT records at `name`, each as its strings joined.
    pub async fn txt(&self, name: &str) -> Result<Answer<String>, DnsError> {
        let a = self.lookup(name, RecordType::TXT, "TXT").await?;
        Ok(Answer {
            records: a
                .records
                .into_iter()
                .filter_map(|r| match r {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect(),
            dnssec: a.dnssec,
            ttl: a.ttl,
        })
    }

    /// The addresses of `host` (A, then AAAA).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let mut out = Vec::new();
        for (kind, label) in [(RecordType::A, "A"), (RecordType::AAAA, "AAAA")] {
            for r in self.lookup(host, kind, label).await?.records {
                match r {
                    RData::A(a) => out.push(IpAddr::V4(a.0)),
                    RData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

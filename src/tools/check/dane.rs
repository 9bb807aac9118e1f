//! `check --dane` (and `probe --dane`): the `_25._tcp.NAME` TLSA records DNS
//! publishes, against the keys in service and the next keys ACME keeps
//! ready. Every finding prints the record to publish, so a mismatch comes
//! with its fix. The words are [`crate::dane::explain`]'s, shared with the
//! daemon's rollover messages.

use rustls_pki_types::CertificateDer;

use crate::dane::{self, Tlsa};
use crate::dns::{Dnssec, Resolver};
use crate::outcome::TlsaStatus;
use crate::tools::check::findings::{About, Finding, Section};

/// A chain in service (leaf first), named for the findings.
#[derive(Debug, Clone)]
pub struct InService {
    pub label: String,
    pub chain: Vec<CertificateDer<'static>>,
}

/// A key not yet in service, by its SubjectPublicKeyInfo.
#[derive(Debug, Clone)]
pub struct NextKey {
    pub label: String,
    pub spki: Vec<u8>,
}

/// The 3 1 1 record of a chain's leaf key.
fn leaf_record(chain: &[CertificateDer<'static>]) -> Option<Tlsa> {
    let leaf = chain.first()?;
    crate::cert::spki(leaf.as_ref())
        .ok()
        .map(|s| Tlsa::for_key(&s))
}

/// Findings for each name: the current keys (matched by any usable record:
/// 3 1 1, 3 0 x, 2 x x), the next keys (their 3 1 1 record), records that
/// match neither, and the DNSSEC status.
pub async fn evaluate(
    resolver: &Resolver,
    names: &[String],
    current: &[InService],
    next: &[NextKey],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for name in names {
        let about = About::new(Section::Dane, dane::owner(name));
        let line = |r: &Tlsa| dane::record_line(name, r);
        let wanted: Vec<String> = current
            .iter()
            .filter_map(|c| leaf_record(&c.chain))
            .chain(next.iter().map(|n| Tlsa::for_key(&n.spki)))
            .map(|r| line(&r))
            .collect();
        let answer = match resolver.tlsa(name).await {
            Ok(a) => a,
            Err(e) => {
                out.push(about.error(
                    "tlsa_lookup_failed",
                    format!(
                        "{}: {e}; senders that use DANE defer mail while the lookup fails",
                        dane::explain(TlsaStatus::LookupFailed)
                    ),
                ));
                continue;
            }
        };
        if answer.records.is_empty() {
            out.push(about.ok(
                "tlsa_none",
                format!(
                    "no TLSA records: DANE is not in use for {name}. To use it (the zone must be \
                     DNSSEC-signed), publish: {}",
                    wanted.join(" ; ")
                ),
            ));
            continue;
        }
        let dnssec = answer.dnssec;
        if dnssec != Dnssec::Secure {
            out.push(about.warning(
                "tlsa_not_validated",
                format!(
                    "{} TLSA record(s) found, DNSSEC {}: senders ignore TLSA records that do not \
                     validate; sign the zone and publish its DS record at the parent",
                    answer.records.len(),
                    dnssec.as_str()
                ),
            ));
        }
        let mut used = vec![false; answer.records.len()];
        for c in current {
            let presented: Vec<(Vec<u8>, Vec<u8>)> = c
                .chain
                .iter()
                .map(|d| {
                    let spki = crate::cert::spki(d.as_ref()).unwrap_or_default();
                    (d.to_vec(), spki)
                })
                .collect();
            let refs: Vec<(&[u8], &[u8])> = presented
                .iter()
                .map(|(d, s)| (d.as_slice(), s.as_slice()))
                .collect();
            let mut matched = false;
            for (i, r) in answer.records.iter().enumerate() {
                if r.matches(&refs) {
                    used[i] = true;
                    matched = true;
                }
            }
            let record = leaf_record(&c.chain);
            let fix = record.as_ref().map(line).unwrap_or_default();
            let status = match (matched, dnssec) {
                (false, _) => TlsaStatus::Missing,
                (true, Dnssec::Secure) => TlsaStatus::Published,
                (true, _) => TlsaStatus::Unsigned,
            };
            let text = format!("current key ({}): {}", c.label, dane::explain(status));
            out.push(match status {
                TlsaStatus::Missing => about.error(
                    "tlsa_current_missing",
                    format!(
                        "{text}: no published record matches the certificate in service, so \
                         senders that use DANE refuse to deliver; publish {fix}"
                    ),
                ),
                _ => about.ok("tlsa_current_published", format!("{text}: {fix}")),
            });
        }
        for n in next {
            let record = Tlsa::for_key(&n.spki);
            if let Some(i) = answer.records.iter().position(|r| *r == record) {
                used[i] = true;
            }
            let status = dane::status(&record, &answer.records, dnssec == Dnssec::Secure);
            let text = format!("next key ({}): {}", n.label, dane::explain(status));
            out.push(match status {
                TlsaStatus::Missing => about.warning(
                    "tlsa_next_missing",
                    format!(
                        "{text}; publish {} ahead of the key change: tlsfront moves to this key at \
                         a renewal only once the record has been visible for two TTLs \
                         (dane.publish_wait), and renews with the current key until then",
                        line(&record)
                    ),
                ),
                _ => about.ok("tlsa_next_published", format!("{text}: {}", line(&record))),
            });
        }
        for (r, used) in answer.records.iter().zip(used) {
            if !used {
                out.push(about.warning(
                    "tlsa_stale",
                    format!(
                        "{} matches no key in service or next: remove it once no certificate \
                         with that key is served (it is harmless while another record matches)",
                        line(r)
                    ),
                ));
            }
        }
    }
    out
}

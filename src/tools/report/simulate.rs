//! What breaks if tlsfront is hardened: a [`Policy`] (built in, or a small
//! TOML file) judged against what each sender offered.
//!
//! A session established today is judged by its record's `offer`; a record
//! without one (written before offers were recorded) is judged from what was
//! negotiated (tlsfront picks the best version and an ECDSA certificate when
//! the client can use them, so a TLS 1.2 session means no TLS 1.3 offered),
//! and counted as inferred.

use std::path::Path;

use serde::Deserialize;

use crate::wire::offer::{Offer, SigClass, SuiteClass};

/// The groups tlsfront offers by default (`tls.groups`).
const DEFAULT_GROUPS: &[&str] = &["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"];
/// The post-quantum hybrid groups a `pq-required` tlsfront would offer.
const PQ_GROUPS: &[&str] = &["X25519MLKEM768", "secp256r1MLKEM768"];

/// A certificate kind a policy serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    Ecdsa,
    Rsa,
    Ed25519,
}

impl CertKind {
    /// The kind of a record's `cert_key_type` (`ecdsa_p256`, `rsa_2048`, ...).
    fn of_key_type(t: &str) -> Option<CertKind> {
        match t {
            t if t.starts_with("ecdsa") => Some(CertKind::Ecdsa),
            t if t.starts_with("rsa") => Some(CertKind::Rsa),
            "ed25519" => Some(CertKind::Ed25519),
            _ => None,
        }
    }
}

/// A stricter tlsfront, as far as a sender's offer can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub description: String,
    /// `TLSv1.2`, `TLSv1.3`.
    pub versions: Vec<String>,
    pub groups: Vec<String>,
    /// `None`: the certificate each session was served.
    pub certificates: Option<Vec<CertKind>>,
}

/// The built-in policies `--simulate` knows by name.
pub const BUILT_IN: &[&str] = &["tls13-only", "ecdsa-only", "pq-required"];

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Policy {
    pub fn built_in(name: &str) -> Option<Policy> {
        let (description, versions, groups, certificates): (&str, &[&str], &[&str], _) = match name
        {
            "tls13-only" => ("only TLS 1.3 offered", &["TLSv1.3"], DEFAULT_GROUPS, None),
            "ecdsa-only" => (
                "only an ECDSA certificate (no RSA)",
                &["TLSv1.3", "TLSv1.2"],
                DEFAULT_GROUPS,
                Some(vec![CertKind::Ecdsa]),
            ),
            "pq-required" => (
                "only post-quantum hybrid key exchange (X25519MLKEM768, secp256r1MLKEM768), so TLS 1.3",
                &["TLSv1.3"],
                PQ_GROUPS,
                None,
            ),
            _ => return None,
        };
        Some(Policy {
            name: name.to_string(),
            description: description.to_string(),
            versions: strings(versions),
            groups: strings(groups),
            certificates,
        })
    }

    /// A built-in name, or a TOML file (see [`PolicyFile`]).
    pub fn load(arg: &str) -> Result<Policy, String> {
        if let Some(p) = Policy::built_in(arg) {
            return Ok(p);
        }
        let path = Path::new(arg);
        if !path.exists() {
            return Err(format!(
                "{arg:?} is neither a built-in policy ({}) nor a file",
                BUILT_IN.join(", ")
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{arg}: {e}"))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| arg.to_string());
        Policy::parse(&text, &stem).map_err(|e| format!("{arg}: {e}"))
    }

    /// A policy file's text; `default_name` names it when it does not.
    pub fn parse(text: &str, default_name: &str) -> Result<Policy, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut versions = Vec::new();
        for v in file
            .versions
            .unwrap_or_else(|| vec!["1.3".into(), "1.2".into()])
        {
            match super::verdict::version_arg(&v)?.as_str() {
                v @ ("TLSv1.2" | "TLSv1.3") => versions.push(v.to_string()),
                _ => {
                    return Err(format!(
                        "versions: tlsfront offers only 1.2 and 1.3, not {v:?}"
                    ));
                }
            }
        }
        if versions.is_empty() {
            return Err("versions: at least one".into());
        }
        let groups = file.groups.unwrap_or_else(|| strings(DEFAULT_GROUPS));
        if groups.is_empty() {
            return Err("groups: at least one".into());
        }
        if file.certificates.as_ref().is_some_and(Vec::is_empty) {
            return Err("certificates: at least one".into());
        }
        let name = file.name.unwrap_or_else(|| default_name.to_string());
        Ok(Policy {
            description: file
                .description
                .unwrap_or_else(|| format!("policy file {name}")),
            name,
            versions,
            groups,
            certificates: file.certificates,
        })
    }

    /// Would a client with `offer`, served `served` today, complete a
    /// handshake under this policy?
    pub fn allows(&self, offer: &Offer, served: Option<&str>) -> bool {
        // (Slices, not vectors: this runs for every session and policy.)
        let either = [CertKind::Ecdsa, CertKind::Rsa];
        let one;
        let certs: &[CertKind] = match (&self.certificates, served.and_then(CertKind::of_key_type))
        {
            (Some(c), _) => c,
            (None, Some(k)) => {
                one = [k];
                &one
            }
            (None, None) => &either,
        };
        let group_ok = |v: &str| {
            if offer.groups.is_empty() {
                // TLS 1.3 needs a shared group; a TLS 1.2 client without the
                // extension is taken to accept any (as tlsfront judges it).
                return v != "TLSv1.3";
            }
            offer
                .groups
                .iter()
                .any(|g| self.groups.iter().any(|p| p == g))
        };
        let sig_ok = |v: &str, k: CertKind| match k {
            CertKind::Ecdsa => offer.sigs.contains(&SigClass::Ecdsa),
            CertKind::Ed25519 => offer.sigs.contains(&SigClass::Ed25519),
            CertKind::Rsa if v == "TLSv1.3" => offer.sigs.contains(&SigClass::RsaPss),
            CertKind::Rsa => {
                offer.sigs.contains(&SigClass::RsaPss) || offer.sigs.contains(&SigClass::RsaPkcs1)
            }
        };
        let suite_ok = |v: &str, k: CertKind| {
            let class = match (v, k) {
                ("TLSv1.3", _) => SuiteClass::Tls13,
                (_, CertKind::Rsa) => SuiteClass::EcdheRsa,
                _ => SuiteClass::EcdheEcdsa,
            };
            offer.suites.contains(&class)
        };
        self.versions
            .iter()
            .filter(|v| offer.offers_version(v))
            .any(|v| group_ok(v) && certs.iter().any(|k| sig_ok(v, *k) && suite_ok(v, *k)))
    }
}

/// A policy file: every key optional.
///
/// ```toml
/// name = "strict"                  # default: the file's name
/// description = "what it is"
/// versions = ["1.3"]               # "1.2", "1.3"; default both
/// groups = ["X25519MLKEM768"]      # default: X25519MLKEM768, X25519, secp256r1, secp384r1
/// certificates = ["ecdsa"]         # "ecdsa", "rsa", "ed25519"; default: as served today
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub name: Option<String>,
    pub description: Option<String>,
    pub versions: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub certificates: Option<Vec<CertKind>>,
}

/// An offer inferred from what an established session negotiated, for
/// records written before offers were.
pub fn inferred_offer(
    version: Option<&str>,
    suite: Option<&str>,
    group: Option<&str>,
    key_type: Option<&str>,
) -> Option<Offer> {
    let version = version?;
    let mut sigs = Vec::new();
    match key_type.and_then(CertKind::of_key_type) {
        Some(CertKind::Ecdsa) => sigs.push(SigClass::Ecdsa),
        Some(CertKind::Ed25519) => sigs.push(SigClass::Ed25519),
        Some(CertKind::Rsa) if version == "TLSv1.3" => sigs.push(SigClass::RsaPss),
        Some(CertKind::Rsa) => sigs.push(SigClass::RsaPkcs1),
        None => {}
    }
    let mut offer = Offer::of_names([version], group, Vec::<&str>::new(), suite);
    offer.sigs = sigs;
    Some(offer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modern() -> Offer {
        Offer {
            versions: vec!["TLSv1.3", "TLSv1.2"],
            groups: vec!["X25519MLKEM768", "X25519", "secp256r1"],
            sigs: vec![SigClass::Ecdsa, SigClass::RsaPss, SigClass::RsaPkcs1],
            suites: vec![
                SuiteClass::Tls13,
                SuiteClass::EcdheEcdsa,
                SuiteClass::EcdheRsa,
            ],
        }
    }

    fn tls12_rsa() -> Offer {
        Offer {
            versions: vec!["TLSv1.2"],
            groups: vec!["secp256r1"],
            sigs: vec![SigClass::RsaPkcs1],
            suites: vec![SuiteClass::EcdheRsa],
        }
    }

    fn p(name: &str) -> Policy {
        Policy::built_in(name).unwrap()
    }

    #[test]
    fn built_in_policies() {
        let m = modern();
        let mut classic = modern();
        classic.groups = vec!["X25519", "secp256r1"];
        let old = tls12_rsa();
        for (policy, offer, served, ok) in [
            ("tls13-only", &m, Some("ecdsa_p256"), true),
            ("tls13-only", &old, Some("rsa_2048"), false),
            ("ecdsa-only", &m, Some("rsa_2048"), true),
            ("ecdsa-only", &old, Some("rsa_2048"), false),
            ("pq-required", &m, Some("ecdsa_p256"), true),
            ("pq-required", &classic, Some("ecdsa_p256"), false),
        ] {
            assert_eq!(p(policy).allows(offer, served), ok, "{policy} {offer:?}");
        }
        assert!(Policy::load("nonsense").unwrap_err().contains("tls13-only"));
    }

    #[test]
    fn a_policy_file() {
        let pol = Policy::parse(
            "versions = [\"1.3\", \"1.2\"]\ngroups = [\"X25519\"]\ncertificates = [\"rsa\"]\n",
            "rsa-x25519",
        )
        .unwrap();
        assert_eq!(pol.name, "rsa-x25519");
        assert_eq!(pol.versions, ["TLSv1.3", "TLSv1.2"]);
        assert!(pol.allows(&modern(), None));
        assert!(!pol.allows(&tls12_rsa(), None), "no shared group");
        for bad in [
            "versions = [\"1.0\"]",
            "versions = []",
            "certificates = [\"dsa\"]",
            "colour = \"red\"",
        ] {
            assert!(Policy::parse(bad, "x").is_err(), "{bad}");
        }
    }

    /// Today's policy allows every session established today.
    #[test]
    fn todays_policy_allows_what_was_negotiated() {
        let today = Policy::parse("", "today").unwrap();
        for (v, s, g, k) in [
            (
                "TLSv1.3",
                "TLS13_AES_256_GCM_SHA384",
                "X25519MLKEM768",
                "ecdsa_p256",
            ),
            (
                "TLSv1.2",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "secp256r1",
                "rsa_2048",
            ),
            ("TLSv1.3", "TLS13_AES_128_GCM_SHA256", "X25519", "rsa_4096"),
        ] {
            let o = inferred_offer(Some(v), Some(s), Some(g), Some(k)).unwrap();
            assert!(today.allows(&o, Some(k)), "{o:?}");
        }
        let o = inferred_offer(
            Some("TLSv1.2"),
            Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            Some("X25519"),
            Some("rsa_2048"),
        )
        .unwrap();
        assert!(!p("tls13-only").allows(&o, Some("rsa_2048")));
        assert!(!p("ecdsa-only").allows(&o, Some("rsa_2048")));
    }
}

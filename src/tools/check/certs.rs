//! Certificate rules for `tlsfront check`, as pure functions over parsed
//! certificates: key type and size, key/certificate match, chain order and
//! completeness, validity window, and whether the configured host names and
//! SNI names are covered. The clock is a parameter, so tests pin it.

use rustls_pki_types::PrivateKeyDer;
use x509_parser::prelude::FromDer;

use crate::cert::{Cert, Problem};
use crate::tools::check::findings::{About, Finding, Level, Section};

/// Names a certificate by its place in the chain: 0 is the leaf.
fn describe(i: usize, c: &Cert) -> String {
    if i == 0 {
        format!("the leaf ({})", c.subject)
    } else {
        format!("chain certificate {i} ({})", c.subject)
    }
}

/// Names a certificate by its position in the file.
fn describe_at(i: usize, c: &Cert) -> String {
    format!("certificate {} in the file ({})", i + 1, c.subject)
}

fn name_list(names: &[String]) -> String {
    if names.is_empty() {
        "none (no subjectAltName)".into()
    } else {
        names.join(", ")
    }
}

/// The leaf's key: RSA under 2048 bits is what modern senders refuse.
pub fn check_key_type(subject: &str, leaf: &Cert) -> Finding {
    let about = About::new(Section::Certificates, subject);
    match crate::cert::leaf_key_problem(leaf) {
        Some(p) => about.error(p.code(), p.to_string()),
        None => about.ok("key_type", format!("key {}", leaf.key.name())),
    }
}

/// Whether `key` is the private half of the leaf's public key.
pub fn check_key_match(subject: &str, leaf: &Cert, key: &PrivateKeyDer<'_>) -> Finding {
    let about = About::new(Section::Certificates, subject);
    let public = rustls::crypto::aws_lc_rs::sign::any_supported_type(key)
        .map_err(|e| e.to_string())
        .and_then(|k| {
            let spki = k
                .public_key()
                .ok_or_else(|| "the key's public half is unknown".to_string())?;
            let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki.as_ref())
                .map_err(|e| e.to_string())?;
            Ok(spki.subject_public_key.data.to_vec())
        });
    match public {
        Ok(p) if p == leaf.public_key => about.ok(
            "key_matches",
            "the private key belongs to the leaf certificate",
        ),
        Ok(_) => {
            let p = Problem::KeyMismatch;
            about.error(p.code(), p.to_string())
        }
        // A small RSA key by its size, as `run` says it.
        Err(e) => {
            let p = crate::cert::unusable_key(key, e);
            about.error(p.code(), p.to_string())
        }
    }
}

/// Chain order and completeness: leaf first, each certificate followed by
/// its issuer, up to (not including) a root.
///
/// The chain is followed from the leaf through the file by issuer name; the
/// path found says what is missing, what is out of place, what is extra.
pub fn check_chain(subject: &str, chain: &[Cert]) -> Vec<Finding> {
    let about = About::new(Section::Certificates, subject);
    let mut out = Vec::new();
    if chain.is_empty() {
        return out;
    }
    // rustls serves the first certificate as the leaf whatever it is; for
    // the diagnosis, the leaf is the first non-CA certificate.
    let leaf = chain.iter().position(|c| !c.is_ca).unwrap_or(0);
    let mut path = vec![leaf];
    let mut top_issuer_missing = false;
    while path.len() <= chain.len() {
        let cur = &chain[path[path.len() - 1]];
        if cur.self_issued() {
            break;
        }
        match (0..chain.len()).find(|j| !path.contains(j) && chain[*j].subject == cur.issuer) {
            Some(j) => path.push(j),
            None => {
                top_issuer_missing = true;
                break;
            }
        }
    }
    let top = path[path.len() - 1];

    if path.iter().enumerate().any(|(k, i)| k != *i) {
        let why = if leaf != 0 {
            format!("the leaf is {}, not first", describe_at(leaf, &chain[leaf]))
        } else {
            let k = (0..path.len()).find(|k| path[*k] != *k).unwrap_or(0);
            format!(
                "{} must be followed by its issuer {}",
                describe(k - 1, &chain[path[k - 1]]),
                describe_at(path[k], &chain[path[k]])
            )
        };
        out.push(about.error(
            "chain_out_of_order",
            format!("{why}: put the leaf first, then each issuer in turn"),
        ));
    }
    let unused: Vec<usize> = (0..chain.len()).filter(|i| !path.contains(i)).collect();
    // The leaf's issuer absent, or the path stopping short of certificates
    // that are there: an intermediate is missing. A top intermediate issued
    // by a root left out is the normal case.
    let gap = top_issuer_missing && unused.iter().any(|i| !chain[*i].self_issued());
    if top_issuer_missing && (top == leaf || gap) {
        let issued = format!(
            "{} was issued by {}, which is not in the file",
            describe(path.len() - 1, &chain[top]),
            chain[top].issuer
        );
        // Other certificates in the file that do not connect: a chain meant
        // to be there is broken, whoever the CA.
        if gap || !unused.is_empty() || !chain[top].ca_issuers.is_empty() {
            // A public CA names where its intermediate is: senders will not fetch it.
            let at = match chain[top].ca_issuers.first() {
                Some(url) if top == leaf => format!(" (its AIA caIssuers URL {url} serves it)"),
                _ => String::new(),
            };
            out.push(about.error(
                "chain_incomplete",
                format!(
                    "{issued}: append the intermediate certificate(s){at} after the leaf, in \
                     order (if that issuer is a root, append it: `root_included` is only a warning)"
                ),
            ));
        } else {
            // No AIA: a private (internal) CA, whose root the senders that
            // verify must already trust; nothing to append.
            out.push(about.warning(
                "chain_private_ca",
                format!(
                    "{issued}, and names no AIA caIssuers URL: a private CA. Senders that \
                     verify must trust its root; append its intermediates, if any, after the leaf"
                ),
            ));
        }
    }
    for i in &unused {
        if gap && !chain[*i].self_issued() {
            continue;
        }
        out.push(about.warning(
            "chain_unrelated_certificate",
            format!(
                "{} is not part of the leaf's chain: remove it",
                describe_at(*i, &chain[*i])
            ),
        ));
    }
    for (k, i) in path.iter().enumerate().skip(1) {
        if chain[*i].self_issued() {
            out.push(about.warning("root_included",
                format!(
                    "{} is a self-signed root: clients must already have it, sending it only costs bytes",
                    describe(k, &chain[*i])
                ),
            ));
        }
    }
    if chain.len() == 1 && chain[0].self_issued() {
        out.push(about.warning("self_signed",
            "the leaf is self-signed: senders that verify certificates refuse it (most MX-to-MX traffic does not verify)",
        ));
    }
    if out.iter().all(|f| f.level != Level::Error) {
        out.push(about.ok(
            "chain_order",
            format!(
                "chain of {} certificate(s), leaf first, in order",
                chain.len()
            ),
        ));
    }
    out
}

/// Validity window of every certificate in the chain at time `now`, in
/// the words `run` logs at start and on reload ([`crate::cert::judge_validity`]).
pub fn check_validity(subject: &str, chain: &[Cert], now: i64) -> Vec<Finding> {
    use crate::cert::Validity;
    let about = About::new(Section::Certificates, subject);
    let mut out = Vec::new();
    for (i, c) in chain.iter().enumerate() {
        let what = match i {
            0 => format!("the leaf ({})", c.subject),
            _ => describe_at(i, c),
        };
        let judged = crate::cert::judge_validity(c, &what, now);
        match judged.validity {
            Validity::NotYetValid => out.push(about.error("not_yet_valid", judged.message)),
            Validity::Expired => out.push(about.error("expired", judged.message)),
            Validity::ExpiresSoon => out.push(about.warning("expires_soon", judged.message)),
            Validity::Valid if i == 0 => out.push(about.ok("validity", judged.message)),
            Validity::Valid => {}
        }
    }
    out
}

/// One configured certificate, as certificate choice sees it.
#[derive(Debug, Clone)]
pub struct Served {
    pub subject: String,
    /// `names` from the config (empty: the certificate's DNS SANs are used).
    pub configured_names: Vec<String>,
    pub default: bool,
    pub leaf: Cert,
}

impl Served {
    fn sni_names(&self) -> Vec<String> {
        if self.configured_names.is_empty() {
            self.leaf.sni_names()
        } else {
            self.configured_names
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect()
        }
    }
}

/// Whether a certificate with these SANs verifies for `name` (RFC 6125:
/// exact, or a wildcard for exactly one label).
pub fn covers(dns_names: &[String], name: &str) -> bool {
    dns_names
        .iter()
        .any(|n| n == name || crate::cert::wildcard_match(n, name))
}

/// Host names (the MX names) and SNI map: every host name must be covered by
/// each certificate tlsfront would serve for it; every configured SNI name by
/// its certificate; no name served by two certificates of the same kind.
pub fn check_names(served: &[Served], hostnames: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    if served.is_empty() {
        return out;
    }
    let names: Vec<Vec<String>> = served.iter().map(Served::sni_names).collect();
    let mut defaults: Vec<usize> = (0..served.len()).filter(|i| served[*i].default).collect();
    if defaults.is_empty() {
        defaults = (0..served.len())
            .filter(|i| names[*i] == names[0])
            .collect();
    }
    // The same choice TlsFront::select makes: exact, wildcard, then defaults.
    let pool_for = |host: &str| -> Vec<usize> {
        let exact: Vec<usize> = (0..served.len())
            .filter(|i| names[*i].iter().any(|n| n == host))
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        let wild: Vec<usize> = (0..served.len())
            .filter(|i| {
                names[*i]
                    .iter()
                    .any(|n| crate::cert::wildcard_match(n, host))
            })
            .collect();
        if !wild.is_empty() {
            return wild;
        }
        defaults.clone()
    };
    for host in hostnames {
        for i in pool_for(host) {
            let s = &served[i];
            let about = About::new(Section::Certificates, format!("hostname {host}"));
            out.push(if covers(&s.leaf.dns_names, host) {
                about.ok(
                    "hostname_covered",
                    format!(
                        "served {} ({}), which covers it",
                        s.subject,
                        s.leaf.key.name()
                    ),
                )
            } else {
                about.error(
                    "hostname_not_covered",
                    format!(
                        "tlsfront would serve {} for it, whose DNS names [{}] do not cover it: \
                         senders that verify refuse it",
                        s.subject,
                        name_list(&s.leaf.dns_names)
                    ),
                )
            });
        }
    }
    for s in served {
        for n in &s.configured_names {
            let n = n.to_ascii_lowercase();
            let covered = match n.strip_prefix("*.") {
                // A wildcard SNI entry needs a wildcard SAN for the same domain.
                Some(_) => s.leaf.dns_names.contains(&n),
                None => covers(&s.leaf.dns_names, &n),
            };
            if !covered {
                out.push(About::new(Section::Certificates, &s.subject).error("sni_name_not_covered",
                    format!(
                        "SNI name {n} is configured for this certificate, but its DNS names [{}] do not cover it",
                        name_list(&s.leaf.dns_names)
                    ),
                ));
            }
        }
    }
    let mut seen: Vec<(String, &'static str, usize)> = Vec::new();
    for (i, s) in served.iter().enumerate() {
        let family = s.leaf.key.family();
        for n in &names[i] {
            match seen.iter().find(|(m, f, _)| m == n && *f == family) {
                Some((_, _, first)) => out.push(About::new(Section::Certificates, &s.subject).warning("duplicate_sni_name",
                    format!(
                        "{n} is also served by {} ({family}), which comes first: this one is never served for it",
                        served[*first].subject
                    ),
                )),
                None => seen.push((n.clone(), family, i)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::KeyKind;
    use crate::cert::test_keys::rsa_public_key;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
    };

    /// 2030-01-01T00:00:00Z, the tests' "now".
    const NOW: i64 = 1_893_456_000;
    /// 2031-01-01T00:00:00Z, when the test leaves expire.
    const LEAF_END: i64 = 1_924_992_000;

    fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = date_time_ymd(2025, 1, 1);
        p.not_after = date_time_ymd(2040, 1, 1);
        p
    }

    fn leaf_params(names: &[&str]) -> CertificateParams {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.not_before = date_time_ymd(2029, 1, 1);
        p.not_after = date_time_ymd(2031, 1, 1);
        p
    }

    struct Chain {
        root: Cert,
        intermediate: Cert,
        leaf: Cert,
        leaf_key: KeyPair,
    }

    fn chain_with(leaf: CertificateParams) -> Chain {
        let root =
            CertifiedIssuer::self_signed(ca_params("Root"), KeyPair::generate().unwrap()).unwrap();
        let inter = CertifiedIssuer::signed_by(
            ca_params("Intermediate"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&leaf_key, &inter).unwrap();
        Chain {
            root: crate::cert::parse(root.der()).unwrap(),
            intermediate: crate::cert::parse(inter.der()).unwrap(),
            leaf: crate::cert::parse(leaf.der()).unwrap(),
            leaf_key,
        }
    }

    fn chain() -> Chain {
        chain_with(leaf_params(&["mx.example.com"]))
    }

    fn codes(f: &[Finding]) -> Vec<&'static str> {
        f.iter()
            .filter(|f| f.level != Level::Ok)
            .map(|f| f.code)
            .collect()
    }

    #[test]
    fn leaf_then_intermediate_is_clean() {
        let c = chain();
        let f = check_chain("c", &[c.leaf.clone(), c.intermediate.clone()]);
        assert_eq!(codes(&f), Vec::<&str>::new(), "{f:?}");
        assert!(f.iter().any(|f| f.code == "chain_order"));
    }

    #[test]
    fn root_included_is_a_warning() {
        let c = chain();
        let f = check_chain("c", &[c.leaf, c.intermediate, c.root]);
        assert_eq!(codes(&f), vec!["root_included"]);
        assert_eq!(f[0].level, Level::Warning);
    }

    /// A public CA's leaf names its issuer's URL (AIA caIssuers): without
    /// that intermediate the chain is incomplete, an error. A leaf without
    /// AIA comes from a private CA: only a warning, so `ExecStartPre` does
    /// not refuse an internal certificate.
    #[test]
    fn missing_intermediate_is_an_error_unless_the_ca_is_private() {
        let mut public = leaf_params(&["mx.example.com"]);
        public
            .custom_extensions
            .push(crate::cert::test_keys::aia_ca_issuers(
                "http://ca.example/int.der",
            ));
        let c = chain_with(public);
        let f = check_chain("c", std::slice::from_ref(&c.leaf));
        assert_eq!(codes(&f), vec!["chain_incomplete"]);
        assert_eq!(f[0].level, Level::Error);
        assert!(f[0].message.contains("CN=Intermediate"), "{}", f[0].message);
        assert!(
            f[0].message.contains("http://ca.example/int.der"),
            "{}",
            f[0].message
        );
        let c = chain();
        let f = check_chain("c", std::slice::from_ref(&c.leaf));
        assert_eq!(codes(&f), vec!["chain_private_ca"]);
        assert_eq!(f[0].level, Level::Warning);
        assert!(f[0].message.contains("CN=Intermediate"), "{}", f[0].message);
        // A gap in the middle: leaf, then the root without the intermediate.
        let f = check_chain("c", &[c.leaf.clone(), c.root.clone()]);
        assert_eq!(
            codes(&f),
            vec!["chain_incomplete", "chain_unrelated_certificate"]
        );
        // A gap further up: leaf, intermediate, then a certificate that does
        // not connect to it.
        let other = chain();
        let f = check_chain("c", &[c.leaf, c.intermediate, other.intermediate]);
        assert_eq!(codes(&f), vec!["chain_incomplete"], "{f:?}");
        assert!(
            f[0].message.contains("chain certificate 1"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn reversed_chain_is_out_of_order() {
        let c = chain();
        let f = check_chain("c", &[c.root, c.intermediate, c.leaf]);
        assert_eq!(
            codes(&f),
            vec!["chain_out_of_order", "root_included"],
            "{f:?}"
        );
        assert!(
            f[0].message.contains("certificate 3 in the file"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn intermediate_first_is_out_of_order() {
        let c = chain();
        let f = check_chain("c", &[c.intermediate, c.leaf]);
        assert_eq!(codes(&f), vec!["chain_out_of_order"], "{f:?}");
        assert!(f[0].message.contains("not first"), "{}", f[0].message);
    }

    #[test]
    fn self_signed_leaf_is_a_warning() {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(&["mx.example.com"]).self_signed(&key).unwrap();
        let f = check_chain("c", &[crate::cert::parse(cert.der()).unwrap()]);
        assert_eq!(codes(&f), vec!["self_signed"]);
    }

    #[test]
    fn validity_window() {
        let c = chain();
        let ok = check_validity("c", &[c.leaf.clone(), c.intermediate.clone()], NOW);
        assert_eq!(codes(&ok), Vec::<&str>::new());
        assert!(ok[0].message.contains("2031-01-01"), "{}", ok[0].message);

        let expired = check_validity("c", std::slice::from_ref(&c.leaf), LEAF_END + 86_400);
        assert_eq!(codes(&expired), vec!["expired"]);
        let early = check_validity("c", std::slice::from_ref(&c.leaf), NOW - 366 * 86_400);
        assert_eq!(codes(&early), vec!["not_yet_valid"]);
        // 2031-01-01 minus 10 days.
        let soon = check_validity("c", std::slice::from_ref(&c.leaf), LEAF_END - 10 * 86_400);
        assert_eq!(codes(&soon), vec!["expires_soon"]);
        assert_eq!(soon[0].level, Level::Warning);
        assert!(
            soon[0].message.contains("in 10 days"),
            "{}",
            soon[0].message
        );
    }

    #[test]
    fn rsa_1024_is_an_error_ecdsa_is_fine() {
        let ca =
            CertifiedIssuer::self_signed(ca_params("CA"), KeyPair::generate().unwrap()).unwrap();
        let cert = leaf_params(&["mx.example.com"])
            .signed_by(&rsa_public_key(1024), &ca)
            .unwrap();
        let info = crate::cert::parse(cert.der()).unwrap();
        assert_eq!(info.key, KeyKind::Rsa(1024));
        let f = check_key_type("c", &info);
        assert_eq!((f.level, f.code), (Level::Error, "rsa_key_too_small"));
        assert!(f.message.contains("1024"));

        let c = chain();
        let f = check_key_type("c", &c.leaf);
        assert_eq!((f.level, f.code), (Level::Ok, "key_type"));
        assert!(f.message.contains("ecdsa_p256"), "{}", f.message);
    }

    #[test]
    fn rsa_2048_passes() {
        let ca =
            CertifiedIssuer::self_signed(ca_params("CA"), KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = leaf_params(&["mx.example.com"])
            .signed_by(&key, &ca)
            .unwrap();
        let info = crate::cert::parse(cert.der()).unwrap();
        assert_eq!(info.key, KeyKind::Rsa(2048));
        assert_eq!(check_key_type("c", &info).level, Level::Ok);
    }

    #[test]
    fn key_must_match_the_leaf() {
        let c = chain();
        let own = PrivateKeyDer::try_from(c.leaf_key.serialize_der()).unwrap();
        assert_eq!(check_key_match("c", &c.leaf, &own).code, "key_matches");
        let other = PrivateKeyDer::try_from(KeyPair::generate().unwrap().serialize_der()).unwrap();
        let f = check_key_match("c", &c.leaf, &other);
        assert_eq!((f.level, f.code), (Level::Error, "key_mismatch"));
    }

    fn served(subject: &str, names: &[&str], default: bool, leaf: Cert) -> Served {
        Served {
            subject: subject.into(),
            configured_names: names.iter().map(|s| s.to_string()).collect(),
            default,
            leaf,
        }
    }

    #[test]
    fn hostnames_must_be_covered_by_the_served_certificate() {
        let c = chain_with(leaf_params(&["mx.example.com", "*.mail.example.com"]));
        let s = vec![served("a.pem", &[], false, c.leaf)];
        let hosts = ["mx.example.com", "in.mail.example.com", "mx.example.org"]
            .map(String::from)
            .to_vec();
        let f = check_names(&s, &hosts);
        let bad: Vec<&str> = f
            .iter()
            .filter(|f| f.level == Level::Error)
            .map(|f| f.subject.as_str())
            .collect();
        assert_eq!(bad, vec!["hostname mx.example.org"], "{f:?}");
        assert!(
            f.iter()
                .all(|f| f.code != "hostname_not_covered" || f.message.contains("a.pem"))
        );
    }

    #[test]
    fn sni_map_sanity() {
        let a = chain_with(leaf_params(&["mx.example.com"])).leaf;
        let b = chain_with(leaf_params(&["mx.example.com"])).leaf;
        let s = vec![
            served("a.pem", &["mx.example.com", "mx.example.net"], true, a),
            served("b.pem", &["mx.example.com"], false, b),
        ];
        let f = check_names(&s, &[]);
        assert_eq!(
            codes(&f),
            vec!["sni_name_not_covered", "duplicate_sni_name"],
            "{f:?}"
        );
        assert!(f[0].message.contains("mx.example.net"));
        assert_eq!(f[1].subject, "b.pem");
    }

    #[test]
    fn an_ecdsa_and_rsa_pair_is_not_a_duplicate() {
        let e = chain().leaf;
        let mut r = e.clone();
        r.key = KeyKind::Rsa(2048);
        let s = vec![served("e.pem", &[], true, e), served("r.pem", &[], true, r)];
        let f = check_names(&s, &["mx.example.com".to_string()]);
        assert_eq!(codes(&f), Vec::<&str>::new(), "{f:?}");
        assert_eq!(f.iter().filter(|f| f.code == "hostname_covered").count(), 2);
    }

    /// Certificates without subjectAltName answer for their CN in `run`'s
    /// certificate choice; `check` sees the same names, so two of the same
    /// kind for one CN are a duplicate.
    #[test]
    fn certificates_without_sans_answer_for_their_common_name() {
        let without_san = || {
            let mut p = leaf_params(&["mx.example.com"]);
            p.subject_alt_names.clear();
            crate::cert::parse(p.self_signed(&KeyPair::generate().unwrap()).unwrap().der()).unwrap()
        };
        let s = vec![
            served("a.pem", &[], true, without_san()),
            served("b.pem", &[], true, without_san()),
        ];
        let f = check_names(&s, &[]);
        assert_eq!(codes(&f), vec!["duplicate_sni_name"], "{f:?}");
        assert!(f[0].message.contains("mx.example.com"), "{}", f[0].message);
    }
}

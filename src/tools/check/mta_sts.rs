//! `check --mta-sts DOMAIN` (and `probe --mta-sts DOMAIN`): the domain's
//! `_mta-sts` TXT record and policy, fetched as a sender fetches them, then
//! checked against this host: every `mx:` pattern against the host's names,
//! and, for each host name the policy admits, whether the certificate served
//! for it would satisfy a sender that verifies (chain to a trusted root,
//! name, dates). Each problem comes with its fix.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::dns::Resolver;
use crate::mta_sts::{self, Mode, Policy, TxtRecord, fetch};
use crate::tools::check::findings::{About, Finding, Section};

/// Where to look, and what this host serves.
pub struct Target<'a> {
    pub domain: &'a str,
    /// This host's names (the MX names it answers for).
    pub host_names: &'a [String],
    /// The chain served for a name (SNI), leaf first.
    pub served: &'a dyn Fn(&str) -> Option<Vec<CertificateDer<'static>>>,
    /// 443; tests serve the policy on another port.
    pub port: u16,
}

pub async fn evaluate(
    resolver: &Resolver,
    roots: Arc<RootCertStore>,
    t: &Target<'_>,
) -> Vec<Finding> {
    let domain = t.domain.trim_end_matches('.').to_ascii_lowercase();
    let mut out = Vec::new();
    let txt_about = About::new(Section::MtaSts, format!("_mta-sts.{domain}"));
    match resolver.txt(&format!("_mta-sts.{domain}")).await {
        Err(e) => out.push(txt_about.error("mta_sts_txt_lookup_failed", e.to_string())),
        Ok(answer) => {
            let sts: Vec<&String> = answer
                .records
                .iter()
                .filter(|r| TxtRecord::is_sts(r))
                .collect();
            match sts.as_slice() {
                [] => out.push(txt_about.error(
                    "mta_sts_txt_missing",
                    format!(
                        "no v=STSv1 TXT record: senders never look for the policy; publish \
                         _mta-sts.{domain}. IN TXT \"v=STSv1; id=YYYYMMDDhhmmss\" (change the id \
                         whenever the policy changes)"
                    ),
                )),
                [one] => match TxtRecord::parse(one) {
                    Ok(r) => out.push(txt_about.ok("mta_sts_txt", format!("id={}", r.id))),
                    Err(e) => out.push(txt_about.error(
                        "mta_sts_txt_invalid",
                        format!("{one:?}: {e}; publish \"v=STSv1; id=YYYYMMDDhhmmss\""),
                    )),
                },
                _ => out.push(txt_about.error(
                    "mta_sts_txt_invalid",
                    format!(
                        "{} v=STSv1 records: RFC 8461 senders treat that as no policy; keep one",
                        sts.len()
                    ),
                )),
            }
        }
    }
    let policy_about = About::new(Section::MtaSts, mta_sts::policy_url(&domain));
    let text = match fetch::policy(&domain, resolver, roots.clone(), t.port).await {
        Ok(text) => text,
        Err(e) => {
            out.push(policy_about.error(
                "mta_sts_policy_unreachable",
                format!(
                    "{e}; serve the policy there over HTTPS with a certificate for {} \
                     (tlsfront can: [mta_sts] domains = [\"{domain}\"] with [acme])",
                    mta_sts::policy_host(&domain)
                ),
            ));
            return out;
        }
    };
    let policy = match Policy::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            out.push(policy_about.error("mta_sts_policy_invalid", e.to_string()));
            return out;
        }
    };
    out.push(policy_about.ok(
        "mta_sts_policy",
        format!(
            "mode {}, mx [{}], max_age {}s",
            policy.mode.as_str(),
            policy.mx.join(", "),
            policy.max_age
        ),
    ));
    if policy.mode == Mode::None {
        out.push(policy_about.warning(
            "mta_sts_mode_none",
            "mode none: the policy is withdrawn, senders do not require TLS",
        ));
    }
    for pattern in &policy.mx {
        if !t.host_names.iter().any(|n| mta_sts::mx_matches(pattern, n)) {
            out.push(policy_about.warning(
                "mta_sts_mx_other_host",
                format!(
                    "mx: {pattern} admits none of this host's names [{}]: fine if it is \
                     another MX of {domain}, a typo otherwise",
                    t.host_names.join(", ")
                ),
            ));
        }
    }
    let admitted: Vec<&String> = t
        .host_names
        .iter()
        .filter(|n| policy.admits(n).is_some())
        .collect();
    if admitted.is_empty() {
        out.push(policy_about.error(
            "mta_sts_mx_not_listed",
            format!(
                "no mx: pattern admits this host ([{}]): senders that enforce the policy refuse \
                 to deliver to it; add mx: {} to the policy (and change the TXT id)",
                t.host_names.join(", "),
                t.host_names.first().cloned().unwrap_or_default()
            ),
        ));
    }
    if policy.mode != Mode::None {
        for name in admitted {
            out.push(certificate(&policy, name, t, roots.clone()));
        }
    }
    out
}

/// Whether the chain served for `name` passes a verifying sender's checks.
fn certificate(policy: &Policy, name: &str, t: &Target<'_>, roots: Arc<RootCertStore>) -> Finding {
    let about = About::new(Section::MtaSts, format!("MX {name}"));
    let pattern = policy.admits(name).unwrap_or_default();
    let Some(chain) = (t.served)(name).filter(|c| !c.is_empty()) else {
        return about.error(
            "mta_sts_no_certificate",
            "no certificate is served for this name",
        );
    };
    let verdict = WebPkiServerVerifier::builder_with_provider(
        roots,
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .map_err(|e| e.to_string())
    .and_then(|v| {
        let server = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        v.verify_server_cert(&chain[0], &chain[1..], &server, &[], UnixTime::now())
            .map_err(|e| e.to_string())
    });
    match verdict {
        Ok(_) => about.ok(
            "mta_sts_certificate_ok",
            format!("admitted by mx: {pattern}; the certificate served verifies for {name}"),
        ),
        Err(e) => about.error(
            "mta_sts_certificate_rejected",
            format!(
                "admitted by mx: {pattern}, but a verifying sender rejects the certificate served \
                 for {name}: {e}; serve one from a public CA that covers {name} (tlsfront's [acme])"
            ),
        ),
    }
}

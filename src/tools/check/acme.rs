//! `check` with `[acme]`: what the state directory holds for each key type
//! (a certificate, its dates and names, the next key) and how the last
//! renewal went, from the status file the daemon writes. No CA is contacted.

use crate::cert;
use crate::config::{AcmeSettings, Challenge};
use crate::outcome::KeyType;
use crate::proxy::acme::store::{KeyStatus, Store};
use crate::tools::check::findings::{About, Finding, Section};

fn date(ts: i64) -> String {
    jiff::Timestamp::from_second(ts)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| ts.to_string())
}

pub fn check(acme: &AcmeSettings, now: i64) -> Vec<Finding> {
    let store = Store::new(&acme.state_directory);
    let all = About::new(Section::Acme, format!("acme {}", acme.directory));
    let mut out = vec![all.ok(
        "acme_configured",
        format!(
            "names [{}], keys [{}], challenge {}, state {}",
            acme.names.join(", "),
            acme.key_types.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
            match &acme.challenge {
                Challenge::Listen(a) => format!(
                    "http-01 on [{}]",
                    a.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                ),
                Challenge::Webroot(p) => format!("http-01 files under {}", p.display()),
            },
            acme.state_directory.display()
        ),
    )];
    if let Challenge::Webroot(root) = &acme.challenge
        && !root.is_dir()
    {
        out.push(all.error(
            "acme_webroot_missing",
            format!("webroot {} is not a directory", root.display()),
        ));
    }
    let status = store.status();
    for kind in &acme.key_types {
        out.extend(key_type(&store, *kind, status.get(kind), &acme.names, now));
    }
    out
}

fn key_type(
    store: &Store,
    kind: KeyType,
    status: Option<&KeyStatus>,
    names: &[String],
    now: i64,
) -> Vec<Finding> {
    let files = store.files(kind);
    let about = About::new(
        Section::Acme,
        format!("acme {kind} {}", files.cert.display()),
    );
    let mut out = Vec::new();
    let leaf = std::fs::read(&files.cert).ok().and_then(|pem| {
        let der = rustls_pki_types::pem::PemObject::pem_slice_iter(&pem)
            .next()?
            .ok()
            .map(|d: rustls_pki_types::CertificateDer<'static>| d)?;
        cert::parse(der.as_ref()).ok()
    });
    match &leaf {
        None => out.push(about.warning(
            "acme_no_certificate",
            "none obtained yet: tlsfront serves a self-signed certificate until the first order \
             succeeds (ports 80 and 25 reachable, the names pointing here)",
        )),
        Some(c) => {
            let missing: Vec<&String> = names.iter().filter(|n| !c.dns_names.contains(n)).collect();
            let mut text = format!(
                "valid until {} ({} days), names [{}]",
                date(c.not_after),
                (c.not_after - now) / 86_400,
                c.dns_names.join(", ")
            );
            if !missing.is_empty() {
                text.push_str(&format!(
                    "; a new one will be ordered for {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            out.push(if c.not_after <= now {
                about.error("acme_certificate_expired", text)
            } else {
                about.ok("acme_certificate", text)
            });
        }
    }
    if let Some(s) = status {
        if let Some(e) = &s.last_error {
            let next = s.next_attempt.map(date).unwrap_or_else(|| "soon".into());
            let text = format!(
                "the last {} order(s) failed: {e}; next try {next}",
                s.failures
            );
            out.push(
                if leaf.is_none() || leaf.as_ref().is_some_and(|c| c.not_after <= now) {
                    about.error("acme_renewal_failing", text)
                } else {
                    about.warning("acme_renewal_failing", text)
                },
            );
        }
        if let Some(why) = &s.key_held_back {
            out.push(about.warning(
                "acme_key_held_back",
                format!("the last renewal kept the current key: {why} (see the dane section: check --dane)"),
            ));
        }
    }
    out
}

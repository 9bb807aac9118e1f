//! `tlsfront check`: what `run` would start, checked without starting it.
//!
//! The configuration (already loaded and validated by the caller), every
//! certificate (rules in [`crate::tools::check::certs`]), then the backend: greeting,
//! EHLO keywords, XCLIENT, and a raw probe of its own STARTTLS that tells
//! whether modern senders would refuse it and why. Findings are data with
//! stable codes; rendering them for people or scripts is separate.
//!
//! With `[acme]`, the state directory and the last renewal ([`acme`]); on
//! request, what DNS publishes: TLSA records against the keys (`--dane`,
//! [`dane`]) and a domain's MTA-STS record and policy (`--mta-sts`,
//! [`mta_sts`]).

pub mod access;
pub mod acme;
pub mod certs;
pub mod dane;
pub mod dryrun;
pub mod findings;
pub mod mta_sts;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;

use crate::cert;
use crate::config::{
    BackendSettings, BackendTls, DnsSettings, Settings, credential_name, credential_not_loaded,
};
use crate::dns::Resolver;
use crate::escape;
use crate::limits;
use crate::proxy::backend::guard::{self, RelayVerdict};
use crate::proxy::backend::{Backend, OpenError, Stage};
use crate::proxy::tls::TlsFront;
use crate::smtp::ehlo;
use crate::tools::check::access::Identity;
use crate::tools::check::certs::Served;
use crate::tools::legacy::{self, Assessment, ProbeOutcome, Refusal};
pub use findings::{About, Finding, Level, Section};

/// What the backend said, for `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackendReport {
    pub address: String,
    /// First line of the greeting (`220 ...`); null if none was read.
    pub greeting: Option<String>,
    /// EHLO keyword lines (after the first line of the reply).
    pub ehlo: Vec<String>,
    pub xclient: bool,
    /// Null when the backend does not offer STARTTLS.
    pub starttls: Option<Assessment>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
    /// Null with `--no-backend`, or when the configuration did not load.
    pub backend: Option<BackendReport>,
}

impl Report {
    fn new(findings: Vec<Finding>, backend: Option<BackendReport>) -> Report {
        let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
        Report {
            ok: count(Level::Error) == 0,
            errors: count(Level::Error),
            warnings: count(Level::Warning),
            findings,
            backend,
        }
    }

    /// The report for a configuration that does not load at all.
    pub fn config_failure(source: &str, message: String) -> Report {
        let about = About::new(Section::Config, format!("config {source}"));
        Report::new(vec![about.error("config_invalid", message)], None)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// One line per finding, grouped by section, then the totals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (section, title) in [
            (Section::Config, "config"),
            (Section::Certificates, "certificates"),
            (Section::Backend, "backend"),
            (Section::Acme, "acme"),
            (Section::Dane, "dane"),
            (Section::MtaSts, "mta-sts"),
        ] {
            let lines: Vec<&Finding> = self
                .findings
                .iter()
                .filter(|f| f.section == section)
                .collect();
            if lines.is_empty() {
                continue;
            }
            out.push_str(title);
            out.push('\n');
            for f in lines {
                out.push_str(&render_finding(f));
                out.push('\n');
            }
        }
        out.push_str(&format!(
            "check: {} error{}, {} warning{}\n",
            self.errors,
            if self.errors == 1 { "" } else { "s" },
            self.warnings,
            if self.warnings == 1 { "" } else { "s" },
        ));
        out
    }
}

/// One finding as a line (no line end): level, subject, message, code.
pub fn render_finding(f: &Finding) -> String {
    let level = match f.level {
        Level::Ok => "ok",
        Level::Warning => "warning",
        Level::Error => "error",
    };
    // Messages quote the backend's replies and DNS data: escaped for the terminal.
    format!(
        "  {level:<8}{}: {} [{}]",
        escape::text(&f.subject),
        escape::text(&f.message),
        f.code
    )
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Connect to the backend (off: `--no-backend`).
    pub backend: bool,
    /// The user `run` runs as, whose access to the certificate and key files
    /// is judged (`--service-user`); by default, when `check` runs as root,
    /// the unit's dynamic user.
    pub service_user: Option<String>,
    /// Look up the TLSA records of the MX names (`--dane`).
    pub dane: bool,
    /// Domains whose MTA-STS record and policy are checked (`--mta-sts`).
    pub mta_sts: Vec<String>,
    /// Where DNS questions go (`--resolver`, `--trust-anchor`); `None`:
    /// `[dane]`'s settings, else the system's resolver and the root's anchor.
    pub dns: Option<DnsSettings>,
    /// Roots a sender trusts, for the MTA-STS checks: the system bundle and
    /// `--cafile`.
    pub system_roots: PathBuf,
    pub cafile: Option<PathBuf>,
    /// Port of the MTA-STS policy host (443; tests serve it elsewhere).
    pub policy_port: u16,
}

/// Checks everything `run` would start with `settings`, read from `source`.
pub async fn run(settings: &Settings, source: &str, options: Options) -> Report {
    let mut findings = check_config(settings, source);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Root reads every file; the service does not.
    let service = match &options.service_user {
        Some(name) => match Identity::named(name) {
            Ok(id) => Some(id),
            Err(e) => {
                findings.push(
                    About::new(Section::Config, format!("--service-user {name}"))
                        .error("service_user_unknown", e),
                );
                None
            }
        },
        None if Identity::current().is_some_and(|me| me.is_root()) => Some(Identity::dynamic()),
        None => None,
    };
    findings.extend(check_certificates(settings, now, service.as_ref()));
    if let Some(a) = &settings.acme {
        findings.extend(acme::check(a, now));
    }
    if options.dane || !options.mta_sts.is_empty() {
        findings.extend(published(settings, &options).await);
    }
    let backend = if options.backend {
        let (f, report) = check_backend(settings).await;
        let reachable = report.greeting.is_some();
        findings.extend(f);
        if reachable {
            findings.push(check_relay(settings).await);
        }
        // TLS to the backend is configured, but its TLS is one rustls refuses
        // too: every session would fail with tls_failed.
        if settings.backend.tls != BackendTls::None
            && report
                .starttls
                .as_ref()
                .is_some_and(|t| t.refused_by_modern_clients)
        {
            findings.push(
                About::new(
                    Section::Backend,
                    format!("backend {}", settings.backend.addr),
                )
                .error(
                    "backend_tls_impossible",
                    "backend.tls is set, but the backend's TLS is too weak for rustls (see above): \
                 set backend.tls = \"none\" and keep the hop on loopback or a private link",
                ),
            );
        }
        Some(report)
    } else {
        findings.push(
            About::new(
                Section::Backend,
                format!("backend {}", settings.backend.addr),
            )
            .ok("backend_skipped", "not contacted (--no-backend)"),
        );
        None
    };
    Report::new(findings, backend)
}

/// `--dane` and `--mta-sts`: what DNS publishes about this host, against
/// the certificates `run` would serve (and the next keys ACME keeps).
async fn published(settings: &Settings, options: &Options) -> Vec<Finding> {
    let dns = options
        .dns
        .clone()
        .or_else(|| settings.dane.as_ref().map(|d| d.dns.clone()))
        .unwrap_or_default();
    let about = About::new(Section::Dane, "DNS");
    let resolver = match Resolver::new(&dns) {
        Ok(r) => r,
        Err(e) => return vec![about.error("dns_setup_failed", e.to_string())],
    };
    let front = match TlsFront::build(settings) {
        Ok(Some(front)) => front,
        Ok(None) => return vec![about.error("no_certificate", "no certificate is served")],
        Err(e) => return vec![about.error("tls_setup_failed", e.to_string())],
    };
    let mut out = Vec::new();
    if options.dane {
        let current: Vec<dane::InService> = front
            .entries()
            .iter()
            .map(|e| dane::InService {
                label: format!("{} {}", e.key_type, e.source),
                chain: e.chain().to_vec(),
            })
            .collect();
        let next: Vec<dane::NextKey> = settings
            .acme
            .iter()
            .flat_map(|a| {
                let store = crate::proxy::acme::store::Store::new(&a.state_directory);
                a.key_types.iter().filter_map(move |k| {
                    let path = store.files(*k).next_key;
                    let pem = std::fs::read_to_string(&path).ok()?;
                    let key = rcgen::KeyPair::from_pem(&pem).ok()?;
                    Some(dane::NextKey {
                        label: format!("{k} {}", path.display()),
                        spki: rcgen::PublicKeyData::subject_public_key_info(&key),
                    })
                })
            })
            .collect();
        let names = settings
            .dane
            .as_ref()
            .map(|d| d.names.clone())
            .unwrap_or_else(|| settings.names.clone());
        out.extend(dane::evaluate(&resolver, &names, &current, &next).await);
    }
    if !options.mta_sts.is_empty() {
        let roots = Arc::new(roots(&options.system_roots, options.cafile.as_deref()));
        let served = |name: &str| Some(front.select(Some(name), None).chain().to_vec());
        for domain in &options.mta_sts {
            let target = mta_sts::Target {
                domain,
                host_names: &settings.names,
                served: &served,
                port: options.policy_port,
            };
            out.extend(mta_sts::evaluate(&resolver, roots.clone(), &target).await);
        }
    }
    out
}

/// `probe --dane` and `--mta-sts`: the same judgements for any host, against
/// the chain it presented (for every name) and the names it was probed by.
pub async fn remote(
    options: &Options,
    names: &[String],
    chain: &[CertificateDer<'static>],
) -> Vec<Finding> {
    let about = About::new(Section::Dane, "DNS");
    let resolver = match Resolver::new(&options.dns.clone().unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => return vec![about.error("dns_setup_failed", e.to_string())],
    };
    let mut out = Vec::new();
    if options.dane {
        let current = [dane::InService {
            label: "as presented".into(),
            chain: chain.to_vec(),
        }];
        out.extend(dane::evaluate(&resolver, names, &current, &[]).await);
    }
    let roots = Arc::new(roots(&options.system_roots, options.cafile.as_deref()));
    let served = |_: &str| Some(chain.to_vec());
    for domain in &options.mta_sts {
        let target = mta_sts::Target {
            domain,
            host_names: names,
            served: &served,
            port: options.policy_port,
        };
        out.extend(mta_sts::evaluate(&resolver, roots.clone(), &target).await);
    }
    out
}

/// The roots a sender trusts: the system bundle, and `extra` (PEM) if given.
pub fn roots(system: &Path, extra: Option<&Path>) -> rustls::RootCertStore {
    let mut store = rustls::RootCertStore::empty();
    for path in std::iter::once(system).chain(extra) {
        if let Ok(certs) = CertificateDer::pem_file_iter(path) {
            store.add_parsable_certificates(certs.filter_map(Result::ok));
        }
    }
    store
}

fn check_config(s: &Settings, source: &str) -> Vec<Finding> {
    let about = About::new(Section::Config, format!("config {source}"));
    let listeners: Vec<String> = s
        .listeners
        .iter()
        .map(|l| format!("{} {}", l.addr, l.mode.as_str()))
        .collect();
    let mut out = vec![about.ok(
        "config_valid",
        format!(
            "hostname {}, names [{}], listeners [{}], backend {}, metrics {}",
            s.hostname,
            s.names.join(", "),
            listeners.join(", "),
            s.backend.addr,
            s.metrics.map_or("off".to_string(), |a| a.to_string())
        ),
    )];
    // The endpoint has no authentication: anyone who reaches it learns the
    // traffic, failure reasons and certificate dates.
    if let Some(addr) = s.metrics.filter(|a| !a.ip().is_loopback()) {
        out.push(about.warning(
            "metrics_not_loopback",
            format!(
                "metrics endpoint on {addr}, not a loopback address: it has no authentication; \
                 bind it to 127.0.0.1 or [::1] (scrape through a tunnel or a local agent) or \
                 firewall the port"
            ),
        ));
    }
    match &s.records {
        None => out.push(about.warning(
            "no_records",
            "no record file ([records] path or --records): handshake outcomes are only logged",
        )),
        Some(p) => {
            // Under the unit, the working directory is / and read-only
            // (ProtectSystem=strict).
            if p.is_relative() {
                out.push(about.warning(
                    "records_path_relative",
                    format!(
                        "record file {} is relative to the directory tlsfront starts in (/ under \
                         systemd, read-only with ProtectSystem=strict): use an absolute path, e.g. \
                         /var/log/tlsfront/records.jsonl (the unit's LogsDirectory)",
                        p.display()
                    ),
                ));
            }
            // `run` creates the file but not its directory.
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                out.push(about.error(
                    "records_dir_missing",
                    format!(
                        "record file {}: directory {} does not exist",
                        p.display(),
                        dir.display()
                    ),
                ));
            } else {
                out.push(dryrun::try_records(p));
            }
        }
    }
    // Each listener (and the metrics endpoint) bound for a moment, as `run` binds it.
    let listeners = About::new(Section::Config, "listeners");
    for l in &s.listeners {
        out.push(dryrun::try_bind(&listeners, "listener", l.addr));
        // IPv6 sockets are IPv6-only: `[::]:25` alone leaves IPv4 clients out.
        if l.addr.is_ipv6()
            && l.addr.ip().is_unspecified()
            && !s
                .listeners
                .iter()
                .any(|o| o.addr.is_ipv4() && o.addr.port() == l.addr.port())
        {
            out.push(listeners.warning(
                "listener_ipv6_only",
                format!(
                    "listener {} takes IPv6 clients only (IPV6_V6ONLY): add 0.0.0.0:{} for IPv4",
                    l.addr,
                    l.addr.port()
                ),
            ));
        }
    }
    if let Some(m) = s.metrics {
        out.push(dryrun::try_bind(&listeners, "metrics endpoint", m));
    }
    out
}

fn check_certificates(settings: &Settings, now: i64, service: Option<&Identity>) -> Vec<Finding> {
    let tls = &settings.tls;
    let all = About::new(Section::Certificates, "certificates");
    let mut out = Vec::new();
    if tls.certificates.is_empty() {
        out.push(if tls.generate_self_signed {
            all.warning(
                "self_signed_generated",
                format!(
                    "none configured: a self-signed certificate for [{}] is generated at start-up; \
                     senders that verify refuse it",
                    settings.names.join(", ")
                ),
            )
        } else {
            all.warning(
                "no_certificate",
                "none configured and generate_self_signed = false: STARTTLS is not offered",
            )
        });
    }
    let mut served = Vec::new();
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty());
    let mut unloaded = false;
    for c in &tls.certificates {
        let subject = format!("certificate {}", c.cert.display());
        let about = About::new(Section::Certificates, &subject);
        // `%d/NAME` by hand, outside the unit: nothing to read here.
        if let Some(name) = [&c.cert, &c.key]
            .into_iter()
            .find_map(|p| credential_name(p))
        {
            out.push(about.warning(
                "credential_not_loaded",
                format!("not checked: {}", credential_not_loaded(name)),
            ));
            unloaded = true;
            continue;
        }
        let from_systemd =
            |p: &std::path::Path| credentials.as_ref().is_some_and(|d| p.starts_with(d));
        if !from_systemd(&c.key) {
            out.extend(access::key_exposure(&about, &c.key));
        }
        if let Some(who) = service {
            for (what, path) in [("certificate", &c.cert), ("key", &c.key)] {
                if !from_systemd(path) {
                    out.extend(access::service_access(&about, what, path, who));
                }
            }
        }
        // The words `run` says for the same files (cert::Problem).
        let problem = |p: cert::Problem| about.error(p.code(), p.to_string());
        let chain = match cert::read_chain(&c.cert) {
            Ok(chain) => chain,
            Err(p) => {
                out.push(problem(p));
                continue;
            }
        };
        let mut parsed = Vec::new();
        for (i, der) in chain.iter().enumerate() {
            match cert::parse(der.as_ref()) {
                Ok(p) => parsed.push(p),
                Err(e) => out.push(problem(cert::Problem::CertificateUnparsable {
                    index: i + 1,
                    error: e.to_string(),
                })),
            }
        }
        if parsed.len() != chain.len() {
            continue;
        }
        let leaf = &parsed[0];
        let leaf_problem = cert::leaf_key_problem(leaf);
        out.push(certs::check_key_type(&subject, leaf));
        match cert::read_key(&c.key) {
            // The leaf's key size is the news; aws-lc-rs would refuse the key too.
            Ok(_) if leaf_problem.is_some() => {}
            Ok(key) => out.push(certs::check_key_match(&subject, leaf, &key)),
            Err(p) => out.push(problem(p)),
        }
        out.extend(certs::check_chain(&subject, &parsed));
        out.extend(certs::check_validity(&subject, &parsed, now));
        served.push(Served {
            subject,
            configured_names: c.names.clone(),
            default: c.default,
            leaf: parsed[0].clone(),
        });
    }
    out.extend(certs::check_names(&served, &settings.names));
    // Whatever the rules above missed, `run` must be able to load it all.
    if !out.iter().any(|f| f.level == Level::Error)
        && !unloaded
        && let Err(e) = crate::proxy::tls::TlsFront::build(settings)
    {
        out.push(all.error("tls_setup_failed", e.to_string()));
    }
    out
}

/// Greeting, EHLO, XCLIENT, and the backend's own STARTTLS as clients see it.
async fn check_backend(settings: &Settings) -> (Vec<Finding>, BackendReport) {
    let addr = settings.backend.addr;
    let about = About::new(Section::Backend, format!("backend {addr}"));
    let mut report = BackendReport {
        address: addr.to_string(),
        ..BackendReport::default()
    };
    let mut out = Vec::new();
    // The check looks at the backend's own STARTTLS in clear.
    let backend = Backend::plain(bounded(&settings.backend));
    let mut conn = match backend
        .open_session(settings.hostname.as_bytes(), None)
        .await
    {
        Ok(c) => c,
        Err(OpenError::Unavailable(e)) => {
            out.push(about.error(
                "backend_unreachable",
                format!("{e}: clients would get 451 4.4.1 for every message"),
            ));
            return (out, report);
        }
        Err(OpenError::Refused(reply)) => {
            out.push(about.error(
                "backend_refused",
                format!(
                    "refused tlsfront's session: {} (clients would get this reply)",
                    reply.summary()
                ),
            ));
            return (out, report);
        }
    };
    let greeting = conn.greeting.as_ref().map(|g| g.summary());
    out.push(about.ok(
        "backend_greeting",
        format!("greeting {:?}", greeting.clone().unwrap_or_default()),
    ));
    report.greeting = greeting;
    report.ehlo = conn
        .ehlo
        .as_ref()
        .map(|r| ehlo::keywords_of(&r.lines))
        .unwrap_or_default();
    if conn.ehlo.is_some() {
        out.push(about.ok(
            "backend_ehlo",
            format!("EHLO keywords: {}", report.ehlo.join(", ")),
        ));
    } else {
        out.push(about.warning(
            "backend_no_ehlo",
            "EHLO refused, HELO accepted: no extensions (no SIZE, 8BITMIME, ...) are relayed",
        ));
    }
    let has = |kw: &str| {
        report
            .ehlo
            .iter()
            .find(|l| ehlo::keyword(l).eq_ignore_ascii_case(kw))
            .cloned()
    };
    if let Some(line) = has("XCLIENT") {
        report.xclient = true;
        out.push(about.ok(
            "backend_offers_xclient",
            format!(
                "offers {line:?}: with backend.xclient = true it is told each client's real \
                 address (without it, the backend sees tlsfront's address)"
            ),
        ));
    }
    if has("STARTTLS").is_none() {
        out.push(about.ok(
            "backend_no_starttls",
            "does not offer STARTTLS itself (tlsfront provides it)",
        ));
        conn.quit().await;
        return (out, report);
    }

    let tls_about = About::new(Section::Backend, format!("backend {addr} STARTTLS"));
    match conn.command(b"STARTTLS", Stage::StartTls).await {
        Ok(r) if r.code == 220 => {}
        Ok(r) => {
            out.push(tls_about.warning(
                "backend_starttls_refused",
                format!("offered STARTTLS but answered {}", r.summary()),
            ));
            report.starttls = Some(Assessment::default());
            conn.quit().await;
            return (out, report);
        }
        Err(e) => {
            out.push(tls_about.warning(
                "backend_starttls_probe_failed",
                format!("no answer to STARTTLS: {e}"),
            ));
            report.starttls = Some(Assessment::default());
            return (out, report);
        }
    }
    let Some((stream, leftover)) = conn.into_parts() else {
        return (out, report);
    };
    let outcome = legacy::read_flight(stream, leftover, limits::CHECK_TIMEOUT).await;
    let (verdict, findings) = starttls_verdict(&tls_about, outcome);
    out.extend(findings);
    report.starttls = Some(verdict);
    (out, report)
}

/// The open-relay guard ([`guard`]): from the address and with the identity
/// `run` would use, does the backend take a recipient it does not serve?
async fn check_relay(settings: &Settings) -> Finding {
    let about = About::new(
        Section::Backend,
        format!("backend {} relaying", settings.backend.addr),
    );
    let backend = match Backend::new(bounded(&settings.backend)) {
        Ok(b) => b,
        Err(e) => return about.warning("backend_relay_untested", e.to_string()),
    };
    let listener = settings.listeners[0].addr;
    match guard::test_relay(&backend, &settings.hostname, listener).await {
        Ok(test) => match test.verdict {
            RelayVerdict::Open { .. } => about.error("backend_open_relay", test.message()),
            RelayVerdict::Refused { .. } => about.ok("backend_relay_refused", test.message()),
            RelayVerdict::Inconclusive { .. } => {
                about.warning("backend_relay_untested", test.message())
            }
        },
        Err(e) => about.warning(
            "backend_relay_untested",
            format!("relaying not tested: {e}"),
        ),
    }
}

/// The backend's settings with `check`'s short waits.
fn bounded(b: &BackendSettings) -> BackendSettings {
    BackendSettings {
        connect_timeout: b.connect_timeout.min(limits::CHECK_TIMEOUT),
        reply_timeout: b.reply_timeout.min(limits::CHECK_TIMEOUT),
        greeting_timeout: b.greeting_timeout.min(limits::CHECK_TIMEOUT),
        ..b.clone()
    }
}

/// What a modern client would make of the backend's STARTTLS, from the
/// probe: the verdict, and the findings that explain it.
fn starttls_verdict(about: &About, outcome: ProbeOutcome) -> (Assessment, Vec<Finding>) {
    let v = legacy::assess(outcome);
    if let Some(why) = &v.failure {
        let f = about.warning(
            "backend_starttls_probe_failed",
            format!("the TLS probe got no usable answer: {why}"),
        );
        return (v, vec![f]);
    }
    let text = |x: &Option<String>| x.clone().unwrap_or_default();
    // Warnings, not errors: tlsfront exists to hide exactly this; clients
    // see tlsfront's TLS, never the backend's.
    let hidden = "; tlsfront hides it (clients get tlsfront's TLS); keep backend.tls = \"none\" \
                  on a loopback or private link, since rustls will not speak it either";
    let mut out: Vec<Finding> = v
        .reasons
        .iter()
        .map(|reason| match reason {
            Refusal::OldProtocol => about.warning(
                "backend_starttls_old_protocol",
                format!(
                    "answers a TLS 1.2 ClientHello with {}: modern clients refuse it (\"unsupported protocol\" / \"protocol version too old\"){hidden}",
                    text(&v.version)
                ),
            ),
            Refusal::WeakRsa => about.warning(
                "backend_starttls_weak_rsa",
                format!(
                    "certificate key RSA {} bits: modern clients refuse it (OpenSSL \"ee key too small\", \
                     GnuTLS \"EE certificate key too weak\"){hidden}",
                    v.key_bits.unwrap_or(0)
                ),
            ),
            Refusal::WeakDh => about.warning(
                "backend_starttls_weak_dh",
                format!(
                    "{} with a {}-bit DH group: modern clients refuse it (OpenSSL \"dh key too small\"){hidden}",
                    text(&v.cipher_suite),
                    v.dh_bits.unwrap_or(0)
                ),
            ),
        })
        .collect();
    if out.is_empty() {
        out.push(about.ok(
            "backend_starttls_ok",
            format!(
                "{} {} {}: modern clients would accept it",
                text(&v.version),
                text(&v.cipher_suite),
                v.key_type
                    .clone()
                    .unwrap_or_else(|| "(certificate not seen)".into())
            ),
        ));
    } else {
        out.insert(
            0,
            about.ok(
                "backend_starttls_seen",
                format!(
                    "{} {}, certificate {} ({})",
                    text(&v.version),
                    text(&v.cipher_suite),
                    text(&v.cert_subject),
                    text(&v.key_type)
                ),
            ),
        );
    }
    (v, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::legacy::flight::{Flight, KeyExchange, ServerFlight};

    fn flight(version: u16, suite: u16, kx: Option<KeyExchange>, cert: Vec<u8>) -> ProbeOutcome {
        ProbeOutcome::Flight(Flight::Done(ServerFlight {
            version,
            cipher_suite: suite,
            certificates: vec![cert],
            key_exchange: kx,
        }))
    }

    fn ecdsa_cert() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(vec!["legacy.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    fn codes(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.code).collect()
    }

    #[test]
    fn weak_dh_and_old_protocol_are_reported() {
        let (r, f) = starttls_verdict(
            &About::new(Section::Backend, "b"),
            flight(
                0x0301,
                0x0033,
                Some(KeyExchange::Dhe { prime_bits: 1024 }),
                ecdsa_cert(),
            ),
        );
        assert_eq!(
            codes(&f),
            vec![
                "backend_starttls_seen",
                "backend_starttls_old_protocol",
                "backend_starttls_weak_dh"
            ]
        );
        assert_eq!(r.dh_bits, Some(1024));
        assert_eq!(r.key_exchange.as_deref(), Some("dhe"));
        assert!(r.refused_by_modern_clients);
        assert_eq!(r.reasons, vec![Refusal::OldProtocol, Refusal::WeakDh]);
    }

    #[test]
    fn modern_setup_is_ok() {
        let (r, f) = starttls_verdict(
            &About::new(Section::Backend, "b"),
            flight(
                0x0303,
                0xc02b,
                Some(KeyExchange::Ecdhe { group: 0x1d }),
                ecdsa_cert(),
            ),
        );
        assert_eq!(codes(&f), vec!["backend_starttls_ok"]);
        assert_eq!(r.key_type.as_deref(), Some("ecdsa_p256"));
        assert_eq!(r.group.as_deref(), Some("X25519"));
        assert!(!r.refused_by_modern_clients);
    }

    #[test]
    fn probe_failures_are_warnings_with_the_reason() {
        let (r, f) = starttls_verdict(
            &About::new(Section::Backend, "b"),
            ProbeOutcome::Flight(Flight::Alert {
                level: 2,
                description: 40,
            }),
        );
        assert_eq!(codes(&f), vec!["backend_starttls_probe_failed"]);
        assert_eq!(f[0].level, Level::Warning);
        assert!(r.failure.unwrap().contains("handshake_failure"));
    }

    #[test]
    fn human_output_is_grouped_and_counted() {
        let f = |section, level, code| About::new(section, "s").finding(level, code, "m");
        let r = Report::new(
            vec![
                f(Section::Backend, Level::Ok, "backend_greeting"),
                f(Section::Certificates, Level::Error, "expired"),
                f(Section::Config, Level::Warning, "no_records"),
            ],
            None,
        );
        assert!(!r.ok);
        let text = r.render();
        assert_eq!(
            text,
            "config\n  warning s: m [no_records]\ncertificates\n  error   s: m [expired]\n\
             backend\n  ok      s: m [backend_greeting]\ncheck: 1 error, 1 warning\n"
        );
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["findings"][1]["code"], "expired");
        assert_eq!(json["findings"][1]["level"], "error");
        assert_eq!(json["findings"][1]["section"], "certificates");
        assert!(json["backend"].is_null());
    }

    /// A backend's reply text reaches a finding's message (and a file name its
    /// subject): shown escaped, it cannot forge the totals line or drive the terminal.
    #[test]
    fn remote_text_in_findings_is_escaped() {
        let r = Report::new(
            vec![
                About::new(Section::Backend, "backend 127.0.0.1:25\x1b[2J").error(
                    "backend_refused",
                    "refused tlsfront's session: 554 no\r\ncheck: 0 errors, 0 warnings",
                ),
            ],
            None,
        );
        let text = r.render();
        assert_eq!(
            text,
            "backend\n  error   backend 127.0.0.1:25\\x1b[2J: refused tlsfront's session: \
             554 no\\r\\ncheck: 0 errors, 0 warnings [backend_refused]\ncheck: 1 error, 0 warnings\n"
        );
    }
}

//! `tlsfront report`: turns record lines into the facts an admin asks about:
//! how much mail arrives over TLS and with what, who fails and why, what a
//! stricter policy would break, and whether the legacy TLS path is retired,
//! with the evidence for it.
//!
//! Pure: [`Report::add_line`] takes one record line, [`Report::summary`]
//! computes the facts, and every rendering reads the same [`Summary`]
//! (plain data, in `summary`), so text, JSON and HTML cannot disagree.
//! By job:
//! - [`input`]: record files and logs (plain or gzip, `-`, globs);
//! - [`range`]: `--since`/`--until` and the range covered;
//! - [`verdict`]: a session's honest category and the legacy MTA's policy;
//! - [`simulate`]: what a stricter policy would break;
//! - [`legacy_log`]: the legacy MTA's own log (direct sessions);
//! - `render` (text) and [`html`] (one self-contained page).

pub mod html;
pub mod input;
pub mod legacy_log;
pub mod range;
mod render;
pub mod simulate;
mod summary;
pub mod verdict;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde::Deserialize;

use crate::outcome::{Mode, Origin, TlsOutcome};
use crate::wire::offer::Offer;
use legacy_log::LegacyLog;
use range::{Covered, Span, Window};
use simulate::Policy as SimPolicy;
pub use summary::{
    ClientCount, Day, Exception, FailureGroup, Host, Impact, NameCount, Policy, Sender, Simulation,
    Summary, Verdict, by_ip,
};
use verdict::{Category, Facts, LegacyPolicy};

/// Clients listed per failure reason, policy and exception.
pub const TOP_CLIENTS: usize = 5;
/// Senders in `top_senders`.
pub const TOP_SENDERS: usize = 20;

/// The ClientHello lists a failure record keeps (`client_hello`), read back
/// as an offer when the record has no `offer` of its own.
#[derive(Debug, Default, Deserialize)]
struct HelloNames {
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    signature_schemes: Vec<String>,
    #[serde(default)]
    cipher_suites: Vec<String>,
}

/// The record fields the report reads. Other fields are ignored and only
/// `ts` and `tls` are required, so records written by older or newer
/// versions still count.
#[derive(Debug, Deserialize)]
struct RecordLine<'a> {
    #[serde(borrow)]
    ts: Cow<'a, str>,
    tls: TlsOutcome,
    mode: Option<Mode>,
    origin: Option<Origin>,
    #[serde(borrow, default)]
    host: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    session: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    client_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sni: Option<Cow<'a, str>>,
    starttls_used: Option<bool>,
    #[serde(borrow, default)]
    tls_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    cipher_suite: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kx_group: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    cert_key_type: Option<Cow<'a, str>>,
    self_signed: Option<bool>,
    #[serde(borrow, default)]
    failure_reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    close_reason: Option<Cow<'a, str>>,
    offer: Option<Offer>,
    client_hello: Option<HelloNames>,
    messages_accepted: Option<u64>,
    messages_rejected: Option<u64>,
    recipients: Option<u64>,
    backend_contacted: Option<bool>,
    tls_required_refusals: Option<u64>,
    tls_required_would_refuse: Option<u64>,
}

/// Shown for a value the record leaves null.
const NONE: &str = "(none)";

/// Sessions per name (a TLS version, a client IP, ...).
type Counts = HashMap<String, u64>;

/// What the report is asked for, besides the records.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub window: Window,
    pub legacy: LegacyPolicy,
    pub simulate: Vec<SimPolicy>,
}

impl Options {
    /// Every built-in simulation, the default policy of the legacy MTA.
    pub fn with_window(window: Window) -> Self {
        Options {
            window,
            legacy: LegacyPolicy::default(),
            simulate: simulate::BUILT_IN
                .iter()
                .filter_map(|n| SimPolicy::built_in(n))
                .collect(),
        }
    }
}

#[derive(Debug, Default)]
struct ClientTally {
    sessions: u64,
    messages: u64,
    tls: u64,
    plaintext: u64,
    failed: u64,
    probes: u64,
    best_version: Option<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    sessions: u64,
    tls: u64,
    plaintext: u64,
    failed: u64,
    probes: u64,
    messages: u64,
    blocking: u64,
}

impl Tally {
    fn add(&mut self, category: Category, messages: u64) {
        self.sessions += 1;
        self.messages += messages;
        match category {
            Category::ModernTls | Category::OldTls => self.tls += 1,
            Category::Plaintext => self.plaintext += 1,
            Category::Probe | Category::RefusedAtConnect => self.probes += 1,
            _ => self.failed += 1,
        }
        if category.blocks() {
            self.blocking += 1;
        }
    }

    /// TLS over the sessions that were not probes.
    fn tls_percent(&self) -> f64 {
        percent(self.tls, self.sessions - self.probes)
    }
}

#[derive(Debug, Default)]
struct SimTally {
    judged: u64,
    inferred: u64,
    failing: Counts,
    messages: u64,
}

/// Running totals over record lines; cheap per line, sorted only at the end.
#[derive(Debug, Default)]
pub struct Report {
    opts: Options,
    sources: Vec<String>,
    lines: u64,
    malformed: u64,
    first_malformed: Option<String>,
    outside: u64,
    duplicates: u64,
    /// (host, session) of every record counted, hashed to 128 bits.
    seen: HashSet<u128>,
    span: Span,
    /// A balancer's health checks: counted apart, never sessions or senders.
    health_checks: u64,
    sessions: u64,
    messages: u64,
    outcomes: HashMap<TlsOutcome, u64>,
    categories: HashMap<Category, u64>,
    starttls_used: u64,
    implicit: u64,
    versions: Counts,
    suites: Counts,
    groups: Counts,
    sni: Counts,
    key_types: Counts,
    self_signed: u64,
    offered_versions: Counts,
    offered_groups: Counts,
    /// (category, failure_reason) → sessions per client.
    failures: HashMap<(Category, String), Counts>,
    clients: HashMap<String, ClientTally>,
    require_tls: Counts,
    require_tls_messages: u64,
    /// (tls outcome, reason, category) → sessions per client, blocking only.
    exceptions: HashMap<(TlsOutcome, String, Category), Counts>,
    /// By UTC day, as days since the epoch (a division per record, not a
    /// calendar conversion).
    days: BTreeMap<i64, Tally>,
    hosts: HashMap<String, (Tally, Span)>,
    sims: Vec<SimTally>,
    legacy_log: Option<LegacyLog>,
}

impl Report {
    /// A report over the sessions of `opts.window`, with every built-in
    /// simulation and the default legacy policy unless `opts` says otherwise.
    pub fn new(opts: Options) -> Self {
        let sims = opts.simulate.iter().map(|_| SimTally::default()).collect();
        Report {
            opts,
            sims,
            ..Report::default()
        }
    }

    /// Takes the legacy MTA's log as evidence for the verdict.
    pub fn with_legacy_log(mut self, log: LegacyLog) -> Self {
        self.legacy_log = Some(log);
        self
    }

    pub fn legacy_log_mut(&mut self) -> Option<&mut LegacyLog> {
        self.legacy_log.as_mut()
    }

    /// Notes a file (or stdin) being read, so the report names its inputs.
    pub fn begin_source(&mut self, name: &str) {
        self.sources.push(name.to_string());
    }

    /// Counts one line; `location` ("FILE:LINE") is kept for the first
    /// malformed line so the admin can look at it. Blank lines are ignored.
    pub fn add_line(&mut self, line: &[u8], location: impl FnOnce() -> String) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.lines += 1;
        let parsed = serde_json::from_slice::<RecordLine>(line)
            .ok()
            .and_then(|r| Some((r.ts.parse::<jiff::Timestamp>().ok()?, r)));
        match parsed {
            Some((ts, record)) => self.add(ts, &record),
            None => {
                self.malformed += 1;
                if self.first_malformed.is_none() {
                    self.first_malformed = Some(location());
                }
            }
        }
    }

    /// True the first time a (host, session) pair is seen.
    fn first_sight(&mut self, host: &str, session: &str) -> bool {
        let hash = |seed: u8| {
            let mut h = std::hash::DefaultHasher::new();
            (seed, host, session).hash(&mut h);
            h.finish()
        };
        self.seen
            .insert((u128::from(hash(0)) << 64) | u128::from(hash(1)))
    }

    /// Counts one well-formed record that ended at `ts`.
    fn add(&mut self, ts: jiff::Timestamp, r: &RecordLine<'_>) {
        if !self.opts.window.contains(ts) {
            self.outside += 1;
            return;
        }
        let host = r.host.as_deref().unwrap_or("");
        if let Some(session) = r.session.as_deref()
            && !self.first_sight(host, session)
        {
            self.duplicates += 1;
            return;
        }
        if r.origin == Some(Origin::HealthCheck) {
            self.health_checks += 1;
            return;
        }
        self.sessions += 1;
        self.span.add(ts);
        *self.outcomes.entry(r.tls).or_default() += 1;
        if r.starttls_used == Some(true) {
            self.starttls_used += 1;
        }
        if r.mode == Some(Mode::Implicit) {
            self.implicit += 1;
        }
        let messages = r.messages_accepted.unwrap_or(0);
        self.messages += messages;

        // The offer: the record's own, or read back from a failure's lists.
        let from_hello;
        let offer = match (&r.offer, &r.client_hello) {
            (Some(o), _) => Some(o),
            (None, Some(h)) => {
                from_hello = Offer::of_names(
                    &h.versions,
                    &h.groups,
                    &h.signature_schemes,
                    &h.cipher_suites,
                );
                Some(&from_hello)
            }
            (None, None) => None,
        };
        let went_further = r.backend_contacted.map(|contacted| {
            contacted
                || messages > 0
                || r.messages_rejected.unwrap_or(0) > 0
                || r.recipients.unwrap_or(0) > 0
                || r.tls_required_refusals.unwrap_or(0) > 0
                || r.tls_required_would_refuse.unwrap_or(0) > 0
        });
        let category = verdict::categorize(
            &Facts {
                tls: Some(r.tls),
                tls_version: r.tls_version.as_deref(),
                failure_reason: r.failure_reason.as_deref(),
                close_reason: r.close_reason.as_deref(),
                went_further,
                offer,
            },
            &self.opts.legacy,
        );
        *self.categories.entry(category).or_default() += 1;

        let client = r.client_ip.as_deref().unwrap_or("(unknown)");
        let tally = match self.clients.get_mut(client) {
            Some(t) => t,
            None => self.clients.entry(client.to_string()).or_default(),
        };
        tally.sessions += 1;
        tally.messages += messages;
        match category {
            Category::ModernTls | Category::OldTls => {
                tally.tls += 1;
                if let Some(v) = r.tls_version.as_deref()
                    && tally.best_version.as_deref().is_none_or(|b| v > b)
                {
                    tally.best_version = Some(v.to_string());
                }
            }
            Category::Plaintext => tally.plaintext += 1,
            Category::Probe | Category::RefusedAtConnect => tally.probes += 1,
            _ => tally.failed += 1,
        }
        let day = ts.as_second().div_euclid(86_400);
        self.days.entry(day).or_default().add(category, messages);
        let (host_tally, host_span) = match self.hosts.get_mut(host) {
            Some(h) => h,
            None => self.hosts.entry(host.to_string()).or_default(),
        };
        host_tally.add(category, messages);
        host_span.add(ts);

        if r.tls != TlsOutcome::NotAttempted {
            bump(&mut self.sni, or_none(&r.sni));
        }
        if let Some(o) = offer {
            for v in &o.versions {
                bump(&mut self.offered_versions, v);
            }
            for g in &o.groups {
                bump(&mut self.offered_groups, g);
            }
        }
        match category {
            Category::ModernTls | Category::OldTls => {
                bump(&mut self.versions, or_none(&r.tls_version));
                bump(&mut self.suites, or_none(&r.cipher_suite));
                bump(&mut self.groups, or_none(&r.kx_group));
                bump(&mut self.key_types, or_none(&r.cert_key_type));
                if r.self_signed == Some(true) {
                    self.self_signed += 1;
                }
            }
            Category::Plaintext => {
                bump(&mut self.require_tls, client);
                self.require_tls_messages += messages;
            }
            c if c.is_failure() => {
                let reason = r.failure_reason.as_deref().unwrap_or("unknown");
                let key = (c, reason.to_string());
                bump(self.failures.entry(key).or_default(), client);
            }
            _ => {}
        }
        if category == Category::ModernTls {
            self.simulate(r, offer, client, messages);
        }
        if category.blocks() {
            let reason = match category {
                Category::OldTls => format!("old_version_{}", or_none(&r.tls_version)),
                _ => r.failure_reason.as_deref().unwrap_or("unknown").to_string(),
            };
            bump(
                self.exceptions
                    .entry((r.tls, reason, category))
                    .or_default(),
                client,
            );
        }
    }

    /// Judges an established session under each stricter policy.
    fn simulate(&mut self, r: &RecordLine<'_>, offer: Option<&Offer>, client: &str, messages: u64) {
        let inferred;
        let (offer, is_inferred) = match offer {
            Some(o) => (o, false),
            None => {
                match simulate::inferred_offer(
                    r.tls_version.as_deref(),
                    r.cipher_suite.as_deref(),
                    r.kx_group.as_deref(),
                    r.cert_key_type.as_deref(),
                ) {
                    Some(o) => {
                        inferred = o;
                        (&inferred, true)
                    }
                    None => return,
                }
            }
        };
        for (policy, tally) in self.opts.simulate.iter().zip(&mut self.sims) {
            tally.judged += 1;
            tally.inferred += u64::from(is_inferred);
            if !policy.allows(offer, r.cert_key_type.as_deref()) {
                bump(&mut tally.failing, client);
                tally.messages += messages;
            }
        }
    }

    /// The facts, sorted: by sessions (descending), then by name or address.
    pub fn summary(&self) -> Summary {
        let outcome = |o| self.outcomes.get(&o).copied().unwrap_or(0);
        let established = outcome(TlsOutcome::Established);
        let mut failures: Vec<FailureGroup> = self
            .failures
            .iter()
            .map(|((category, reason), by_client)| FailureGroup {
                reason: reason.clone(),
                category: category.as_str().to_string(),
                impact: impact(by_client),
            })
            .collect();
        failures.sort_by(|a, b| {
            b.impact
                .sessions
                .cmp(&a.impact.sessions)
                .then_with(|| (&a.category, &a.reason).cmp(&(&b.category, &b.reason)))
        });
        let sender = |ip: &String, t: &ClientTally| Sender {
            ip: ip.clone(),
            sessions: t.sessions,
            messages: t.messages,
            tls: t.tls,
            plaintext: t.plaintext,
            failed: t.failed,
            probes: t.probes,
            best_version: t.best_version.clone(),
        };
        let mut plaintext_senders: Vec<Sender> = self
            .clients
            .iter()
            .filter(|(_, t)| t.plaintext > 0 && t.tls == 0 && t.failed == 0)
            .map(|(ip, t)| sender(ip, t))
            .collect();
        plaintext_senders.sort_by(|a, b| {
            b.sessions
                .cmp(&a.sessions)
                .then_with(|| by_ip(&a.ip, &b.ip))
        });
        let mut top_senders: Vec<Sender> = self
            .clients
            .iter()
            .filter(|(_, t)| t.sessions > t.probes)
            .map(|(ip, t)| sender(ip, t))
            .collect();
        top_senders.sort_by(|a, b| {
            (b.messages, b.sessions)
                .cmp(&(a.messages, a.sessions))
                .then_with(|| by_ip(&a.ip, &b.ip))
        });
        top_senders.truncate(TOP_SENDERS);

        let mut exceptions: Vec<Exception> = self
            .exceptions
            .iter()
            .map(|((tls, reason, category), by_client)| Exception {
                tls: tls.as_str().to_string(),
                reason: reason.clone(),
                category: category.as_str().to_string(),
                impact: impact(by_client),
            })
            .collect();
        let legacy_log = self.legacy_log.as_ref().map(|l| {
            // Summing up closes the sessions still open: on a copy, so the
            // report can be summarised again after more input.
            let mut l = l.clone();
            l.summary()
        });
        if let Some(l) = &legacy_log {
            for (reason, pick) in [
                (
                    "direct_tls",
                    (|p: &legacy_log::DirectPeer| p.tls) as fn(&_) -> u64,
                ),
                ("direct_plaintext", |p| p.plaintext),
            ] {
                let by_peer: Counts = l
                    .direct_peers
                    .iter()
                    .filter(|p| pick(p) > 0)
                    .map(|p| (p.ip.clone(), pick(p)))
                    .collect();
                if !by_peer.is_empty() {
                    exceptions.push(Exception {
                        tls: "legacy_log".into(),
                        reason: reason.into(),
                        category: "direct_to_legacy".into(),
                        impact: impact(&by_peer),
                    });
                }
            }
        }
        exceptions.sort_by(|a, b| {
            b.impact
                .sessions
                .cmp(&a.impact.sessions)
                .then_with(|| (&a.tls, &a.reason).cmp(&(&b.tls, &b.reason)))
        });
        let exception_sessions = exceptions.iter().map(|e| e.impact.sessions).sum();
        let verdict = if !exceptions.is_empty() {
            Verdict::No
        } else if self.sessions == 0 {
            Verdict::NoSessions
        } else {
            Verdict::Yes
        };
        let days = self
            .days
            .iter()
            .map(|(day, t)| Day {
                date: jiff::Timestamp::from_second(day * 86_400)
                    .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date().to_string())
                    .unwrap_or_default(),
                sessions: t.sessions,
                tls: t.tls,
                plaintext: t.plaintext,
                failed: t.failed,
                probes: t.probes,
                messages: t.messages,
                tls_percent: t.tls_percent(),
            })
            .collect();
        let mut hosts: Vec<Host> = self
            .hosts
            .iter()
            .map(|(host, (t, span))| Host {
                host: if host.is_empty() {
                    NONE.into()
                } else {
                    host.clone()
                },
                sessions: t.sessions,
                tls: t.tls,
                plaintext: t.plaintext,
                failed: t.failed,
                probes: t.probes,
                messages: t.messages,
                tls_percent: t.tls_percent(),
                blocking: t.blocking,
                first: span.first.map(|t| t.to_string()),
                last: span.last.map(|t| t.to_string()),
            })
            .collect();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        let simulations = self
            .opts
            .simulate
            .iter()
            .zip(&self.sims)
            .map(|(p, t)| {
                let impact = impact(&t.failing);
                Simulation {
                    policy: p.name.clone(),
                    description: p.description.clone(),
                    judged: t.judged,
                    inferred: t.inferred,
                    messages: t.messages,
                    messages_percent: percent(t.messages, self.messages),
                    sessions_percent: percent(impact.sessions, self.sessions),
                    impact,
                }
            })
            .collect();
        Summary {
            sources: self.sources.clone(),
            covered: Covered::of(self.opts.window, self.span.first, self.span.last),
            lines: self.lines,
            malformed_lines: self.malformed,
            first_malformed: self.first_malformed.clone(),
            outside_range: self.outside,
            duplicates: self.duplicates,
            health_checks: self.health_checks,
            sessions: self.sessions,
            tls_established: established,
            tls_established_percent: percent(established, self.sessions),
            starttls_used: self.starttls_used,
            implicit: self.implicit,
            tls_not_attempted: outcome(TlsOutcome::NotAttempted),
            tls_failed: outcome(TlsOutcome::Failed),
            tls_timeout: outcome(TlsOutcome::Timeout),
            messages: self.messages,
            categories: Category::ALL
                .iter()
                .map(|c| NameCount {
                    name: c.as_str().to_string(),
                    sessions: self.categories.get(c).copied().unwrap_or(0),
                })
                .collect(),
            versions: summary::sorted(&self.versions),
            cipher_suites: summary::sorted(&self.suites),
            groups: summary::sorted(&self.groups),
            sni: summary::sorted(&self.sni),
            cert_key_types: summary::sorted(&self.key_types),
            self_signed: self.self_signed,
            offered_versions: summary::sorted(&self.offered_versions),
            offered_groups: summary::sorted(&self.offered_groups),
            failures,
            plaintext_senders,
            top_senders,
            days,
            hosts,
            policy: Policy {
                require_tls: impact(&self.require_tls),
                require_tls_messages: self.require_tls_messages,
            },
            simulations,
            legacy_log,
            legacy_policy: self.opts.legacy.clone(),
            rules: verdict::RULES.iter().map(|r| r.to_string()).collect(),
            legacy_path_retired: verdict == Verdict::Yes,
            verdict,
            exception_sessions,
            exceptions,
        }
    }

    pub fn render_text(&self) -> String {
        render::text(&self.summary())
    }

    pub fn render_json(&self) -> String {
        let mut out = serde_json::to_string_pretty(&self.summary())
            .expect("a summary of strings and numbers always serializes");
        out.push('\n');
        out
    }

    pub fn render_html(&self) -> String {
        html::page(&self.summary())
    }
}

fn or_none<'a>(v: &'a Option<Cow<'_, str>>) -> &'a str {
    v.as_deref().unwrap_or(NONE)
}

fn bump(counts: &mut Counts, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_string(), 1);
        }
    }
}

/// One decimal, so 2 of 3 is 66.7 in text, JSON and HTML.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

/// The impact of something, from its sessions per client.
fn impact(by_client: &Counts) -> Impact {
    let mut top: Vec<ClientCount> = by_client
        .iter()
        .map(|(ip, sessions)| ClientCount {
            ip: ip.clone(),
            sessions: *sessions,
        })
        .collect();
    top.sort_by(|a, b| {
        b.sessions
            .cmp(&a.sessions)
            .then_with(|| by_ip(&a.ip, &b.ip))
    });
    top.truncate(TOP_CLIENTS);
    Impact {
        sessions: by_client.values().sum(),
        clients: by_client.len() as u64,
        top_clients: top,
    }
}

#[cfg(test)]
mod tests;

//! The facts a report states: what [`super::Report::summary`] computes and
//! every rendering (text, JSON, HTML) reads, so they cannot disagree. Plain
//! data, serialized as is for `--json` (keys documented in docs/report.md).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use super::legacy_log::LegacySummary;
use super::range::Covered;
use super::verdict::LegacyPolicy;

/// Everything the report says; serialized as is for `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub sources: Vec<String>,
    /// The time range covered: the window asked for, the first and last session.
    pub covered: Covered,
    pub lines: u64,
    pub malformed_lines: u64,
    pub first_malformed: Option<String>,
    /// Records outside `--since`/`--until`.
    pub outside_range: u64,
    /// Records seen before with the same host and session (the same file
    /// given twice, overlapping copies): counted once.
    pub duplicates: u64,
    /// A balancer's own connections (record `origin` `health_check`): not
    /// sessions, not senders, not in the verdict.
    pub health_checks: u64,
    pub sessions: u64,
    pub tls_established: u64,
    pub tls_established_percent: f64,
    pub starttls_used: u64,
    pub implicit: u64,
    pub tls_not_attempted: u64,
    pub tls_failed: u64,
    pub tls_timeout: u64,
    /// Messages the backend accepted, over all sessions.
    pub messages: u64,
    /// Sessions per category (see `verdict::Category`), every category listed.
    pub categories: Vec<NameCount>,
    pub versions: Vec<NameCount>,
    pub cipher_suites: Vec<NameCount>,
    pub groups: Vec<NameCount>,
    pub sni: Vec<NameCount>,
    pub cert_key_types: Vec<NameCount>,
    pub self_signed: u64,
    /// What clients offered (sessions with an offer): versions and groups.
    pub offered_versions: Vec<NameCount>,
    pub offered_groups: Vec<NameCount>,
    pub failures: Vec<FailureGroup>,
    /// Clients that never tried STARTTLS and did more than a probe.
    pub plaintext_senders: Vec<Sender>,
    /// The clients with the most messages (then sessions), with their outcomes.
    pub top_senders: Vec<Sender>,
    pub days: Vec<Day>,
    pub hosts: Vec<Host>,
    pub policy: Policy,
    pub simulations: Vec<Simulation>,
    pub legacy_log: Option<LegacySummary>,
    pub legacy_policy: LegacyPolicy,
    pub rules: Vec<String>,
    pub legacy_path_retired: bool,
    pub verdict: Verdict,
    pub exception_sessions: u64,
    /// The sessions that keep the verdict from yes, grouped.
    pub exceptions: Vec<Exception>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameCount {
    pub name: String,
    pub sessions: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientCount {
    pub ip: String,
    pub sessions: u64,
}

/// How many sessions and distinct clients something concerns, and the
/// clients with the most sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Impact {
    pub sessions: u64,
    pub clients: u64,
    pub top_clients: Vec<ClientCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureGroup {
    pub reason: String,
    /// `stricter_than_legacy`, `legacy_would_fail`, `no_client_hello`, `after_offer`.
    pub category: String,
    #[serde(flatten)]
    pub impact: Impact,
}

/// One client and what its sessions came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sender {
    pub ip: String,
    pub sessions: u64,
    pub messages: u64,
    pub tls: u64,
    pub plaintext: u64,
    pub failed: u64,
    pub probes: u64,
    /// The best TLS version it established, if any.
    pub best_version: Option<String>,
}

/// One UTC day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    pub date: String,
    pub sessions: u64,
    pub tls: u64,
    pub plaintext: u64,
    pub failed: u64,
    pub probes: u64,
    pub messages: u64,
    /// TLS established over sessions that were not probes, one decimal.
    pub tls_percent: f64,
}

/// One tlsfront host of a fleet (`host` in the records).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    pub host: String,
    pub sessions: u64,
    pub tls: u64,
    pub plaintext: u64,
    pub failed: u64,
    pub probes: u64,
    pub messages: u64,
    pub tls_percent: f64,
    pub blocking: u64,
    pub first: Option<String>,
    pub last: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Plaintext senders' sessions (probes left out): refused if TLS were required.
    pub require_tls: Impact,
    pub require_tls_messages: u64,
}

/// What a stricter policy would break.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Simulation {
    pub policy: String,
    pub description: String,
    /// Sessions established today that were judged.
    pub judged: u64,
    /// Of those, judged from what was negotiated (no `offer` in the record).
    pub inferred: u64,
    /// Established today, failing under the policy.
    #[serde(flatten)]
    pub impact: Impact,
    pub messages: u64,
    /// Their share of the mail (messages accepted) and of the sessions.
    pub messages_percent: f64,
    pub sessions_percent: f64,
}

/// A group of sessions that keeps the verdict from yes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exception {
    /// `failed`, `timeout`, `established`, or `legacy_log` (a direct session).
    pub tls: String,
    /// A `failure_reason`, `old_version_<v>`, or `direct_tls` / `direct_plaintext`.
    pub reason: String,
    pub category: String,
    #[serde(flatten)]
    pub impact: Impact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No sender needs the legacy TLS path (by the rules stated).
    Yes,
    /// Some sessions are exceptions.
    No,
    /// Nothing to judge: no sessions in the selected records.
    NoSessions,
}

/// Client addresses in numeric order (IPv4 before IPv6), text after.
pub fn by_ip(a: &str, b: &str) -> Ordering {
    let key = |s: &str| match s.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V4(v4)) => (0u8, u128::from(u32::from(v4))),
        Ok(IpAddr::V6(v6)) => (1, u128::from(v6)),
        Err(_) => (2, 0),
    };
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

/// Counts sorted by sessions (most first), then by name.
pub fn sorted(counts: &HashMap<String, u64>) -> Vec<NameCount> {
    let mut v: Vec<NameCount> = counts
        .iter()
        .map(|(name, sessions)| NameCount {
            name: name.clone(),
            sessions: *sessions,
        })
        .collect();
    v.sort_by(|a, b| {
        b.sessions
            .cmp(&a.sessions)
            .then_with(|| a.name.cmp(&b.name))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_sort_as_numbers() {
        let mut v = vec![
            "127.0.0.20",
            "2001:db8::1",
            "127.0.0.6",
            "(unknown)",
            "::ffff:10.0.0.1",
            "10.0.0.2",
            "2001:db8::10",
        ];
        v.sort_by(|a, b| by_ip(a, b));
        assert_eq!(
            v,
            [
                "::ffff:10.0.0.1",
                "10.0.0.2",
                "127.0.0.6",
                "127.0.0.20",
                "2001:db8::1",
                "2001:db8::10",
                "(unknown)"
            ]
        );
    }
}

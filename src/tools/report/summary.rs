//! The facts a report states: what [`super::Report::summary`] computes and
//! both renderings read, so the text and the JSON cannot disagree. Plain
//! data, serialized as is for `--json` (keys documented in the README).

use serde::Serialize;

/// Everything the report says; serialized as is for `--json` (keys documented
/// in the README, stable).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub sources: Vec<String>,
    pub since: Option<String>,
    pub lines: u64,
    pub malformed_lines: u64,
    pub first_malformed: Option<String>,
    pub older_than_since: u64,
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
    pub versions: Vec<NameCount>,
    pub cipher_suites: Vec<NameCount>,
    pub groups: Vec<NameCount>,
    pub sni: Vec<NameCount>,
    pub cert_key_types: Vec<NameCount>,
    pub self_signed: u64,
    pub failures: Vec<FailureGroup>,
    pub never_tls_clients: Vec<ClientCount>,
    pub policy: Policy,
    pub legacy_path_retired: bool,
    pub verdict: Verdict,
    pub exception_sessions: u64,
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
    #[serde(flatten)]
    pub impact: Impact,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Sessions that never started TLS: refused if TLS were required.
    pub require_tls: Impact,
    /// Sessions established below TLS 1.3: broken if only 1.3 were offered.
    pub tls13_only: Impact,
}

/// A group of sessions that did not end at tlsfront with modern TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exception {
    /// `not_attempted`, `failed`, `timeout` (or `established` with an old version).
    pub tls: String,
    /// `plaintext`, a `failure_reason`, or `old_version_<v>` / `unknown_version`.
    pub reason: String,
    #[serde(flatten)]
    pub impact: Impact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every session used modern TLS at tlsfront.
    Yes,
    /// Some sessions are exceptions.
    No,
    /// Nothing to judge: no sessions in the selected records.
    NoSessions,
}

//! `tlsfront report`: turns record lines into the facts an admin asks about:
//! how much mail arrives over TLS and with what, who fails and why, what a
//! stricter policy would break, and whether the legacy TLS path is retired.
//!
//! Pure: [`Report::add_line`] takes one line, [`Report::summary`] computes the
//! facts, and both renderings read the same [`Summary`] (plain data, in
//! `summary`), so the text and the JSON cannot disagree. Reading files
//! (plain or gzip) is in [`input`]; the text layout is in `render`, which
//! sees only the summary.

pub mod input;
mod render;
mod summary;

use std::collections::HashMap;

use serde::Deserialize;

use crate::outcome::{Mode, Origin, TlsOutcome};
pub use summary::{
    ClientCount, Exception, FailureGroup, Impact, NameCount, Policy, Summary, Verdict,
};

/// Clients listed per failure reason, policy and exception.
pub const TOP_CLIENTS: usize = 5;

/// The record fields the report reads. Other fields are ignored, so records
/// written by older or newer versions still count.
#[derive(Debug, Deserialize)]
pub struct RecordLine {
    pub ts: String,
    pub tls: TlsOutcome,
    pub mode: Option<Mode>,
    pub origin: Option<Origin>,
    pub client_ip: Option<String>,
    pub sni: Option<String>,
    pub starttls_used: Option<bool>,
    pub tls_version: Option<String>,
    pub cipher_suite: Option<String>,
    pub kx_group: Option<String>,
    pub cert_key_type: Option<String>,
    pub self_signed: Option<bool>,
    pub failure_reason: Option<String>,
}

/// Shown for a value the record leaves null.
const NONE: &str = "(none)";

/// Sessions per name (a TLS version, a client IP, ...).
type Counts = HashMap<String, u64>;

/// Running totals over record lines; cheap per line, sorted only at the end.
#[derive(Debug, Default)]
pub struct Report {
    since: Option<jiff::Timestamp>,
    sources: Vec<String>,
    lines: u64,
    malformed: u64,
    first_malformed: Option<String>,
    older: u64,
    /// A balancer's health checks: counted apart, never sessions or senders.
    health_checks: u64,
    sessions: u64,
    outcomes: HashMap<TlsOutcome, u64>,
    starttls_used: u64,
    implicit: u64,
    versions: Counts,
    suites: Counts,
    groups: Counts,
    sni: Counts,
    key_types: Counts,
    self_signed: u64,
    /// failure_reason → sessions per client.
    failures: HashMap<String, Counts>,
    /// client → (sessions, sessions that attempted TLS).
    clients: HashMap<String, (u64, u64)>,
    require_tls: Counts,
    tls13_only: Counts,
    /// (tls outcome, reason) → sessions per client.
    exceptions: HashMap<(TlsOutcome, String), Counts>,
}

impl Report {
    /// A report over sessions that ended at or after `since` (all if `None`).
    pub fn new(since: Option<jiff::Timestamp>) -> Self {
        Report {
            since,
            ..Report::default()
        }
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

    /// Counts one well-formed record that ended at `ts`.
    pub fn add(&mut self, ts: jiff::Timestamp, r: &RecordLine) {
        if self.since.is_some_and(|since| ts < since) {
            self.older += 1;
            return;
        }
        if r.origin == Some(Origin::HealthCheck) {
            self.health_checks += 1;
            return;
        }
        self.sessions += 1;
        *self.outcomes.entry(r.tls).or_default() += 1;
        if r.starttls_used == Some(true) {
            self.starttls_used += 1;
        }
        if r.mode == Some(Mode::Implicit) {
            self.implicit += 1;
        }
        let client = r.client_ip.as_deref().unwrap_or("(unknown)");
        let tally = self.clients.entry(client.to_string()).or_default();
        tally.0 += 1;
        if r.tls != TlsOutcome::NotAttempted {
            tally.1 += 1;
            bump(&mut self.sni, or_none(&r.sni));
        }

        let exception = match r.tls {
            TlsOutcome::Established => {
                bump(&mut self.versions, or_none(&r.tls_version));
                bump(&mut self.suites, or_none(&r.cipher_suite));
                bump(&mut self.groups, or_none(&r.kx_group));
                bump(&mut self.key_types, or_none(&r.cert_key_type));
                if r.self_signed == Some(true) {
                    self.self_signed += 1;
                }
                if r.tls_version.as_deref() != Some("TLSv1.3") {
                    bump(&mut self.tls13_only, client);
                }
                // tlsfront only offers 1.2 and 1.3, so this is a guard against
                // records from some other writer or a future misconfiguration.
                match r.tls_version.as_deref() {
                    Some("TLSv1.2" | "TLSv1.3") => None,
                    Some(v) => Some(format!("old_version_{v}")),
                    None => Some("unknown_version".to_string()),
                }
            }
            TlsOutcome::NotAttempted => {
                bump(&mut self.require_tls, client);
                Some("plaintext".to_string())
            }
            TlsOutcome::Failed | TlsOutcome::Timeout => {
                let reason = r.failure_reason.as_deref().unwrap_or("unknown");
                bump(self.failures.entry(reason.to_string()).or_default(), client);
                Some(reason.to_string())
            }
        };
        if let Some(reason) = exception {
            bump(self.exceptions.entry((r.tls, reason)).or_default(), client);
        }
    }

    /// The facts, sorted: by sessions (descending), then by name.
    pub fn summary(&self) -> Summary {
        let outcome = |o| self.outcomes.get(&o).copied().unwrap_or(0);
        let established = outcome(TlsOutcome::Established);
        let mut failures: Vec<FailureGroup> = self
            .failures
            .iter()
            .map(|(reason, by_client)| FailureGroup {
                reason: reason.clone(),
                impact: impact(by_client),
            })
            .collect();
        failures
            .sort_by(|a, b| (b.impact.sessions, &a.reason).cmp(&(a.impact.sessions, &b.reason)));
        let mut never_tls: Vec<ClientCount> = self
            .clients
            .iter()
            .filter(|(_, (_, attempted))| *attempted == 0)
            .map(|(ip, (sessions, _))| ClientCount {
                ip: ip.clone(),
                sessions: *sessions,
            })
            .collect();
        never_tls.sort_by(|a, b| (b.sessions, &a.ip).cmp(&(a.sessions, &b.ip)));
        let mut exceptions: Vec<Exception> = self
            .exceptions
            .iter()
            .map(|((tls, reason), by_client)| Exception {
                tls: tls.as_str().to_string(),
                reason: reason.clone(),
                impact: impact(by_client),
            })
            .collect();
        exceptions.sort_by(|a, b| {
            (b.impact.sessions, &a.tls, &a.reason).cmp(&(a.impact.sessions, &b.tls, &b.reason))
        });
        let exception_sessions = exceptions.iter().map(|e| e.impact.sessions).sum();
        let verdict = if self.sessions == 0 {
            Verdict::NoSessions
        } else if exceptions.is_empty() {
            Verdict::Yes
        } else {
            Verdict::No
        };
        Summary {
            sources: self.sources.clone(),
            since: self.since.map(|t| t.to_string()),
            lines: self.lines,
            malformed_lines: self.malformed,
            first_malformed: self.first_malformed.clone(),
            older_than_since: self.older,
            health_checks: self.health_checks,
            sessions: self.sessions,
            tls_established: established,
            tls_established_percent: percent(established, self.sessions),
            starttls_used: self.starttls_used,
            implicit: self.implicit,
            tls_not_attempted: outcome(TlsOutcome::NotAttempted),
            tls_failed: outcome(TlsOutcome::Failed),
            tls_timeout: outcome(TlsOutcome::Timeout),
            versions: sorted(&self.versions),
            cipher_suites: sorted(&self.suites),
            groups: sorted(&self.groups),
            sni: sorted(&self.sni),
            cert_key_types: sorted(&self.key_types),
            self_signed: self.self_signed,
            failures,
            never_tls_clients: never_tls,
            policy: Policy {
                require_tls: impact(&self.require_tls),
                tls13_only: impact(&self.tls13_only),
            },
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
}

fn or_none(v: &Option<String>) -> &str {
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

/// One decimal, so 2 of 3 is 66.7 in both text and JSON.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

fn sorted(counts: &Counts) -> Vec<NameCount> {
    let mut v: Vec<NameCount> = counts
        .iter()
        .map(|(name, sessions)| NameCount {
            name: name.clone(),
            sessions: *sessions,
        })
        .collect();
    v.sort_by(|a, b| (b.sessions, &a.name).cmp(&(a.sessions, &b.name)));
    v
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
    top.sort_by(|a, b| (b.sessions, &a.ip).cmp(&(a.sessions, &b.ip)));
    top.truncate(TOP_CLIENTS);
    Impact {
        sessions: by_client.values().sum(),
        clients: by_client.len() as u64,
        top_clients: top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::collections::BTreeSet;

    const TS: &str = "2026-11-23T12:00:00.000Z";

    /// A record line like tlsfront writes, with `overrides` applied.
    fn line(ip: &str, tls: &str, overrides: Value) -> Vec<u8> {
        let mut r = json!({
            "ts": TS, "session": "t-1", "listener": "192.0.2.1:25", "mode": "starttls",
            "client_ip": ip, "client_port": 40000, "server_hostname": "mx.example.test",
            "sni": null, "starttls_offered": true, "starttls_used": tls != "not_attempted",
            "tls": tls, "tls_version": null, "cipher_suite": null, "kx_group": null,
            "cert_subject": null, "cert_key_type": null, "self_signed": false,
            "failure_reason": null, "close_reason": "client_quit", "duration_ms": 1.0
        });
        if tls == "established" {
            r["tls_version"] = json!("TLSv1.3");
            r["cipher_suite"] = json!("TLS13_AES_256_GCM_SHA384");
            r["kx_group"] = json!("X25519");
            r["cert_key_type"] = json!("ecdsa_p256");
            r["sni"] = json!("mx.example.test");
        }
        for (k, v) in overrides.as_object().unwrap() {
            r[k] = v.clone();
        }
        serde_json::to_vec(&r).unwrap()
    }

    fn report(lines: &[Vec<u8>]) -> Report {
        let mut rep = Report::new(None);
        rep.begin_source("t.jsonl");
        for (i, l) in lines.iter().enumerate() {
            rep.add_line(l, || format!("t.jsonl:{}", i + 1));
        }
        rep
    }

    fn est12(ip: &str) -> Vec<u8> {
        line(
            ip,
            "established",
            json!({"tls_version": "TLSv1.2",
                   "cipher_suite": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                   "kx_group": "secp256r1", "cert_key_type": "rsa_2048"}),
        )
    }

    fn failed(ip: &str, reason: &str) -> Vec<u8> {
        line(ip, "failed", json!({ "failure_reason": reason }))
    }

    fn names(v: &[NameCount]) -> Vec<(&str, u64)> {
        v.iter().map(|n| (n.name.as_str(), n.sessions)).collect()
    }

    fn ips(v: &[ClientCount]) -> Vec<(&str, u64)> {
        v.iter().map(|c| (c.ip.as_str(), c.sessions)).collect()
    }

    #[test]
    fn totals() {
        let s = report(&[
            line("192.0.2.1", "established", json!({})),
            line(
                "192.0.2.1",
                "established",
                json!({"mode": "implicit", "starttls_used": false}),
            ),
            est12("192.0.2.2"),
            line("192.0.2.3", "not_attempted", json!({})),
            failed("192.0.2.4", "no_shared_cipher_suite"),
            line(
                "192.0.2.5",
                "timeout",
                json!({"failure_reason": "handshake_timeout"}),
            ),
        ])
        .summary();
        assert_eq!(s.sessions, 6);
        assert_eq!(s.lines, 6);
        assert_eq!(s.tls_established, 3);
        assert_eq!(s.tls_established_percent, 50.0);
        assert_eq!(
            s.starttls_used, 4,
            "implicit and plaintext sessions never send STARTTLS"
        );
        assert_eq!(s.implicit, 1);
        assert_eq!(s.tls_not_attempted, 1);
        assert_eq!(s.tls_failed, 1);
        assert_eq!(s.tls_timeout, 1);
        assert_eq!(s.malformed_lines, 0);
        assert_eq!(s.sources, vec!["t.jsonl"]);
        assert_eq!(percent(2, 3), 66.7);
        assert_eq!(percent(0, 0), 0.0);
    }

    #[test]
    fn grouping_by_version_suite_group_sni_and_key_type() {
        let s = report(&[
            line("192.0.2.1", "established", json!({})),
            line("192.0.2.1", "established", json!({"self_signed": true})),
            est12("192.0.2.2"),
            line(
                "192.0.2.2",
                "established",
                json!({"kx_group": null, "sni": null}),
            ),
            failed("192.0.2.4", "alert_unknown_ca"),
            line("192.0.2.3", "not_attempted", json!({})),
        ])
        .summary();
        assert_eq!(names(&s.versions), [("TLSv1.3", 3), ("TLSv1.2", 1)]);
        assert_eq!(
            names(&s.cipher_suites),
            [
                ("TLS13_AES_256_GCM_SHA384", 3),
                ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 1)
            ]
        );
        assert_eq!(
            names(&s.groups),
            [("X25519", 2), ("(none)", 1), ("secp256r1", 1)]
        );
        // SNI over every session that attempted TLS, failures included.
        assert_eq!(names(&s.sni), [("mx.example.test", 3), ("(none)", 2)]);
        assert_eq!(
            names(&s.cert_key_types),
            [("ecdsa_p256", 3), ("rsa_2048", 1)]
        );
        assert_eq!(s.self_signed, 1);
        assert_eq!(s.failures.len(), 1);
        assert_eq!(s.failures[0].reason, "alert_unknown_ca");
        assert_eq!(ips(&s.never_tls_clients), [("192.0.2.3", 1)]);
    }

    #[test]
    fn top_clients_by_count_then_address_at_most_five() {
        let mut lines = Vec::new();
        // .9 three times, .8 and .1 twice, then four clients once.
        for ip in ["9", "9", "9", "8", "1", "8", "1", "7", "6", "5", "4"] {
            lines.push(failed(&format!("192.0.2.{ip}"), "no_shared_group"));
        }
        lines.push(failed("192.0.2.1", "not_tls"));
        let s = report(&lines).summary();
        assert_eq!(s.failures[0].reason, "no_shared_group");
        assert_eq!(s.failures[0].impact.sessions, 11);
        assert_eq!(s.failures[0].impact.clients, 7);
        assert_eq!(
            ips(&s.failures[0].impact.top_clients),
            [
                ("192.0.2.9", 3),
                ("192.0.2.1", 2),
                ("192.0.2.8", 2),
                ("192.0.2.4", 1),
                ("192.0.2.5", 1)
            ]
        );
        assert_eq!(s.failures[1].reason, "not_tls");
        // Equal counts: by name, so the output never depends on hashing.
        let s = report(&[
            failed("192.0.2.2", "b_reason"),
            failed("192.0.2.1", "a_reason"),
        ])
        .summary();
        let reasons: Vec<&str> = s.failures.iter().map(|f| f.reason.as_str()).collect();
        assert_eq!(reasons, ["a_reason", "b_reason"]);
    }

    #[test]
    fn health_checks_are_counted_apart_and_never_senders() {
        let check = |ip: &str| {
            line(
                ip,
                "not_attempted",
                json!({"origin": "health_check", "close_reason": "client_quit"}),
            )
        };
        let rep = report(&[
            check("192.0.2.50"),
            check("192.0.2.50"),
            line("192.0.2.1", "established", json!({"origin": "proxied"})),
            line("192.0.2.2", "established", json!({})),
        ]);
        let s = rep.summary();
        assert_eq!(s.health_checks, 2);
        assert_eq!(s.sessions, 2);
        assert_eq!(s.tls_not_attempted, 0);
        assert!(s.never_tls_clients.is_empty());
        assert_eq!(
            s.verdict,
            Verdict::Yes,
            "a balancer's checks never block it"
        );
        assert!(
            rep.render_text()
                .contains("2 health checks from a balancer not counted")
        );
    }

    #[test]
    fn since_leaves_out_older_sessions() {
        let since: jiff::Timestamp = "2026-11-23T00:00:00Z".parse().unwrap();
        let mut rep = Report::new(Some(since));
        let old = line(
            "192.0.2.1",
            "not_attempted",
            json!({"ts": "2026-11-22T23:59:59.999Z"}),
        );
        let edge = line(
            "192.0.2.2",
            "established",
            json!({"ts": "2026-11-23T00:00:00.000Z"}),
        );
        let new = line(
            "192.0.2.3",
            "established",
            json!({"ts": "2026-11-23T08:00:00+02:00"}),
        );
        for l in [old, edge, new] {
            rep.add_line(&l, String::new);
        }
        let s = rep.summary();
        assert_eq!(s.sessions, 2);
        assert_eq!(s.older_than_since, 1);
        assert_eq!(s.since.as_deref(), Some("2026-11-23T00:00:00Z"));
        assert_eq!(
            s.verdict,
            Verdict::Yes,
            "the old plaintext session is out of range"
        );
    }

    #[test]
    fn malformed_lines_are_counted_never_fatal() {
        let s = report(&[
            line("192.0.2.1", "established", json!({})),
            b"not json".to_vec(),
            b"".to_vec(),
            b"   ".to_vec(),
            br#"{"ts":"2026-11-23T12:00:00Z"}"#.to_vec(),
            line("192.0.2.1", "established", json!({"ts": null})),
            line("192.0.2.1", "established", json!({"ts": "yesterday"})),
            line("192.0.2.1", "mostly", json!({})),
            // `mode` is a closed set, like `tls`.
            line("192.0.2.1", "established", json!({"mode": "smtps"})),
            b"{\"ts\":\"2026-11-23T12:00:00Z\",\"tls\":\"failed\",\"sni\":\"\xff\"}".to_vec(),
            br#"{"ts":"2026-11-23T12:00:00Z","tls":"failed"}"#.to_vec(),
        ])
        .summary();
        assert_eq!(s.malformed_lines, 7, "blank lines are not malformed");
        assert_eq!(s.first_malformed.as_deref(), Some("t.jsonl:2"));
        assert_eq!(s.lines, 9);
        // A minimal record is fine: only ts and tls are required.
        assert_eq!(s.sessions, 2);
        assert_eq!(s.tls_failed, 1);
        assert_eq!(s.failures[0].reason, "unknown");
        assert_eq!(ips(&s.failures[0].impact.top_clients), [("(unknown)", 1)]);
    }

    #[test]
    fn verdict_yes_when_every_session_used_modern_tls() {
        let rep = report(&[
            line("192.0.2.1", "established", json!({})),
            est12("192.0.2.2"),
        ]);
        let s = rep.summary();
        assert_eq!(s.verdict, Verdict::Yes);
        assert!(s.legacy_path_retired);
        assert!(s.exceptions.is_empty());
        assert_eq!(s.policy.require_tls.sessions, 0);
        assert_eq!(s.policy.tls13_only.sessions, 1);
        assert_eq!(ips(&s.policy.tls13_only.top_clients), [("192.0.2.2", 1)]);
        assert!(
            rep.render_text().contains(
                "\nLegacy path retired: YES — every session used modern TLS at tlsfront\n"
            )
        );
    }

    #[test]
    fn verdict_no_lists_exceptions_by_reason() {
        let rep = report(&[
            line("192.0.2.1", "established", json!({})),
            line("192.0.2.7", "not_attempted", json!({})),
            line("192.0.2.7", "not_attempted", json!({})),
            line("192.0.2.8", "not_attempted", json!({})),
            failed("192.0.2.9", "no_shared_cipher_suite"),
            line(
                "192.0.2.9",
                "timeout",
                json!({"failure_reason": "handshake_timeout"}),
            ),
            line(
                "192.0.2.6",
                "established",
                json!({"tls_version": "TLSv1.1"}),
            ),
        ]);
        let s = rep.summary();
        assert_eq!(s.verdict, Verdict::No);
        assert!(!s.legacy_path_retired);
        assert_eq!(s.exception_sessions, 6);
        let groups: Vec<(&str, &str, u64, u64)> = s
            .exceptions
            .iter()
            .map(|e| {
                (
                    e.tls.as_str(),
                    e.reason.as_str(),
                    e.impact.sessions,
                    e.impact.clients,
                )
            })
            .collect();
        assert_eq!(
            groups,
            [
                ("not_attempted", "plaintext", 3, 2),
                ("established", "old_version_TLSv1.1", 1, 1),
                ("failed", "no_shared_cipher_suite", 1, 1),
                ("timeout", "handshake_timeout", 1, 1),
            ]
        );
        assert_eq!(s.policy.require_tls.sessions, 3);
        assert_eq!(s.policy.require_tls.clients, 2);
        // .9 tried TLS (and failed): it is a failure, not a never-TLS client.
        assert_eq!(
            ips(&s.never_tls_clients),
            [("192.0.2.7", 2), ("192.0.2.8", 1)]
        );
        let text = rep.render_text();
        assert!(
            text.contains("\nLegacy path retired: NO — 6 sessions are exceptions:\n"),
            "{text}"
        );
    }

    #[test]
    fn no_sessions_is_not_a_yes() {
        let s = report(&[]).summary();
        assert_eq!(s.verdict, Verdict::NoSessions);
        assert!(!s.legacy_path_retired);
    }

    #[test]
    fn text_output_is_exact_and_aligned() {
        let mut rep = report(&[
            line("192.0.2.1", "established", json!({})),
            line("192.0.2.1", "established", json!({})),
            est12("198.51.100.20"),
            line("203.0.113.5", "not_attempted", json!({})),
            failed("198.51.100.7", "no_shared_cipher_suite"),
            b"garbage".to_vec(),
        ]);
        rep.begin_source("old.jsonl.gz");
        let expected = "\
tlsfront report: 5 sessions from t.jsonl, old.jsonl.gz
1 malformed line skipped (first at t.jsonl:6)

Sessions
  sessions           5
  TLS established    3  60.0%
  STARTTLS used      4
  implicit TLS       0
  TLS not attempted  1
  TLS failed         1
  TLS timeout        0

TLS versions
  TLSv1.3  2
  TLSv1.2  1

Cipher suites
  TLS13_AES_256_GCM_SHA384               2
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256  1

Key exchange groups
  X25519     2
  secp256r1  1

SNI names (sessions that attempted TLS)
  mx.example.test  3
  (none)           1

Certificates served (key type)
  ecdsa_p256  2
  rsa_2048    1

TLS failures by reason (sessions, clients, top clients)
  no_shared_cipher_suite  1 session  1 client  198.51.100.7 (1)

Clients that never used TLS
  203.0.113.5  1 session

Stricter policy
  require TLS would refuse 1 session from 1 client: 203.0.113.5 (1)
  TLS 1.3 only would break 1 session from 1 client (TLS 1.2 users): 198.51.100.20 (1)

Legacy path retired: NO — 2 sessions are exceptions:
  failed         no_shared_cipher_suite  1 session  1 client  198.51.100.7 (1)
  not_attempted  plaintext               1 session  1 client  203.0.113.5 (1)
";
        assert_eq!(rep.render_text(), expected);
    }

    #[test]
    fn json_has_the_documented_keys() {
        let rep = report(&[
            line("192.0.2.1", "established", json!({})),
            failed("192.0.2.9", "no_shared_group"),
        ]);
        let v: Value = serde_json::from_str(&rep.render_json()).unwrap();
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "sources",
                "since",
                "lines",
                "malformed_lines",
                "first_malformed",
                "older_than_since",
                "health_checks",
                "sessions",
                "tls_established",
                "tls_established_percent",
                "starttls_used",
                "implicit",
                "tls_not_attempted",
                "tls_failed",
                "tls_timeout",
                "versions",
                "cipher_suites",
                "groups",
                "sni",
                "cert_key_types",
                "self_signed",
                "failures",
                "never_tls_clients",
                "policy",
                "legacy_path_retired",
                "verdict",
                "exception_sessions",
                "exceptions"
            ])
        );
        assert_eq!(v["verdict"], "no");
        assert_eq!(v["versions"][0], json!({"name": "TLSv1.3", "sessions": 1}));
        assert_eq!(
            v["failures"][0],
            json!({"reason": "no_shared_group", "sessions": 1, "clients": 1,
                   "top_clients": [{"ip": "192.0.2.9", "sessions": 1}]})
        );
        assert_eq!(
            v["exceptions"][0],
            json!({"tls": "failed", "reason": "no_shared_group", "sessions": 1, "clients": 1,
                   "top_clients": [{"ip": "192.0.2.9", "sessions": 1}]})
        );
        assert_eq!(v["policy"]["require_tls"]["sessions"], 0);
        assert_eq!(v["policy"]["tls13_only"]["top_clients"], json!([]));
    }
}

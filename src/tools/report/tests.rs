//! The report over record lines like tlsfront writes them: the verdict in
//! each honest case, merging hosts, the range, simulations, the outputs.

use super::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const TS: &str = "2026-11-23T12:00:00.000Z";

/// A record line like tlsfront writes, with `overrides` applied. Plaintext
/// and failed sessions did real work (the backend was contacted) unless the
/// overrides say otherwise.
fn line(ip: &str, tls: &str, overrides: Value) -> Vec<u8> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut r = json!({
        "ts": TS, "host": "mx1", "session": format!("t-{n}"), "listener": "192.0.2.1:25",
        "mode": "starttls", "client_ip": ip, "client_port": 40000,
        "server_hostname": "mx.example.test", "sni": null, "starttls_offered": true,
        "starttls_used": tls != "not_attempted", "tls": tls, "tls_version": null,
        "cipher_suite": null, "kx_group": null, "cert_subject": null, "cert_key_type": null,
        "self_signed": false, "failure_reason": null, "offer": null, "client_hello": null,
        "messages_accepted": 0, "recipients": 0, "backend_contacted": tls == "not_attempted",
        "tls_required_refusals": 0, "close_reason": "client_quit", "duration_ms": 1.0
    });
    if tls == "established" {
        r["tls_version"] = json!("TLSv1.3");
        r["cipher_suite"] = json!("TLS13_AES_256_GCM_SHA384");
        r["kx_group"] = json!("X25519MLKEM768");
        r["cert_key_type"] = json!("ecdsa_p256");
        r["sni"] = json!("mx.example.test");
        r["backend_contacted"] = json!(true);
        r["messages_accepted"] = json!(1);
        r["offer"] = json!({"versions": ["TLSv1.3", "TLSv1.2"],
            "groups": ["X25519MLKEM768", "X25519", "secp256r1"],
            "sigs": ["ecdsa", "rsa_pss", "rsa_pkcs1"],
            "suites": ["tls13", "ecdhe_ecdsa", "ecdhe_rsa"]});
    }
    for (k, v) in overrides.as_object().unwrap() {
        r[k] = v.clone();
    }
    serde_json::to_vec(&r).unwrap()
}

fn report_with(opts: Options, lines: &[Vec<u8>]) -> Report {
    let mut rep = Report::new(opts);
    rep.begin_source("t.jsonl");
    for (i, l) in lines.iter().enumerate() {
        rep.add_line(l, || format!("t.jsonl:{}", i + 1));
    }
    rep
}

fn report(lines: &[Vec<u8>]) -> Report {
    report_with(Options::with_window(Window::default()), lines)
}

/// A scanner or health check: connect, maybe EHLO, QUIT; nothing more.
fn probe(ip: &str) -> Vec<u8> {
    line(
        ip,
        "not_attempted",
        json!({"backend_contacted": false, "starttls_used": false}),
    )
}

/// A sender that never tries STARTTLS and delivers in clear.
fn plaintext(ip: &str) -> Vec<u8> {
    line(ip, "not_attempted", json!({"messages_accepted": 2}))
}

/// A TLS 1.2 sender with ECDHE-RSA.
fn est12(ip: &str) -> Vec<u8> {
    line(
        ip,
        "established",
        json!({"tls_version": "TLSv1.2",
               "cipher_suite": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
               "kx_group": "secp256r1", "cert_key_type": "rsa_2048",
               "offer": {"versions": ["TLSv1.2"], "groups": ["secp256r1"],
                         "sigs": ["rsa_pkcs1"], "suites": ["ecdhe_rsa", "rsa_cbc"]}}),
    )
}

/// A sender that speaks TLS 1.0 with RSA key exchange only: the legacy MTA
/// took it, tlsfront cannot.
fn tls10_only(ip: &str) -> Vec<u8> {
    line(
        ip,
        "failed",
        json!({"failure_reason": "client_tls_version_too_old",
               "offer": {"versions": ["TLSv1.0"], "groups": [], "sigs": [],
                         "suites": ["rsa_cbc", "weak"]},
               "close_reason": "handshake_failed"}),
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

fn category(s: &Summary, name: &str) -> u64 {
    s.categories
        .iter()
        .find(|c| c.name == name)
        .unwrap()
        .sessions
}

fn exceptions(s: &Summary) -> Vec<(&str, &str, &str, u64)> {
    s.exceptions
        .iter()
        .map(|e| {
            (
                e.tls.as_str(),
                e.reason.as_str(),
                e.category.as_str(),
                e.impact.sessions,
            )
        })
        .collect()
}

// ---------------------------------------------------------------- the verdict

#[test]
fn modern_tls_senders_say_yes() {
    let rep = report(&[
        line("192.0.2.1", "established", json!({})),
        est12("192.0.2.2"),
    ]);
    let s = rep.summary();
    assert_eq!(s.verdict, Verdict::Yes);
    assert!(s.legacy_path_retired);
    assert_eq!(category(&s, "modern_tls"), 2);
    let text = rep.render_text();
    assert!(
        text.contains(
            "\nLegacy path retired: YES — no sender needs the legacy TLS path from \
             2026-11-23T12:00:00Z to 2026-11-23T12:00:00Z\n"
        ),
        "{text}"
    );
}

#[test]
fn scanners_and_health_checks_never_block() {
    let s = report(&[
        line("192.0.2.1", "established", json!({})),
        probe("203.0.113.1"),
        probe("203.0.113.2"),
        probe("203.0.113.3"),
        line(
            "203.0.113.9",
            "not_attempted",
            json!({"backend_contacted": false, "close_reason": "early_talker"}),
        ),
        line(
            "203.0.113.4",
            "not_attempted",
            json!({"backend_contacted": false, "close_reason": "connection_limit"}),
        ),
    ])
    .summary();
    assert_eq!(s.verdict, Verdict::Yes, "{:?}", s.exceptions);
    assert_eq!(category(&s, "probe"), 4);
    assert_eq!(category(&s, "refused_at_connect"), 1);
    assert!(
        s.plaintext_senders.is_empty(),
        "probes are not plaintext senders"
    );
    assert_eq!(s.policy.require_tls.sessions, 0);
}

#[test]
fn plaintext_senders_are_listed_as_a_fact_not_a_failure() {
    let s = report(&[
        line("192.0.2.1", "established", json!({})),
        plaintext("198.51.100.20"),
        plaintext("198.51.100.20"),
        plaintext("198.51.100.7"),
        // A plaintext session stopped by require_tls = true: mail was tried.
        line(
            "198.51.100.8",
            "not_attempted",
            json!({"backend_contacted": false, "tls_required_refusals": 1}),
        ),
    ])
    .summary();
    assert_eq!(s.verdict, Verdict::Yes, "{:?}", s.exceptions);
    assert_eq!(category(&s, "plaintext"), 4);
    let listed: Vec<(&str, u64, u64)> = s
        .plaintext_senders
        .iter()
        .map(|p| (p.ip.as_str(), p.sessions, p.messages))
        .collect();
    assert_eq!(
        listed,
        [
            ("198.51.100.20", 2, 4),
            ("198.51.100.7", 1, 2),
            ("198.51.100.8", 1, 0)
        ]
    );
    assert_eq!(s.policy.require_tls.sessions, 4);
    assert_eq!(s.policy.require_tls_messages, 6);
}

#[test]
fn a_tls10_only_sender_is_the_regression_that_blocks() {
    let s = report(&[
        line("192.0.2.1", "established", json!({})),
        tls10_only("198.51.100.99"),
        // It falls back to plaintext: a plaintext session of a client that
        // tried TLS is not a plaintext sender.
        plaintext("198.51.100.99"),
    ])
    .summary();
    assert_eq!(s.verdict, Verdict::No);
    assert_eq!(
        exceptions(&s),
        [(
            "failed",
            "client_tls_version_too_old",
            "stricter_than_legacy",
            1
        )]
    );
    assert_eq!(
        ips(&s.exceptions[0].impact.top_clients),
        [("198.51.100.99", 1)]
    );
    assert!(s.plaintext_senders.is_empty());
    assert_eq!(s.failures[0].category, "stricter_than_legacy");
}

/// The same sender, judged against a legacy MTA that never took TLS 1.0:
/// it would have failed there too, so it does not block.
#[test]
fn a_tls10_only_sender_does_not_block_when_the_legacy_mta_refused_it_too() {
    let mut opts = Options::with_window(Window::default());
    opts.legacy = LegacyPolicy {
        versions: vec!["TLSv1.2".into()],
        kx: vec!["ecdhe".into(), "rsa".into()],
    };
    let s = report_with(
        opts,
        &[
            line("192.0.2.1", "established", json!({})),
            tls10_only("198.51.100.99"),
        ],
    )
    .summary();
    assert_eq!(s.verdict, Verdict::Yes, "{:?}", s.exceptions);
    assert_eq!(category(&s, "legacy_would_fail"), 1);
    assert_eq!(s.legacy_policy.versions, ["TLSv1.2"]);
}

/// Done means: scanners, plaintext senders, modern TLS senders and one
/// TLS 1.0-only sender: NO, and only for the TLS 1.0 sender.
#[test]
fn a_realistic_mix_blocks_only_on_the_regression() {
    let rep = report(&[
        probe("203.0.113.1"),
        probe("203.0.113.2"),
        probe("203.0.113.3"),
        plaintext("198.51.100.20"),
        line("192.0.2.1", "established", json!({})),
        est12("192.0.2.2"),
        tls10_only("198.51.100.99"),
        // Failures that are not the legacy path's: a scanner's garbage after
        // STARTTLS, a client refusing the certificate.
        failed("203.0.113.7", "not_tls"),
        line(
            "192.0.2.3",
            "failed",
            json!({"failure_reason": "alert_unknown_ca",
                   "offer": {"versions": ["TLSv1.3"], "groups": ["X25519"],
                             "sigs": ["ecdsa"], "suites": ["tls13"]}}),
        ),
    ]);
    let s = rep.summary();
    assert_eq!(s.verdict, Verdict::No);
    assert_eq!(s.exception_sessions, 1);
    assert_eq!(
        [
            "probe",
            "plaintext",
            "modern_tls",
            "stricter_than_legacy",
            "no_client_hello",
            "after_offer"
        ]
        .map(|c| category(&s, c)),
        [3, 1, 2, 1, 1, 1]
    );
    let text = rep.render_text();
    assert!(
        text.contains("\nLegacy path retired: NO — 1 session is an exception (from "),
        "{text}"
    );
    assert!(
        text.ends_with(
            "  failed  client_tls_version_too_old  stricter_than_legacy  1 session  1 client  198.51.100.99 (1)\n"
        ),
        "{text}"
    );
}

#[test]
fn old_records_without_an_offer_are_judged_safely() {
    // No offer, no client_hello: the reason alone says the legacy MTA may
    // have taken it, so it blocks; a failure record's client_hello is read.
    let s = report(&[
        failed("192.0.2.9", "no_shared_cipher_suite"),
        line(
            "192.0.2.10",
            "failed",
            json!({"failure_reason": "no_shared_cipher_suite",
                   "client_hello": {"versions": ["TLSv1.2"], "cipher_suites": ["TLS_RSA_WITH_RC4_128_SHA"],
                                    "groups": [], "signature_schemes": [], "alpn": []}}),
        ),
        line(
            "192.0.2.6",
            "established",
            json!({"tls_version": "TLSv1.1", "offer": null}),
        ),
    ])
    .summary();
    assert_eq!(
        exceptions(&s),
        [
            ("established", "old_version_TLSv1.1", "old_tls", 1),
            (
                "failed",
                "no_shared_cipher_suite",
                "stricter_than_legacy",
                1
            ),
        ]
    );
    assert_eq!(category(&s, "legacy_would_fail"), 1, "RC4 only");
}

#[test]
fn no_sessions_is_not_a_yes() {
    let s = report(&[]).summary();
    assert_eq!(s.verdict, Verdict::NoSessions);
    assert!(!s.legacy_path_retired);
}

#[test]
fn a_direct_session_in_the_legacy_log_blocks() {
    let now: jiff::Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
    let mut log = LegacyLog::new(
        Window::default(),
        legacy_log::default_sources(),
        now,
        jiff::tz::TimeZone::UTC,
    );
    for l in [
        "Nov 23 11:00:00 old postfix/smtpd[7]: connect from localhost[127.0.0.1]",
        "Nov 23 11:00:01 old postfix/smtpd[7]: disconnect from localhost[127.0.0.1]",
        "Nov 23 11:00:02 old postfix/smtpd[7]: connect from x[198.51.100.44]",
    ] {
        log.add_line(l.as_bytes());
    }
    let rep = report(&[line("192.0.2.1", "established", json!({}))]).with_legacy_log(log);
    let s = rep.summary();
    assert_eq!(s.verdict, Verdict::No);
    assert_eq!(
        exceptions(&s),
        [("legacy_log", "direct_plaintext", "direct_to_legacy", 1)]
    );
    let l = s.legacy_log.as_ref().unwrap();
    assert_eq!((l.via_tlsfront, l.direct_sessions), (1, 1));
    assert!(
        rep.render_text()
            .contains("\n  198.51.100.44  1 session  0 TLS  1 plaintext")
    );
}

// ------------------------------------------------------------ hosts and merging

#[test]
fn two_hosts_merge_without_double_counting() {
    let a1 = line(
        "192.0.2.1",
        "established",
        json!({"host": "mx1", "session": "aa-1"}),
    );
    let a2 = probe_on("mx1", "aa-2");
    let b1 = line(
        "192.0.2.1",
        "established",
        json!({"host": "mx2", "session": "aa-1"}),
    );
    let b2 = tls10_only_on("mx2", "bb-7");
    // mx1's file read twice (a copy, an overlapping rotation): counted once.
    let s = report(&[a1.clone(), a2.clone(), b1, b2, a1, a2]).summary();
    assert_eq!(s.sessions, 4);
    assert_eq!(s.duplicates, 2);
    let hosts: Vec<(&str, u64, u64, u64)> = s
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.sessions, h.probes, h.blocking))
        .collect();
    assert_eq!(hosts, [("mx1", 2, 1, 0), ("mx2", 2, 0, 1)]);
    assert_eq!(
        s.hosts[0].tls_percent, 100.0,
        "probes left out of the share"
    );
}

fn probe_on(host: &str, session: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&probe("203.0.113.1")).unwrap();
    v["host"] = json!(host);
    v["session"] = json!(session);
    serde_json::to_vec(&v).unwrap()
}

fn tls10_only_on(host: &str, session: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&tls10_only("198.51.100.99")).unwrap();
    v["host"] = json!(host);
    v["session"] = json!(session);
    serde_json::to_vec(&v).unwrap()
}

// ------------------------------------------------------------ time

#[test]
fn since_and_until_select_and_the_range_is_stated() {
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    let opts = Options::with_window(Window {
        since: Some(t("2026-11-23T00:00:00Z")),
        until: Some(t("2026-11-24T00:00:00Z")),
    });
    let lines = [
        line(
            "192.0.2.1",
            "not_attempted",
            json!({"ts": "2026-11-22T23:59:59.999Z"}),
        ),
        line(
            "192.0.2.2",
            "established",
            json!({"ts": "2026-11-23T00:00:00.000Z"}),
        ),
        line(
            "192.0.2.3",
            "established",
            json!({"ts": "2026-11-23T08:00:00+02:00"}),
        ),
        line(
            "192.0.2.4",
            "not_attempted",
            json!({"ts": "2026-11-24T00:00:00Z"}),
        ),
    ];
    let s = report_with(opts, &lines).summary();
    assert_eq!(s.sessions, 2);
    assert_eq!(s.outside_range, 2);
    assert_eq!(s.covered.since.as_deref(), Some("2026-11-23T00:00:00Z"));
    assert_eq!(s.covered.until.as_deref(), Some("2026-11-24T00:00:00Z"));
    assert_eq!(s.covered.first.as_deref(), Some("2026-11-23T00:00:00Z"));
    assert_eq!(s.covered.last.as_deref(), Some("2026-11-23T06:00:00Z"));
}

#[test]
fn days_in_utc() {
    let s = report(&[
        line(
            "192.0.2.1",
            "established",
            json!({"ts": "2026-11-22T23:00:00-02:00"}),
        ),
        plaintext_at("2026-11-23T10:00:00Z"),
        probe("203.0.113.1"),
        tls10_only("198.51.100.99"),
        line(
            "192.0.2.1",
            "established",
            json!({"ts": "2026-11-21T10:00:00Z"}),
        ),
    ])
    .summary();
    let days: Vec<(&str, u64, u64, u64, u64, u64, f64)> = s
        .days
        .iter()
        .map(|d| {
            (
                d.date.as_str(),
                d.sessions,
                d.tls,
                d.failed,
                d.plaintext,
                d.probes,
                d.tls_percent,
            )
        })
        .collect();
    assert_eq!(
        days,
        [
            ("2026-11-21", 1, 1, 0, 0, 0, 100.0),
            ("2026-11-23", 4, 1, 1, 1, 1, 33.3)
        ]
    );
}

fn plaintext_at(ts: &str) -> Vec<u8> {
    line(
        "198.51.100.20",
        "not_attempted",
        json!({"ts": ts, "messages_accepted": 1}),
    )
}

// ------------------------------------------------------------ simulation

#[test]
fn simulations_name_who_would_fail_and_their_share_of_mail() {
    let s = report(&[
        line("192.0.2.1", "established", json!({"messages_accepted": 6})),
        est12("192.0.2.2"),
        est12("192.0.2.2"),
        // Without an offer (an older record): judged from what was negotiated.
        line(
            "192.0.2.3",
            "established",
            json!({"offer": null, "kx_group": "X25519", "messages_accepted": 1}),
        ),
        plaintext("198.51.100.20"),
    ])
    .summary();
    let sims: Vec<(&str, u64, u64, u64, f64)> = s
        .simulations
        .iter()
        .map(|m| {
            (
                m.policy.as_str(),
                m.impact.sessions,
                m.messages,
                m.inferred,
                m.messages_percent,
            )
        })
        .collect();
    // 12 messages in all: 6 + 1 + 1 + 1 + 2 plaintext... (est12 carries 1 each).
    assert_eq!(s.messages, 11);
    assert_eq!(
        sims,
        [
            ("tls13-only", 2, 2, 1, 18.2),
            ("ecdsa-only", 2, 2, 1, 18.2),
            ("pq-required", 3, 3, 1, 27.3),
        ]
    );
    assert_eq!(
        ips(&s.simulations[2].impact.top_clients),
        [("192.0.2.2", 2), ("192.0.2.3", 1)]
    );
}

// ------------------------------------------------------------ lines and output

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
        plaintext("192.0.2.3"),
    ])
    .summary();
    assert_eq!(names(&s.versions), [("TLSv1.3", 3), ("TLSv1.2", 1)]);
    assert_eq!(
        names(&s.groups),
        [("X25519MLKEM768", 2), ("(none)", 1), ("secp256r1", 1)]
    );
    assert_eq!(names(&s.sni), [("mx.example.test", 3), ("(none)", 2)]);
    assert_eq!(
        names(&s.cert_key_types),
        [("ecdsa_p256", 3), ("rsa_2048", 1)]
    );
    assert_eq!(s.self_signed, 1);
    assert_eq!(names(&s.offered_versions), [("TLSv1.2", 4), ("TLSv1.3", 3)]);
}

#[test]
fn clients_sort_by_count_then_numerically() {
    let mut lines = Vec::new();
    for ip in ["9", "9", "9", "10", "20", "10", "20", "7", "6", "5", "100"] {
        lines.push(tls10_only(&format!("192.0.2.{ip}")));
    }
    let s = report(&lines).summary();
    assert_eq!(s.failures[0].impact.sessions, 11);
    assert_eq!(
        ips(&s.failures[0].impact.top_clients),
        [
            ("192.0.2.9", 3),
            ("192.0.2.10", 2),
            ("192.0.2.20", 2),
            ("192.0.2.5", 1),
            ("192.0.2.6", 1)
        ]
    );
}

#[test]
fn json_has_the_documented_keys() {
    let rep = report(&[
        line("192.0.2.1", "established", json!({})),
        tls10_only("192.0.2.9"),
    ]);
    let v: Value = serde_json::from_str(&rep.render_json()).unwrap();
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "sources",
            "covered",
            "lines",
            "malformed_lines",
            "first_malformed",
            "outside_range",
            "duplicates",
            "health_checks",
            "sessions",
            "tls_established",
            "tls_established_percent",
            "starttls_used",
            "implicit",
            "tls_not_attempted",
            "tls_failed",
            "tls_timeout",
            "messages",
            "categories",
            "versions",
            "cipher_suites",
            "groups",
            "sni",
            "cert_key_types",
            "self_signed",
            "offered_versions",
            "offered_groups",
            "failures",
            "plaintext_senders",
            "top_senders",
            "days",
            "hosts",
            "policy",
            "simulations",
            "legacy_log",
            "legacy_policy",
            "rules",
            "legacy_path_retired",
            "verdict",
            "exception_sessions",
            "exceptions"
        ])
    );
    assert_eq!(v["verdict"], "no");
    assert_eq!(v["covered"]["first"], "2026-11-23T12:00:00Z");
    assert_eq!(
        v["exceptions"][0],
        json!({"tls": "failed", "reason": "client_tls_version_too_old",
               "category": "stricter_than_legacy", "sessions": 1, "clients": 1,
               "top_clients": [{"ip": "192.0.2.9", "sessions": 1}]})
    );
    assert_eq!(v["simulations"][0]["policy"], "tls13-only");
    assert_eq!(v["legacy_log"], Value::Null);
}

#[test]
fn the_html_page_is_self_contained_and_escapes_records() {
    let rep = report(&[
        line("192.0.2.1", "established", json!({})),
        est12("192.0.2.2"),
        tls10_only("192.0.2.9"),
        line(
            "<img src=x onerror=alert(1)>",
            "failed",
            json!({"failure_reason": "</svg><script>alert(1)</script>"}),
        ),
    ]);
    let html = rep.render_html();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for id in [
        "per-day",
        "tls-share",
        "categories",
        "versions",
        "groups",
        "failures",
        "simulation",
    ] {
        assert!(html.contains(&format!("<svg id=\"{id}\"")), "{id}");
    }
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "{html}"
    );
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    for external in ["http://", "https://", "src=\"", "href=\""] {
        let uses = html.matches(external).count();
        let namespace = html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
        assert_eq!(
            uses,
            if external == "http://" { namespace } else { 0 },
            "{external}"
        );
    }
    assert!(html.contains("Legacy path retired: <b>NO</b>"));
}

#[test]
fn health_checks_are_counted_apart_and_never_senders() {
    // A balancer's check that even sent mail-looking commands: never a sender.
    let check = |ip: &str| {
        line(
            ip,
            "not_attempted",
            json!({"origin": "health_check", "messages_accepted": 0, "backend_contacted": true}),
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
    assert!(s.plaintext_senders.is_empty());
    assert_eq!(
        s.verdict,
        Verdict::Yes,
        "a balancer's checks never block it"
    );
    assert!(
        rep.render_text()
            .contains("2 health checks from a balancer not counted"),
        "{}",
        rep.render_text()
    );
}

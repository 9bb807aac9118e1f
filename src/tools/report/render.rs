//! The report as text for people: short sections, aligned columns, the
//! verdict last so it is what stays on the screen.
//!
//! Every string of a record file is untrusted (an SNI comes from a client;
//! the file may come from anywhere): all text leaves through [`line`] or
//! [`table`], which pass it through [`escape::text`], so no record can forge
//! a line or send a terminal control sequence.

use std::fmt::Write;

use super::summary::{ClientCount, Impact, NameCount, Sender, Summary, Verdict};
use crate::escape;

/// Rows shown in text for lists that can grow with the client base (SNI
/// names, senders, days); `--json` has them all.
const TEXT_ROWS: usize = 10;

pub(super) fn text(s: &Summary) -> String {
    let mut out = String::new();
    let from = if s.sources.is_empty() {
        String::new()
    } else {
        format!(" from {}", s.sources.join(", "))
    };
    line(
        &mut out,
        format!("tlsfront report: {}{from}", count(s.sessions, "session")),
    );
    line(&mut out, format!("Covers {}", s.covered.describe()));
    // What was left out or counted once, each said only when it happened.
    let malformed = format!(
        "skipped (first at {})",
        s.first_malformed.as_deref().unwrap_or("?")
    );
    let left_out = [
        (
            s.outside_range,
            "session",
            "outside --since/--until left out",
        ),
        (
            s.duplicates,
            "duplicate record",
            "counted once (same host and session)",
        ),
        (
            s.health_checks,
            "health check",
            "from a balancer not counted (no sender)",
        ),
        (s.malformed_lines, "malformed line", malformed.as_str()),
    ];
    for (n, what, said) in left_out {
        if n > 0 {
            line(&mut out, format!("{} {said}", count(n, what)));
        }
    }

    section(&mut out, "Sessions");
    let n = |v: u64| v.to_string();
    let totals = [
        ["sessions".into(), n(s.sessions), String::new()],
        [
            "TLS established".into(),
            n(s.tls_established),
            format!("{:.1}%", s.tls_established_percent),
        ],
        ["STARTTLS used".into(), n(s.starttls_used), String::new()],
        ["implicit TLS".into(), n(s.implicit), String::new()],
        [
            "TLS not attempted".into(),
            n(s.tls_not_attempted),
            String::new(),
        ],
        ["TLS failed".into(), n(s.tls_failed), String::new()],
        ["TLS timeout".into(), n(s.tls_timeout), String::new()],
        ["messages accepted".into(), n(s.messages), String::new()],
    ];
    table(&mut out, &totals, &[("  ", L), ("  ", R), ("  ", L)]);

    section(&mut out, "Sessions by kind");
    let rows: Vec<[String; 2]> = s
        .categories
        .iter()
        .map(|c| {
            let label =
                super::verdict::Category::from_name(&c.name).map_or(c.name.as_str(), |c| c.label());
            [label.to_string(), n(c.sessions)]
        })
        .collect();
    table(&mut out, &rows, &[("  ", L), ("  ", R)]);

    if s.hosts.len() > 1 {
        section(
            &mut out,
            "Hosts (sessions, TLS of non-probes, failed, plaintext, probes, blocking)",
        );
        let rows: Vec<[String; 7]> = s
            .hosts
            .iter()
            .map(|h| {
                [
                    h.host.clone(),
                    n(h.sessions),
                    format!("{:.1}%", h.tls_percent),
                    n(h.failed),
                    n(h.plaintext),
                    n(h.probes),
                    n(h.blocking),
                ]
            })
            .collect();
        table(
            &mut out,
            &rows,
            &[
                ("  ", L),
                ("  ", R),
                ("  ", R),
                ("  ", R),
                ("  ", R),
                ("  ", R),
                ("  ", R),
            ],
        );
    }

    names(&mut out, "TLS versions", &s.versions, usize::MAX);
    names(&mut out, "Cipher suites", &s.cipher_suites, usize::MAX);
    names(&mut out, "Key exchange groups", &s.groups, usize::MAX);
    names(
        &mut out,
        "SNI names (sessions that attempted TLS)",
        &s.sni,
        TEXT_ROWS,
    );
    names(
        &mut out,
        "Certificates served (key type)",
        &s.cert_key_types,
        usize::MAX,
    );
    if s.self_signed > 0 {
        line(
            &mut out,
            format!(
                "  self-signed certificate served in {}",
                count(s.self_signed, "session")
            ),
        );
    }
    names(
        &mut out,
        "Versions offered by clients (sessions with an offer)",
        &s.offered_versions,
        usize::MAX,
    );
    names(
        &mut out,
        "Groups offered by clients",
        &s.offered_groups,
        TEXT_ROWS,
    );

    section(
        &mut out,
        "TLS failures by reason (kind, sessions, clients, top clients)",
    );
    let rows: Vec<[String; 7]> = s
        .failures
        .iter()
        .map(|f| {
            let [a, b, c, d, e] = impact_cells(&f.impact);
            [f.reason.clone(), f.category.clone(), a, b, c, d, e]
        })
        .collect();
    let mut spec = vec![("  ", L)];
    spec.extend_from_slice(&IMPACT_SPEC);
    table(&mut out, &rows, &spec);

    section(
        &mut out,
        "Plaintext senders (never tried STARTTLS: a fact about them, not a TLS failure)",
    );
    senders(&mut out, &s.plaintext_senders);

    section(
        &mut out,
        "Top senders (by messages; TLS, plaintext, failed, probe sessions)",
    );
    senders(&mut out, &s.top_senders);

    section(
        &mut out,
        "Per day (UTC; TLS share of sessions that were not probes)",
    );
    let rows: Vec<[String; 7]> = s
        .days
        .iter()
        .rev()
        .take(TEXT_ROWS)
        .rev()
        .map(|d| {
            [
                d.date.clone(),
                format!("{} sessions", d.sessions),
                format!("TLS {:.1}%", d.tls_percent),
                format!("{} failed", d.failed),
                format!("{} plaintext", d.plaintext),
                format!("{} probes", d.probes),
                format!("{} messages", d.messages),
            ]
        })
        .collect();
    table(
        &mut out,
        &rows,
        &[
            ("  ", L),
            ("  ", R),
            ("  ", R),
            ("  ", R),
            ("  ", R),
            ("  ", R),
            ("  ", R),
        ],
    );
    if s.days.len() > TEXT_ROWS {
        line(
            &mut out,
            format!(
                "  ... {} earlier days (see --json or --html)",
                s.days.len() - TEXT_ROWS
            ),
        );
    }

    section(&mut out, "Stricter policy: what would break");
    line(
        &mut out,
        format!(
            "  require TLS would refuse {} ({})",
            impact_sentence(&s.policy.require_tls, ""),
            count(s.policy.require_tls_messages, "message")
        ),
    );
    for sim in &s.simulations {
        let inferred = if sim.inferred > 0 {
            format!(", {} judged from what was negotiated", sim.inferred)
        } else {
            String::new()
        };
        line(
            &mut out,
            format!(
                "  {} ({}) would break {}; {} = {:.1}% of the mail (of {} established{inferred})",
                sim.policy,
                sim.description,
                impact_sentence(&sim.impact, ""),
                count(sim.messages, "message"),
                sim.messages_percent,
                count(sim.judged, "session")
            ),
        );
    }

    if let Some(l) = &s.legacy_log {
        section(&mut out, "Legacy MTA log");
        line(
            &mut out,
            format!(
                "  read {} ({}, {} from an SMTP server)",
                l.files.join(", "),
                count(l.lines, "line"),
                l.recognized_lines
            ),
        );
        line(&mut out, format!("  covers {}", l.covered.describe()));
        line(
            &mut out,
            format!(
                "  {}: {} from tlsfront ({}), {} direct ({} with TLS, {} without, {})",
                count(l.sessions, "session"),
                l.via_tlsfront,
                l.tlsfront_sources.join(", "),
                l.direct_sessions,
                l.direct_tls,
                l.direct_plaintext,
                count(l.direct_messages, "message")
            ),
        );
        let rows: Vec<[String; 6]> = l
            .direct_peers
            .iter()
            .map(|p| {
                let versions: Vec<String> = p
                    .versions
                    .iter()
                    .map(|v| format!("{} ({})", v.name, v.sessions))
                    .collect();
                [
                    p.ip.clone(),
                    count(p.sessions, "session"),
                    format!("{} TLS {}", p.tls, versions.join(", "))
                        .trim_end()
                        .to_string(),
                    format!("{} plaintext", p.plaintext),
                    count(p.messages, "message"),
                    format!(
                        "{} .. {}",
                        p.first.as_deref().unwrap_or("?"),
                        p.last.as_deref().unwrap_or("?")
                    ),
                ]
            })
            .collect();
        if !rows.is_empty() {
            table(
                &mut out,
                &rows,
                &[
                    ("  ", L),
                    ("  ", R),
                    ("  ", L),
                    ("  ", L),
                    ("  ", R),
                    ("  ", L),
                ],
            );
        }
    }

    section(&mut out, "Rules of the verdict");
    for r in &s.rules {
        line(&mut out, format!("  - {r}"));
    }
    line(
        &mut out,
        format!(
            "  legacy MTA taken to accept {} with {} key exchange (--legacy-tls, --legacy-kx)",
            s.legacy_policy.versions.join(", "),
            s.legacy_policy.kx.join(", ")
        ),
    );
    if s.legacy_log.is_none() {
        line(
            &mut out,
            "  direct sessions to the legacy MTA: not checked (give its log with --legacy-log)"
                .into(),
        );
    }

    out.push('\n');
    let range = s.covered.describe();
    match s.verdict {
        Verdict::Yes => {
            let direct = match &s.legacy_log {
                Some(l) => format!(
                    "; the legacy MTA's log shows no direct session {}",
                    l.covered.describe()
                ),
                None => String::new(),
            };
            line(
                &mut out,
                format!(
                    "Legacy path retired: YES — no sender needs the legacy TLS path {range}{direct}"
                ),
            )
        }
        Verdict::NoSessions => line(
            &mut out,
            "Legacy path retired: UNKNOWN — no sessions in the selected records".into(),
        ),
        Verdict::No => {
            let verb = if s.exception_sessions == 1 {
                "is an exception"
            } else {
                "are exceptions"
            };
            line(
                &mut out,
                format!(
                    "Legacy path retired: NO — {} {verb} ({range}):",
                    count(s.exception_sessions, "session")
                ),
            );
            let rows: Vec<[String; 8]> = s
                .exceptions
                .iter()
                .map(|e| {
                    let [a, b, c, d, f] = impact_cells(&e.impact);
                    [
                        e.tls.clone(),
                        e.reason.clone(),
                        e.category.clone(),
                        a,
                        b,
                        c,
                        d,
                        f,
                    ]
                })
                .collect();
            let mut spec = vec![("  ", L), ("  ", L)];
            spec.extend_from_slice(&IMPACT_SPEC);
            table(&mut out, &rows, &spec);
        }
    }
    out
}

fn senders(out: &mut String, list: &[Sender]) {
    let rows: Vec<[String; 8]> = list
        .iter()
        .take(TEXT_ROWS)
        .map(|c| {
            [
                c.ip.clone(),
                count(c.sessions, "session"),
                count(c.messages, "message"),
                format!("TLS {}", c.tls),
                format!("plaintext {}", c.plaintext),
                format!("failed {}", c.failed),
                format!("probes {}", c.probes),
                c.best_version.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        out,
        &rows,
        &[
            ("  ", L),
            ("  ", R),
            ("  ", R),
            ("  ", R),
            ("  ", R),
            ("  ", R),
            ("  ", R),
            ("  ", L),
        ],
    );
    more(out, list.len(), TEXT_ROWS);
}

#[derive(Clone, Copy)]
enum Align {
    L,
    R,
}
use Align::{L, R};

/// A name, then sessions, clients and top clients, as in "x  2 sessions  1 client  a (2)".
const IMPACT_SPEC: [(&str, Align); 6] = [
    ("  ", L),
    ("  ", R),
    (" ", L),
    ("  ", R),
    (" ", L),
    ("  ", L),
];

fn impact_cells(i: &Impact) -> [String; 5] {
    [
        i.sessions.to_string(),
        plural(i.sessions, "session"),
        i.clients.to_string(),
        plural(i.clients, "client"),
        top(&i.top_clients),
    ]
}

/// "2 sessions from 1 client: 192.0.2.7 (2)".
fn impact_sentence(i: &Impact, note: &str) -> String {
    let mut s = format!(
        "{} from {}{note}",
        count(i.sessions, "session"),
        count(i.clients, "client")
    );
    if !i.top_clients.is_empty() {
        let _ = write!(s, ": {}", top(&i.top_clients));
    }
    s
}

fn top(clients: &[ClientCount]) -> String {
    clients
        .iter()
        .map(|c| format!("{} ({})", c.ip, c.sessions))
        .collect::<Vec<_>>()
        .join(", ")
}

fn names(out: &mut String, title: &str, list: &[NameCount], max: usize) {
    section(out, title);
    let rows: Vec<[String; 2]> = list
        .iter()
        .take(max)
        .map(|n| [n.name.clone(), n.sessions.to_string()])
        .collect();
    table(out, &rows, &[("  ", L), ("  ", R)]);
    more(out, list.len(), max);
}

fn more(out: &mut String, len: usize, shown: usize) {
    if len > shown {
        line(out, format!("  ... and {} more (see --json)", len - shown));
    }
}

fn section(out: &mut String, title: &str) {
    out.push('\n');
    line(out, title.to_string());
}

/// Appends `text` as one line, escaped.
fn line(out: &mut String, text: String) {
    out.push_str(&escape::text(&text));
    out.push('\n');
}

/// Pads each column to its widest cell; `spec` gives each column's text
/// before it and its alignment. An empty table says so. Cells are escaped
/// before they are measured, so a hostile cell only widens its column.
fn table<const N: usize>(out: &mut String, rows: &[[String; N]], spec: &[(&str, Align)]) {
    if rows.is_empty() {
        line(out, "  (none)".into());
        return;
    }
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|row| row.clone().map(|cell| escape::text(&cell).into_owned()))
        .collect();
    let mut widths = [0usize; N];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut text = String::new();
        for ((cell, w), (sep, align)) in row.iter().zip(widths).zip(spec) {
            text.push_str(sep);
            let _ = match align {
                L => write!(text, "{cell:<w$}"),
                R => write!(text, "{cell:>w$}"),
            };
        }
        // Already escaped: pushed as is.
        out.push_str(text.trim_end());
        out.push('\n');
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// "1 session", "3 sessions".
fn count(n: u64, word: &str) -> String {
    format!("{n} {}", plural(n, word))
}

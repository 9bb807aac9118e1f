//! The report as text for people: short sections, aligned columns, the
//! verdict last so it is what stays on the screen.
//!
//! Every string of a record file is untrusted (an SNI comes from a client;
//! the file may come from anywhere): all text leaves through [`line`] or
//! [`table`], which pass it through [`escape::text`], so no record can forge
//! a line or send a terminal control sequence.

use std::fmt::Write;

use super::summary::{ClientCount, Impact, NameCount, Summary, Verdict};
use crate::escape;

/// Rows shown in text for lists that can grow with the client base (SNI
/// names, never-TLS clients); `--json` has them all.
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
    if let Some(since) = &s.since {
        line(
            &mut out,
            format!(
                "Since {since}: {} left out",
                count(s.older_than_since, "older session")
            ),
        );
    }
    if s.health_checks > 0 {
        line(
            &mut out,
            format!(
                "{} from a balancer not counted (no sender)",
                count(s.health_checks, "health check")
            ),
        );
    }
    if s.malformed_lines > 0 {
        line(
            &mut out,
            format!(
                "{} skipped (first at {})",
                count(s.malformed_lines, "malformed line"),
                s.first_malformed.as_deref().unwrap_or("?")
            ),
        );
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
    ];
    table(&mut out, &totals, &[("  ", L), ("  ", R), ("  ", L)]);

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

    section(
        &mut out,
        "TLS failures by reason (sessions, clients, top clients)",
    );
    let rows: Vec<[String; 6]> = s
        .failures
        .iter()
        .map(|f| {
            let [a, b, c, d, e] = impact_cells(&f.impact);
            [f.reason.clone(), a, b, c, d, e]
        })
        .collect();
    table(&mut out, &rows, &IMPACT_SPEC);

    section(&mut out, "Clients that never used TLS");
    let rows: Vec<[String; 3]> = s
        .never_tls_clients
        .iter()
        .take(TEXT_ROWS)
        .map(|c| [c.ip.clone(), n(c.sessions), plural(c.sessions, "session")])
        .collect();
    table(&mut out, &rows, &[("  ", L), ("  ", R), (" ", L)]);
    more(&mut out, s.never_tls_clients.len(), TEXT_ROWS);

    section(&mut out, "Stricter policy");
    line(
        &mut out,
        format!(
            "  require TLS would refuse {}",
            impact_sentence(&s.policy.require_tls, "")
        ),
    );
    line(
        &mut out,
        format!(
            "  TLS 1.3 only would break {}",
            impact_sentence(&s.policy.tls13_only, " (TLS 1.2 users)")
        ),
    );

    out.push('\n');
    match s.verdict {
        Verdict::Yes => line(
            &mut out,
            "Legacy path retired: YES — every session used modern TLS at tlsfront".into(),
        ),
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
                    "Legacy path retired: NO — {} {verb}:",
                    count(s.exception_sessions, "session")
                ),
            );
            let rows: Vec<[String; 7]> = s
                .exceptions
                .iter()
                .map(|e| {
                    let [a, b, c, d, f] = impact_cells(&e.impact);
                    [e.tls.clone(), e.reason.clone(), a, b, c, d, f]
                })
                .collect();
            let mut spec = vec![("  ", L)];
            spec.extend_from_slice(&IMPACT_SPEC);
            table(&mut out, &rows, &spec);
        }
    }
    out
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

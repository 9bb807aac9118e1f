//! The report as one self-contained HTML page (`--html FILE`): inline CSS and
//! SVG charts, no script, no external asset, so it can be mailed, archived
//! and opened anywhere. It reads the same [`Summary`] as the text and JSON.
//!
//! Every string from the records is untrusted: all of it leaves through
//! [`esc`], so no record can add markup to the page.

use std::fmt::Write;

use super::summary::{Impact, NameCount, Sender, Summary, Verdict};
use super::verdict::Category;

/// Rows in tables that grow with the client base.
const ROWS: usize = 20;

const GREEN: &str = "#2e7d32";
const RED: &str = "#c62828";
const AMBER: &str = "#f9a825";
const GREY: &str = "#9e9e9e";
const BLUE: &str = "#1565c0";
const ORANGE: &str = "#ef6c00";
const PURPLE: &str = "#6a1b9a";

/// Text made safe inside HTML elements and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn category_color(c: &str) -> &'static str {
    match Category::from_name(c) {
        Some(Category::ModernTls) => GREEN,
        Some(Category::StricterThanLegacy | Category::OldTls) => RED,
        Some(Category::LegacyWouldFail) => ORANGE,
        Some(Category::AfterOffer) => PURPLE,
        Some(Category::Plaintext) => AMBER,
        _ => GREY,
    }
}

pub fn page(s: &Summary) -> String {
    let mut h = String::new();
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>tlsfront report</title>\n<style>\n\
         body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:980px;color:#212121;background:#fff}\n\
         h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}\n\
         .meta{color:#555;font-size:14px} table{border-collapse:collapse;font-size:14px;margin:6px 0}\n\
         td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee} td.n,th.n{text-align:right}\n\
         .verdict{padding:14px 18px;border-radius:6px;margin:16px 0;font-size:18px;color:#fff}\n\
         .yes{background:#2e7d32} .no{background:#c62828} .unknown{background:#757575}\n\
         .verdict b{font-size:24px} .legend span{display:inline-block;margin-right:14px;font-size:13px}\n\
         .legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}\n\
         svg.chart{display:block;margin:6px 0} svg text{font-size:12px;fill:#333}\n\
         ul.rules{font-size:14px;color:#333}\n</style></head><body>\n",
    );
    let _ = writeln!(h, "<h1>tlsfront report</h1>");
    let _ = writeln!(
        h,
        "<p class=\"meta\">{} sessions, {} messages, from {}<br>Covers {}</p>",
        s.sessions,
        s.messages,
        esc(&s.sources.join(", ")),
        esc(&s.covered.describe())
    );
    if s.duplicates + s.malformed_lines + s.outside_range > 0 {
        let _ = writeln!(
            h,
            "<p class=\"meta\">{} duplicate records counted once, {} malformed lines skipped, {} sessions outside the range</p>",
            s.duplicates, s.malformed_lines, s.outside_range
        );
    }
    verdict(&mut h, s);

    let _ = writeln!(h, "<h2>TLS and failures per day (UTC)</h2>");
    per_day(&mut h, s);

    let _ = writeln!(h, "<h2>Sessions by kind</h2>");
    let kinds: Vec<Bar> = s
        .categories
        .iter()
        .map(|c| Bar {
            label: Category::from_name(&c.name).map_or(c.name.clone(), |k| k.label().to_string()),
            value: c.sessions,
            color: category_color(&c.name),
            note: c.sessions.to_string(),
        })
        .collect();
    hbars(&mut h, "categories", &kinds, 330);

    let _ = writeln!(h, "<h2>TLS versions and key exchange groups</h2>");
    hbars(&mut h, "versions", &plain_bars(&s.versions, BLUE), 330);
    hbars(&mut h, "groups", &plain_bars(&s.groups, BLUE), 330);
    if !s.offered_groups.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"meta\">Offered by clients (sessions with an offer):</p>"
        );
        hbars(
            &mut h,
            "offered-groups",
            &plain_bars(&s.offered_groups, GREY),
            330,
        );
    }

    let _ = writeln!(h, "<h2>Failure reasons</h2>");
    legend(
        &mut h,
        &[
            (RED, "stricter than the legacy MTA (blocks)"),
            (ORANGE, "the legacy MTA would fail too"),
            (GREY, "no ClientHello"),
            (PURPLE, "after the offer (certificate, timeout)"),
        ],
    );
    let failures: Vec<Bar> = s
        .failures
        .iter()
        .map(|f| Bar {
            label: f.reason.clone(),
            value: f.impact.sessions,
            color: category_color(&f.category),
            note: format!(
                "{}, {}: {}",
                count(f.impact.sessions, "session"),
                count(f.impact.clients, "client"),
                top(&f.impact)
            ),
        })
        .collect();
    hbars(&mut h, "failures", &failures, 330);

    let _ = writeln!(h, "<h2>Top senders</h2>");
    senders(&mut h, "top-senders", &s.top_senders);
    let _ = writeln!(
        h,
        "<h2>Plaintext senders</h2>\n<p class=\"meta\">Never tried STARTTLS: a fact about them, not a TLS failure of this host.</p>"
    );
    senders(&mut h, "plaintext-senders", &s.plaintext_senders);

    let _ = writeln!(h, "<h2>What a stricter policy would break</h2>");
    let mut sims: Vec<Bar> = vec![Bar {
        label: "require TLS".into(),
        value: s.policy.require_tls.sessions,
        color: AMBER,
        note: format!(
            "{}, {}, {}",
            count(s.policy.require_tls.sessions, "session"),
            count(s.policy.require_tls_messages, "message"),
            count(s.policy.require_tls.clients, "client")
        ),
    }];
    sims.extend(s.simulations.iter().map(|m| Bar {
        label: m.policy.clone(),
        value: m.impact.sessions,
        color: RED,
        note: format!(
            "{}, {:.1}% of the mail, {}",
            count(m.impact.sessions, "session"),
            m.messages_percent,
            count(m.impact.clients, "client")
        ),
    }));
    hbars(&mut h, "simulation", &sims, 330);
    let _ = writeln!(
        h,
        "<table id=\"simulation-table\"><tr><th>policy</th><th>what it means</th><th class=n>sessions</th><th class=n>share of mail</th><th>senders that would fail</th></tr>"
    );
    for m in &s.simulations {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{:.1}%</td><td>{}</td></tr>",
            esc(&m.policy),
            esc(&m.description),
            m.impact.sessions,
            m.messages_percent,
            esc(&top(&m.impact))
        );
    }
    let _ = writeln!(h, "</table>");

    if s.hosts.len() > 1 {
        let _ = writeln!(
            h,
            "<h2>Hosts</h2>\n<table id=\"hosts\"><tr><th>host</th><th class=n>sessions</th><th class=n>TLS</th><th class=n>failed</th><th class=n>plaintext</th><th class=n>probes</th><th class=n>blocking</th><th>from</th><th>to</th></tr>"
        );
        for x in &s.hosts {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=n>{}</td><td class=n>{:.1}%</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&x.host),
                x.sessions,
                x.tls_percent,
                x.failed,
                x.plaintext,
                x.probes,
                x.blocking,
                esc(x.first.as_deref().unwrap_or("")),
                esc(x.last.as_deref().unwrap_or(""))
            );
        }
        let _ = writeln!(h, "</table>");
    }
    h.push_str("<p class=\"meta\">Written by tlsfront report. Numbers as in <code>tlsfront report --json</code>.</p>\n</body></html>\n");
    h
}

fn verdict(h: &mut String, s: &Summary) {
    let (class, word, text) = match s.verdict {
        Verdict::Yes => (
            "yes",
            "YES",
            "no sender needs the legacy TLS path".to_string(),
        ),
        Verdict::No => (
            "no",
            "NO",
            format!("{} sessions are exceptions", s.exception_sessions),
        ),
        Verdict::NoSessions => (
            "unknown",
            "UNKNOWN",
            "no sessions in the selected records".into(),
        ),
    };
    let _ = writeln!(
        h,
        "<div id=\"verdict\" class=\"verdict {class}\">Legacy path retired: <b>{word}</b> — {}<br><small>{}</small></div>",
        esc(&text),
        esc(&s.covered.describe())
    );
    if !s.exceptions.is_empty() {
        let _ = writeln!(
            h,
            "<table id=\"exceptions\"><tr><th>outcome</th><th>reason</th><th>kind</th><th class=n>sessions</th><th class=n>clients</th><th>top clients</th></tr>"
        );
        for e in &s.exceptions {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
                esc(&e.tls),
                esc(&e.reason),
                esc(&e.category),
                e.impact.sessions,
                e.impact.clients,
                esc(&top(&e.impact))
            );
        }
        let _ = writeln!(h, "</table>");
    }
    if let Some(l) = &s.legacy_log {
        let _ = writeln!(
            h,
            "<p id=\"legacy-log\">Legacy MTA log ({}): {} sessions {}; {} from tlsfront ({}), <b>{} direct</b> ({} with TLS, {} without).</p>",
            esc(&l.files.join(", ")),
            l.sessions,
            esc(&l.covered.describe()),
            l.via_tlsfront,
            esc(&l.tlsfront_sources.join(", ")),
            l.direct_sessions,
            l.direct_tls,
            l.direct_plaintext
        );
        if !l.direct_peers.is_empty() {
            let _ = writeln!(
                h,
                "<table id=\"direct-peers\"><tr><th>peer</th><th class=n>sessions</th><th class=n>TLS</th><th class=n>plaintext</th><th class=n>messages</th><th>first</th><th>last</th></tr>"
            );
            for p in l.direct_peers.iter().take(ROWS) {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&p.ip),
                    p.sessions,
                    p.tls,
                    p.plaintext,
                    p.messages,
                    esc(p.first.as_deref().unwrap_or("")),
                    esc(p.last.as_deref().unwrap_or(""))
                );
            }
            let _ = writeln!(h, "</table>");
        }
    }
    let _ = writeln!(h, "<ul class=\"rules\">");
    for r in &s.rules {
        let _ = writeln!(h, "<li>{}</li>", esc(r));
    }
    let _ = writeln!(
        h,
        "<li>the legacy MTA is taken to accept {} with {} key exchange</li>",
        esc(&s.legacy_policy.versions.join(", ")),
        esc(&s.legacy_policy.kx.join(", "))
    );
    if s.legacy_log.is_none() {
        let _ = writeln!(
            h,
            "<li>direct sessions to the legacy MTA: not checked (no --legacy-log)</li>"
        );
    }
    let _ = writeln!(h, "</ul>");
}

/// "1 session", "3 sessions".
fn count(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn top(i: &Impact) -> String {
    i.top_clients
        .iter()
        .map(|c| format!("{} ({})", c.ip, c.sessions))
        .collect::<Vec<_>>()
        .join(", ")
}

fn legend(h: &mut String, items: &[(&str, &str)]) {
    h.push_str("<p class=\"legend\">");
    for (color, text) in items {
        let _ = write!(
            h,
            "<span><i style=\"background:{color}\"></i>{}</span>",
            esc(text)
        );
    }
    h.push_str("</p>\n");
}

/// Stacked bars per day (TLS, failed, plaintext, probes) and the TLS share.
fn per_day(h: &mut String, s: &Summary) {
    if s.days.is_empty() {
        h.push_str("<p class=\"meta\">No sessions.</p>\n");
        return;
    }
    legend(
        h,
        &[
            (GREEN, "TLS"),
            (RED, "TLS failed"),
            (AMBER, "plaintext"),
            (GREY, "probes"),
        ],
    );
    let (w, ht, left, bottom, top_pad) = (900.0, 260.0, 50.0, 40.0, 10.0);
    let plot_w = w - left - 10.0;
    let plot_h = ht - bottom - top_pad;
    let max = s.days.iter().map(|d| d.sessions).max().unwrap_or(1).max(1) as f64;
    let n = s.days.len() as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.8).max(1.0);
    let _ = writeln!(
        h,
        "<svg id=\"per-day\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-label=\"sessions per day\">"
    );
    axis(h, left, top_pad, plot_w, plot_h, max, "");
    let label_every = ((n / 12.0).ceil() as usize).max(1);
    for (i, d) in s.days.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = top_pad + plot_h;
        for (value, color, what) in [
            (d.tls, GREEN, "TLS"),
            (d.failed, RED, "failed"),
            (d.plaintext, AMBER, "plaintext"),
            (d.probes, GREY, "probes"),
        ] {
            if value == 0 {
                continue;
            }
            let bh = value as f64 / max * plot_h;
            y -= bh;
            let _ = writeln!(
                h,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{} {what}: {value}</title></rect>",
                esc(&d.date)
            );
        }
        if i % label_every == 0 {
            let _ = writeln!(
                h,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                top_pad + plot_h + 16.0,
                esc(d.date.get(5..).unwrap_or(&d.date))
            );
        }
    }
    h.push_str("</svg>\n");

    // The TLS share per day, a line over 0-100 %.
    let _ = writeln!(
        h,
        "<svg id=\"tls-share\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"160\" viewBox=\"0 0 {w} 160\" role=\"img\" aria-label=\"TLS share per day\">"
    );
    let plot_h = 160.0 - bottom - top_pad + 20.0;
    axis(h, left, top_pad, plot_w, plot_h, 100.0, "%");
    let points: Vec<String> = s
        .days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            format!(
                "{:.1},{:.1}",
                left + slot * (i as f64 + 0.5),
                top_pad + plot_h - d.tls_percent / 100.0 * plot_h
            )
        })
        .collect();
    let _ = writeln!(
        h,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{BLUE}\" stroke-width=\"2.5\"/>",
        points.join(" ")
    );
    for (i, d) in s.days.iter().enumerate() {
        let _ = writeln!(
            h,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{BLUE}\"><title>{}: {:.1}% TLS</title></circle>",
            left + slot * (i as f64 + 0.5),
            top_pad + plot_h - d.tls_percent / 100.0 * plot_h,
            esc(&d.date),
            d.tls_percent
        );
    }
    h.push_str("</svg>\n");
}

/// A left axis with three ticks, and a base line.
fn axis(h: &mut String, left: f64, top: f64, width: f64, height: f64, max: f64, unit: &str) {
    for k in 0..=2 {
        let v = max * k as f64 / 2.0;
        let y = top + height - height * k as f64 / 2.0;
        let _ = writeln!(
            h,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}{unit}</text>",
            left + width,
            left - 6.0,
            y + 4.0,
            v.round()
        );
    }
}

struct Bar {
    label: String,
    value: u64,
    color: &'static str,
    note: String,
}

fn plain_bars(list: &[NameCount], color: &'static str) -> Vec<Bar> {
    list.iter()
        .take(ROWS)
        .map(|n| Bar {
            label: n.name.clone(),
            value: n.sessions,
            color,
            note: n.sessions.to_string(),
        })
        .collect()
}

/// Horizontal bars, one row each: the label, the bar, the note.
fn hbars(h: &mut String, id: &str, bars: &[Bar], label_w: u32) {
    if bars.iter().all(|b| b.value == 0) {
        let _ = writeln!(h, "<p class=\"meta\" id=\"{id}\">None.</p>");
        return;
    }
    let (w, row) = (900.0, 22.0);
    let label_w = f64::from(label_w);
    // Room for the note after the longest bar.
    let bar_max = w - label_w - 330.0;
    let max = bars.iter().map(|b| b.value).max().unwrap_or(1).max(1) as f64;
    let ht = row * bars.len() as f64 + 6.0;
    let _ = writeln!(
        h,
        "<svg id=\"{id}\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\" role=\"img\">"
    );
    for (i, b) in bars.iter().enumerate() {
        let y = 3.0 + row * i as f64;
        let bw = if b.value == 0 {
            0.0
        } else {
            (b.value as f64 / max * bar_max).max(2.0)
        };
        let _ = writeln!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            label_w - 8.0,
            y + 15.0,
            esc(&b.label)
        );
        if bw > 0.0 {
            let _ = writeln!(
                h,
                "<rect x=\"{label_w}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}</title></rect>",
                y + 3.0,
                row - 6.0,
                b.color,
                esc(&b.note)
            );
        }
        let _ = writeln!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            label_w + bw + 6.0,
            y + 15.0,
            esc(&b.note)
        );
    }
    h.push_str("</svg>\n");
}

fn senders(h: &mut String, id: &str, list: &[Sender]) {
    if list.is_empty() {
        let _ = writeln!(h, "<p class=\"meta\" id=\"{id}\">None.</p>");
        return;
    }
    let _ = writeln!(
        h,
        "<table id=\"{id}\"><tr><th>client</th><th class=n>sessions</th><th class=n>messages</th><th>outcome</th><th class=n>TLS</th><th class=n>plaintext</th><th class=n>failed</th><th class=n>probes</th><th>best version</th></tr>"
    );
    for c in list.iter().take(ROWS) {
        // The sessions' outcomes as one small stacked bar.
        let mut bar = String::from(
            "<svg class=\"outcome\" width=\"120\" height=\"12\" viewBox=\"0 0 120 12\">",
        );
        let mut x = 0.0;
        for (v, color) in [
            (c.tls, GREEN),
            (c.failed, RED),
            (c.plaintext, AMBER),
            (c.probes, GREY),
        ] {
            if v == 0 || c.sessions == 0 {
                continue;
            }
            let w = v as f64 / c.sessions as f64 * 120.0;
            let _ = write!(
                bar,
                "<rect x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"12\" fill=\"{color}\"/>"
            );
            x += w;
        }
        bar.push_str("</svg>");
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td>{bar}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
            esc(&c.ip),
            c.sessions,
            c.messages,
            c.tls,
            c.plaintext,
            c.failed,
            c.probes,
            esc(c.best_version.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(h, "</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_record_text_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{1b}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\\u{001b}"
        );
    }
}

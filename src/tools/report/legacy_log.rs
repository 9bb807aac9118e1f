//! The legacy MTA's own log as evidence (`--legacy-log`): every SMTP session
//! that reached Sendmail or Postfix, and whether it came from tlsfront's
//! source address or directly (a forgotten firewall rule, a second MX record
//! pointing at the old box, the old port open on another address).
//!
//! Syslog lines as files hold them: a traditional (`Nov 27 10:06:42`, the
//! year inferred, local time) or RFC 3339 timestamp (rsyslog's and
//! `journalctl -o short-iso`'s), the host, then `program[pid]: message`.
//! - Postfix `smtpd` (any `syslog_name`): `connect from NAME[IP]` opens a
//!   session of that process, `disconnect from` closes it, `... TLS connection
//!   established from NAME[IP]: TLSv1.2 with cipher ...` marks it TLS,
//!   `QUEUEID: client=NAME[IP]` counts a message.
//! - Sendmail (`sendmail`, `sm-mta`): each connection is a process of its
//!   own; `STARTTLS=server, relay=NAME [IP], version=TLSv1.2, ...` marks TLS,
//!   `QUEUEID: from=<...>, ..., relay=NAME [IP]` counts a message, and `NAME
//!   [IP] did not issue MAIL...`, `lost input channel from NAME [IP]`,
//!   `ruleset=...relay=` name the peer. Delivery lines (`to=`) and outbound
//!   TLS (`STARTTLS=client`) are not sessions from a peer.
//!
//! A process id reused for a second session from the same peer within one
//! log joins the two into one: the count of direct sessions can come out
//! low, never zero when there was one, which is what the proof needs.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use super::range::{Covered, Span, Window};
use super::summary::{NameCount, by_ip, sorted};

/// A network: an address and a prefix length.
pub type Net = (IpAddr, u8);

/// `ADDR` or `ADDR/LEN`.
pub fn parse_net(s: &str) -> Result<Net, String> {
    crate::config::parse_cidr(s)
        .ok_or_else(|| format!("{s:?} is not an address or network (127.0.0.1, 10.0.0.0/24, ::1)"))
}

/// tlsfront on the legacy MTA's own host connects over loopback.
pub fn default_sources() -> Vec<Net> {
    vec![
        ("127.0.0.0".parse().expect("literal"), 8),
        ("::1".parse().expect("literal"), 128),
    ]
}

fn show_net((ip, len): &Net) -> String {
    let full = if ip.is_ipv4() { 32 } else { 128 };
    if *len == full {
        ip.to_string()
    } else {
        format!("{ip}/{len}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mta {
    Postfix,
    Sendmail,
}

#[derive(Debug, Clone)]
struct Session {
    peer: IpAddr,
    first: jiff::Timestamp,
    tls: Option<String>,
    messages: u64,
}

#[derive(Debug, Default, Clone)]
struct PeerTally {
    sessions: u64,
    tls: u64,
    messages: u64,
    versions: HashMap<String, u64>,
    span: Span,
}

/// Reads legacy MTA log lines; [`LegacyLog::summary`] says what reached it.
#[derive(Debug, Clone)]
pub struct LegacyLog {
    window: Window,
    sources: Vec<Net>,
    now: jiff::Timestamp,
    tz: jiff::tz::TimeZone,
    files: Vec<String>,
    lines: u64,
    recognized: u64,
    span: Span,
    open: HashMap<(String, u32), Session>,
    peers: HashMap<IpAddr, PeerTally>,
}

impl LegacyLog {
    /// `now` and `tz` place traditional timestamps, which have no year and
    /// no offset: local time, in the year that puts them not after now.
    pub fn new(
        window: Window,
        sources: Vec<Net>,
        now: jiff::Timestamp,
        tz: jiff::tz::TimeZone,
    ) -> Self {
        LegacyLog {
            window,
            sources,
            now,
            tz,
            files: Vec::new(),
            lines: 0,
            recognized: 0,
            span: Span::default(),
            open: HashMap::new(),
            peers: HashMap::new(),
        }
    }

    pub fn begin_source(&mut self, name: &str) {
        self.files.push(name.to_string());
    }

    pub fn add_line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.lines += 1;
        let line = String::from_utf8_lossy(line);
        let Some((ts, rest)) = self.timestamp(&line) else {
            return;
        };
        let Some((prog, pid, msg)) = tag(rest) else {
            return;
        };
        let base = prog.rsplit('/').next().unwrap_or(prog);
        let mta = match base {
            "smtpd" => Mta::Postfix,
            "sendmail" | "sm-mta" => Mta::Sendmail,
            _ => return,
        };
        let event = match mta {
            Mta::Postfix => postfix(msg),
            Mta::Sendmail => sendmail(msg),
        };
        let Some(event) = event else {
            return;
        };
        self.recognized += 1;
        if !self.window.contains(ts) {
            return;
        }
        self.span.add(ts);
        let key = (prog.to_string(), pid);
        match event {
            Event::Connect(peer) => {
                self.close(&key);
                self.open.insert(
                    key,
                    Session {
                        peer,
                        first: ts,
                        tls: None,
                        messages: 0,
                    },
                );
            }
            Event::Disconnect(peer) => {
                self.session(&key, peer, ts);
                self.close(&key);
            }
            Event::Tls(peer, version) => self.session(&key, peer, ts).tls = Some(version),
            Event::Message(peer) => self.session(&key, peer, ts).messages += 1,
            Event::Peer(peer) => {
                self.session(&key, peer, ts);
            }
        }
    }

    /// The open session of a process, or a new one when it has none or one
    /// with another peer (a Sendmail process per connection; a Postfix line
    /// whose connect line was before the log starts).
    fn session(&mut self, key: &(String, u32), peer: IpAddr, ts: jiff::Timestamp) -> &mut Session {
        if self.open.get(key).is_some_and(|s| s.peer != peer) {
            self.close(key);
        }
        self.open.entry(key.clone()).or_insert(Session {
            peer,
            first: ts,
            tls: None,
            messages: 0,
        })
    }

    fn close(&mut self, key: &(String, u32)) {
        if let Some(s) = self.open.remove(key) {
            let t = self.peers.entry(s.peer).or_default();
            t.sessions += 1;
            t.messages += s.messages;
            t.span.add(s.first);
            if let Some(v) = s.tls {
                t.tls += 1;
                *t.versions.entry(v).or_default() += 1;
            }
        }
    }

    /// A traditional or RFC 3339 timestamp at the start of `line`, and the rest.
    fn timestamp<'a>(&self, line: &'a str) -> Option<(jiff::Timestamp, &'a str)> {
        let first = line.split(' ').next()?;
        if first.len() >= 19 && first.as_bytes()[4] == b'-' {
            let rest = line[first.len()..].trim_start();
            return Some((self.iso(first)?, rest));
        }
        // "Nov 27 10:06:42" / "Nov  7 10:06:42"
        let head = line.get(..15)?;
        let month = match head.get(..3)? {
            "Jan" => 1,
            "Feb" => 2,
            "Mar" => 3,
            "Apr" => 4,
            "May" => 5,
            "Jun" => 6,
            "Jul" => 7,
            "Aug" => 8,
            "Sep" => 9,
            "Oct" => 10,
            "Nov" => 11,
            "Dec" => 12,
            _ => return None,
        };
        let day: i8 = head.get(4..6)?.trim().parse().ok()?;
        let time: jiff::civil::Time = head.get(7..15)?.parse().ok()?;
        let year = self.now.to_zoned(self.tz.clone()).year();
        let at = |y: i16| -> Option<jiff::Timestamp> {
            let date = jiff::civil::Date::new(y, month, day).ok()?;
            date.to_datetime(time)
                .to_zoned(self.tz.clone())
                .ok()
                .map(|z| z.timestamp())
        };
        let mut ts = at(year)?;
        if ts > self.now + jiff::SignedDuration::from_hours(24) {
            ts = at(year - 1)?;
        }
        Some((ts, line[15..].trim_start()))
    }

    /// `2026-11-27T10:06:42.123456+00:00`, `...+0000` (journalctl), or no
    /// offset (local time).
    fn iso(&self, s: &str) -> Option<jiff::Timestamp> {
        if let Ok(t) = s.parse::<jiff::Timestamp>() {
            return Some(t);
        }
        let b = s.as_bytes();
        if b.len() > 5 && matches!(b[b.len() - 5], b'+' | b'-') && b[b.len() - 3] != b':' {
            let fixed = format!("{}:{}", &s[..s.len() - 2], &s[s.len() - 2..]);
            if let Ok(t) = fixed.parse::<jiff::Timestamp>() {
                return Some(t);
            }
        }
        let dt: jiff::civil::DateTime = s.parse().ok()?;
        dt.to_zoned(self.tz.clone()).ok().map(|z| z.timestamp())
    }

    /// Closes the sessions still open (the log ended) and states the facts.
    pub fn summary(&mut self) -> LegacySummary {
        let keys: Vec<(String, u32)> = self.open.keys().cloned().collect();
        for k in keys {
            self.close(&k);
        }
        let mut s = LegacySummary {
            files: self.files.clone(),
            lines: self.lines,
            recognized_lines: self.recognized,
            covered: Covered::of(self.window, self.span.first, self.span.last),
            tlsfront_sources: self.sources.iter().map(show_net).collect(),
            ..LegacySummary::default()
        };
        for (ip, t) in &self.peers {
            s.sessions += t.sessions;
            if crate::config::in_networks(*ip, &self.sources) {
                s.via_tlsfront += t.sessions;
                continue;
            }
            s.direct_sessions += t.sessions;
            s.direct_tls += t.tls;
            s.direct_messages += t.messages;
            s.direct_peers.push(DirectPeer {
                ip: ip.to_string(),
                sessions: t.sessions,
                tls: t.tls,
                plaintext: t.sessions - t.tls,
                messages: t.messages,
                versions: sorted(&t.versions),
                first: t.span.first.map(|t| t.to_string()),
                last: t.span.last.map(|t| t.to_string()),
            });
        }
        s.direct_plaintext = s.direct_sessions - s.direct_tls;
        s.direct_peers.sort_by(|a, b| {
            b.sessions
                .cmp(&a.sessions)
                .then_with(|| by_ip(&a.ip, &b.ip))
        });
        s
    }
}

/// `program[pid]: message` after the timestamp, past an optional host name.
fn tag(rest: &str) -> Option<(&str, u32, &str)> {
    let mut parts = rest.splitn(3, ' ');
    let one = parts.next()?;
    let (token, msg) = if one.ends_with(':') && one.contains('[') {
        (one, rest[one.len()..].trim_start())
    } else {
        let two = parts.next()?;
        let start = rest.find(two)?;
        (two, rest[start + two.len()..].trim_start())
    };
    let token = token.strip_suffix("]:")?;
    let (prog, pid) = token.split_once('[')?;
    Some((prog, pid.parse().ok()?, msg))
}

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Connect(IpAddr),
    Disconnect(IpAddr),
    Tls(IpAddr, String),
    Message(IpAddr),
    Peer(IpAddr),
}

/// The address in `NAME[IP]` (Postfix) or `NAME [IP]` (Sendmail) at the
/// start of `s`.
fn bracketed(s: &str) -> Option<IpAddr> {
    let open = s.find('[')?;
    let close = open + s[open..].find(']')?;
    let inner = &s[open + 1..close];
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    inner.parse().ok()
}

fn postfix(msg: &str) -> Option<Event> {
    if let Some(rest) = msg.strip_prefix("connect from ") {
        return bracketed(rest).map(Event::Connect);
    }
    if let Some(rest) = msg.strip_prefix("disconnect from ") {
        return bracketed(rest).map(Event::Disconnect);
    }
    if let Some(at) = msg.find(" TLS connection established from ") {
        let rest = &msg[at + " TLS connection established from ".len()..];
        let ip = bracketed(rest)?;
        let version = rest
            .split_once("]: ")
            .and_then(|(_, v)| v.split(' ').next())
            .unwrap_or("TLS")
            .to_string();
        return Some(Event::Tls(ip, version));
    }
    // "C950AA04218: client=localhost[127.0.0.1]"
    if let Some((_, rest)) = msg.split_once(": client=") {
        return bracketed(rest).map(Event::Message);
    }
    None
}

fn sendmail(msg: &str) -> Option<Event> {
    if msg.starts_with("STARTTLS=client") || msg.contains(": to=") || msg.starts_with("to=") {
        return None;
    }
    let relay = || msg.find("relay=").and_then(|at| bracketed(&msg[at + 6..]));
    if msg.starts_with("STARTTLS=server, relay=") {
        let ip = relay()?;
        let version = msg
            .split(", ")
            .find_map(|kv| kv.strip_prefix("version="))
            .unwrap_or("TLS")
            .to_string();
        return Some(Event::Tls(ip, version));
    }
    // "2ARA6k1F000123: from=<a@b>, size=..., relay=host [192.0.2.1]"
    if msg.contains(": from=") {
        return relay().map(Event::Message);
    }
    if msg.contains("relay=") {
        return relay().map(Event::Peer);
    }
    if let Some(at) = msg.find(" did not issue MAIL/EXPN/VRFY/ETRN") {
        let before = &msg[..at];
        return before
            .rfind('[')
            .and_then(|i| bracketed(&before[i..]))
            .map(Event::Peer);
    }
    for marker in [
        "lost input channel from ",
        "timeout waiting for input from ",
    ] {
        if let Some(at) = msg.find(marker) {
            return bracketed(&msg[at + marker.len()..]).map(Event::Peer);
        }
    }
    None
}

/// What the legacy MTA's log says, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LegacySummary {
    pub files: Vec<String>,
    pub lines: u64,
    /// Lines of an SMTP server that name a peer.
    pub recognized_lines: u64,
    /// The window and the first and last recognized line in it.
    pub covered: Covered,
    /// The addresses taken as tlsfront's (`--tlsfront-source`).
    pub tlsfront_sources: Vec<String>,
    pub sessions: u64,
    pub via_tlsfront: u64,
    pub direct_sessions: u64,
    pub direct_tls: u64,
    pub direct_plaintext: u64,
    pub direct_messages: u64,
    pub direct_peers: Vec<DirectPeer>,
}

/// A peer that reached the legacy MTA without tlsfront.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectPeer {
    pub ip: String,
    pub sessions: u64,
    pub tls: u64,
    pub plaintext: u64,
    pub messages: u64,
    pub versions: Vec<NameCount>,
    pub first: Option<String>,
    pub last: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(sources: &[&str]) -> LegacyLog {
        LegacyLog::new(
            Window::default(),
            sources.iter().map(|s| parse_net(s).unwrap()).collect(),
            "2026-11-27T12:00:00Z".parse().unwrap(),
            jiff::tz::TimeZone::UTC,
        )
    }

    fn feed(l: &mut LegacyLog, text: &str) -> LegacySummary {
        for line in text.lines() {
            l.add_line(line.as_bytes());
        }
        l.summary()
    }

    /// Lines as Postfix 3.7 writes them (the real rig's maillog).
    #[test]
    fn postfix_sessions_direct_and_via_tlsfront() {
        let text = "\
Nov 27 10:06:42 legacy-rsa postfix-legacy-rsa/master[9620]: daemon started -- version 3.7.11
Nov 27 10:06:45 legacy-rsa postfix-legacy-rsa/smtpd[10346]: connect from localhost[127.0.0.1]
Nov 27 10:06:45 legacy-rsa postfix-legacy-rsa/smtpd[10346]: C950AA04218: client=localhost[127.0.0.1]
Nov 27 10:06:45 legacy-rsa postfix-legacy-rsa/smtpd[10346]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5
Nov 27 10:06:46 legacy-rsa postfix-legacy-rsa/smtpd[10346]: connect from unknown[192.0.2.7]
Nov 27 10:06:46 legacy-rsa postfix-legacy-rsa/smtpd[10346]: Anonymous TLS connection established from unknown[192.0.2.7]: TLSv1.0 with cipher AES256-SHA (256/256 bits)
Nov 27 10:06:46 legacy-rsa postfix-legacy-rsa/smtpd[10346]: D1: client=unknown[192.0.2.7]
Nov 27 10:06:46 legacy-rsa postfix-legacy-rsa/smtpd[10346]: disconnect from unknown[192.0.2.7] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7
Nov 27 10:06:47 legacy-rsa postfix-legacy-rsa/smtpd[10350]: connect from unknown[2001:db8::25]
Nov 27 10:06:47 legacy-rsa postfix-legacy-rsa/qmgr[9622]: C950AA04218: from=<sender@client.test>, size=1728, nrcpt=1 (queue active)
";
        let s = feed(&mut log(&["127.0.0.1"]), text);
        assert_eq!((s.sessions, s.via_tlsfront, s.direct_sessions), (3, 1, 2));
        assert_eq!(
            (s.direct_tls, s.direct_plaintext, s.direct_messages),
            (1, 1, 1)
        );
        let peers: Vec<(&str, u64, u64)> = s
            .direct_peers
            .iter()
            .map(|p| (p.ip.as_str(), p.tls, p.messages))
            .collect();
        assert_eq!(peers, [("192.0.2.7", 1, 1), ("2001:db8::25", 0, 0)]);
        assert_eq!(s.direct_peers[0].versions[0].name, "TLSv1.0");
        assert_eq!(s.covered.first.as_deref(), Some("2026-11-27T10:06:45Z"));
        assert_eq!(s.covered.last.as_deref(), Some("2026-11-27T10:06:47Z"));
        assert_eq!(s.recognized_lines, 8);
    }

    /// Sendmail 8.17 lines (a process per connection), RFC 3339 timestamps.
    #[test]
    fn sendmail_sessions() {
        let text = "\
2026-11-27T10:00:00.000000+00:00 legacy sm-mta[100]: starting daemon (8.17.1.9): SMTP+queueing@00:05:00
2026-11-27T10:00:01.000000+00:00 legacy sm-mta[201]: STARTTLS=server, relay=localhost [127.0.0.2], version=TLSv1.3, verify=NO, cipher=TLS_AES_256_GCM_SHA384, bits=256/256
2026-11-27T10:00:01.500000+00:00 legacy sm-mta[201]: 5ARA01x1000201: from=<a@b.test>, size=300, class=0, nrcpts=1, msgid=<x@y>, proto=ESMTPS, daemon=MTA-legacy, relay=localhost [127.0.0.2]
2026-11-27T10:00:02+0000 legacy sm-mta[202]: 5ARA02x1000202: from=<c@d.test>, size=300, class=0, nrcpts=1, proto=ESMTP, daemon=MTA-legacy, relay=old.example [198.51.100.9] (may be forged)
2026-11-27T10:00:02+0000 legacy sm-mta[202]: 5ARA02x1000202: to=<u@legacy>, delay=00:00:00, mailer=local, relay=[127.0.0.9] [127.0.0.9], stat=Sent
2026-11-27T10:00:03+0000 legacy sm-mta[203]: 5ARA03x1000203: scanner.example [203.0.113.4] did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA-legacy
2026-11-27T10:00:04+0000 legacy sm-mta[204]: STARTTLS=client, relay=mx.example., version=TLSv1.3, verify=OK
2026-11-27T10:00:05+0000 legacy sendmail[205]: lost input channel from [192.0.2.50] to MTA-legacy after ehlo
";
        let s = feed(&mut log(&["127.0.0.2"]), text);
        assert_eq!(
            (s.sessions, s.via_tlsfront, s.direct_sessions),
            (4, 1, 3),
            "{s:?}"
        );
        let peers: Vec<&str> = s.direct_peers.iter().map(|p| p.ip.as_str()).collect();
        assert_eq!(peers, ["192.0.2.50", "198.51.100.9", "203.0.113.4"]);
        assert_eq!(s.direct_messages, 1);
        assert_eq!(s.direct_tls, 0);
    }

    #[test]
    fn traditional_timestamps_take_the_year_that_is_not_in_the_future() {
        let l = log(&[]);
        let (ts, rest) = l.timestamp("Dec 31 23:59:59 host prog[1]: x").unwrap();
        assert_eq!(ts.to_string(), "2025-12-31T23:59:59Z");
        assert_eq!(rest, "host prog[1]: x");
        let (ts, _) = l.timestamp("Nov  7 08:00:00 host prog[1]: x").unwrap();
        assert_eq!(ts.to_string(), "2026-11-07T08:00:00Z");
        assert!(l.timestamp("garbage").is_none());
        assert_eq!(
            tag("host postfix/smtpd[12]: hi"),
            Some(("postfix/smtpd", 12, "hi"))
        );
        assert_eq!(
            tag("sm-mta[12]: hi there"),
            Some(("sm-mta", 12, "hi there"))
        );
    }

    #[test]
    fn the_window_and_the_default_sources() {
        let mut l = LegacyLog::new(
            Window {
                since: Some("2026-11-27T10:06:46Z".parse().unwrap()),
                until: None,
            },
            default_sources(),
            "2026-11-27T12:00:00Z".parse().unwrap(),
            jiff::tz::TimeZone::UTC,
        );
        let s = feed(
            &mut l,
            "Nov 27 10:06:45 h postfix/smtpd[1]: connect from x[192.0.2.1]\n\
             Nov 27 10:06:46 h postfix/smtpd[2]: connect from x[127.0.0.5]\n\
             Nov 27 10:06:46 h postfix/smtpd[3]: connect from x[::1]\n",
        );
        assert_eq!((s.sessions, s.via_tlsfront, s.direct_sessions), (2, 2, 0));
        assert_eq!(s.tlsfront_sources, ["127.0.0.0/8", "::1"]);
        assert!(crate::config::in_networks(
            "::ffff:127.0.0.1".parse().unwrap(),
            &default_sources()
        ));
    }
}

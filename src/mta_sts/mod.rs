//! MTA-STS (RFC 8461) as data: the `_mta-sts` TXT record, the policy file
//! (parsed and rendered), and which MX names a policy's `mx:` patterns
//! admit. Pure, so `check`, `probe` and the daemon (which serves a policy)
//! agree on every rule; [`fetch`] is the thin HTTPS client `check` and
//! `probe` use, with the resolver and the trust roots passed in.

pub mod fetch;

use thiserror::Error;

/// `mode:` of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Senders that support MTA-STS refuse to deliver without a valid certificate.
    Enforce,
    /// Senders deliver anyway and report failures (TLS-RPT).
    Testing,
    /// The policy is withdrawn.
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "enforce" => Some(Mode::Enforce),
            "testing" => Some(Mode::Testing),
            "none" => Some(Mode::None),
            _ => None,
        }
    }
}

/// A policy file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// `mx:` patterns: a host name, or `*.` and a domain (one label).
    pub mx: Vec<String>,
    /// Seconds senders cache the policy.
    pub max_age: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("no \"version: STSv1\" line first")]
    Version,
    #[error("no valid mode: line (enforce, testing or none)")]
    Mode,
    #[error("no valid max_age: line (seconds, at most 31557600)")]
    MaxAge,
    #[error("mode {0} but no mx: line")]
    NoMx(&'static str),
    #[error("line {0:?} is not KEY: VALUE")]
    Line(String),
}

impl Policy {
    /// Parses a policy file (RFC 8461 §3.2): `key: value` lines ending in CRLF
    /// or LF, version first; unknown keys are ignored, as senders do.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(PolicyError::Line(line.chars().take(80).collect()));
            };
            let (key, value) = (key.trim(), value.trim());
            if i == 0 && key != "version" {
                return Err(PolicyError::Version);
            }
            match key {
                "version" => version = Some(value == "STSv1"),
                "mode" => mode = Mode::parse(value),
                "max_age" => {
                    max_age = value
                        .parse::<u64>()
                        .ok()
                        .filter(|n| value.len() <= 10 && *n <= crate::limits::MAX_MTA_STS_MAX_AGE)
                }
                "mx" => mx.push(value.to_ascii_lowercase()),
                _ => {}
            }
        }
        if version != Some(true) {
            return Err(PolicyError::Version);
        }
        let mode = mode.ok_or(PolicyError::Mode)?;
        let max_age = max_age.ok_or(PolicyError::MaxAge)?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::NoMx(mode.as_str()));
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// The policy file as served: CRLF line ends, version first.
    pub fn render(&self) -> String {
        let mut out = format!("version: STSv1\r\nmode: {}\r\n", self.mode.as_str());
        for mx in &self.mx {
            out.push_str(&format!("mx: {mx}\r\n"));
        }
        out.push_str(&format!("max_age: {}\r\n", self.max_age));
        out
    }

    /// The first `mx:` pattern that admits `host`, if any (RFC 8461 §4.1).
    pub fn admits(&self, host: &str) -> Option<&str> {
        self.mx
            .iter()
            .find(|p| mx_matches(p, host))
            .map(String::as_str)
    }
}

/// Whether an `mx:` pattern admits a host name: equal (case-insensitive,
/// a trailing dot ignored), or `*.domain` for exactly one more label.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
        None => pattern == host,
    }
}

/// The `_mta-sts.DOMAIN` TXT record (RFC 8461 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    /// Changes whenever the policy does: senders fetch it again then.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxtError {
    #[error("does not start with v=STSv1")]
    Version,
    #[error("no id= field (1 to 32 letters and digits)")]
    Id,
}

impl TxtRecord {
    /// Parses one TXT record's text: `v=STSv1; id=...;` fields split by `;`.
    pub fn parse(text: &str) -> Result<TxtRecord, TxtError> {
        let mut fields = text.split(';').map(str::trim).filter(|f| !f.is_empty());
        if fields.next() != Some("v=STSv1") {
            return Err(TxtError::Version);
        }
        let id = fields
            .filter_map(|f| f.split_once('='))
            .find(|(k, _)| k.trim() == "id")
            .map(|(_, v)| v.trim().to_string())
            .filter(|id| {
                (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            .ok_or(TxtError::Id)?;
        Ok(TxtRecord { id })
    }

    /// Whether a TXT record's text is meant as an MTA-STS record at all
    /// (RFC 8461 §3.1: others at the name are ignored).
    pub fn is_sts(text: &str) -> bool {
        text.trim_start().starts_with("v=STSv1")
    }
}

/// The host name the policy is fetched from.
pub fn policy_host(domain: &str) -> String {
    format!("mta-sts.{}", domain.trim_end_matches('.'))
}

/// The policy's URL (RFC 8461 §3.3).
pub fn policy_url(domain: &str) -> String {
    format!("https://{}/.well-known/mta-sts.txt", policy_host(domain))
}

/// The path the policy is served at.
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trips_and_parses_lf_too() {
        let p = Policy {
            mode: Mode::Enforce,
            mx: vec!["mx.example.com".into(), "*.example.net".into()],
            max_age: 604800,
        };
        let text = p.render();
        assert_eq!(
            text,
            "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"
        );
        assert_eq!(Policy::parse(&text).unwrap(), p);
        assert_eq!(Policy::parse(&text.replace("\r\n", "\n")).unwrap(), p);
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        for (text, err) in [
            ("mode: enforce\nversion: STSv1\n", PolicyError::Version),
            (
                "version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n",
                PolicyError::Version,
            ),
            (
                "version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n",
                PolicyError::Mode,
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a\n",
                PolicyError::MaxAge,
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a\nmax_age: 99999999999\n",
                PolicyError::MaxAge,
            ),
            (
                "version: STSv1\nmode: testing\nmax_age: 5\n",
                PolicyError::NoMx("testing"),
            ),
        ] {
            assert_eq!(Policy::parse(text), Err(err), "{text:?}");
        }
        assert!(Policy::parse("version: STSv1\nmode: none\nmax_age: 5\n").is_ok());
    }

    #[test]
    fn mx_patterns_match_one_label_under_a_wildcard() {
        assert!(mx_matches("mx.example.com", "MX.example.com."));
        assert!(mx_matches("*.example.com", "mx1.example.com"));
        assert!(!mx_matches("*.example.com", "a.b.example.com"));
        assert!(!mx_matches("*.example.com", "example.com"));
        assert!(!mx_matches("mx.example.com", "mx.example.net"));
    }

    #[test]
    fn txt_records_need_version_first_and_an_id() {
        assert_eq!(
            TxtRecord::parse("v=STSv1; id=20240101T000000;").unwrap().id,
            "20240101T000000"
        );
        assert_eq!(TxtRecord::parse("v=STSv1;id=abc").unwrap().id, "abc");
        assert_eq!(TxtRecord::parse("id=abc; v=STSv1"), Err(TxtError::Version));
        assert_eq!(TxtRecord::parse("v=STSv1; id=a-b"), Err(TxtError::Id));
        assert_eq!(TxtRecord::parse("v=STSv1;"), Err(TxtError::Id));
        assert!(TxtRecord::is_sts(" v=STSv1; id=x"));
        assert!(!TxtRecord::is_sts("v=spf1 -all"));
    }
}

//! When to order a certificate, how long to wait after a failure, and which
//! key the next certificate gets: pure decisions over times (Unix seconds)
//! and facts, so every rule is table-tested. The renewal loop in
//! [`super`] carries them out.

use std::time::Duration;

use crate::limits;

/// The stored certificate, as far as renewal cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub not_before: i64,
    pub not_after: i64,
    /// DNS names it covers.
    pub names: Vec<String>,
    /// Its key is the one in `key.pem`.
    pub key_matches: bool,
}

/// Why a certificate is ordered now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Nothing stored yet (first start, or the files are gone).
    NoCertificate,
    /// Names were added to the configuration since it was issued.
    NamesMissing(Vec<String>),
    /// The stored key is not the certificate's (the files were mixed up).
    KeyMismatch,
    /// It is within `renew_before` of expiry (or past it).
    Expiring,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::NoCertificate => f.write_str("no certificate stored yet"),
            Reason::NamesMissing(n) => write!(f, "it does not cover {}", n.join(", ")),
            Reason::KeyMismatch => f.write_str("the stored key does not match the certificate"),
            Reason::Expiring => f.write_str("it is due for renewal"),
        }
    }
}

/// When a certificate valid over `[not_before, not_after]` is renewed:
/// `renew_before` ahead of expiry, or with a third of its lifetime left
/// (Let's Encrypt's advice: 30 of 90 days; 2 of 6 for short-lived ones).
pub fn renew_at(not_before: i64, not_after: i64, renew_before: Option<Duration>) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let before = match renew_before {
        Some(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX).min(lifetime),
        None => lifetime / 3,
    };
    not_after - before
}

/// Whether to order now, and if not, when.
pub fn due(
    stored: Option<&Stored>,
    names: &[String],
    now: i64,
    renew_before: Option<Duration>,
) -> Result<i64, Reason> {
    let Some(s) = stored else {
        return Err(Reason::NoCertificate);
    };
    let missing: Vec<String> = names
        .iter()
        .filter(|n| !s.names.iter().any(|c| c.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(Reason::NamesMissing(missing));
    }
    if !s.key_matches {
        return Err(Reason::KeyMismatch);
    }
    let at = renew_at(s.not_before, s.not_after, renew_before);
    if now >= at {
        Err(Reason::Expiring)
    } else {
        Ok(at)
    }
}

/// The wait after the `failures`-th failure in a row: `initial`, doubling,
/// at most [`limits::ACME_RETRY_MAX`].
pub fn backoff(failures: u32, initial: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    initial
        .saturating_mul(1u32 << doublings)
        .min(limits::ACME_RETRY_MAX)
        .max(initial.min(limits::ACME_RETRY_MAX))
}

/// Which key the next certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChoice {
    /// The key in service (its TLSA records stay right).
    Current,
    /// The pre-generated next key (whose TLSA records are already out).
    Next,
    /// The next key's records are out but not long enough yet, and the
    /// certificate in service has time to spare: order at this time.
    WaitUntil(i64),
}

/// How far a next key's TLSA records are out, over every MX name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    /// Unix seconds since which every name has shown the record (None:
    /// some name does not show it now).
    pub since: Option<i64>,
    /// The names that do not show it now.
    pub missing: Vec<String>,
    /// How long it must have been out.
    pub wait: Duration,
}

/// The key for a renewal: with DANE, the next key only once its TLSA
/// records have been out for the wait (caches still holding the old RRset
/// have then expired); the current key otherwise, with the reason. A wait
/// that ends while the certificate in service has more than half of its
/// remaining time left is waited out instead. Without DANE, every renewal
/// moves to the next key, as certbot's fresh keys do.
pub fn choose_key(
    dane: Option<&Visibility>,
    now: i64,
    not_after: i64,
) -> (KeyChoice, Option<String>) {
    let Some(v) = dane else {
        return (KeyChoice::Next, None);
    };
    let Some(since) = v.since else {
        return (
            KeyChoice::Current,
            Some(format!(
                "the next key's TLSA record is not published for {}",
                v.missing.join(", ")
            )),
        );
    };
    let wait = i64::try_from(v.wait.as_secs()).unwrap_or(i64::MAX);
    let ready = since.saturating_add(wait);
    if now >= ready {
        return (KeyChoice::Next, None);
    }
    if ready <= now + (not_after - now) / 2 {
        return (KeyChoice::WaitUntil(ready), None);
    }
    (
        KeyChoice::Current,
        Some(format!(
            "the next key's TLSA record has been visible for {}s of the {}s required",
            (now - since).max(0),
            wait
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(names: &[&str]) -> Stored {
        Stored {
            not_before: 1000,
            not_after: 1000 + 90 * 86_400,
            names: names.iter().map(|s| s.to_string()).collect(),
            key_matches: true,
        }
    }

    #[test]
    fn renewal_is_due_with_a_third_left_or_renew_before() {
        let names = vec!["mx.example.com".to_string()];
        let s = stored(&["mx.example.com"]);
        let at = 1000 + 60 * 86_400;
        assert_eq!(due(Some(&s), &names, 1000, None), Ok(at));
        assert_eq!(due(Some(&s), &names, at, None), Err(Reason::Expiring));
        let ten = Some(Duration::from_secs(10 * 86_400));
        assert_eq!(due(Some(&s), &names, at, ten), Ok(1000 + 80 * 86_400));
        // A renew_before longer than the lifetime renews at once.
        let long = Some(Duration::from_secs(200 * 86_400));
        assert_eq!(due(Some(&s), &names, 1000, long), Err(Reason::Expiring));
        assert_eq!(due(None, &names, 0, None), Err(Reason::NoCertificate));
        let more = vec!["mx.example.com".to_string(), "MX2.example.com".to_string()];
        assert_eq!(
            due(Some(&s), &more, 1000, None),
            Err(Reason::NamesMissing(vec!["MX2.example.com".into()]))
        );
        let mixed = Stored {
            key_matches: false,
            ..s.clone()
        };
        assert_eq!(
            due(Some(&mixed), &names, 1000, None),
            Err(Reason::KeyMismatch)
        );
        // Short-lived certificates: 6 days, renewed with 2 left.
        assert_eq!(renew_at(0, 6 * 86_400, None), 4 * 86_400);
    }

    #[test]
    fn backoff_doubles_and_stops() {
        let m = Duration::from_secs(60);
        assert_eq!(backoff(1, m), m);
        assert_eq!(backoff(2, m), 2 * m);
        assert_eq!(backoff(4, m), 8 * m);
        assert_eq!(backoff(40, m), limits::ACME_RETRY_MAX);
        assert_eq!(backoff(0, m), m);
    }

    #[test]
    fn the_next_key_waits_for_its_tlsa_records() {
        let wait = Duration::from_secs(600);
        let far = 100_000;
        assert_eq!(choose_key(None, 0, far), (KeyChoice::Next, None));
        let unpublished = Visibility {
            since: None,
            missing: vec!["mx.example.com".into()],
            wait,
        };
        let (k, why) = choose_key(Some(&unpublished), 5000, far);
        assert_eq!(k, KeyChoice::Current);
        assert!(why.unwrap().contains("not published for mx.example.com"));
        let recent = Visibility {
            since: Some(4800),
            missing: vec![],
            wait,
        };
        // Out for 200 of 600 s, and the certificate has days left: wait.
        assert_eq!(
            choose_key(Some(&recent), 5000, far),
            (KeyChoice::WaitUntil(5400), None)
        );
        // No time to spare: keep the current key, and say why.
        let (k, why) = choose_key(Some(&recent), 5000, 5600);
        assert_eq!(k, KeyChoice::Current);
        assert!(why.unwrap().contains("200s of the 600s"));
        assert_eq!(
            choose_key(Some(&recent), 5400, far),
            (KeyChoice::Next, None)
        );
    }
}

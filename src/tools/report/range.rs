//! Time for the report: the `--since`/`--until` arguments (a duration before
//! now, or an absolute date or time) and the time range a report covers.

use serde::Serialize;

/// The sessions a report selects: `since <= ts < until`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<jiff::Timestamp>,
    pub until: Option<jiff::Timestamp>,
}

impl Window {
    pub fn contains(&self, ts: jiff::Timestamp) -> bool {
        self.since.is_none_or(|s| ts >= s) && self.until.is_none_or(|u| ts < u)
    }
}

/// A `--since`/`--until` value, relative to `now`: a duration before now
/// (`30m`, `24h`, `7d`), an RFC 3339 time (`2026-11-01T08:00:00+01:00`), or a
/// date or date and time without an offset, taken as UTC (`2026-11-01`,
/// `2026-11-01T08:00`).
pub fn parse_when(s: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    let s = s.trim();
    if let Some(d) = crate::config::parse_duration(s)
        && !d.is_zero()
    {
        // Whole seconds: the range is stated, and "7d" means no more.
        return now
            .checked_sub(d)
            .and_then(|t| t.round(jiff::Unit::Second))
            .map_err(|e| format!("{s:?}: {e}"));
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let civil = s.parse::<jiff::civil::DateTime>().or_else(|_| {
        s.parse::<jiff::civil::Date>()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
    });
    match civil {
        Ok(dt) => dt
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|e| format!("{s:?}: {e}")),
        Err(_) => Err(format!(
            "{s:?} is neither a duration (30m, 24h, 7d) nor a date or time \
             (2026-11-01, 2026-11-01T08:00, 2026-11-01T08:00:00+01:00)"
        )),
    }
}

/// What a report covers: the window asked for and the first and last
/// session found in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Covered {
    /// The `--since` bound (RFC 3339), if any.
    pub since: Option<String>,
    /// The `--until` bound (RFC 3339, exclusive), if any.
    pub until: Option<String>,
    /// The earliest and latest `ts` among the sessions counted.
    pub first: Option<String>,
    pub last: Option<String>,
}

impl Covered {
    pub fn of(
        window: Window,
        first: Option<jiff::Timestamp>,
        last: Option<jiff::Timestamp>,
    ) -> Self {
        let s = |t: Option<jiff::Timestamp>| t.map(|t| t.to_string());
        Covered {
            since: s(window.since),
            until: s(window.until),
            first: s(first),
            last: s(last),
        }
    }

    /// "from A to B" in words, for text and HTML.
    pub fn describe(&self) -> String {
        let from = self
            .since
            .as_deref()
            .or(self.first.as_deref())
            .unwrap_or("the start");
        let to = match (&self.until, &self.last) {
            (Some(u), _) => format!("{u} (exclusive)"),
            (None, Some(l)) => l.clone(),
            (None, None) => "the end".into(),
        };
        let mut s = format!("from {from} to {to}");
        if let (Some(f), Some(l)) = (&self.first, &self.last)
            && (self.since.is_some() || self.until.is_some())
        {
            s.push_str(&format!(" (sessions {f} to {l})"));
        }
        s
    }
}

/// Tracks the earliest and latest of a stream of times.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    pub first: Option<jiff::Timestamp>,
    pub last: Option<jiff::Timestamp>,
}

impl Span {
    pub fn add(&mut self, ts: jiff::Timestamp) {
        if self.first.is_none_or(|f| ts < f) {
            self.first = Some(ts);
        }
        if self.last.is_none_or(|l| ts > l) {
            self.last = Some(ts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_dates_and_times() {
        let now: jiff::Timestamp = "2026-11-27T12:00:00.400Z".parse().unwrap();
        let cases = [
            ("7d", "2026-11-20T12:00:00Z"),
            ("90m", "2026-11-27T10:30:00Z"),
            ("2026-11-01", "2026-11-01T00:00:00Z"),
            ("2026-11-01T08:30", "2026-11-01T08:30:00Z"),
            ("2026-11-01T08:30:00+01:00", "2026-11-01T07:30:00Z"),
            ("2026-11-01T08:30:00.250Z", "2026-11-01T08:30:00.25Z"),
        ];
        for (arg, want) in cases {
            assert_eq!(parse_when(arg, now).unwrap().to_string(), want, "{arg}");
        }
        for bad in ["yesterday", "0s", "2026-13-01", ""] {
            assert!(parse_when(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_window_includes_since_and_excludes_until() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let w = Window {
            since: Some(t("2026-11-01T00:00:00Z")),
            until: Some(t("2026-11-02T00:00:00Z")),
        };
        assert!(w.contains(t("2026-11-01T00:00:00Z")));
        assert!(w.contains(t("2026-11-01T23:59:59.999Z")));
        assert!(!w.contains(t("2026-11-02T00:00:00Z")));
        assert!(!w.contains(t("2026-10-31T23:59:59Z")));
        let c = Covered::of(
            w,
            Some(t("2026-11-01T03:00:00Z")),
            Some(t("2026-11-01T04:00:00Z")),
        );
        assert_eq!(
            c.describe(),
            "from 2026-11-01T00:00:00Z to 2026-11-02T00:00:00Z (exclusive) \
             (sessions 2026-11-01T03:00:00Z to 2026-11-01T04:00:00Z)"
        );
        let open = Covered::of(
            Window::default(),
            Some(t("2026-11-01T03:00:00Z")),
            Some(t("2026-11-01T04:00:00Z")),
        );
        assert_eq!(
            open.describe(),
            "from 2026-11-01T03:00:00Z to 2026-11-01T04:00:00Z"
        );
    }
}

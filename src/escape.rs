//! Escaping of untrusted text before it reaches a terminal.
//!
//! Text renderings (`report`, `probe`, `check`) print strings that came from
//! clients, servers or record files: a server name, a greeting, a certificate
//! subject. Left raw, a CR or LF there forges a line of the report and an ESC
//! starts a terminal control sequence. Every text renderer passes such
//! strings through [`text`]; the JSON renderings need nothing (JSON escapes
//! control characters itself).

use std::borrow::Cow;
use std::fmt::Write;

/// `s` with every character that could move the cursor, end a line, drive
/// the terminal or reorder what is shown replaced by a visible escape:
/// `\r`, `\n`, `\t`, `\xHH` (other ASCII controls and DEL), `\u{HHHH}` (C1
/// controls, Unicode bidirectional overrides and isolates, line and paragraph
/// separators). A backslash becomes `\\`, so an escape always means the
/// character it names. Printable text, non-ASCII letters included, is kept.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(
            c,
            // Bidirectional marks, embeddings, overrides and isolates: they
            // make a terminal show text in another order than it is.
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            // Line and paragraph separators: line breaks to some viewers.
            | '\u{2028}' | '\u{2029}'
        )
}

/// A value with peer text in it (a backend's reply in an error, say), made
/// safe for a log line: the daemon's logs are read in terminals too.
pub fn log(value: &impl std::fmt::Display) -> String {
    text(&value.to_string()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_kept_as_is() {
        for s in [
            "mx.example.com",
            "Legacy path retired: NO — 2 sessions",
            "Ünïcödé 名前",
            "",
        ] {
            assert!(matches!(text(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    #[test]
    fn controls_become_visible_escapes() {
        let cases = [
            (
                "a\r\nlegacy path retired: yes\x1b[2J",
                r"a\r\nlegacy path retired: yes\x1b[2J",
            ),
            ("tab\there", r"tab\there"),
            ("nul\0del\x7f", r"nul\x00del\x7f"),
            ("c1\u{9b}31m", r"c1\u{009b}31m"),
            ("evil\u{202e}txt.exe", r"evil\u{202e}txt.exe"),
            ("iso\u{2066}late\u{2069}", r"iso\u{2066}late\u{2069}"),
            ("line\u{2028}sep", r"line\u{2028}sep"),
            (r"back\slash", r"back\\slash"),
        ];
        for (raw, shown) in cases {
            assert_eq!(text(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn the_output_never_holds_a_control_character() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let shown = text(&all);
        assert!(!shown.chars().any(needs_escape_but_backslash), "{shown:?}");
        fn needs_escape_but_backslash(c: char) -> bool {
            c != '\\' && needs_escape(c)
        }
    }
}

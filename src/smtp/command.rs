//! Client command classification.
//!
//! Only the verb is interpreted; arguments are kept as raw bytes because
//! commands that go to the backend are forwarded exactly as the client sent them.

/// Verbs never passed to the backend, whatever `smtp.relay_verbs` says: they
/// belong to the hop between tlsfront and the backend (XCLIENT would let a
/// client claim any identity), set per-connection state that would outlive
/// the client (Sendmail's VERB, ONEX, XUSR), authenticate past tlsfront's
/// AUTH rules (Exchange's X-EXPS, X-ANONYMOUSTLS), or are historic back doors.
pub const NEVER_RELAYED: &[&[u8]] = &[
    b"XCLIENT",
    b"XFORWARD",
    b"DEBUG",
    b"WIZ",
    b"KILL",
    b"TURN",
    b"ATRN",
    b"XEXCH50",
    b"X-LINK2STATE",
    b"VERB",
    b"ONEX",
    b"XUSR",
    b"X-EXPS",
    b"X-ANONYMOUSTLS",
];

/// The first byte in a command (or SASL) line that has no place there: a C0
/// control other than TAB, or DEL. A CR inside a line is the dangerous one: a
/// backend that ends lines on CR would see several commands where tlsfront
/// saw one; a NUL cuts the line short in C parsers.
pub fn forbidden_byte(line: &[u8]) -> Option<u8> {
    line.iter()
        .copied()
        .find(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// The verbs tlsfront treats differently. Everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Helo,
    Ehlo,
    StartTls,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    Auth,
    /// Anything else, including commands tlsfront does not know: they go to
    /// the backend, which gives its own "not recognised" reply.
    Other,
    /// Not a command at all: empty, or a verb with bytes no SMTP verb has.
    Invalid,
}

/// A parsed command line (without its line ending).
impl Verb {
    /// Whether relaying this verb may leave state on the backend connection
    /// that the next session's EHLO does not clear: SASL identity (Postfix
    /// keeps it across EHLO), verbose or one-transaction modes, whatever an
    /// extension verb sets. A connection that carried one is never reused.
    pub fn leaves_backend_state(self) -> bool {
        !matches!(
            self,
            Verb::Mail
                | Verb::Rcpt
                | Verb::Data
                | Verb::Rset
                | Verb::Noop
                | Verb::Helo
                | Verb::Ehlo
                | Verb::Quit
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'a> {
    pub verb: Verb,
    /// The verb as sent (for logs and error replies).
    pub verb_raw: &'a [u8],
    /// Everything after the verb and the separating spaces.
    pub args: &'a [u8],
}

impl<'a> Command<'a> {
    pub fn parse(line: &'a [u8]) -> Command<'a> {
        let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
        let verb_raw = &line[..end];
        let mut args = &line[end..];
        while let [b' ', rest @ ..] = args {
            args = rest;
        }
        while let [rest @ .., b' ' | b'\t'] = args {
            args = rest;
        }
        let verb = if verb_raw.is_empty()
            || verb_raw.len() > crate::limits::MAX_RELAY_VERB
            || !verb_raw
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            Verb::Invalid
        } else {
            classify(verb_raw)
        };
        Command {
            verb,
            verb_raw,
            args,
        }
    }

    /// The first argument word (the HELO/EHLO name).
    pub fn first_arg(&self) -> Option<&'a [u8]> {
        self.args.split(|&b| b == b' ').find(|w| !w.is_empty())
    }
}

fn classify(verb: &[u8]) -> Verb {
    const TABLE: &[(&[u8], Verb)] = &[
        (b"HELO", Verb::Helo),
        (b"EHLO", Verb::Ehlo),
        (b"STARTTLS", Verb::StartTls),
        (b"MAIL", Verb::Mail),
        (b"RCPT", Verb::Rcpt),
        (b"DATA", Verb::Data),
        (b"BDAT", Verb::Bdat),
        (b"RSET", Verb::Rset),
        (b"NOOP", Verb::Noop),
        (b"QUIT", Verb::Quit),
        (b"VRFY", Verb::Vrfy),
        (b"EXPN", Verb::Expn),
        (b"HELP", Verb::Help),
        (b"AUTH", Verb::Auth),
    ];
    TABLE
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(verb))
        .map(|(_, v)| *v)
        .unwrap_or(Verb::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&[u8], Verb, &[u8])] = &[
            (b"EHLO client.example", Verb::Ehlo, b"client.example"),
            (b"ehlo   client.example  ", Verb::Ehlo, b"client.example"),
            (b"HELO x", Verb::Helo, b"x"),
            (b"STARTTLS", Verb::StartTls, b""),
            (b"starttls now", Verb::StartTls, b"now"),
            (
                b"MAIL FROM:<a@b> SIZE=10",
                Verb::Mail,
                b"FROM:<a@b> SIZE=10",
            ),
            (b"rcpt TO:<c@d>", Verb::Rcpt, b"TO:<c@d>"),
            (b"DATA", Verb::Data, b""),
            (b"BDAT 100 LAST", Verb::Bdat, b"100 LAST"),
            (b"RSET", Verb::Rset, b""),
            (b"NOOP", Verb::Noop, b""),
            (b"QUIT", Verb::Quit, b""),
            (b"VRFY postmaster", Verb::Vrfy, b"postmaster"),
            (b"EXPN list", Verb::Expn, b"list"),
            (b"HELP", Verb::Help, b""),
            (b"AUTH PLAIN AGFiAGM=", Verb::Auth, b"PLAIN AGFiAGM="),
            (b"XFOO bar", Verb::Other, b"bar"),
            (b"", Verb::Invalid, b""),
            (b" EHLO x", Verb::Invalid, b"EHLO x"),
            (b"GET / HTTP/1.1", Verb::Other, b"/ HTTP/1.1"),
            (b"\x00\x01", Verb::Invalid, b""),
            (b"EHLO\xff", Verb::Invalid, b""),
        ];
        for (line, verb, args) in cases {
            let c = Command::parse(line);
            assert_eq!(c.verb, *verb, "{:?}", String::from_utf8_lossy(line));
            assert_eq!(c.args, *args, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn control_bytes_are_found_anywhere_in_a_line() {
        let cases: &[(&[u8], Option<u8>)] = &[
            (b"MAIL FROM:<a@b>", None),
            (b"MAIL FROM:<a@b>\tSIZE=1", None),
            (b"MAIL FROM:<a>\rRCPT TO:<x>\rDATA", Some(b'\r')),
            (b"RCPT TO:<a\x00b>", Some(0)),
            (b"NOOP \x1b[2J", Some(0x1b)),
            (b"NOOP \x7f", Some(0x7f)),
            (b"\x0bEHLO x", Some(0x0b)),
            ("MAIL FROM:<j\u{f6}rg@b>".as_bytes(), None),
            (b"", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                forbidden_byte(line),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn first_arg() {
        assert_eq!(
            Command::parse(b"EHLO  a.b c").first_arg(),
            Some(&b"a.b"[..])
        );
        assert_eq!(Command::parse(b"EHLO").first_arg(), None);
    }
}

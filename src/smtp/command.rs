//! Client command classification.
//!
//! Only the verb is interpreted; arguments are kept as raw bytes because
//! commands that go to the backend are forwarded exactly as the client sent them.

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
            || verb_raw.len() > 16
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
    fn first_arg() {
        assert_eq!(
            Command::parse(b"EHLO  a.b c").first_arg(),
            Some(&b"a.b"[..])
        );
        assert_eq!(Command::parse(b"EHLO").first_arg(), None);
    }
}

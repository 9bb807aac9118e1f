//! Parsing of SMTP replies as they arrive from the backend.
//!
//! A reply is one or more lines `ddd-text` ending with a line `ddd text` (or a
//! bare `ddd`). The raw bytes are kept so the client receives the backend's
//! reply exactly as sent, normalised only to CRLF line endings.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line after the code and separator.
    pub lines: Vec<Bytes>,
    /// The whole reply, every line CRLF-terminated: ready to send on.
    pub raw: Bytes,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    /// 2xx: the command succeeded.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    /// First line's text, lossily decoded, for logs.
    /// The code and the first line, bounded, for messages a person reads
    /// (escape it where it is shown: `escape::text`, `escape::log`).
    pub fn summary(&self) -> String {
        let text = self
            .lines
            .first()
            .map(|l| String::from_utf8_lossy(l))
            .unwrap_or_default();
        let mut chars = text.chars();
        let kept: String = chars
            .by_ref()
            .take(crate::limits::REPLY_SUMMARY_CHARS)
            .collect();
        let more = if chars.next().is_some() { "..." } else { "" };
        format!("{} {kept}{more}", self.code)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReplyError {
    #[error("malformed reply line: {0:?}")]
    Malformed(String),
    #[error("reply line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("reply larger than {0} bytes")]
    TooLarge(usize),
    #[error("reply lines disagree on the code ({0} then {1})")]
    CodeMismatch(u16, u16),
}

/// Incremental reply parser; holds the lines seen so far of an unfinished reply.
#[derive(Debug)]
pub struct ReplyParser {
    max_line: usize,
    max_total: usize,
    code: Option<u16>,
    /// Where each line's text lies in `raw`: the lines are slices of the
    /// reply's one buffer, not copies of their own.
    lines: Vec<std::ops::Range<usize>>,
    raw: BytesMut,
}

impl ReplyParser {
    pub fn new(max_line: usize, max_total: usize) -> Self {
        ReplyParser {
            max_line,
            max_total,
            code: None,
            lines: Vec::new(),
            raw: BytesMut::new(),
        }
    }

    /// Consumes complete lines from `buf`; returns a reply once its last line
    /// has arrived, `Ok(None)` when more input is needed.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, ReplyError> {
        loop {
            let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() > self.max_line + 1 {
                    return Err(ReplyError::LineTooLong(self.max_line));
                }
                return Ok(None);
            };
            let mut content = &buf[..lf];
            if let [rest @ .., b'\r'] = content {
                content = rest;
            }
            if content.len() > self.max_line {
                return Err(ReplyError::LineTooLong(self.max_line));
            }
            let (code, last, text) = parse_line(content)?;
            if let Some(prev) = self.code
                && prev != code
            {
                return Err(ReplyError::CodeMismatch(prev, code));
            }
            self.code = Some(code);
            if self.raw.len() + content.len() + 2 > self.max_total {
                return Err(ReplyError::TooLarge(self.max_total));
            }
            // The text is the tail of the line's content.
            let start = self.raw.len() + content.len() - text.len();
            // Room for what is buffered of the reply (a few lines at most):
            // one allocation per reply, most often.
            self.raw
                .reserve((content.len() + 2).max(buf.len().min(REPLY_ROOM)));
            self.raw.extend_from_slice(content);
            self.lines.push(start..start + text.len());
            self.raw.extend_from_slice(b"\r\n");
            buf.advance(lf + 1);
            if last {
                let raw = std::mem::take(&mut self.raw).freeze();
                let reply = Reply {
                    code,
                    lines: self.lines.drain(..).map(|r| raw.slice(r)).collect(),
                    raw,
                };
                self.code = None;
                return Ok(Some(reply));
            }
        }
    }
}

fn parse_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).into_owned());
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(malformed());
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    if !(200..=599).contains(&code) {
        return Err(malformed());
    }
    match line.get(3) {
        None => Ok((code, true, &[])),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(malformed()),
    }
}

/// What the first line of a reply reserves for the lines buffered after it.
const REPLY_ROOM: usize = 1024;

/// Builds a reply that tlsfront itself sends: one or more text lines.
pub fn local(code: u16, lines: &[&str]) -> Bytes {
    debug_assert!(
        (100..1000).contains(&code),
        "an SMTP reply code has three digits"
    );
    let mut out = BytesMut::with_capacity(lines.iter().map(|l| l.len() + 6).sum());
    let digits = [
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ];
    for (i, line) in lines.iter().enumerate() {
        out.extend_from_slice(&digits);
        out.extend_from_slice(if i + 1 == lines.len() { b" " } else { b"-" });
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_bounded_and_escaped_where_logged() {
        let mut p = ReplyParser::new(4096, 65536);
        let long = "x".repeat(1000);
        let mut buf = BytesMut::from(&b"554 evil\x1b[2J\rforged\r\n"[..]);
        let r = p.parse(&mut buf).unwrap().unwrap();
        let logged = crate::escape::log(&r.summary());
        assert!(
            !logged.contains('\x1b') && !logged.contains('\r'),
            "{logged}"
        );
        let mut buf = BytesMut::from(format!("250 {long}\r\n").as_bytes());
        let r = p.parse(&mut buf).unwrap().unwrap();
        assert!(r.summary().len() < 300 && r.summary().ends_with("..."));
    }

    fn parse_all(input: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut p = ReplyParser::new(512, 4096);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(r) = p.parse(&mut buf)? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn single_and_multi_line() {
        let r = parse_all(b"220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].code, 220);
        assert_eq!(r[1].code, 250);
        assert_eq!(
            r[1].lines,
            vec![
                Bytes::from("mx"),
                Bytes::from("PIPELINING"),
                Bytes::from("8BITMIME")
            ]
        );
        assert_eq!(
            &r[1].raw[..],
            b"250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
    }

    #[test]
    fn bare_lf_and_bare_code_are_normalised() {
        let r = parse_all(b"354\n").unwrap();
        assert_eq!(r[0].code, 354);
        assert_eq!(&r[0].raw[..], b"354\r\n");
        assert_eq!(r[0].lines, vec![Bytes::new()]);
    }

    #[test]
    fn partial_reply_needs_more() {
        let mut p = ReplyParser::new(512, 4096);
        let mut buf = BytesMut::from(&b"250-a\r\n250 b"[..]);
        assert_eq!(p.parse(&mut buf), Ok(None));
        buf.extend_from_slice(b"\r\n");
        let r = p.parse(&mut buf).unwrap().unwrap();
        assert_eq!(r.lines, vec![Bytes::from("a"), Bytes::from("b")]);
        assert_eq!(&r.raw[..], b"250-a\r\n250 b\r\n");
        assert!(buf.is_empty(), "the reply's bytes are consumed");
    }

    #[test]
    fn malformed_replies() {
        assert!(matches!(
            parse_all(b"hello\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_all(b"25\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_all(b"250xfoo\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_all(b"999 no\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert_eq!(
            parse_all(b"250-a\r\n550 b\r\n"),
            Err(ReplyError::CodeMismatch(250, 550))
        );
    }

    #[test]
    fn bounds() {
        let long = [b"250 ".as_slice(), &[b'x'; 600], b"\r\n"].concat();
        assert_eq!(parse_all(&long), Err(ReplyError::LineTooLong(512)));
        let mut p = ReplyParser::new(512, 4096);
        let mut buf = BytesMut::from(&[b'2'; 600][..]);
        assert_eq!(p.parse(&mut buf), Err(ReplyError::LineTooLong(512)));
        let many = b"250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n".repeat(100);
        assert_eq!(parse_all(&many), Err(ReplyError::TooLarge(4096)));
    }

    #[test]
    fn local_replies() {
        assert_eq!(&local(250, &["OK"])[..], b"250 OK\r\n");
        assert_eq!(&local(250, &["a", "b"])[..], b"250-a\r\n250 b\r\n");
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded() {
        let mut x: u64 = 7;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5_000 {
            let mut p = ReplyParser::new(64, 256);
            let mut buf = BytesMut::new();
            for _ in 0..(next() % 20) {
                let n = (next() % 16) as usize;
                buf.extend((0..n).map(|_| b"0125 -\r\nx"[(next() % 9) as usize]));
                match p.parse(&mut buf) {
                    Ok(Some(r)) => assert!(r.raw.len() <= 256 && (200..600).contains(&r.code)),
                    Ok(None) => assert!(buf.len() <= 64 + 16 + 1),
                    Err(_) => break,
                }
            }
        }
    }
}

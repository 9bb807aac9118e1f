//! Bounded line cutting for client commands.
//!
//! A line ends at LF (a preceding CR is stripped). Lines longer than the limit
//! are never held whole: their bytes are discarded as they arrive and the caller
//! learns of it once the line finally ends, so the session can answer
//! `500 5.5.2` and carry on.

use bytes::{Buf, BytesMut};

/// One step of line extraction.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its line ending.
    Complete(BytesMut),
    /// A line that exceeded the limit ended; its bytes were discarded.
    TooLong,
    /// No complete line yet: read more input.
    NeedMore,
}

/// Cuts lines from a buffer, remembering across calls whether it is in the
/// middle of discarding an over-long line.
#[derive(Debug)]
pub struct LineCutter {
    max: usize,
    discarding: bool,
}

impl LineCutter {
    pub fn new(max: usize) -> Self {
        LineCutter {
            max: max.max(16),
            discarding: false,
        }
    }

    /// Takes the next line out of `buf` if one is complete.
    pub fn next_line(&mut self, buf: &mut BytesMut) -> Line {
        match buf.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let end = if lf > 0 && buf[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                if std::mem::take(&mut self.discarding) || end > self.max {
                    buf.advance(lf + 1);
                    return Line::TooLong;
                }
                // Neither way allocates beyond the line's own bytes (a split
                // would make `buf` shared, which allocates).
                let line = if lf + 1 == buf.len() {
                    // The usual case: the buffer holds just this line.
                    let mut line = std::mem::take(buf);
                    line.truncate(end);
                    line
                } else {
                    let line = BytesMut::from(&buf[..end]);
                    buf.advance(lf + 1);
                    line
                };
                Line::Complete(line)
            }
            None => {
                if buf.len() > self.max + 1 {
                    // Keep memory bounded: drop what we have, remember to
                    // report the line when its end arrives.
                    buf.clear();
                    self.discarding = true;
                }
                Line::NeedMore
            }
        }
    }

    /// True while an over-long line is being skipped.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(max: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, &'static str>> {
        let mut c = LineCutter::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match c.next_line(&mut buf) {
                    Line::Complete(l) => out.push(Ok(l.to_vec())),
                    Line::TooLong => out.push(Err("too long")),
                    Line::NeedMore => break,
                }
            }
        }
        out
    }

    #[test]
    fn crlf_and_bare_lf_lines() {
        assert_eq!(
            cut(100, &[b"EHLO a\r\nNOOP\nQUIT\r\n"]),
            vec![
                Ok(b"EHLO a".to_vec()),
                Ok(b"NOOP".to_vec()),
                Ok(b"QUIT".to_vec())
            ]
        );
    }

    #[test]
    fn line_split_across_reads() {
        assert_eq!(
            cut(100, &[b"EH", b"LO x\r", b"\nNO", b"OP\r\n"]),
            vec![Ok(b"EHLO x".to_vec()), Ok(b"NOOP".to_vec())]
        );
    }

    #[test]
    fn overlong_line_is_reported_once_and_next_line_survives() {
        let long = vec![b'A'; 100];
        assert_eq!(
            cut(32, &[&long, &long, b"\r\nNOOP\r\n"]),
            vec![Err("too long"), Ok(b"NOOP".to_vec())]
        );
    }

    #[test]
    fn overlong_line_in_one_read() {
        let mut input = vec![b'B'; 40];
        input.extend_from_slice(b"\r\nQUIT\r\n");
        assert_eq!(
            cut(32, &[&input]),
            vec![Err("too long"), Ok(b"QUIT".to_vec())]
        );
    }

    #[test]
    fn line_exactly_at_limit_is_accepted() {
        let mut input = vec![b'C'; 32];
        input.extend_from_slice(b"\n");
        assert_eq!(cut(32, &[&input]), vec![Ok(vec![b'C'; 32])]);
    }
}

//! End-of-data detection for message content, streamed chunk by chunk.
//!
//! Only `<CRLF>.<CRLF>` ends a message (the CRLF of the DATA command counts as
//! the first one, so `.<CRLF>` right away is an empty message). Everything else
//! passes through byte for byte, including the client's own dot-stuffing,
//! with one exception that keeps the end of data unambiguous: a `.` that starts
//! a line after a *bare* LF or CR is sent dot-stuffed (`..`). A legacy backend
//! that takes a bare LF for a line end (Postfix ≤ 3.8 by default, Sendmail)
//! would otherwise see an end of data that tlsfront did not — the SMTP
//! smuggling class of attack. The backend then unstuffs it back to one dot.

use bytes::BytesMut;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After CRLF (or at the very start).
    LineStart,
    /// After a bare LF or bare CR: a line start only for lenient parsers.
    WeakStart,
    /// Inside a line.
    Mid,
    /// Inside a line, last byte CR.
    Cr,
    /// `.` at a line start, held back until the next byte decides.
    Dot,
    /// `.<CR>` at a line start, held back.
    DotCr,
    /// The end-of-data line was seen.
    Done,
}

/// Streaming scanner; one per message.
#[derive(Debug)]
pub struct DataScanner {
    state: State,
    /// Dots tlsfront added after bare line ends (counted for the logs).
    pub stuffed: u64,
}

impl Default for DataScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl DataScanner {
    pub fn new() -> Self {
        DataScanner {
            state: State::LineStart,
            stuffed: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `input`, appending what the backend must receive to `out`.
    /// Returns how many input bytes belong to the message and whether the
    /// end-of-data line was among them; bytes after it are the next commands.
    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> (usize, bool) {
        let mut i = 0;
        // Start of the input not yet copied to `out`.
        let mut span = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => break,
                State::Mid => match input[i..].iter().position(|&c| c == b'\r' || c == b'\n') {
                    None => i = input.len(),
                    Some(k) => {
                        i += k;
                        self.state = if input[i] == b'\r' {
                            State::Cr
                        } else {
                            State::WeakStart
                        };
                        i += 1;
                    }
                },
                State::LineStart => {
                    if b == b'.' {
                        out.extend_from_slice(&input[span..i]);
                        i += 1;
                        span = i;
                        self.state = State::Dot;
                    } else {
                        self.state = after_plain(b);
                        i += 1;
                    }
                }
                State::WeakStart => {
                    if b == b'.' {
                        self.stuff(input, &mut span, &mut i, out);
                    } else {
                        self.state = after_plain(b);
                        i += 1;
                    }
                }
                State::Cr => match b {
                    b'\n' => {
                        self.state = State::LineStart;
                        i += 1;
                    }
                    // A bare CR followed by a dot: a lenient backend sees a dot line.
                    b'.' => self.stuff(input, &mut span, &mut i, out),
                    _ => {
                        self.state = after_plain(b);
                        i += 1;
                    }
                },
                State::Dot => match b {
                    b'\r' => {
                        i += 1;
                        span = i;
                        self.state = State::DotCr;
                    }
                    b'\n' => {
                        out.extend_from_slice(b"..\n");
                        self.stuffed += 1;
                        i += 1;
                        span = i;
                        self.state = State::WeakStart;
                    }
                    _ => {
                        // An ordinary dot line (or the client's own stuffing): release
                        // the held dot and scan `b` as line content.
                        out.extend_from_slice(b".");
                        span = i;
                        self.state = State::Mid;
                    }
                },
                State::DotCr => {
                    if b == b'\n' {
                        out.extend_from_slice(b".\r\n");
                        i += 1;
                        self.state = State::Done;
                        return (i, true);
                    }
                    // `.<CR>` not followed by LF: stuff it so no parser sees a dot line.
                    out.extend_from_slice(b"..\r");
                    self.stuffed += 1;
                    span = i;
                    self.state = State::Cr;
                }
            }
        }
        out.extend_from_slice(&input[span..i]);
        (i, self.state == State::Done)
    }

    fn stuff(&mut self, input: &[u8], span: &mut usize, i: &mut usize, out: &mut BytesMut) {
        out.extend_from_slice(&input[*span..*i]);
        out.extend_from_slice(b"..");
        self.stuffed += 1;
        *i += 1;
        *span = *i;
        self.state = State::Mid;
    }
}

fn after_plain(b: u8) -> State {
    match b {
        b'\r' => State::Cr,
        b'\n' => State::WeakStart,
        _ => State::Mid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the whole input at once and byte by byte; both must agree.
    fn scan(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let mut whole = BytesMut::new();
        let mut s = DataScanner::new();
        let (n, end) = s.feed(input, &mut whole);
        let whole_end = end.then_some(n);

        let mut bytewise = BytesMut::new();
        let mut s = DataScanner::new();
        let mut bytewise_end = None;
        for (pos, b) in input.iter().enumerate() {
            let (n, end) = s.feed(std::slice::from_ref(b), &mut bytewise);
            assert_eq!(n, 1);
            if end {
                bytewise_end = Some(pos + 1);
                break;
            }
        }
        assert_eq!(whole, bytewise, "chunking changed the output for {input:?}");
        assert_eq!(whole_end, bytewise_end);
        (whole.to_vec(), whole_end)
    }

    #[test]
    fn table() {
        let cases: &[(&[u8], &[u8], Option<usize>)] = &[
            // (input, bytes for the backend, end position)
            (b".\r\n", b".\r\n", Some(3)),
            (
                b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
                b"Subject: x\r\n\r\nbody\r\n.\r\n",
                Some(23),
            ),
            (
                b"a\r\n..leading dot\r\n.\r\n",
                b"a\r\n..leading dot\r\n.\r\n",
                Some(21),
            ),
            (b"a\r\n.x\r\n.\r\n", b"a\r\n.x\r\n.\r\n", Some(10)),
            (b"no end yet\r\n", b"no end yet\r\n", None),
            (b"held dot\r\n.", b"held dot\r\n", None),
            (b"held dot cr\r\n.\r", b"held dot cr\r\n", None),
            // Smuggling vectors: never an end, the dot is stuffed.
            (b"a\n.\nb", b"a\n..\nb", None),
            (b"a\n.\r\nb", b"a\n..\r\nb", None),
            (b"a\r.\r\nb", b"a\r..\r\nb", None),
            (b"a\r\n.\nb", b"a\r\n..\nb", None),
            (b"a\r\n.\rb", b"a\r\n..\rb", None),
            (b"a\r\n.\r.\r\n", b"a\r\n..\r..\r\n", None),
            // ... and the real end still works afterwards.
            (b"a\n.\nb\r\n.\r\n", b"a\n..\nb\r\n.\r\n", Some(10)),
            (b"\r\r\n.\r\n", b"\r\r\n.\r\n", Some(6)),
            (b"x\n..\r\n.\r\n", b"x\n...\r\n.\r\n", Some(9)),
        ];
        for (input, out, end) in cases {
            let (got, got_end) = scan(input);
            assert_eq!(
                got,
                out.to_vec(),
                "output for {:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(
                got_end,
                *end,
                "end for {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn stops_at_end_and_leaves_the_rest() {
        let mut s = DataScanner::new();
        let mut out = BytesMut::new();
        let (n, end) = s.feed(b"x\r\n.\r\nMAIL FROM:<>\r\n", &mut out);
        assert!(end && s.is_done());
        assert_eq!(n, 6);
        assert_eq!(s.feed(b"more", &mut out), (0, true));
    }

    #[test]
    fn clean_message_is_byte_identical() {
        let msg: Vec<u8> = (0..5000)
            .flat_map(|i| format!("line {i} with some text\r\n").into_bytes())
            .chain(b".\r\n".iter().copied())
            .collect();
        let (out, end) = scan(&msg);
        assert_eq!(out, msg);
        assert_eq!(end, Some(msg.len()));
    }

    /// Small deterministic PRNG (xorshift) so the property tests need no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Lines as a lenient backend sees them: CRLF, bare LF and bare CR all end a line.
    fn lenient_lines(bytes: &[u8]) -> Vec<&[u8]> {
        let mut lines = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                    lines.push(&bytes[start..i]);
                    i += 2;
                    start = i;
                }
                b'\r' | b'\n' => {
                    lines.push(&bytes[start..i]);
                    i += 1;
                    start = i;
                }
                _ => i += 1,
            }
        }
        lines.push(&bytes[start..]);
        lines
    }

    #[test]
    fn no_parser_sees_an_early_end_of_data() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..50_000 {
            let len = (rng.next() % 24) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| b"\r\n.a"[(rng.next() % 4) as usize])
                .collect();
            let (out, end) = scan(&input);
            let body: &[u8] = match end {
                Some(_) => {
                    assert!(
                        out == b".\r\n" || out.ends_with(b"\r\n.\r\n"),
                        "{input:?} -> {out:?}"
                    );
                    &out[..out.len() - 3]
                }
                None => &out,
            };
            let lines = lenient_lines(body);
            // The line before the terminator is complete; an unterminated tail is not a line yet.
            let complete = if end.is_some() {
                &lines[..lines.len() - 1]
            } else {
                &lines[..]
            };
            assert!(
                complete.iter().all(|l| *l != b"."),
                "a lenient backend would see an end of data in {out:?} (from {input:?})"
            );
        }
    }

    #[test]
    fn crlf_only_content_passes_unchanged() {
        let mut rng = Rng(42);
        for _ in 0..5_000 {
            let mut input = Vec::new();
            for _ in 0..(rng.next() % 8) {
                let n = (rng.next() % 5) as usize;
                let line: Vec<u8> = (0..n).map(|_| b".ab"[(rng.next() % 3) as usize]).collect();
                if line == b"." {
                    continue; // that would be the end
                }
                input.extend_from_slice(&line);
                input.extend_from_slice(b"\r\n");
            }
            input.extend_from_slice(b".\r\n");
            let (out, end) = scan(&input);
            assert_eq!(out, input);
            assert_eq!(end, Some(input.len()));
        }
    }
}

//! End-of-data detection for message content, streamed chunk by chunk, and
//! the SMTP smuggling shield.
//!
//! Only `<CRLF>.<CRLF>` ends a message (the CRLF of the DATA command counts as
//! the first one, so `.<CRLF>` right away is an empty message). A legacy backend
//! that also takes a bare LF (or CR) for a line end (Postfix ≤ 3.8 by default,
//! Sendmail) could otherwise see an end of data that tlsfront did not: `\n.\n`
//! would end the message there and the rest would run as commands (SMTP
//! smuggling). So every bare LF and bare CR reaches the backend as CRLF, like
//! Postfix's `smtpd_forbid_bare_newline = normalize`, and a `.` that starts a
//! line after a bare line end is sent dot-stuffed (`..`): normalising must never
//! *create* an end-of-data line. Content with CRLF line ends only, the client's
//! own dot-stuffing included, passes byte for byte.

use bytes::BytesMut;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After CRLF (or at the very start).
    LineStart,
    /// After a bare LF or bare CR (already sent on as CRLF).
    WeakStart,
    /// Inside a line.
    Mid,
    /// Inside a line, last byte CR (not yet known to be part of CRLF).
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
    /// Bare LFs and CRs turned into CRLF.
    pub bare_line_ends: u64,
    /// Dots tlsfront added after bare line ends.
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
            bare_line_ends: 0,
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
                        if input[i] == b'\r' {
                            self.state = State::Cr;
                            i += 1;
                        } else {
                            self.bare_lf(input, &mut span, &mut i, out);
                        }
                    }
                },
                State::LineStart | State::WeakStart => match b {
                    b'.' if self.state == State::LineStart => {
                        out.extend_from_slice(&input[span..i]);
                        i += 1;
                        span = i;
                        self.state = State::Dot;
                    }
                    b'.' => {
                        // A dot line after a bare line end is content: stuff it.
                        out.extend_from_slice(&input[span..i]);
                        out.extend_from_slice(b"..");
                        self.stuffed += 1;
                        i += 1;
                        span = i;
                        self.state = State::Mid;
                    }
                    b'\r' => {
                        self.state = State::Cr;
                        i += 1;
                    }
                    b'\n' => self.bare_lf(input, &mut span, &mut i, out),
                    _ => {
                        self.state = State::Mid;
                        i += 1;
                    }
                },
                State::Cr => {
                    if b == b'\n' {
                        self.state = State::LineStart;
                        i += 1;
                    } else {
                        // The CR (already in the span) was bare: complete it to CRLF
                        // and look at `b` again as the start of a new line.
                        out.extend_from_slice(&input[span..i]);
                        out.extend_from_slice(b"\n");
                        self.bare_line_ends += 1;
                        span = i;
                        self.state = State::WeakStart;
                    }
                }
                State::Dot => match b {
                    b'\r' => {
                        i += 1;
                        span = i;
                        self.state = State::DotCr;
                    }
                    b'\n' => {
                        out.extend_from_slice(b"..\r\n");
                        self.stuffed += 1;
                        self.bare_line_ends += 1;
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
                    // `.<CR>` then not LF: the CR is bare; as CRLF it would make
                    // this an end-of-data line, so the dot is stuffed.
                    out.extend_from_slice(b"..\r\n");
                    self.stuffed += 1;
                    self.bare_line_ends += 1;
                    span = i;
                    self.state = State::WeakStart;
                }
            }
        }
        out.extend_from_slice(&input[span..i]);
        (i, self.state == State::Done)
    }

    /// A bare LF at `i`: sent on as CRLF.
    fn bare_lf(&mut self, input: &[u8], span: &mut usize, i: &mut usize, out: &mut BytesMut) {
        out.extend_from_slice(&input[*span..*i]);
        out.extend_from_slice(b"\r\n");
        self.bare_line_ends += 1;
        *i += 1;
        *span = *i;
        self.state = State::WeakStart;
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
            // Smuggling vectors: never an end; bare ends become CRLF, the dot is stuffed.
            (b"a\n.\nb", b"a\r\n..\r\nb", None),
            (b"a\n.\r\nb", b"a\r\n..\r\nb", None),
            (b"a\r.\r\nb", b"a\r\n..\r\nb", None),
            (b"a\r\n.\nb", b"a\r\n..\r\nb", None),
            (b"a\r\n.\rb", b"a\r\n..\r\nb", None),
            (b"a\r\n.\r.\r\n", b"a\r\n..\r\n..\r\n", None),
            // ... and the real end still works afterwards.
            (b"a\n.\nb\r\n.\r\n", b"a\r\n..\r\nb\r\n.\r\n", Some(10)),
            (b"\r\r\n.\r\n", b"\r\n\r\n.\r\n", Some(6)),
            (b"x\n..\r\n.\r\n", b"x\r\n...\r\n.\r\n", Some(9)),
            // Bare line ends inside ordinary lines are normalised too.
            (b"a\nb\rc\r\n.\r\n", b"a\r\nb\r\nc\r\n.\r\n", Some(10)),
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

    #[test]
    fn no_parser_sees_an_early_end_of_data() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..50_000 {
            let len = (rng.next() % 24) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| b"\r\n.a"[(rng.next() % 4) as usize])
                .collect();
            let (out, end) = scan(&input);
            crate::fuzzing::check_data_output(&input, &out, end.is_some());
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

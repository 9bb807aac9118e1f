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

/// What [`DataScanner::feed_split`] did with one input chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fed {
    /// Input bytes that belong to the message.
    pub consumed: usize,
    /// The end-of-data line was among them.
    pub end: bool,
    /// Input bytes passed on unchanged after what was appended to `out`.
    pub tail: std::ops::Range<usize>,
}

/// Bytes checked at once by the clean-content fast path.
const BLOCK: usize = 64;

/// How many leading bytes of `x`, in whole blocks, the state machine entered
/// in `LineStart` (`prev` = LF) or `Mid` (`prev` = 0) would pass on unchanged,
/// ending in `LineStart`, `Mid` or `Cr`: every CR is followed by LF, every LF
/// follows a CR, and no `.` starts a line. `y` is `x` shifted by one byte
/// (`y[j]` is the byte after `x[j]`), so the pair ending after a block is
/// checked too and a CR at a block's end is known to be half of a CRLF.
///
/// The per-block check is a fixed-length branch-free fold the compiler
/// vectorises: clean text costs about one instruction per byte instead of a
/// trip through the state machine per line. `x` and `y` come in as separate
/// slices of one buffer and the function is not inlined, so the compiler
/// loads both instead of building one from the other with shuffles.
#[inline(never)]
fn clean_blocks(mut prev: u8, x: &[u8], y: &[u8]) -> usize {
    #[inline(always)]
    fn bad(x: u8, y: u8) -> u8 {
        u8::from((x == b'\r') != (y == b'\n')) | u8::from(x == b'\n' && y == b'.')
    }
    let mut i = 0;
    while let (Some(xb), Some(yb)) = (x.get(i..i + BLOCK), y.get(i..i + BLOCK)) {
        let xb: &[u8; BLOCK] = xb.try_into().expect("BLOCK bytes");
        let yb: &[u8; BLOCK] = yb.try_into().expect("BLOCK bytes");
        let mut acc = bad(prev, xb[0]);
        for j in 0..BLOCK {
            acc |= bad(xb[j], yb[j]);
        }
        if acc != 0 {
            break;
        }
        prev = xb[BLOCK - 1];
        i += BLOCK;
    }
    i
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
        let fed = self.feed_split(input, out);
        out.extend_from_slice(&input[fed.tail.clone()]);
        (fed.consumed, fed.end)
    }

    /// Like [`feed`](Self::feed), but the last part of the output, a run of
    /// input bytes passed on unchanged, is not copied to `out`: the backend
    /// must receive `out` and then `input[tail]`. Clean content thus leaves
    /// `out` empty and can be written straight from the input buffer.
    pub fn feed_split(&mut self, input: &[u8], out: &mut BytesMut) -> Fed {
        let mut i = 0;
        // Start of the input not yet copied to `out`.
        let mut span = 0;
        // Clean-block skipping resumes here after a block that needed the
        // byte-wise state machine.
        let mut fast_from = 0;
        while i < input.len() {
            if i >= fast_from && matches!(self.state, State::LineStart | State::Mid) {
                let start = i;
                let prev = if self.state == State::LineStart {
                    b'\n'
                } else {
                    0
                };
                if input.len() > i + 1 {
                    i += clean_blocks(prev, &input[i..input.len() - 1], &input[i + 1..]);
                }
                if i > start {
                    self.state = match input[i - 1] {
                        b'\n' => State::LineStart,
                        b'\r' => State::Cr,
                        _ => State::Mid,
                    };
                }
                fast_from = i + BLOCK;
                if i >= input.len() {
                    break;
                }
            }
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
                        return Fed {
                            consumed: i,
                            end: true,
                            tail: i..i,
                        };
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
        Fed {
            consumed: i,
            end: self.state == State::Done,
            tail: span..i,
        }
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

    /// The byte-wise scanner (1-byte chunks never reach the block fast path)
    /// is the reference the fast path is checked against.
    fn reference(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let mut out = BytesMut::new();
        let mut s = DataScanner::new();
        for (pos, b) in input.iter().enumerate() {
            if s.feed(std::slice::from_ref(b), &mut out).1 {
                return (out.to_vec(), Some(pos + 1));
            }
        }
        (out.to_vec(), None)
    }

    /// Feeds `input` in the given pieces through `feed_split`, as the session does.
    fn split_feed(pieces: &[&[u8]]) -> (Vec<u8>, Option<usize>) {
        let mut s = DataScanner::new();
        let mut got = Vec::new();
        let mut offset = 0;
        for piece in pieces {
            let mut out = BytesMut::new();
            let fed = s.feed_split(piece, &mut out);
            assert!(fed.tail.start <= fed.tail.end && fed.tail.end == fed.consumed);
            got.extend_from_slice(&out);
            got.extend_from_slice(&piece[fed.tail]);
            if fed.end {
                return (got, Some(offset + fed.consumed));
            }
            assert_eq!(fed.consumed, piece.len());
            offset += piece.len();
        }
        (got, None)
    }

    fn text_lines(rng: &mut Rng, lines: usize, hazards: bool) -> Vec<u8> {
        let mut m = Vec::new();
        for _ in 0..lines {
            let len = (rng.next() % 90) as usize;
            for _ in 0..len {
                let r = rng.next() % 200;
                m.push(match r {
                    0 if hazards => b'\r',
                    1 if hazards => b'\n',
                    2..=4 => b'.',
                    _ => b'a' + (r % 26) as u8,
                });
            }
            if hazards && rng.next() % 8 == 0 {
                m.push(b"\n\r."[(rng.next() % 3) as usize]);
            }
            m.extend_from_slice(b"\r\n");
            if rng.next() % 10 == 0 {
                m.push(b'.');
            }
        }
        m
    }

    fn block_is_clean(prev: u8, window: &[u8; BLOCK + 1]) -> bool {
        clean_blocks(prev, &window[..BLOCK], &window[1..]) == BLOCK
    }

    #[test]
    fn block_check_matches_naive_rule() {
        let mut rng = Rng(7);
        for _ in 0..50_000 {
            let prev = [0, b'\n'][(rng.next() % 2) as usize];
            let mut w = [0u8; BLOCK + 1];
            let density = rng.next() % 40 + 1;
            for b in w.iter_mut() {
                *b = if rng.next() % density == 0 {
                    b"\r\n."[(rng.next() % 3) as usize]
                } else {
                    b'x'
                };
            }
            let seq: Vec<u8> = std::iter::once(prev).chain(w.iter().copied()).collect();
            let naive = seq
                .windows(2)
                .all(|p| (p[0] == b'\r') == (p[1] == b'\n') && !(p[0] == b'\n' && p[1] == b'.'));
            assert_eq!(block_is_clean(prev, &w), naive, "{seq:?}");
        }
    }

    #[test]
    fn fast_path_agrees_with_bytewise_scanning() {
        let mut rng = Rng(0x1234_5678);
        for round in 0..3_000 {
            let lines = (rng.next() % 40) as usize;
            let mut input = text_lines(&mut rng, lines, round % 2 == 0);
            if rng.next() % 2 == 0 {
                input.extend_from_slice(b".\r\nQUIT\r\n");
            }
            let want = reference(&input);
            assert_eq!(scan_whole(&input), want);
            // Two and three pieces, cut anywhere.
            let a = (rng.next() as usize) % (input.len() + 1);
            let b = a + (rng.next() as usize) % (input.len() - a + 1);
            assert_eq!(split_feed(&[&input[..a], &input[a..]]), want);
            assert_eq!(split_feed(&[&input[..a], &input[a..b], &input[b..]]), want);
        }
    }

    fn scan_whole(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let mut out = BytesMut::new();
        let (n, end) = DataScanner::new().feed(input, &mut out);
        (out.to_vec(), end.then_some(n))
    }

    #[test]
    fn end_of_data_split_at_every_position() {
        let mut rng = Rng(99);
        let mut input = text_lines(&mut rng, 30, false);
        input.extend_from_slice(b"last line\r\n.\r\nMAIL FROM:<>\r\n");
        let want = reference(&input);
        assert_eq!(want.1, Some(input.len() - b"MAIL FROM:<>\r\n".len()));
        for cut in 0..=input.len() {
            assert_eq!(
                split_feed(&[&input[..cut], &input[cut..]]),
                want,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn crlf_split_across_chunks_at_every_position() {
        // 64-byte lines put CRLFs at block edges too.
        let line = [&[b'y'; 62][..], b"\r\n"].concat();
        let mut input = line.repeat(5);
        input.extend_from_slice(b"a\nb\rc\r\n.\nd\r\n.\r\n");
        let want = reference(&input);
        assert!(want.1.is_some());
        for cut in 0..=input.len() {
            assert_eq!(
                split_feed(&[&input[..cut], &input[cut..]]),
                want,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn clean_content_is_passed_on_without_copying() {
        let msg =
            b"0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n".repeat(500);
        let mut s = DataScanner::new();
        let mut out = BytesMut::new();
        for chunk in msg.chunks(16 * 1024 + 5) {
            let fed = s.feed_split(chunk, &mut out);
            assert!(out.is_empty());
            assert_eq!(
                (fed.consumed, fed.end, fed.tail),
                (chunk.len(), false, 0..chunk.len())
            );
        }
        let fed = s.feed_split(b".\r\n", &mut out);
        assert!(fed.end);
        assert_eq!(&out[..], b".\r\n");
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

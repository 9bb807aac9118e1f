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
//! *create* an end-of-data line.
//!
//! A backend that drops NUL (or the other [`droppable`] controls) before it
//! looks for the end would read `.<NUL><CRLF>` or `<NUL>.<CRLF>` as `.`. So a
//! line whose first byte that such a backend keeps is a `.` gets a `.` in
//! front when it starts with controls (`<NUL>.` → `.<NUL>.`: a backend that
//! keeps them removes the added dot, one that drops them removes it too), and
//! a `.` followed by controls only is sent as `..` and the controls.
//!
//! Content with CRLF line ends and no such controls, the client's own
//! dot-stuffing included, passes byte for byte.

use bytes::BytesMut;

use crate::limits;

/// A byte some backends drop from message content: NUL, the other C0
/// controls but HT, CR and LF, and DEL. RFC 5321 §4.1.1.4 says these "may
/// cause problems", and advice after SMTP smuggling is to strip them.
pub fn droppable(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != b'\r' && b != b'\n') || b == 0x7f
}

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
    /// Droppable controls at a line start, held back (in `held`).
    Ctl,
    /// `.` then droppable controls at a line start, held back (the controls
    /// in `held`).
    DotCtl,
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
/// follows a CR, and neither a `.` nor a [`droppable`] control starts a line. `y` is `x` shifted by one byte
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
        // `droppable(y)` without branches; `y` = LF after LF is caught by the
        // first term already.
        let control = (y < 0x20) & (y != b'\t') & (y != b'\r') | (y == 0x7f);
        u8::from((x == b'\r') != (y == b'\n')) | u8::from((x == b'\n') & ((y == b'.') | control))
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
    /// Lines dot-stuffed because a backend that drops control characters
    /// would see them as `.` or starting with `.` (see [`droppable`]).
    pub control_dot_lines: u64,
    /// Control characters at a line start, held back until the line shows
    /// whether a `.` follows them (at most `MAX_HELD_CONTROLS`).
    held: Vec<u8>,
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
            control_dot_lines: 0,
            held: Vec::new(),
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
                    c if droppable(c) => {
                        out.extend_from_slice(&input[span..i]);
                        self.hold(c, out);
                        i += 1;
                        span = i;
                    }
                    _ => {
                        self.state = State::Mid;
                        i += 1;
                    }
                },
                State::Ctl | State::DotCtl if droppable(b) => {
                    self.hold(b, out);
                    i += 1;
                    span = i;
                }
                State::Ctl => {
                    // The first byte after the controls decides: a backend that
                    // drops them sees a line starting with `b`. If that is a dot,
                    // one more in front keeps the line content for it, and for a
                    // backend that keeps the controls (it removes the added dot).
                    if b == b'.' {
                        out.extend_from_slice(b".");
                        self.control_dot_lines += 1;
                    }
                    out.extend_from_slice(&self.held);
                    self.held.clear();
                    self.state = State::Mid;
                }
                State::DotCtl => {
                    // `.` and controls, then the line ends: `.` where they are
                    // dropped. Stuffed like a dot line after a bare line end.
                    if b == b'\r' || b == b'\n' {
                        out.extend_from_slice(b"..");
                        self.control_dot_lines += 1;
                    } else {
                        out.extend_from_slice(b".");
                    }
                    out.extend_from_slice(&self.held);
                    self.held.clear();
                    self.state = State::Mid;
                }
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
                    c if droppable(c) => {
                        self.state = State::DotCtl;
                        self.hold(c, out);
                        i += 1;
                        span = i;
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

    /// Holds a droppable control `c` met at a line start (after a `.` in
    /// `DotCtl`). Past `MAX_HELD_CONTROLS` the line is stuffed twice at
    /// once: `..` and the run start it, so no backend reads it as `.` (one
    /// that keeps the controls gets one dot more than the client sent).
    fn hold(&mut self, c: u8, out: &mut BytesMut) {
        if self.held.len() < limits::MAX_HELD_CONTROLS {
            if self.state != State::DotCtl {
                self.state = State::Ctl;
            }
            self.held.push(c);
            return;
        }
        out.extend_from_slice(b"..");
        out.extend_from_slice(&self.held);
        out.extend_from_slice(&[c]);
        self.held.clear();
        self.control_dot_lines += 1;
        self.state = State::Mid;
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

    /// (input, bytes for the backend, lines stuffed for dropped controls);
    /// each input but the last two ends with the real end-of-data line.
    const CONTROL_CASES: &[(&[u8], &[u8], u64)] = &[
        // A backend that drops NUL would read each of these as `.`: end of data.
        (b".\0\r\n.\r\n", b"..\0\r\n.\r\n", 1),
        (b"\0.\r\n.\r\n", b".\0.\r\n.\r\n", 1),
        (b"a\r\n.\0\r\n.\r\n", b"a\r\n..\0\r\n.\r\n", 1),
        (b"a\r\n\0.\r\n.\r\n", b"a\r\n.\0.\r\n.\r\n", 1),
        (b"a\r\n\0\0.\0\r\n.\r\n", b"a\r\n.\0\0.\0\r\n.\r\n", 1),
        (
            b"a\r\n.\0\x01\x7f\r\n.\r\n",
            b"a\r\n..\0\x01\x7f\r\n.\r\n",
            1,
        ),
        (b"a\r\n\x7f.\r\n.\r\n", b"a\r\n.\x7f.\r\n.\r\n", 1),
        // ... and these would start with a dot there: stuffed so that such a
        // backend removes the added dot, not the client's.
        (b"a\r\n\0.x\r\n.\r\n", b"a\r\n.\0.x\r\n.\r\n", 1),
        (b"a\r\n\0..\r\n.\r\n", b"a\r\n.\0..\r\n.\r\n", 1),
        // After bare line ends (normalised to CRLF as ever).
        (b"a\n\0.\r\n.\r\n", b"a\r\n.\0.\r\n.\r\n", 1),
        (b"a\r\n.\0\nb\r\n.\r\n", b"a\r\n..\0\r\nb\r\n.\r\n", 1),
        (b"a\r\n.\0\rb\r\n.\r\n", b"a\r\n..\0\r\nb\r\n.\r\n", 1),
        (b"a\n.\0\r\n.\r\n", b"a\r\n..\0\r\n.\r\n", 0),
        // Harmless with or without the controls: byte for byte.
        (
            b"a\r\n\x1b$B0l\x1b(B\r\n.\r\n",
            b"a\r\n\x1b$B0l\x1b(B\r\n.\r\n",
            0,
        ),
        (b"a\r\n\0x\r\n.\r\n", b"a\r\n\0x\r\n.\r\n", 0),
        (b"a\r\n\0\r\n.\r\n", b"a\r\n\0\r\n.\r\n", 0),
        (b"a\r\n.\0x\r\n.\r\n", b"a\r\n.\0x\r\n.\r\n", 0),
        (b"a\r\n.\0.\r\n.\r\n", b"a\r\n.\0.\r\n.\r\n", 0),
        (b"a\r\n..\0\r\n.\r\n", b"a\r\n..\0\r\n.\r\n", 0),
        (b"a\r\n\t.\r\n.\r\n", b"a\r\n\t.\r\n.\r\n", 0),
        // Not ended: controls at a line start are held until the line shows
        // what they precede.
        (b"a\r\n.\0", b"a\r\n", 0),
        (b"a\r\n\0\0", b"a\r\n", 0),
    ];

    #[test]
    fn dot_lines_hidden_by_dropped_controls_are_stuffed() {
        for (i, (input, want, lines)) in CONTROL_CASES.iter().enumerate() {
            let (got, end) = scan(input);
            let shown = String::from_utf8_lossy(input);
            assert_eq!(got, want.to_vec(), "output for {shown:?}");
            let ended = i < CONTROL_CASES.len() - 2;
            assert_eq!(end, ended.then_some(input.len()), "end for {shown:?}");
            let mut s = DataScanner::new();
            s.feed(input, &mut BytesMut::new());
            assert_eq!(s.control_dot_lines, *lines, "count for {shown:?}");
            crate::fuzzing::check_data_output(input, &got, ended);
        }
    }

    #[test]
    fn a_long_run_of_controls_is_stuffed_without_holding_it() {
        let run = [0u8; limits::MAX_HELD_CONTROLS];
        // Up to the bound the run is held and the line decides.
        let input = [b"a\r\n", &run[..], b"x\r\n.\r\n"].concat();
        assert_eq!(scan(&input), (input.clone(), Some(input.len())));
        let input = [b"a\r\n", &run[..], b".\r\n.\r\n"].concat();
        let want = [b"a\r\n.", &run[..], b".\r\n.\r\n"].concat();
        assert_eq!(scan(&input), (want, Some(input.len())));
        // One more and the line is stuffed twice at once, whatever follows,
        // so no backend that drops the run can read it as `.`.
        for run in [vec![0u8; limits::MAX_HELD_CONTROLS + 1], vec![1u8; 100_000]] {
            for rest in [&b""[..], b".", b"x"] {
                let input = [b"a\r\n", &run[..], rest, b"\r\n.\r\n"].concat();
                let want = [b"a\r\n..", &run[..], rest, b"\r\n.\r\n"].concat();
                let (got, end) = scan(&input);
                assert!(got == want && end == Some(input.len()));
                crate::fuzzing::check_data_output(&input, &got, true);
            }
        }
        let mut s = DataScanner::new();
        let mut out = BytesMut::new();
        s.feed(b"a\r\n", &mut out);
        for _ in 0..10_000 {
            s.feed(b"\0\x01\x02", &mut out);
        }
        assert!(s.held.capacity() <= 2 * limits::MAX_HELD_CONTROLS);
    }

    #[test]
    fn control_dot_lines_split_at_every_position() {
        let mut input = Vec::new();
        let mut want = Vec::new();
        for (input_case, want_case, _) in &CONTROL_CASES[..CONTROL_CASES.len() - 2] {
            input.extend_from_slice(&input_case[..input_case.len() - 3]);
            want.extend_from_slice(&want_case[..want_case.len() - 3]);
            input.extend_from_slice(b"\r\n");
            want.extend_from_slice(b"\r\n");
        }
        // 64-byte lines around them put the vectors at block edges too.
        let line = [&[b'y'; 62][..], b"\r\n"].concat();
        let input = [&line[..], &input, &line, b".\r\nQUIT\r\n"].concat();
        let want = [&line[..], &want, &line, b".\r\n"].concat();
        let end = input.len() - b"QUIT\r\n".len();
        assert_eq!(reference(&input), (want.clone(), Some(end)));
        assert_eq!(scan_whole(&input), (want.clone(), Some(end)));
        for cut in 0..=input.len() {
            assert_eq!(
                split_feed(&[&input[..cut], &input[cut..]]),
                (want.clone(), Some(end)),
                "cut {cut}"
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
                .map(|_| b"\r\n.a\0"[(rng.next() % 5) as usize])
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
            if hazards && rng.next().is_multiple_of(8) {
                m.push(b"\n\r.\0"[(rng.next() % 4) as usize]);
            }
            m.extend_from_slice(b"\r\n");
            match rng.next() % 20 {
                0 | 1 => m.push(b'.'),
                2 if hazards => m.extend_from_slice(b"\0."),
                3 if hazards => m.extend_from_slice(b".\0"),
                4 => m.push(b'\t'),
                _ => {}
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
                *b = if rng.next().is_multiple_of(density) {
                    b"\r\n.\0\t\x1f\x7f "[(rng.next() % 8) as usize]
                } else {
                    b'x'
                };
            }
            let seq: Vec<u8> = std::iter::once(prev).chain(w.iter().copied()).collect();
            let naive = seq.windows(2).all(|p| {
                (p[0] == b'\r') == (p[1] == b'\n')
                    && !(p[0] == b'\n' && (p[1] == b'.' || droppable(p[1])))
            });
            assert_eq!(block_is_clean(prev, &w), naive, "{seq:?}");
        }
    }

    #[test]
    fn fast_path_agrees_with_bytewise_scanning() {
        let mut rng = Rng(0x1234_5678);
        for round in 0..3_000 {
            let lines = (rng.next() % 40) as usize;
            let mut input = text_lines(&mut rng, lines, round % 2 == 0);
            if rng.next().is_multiple_of(2) {
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

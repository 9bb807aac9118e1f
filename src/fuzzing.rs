//! Fuzz targets: each takes arbitrary bytes, drives one pure parser, and
//! asserts its invariants. `fuzz/` runs them under libFuzzer; the test suite
//! replays the committed corpus through the same functions on stable Rust.

use bytes::BytesMut;

use crate::clienthello;
use crate::proxyproto;
use crate::smtp::command::Command;
use crate::smtp::data::DataScanner;
use crate::smtp::ehlo;
use crate::smtp::line::{Line, LineCutter};
use crate::smtp::reply::ReplyParser;

/// Splits `data` into chunks whose sizes come from the data itself, so the
/// fuzzer explores chunk boundaries too.
fn chunks(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let step = usize::from(data.first().copied().unwrap_or(1) % 7) + 1;
    data.chunks(step)
}

/// Line cutting and command classification.
pub fn command_lines(data: &[u8]) {
    const MAX: usize = 64;
    let mut cutter = LineCutter::new(MAX);
    let mut buf = BytesMut::new();
    for chunk in chunks(data) {
        buf.extend_from_slice(chunk);
        loop {
            match cutter.next_line(&mut buf) {
                Line::Complete(line) => {
                    assert!(line.len() <= MAX, "line over the limit");
                    assert!(!line.contains(&b'\n'));
                    let cmd = Command::parse(&line);
                    assert!(cmd.args.len() <= line.len());
                    let _ = cmd.first_arg();
                }
                Line::TooLong => {}
                Line::NeedMore => break,
            }
        }
        assert!(
            buf.len() <= MAX + 1 + 7,
            "buffer grew past the limit: {}",
            buf.len()
        );
    }
}

/// Backend reply parsing.
pub fn reply_parser(data: &[u8]) {
    let mut p = ReplyParser::new(128, 1024);
    let mut buf = BytesMut::new();
    for chunk in chunks(data) {
        buf.extend_from_slice(chunk);
        loop {
            match p.parse(&mut buf) {
                Ok(Some(r)) => {
                    assert!((200..=599).contains(&r.code));
                    assert!(r.raw.len() <= 1024 && r.raw.ends_with(b"\r\n"));
                    assert!(!r.lines.is_empty());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Lines as a lenient backend sees them: CRLF, bare LF and bare CR all end one.
pub fn lenient_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
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

/// The invariants of the bytes sent to the backend for one message.
pub fn check_data_output(input: &[u8], out: &[u8], end: bool) {
    let body = if end {
        assert!(
            out == b".\r\n" || out.ends_with(b"\r\n.\r\n"),
            "bad end in {out:?} from {input:?}"
        );
        &out[..out.len() - 3]
    } else {
        out
    };
    // No bare CR or LF reaches the backend (a trailing CR may await its LF).
    let mut k = 0;
    while k < body.len() {
        if body[k] == b'\r' && k + 1 < body.len() {
            assert_eq!(body[k + 1], b'\n', "bare CR in {out:?} from {input:?}");
            k += 2;
            continue;
        }
        assert_ne!(body[k], b'\n', "bare LF in {out:?} from {input:?}");
        k += 1;
    }
    // No parser, however lenient, sees an end of data before the real one.
    let lines = lenient_lines(body);
    let complete = if end {
        &lines[..lines.len() - 1]
    } else {
        &lines[..]
    };
    assert!(
        complete.iter().all(|l| *l != b"."),
        "early end of data in {out:?} from {input:?}"
    );
}

/// Message content: chunking never changes the result, and the smuggling
/// shield's invariants hold.
pub fn data_scanner(data: &[u8]) {
    let mut whole = BytesMut::new();
    let (n_whole, end_whole) = DataScanner::new().feed(data, &mut whole);

    let mut pieces = BytesMut::new();
    let mut s = DataScanner::new();
    let (mut consumed, mut end) = (0, false);
    for chunk in chunks(data) {
        let (n, e) = s.feed(chunk, &mut pieces);
        consumed += n;
        if e {
            end = true;
            break;
        }
    }
    assert_eq!(whole, pieces, "chunking changed the output");
    assert_eq!((n_whole, end_whole), (consumed, end));
    check_data_output(&data[..consumed], &whole, end);
}

/// ClientHello parsing (and the summary written into records).
pub fn client_hello(data: &[u8]) {
    for cut in [data.len() / 2, data.len()] {
        if let clienthello::Peek::Hello(h) = clienthello::peek(&data[..cut]) {
            let s = h.summary();
            assert_eq!(s.versions.len(), h.versions.len());
        }
    }
}

/// PROXY header decoding.
pub fn proxy_header(data: &[u8]) {
    if let proxyproto::Decoded::Header { consumed, .. } = proxyproto::decode(data) {
        assert!(consumed <= data.len());
    }
}

/// EHLO rewriting: whatever the backend announces, tlsfront never offers its
/// STARTTLS under TLS, nor CHUNKING, XCLIENT or AUTH before TLS.
pub fn ehlo_rewrite(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let keywords: Vec<String> = text.split(['\n', '\r']).map(str::to_string).collect();
    for tls_active in [false, true] {
        let out = ehlo::render(
            "mx.test",
            &keywords,
            ehlo::Offer {
                tls_active,
                starttls_available: true,
                auth_before_tls: false,
            },
        );
        let out = String::from_utf8_lossy(&out).into_owned();
        let lines: Vec<&str> = out.split_terminator("\r\n").collect();
        assert!(lines.last().is_some_and(|l| l.starts_with("250 ")));
        for l in &lines[..lines.len() - 1] {
            assert!(l.starts_with("250-"));
        }
        for l in &lines[1..] {
            let kw = ehlo::keyword(&l[4..]).to_ascii_uppercase();
            assert!(kw != "CHUNKING" && kw != "XCLIENT" && kw != "BDAT");
            assert!(!(tls_active && kw == "STARTTLS"));
            assert!(tls_active || kw != "AUTH");
        }
    }
}

/// A fuzz target: arbitrary bytes in, panics on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay test and the fuzz crate.
pub const TARGETS: &[(&str, Target)] = &[
    ("command_lines", command_lines),
    ("reply_parser", reply_parser),
    ("data_scanner", data_scanner),
    ("client_hello", client_hello),
    ("proxy_header", proxy_header),
    ("ehlo_rewrite", ehlo_rewrite),
];

//! Fuzz targets: each takes arbitrary bytes, drives one pure parser, and
//! asserts its invariants. `fuzz/` runs them under libFuzzer; the test suite
//! replays the committed corpus through the same functions on stable Rust.

use bytes::BytesMut;

use crate::smtp::command::Command;
use crate::smtp::data::{DataScanner, droppable};
use crate::smtp::ehlo;
use crate::smtp::line::{Line, LineCutter};
use crate::smtp::reply::ReplyParser;
use crate::wire::clienthello;
use crate::wire::proxyproto;

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

/// The invariants of the bytes sent to the backend for one message: no bare
/// CR or LF; no end of data before the real one for any backend, lenient
/// about line ends or dropping NUL and the other [`droppable`] controls; and
/// ordinary content unchanged.
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
    // No parser, however lenient, sees an end of data before the real one,
    // not even after dropping NULs and the other controls some backends drop.
    let kept: Vec<u8> = body.iter().copied().filter(|b| !droppable(*b)).collect();
    for body in [body, &kept[..]] {
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
    // Ordinary content (CRLF line ends, no droppable controls) passes byte
    // for byte (`input` may go on after the end; before it, a held dot or CR
    // may be missing).
    let ordinary = !input.iter().any(|b| droppable(*b))
        && input.windows(2).all(|p| (p[0] == b'\r') == (p[1] == b'\n'))
        && input.first() != Some(&b'\n');
    assert!(
        !ordinary || input.starts_with(out),
        "ordinary content altered: {out:?} from {input:?}"
    );
}

/// Message content: chunking never changes the result, and the smuggling
/// shield's invariants hold (see [`check_data_output`]).
pub fn data_scanner(data: &[u8]) {
    let mut whole = BytesMut::new();
    let mut whole_scanner = DataScanner::new();
    let (n_whole, end_whole) = whole_scanner.feed(data, &mut whole);

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
    assert_eq!(whole_scanner.control_dot_lines, s.control_dot_lines);
    check_data_output(&data[..consumed], &whole, end);

    // As the session feeds it: two large pieces through `feed_split`, the
    // unchanged tail written from the input (the clean-block fast path runs
    // on pieces of 65 bytes and more; the 1-7 byte chunks above never reach it).
    let cut = data.len() / 2;
    let mut split = Vec::new();
    let mut s = DataScanner::new();
    let mut fed_total = 0;
    for piece in [&data[..cut], &data[cut..]] {
        let mut out = BytesMut::new();
        let fed = s.feed_split(piece, &mut out);
        assert!(fed.tail.end == fed.consumed && fed.consumed <= piece.len());
        split.extend_from_slice(&out);
        split.extend_from_slice(&piece[fed.tail]);
        fed_total += fed.consumed;
        if fed.end {
            break;
        }
    }
    assert_eq!(&whole[..], &split[..], "feed_split changed the output");
    assert_eq!(fed_total, n_whole);
}

/// ClientHello parsing (and the summary written into records); read as it
/// arrives, in chunks, the hello gives what one parse of the bytes gives, at
/// a cost linear in their number.
pub fn client_hello(data: &[u8]) {
    for cut in [data.len() / 2, data.len()] {
        if let clienthello::Peek::Hello(h) = clienthello::peek(&data[..cut]) {
            let s = h.summary();
            assert_eq!(s.versions.len(), h.versions.len());
        }
    }
    let mut reader = clienthello::HelloReader::new(crate::limits::MAX_HELLO_RECORDS);
    let (mut got, mut end, mut calls) = (clienthello::Peek::NeedMore, 0, 0);
    for chunk in chunks(data) {
        end += chunk.len();
        calls += 1;
        got = reader.peek(&data[..end]);
        if got != clienthello::Peek::NeedMore {
            break;
        }
    }
    assert_eq!(
        got,
        clienthello::peek(&data[..end]),
        "chunking changed the parse"
    );
    assert!(
        reader.examined() <= 2 * end + 8 * calls,
        "{} bytes examined for {end}",
        reader.examined()
    );
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

/// The whole session state machine, driven by arbitrary client bytes and an
/// arbitrary backend (the input is split at its first byte's proportion):
/// real `session::run`s over in-memory client streams and a loopback backend
/// that answers each command (and the end of data) with the next reply of its
/// script, and records what it receives. A script reply written `!250 ...`
/// is sent unasked, right after the reply before it (a twin, an early reply
/// in DATA); its text is marked so the client side can look for it. Client
/// input containing `\n~~\n` runs as two sessions, one after the other, with
/// backend connection reuse on.
///
/// Invariants: every session ends and writes exactly one record; no reply
/// the backend sent unasked ever reaches a client; a message is counted
/// accepted only if the backend answered an end of data with a 2xx; no
/// backend connection is re-introduced (EHLO) after it carried a command
/// that leaves state (AUTH, VRFY, an extension verb); and when STARTTLS was
/// accepted but TLS never came up, no MAIL the client sent after STARTTLS
/// reached the backend (CVE-2011-0411 class).
pub fn session(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = rest.len() * usize::from(split) / 256;
    let (client, backend_script) = rest.split_at(at);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(drive_session(client.to_vec(), backend_script.to_vec()));
}

/// The records one `session` input makes (for the schema test, which
/// checks every record the harness writes against docs/record.schema.json).
pub fn session_records(data: &[u8]) -> Vec<crate::proxy::records::Record> {
    let Some((&split, rest)) = data.split_first() else {
        return Vec::new();
    };
    let at = rest.len() * usize::from(split) / 256;
    let (client, backend_script) = rest.split_at(at);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(drive_session(client.to_vec(), backend_script.to_vec()))
        .records
}

/// What one fuzzed run produced (for the tests of the target itself).
pub struct SessionOutcome {
    /// One per client session, in order.
    pub records: Vec<crate::proxy::records::Record>,
    /// Everything the backend received, across connections.
    pub backend_received: Vec<u8>,
    /// Everything the clients received.
    pub client_received: Vec<u8>,
}

/// Marks the text of a reply the fuzz backend sends unasked.
const UNASKED: &[u8] = b"UNASKED";

/// One reply of the fuzz backend's script.
struct ScriptReply {
    bytes: Vec<u8>,
    /// Sent right after the previous reply, not in answer to anything.
    unasked: bool,
}

/// The script as replies: lines grouped until a line that is not a `ddd-`
/// continuation; `!` in front makes the reply unasked.
fn script_replies(script: &[u8]) -> Vec<ScriptReply> {
    let mut out: Vec<ScriptReply> = Vec::new();
    let mut open = false;
    for line in script.split_inclusive(|&b| b == b'\n') {
        let (unasked, line) = match line.strip_prefix(b"!") {
            Some(rest) if !open => (true, rest),
            _ => (false, line),
        };
        // Normal replies must not look unasked to the client-side check.
        let mut bytes = line.to_vec();
        if let Some(i) = bytes.windows(UNASKED.len()).position(|w| w == UNASKED) {
            bytes[i] = b'u';
        }
        if unasked && bytes.len() >= 4 {
            let at = if bytes.len() > 4 { 4 } else { 3 };
            bytes.splice(at..at, UNASKED.iter().copied());
        }
        match out.last_mut() {
            Some(last) if open => last.bytes.extend_from_slice(&bytes),
            _ => out.push(ScriptReply { bytes, unasked }),
        }
        open = line.get(3) == Some(&b'-');
    }
    out
}

/// The fuzz backend's side of one connection.
#[derive(Default)]
struct BackendConnLog {
    lines: Vec<Vec<u8>>,
    /// End-of-data replies it sent that were 2xx.
    accepted: u64,
}

async fn fuzz_backend_conn(
    mut s: tokio::net::TcpStream,
    script: std::sync::Arc<Vec<ScriptReply>>,
    log: std::sync::Arc<std::sync::Mutex<BackendConnLog>>,
    raw: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.set_nodelay(true);
    let mut next = 0;
    // Sends the next asked-for reply and any unasked ones that follow it.
    let answer = async |s: &mut tokio::net::TcpStream, next: &mut usize| -> Option<u8> {
        let first = script.get(*next).filter(|r| !r.unasked)?;
        let code = first.bytes.first().copied();
        let mut out = first.bytes.clone();
        *next += 1;
        while let Some(r) = script.get(*next).filter(|r| r.unasked) {
            out.extend_from_slice(&r.bytes);
            *next += 1;
        }
        let _ = s.write_all(&out).await;
        code
    };
    // Unasked replies at the very start come before the greeting.
    let mut lead = Vec::new();
    while let Some(r) = script.get(next).filter(|r| r.unasked) {
        lead.extend_from_slice(&r.bytes);
        next += 1;
    }
    let _ = s.write_all(&lead).await;
    let _ = answer(&mut s, &mut next).await;
    let mut buf = Vec::new();
    let mut in_data = false;
    loop {
        let mut chunk = [0u8; 4096];
        let n =
            match tokio::time::timeout(std::time::Duration::from_millis(200), s.read(&mut chunk))
                .await
            {
                Ok(Ok(n)) if n > 0 => n,
                _ => return,
            };
        raw.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(&chunk[..n]);
        buf.extend_from_slice(&chunk[..n]);
        loop {
            if in_data {
                let end = if buf.starts_with(b".\r\n") {
                    Some(3)
                } else {
                    buf.windows(5)
                        .position(|w| w == b"\r\n.\r\n")
                        .map(|p| p + 5)
                };
                let Some(end) = end else { break };
                buf.drain(..end);
                in_data = false;
                if answer(&mut s, &mut next).await == Some(b'2') {
                    log.lock().unwrap_or_else(|e| e.into_inner()).accepted += 1;
                }
                continue;
            }
            let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
                break;
            };
            let line: Vec<u8> = buf.drain(..=lf).collect();
            let line = line.strip_suffix(b"\r\n").unwrap_or(&line[..lf]).to_vec();
            if line.starts_with(b"PROXY ") {
                continue;
            }
            let is_data = line.eq_ignore_ascii_case(b"DATA");
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .lines
                .push(line);
            let code = answer(&mut s, &mut next).await;
            in_data = is_data && code == Some(b'3');
        }
    }
}

fn fuzz_settings(backend: std::net::SocketAddr, reuse: bool) -> crate::config::Settings {
    // Reuse only when a run has two sessions: otherwise each run starts from
    // nothing, and the harness sees the backend's whole dialogue.
    let reuse = if reuse { "2s" } else { "0s" };
    let text = format!(
        "[server]\nhostname = \"mx.fuzz.test\"\n[[listener]]\naddress = [\"127.0.0.1:25\"]\n\
         [backend]\naddress = \"{backend}\"\nconnect_timeout = \"200ms\"\nreply_timeout = \"50ms\"\ngreeting_timeout = \"50ms\"\n\
         data_timeout = \"50ms\"\nreuse_idle_time = \"{reuse}\"\n\
         [smtp]\ncommand_timeout = \"50ms\"\ndata_timeout = \"50ms\"\nmax_line_length = 512\n\
         relay_verbs = [\"ETRN\", \"XSITE\"]\n\
         [tls]\nhandshake_timeout = \"50ms\"\n"
    );
    let raw = crate::config::parse(&text, "fuzz").expect("fuzz config parses");
    crate::config::validate(raw, &crate::config::Overrides::default(), "fuzz")
        .expect("fuzz config valid")
}

/// One self-signed TLS front for the whole fuzzing process (key generation is slow).
fn fuzz_tls(settings: &crate::config::Settings) -> std::sync::Arc<crate::proxy::tls::TlsFront> {
    static FRONT: std::sync::OnceLock<std::sync::Arc<crate::proxy::tls::TlsFront>> =
        std::sync::OnceLock::new();
    FRONT
        .get_or_init(|| {
            std::sync::Arc::new(
                crate::proxy::tls::TlsFront::build(settings)
                    .expect("tls")
                    .expect("self-signed"),
            )
        })
        .clone()
}

/// Runs one client session to its end: what the client received.
async fn fuzz_client_session(
    shared: std::sync::Arc<crate::proxy::session::Shared>,
    input: Vec<u8>,
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let spec = shared.settings.listeners[0];
    let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
    let peer = crate::proxy::session::Peer::direct("192.0.2.1:4000".parse().expect("addr"));
    let session = tokio::spawn(crate::proxy::session::run(
        shared,
        theirs,
        spec,
        peer,
        spec.addr,
        crate::proxy::session::Prelude::Normal,
    ));
    let client_task = tokio::spawn(async move {
        let _ = ours.write_all(&input).await;
        let _ = ours.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            ours.read_to_end(&mut out),
        )
        .await;
        out
    });
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), session).await;
    assert!(ended.is_ok(), "session did not end");
    client_task.await.unwrap_or_default()
}

async fn drive_session(client: Vec<u8>, backend_script: Vec<u8>) -> SessionOutcome {
    use std::sync::{Arc, Mutex};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let backend_addr = listener.local_addr().expect("addr");
    let received = Arc::new(Mutex::new(Vec::<u8>::new()));
    let conns: Arc<Mutex<Vec<Arc<Mutex<BackendConnLog>>>>> = Arc::default();
    let script = Arc::new(script_replies(&backend_script));
    let (raw, logs, replies) = (received.clone(), conns.clone(), script.clone());
    let backend = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let log = Arc::new(Mutex::new(BackendConnLog::default()));
            logs.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(log.clone());
            tokio::spawn(fuzz_backend_conn(s, replies.clone(), log, raw.clone()));
        }
    });

    let sessions: Vec<Vec<u8>> = match client.windows(4).position(|w| w == b"\n~~\n") {
        Some(at) => vec![client[..at + 1].to_vec(), client[at + 4..].to_vec()],
        None => vec![client.clone()],
    };
    let settings = fuzz_settings(backend_addr, sessions.len() > 1);
    let tls = fuzz_tls(&settings);
    let (sink, mut record_rx) = crate::proxy::records::RecordSink::channel();
    let shared = crate::proxy::session::Shared::new(
        settings.clone(),
        Some(tls),
        crate::proxy::backend::Backend::new(settings.backend.clone()).expect("no backend TLS"),
        sink,
    );
    let mut client_received = Vec::new();
    for input in &sessions {
        client_received.extend(fuzz_client_session(shared.clone(), input.clone()).await);
    }
    shared.backend.quit_idle().await;
    backend.abort();

    let mut records = Vec::new();
    while let Ok(r) = record_rx.try_recv() {
        records.push(r);
    }
    assert_eq!(records.len(), sessions.len(), "one record per session");

    // No reply sent unasked reaches a client.
    assert!(
        !client_received.windows(UNASKED.len()).any(|w| w == UNASKED),
        "an unasked backend reply reached the client: {:?}",
        String::from_utf8_lossy(&client_received)
    );
    let conns: Vec<BackendConnLog> = conns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .map(|c| std::mem::take(&mut *c.lock().unwrap_or_else(|e| e.into_inner())))
        .collect();
    // A message is accepted only on a 2xx the backend gave to an end of data.
    let accepted: u64 = records.iter().map(|r| r.messages_accepted).sum();
    let backend_accepted: u64 = conns.iter().map(|c| c.accepted).sum();
    assert!(
        accepted <= backend_accepted,
        "{accepted} accepted, backend accepted {backend_accepted}"
    );
    // No connection is handed on after a command that leaves state.
    for conn in &conns {
        let stateful = conn
            .lines
            .iter()
            .position(|l| Command::parse(l).verb.leaves_backend_state());
        if let Some(at) = stateful {
            let reintroduced = conn.lines[at..].iter().any(|l| {
                matches!(
                    Command::parse(l).verb,
                    crate::smtp::command::Verb::Ehlo | crate::smtp::command::Verb::Helo
                )
            });
            assert!(
                !reintroduced,
                "connection reused after {:?}: {:?}",
                String::from_utf8_lossy(&conn.lines[at]),
                conn.lines
            );
        }
    }
    let backend_received = received.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (record, input) in records.iter().zip(&sessions) {
        if record.starttls_used && record.tls != crate::outcome::TlsOutcome::Established {
            let lines: Vec<&[u8]> = input
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .collect();
            let cut = lines
                .iter()
                .position(|l| l.eq_ignore_ascii_case(b"STARTTLS"))
                .unwrap_or(lines.len());
            let before: Vec<&[u8]> = lines[..cut].to_vec();
            for line in backend_received
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            {
                if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"MAIL") {
                    assert!(
                        before.contains(&line) || sessions.len() > 1,
                        "MAIL sent after STARTTLS reached the backend: {line:?}"
                    );
                }
            }
        }
    }
    SessionOutcome {
        records,
        backend_received,
        client_received,
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
    ("session", session),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client: &[u8], backend: &[u8]) -> SessionOutcome {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(drive_session(client.to_vec(), backend.to_vec()))
    }

    /// Greeting, EHLO, MAIL, RCPT, NOOP (before DATA), DATA, end of data,
    /// NOOP (after it), QUIT.
    const BACKEND: &[u8] = b"220 legacy ESMTP\r\n250 legacy\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n250 ok\r\n221 bye\r\n";

    #[test]
    fn the_session_target_reaches_delivery() {
        let o = run(
            b"EHLO a.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n",
            BACKEND,
        );
        assert_eq!(o.records[0].messages_accepted, 1);
        assert!(
            o.backend_received
                .ends_with(b"hello\r\n.\r\nNOOP\r\nQUIT\r\n")
        );
    }

    #[test]
    fn the_session_target_sees_the_starttls_injection_discarded() {
        let o = run(
            b"EHLO a.test\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n",
            BACKEND,
        );
        assert!(o.records[0].starttls_used);
        assert!(o.records[0].pipelined_after_starttls > 0);
        assert!(!String::from_utf8_lossy(&o.backend_received).contains("evil"));
    }

    #[test]
    fn an_unasked_reply_never_reaches_the_client() {
        // The backend answers RCPT twice; the twin must never be delivered.
        let backend = b"220 legacy\r\n250 legacy\r\n250 ok\r\n250 ok\r\n!250 twin\r\n250 ok\r\n354 go\r\n250 queued\r\n250 noop\r\n";
        let o = run(
            b"EHLO a.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n",
            backend,
        );
        assert!(
            !o.client_received
                .windows(UNASKED.len())
                .any(|w| w == UNASKED)
        );
        assert_eq!(o.records[0].messages_accepted, 0);
        assert_eq!(
            o.records[0].backend_error.map(|e| e.to_string()).as_deref(),
            Some("unsolicited_reply")
        );
    }

    #[test]
    fn two_sessions_share_a_clean_connection_only() {
        let backend =
            b"220 legacy\r\n250 legacy\r\n252 maybe\r\n250 ok\r\n250 legacy\r\n250 ok\r\n";
        // VRFY leaves state: the second session must get a new connection.
        let o = run(
            b"EHLO a.test\r\nVRFY x\r\nQUIT\r\n~~\nEHLO b.test\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",
            backend,
        );
        assert_eq!(o.records.len(), 2);
        assert!(!o.records[1].backend_reused);
        // Without it, the connection is kept for the second.
        let o = run(b"EHLO a.test\r\nMAIL FROM:<a@b>\r\nRSET\r\nQUIT\r\n~~\nEHLO b.test\r\nMAIL FROM:<a@b>\r\nQUIT\r\n", backend);
        assert!(o.records[1].backend_reused);
    }
}

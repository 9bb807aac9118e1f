//! A ClientHello spread over several TLS records: a few still make a
//! handshake; more than `limits::MAX_HELLO_RECORDS` are refused with their
//! own failure reason, before rustls sees them (issue 10, finding 10).

mod common;

use std::sync::Arc;

use common::*;
use rustls::pki_types::ServerName;
use rustls::version::TLS13;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NAME: &str = "mx.tlsfront.test";

/// Splits each handshake record in `flight` into records of at most `size`
/// bytes of payload (other records pass unchanged).
fn fragment(flight: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = flight;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let (record, tail) = rest.split_at(5 + len);
        if record[0] == 22 {
            for piece in record[5..].chunks(size) {
                out.extend_from_slice(&record[..3]);
                out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
                out.extend_from_slice(piece);
            }
        } else {
            out.extend_from_slice(record);
        }
        rest = tail;
    }
    assert!(rest.is_empty(), "a flight of whole records");
    out
}

/// Sends the client's TLS bytes, the first flight (its ClientHello) cut into
/// records of `size` payload bytes.
async fn send_tls(
    tcp: &mut TcpStream,
    conn: &mut rustls::ClientConnection,
    first: &mut bool,
    size: usize,
) {
    let mut flight = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut flight).unwrap();
    }
    if std::mem::take(first) {
        flight = fragment(&flight, size);
    }
    let _ = tokio::time::timeout(T, tcp.write_all(&flight))
        .await
        .unwrap();
}

/// Reads plaintext up to a line starting with `last` (byte by byte, so
/// nothing of what follows is taken).
async fn plain_reply(tcp: &mut TcpStream, last: &str) {
    let mut text = Vec::new();
    loop {
        let b = tokio::time::timeout(T, tcp.read_u8())
            .await
            .unwrap()
            .unwrap();
        text.push(b);
        if b == b'\n' {
            let line_start = text[..text.len() - 1]
                .iter()
                .rposition(|c| *c == b'\n')
                .map_or(0, |p| p + 1);
            if text[line_start..].starts_with(last.as_bytes()) {
                return;
            }
        }
        assert!(text.len() < 4096, "{}", String::from_utf8_lossy(&text));
    }
}

/// STARTTLS, then a TLS 1.3 handshake whose ClientHello goes in records of
/// `size` bytes. Ok: the connection after the handshake; Err: how it failed.
async fn fragmented_handshake(
    proxy: &Proxy,
    pki: &Pki,
    size: usize,
) -> Result<(TcpStream, rustls::ClientConnection), String> {
    let mut tcp = TcpStream::connect(proxy.starttls).await.unwrap();
    plain_reply(&mut tcp, "220 ").await;
    tcp.write_all(b"EHLO fragments.test\r\n").await.unwrap();
    plain_reply(&mut tcp, "250 ").await;
    tcp.write_all(b"STARTTLS\r\n").await.unwrap();
    plain_reply(&mut tcp, "220 ").await;
    let mut chunk = [0u8; 4096];
    let cfg: Arc<rustls::ClientConfig> = pki.client_config(&[&TLS13]);
    let name = ServerName::try_from(NAME).unwrap();
    let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut first = true;
    while conn.is_handshaking() {
        send_tls(&mut tcp, &mut conn, &mut first, size).await;
        if !conn.is_handshaking() {
            break;
        }
        let n = tokio::time::timeout(T, tcp.read(&mut chunk))
            .await
            .unwrap()
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        conn.read_tls(&mut &chunk[..n]).unwrap();
        conn.process_new_packets().map_err(|e| e.to_string())?;
    }
    send_tls(&mut tcp, &mut conn, &mut first, size).await;
    Ok((tcp, conn))
}

/// Writes `line` over TLS and reads one reply line back.
async fn tls_line(tcp: &mut TcpStream, conn: &mut rustls::ClientConnection, line: &str) -> String {
    use std::io::{Read, Write};
    conn.writer().write_all(line.as_bytes()).unwrap();
    let mut first = false;
    send_tls(tcp, conn, &mut first, 0).await;
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    while !text.ends_with(b"\r\n") || text.len() < 4 || text[text.len() - 3..] == *b"-\r\n" {
        let n = tokio::time::timeout(T, tcp.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed after TLS");
        conn.read_tls(&mut &chunk[..n]).unwrap();
        conn.process_new_packets().unwrap();
        let mut plain = [0u8; 4096];
        while let Ok(k) = conn.reader().read(&mut plain) {
            if k == 0 {
                break;
            }
            text.extend_from_slice(&plain[..k]);
        }
        // The last line of a reply has a space after the code.
        if let Some(last) = text.strip_suffix(b"\r\n").map(|t| {
            t.rsplit(|b| *b == b'\n')
                .next()
                .unwrap_or_default()
                .to_vec()
        }) && last.len() >= 4
            && last[3] == b' '
        {
            break;
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test]
async fn a_hello_in_a_few_records_still_makes_a_handshake() {
    let pki = Pki::new(&[NAME]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    // rustls' hello (~1.5 KiB with its post-quantum key share) in 16 records
    // of 100 bytes, and in 2 records.
    for size in [100, 1000] {
        let (mut tcp, mut conn) = fragmented_handshake(&proxy, &pki, size)
            .await
            .unwrap_or_else(|e| panic!("records of {size}: {e}"));
        let ehlo = tls_line(&mut tcp, &mut conn, "EHLO fragments.test\r\n").await;
        assert!(ehlo.starts_with("250"), "{ehlo}");
        assert!(
            tls_line(&mut tcp, &mut conn, "QUIT\r\n")
                .await
                .starts_with("221")
        );
    }
    for r in proxy.records(2).await {
        assert_eq!(r["tls"], "established", "{r}");
        assert_eq!(r["tls_version"], "TLSv1.3", "{r}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_hello_in_one_byte_records_is_refused() {
    let pki = Pki::new(&[NAME]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    // The client gets a handshake_failure alert, or a reset when tlsfront
    // closes with its unread records still queued.
    let failed = fragmented_handshake(&proxy, &pki, 1).await;
    assert!(failed.is_err(), "the handshake must fail");
    let r = &proxy.records(1).await[0];
    assert_eq!(r["tls"], "failed", "{r}");
    assert_eq!(r["failure_reason"], "client_hello_too_fragmented", "{r}");
    assert_eq!(r["close_reason"], "handshake_failed", "{r}");
    // Still serving.
    let mut c = Client::greeted(proxy.starttls).await;
    c.send("QUIT").await;
    c.expect(221).await;
    proxy.stop().await;
}

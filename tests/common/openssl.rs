//! A weak legacy STARTTLS for tests: a real `openssl s_server` (small RSA
//! key, chosen cipher list, 1024-bit DH) behind a scripted SMTP front that
//! splices the socket to it after `220` to STARTTLS. Killed by PID on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::T;

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// RFC 2409 group 2: a well-known 1024-bit MODP group, so no slow dhparam run.
pub const DH1024: &str = "-----BEGIN DH PARAMETERS-----
MIGHAoGBAP//////////yQ/aoiFowjTExmKLgNwc0SkCTgiKZ8x0Agu+pjsTmyJR
Sgh5jjQE3e+VGbPNOkMbMCsKbfJfFDdP4TVtbVHCReSFtXZiXn7G9ExC6aY37WsL
/1y29Aa37e44a/taiZ+lrp8kEXxLH+ZJKGZR7OZTgf//////////AgEC
-----END DH PARAMETERS-----
";

pub fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An `openssl s_server` process, killed by PID when dropped.
pub struct SServer {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `openssl s_server` with a self-signed RSA key of `rsa_bits` and
/// the given cipher list, TLS 1.2 at most, 1024-bit DH.
pub fn s_server(dir: &Path, rsa_bits: u32, cipher: &str) -> SServer {
    s_server_with(dir, rsa_bits, cipher, &["-no_tls1_3"])
}

/// Like [`s_server`], with `protocol` flags instead of `-no_tls1_3`
/// (e.g. `-tls1_1` for a server stuck on TLS 1.1).
pub fn s_server_with(dir: &Path, rsa_bits: u32, cipher: &str, protocol: &[&str]) -> SServer {
    let cert = dir.join(format!("rsa{rsa_bits}.pem"));
    let key = dir.join(format!("rsa{rsa_bits}.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            &format!("rsa:{rsa_bits}"),
            "-nodes",
        ])
        .args(["-keyout", &p(&key), "-out", &p(&cert), "-days", "30"])
        .args(["-subj", "/CN=weak.legacy.test"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl req failed");
    let dh = dir.join("dh1024.pem");
    std::fs::write(&dh, DH1024).unwrap();

    // A free port: bound, read, released (s_server cannot report its port).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", &p(&cert), "-key", &p(&key), "-dhparam", &p(&dh)])
        .args(["-cipher", cipher])
        .args(protocol)
        // s_server quits at the end of its stdin: keep the pipe open.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("s_server.err")).unwrap())
        .spawn()
        .unwrap();
    // It prints ACCEPT once listening; wait for that line, bounded.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if line.contains("ACCEPT") {
                let _ = tx.send(());
            }
        }
    });
    let server = SServer {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    if rx.recv_timeout(Duration::from_secs(10)).is_err() {
        panic!(
            "openssl s_server did not start listening: {}",
            std::fs::read_to_string(dir.join("s_server.err")).unwrap_or_default()
        );
    }
    server
}

/// A legacy MTA front: greeting, EHLO with STARTTLS, and after `220` to
/// STARTTLS the socket is spliced to the TLS server at `tls`.
pub async fn starttls_front(tls: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(T, front_session(s, tls)).await;
            });
        }
    });
    (addr, task)
}

async fn front_session(mut s: TcpStream, tls: SocketAddr) {
    let mut buf = BytesMut::new();
    if s.write_all(b"220 weak.legacy.test ESMTP\r\n")
        .await
        .is_err()
    {
        return;
    }
    loop {
        let line = loop {
            if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                break String::from_utf8_lossy(&buf.split_to(pos + 1))
                    .trim()
                    .to_uppercase();
            }
            match s.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let reply: &[u8] = if line.starts_with("EHLO") {
            b"250-weak.legacy.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
        } else if line == "STARTTLS" {
            let _ = s.write_all(b"220 2.0.0 Ready to start TLS\r\n").await;
            let Ok(mut upstream) = TcpStream::connect(tls).await else {
                return;
            };
            if !buf.is_empty() {
                let _ = upstream.write_all(&buf).await;
            }
            let _ = tokio::io::copy_bidirectional(&mut s, &mut upstream).await;
            return;
        } else if line == "QUIT" {
            let _ = s.write_all(b"221 2.0.0 Bye\r\n").await;
            return;
        } else if line.starts_with("RCPT") {
            // tlsfront check's relay test: a backend that does not relay.
            b"554 5.7.1 Relay access denied\r\n"
        } else {
            b"250 2.0.0 Ok\r\n"
        };
        if s.write_all(reply).await.is_err() {
            return;
        }
    }
}

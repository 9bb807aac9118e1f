//! HTTP-01 (RFC 8555 §8.3): the CA fetches
//! `http://NAME/.well-known/acme-challenge/TOKEN` and expects the key
//! authorization. tlsfront answers from a table of pending tokens on its
//! own small listener (port 80), or writes the files under a web server's
//! root. The listener answers that one path and nothing else (404), reads
//! a bounded request head under a deadline, and closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::proxy::small_http;

pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// Pending tokens and their key authorizations.
#[derive(Debug, Default)]
pub struct Challenges(Mutex<HashMap<String, String>>);

impl Challenges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, token: &str) -> Option<String> {
        self.lock().get(token).cloned()
    }
}

/// Where a token goes while the CA validates.
#[derive(Debug, Clone)]
pub enum Responder {
    Table(Arc<Challenges>),
    Webroot(PathBuf),
}

impl Responder {
    pub fn put(&self, token: &str, key_authorization: &str) -> std::io::Result<()> {
        // The token comes from the CA; it must be a plain file name.
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the CA sent a token that is not base64url: {token:?}"),
            ));
        }
        match self {
            Responder::Table(t) => {
                t.lock()
                    .insert(token.to_string(), key_authorization.to_string());
                Ok(())
            }
            Responder::Webroot(root) => {
                let dir = webroot_dir(root);
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join(token), key_authorization)
            }
        }
    }

    pub fn remove(&self, token: &str) {
        match self {
            Responder::Table(t) => {
                t.lock().remove(token);
            }
            Responder::Webroot(root) => {
                let _ = std::fs::remove_file(webroot_dir(root).join(token));
            }
        }
    }
}

fn webroot_dir(root: &Path) -> PathBuf {
    root.join(".well-known").join("acme-challenge")
}

/// Binds every address (IPv6 ones IPv6-only, so `0.0.0.0:80` and `[::]:80`
/// bind side by side); the failing address and its error otherwise.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, (SocketAddr, std::io::Error)> {
    addrs
        .iter()
        .map(|addr| {
            let bind = || -> std::io::Result<TcpListener> {
                let domain = socket2::Domain::for_address(*addr);
                let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
                if addr.is_ipv6() {
                    s.set_only_v6(true)?;
                }
                s.set_reuse_address(true)?;
                s.set_nonblocking(true)?;
                s.bind(&(*addr).into())?;
                s.listen(128)?;
                TcpListener::from_std(s.into())
            };
            bind().map_err(|e| (*addr, e))
        })
        .collect()
}

/// Serves `listeners` until `shutdown`.
pub async fn serve(
    listeners: Vec<TcpListener>,
    table: Arc<Challenges>,
    shutdown: CancellationToken,
) {
    small_http::serve(listeners, shutdown, move |stream| {
        let table = table.clone();
        async move { answer(stream, &table).await }
    })
    .await
}

async fn answer(mut stream: TcpStream, table: &Challenges) -> std::io::Result<()> {
    let buf = small_http::read_head(&mut stream).await?;
    let (status, body) = match respond(&buf, table) {
        Some(key_authorization) => ("200 OK", key_authorization),
        None => ("404 Not Found", "not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The key authorization a request head asks for, if it is a GET (or HEAD)
/// of a pending token's path.
fn respond(head: &[u8], table: &Challenges) -> Option<String> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    if method != "GET" && method != "HEAD" {
        return None;
    }
    // An absolute form (`http://host/path`) from a proxying client.
    let path = match target.strip_prefix("http://") {
        Some(rest) => &rest[rest.find('/')?..],
        None => target,
    };
    table.get(path.strip_prefix(CHALLENGE_PATH)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn only_a_pending_token_is_answered() {
        let table = Arc::new(Challenges::default());
        let r = Responder::Table(table.clone());
        r.put("tok-1_A", "tok-1_A.thumb").unwrap();
        let get = |line: &str| respond(format!("{line}\r\nHost: x\r\n\r\n").as_bytes(), &table);
        assert_eq!(
            get("GET /.well-known/acme-challenge/tok-1_A HTTP/1.1").as_deref(),
            Some("tok-1_A.thumb")
        );
        assert_eq!(
            get("GET http://mx.test/.well-known/acme-challenge/tok-1_A HTTP/1.1").as_deref(),
            Some("tok-1_A.thumb")
        );
        assert_eq!(get("GET /.well-known/acme-challenge/other HTTP/1.1"), None);
        assert_eq!(
            get("POST /.well-known/acme-challenge/tok-1_A HTTP/1.1"),
            None
        );
        assert_eq!(get("GET / HTTP/1.1"), None);
        r.remove("tok-1_A");
        assert_eq!(
            get("GET /.well-known/acme-challenge/tok-1_A HTTP/1.1"),
            None
        );
        assert!(r.put("../../etc/passwd", "x").is_err());
    }

    #[test]
    fn webroot_files_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let r = Responder::Webroot(dir.path().to_path_buf());
        r.put("abc", "abc.thumb").unwrap();
        let file = dir.path().join(".well-known/acme-challenge/abc");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "abc.thumb");
        r.remove("abc");
        assert!(!file.exists());
    }

    #[tokio::test]
    async fn the_listener_answers_over_tcp() {
        let listeners = bind(&["127.0.0.1:0".parse().unwrap()]).unwrap();
        let addr = listeners[0].local_addr().unwrap();
        let table = Arc::new(Challenges::default());
        Responder::Table(table.clone()).put("t", "t.k").unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listeners, table, stop.clone()));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /.well-known/acme-challenge/t HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nt.k"), "{out}");
        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}

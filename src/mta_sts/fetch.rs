//! Fetching a domain's MTA-STS policy the way a sender does (RFC 8461 §3.3):
//! `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`, the certificate verified
//! against trusted roots for that name, no redirects, at most 64 KiB. The
//! resolver and the roots are the caller's (the system's in real use; a
//! loopback zone and a test CA in tests), and so is the port (443).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::dns::Resolver;
use crate::limits;

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("{0}")]
    Dns(#[from] crate::dns::DnsError),
    #[error("{host} has no address")]
    NoAddress { host: String },
    #[error("cannot connect to {host}: {message}")]
    Connect { host: String, message: String },
    #[error("TLS with {host}: {message}")]
    Tls { host: String, message: String },
    #[error(
        "{url}: HTTP {status} (the policy must be served with 200, redirects are not followed)"
    )]
    Status { url: String, status: u16 },
    #[error("{url}: Content-Type {0:?} is not text/plain", content_type)]
    ContentType { url: String, content_type: String },
    #[error("{url}: more than {} bytes", limits::MAX_MTA_STS_POLICY)]
    TooBig { url: String },
    #[error("{url}: not an HTTP answer: {message}")]
    Http { url: String, message: String },
    #[error("{url}: no answer within {}s", limits::MTA_STS_FETCH_TIMEOUT.as_secs())]
    Timeout { url: String },
}

/// The policy text of `domain`, fetched on `port` (443).
pub async fn policy(
    domain: &str,
    resolver: &Resolver,
    roots: Arc<RootCertStore>,
    port: u16,
) -> Result<String, FetchError> {
    let url = super::policy_url(domain);
    tokio::time::timeout(
        limits::MTA_STS_FETCH_TIMEOUT,
        get(domain, resolver, roots, port),
    )
    .await
    .map_err(|_| FetchError::Timeout { url })?
}

async fn get(
    domain: &str,
    resolver: &Resolver,
    roots: Arc<RootCertStore>,
    port: u16,
) -> Result<String, FetchError> {
    let host = super::policy_host(domain);
    let url = super::policy_url(domain);
    let addrs = resolver.addresses(&host).await?;
    if addrs.is_empty() {
        return Err(FetchError::NoAddress { host });
    }
    let mut last = String::new();
    let mut tcp = None;
    for ip in addrs {
        match TcpStream::connect((ip, port)).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("{ip}: {e}"),
        }
    }
    let tcp = tcp.ok_or_else(|| FetchError::Connect {
        host: host.clone(),
        message: last,
    })?;
    let tls_err = |message: String| FetchError::Tls {
        host: host.clone(),
        message,
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|e| tls_err(e.to_string()))?;
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| tls_err(e.to_string()))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tlsfront\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        super::POLICY_PATH
    );
    let http = |message: &str| FetchError::Http {
        url: url.clone(),
        message: message.to_string(),
    };
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| http(&e.to_string()))?;
    let mut raw = Vec::new();
    let cap = limits::MAX_MTA_STS_POLICY + 16 * 1024;
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            // A server that closes without close_notify has still sent it all.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(http(&e.to_string())),
        }
        if raw.len() > cap {
            return Err(FetchError::TooBig { url });
        }
    }
    let (status, content_type, body) = parse_response(&raw).map_err(http)?;
    if status != 200 {
        return Err(FetchError::Status { url, status });
    }
    if !content_type
        .as_deref()
        .is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("text/plain"))
    {
        return Err(FetchError::ContentType {
            url,
            content_type: content_type.unwrap_or_default(),
        });
    }
    if body.len() > limits::MAX_MTA_STS_POLICY {
        return Err(FetchError::TooBig { url });
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Status, Content-Type and body (`Content-Length`, chunked, or to the end).
fn parse_response(raw: &[u8]) -> Result<(u16, Option<String>, Vec<u8>), &'static str> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers are not text")?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("no status line")?;
    let mut content_type = None;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(v.trim().to_string()),
            "content-length" => length = v.trim().parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let body = if chunked {
        let mut out = Vec::new();
        let mut at = rest;
        loop {
            let end = at
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("bad chunk")?;
            let size = std::str::from_utf8(&at[..end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .ok_or("bad chunk size")?;
            at = &at[end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(at.get(..size).ok_or("short chunk")?);
            at = at.get(size + 2..).ok_or("short chunk")?;
        }
        out
    } else {
        match length {
            Some(n) => rest
                .get(..n)
                .ok_or("body shorter than Content-Length")?
                .to_vec(),
            None => rest.to_vec(),
        }
    };
    Ok((status, content_type, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_by_length_chunks_or_close() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabcdef",
        )
        .unwrap();
        assert_eq!(r, (200, Some("text/plain".into()), b"abc".to_vec()));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.2, b"abcde".to_vec());
        let r = parse_response(b"HTTP/1.0 301 Moved\r\nLocation: x\r\n\r\n").unwrap();
        assert_eq!(r.0, 301);
        assert!(parse_response(b"garbage").is_err());
    }
}

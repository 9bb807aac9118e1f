//! The MTA-STS policy served by tlsfront itself (`[mta_sts]`), for hosts
//! with no web server: HTTPS on port 443 at `mta-sts.DOMAIN`, with the
//! certificate tlsfront serves for that name (ACME adds the name to its
//! orders), answering `GET /.well-known/mta-sts.txt` with the configured
//! policy and nothing else. Bounded like the challenge listener: one short
//! request head under a deadline, a cap on connections.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::MtaStsSettings;
use crate::mta_sts::{self, POLICY_PATH};
use crate::proxy::session::Shared;
use crate::proxy::small_http;

/// The policy server, bound.
pub struct PolicyServer {
    listeners: Vec<TcpListener>,
    domains: Vec<String>,
    body: String,
}

impl PolicyServer {
    /// Binds `[mta_sts] listen`; `None` without `[mta_sts]`.
    pub fn bind(
        settings: Option<&MtaStsSettings>,
    ) -> Result<Option<PolicyServer>, (SocketAddr, std::io::Error)> {
        let Some(m) = settings else { return Ok(None) };
        Ok(Some(PolicyServer {
            listeners: crate::proxy::acme::http01::bind(&m.listen)?,
            domains: m.domains.clone(),
            body: m.policy.render(),
        }))
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown`, with the certificates in service when each
    /// connection comes (a renewal applies to the next one).
    pub async fn serve(self, shared: Arc<Shared>) {
        let hosts: Arc<Vec<String>> = Arc::new(
            self.domains
                .iter()
                .map(|d| mta_sts::policy_host(d))
                .collect(),
        );
        let body: Arc<str> = self.body.into();
        let shutdown: CancellationToken = shared.shutdown.clone();
        small_http::serve(self.listeners, shutdown, move |stream| {
            let (shared, hosts, body) = (shared.clone(), hosts.clone(), body.clone());
            async move { answer(stream, &shared, &hosts, &body).await }
        })
        .await
    }
}

async fn answer(
    stream: TcpStream,
    shared: &Shared,
    hosts: &[String],
    body: &str,
) -> std::io::Result<()> {
    let Some(front) = shared.tls() else {
        return Ok(());
    };
    // The certificate for the policy host (by SNI, as for SMTP).
    let acceptor =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = acceptor.await?;
    let sni = start
        .client_hello()
        .server_name()
        .map(str::to_ascii_lowercase);
    let config = front.select(sni.as_deref(), None).server_config();
    let mut tls = start.into_stream(config).await?;
    let buf = small_http::read_head(&mut tls).await?;
    let ok = request_ok(&buf, hosts);
    let (status, text) = if ok {
        ("200 OK", body)
    } else {
        ("404 Not Found", "not found\n")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nCache-Control: max-age=300\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    tls.write_all(response.as_bytes()).await?;
    tls.shutdown().await
}

/// A GET of the policy path for one of the policy hosts (by Host header).
fn request_ok(head: &[u8], hosts: &[String]) -> bool {
    let Ok(text) = std::str::from_utf8(head) else {
        return false;
    };
    let mut lines = text.split("\r\n");
    let Some(first) = lines.next() else {
        return false;
    };
    let mut parts = first.split(' ');
    if parts.next() != Some("GET") || parts.next() != Some(POLICY_PATH) {
        return false;
    }
    lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| {
            v.trim()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        })
        .is_some_and(|h| hosts.contains(&h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_policy_path_of_a_policy_host_is_served() {
        let hosts = vec!["mta-sts.example.com".to_string()];
        let req = |first: &str, host: &str| {
            request_ok(
                format!("{first}\r\nHost: {host}\r\n\r\n").as_bytes(),
                &hosts,
            )
        };
        assert!(req(
            "GET /.well-known/mta-sts.txt HTTP/1.1",
            "MTA-STS.example.com"
        ));
        assert!(req(
            "GET /.well-known/mta-sts.txt HTTP/1.1",
            "mta-sts.example.com:443"
        ));
        assert!(!req(
            "GET /.well-known/mta-sts.txt HTTP/1.1",
            "mta-sts.example.net"
        ));
        assert!(!req("GET / HTTP/1.1", "mta-sts.example.com"));
        assert!(!req(
            "POST /.well-known/mta-sts.txt HTTP/1.1",
            "mta-sts.example.com"
        ));
    }
}

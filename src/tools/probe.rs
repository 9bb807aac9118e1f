//! `tlsfront probe HOST[:PORT]`: the readable `openssl s_client -starttls smtp`.
//!
//! Greeting, EHLO, STARTTLS (or implicit TLS), then a modern rustls handshake
//! whose verifier records the chain and the webpki verdict instead of failing,
//! so an untrusted or mismatched chain is still shown. A second connection
//! flips SNI and tells whether the same certificate comes back. When the
//! modern handshake is impossible, a second connection runs the raw TLS 1.2
//! probe of [`crate::tools::legacy`] (shared with `tlsfront check`) to say what
//! the server offers and why a modern sender refuses it.
//!
//! Given a mail domain, [`run_domain`] finds its mail hosts as a sender does
//! (MX records through [`crate::dns`], implicit MX, null MX) and probes each.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use rustls::CertificateError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cert;
use crate::limits;
use crate::outcome::HandshakeFailure;
use crate::proxy::backend::tls::{CertPolicy, Presented, Verifier};
use crate::smtp::client::{self, ReadError};
use crate::smtp::ehlo;
use crate::smtp::reply::{Reply, ReplyParser};
use crate::tools::check::{self, certs::covers};
use crate::tools::legacy::{self, Assessment, Refusal};

/// Debian's bundle of the system's trusted roots (package ca-certificates).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What to probe and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub host: String,
    pub port: u16,
    /// Extra name to check the certificate against (`--name`).
    pub name: Option<String>,
    pub implicit: bool,
    /// Do not send SNI on the first connection (the second one does).
    pub no_sni: bool,
    pub timeout: Duration,
    pub ehlo: String,
    pub cafile: Option<PathBuf>,
    /// The system roots file (a parameter so tests can point it elsewhere).
    pub system_roots: PathBuf,
    /// `--dane`, `--mta-sts`: what DNS publishes, judged as `check` does.
    pub published: Option<check::Options>,
    /// The addresses to connect to (an MX host's, from the resolver that
    /// found it); empty: `host` through the system's resolver.
    pub addresses: Vec<IpAddr>,
}

/// Splits `HOST[:PORT]`, `[v6]:PORT` or a bare IPv6 address.
pub fn parse_target(target: &str, implicit: bool) -> Result<(String, u16), String> {
    let default = if implicit { 465 } else { 25 };
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("bad port {p:?} in {target:?}"))
    };
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ] in {target:?}"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, port(p)?),
            None if after.is_empty() => (host, default),
            None => return Err(format!("unexpected {after:?} after ] in {target:?}")),
        }
    } else if target.matches(':').count() > 1 {
        (target, default) // a bare IPv6 address
    } else {
        match target.split_once(':') {
            Some((h, p)) => (h, port(p)?),
            None => (target, default),
        }
    };
    if host.is_empty() {
        return Err(format!("no host in {target:?}"));
    }
    Ok((host.trim_end_matches('.').to_string(), port))
}

/// The local host name for EHLO, or a name that is clearly not a real host.
pub fn default_ehlo_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "tlsfront-probe.invalid".to_string())
}

/// One certificate of the chain as presented.
#[derive(Debug, Clone, Serialize)]
pub struct CertReport {
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    /// As in the records: `rsa_2048`, `ecdsa_p256`, `ed25519`.
    pub key_type: String,
    pub key_bits: Option<usize>,
    /// `YYYY-MM-DD HH:MM:SS UTC`.
    pub not_after: String,
    pub days_left: i64,
}

/// The modern (rustls, TLS 1.2/1.3) handshake.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsReport {
    pub ok: bool,
    /// The SNI sent; null without SNI.
    pub sni: Option<String>,
    pub version: Option<String>,
    pub cipher_suite: Option<String>,
    pub group: Option<String>,
    pub alpn: Option<String>,
    /// Stable snake_case reason when the handshake failed.
    pub error: Option<String>,
    pub error_detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NameCheck {
    pub name: String,
    pub matches: bool,
}

/// The second connection, with SNI flipped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SniReport {
    pub sni: Option<String>,
    pub ok: bool,
    pub same_certificate: Option<bool>,
    pub leaf_subject: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub host: String,
    pub port: u16,
    /// `starttls` or `implicit`.
    pub mode: &'static str,
    /// The address connected to; null if none could be.
    pub address: Option<String>,
    pub greeting: Option<String>,
    pub ehlo: Vec<String>,
    pub starttls_offered: bool,
    pub starttls_reply: Option<String>,
    /// Null when no handshake was attempted.
    pub tls: Option<TlsReport>,
    /// Leaf first, as the server sent it (also after a failed handshake,
    /// when the server got as far as sending it).
    pub chain: Vec<CertReport>,
    /// `trusted`, `not_checked` (no roots) or why not (`unknown_issuer`, ...).
    pub verification: Option<String>,
    pub roots: Vec<String>,
    pub names: Vec<NameCheck>,
    pub other_sni: Option<SniReport>,
    /// The raw TLS 1.2 probe, run only when the modern handshake failed.
    pub legacy: Option<Assessment>,
    /// What each kind of sender does with this server.
    pub senders: Senders,
    /// A verifying sender would deliver over verified TLS to the names checked.
    pub ok: bool,
    /// Why not, one line each.
    pub problems: Vec<String>,
    /// `--dane`, `--mta-sts`: findings in `check`'s words and codes.
    pub published: Vec<check::Finding>,
    /// Cannot connect, not SMTP, bad arguments (exit 2).
    pub error: Option<String>,
    pub exit: u8,
}

/// How a kind of sender's message travels to this server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Over TLS with a chain that verifies and covers the name.
    VerifiedTls,
    /// Over TLS, the certificate not checked (or no roots to check it).
    Tls,
    /// In clear.
    Plaintext,
    /// Not at all: deferred and retried, then bounced.
    #[default]
    Fails,
}

impl Delivery {
    /// The verdict in one word, for people.
    pub fn word(self) -> &'static str {
        match self {
            Delivery::VerifiedTls => "VERIFIED TLS",
            Delivery::Tls => "TLS",
            Delivery::Plaintext => "CLEAR",
            Delivery::Fails => "FAILS",
        }
    }
}

/// One kind of sender's verdict, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SenderVerdict {
    pub delivery: Delivery,
    pub detail: String,
}

/// The three kinds of sending MTA, as Postfix's `posttls-finger -l may` /
/// `-l secure` and a client that retries in clear see the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Senders {
    /// TLS when offered, the certificate not checked: Postfix
    /// (`smtp_tls_security_level = may`), Exim and Sendmail by default.
    pub opportunistic: SenderVerdict,
    /// A valid chain for the MX name required: MTA-STS `enforce`, DANE,
    /// Postfix `secure`.
    pub verifying: SenderVerdict,
    /// Like opportunistic, but a failed TLS attempt is retried in clear.
    pub fallback: SenderVerdict,
}

/// How far STARTTLS got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartTls {
    /// Implicit TLS (port 465): no STARTTLS step.
    Implicit,
    NotOffered,
    /// Offered, but answered with this reply.
    Refused(String),
    Accepted,
}

/// What the probe saw, for the verdicts.
#[derive(Debug, Clone)]
pub struct Facts {
    pub starttls: StartTls,
    /// The modern (rustls) handshake: its protocol version when it succeeded.
    pub modern: Option<String>,
    /// `trusted`, `not_checked`, or why the chain does not verify.
    pub verification: Option<String>,
    /// Names the certificate does not cover.
    pub uncovered: Vec<String>,
    /// The raw TLS 1.2 probe, when the modern handshake failed.
    pub legacy: Option<Assessment>,
}

/// The verdict of each kind of sender. A lenient sender (Postfix's own
/// OpenSSL settings, which `posttls-finger -l may` shows) completes a
/// handshake whenever the server answers a ClientHello at all: a 1024-bit
/// RSA key, a 1024-bit DH group, TLS 1.0 (observed with Postfix 3.7 and
/// OpenSSL 3.0). The certificate only matters to verifying senders.
pub fn senders(f: &Facts) -> Senders {
    let lenient = match (&f.modern, &f.legacy) {
        (Some(v), _) => Some(format!("over {v}, certificate not checked")),
        (None, Some(l)) if l.failure.is_none() && l.version.is_some() => {
            let mut d = format!(
                "over {}, certificate not checked",
                l.version.clone().unwrap_or_default()
            );
            if l.reasons.iter().any(|r| *r != Refusal::WeakRsa) {
                d.push_str(
                    " (senders on OpenSSL's default security level, not Postfix, refuse it: \
                     \"dh key too small\" / \"unsupported protocol\")",
                );
            }
            Some(d)
        }
        _ => None,
    };
    let v = |delivery, detail: &str| SenderVerdict {
        delivery,
        detail: detail.to_string(),
    };
    let no_tls = match &f.starttls {
        StartTls::NotOffered => Some("STARTTLS is not offered".to_string()),
        StartTls::Refused(r) => Some(format!("STARTTLS is refused ({r})")),
        _ => None,
    };
    let (opportunistic, fallback) = match (&no_tls, &lenient) {
        (Some(why), _) => (
            v(Delivery::Plaintext, &format!("{why}: delivers in clear")),
            v(Delivery::Plaintext, &format!("{why}: delivers in clear")),
        ),
        (None, Some(tls)) => (v(Delivery::Tls, tls), v(Delivery::Tls, tls)),
        (None, None) => {
            let why = "no TLS handshake is possible";
            (
                v(
                    Delivery::Fails,
                    &format!("{why}: the message is deferred, retried, and bounced in the end"),
                ),
                if f.starttls == StartTls::Implicit {
                    v(
                        Delivery::Fails,
                        &format!("{why}, and implicit TLS has no clear-text mode"),
                    )
                } else {
                    v(Delivery::Plaintext, &format!("{why}: retries in clear"))
                },
            )
        }
    };
    let verifying = match (&no_tls, &f.modern, f.verification.as_deref()) {
        (Some(why), _, _) => v(Delivery::Fails, &format!("{why}: refuses to send")),
        (None, None, _) => v(
            Delivery::Fails,
            "no handshake a modern TLS stack accepts (see the problems)",
        ),
        (None, Some(_), _) if !f.uncovered.is_empty() => v(
            Delivery::Fails,
            &format!("the certificate does not cover {}", f.uncovered.join(", ")),
        ),
        (None, Some(ver), Some("trusted")) => v(
            Delivery::VerifiedTls,
            &format!("over {ver}, the chain verifies and covers the name"),
        ),
        (None, Some(ver), Some("not_checked") | None) => v(
            Delivery::Tls,
            &format!("over {ver}; the chain was not checked (no roots)"),
        ),
        (None, Some(_), Some(why)) => v(
            Delivery::Fails,
            &format!("the chain does not verify ({why})"),
        ),
    };
    Senders {
        opportunistic,
        verifying,
        fallback,
    }
}

/// Loads the roots: the system bundle plus `--cafile`. `Ok(None)`: no roots
/// at all (verification not checked); `Err`: `--cafile` is unusable.
fn load_roots(opts: &Options) -> Result<(Option<rustls::RootCertStore>, Vec<String>), String> {
    let mut store = rustls::RootCertStore::empty();
    let mut sources = Vec::new();
    let read = |path: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, String> {
        CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: bad PEM: {e}", path.display()))
    };
    if let Ok(certs) = read(&opts.system_roots) {
        let (added, _) = store.add_parsable_certificates(certs);
        if added > 0 {
            sources.push(opts.system_roots.display().to_string());
        }
    }
    if let Some(path) = &opts.cafile {
        let certs = read(path).map_err(|e| format!("--cafile {e}"))?;
        let (added, _) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!(
                "--cafile {}: no usable CERTIFICATE block",
                path.display()
            ));
        }
        sources.push(path.display().to_string());
    }
    Ok(if store.is_empty() {
        (None, sources)
    } else {
        (Some(store), sources)
    })
}

#[derive(Debug, Default)]
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    verdict: Option<String>,
}

/// Accepts any chain but records it with the webpki verdict, so the report
/// can show an untrusted or mismatched chain. Handshake signatures are still
/// checked for real by [`Verifier`] (that is where a 1024-bit RSA key fails).
#[derive(Debug)]
struct Recorder {
    inner: Option<Arc<WebPkiServerVerifier>>,
    seen: Arc<Mutex<Seen>>,
}

impl CertPolicy for Recorder {
    fn verify_cert(&self, c: &Presented<'_>) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            None => "not_checked".to_string(),
            Some(v) => {
                match v.verify_server_cert(
                    c.end_entity,
                    c.intermediates,
                    c.server_name,
                    c.ocsp_response,
                    c.now,
                ) {
                    Ok(_) => "trusted".to_string(),
                    // The chain is checked before the name: a name error means a
                    // trusted chain. Names are reported separately.
                    Err(rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. },
                    )) => "trusted".to_string(),
                    Err(e) => HandshakeFailure::from_rustls(&e).as_str().to_string(),
                }
            }
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.chain = std::iter::once(c.end_entity)
            .chain(c.intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        seen.verdict = Some(verdict);
        Ok(ServerCertVerified::assertion())
    }
}

/// An SMTP client dialogue over any stream, every wait bounded.
struct Smtp<S> {
    io: S,
    buf: BytesMut,
    parser: ReplyParser,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smtp<S> {
    fn new(io: S, buf: BytesMut, timeout: Duration) -> Self {
        Smtp {
            io,
            buf,
            parser: ReplyParser::new(limits::MAX_REPLY_LINE, limits::MAX_REPLY_BYTES),
            timeout,
        }
    }

    async fn reply(&mut self, phase: &str) -> Result<Reply, String> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        client::read_reply(&mut self.io, &mut self.buf, &mut self.parser, deadline)
            .await
            .map_err(|e| match e {
                ReadError::Malformed(e) => format!("not SMTP ({phase}): {e}"),
                ReadError::Timeout => {
                    format!("no reply within {} s ({phase})", self.timeout.as_secs())
                }
                ReadError::Closed => format!("connection closed ({phase})"),
                ReadError::Io(e) => format!("{e} ({phase})"),
            })
    }

    async fn command(&mut self, line: &str, phase: &str) -> Result<Reply, String> {
        let out = format!("{line}\r\n");
        match tokio::time::timeout(self.timeout, self.io.write_all(out.as_bytes())).await {
            Ok(Ok(())) => self.reply(phase).await,
            Ok(Err(e)) => Err(format!("{e} ({phase})")),
            Err(_) => Err(format!("write timed out ({phase})")),
        }
    }

    async fn quit(mut self) {
        client::quit(&mut self.io).await;
    }
}

/// The plaintext part of a STARTTLS session, or the SMTP part after implicit TLS.
#[derive(Debug, Default)]
struct Dialogue {
    greeting: Option<String>,
    ehlo: Vec<String>,
    starttls_offered: bool,
    starttls_reply: Option<String>,
}

/// Why a dialogue stopped: `fatal` is exit 2 (not SMTP, refused), otherwise
/// a modern sender's problem (exit 1).
struct Stop {
    fatal: bool,
    message: String,
}

async fn greet_and_ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    smtp: &mut Smtp<S>,
    ehlo_name: &str,
    d: &mut Dialogue,
) -> Result<(), Stop> {
    let fatal = |message: String| Stop {
        fatal: true,
        message,
    };
    let greeting = smtp.reply("greeting").await.map_err(fatal)?;
    d.greeting = Some(greeting.summary());
    if greeting.code != 220 {
        return Err(fatal(format!(
            "greeting is not 220: {}",
            greeting.summary()
        )));
    }
    let reply = smtp
        .command(&format!("EHLO {ehlo_name}"), "EHLO")
        .await
        .map_err(fatal)?;
    if reply.code != 250 {
        return Err(fatal(format!("EHLO refused: {}", reply.summary())));
    }
    d.ehlo = ehlo::keywords_of(&reply.lines);
    d.starttls_offered = d
        .ehlo
        .iter()
        .any(|k| ehlo::keyword(k).eq_ignore_ascii_case("STARTTLS"));
    Ok(())
}

/// Greeting, EHLO and STARTTLS on a plaintext connection; the stream and any
/// bytes read past the 220 come back for the handshake.
async fn starttls(
    stream: TcpStream,
    opts: &Options,
    d: &mut Dialogue,
) -> Result<(TcpStream, BytesMut), Stop> {
    let mut smtp = Smtp::new(stream, BytesMut::new(), opts.timeout);
    greet_and_ehlo(&mut smtp, &opts.ehlo, d).await?;
    if !d.starttls_offered {
        smtp.quit().await;
        return Err(Stop {
            fatal: false,
            message: "STARTTLS is not offered: mail from modern senders goes in clear (or not at all under MTA-STS/DANE)".into(),
        });
    }
    let reply = smtp
        .command("STARTTLS", "STARTTLS")
        .await
        .map_err(|message| Stop {
            fatal: false,
            message,
        })?;
    d.starttls_reply = Some(reply.summary());
    if reply.code != 220 {
        smtp.quit().await;
        return Err(Stop {
            fatal: false,
            message: format!("STARTTLS offered but refused: {}", reply.summary()),
        });
    }
    Ok((smtp.io, smtp.buf))
}

async fn connect(opts: &Options) -> Result<(TcpStream, SocketAddr), String> {
    let addrs: Vec<SocketAddr> = if !opts.addresses.is_empty() {
        opts.addresses
            .iter()
            .map(|ip| SocketAddr::new(*ip, opts.port))
            .collect()
    } else {
        match tokio::time::timeout(
            opts.timeout,
            tokio::net::lookup_host((opts.host.as_str(), opts.port)),
        )
        .await
        {
            Err(_) => return Err(format!("resolving {} timed out", opts.host)),
            Ok(Err(e)) => return Err(format!("cannot resolve {}: {e}", opts.host)),
            Ok(Ok(a)) => a.collect(),
        }
    };
    let mut last = format!("{} has no address", opts.host);
    for addr in addrs {
        match tokio::time::timeout(opts.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok((s, addr)),
            Ok(Err(e)) => last = format!("cannot connect to {addr}: {e}"),
            Err(_) => {
                last = format!(
                    "cannot connect to {addr}: no answer within {} s",
                    opts.timeout.as_secs()
                )
            }
        }
    }
    Err(last)
}

/// What a modern handshake gave.
struct Handshake {
    report: TlsReport,
    chain: Vec<CertificateDer<'static>>,
    verdict: Option<String>,
    stream: Option<tokio_rustls::client::TlsStream<TcpStream>>,
}

async fn modern_handshake(
    stream: TcpStream,
    opts: &Options,
    roots: &Option<rustls::RootCertStore>,
    sni: Option<&str>,
) -> Handshake {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = roots.as_ref().and_then(|r| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(r.clone()), provider.clone())
            .build()
            .ok()
    });
    let seen = Arc::new(Mutex::new(Seen::default()));
    let recorder = Verifier::new(
        Recorder {
            inner,
            seen: seen.clone(),
        },
        provider.clone(),
    );
    let mut report = TlsReport {
        sni: sni.map(str::to_string),
        ..TlsReport::default()
    };
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => {
            let mut c = b
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(recorder))
                .with_no_client_auth();
            c.enable_sni = sni.is_some();
            c
        }
        Err(e) => {
            report.error = Some("tls_setup_failed".into());
            report.error_detail = Some(e.to_string());
            return Handshake {
                report,
                chain: Vec::new(),
                verdict: None,
                stream: None,
            };
        }
    };
    // Without SNI rustls still needs a name (it is not sent): the host's.
    let name = sni
        .map(str::to_string)
        .or_else(|| opts.name.clone())
        .unwrap_or_else(|| opts.host.clone());
    let server_name = match name.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => match ServerName::try_from(name.clone()) {
            Ok(n) => n,
            Err(_) => ServerName::IpAddress(IpAddr::from([0, 0, 0, 0]).into()),
        },
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let result = tokio::time::timeout(opts.timeout, connector.connect(server_name, stream)).await;
    let stream = match result {
        Ok(Ok(tls)) => {
            let (_, conn) = tls.get_ref();
            report.ok = true;
            report.version = conn
                .protocol_version()
                .map(|v| crate::wire::clienthello::version_name(u16::from(v)));
            report.cipher_suite = conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()));
            report.group = conn
                .negotiated_key_exchange_group()
                .map(|g| crate::wire::clienthello::group_name(u16::from(g.name())));
            report.alpn = conn
                .alpn_protocol()
                .map(|a| String::from_utf8_lossy(a).into_owned());
            Some(tls)
        }
        Ok(Err(e)) => {
            report.error = Some(HandshakeFailure::from_io(&e).as_str().to_string());
            report.error_detail = Some(e.to_string());
            None
        }
        Err(_) => {
            report.error = Some("timeout".into());
            report.error_detail = Some(format!("no handshake within {} s", opts.timeout.as_secs()));
            None
        }
    };
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    Handshake {
        report,
        chain: seen.chain,
        verdict: seen.verdict,
        stream,
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn describe_cert(der: &CertificateDer<'_>, now: i64) -> CertReport {
    match cert::parse(der.as_ref()) {
        Ok(c) => CertReport {
            subject: c.subject.clone(),
            issuer: c.issuer.clone(),
            sans: c.dns_names.clone(),
            key_type: c.key.name(),
            key_bits: c.key.bits(),
            not_after: jiff::Timestamp::from_second(c.not_after)
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|_| c.not_after.to_string()),
            days_left: (c.not_after - now).div_euclid(86_400),
        },
        Err(e) => CertReport {
            subject: format!("(unparsable certificate: {e})"),
            issuer: String::new(),
            sans: Vec::new(),
            key_type: "unknown".into(),
            key_bits: None,
            not_after: String::new(),
            days_left: 0,
        },
    }
}

fn is_dns_name(name: &str) -> bool {
    name.parse::<IpAddr>().is_err() && ServerName::try_from(name.to_string()).is_ok()
}

/// Opens a connection and brings it to the point where TLS starts.
async fn to_tls(opts: &Options, d: &mut Dialogue) -> Result<(TcpStream, BytesMut), Stop> {
    let (stream, _) = connect(opts).await.map_err(|message| Stop {
        fatal: true,
        message,
    })?;
    if opts.implicit {
        Ok((stream, BytesMut::new()))
    } else {
        starttls(stream, opts, d).await
    }
}

/// Whether `target` names its port (`HOST:PORT`, `[v6]:PORT`).
pub fn names_a_port(target: &str) -> bool {
    match target.strip_prefix('[') {
        Some(rest) => rest
            .split_once(']')
            .is_some_and(|(_, p)| p.starts_with(':')),
        None => target.matches(':').count() == 1,
    }
}

/// Whether `target` names a mail domain, whose MX hosts a sender looks up:
/// a DNS name without a port (an IP address or `HOST:PORT` is one host).
pub fn is_mail_domain(target: &str) -> bool {
    !target.contains(':') && is_dns_name(target.trim_end_matches('.'))
}

/// Where mail for a domain goes, as a sender reads its MX answer (RFC 5321
/// §5.1, RFC 7505).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailHosts {
    /// The MX hosts by preference, lowest first (equal ones in DNS order).
    Mx(Vec<MxHost>),
    /// No MX records: the domain itself is the mail host (implicit MX).
    Implicit,
    /// Only `MX 0 .`: the domain accepts no mail.
    Null,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MxHost {
    pub preference: u16,
    pub host: String,
}

/// The mail hosts an MX answer gives. A `.` beside real MX hosts (against
/// RFC 7505) is skipped, as it names no host to deliver to; a host listed
/// twice keeps its lowest preference.
pub fn mail_hosts(records: &[crate::dns::Mx]) -> MailHosts {
    if records.is_empty() {
        return MailHosts::Implicit;
    }
    let mut hosts: Vec<MxHost> = records
        .iter()
        .filter(|r| !r.exchange.is_empty())
        .map(|r| MxHost {
            preference: r.preference,
            host: r.exchange.clone(),
        })
        .collect();
    if hosts.is_empty() {
        return MailHosts::Null;
    }
    hosts.sort_by_key(|h| h.preference);
    let mut seen = std::collections::HashSet::new();
    hosts.retain(|h| seen.insert(h.host.clone()));
    MailHosts::Mx(hosts)
}

/// A mail domain, probed mail host by mail host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DomainReport {
    pub domain: String,
    /// `mx`, `implicit` (no MX records: the domain itself) or `null` (RFC
    /// 7505); null when the lookup failed.
    pub mail_hosts: Option<&'static str>,
    /// The MX records by preference (empty unless `mx`).
    pub mx: Vec<MxHost>,
    /// The DNSSEC status of the MX answer (DANE needs `secure`).
    pub dnssec: Option<&'static str>,
    /// One probe per mail host, in order of preference.
    pub hosts: Vec<Report>,
    /// MX hosts past [`limits::MAX_MX_HOSTS`], not probed.
    pub not_probed: Vec<String>,
    /// The lookup failed, or the domain accepts no mail.
    pub error: Option<String>,
    /// The worst exit status of the hosts: 1 for a null MX, 2 when the
    /// lookup failed.
    pub exit: u8,
}

/// Looks up `domain`'s mail hosts through `dns` and probes each as a sender
/// reaches it: on `opts.port`, at the addresses the same resolver gives, the
/// host's name as SNI and as the name the certificate must cover.
pub async fn run_domain(
    domain: &str,
    opts: &Options,
    dns: &crate::dns::DnsSettings,
) -> DomainReport {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut d = DomainReport {
        domain: domain.clone(),
        ..DomainReport::default()
    };
    let fail = |mut d: DomainReport, message: String, exit: u8| {
        d.error = Some(message);
        d.exit = exit;
        d
    };
    let resolver = match crate::dns::Resolver::new(dns) {
        Ok(r) => r,
        Err(e) => return fail(d, e.to_string(), 2),
    };
    let answer = match resolver.mx(&domain).await {
        Ok(a) => a,
        Err(crate::dns::DnsError::NoSuchName { name }) => {
            return fail(
                d,
                format!("mail domain {name} does not exist (NXDOMAIN): mail to it bounces"),
                2,
            );
        }
        Err(e) => return fail(d, format!("MX lookup failed: {e}"), 2),
    };
    let mut hosts = match mail_hosts(&answer.records) {
        MailHosts::Null => {
            d.mail_hosts = Some("null");
            d.dnssec = Some(answer.dnssec.as_str());
            return fail(
                d,
                format!("{domain} accepts no mail (null MX, RFC 7505): senders bounce at once"),
                1,
            );
        }
        MailHosts::Implicit => {
            d.mail_hosts = Some("implicit");
            vec![domain.clone()]
        }
        MailHosts::Mx(mx) => {
            d.mail_hosts = Some("mx");
            d.dnssec = Some(answer.dnssec.as_str());
            d.mx = mx.clone();
            mx.into_iter().map(|m| m.host).collect()
        }
    };
    if hosts.len() > limits::MAX_MX_HOSTS {
        d.not_probed = hosts.split_off(limits::MAX_MX_HOSTS);
    }
    for host in hosts {
        let report = match resolver.addresses(&host).await {
            Ok(addresses) if !addresses.is_empty() => {
                let o = Options {
                    host,
                    name: None,
                    addresses,
                    ..opts.clone()
                };
                run(&o).await
            }
            found => Report {
                error: Some(match found {
                    Err(e) => format!("cannot resolve {host}: {e}"),
                    Ok(_) => format!("{host} has no address (no A or AAAA record)"),
                }),
                host,
                port: opts.port,
                mode: "starttls",
                exit: 2,
                ..Report::default()
            },
        };
        d.exit = d.exit.max(report.exit);
        d.hosts.push(report);
    }
    d
}

impl DomainReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The mail hosts found, one section per host probed, and an overall
    /// line. Every line is escaped, as in [`Report::render`].
    pub fn render(&self) -> String {
        fn line(o: &mut String, s: &str) {
            o.push_str(&crate::escape::text(s));
            o.push('\n');
        }
        let mut o = String::new();
        let dnssec = self
            .dnssec
            .map(|s| format!(" (DNSSEC {s})"))
            .unwrap_or_default();
        let head = match self.mail_hosts {
            Some("mx") => format!(
                "mail domain {}: MX {}{dnssec}",
                self.domain,
                self.mx
                    .iter()
                    .map(|m| format!("{} {}", m.preference, m.host))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some("implicit") => format!(
                "mail domain {}: no MX records, the domain itself is the mail host (implicit MX)",
                self.domain
            ),
            Some(_) => format!("mail domain {}: null MX{dnssec}", self.domain),
            None => format!("mail domain {}", self.domain),
        };
        line(&mut o, &head);
        if !self.not_probed.is_empty() {
            let more = format!(
                "  not probed (more than {} MX hosts): {}",
                limits::MAX_MX_HOSTS,
                self.not_probed.join(", ")
            );
            line(&mut o, &more);
        }
        for (i, r) in self.hosts.iter().enumerate() {
            o.push('\n');
            let title = match self.mx.get(i) {
                Some(m) => format!("=== MX {} {}", m.preference, m.host),
                None => format!("=== {} (implicit MX)", r.host),
            };
            line(&mut o, &title);
            o.push_str(&r.render());
        }
        o.push('\n');
        if let Some(e) = &self.error {
            line(&mut o, &format!("overall: {e}"));
            return o;
        }
        let each = self
            .hosts
            .iter()
            .map(|r| {
                let verdict = match r.exit {
                    0 => "OK",
                    1 => "verifying senders FAIL",
                    _ => "probe failed",
                };
                format!("{} {verdict}", r.host)
            })
            .collect::<Vec<_>>()
            .join("; ");
        let overall = format!(
            "overall: {} mail host{}: {each}; exit {} (the worst)",
            self.hosts.len(),
            if self.hosts.len() == 1 { "" } else { "s" },
            self.exit
        );
        line(&mut o, &overall);
        o
    }
}

/// Probes `opts.host`; the report carries its exit status.
pub async fn run(opts: &Options) -> Report {
    let mut r = Report {
        host: opts.host.clone(),
        port: opts.port,
        mode: if opts.implicit {
            "implicit"
        } else {
            "starttls"
        },
        ..Report::default()
    };
    let fail = |mut r: Report, message: String| {
        r.error = Some(message);
        r.exit = 2;
        r
    };
    let roots = match load_roots(opts) {
        Ok((store, sources)) => {
            r.roots = sources;
            store
        }
        Err(e) => return fail(r, e),
    };
    // SNI is the name a sender connects to: --name, else HOST if a DNS name.
    let sni_name = opts
        .name
        .clone()
        .or_else(|| is_dns_name(&opts.host).then(|| opts.host.clone()))
        .map(|n| n.to_ascii_lowercase());
    let first_sni = if opts.no_sni { None } else { sni_name.clone() };

    let (stream, addr) = match connect(opts).await {
        Ok(x) => x,
        Err(e) => return fail(r, e),
    };
    r.address = Some(addr.to_string());
    let mut d = Dialogue::default();
    let stream = if opts.implicit {
        stream
    } else {
        match starttls(stream, opts, &mut d).await {
            Ok((s, _)) => s,
            Err(stop) => {
                let starttls = if !d.starttls_offered {
                    StartTls::NotOffered
                } else {
                    StartTls::Refused(
                        d.starttls_reply
                            .clone()
                            .unwrap_or_else(|| stop.message.clone()),
                    )
                };
                fill_dialogue(&mut r, d);
                if stop.fatal {
                    return fail(r, stop.message);
                }
                r.problems.push(stop.message);
                r.senders = senders(&Facts {
                    starttls,
                    modern: None,
                    verification: None,
                    uncovered: Vec::new(),
                    legacy: None,
                });
                r.exit = 1;
                return r;
            }
        }
    };
    fill_dialogue(&mut r, std::mem::take(&mut d));

    let hs = modern_handshake(stream, opts, &roots, first_sni.as_deref()).await;
    let now = now_secs();
    r.chain = hs.chain.iter().map(|c| describe_cert(c, now)).collect();
    r.verification = hs.verdict.clone();
    r.tls = Some(hs.report.clone());
    if let Some(tls) = hs.stream {
        let mut smtp = Smtp::new(tls, BytesMut::new(), opts.timeout);
        if opts.implicit {
            if let Err(stop) = greet_and_ehlo(&mut smtp, &opts.ehlo, &mut d).await {
                fill_dialogue(&mut r, d);
                return fail(r, stop.message);
            }
            fill_dialogue(&mut r, std::mem::take(&mut d));
        }
        smtp.quit().await;
    }

    // Names: HOST when it is a DNS name, and --name.
    let leaf = hs.chain.first().and_then(|c| cert::parse(c.as_ref()).ok());
    let mut names: Vec<String> = Vec::new();
    if is_dns_name(&opts.host) {
        names.push(opts.host.to_ascii_lowercase());
    }
    if let Some(n) = &opts.name {
        let n = n.to_ascii_lowercase();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    if let Some(leaf) = &leaf {
        r.names = names
            .iter()
            .map(|n| NameCheck {
                name: n.clone(),
                matches: covers(&leaf.dns_names, n),
            })
            .collect();
    }

    if hs.report.ok {
        for n in r.names.iter().filter(|n| !n.matches) {
            r.problems.push(format!(
                "the certificate does not cover {}: senders that verify refuse it",
                n.name
            ));
        }
        match r.verification.as_deref() {
            Some("trusted") | Some("not_checked") | None => {}
            Some(why) => r.problems.push(format!(
                "the chain does not verify against the roots ({why}): senders that verify refuse it"
            )),
        }
        // The same with SNI flipped, when there is a name to send.
        if let Some(name) = &sni_name {
            let other = if first_sni.is_some() {
                None
            } else {
                Some(name.as_str())
            };
            r.other_sni = Some(other_sni(opts, &roots, other, hs.chain.first()).await);
        }
    } else {
        let why = hs.report.error.clone().unwrap_or_default();
        r.problems.push(format!(
            "the modern handshake (rustls, TLS 1.2/1.3) failed: {why}"
        ));
        let mut d2 = Dialogue::default();
        match to_tls(opts, &mut d2).await {
            Ok((stream, leftover)) => {
                let outcome = legacy::read_flight(stream, leftover, opts.timeout).await;
                let legacy = legacy::assess(outcome);
                for reason in &legacy.reasons {
                    r.problems.push(explain(*reason, &legacy));
                }
                r.legacy = Some(legacy);
            }
            Err(stop) => r.problems.push(format!(
                "second connection for the TLS 1.2 probe: {}",
                stop.message
            )),
        }
    }
    r.senders = senders(&Facts {
        starttls: if opts.implicit {
            StartTls::Implicit
        } else {
            StartTls::Accepted
        },
        modern: hs
            .report
            .ok
            .then(|| hs.report.version.clone().unwrap_or_default()),
        verification: r.verification.clone(),
        uncovered: r
            .names
            .iter()
            .filter(|n| !n.matches)
            .map(|n| n.name.clone())
            .collect(),
        legacy: r.legacy.clone(),
    });
    if let Some(published) = &opts.published {
        let names = if names.is_empty() {
            vec![opts.host.clone()]
        } else {
            names
        };
        r.published = check::remote(published, &names, &hs.chain).await;
        for f in r
            .published
            .iter()
            .filter(|f| f.level == check::Level::Error)
        {
            r.problems.push(format!("{}: {}", f.subject, f.message));
        }
    }
    r.ok = r.problems.is_empty();
    r.exit = if r.ok { 0 } else { 1 };
    r
}

fn fill_dialogue(r: &mut Report, d: Dialogue) {
    if d.greeting.is_some() {
        r.greeting = d.greeting;
    }
    if !d.ehlo.is_empty() {
        r.ehlo = d.ehlo;
    }
    r.starttls_offered |= d.starttls_offered;
    if d.starttls_reply.is_some() {
        r.starttls_reply = d.starttls_reply;
    }
}

/// A legacy-probe reason in the words senders log.
fn explain(reason: Refusal, l: &Assessment) -> String {
    match reason {
        Refusal::WeakRsa => format!(
            "certificate key RSA {} bits: OpenSSL \"ee key too small\", GnuTLS \"EE certificate key too weak\" (2048 bits needed)",
            l.key_bits.unwrap_or(0)
        ),
        Refusal::WeakDh => format!(
            "{} with a {}-bit DH group: OpenSSL \"dh key too small\" (2048 bits needed; modern senders prefer ECDHE, which the server does not offer)",
            l.cipher_suite.clone().unwrap_or_default(),
            l.dh_bits.unwrap_or(0)
        ),
        Refusal::OldProtocol => format!(
            "answers with {} only: \"unsupported protocol\" / \"protocol version\" (TLS 1.2 needed)",
            l.version.clone().unwrap_or_default()
        ),
    }
}

async fn other_sni(
    opts: &Options,
    roots: &Option<rustls::RootCertStore>,
    sni: Option<&str>,
    first_leaf: Option<&CertificateDer<'static>>,
) -> SniReport {
    let mut s = SniReport {
        sni: sni.map(str::to_string),
        ..SniReport::default()
    };
    let mut d = Dialogue::default();
    let stream = match to_tls(opts, &mut d).await {
        Ok((stream, _)) => stream,
        Err(stop) => {
            s.error = Some(stop.message);
            return s;
        }
    };
    let hs = modern_handshake(stream, opts, roots, sni).await;
    s.ok = hs.report.ok;
    s.error = hs.report.error.clone();
    if let Some(leaf) = hs.chain.first() {
        s.same_certificate = first_leaf.map(|f| f == leaf);
        s.leaf_subject = cert::parse(leaf.as_ref()).ok().map(|c| c.subject);
    }
    if let Some(tls) = hs.stream {
        Smtp::new(tls, BytesMut::new(), opts.timeout).quit().await;
    }
    s
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Readable sections, in the order of the dialogue. The server's text
    /// (greeting, EHLO, certificate names, error texts) is its own: every line
    /// is escaped, so none of it can add a line or drive the terminal.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let mut line = |s: String| {
            o.push_str(&crate::escape::text(&s));
            o.push('\n');
        };
        line(format!(
            "probe {}:{} ({})",
            self.host,
            self.port,
            if self.mode == "implicit" {
                "implicit TLS"
            } else {
                "STARTTLS"
            }
        ));
        if let Some(a) = &self.address {
            line(format!("  connected  {a}"));
        }
        if let Some(g) = &self.greeting {
            line(format!("  greeting   {g}"));
        }
        if !self.ehlo.is_empty() {
            line(format!("  EHLO       {}", self.ehlo.join(", ")));
        }
        if let Some(s) = &self.starttls_reply {
            line(format!("  STARTTLS   {s}"));
        }
        if let Some(t) = &self.tls {
            line(String::new());
            line(format!(
                "TLS ({}, rustls TLS 1.2/1.3)",
                match &t.sni {
                    Some(n) => format!("SNI {n}"),
                    None => "no SNI".into(),
                }
            ));
            if t.ok {
                let v = |x: &Option<String>| x.clone().unwrap_or_else(|| "-".into());
                line(format!("  protocol   {}", v(&t.version)));
                line(format!("  suite      {}", v(&t.cipher_suite)));
                line(format!("  group      {}", v(&t.group)));
                line(format!(
                    "  ALPN       {}",
                    t.alpn.clone().unwrap_or_else(|| "none".into())
                ));
            } else {
                line(format!(
                    "  handshake FAILED: {} ({})",
                    t.error.clone().unwrap_or_default(),
                    t.error_detail.clone().unwrap_or_default()
                ));
            }
        }
        if !self.chain.is_empty() {
            line(String::new());
            line(format!(
                "chain ({} certificate{} as sent, leaf first)",
                self.chain.len(),
                if self.chain.len() == 1 { "" } else { "s" }
            ));
            for (i, c) in self.chain.iter().enumerate() {
                line(format!("  [{i}] subject  {}", c.subject));
                if !c.sans.is_empty() || i == 0 {
                    line(format!(
                        "      SANs     {}",
                        if c.sans.is_empty() {
                            "none".into()
                        } else {
                            c.sans.join(", ")
                        }
                    ));
                }
                line(format!("      issuer   {}", c.issuer));
                line(format!(
                    "      key      {}{}",
                    c.key_type,
                    c.key_bits
                        .map(|b| format!(" ({b} bits)"))
                        .unwrap_or_default()
                ));
                line(format!(
                    "      expires  {} ({} days left)",
                    c.not_after, c.days_left
                ));
            }
            if let Some(v) = &self.verification {
                let roots = if self.roots.is_empty() {
                    "no roots available".to_string()
                } else {
                    format!("roots: {}", self.roots.join(" + "))
                };
                line(format!("  verification  {v} ({roots})"));
            }
        }
        if !self.names.is_empty() {
            line(String::new());
            line("names".into());
            for n in &self.names {
                line(format!(
                    "  {:<30} {}",
                    n.name,
                    if n.matches {
                        "matches"
                    } else {
                        "does NOT match"
                    }
                ));
            }
        }
        if let Some(s) = &self.other_sni {
            let what = match &s.sni {
                Some(n) => format!("with SNI {n}"),
                None => "without SNI".into(),
            };
            let result = match (s.ok, s.same_certificate) {
                (_, Some(true)) => "same certificate".to_string(),
                (_, Some(false)) => format!(
                    "a DIFFERENT certificate: {}",
                    s.leaf_subject.clone().unwrap_or_default()
                ),
                (_, None) => format!("handshake failed: {}", s.error.clone().unwrap_or_default()),
            };
            line(String::new());
            line("SNI (second connection)".into());
            line(format!("  {what}: {result}"));
        }
        if let Some(l) = &self.legacy {
            line(String::new());
            line("what the server offers (raw TLS 1.2 probe, never completed)".into());
            if let Some(f) = &l.failure {
                line(format!("  no usable answer: {f}"));
            }
            let v = |x: &Option<String>| x.clone().unwrap_or_else(|| "-".into());
            if l.version.is_some() {
                line(format!("  protocol   {}", v(&l.version)));
                line(format!("  suite      {}", v(&l.cipher_suite)));
                let kx = match (&l.key_exchange, &l.group, l.dh_bits) {
                    (Some(k), _, Some(b)) => format!("{k}, {b}-bit DH group"),
                    (Some(k), Some(g), _) => format!("{k}, {g}"),
                    (Some(k), _, _) => k.clone(),
                    _ => "-".into(),
                };
                line(format!("  kx         {kx}"));
                line(format!(
                    "  leaf       {} ({})",
                    v(&l.cert_subject),
                    v(&l.key_type)
                ));
            }
        }
        if !self.published.is_empty() {
            line(String::new());
            line("published in DNS (--dane, --mta-sts)".into());
            for f in &self.published {
                line(check::render_finding(f));
            }
        }
        line(String::new());
        if let Some(e) = &self.error {
            line(format!("probe failed: {e}"));
            return o;
        }
        let s = &self.senders;
        line("senders (what each kind of sending MTA does here)".into());
        for (kind, who, v) in [
            (
                "opportunistic",
                "TLS if offered, no certificate check: Postfix, Exim, Sendmail by default",
                &s.opportunistic,
            ),
            (
                "verifying",
                "a valid chain for the MX name: MTA-STS enforce, DANE, Postfix \"secure\"",
                &s.verifying,
            ),
            ("fallback", "retries in clear when TLS fails", &s.fallback),
        ] {
            line(format!("  {kind:<14} {}: {}", v.delivery.word(), v.detail));
            line(format!("  {:<14} ({who})", ""));
        }
        line(String::new());
        if self.ok && self.verification.as_deref() == Some("not_checked") {
            line(
                "verdict: OK: every kind of sender delivers over TLS (chain not checked: no roots)"
                    .into(),
            );
        } else if self.ok {
            line(
                "verdict: OK: every kind of sender delivers over TLS, verified where verifying"
                    .into(),
            );
        } else {
            line(format!(
                "verdict: opportunistic senders {}; verifying senders FAIL here:",
                match s.opportunistic.delivery {
                    Delivery::VerifiedTls | Delivery::Tls => "deliver over TLS",
                    Delivery::Plaintext => "deliver in CLEAR",
                    Delivery::Fails => "FAIL too",
                }
            ));
            for p in &self.problems {
                line(format!("  - {p}"));
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("mx.example.com", false),
            Ok(("mx.example.com".into(), 25))
        );
        assert_eq!(
            parse_target("mx.example.com", true),
            Ok(("mx.example.com".into(), 465))
        );
        assert_eq!(
            parse_target("mx.example.com.:587", false),
            Ok(("mx.example.com".into(), 587))
        );
        assert_eq!(parse_target("[::1]:2525", false), Ok(("::1".into(), 2525)));
        assert_eq!(parse_target("[::1]", true), Ok(("::1".into(), 465)));
        assert_eq!(parse_target("::1", false), Ok(("::1".into(), 25)));
        assert!(parse_target("host:0", false).is_err());
        assert!(parse_target("host:x", false).is_err());
        assert!(parse_target(":25", false).is_err());
        assert!(parse_target("[::1", false).is_err());
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("mx.example.com"));
        assert!(!is_dns_name("127.0.0.1"));
        assert!(!is_dns_name("::1"));
    }

    fn facts(starttls: StartTls) -> Facts {
        Facts {
            starttls,
            modern: None,
            verification: None,
            uncovered: Vec::new(),
            legacy: None,
        }
    }

    fn deliveries(s: &Senders) -> [Delivery; 3] {
        [
            s.opportunistic.delivery,
            s.verifying.delivery,
            s.fallback.delivery,
        ]
    }

    /// Each kind of sender, case by case, as posttls-finger `-l may` and
    /// `-l secure` see the same servers.
    #[test]
    fn verdicts_per_kind_of_sender() {
        use Delivery::*;
        // tlsfront with a publicly trusted certificate.
        let mut f = facts(StartTls::Accepted);
        f.modern = Some("TLSv1.3".into());
        f.verification = Some("trusted".into());
        assert_eq!(deliveries(&senders(&f)), [Tls, VerifiedTls, Tls]);
        // Its self-signed certificate: only verifying senders refuse it.
        f.verification = Some("unknown_issuer".into());
        let s = senders(&f);
        assert_eq!(deliveries(&s), [Tls, Fails, Tls]);
        assert!(s.verifying.detail.contains("unknown_issuer"));
        // A name not covered.
        f.verification = Some("trusted".into());
        f.uncovered = vec!["mx.example.com".into()];
        assert_eq!(deliveries(&senders(&f)), [Tls, Fails, Tls]);
        // A legacy box: RSA-1024 (rustls refuses, lenient stacks do not).
        let mut f = facts(StartTls::Accepted);
        f.legacy = Some(Assessment {
            version: Some("TLSv1.2".into()),
            reasons: vec![Refusal::WeakRsa],
            ..Assessment::default()
        });
        let s = senders(&f);
        assert_eq!(deliveries(&s), [Tls, Fails, Tls]);
        assert!(!s.opportunistic.detail.contains("dh key too small"));
        // DHE-1024 only: Postfix delivers, OpenSSL-default senders do not.
        f.legacy.as_mut().unwrap().reasons = vec![Refusal::WeakDh];
        let s = senders(&f);
        assert_eq!(deliveries(&s), [Tls, Fails, Tls]);
        assert!(s.opportunistic.detail.contains("dh key too small"));
        // No answer to a ClientHello at all.
        f.legacy.as_mut().unwrap().failure = Some("handshake_failure alert".into());
        assert_eq!(deliveries(&senders(&f)), [Fails, Fails, Plaintext]);
        // No STARTTLS: opportunistic senders deliver in clear.
        let s = senders(&facts(StartTls::NotOffered));
        assert_eq!(deliveries(&s), [Plaintext, Fails, Plaintext]);
        assert!(s.opportunistic.detail.contains("not offered"));
        let s = senders(&facts(StartTls::Refused(
            "454 4.7.0 TLS not available".into(),
        )));
        assert_eq!(deliveries(&s), [Plaintext, Fails, Plaintext]);
        // Implicit TLS that does not work has no clear-text fallback.
        assert_eq!(
            deliveries(&senders(&facts(StartTls::Implicit))),
            [Fails, Fails, Fails]
        );
        // No roots to check against.
        let mut f = facts(StartTls::Accepted);
        f.modern = Some("TLSv1.3".into());
        f.verification = Some("not_checked".into());
        assert_eq!(deliveries(&senders(&f)), [Tls, Tls, Tls]);
    }

    #[test]
    fn legacy_reasons_in_senders_words() {
        let l = Assessment {
            key_bits: Some(1024),
            dh_bits: Some(1024),
            cipher_suite: Some("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256".into()),
            version: Some("TLSv1.0".into()),
            ..Assessment::default()
        };
        assert!(explain(Refusal::WeakRsa, &l).contains("RSA 1024 bits"));
        assert!(explain(Refusal::WeakRsa, &l).contains("EE certificate key too weak"));
        assert!(explain(Refusal::WeakDh, &l).contains("1024-bit DH group"));
        assert!(explain(Refusal::OldProtocol, &l).contains("unsupported protocol"));
    }

    #[test]
    fn a_mail_domain_is_a_dns_name_without_port() {
        assert!(is_mail_domain("example.com"));
        assert!(is_mail_domain("example.com."));
        for host in [
            "example.com:25",
            "127.0.0.1",
            "::1",
            "[::1]",
            "[::1]:25",
            "bad name",
        ] {
            assert!(!is_mail_domain(host), "{host}");
        }
        for (target, port) in [
            ("example.com", false),
            ("example.com:25", true),
            ("::1", false),
            ("[::1]", false),
            ("[::1]:25", true),
        ] {
            assert_eq!(names_a_port(target), port, "{target}");
        }
    }

    #[test]
    fn mail_hosts_by_preference_implicit_and_null() {
        let mx = |preference, exchange: &str| crate::dns::Mx {
            preference,
            exchange: exchange.into(),
        };
        let host = |preference, host: &str| MxHost {
            preference,
            host: host.into(),
        };
        assert_eq!(mail_hosts(&[]), MailHosts::Implicit);
        assert_eq!(mail_hosts(&[mx(0, "")]), MailHosts::Null);
        // Lowest preference first; equal ones keep the DNS order; a host
        // listed twice keeps its lowest preference; a stray "." is skipped.
        assert_eq!(
            mail_hosts(&[
                mx(20, "b.test"),
                mx(10, "c.test"),
                mx(20, "a.test"),
                mx(30, "c.test"),
                mx(0, ""),
            ]),
            MailHosts::Mx(vec![
                host(10, "c.test"),
                host(20, "b.test"),
                host(20, "a.test")
            ])
        );
    }
}

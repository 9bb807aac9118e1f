//! Test kit for in-process end-to-end tests: a test PKI, a scripted backend
//! MTA, tlsfront itself on ephemeral ports, and an SMTP client that reads like
//! the protocol (`c.send("EHLO x").await; c.expect(250).await`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use tlsfront::config::{self, Overrides};
use tlsfront::proxy::records;
use tlsfront::proxy::server::Server;

pub mod bin;
pub mod openssl;
pub mod schema;

pub const T: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ PKI

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_der: CertificateDer<'static>,
    /// The CA certificate as a PEM file (for `backend.tls_ca_file`).
    pub ca_pem: PathBuf,
    pub ecdsa: (PathBuf, PathBuf),
    pub rsa: (PathBuf, PathBuf),
}

impl Pki {
    pub fn new(names: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("tlsfront test CA {}", unique()),
        );
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let leaf = |alg: &'static rcgen::SignatureAlgorithm, tag: &str| {
            let key = KeyPair::generate_for(alg).unwrap();
            let mut params = CertificateParams::new(names.clone()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, format!("{} {tag}", names[0]));
            let cert = params.signed_by(&key, &ca).unwrap();
            let cert_path = dir.path().join(format!("{tag}.pem"));
            let key_path = dir.path().join(format!("{tag}.key"));
            std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca.pem())).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            (cert_path, key_path)
        };
        let ecdsa = leaf(&rcgen::PKCS_ECDSA_P256_SHA256, "ecdsa");
        let rsa = leaf(&rcgen::PKCS_RSA_SHA256, "rsa");
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        Pki {
            ca_der: ca.der().clone(),
            ca_pem,
            dir,
            ecdsa,
            rsa,
        }
    }

    /// A server configuration with the ECDSA leaf (for a TLS-speaking backend).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let chain: Vec<CertificateDer<'static>> =
            rustls::pki_types::pem::PemObject::pem_file_iter(&self.ecdsa.0)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key =
            <rustls::pki_types::PrivateKeyDer as rustls::pki_types::pem::PemObject>::from_pem_file(
                &self.ecdsa.1,
            )
            .unwrap();
        Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        )
    }

    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_protocol_versions(versions)
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    t ^ (N.fetch_add(1, Ordering::Relaxed) << 48)
}

// --------------------------------------------------------- scripted backend

#[derive(Debug, Clone)]
pub struct MtaScript {
    pub greeting: String,
    pub ehlo: Vec<String>,
    /// RCPT addresses containing this get 550.
    pub reject_rcpt: Option<String>,
    /// Close the connection after this many bytes of message content.
    pub close_in_data_after: Option<usize>,
    pub data_end_reply: String,
    /// If set, EHLO and HELO both get this reply line.
    pub refuse_helo: Option<String>,
    /// If set, MAIL gets these raw bytes as its reply (malformed replies).
    pub mail_reply_raw: Option<String>,
    /// Serve STARTTLS with this configuration (the log gets a "<TLS>" line).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS from the first byte (implicit, 465-style) with `tls`.
    pub implicit_tls: bool,
    /// Think this long before each reply to MAIL and RCPT (a slow backend).
    pub envelope_delay: Option<Duration>,
    /// The first command with this verb is answered twice, the second time
    /// 100 ms later (a broken or hostile backend whose extra reply would pair
    /// with the next command).
    pub double_reply_once: Option<String>,
    /// Sent as soon as the first chunk of message content arrives, before the
    /// end of data (whose reply is still `data_end_reply`).
    pub early_data_reply: Option<String>,
    /// Before answering the end of data, wait (at most 1 s) for the next
    /// command line; `MtaLog::next_with_end` counts those that came: a
    /// client that pipelines after the content sent it in the same go.
    pub hold_end_reply_for_next_line: bool,
    /// RCPT to this domain is relaying: 554 unless the connection has
    /// authenticated (AUTH PLAIN, any credentials; AUTH LOGIN, two lines).
    /// Like Postfix, the SASL state survives EHLO.
    pub relay_domain: Option<String>,
    /// EHLO (only) gets this reply line; HELO still gets 250.
    pub refuse_ehlo: Option<String>,
    /// XCLIENT gets this reply line instead of a new 220 greeting.
    pub xclient_reply: Option<String>,
    /// Clients this backend relays for (its `mynetworks`): from them, RCPT
    /// to a domain under example.net (nobody's: the relay guard's test) gets
    /// 250; from others `554 5.7.1 Relay access denied`, as Postfix says.
    pub trusted_clients: Vec<std::net::IpAddr>,
}

impl Default for MtaScript {
    fn default() -> Self {
        MtaScript {
            greeting: "220 legacy.test ESMTP Sendmail 8.12.11".into(),
            ehlo: [
                "legacy.test Hello",
                "ENHANCEDSTATUSCODES",
                "PIPELINING",
                "8BITMIME",
                "SIZE 10000000",
                "DSN",
                "AUTH PLAIN LOGIN",
                "STARTTLS",
                "CHUNKING",
                "XCLIENT ADDR NAME",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            reject_rcpt: None,
            close_in_data_after: None,
            data_end_reply: "250 2.0.0 Message accepted for delivery".into(),
            refuse_helo: None,
            mail_reply_raw: None,
            tls: None,
            implicit_tls: false,
            envelope_delay: None,
            double_reply_once: None,
            early_data_reply: None,
            hold_end_reply_for_next_line: false,
            relay_domain: None,
            refuse_ehlo: None,
            xclient_reply: None,
            trusted_clients: Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
pub struct MtaLog {
    pub connections: usize,
    /// Source address of every connection.
    pub peers: Vec<SocketAddr>,
    /// Every command line received, in order, across connections.
    pub commands: Vec<String>,
    /// Message contents as received, up to and including the end-of-data line.
    pub messages: Vec<Vec<u8>>,
    /// Content of messages cut off before their end.
    pub partial: Vec<Vec<u8>>,
    /// Replies sent before the end of data (`early_data_reply`).
    pub early_replies: usize,
    /// The second reply of `double_reply_once` was sent.
    pub doubled: bool,
    /// Ends of data the next command line had followed before their reply
    /// (`hold_end_reply_for_next_line`).
    pub next_with_end: usize,
    /// Commands that must end a pipelined group (RFC 2920 section 3.1:
    /// EHLO, HELO, DATA, VRFY, EXPN, NOOP, QUIT; STARTTLS by RFC 3207) that
    /// had input after them already: what Postfix logs as "improper command
    /// pipelining" and, hardened, refuses.
    pub improper_pipelining: Vec<String>,
}

pub struct Mta {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<MtaLog>>,
    task: JoinHandle<()>,
}

impl Drop for Mta {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mta {
    pub async fn start(script: MtaScript) -> Mta {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(MtaLog::default()));
        let l2 = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                // Replies leave at once (no Nagle), so tests that wait for a
                // reply to be sent see it arrive.
                let _ = stream.set_nodelay(true);
                l2.lock().unwrap().connections += 1;
                l2.lock().unwrap().peers.push(peer);
                tokio::spawn(mta_session(stream, peer, script.clone(), l2.clone()));
            }
        });
        Mta { addr, log, task }
    }

    /// Waits (bounded) until at least `n` connections were made (e.g. the
    /// start-up probe), then returns the count.
    pub async fn wait_connections(&self, n: usize) -> usize {
        for _ in 0..200 {
            if self.connections() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let a probe that just connected finish its session.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.connections()
    }

    pub fn connections(&self) -> usize {
        self.log.lock().unwrap().connections
    }
    pub fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().commands.clone()
    }
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.log.lock().unwrap().messages.clone()
    }
}

async fn mta_session(tcp: TcpStream, peer: SocketAddr, script: MtaScript, log: Arc<Mutex<MtaLog>>) {
    let mut s: Box<dyn Io> = Box::new(tcp);
    if let (true, Some(cfg)) = (script.implicit_tls, &script.tls) {
        let Ok(tls) = tokio_rustls::TlsAcceptor::from(cfg.clone()).accept(s).await else {
            return;
        };
        log.lock().unwrap().commands.push("<TLS>".into());
        s = Box::new(tls);
    }
    let mut buf = BytesMut::new();
    let _ = s
        .write_all(format!("{}\r\n", script.greeting).as_bytes())
        .await;
    if !script.greeting.starts_with("220") {
        return;
    }
    let mut authenticated = false;
    let mut doubled = false;
    loop {
        let Some(line) = read_line(&mut s, &mut buf).await else {
            return;
        };
        log.lock().unwrap().commands.push(line.clone());
        if line.starts_with("PROXY ") {
            continue; // a PROXY v1 header from tlsfront: no reply
        }
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        const LAST: &[&str] = &[
            "EHLO", "HELO", "DATA", "VRFY", "EXPN", "NOOP", "QUIT", "STARTTLS",
        ];
        if LAST.contains(&verb.as_str()) && !buf.is_empty() {
            log.lock().unwrap().improper_pipelining.push(line.clone());
        }
        if let (Some(delay), "MAIL" | "RCPT") = (script.envelope_delay, verb.as_str()) {
            tokio::time::sleep(delay).await;
        }
        let reply = match verb.as_str() {
            "EHLO" if script.refuse_ehlo.is_some() => {
                format!("{}\r\n", script.refuse_ehlo.as_ref().unwrap())
            }
            "EHLO" | "HELO" if script.refuse_helo.is_some() => {
                format!("{}\r\n", script.refuse_helo.as_ref().unwrap())
            }
            "MAIL" if script.mail_reply_raw.is_some() => script.mail_reply_raw.clone().unwrap(),
            "EHLO" => {
                let n = script.ehlo.len();
                script
                    .ehlo
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}\r\n", if i + 1 == n { ' ' } else { '-' }))
                    .collect()
            }
            "HELO" => "250 legacy.test\r\n".to_string(),
            "MAIL" | "RSET" | "NOOP" => "250 2.1.0 Ok\r\n".to_string(),
            "RCPT"
                if line.ends_with(".example.net>")
                    && !script.trusted_clients.contains(&peer.ip()) =>
            {
                "554 5.7.1 Relay access denied\r\n".to_string()
            }
            "RCPT" => match (&script.reject_rcpt, &script.relay_domain) {
                (Some(bad), _) if line.contains(bad.as_str()) => {
                    "550 5.1.1 User unknown\r\n".to_string()
                }
                (_, Some(domain)) if line.contains(domain.as_str()) && !authenticated => {
                    "554 5.7.1 Relay access denied\r\n".to_string()
                }
                _ => "250 2.1.5 Ok\r\n".to_string(),
            },
            "AUTH"
                if line
                    .get(5..)
                    .unwrap_or("")
                    .to_ascii_uppercase()
                    .starts_with("PLAIN ") =>
            {
                authenticated = true;
                "235 2.7.0 Authentication successful\r\n".to_string()
            }
            "AUTH" if line.get(5..).unwrap_or("").eq_ignore_ascii_case("LOGIN") => {
                let mut answer = String::new();
                for prompt in ["334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n"] {
                    let _ = s.write_all(prompt.as_bytes()).await;
                    let Some(l) = read_line(&mut s, &mut buf).await else {
                        return;
                    };
                    log.lock().unwrap().commands.push(l.clone());
                    if l == "*" {
                        answer = "501 5.7.0 Authentication aborted\r\n".into();
                        break;
                    }
                }
                if answer.is_empty() {
                    authenticated = true;
                    answer = "235 2.7.0 Authentication successful\r\n".into();
                }
                answer
            }
            "VRFY" => "252 2.5.2 Cannot VRFY user\r\n".to_string(),
            "XCLIENT" => match &script.xclient_reply {
                Some(r) => format!("{r}\r\n"),
                None => "220 legacy.test ESMTP\r\n".to_string(),
            },
            "STARTTLS" if script.tls.is_some() => {
                let _ = s.write_all(b"220 2.0.0 Ready to start TLS\r\n").await;
                let acceptor = tokio_rustls::TlsAcceptor::from(script.tls.clone().unwrap());
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                log.lock().unwrap().commands.push("<TLS>".into());
                s = Box::new(tls);
                continue;
            }
            "QUIT" => {
                let _ = s.write_all(b"221 2.0.0 Bye\r\n").await;
                return;
            }
            "DATA" => {
                let _ = s
                    .write_all(b"354 Enter mail, end with \".\" on a line by itself\r\n")
                    .await;
                let mut content = std::mem::take(&mut buf).to_vec();
                let mut early = script.early_data_reply.clone();
                loop {
                    if let (Some(r), false) = (&early, content.is_empty()) {
                        let _ = s.write_all(format!("{r}\r\n").as_bytes()).await;
                        log.lock().unwrap().early_replies += 1;
                        early = None;
                    }
                    if let Some(limit) = script.close_in_data_after
                        && content.len() >= limit
                    {
                        log.lock().unwrap().partial.push(content);
                        return;
                    }
                    if let Some(pos) = find_end(&content) {
                        buf = BytesMut::from(&content[pos..]);
                        content.truncate(pos);
                        break;
                    }
                    let mut chunk = [0u8; 8192];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            log.lock().unwrap().partial.push(content);
                            return;
                        }
                        Ok(n) => content.extend_from_slice(&chunk[..n]),
                    }
                }
                log.lock().unwrap().messages.push(content);
                if script.hold_end_reply_for_next_line {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                    while !buf.contains(&b'\n') {
                        let mut chunk = [0u8; 4096];
                        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            Ok(_) => return,
                            Err(_) => break,
                        }
                    }
                    if buf.contains(&b'\n') {
                        log.lock().unwrap().next_with_end += 1;
                    }
                }
                format!("{}\r\n", script.data_end_reply)
            }
            _ => "502 5.5.1 Command not implemented\r\n".to_string(),
        };
        if s.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
        if !doubled && script.double_reply_once.as_deref() == Some(verb.as_str()) {
            doubled = true;
            // Late, as a backend's Nagle would send it: after tlsfront has
            // read the first one.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            log.lock().unwrap().doubled = true;
        }
    }
}

/// End of the `<CRLF>.<CRLF>` terminator (content starts after DATA's CRLF).
fn find_end(content: &[u8]) -> Option<usize> {
    if content.starts_with(b".\r\n") {
        return Some(3);
    }
    content
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .map(|p| p + 5)
}

async fn read_line(s: &mut Box<dyn Io>, buf: &mut BytesMut) -> Option<String> {
    loop {
        if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(pos + 1);
            return Some(
                String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            );
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

// ------------------------------------------------------------------ proxy

pub struct Proxy {
    pub starttls: SocketAddr,
    pub implicit: SocketAddr,
    pub records: PathBuf,
    /// The metrics endpoint, when the config has `[metrics] listen`.
    pub metrics: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts tlsfront in-process with `extra` TOML appended to a base config.
    pub async fn start(backend: SocketAddr, pki: Option<&Pki>, extra: &str) -> Proxy {
        Proxy::launch(backend, pki, extra, true).await
    }

    /// Like `start`; `implicit: false` leaves out the implicit-TLS listener.
    pub async fn launch(
        backend: SocketAddr,
        pki: Option<&Pki>,
        extra: &str,
        implicit: bool,
    ) -> Proxy {
        Proxy::configured(backend, pki, "", "", extra, implicit).await
    }

    /// The general form: `server` keys go into [server], `listener` keys into
    /// the STARTTLS [[listener]], `extra` after [backend].
    pub async fn configured(
        backend: SocketAddr,
        pki: Option<&Pki>,
        server: &str,
        listener: &str,
        extra: &str,
        implicit: bool,
    ) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("records.jsonl");
        let mut text = format!(
            "[server]\nhostname = \"mx.tlsfront.test\"\nshutdown_grace = \"1s\"\n{server}\n\
             [records]\npath = \"{}\"\n\
             [[listener]]\n{}{listener}\n\
             {}\
             [backend]\naddress = \"{backend}\"\nconnect_timeout = \"2s\"\nreply_timeout = \"3s\"\ngreeting_timeout = \"3s\"\n",
            records.display(),
            // `listener` may bring its own address (a `[::]` listener, say).
            if listener.contains("address") {
                ""
            } else {
                "address = [\"127.0.0.1:0\"]\n"
            },
            if implicit {
                "[[listener]]\nmode = \"implicit\"\naddress = [\"127.0.0.1:0\"]\n"
            } else {
                ""
            },
        );
        // `extra` starts inside [backend], so bare keys there are backend settings.
        text.push_str(extra);
        if let Some(pki) = pki
            && !extra.contains("[[tls.certificate]]")
        {
            text.push_str(&format!(
                "[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
                pki.ecdsa.0.display(),
                pki.ecdsa.1.display()
            ));
        }
        let raw = config::parse(&text, "test.toml").unwrap();
        let settings = config::validate(raw, &Overrides::default(), "test.toml").unwrap();
        let (sink, _writer) = records::start_writer(&settings.records.clone().unwrap()).unwrap();
        let server = Server::bind(settings, sink).await.unwrap();
        let addrs = server.local_addrs();
        let metrics = server.metrics_addr();
        let shutdown = server.shared.shutdown.clone();
        let task = tokio::spawn(server.run());
        Proxy {
            starttls: addrs[0].0,
            implicit: addrs.get(1).map(|a| a.0).unwrap_or(addrs[0].0),
            records,
            metrics,
            shutdown,
            _dir: dir,
            task,
        }
    }

    /// Waits (bounded) until `n` records exist and returns them all, each
    /// checked against docs/record.schema.json.
    pub async fn records(&self, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..200 {
            let text = std::fs::read_to_string(&self.records).unwrap_or_default();
            // Only whole lines: the writer may be half-way through one.
            let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            let lines: Vec<serde_json::Value> = whole
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() >= n {
                lines.iter().for_each(schema::assert_record);
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "fewer than {n} records after 5 s: {:?}",
            std::fs::read_to_string(&self.records)
        );
    }

    /// One HTTP GET to this proxy's metrics endpoint: (status code, body).
    pub async fn scrape(&self, path: &str) -> (u16, String) {
        scrape(
            self.metrics
                .expect("no [metrics] listen in this proxy's config"),
            path,
        )
        .await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(T, self.task).await.unwrap().unwrap();
    }
}

// ------------------------------------------------------------------ client

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<X: AsyncRead + AsyncWrite + Unpin + Send> Io for X {}

pub struct Client {
    io: Box<dyn Io>,
    buf: BytesMut,
    pub local: SocketAddr,
    /// Subject of the certificate the server presented (after TLS).
    pub peer_subject: Option<String>,
}

#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let s = tokio::time::timeout(T, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        s.set_nodelay(true).unwrap();
        let local = s.local_addr().unwrap();
        Client {
            io: Box::new(s),
            buf: BytesMut::new(),
            local,
            peer_subject: None,
        }
    }

    /// A client on a connection made elsewhere.
    pub fn from_stream(s: TcpStream) -> Client {
        let local = s.local_addr().unwrap();
        Client {
            io: Box::new(s),
            buf: BytesMut::new(),
            local,
            peer_subject: None,
        }
    }

    /// Connects and reads the greeting.
    pub async fn greeted(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr).await;
        c.expect(220).await;
        c
    }

    pub async fn implicit(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, name: &str) -> Client {
        let c = Client::connect(addr).await;
        let mut c = c.tls(cfg, name).await.unwrap();
        c.expect(220).await;
        c
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        tokio::time::timeout(T, self.io.write_all(bytes))
            .await
            .unwrap()
            .unwrap();
        self.io.flush().await.unwrap();
    }

    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
    }

    /// Reads one whole reply; `None` if the connection closed first.
    pub async fn try_reply(&mut self) -> Option<Reply> {
        let mut text = String::new();
        loop {
            while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(pos + 1);
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                text.push_str(&line);
                text.push('\n');
                if line.len() < 4 || line.as_bytes()[3] == b' ' {
                    return Some(Reply {
                        code: line[..3].parse().unwrap(),
                        text,
                    });
                }
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(T, self.io.read(&mut chunk))
                .await
                .expect("reply timed out")
            {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub async fn reply(&mut self) -> Reply {
        self.try_reply()
            .await
            .expect("connection closed while waiting for a reply")
    }

    /// Reads a reply and asserts its code; returns its text.
    pub async fn expect(&mut self, code: u16) -> String {
        let r = self.reply().await;
        assert_eq!(r.code, code, "expected {code}, got: {}", r.text);
        r.text
    }

    /// True once the server has closed the connection (bounded wait).
    pub async fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        // Skip whatever arrives first (a TLS alert, say), bounded.
        for _ in 0..16 {
            match tokio::time::timeout(T, self.io.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
        false
    }

    pub async fn tls(
        self,
        cfg: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> Result<Client, std::io::Error> {
        assert!(self.buf.is_empty(), "bytes left before TLS");
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let name = ServerName::try_from(name.to_string()).unwrap();
        let tls = tokio::time::timeout(T, connector.connect(name, self.io))
            .await
            .unwrap()?;
        let peer_subject = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok())
            .map(|(_, cert)| cert.subject().to_string());
        Ok(Client {
            io: Box::new(tls),
            buf: BytesMut::new(),
            local: self.local,
            peer_subject,
        })
    }

    /// EHLO, STARTTLS, handshake, EHLO again.
    pub async fn starttls(mut self, cfg: Arc<rustls::ClientConfig>, name: &str) -> Client {
        self.send("EHLO client.test").await;
        let ehlo = self.expect(250).await;
        assert!(ehlo.contains("STARTTLS"), "{ehlo}");
        self.send("STARTTLS").await;
        self.expect(220).await;
        let mut c = self.tls(cfg, name).await.unwrap();
        c.send("EHLO client.test").await;
        c.expect(250).await;
        c
    }

    /// One message through MAIL/RCPT/DATA; returns the final reply.
    pub async fn mail(&mut self, from: &str, to: &str, content: &[u8]) -> Reply {
        self.send(&format!("MAIL FROM:<{from}>")).await;
        self.expect(250).await;
        self.send(&format!("RCPT TO:<{to}>")).await;
        self.expect(250).await;
        self.send("DATA").await;
        self.expect(354).await;
        self.send_raw(content).await;
        self.send_raw(b".\r\n").await;
        self.reply().await
    }
}

/// A message with headers, a dot line and CRLF endings.
pub fn sample_message(id: &str) -> Vec<u8> {
    format!(
        "From: <sender@origin.test>\r\nTo: <user@legacy.test>\r\nSubject: test {id}\r\nMessage-ID: <{id}@origin.test>\r\n\r\nHello.\r\n..a line that starts with a dot\r\nBye.\r\n"
    )
    .into_bytes()
}

/// One HTTP GET to a metrics endpoint over a raw TCP stream: (status code, body).
pub async fn scrape(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::time::timeout(T, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: tlsfront\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    // The endpoint closes the connection after one answer.
    tokio::time::timeout(T, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{text:?}"));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{head:?}"));
    (code, body.to_string())
}

/// The value of the metrics sample line `series` (exact name and labels), if present.
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

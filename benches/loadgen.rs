//! Load generator for tlsfront (or any SMTP server): many concurrent sessions
//! with STARTTLS (rustls), every reply checked. A failed session counts as a
//! failure, never as throughput.
//!
//!   cargo bench --bench loadgen -- --target 127.0.0.1:2525 --concurrency 50 \
//!       --sessions 2000 --messages 1 --size 10240 [--tls 1.3|1.2|none] [--no-sni] \
//!       [--implicit] [--idle N --hold 30s] [--insecure | --cafile ca.pem | --no-verify] \
//!       [--fixed-key-share] [--name mx.example] \
//!       [--resume] [--pipelining] [--duration 10s] [--rate 500] [--sources 64] \
//!       [--groups X25519,X25519MLKEM768] [--trickle 20s] [--starttls-steps]
//!
//! Every session makes a full handshake unless `--resume` lets the client
//! resume (TLS 1.3 tickets, TLS 1.2 session IDs/tickets) as real senders with a
//! session cache do. `--pipelining` sends MAIL, RCPT and DATA as one group
//! (RFC 2920, as Postfix does) and times the group. `--starttls-steps`
//! (with `--tls none`): the plaintext session takes STARTTLS's two extra
//! exchanges without TLS, NOOP where STARTTLS would be and EHLO again, so
//! what STARTTLS costs beyond the handshake's own work can be measured.
//!
//! `--duration` runs sessions for that long instead of counting them (a
//! session under way at the end still finishes and counts). `--rate` opens
//! sessions at that many per second whatever the server's pace (an open
//! load; `--concurrency` then only caps the sessions in flight, default
//! 4096), so session latency is measured at a fixed load. `--sources N`
//! spreads the connections over N loopback source addresses (127.1.x.y; a
//! server's per-client cap then applies to each address, as it would to N
//! real senders). `--groups` limits the client's key-exchange groups.
//! `--trickle T` (with `--idle N`): each held session sends one message at
//! its turn within T (staggered), says QUIT and is replaced by a new session
//! at once, so N sessions stay open while N/T messages per second flow.
//! The latency row `session` is the whole session, connect to QUIT's reply.
//!
//! A load generator's shortcuts, for benchmarks only: `--no-verify` skips the
//! server's handshake signature, `--fixed-key-share` reuses one X25519 key
//! pair for every handshake (the server still makes its own per session).
//! Both free the client's core, so the server under test is what saturates.
//! On a single CPU (pinned with taskset) the client runs on one thread.
//!
//!   cargo bench --bench loadgen -- --ceiling 5 [--rsa] [--resume] [--groups X25519]
//!
//! prints the in-process rustls ceiling: server handshakes per second of
//! server-side CPU (client work on the same core is not counted).
//!
//!   cargo bench --bench loadgen -- --serve 127.0.0.1:2600 [--plain] [--rsa]
//!
//! runs the bare handshake as a server does it on a socket: a minimal
//! tokio-rustls server on one thread, configured like the ceiling's, that
//! accepts, completes the handshake, reads to the client's close and closes
//! (`--plain`: the same connection without TLS). `--handshake-only` makes the
//! client do just that: connect, handshake (unless `--tls none`), close. The
//! two CPU figures' difference is what the handshake costs a server on a
//! socket (its flights through the kernel included), without SMTP.
//!
//!   cargo bench --bench loadgen -- --serve 127.0.0.1:2600 --smtp
//!
//! runs a minimal SMTP responder with STARTTLS instead (see [`smtp_on`]):
//! what TLS costs a server that does nothing but answer SMTP, measured as the
//! difference between a STARTTLS session and a plaintext one with
//! `--starttls-steps` against it.
//!
//! Prints sessions/s, messages/s, MB/s, latency percentiles per command and
//! errors by kind. `tests/loadgen_smoke.rs` runs a few sessions of it in the
//! test suite so it cannot rot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use tlsfront::proxy::stream::{ClientIo, Prefixed};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// tlsfront's allocator: the bare handshake server (`--serve`) then
/// allocates as tlsfront does, and the client spends less of its core.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone)]
pub struct Options {
    pub target: SocketAddr,
    pub concurrency: usize,
    pub sessions: usize,
    pub messages: usize,
    pub size: usize,
    /// None: no TLS at all (plaintext baseline).
    pub tls: Option<&'static rustls::SupportedProtocolVersion>,
    pub implicit: bool,
    pub sni: bool,
    pub name: String,
    pub roots: Option<Vec<CertificateDer<'static>>>,
    /// Skip even the server's handshake signature (`--no-verify`): the
    /// client is not under test, and this frees its core for the server.
    pub no_verify: bool,
    /// Reuse one X25519 key pair for every handshake (`--fixed-key-share`):
    /// spares the client a key generation per session. The server's side
    /// (its own fresh key pair and the shared secret) is unchanged.
    pub fixed_key_share: bool,
    /// Idle mode: open this many TLS sessions and hold them.
    pub idle: usize,
    pub hold: Duration,
    pub timeout: Duration,
    /// Let the client resume TLS sessions (off: every handshake is full).
    pub resume: bool,
    /// Send MAIL, RCPT and DATA in one write (RFC 2920 PIPELINING).
    pub pipelining: bool,
    /// Plaintext: NOOP and a second EHLO where STARTTLS and its EHLO would be.
    pub starttls_steps: bool,
    /// Run sessions for this long instead of counting to `sessions`.
    pub duration: Option<Duration>,
    /// Open sessions at this many per second (open load), not as a closed loop.
    pub rate: Option<f64>,
    /// Loopback source addresses the connections are spread over (0: the default).
    pub sources: usize,
    /// Key-exchange groups the client offers (None: rustls' defaults).
    pub groups: Option<Vec<String>>,
    /// Idle mode: each held session sends a message and is replaced this often.
    pub trickle: Option<Duration>,
    /// No SMTP: connect, handshake (with TLS), close (against `--serve`).
    pub handshake_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target: "127.0.0.1:2525".parse().unwrap(),
            concurrency: 10,
            sessions: 100,
            messages: 1,
            size: 10 * 1024,
            tls: Some(&rustls::version::TLS13),
            implicit: false,
            sni: true,
            name: "localhost".into(),
            roots: None,
            no_verify: false,
            fixed_key_share: false,
            idle: 0,
            hold: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            resume: false,
            pipelining: false,
            starttls_steps: false,
            duration: None,
            rate: None,
            sources: 0,
            groups: None,
            trickle: None,
            handshake_only: false,
        }
    }
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Stats {
    pub sessions_ok: usize,
    pub messages_ok: usize,
    pub bytes: usize,
    pub elapsed: Duration,
    /// Latency samples per command (microseconds).
    pub latency: BTreeMap<&'static str, Vec<u64>>,
    pub errors: BTreeMap<String, usize>,
    /// Open load: sessions that started late because `concurrency` were in flight.
    pub late_starts: usize,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.sessions_ok += other.sessions_ok;
        self.messages_ok += other.messages_ok;
        self.bytes += other.bytes;
        self.late_starts += other.late_starts;
        for (k, v) in other.latency {
            self.latency.entry(k).or_default().extend(v);
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    /// The same figures as one JSON object (for integration/bench.py).
    pub fn json(&mut self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut lat = serde_json::Map::new();
        for (cmd, samples) in self.latency.iter_mut() {
            samples.sort_unstable();
            let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
            lat.insert(
                cmd.to_string(),
                serde_json::json!({"p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
                                   "max_ms": pct(1.0), "n": samples.len()}),
            );
        }
        serde_json::json!({
            "sessions_ok": self.sessions_ok,
            "messages_ok": self.messages_ok,
            "sessions_per_s": self.sessions_ok as f64 / secs,
            "messages_per_s": self.messages_ok as f64 / secs,
            "mb_per_s": self.bytes as f64 / secs / 1e6,
            "latency": lat,
            "elapsed_s": secs,
            "late_starts": self.late_starts,
            "errors": self.errors,
        })
        .to_string()
    }

    pub fn report(&mut self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = format!(
            "sessions ok {}  ({:.1}/s)\nmessages ok {}  ({:.1}/s)\nthroughput {:.2} MB/s\n",
            self.sessions_ok,
            self.sessions_ok as f64 / secs,
            self.messages_ok,
            self.messages_ok as f64 / secs,
            self.bytes as f64 / secs / 1e6
        );
        out.push_str("latency (ms)      p50      p90      p99      max\n");
        for (cmd, samples) in self.latency.iter_mut() {
            samples.sort_unstable();
            let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
            out.push_str(&format!(
                "  {cmd:<12} {:>8.3} {:>8.3} {:>8.3} {:>8.3}\n",
                pct(0.5),
                pct(0.9),
                pct(0.99),
                pct(1.0)
            ));
        }
        if self.errors.is_empty() {
            out.push_str("errors: none\n");
        } else {
            for (k, v) in &self.errors {
                out.push_str(&format!("error {k}: {v}\n"));
            }
        }
        out
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    /// Reads one whole reply; returns its code.
    async fn reply(&mut self) -> Result<u16, String> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line = &self.buf[..=pos];
                let code = if line.len() < 4 || !line[..3].iter().all(u8::is_ascii_digit) {
                    return Err("malformed_reply".into());
                } else if line[3] == b'-' {
                    None
                } else {
                    Some(
                        u16::from(line[0] - b'0') * 100
                            + u16::from(line[1] - b'0') * 10
                            + u16::from(line[2] - b'0'),
                    )
                };
                self.buf.drain(..=pos);
                if let Some(code) = code {
                    return Ok(code);
                }
            }
            // Straight into the buffer's spare room: no zeroed chunk per read.
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
                Err(_) => return Err("timeout".into()),
                Ok(Ok(0)) => return Err("closed".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("io_{:?}", e.kind())),
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        tokio::time::timeout(self.timeout, self.io.write_all(bytes))
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|e| format!("io_{:?}", e.kind()))
    }

    /// Sends a command and checks its reply code; records the latency.
    async fn step(
        &mut self,
        stats: &mut Stats,
        name: &'static str,
        line: &[u8],
        want: u16,
    ) -> Result<(), String> {
        self.group(stats, name, line, &[want]).await
    }

    /// Sends `lines` (one command, or a pipelined group) in one write and
    /// checks one reply per expected code, in order; times the whole group.
    async fn group(
        &mut self,
        stats: &mut Stats,
        name: &'static str,
        lines: &[u8],
        want: &[u16],
    ) -> Result<(), String> {
        let t = Instant::now();
        self.send(lines).await?;
        for &w in want {
            let code = self.reply().await?;
            if code != w {
                return Err(format!("{name}_{code}"));
            }
        }
        stats
            .latency
            .entry(name)
            .or_default()
            .push(t.elapsed().as_micros() as u64);
        Ok(())
    }
}

fn client_config(opts: &Options) -> Option<Arc<rustls::ClientConfig>> {
    let version = opts.tls?;
    // tlsfront's provider (HMAC keys prepared once): a cheaper client leaves
    // more of its core for load, so the server under test is what saturates.
    let mut provider = tlsfront::proxy::hkdf::provider();
    if let Some(groups) = &opts.groups {
        provider.kx_groups = rustls::crypto::aws_lc_rs::ALL_KX_GROUPS
            .iter()
            .filter(|g| groups.iter().any(|n| format!("{:?}", g.name()) == *n))
            .copied()
            .collect();
    }
    if opts.fixed_key_share {
        let fixed: &'static dyn rustls::crypto::SupportedKxGroup =
            Box::leak(Box::new(FixedX25519::generate()));
        for g in provider.kx_groups.iter_mut() {
            if g.name() == rustls::NamedGroup::X25519 {
                *g = fixed;
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .ok()?;
    let mut config = match &opts.roots {
        _ if opts.no_verify => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(
                rustls::crypto::aws_lc_rs::default_provider()
                    .signature_verification_algorithms
                    .supported_schemes(),
            )))
            .with_no_client_auth(),
        Some(roots) => {
            let mut store = rustls::RootCertStore::empty();
            for r in roots {
                store.add(r.clone()).ok()?;
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(tlsfront::proxy::backend::tls::unauthenticated())
            .with_no_client_auth(),
    };
    config.enable_sni = opts.sni;
    if !opts.resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Some(Arc::new(config))
}

/// X25519 with one key pair for all of a load generator's handshakes: the
/// client's key generation is not under test, and sparing it leaves more of
/// the client's core for load. Never a client's choice (no forward secrecy).
#[derive(Debug)]
pub struct FixedX25519 {
    key: Arc<aws_lc_rs::agreement::PrivateKey>,
    public: Arc<[u8]>,
}

impl FixedX25519 {
    /// A new key pair, then reused by every handshake.
    pub fn generate() -> Self {
        use aws_lc_rs::agreement::{PrivateKey, X25519};
        let key = PrivateKey::generate(&X25519).expect("X25519 key");
        let public = key.compute_public_key().expect("X25519 public key");
        FixedX25519 {
            public: public.as_ref().into(),
            key: Arc::new(key),
        }
    }
}

impl rustls::crypto::SupportedKxGroup for FixedX25519 {
    fn start(&self) -> Result<Box<dyn rustls::crypto::ActiveKeyExchange>, rustls::Error> {
        Ok(Box::new(FixedX25519 {
            key: self.key.clone(),
            public: self.public.clone(),
        }))
    }
    fn name(&self) -> rustls::NamedGroup {
        rustls::NamedGroup::X25519
    }
}

impl rustls::crypto::ActiveKeyExchange for FixedX25519 {
    fn complete(
        self: Box<Self>,
        peer: &[u8],
    ) -> Result<rustls::crypto::SharedSecret, rustls::Error> {
        use aws_lc_rs::agreement::{UnparsedPublicKey, X25519, agree};
        agree(
            &self.key,
            UnparsedPublicKey::new(&X25519, peer),
            rustls::Error::from(rustls::PeerMisbehaved::InvalidKeyShare),
            |secret| Ok(rustls::crypto::SharedSecret::from(secret)),
        )
    }
    fn pub_key(&self) -> &[u8] {
        &self.public
    }
    fn group(&self) -> rustls::NamedGroup {
        rustls::NamedGroup::X25519
    }
}

/// Accepts every certificate and handshake signature unchecked: a load
/// generator's shortcut (`--no-verify`), never a client's.
#[derive(Debug)]
struct NoVerify(Vec<rustls::SignatureScheme>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.clone()
    }
}

/// The loopback source address of connection number `n`, when spread.
fn source(opts: &Options, n: usize) -> Option<std::net::IpAddr> {
    if opts.sources == 0 || !opts.target.is_ipv4() {
        return None;
    }
    let i = n % opts.sources;
    Some(std::net::Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8).into())
}

async fn connect(opts: &Options, from: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = from else {
        return TcpStream::connect(opts.target).await;
    };
    let socket = tokio::net::TcpSocket::new_v4()?;
    // Each source address has its own ephemeral ports: at a few thousand
    // sessions/s over dozens of addresses, TIME_WAIT never uses them up.
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(opts.target).await
}

/// Connects, greets, upgrades to TLS (as configured) and says EHLO.
async fn open(
    opts: &Options,
    tls: &Option<Arc<rustls::ClientConfig>>,
    stats: &mut Stats,
    from: Option<std::net::IpAddr>,
) -> Result<Conn, String> {
    let tcp = tokio::time::timeout(opts.timeout, connect(opts, from))
        .await
        .map_err(|_| "connect_timeout".to_string())?
        .map_err(|e| format!("connect_{:?}", e.kind()))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(opts.name.clone()).map_err(|_| "bad_name".to_string())?;
    let mut conn = Conn {
        io: Box::new(tcp),
        buf: Vec::new(),
        timeout: opts.timeout,
    };
    if let (true, Some(cfg)) = (opts.implicit, tls) {
        let t = Instant::now();
        let io = std::mem::replace(
            &mut conn.io,
            Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink())),
        );
        let stream = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(name.clone(), io)
            .await
            .map_err(|e| format!("tls_{e}"))?;
        stats
            .latency
            .entry("handshake")
            .or_default()
            .push(t.elapsed().as_micros() as u64);
        conn.io = Box::new(stream);
    }
    if conn.reply().await? != 220 {
        return Err("greeting".into());
    }
    conn.step(stats, "EHLO", b"EHLO loadgen.test\r\n", 250)
        .await?;
    if let (false, Some(cfg)) = (opts.implicit, tls) {
        conn.step(stats, "STARTTLS", b"STARTTLS\r\n", 220).await?;
        let t = Instant::now();
        let io = std::mem::replace(
            &mut conn.io,
            Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink())),
        );
        let stream = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(name, io)
            .await
            .map_err(|e| format!("tls_{}", e.kind()))?;
        stats
            .latency
            .entry("handshake")
            .or_default()
            .push(t.elapsed().as_micros() as u64);
        conn.io = Box::new(stream);
        conn.step(stats, "EHLO", b"EHLO loadgen.test\r\n", 250)
            .await?;
    } else if tls.is_none() && opts.starttls_steps {
        conn.step(stats, "NOOP", b"NOOP\r\n", 250).await?;
        conn.step(stats, "EHLO", b"EHLO loadgen.test\r\n", 250)
            .await?;
    }
    Ok(conn)
}

fn message(size: usize) -> Vec<u8> {
    let mut m =
        b"From: <load@gen.test>\r\nTo: <sink@legacy.test>\r\nSubject: load\r\n\r\n".to_vec();
    let line = b"0123456789 the quick brown fox jumps over the lazy dog 0123456789\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m.extend_from_slice(b".\r\n");
    m
}

/// One mail transaction on an open session: MAIL, RCPT, DATA, the message.
async fn transaction(
    c: &mut Conn,
    opts: &Options,
    body: &[u8],
    stats: &mut Stats,
) -> Result<(), String> {
    if opts.pipelining {
        c.group(
            stats,
            "MAIL+RCPT+DATA",
            b"MAIL FROM:<load@gen.test>\r\nRCPT TO:<sink@legacy.test>\r\nDATA\r\n",
            &[250, 250, 354],
        )
        .await?;
    } else {
        c.step(stats, "MAIL", b"MAIL FROM:<load@gen.test>\r\n", 250)
            .await?;
        c.step(stats, "RCPT", b"RCPT TO:<sink@legacy.test>\r\n", 250)
            .await?;
        c.step(stats, "DATA", b"DATA\r\n", 354).await?;
    }
    c.step(stats, "end-of-data", body, 250).await?;
    stats.messages_ok += 1;
    stats.bytes += body.len();
    Ok(())
}

async fn session(
    opts: &Options,
    tls: &Option<Arc<rustls::ClientConfig>>,
    body: &[u8],
    stats: &mut Stats,
    from: Option<std::net::IpAddr>,
) -> Result<(), String> {
    let t = Instant::now();
    if opts.handshake_only {
        handshake_only(opts, tls, from).await?;
    } else {
        let mut c = open(opts, tls, stats, from).await?;
        for _ in 0..opts.messages {
            transaction(&mut c, opts, body, stats).await?;
        }
        c.step(stats, "QUIT", b"QUIT\r\n", 221).await?;
    }
    stats
        .latency
        .entry("session")
        .or_default()
        .push(t.elapsed().as_micros() as u64);
    Ok(())
}

/// Connects, completes the TLS handshake (if any), closes (close_notify and
/// FIN) and reads to the server's close: a `--serve` server's whole session.
async fn handshake_only(
    opts: &Options,
    tls: &Option<Arc<rustls::ClientConfig>>,
    from: Option<std::net::IpAddr>,
) -> Result<(), String> {
    let work = async {
        let tcp = connect(opts, from)
            .await
            .map_err(|e| format!("connect_{:?}", e.kind()))?;
        let _ = tcp.set_nodelay(true);
        let mut io: Box<dyn Io> = match tls {
            Some(cfg) => {
                let name = ServerName::try_from(opts.name.clone()).map_err(|_| "bad_name")?;
                let stream = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("tls_{}", e.kind()))?;
                Box::new(stream)
            }
            None => Box::new(tcp),
        };
        io.shutdown()
            .await
            .map_err(|e| format!("io_{:?}", e.kind()))?;
        let mut buf = [0u8; 1024];
        // The server's tickets, then its close: at most a few reads.
        for _ in 0..64 {
            match io.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(format!("io_{:?}", e.kind())),
            }
        }
        Err("no_close".to_string())
    };
    tokio::time::timeout(opts.timeout, work)
        .await
        .map_err(|_| "timeout".to_string())?
}

/// One session, counted as a success or by its error.
async fn counted(
    opts: &Options,
    tls: &Option<Arc<rustls::ClientConfig>>,
    body: &[u8],
    stats: &mut Stats,
    from: Option<std::net::IpAddr>,
) {
    match session(opts, tls, body, stats, from).await {
        Ok(()) => stats.sessions_ok += 1,
        Err(e) => *stats.errors.entry(e).or_default() += 1,
    }
}

/// Runs the load and returns what it measured.
pub async fn run(opts: Options) -> Stats {
    let tls = client_config(&opts);
    let body = Arc::new(message(opts.size));
    let started = Instant::now();
    let mut stats = if opts.idle > 0 {
        hold(&opts, &tls, &body).await
    } else if let Some(rate) = opts.rate {
        open_load(&opts, &tls, &body, rate).await
    } else {
        closed_loop(&opts, &tls, &body).await
    };
    stats.elapsed = started.elapsed();
    stats
}

/// `concurrency` clients, each starting its next session when one ends.
async fn closed_loop(
    opts: &Options,
    tls: &Option<Arc<rustls::ClientConfig>>,
    body: &Arc<Vec<u8>>,
) -> Stats {
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = Arc::new(Mutex::new(Stats::default()));
    let workers: Vec<_> = (0..opts.concurrency.max(1))
        .map(|w| {
            let (opts, tls, body, next, total) = (
                opts.clone(),
                tls.clone(),
                body.clone(),
                next.clone(),
                total.clone(),
            );
            tokio::spawn(async move {
                let mut mine = Stats::default();
                // A client keeps its address, so each address has a steady
                // share of the concurrency.
                let from = source(&opts, w);
                loop {
                    let more = match deadline {
                        Some(d) => Instant::now() < d,
                        None => {
                            next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < opts.sessions
                        }
                    };
                    if !more {
                        break;
                    }
                    counted(&opts, &tls, &body, &mut mine, from).await;
                }
                total.lock().unwrap().merge(mine);
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    std::mem::take(&mut *total.lock().unwrap())
}

/// Sessions started at `rate` per second for `duration` (10 s if unset),
/// whether or not earlier ones have finished; at most `concurrency` in
/// flight (an arrival past that waits, and is counted as `late_starts`).
async fn open_load(
    opts: &Options,
    tls: &Option<Arc<rustls::ClientConfig>>,
    body: &Arc<Vec<u8>>,
    rate: f64,
) -> Stats {
    let duration = opts.duration.unwrap_or(Duration::from_secs(10));
    let cap = if opts.concurrency == Options::default().concurrency {
        4096
    } else {
        opts.concurrency.max(1)
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    let total = Arc::new(Mutex::new(Stats::default()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = tokio::time::Instant::now() + duration;
    let mut tasks = Vec::new();
    let mut late = 0;
    let mut n = 0;
    while tick.tick().await < end {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                late += 1;
                slots.clone().acquire_owned().await.expect("open semaphore")
            }
        };
        let (opts, tls, body, total) = (opts.clone(), tls.clone(), body.clone(), total.clone());
        let from = source(&opts, n);
        n += 1;
        tasks.push(tokio::spawn(async move {
            let mut mine = Stats::default();
            counted(&opts, &tls, &body, &mut mine, from).await;
            total.lock().unwrap().merge(mine);
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut stats = std::mem::take(&mut *total.lock().unwrap());
    stats.late_starts = late;
    stats
}

/// Opens `idle` sessions (`concurrency` at a time) and holds them for
/// `hold`; with `trickle`, each sends a message per interval meanwhile.
async fn hold(
    opts: &Options,
    tls: &Option<Arc<rustls::ClientConfig>>,
    body: &Arc<Vec<u8>>,
) -> Stats {
    // Opened `concurrency` at a time: a server that stalls each session
    // (nginx: ~90 ms) would otherwise take minutes to fill.
    let held = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Stats::default()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let openers: Vec<_> = (0..opts.concurrency.max(1))
        .map(|_| {
            let (opts, tls, held, errors, next) = (
                opts.clone(),
                tls.clone(),
                held.clone(),
                errors.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut mine = Stats::default();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= opts.idle {
                        break;
                    }
                    match open(&opts, &tls, &mut mine, source(&opts, n)).await {
                        Ok(c) => held.lock().unwrap().push(c),
                        Err(e) => *mine.errors.entry(e).or_default() += 1,
                    }
                }
                errors.lock().unwrap().merge(mine);
            })
        })
        .collect();
    for o in openers {
        let _ = o.await;
    }
    let held = std::mem::take(&mut *held.lock().unwrap());
    let mut stats = std::mem::take(&mut *errors.lock().unwrap());
    stats.sessions_ok = held.len();
    println!(
        "holding {} {} sessions for {:?}",
        held.len(),
        if opts.trickle.is_some() {
            "busy"
        } else {
            "idle"
        },
        opts.hold
    );
    let end = tokio::time::Instant::now() + opts.hold;
    let Some(every) = opts.trickle else {
        tokio::time::sleep_until(end).await;
        drop(held);
        return stats;
    };
    let count = held.len().max(1) as u32;
    let busy: Vec<_> = held
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let (opts, tls, body) = (opts.clone(), tls.clone(), body.clone());
            // Staggered, so the messages arrive evenly over each interval.
            let first = tokio::time::Instant::now() + every * (i as u32) / count;
            tokio::spawn(async move {
                let mut mine = Stats::default();
                let mut c = Some(c);
                let mut at = first;
                while at < end {
                    tokio::time::sleep_until(at).await;
                    at += every;
                    let mut conn = match c.take() {
                        Some(conn) => conn,
                        None => match open(&opts, &tls, &mut mine, source(&opts, i)).await {
                            Ok(conn) => conn,
                            Err(e) => {
                                *mine.errors.entry(e).or_default() += 1;
                                continue;
                            }
                        },
                    };
                    let done = async {
                        transaction(&mut conn, &opts, &body, &mut mine).await?;
                        conn.step(&mut mine, "QUIT", b"QUIT\r\n", 221).await
                    };
                    if let Err(e) = done.await {
                        *mine.errors.entry(e).or_default() += 1;
                    }
                    // The replacement opens at once and waits for its turn.
                    drop(conn);
                    match open(&opts, &tls, &mut mine, source(&opts, i)).await {
                        Ok(conn) => c = Some(conn),
                        Err(e) => *mine.errors.entry(e).or_default() += 1,
                    }
                }
                tokio::time::sleep_until(end).await;
                mine
            })
        })
        .collect();
    for b in busy {
        if let Ok(mine) = b.await {
            stats.merge(mine);
        }
    }
    stats
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--target" => o.target = val()?.parse().map_err(|e| format!("--target: {e}"))?,
            "--concurrency" => {
                o.concurrency = val()?.parse().map_err(|e| format!("--concurrency: {e}"))?
            }
            "--sessions" => o.sessions = val()?.parse().map_err(|e| format!("--sessions: {e}"))?,
            "--messages" => o.messages = val()?.parse().map_err(|e| format!("--messages: {e}"))?,
            "--size" => o.size = val()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--tls" => {
                o.tls = match val()?.as_str() {
                    "1.3" => Some(&rustls::version::TLS13),
                    "1.2" => Some(&rustls::version::TLS12),
                    "none" => None,
                    other => return Err(format!("--tls {other}: use 1.3, 1.2 or none")),
                }
            }
            "--implicit" => o.implicit = true,
            "--handshake-only" => o.handshake_only = true,
            "--no-sni" => o.sni = false,
            "--resume" => o.resume = true,
            "--pipelining" => o.pipelining = true,
            "--starttls-steps" => o.starttls_steps = true,
            "--name" => o.name = val()?,
            "--insecure" => o.roots = None,
            "--no-verify" => o.no_verify = true,
            "--fixed-key-share" => o.fixed_key_share = true,
            "--cafile" => {
                let path = val()?;
                let roots = rustls::pki_types::pem::PemObject::pem_file_iter(&path)
                    .map_err(|e| format!("{path}: {e}"))?
                    .collect::<Result<Vec<CertificateDer<'static>>, _>>()
                    .map_err(|e| format!("{path}: {e}"))?;
                o.roots = Some(roots);
            }
            "--idle" => o.idle = val()?.parse().map_err(|e| format!("--idle: {e}"))?,
            "--duration" => {
                let v = val()?;
                o.duration =
                    Some(tlsfront::config::parse_duration(&v).ok_or(format!("--duration {v}"))?);
            }
            "--trickle" => {
                let v = val()?;
                o.trickle =
                    Some(tlsfront::config::parse_duration(&v).ok_or(format!("--trickle {v}"))?);
            }
            "--rate" => o.rate = Some(val()?.parse().map_err(|e| format!("--rate: {e}"))?),
            "--sources" => o.sources = val()?.parse().map_err(|e| format!("--sources: {e}"))?,
            "--groups" => o.groups = Some(val()?.split(',').map(str::to_string).collect()),
            "--hold" => {
                let v = val()?;
                o.hold = tlsfront::config::parse_duration(&v).ok_or(format!("--hold {v}"))?;
            }
            "--bench" => {} // passed by `cargo bench`
            "--json" => {}  // read in main
            other => {
                return Err(format!(
                    "unknown argument {other} (see the top of benches/loadgen.rs)"
                ));
            }
        }
    }
    Ok(o)
}

/// The in-process rustls ceiling: TLS 1.3 server handshakes per second of
/// server-side CPU time (no sockets, no SMTP), with the server configured as
/// tlsfront configures it (see [`bench_server`]). Client and server run in
/// one thread; only the server's calls are timed, so the figure is what one
/// core could do if it did nothing but rustls server handshakes. Full
/// handshakes unless `resume`.
fn ceiling(seconds: u64, rsa: bool, resume: bool, groups: Option<&str>) -> (f64, f64) {
    let (server, cert) = bench_server(rsa);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(groups) = groups {
        provider.kx_groups = rustls::crypto::aws_lc_rs::ALL_KX_GROUPS
            .iter()
            .filter(|g| groups.split(',').any(|n| format!("{:?}", g.name()) == n))
            .copied()
            .collect();
    }
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        client.resumption = rustls::client::Resumption::disabled();
    }
    let client = Arc::new(client);
    let name = ServerName::try_from("mx.bench.test").expect("name");
    let started = Instant::now();
    let cpu_started = thread_cpu();
    let mut server_time = Duration::ZERO;
    let mut n = 0u64;
    let mut buf = Vec::with_capacity(8192);
    while started.elapsed() < Duration::from_secs(seconds) {
        let mut c = rustls::ClientConnection::new(client.clone(), name.clone()).expect("client");
        let t = Instant::now();
        let mut s = rustls::ServerConnection::new(server.clone()).expect("server");
        server_time += t.elapsed();
        // The client reads the tickets too, so resumption can work.
        while c.is_handshaking() || s.is_handshaking() || s.wants_write() {
            buf.clear();
            c.write_tls(&mut buf).expect("client write");
            let t = Instant::now();
            s.read_tls(&mut buf.as_slice()).expect("server read");
            s.process_new_packets().expect("server process");
            buf.clear();
            s.write_tls(&mut buf).expect("server write");
            server_time += t.elapsed();
            c.read_tls(&mut buf.as_slice()).expect("client read");
            c.process_new_packets().expect("client process");
        }
        n += 1;
    }
    (
        n as f64 / server_cpu(server_time, started.elapsed(), cpu_started),
        n as f64 / started.elapsed().as_secs_f64(),
    )
}

/// The bare server of `--ceiling` and `--serve`: TLS 1.3, a fresh self-signed
/// certificate (ECDSA P-256, or RSA-2048), a stateless ticketer and a session
/// cache, tlsfront's suite order and ticket count, as tlsfront configures
/// rustls. Returns its certificate too.
pub fn bench_server(rsa: bool) -> (Arc<rustls::ServerConfig>, CertificateDer<'static>) {
    let alg = if rsa {
        &rcgen::PKCS_RSA_SHA256
    } else {
        &rcgen::PKCS_ECDSA_P256_SHA256
    };
    let key = rcgen::KeyPair::generate_for(alg).expect("key");
    let cert = rcgen::CertificateParams::new(vec!["mx.bench.test".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
    // tlsfront's provider, suite order and ticket count: the same handshake.
    let provider = Arc::new(tlsfront::proxy::tls::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .expect("server config");
    server.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer");
    server.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    tlsfront::proxy::tls::server_policy(&mut server);
    (Arc::new(server), cert.der().clone())
}

/// `--serve`: the bare handshake on a socket (see the top of this file), or
/// with `--smtp` the minimal SMTP responder, on one thread, for at most an
/// hour (the benchmark stops it long before).
fn serve(addr: SocketAddr, tls: bool, rsa: bool, smtp: bool) {
    let acceptor = tls.then(|| tokio_rustls::TlsAcceptor::from(bench_server(rsa).0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let hour = Duration::from_secs(3600);
        let _ = match (smtp, acceptor) {
            (true, Some(acceptor)) => tokio::time::timeout(hour, smtp_on(listener, acceptor)).await,
            (_, acceptor) => tokio::time::timeout(hour, serve_on(listener, acceptor)).await,
        };
    });
}

/// `--serve --smtp`: the least an SMTP server with STARTTLS does, so the
/// benchmark can measure what TLS costs a server that does nothing else. It
/// greets, answers every command with a fixed reply (pipelined ones in one
/// write), takes a message to its CRLF.CRLF, upgrades on STARTTLS (the bare
/// server's rustls configuration) and on QUIT sends 221 with the close. No
/// checks, no relay, no records: the same responder with and without TLS
/// differs by the handshake, the record layer and their system calls. It
/// saves the writes tlsfront saves, on tlsfront's own stream (TLS 1.3's
/// tickets leave with the first reply, 221 with the close_notify), so those
/// savings are not counted as tlsfront's.
pub async fn smtp_on(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor) {
    accept_each(listener, move |tcp| smtp_session(tcp, acceptor.clone())).await
}

/// The bench servers' accept loop: each connection (no Nagle) in a task of
/// its own, 30 s at most.
async fn accept_each<F, Fut>(listener: tokio::net::TcpListener, session: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send,
{
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, say: not a busy loop.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(tokio::time::timeout(Duration::from_secs(30), session(tcp)));
    }
}

async fn smtp_session(tcp: TcpStream, acceptor: tokio_rustls::TlsAcceptor) -> std::io::Result<()> {
    // Plaintext until STARTTLS, on tlsfront's own client stream.
    let mut side = ClientIo::Plain(tcp);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = b"220 bare.test ESMTP\r\n".to_vec();
    let mut in_data = false;
    loop {
        let mut at = 0;
        let mut quit = false;
        let mut starttls = false;
        while !quit && !starttls {
            if in_data {
                let Some(end) = memchr::memmem::find(&buf[at..], b"\r\n.\r\n") else {
                    // Keep the last four bytes: the end may straddle reads.
                    at = at.max(buf.len().saturating_sub(4));
                    break;
                };
                at += end + 5;
                in_data = false;
                out.extend_from_slice(b"250 2.0.0 queued\r\n");
                continue;
            }
            let Some(nl) = memchr::memchr(b'\n', &buf[at..]) else {
                break;
            };
            let verb = buf[at..at + nl].get(..4).map(<[u8]>::to_ascii_uppercase);
            at += nl + 1;
            match verb.as_deref() {
                Some(b"EHLO") if matches!(side, ClientIo::Plain(_)) => {
                    out.extend_from_slice(b"250-bare.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
                }
                Some(b"EHLO") => out.extend_from_slice(b"250-bare.test\r\n250 PIPELINING\r\n"),
                Some(b"STAR") => {
                    out.extend_from_slice(b"220 2.0.0 ready\r\n");
                    starttls = true;
                }
                Some(b"DATA") => {
                    out.extend_from_slice(b"354 go on\r\n");
                    in_data = true;
                    // The DATA line's CRLF starts the search, so an empty
                    // message (".") ends it too.
                    if buf[..at].ends_with(b"\r\n") {
                        at -= 2;
                    }
                }
                Some(b"QUIT") => {
                    out.extend_from_slice(b"221 2.0.0 bye\r\n");
                    quit = true;
                }
                _ => out.extend_from_slice(b"250 2.0.0 ok\r\n"),
            }
        }
        buf.drain(..at);
        if quit {
            match &mut side {
                ClientIo::Plain(s) => s.write_all(&out).await?,
                // Queued in rustls, written with the close_notify.
                ClientIo::Tls(s) => std::io::Write::write_all(&mut s.get_mut().1.writer(), &out)?,
            }
            return side.shutdown().await;
        }
        if !out.is_empty() {
            side.write_all(&out).await?;
            side.flush().await?;
            out.clear();
        }
        if starttls {
            let ClientIo::Plain(tcp) = side else {
                return Ok(()); // STARTTLS under TLS: the session ends
            };
            // Anything sent after STARTTLS is discarded, as it must be.
            buf.clear();
            let mut tls = acceptor
                .accept(Prefixed::new(Default::default(), tcp).corked())
                .await?;
            tls.get_mut().0.uncork(true); // TLS 1.3 only: held are the tickets
            side = ClientIo::Tls(Box::new(tls));
            continue;
        }
        buf.reserve(16 * 1024);
        if side.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Each connection: the handshake (with `acceptor`), reads to the client's
/// close, closes; 30 s at most.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    accept_each(listener, move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            let mut io: Box<dyn Io> = match acceptor {
                Some(a) => match a.accept(tcp).await {
                    Ok(s) => Box::new(s),
                    Err(_) => return,
                },
                None => Box::new(tcp),
            };
            let mut buf = [0u8; 1024];
            while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
            let _ = io.shutdown().await;
        }
    })
    .await
}

/// CPU time this thread has run, in nanoseconds (Linux schedstat), if known.
fn thread_cpu() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The server's share of this thread's CPU time: the thread's CPU time (so
/// time other processes took from this core does not count) split by the
/// wall-clock share of the server's calls. Falls back to wall time.
fn server_cpu(server_wall: Duration, wall: Duration, cpu_started: Option<u64>) -> f64 {
    match (cpu_started, thread_cpu()) {
        (Some(a), Some(b)) if b > a => {
            (b - a) as f64 / 1e9 * server_wall.as_secs_f64() / wall.as_secs_f64()
        }
        _ => server_wall.as_secs_f64(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let Some(addr) = args.get(i + 1).and_then(|a| a.parse().ok()) else {
            eprintln!("loadgen: --serve needs an address such as 127.0.0.1:2600");
            std::process::exit(2);
        };
        let plain = args.iter().any(|a| a == "--plain");
        let smtp = args.iter().any(|a| a == "--smtp");
        if smtp && plain {
            eprintln!("loadgen: --serve --smtp offers STARTTLS; it has no --plain form");
            std::process::exit(2);
        }
        serve(addr, !plain, args.iter().any(|a| a == "--rsa"), smtp);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--ceiling") {
        let secs = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(5);
        let rsa = args.iter().any(|a| a == "--rsa");
        let resume = args.iter().any(|a| a == "--resume");
        let groups = args
            .iter()
            .position(|a| a == "--groups")
            .and_then(|g| args.get(g + 1));
        let (server, pairs) = ceiling(secs, rsa, resume, groups.map(String::as_str));
        println!("{{\"handshakes_per_s\": {server:.1}, \"pairs_per_s\": {pairs:.1}}}");
        return;
    }
    // `cargo test --all-targets` runs this with no arguments: nothing to load.
    if !std::env::args().any(|a| a == "--target") {
        println!("loadgen: no --target given; usage at the top of benches/loadgen.rs");
        return;
    }
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    // On one core (the benchmark pins the client), one thread without a
    // scheduler to share work with: cheaper per session, so more of the core
    // is load. Given more cores, one worker each.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let runtime = if one_core {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .expect("runtime");
    let mut stats = runtime.block_on(run(opts));
    if std::env::args().any(|a| a == "--json") {
        println!("{}", stats.json());
    } else {
        print!("{}", stats.report());
    }
    if !stats.errors.is_empty() {
        std::process::exit(1);
    }
}

//! The TLS front: certificates, the rustls server configurations built once
//! from validated settings, certificate choice by SNI and key type, and the
//! handshake itself with the facts a record needs.
//!
//! One `ServerConfig` is built per certificate. tlsfront reads the ClientHello
//! itself, picks the certificate, and hands the replayed hello to that
//! certificate's config; so the record knows exactly which certificate was
//! served. Tickets and the TLS 1.2 session cache are shared by all configs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs;
use rustls::server::{ClientHello as RustlsHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::cert::{self, KeyKind};
use crate::config::{Settings, TlsSettings, TlsVersion, credential_name, credential_not_loaded};
use crate::limits;
use crate::outcome::HandshakeFailure;
use crate::proxy::stream::Prefixed;
use crate::wire::clienthello::{self, HelloSummary, Peek};
use crate::wire::offer::Offer as ClientOffer;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// What keeps a configured certificate from serving, as `check` says it
    /// about the same certificate (its subject, then the message).
    #[error("certificate {}: {problem}", .cert.display())]
    Certificate {
        cert: PathBuf,
        problem: cert::Problem,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The suites tlsfront serves when `tls.cipher_suites` is not set: rustls'
/// defaults (every TLS 1.3 suite, the ECDHE+AEAD TLS 1.2 ones) in the order
/// of Mozilla's server-side TLS recommendation, which BoringSSL and Go also
/// serve: AES-128-GCM, then AES-256-GCM, then ChaCha20-Poly1305, TLS 1.3
/// before 1.2. AES-128 matches the 128-bit strength of the key exchange and
/// signature; its SHA-256 key schedule costs a tenth less CPU per handshake
/// than AES-256's SHA-384 (SHA-256 has instructions on current x86 and ARM).
pub fn default_suites() -> Vec<rustls::SupportedCipherSuite> {
    let rank = |s: &rustls::SupportedCipherSuite| {
        let name = format!("{:?}", s.suite());
        let cipher = ["AES_128_GCM", "AES_256_GCM", "CHACHA20"]
            .iter()
            .position(|c| name.contains(c))
            .unwrap_or(3);
        (s.version() != &rustls::version::TLS13, cipher)
    };
    let mut suites = aws_lc_rs::DEFAULT_CIPHER_SUITES.to_vec();
    suites.sort_by_cached_key(rank);
    suites
}

/// TLS 1.3 session tickets sent after each full handshake. An SMTP client
/// keeps one session per destination (Postfix's tlsmgr cache, Exim's, an
/// OpenSSL client's latest), so a second ticket, rustls' default, would be
/// made, encrypted and sent for nothing.
const TLS13_TICKETS: usize = 1;

/// What tlsfront sets on every rustls server configuration beyond its
/// provider: its own suite order rather than the client's, one ticket.
/// The benchmark's bare handshake server applies it too.
pub fn server_policy(config: &mut ServerConfig) {
    config.ignore_client_order = true;
    config.send_tls13_tickets = TLS13_TICKETS;
}

/// rustls' aws-lc-rs provider serving `suites` in that order, with the HMAC
/// keys of the key schedule prepared once.
fn serving(suites: Vec<rustls::SupportedCipherSuite>) -> CryptoProvider {
    crate::proxy::hkdf::with_prepared_suites(CryptoProvider {
        cipher_suites: suites,
        ..aws_lc_rs::default_provider()
    })
}

/// The provider of a server with no `tls.cipher_suites` (and every group).
pub fn default_provider() -> CryptoProvider {
    serving(default_suites())
}

fn provider(settings: &TlsSettings) -> CryptoProvider {
    let suites = match &settings.cipher_suites {
        // In the configured order: tlsfront applies its own preference
        // (ignore_client_order), so the list is the admin's preference.
        Some(names) => names
            .iter()
            .filter_map(|n| {
                aws_lc_rs::ALL_CIPHER_SUITES
                    .iter()
                    .find(|s| *n == format!("{:?}", s.suite()))
            })
            .copied()
            .collect(),
        None => default_suites(),
    };
    let mut p = serving(suites);
    use aws_lc_rs::kx_group;
    p.kx_groups = settings
        .groups
        .iter()
        .filter_map(|g| match g.as_str() {
            "X25519MLKEM768" => Some(kx_group::X25519MLKEM768),
            "X25519" => Some(kx_group::X25519),
            "secp256r1" => Some(kx_group::SECP256R1),
            "secp384r1" => Some(kx_group::SECP384R1),
            _ => None,
        })
        .collect();
    p
}

/// One servable certificate.
#[derive(Debug)]
pub struct CertEntry {
    /// Names this certificate answers for by SNI (exact, or `*.domain`).
    pub names: Vec<String>,
    pub subject: String,
    /// `ecdsa_p256`, `rsa_2048`, `ed25519`, ...
    pub key_type: String,
    pub self_signed: bool,
    pub source: String,
    /// The leaf's notAfter, seconds since the Unix epoch (metrics).
    pub not_after: i64,
    /// The leaf's facts, judged at start and on reload as `check` judges them.
    leaf: cert::Cert,
    certified: Arc<CertifiedKey>,
    config: Arc<ServerConfig>,
    /// Lower is preferred when the client can verify several kinds.
    preference: u8,
}

impl CertEntry {
    /// The leaf's validity at `now`, in `check`'s words.
    pub fn validity(&self, now: i64) -> cert::Judged {
        cert::judge_validity(&self.leaf, &format!("the leaf ({})", self.subject), now)
    }

    /// The chain as served, leaf first (DER).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// This certificate's rustls configuration (the MTA-STS policy server
    /// serves with it too).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: RustlsHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Everything needed to terminate client TLS.
#[derive(Debug)]
pub struct TlsFront {
    entries: Vec<CertEntry>,
    defaults: Vec<usize>,
    pub handshake_timeout: Duration,
    /// The certificates were generated at start-up (no real certificate configured).
    pub self_signed: bool,
    /// What tlsfront can negotiate, as code points, to explain a failed
    /// handshake by what the client offered.
    offer: Offer,
}

#[derive(Debug, Clone, Default)]
struct Offer {
    versions: Vec<u16>,
    suites: Vec<u16>,
    groups: Vec<u16>,
    /// The TLS 1.2 suites each certificate kind can serve (TLS 1.3 suites
    /// work with any certificate; TLS 1.2 ones name the signature algorithm).
    ecdsa12: Vec<u16>,
    rsa12: Vec<u16>,
}

impl Offer {
    /// The most useful reason a handshake with `hello` cannot succeed, judged
    /// from the ClientHello alone (rustls reports the first check that fails,
    /// which is not always the one that explains it).
    fn mismatch(&self, hello: &clienthello::ClientHello) -> Option<HandshakeFailure> {
        if !hello.versions.iter().any(|v| self.versions.contains(v)) {
            return Some(if hello.versions.iter().all(|v| *v < 0x0303) {
                HandshakeFailure::ClientTlsVersionTooOld
            } else {
                HandshakeFailure::NoSharedVersion
            });
        }
        if !hello.cipher_suites.iter().any(|s| self.suites.contains(s)) {
            return Some(HandshakeFailure::NoSharedCipherSuite);
        }
        if !hello.groups.is_empty() && !hello.groups.iter().any(|g| self.groups.contains(g)) {
            return Some(HandshakeFailure::NoSharedGroup);
        }
        None
    }
}

/// A certificate chain and key as read from disk (or generated).
struct Loaded {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    names: Vec<String>,
    default: bool,
    cert_path: PathBuf,
}

impl TlsFront {
    /// Loads every configured certificate (or generates one), building the
    /// server configs. `Ok(None)`: no certificate and generation disabled.
    pub fn build(settings: &Settings) -> Result<Option<TlsFront>, TlsError> {
        let tls = &settings.tls;
        let provider = Arc::new(provider(tls));
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = tls
            .versions
            .iter()
            .map(|v| match v {
                TlsVersion::Tls12 => &rustls::version::TLS12,
                TlsVersion::Tls13 => &rustls::version::TLS13,
            })
            .collect();
        let ticketer = aws_lc_rs::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
        let cache = ServerSessionMemoryCache::new(4096);

        // Certificates ACME obtained (`[acme]`) serve beside the files.
        let acme = crate::proxy::acme::served(settings);
        let generated = tls.certificates.is_empty() && acme.is_empty();
        let mut loaded: Vec<Loaded> = Vec::new();
        if generated {
            if !tls.generate_self_signed {
                return Ok(None);
            }
            let (chain, key) = self_signed(&settings.names)?;
            loaded.push(Loaded {
                chain,
                key,
                names: Vec::new(),
                default: true,
                cert_path: PathBuf::from("(generated)"),
            });
        }
        for c in &tls.certificates {
            for path in [&c.cert, &c.key] {
                if let Some(name) = credential_name(path) {
                    return Err(TlsError::File {
                        path: path.clone(),
                        message: credential_not_loaded(name),
                    });
                }
            }
            // The words of `check` (cert::Problem), file by file.
            let chain = cert::read_chain(&c.cert).map_err(|problem| TlsError::Certificate {
                cert: c.cert.clone(),
                problem,
            })?;
            let key = cert::read_key(&c.key).map_err(|problem| TlsError::Certificate {
                cert: c.cert.clone(),
                problem,
            })?;
            loaded.push(Loaded {
                chain,
                key,
                names: c.names.clone(),
                default: c.default,
                cert_path: c.cert.clone(),
            });
        }

        for (cert_path, key_path) in acme {
            let refused = |problem| TlsError::Certificate {
                cert: cert_path.clone(),
                problem,
            };
            let chain = cert::read_chain(&cert_path).map_err(refused)?;
            let key = cert::read_key(&key_path).map_err(refused)?;
            loaded.push(Loaded {
                chain,
                key,
                names: Vec::new(),
                default: false,
                cert_path,
            });
        }

        let mut entries = Vec::new();
        let mut defaults = Vec::new();
        for Loaded {
            chain,
            key,
            names,
            default,
            cert_path,
        } in loaded
        {
            let source = cert_path.display().to_string();
            let refused = |problem: cert::Problem| TlsError::Certificate {
                cert: cert_path.clone(),
                problem,
            };
            // Every certificate of the file parses, as `check` requires.
            let mut parsed = Vec::new();
            for (i, der) in chain.iter().enumerate() {
                parsed.push(cert::parse(der.as_ref()).map_err(|e| {
                    refused(cert::Problem::CertificateUnparsable {
                        index: i + 1,
                        error: e.to_string(),
                    })
                })?);
            }
            let info = parsed.swap_remove(0);
            // Before the key is loaded: aws-lc-rs refuses such keys with a
            // message that does not say why.
            if let Some(p) = cert::leaf_key_problem(&info) {
                return Err(refused(p));
            }
            let key_kind = cert::private_key_kind(&key);
            let certified = CertifiedKey::from_der(chain, key, &provider)
                .map_err(|e| refused(describe_key_error(&e, key_kind.as_ref())))?;
            let preference = match certified.key.algorithm() {
                SignatureAlgorithm::ECDSA => 0,
                SignatureAlgorithm::ED25519 => 1,
                SignatureAlgorithm::RSA => 2,
                _ => 3,
            };
            let certified = Arc::new(certified);
            let mut config = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)
                .map_err(|e| TlsError::Config(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(Fixed(certified.clone())));
            config.ticketer = ticketer.clone();
            config.session_storage = cache.clone();
            server_policy(&mut config);
            let names = if names.is_empty() {
                info.sni_names()
            } else {
                names.iter().map(|n| n.to_ascii_lowercase()).collect()
            };
            if default {
                defaults.push(entries.len());
            }
            entries.push(CertEntry {
                names,
                key_type: info.key.name(),
                self_signed: generated || info.self_issued(),
                subject: info.subject.clone(),
                source,
                not_after: info.not_after,
                leaf: info,
                certified,
                config: Arc::new(config),
                preference,
            });
        }
        if defaults.is_empty() {
            // No certificate marked default: the first one, and any twin of it
            // with the same names (the usual ECDSA + RSA pair).
            let first = entries[0].names.clone();
            defaults = (0..entries.len())
                .filter(|i| entries[*i].names == first)
                .collect();
        }
        let tls12_suites = |prefix: &str| -> Vec<u16> {
            provider
                .cipher_suites
                .iter()
                .filter(|s| format!("{:?}", s.suite()).starts_with(prefix))
                .map(|s| u16::from(s.suite()))
                .collect()
        };
        let offer = Offer {
            ecdsa12: tls12_suites("TLS_ECDHE_ECDSA_"),
            rsa12: tls12_suites("TLS_ECDHE_RSA_"),
            versions: versions.iter().map(|v| u16::from(v.version)).collect(),
            suites: provider
                .cipher_suites
                .iter()
                .map(|s| u16::from(s.suite()))
                .collect(),
            groups: provider
                .kx_groups
                .iter()
                .map(|g| u16::from(g.name()))
                .collect(),
        };
        Ok(Some(TlsFront {
            entries,
            defaults,
            handshake_timeout: tls.handshake_timeout,
            self_signed: generated,
            offer,
        }))
    }

    pub fn entries(&self) -> &[CertEntry] {
        &self.entries
    }

    /// Logs a warning for each certificate in service that is expired, not
    /// yet valid or expires within [`limits::CERT_EXPIRY_WARNING`], in the
    /// words of `check` (`expired`, `not_yet_valid`, `expires_soon`); returns
    /// how many. Called at start and after every reload.
    pub fn warn_expiry(&self, now: i64) -> usize {
        let mut warned = 0;
        for e in &self.entries {
            let judged = e.validity(now);
            let not_after = cert::date(e.not_after);
            let (source, subject, days_left) = (&e.source, &e.subject, judged.days_left);
            let served = "still served (opportunistic senders get encryption; senders that \
                          verify refuse it)";
            match judged.validity {
                cert::Validity::Valid => continue,
                cert::Validity::ExpiresSoon => tracing::warn!(
                    %source, %subject, %not_after, days_left,
                    "{}: renew it", judged.message
                ),
                _ => tracing::warn!(
                    %source, %subject, %not_after, days_left,
                    "{}: {served}; renew it", judged.message
                ),
            }
            warned += 1;
        }
        warned
    }

    /// Picks the certificate for a client: by SNI (exact, then wildcard),
    /// else the defaults; among those, the first kind the client can verify,
    /// ECDSA before RSA.
    pub fn select(
        &self,
        sni: Option<&str>,
        hello: Option<&clienthello::ClientHello>,
    ) -> &CertEntry {
        let mut pool: Vec<usize> = Vec::new();
        if let Some(sni) = sni {
            pool = (0..self.entries.len())
                .filter(|i| self.entries[*i].names.iter().any(|n| n == sni))
                .collect();
            if pool.is_empty() {
                pool = (0..self.entries.len())
                    .filter(|i| {
                        self.entries[*i]
                            .names
                            .iter()
                            .any(|n| cert::wildcard_match(n, sni))
                    })
                    .collect();
            }
        }
        if pool.is_empty() {
            pool = self.defaults.clone();
        }
        let schemes: Vec<SignatureScheme> = hello
            .map(|h| {
                h.signature_schemes
                    .iter()
                    .map(|s| SignatureScheme::from(*s))
                    .collect()
            })
            .unwrap_or_default();
        let usable = pool
            .iter()
            .filter(|i| {
                let entry = &self.entries[**i];
                entry.certified.key.choose_scheme(&schemes).is_some()
                    && hello.is_none_or(|h| self.suits(entry, h))
            })
            .min_by_key(|i| self.entries[**i].preference);
        &self.entries[*usable.unwrap_or(&pool[0])]
    }

    /// Whether a handshake with this certificate can find a suite: any TLS 1.3
    /// suite does, a TLS 1.2 client needs an ECDHE suite of the certificate's
    /// own kind (an ECDHE-RSA-only client cannot use an ECDSA certificate even
    /// though it lists ECDSA signature schemes, as OpenSSL clients do).
    fn suits(&self, entry: &CertEntry, hello: &clienthello::ClientHello) -> bool {
        if hello.offers_tls13() && self.offer.versions.contains(&0x0304) {
            return true;
        }
        let kind = match entry.certified.key.algorithm() {
            SignatureAlgorithm::ECDSA => &self.offer.ecdsa12,
            SignatureAlgorithm::RSA => &self.offer.rsa12,
            _ => return true,
        };
        hello.cipher_suites.iter().any(|s| kind.contains(s))
    }

    /// Runs the server handshake on `stream`, reading the ClientHello first,
    /// and says what came of it (the session writes the record). The costly
    /// step (the server's answer to the hello: key exchange, signature) waits
    /// for one of `turns`, see [`HandshakeTurns`].
    pub async fn handshake<S>(&self, mut stream: S, turns: &HandshakeTurns) -> Handshake<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        let mut buf = BytesMut::with_capacity(2048);
        let ended = |served: Option<Served>, offer, result| Handshake {
            served,
            offer,
            elapsed: started.elapsed(),
            result,
        };
        let failed = |reason, detail: String| {
            Err(Box::new(Failed {
                reason,
                detail,
                hello: None,
            }))
        };

        // 1. The ClientHello, read by tlsfront itself; the reader takes in
        // each record once, however the hello is cut.
        let mut reader = clienthello::HelloReader::new(limits::MAX_HELLO_RECORDS);
        let peeked = loop {
            match reader.peek(&buf) {
                Peek::NeedMore if buf.len() < limits::MAX_CLIENT_HELLO => {}
                Peek::NeedMore => break Peek::Malformed,
                Peek::TooFragmented => {
                    // Refused here, or rustls would take in the rest; with the
                    // alert it sends for a hello it cannot serve.
                    let alert = [21, 3, 3, 0, 2, 2, 40]; // fatal handshake_failure
                    let _ = tokio::time::timeout_at(deadline, stream.write_all(&alert)).await;
                    let detail = format!(
                        "ClientHello incomplete after {} TLS records ({} bytes)",
                        limits::MAX_HELLO_RECORDS,
                        buf.len()
                    );
                    return ended(
                        None,
                        None,
                        failed(HandshakeFailure::ClientHelloTooFragmented, detail),
                    );
                }
                other => break other,
            }
            buf.reserve(2048);
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
                Err(_) => {
                    let detail =
                        format!("no complete ClientHello after {:?}", self.handshake_timeout);
                    return ended(None, None, failed(HandshakeFailure::Timeout, detail));
                }
                Ok(Ok(0)) => {
                    let reason = if buf.is_empty() {
                        HandshakeFailure::ClientClosedBeforeHello
                    } else {
                        HandshakeFailure::ClientClosed
                    };
                    let detail =
                        format!("connection closed after {} bytes of handshake", buf.len());
                    return ended(None, None, failed(reason, detail));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return ended(None, None, failed(HandshakeFailure::IoError, e.to_string()));
                }
            }
        };
        // Its copy of the hello is not kept through the handshake.
        drop(reader);
        let (hello, precheck) = match peeked {
            Peek::Hello(h) => {
                let mismatch = self.offer.mismatch(&h);
                (Some(h), mismatch)
            }
            Peek::NotTls => (None, Some(HandshakeFailure::NotTls)),
            Peek::Sslv2 => (None, Some(HandshakeFailure::Sslv2Hello)),
            // (NeedMore and TooFragmented do not leave the loop.)
            Peek::Malformed | Peek::NeedMore | Peek::TooFragmented => {
                (None, Some(HandshakeFailure::MalformedClientHello))
            }
        };
        let sni = hello.as_ref().and_then(|h| h.sni.clone());
        let entry = self.select(sni.as_deref(), hello.as_ref());
        let served = Served {
            sni,
            cert_subject: entry.subject.clone(),
            cert_key_type: entry.key_type.clone(),
            self_signed: entry.self_signed,
        };
        // The short offer goes into every record; the full lists only into
        // a failure's, where they explain it.
        let offer = hello.as_ref().map(ClientOffer::of);
        let summary = || -> Option<HelloSummary> { hello.as_ref().map(|h| h.summary()) };

        // 2. rustls does the handshake on the replayed hello, even for input
        // already known to be bad, so the client gets a proper alert.
        let acceptor = TlsAcceptor::from(entry.config.clone());
        // Corked: the session tickets wait for the first reply (see `corked`).
        let prefixed = Prefixed::new(buf.freeze(), stream).corked();
        let mut accepting = std::pin::pin!(tokio::time::timeout_at(
            deadline,
            acceptor.accept(prefixed).into_fallible()
        ));
        // The first poll answers the replayed hello: the costly part.
        let first = turns
            .take(std::future::poll_fn(|cx| {
                std::task::Poll::Ready(accepting.as_mut().poll(cx))
            }))
            .await;
        let accepted = match first {
            std::task::Poll::Ready(done) => done,
            std::task::Poll::Pending => accepting.await,
        };
        let result = match accepted {
            Ok(Ok(mut tls)) => {
                // TLS 1.3: what is held are the session tickets, which no
                // client waits for: they leave with the first reply. (A TLS
                // 1.2 client waits for the server's last flight.)
                let tls13 =
                    tls.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
                tls.get_mut().0.uncork(tls13);
                let negotiated = Negotiated::of(tls.get_ref().1);
                Ok((tls, negotiated))
            }
            Ok(Err((e, mut io))) => {
                // The alert rustls wrote for the failure is still held.
                io.uncork(false);
                let _ = tokio::time::timeout(limits::CLIENT_SHUTDOWN_TIMEOUT, io.flush()).await;
                Err(Box::new(Failed {
                    reason: precheck.unwrap_or_else(|| HandshakeFailure::from_io(&e)),
                    detail: e.to_string(),
                    hello: summary(),
                }))
            }
            Err(_) => Err(Box::new(Failed {
                reason: HandshakeFailure::Timeout,
                detail: format!("handshake not finished after {:?}", self.handshake_timeout),
                hello: summary(),
            })),
        };
        ended(Some(served), offer, result)
    }
}

/// Turns at the costly step of a handshake: one per worker thread at a time,
/// and a turn is given back only after every other task with work ready has
/// run (the next poll of the I/O driver). So past saturation a flood of new
/// handshakes gets one each per round of the scheduler, and the sessions
/// already under way still get their steps in each round. A turn is never
/// held across a wait for the network, so a slow client cannot keep one.
///
/// The listeners ask [`HandshakeTurns::room`] before each accept: while
/// `limits::HANDSHAKES_WAITING` hellos per worker wait for a turn, no new
/// connection is taken (it waits in the kernel's listen queue), so tlsfront
/// accepts no faster than it can answer hellos.
#[derive(Debug)]
pub struct HandshakeTurns {
    turns: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    max_waiting: usize,
    room: tokio::sync::Notify,
}

impl HandshakeTurns {
    pub fn new(workers: usize) -> HandshakeTurns {
        let workers = workers.max(1);
        HandshakeTurns {
            turns: tokio::sync::Semaphore::new(workers),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            max_waiting: workers * limits::HANDSHAKES_WAITING,
            room: tokio::sync::Notify::new(),
        }
    }

    /// Runs `step` in a turn (waiting, first come first served, for one).
    pub async fn take<T>(&self, step: impl Future<Output = T>) -> T {
        use std::sync::atomic::Ordering;
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let turn = self.turns.acquire().await;
        if self.waiting.fetch_sub(1, Ordering::SeqCst) <= self.max_waiting {
            self.room.notify_waiters();
        }
        let out = step.await;
        tokio::task::yield_now().await;
        drop(turn);
        out
    }

    /// Returns once fewer than the most allowed hellos wait for a turn.
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.waiting.load(std::sync::atomic::Ordering::SeqCst) < self.max_waiting {
                return;
            }
            notified.await;
        }
    }
}

/// What a handshake came to: handed back to the session, which writes it
/// into its record.
pub struct Handshake<S> {
    /// What tlsfront served (None when no usable ClientHello came).
    pub served: Option<Served>,
    /// What the client offered, in short, whatever came of it (None when no
    /// usable ClientHello came).
    pub offer: Option<ClientOffer>,
    pub elapsed: Duration,
    /// Boxed: a failure carries the ClientHello summary.
    pub result: Result<(TlsStream<Prefixed<S>>, Negotiated), Box<Failed>>,
}

/// The certificate chosen for a ClientHello.
#[derive(Debug, Clone)]
pub struct Served {
    pub sni: Option<String>,
    pub cert_subject: String,
    pub cert_key_type: String,
    pub self_signed: bool,
}

/// What an established TLS session uses, by stable names.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub version: Option<String>,
    pub suite: Option<String>,
    pub group: Option<String>,
    pub resumed: Option<bool>,
}

impl Negotiated {
    pub fn of<D>(conn: &rustls::ConnectionCommon<D>) -> Negotiated {
        Negotiated {
            version: conn
                .protocol_version()
                .map(|v| clienthello::version_name(u16::from(v))),
            suite: conn
                .negotiated_cipher_suite()
                .map(|s| clienthello::suite_name(u16::from(s.suite()))),
            group: conn
                .negotiated_key_exchange_group()
                .map(|g| clienthello::group_name(u16::from(g.name()))),
            resumed: conn
                .handshake_kind()
                .map(|k| k == rustls::HandshakeKind::Resumed),
        }
    }
}

/// A failed handshake: why, rustls' words for it, and what the client offered.
#[derive(Debug, Clone)]
pub struct Failed {
    pub reason: HandshakeFailure,
    pub detail: String,
    pub hello: Option<HelloSummary>,
}

/// rustls' refusal of a key, in `check`'s words (cert::Problem).
fn describe_key_error(e: &rustls::Error, kind: Option<&KeyKind>) -> cert::Problem {
    match (e, kind) {
        (rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch), _) => {
            cert::Problem::KeyMismatch
        }
        (_, Some(KeyKind::Rsa(bits))) if *bits < limits::MIN_RSA_BITS => {
            cert::Problem::RsaTooSmall(*bits)
        }
        (other, _) => cert::Problem::KeyUnusable(other.to_string()),
    }
}

/// An ECDSA P-256 certificate for all of `names`, made in memory.
pub fn self_signed(
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let err = |e: rcgen::Error| {
        TlsError::Config(format!("cannot generate a self-signed certificate: {e}"))
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(err)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    let cert = params.self_signed(&key).map_err(err)?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok((vec![cert.der().clone()], key_der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_judged_against_the_warning_window() {
        let settings = crate::config::test_settings();
        let mut front = TlsFront::build(&settings).unwrap().unwrap();
        let end = front.entries[0].not_after;
        let window = limits::CERT_EXPIRY_WARNING.as_secs() as i64;
        let e = &front.entries[0];
        let v = |now| e.validity(now).validity;
        assert_eq!(v(end - window), cert::Validity::Valid);
        assert_eq!(v(end - window + 1), cert::Validity::ExpiresSoon);
        assert_eq!(e.validity(end - window + 1).days_left, 20);
        assert_eq!(v(end), cert::Validity::ExpiresSoon);
        assert_eq!(v(end + 1), cert::Validity::Expired);
        assert!(
            e.validity(end + 86_400)
                .message
                .starts_with("the leaf (CN=mx.example.test) expired on "),
            "{}",
            e.validity(end + 86_400).message
        );
        assert_eq!(front.warn_expiry(end - window), 0);
        front.entries[0].leaf.not_after = end - 2 * window;
        assert_eq!(front.warn_expiry(end - window), 1);
    }

    #[test]
    fn default_order_is_aes128_then_aes256_then_chacha() {
        let names: Vec<String> = default_suites()
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            names,
            [
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            ]
        );
    }

    /// A client that prefers AES-256 (rustls' and OpenSSL's order) gets
    /// tlsfront's first choice, and one ticket.
    #[test]
    fn handshake_follows_our_order_and_sends_one_ticket() {
        let front = TlsFront::build(&crate::config::test_settings())
            .unwrap()
            .unwrap();
        let entry = &front.entries[0];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(entry.certified.cert[0].clone()).unwrap();
        let client =
            rustls::ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("mx.example.test").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(entry.config.clone()).unwrap();
        let mut buf = Vec::new();
        for _ in 0..10 {
            buf.clear();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets().unwrap();
            buf.clear();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets().unwrap();
        }
        assert!(!c.is_handshaking() && !s.is_handshaking());
        assert_eq!(
            s.negotiated_cipher_suite().unwrap().suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(c.tls13_tickets_received() as usize, TLS13_TICKETS);
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(cert::wildcard_match("*.example.com", "mx.example.com"));
    }

    #[test]
    fn mismatch_explains_by_what_the_client_offered() {
        let offer = Offer {
            versions: vec![0x0303, 0x0304],
            suites: vec![0x1301, 0xc02b],
            groups: vec![0x001d, 0x0017],
            ..Offer::default()
        };
        let hello = |versions: &[u16], suites: &[u16], groups: &[u16]| clienthello::ClientHello {
            versions: versions.to_vec(),
            cipher_suites: suites.to_vec(),
            groups: groups.to_vec(),
            ..Default::default()
        };
        assert_eq!(
            offer.mismatch(&hello(&[0x0301], &[0x002f], &[])),
            Some(HandshakeFailure::ClientTlsVersionTooOld)
        );
        assert_eq!(
            offer.mismatch(&hello(&[0x0305], &[0x1301], &[])),
            Some(HandshakeFailure::NoSharedVersion)
        );
        assert_eq!(
            offer.mismatch(&hello(&[0x0303], &[0x002f, 0x0033], &[0x0017])),
            Some(HandshakeFailure::NoSharedCipherSuite)
        );
        assert_eq!(
            offer.mismatch(&hello(&[0x0304], &[0x1301], &[0x0100])),
            Some(HandshakeFailure::NoSharedGroup)
        );
        assert_eq!(
            offer.mismatch(&hello(&[0x0304], &[0x1301], &[0x001d])),
            None
        );
    }
}

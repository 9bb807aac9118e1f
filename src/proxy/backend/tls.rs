//! Optional TLS on the hop to the backend, for backends whose own TLS rustls
//! accepts: STARTTLS or implicit TLS, verified by a CA file, by a pinned
//! certificate fingerprint, or not at all (opportunistic: encrypted, not
//! authenticated). Once TLS is configured the hop never falls back to plaintext.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::{BackendSettings, BackendTls, BackendVerify, ConfigError};

pub fn sha256(der: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Why the backend hop's client configuration cannot be built.
#[derive(Debug, Error)]
pub enum ClientConfigError {
    /// `backend.tls_ca_file` cannot be read or holds no CA certificate.
    #[error("{}: {message}", path.display())]
    CaFile { path: PathBuf, message: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

impl ClientConfigError {
    /// The config key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            ClientConfigError::CaFile { .. } => "backend.tls_ca_file",
            ClientConfigError::Rustls(_) => "backend.tls",
        }
    }

    /// As a configuration error naming `file` and the key: the loaders
    /// report it with the rest of the configuration, before anything starts.
    pub fn in_config(&self, file: &str) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_string(),
            key: self.key().to_string(),
            message: self.to_string(),
        }
    }
}

/// Builds the client configuration for the backend hop (reading the CA
/// file, if one is configured); `None` when the hop has no TLS.
pub fn client_config(
    settings: &BackendSettings,
) -> Result<Option<Arc<ClientConfig>>, ClientConfigError> {
    if settings.tls == BackendTls::None {
        return Ok(None);
    }
    let provider = Arc::new(crate::proxy::hkdf::provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)?;
    let config = match &settings.tls_verify {
        BackendVerify::CaFile(path) => {
            let ca_error = |message: String| ClientConfigError::CaFile {
                path: path.clone(),
                message,
            };
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
            for cert in certs {
                let cert = cert.map_err(|e| ca_error(e.to_string()))?;
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ca_error("no CA certificate found".into()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        BackendVerify::Fingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier::new(Pinned(Some(*pin)), provider)))
            .with_no_client_auth(),
        BackendVerify::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier::new(Pinned(None), provider)))
            .with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// A verifier that accepts any certificate but still checks the handshake
/// signatures (the peer holds the key): opportunistic TLS, and load tests.
pub fn unauthenticated() -> Arc<dyn ServerCertVerifier> {
    Arc::new(Verifier::new(
        Pinned(None),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    ))
}

/// The certificate chain a server presented, as rustls hands it over.
pub struct Presented<'a> {
    pub end_entity: &'a CertificateDer<'a>,
    pub intermediates: &'a [CertificateDer<'a>],
    pub server_name: &'a ServerName<'a>,
    pub ocsp_response: &'a [u8],
    pub now: UnixTime,
}

/// What a [`Verifier`] makes of the server's certificate chain.
pub trait CertPolicy: std::fmt::Debug + Send + Sync {
    fn verify_cert(&self, chain: &Presented<'_>) -> Result<ServerCertVerified, rustls::Error>;
}

/// The one custom verifier: the certificate as `policy` says, the handshake
/// signatures always checked for real with the provider's algorithms, so
/// whatever the policy accepts, the peer holds the certificate's key.
#[derive(Debug)]
pub struct Verifier<P> {
    policy: P,
    provider: Arc<CryptoProvider>,
}

impl<P: CertPolicy> Verifier<P> {
    pub fn new(policy: P, provider: Arc<CryptoProvider>) -> Self {
        Verifier { policy, provider }
    }
}

impl<P: CertPolicy> ServerCertVerifier for Verifier<P> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.policy.verify_cert(&Presented {
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Accepts the leaf whose SHA-256 is pinned (or any, if none is).
#[derive(Debug)]
struct Pinned(Option<[u8; 32]>);

impl CertPolicy for Pinned {
    fn verify_cert(&self, chain: &Presented<'_>) -> Result<ServerCertVerified, rustls::Error> {
        match self.0 {
            Some(pin) if sha256(chain.end_entity.as_ref()) != pin => {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }
}

/// The backend connection: plaintext, or TLS once negotiated.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the connection is being upgraded.
    Upgrading,
}

/// What [`Stream::waiting`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    Nothing,
    Data,
    Closed,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Stream::Plain",
            Stream::Tls(_) => "Stream::Tls",
            Stream::Upgrading => "Stream::Upgrading",
        })
    }
}

impl Stream {
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            Stream::Plain(s) => s.local_addr(),
            Stream::Tls(s) => s.get_ref().0.local_addr(),
            Stream::Upgrading => Err(io::Error::new(io::ErrorKind::NotConnected, "upgrading")),
        }
    }

    /// What the backend has sent that nobody read yet, found without waiting
    /// and without trusting the reactor's readiness cache (which can lag the
    /// kernel): a `MSG_PEEK` on plain TCP; over TLS, records already in the
    /// socket are fed to rustls so session tickets are consumed and only
    /// application data counts.
    pub fn waiting(&mut self) -> io::Result<Waiting> {
        match self {
            Stream::Plain(tcp) => {
                let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
                match socket2::SockRef::from(&*tcp).peek(&mut byte) {
                    Ok(0) => Ok(Waiting::Closed),
                    Ok(_) => Ok(Waiting::Data),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Waiting::Nothing),
                    Err(e) => Err(e),
                }
            }
            Stream::Tls(tls) => {
                let (tcp, conn) = tls.get_mut();
                let sock = socket2::SockRef::from(&*tcp);
                // Bounded: the socket buffer is finite, but a peer could keep
                // it topped up; a few rounds cover tickets and a reply.
                for _ in 0..8 {
                    if !conn.wants_read() {
                        break;
                    }
                    let mut reader: &socket2::Socket = &sock;
                    match conn.read_tls(&mut reader) {
                        Ok(0) => return Ok(Waiting::Closed),
                        Ok(_) => {
                            conn.process_new_packets().map_err(io::Error::other)?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                let state = conn.process_new_packets().map_err(io::Error::other)?;
                Ok(if state.plaintext_bytes_to_read() > 0 {
                    Waiting::Data
                } else if state.peer_has_closed() {
                    Waiting::Closed
                } else {
                    Waiting::Nothing
                })
            }
            Stream::Upgrading => Err(io::Error::new(io::ErrorKind::NotConnected, "upgrading")),
        }
    }

    /// "TLSv1.3" etc. and the suite, once TLS is up.
    pub fn tls_facts(&self) -> Option<(String, String)> {
        let Stream::Tls(tls) = self else { return None };
        let (_, conn) = tls.get_ref();
        let version = crate::wire::clienthello::version_name(u16::from(conn.protocol_version()?));
        let suite = format!("{:?}", conn.negotiated_cipher_suite()?.suite());
        Some((version, suite))
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Stream::Upgrading => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "TLS upgrade in progress",
            ))),
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(extra: &str) -> BackendSettings {
        let text = format!(
            "[server]\nhostname = \"mx.test\"\n[[listener]]\naddress = [\"127.0.0.1:2525\"]\n\
             [backend]\naddress = \"127.0.0.1:10025\"\n{extra}"
        );
        let raw = crate::config::parse(&text, "t.toml").unwrap();
        crate::config::validate(raw, &Default::default(), "t.toml")
            .unwrap()
            .backend
    }

    #[test]
    fn client_config_reads_the_ca_file_only_for_tls() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let ca = |tls: &str, path: &std::path::Path| {
            backend(&format!(
                "tls = \"{tls}\"\ntls_ca_file = \"{}\"",
                path.display()
            ))
        };
        // No TLS on the hop: the CA file is not even opened.
        assert!(client_config(&ca("none", &missing)).unwrap().is_none());

        let e = client_config(&ca("starttls", &missing)).unwrap_err();
        assert_eq!(e.key(), "backend.tls_ca_file");
        assert!(
            e.in_config("t.toml").to_string().starts_with(&format!(
                "t.toml: `backend.tls_ca_file`: {}: ",
                missing.display()
            )),
            "{e}"
        );
        let no_cert = dir.path().join("no-cert.pem");
        std::fs::write(&no_cert, "not a certificate\n").unwrap();
        let e = client_config(&ca("implicit", &no_cert)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: no CA certificate found", no_cert.display())
        );

        let pinned = backend(&format!(
            "tls = \"starttls\"\ntls_fingerprint = \"{}\"",
            "ab".repeat(32)
        ));
        assert!(client_config(&pinned).unwrap().is_some());
        assert!(
            client_config(&backend("tls = \"starttls\""))
                .unwrap()
                .is_some()
        );
    }
}

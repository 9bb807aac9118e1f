//! ACME against a real CA: Debian's `pebble` (installed by integration/test-all.sh;
//! without it these tests say so and pass only when TLSFRONT_REQUIRE_PEBBLE is
//! unset), started per test on loopback ports and killed by PID. tlsfront runs
//! in process (server, daemon, ACME loop). Covered: issuance with real HTTP-01
//! validation against tlsfront's own challenge listener (pebble resolves the
//! MX name through a signed zone on loopback), renewal of short-lived
//! certificates swapped in under a live session, a failed order retried with
//! backoff and shown in the status file and metrics, a restart that reuses the
//! stored account and certificate, and the DANE rule: a key change held back
//! until the next key's TLSA record is published, then applied.

mod common;
mod zone;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tlsfront::config::{Overrides, Settings};
use tlsfront::proxy::acme::Acme;
use tlsfront::proxy::daemon::Daemon;
use tlsfront::proxy::notify::Notifier;
use tlsfront::proxy::records::RecordSink;
use tlsfront::proxy::server::Server;
use tlsfront::proxy::session::Shared;
use zone::Zone;

const MX: &str = "mx.tlsfront.test";

/// A pebble process on loopback, killed on drop.
struct Pebble {
    child: Child,
    directory: String,
    /// The CA of pebble's own HTTPS certificate (`acme.ca_file`).
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

struct PebbleOptions<'a> {
    /// Where pebble's VA sends HTTP-01 requests (tlsfront's challenge port).
    http_port: u16,
    /// Seconds an issued certificate is valid.
    validity: u64,
    /// Skip validation (PEBBLE_VA_ALWAYS_VALID) when the test is not about it.
    always_valid: bool,
    /// The DNS server pebble's VA resolves names with.
    dns: Option<SocketAddr>,
    blocked: &'a [&'a str],
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Pebble {
    /// `None` when pebble is not installed and the tests may skip.
    fn start(o: PebbleOptions<'_>) -> Option<Pebble> {
        let installed = Command::new("pebble")
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !installed {
            assert!(
                std::env::var_os("TLSFRONT_REQUIRE_PEBBLE").is_none(),
                "TLSFRONT_REQUIRE_PEBBLE is set but pebble is not installed (apt-get install pebble)"
            );
            eprintln!("SKIPPED: pebble is not installed (apt-get install pebble)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // pebble's own HTTPS certificate, from a CA the ACME client trusts.
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.is_ca = IsCa::NoCa;
        let cert = params.signed_by(&key, &ca).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let port = free_port();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{}", free_port()),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": o.http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "domainBlocklist": o.blocked,
                "certificateValidityPeriod": o.validity,
            }
        });
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(&config_path)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .env(
                "PEBBLE_VA_ALWAYS_VALID",
                if o.always_valid { "1" } else { "0" },
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(dns) = o.dns {
            cmd.arg("-dnsserver").arg(dns.to_string());
        }
        let child = cmd.spawn().expect("pebble starts");
        let pebble = Pebble {
            child,
            directory: format!("https://127.0.0.1:{port}/dir"),
            ca: ca_path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pebble did not listen: {}",
                pebble.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(pebble)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tlsfront in process: the server, its daemon and the ACME loop, serving.
struct Front {
    shared: Arc<Shared>,
    starttls: SocketAddr,
    config: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    /// Binds with `config`; `acme` is the ACME loop already bound (its
    /// challenge port known before pebble starts).
    async fn bind(config: &Path) -> (Server, Acme) {
        let settings = Settings::load(config, true, &Overrides::default()).unwrap();
        let server = Server::bind(settings.clone(), RecordSink::disabled())
            .await
            .unwrap();
        let acme = Acme::bind(
            &settings,
            tlsfront::proxy::daemon::order_observer(&server.shared),
        )
        .unwrap()
        .expect("[acme] configured");
        (server, acme)
    }

    fn serve(config: &Path, server: Server, acme: Acme) -> Front {
        let path = config.to_path_buf();
        let daemon = Daemon::new(
            server.shared.clone(),
            Notifier::disabled(),
            Box::new(move || Settings::load(&path, true, &Overrides::default())),
        );
        daemon.attach_acme(acme);
        let shared = server.shared.clone();
        let starttls = server.local_addrs()[0].0;
        let task = tokio::spawn(async move { daemon.serve(server).await });
        Front {
            shared,
            starttls,
            config: config.to_path_buf(),
            task,
        }
    }

    /// The certificate in service for `MX` (subject, notAfter, key type).
    fn served(&self) -> Option<(String, i64, bool)> {
        let front = self.shared.tls()?;
        let e = front.select(Some(MX), None);
        Some((e.subject.clone(), e.not_after, e.self_signed))
    }

    /// Waits (bounded) until `done` holds for the certificate in service.
    async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&(String, i64, bool)) -> bool,
    ) -> (String, i64, bool) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.served().filter(|s| done(s)) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; serving {:?}; status {}",
                self.served(),
                std::fs::read_to_string(state(&self.config).join("acme/status.json"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.shared.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// The state directory a test config names (beside the config file).
fn state(config: &Path) -> PathBuf {
    config.parent().unwrap().join("state")
}

/// A config with `[acme]` (and `extra` sections) beside a fake backend.
fn write_config(dir: &Path, backend: SocketAddr, acme: &str, extra: &str) -> PathBuf {
    write_config_on(dir, backend, 0, acme, extra)
}

/// The same, with the challenge listener on `challenge` (0: any port).
fn write_config_on(
    dir: &Path,
    backend: SocketAddr,
    challenge: u16,
    acme: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join("tlsfront.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhostname = \"{MX}\"\nshutdown_grace = \"1s\"\n\
             [[listener]]\naddress = [\"127.0.0.1:0\"]\n\
             [backend]\naddress = \"{backend}\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [acme]\nstate_directory = \"{}\"\nchallenge_listen = [\"127.0.0.1:{challenge}\"]\nretry_initial = \"1s\"\n{acme}\n{extra}",
            dir.join("state").display()
        ),
    )
    .unwrap();
    path
}

/// A client config that accepts any certificate (the tests judge what is
/// served themselves) and records the leaf.
fn any_cert() -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct Any;
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Any))
            .with_no_client_auth(),
    )
}

fn status(config: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(state(config).join("acme/status.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

fn spki_of_served(front: &Front) -> Vec<u8> {
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_file_iter(
            state(&front.config).join("acme/ecdsa_p256/cert.pem"),
        )
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tlsfront::cert::spki(chain[0].as_ref()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_with_real_http01_then_renews_under_a_live_session() {
    let dir = tempfile::tempdir().unwrap();
    let mta = Mta::start(MtaScript::default()).await;
    let zone = Zone::start("tlsfront.test.", true).await;
    zone.a(MX, "127.0.0.1").await;
    let challenge_port = free_port();
    let Some(pebble) = Pebble::start(PebbleOptions {
        http_port: challenge_port,
        validity: 24,
        always_valid: false,
        dns: Some(zone.addr),
        blocked: &[],
    }) else {
        return;
    };
    let acme = format!(
        "directory = \"{}\"\nca_file = \"{}\"\n",
        pebble.directory,
        pebble.ca.display()
    );
    let config = write_config_on(dir.path(), mta.addr, challenge_port, &acme, "");
    let (server, acme) = Front::bind(&config).await;
    assert_eq!(acme.challenge_addrs()[0].port(), challenge_port);
    let metrics = server.metrics_addr().unwrap();
    let front = Front::serve(&config, server, acme);
    // Until the CA answers, a self-signed certificate keeps STARTTLS up.
    let first = front
        .wait_for("first certificate", Duration::from_secs(60), |s| !s.2)
        .await;
    assert!(
        first.0.is_empty() || !first.0.contains(MX) || !first.2,
        "{first:?}"
    );
    let log = pebble.log();
    assert!(
        !log.contains("PEBBLE_VA_ALWAYS_VALID is enabled"),
        "validation must be real here"
    );
    // A sender gets the CA's certificate, and it stays connected across the renewal.
    let mut client = Client::greeted(front.starttls)
        .await
        .starttls(any_cert(), MX)
        .await;
    let key_before = spki_of_served(&front);
    let renewed = front
        .wait_for("renewal", Duration::from_secs(60), |s| {
            s.1 != first.1 && !s.2
        })
        .await;
    assert!(renewed.1 > first.1, "{renewed:?} after {first:?}");
    client.send("NOOP").await;
    client.expect(250).await;
    let reply = client
        .mail("a@example.test", "b@example.test", &sample_message("r1"))
        .await;
    assert_eq!(reply.code, 250, "{reply:?}");
    // Without [dane], each renewal moves to the pre-generated next key.
    assert_ne!(spki_of_served(&front), key_before);
    let (code, body) = scrape(metrics, "/metrics").await;
    assert_eq!(code, 200);
    let issued = sample(
        &body,
        "tlsfront_acme_orders_total{key=\"ecdsa_p256\",result=\"issued\"}",
    )
    .unwrap_or(0.0);
    assert!(issued >= 2.0, "{body}");
    let s = status(&config);
    assert_eq!(s["ecdsa_p256"]["failures"], 0, "{s}");
    assert!(s["ecdsa_p256"]["last_error"].is_null(), "{s}");
    front.stop().await;
    drop(pebble);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_order_is_retried_with_backoff_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let mta = Mta::start(MtaScript::default()).await;
    let Some(pebble) = Pebble::start(PebbleOptions {
        http_port: free_port(),
        validity: 3600,
        always_valid: true,
        dns: None,
        blocked: &["blocked.tlsfront.test"],
    }) else {
        return;
    };
    let acme = format!(
        "directory = \"{}\"\nca_file = \"{}\"\nnames = [\"{MX}\", \"blocked.tlsfront.test\"]\n",
        pebble.directory,
        pebble.ca.display()
    );
    let config = write_config(dir.path(), mta.addr, &acme, "");
    let (server, acme) = Front::bind(&config).await;
    let metrics = server.metrics_addr().unwrap();
    let front = Front::serve(&config, server, acme);
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = status(&config);
        if s["ecdsa_p256"]["failures"].as_u64().unwrap_or(0) >= 2 {
            break s;
        }
        assert!(Instant::now() < deadline, "no second failure: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = s["ecdsa_p256"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("blocked.tlsfront.test") || error.contains("rejectedIdentifier"),
        "{error}"
    );
    // Backoff: the second try came at least a second after the first.
    assert!(
        s["ecdsa_p256"]["next_attempt"].as_i64().unwrap()
            > s["ecdsa_p256"]["last_attempt"].as_i64().unwrap()
    );
    // The generated certificate stays in service; sessions go on.
    assert!(front.served().unwrap().2);
    let mut c = Client::greeted(front.starttls)
        .await
        .starttls(any_cert(), MX)
        .await;
    c.send("QUIT").await;
    c.expect(221).await;
    // `check` shows it: no certificate yet and the orders failing is an error.
    let settings = Settings::load(&config, true, &Overrides::default()).unwrap();
    let report = tlsfront::tools::check::run(
        &settings,
        "t.toml",
        tlsfront::tools::check::Options::default(),
    )
    .await;
    let f = report
        .findings
        .iter()
        .find(|f| f.code == "acme_renewal_failing")
        .unwrap_or_else(|| panic!("{}", report.render()));
    assert_eq!(f.level, tlsfront::tools::check::Level::Error);
    assert!(
        f.message.contains("blocked.tlsfront.test") || f.message.contains("rejectedIdentifier")
    );
    assert!(!report.ok);
    let (_, body) = scrape(metrics, "/metrics").await;
    let failed = sample(
        &body,
        "tlsfront_acme_orders_total{key=\"ecdsa_p256\",result=\"failed\"}",
    )
    .unwrap_or(0.0);
    assert!(failed >= 2.0, "{body}");
    front.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reuses_the_stored_account_and_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mta = Mta::start(MtaScript::default()).await;
    let Some(pebble) = Pebble::start(PebbleOptions {
        http_port: free_port(),
        validity: 3600,
        always_valid: true,
        dns: None,
        blocked: &[],
    }) else {
        return;
    };
    let acme = format!(
        "directory = \"{}\"\nca_file = \"{}\"\nkey_types = [\"ecdsa_p256\", \"rsa_2048\"]\n",
        pebble.directory,
        pebble.ca.display()
    );
    let config = write_config(dir.path(), mta.addr, &acme, "");
    let (server, acme) = Front::bind(&config).await;
    let front = Front::serve(&config, server, acme);
    let first = front
        .wait_for("first certificate", Duration::from_secs(60), |s| !s.2)
        .await;
    // Both key types are issued and served.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state(&config).join("acme/rsa_2048/cert.pem").exists() {
        assert!(
            Instant::now() < deadline,
            "no RSA certificate: {}",
            status(&config)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kinds: Vec<String> = front
        .shared
        .tls()
        .unwrap()
        .entries()
        .iter()
        .map(|e| e.key_type.clone())
        .collect();
    assert!(
        kinds.contains(&"ecdsa_p256".to_string()) && kinds.contains(&"rsa_2048".to_string()),
        "{kinds:?}"
    );
    front.stop().await;
    let accounts: Vec<_> = std::fs::read_dir(state(&config).join("acme"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("account-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(accounts.len(), 1);
    let cert_file = state(&config).join("acme/ecdsa_p256/cert.pem");
    let cert_before = std::fs::read_to_string(&cert_file).unwrap();
    let status_before = status(&config);

    // Restarted: the stored certificate is in service from the first
    // handshake, and nothing is ordered.
    let (server, acme) = Front::bind(&config).await;
    let front = Front::serve(&config, server, acme);
    let again = front.served().unwrap();
    assert_eq!(again, first);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(std::fs::read_to_string(&cert_file).unwrap(), cert_before);
    assert_eq!(status(&config), status_before);
    front.stop().await;

    // A name added to the configuration orders a new certificate with the
    // same account (no second account file, the same account URL).
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "key_types",
            "names = [\"mx.tlsfront.test\", \"mx2.tlsfront.test\"]\nkey_types",
        ),
    )
    .unwrap();
    let (server, acme) = Front::bind(&config).await;
    let front = Front::serve(&config, server, acme);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&cert_file).unwrap() == cert_before {
        assert!(
            Instant::now() < deadline,
            "no new certificate: {}",
            status(&config)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accounts_after: Vec<_> = std::fs::read_dir(state(&config).join("acme"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("account-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(accounts_after, accounts);
    front
        .wait_for("certificate for mx2", Duration::from_secs(30), |s| {
            s.1 != first.1
        })
        .await;
    front.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_waits_for_its_tlsa_record_then_happens() {
    let dir = tempfile::tempdir().unwrap();
    let mta = Mta::start(MtaScript::default()).await;
    let zone = Zone::start("tlsfront.test.", true).await;
    let anchor = dir.path().join("anchor.txt");
    zone.trust_anchor(&anchor);
    let Some(pebble) = Pebble::start(PebbleOptions {
        http_port: free_port(),
        validity: 30,
        always_valid: true,
        dns: None,
        blocked: &[],
    }) else {
        return;
    };
    let acme = format!(
        "directory = \"{}\"\nca_file = \"{}\"\nrenew_before = \"20s\"\n",
        pebble.directory,
        pebble.ca.display()
    );
    let dane = format!(
        "[dane]\nresolver = \"{}\"\ntrust_anchor = \"{}\"\n",
        zone.addr,
        anchor.display()
    );
    let config = write_config(dir.path(), mta.addr, &acme, &dane);
    let (server, acme) = Front::bind(&config).await;
    let front = Front::serve(&config, server, acme);
    let first = front
        .wait_for("first certificate", Duration::from_secs(60), |s| !s.2)
        .await;
    let files = state(&config).join("acme/ecdsa_p256");
    let current = tlsfront::proxy::acme::key_record(&files.join("key.pem")).unwrap();
    let next = tlsfront::proxy::acme::key_record(&files.join("next-key.pem")).unwrap();
    assert_ne!(current, next);
    // The admin publishes the current key's record only.
    zone.tlsa(MX, 1, &current.rdata()).await;
    let key_before = spki_of_served(&front);
    assert_eq!(tlsfront::dane::Tlsa::for_key(&key_before), current);
    // The renewal (20 s before expiry) keeps the current key and says why.
    let renewed = front
        .wait_for(
            "renewal with the current key",
            Duration::from_secs(40),
            |s| s.1 != first.1,
        )
        .await;
    assert_eq!(spki_of_served(&front), key_before);
    let s = status(&config);
    let why = s["ecdsa_p256"]["key_held_back"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("not published for mx.tlsfront.test"), "{s}");

    // Now the next key's record is out (TTL 1 s: the wait is 2 s); the
    // following renewal, found due while the record is out for less than
    // that, waits the rest out (the certificate has 20 s left) and moves to it.
    zone.tlsa(MX, 1, &next.rdata()).await;
    front
        .wait_for("renewal with the next key", Duration::from_secs(40), |s| {
            s.1 != renewed.1
        })
        .await;
    let moved = tlsfront::dane::Tlsa::for_key(&spki_of_served(&front));
    assert_eq!(moved, next);
    let s = status(&config);
    assert!(s["ecdsa_p256"]["key_held_back"].is_null(), "{s}");
    // A new next key waits for its own record.
    let newer = tlsfront::proxy::acme::key_record(&files.join("next-key.pem")).unwrap();
    assert_ne!(newer, next);
    front.stop().await;
}

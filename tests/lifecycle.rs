//! The daemon's lifecycle in-process, driven by method calls instead of
//! signals: a reload applies new certificates and keeps the old ones when the
//! new ones are broken, a renewed certificate file is picked up by the
//! watch, SIGHUP's record file reopen, stop, and the systemd notifications
//! each step sends. (tests/daemon.rs runs the real binary with real signals.)

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use std::os::unix::net::UnixDatagram;
use tlsfront::config::{Overrides, Settings};
use tlsfront::proxy::daemon::{CertificateWatch, Daemon, ReloadError};
use tlsfront::proxy::notify::Notifier;
use tlsfront::proxy::records::{self, RecordSink};
use tlsfront::proxy::server::Server;

/// A configuration file with one STARTTLS listener on a free port, whose
/// certificate is `current.pem`/`current.key` in the same directory.
struct Rig {
    dir: tempfile::TempDir,
    config: PathBuf,
    notify: UnixDatagram,
    /// Datagrams read but not yet looked at.
    inbox: std::sync::Mutex<std::collections::VecDeque<String>>,
    pki: Pki,
}

impl Rig {
    fn new(backend: std::net::SocketAddr, tls: &str) -> Rig {
        let pki = Pki::new(&["mx.tlsfront.test"]);
        let dir = tempfile::tempdir().unwrap();
        install(dir.path(), &pki.ecdsa);
        let config = dir.path().join("tlsfront.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nhostname = \"mx.tlsfront.test\"\nshutdown_grace = \"1s\"\n\
                 [[listener]]\naddress = [\"127.0.0.1:0\"]\n\
                 [backend]\naddress = \"{backend}\"\n\
                 [records]\npath = \"{}\"\n\
                 [tls]\n{tls}\n\
                 [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
                dir.path().join("records.jsonl").display(),
                dir.path().join("current.pem").display(),
                dir.path().join("current.key").display()
            ),
        )
        .unwrap();
        let notify = UnixDatagram::bind(dir.path().join("notify.sock")).unwrap();
        // Read without blocking the runtime the daemon's tasks run on.
        notify.set_nonblocking(true).unwrap();
        Rig {
            dir,
            config,
            notify,
            inbox: Default::default(),
            pki,
        }
    }

    fn settings(&self) -> Settings {
        Settings::load(&self.config, true, &Overrides::default()).unwrap()
    }

    /// The server bound (not yet serving) and its daemon, notifying `notify`.
    async fn daemon(&self, records: RecordSink) -> (Server, Arc<Daemon>) {
        let server = Server::bind(self.settings(), records).await.unwrap();
        let path = self.config.clone();
        let notifier = Notifier::to_socket(&self.dir.path().join("notify.sock").to_string_lossy());
        let daemon = Daemon::new(
            server.shared.clone(),
            notifier,
            Box::new(move || Settings::load(&path, true, &Overrides::default())),
        );
        (server, daemon)
    }

    fn install(&self, pair: &(PathBuf, PathBuf)) {
        install(self.dir.path(), pair);
    }

    /// Datagrams until one contains `want` (bounded); returns it and drops
    /// the ones before it.
    async fn expect_notify(&self, want: &str) -> String {
        let mut seen = Vec::new();
        for _ in 0..1000 {
            self.receive();
            if let Some(msg) = self.take_until(want, &mut seen) {
                return msg;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {want:?} notification; got {seen:?}");
    }

    /// The first datagram in the inbox containing `want`; those before it go to `seen`.
    fn take_until(&self, want: &str, seen: &mut Vec<String>) -> Option<String> {
        let mut inbox = self.inbox.lock().unwrap();
        while let Some(msg) = inbox.pop_front() {
            if msg.contains(want) {
                return Some(msg);
            }
            seen.push(msg);
        }
        None
    }

    /// Every datagram not yet looked at, without waiting for more.
    fn pending_notifications(&self) -> Vec<String> {
        self.receive();
        self.inbox.lock().unwrap().drain(..).collect()
    }

    fn receive(&self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.notify.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.inbox.lock().unwrap().push_back(msg);
        }
    }
}

fn install(dir: &Path, pair: &(PathBuf, PathBuf)) {
    std::fs::copy(&pair.0, dir.join("current.pem")).unwrap();
    std::fs::copy(&pair.1, dir.join("current.key")).unwrap();
}

/// The subjects of the certificates new handshakes get.
fn serving(daemon: &Daemon) -> Vec<String> {
    let front = daemon.shared().tls().expect("a TLS front");
    front.entries().iter().map(|e| e.subject.clone()).collect()
}

#[tokio::test]
async fn reload_applies_new_certificates_and_keeps_the_old_on_a_broken_one() {
    let rig = Rig::new("127.0.0.1:9".parse().unwrap(), "");
    let (_server, daemon) = rig.daemon(RecordSink::disabled()).await;
    assert_eq!(serving(&daemon), ["CN=mx.tlsfront.test ecdsa"]);

    // A renewal: the next handshakes get the new certificate.
    rig.install(&rig.pki.rsa);
    daemon.reload().unwrap();
    assert_eq!(serving(&daemon), ["CN=mx.tlsfront.test rsa"]);
    assert_eq!(
        rig.pending_notifications(),
        ["RELOADING=1\nSTATUS=reloading", "READY=1\nSTATUS=serving"]
    );

    // A broken certificate: refused, the last good one stays, systemd is
    // told the reload is over all the same.
    std::fs::write(rig.dir.path().join("current.pem"), "not a certificate").unwrap();
    let err = daemon.reload().unwrap_err();
    assert!(matches!(err, ReloadError::Tls(_)), "{err}");
    assert_eq!(serving(&daemon), ["CN=mx.tlsfront.test rsa"]);
    assert_eq!(
        rig.pending_notifications(),
        ["RELOADING=1\nSTATUS=reloading", "READY=1\nSTATUS=serving"]
    );
    // In `check`'s words: its subject, then its message.
    let report = tlsfront::tools::check::run(
        &rig.settings(),
        "t.toml",
        tlsfront::tools::check::Options {
            backend: false,
            service_user: Some("root".into()),
            ..tlsfront::tools::check::Options::default()
        },
    )
    .await;
    let f = report
        .findings
        .iter()
        .find(|f| f.code == "certificate_unreadable")
        .expect("check finds the broken certificate");
    assert_eq!(err.to_string(), format!("{}: {}", f.subject, f.message));

    // A key the TLS library cannot use: the same words again.
    rig.install(&rig.pki.rsa);
    std::fs::write(rig.dir.path().join("current.key"), "not a key").unwrap();
    let err = daemon.reload().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "certificate {}: private key {}: ",
            rig.dir.path().join("current.pem").display(),
            rig.dir.path().join("current.key").display()
        )),
        "{err}"
    );
    assert_eq!(serving(&daemon), ["CN=mx.tlsfront.test rsa"]);
    let _ = rig.pending_notifications();

    // A configuration that no longer parses: the same.
    rig.install(&rig.pki.ecdsa);
    std::fs::write(&rig.config, "[server\n").unwrap();
    let err = daemon.reload().unwrap_err();
    assert!(matches!(err, ReloadError::Config(_)), "{err}");
    assert_eq!(serving(&daemon), ["CN=mx.tlsfront.test rsa"]);
}

#[tokio::test]
async fn the_watch_sees_a_certificate_file_change() {
    let rig = Rig::new("127.0.0.1:9".parse().unwrap(), "");
    let mut watch = CertificateWatch::new(&rig.settings());
    assert!(!watch.changed(), "nothing changed yet");
    // Only the key's time changes (a renewal that rewrites it in place).
    let key = std::fs::File::options()
        .write(true)
        .open(rig.dir.path().join("current.key"))
        .unwrap();
    key.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    assert!(watch.changed());
    assert!(!watch.changed(), "one change is reported once");
    std::fs::remove_file(rig.dir.path().join("current.pem")).unwrap();
    assert!(watch.changed(), "a file that went is a change");
}

#[tokio::test]
async fn renewed_certificate_files_are_reloaded_by_the_watch() {
    let rig = Rig::new("127.0.0.1:9".parse().unwrap(), "");
    let (_server, daemon) = rig.daemon(RecordSink::disabled()).await;
    let watch = tokio::spawn(
        daemon
            .clone()
            .watch_certificates(Duration::from_millis(20), Duration::ZERO),
    );
    // Let the watch take its first look before the renewal.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        rig.pending_notifications().is_empty(),
        "no change, no reload"
    );
    rig.install(&rig.pki.rsa);
    rig.expect_notify("RELOADING=1").await;
    rig.expect_notify("READY=1").await;
    assert_eq!(serving(&daemon), ["CN=mx.tlsfront.test rsa"]);

    // Stopped: the watch ends.
    daemon.stop();
    tokio::time::timeout(T, watch).await.unwrap().unwrap();
}

#[tokio::test]
async fn stop_notifies_stopping_and_the_server_returns() {
    let mta = Mta::start(MtaScript::default()).await;
    let rig = Rig::new(mta.addr, "");
    let (server, daemon) = rig.daemon(RecordSink::disabled()).await;
    let addr = server.local_addrs()[0].0;
    let serving = tokio::spawn({
        let daemon = daemon.clone();
        async move { daemon.serve(server).await }
    });
    // READY only once listening: a client is served right after it.
    rig.expect_notify("READY=1\nSTATUS=serving").await;
    let mut c = Client::greeted(addr).await;
    c.send("QUIT").await;
    c.expect(221).await;

    daemon.stop();
    rig.expect_notify("STOPPING=1").await;
    assert!(daemon.shared().shutdown.is_cancelled());
    tokio::time::timeout(T, serving).await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn status_pings_carry_the_session_count_and_the_watchdog() {
    let mta = Mta::start(MtaScript::default()).await;
    let rig = Rig::new(mta.addr, "");
    let (server, daemon) = rig.daemon(RecordSink::disabled()).await;
    let addr = server.local_addrs()[0].0;
    let running = tokio::spawn(server.run());
    let mut c = Client::greeted(addr).await;

    let watchdog = tokio::spawn(daemon.clone().pulse(Duration::from_millis(20), true));
    rig.expect_notify("WATCHDOG=1\nSTATUS=serving, 1 active sessions")
        .await;
    watchdog.abort();
    let _ = watchdog.await;
    rig.pending_notifications();

    // Without a watchdog: the status alone.
    let status = tokio::spawn(daemon.clone().pulse(Duration::from_millis(20), false));
    let msg = rig.expect_notify("STATUS=serving").await;
    assert_eq!(msg, "STATUS=serving, 1 active sessions");

    c.send("QUIT").await;
    c.expect(221).await;
    rig.expect_notify("STATUS=serving, 0 active sessions").await;

    // Stopped: the pings end.
    daemon.stop();
    tokio::time::timeout(T, status).await.unwrap().unwrap();
    tokio::time::timeout(T, running).await.unwrap().unwrap();
}

#[tokio::test]
async fn hangup_reopens_the_record_file_after_rotation() {
    let mta = Mta::start(MtaScript::default()).await;
    let rig = Rig::new(mta.addr, "");
    let path = rig.dir.path().join("records.jsonl");
    let (sink, _writer) = records::start_writer(&path).unwrap();
    let (server, daemon) = rig.daemon(sink).await;
    let addr = server.local_addrs()[0].0;
    let running = tokio::spawn(server.run());
    let session = |helo: &'static str| async move {
        let mut c = Client::greeted(addr).await;
        c.send(&format!("EHLO {helo}")).await;
        c.expect(250).await;
        c.send("QUIT").await;
        c.expect(221).await;
    };
    let lines = |path: PathBuf, want: usize| async move {
        for _ in 0..200 {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() >= want {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("fewer than {want} records in {}", path.display());
    };

    session("before.test").await;
    lines(path.clone(), 1).await;
    let rotated = rig.dir.path().join("records.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    daemon.hangup().unwrap();
    session("after.test").await;

    let new = lines(path.clone(), 1).await;
    assert!(
        new.contains("after.test") && !new.contains("before.test"),
        "{new}"
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains("before.test") && !old.contains("after.test"),
        "{old}"
    );
    daemon.stop();
    tokio::time::timeout(T, running).await.unwrap().unwrap();
}

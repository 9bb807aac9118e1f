//! tlsfront as a daemon, run as the real binary: systemd notifications
//! (READY, RELOADING, STOPPING, STATUS, WATCHDOG), SIGHUP certificate reload
//! with a session spanning it (the certificate expiry metric following), a
//! broken certificate refused, the record file
//! reopened after rotation, and a clean SIGTERM.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use rustls::version::TLS13;

/// The proxy process, killed by PID on every exit path of a test.
struct Daemon(Child);

impl Daemon {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(
    dir: &Path,
    port: u16,
    metrics_port: u16,
    backend: std::net::SocketAddr,
) -> std::path::PathBuf {
    write_config_with(dir, port, metrics_port, backend, "")
}

fn write_config_with(
    dir: &Path,
    port: u16,
    metrics_port: u16,
    backend: std::net::SocketAddr,
    tls: &str,
) -> std::path::PathBuf {
    let path = dir.join("tlsfront.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhostname = \"mx.tlsfront.test\"\nshutdown_grace = \"2s\"\n\
             [[listener]]\naddress = [\"127.0.0.1:{port}\"]\n\
             [backend]\naddress = \"{backend}\"\n\
             [records]\npath = \"{}\"\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [tls]\n{tls}\n\
             [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join("records.jsonl").display(),
            dir.join("current.pem").display(),
            dir.join("current.key").display()
        ),
    )
    .unwrap();
    path
}

fn install_cert(dir: &Path, pair: &(std::path::PathBuf, std::path::PathBuf)) {
    std::fs::copy(&pair.0, dir.join("current.pem")).unwrap();
    std::fs::copy(&pair.1, dir.join("current.key")).unwrap();
}

/// Datagrams from the daemon until one contains `want` (bounded wait).
fn wait_notify(sock: &UnixDatagram, want: &str) -> String {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    for _ in 0..100 {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.contains(want) {
                    return msg;
                }
                seen.push(msg);
            }
            Err(_) => continue, // read timeout: try again
        }
    }
    panic!("no {want:?} from the daemon; got {seen:?}");
}

/// The subjects (common names) of the certificate expiry series.
async fn served_in_metrics(addr: std::net::SocketAddr) -> Vec<String> {
    let (code, body) = scrape(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| l.starts_with("tlsfront_certificate_expiry_timestamp_seconds{"))
        .filter_map(|l| l.split("subject=\"CN=").nth(1)?.split('"').next())
        .map(str::to_string)
        .collect()
}

async fn served_subject(port: u16, pki: &Pki) -> String {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let c = Client::greeted(addr).await;
    let mut c = c
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;
    c.send("QUIT").await;
    c.expect(221).await;
    c.peer_subject.clone().unwrap_or_default()
}

#[tokio::test]
async fn notify_reload_rotate_and_stop() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    install_cert(dir.path(), &pki.ecdsa);
    let port = free_port();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = write_config(dir.path(), port, metrics.port(), mta.addr);
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tlsfront"))
            .args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    // READY only once listening: a connection right after it succeeds.
    wait_notify(&notify, "READY=1");
    assert!(served_subject(port, &pki).await.contains("ecdsa"));
    assert_eq!(served_in_metrics(metrics).await, ["mx.tlsfront.test ecdsa"]);
    assert!(wait_notify(&notify, "WATCHDOG=1").contains("STATUS=serving"));

    // A session opened before the reload...
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let before = Client::greeted(addr).await;
    let mut before = before
        .starttls(pki.client_config(&[&TLS13]), "mx.tlsfront.test")
        .await;

    // ... the first session's record written (it follows the 221 a moment later) ...
    for _ in 0..200 {
        let text = std::fs::read_to_string(dir.path().join("records.jsonl")).unwrap_or_default();
        if text.lines().count() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // ... a renewal (here: the RSA certificate) and SIGHUP ...
    install_cert(dir.path(), &pki.rsa);
    std::fs::rename(
        dir.path().join("records.jsonl"),
        dir.path().join("records.jsonl.1"),
    )
    .unwrap();
    daemon.signal("HUP");
    wait_notify(&notify, "RELOADING=1");
    wait_notify(&notify, "READY=1");
    // ... new handshakes use the new certificate, and the expiry metric follows ...
    assert!(served_subject(port, &pki).await.contains("rsa"));
    assert_eq!(served_in_metrics(metrics).await, ["mx.tlsfront.test rsa"]);
    // ... and the old session goes on and delivers.
    let r = before
        .mail(
            "a@origin.test",
            "b@legacy.test",
            &sample_message("across-reload"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    before.send("QUIT").await;
    before.expect(221).await;
    assert_eq!(mta.messages().len(), 1);

    // A broken certificate is refused and the last good one stays in service.
    std::fs::write(dir.path().join("current.pem"), "not a certificate").unwrap();
    daemon.signal("HUP");
    wait_notify(&notify, "RELOADING=1");
    wait_notify(&notify, "READY=1");
    assert!(served_subject(port, &pki).await.contains("rsa"));
    assert_eq!(served_in_metrics(metrics).await, ["mx.tlsfront.test rsa"]);

    // The rotated record file got the old records, the reopened one the new.
    // The writer reopens the file before its next record, which follows each
    // session's 221 a moment later: until then the file may not exist yet.
    let new = async {
        for _ in 0..200 {
            let new = std::fs::read_to_string(dir.path().join("records.jsonl")).unwrap_or_default();
            if new.lines().count() >= 2 && new.contains("\"messages_accepted\":1") {
                return new;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        std::fs::read_to_string(dir.path().join("records.jsonl")).unwrap_or_default()
    }
    .await;
    let old = std::fs::read_to_string(dir.path().join("records.jsonl.1")).unwrap();
    assert!(old.lines().count() >= 1, "{old}");
    assert!(new.lines().count() >= 2, "{new}");
    assert!(
        new.contains("\"messages_accepted\":1"),
        "the spanning session is recorded after the reopen"
    );

    // SIGTERM: STOPPING, then a clean exit.
    daemon.signal("TERM");
    wait_notify(&notify, "STOPPING=1");
    let mut daemon = daemon;
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(status.expect("exited").success());
    let mut log = String::new();
    std::io::Read::read_to_string(daemon.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("reload refused"), "{log}");
}

#[tokio::test]
async fn socket_activation_uses_the_passed_socket() {
    if Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: systemd-socket-activate is not installed");
        return;
    }
    let mta = Mta::start(MtaScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&["mx.tlsfront.test"]);
    install_cert(dir.path(), &pki.ecdsa);
    let port = free_port();
    let config = write_config(dir.path(), port, free_port(), mta.addr);
    // systemd-socket-activate binds the port, sets LISTEN_FDS/LISTEN_PID and
    // execs tlsfront (same PID) on the first connection, like a .socket unit.
    let daemon = Daemon(
        Command::new("systemd-socket-activate")
            .args([
                "-l",
                &format!("127.0.0.1:{port}"),
                env!("CARGO_BIN_EXE_tlsfront"),
                "run",
                "--config",
            ])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = None;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            c = Some(Client::greeted(addr).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = c.expect("the activated socket answers");
    c.send("EHLO activated.test").await;
    c.expect(250).await;
    c.send("QUIT").await;
    c.expect(221).await;
    daemon.signal("TERM");
    let mut daemon = daemon;
    for _ in 0..100 {
        if daemon.0.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut log = String::new();
    std::io::Read::read_to_string(daemon.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("using the socket passed by systemd"), "{log}");
}

#[tokio::test]
async fn renewed_certificate_files_are_picked_up_without_a_signal() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    install_cert(dir.path(), &pki.ecdsa);
    let port = free_port();
    let config = write_config_with(
        dir.path(),
        port,
        free_port(),
        mta.addr,
        "watch_interval = \"200ms\"",
    );
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tlsfront"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(served_subject(port, &pki).await.contains("ecdsa"));
    // A renewal writes new files (certbot-style), nobody sends a signal.
    tokio::time::sleep(Duration::from_millis(50)).await;
    install_cert(dir.path(), &pki.rsa);
    let mut subject = String::new();
    for _ in 0..60 {
        subject = served_subject(port, &pki).await;
        if subject.contains("rsa") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(subject.contains("rsa"), "still serving {subject}");
}

/// A self-signed certificate and key for `mx.tlsfront.test`, valid until
/// `not_after` (seconds from now; negative: already expired), written as
/// `current.pem`/`current.key` in `dir`. Returns the notAfter, Unix time.
fn install_dated_cert(dir: &Path, cn: &str, not_after: i64) -> i64 {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["mx.tlsfront.test".to_string()]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    // rcgen takes `time` dates: an offset from 2000-01-01.
    let now_since_2000 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 946_684_800;
    let at = |secs: i64| {
        rcgen::date_time_ymd(2000, 1, 1) + Duration::from_secs((now_since_2000 + secs) as u64)
    };
    p.not_before = at(-400 * 86_400);
    p.not_after = at(not_after);
    let cert = p.self_signed(&key).unwrap();
    std::fs::write(dir.join("current.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("current.key"), key.serialize_pem()).unwrap();
    946_684_800 + now_since_2000 + not_after
}

#[tokio::test]
async fn expired_and_expiring_certificates_are_served_with_a_warning() {
    let mta = Mta::start(MtaScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let expired_at = install_dated_cert(dir.path(), "expired.tlsfront.test", -2 * 86_400);
    let port = free_port();
    let config = write_config(dir.path(), port, free_port(), mta.addr);
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tlsfront"))
            .args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("TLSFRONT_LOG", "warn")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_notify(&notify, "READY=1");
    // `check`'s words for the same certificate, which `run` must say too.
    let check_says = |code: &'static str| {
        let config = config.clone();
        async move {
            let out = common::bin::tlsfront(common::bin::args(&[
                "check",
                "--config",
                &config.display().to_string(),
                "--no-backend",
                "--json",
                "--service-user",
                "root",
            ]))
            .await;
            let j = out.json();
            j["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["code"] == code)
                .unwrap_or_else(|| panic!("no {code} in {j:#}"))["message"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let expired_words = check_says("expired").await;
    // Still served: opportunistic senders get encryption rather than none.
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Client::greeted(addr).await;
    c.send("EHLO client.test").await;
    assert!(c.expect(250).await.contains("STARTTLS"));
    c.send("QUIT").await;
    c.expect(221).await;

    // A renewal that is close to its end is loaded, and warned about too.
    install_dated_cert(dir.path(), "soon.tlsfront.test", 5 * 86_400 + 3600);
    let soon_words = check_says("expires_soon").await;
    daemon.signal("HUP");
    wait_notify(&notify, "RELOADING=1");
    wait_notify(&notify, "READY=1");
    daemon.signal("TERM");
    let mut daemon = daemon;
    for _ in 0..100 {
        if daemon.0.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut log = String::new();
    std::io::Read::read_to_string(daemon.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    let pem = dir.path().join("current.pem").display().to_string();
    let expired = log
        .lines()
        .find(|l| l.contains("expired.tlsfront.test"))
        .unwrap_or_else(|| panic!("no warning for the expired certificate in\n{log}"));
    assert!(
        expired.contains("WARN") && expired.contains(&expired_words),
        "run does not say check's words\n  check: {expired_words}\n  run: {expired}"
    );
    assert!(expired.contains("still served"), "{expired}");
    assert!(expired.contains(&pem), "{expired}");
    let date = jiff::Timestamp::from_second(expired_at)
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    assert!(expired.contains(&date), "{expired}");
    let soon = log
        .lines()
        .find(|l| l.contains("soon.tlsfront.test"))
        .unwrap_or_else(|| panic!("no warning for the expiring certificate in\n{log}"));
    assert!(soon.contains("WARN") && soon.contains(&pem), "{soon}");
    assert!(
        soon.contains(&soon_words),
        "reload does not say check's words\n  check: {soon_words}\n  run: {soon}"
    );
    assert!(soon.contains("days_left=5"), "{soon}");
}

/// Runs `tlsfront run --config CONFIG` as socket activation would, with `fd`
/// as file descriptor 3 (`LISTEN_FDS=1`, `LISTEN_PID` its own PID): `sh` gets
/// it as standard input, moves it to 3 and execs tlsfront in its place.
/// Returns the exit status (bounded wait) and standard error.
async fn activated_with(fd: std::os::fd::OwnedFd, config: &Path) -> (Option<i32>, String) {
    let mut daemon = Daemon(
        Command::new("sh")
            .args([
                "-c",
                "exec 3<&0 </dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" run --config \"$1\"",
                env!("CARGO_BIN_EXE_tlsfront"),
            ])
            .arg(config)
            .stdin(Stdio::from(fd))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            status = s.code();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if status.is_none() {
        daemon.signal("TERM");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = daemon.0.kill();
    let mut log = String::new();
    std::io::Read::read_to_string(daemon.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    (status, log)
}

#[tokio::test]
async fn passed_descriptors_that_are_not_listening_sockets_are_refused() {
    let mta = Mta::start(MtaScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&["mx.tlsfront.test"]);
    install_cert(dir.path(), &pki.ecdsa);
    // Each descriptor has the configured listener's address as its own, so
    // only a check of what it is can tell it from the real socket.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = write_config(dir.path(), addr.port(), free_port(), mta.addr);

    // A connection accepted on that address: a TCP socket, not listening.
    let _client = std::net::TcpStream::connect(addr).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    drop(listener);
    let (status, log) = activated_with(accepted.into(), &config).await;
    assert_eq!(status, Some(1), "{log}");
    assert!(
        log.contains("socket activation") && log.contains("not a listening TCP socket: fd 3 "),
        "{log}"
    );

    // A UDP socket bound to it.
    let udp = std::net::UdpSocket::bind(addr).unwrap();
    let (status, log) = activated_with(udp.into(), &config).await;
    assert_eq!(status, Some(1), "{log}");
    assert!(
        log.contains("socket activation") && log.contains("not a listening TCP socket: fd 3 "),
        "{log}"
    );

    // A regular file.
    let file = std::fs::File::open(&config).unwrap();
    let (status, log) = activated_with(file.into(), &config).await;
    assert_eq!(status, Some(1), "{log}");
    assert!(
        log.contains("socket activation") && log.contains("not a listening TCP socket: fd 3 "),
        "{log}"
    );
}

/// Threads of process `pid` whose name is `name`.
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim_end() == name)
                })
                .count()
        })
        .unwrap_or(0)
}

/// The runtime has one worker thread per CPU the process may use: one when
/// pinned to one core (taskset, systemd's CPUAffinity=), all of them
/// otherwise, as many as this test process may use.
#[tokio::test]
async fn worker_threads_follow_the_cpus_given() {
    if Command::new("taskset").arg("-V").output().is_err() {
        eprintln!("taskset not installed (util-linux): skipped");
        return;
    }
    let mta = Mta::start(MtaScript::default()).await;
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (cpus, want) in [(Some("0"), 1), (None, all)] {
        let dir = tempfile::tempdir().unwrap();
        install_cert(dir.path(), &pki.ecdsa);
        let port = free_port();
        let config = write_config(dir.path(), port, free_port(), mta.addr);
        let mut cmd = match cpus {
            Some(list) => {
                let mut c = Command::new("taskset");
                c.args(["-c", list]).arg(env!("CARGO_BIN_EXE_tlsfront"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_tlsfront")),
        };
        let daemon = Daemon(
            cmd.args(["run", "--config"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut up = false;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(up, "tlsfront did not listen");
        // taskset execs tlsfront, so the PID is tlsfront's.
        let workers = threads_named(daemon.0.id(), "tlsfront-worker");
        assert_eq!(workers, want, "CPUs {cpus:?}");
        daemon.signal("TERM");
    }
}

/// Runs `tlsfront run ARGS` until a line of its log contains `needle`
/// (bounded), then stops it; returns that line, or panics with the log.
fn run_until_logged(args: &[String], needle: &str) -> String {
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tlsfront"))
            .arg("run")
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("TLSFRONT_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = daemon.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut log = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => log.push(line),
            Err(_) => break,
        }
    }
    panic!("no {needle:?} in the log:\n{}", log.join("\n"));
}

/// `run` says at start what `check` says when the backend relays for
/// tlsfront's address; `--source-address` with an address it does not trust
/// makes it refuse, and `run` says that too.
#[tokio::test]
async fn run_warns_at_start_when_the_backend_relays_for_it() {
    let mta = Mta::start(MtaScript {
        trusted_clients: vec!["127.0.0.1".parse().unwrap()],
        ..MtaScript::default()
    })
    .await;
    let base = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--backend",
            &mta.addr.to_string(),
            "--hostname",
            "mx.tlsfront.test",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let args = base(&[]);
    let line = tokio::task::spawn_blocking(move || run_until_logged(&args, "relay"))
        .await
        .unwrap();
    assert!(
        line.contains("WARN") && line.contains("OPEN RELAY"),
        "{line}"
    );
    assert!(line.contains("backend.source_address"), "{line}");
    let args = base(&["--source-address", "127.0.0.2"]);
    let line = tokio::task::spawn_blocking(move || run_until_logged(&args, "relay"))
        .await
        .unwrap();
    assert!(
        line.contains("refuses to relay from tlsfront's address 127.0.0.2"),
        "{line}"
    );
}

/// Under systemd with `LoadCredential=mx.key:...`, the configuration says
/// `key = "%d/mx.key"`: `run` reads it from $CREDENTIALS_DIRECTORY and serves.
#[tokio::test]
async fn keys_from_systemd_credentials_are_served() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = tempfile::tempdir().unwrap();
    std::fs::copy(&pki.ecdsa.0, creds.path().join("mx.pem")).unwrap();
    std::fs::copy(&pki.ecdsa.1, creds.path().join("mx.key")).unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, free_port(), mta.addr);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace(
            &dir.path().join("current.pem").display().to_string(),
            "%d/mx.pem",
        )
        .replace(
            &dir.path().join("current.key").display().to_string(),
            "%d/mx.key",
        );
    std::fs::write(&config, text).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tlsfront"))
            .args(["run", "--config"])
            .arg(&config)
            .env("CREDENTIALS_DIRECTORY", creds.path())
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_notify(&notify, "READY=1");
    assert!(served_subject(port, &pki).await.contains("ecdsa"));
}

//! Load holds: thousands of concurrent sessions (idle, slow, hostile) while
//! well-behaved clients still deliver, and the process's memory stays bounded.
//! Not timed: it checks outcomes and prints the memory figures it saw.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use rustls::version::TLS13;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Kills the child by PID on every exit path of the test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Open files this test may use (soft limit), so the load fits the machine.
fn fd_budget() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_sessions_and_good_mail_still_flows() {
    let idle_n = (fd_budget().saturating_sub(600) / 2).min(2000);
    let (slow_n, hostile_n, good_n, msgs_each) = (100, 100, 20, 5);

    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("load.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhostname = \"mx.tlsfront.test\"\nmax_connections = 20000\n\
             max_connections_per_client = 20000\nshutdown_grace = \"1s\"\n\
             [[listener]]\naddress = [\"127.0.0.1:{port}\"]\n\
             [backend]\naddress = \"{}\"\n\
             [smtp]\ncommand_timeout = \"2m\"\n\
             [records]\npath = \"{}\"\n\
             [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            mta.addr,
            dir.path().join("records.jsonl").display(),
            pki.ecdsa.0.display(),
            pki.ecdsa.1.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tlsfront"))
        .args(["run", "--config"])
        .arg(&config)
        .env("TLSFRONT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proxy = Running(child);
    let pid = proxy.0.id();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let rss_start = rss_kib(pid);

    // Idle: greeted, then silent.
    let mut idle = Vec::with_capacity(idle_n);
    for _ in 0..idle_n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut greeting = [0u8; 64];
        let n = tokio::time::timeout(T, s.read(&mut greeting))
            .await
            .unwrap()
            .unwrap();
        assert!(greeting[..n].starts_with(b"220 "));
        idle.push(s);
    }
    // Slow: a byte every 100 ms.
    let slow: Vec<_> = (0..slow_n)
        .map(|_| {
            tokio::spawn(async move {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    return;
                };
                for b in b"EHLO slow.loris.test\r\n".iter().cycle().take(60) {
                    if s.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
        .collect();
    // Hostile: junk, long lines, broken TLS, then gone.
    let hostile: Vec<_> = (0..hostile_n)
        .map(|i| {
            tokio::spawn(async move {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    return;
                };
                let junk: Vec<u8> = match i % 4 {
                    0 => vec![b'A'; 200_000],
                    1 => b"EHLO x\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05garbage".to_vec(),
                    2 => (0..5000u32).map(|k| (k * 7919 % 251) as u8).collect(),
                    _ => "NOOP\r\n".repeat(2000).into_bytes(),
                };
                let _ = s.write_all(&junk).await;
                let mut sink = vec![0u8; 65536];
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut sink)).await;
            })
        })
        .collect();

    // Meanwhile, well-behaved senders deliver over STARTTLS.
    let cfg = pki.client_config(&[&TLS13]);
    let good: Vec<_> = (0..good_n)
        .map(|g| {
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let c = Client::greeted(addr).await;
                let mut c = c.starttls(cfg, "mx.tlsfront.test").await;
                for m in 0..msgs_each {
                    let r = c
                        .mail(
                            "a@origin.test",
                            "b@legacy.test",
                            &sample_message(&format!("load-{g}-{m}")),
                        )
                        .await;
                    assert_eq!(r.code, 250, "{}", r.text);
                }
                c.send("QUIT").await;
                c.expect(221).await;
            })
        })
        .collect();
    for g in good {
        g.await.unwrap();
    }
    let rss_peak = rss_kib(pid);
    for h in hostile {
        let _ = h.await;
    }
    let sessions = idle_n + slow_n;
    println!(
        "load: {idle_n} idle + {slow_n} slow + {hostile_n} hostile sessions, {} messages; \
         RSS {rss_start} KiB at start, {rss_peak} KiB under load ({} KiB per open session)",
        good_n * msgs_each,
        (rss_peak.saturating_sub(rss_start)) / sessions as u64
    );
    assert_eq!(
        mta.messages().len(),
        good_n * msgs_each,
        "every good message delivered"
    );
    // Bounded, whatever the hostile ones sent: an idle session costs a few
    // KiB (2 KiB per open session measured here with 2000 idle, 6 KiB with
    // 212); the margin covers debug builds and allocator arenas on big CI hosts.
    assert!(
        rss_peak < rss_start + 40 * sessions as u64,
        "memory grew {} KiB for {sessions} sessions",
        rss_peak - rss_start
    );
    for s in slow {
        s.abort();
    }
    drop(idle);
    // The proxy is still serving after all that.
    let mut c = Client::greeted(addr).await;
    c.send("EHLO after.test").await;
    c.expect(250).await;
    drop(proxy);
}

/// tlsfront on a runtime of its own with one worker thread (as on a
/// one-core host), stopped on drop.
struct OneCore {
    addr: std::net::SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OneCore {
    fn start(settings: tlsfront::config::Settings) -> OneCore {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tlsfront::proxy::daemon::runtime(1).unwrap();
            runtime.block_on(async move {
                let sink = tlsfront::proxy::records::RecordSink::disabled();
                let server = tlsfront::proxy::server::Server::bind(settings, sink)
                    .await
                    .unwrap();
                let _ = tx.send((server.local_addrs()[0].0, server.shared.shutdown.clone()));
                server.run().await;
            });
        });
        let (addr, shutdown) = rx.recv_timeout(T).unwrap();
        OneCore {
            addr,
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for OneCore {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Past saturation, sessions already under way are not starved by a flood
/// of new connections and their handshakes: new handshakes get one turn each
/// per round of the scheduler and tlsfront stops accepting while hellos wait
/// for turns, so the sessions in progress finish their transactions while
/// only a few of the flood's handshakes have completed (all 400 did first
/// when tlsfront accepted and answered hellos as fast as they came). Counts,
/// not time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_in_progress_finish_before_a_flood_of_handshakes() {
    let (in_progress, flood) = (8, (fd_budget().saturating_sub(200) / 2).min(400));
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let text = format!(
        "[server]\nhostname = \"mx.tlsfront.test\"\nmax_connections = 20000\n\
         max_connections_per_client = 20000\nshutdown_grace = \"1s\"\n\
         [[listener]]\naddress = [\"127.0.0.1:0\"]\n\
         [backend]\naddress = \"{}\"\n\
         [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
        mta.addr,
        pki.ecdsa.0.display(),
        pki.ecdsa.1.display()
    );
    let raw = tlsfront::config::parse(&text, "t.toml").unwrap();
    let settings =
        tlsfront::config::validate(raw, &tlsfront::config::Overrides::default(), "t.toml").unwrap();
    let server = OneCore::start(settings);
    let addr = server.addr;
    let cfg = pki.client_config(&[&TLS13]);

    // Sessions under way: TLS up, about to send their message.
    let mut sessions = Vec::new();
    for _ in 0..in_progress {
        let c = Client::greeted(addr).await;
        sessions.push(c.starttls(cfg.clone(), "mx.tlsfront.test").await);
    }
    // The flood: every connection at once, each wanting a full handshake,
    // from a runtime of its own (so the flood's clients do not slow down the
    // sessions under way, or the backend, on this one).
    let handshakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let greeted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
    let flooder = {
        let (cfg, handshakes, greeted) = (cfg.clone(), handshakes.clone(), greeted.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut streams = Vec::new();
                for _ in 0..flood {
                    streams.push(TcpStream::connect(addr).await);
                }
                // Every flood connection is in the listen queue now.
                let _ = connected_tx.send(());
                let tasks: Vec<_> = streams
                    .into_iter()
                    .map(|s| {
                        let (cfg, handshakes, greeted) =
                            (cfg.clone(), handshakes.clone(), greeted.clone());
                        tokio::spawn(async move {
                            let Ok(s) = s else { return };
                            let _ = s.set_nodelay(true);
                            let mut c = Client::from_stream(s);
                            if c.try_reply().await.is_none() {
                                return;
                            }
                            greeted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            c.send("EHLO flood.test").await;
                            if c.try_reply().await.is_none() {
                                return;
                            }
                            c.send("STARTTLS").await;
                            if c.try_reply().await.is_none() {
                                return;
                            }
                            if c.tls(cfg, "mx.tlsfront.test").await.is_ok() {
                                handshakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
    };
    tokio::time::timeout(T, connected_rx)
        .await
        .unwrap()
        .unwrap();
    let runs: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let handshakes = handshakes.clone();
            let greeted = greeted.clone();
            tokio::spawn(async move {
                for m in 0..2 {
                    let r = c
                        .mail(
                            "a@origin.test",
                            "b@legacy.test",
                            &sample_message(&format!("under-way-{i}-{m}")),
                        )
                        .await;
                    assert_eq!(r.code, 250, "{}", r.text);
                }
                c.send("QUIT").await;
                c.expect(221).await;
                (
                    handshakes.load(std::sync::atomic::Ordering::SeqCst),
                    greeted.load(std::sync::atomic::Ordering::SeqCst),
                )
            })
        })
        .collect();
    let mut seen = Vec::new();
    for r in runs {
        seen.push(r.await.unwrap());
    }
    tokio::task::spawn_blocking(move || flooder.join().unwrap())
        .await
        .unwrap();
    let done = handshakes.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "flood of {flood}: {done} handshakes completed in all; the {in_progress} sessions under \
         way finished after (handshakes completed, connections greeted) {seen:?}"
    );
    assert_eq!(done, flood, "every flood connection is served in the end");
    assert_eq!(mta.messages().len(), in_progress * 2);
    let worst = seen.iter().map(|x| x.0).max().unwrap_or(0);
    assert!(
        worst <= flood / 4,
        "a session under way waited for {worst} of {flood} new handshakes"
    );
    drop(server);
}

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

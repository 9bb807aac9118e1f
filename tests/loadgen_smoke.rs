//! Smoke mode of the load generator (benches/loadgen.rs): a few sessions
//! through tlsfront to a scripted backend, every reply checked, so the
//! benchmark tool cannot rot.

mod common;

#[path = "../benches/loadgen.rs"]
#[allow(dead_code)]
mod loadgen;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_smoke_through_tlsfront() {
    let pki = Pki::new(&["mx.tlsfront.test"]);
    let mta = Mta::start(MtaScript::default()).await;
    let proxy = Proxy::start(mta.addr, Some(&pki), "").await;
    for (tls, implicit, pipelining, no_verify, starttls_steps) in [
        (Some(&rustls::version::TLS13), false, false, false, false),
        (Some(&rustls::version::TLS12), false, false, false, false),
        (Some(&rustls::version::TLS13), true, false, false, false),
        (None, false, false, false, false),
        (Some(&rustls::version::TLS13), false, true, false, false),
        (Some(&rustls::version::TLS13), false, false, true, false),
        // The floor's plaintext session with STARTTLS's two exchanges.
        (None, false, false, false, true),
    ] {
        let opts = loadgen::Options {
            target: if implicit {
                proxy.implicit
            } else {
                proxy.starttls
            },
            concurrency: 3,
            sessions: 6,
            messages: 2,
            size: 4096,
            tls,
            implicit,
            pipelining,
            name: "mx.tlsfront.test".into(),
            roots: Some(vec![pki.ca_der.clone()]),
            no_verify,
            // The benchmark's client shortcuts go together.
            fixed_key_share: no_verify,
            groups: no_verify.then(|| vec!["X25519".into()]),
            starttls_steps,
            ..loadgen::Options::default()
        };
        let mut stats = loadgen::run(opts).await;
        let report = stats.report();
        assert!(stats.errors.is_empty(), "{report}");
        assert_eq!(stats.sessions_ok, 6, "{report}");
        assert_eq!(stats.messages_ok, 12, "{report}");
        if tls.is_some() {
            assert!(report.contains("handshake"), "{report}");
        }
        assert_eq!(report.contains("MAIL+RCPT+DATA"), pipelining, "{report}");
        assert_eq!(report.contains("NOOP"), starttls_steps, "{report}");
    }
    assert_eq!(mta.messages().len(), 84);
    proxy.stop().await;
}

#[tokio::test]
async fn loadgen_counts_failures_as_failures() {
    // A backend that refuses every recipient: no message is counted.
    let mta = Mta::start(MtaScript {
        reject_rcpt: Some("sink".into()),
        ..MtaScript::default()
    })
    .await;
    let proxy = Proxy::start(mta.addr, None, "").await;
    let opts = loadgen::Options {
        target: proxy.starttls,
        concurrency: 2,
        sessions: 4,
        tls: None,
        ..loadgen::Options::default()
    };
    let stats = loadgen::run(opts).await;
    assert_eq!(stats.sessions_ok, 0);
    assert_eq!(stats.messages_ok, 0);
    assert_eq!(stats.errors.get("RCPT_550"), Some(&4));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_only_against_the_bare_server() {
    // The benchmark's floor: `--serve` (a bare rustls server on a socket)
    // and `--handshake-only` (connect, handshake, close), with and without TLS.
    let (config, _) = loadgen::bench_server(false);
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for acceptor in [Some(tokio_rustls::TlsAcceptor::from(config)), None] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        servers.push(tokio::spawn(loadgen::serve_on(listener, acceptor)));
    }
    let run = |target, tls, sessions| {
        loadgen::run(loadgen::Options {
            target,
            concurrency: 4,
            sessions,
            tls,
            handshake_only: true,
            no_verify: true,
            name: "mx.bench.test".into(),
            timeout: std::time::Duration::from_secs(2),
            ..loadgen::Options::default()
        })
    };
    let mut tls = run(addrs[0], Some(&rustls::version::TLS13), 20).await;
    assert!(tls.errors.is_empty(), "{}", tls.report());
    assert_eq!(tls.sessions_ok, 20);
    let mut plain = run(addrs[1], None, 20).await;
    assert!(plain.errors.is_empty(), "{}", plain.report());
    assert_eq!(plain.sessions_ok, 20);
    // A TLS client against the server without TLS fails every session.
    let wrong = run(addrs[1], Some(&rustls::version::TLS13), 4).await;
    assert_eq!(wrong.sessions_ok, 0);
    assert_eq!(wrong.errors.values().sum::<usize>(), 4);
    for s in servers {
        s.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_against_the_minimal_smtp_responder() {
    // The floor's minimal SMTP server (`--serve --smtp`): a STARTTLS session,
    // the same pipelined, and the plaintext one with STARTTLS's exchanges,
    // every reply checked by the load generator; two messages a session.
    let (config, _) = loadgen::bench_server(false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(loadgen::smtp_on(
        listener,
        tokio_rustls::TlsAcceptor::from(config),
    ));
    for (tls, pipelining, starttls_steps, size) in [
        (Some(&rustls::version::TLS13), false, false, 10240),
        (Some(&rustls::version::TLS13), true, false, 100_000),
        (None, false, true, 10240),
        (None, true, false, 0),
    ] {
        let mut stats = loadgen::run(loadgen::Options {
            target: addr,
            concurrency: 3,
            sessions: 6,
            messages: 2,
            size,
            tls,
            pipelining,
            starttls_steps,
            no_verify: true,
            name: "mx.bench.test".into(),
            timeout: std::time::Duration::from_secs(5),
            ..loadgen::Options::default()
        })
        .await;
        let report = stats.report();
        assert!(stats.errors.is_empty(), "{report}");
        assert_eq!((stats.sessions_ok, stats.messages_ok), (6, 12), "{report}");
        assert_eq!(report.contains("handshake"), tls.is_some(), "{report}");
    }
    server.abort();
}

#[test]
fn the_fixed_key_share_is_one_key_pair_that_agrees_with_each_fresh_peer() {
    use aws_lc_rs::agreement::{PrivateKey, UnparsedPublicKey, X25519, agree};
    use rustls::crypto::SupportedKxGroup;
    let group = loadgen::FixedX25519::generate();
    let (first, second) = (group.start().unwrap(), group.start().unwrap());
    assert_eq!(first.pub_key(), second.pub_key(), "one key pair for all");
    assert_eq!(first.group(), rustls::NamedGroup::X25519);
    for ours in [first, second] {
        // Each server makes a fresh key pair; both sides reach one secret.
        let peer = PrivateKey::generate(&X25519).unwrap();
        let peer_public = peer.compute_public_key().unwrap();
        let theirs = agree(
            &peer,
            UnparsedPublicKey::new(&X25519, ours.pub_key()),
            (),
            |s| Ok(s.to_vec()),
        )
        .unwrap();
        let secret = ours.complete(peer_public.as_ref()).unwrap();
        assert_eq!(secret.secret_bytes(), &theirs[..]);
    }
    // A key share that is not a point is refused, as rustls' own group does.
    assert!(group.start().unwrap().complete(&[0u8; 5]).is_err());
}

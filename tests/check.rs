//! `tlsfront check`, run as the built binary: exit statuses, finding codes,
//! the JSON shape, and the probe of a weak backend STARTTLS (a real
//! `openssl s_server` behind a scripted SMTP front).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::bin::{args, tlsfront, tlsfront_env};
use common::openssl::{openssl_available, s_server, starttls_front};
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use serde_json::Value;
use tokio::net::TcpListener;

fn codes(json: &Value, level: &str) -> Vec<String> {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == level)
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

fn finding<'a>(json: &'a Value, code: &str) -> &'a Value {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .unwrap_or_else(|| panic!("no {code} finding in {json:#}"))
}

// ------------------------------------------------------------------ PKI

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p
}

/// A root, an intermediate under it, and leaves under the intermediate.
struct Ca {
    dir: tempfile::TempDir,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let root =
            CertifiedIssuer::self_signed(ca_params("Check Root"), KeyPair::generate().unwrap())
                .unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("Check Intermediate"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        Ca {
            dir: tempfile::tempdir().unwrap(),
            intermediate,
        }
    }

    /// Writes `tag.pem` (leaf + intermediate) and `tag.key`; `edit` adjusts the leaf.
    fn leaf(
        &self,
        tag: &str,
        names: &[&str],
        edit: impl Fn(&mut CertificateParams),
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        edit(&mut p);
        let cert = p.signed_by(&key, &self.intermediate).unwrap();
        let cert_path = self.dir.path().join(format!("{tag}.pem"));
        let key_path = self.dir.path().join(format!("{tag}.key"));
        std::fs::write(
            &cert_path,
            format!("{}{}", cert.pem(), self.intermediate.pem()),
        )
        .unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        chmod(&key_path, 0o600);
        (cert_path, key_path)
    }

    fn config(&self, backend: SocketAddr, cert: &(PathBuf, PathBuf)) -> PathBuf {
        let path = self.dir.path().join("tlsfront.toml");
        std::fs::write(
            &path,
            format!(
                "[server]\nhostname = \"mx.check.test\"\n\
                 [[listener]]\naddress = [\"127.0.0.1:0\"]\n\
                 [backend]\naddress = \"{backend}\"\nconnect_timeout = \"3s\"\nreply_timeout = \"3s\"\n\
                 [records]\npath = \"{}\"\n\
                 [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
                self.dir.path().join("records.jsonl").display(),
                cert.0.display(),
                cert.1.display()
            ),
        )
        .unwrap();
        path
    }
}

/// `tlsfront check ARGS`, judging file access for the user the tests run
/// as (the service's user in these tests), not the unit's dynamic user.
fn check_args(list: &[&str]) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").unwrap().uid().to_string();
    let mut a = args(&["check"]);
    a.extend(args(list));
    a.extend(["--service-user".to_string(), uid]);
    a
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// An address nothing listens on.
async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn good_config_and_backend_exit_0() {
    let mta = Mta::start(MtaScript {
        ehlo: [
            "legacy.test Hello",
            "PIPELINING",
            "SIZE 10000000",
            "XCLIENT ADDR NAME",
        ]
        .map(String::from)
        .to_vec(),
        ..MtaScript::default()
    })
    .await;
    let ca = Ca::new();
    let good = ca.leaf("good", &["mx.check.test"], |_| {});
    let config = ca.config(mta.addr, &good);

    let out = tlsfront(check_args(&["--config", &p(&config), "--json"])).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["ok"], true);
    assert_eq!(codes(&j, "error"), Vec::<String>::new());
    assert_eq!(codes(&j, "warning"), Vec::<String>::new(), "{j:#}");
    for code in [
        "config_valid",
        "key_type",
        "key_matches",
        "chain_order",
        "validity",
        "hostname_covered",
        "backend_greeting",
        "backend_ehlo",
        "backend_offers_xclient",
        "backend_no_starttls",
    ] {
        assert_eq!(finding(&j, code)["level"], "ok", "{code}");
    }
    let b = &j["backend"];
    assert_eq!(b["address"], mta.addr.to_string());
    assert_eq!(b["greeting"], "220 legacy.test ESMTP Sendmail 8.12.11");
    assert_eq!(
        b["ehlo"],
        serde_json::json!(["PIPELINING", "SIZE 10000000", "XCLIENT ADDR NAME"])
    );
    assert_eq!(b["xclient"], true);
    assert!(b["starttls"].is_null());
    assert!(mta.commands().iter().any(|c| c == "EHLO mx.check.test"));

    // The same, for people: grouped lines and the totals.
    let out = tlsfront(check_args(&["--config", &p(&config)])).await;
    assert_eq!(out.code, 0);
    let text = out.stdout;
    let config_at = text.find("config\n").unwrap();
    let certs_at = text.find("\ncertificates\n").unwrap();
    let backend_at = text.find("\nbackend\n").unwrap();
    assert!(config_at < certs_at && certs_at < backend_at, "{text}");
    assert!(
        text.contains(&format!(
            "  ok      certificate {}: key ecdsa_p256 [key_type]",
            p(&good.0)
        )),
        "{text}"
    );
    assert!(text.ends_with("check: 0 errors, 0 warnings\n"), "{text}");
}

#[tokio::test]
async fn certificate_errors_exit_1_with_their_codes() {
    let dead = dead_addr().await;
    let ca = Ca::new();
    let good = ca.leaf("good", &["mx.check.test"], |_| {});
    let config = ca.config(dead, &good);
    let other_name = ca.leaf("other", &["mx.elsewhere.test"], |_| {});
    let expired = ca.leaf("expired", &["mx.check.test"], |p| {
        p.not_before = date_time_ymd(2019, 1, 1);
        p.not_after = date_time_ymd(2020, 1, 1);
    });
    let soon = ca.leaf("soon", &["mx.check.test"], |p| {
        p.not_after =
            rcgen::date_time_ymd(2000, 1, 1) + time_from_now(Duration::from_secs(10 * 86_400));
    });

    // --cert/--key override the file's certificate, as they do for `run`.
    let check = |cert: &(PathBuf, PathBuf), key: &Path| {
        tlsfront(check_args(&[
            "--config",
            &p(&config),
            "--cert",
            &p(&cert.0),
            "--key",
            &p(key),
            "--no-backend",
            "--json",
        ]))
    };
    let out = check(&other_name, &other_name.1).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let j = out.json();
    assert_eq!(codes(&j, "error"), vec!["hostname_not_covered"]);
    assert_eq!(
        finding(&j, "hostname_not_covered")["subject"],
        "hostname mx.check.test"
    );
    assert!(j["backend"].is_null());
    assert_eq!(finding(&j, "backend_skipped")["level"], "ok");

    let out = check(&expired, &expired.1).await;
    assert_eq!(out.code, 1);
    let j = out.json();
    assert_eq!(codes(&j, "error"), vec!["expired"]);
    assert!(
        finding(&j, "expired")["message"]
            .as_str()
            .unwrap()
            .contains("expired on 2020-01-01"),
        "{j:#}"
    );

    let out = check(&good, &other_name.1).await;
    assert_eq!(out.code, 1);
    assert_eq!(codes(&out.json(), "error"), vec!["key_mismatch"]);

    // Expiring soon is a warning: exit 0.
    let out = check(&soon, &soon.1).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(codes(&out.json(), "warning"), vec!["expires_soon"]);

    // The leaf alone, without its intermediate: a public CA's leaf names
    // where its issuer is (AIA caIssuers), so the intermediate is missing.
    let public = ca.leaf("public", &["mx.check.test"], |p| {
        p.custom_extensions
            .push(aia_ca_issuers("http://ca.check.test/int.der"));
    });
    let leaf_only = |pair: &(PathBuf, PathBuf), name: &str| {
        let path = ca.dir.path().join(name);
        let text = std::fs::read_to_string(&pair.0).unwrap();
        let end = text.find("-----END CERTIFICATE-----").unwrap() + 26;
        std::fs::write(&path, &text[..end]).unwrap();
        (path, pair.1.clone())
    };
    let out = check(&leaf_only(&public, "public-leaf.pem"), &public.1).await;
    assert_eq!(out.code, 1);
    let j = out.json();
    assert_eq!(codes(&j, "error"), vec!["chain_incomplete"]);
    let m = finding(&j, "chain_incomplete")["message"].as_str().unwrap();
    assert!(m.contains("http://ca.check.test/int.der"), "{m}");
    // Without AIA: an internal CA's leaf, whose root senders are given
    // otherwise. A warning, so ExecStartPre does not refuse it.
    let out = check(&leaf_only(&good, "private-leaf.pem"), &good.1).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(codes(&out.json(), "warning"), vec!["chain_private_ca"]);
}

/// An Authority Information Access extension with one caIssuers URL.
fn aia_ca_issuers(url: &str) -> rcgen::CustomExtension {
    let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
    let mut desc = vec![0x30, (oid.len() + 2 + url.len()) as u8];
    desc.extend_from_slice(&oid);
    desc.extend([0x86, url.len() as u8]);
    desc.extend_from_slice(url.as_bytes());
    let mut aia = vec![0x30, desc.len() as u8];
    aia.extend(desc);
    rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], aia)
}

/// A date `d` from now, as an offset from 2000-01-01 (rcgen takes `time` dates).
fn time_from_now(d: Duration) -> Duration {
    let since_2000 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        - Duration::from_secs(946_684_800);
    since_2000 + d
}

#[tokio::test]
async fn broken_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "[backend]\nadress = \"127.0.0.1:25\"\n").unwrap();
    let out = tlsfront(check_args(&["--config", &p(&config), "--json"])).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    let j = out.json();
    assert_eq!(j["ok"], false);
    assert_eq!(codes(&j, "error"), vec!["config_invalid"]);
    assert!(
        finding(&j, "config_invalid")["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `adress`")
    );

    let out = tlsfront(check_args(&["--config", &p(&config)])).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with("tlsfront: configuration error:"),
        "{}",
        out.stderr
    );
    let missing = tlsfront(check_args(&["--config", "/nonexistent/tlsfront.toml"])).await;
    assert_eq!(missing.code, 2);
}

/// The backend's CA file is reported like any other configuration error,
/// naming the file and the key: `check` says `config_invalid` (exit 2) and
/// `run` does not start.
#[tokio::test]
async fn bad_backend_ca_file_is_a_config_error() {
    let ca = Ca::new();
    let good = ca.leaf("good", &["mx.check.test"], |_| {});
    let config = ca.config(dead_addr().await, &good);
    let text = std::fs::read_to_string(&config).unwrap();
    let no_cert = ca.dir.path().join("no-cert.pem");
    std::fs::write(&no_cert, "not a certificate\n").unwrap();
    let missing = ca.dir.path().join("missing.pem");
    for (file, why) in [(&no_cert, "no CA certificate found"), (&missing, "")] {
        std::fs::write(
            &config,
            text.replace(
                "[backend]\n",
                &format!(
                    "[backend]\ntls = \"starttls\"\ntls_ca_file = \"{}\"\n",
                    file.display()
                ),
            ),
        )
        .unwrap();
        let out = tlsfront(check_args(&["--config", &p(&config), "--json"])).await;
        assert_eq!(out.code, 2, "{}", out.stdout);
        let j = out.json();
        assert_eq!(codes(&j, "error"), vec!["config_invalid"]);
        let message = finding(&j, "config_invalid")["message"].as_str().unwrap();
        let start = format!("{}: `backend.tls_ca_file`: {}: ", p(&config), p(file));
        assert!(
            message.starts_with(&start) && message.contains(why),
            "{message}"
        );
        let run = tlsfront(args(&["run", "--config", &p(&config)])).await;
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr
                .starts_with(&format!("tlsfront: configuration error: {start}")),
            "{}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn unreachable_backend_is_an_error() {
    let dead = dead_addr().await;
    let ca = Ca::new();
    let good = ca.leaf("good", &["mx.check.test"], |_| {});
    let config = ca.config(dead, &good);
    let out = tlsfront(check_args(&["--config", &p(&config), "--json"])).await;
    assert_eq!(out.code, 1);
    let j = out.json();
    assert_eq!(codes(&j, "error"), vec!["backend_unreachable"]);
    assert!(j["backend"]["greeting"].is_null());
}

#[tokio::test]
async fn backend_refusing_its_advertised_starttls_is_a_warning() {
    // The default script offers STARTTLS and answers it with 502.
    let mta = Mta::start(MtaScript::default()).await;
    let ca = Ca::new();
    let good = ca.leaf("good", &["mx.check.test"], |_| {});
    let config = ca.config(mta.addr, &good);
    let out = tlsfront(check_args(&["--config", &p(&config), "--json"])).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let j = out.json();
    assert_eq!(codes(&j, "warning"), vec!["backend_starttls_refused"]);
    assert_eq!(j["backend"]["starttls"]["accepted"], false);
    assert!(mta.commands().iter().any(|c| c == "STARTTLS"));
}

/// The open-relay trap: a backend that trusts tlsfront's address (Sendmail's
/// built-in 127.0.0.1, Postfix's mynetworks) relays for every client. `check`
/// asks it to take a recipient it does not serve, from the address `run`
/// would use, and names the fix; an untrusted `--source-address` clears it.
#[tokio::test]
async fn a_backend_relaying_for_tlsfront_is_an_error_naming_the_fix() {
    let mta = Mta::start(MtaScript {
        trusted_clients: vec!["127.0.0.1".parse().unwrap()],
        ..MtaScript::default()
    })
    .await;
    let ca = Ca::new();
    let good = ca.leaf("good", &["mx.check.test"], |_| {});
    let config = ca.config(mta.addr, &good);
    let out = tlsfront(check_args(&["--config", &p(&config), "--json"])).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let j = out.json();
    assert_eq!(codes(&j, "error"), vec!["backend_open_relay"], "{j:#}");
    let message = finding(&j, "backend_open_relay")["message"]
        .as_str()
        .unwrap()
        .to_string();
    for needle in [
        "OPEN RELAY",
        "from tlsfront's address 127.0.0.1",
        "backend.source_address",
        "--source-address",
        "backend.xclient",
        "backend.proxy_protocol",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // The test is a transaction that is never sent: no DATA, then RSET.
    let cmds = mta.commands();
    let rcpt = cmds
        .iter()
        .position(|c| {
            c.starts_with("RCPT TO:<relay-test@tlsfront-") && c.ends_with(".example.net>")
        })
        .unwrap_or_else(|| panic!("{cmds:?}"));
    assert_eq!(cmds[rcpt - 1], "MAIL FROM:<>");
    assert_eq!(cmds[rcpt + 1], "RSET");
    assert!(!cmds.iter().any(|c| c == "DATA"), "{cmds:?}");

    // From an address the backend does not trust, it refuses: ok.
    let out = tlsfront(check_args(&[
        "--config",
        &p(&config),
        "--source-address",
        "127.0.0.2",
        "--json",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let j = out.json();
    let f = finding(&j, "backend_relay_refused");
    assert_eq!(f["level"], "ok");
    let message = f["message"].as_str().unwrap();
    assert!(
        message.contains("from tlsfront's address 127.0.0.2") && message.contains("554 5.7.1"),
        "{message}"
    );
    let peers = mta.log.lock().unwrap().peers.clone();
    assert_eq!(peers.last().unwrap().ip().to_string(), "127.0.0.2");
}

/// With XCLIENT towards the backend, the test stands for an outside client
/// (a documentation address), as a real session would: the backend sees
/// that address, not tlsfront's, and refuses to relay.
#[tokio::test]
async fn the_relay_test_passes_an_outside_client_with_xclient() {
    let mta = Mta::start(MtaScript {
        trusted_clients: vec!["127.0.0.1".parse().unwrap()],
        ..MtaScript::default()
    })
    .await;
    let ca = Ca::new();
    let good = ca.leaf("good", &["mx.check.test"], |_| {});
    let config = ca.config(mta.addr, &good);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[backend]\n", "[backend]\nxclient = true\n");
    std::fs::write(&config, text).unwrap();
    let out = tlsfront(check_args(&["--config", &p(&config), "--json"])).await;
    let j = out.json();
    let cmds = mta.commands();
    assert!(
        cmds.iter()
            .any(|c| c.starts_with("XCLIENT ADDR=192.0.2.1 ")),
        "{cmds:?}"
    );
    // The fake backend does not track XCLIENT: it still relays for
    // 127.0.0.1, and the finding says who the test stood for.
    let message = finding(&j, "backend_open_relay")["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("with an outside client passed by xclient"),
        "{message}"
    );
}

/// Who may read the private key: group- or world-readable is a warning.
/// Run as root, `check` reads everything, so it judges the files for the
/// service's user (the unit's DynamicUser by default): a key in a directory
/// only root may enter is an error naming LoadCredential=, not a pass.
#[tokio::test]
async fn private_keys_are_judged_for_who_may_read_them() {
    let mta = Mta::start(MtaScript::default()).await;
    let ca = Ca::new();
    let good = ca.leaf("good", &["mx.check.test"], |_| {});
    let config = ca.config(mta.addr, &good);
    for (mode, code) in [
        (0o644, Some("key_world_readable")),
        (0o640, Some("key_group_readable")),
        (0o600, None),
    ] {
        chmod(&good.1, mode);
        let out = tlsfront(check_args(&[
            "--config",
            &p(&config),
            "--no-backend",
            "--json",
        ]))
        .await;
        let j = out.json();
        assert_eq!(out.code, 0, "{j:#}");
        let warnings = codes(&j, "warning");
        assert_eq!(warnings, code.into_iter().collect::<Vec<_>>(), "{mode:o}");
        if let Some(code) = code {
            let m = finding(&j, code)["message"].as_str().unwrap();
            assert!(
                m.contains("LoadCredential=") && m.contains(&p(&good.1)),
                "{m}"
            );
        }
    }

    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        println!("SKIPPED: the service-user part needs root (as CI runs it)");
        return;
    }
    // As root by hand: the test's directory is 0700 root, as certbot's live/ is.
    chmod(ca.dir.path(), 0o700);
    let out = tlsfront(args(&[
        "check",
        "--config",
        &p(&config),
        "--no-backend",
        "--json",
    ]))
    .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let j = out.json();
    assert_eq!(
        codes(&j, "error"),
        vec![
            "certificate_unreadable_by_service",
            "key_unreadable_by_service"
        ],
        "{j:#}"
    );
    let m = finding(&j, "key_unreadable_by_service")["message"]
        .as_str()
        .unwrap();
    for needle in [
        "DynamicUser=yes",
        "no search permission on directory",
        "LoadCredential=",
        "%d/NAME",
    ] {
        assert!(m.contains(needle), "{needle}: {m}");
    }
    // The service runs as root (--service-user root): it can.
    let out = tlsfront(args(&[
        "check",
        "--config",
        &p(&config),
        "--no-backend",
        "--service-user",
        "root",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stdout);
}

/// `%d/NAME` names a file systemd passed with LoadCredential=: read from
/// $CREDENTIALS_DIRECTORY, and not judged by its permissions (it is the
/// service's own). By hand, without that directory, `check` says the key is
/// not loaded here (a warning) and `run` refuses to start in the same words.
#[tokio::test]
async fn keys_passed_as_systemd_credentials() {
    let ca = Ca::new();
    let good = ca.leaf("good", &["mx.check.test"], |_| {});
    let creds = tempfile::tempdir().unwrap();
    std::fs::copy(&good.0, creds.path().join("mx.pem")).unwrap();
    std::fs::copy(&good.1, creds.path().join("mx.key")).unwrap();
    chmod(&creds.path().join("mx.key"), 0o400);
    let config = ca.config(
        dead_addr().await,
        &(PathBuf::from("%d/mx.pem"), PathBuf::from("%d/mx.key")),
    );
    let dir = p(creds.path());
    // No --service-user: as root, the dynamic user's view; credentials pass.
    let out = tlsfront_env(
        args(&["check", "--config", &p(&config), "--no-backend", "--json"]),
        &[("CREDENTIALS_DIRECTORY", &dir)],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let j = out.json();
    assert_eq!(codes(&j, "warning"), Vec::<String>::new(), "{j:#}");
    let subject = finding(&j, "key_matches")["subject"].as_str().unwrap();
    assert_eq!(subject, format!("certificate {dir}/mx.pem"));

    // By hand, not under systemd.
    let out = tlsfront_env(
        args(&["check", "--config", &p(&config), "--no-backend", "--json"]),
        &[("CREDENTIALS_DIRECTORY", "")],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    let j = out.json();
    assert_eq!(codes(&j, "warning"), vec!["credential_not_loaded"], "{j:#}");
    let words = "names the systemd credential \"mx.pem\", but $CREDENTIALS_DIRECTORY is not set";
    let m = finding(&j, "credential_not_loaded")["message"]
        .as_str()
        .unwrap();
    assert!(m.contains(words), "{m}");
    let run = tlsfront_env(
        args(&["run", "--config", &p(&config)]),
        &[("CREDENTIALS_DIRECTORY", "")],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains(words), "{}", run.stderr);

    // A credential name with a slash is a configuration error naming the key.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("%d/mx.key", "%d/../mx.key"),
    )
    .unwrap();
    let out = tlsfront_env(
        args(&["check", "--config", &p(&config), "--no-backend"]),
        &[("CREDENTIALS_DIRECTORY", &dir)],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("`tls.certificate[0].key`"),
        "{}",
        out.stderr
    );
}

/// A configuration file with these listeners, backend and record path
/// (and the Ca's good certificate).
fn dry_run_config(ca: &Ca, listeners: &[&str], backend: &str, records: &str) -> PathBuf {
    let good = ca.leaf("dry", &["mx.check.test"], |_| {});
    let path = ca.dir.path().join("dry.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nhostname = \"mx.check.test\"\n[[listener]]\naddress = {listeners:?}\n\
             [backend]\naddress = \"{backend}\"\n[records]\npath = \"{records}\"\n\
             [[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            p(&good.0),
            p(&good.1)
        ),
    )
    .unwrap();
    path
}

/// `check` binds each listener for a moment, as `run` would: a port another
/// process holds is an error naming that process (here: this test).
#[tokio::test]
async fn a_busy_port_is_refused_naming_who_holds_it() {
    let ca = Ca::new();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let records = p(&ca.dir.path().join("r.jsonl"));
    let config = dry_run_config(&ca, &[&addr.to_string()], "127.0.0.1:9", &records);
    let out = tlsfront(check_args(&[
        "--config",
        &p(&config),
        "--no-backend",
        "--json",
    ]))
    .await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let j = out.json();
    assert_eq!(codes(&j, "error"), vec!["listener_busy"], "{j:#}");
    let m = finding(&j, "listener_busy")["message"].as_str().unwrap();
    assert!(
        m.contains(&addr.to_string()) && m.contains(&format!("PID {}", std::process::id())),
        "{m}"
    );
    // `run` agrees.
    let run = tlsfront(args(&["run", "--config", &p(&config)])).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("Address already in use"),
        "{}",
        run.stderr
    );
    drop(held);
    let out = tlsfront(check_args(&[
        "--config",
        &p(&config),
        "--no-backend",
        "--json",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(finding(&out.json(), "listener_bind")["level"], "ok");
}

/// A backend that is tlsfront's own wildcard listener: every message would
/// loop through tlsfront until the caps stop it. Refused by check and run.
#[tokio::test]
async fn a_backend_on_tlsfronts_own_wildcard_listener_is_refused() {
    let ca = Ca::new();
    let port = dead_addr().await.port();
    let records = p(&ca.dir.path().join("r.jsonl"));
    let config = dry_run_config(
        &ca,
        &[&format!("0.0.0.0:{port}")],
        &format!("127.0.0.1:{port}"),
        &records,
    );
    let out = tlsfront(check_args(&["--config", &p(&config), "--json"])).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    let m = finding(&out.json(), "config_invalid")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        m.contains("`backend.address`")
            && m.contains(&format!("served by tlsfront's own listener 0.0.0.0:{port}"))
            && m.contains("relay to itself"),
        "{m}"
    );
    let run = tlsfront(args(&["run", "--config", &p(&config)])).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&m), "{}", run.stderr);
}

/// The record file is opened as `run` opens it: a symbolic link or a
/// directory is an error (as root, permissions would not show it); a file
/// that is not there yet is created and removed again; a relative path is a
/// warning (the unit starts in a read-only /).
#[tokio::test]
async fn the_record_file_is_opened_as_run_opens_it() {
    let ca = Ca::new();
    let target = ca.dir.path().join("elsewhere.jsonl");
    std::fs::write(&target, "").unwrap();
    let link = ca.dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dir = ca.dir.path().join("a-directory.jsonl");
    std::fs::create_dir(&dir).unwrap();
    for bad in [&link, &dir] {
        let config = dry_run_config(&ca, &["127.0.0.1:0"], "127.0.0.1:9", &p(bad));
        let out = tlsfront(check_args(&[
            "--config",
            &p(&config),
            "--no-backend",
            "--json",
        ]))
        .await;
        assert_eq!(out.code, 1, "{}", out.stdout);
        let j = out.json();
        assert_eq!(codes(&j, "error"), vec!["records_unwritable"], "{j:#}");
        let run = tlsfront(args(&["run", "--config", &p(&config)])).await;
        assert_eq!(run.code, 2, "{}", run.stderr);
        let m = finding(&j, "records_unwritable")["message"]
            .as_str()
            .unwrap();
        let why = run.stderr.trim_start_matches("tlsfront: ").trim_end();
        assert!(m.starts_with(why), "check: {m}\nrun: {why}");
    }
    let fresh = ca.dir.path().join("fresh.jsonl");
    let config = dry_run_config(&ca, &["127.0.0.1:0"], "127.0.0.1:9", &p(&fresh));
    let out = tlsfront(check_args(&[
        "--config",
        &p(&config),
        "--no-backend",
        "--json",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(finding(&out.json(), "records_writable")["level"], "ok");
    assert!(!fresh.exists(), "check left the record file it created");

    let config = dry_run_config(&ca, &["127.0.0.1:0"], "127.0.0.1:9", "records.jsonl");
    let out = tlsfront(check_args(&[
        "--config",
        &p(&config),
        "--no-backend",
        "--json",
    ]))
    .await;
    let j = out.json();
    assert_eq!(codes(&j, "warning"), vec!["records_path_relative"], "{j:#}");
    assert!(
        finding(&j, "records_path_relative")["message"]
            .as_str()
            .unwrap()
            .contains("ProtectSystem=strict")
    );
}

/// `[::]:P` alone is IPv6 only now: `check` says IPv4 clients are left out.
#[tokio::test]
async fn an_ipv6_wildcard_without_ipv4_is_a_warning() {
    let ca = Ca::new();
    let records = p(&ca.dir.path().join("r.jsonl"));
    let port = dead_addr().await.port();
    let config = dry_run_config(&ca, &[&format!("[::]:{port}")], "127.0.0.1:9", &records);
    let out = tlsfront(check_args(&[
        "--config",
        &p(&config),
        "--no-backend",
        "--json",
    ]))
    .await;
    let j = out.json();
    assert_eq!(codes(&j, "warning"), vec!["listener_ipv6_only"], "{j:#}");
    let both = dry_run_config(
        &ca,
        &[&format!("0.0.0.0:{port}"), &format!("[::]:{port}")],
        "127.0.0.1:9",
        &records,
    );
    let out = tlsfront(check_args(&[
        "--config",
        &p(&both),
        "--no-backend",
        "--json",
    ]))
    .await;
    let j = out.json();
    assert_eq!(out.code, 0, "{j:#}");
    assert_eq!(codes(&j, "warning"), Vec::<String>::new(), "{j:#}");
}

#[tokio::test]
async fn help_explains_check() {
    let out = tlsfront(args(&["check", "--help"])).await;
    assert_eq!(out.code, 0);
    for needle in [
        "--json",
        "--no-backend",
        "--config",
        "--cert",
        "Exit status: 0",
        "XCLIENT",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle} missing: {}",
            out.stdout
        );
    }
    let out = tlsfront(args(&["run", "--help"])).await;
    assert!(out.stdout.contains("--listen") && out.stdout.contains("--log"));
}

// ------------------------------------------- weak backend STARTTLS (openssl)

async fn check_weak_backend(rsa_bits: u32, cipher: &str) -> Option<Value> {
    check_weak_backend_with(rsa_bits, cipher, false).await
}

/// `backend_tls`: the config also asks for TLS to that backend.
async fn check_weak_backend_with(rsa_bits: u32, cipher: &str, backend_tls: bool) -> Option<Value> {
    if !openssl_available() {
        eprintln!("SKIPPED: the openssl binary is missing (apt-get install openssl)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cipher = cipher.to_string();
    let d = dir.path().to_path_buf();
    let server = tokio::task::spawn_blocking(move || s_server(&d, rsa_bits, &cipher))
        .await
        .unwrap();
    let (front, task) = starttls_front(server.addr).await;
    let ca = Ca::new();
    let good = ca.leaf("good", &["mx.check.test"], |_| {});
    let config = ca.config(front, &good);
    if backend_tls {
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replace("[backend]\n", "[backend]\ntls = \"starttls\"\n"),
        )
        .unwrap();
    }
    let out = tlsfront(check_args(&["--config", &p(&config), "--json"])).await;
    task.abort();
    drop(server);
    // A weak backend STARTTLS is a warning: tlsfront is the fix for it; but
    // asking tlsfront itself to speak it (backend.tls) is an error.
    assert_eq!(
        out.code,
        if backend_tls { 1 } else { 0 },
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    Some(out.json())
}

#[tokio::test]
async fn weak_rsa_backend_starttls_is_reported() {
    let Some(j) = check_weak_backend(1024, "DEFAULT:@SECLEVEL=0").await else {
        return;
    };
    let f = finding(&j, "backend_starttls_weak_rsa");
    assert_eq!(f["level"], "warning");
    assert!(
        f["message"].as_str().unwrap().contains("RSA 1024 bits"),
        "{f}"
    );
    assert!(
        f["message"].as_str().unwrap().contains("ee key too small"),
        "{f}"
    );
    let t = &j["backend"]["starttls"];
    assert_eq!(t["accepted"], true);
    assert_eq!(t["version"], "TLSv1.2");
    assert_eq!(t["key_type"], "rsa_1024");
    assert_eq!(t["key_bits"], 1024);
    assert_eq!(t["key_exchange"], "ecdhe");
    assert_eq!(t["cert_subject"], "CN=weak.legacy.test");
    assert_eq!(t["refused_by_modern_clients"], true);
    assert_eq!(t["reasons"], serde_json::json!(["ee key too small"]));
    assert!(
        codes(&j, "warning")
            .iter()
            .all(|c| c != "backend_starttls_weak_dh")
    );
}

#[tokio::test]
async fn weak_dh_backend_starttls_is_reported() {
    // DHE only, with a sound 2048-bit RSA key: the DH group is the weakness.
    let Some(j) = check_weak_backend(2048, "kEDH:@SECLEVEL=0").await else {
        return;
    };
    let f = finding(&j, "backend_starttls_weak_dh");
    assert_eq!(f["level"], "warning");
    assert!(
        f["message"].as_str().unwrap().contains("1024-bit DH group"),
        "{f}"
    );
    let t = &j["backend"]["starttls"];
    assert_eq!(t["key_exchange"], "dhe");
    assert_eq!(t["dh_bits"], 1024);
    assert_eq!(t["key_type"], "rsa_2048");
    assert!(
        t["cipher_suite"]
            .as_str()
            .unwrap()
            .starts_with("TLS_DHE_RSA_WITH_")
    );
    assert_eq!(t["reasons"], serde_json::json!(["dh key too small"]));
    assert_eq!(codes(&j, "warning"), vec!["backend_starttls_weak_dh"]);
}

#[tokio::test]
async fn backend_tls_to_a_weak_backend_is_an_error() {
    let Some(j) = check_weak_backend_with(1024, "DEFAULT:@SECLEVEL=0", true).await else {
        return;
    };
    let f = finding(&j, "backend_tls_impossible");
    assert_eq!(f["level"], "error");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("backend.tls = \"none\""),
        "{f}"
    );
}

#[tokio::test]
async fn metrics_on_a_public_address_is_a_warning() {
    let ca = Ca::new();
    let good = ca.leaf("good", &["mx.check.test"], |_| {});
    let config = ca.config(dead_addr().await, &good);
    let base = std::fs::read_to_string(&config).unwrap();
    let port = dead_addr().await.port();
    for (listen, warned) in [
        (format!("0.0.0.0:{port}"), true),
        (format!("[::]:{port}"), true),
        // Not an address of this host: `run` could not bind it either.
        ("192.0.2.10:9325".to_string(), true),
        (format!("127.0.0.1:{port}"), false),
        (format!("[::1]:{port}"), false),
    ] {
        let listen = listen.as_str();
        std::fs::write(&config, format!("{base}[metrics]\nlisten = \"{listen}\"\n")).unwrap();
        let out = tlsfront(check_args(&[
            "--config",
            &p(&config),
            "--no-backend",
            "--json",
        ]))
        .await;
        let j = out.json();
        if listen.starts_with("192.0.2.10") {
            assert_eq!(out.code, 1, "{j:#}");
            assert_eq!(codes(&j, "error"), vec!["listener_unavailable"], "{j:#}");
        } else {
            assert_eq!(out.code, 0, "{listen}: {}\n{}", out.stdout, out.stderr);
        }
        let want: Vec<String> = if warned {
            vec!["metrics_not_loopback".into()]
        } else {
            Vec::new()
        };
        assert_eq!(codes(&j, "warning"), want, "{listen}: {j:#}");
        if warned {
            let message = finding(&j, "metrics_not_loopback")["message"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(message.contains(listen), "{message}");
        }
    }
}

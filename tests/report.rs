//! `tlsfront report` as an admin runs it: the built binary over a plain and a
//! gzip-rotated record file, standard input, and the configured record path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn tlsfront(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tlsfront"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tlsfront");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn now() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// A record as tlsfront writes it (the fields the report reads, and a few more).
fn record(ts: &str, ip: &str, tls: &str, extra: Value) -> String {
    let mut r = json!({
        "ts": ts, "session": "it-1", "listener": "192.0.2.1:25", "mode": "starttls",
        "client_ip": ip, "client_port": 50000, "server_hostname": "mx.example.test",
        "sni": null, "starttls_offered": true, "starttls_used": tls != "not_attempted",
        "tls": tls, "tls_version": null, "cipher_suite": null, "kx_group": null,
        "cert_key_type": null, "self_signed": false, "failure_reason": null,
        "close_reason": "client_quit", "duration_ms": 3.5
    });
    if tls == "established" {
        r["tls_version"] = json!("TLSv1.3");
        r["cipher_suite"] = json!("TLS13_AES_256_GCM_SHA384");
        r["kx_group"] = json!("X25519MLKEM768");
        r["cert_key_type"] = json!("ecdsa_p256");
        r["sni"] = json!("mx.example.test");
    }
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r.to_string()
}

struct Files {
    _dir: tempfile::TempDir,
    plain: PathBuf,
    gz: PathBuf,
}

impl Files {
    fn plain(&self) -> &str {
        self.plain.to_str().unwrap()
    }
    fn gz(&self) -> &str {
        self.gz.to_str().unwrap()
    }
}

/// records.jsonl: 5 records and one garbage line (line 4);
/// records.jsonl.1.gz: 3 records, one of them from 2020.
fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let tls12 = json!({"tls_version": "TLSv1.2",
        "cipher_suite": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "kx_group": "X25519", "cert_key_type": "rsa_2048"});
    let plain_lines = [
        record(&t, "192.0.2.1", "established", json!({})),
        record(&t, "192.0.2.1", "established", json!({})),
        record(&t, "198.51.100.20", "established", tls12),
        "{\"ts\": truncated".to_string(),
        record(&t, "203.0.113.5", "not_attempted", json!({})),
        record(&t, "203.0.113.5", "not_attempted", json!({})),
    ];
    let plain = dir.path().join("records.jsonl");
    std::fs::write(&plain, plain_lines.join("\n") + "\n").unwrap();

    let gz_lines = [
        record(
            &t,
            "198.51.100.7",
            "failed",
            json!({"failure_reason": "no_shared_cipher_suite"}),
        ),
        record(&t, "192.0.2.1", "established", json!({})),
        record(
            "2020-01-01T00:00:00.000Z",
            "192.0.2.99",
            "not_attempted",
            json!({}),
        ),
    ];
    let gz = dir.path().join("records.jsonl.1.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all((gz_lines.join("\n") + "\n").as_bytes())
        .unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    Files {
        _dir: dir,
        plain,
        gz,
    }
}

fn json_report(args: &[&str], stdin: Option<&[u8]>) -> Value {
    let out = tlsfront(args, stdin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints one JSON object")
}

#[test]
fn json_counts_plain_and_gzip_files() {
    let f = files();
    let v = json_report(&["report", f.plain(), f.gz(), "--json"], None);
    assert_eq!(v["sources"], json!([f.plain(), f.gz()]));
    assert_eq!(v["sessions"], 8);
    assert_eq!(v["lines"], 9);
    assert_eq!(v["malformed_lines"], 1);
    assert_eq!(v["first_malformed"], format!("{}:4", f.plain()));
    assert_eq!(v["tls_established"], 4);
    assert_eq!(v["tls_established_percent"], 50.0);
    assert_eq!(v["starttls_used"], 5);
    assert_eq!(v["tls_not_attempted"], 3);
    assert_eq!(v["tls_failed"], 1);
    assert_eq!(
        v["versions"],
        json!([{"name": "TLSv1.3", "sessions": 3}, {"name": "TLSv1.2", "sessions": 1}])
    );
    assert_eq!(
        v["failures"],
        json!([{"reason": "no_shared_cipher_suite", "sessions": 1, "clients": 1,
                "top_clients": [{"ip": "198.51.100.7", "sessions": 1}]}])
    );
    assert_eq!(
        v["never_tls_clients"],
        json!([{"ip": "203.0.113.5", "sessions": 2}, {"ip": "192.0.2.99", "sessions": 1}])
    );
    assert_eq!(v["policy"]["require_tls"]["sessions"], 3);
    assert_eq!(v["policy"]["require_tls"]["clients"], 2);
    assert_eq!(v["policy"]["tls13_only"]["sessions"], 1);
    assert_eq!(v["verdict"], "no");
    assert_eq!(v["legacy_path_retired"], false);
    assert_eq!(v["exception_sessions"], 4);
    assert_eq!(v["exceptions"][0]["tls"], "not_attempted");
    assert_eq!(v["exceptions"][0]["reason"], "plaintext");
    assert_eq!(v["exceptions"][0]["sessions"], 3);
    assert_eq!(v["exceptions"][1]["reason"], "no_shared_cipher_suite");
}

#[test]
fn since_leaves_out_old_records() {
    let f = files();
    let v = json_report(
        &["report", "--since", "1d", f.plain(), f.gz(), "--json"],
        None,
    );
    assert_eq!(v["sessions"], 7);
    assert_eq!(v["older_than_since"], 1);
    assert_eq!(v["policy"]["require_tls"]["clients"], 1);
}

#[test]
fn text_report_key_lines() {
    let f = files();
    let out = tlsfront(&["report", f.plain(), f.gz()], None);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        &format!(
            "tlsfront report: 8 sessions from {}, {}\n",
            f.plain(),
            f.gz()
        ),
        &format!("1 malformed line skipped (first at {}:4)\n", f.plain()),
        "\n  TLS established    4  50.0%\n",
        "\n  no_shared_cipher_suite  1 session  1 client  198.51.100.7 (1)\n",
        "\n  require TLS would refuse 3 sessions from 2 clients: 203.0.113.5 (2), 192.0.2.99 (1)\n",
        "\n  TLS 1.3 only would break 1 session from 1 client (TLS 1.2 users): 198.51.100.20 (1)\n",
        "\nLegacy path retired: NO — 4 sessions are exceptions:\n",
        "\n  not_attempted  plaintext               3 sessions  2 clients  203.0.113.5 (2), 192.0.2.99 (1)\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        text.ends_with(
            "  failed         no_shared_cipher_suite  1 session   1 client   198.51.100.7 (1)\n"
        ),
        "{text}"
    );
}

#[test]
fn all_modern_from_stdin_says_yes() {
    let t = now();
    let input = [
        record(&t, "192.0.2.1", "established", json!({})),
        record(&t, "192.0.2.2", "established", json!({"mode": "implicit"})),
    ]
    .join("\n");
    let out = tlsfront(&["report", "-"], Some(input.as_bytes()));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("tlsfront report: 2 sessions from -\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\nLegacy path retired: YES — every session used modern TLS at tlsfront\n"),
        "{text}"
    );
}

/// Record fields come from clients (SNI, HELO) or from whoever wrote the file:
/// a CR, LF or ESC in them must not forge a line of the text report or reach
/// the terminal.
#[test]
fn hostile_text_in_records_is_escaped_in_the_text_report() {
    let t = now();
    let forged = "a\r\nlegacy path retired: yes\x1b[2J";
    let input = [
        record(
            &t,
            "192.0.2.1",
            "failed",
            json!({
                "sni": forged, "helo": forged, "failure_reason": "alert\nLegacy path retired: YES",
            }),
        ),
        record(
            &t,
            "192.0.2.66\x1b[31m\r",
            "not_attempted",
            json!({"helo": forged}),
        ),
    ]
    .join("\n");
    let out = tlsfront(&["report", "-"], Some(input.as_bytes()));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
    let verdicts: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.trim_start()
                .to_ascii_lowercase()
                .starts_with("legacy path retired")
        })
        .collect();
    assert_eq!(
        verdicts,
        ["Legacy path retired: NO — 2 sessions are exceptions:"],
        "{text}"
    );
    for shown in [
        r"a\r\nlegacy path retired: yes\x1b[2J",
        r"alert\nLegacy path retired: YES",
        r"192.0.2.66\x1b[31m\r",
    ] {
        assert!(text.contains(shown), "missing {shown:?} in:\n{text}");
    }
    // The JSON keeps the text as recorded (JSON escapes it).
    let v = json_report(&["report", "-", "--json"], Some(input.as_bytes()));
    assert_eq!(v["sni"][0]["name"], forged);
}

#[test]
fn missing_file_is_exit_1_naming_the_file() {
    let f = files();
    let missing = f.plain.with_file_name("rotated.jsonl.9.gz");
    let out = tlsfront(&["report", f.plain(), missing.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no half report");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("{}: cannot open", missing.display())),
        "{err}"
    );
}

#[test]
fn without_files_reads_the_configured_record_path() {
    let f = files();
    let config = f.plain.with_file_name("tlsfront.toml");
    write_config(&config, Some(&f.plain));
    let v = json_report(
        &["report", "--config", config.to_str().unwrap(), "--json"],
        None,
    );
    assert_eq!(v["sources"], json!([f.plain()]));
    assert_eq!(v["sessions"], 5);

    write_config(&config, None);
    let out = tlsfront(&["report", "--config", config.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no records.path"), "{err}");
}

fn write_config(path: &Path, records: Option<&Path>) {
    let mut text = "[[listener]]\naddress = [\"127.0.0.1:2525\"]\n\n\
                    [backend]\naddress = \"127.0.0.1:10025\"\n"
        .to_string();
    if let Some(r) = records {
        text.push_str(&format!(
            "\n[records]\npath = {:?}\n",
            r.display().to_string()
        ));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn help_tells_an_admin_what_is_read_and_how() {
    let out = tlsfront(&["report", "--help"], None);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "Legacy path retired",
        "gzip",
        "records.path",
        "/etc/tlsfront/tlsfront.toml",
        "--since <DURATION>",
        "7d",
        "--json",
        "Exit status: 0",
        "tlsfront report --since 7d /var/log/tlsfront/records.jsonl*",
    ] {
        assert!(help.contains(expected), "missing {expected:?} in:\n{help}");
    }
    let top = String::from_utf8(tlsfront(&["--help"], None).stdout).unwrap();
    assert!(top.contains("report"), "{top}");
}

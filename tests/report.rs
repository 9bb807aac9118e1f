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
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut r = json!({
        "ts": ts, "host": "mx1", "session": format!("it-{n}"), "listener": "192.0.2.1:25", "mode": "starttls",
        "client_ip": ip, "client_port": 50000, "server_hostname": "mx.example.test",
        "sni": null, "starttls_offered": true, "starttls_used": tls != "not_attempted",
        "tls": tls, "tls_version": null, "cipher_suite": null, "kx_group": null,
        "cert_key_type": null, "self_signed": false, "failure_reason": null,
        "backend_contacted": true, "messages_accepted": 1,
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
    // No offer in the record: it cannot tell, so the failure blocks.
    assert_eq!(
        v["failures"],
        json!([{"reason": "no_shared_cipher_suite", "category": "stricter_than_legacy",
                "sessions": 1, "clients": 1,
                "top_clients": [{"ip": "198.51.100.7", "sessions": 1}]}])
    );
    assert_eq!(v["plaintext_senders"][0]["ip"], "203.0.113.5");
    assert_eq!(v["plaintext_senders"][0]["sessions"], 2);
    assert_eq!(v["plaintext_senders"][1]["ip"], "192.0.2.99");
    assert_eq!(v["policy"]["require_tls"]["sessions"], 3);
    assert_eq!(v["policy"]["require_tls"]["clients"], 2);
    assert_eq!(v["simulations"][0]["policy"], "tls13-only");
    assert_eq!(v["simulations"][0]["sessions"], 1);
    assert_eq!(v["verdict"], "no");
    assert_eq!(v["legacy_path_retired"], false);
    assert_eq!(v["exception_sessions"], 1);
    assert_eq!(v["exceptions"][0]["reason"], "no_shared_cipher_suite");
    assert_eq!(v["covered"]["first"], "2020-01-01T00:00:00Z");
}

#[test]
fn since_and_until_take_durations_and_dates() {
    let f = files();
    let v = json_report(
        &["report", "--since", "1d", f.plain(), f.gz(), "--json"],
        None,
    );
    assert_eq!(v["sessions"], 7);
    assert_eq!(v["outside_range"], 1);
    assert_eq!(v["policy"]["require_tls"]["clients"], 1);
    let v = json_report(
        &[
            "report",
            "--until",
            "2021-01-01",
            f.plain(),
            f.gz(),
            "--json",
        ],
        None,
    );
    assert_eq!(v["sessions"], 1);
    assert_eq!(v["covered"]["until"], "2021-01-01T00:00:00Z");
    assert_eq!(v["covered"]["last"], "2020-01-01T00:00:00Z");
    let out = tlsfront(
        &[
            "report",
            "--since",
            "2021-01-01",
            "--until",
            "2020-01-01",
            f.plain(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let out = tlsfront(&["report", "--since", "yesterday", f.plain()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since: \"yesterday\" is neither"));
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
        "\nCovers from 2020-01-01T00:00:00Z to ",
        &format!("1 malformed line skipped (first at {}:4)\n", f.plain()),
        "\n  TLS established    4  50.0%\n",
        "\n  plaintext senders (never tried STARTTLS)           3\n",
        "\n  203.0.113.5  2 sessions  2 messages  TLS 0  plaintext 2  failed 0  probes 0\n",
        "\n  require TLS would refuse 3 sessions from 2 clients: 203.0.113.5 (2), 192.0.2.99 (1) (3 messages)\n",
        "\n  tls13-only (only TLS 1.3 offered) would break 1 session from 1 client: 198.51.100.20 (1); 1 message = 12.5% of the mail (of 4 sessions established, 4 judged from what was negotiated)\n",
        "\n  direct sessions to the legacy MTA: not checked (give its log with --legacy-log)\n",
        "\nLegacy path retired: NO — 1 session is an exception (from 2020-01-01T00:00:00Z to ",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        text.ends_with(
            "  failed  no_shared_cipher_suite  stricter_than_legacy  1 session  1 client  198.51.100.7 (1)\n"
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
    // The report shows times as jiff does (trailing zeros of the fraction
    // dropped: .280 is .28), so the expectation goes through the same.
    let t: jiff::Timestamp = t.parse().unwrap();
    assert!(
        text.ends_with(&format!(
            "\nLegacy path retired: YES — no sender needs the legacy TLS path from {t} to {t}\n"
        )),
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
            "failed",
            json!({"helo": forged, "failure_reason": "no_shared_group"}),
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
    assert_eq!(verdicts.len(), 1, "{text}");
    assert!(
        verdicts[0].starts_with("Legacy path retired: NO — 1 session is an exception"),
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
    assert!(
        v["sni"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == forged),
        "{v}"
    );
}

/// Two hosts' files (one of them rotated and given twice, once through a
/// pattern the shell did not expand) merge without double counting.
#[test]
fn a_fleet_merges_by_host_and_session() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let host = |h: &str, s: &str, ip: &str, tls: &str| {
        record(&t, ip, tls, json!({"host": h, "session": s}))
    };
    let mx1 = [
        host("mx1", "a-1", "192.0.2.1", "established"),
        host("mx1", "a-2", "192.0.2.2", "established"),
    ];
    let mx2 = [
        host("mx2", "a-1", "192.0.2.1", "established"),
        host("mx2", "b-1", "203.0.113.5", "not_attempted"),
    ];
    std::fs::write(dir.path().join("mx1.jsonl"), mx1.join("\n")).unwrap();
    std::fs::write(dir.path().join("mx2.jsonl"), mx2.join("\n")).unwrap();
    let mx1_path = dir.path().join("mx1.jsonl");
    let pattern = dir.path().join("mx*.jsonl");
    let v = json_report(
        &[
            "report",
            mx1_path.to_str().unwrap(),
            pattern.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    assert_eq!(v["sources"].as_array().unwrap().len(), 3);
    assert_eq!(v["sessions"], 4);
    assert_eq!(v["duplicates"], 2);
    assert_eq!(v["hosts"][0]["host"], "mx1");
    assert_eq!(v["hosts"][0]["sessions"], 2);
    assert_eq!(v["hosts"][1]["host"], "mx2");
    assert_eq!(v["hosts"][1]["plaintext"], 1);
    assert_eq!(v["verdict"], "yes");
}

/// `--simulate` with a policy file, `--legacy-tls`, `--html`.
#[test]
fn simulate_a_policy_file_and_write_html() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let records = dir.path().join("r.jsonl");
    let lines = [
        record(
            &t,
            "192.0.2.1",
            "established",
            json!({"offer": {"versions": ["TLSv1.3"],
            "groups": ["X25519"], "sigs": ["ecdsa"], "suites": ["tls13"]}}),
        ),
        record(
            &t,
            "192.0.2.2",
            "failed",
            json!({"failure_reason": "client_tls_version_too_old",
            "offer": {"versions": ["TLSv1.0"], "groups": [], "sigs": [], "suites": ["rsa_cbc"]}}),
        ),
    ];
    std::fs::write(&records, lines.join("\n")).unwrap();
    let policy = dir.path().join("pq.toml");
    std::fs::write(
        &policy,
        "name = \"pq only\"\ngroups = [\"X25519MLKEM768\"]\n",
    )
    .unwrap();
    let html = dir.path().join("report.html");
    let r = records.to_str().unwrap();
    let v = json_report(
        &[
            "report",
            r,
            "--simulate",
            policy.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    assert_eq!(v["simulations"].as_array().unwrap().len(), 1);
    assert_eq!(v["simulations"][0]["policy"], "pq only");
    assert_eq!(v["simulations"][0]["top_clients"][0]["ip"], "192.0.2.1");
    assert_eq!(v["verdict"], "no");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg id=\"per-day\""), "{page}");
    // A legacy MTA that only spoke TLS 1.2 would have failed the same sender.
    let v = json_report(&["report", r, "--legacy-tls", "1.2", "--json"], None);
    assert_eq!(v["verdict"], "yes");
    assert_eq!(v["legacy_policy"]["versions"], json!(["TLSv1.2"]));
    let out = tlsfront(&["report", r, "--simulate", "tls14-only"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = tlsfront(&["report", r, "--legacy-kx", "psk"], None);
    assert_eq!(out.status.code(), Some(2));
}

/// `--legacy-log`: a direct session in the legacy MTA's log keeps the
/// verdict at NO and names its peer; tlsfront's own sessions do not.
#[test]
fn a_legacy_log_with_a_direct_session() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let records = dir.path().join("r.jsonl");
    std::fs::write(&records, record(&t, "192.0.2.1", "established", json!({}))).unwrap();
    let log = dir.path().join("maillog.gz");
    let stamp = jiff::Timestamp::now().to_string();
    let text = format!(
        "{stamp} old sm-mta[20]: STARTTLS=server, relay=localhost [10.0.0.5], version=TLSv1.3, verify=NO\n\
         {stamp} old sm-mta[21]: STARTTLS=server, relay=old.example [198.51.100.9], version=TLSv1, verify=NO\n\
         {stamp} old sm-mta[21]: 5AR1x: from=<a@b>, size=1, relay=old.example [198.51.100.9]\n"
    );
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    std::fs::write(&log, enc.finish().unwrap()).unwrap();
    let args = [
        "report",
        records.to_str().unwrap(),
        "--legacy-log",
        log.to_str().unwrap(),
        "--tlsfront-source",
        "10.0.0.5",
    ];
    let out = tlsfront(&args, None);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\n  2 sessions: 1 from tlsfront (10.0.0.5), 1 direct (1 with TLS, 0 without, 1 message)\n"), "{text}");
    assert!(
        text.contains("\n  198.51.100.9  1 session  1 TLS TLSv1 (1)"),
        "{text}"
    );
    assert!(
        text.contains("\nLegacy path retired: NO — 1 session is an exception"),
        "{text}"
    );
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let v = json_report(&json_args, None);
    assert_eq!(v["legacy_log"]["direct_sessions"], 1);
    assert_eq!(v["exceptions"][0]["reason"], "direct_tls");
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
        "--since <WHEN>",
        "--until <WHEN>",
        "--legacy-log <FILE>",
        "--simulate <POLICY>",
        "--html <FILE>",
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

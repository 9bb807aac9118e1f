//! What the Debian package installs, checked from the source tree: the man
//! pages and completions the binary generates (hidden `generate` command),
//! the units (the template in step with the service, every path they name
//! installed), the package's asset list, and the example configurations
//! (the production conffile and the second instance's). Building and
//! installing the package itself is `integration/package.sh`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use tlsfront::config::{Overrides, Settings, credential_name};
use tlsfront::outcome::Mode;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn tlsfront(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tlsfront"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tlsfront {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The commands `tlsfront --help` lists (without clap's `help`).
fn visible_commands() -> Vec<String> {
    let help = String::from_utf8(tlsfront(&["--help"]).stdout).unwrap();
    let list = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section");
    let names: Vec<String> = list
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.contains(&"run".to_string()), "{help}");
    names
}

fn generate(what: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(what);
    tlsfront(&["generate", what, out.to_str().unwrap()]);
    (dir, out)
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn generate_is_hidden_from_help() {
    assert!(!visible_commands().contains(&"generate".to_string()));
}

#[test]
fn man_pages_one_per_command_from_the_clap_definitions() {
    let (_dir, man) = generate("man");
    let mut expected: BTreeSet<String> = visible_commands()
        .iter()
        .map(|c| format!("tlsfront-{c}.1"))
        .collect();
    expected.insert("tlsfront.1".into());
    assert_eq!(files_in(&man), expected);
    for page in &expected {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH "), "{page}");
        assert!(
            !text.contains("generate"),
            "{page} mentions the hidden command"
        );
    }
    // The options come from the same definitions as --help.
    let check = std::fs::read_to_string(man.join("tlsfront-check.1")).unwrap();
    assert!(check.contains("no\\-backend"), "{check}");
}

#[test]
fn completions_for_bash_zsh_fish_list_every_command_but_generate() {
    let (_dir, out) = generate("completions");
    let expected: BTreeSet<String> = ["tlsfront.bash", "_tlsfront", "tlsfront.fish"]
        .map(String::from)
        .into();
    assert_eq!(files_in(&out), expected);
    for file in &expected {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        for cmd in visible_commands() {
            assert!(text.contains(&cmd), "{file} lacks {cmd}");
        }
        assert!(text.contains("no-backend"), "{file} lacks check's flags");
        assert!(
            !text.contains("generate"),
            "{file} offers the hidden command"
        );
    }
    if let Ok(status) = Command::new("bash")
        .arg("-n")
        .arg(out.join("tlsfront.bash"))
        .status()
    {
        assert!(status.success(), "bash -n tlsfront.bash");
    }
}

#[test]
fn generate_reports_an_unwritable_directory() {
    let out = Command::new(env!("CARGO_BIN_EXE_tlsfront"))
        .args(["generate", "man", "/proc/tlsfront-no-such-dir"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write into"));
}

/// The template unit as it must be: tlsfront.service from `[Unit]` on, with
/// the instance's config file and name.
fn template_from_service(service: &str) -> String {
    let body = &service[service.find("[Unit]").expect("[Unit]")..];
    body.replace(
        "Description=tlsfront SMTP STARTTLS front for a legacy MTA\n",
        "Description=tlsfront SMTP STARTTLS front for a legacy MTA (instance %i)\n",
    )
    .replace("/etc/tlsfront/tlsfront.toml", "/etc/tlsfront/%i.toml")
}

#[test]
fn template_unit_is_the_service_with_the_instance_config() {
    let service = read("systemd/tlsfront.service");
    let template = read("systemd/tlsfront@.service");
    let body = &template[template.find("[Unit]").expect("[Unit]")..];
    let expected = template_from_service(&service);
    assert!(
        body == expected,
        "systemd/tlsfront@.service has drifted from tlsfront.service: keep its \
         header comment and replace everything from [Unit] on with\n{expected}"
    );
    assert!(expected.contains("--config /etc/tlsfront/%i.toml"));
}

/// `[package.metadata.deb]` of Cargo.toml: (source, destination) pairs.
fn package_assets() -> Vec<(String, String)> {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            (
                a[0].as_str().unwrap().to_string(),
                a[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn package_assets_exist_and_man_pages_and_completions_are_generated_ones() {
    let assets = package_assets();
    for (src, _) in &assets {
        if let Some((dir, suffix)) = src.split_once("/*") {
            // A pattern of the source tree (docs/*.md): it must match files.
            if !src.starts_with("target/") {
                let matched = std::fs::read_dir(root().join(dir))
                    .unwrap()
                    .filter(|e| {
                        e.as_ref()
                            .unwrap()
                            .file_name()
                            .to_string_lossy()
                            .ends_with(suffix)
                    })
                    .count();
                assert!(matched > 0, "asset {src} matches no file");
            }
        } else if !src.starts_with("target/") {
            assert!(root().join(src).is_file(), "asset {src} missing");
        }
    }
    // Generated assets are the names `tlsfront generate` writes.
    let (_d1, man) = generate("man");
    let (_d2, completions) = generate("completions");
    for (src, _) in &assets {
        if let Some(name) = src.strip_prefix("target/packaging/completions/") {
            assert!(completions.join(name).is_file(), "{src} is not generated");
        }
        if src.starts_with("target/packaging/man/") {
            assert_eq!(src, "target/packaging/man/*.1");
            assert!(!files_in(&man).is_empty());
        }
    }
    let dests: BTreeSet<&str> = assets.iter().map(|(_, d)| d.as_str()).collect();
    for dest in [
        "usr/bin/",
        "etc/tlsfront/tlsfront.toml",
        "etc/logrotate.d/tlsfront",
        "usr/share/doc/tlsfront/README.md",
        "usr/share/doc/tlsfront/docs/",
        "usr/share/man/man1/",
        "usr/share/bash-completion/completions/tlsfront",
        "usr/share/zsh/vendor-completions/_tlsfront",
        "usr/share/fish/vendor_completions.d/tlsfront.fish",
    ] {
        assert!(dests.contains(dest), "nothing installed as {dest}");
    }
}

#[test]
fn units_name_only_what_the_package_installs() {
    let (_dir, man) = generate("man");
    let pages = files_in(&man);
    let dests: BTreeSet<String> = package_assets().into_iter().map(|(_, d)| d).collect();
    for unit in ["tlsfront.service", "tlsfront@.service"] {
        let text = read(&format!("systemd/{unit}"));
        let mut documented = 0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(value) = line.strip_prefix("Documentation=") {
                for doc in value.split_whitespace() {
                    if let Some(page) = doc.strip_prefix("man:") {
                        let (name, section) = page.trim_end_matches(')').split_once('(').unwrap();
                        assert!(
                            pages.contains(&format!("{name}.{section}")),
                            "{unit}: {doc}"
                        );
                    } else {
                        let path = doc.strip_prefix("file:///").expect(doc);
                        assert!(dests.contains(path), "{unit}: {doc} is not installed");
                    }
                    documented += 1;
                }
            }
            if line.starts_with("ExecStart") {
                let exe = line.split_once('=').unwrap().1.split_whitespace().next();
                assert_eq!(exe, Some("/usr/bin/tlsfront"), "{unit}: {line}");
            }
        }
        assert!(documented >= 2, "{unit}: Documentation=");
    }
    let logrotate = read("packaging/logrotate");
    assert!(logrotate.contains("/var/log/tlsfront/*.jsonl {"));
    assert!(logrotate.contains("delaycompress") && logrotate.contains("nocreate"));
}

fn load(rel: &str) -> Settings {
    Settings::load(&root().join(rel), true, &Overrides::default())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn production_example_is_a_dual_stack_mx_with_an_untrusted_source_address() {
    let s = load("conf/production.toml");
    let listening: BTreeSet<(String, &str)> = s
        .listeners
        .iter()
        .map(|l| {
            let mode = match l.mode {
                Mode::Starttls => "starttls",
                Mode::Implicit => "implicit",
            };
            (l.addr.to_string(), mode)
        })
        .collect();
    let mut expected = BTreeSet::new();
    for (port, mode) in [(25, "starttls"), (587, "starttls"), (465, "implicit")] {
        expected.insert((format!("0.0.0.0:{port}"), mode));
        expected.insert((format!("[::]:{port}"), mode));
    }
    assert_eq!(listening, expected);
    for l in &s.listeners {
        let required = !matches!(l.require_tls, tlsfront::config::RequireTls::Off);
        assert_eq!(required, l.addr.port() == 587, "{}", l.addr);
    }
    assert_eq!(s.backend.addr.to_string(), "127.0.0.1:10025");
    assert_eq!(
        s.backend.source.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.2")
    );
    assert_eq!(
        s.records.as_deref(),
        Some(Path::new("/var/log/tlsfront/records.jsonl"))
    );
    let [cert] = &s.tls.certificates[..] else {
        panic!("one certificate: {:?}", s.tls.certificates)
    };
    // certbot's key is root's: the unit's DynamicUser gets both files as
    // systemd credentials, named as the unit's LoadCredential= lines name them.
    assert_eq!(
        (credential_name(&cert.cert), credential_name(&cert.key)),
        (Some("mx.pem"), Some("mx.key")),
        "{cert:?}"
    );
    for unit in ["tlsfront.service", "tlsfront@.service"] {
        let text = read(&format!("systemd/{unit}"));
        for line in [
            "#LoadCredential=mx.pem:/etc/letsencrypt/live/mx.example.com/fullchain.pem",
            "#LoadCredential=mx.key:/etc/letsencrypt/live/mx.example.com/privkey.pem",
        ] {
            assert!(text.lines().any(|l| l == line), "{unit}: no {line}");
        }
    }
    let text = read("conf/production.toml");
    assert!(
        text.contains("systemctl restart tlsfront"),
        "credentials need a restart"
    );
    assert!(
        !text.contains("systemctl reload tlsfront"),
        "credentials need a restart"
    );
    // The demo stays the loopback demo the README runs.
    let demo = load("conf/tlsfront.toml");
    assert!(demo.listeners.iter().all(|l| l.addr.ip().is_loopback()));
}

#[test]
fn submission_example_is_587_only_with_its_own_record_file() {
    let s = load("conf/submission.toml");
    let ports: BTreeSet<u16> = s.listeners.iter().map(|l| l.addr.port()).collect();
    assert_eq!(ports, BTreeSet::from([587]));
    assert!(s.backend.source.is_some());
    let records = s.records.unwrap();
    assert!(records.starts_with("/var/log/tlsfront/"));
    assert_ne!(Some(records), load("conf/production.toml").records);
}

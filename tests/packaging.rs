//! What the Debian package installs, checked from the source tree: the man
//! pages and completions the binary generates (hidden `generate` command).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

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

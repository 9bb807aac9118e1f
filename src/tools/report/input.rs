//! Reading record files (into a [`Report`]) and legacy MTA logs (into a
//! [`LegacyLog`]): plain or gzip, detected by the magic bytes so a rotated
//! file counts whatever logrotate named it; `-` is standard input; a pattern
//! (`records.jsonl*`) the shell did not expand is expanded here. Lines are
//! bytes: a line that is not UTF-8 is malformed, not a read error.

use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use thiserror::Error;

use super::Report;
use super::legacy_log::LegacyLog;

/// What takes the lines of the files read.
pub trait LineSink {
    /// A file (or stdin) starts.
    fn begin_source(&mut self, name: &str);
    /// One line, without its line end; `location` says "FILE:LINE".
    fn line(&mut self, line: &[u8], location: &dyn Fn() -> String);
}

impl LineSink for Report {
    fn begin_source(&mut self, name: &str) {
        Report::begin_source(self, name);
    }
    fn line(&mut self, line: &[u8], location: &dyn Fn() -> String) {
        self.add_line(line, location);
    }
}

impl LineSink for LegacyLog {
    fn begin_source(&mut self, name: &str) {
        LegacyLog::begin_source(self, name);
    }
    fn line(&mut self, line: &[u8], _: &dyn Fn() -> String) {
        self.add_line(line);
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

#[derive(Debug, Error)]
pub enum InputError {
    #[error("{file}: cannot open: {source}")]
    Open {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{pattern}: no file matches")]
    NoMatch { pattern: String },
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character).
fn matches(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|i| matches(rest, &name[i..])),
        Some(('?', rest)) => !name.is_empty() && matches(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && matches(rest, &name[1..]),
    }
}

/// The paths to read: each argument as is, unless it does not exist and its
/// file name has `*` or `?` in it, then the files of its folder that match,
/// in name order (an unmatched pattern is an error, as a missing file is).
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    for arg in args {
        let name = arg.file_name().map(|n| n.to_string_lossy().into_owned());
        let pattern = match name {
            Some(n) if (n.contains('*') || n.contains('?')) && !arg.exists() => n,
            _ => {
                out.push(arg.clone());
                continue;
            }
        };
        let dir = match arg.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let pattern: Vec<char> = pattern.chars().collect();
        let entries = std::fs::read_dir(&dir).map_err(|source| InputError::Open {
            file: arg.display().to_string(),
            source,
        })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| {
                let n: Vec<char> = e.file_name().to_string_lossy().chars().collect();
                matches(&pattern, &n)
            })
            .map(|e| arg.with_file_name(e.file_name()))
            .collect();
        if found.is_empty() {
            return Err(InputError::NoMatch {
                pattern: arg.display().to_string(),
            });
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Reads the file at `path` (or stdin for `-`) into `report`.
pub fn read_path(report: &mut impl LineSink, path: &Path) -> Result<(), InputError> {
    if path == Path::new("-") {
        return read_from(report, "-", std::io::stdin().lock());
    }
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| InputError::Open {
        file: name.clone(),
        source,
    })?;
    read_from(report, &name, file)
}

/// Reads every line of `reader`, gunzipping it if it starts with the gzip
/// magic; `name` is used for malformed-line locations and errors.
pub fn read_from(
    report: &mut impl LineSink,
    name: &str,
    reader: impl Read,
) -> Result<(), InputError> {
    let read_err = |source| InputError::Read {
        file: name.to_string(),
        source,
    };
    report.begin_source(name);
    let mut reader = reader;
    // Read the magic bytes exactly: a pipe may deliver them one at a time.
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
    }
    let whole = BufReader::new(Cursor::new(head[..got].to_vec()).chain(reader));
    if head[..got] == GZIP_MAGIC {
        // Multi-member: `cat a.gz b.gz` and some rotators append members.
        lines(report, name, BufReader::new(MultiGzDecoder::new(whole))).map_err(read_err)
    } else {
        lines(report, name, whole).map_err(read_err)
    }
}

fn lines(report: &mut impl LineSink, name: &str, mut reader: impl BufRead) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut number = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        number += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        report.line(line, &|| format!("{name}:{number}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const GOOD: &str = r#"{"ts":"2026-11-23T12:00:00.000Z","tls":"established","tls_version":"TLSv1.3","client_ip":"192.0.2.1"}"#;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn plain_and_gzip_by_content_not_name() {
        let text = format!("{GOOD}\r\n{GOOD}\nbroken\n{GOOD}");
        let mut rep = Report::new(Default::default());
        read_from(&mut rep, "plain.gz", text.as_bytes()).unwrap();
        read_from(&mut rep, "rotated.jsonl", gzip(text.as_bytes()).as_slice()).unwrap();
        let s = rep.summary();
        assert_eq!(s.sessions, 6, "CRLF and a missing final newline are fine");
        assert_eq!(s.malformed_lines, 2);
        assert_eq!(s.first_malformed.as_deref(), Some("plain.gz:3"));
        assert_eq!(s.sources, ["plain.gz", "rotated.jsonl"]);
    }

    /// Hands out one byte per read, like a slow pipe.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            buf[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn gzip_is_detected_when_the_magic_arrives_in_pieces() {
        let data = gzip(format!("{GOOD}\n").as_bytes());
        let mut rep = Report::new(Default::default());
        read_from(&mut rep, "-", Trickle(&data)).unwrap();
        read_from(&mut rep, "one byte", Trickle(b"{")).unwrap();
        let s = rep.summary();
        assert_eq!((s.sessions, s.malformed_lines), (1, 1));
    }

    #[test]
    fn concatenated_gzip_members_are_all_read() {
        let mut data = gzip(format!("{GOOD}\n").as_bytes());
        data.extend(gzip(format!("{GOOD}\n{GOOD}\n").as_bytes()));
        let mut rep = Report::new(Default::default());
        read_from(&mut rep, "x.gz", data.as_slice()).unwrap();
        assert_eq!(rep.summary().sessions, 3);
    }

    #[test]
    fn empty_input_and_corrupt_gzip() {
        let mut rep = Report::new(Default::default());
        read_from(&mut rep, "empty", &b""[..]).unwrap();
        assert_eq!(rep.summary().sessions, 0);
        let mut bad = gzip(GOOD.as_bytes());
        bad.truncate(bad.len() / 2);
        let err = read_from(&mut rep, "cut.gz", bad.as_slice()).unwrap_err();
        assert!(
            err.to_string().starts_with("cut.gz: cannot read: "),
            "{err}"
        );
    }

    #[test]
    fn patterns_the_shell_left_are_expanded_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["r.jsonl", "r.jsonl.1.gz", "r.jsonl.2.gz", "other.log"] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let p = |n: &str| dir.path().join(n);
        let got = expand(&[p("r.jsonl*"), p("other.log"), PathBuf::from("-")]).unwrap();
        assert_eq!(
            got,
            [
                p("r.jsonl"),
                p("r.jsonl.1.gz"),
                p("r.jsonl.2.gz"),
                p("other.log"),
                "-".into()
            ]
        );
        assert_eq!(expand(&[p("r.jsonl.?.gz")]).unwrap().len(), 2);
        let e = expand(&[p("nothing*")]).unwrap_err();
        assert!(e.to_string().ends_with("nothing*: no file matches"), "{e}");
    }

    #[test]
    fn missing_file_names_the_file() {
        let err = read_path(
            &mut Report::new(Default::default()),
            Path::new("/nonexistent/r.jsonl"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/r.jsonl: cannot open: No such file or directory (os error 2)"
        );
    }
}

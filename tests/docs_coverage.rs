//! The reference in docs/ covers what the code can produce: every
//! configuration key (docs/configuration.md), every record field
//! (docs/records.md) and every `check` finding code (docs/check.md, or
//! docs/certificates.md for the ACME, DANE and MTA-STS ones). The names come
//! from the code, never from a hand list: the keys from the `Raw*` structs of
//! src/config/raw.rs (cross-checked against the example configurations), the
//! fields from a serialized `Record` and docs/record.schema.json, the codes
//! from the calls that make a `Finding` in src/tools/check/. Each extraction
//! asserts it found a plausible number, so none can pass by finding nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regex_automata::meta::Regex;
use serde_json::Value;
use tlsfront::outcome::Mode;
use tlsfront::proxy::records::Record;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Capture group `group` of every match of `pattern` in `text`.
fn captures(pattern: &str, text: &str, group: usize) -> Vec<String> {
    let re = Regex::new(pattern).unwrap();
    re.captures_iter(text)
        .filter_map(|c| c.get_group(group).map(|s| text[s.range()].to_string()))
        .collect()
}

/// The names in `names` that `doc` never writes as `` `name` ``.
fn undocumented<'a>(names: impl IntoIterator<Item = &'a String>, doc: &str) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| !doc.contains(&format!("`{n}`")))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------
// Configuration keys
// ---------------------------------------------------------------------------

/// Each `pub struct Raw*` of raw.rs: its fields as (TOML name, Rust type).
/// A `rename` changes the TOML name; `flatten` would hide keys in another
/// struct, so it is refused here rather than misread.
fn raw_structs(src: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut structs = BTreeMap::new();
    let mut rest = src;
    while let Some(at) = rest.find("pub struct Raw") {
        let after = &rest[at + "pub struct ".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let body_start = after.find('{').expect("struct body");
        let body_end = after.find("\n}").expect("struct end");
        let body = &after[body_start + 1..body_end];
        let mut fields = Vec::new();
        let mut rename: Option<String> = None;
        for line in body.lines().map(str::trim) {
            if line.starts_with("#[serde(") {
                assert!(
                    !line.contains("flatten"),
                    "{name}: serde(flatten) is not understood by this test: {line}"
                );
                if let Some(r) = captures(r#"rename\s*=\s*"([^"]+)""#, line, 1).pop() {
                    rename = Some(r);
                }
            } else if let Some(field) = line.strip_prefix("pub ") {
                let (field, ty) = field.split_once(':').expect("pub NAME: TYPE");
                let ty = ty.trim().trim_end_matches(',').to_string();
                fields.push((rename.take().unwrap_or_else(|| field.to_string()), ty));
            }
        }
        structs.insert(name, fields);
        rest = &after[body_end..];
    }
    structs
}

/// Every key a configuration file may hold, `section.key` (`[[listener]]`
/// and `[[tls.certificate]]` without an index: `listener.mode`,
/// `tls.certificate.cert`), walking from `RawConfig` through the fields
/// whose type is another `Raw*` struct.
fn config_keys() -> BTreeSet<String> {
    let structs = raw_structs(&read("src/config/raw.rs"));
    fn walk(
        structs: &BTreeMap<String, Vec<(String, String)>>,
        name: &str,
        prefix: &str,
        out: &mut BTreeSet<String>,
    ) {
        for (field, ty) in &structs[name] {
            let key = format!("{prefix}{field}");
            let nested = captures(r"\b(Raw[A-Za-z]+)\b", ty, 1)
                .into_iter()
                .find(|t| structs.contains_key(t));
            match nested {
                Some(inner) => walk(structs, &inner, &format!("{key}."), out),
                None => {
                    out.insert(key);
                }
            }
        }
    }
    assert!(structs.contains_key("RawConfig"), "no RawConfig in raw.rs");
    let mut keys = BTreeSet::new();
    walk(&structs, "RawConfig", "", &mut keys);
    keys
}

/// The keys a TOML file sets, in the notation of [`config_keys`].
fn toml_keys(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (name, value) in table {
        let key = format!("{prefix}{name}");
        match value {
            toml::Value::Table(t) => toml_keys(t, &format!("{key}."), out),
            toml::Value::Array(items)
                if !items.is_empty() && items.iter().all(toml::Value::is_table) =>
            {
                for item in items {
                    toml_keys(item.as_table().unwrap(), &format!("{key}."), out);
                }
            }
            _ => {
                out.insert(key);
            }
        }
    }
}

#[test]
fn config_keys_are_read_from_raw_rs_as_the_example_files_write_them() {
    let keys = config_keys();
    assert!(keys.len() > 60, "only {} keys found: {keys:?}", keys.len());
    for must in [
        "server.hostname",
        "listener.mode",
        "tls.certificate.cert",
        "acme.directory",
    ] {
        assert!(keys.contains(must), "{must} not derived: {keys:?}");
    }
    // Every key the example configurations set is one of them, so the
    // renames and sections are read as serde reads them.
    for file in [
        "conf/tlsfront.toml",
        "conf/production.toml",
        "conf/submission.toml",
    ] {
        let table: toml::Table = read(file).parse().unwrap();
        let mut set = BTreeSet::new();
        toml_keys(&table, "", &mut set);
        assert!(!set.is_empty(), "{file}");
        let unknown: Vec<_> = set.difference(&keys).collect();
        assert!(
            unknown.is_empty(),
            "{file} sets keys not derived from raw.rs: {unknown:?}"
        );
    }
}

#[test]
fn every_config_key_is_in_docs_configuration_md() {
    let doc = read("docs/configuration.md");
    let missing = undocumented(&config_keys(), &doc);
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document these configuration keys (write each as \
         `section.key` in its section's table): {missing:?}"
    );
}

// ---------------------------------------------------------------------------
// Record fields
// ---------------------------------------------------------------------------

/// The top-level fields of a record as tlsfront writes it.
fn record_fields() -> BTreeSet<String> {
    let record = Record::new(
        "s1".into(),
        "127.0.0.1:25".parse().unwrap(),
        Mode::Starttls,
        "192.0.2.1:4000".parse().unwrap(),
        "mx.example.test",
        "mx1",
    );
    match serde_json::to_value(&record).unwrap() {
        Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("a record serializes as an object, not {other}"),
    }
}

/// Every property name anywhere in the schema (nested objects included).
fn schema_properties() -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, x) in map {
                    if k == "properties"
                        && let Value::Object(props) = x
                    {
                        out.extend(props.keys().cloned());
                    }
                    walk(x, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let schema: Value = serde_json::from_str(&read("docs/record.schema.json")).unwrap();
    let mut out = BTreeSet::new();
    walk(&schema, &mut out);
    out
}

#[test]
fn every_record_field_is_in_docs_records_md() {
    let fields = record_fields();
    assert!(
        fields.len() > 40,
        "only {} fields: {fields:?}",
        fields.len()
    );
    let props = schema_properties();
    assert!(
        fields.is_subset(&props),
        "record fields missing from docs/record.schema.json: {:?}",
        fields.difference(&props).collect::<Vec<_>>()
    );
    let doc = read("docs/records.md");
    let missing = undocumented(fields.union(&props), &doc);
    assert!(
        missing.is_empty(),
        "docs/records.md does not document these record fields (write each as `field`): \
         {missing:?}"
    );
}

#[test]
fn the_example_records_in_docs_have_exactly_a_records_fields() {
    let fields = record_fields();
    let mut examples = 0;
    for doc in ["docs/records.md", "README.md"] {
        for line in read(doc).lines().filter(|l| l.starts_with("{\"ts\":")) {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{doc}: an example record is not JSON: {e}"));
            let keys: BTreeSet<String> = value.as_object().unwrap().keys().cloned().collect();
            assert_eq!(
                keys, fields,
                "{doc}: the example record's fields differ from a record's"
            );
            examples += 1;
        }
    }
    assert!(examples >= 1, "docs/records.md shows no example record");
}

// ---------------------------------------------------------------------------
// check finding codes
// ---------------------------------------------------------------------------

/// The non-test part of a source file.
fn without_tests(src: &str) -> &str {
    src.find("#[cfg(test)]\nmod ").map_or(src, |at| &src[..at])
}

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literals of the `fn code(&self) -> &'static str` in `src`
/// (`cert::Problem`'s codes, which `check` passes on as `p.code()`).
fn code_fn_literals(src: &str) -> Vec<String> {
    let at = src
        .find("fn code(&self) -> &'static str")
        .expect("a fn code(&self) -> &'static str");
    let body = &src[at..];
    let body = &body[..body.find("\n    }\n").expect("end of fn code")];
    captures(r#""([a-z][a-z0-9_]*)""#, body, 1)
}

/// Every code `check` can emit. A `Finding` is made only through
/// `About::{ok, warning, error, finding}` (findings.rs); the code argument
/// of each call is a literal, `p.code()` of a `cert::Problem`, or `code`
/// bound by a `let (code, ...)` to literals in the same file. Any other
/// shape fails here, so a new one is taught to this test, never skipped.
fn check_codes() -> BTreeSet<String> {
    let mut files = Vec::new();
    rs_files(&root().join("src/tools/check"), &mut files);
    let cert_codes = code_fn_literals(&read("src/cert.rs"));
    assert!(cert_codes.len() >= 5, "cert::Problem codes: {cert_codes:?}");
    let call = Regex::new(r"\.(ok|warning|error|finding)\(").unwrap();
    let literal = Regex::new(r#"^"([a-z][a-z0-9_]*)""#).unwrap();
    let mut codes = BTreeSet::new();
    let mut calls = 0;
    for path in files {
        // The constructors themselves pass their `code` parameter on.
        if path.ends_with("findings.rs") {
            continue;
        }
        let full = std::fs::read_to_string(&path).unwrap();
        let src = without_tests(&full);
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        for m in call.find_iter(src) {
            let mut arg = src[m.end()..].trim_start();
            if arg.starts_with(')') {
                continue; // `Result::ok()` and the like: no code.
            }
            if src[m.start()..m.end()].starts_with(".finding(") {
                // finding(level, code, message): the code is the second argument.
                arg = arg[arg.find(',').expect("finding(level, code, ..)") + 1..].trim_start();
            }
            let line = src[..m.start()].lines().count();
            calls += 1;
            if let Some(c) = literal.captures_iter(arg).next() {
                let span = c.get_group(1).unwrap();
                codes.insert(arg[span.range()].to_string());
            } else if captures(r"^[a-z_]+\.code\(\)", arg, 0).len() == 1 {
                codes.extend(cert_codes.iter().cloned());
            } else if arg.starts_with("code,") || arg.starts_with("code\n") {
                let at = src
                    .find("let (code,")
                    .unwrap_or_else(|| panic!("{name}:{line}: `code` without `let (code, ..)`"));
                let stmt = &src[at..at + src[at..].find("};").expect("end of let")];
                let bound = captures(r#"\(\s*"([a-z][a-z0-9_]*)""#, stmt, 1);
                assert!(
                    !bound.is_empty(),
                    "{name}:{line}: no literal bound to `code`"
                );
                codes.extend(bound);
            } else {
                let shown: String = arg.chars().take(60).collect();
                panic!(
                    "{name}:{line}: a finding whose code this test cannot read: {shown:?}; \
                     use a literal, or teach tests/docs_coverage.rs the new shape"
                );
            }
        }
    }
    assert!(calls > 60, "only {calls} finding constructors found");
    codes
}

#[test]
fn every_check_finding_code_is_in_docs() {
    let codes = check_codes();
    assert!(
        codes.len() > 60,
        "only {} codes found: {codes:?}",
        codes.len()
    );
    for must in [
        "config_valid",
        "backend_open_relay",
        "key_mismatch",
        "tlsa_stale",
    ] {
        assert!(codes.contains(must), "{must} not found: {codes:?}");
    }
    let docs = read("docs/check.md") + &read("docs/certificates.md");
    let missing = undocumented(&codes, &docs);
    assert!(
        missing.is_empty(),
        "these check finding codes are in neither docs/check.md nor docs/certificates.md \
         (add each as `code` to a codes table): {missing:?}"
    );
}

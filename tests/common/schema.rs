//! docs/record.schema.json, checked against every record the tests read.
//!
//! A small validator for the subset of JSON Schema (2020-12) the record's
//! schema uses: `type` (one or a list), `enum`, `properties`, `required`,
//! `additionalProperties: false`, `items`, `maxItems`, `minLength`,
//! `minimum`, `maximum`, `pattern`, `anyOf`, and `$ref` into `$defs`. A
//! keyword it does not know fails the check, so the schema cannot quietly
//! say more than is checked.

use std::sync::OnceLock;

use regex_automata::meta::Regex;
use serde_json::Value;

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &["$schema", "$defs", "title", "description"];

pub fn record_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/record.schema.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("docs/record.schema.json"))
            .expect("the schema is JSON")
    })
}

/// Panics with every violation if `record` does not match the record schema.
pub fn assert_record(record: &Value) {
    let errors = validate(record_schema(), record);
    assert!(
        errors.is_empty(),
        "record does not match docs/record.schema.json:\n  {}\nrecord: {record}",
        errors.join("\n  ")
    );
}

/// Every violation of `schema` by `value`.
pub fn validate(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, schema, value, "$", &mut errors);
    errors
}

fn type_matches(name: &str, v: &Value) -> bool {
    match name {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_u64() || v.is_i64(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("unknown type {other:?} in the schema"),
    }
}

fn check(root: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = schema.as_object().expect("a schema is an object");
    for (key, rule) in schema {
        match key.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "$ref" => {
                let name = rule
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .expect("$ref into #/$defs/");
                check(root, &root["$defs"][name], v, at, errors);
            }
            "type" => {
                let ok = match rule {
                    Value::String(t) => type_matches(t, v),
                    Value::Array(ts) => ts.iter().any(|t| type_matches(t.as_str().unwrap(), v)),
                    _ => panic!("bad type rule"),
                };
                if !ok {
                    errors.push(format!("{at}: {v} is not of type {rule}"));
                }
            }
            "enum" => {
                if !rule.as_array().unwrap().contains(v) {
                    errors.push(format!("{at}: {v} is not one of {rule}"));
                }
            }
            "anyOf" => {
                let any = rule.as_array().unwrap().iter().any(|s| {
                    let mut e = Vec::new();
                    check(root, s, v, at, &mut e);
                    e.is_empty()
                });
                if !any {
                    errors.push(format!("{at}: {v} matches none of anyOf"));
                }
            }
            "properties" => {
                if let Some(obj) = v.as_object() {
                    for (name, sub) in rule.as_object().unwrap() {
                        if let Some(field) = obj.get(name) {
                            check(root, sub, field, &format!("{at}.{name}"), errors);
                        }
                    }
                }
            }
            "required" => {
                if let Some(obj) = v.as_object() {
                    for name in rule.as_array().unwrap() {
                        let name = name.as_str().unwrap();
                        if !obj.contains_key(name) {
                            errors.push(format!("{at}: missing {name:?}"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                assert_eq!(
                    rule,
                    &Value::Bool(false),
                    "only additionalProperties: false"
                );
                if let Some(obj) = v.as_object() {
                    let known = schema["properties"].as_object().unwrap();
                    for name in obj.keys() {
                        if !known.contains_key(name) {
                            errors.push(format!("{at}: unknown field {name:?}"));
                        }
                    }
                }
            }
            "items" => {
                if let Some(items) = v.as_array() {
                    for (i, item) in items.iter().enumerate() {
                        check(root, rule, item, &format!("{at}[{i}]"), errors);
                    }
                }
            }
            "maxItems" => {
                if let Some(items) = v.as_array()
                    && items.len() as u64 > rule.as_u64().unwrap()
                {
                    errors.push(format!("{at}: more than {rule} items"));
                }
            }
            "minLength" => {
                if let Some(s) = v.as_str()
                    && (s.chars().count() as u64) < rule.as_u64().unwrap()
                {
                    errors.push(format!("{at}: shorter than {rule}"));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(x), Some(bound)) = (v.as_f64(), rule.as_f64()) {
                    let bad = if key == "minimum" {
                        x < bound
                    } else {
                        x > bound
                    };
                    if bad {
                        errors.push(format!("{at}: {x} is beyond the {key} {bound}"));
                    }
                }
            }
            "pattern" => {
                if let Some(s) = v.as_str() {
                    let re = Regex::new(rule.as_str().unwrap()).expect("a valid pattern");
                    if !re.is_match(s) {
                        errors.push(format!("{at}: {s:?} does not match {rule}"));
                    }
                }
            }
            other => panic!("the schema uses {other:?}, which this validator does not check"),
        }
    }
}

//! The TOML file as written: one struct per section, unknown keys refused
//! (`deny_unknown_fields`). Enum-like keys are serde enums and flags are
//! plain `bool`s with their defaults here; durations, addresses and numbers
//! with bounds stay `Option`s, so [`super::validate`] can tell "absent" from
//! "set" and name the key of a bad value. A value of the wrong type or an
//! unknown variant is refused by [`parse`], which names its key too.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{BackendTls, BareLineEndings, ConfigError, RequireTls};
use crate::outcome::{KeyType, Mode};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub backend: RawBackend,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub smtp: RawSmtp,
    #[serde(default)]
    pub records: RawRecords,
    #[serde(default)]
    pub metrics: RawMetrics,
    /// Absent: certificates come from files only, as before.
    pub acme: Option<RawAcme>,
    /// Absent: no TLSA lookups, no key rollover rule.
    pub dane: Option<RawDane>,
    /// Absent: tlsfront serves no MTA-STS policy.
    pub mta_sts: Option<RawMtaSts>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub hostname: Option<String>,
    /// This host's name in records (default: the system's host name).
    pub host_id: Option<String>,
    #[serde(default)]
    pub names: Vec<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub shutdown_grace: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: Vec<String>,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default)]
    pub require_tls: RequireTls,
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// Port 25 and 587 speak STARTTLS; implicit TLS (465) is asked for by name.
fn default_mode() -> Mode {
    Mode::Starttls
}

/// `require_tls = true | false | "log"`: a flag, or the log-only mode.
impl<'de> Deserialize<'de> for RequireTls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RequireTls;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or \"log\"")
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<RequireTls, E> {
                Ok(if on { RequireTls::On } else { RequireTls::Off })
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RequireTls, E> {
                match s {
                    "log" => Ok(RequireTls::LogOnly),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `backend.proxy_protocol`: the header version, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProxyProtocol {
    V1,
    V2,
    #[default]
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub address: Option<String>,
    pub source_address: Option<String>,
    pub probe_interval: Option<String>,
    pub connect_timeout: Option<String>,
    pub reply_timeout: Option<String>,
    pub data_timeout: Option<String>,
    #[serde(default)]
    pub xclient: bool,
    #[serde(default)]
    pub proxy_protocol: RawProxyProtocol,
    pub greeting_timeout: Option<String>,
    pub max_reply_line: Option<usize>,
    pub max_reply_size: Option<usize>,
    #[serde(default)]
    pub tls: BackendTls,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_fingerprint: Option<String>,
    pub tls_name: Option<String>,
    pub reuse_idle_time: Option<String>,
    pub reuse_max_sessions: Option<u32>,
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub allow_without_identity: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub versions: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub cipher_suites: Option<Vec<String>>,
    #[serde(default = "default_generate_self_signed")]
    pub generate_self_signed: bool,
    pub handshake_timeout: Option<String>,
    pub watch_interval: Option<String>,
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<RawCertificate>,
}

impl Default for RawTls {
    fn default() -> Self {
        RawTls {
            versions: None,
            groups: None,
            cipher_suites: None,
            generate_self_signed: default_generate_self_signed(),
            handshake_timeout: None,
            watch_interval: None,
            certificates: Vec::new(),
        }
    }
}

/// A first start without certificates still offers STARTTLS (with a loud
/// warning): opportunistic senders do not verify, and get encryption.
fn default_generate_self_signed() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub default: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    #[serde(default)]
    pub auth_before_tls: bool,
    pub max_line_length: Option<usize>,
    pub command_timeout: Option<String>,
    pub data_timeout: Option<String>,
    pub session_lifetime: Option<String>,
    pub max_errors: Option<u32>,
    #[serde(default)]
    pub bare_line_endings: BareLineEndings,
    pub max_recipients: Option<usize>,
    pub message_memory_mib: Option<usize>,
    pub greeting_delay: Option<String>,
    #[serde(default)]
    pub received_header: bool,
    pub relay_verbs: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecords {
    pub path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `IP:PORT` of the Prometheus endpoint; absent: no metrics.
    pub listen: Option<String>,
}

/// `[acme]`: certificates obtained and renewed by tlsfront itself.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub directory: Option<String>,
    #[serde(default)]
    pub contact: Vec<String>,
    pub names: Option<Vec<String>>,
    pub key_types: Option<Vec<KeyType>>,
    pub challenge_listen: Option<Vec<String>>,
    pub webroot: Option<PathBuf>,
    pub renew_before: Option<String>,
    pub retry_initial: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub state_directory: Option<PathBuf>,
}

/// `[dane]`: TLSA lookups and the rule for switching keys.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDane {
    pub names: Option<Vec<String>>,
    pub publish_wait: Option<String>,
    pub resolver: Option<String>,
    pub trust_anchor: Option<PathBuf>,
}

/// `[mta_sts]`: the policy file served over HTTPS.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtaSts {
    #[serde(default)]
    pub domains: Vec<String>,
    pub listen: Option<Vec<String>>,
    pub mode: Option<String>,
    pub max_age: Option<u64>,
    pub mx: Option<Vec<String>>,
}

/// Parses the file's text. An error about one key (a wrong type, an unknown
/// variant or field, a missing field) names it, like [`super::validate`]'s;
/// text that is not TOML gets toml's own message, with the line.
pub fn parse(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .and_then(|span| Some((key_at(text, &span)?, span.start)));
        match at {
            Some((key, start)) => ConfigError::Invalid {
                file: file.to_string(),
                key,
                message: format!("{} ({})", e.message(), position(text, start)),
            },
            None => ConfigError::Parse {
                file: file.to_string(),
                message: e.to_string().trim_end().replace('\n', "\n    "),
            },
        }
    })
}

/// The key (`listener[0].mode`) whose value, name or table header is at
/// `span`, in the notation of [`super::validate`]'s errors; `None` when the
/// text is not TOML or the span is no key's. serde's errors say what is
/// wrong and where, not under which key.
fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    // The innermost match: a table's span is its header only, so every
    // entry is visited; the shortest span containing `span` wins, and among
    // equal ones the deepest (an array of tables shares its first header).
    let mut best: Option<(usize, String)> = None;
    let mut consider = |candidate: &Range<usize>, path: &str| {
        if candidate.start <= span.start
            && span.end <= candidate.end
            && best.as_ref().is_none_or(|(len, _)| candidate.len() <= *len)
        {
            best = Some((candidate.len(), path.to_string()));
        }
    };
    fn walk(
        value: &Spanned<DeValue<'_>>,
        path: &str,
        consider: &mut dyn FnMut(&Range<usize>, &str),
    ) {
        match value.get_ref() {
            DeValue::Table(table) => {
                for (key, value) in table.iter() {
                    let path = if path.is_empty() {
                        key.get_ref().to_string()
                    } else {
                        format!("{path}.{}", key.get_ref())
                    };
                    consider(&key.span(), &path);
                    consider(&value.span(), &path);
                    walk(value, &path, consider);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{path}[{i}]");
                    consider(&item.span(), &path);
                    walk(item, &path, consider);
                }
            }
            _ => {}
        }
    }
    let root = Spanned::new(doc.span(), DeValue::Table(doc.into_inner()));
    walk(&root, "", &mut consider);
    best.map(|(_, path)| path)
}

/// "line L, column C" of byte offset `at` (both from 1, columns in characters).
fn position(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line}, column {column}")
}

//! The TOML file as written: one struct per section, unknown keys refused
//! (`deny_unknown_fields`), every key optional so [`super::validate`] can tell
//! "absent" from "set" and name the key of a bad value.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub hostname: Option<String>,
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
    pub mode: String,
    #[serde(default)]
    pub require_tls: Option<RawRequireTls>,
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// `require_tls = true | false | "log"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawRequireTls {
    Flag(bool),
    Mode(String),
}

fn default_mode() -> String {
    "starttls".into()
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
    pub xclient: Option<bool>,
    pub proxy_protocol: Option<String>,
    pub greeting_timeout: Option<String>,
    pub max_reply_line: Option<usize>,
    pub max_reply_size: Option<usize>,
    pub tls: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_fingerprint: Option<String>,
    pub tls_name: Option<String>,
    pub reuse_idle_time: Option<String>,
    pub reuse_max_sessions: Option<u32>,
    pub allow_without_identity: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub versions: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub cipher_suites: Option<Vec<String>>,
    pub generate_self_signed: Option<bool>,
    pub handshake_timeout: Option<String>,
    pub watch_interval: Option<String>,
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<RawCertificate>,
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
    pub auth_before_tls: Option<bool>,
    pub max_line_length: Option<usize>,
    pub command_timeout: Option<String>,
    pub data_timeout: Option<String>,
    pub session_lifetime: Option<String>,
    pub max_errors: Option<u32>,
    pub bare_line_endings: Option<String>,
    pub max_recipients: Option<usize>,
    pub message_memory_mib: Option<usize>,
    pub greeting_delay: Option<String>,
    pub received_header: Option<bool>,
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

pub fn parse(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.to_string(),
        message: e.to_string().trim_end().replace('\n', "\n    "),
    })
}

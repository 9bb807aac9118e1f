//! Configuration: the TOML file as written (`RawConfig`, strict about unknown
//! keys), command-line overrides, and `validate`, which checks every value and
//! cross-field rule and produces the immutable runtime [`Settings`].
//!
//! Every error names the file and the key, so a typo at 3 a.m. is a one-line fix.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::limits;
use crate::outcome::Mode;

/// Where `tlsfront run` looks when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tlsfront/tlsfront.toml";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

// ---------------------------------------------------------------- file format

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

/// Settings given on the command line; each replaces the file's value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub implicit_listen: Vec<String>,
    pub backend: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub hostname: Option<String>,
    pub records: Option<PathBuf>,
}

// ------------------------------------------------------------ runtime settings

#[derive(Debug, Clone)]
pub struct Settings {
    pub hostname: String,
    /// Every name this host answers to (hostname first).
    pub names: Vec<String>,
    pub listeners: Vec<ListenerSpec>,
    pub backend: BackendSettings,
    pub tls: TlsSettings,
    pub smtp: SmtpSettings,
    pub records: Option<PathBuf>,
    /// Where the Prometheus endpoint listens (off when `None`).
    pub metrics: Option<SocketAddr>,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub shutdown_grace: Duration,
    /// Networks allowed to send a PROXY header (address, prefix length).
    pub trusted_proxies: Vec<(IpAddr, u8)>,
}

#[derive(Debug, Clone, Copy)]
pub struct ListenerSpec {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub require_tls: RequireTls,
    /// Accept a PROXY protocol header from `server.trusted_proxies`.
    pub proxy_protocol: bool,
}

/// Whether mail may be sent before STARTTLS on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequireTls {
    Off,
    /// MAIL before TLS gets `530 5.7.0`.
    On,
    /// Allowed, but recorded as what would have been refused.
    LogOnly,
}

#[derive(Debug, Clone)]
pub struct BackendSettings {
    pub addr: SocketAddr,
    pub source: Option<IpAddr>,
    pub probe_interval: Duration,
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
    pub data_timeout: Duration,
    /// Wait for the backend's 220 greeting (RFC 5321 §4.5.3.2.1: 5 minutes).
    pub greeting_timeout: Duration,
    /// Longest backend reply line, and whole (multi-line) reply, accepted.
    pub max_reply_line: usize,
    pub max_reply_size: usize,
    /// TLS on the backend hop, and how the backend's certificate is checked.
    pub tls: crate::proxy::backend::tls::Mode,
    pub tls_verify: crate::proxy::backend::tls::Verify,
    /// Name the backend's certificate must carry (and SNI), when verified by CA.
    pub tls_name: String,
    pub tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Pass the client's identity with XCLIENT when the backend offers it.
    pub xclient: bool,
    /// With `xclient` or `proxy_protocol` set: go on as tlsfront's own
    /// address when the identity cannot be passed (else 451: fail closed).
    pub allow_without_identity: bool,
    /// Send a PROXY protocol header on every backend connection.
    pub proxy_protocol: Option<crate::wire::proxyproto::Version>,
    /// Keep a backend connection this long after a clean session for the next
    /// one (zero: every session opens its own).
    pub reuse_idle: Duration,
    /// Client sessions one backend connection serves at most.
    pub reuse_max_sessions: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub versions: Vec<TlsVersion>,
    pub groups: Vec<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub certificates: Vec<RawCertificate>,
    pub generate_self_signed: bool,
    pub handshake_timeout: Duration,
    /// Poll the certificate files this often and reload when they change.
    pub watch_interval: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub auth_before_tls: bool,
    pub max_line: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub session_lifetime: Duration,
    pub max_errors: u32,
    pub bare_line_endings: BareLineEndings,
    /// Recipients accepted per message before `452 4.5.3`.
    pub max_recipients: usize,
    /// Memory all messages in flight may hold for their buffers together.
    pub message_memory: usize,
    /// Wait before the greeting to catch clients that talk first (0: only
    /// input already there at accept time is caught).
    pub greeting_delay: Duration,
    /// Prepend a Received header naming the real client to each message.
    pub received_header: bool,
    /// Verbs beyond the core set that are relayed to the backend (upper case).
    pub relay_verbs: Vec<String>,
}

/// What happens to message content with bare CR or LF line endings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLineEndings {
    /// Sent on as CRLF (dots after them stuffed), like Postfix's `normalize`.
    Normalize,
    /// The message is refused with 550 5.5.2 and never reaches the backend whole.
    Reject,
}

/// Key-exchange groups tlsfront can offer (all ECDHE or hybrid post-quantum).
pub const KNOWN_GROUPS: &[&str] = &["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"];
pub const DEFAULT_GROUPS: &[&str] = KNOWN_GROUPS;

impl Settings {
    /// Reads `path` (if any), applies `overrides`, validates.
    /// `path_is_explicit`: a missing default file is fine when the flags say enough.
    pub fn load(
        path: &Path,
        path_is_explicit: bool,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let file = path.display().to_string();
        let raw = match std::fs::read_to_string(path) {
            Ok(text) => parse(&text, &file)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !path_is_explicit => {
                RawConfig::default()
            }
            Err(source) => return Err(ConfigError::Read { file, source }),
        };
        let file = if path.exists() {
            file
        } else {
            "command line".to_string()
        };
        validate(raw, overrides, &file)
    }
}

pub fn parse(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.to_string(),
        message: e.to_string().trim_end().replace('\n', "\n    "),
    })
}

/// Parses "192.0.2.1" (a single address) or "192.0.2.0/24", "2001:db8::/64".
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = s.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// Whether `ip` is inside one of `nets`.
pub fn in_networks(ip: IpAddr, nets: &[(IpAddr, u8)]) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|(net, len)| match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if *len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(*len))
            };
            u32::from(a) & mask == u32::from(*n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if *len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(*len))
            };
            u128::from(a) & mask == u128::from(*n) & mask
        }
        _ => false,
    })
}

/// Parses "500ms", "30s", "5m", "1h", "7d", or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        "d" => Some(Duration::from_secs(n.checked_mul(86_400)?)),
        _ => None,
    }
}

struct V<'a> {
    file: &'a str,
}

impl V<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn duration(
        &self,
        key: &str,
        value: &Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(s) => match parse_duration(s) {
                Some(d) if d > limits::MAX_CONFIG_DURATION => Err(self.err(
                    key,
                    format!(
                        "{s:?} is too long: at most {} days",
                        limits::MAX_CONFIG_DURATION.as_secs() / 86_400
                    ),
                )),
                Some(d) if !d.is_zero() => Ok(d),
                _ => Err(self.err(
                    key,
                    format!(
                        "{s:?} is not a duration (use e.g. \"500ms\", \"30s\", \"5m\", \"1h\")"
                    ),
                )),
            },
        }
    }

    fn socket_addr(&self, key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(a);
        }
        let hint = "expected ADDRESS:PORT, e.g. \"127.0.0.1:25\" or \"[::1]:25\"";
        match s.to_socket_addrs() {
            Ok(mut addrs) => addrs
                .next()
                .ok_or_else(|| self.err(key, format!("{s:?} resolves to no address"))),
            Err(e) => Err(self.err(key, format!("{s:?}: {e} ({hint})"))),
        }
    }
}

/// `smtp.relay_verbs`: extension verbs an admin chose to pass to the backend.
/// Verbs tlsfront handles itself, and those it never relays, are refused here
/// so the list cannot reopen what the session closes.
fn relay_verbs(v: &V<'_>, list: Option<&[String]>) -> Result<Vec<String>, ConfigError> {
    let Some(list) = list else {
        return Ok(limits::DEFAULT_RELAY_VERBS
            .iter()
            .map(|s| s.to_string())
            .collect());
    };
    let mut out = Vec::new();
    for verb in list {
        let upper = verb.to_ascii_uppercase();
        let valid = !upper.is_empty()
            && upper.len() <= 16
            && upper
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(v.err("smtp.relay_verbs", format!("{verb:?} is not an SMTP verb")));
        }
        if crate::smtp::command::Command::parse(upper.as_bytes()).verb
            != crate::smtp::command::Verb::Other
        {
            return Err(v.err(
                "smtp.relay_verbs",
                format!("{upper} is a verb tlsfront handles itself; list only extension verbs"),
            ));
        }
        if crate::smtp::command::NEVER_RELAYED
            .iter()
            .any(|b| b.eq_ignore_ascii_case(upper.as_bytes()))
        {
            return Err(v.err(
                "smtp.relay_verbs",
                format!("{upper} is never relayed (it belongs to the backend hop or is a known back door)"),
            ));
        }
        out.push(upper);
    }
    Ok(out)
}

fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| valid_hostname(s))
        .unwrap_or_else(|| "localhost".to_string())
}

pub fn validate(mut raw: RawConfig, o: &Overrides, file: &str) -> Result<Settings, ConfigError> {
    let v = V { file };

    // Overrides replace whole sections, so a one-off run needs no file at all.
    if !o.listen.is_empty() || !o.implicit_listen.is_empty() {
        raw.listeners.clear();
        if !o.listen.is_empty() {
            raw.listeners.push(RawListener {
                address: o.listen.clone(),
                mode: "starttls".into(),
                require_tls: None,
                proxy_protocol: false,
            });
        }
        if !o.implicit_listen.is_empty() {
            raw.listeners.push(RawListener {
                address: o.implicit_listen.clone(),
                mode: "implicit".into(),
                require_tls: None,
                proxy_protocol: false,
            });
        }
    }
    if let Some(b) = &o.backend {
        raw.backend.address = Some(b.clone());
    }
    match (&o.cert, &o.key) {
        (Some(cert), Some(key)) => {
            raw.tls.certificates = vec![RawCertificate {
                cert: cert.clone(),
                key: key.clone(),
                names: Vec::new(),
                default: true,
            }]
        }
        (None, None) => {}
        _ => return Err(v.err("--cert/--key", "give both --cert and --key, or neither")),
    }
    if let Some(h) = &o.hostname {
        raw.server.hostname = Some(h.clone());
    }
    if let Some(r) = &o.records {
        raw.records.path = Some(r.clone());
    }

    let hostname = raw
        .server
        .hostname
        .clone()
        .unwrap_or_else(system_hostname)
        .to_ascii_lowercase();
    if !valid_hostname(&hostname) {
        return Err(v.err(
            "server.hostname",
            format!("{hostname:?} is not a valid host name"),
        ));
    }
    let mut names = vec![hostname.clone()];
    for n in &raw.server.names {
        let n = n.to_ascii_lowercase();
        if !valid_hostname(&n) {
            return Err(v.err("server.names", format!("{n:?} is not a valid host name")));
        }
        if !names.contains(&n) {
            names.push(n);
        }
    }

    if raw.listeners.is_empty() {
        return Err(v.err(
            "listener",
            "no listener configured (add a [[listener]] or use --listen ADDR)",
        ));
    }
    let mut listeners: Vec<ListenerSpec> = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let key = format!("listener[{i}]");
        let mode = match l.mode.as_str() {
            "starttls" => Mode::Starttls,
            "implicit" => Mode::Implicit,
            other => {
                return Err(v.err(
                    &format!("{key}.mode"),
                    format!("{other:?} is not a mode (use \"starttls\" or \"implicit\")"),
                ));
            }
        };
        let require_tls = match &l.require_tls {
            None | Some(RawRequireTls::Flag(false)) => RequireTls::Off,
            Some(RawRequireTls::Flag(true)) => RequireTls::On,
            Some(RawRequireTls::Mode(m)) if m == "log" => RequireTls::LogOnly,
            Some(RawRequireTls::Mode(m)) => {
                return Err(v.err(
                    &format!("{key}.require_tls"),
                    format!("{m:?} is not valid (use true, false or \"log\")"),
                ));
            }
        };
        if l.address.is_empty() {
            return Err(v.err(&format!("{key}.address"), "empty address list"));
        }
        for a in &l.address {
            let addr = a.parse::<SocketAddr>().map_err(|_| {
                v.err(
                    &format!("{key}.address"),
                    format!("{a:?} is not IP:PORT (e.g. \"0.0.0.0:25\", \"[::]:25\")"),
                )
            })?;
            // Port 0 (tests: "any free port") may repeat.
            if addr.port() != 0 && listeners.iter().any(|x| x.addr == addr) {
                return Err(v.err(&format!("{key}.address"), format!("{addr} is listed twice")));
            }
            listeners.push(ListenerSpec {
                addr,
                mode,
                require_tls,
                proxy_protocol: l.proxy_protocol,
            });
        }
    }

    let b = &raw.backend;
    let backend_addr = b.address.as_deref().ok_or_else(|| {
        v.err(
            "backend.address",
            "no backend configured (set backend.address or use --backend ADDR)",
        )
    })?;
    let backend_addr = v.socket_addr("backend.address", backend_addr)?;
    if listeners.iter().any(|l| l.addr == backend_addr) {
        return Err(v.err(
            "backend.address",
            format!("{backend_addr} is also a listener: tlsfront would relay to itself"),
        ));
    }
    let source = match &b.source_address {
        None => None,
        Some(s) => Some(s.parse::<IpAddr>().map_err(|_| {
            v.err(
                "backend.source_address",
                format!("{s:?} is not an IP address"),
            )
        })?),
    };
    if let Some(src) = source
        && src.is_ipv4() != backend_addr.is_ipv4()
    {
        return Err(v.err(
            "backend.source_address",
            format!("{src} and backend {backend_addr} are of different IP families"),
        ));
    }
    let backend_tls = match b.tls.as_deref() {
        None | Some("none") => crate::proxy::backend::tls::Mode::None,
        Some("starttls") => crate::proxy::backend::tls::Mode::Starttls,
        Some("implicit") => crate::proxy::backend::tls::Mode::Implicit,
        Some(other) => {
            return Err(v.err(
                "backend.tls",
                format!("{other:?} is not valid (use \"none\", \"starttls\" or \"implicit\")"),
            ));
        }
    };
    let tls_verify =
        match (&b.tls_ca_file, &b.tls_fingerprint) {
            (Some(_), Some(_)) => {
                return Err(v.err(
                    "backend.tls_ca_file",
                    "give tls_ca_file or tls_fingerprint, not both",
                ));
            }
            (Some(ca), None) => crate::proxy::backend::tls::Verify::CaFile(ca.clone()),
            (None, Some(fp)) => crate::proxy::backend::tls::Verify::Fingerprint(
                // ASCII first: the parser slices the text two bytes at a time.
                fp.is_ascii()
                    .then(|| crate::proxy::backend::tls::parse_fingerprint(fp))
                    .flatten()
                    .ok_or_else(|| {
                        v.err(
                    "backend.tls_fingerprint",
                    format!("{fp:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"),
                )
                    })?,
            ),
            (None, None) => crate::proxy::backend::tls::Verify::None,
        };
    let tls_name = b
        .tls_name
        .clone()
        .unwrap_or_else(|| backend_addr.ip().to_string());
    if rustls::pki_types::ServerName::try_from(tls_name.clone()).is_err() {
        return Err(v.err(
            "backend.tls_name",
            format!("{tls_name:?} is not a host name or IP address"),
        ));
    }
    let tls_config = match backend_tls {
        crate::proxy::backend::tls::Mode::None => None,
        _ => Some(
            crate::proxy::backend::tls::client_config(&tls_verify).map_err(|m| {
                let key = if b.tls_ca_file.is_some() {
                    "backend.tls_ca_file"
                } else {
                    "backend.tls"
                };
                v.err(key, m)
            })?,
        ),
    };
    let backend = BackendSettings {
        addr: backend_addr,
        source,
        tls: backend_tls,
        tls_verify,
        tls_name,
        tls_config,
        xclient: b.xclient.unwrap_or(false),
        allow_without_identity: b.allow_without_identity.unwrap_or(false),
        greeting_timeout: v.duration(
            "backend.greeting_timeout",
            &b.greeting_timeout,
            limits::DEFAULT_BACKEND_GREETING_TIMEOUT,
        )?,
        max_reply_line: match b.max_reply_line.unwrap_or(limits::MAX_REPLY_LINE) {
            n @ 512..=65536 => n,
            n => {
                return Err(v.err(
                    "backend.max_reply_line",
                    format!("{n} is outside 512..=65536 (RFC 5321: 512)"),
                ));
            }
        },
        max_reply_size: match b.max_reply_size.unwrap_or(limits::MAX_REPLY_BYTES) {
            n @ 4096..=16_777_216 => n,
            n => {
                return Err(v.err(
                    "backend.max_reply_size",
                    format!("{n} is outside 4096..=16777216"),
                ));
            }
        },
        proxy_protocol: match b.proxy_protocol.as_deref() {
            None | Some("none") => None,
            Some("v1") => Some(crate::wire::proxyproto::Version::V1),
            Some("v2") => Some(crate::wire::proxyproto::Version::V2),
            Some(other) => {
                return Err(v.err(
                    "backend.proxy_protocol",
                    format!("{other:?} is not valid (use \"v1\", \"v2\" or \"none\")"),
                ));
            }
        },
        probe_interval: v.duration(
            "backend.probe_interval",
            &b.probe_interval,
            limits::DEFAULT_PROBE_INTERVAL,
        )?,
        connect_timeout: v.duration(
            "backend.connect_timeout",
            &b.connect_timeout,
            limits::DEFAULT_BACKEND_CONNECT_TIMEOUT,
        )?,
        reply_timeout: v.duration(
            "backend.reply_timeout",
            &b.reply_timeout,
            limits::DEFAULT_BACKEND_REPLY_TIMEOUT,
        )?,
        data_timeout: v.duration(
            "backend.data_timeout",
            &b.data_timeout,
            limits::DEFAULT_BACKEND_DATA_TIMEOUT,
        )?,
        // "0s" turns reuse off; longer than a minute would hold the backend's
        // processes (Sendmail forks one per connection) for nothing.
        reuse_idle: match b.reuse_idle_time.as_deref().map(parse_duration) {
            Some(Some(d)) if d.is_zero() => Duration::ZERO,
            _ => match v.duration(
                "backend.reuse_idle_time",
                &b.reuse_idle_time,
                limits::DEFAULT_BACKEND_REUSE_IDLE,
            )? {
                d if d <= Duration::from_secs(60) => d,
                d => {
                    return Err(v.err(
                        "backend.reuse_idle_time",
                        format!("{d:?} is over 60s (use \"0s\" to turn reuse off)"),
                    ));
                }
            },
        },
        reuse_max_sessions: match b
            .reuse_max_sessions
            .unwrap_or(limits::DEFAULT_BACKEND_REUSE_MAX_SESSIONS)
        {
            n @ 1..=100_000 => n,
            n => {
                return Err(v.err(
                    "backend.reuse_max_sessions",
                    format!("{n} is outside 1..=100000"),
                ));
            }
        },
    };

    let t = &raw.tls;
    let mut versions = Vec::new();
    for s in t
        .versions
        .clone()
        .unwrap_or_else(|| vec!["1.2".into(), "1.3".into()])
    {
        let ver = match s.trim_start_matches("TLSv").trim_start_matches("tlsv") {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            "1.0" | "1.1" | "1" => {
                return Err(v.err(
                    "tls.versions",
                    format!(
                        "{s:?}: tlsfront never enables TLS below 1.2 (valid: \"1.2\", \"1.3\")"
                    ),
                ));
            }
            _ => {
                return Err(v.err(
                    "tls.versions",
                    format!("{s:?} is not a TLS version (valid: \"1.2\", \"1.3\")"),
                ));
            }
        };
        if !versions.contains(&ver) {
            versions.push(ver);
        }
    }
    if versions.is_empty() {
        return Err(v.err("tls.versions", "at least one version is needed"));
    }
    let groups = t
        .groups
        .clone()
        .unwrap_or_else(|| DEFAULT_GROUPS.iter().map(|s| s.to_string()).collect());
    if groups.is_empty() {
        return Err(v.err("tls.groups", "at least one group is needed"));
    }
    for g in &groups {
        if !KNOWN_GROUPS.contains(&g.as_str()) {
            return Err(v.err(
                "tls.groups",
                format!(
                    "{g:?} is not a supported group (valid: {})",
                    KNOWN_GROUPS.join(", ")
                ),
            ));
        }
    }
    if let Some(suites) = &t.cipher_suites {
        let known = crate::proxy::tls::suite_names();
        for s in suites {
            if !known.contains(s) {
                return Err(v.err(
                    "tls.cipher_suites",
                    format!(
                        "{s:?} is not a supported suite (valid: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        if suites.is_empty() {
            return Err(v.err(
                "tls.cipher_suites",
                "empty list (leave the key out for the defaults)",
            ));
        }
    }
    for (i, c) in t.certificates.iter().enumerate() {
        for n in &c.names {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            if !valid_hostname(&bare.to_ascii_lowercase()) {
                return Err(v.err(
                    &format!("tls.certificate[{i}].names"),
                    format!("{n:?} is not a host name"),
                ));
            }
        }
    }
    let tls = TlsSettings {
        versions,
        groups,
        cipher_suites: t.cipher_suites.clone(),
        certificates: t.certificates.clone(),
        generate_self_signed: t.generate_self_signed.unwrap_or(true),
        watch_interval: match &t.watch_interval {
            None => None,
            Some(_) => Some(v.duration("tls.watch_interval", &t.watch_interval, Duration::ZERO)?),
        },
        handshake_timeout: v.duration(
            "tls.handshake_timeout",
            &t.handshake_timeout,
            limits::DEFAULT_HANDSHAKE_TIMEOUT,
        )?,
    };
    if tls.certificates.is_empty()
        && !tls.generate_self_signed
        && let Some(l) = listeners.iter().find(|l| l.mode == Mode::Implicit)
    {
        return Err(v.err(
            "tls.certificate",
            format!(
                "implicit-TLS listener {} needs a certificate (or generate_self_signed = true)",
                l.addr
            ),
        ));
    }

    let s = &raw.smtp;
    let max_line = s.max_line_length.unwrap_or(limits::DEFAULT_MAX_LINE);
    if !(512..=65536).contains(&max_line) {
        return Err(v.err(
            "smtp.max_line_length",
            format!("{max_line} is outside 512..=65536 (RFC 5321 needs at least 512)"),
        ));
    }
    let smtp = SmtpSettings {
        auth_before_tls: s.auth_before_tls.unwrap_or(false),
        max_line,
        command_timeout: v.duration(
            "smtp.command_timeout",
            &s.command_timeout,
            limits::DEFAULT_COMMAND_TIMEOUT,
        )?,
        data_timeout: v.duration(
            "smtp.data_timeout",
            &s.data_timeout,
            limits::DEFAULT_DATA_TIMEOUT,
        )?,
        session_lifetime: v.duration(
            "smtp.session_lifetime",
            &s.session_lifetime,
            limits::DEFAULT_SESSION_LIFETIME,
        )?,
        max_errors: s.max_errors.unwrap_or(20).max(1),
        message_memory: match s.message_memory_mib {
            None => limits::DATA_MEMORY_BUDGET,
            Some(n @ 1..=limits::MAX_MESSAGE_MEMORY_MIB) => n * 1024 * 1024,
            Some(n) => {
                return Err(v.err(
                    "smtp.message_memory_mib",
                    format!("{n} is outside 1..={}", limits::MAX_MESSAGE_MEMORY_MIB),
                ));
            }
        },
        max_recipients: match s.max_recipients {
            Some(0) => return Err(v.err("smtp.max_recipients", "must be at least 1")),
            Some(n) => n,
            None => limits::DEFAULT_MAX_RECIPIENTS,
        },
        received_header: s.received_header.unwrap_or(false),
        relay_verbs: relay_verbs(&v, s.relay_verbs.as_deref())?,
        greeting_delay: match &s.greeting_delay {
            None => Duration::ZERO,
            Some(d) => match parse_duration(d) {
                Some(d) if d <= Duration::from_secs(30) => d,
                _ => {
                    return Err(v.err(
                        "smtp.greeting_delay",
                        format!("{d:?} is not a duration of at most 30s (\"0s\" to disable)"),
                    ));
                }
            },
        },
        bare_line_endings: match s.bare_line_endings.as_deref() {
            None | Some("normalize") => BareLineEndings::Normalize,
            Some("reject") => BareLineEndings::Reject,
            Some(other) => {
                return Err(v.err(
                    "smtp.bare_line_endings",
                    format!("{other:?} is not a mode (use \"normalize\" or \"reject\")"),
                ));
            }
        },
    };

    let max_connections = raw
        .server
        .max_connections
        .unwrap_or(limits::DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(v.err("server.max_connections", "must be at least 1"));
    }
    let max_connections_per_client = raw
        .server
        .max_connections_per_client
        .unwrap_or(limits::DEFAULT_MAX_CONNECTIONS_PER_CLIENT);
    if max_connections_per_client == 0 {
        return Err(v.err("server.max_connections_per_client", "must be at least 1"));
    }
    let mut trusted_proxies = Vec::new();
    for net in &raw.server.trusted_proxies {
        trusted_proxies.push(parse_cidr(net).ok_or_else(|| {
            v.err(
                "server.trusted_proxies",
                format!("{net:?} is not an address or network (e.g. \"10.0.0.5\", \"10.0.0.0/24\", \"2001:db8::/64\")"),
            )
        })?);
    }
    if let Some(l) = listeners.iter().find(|l| l.proxy_protocol)
        && trusted_proxies.is_empty()
    {
        return Err(v.err(
            "server.trusted_proxies",
            format!(
                "listener {} accepts PROXY headers, but no trusted proxy is configured",
                l.addr
            ),
        ));
    }
    let metrics = match &raw.metrics.listen {
        None => None,
        Some(s) => {
            let addr = s.parse::<SocketAddr>().map_err(|_| {
                v.err(
                    "metrics.listen",
                    format!("{s:?}: expected IP:PORT, e.g. \"127.0.0.1:9325\""),
                )
            })?;
            // Port 0 (any free port, in tests) cannot clash.
            if addr.port() != 0 && listeners.iter().any(|l| l.addr == addr) {
                return Err(v.err("metrics.listen", format!("{addr} is also an SMTP listener")));
            }
            Some(addr)
        }
    };
    Ok(Settings {
        hostname,
        names,
        listeners,
        backend,
        tls,
        smtp,
        records: raw.records.path.clone(),
        metrics,
        max_connections,
        max_connections_per_client,
        trusted_proxies,
        shutdown_grace: v.duration(
            "server.shutdown_grace",
            &raw.server.shutdown_grace,
            limits::DEFAULT_SHUTDOWN_GRACE,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, ConfigError> {
        validate(parse(text, "t.toml")?, &Overrides::default(), "t.toml")
    }

    const MINIMAL: &str = r#"
        [server]
        hostname = "mx.example.test"
        [[listener]]
        address = ["127.0.0.1:2525", "[::1]:2525"]
        [backend]
        address = "127.0.0.1:10025"
    "#;

    #[test]
    fn minimal_config_has_safe_defaults() {
        let s = load(MINIMAL).unwrap();
        assert_eq!(s.listeners.len(), 2);
        assert_eq!(s.listeners[1].mode, Mode::Starttls);
        assert_eq!(s.tls.versions, vec![TlsVersion::Tls12, TlsVersion::Tls13]);
        assert!(s.tls.generate_self_signed);
        assert!(!s.smtp.auth_before_tls);
        assert_eq!(s.smtp.command_timeout, Duration::from_secs(300));
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../conf/tlsfront.toml");
        let s = load(text).unwrap();
        assert!(s.listeners.iter().any(|l| l.mode == Mode::Implicit));
    }

    fn err_of(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = err_of(&format!("{MINIMAL}\n[tls]\nversions = [\"1.1\", \"1.3\"]"));
        assert!(
            e.starts_with("t.toml: `tls.versions`:") && e.contains("below 1.2"),
            "{e}"
        );
        let e = err_of(&format!("{MINIMAL}\n[tls]\ngroups = [\"ffdhe2048\"]"));
        assert!(e.contains("`tls.groups`") && e.contains("X25519"), "{e}");
        let e = err_of(&MINIMAL.replace("10025\"", "10025\"\nconnect_timeout = \"soon\""));
        assert!(e.contains("`backend.connect_timeout`"), "{e}");
        let e = err_of(&MINIMAL.replace("127.0.0.1:2525\",", "127.0.0.1\","));
        assert!(e.contains("`listener[0].address`"), "{e}");
        let e = err_of(&MINIMAL.replace("[[listener]]", "[[listener]]\nmode = \"ssl\""));
        assert!(e.contains("`listener[0].mode`"), "{e}");
        let e = err_of(&MINIMAL.replace("10025", "2525"));
        assert!(e.contains("relay to itself"), "{e}");
    }

    #[test]
    fn metrics_listen_is_optional_and_validated() {
        assert_eq!(load(MINIMAL).unwrap().metrics, None);
        let s = load(&format!(
            "{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:9325\""
        ))
        .unwrap();
        assert_eq!(s.metrics, Some("127.0.0.1:9325".parse().unwrap()));
        let e = err_of(&format!("{MINIMAL}\n[metrics]\nlisten = \"localhost\""));
        assert!(e.contains("`metrics.listen`"), "{e}");
        let e = err_of(&format!(
            "{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:2525\""
        ));
        assert!(
            e.contains("`metrics.listen`") && e.contains("SMTP listener"),
            "{e}"
        );
        let e = err_of(&format!("{MINIMAL}\n[metrics]\nport = 9325"));
        assert!(e.contains("unknown field `port`"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_position() {
        let e = err_of(&MINIMAL.replace("[backend]", "[backend]\nadress = \"x\""));
        assert!(
            e.contains("t.toml") && e.contains("unknown field `adress`"),
            "{e}"
        );
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn overrides_need_no_file() {
        let o = Overrides {
            listen: vec!["127.0.0.1:2525".into()],
            implicit_listen: vec!["127.0.0.1:4465".into()],
            backend: Some("127.0.0.1:10025".into()),
            hostname: Some("MX.Example.Test".into()),
            ..Overrides::default()
        };
        let s = validate(RawConfig::default(), &o, "command line").unwrap();
        assert_eq!(s.hostname, "mx.example.test");
        assert_eq!(s.listeners.len(), 2);
        assert_eq!(s.listeners[1].mode, Mode::Implicit);
        let half = Overrides {
            cert: Some("a.pem".into()),
            ..o
        };
        assert!(
            validate(RawConfig::default(), &half, "x")
                .unwrap_err()
                .to_string()
                .contains("--key")
        );
    }

    #[test]
    fn networks() {
        let nets: Vec<_> = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/64"]
            .iter()
            .map(|n| parse_cidr(n).unwrap())
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_networks(ip("10.1.2.3"), &nets));
        assert!(in_networks(ip("::ffff:10.1.2.3"), &nets));
        assert!(in_networks(ip("192.0.2.7"), &nets));
        assert!(!in_networks(ip("192.0.2.8"), &nets));
        assert!(in_networks(ip("2001:db8::abcd"), &nets));
        assert!(!in_networks(ip("2001:db8:1::1"), &nets));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("nonsense").is_none());
        assert!(in_networks(
            ip("8.8.8.8"),
            &[parse_cidr("0.0.0.0/0").unwrap()]
        ));
    }

    #[test]
    fn non_ascii_fingerprint_is_an_error_naming_the_key() {
        // 64 bytes, so the length check passes; a 3-byte character straddles
        // the first two-digit slice.
        for fp in ["€".repeat(21) + "a", "a".repeat(61) + "é" + "a"] {
            let text = MINIMAL.replace(
                "10025\"",
                &format!("10025\"\ntls = \"starttls\"\ntls_fingerprint = \"{fp}\""),
            );
            let e = err_of(&text);
            assert!(
                e.starts_with("t.toml: `backend.tls_fingerprint`:") && e.contains("64 hex digits"),
                "{e}"
            );
        }
    }

    #[test]
    fn durations_past_the_cap_are_refused_with_their_key() {
        // A week is accepted; more is not (`Instant + Duration` must never overflow).
        let max = limits::MAX_CONFIG_DURATION.as_secs();
        for (section, key) in [
            ("backend", "greeting_timeout"),
            ("backend", "probe_interval"),
            ("backend", "connect_timeout"),
            ("backend", "reply_timeout"),
            ("backend", "data_timeout"),
            ("tls", "watch_interval"),
            ("tls", "handshake_timeout"),
            ("smtp", "command_timeout"),
            ("smtp", "data_timeout"),
            ("smtp", "session_lifetime"),
            ("server", "shutdown_grace"),
        ] {
            let with = |value: &str| {
                let header = format!("[{section}]");
                if MINIMAL.contains(&header) {
                    MINIMAL.replacen(&header, &format!("{header}\n{key} = \"{value}\""), 1)
                } else {
                    format!("{MINIMAL}\n{header}\n{key} = \"{value}\"")
                }
            };
            let s = load(&with(&format!("{max}s")));
            assert!(s.is_ok(), "{section}.{key}: {:?}", s.err());
            for huge in [
                format!("{}s", max + 1),
                "18446744073709551615s".to_string(),
                "213503982334601d".to_string(),
            ] {
                let e = err_of(&with(&huge));
                assert!(
                    e.starts_with(&format!("t.toml: `{section}.{key}`:")) && e.contains("at most"),
                    "{section}.{key} = {huge}: {e}"
                );
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5 days"), None);
    }
}

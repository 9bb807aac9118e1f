//! Configuration as plain data: the TOML file as written (`raw.rs`: serde
//! structs, strict about unknown keys, enum-like keys as enums), command-line
//! [`Overrides`], and [`validate`] (`validate.rs`: one function per section),
//! which checks every value and cross-section rule and produces the immutable
//! [`Settings`] that the proxy and the tools read. Bounds and defaults come
//! from [`crate::limits`].
//!
//! Settings hold no runtime objects, and validation opens no file a setting
//! names: certificates and the backend's CA file are read where they are used
//! (`proxy::tls`, `proxy::backend::tls`). It only reads the host name from
//! the system when `server.hostname` is not set, resolves `backend.address`
//! when it is a host name, and resolves certificate and key paths written
//! `%d/NAME` against `$CREDENTIALS_DIRECTORY` (systemd's `LoadCredential=`).
//!
//! Every error names the file and the key, so a typo at 3 a.m. is a one-line fix.

mod automation;
mod raw;
mod validate;
mod values;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::outcome::{KeyType, Mode};

pub use crate::dns::DnsSettings;
pub use raw::{
    RawAcme, RawBackend, RawCertificate, RawConfig, RawDane, RawListener, RawMetrics, RawMtaSts,
    RawProxyProtocol, RawRecords, RawServer, RawSmtp, RawTls, parse,
};
pub use validate::validate;
pub use values::{
    CREDENTIAL_PREFIX, credential_name, credential_not_loaded, in_networks, parse_cidr,
    parse_duration, parse_fingerprint, resolve_credential,
};

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

/// Settings given on the command line; each replaces the file's value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub implicit_listen: Vec<String>,
    pub backend: Option<String>,
    /// `backend.source_address`: the address tlsfront connects to the backend from.
    pub source_address: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub hostname: Option<String>,
    pub records: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub hostname: String,
    /// Names this tlsfront host in its records (`server.host_id`, default the
    /// system's host name), so a fleet's record files merge without clashes.
    pub host_id: String,
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
    /// Certificates obtained by ACME (`[acme]`), beside or instead of files.
    pub acme: Option<AcmeSettings>,
    /// TLSA lookups and the key rollover rule (`[dane]`).
    pub dane: Option<DaneSettings>,
    /// The MTA-STS policy tlsfront serves itself (`[mta_sts]`).
    pub mta_sts: Option<MtaStsSettings>,
}

/// `[acme]`, validated.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The CA's directory URL.
    pub directory: String,
    /// `mailto:` addresses given to the CA with the account.
    pub contact: Vec<String>,
    /// Names every certificate covers (the MX names, and `mta-sts.DOMAIN`
    /// when tlsfront serves the policy).
    pub names: Vec<String>,
    /// One certificate per key type, ECDSA P-256 first.
    pub key_types: Vec<KeyType>,
    pub challenge: Challenge,
    /// Renew this long before expiry (`None`: when a third of the lifetime is left).
    pub renew_before: Option<Duration>,
    /// First wait after a failure; it doubles up to [`crate::limits::ACME_RETRY_MAX`].
    pub retry_initial: Duration,
    /// Extra roots trusted for the CA's HTTPS (a private CA); `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// Account, keys, certificates and the renewal status live here.
    pub state_directory: PathBuf,
}

/// How tlsfront answers the CA's HTTP-01 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Its own small HTTP listener (port 80).
    Listen(Vec<SocketAddr>),
    /// Files under `WEBROOT/.well-known/acme-challenge/`, served by the host's web server.
    Webroot(PathBuf),
}

/// `[dane]`, validated.
#[derive(Debug, Clone)]
pub struct DaneSettings {
    /// MX names whose `_25._tcp` TLSA records are looked up.
    pub names: Vec<String>,
    /// How long a next key's TLSA record must have been visible before
    /// tlsfront switches to it (`None`: two TTLs of the record).
    pub publish_wait: Option<Duration>,
    pub dns: DnsSettings,
}

/// `[mta_sts]`, validated.
#[derive(Debug, Clone)]
pub struct MtaStsSettings {
    /// Mail domains whose policy tlsfront serves (at `mta-sts.DOMAIN`).
    pub domains: Vec<String>,
    pub listen: Vec<SocketAddr>,
    pub policy: crate::mta_sts::Policy,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequireTls {
    #[default]
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
    /// TLS on the backend hop, and how the backend's certificate is checked
    /// (the proxy builds its rustls client configuration from these).
    pub tls: BackendTls,
    pub tls_verify: BackendVerify,
    /// Name the backend's certificate must carry (and SNI), when verified by CA.
    pub tls_name: String,
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
    /// Backend connections open at once, kept ones included: past it,
    /// sessions wait their turn (up to `connect_timeout`).
    pub max_connections: usize,
}

/// How the backend hop is protected (`backend.tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendTls {
    #[default]
    None,
    Starttls,
    Implicit,
}

/// How the backend's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendVerify {
    /// Chain and name against the CAs in this PEM file (`backend.tls_ca_file`).
    CaFile(PathBuf),
    /// SHA-256 of the backend's leaf certificate, DER (`backend.tls_fingerprint`).
    Fingerprint([u8; 32]),
    /// Opportunistic: encrypted, not authenticated.
    None,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndings {
    /// Sent on as CRLF (dots after them stuffed), like Postfix's `normalize`.
    #[default]
    Normalize,
    /// The message is refused with 550 5.5.2 and never reaches the backend whole.
    Reject,
}

/// Key-exchange groups tlsfront can offer (all ECDHE or hybrid post-quantum).
pub const KNOWN_GROUPS: &[&str] = &["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"];
/// `tls.groups` by default: all of them, the post-quantum hybrid first.
pub const DEFAULT_GROUPS: &[&str] = KNOWN_GROUPS;

/// Names `tls.cipher_suites` accepts: every suite of rustls' aws-lc-rs
/// provider (all ECDHE + AEAD), by rustls' own name (`TLS13_AES_256_GCM_SHA384`).
pub fn suite_names() -> Vec<String> {
    rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .map(|s| format!("{:?}", s.suite()))
        .collect()
}

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

/// A minimal valid configuration, for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn test_settings() -> Settings {
    let raw = parse(
        "[server]\nhostname = \"mx.example.test\"\n[[listener]]\naddress = [\"127.0.0.1:2525\"]\n\
         [backend]\naddress = \"127.0.0.1:10025\"\n",
        "t.toml",
    )
    .expect("test config parses");
    validate(raw, &Overrides::default(), "t.toml").expect("test config is valid")
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
        let text = include_str!("../../conf/tlsfront.toml");
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
    fn host_id_defaults_to_the_system_name_and_is_a_plain_token() {
        let system = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if values::valid_hostname(&system) {
            assert_eq!(load(MINIMAL).unwrap().host_id, system);
        }
        let with = |id: &str| MINIMAL.replace("[server]", &format!("[server]\nhost_id = {id:?}"));
        assert_eq!(load(&with("mx-2.fra_1")).unwrap().host_id, "mx-2.fra_1");
        for bad in ["", "a b", "x\ny", &"h".repeat(65)] {
            let e = err_of(&with(bad));
            assert!(e.contains("`server.host_id`"), "{bad:?}: {e}");
        }
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
    fn enum_like_keys_name_the_key_and_the_valid_values() {
        for (key, line, valid) in [
            (
                "listener[0].mode",
                "mode = \"ssl\"",
                &["starttls", "implicit"][..],
            ),
            (
                "listener[0].require_tls",
                "require_tls = \"yes\"",
                &["true", "false", "\"log\""],
            ),
            (
                "listener[0].require_tls",
                "require_tls = 1",
                &["true", "false", "\"log\""],
            ),
            (
                "backend.tls",
                "tls = \"ssl\"",
                &["none", "starttls", "implicit"],
            ),
            (
                "backend.proxy_protocol",
                "proxy_protocol = \"v3\"",
                &["v1", "v2", "none"],
            ),
            (
                "smtp.bare_line_endings",
                "bare_line_endings = \"fix\"",
                &["normalize", "reject"],
            ),
        ] {
            let section = key.split(['.', '[']).next().unwrap();
            let header = if section == "listener" {
                "[[listener]]".to_string()
            } else {
                format!("[{section}]")
            };
            let text = if MINIMAL.contains(&header) {
                MINIMAL.replacen(&header, &format!("{header}\n{line}"), 1)
            } else {
                format!("{MINIMAL}\n{header}\n{line}")
            };
            let e = err_of(&text);
            assert!(e.starts_with(&format!("t.toml: `{key}`:")), "{line}: {e}");
            for v in valid {
                assert!(e.contains(v), "{line}: {e} lacks {v}");
            }
        }
    }

    #[test]
    fn type_errors_name_the_key_and_the_line() {
        let text = "[server]\nhostname = \"mx.test\"\n[[listener]]\naddress = [\"127.0.0.1:25\"]\n\
                    [backend]\naddress = \"127.0.0.1:26\"\n";
        for (extra, key, message, line) in [
            (
                "[smtp]\nmax_errors = -1",
                "smtp.max_errors",
                "integer `-1`",
                8,
            ),
            (
                "xclient = \"yes\"",
                "backend.xclient",
                "expected a boolean",
                7,
            ),
            (
                "[[tls.certificate]]\ncert = \"a.pem\"",
                "tls.certificate[0]",
                "missing field `key`",
                7,
            ),
            (
                "[[listener]]\nmode = \"implicit\"",
                "listener[1]",
                "missing field `address`",
                7,
            ),
            (
                "adress = \"x\"",
                "backend.adress",
                "unknown field `adress`",
                7,
            ),
            (
                "[metrics]\nlisten = [\"127.0.0.1:9325\"]",
                "metrics.listen",
                "expected a string",
                8,
            ),
        ] {
            let e = err_of(&format!("{text}{extra}"));
            assert!(
                e.starts_with(&format!("t.toml: `{key}`: "))
                    && e.contains(message)
                    && e.contains(&format!("(line {line}, column ")),
                "{extra}: {e}"
            );
        }
        // Not TOML at all: toml's own message, with the line.
        let e = err_of("[server\n");
        assert!(e.starts_with("t.toml: TOML parse error at line 1"), "{e}");
    }

    #[test]
    fn zero_counts_are_errors_naming_their_key() {
        for (section, key) in [
            ("smtp", "max_errors"),
            ("smtp", "max_recipients"),
            ("server", "max_connections"),
            ("server", "max_connections_per_client"),
        ] {
            let e = err_of(&with(section, &format!("{key} = 0")));
            assert!(
                e.starts_with(&format!("t.toml: `{section}.{key}`:")) && e.contains("at least 1"),
                "{section}.{key} = 0: {e}"
            );
        }
    }

    /// MINIMAL with `line` added to `[section]`.
    fn with(section: &str, line: &str) -> String {
        let header = format!("[{section}]");
        if MINIMAL.contains(&header) {
            MINIMAL.replacen(&header, &format!("{header}\n{line}"), 1)
        } else {
            format!("{MINIMAL}\n{header}\n{line}")
        }
    }

    #[test]
    fn bounds_are_those_of_limits() {
        use crate::limits::*;
        let ranges = [
            ("smtp", "max_line_length", LINE_LENGTH_RANGE),
            ("backend", "max_reply_line", LINE_LENGTH_RANGE),
            ("backend", "max_reply_size", REPLY_SIZE_RANGE),
            (
                "backend",
                "reuse_max_sessions",
                *BACKEND_REUSE_MAX_SESSIONS_RANGE.start() as usize
                    ..=*BACKEND_REUSE_MAX_SESSIONS_RANGE.end() as usize,
            ),
            ("backend", "max_connections", BACKEND_MAX_CONNECTIONS_RANGE),
        ];
        for (section, key, range) in ranges {
            let (lo, hi) = (*range.start(), *range.end());
            for n in [lo, hi] {
                let s = load(&with(section, &format!("{key} = {n}")));
                assert!(s.is_ok(), "{key} = {n}: {:?}", s.err());
            }
            for n in [lo - 1, hi + 1] {
                let e = err_of(&with(section, &format!("{key} = {n}")));
                assert!(
                    e.starts_with(&format!(
                        "t.toml: `{section}.{key}`: {n} is outside {lo}..={hi}"
                    )),
                    "{e}"
                );
            }
        }
        let most = |d: Duration| d.as_secs();
        for (section, key, max) in [
            ("smtp", "greeting_delay", most(MAX_GREETING_DELAY)),
            ("backend", "reuse_idle_time", most(MAX_BACKEND_REUSE_IDLE)),
        ] {
            for ok in ["0s".to_string(), format!("{max}s")] {
                assert!(load(&with(section, &format!("{key} = \"{ok}\""))).is_ok());
            }
            let e = err_of(&with(section, &format!("{key} = \"{}s\"", max + 1)));
            assert!(
                e.starts_with(&format!("t.toml: `{section}.{key}`:"))
                    && e.contains(&format!("{max}s")),
                "{e}"
            );
        }
        let s = load(MINIMAL).unwrap();
        assert_eq!(s.smtp.max_errors, DEFAULT_MAX_ERRORS);
        assert_eq!(s.smtp.greeting_delay, DEFAULT_GREETING_DELAY);
        let verb = "X".repeat(MAX_RELAY_VERB);
        assert!(load(&with("smtp", &format!("relay_verbs = [\"{verb}\"]"))).is_ok());
        let e = err_of(&with("smtp", &format!("relay_verbs = [\"{verb}Y\"]")));
        assert!(e.contains("not an SMTP verb"), "{e}");
    }

    #[test]
    fn host_id_defaults_to_the_system_host_name() {
        let s = load(MINIMAL).unwrap();
        let system = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(s.host_id, system.trim().to_ascii_lowercase());
        assert_eq!(
            load(&with("server", "host_id = \"MX-2.dc1\""))
                .unwrap()
                .host_id,
            "mx-2.dc1"
        );
        let e = err_of(&with("server", "host_id = \"mx 2\""));
        assert!(
            e.contains("server.host_id") && e.contains("not a host name"),
            "{e}"
        );
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
        let max = crate::limits::MAX_CONFIG_DURATION.as_secs();
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
    fn suites_are_all_ecdhe_or_tls13() {
        for name in suite_names() {
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
            assert!(
                name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
                "{name}"
            );
        }
    }
}

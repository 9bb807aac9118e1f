//! From the file as written to [`Settings`]: command-line overrides first,
//! then one function per section, each checking its values and the
//! cross-section rules that concern it (the listeners come first: the
//! others are checked against them). The first error is returned, naming the
//! file and the key.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::raw::{
    RawBackend, RawCertificate, RawConfig, RawListener, RawMetrics, RawProxyProtocol, RawRecords,
    RawServer, RawSmtp, RawTls,
};
use super::values::{
    parse_cidr, parse_duration, parse_fingerprint, reaches, resolve_credential, valid_hostname,
};
use super::{
    BackendSettings, BackendVerify, ConfigError, DEFAULT_GROUPS, KNOWN_GROUPS, ListenerSpec,
    Overrides, RequireTls, Settings, SmtpSettings, TlsSettings, TlsVersion, suite_names,
};
use crate::limits;
use crate::outcome::Mode;
use crate::wire::proxyproto::Version;

/// Validates `raw` with `overrides` applied; `file` names the source in errors.
pub fn validate(
    raw: RawConfig,
    overrides: &Overrides,
    file: &str,
) -> Result<Settings, ConfigError> {
    let v = V { file };
    let raw = apply(raw, overrides, &v)?;
    let listeners = listeners(&v, &raw.listeners)?;
    let server = server(&v, &raw.server, &listeners)?;
    let backend = backend(&v, &raw.backend, &listeners)?;
    let tls = tls(&v, &raw.tls, &listeners)?;
    let smtp = smtp(&v, &raw.smtp)?;
    let records = records(&raw.records);
    let metrics = metrics(&v, &raw.metrics, &listeners)?;
    let mta_sts = super::automation::mta_sts(&v, raw.mta_sts.as_ref(), &server.names)?;
    let acme = super::automation::acme(&v, raw.acme.as_ref(), &server.names, mta_sts.as_ref())?;
    let dane = super::automation::dane(&v, raw.dane.as_ref(), &server.names)?;
    Ok(Settings {
        acme,
        dane,
        mta_sts,
        hostname: server.hostname,
        host_id: server.host_id,
        names: server.names,
        listeners,
        backend,
        tls,
        smtp,
        records,
        metrics,
        max_connections: server.max_connections,
        max_connections_per_client: server.max_connections_per_client,
        trusted_proxies: server.trusted_proxies,
        shutdown_grace: server.shutdown_grace,
    })
}

/// Errors naming the file and the key, and the checks most keys share.
pub(super) struct V<'a> {
    file: &'a str,
}

impl V<'_> {
    pub(super) fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn duration(
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

    /// A count that must be at least 1 (0 would refuse everything, or was
    /// meant as "no limit", which tlsfront does not have).
    fn count<T: Copy + PartialEq + From<u8>>(
        &self,
        key: &str,
        value: Option<T>,
        default: T,
    ) -> Result<T, ConfigError> {
        match value {
            Some(n) if n == T::from(0) => Err(self.err(key, "must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(default),
        }
    }

    /// A number within `range`; `note` says why, if the range does not.
    fn within<T: Copy + PartialOrd + std::fmt::Debug>(
        &self,
        key: &str,
        value: Option<T>,
        default: T,
        range: &std::ops::RangeInclusive<T>,
        note: &str,
    ) -> Result<T, ConfigError> {
        let n = value.unwrap_or(default);
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(self.err(key, format!("{n:?} is outside {range:?}{note}")))
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

/// Overrides replace whole sections, so a one-off run needs no file at all.
fn apply(mut raw: RawConfig, o: &Overrides, v: &V<'_>) -> Result<RawConfig, ConfigError> {
    if !o.listen.is_empty() || !o.implicit_listen.is_empty() {
        raw.listeners.clear();
        if !o.listen.is_empty() {
            raw.listeners.push(RawListener {
                address: o.listen.clone(),
                mode: Mode::Starttls,
                require_tls: RequireTls::Off,
                proxy_protocol: false,
            });
        }
        if !o.implicit_listen.is_empty() {
            raw.listeners.push(RawListener {
                address: o.implicit_listen.clone(),
                mode: Mode::Implicit,
                require_tls: RequireTls::Off,
                proxy_protocol: false,
            });
        }
    }
    if let Some(b) = &o.backend {
        raw.backend.address = Some(b.clone());
    }
    if let Some(s) = &o.source_address {
        raw.backend.source_address = Some(s.clone());
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
    Ok(raw)
}

/// `[[listener]]`: one [`ListenerSpec`] per address.
fn listeners(v: &V<'_>, raw: &[RawListener]) -> Result<Vec<ListenerSpec>, ConfigError> {
    if raw.is_empty() {
        return Err(v.err(
            "listener",
            "no listener configured (add a [[listener]] or use --listen ADDR)",
        ));
    }
    let mut listeners: Vec<ListenerSpec> = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let key = format!("listener[{i}]");
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
                mode: l.mode,
                require_tls: l.require_tls,
                proxy_protocol: l.proxy_protocol,
            });
        }
    }
    Ok(listeners)
}

/// `[server]`, validated.
struct Server {
    hostname: String,
    host_id: String,
    names: Vec<String>,
    max_connections: usize,
    max_connections_per_client: usize,
    trusted_proxies: Vec<(IpAddr, u8)>,
    shutdown_grace: Duration,
}

fn server(v: &V<'_>, s: &RawServer, listeners: &[ListenerSpec]) -> Result<Server, ConfigError> {
    let hostname = s
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
    let host_id = s
        .host_id
        .clone()
        .unwrap_or_else(system_hostname)
        .to_ascii_lowercase();
    if host_id.is_empty()
        || host_id.len() > limits::MAX_HOST_ID
        || !host_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(v.err(
            "server.host_id",
            format!(
                "{host_id:?} is not a host name: use 1 to {} letters, digits, '.', '-' or '_'",
                limits::MAX_HOST_ID
            ),
        ));
    }
    let mut names = vec![hostname.clone()];
    for n in &s.names {
        let n = n.to_ascii_lowercase();
        if !valid_hostname(&n) {
            return Err(v.err("server.names", format!("{n:?} is not a valid host name")));
        }
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let max_connections = v.count(
        "server.max_connections",
        s.max_connections,
        limits::DEFAULT_MAX_CONNECTIONS,
    )?;
    let max_connections_per_client = v.count(
        "server.max_connections_per_client",
        s.max_connections_per_client,
        limits::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    )?;
    let mut trusted_proxies = Vec::new();
    for net in &s.trusted_proxies {
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
    Ok(Server {
        hostname,
        host_id,
        names,
        max_connections,
        max_connections_per_client,
        trusted_proxies,
        shutdown_grace: v.duration(
            "server.shutdown_grace",
            &s.shutdown_grace,
            limits::DEFAULT_SHUTDOWN_GRACE,
        )?,
    })
}

/// Whether `ip` is an address of this host: one a socket can be bound to.
fn is_local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| valid_hostname(s))
        .unwrap_or_else(|| "localhost".to_string())
}

/// `[backend]`: the address, the optional TLS hop, identity passing, bounds.
fn backend(
    v: &V<'_>,
    b: &RawBackend,
    listeners: &[ListenerSpec],
) -> Result<BackendSettings, ConfigError> {
    let backend_addr = b.address.as_deref().ok_or_else(|| {
        v.err(
            "backend.address",
            "no backend configured (set backend.address or use --backend ADDR)",
        )
    })?;
    let backend_addr = v.socket_addr("backend.address", backend_addr)?;
    // A wildcard listener answers at every local address: 0.0.0.0:25 and a
    // backend at 127.0.0.1:25 is a loop (one message fans out to dozens of
    // sessions until the caps stop it).
    if let Some(l) = listeners
        .iter()
        .find(|l| l.addr == backend_addr || reaches(l.addr, backend_addr, is_local_address))
    {
        let which = if l.addr == backend_addr {
            "is also a listener".to_string()
        } else {
            format!("is served by tlsfront's own listener {}", l.addr)
        };
        return Err(v.err(
            "backend.address",
            format!(
                "{backend_addr} {which}: tlsfront would relay to itself (move the legacy MTA to \
                 another port, e.g. 127.0.0.1:10025)"
            ),
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
    let tls_verify = match (&b.tls_ca_file, &b.tls_fingerprint) {
        (Some(_), Some(_)) => {
            return Err(v.err(
                "backend.tls_ca_file",
                "give tls_ca_file or tls_fingerprint, not both",
            ));
        }
        // Read where the backend is built (the proxy), not here.
        (Some(ca), None) => BackendVerify::CaFile(ca.clone()),
        (None, Some(fp)) => BackendVerify::Fingerprint(parse_fingerprint(fp).ok_or_else(|| {
            v.err(
                "backend.tls_fingerprint",
                format!("{fp:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"),
            )
        })?),
        (None, None) => BackendVerify::None,
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
    Ok(BackendSettings {
        addr: backend_addr,
        source,
        tls: b.tls,
        tls_verify,
        tls_name,
        xclient: b.xclient,
        allow_without_identity: b.allow_without_identity,
        greeting_timeout: v.duration(
            "backend.greeting_timeout",
            &b.greeting_timeout,
            limits::DEFAULT_BACKEND_GREETING_TIMEOUT,
        )?,
        max_reply_line: v.within(
            "backend.max_reply_line",
            b.max_reply_line,
            limits::MAX_REPLY_LINE,
            &limits::LINE_LENGTH_RANGE,
            " (RFC 5321: 512)",
        )?,
        max_reply_size: v.within(
            "backend.max_reply_size",
            b.max_reply_size,
            limits::MAX_REPLY_BYTES,
            &limits::REPLY_SIZE_RANGE,
            "",
        )?,
        proxy_protocol: match b.proxy_protocol {
            RawProxyProtocol::None => None,
            RawProxyProtocol::V1 => Some(Version::V1),
            RawProxyProtocol::V2 => Some(Version::V2),
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
        // "0s" turns reuse off.
        reuse_idle: match b.reuse_idle_time.as_deref().map(parse_duration) {
            Some(Some(d)) if d.is_zero() => Duration::ZERO,
            _ => match v.duration(
                "backend.reuse_idle_time",
                &b.reuse_idle_time,
                limits::DEFAULT_BACKEND_REUSE_IDLE,
            )? {
                d if d <= limits::MAX_BACKEND_REUSE_IDLE => d,
                d => {
                    return Err(v.err(
                        "backend.reuse_idle_time",
                        format!(
                            "{d:?} is over {}s (use \"0s\" to turn reuse off)",
                            limits::MAX_BACKEND_REUSE_IDLE.as_secs()
                        ),
                    ));
                }
            },
        },
        reuse_max_sessions: v.within(
            "backend.reuse_max_sessions",
            b.reuse_max_sessions,
            limits::DEFAULT_BACKEND_REUSE_MAX_SESSIONS,
            &limits::BACKEND_REUSE_MAX_SESSIONS_RANGE,
            "",
        )?,
        max_connections: v.within(
            "backend.max_connections",
            b.max_connections,
            limits::DEFAULT_BACKEND_MAX_CONNECTIONS,
            &limits::BACKEND_MAX_CONNECTIONS_RANGE,
            "",
        )?,
    })
}

/// `[tls]`: versions, groups and suites by name, certificates as given.
fn tls(v: &V<'_>, t: &RawTls, listeners: &[ListenerSpec]) -> Result<TlsSettings, ConfigError> {
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
        let known = suite_names();
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
    // `%d/NAME`: a key (or certificate) systemd passed with LoadCredential=.
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from);
    let mut certificates = t.certificates.clone();
    for (i, c) in certificates.iter_mut().enumerate() {
        c.cert = resolve_credential(&c.cert, credentials.as_deref())
            .map_err(|e| v.err(&format!("tls.certificate[{i}].cert"), e))?;
        c.key = resolve_credential(&c.key, credentials.as_deref())
            .map_err(|e| v.err(&format!("tls.certificate[{i}].key"), e))?;
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
        certificates,
        generate_self_signed: t.generate_self_signed,
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
    Ok(tls)
}

/// `[smtp]`: the client side's bounds, timeouts and policy.
fn smtp(v: &V<'_>, s: &RawSmtp) -> Result<SmtpSettings, ConfigError> {
    Ok(SmtpSettings {
        auth_before_tls: s.auth_before_tls,
        max_line: v.within(
            "smtp.max_line_length",
            s.max_line_length,
            limits::DEFAULT_MAX_LINE,
            &limits::LINE_LENGTH_RANGE,
            " (RFC 5321 needs at least 512)",
        )?,
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
        max_errors: v.count("smtp.max_errors", s.max_errors, limits::DEFAULT_MAX_ERRORS)?,
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
        max_recipients: v.count(
            "smtp.max_recipients",
            s.max_recipients,
            limits::DEFAULT_MAX_RECIPIENTS,
        )?,
        received_header: s.received_header,
        relay_verbs: relay_verbs(v, s.relay_verbs.as_deref())?,
        greeting_delay: match &s.greeting_delay {
            None => limits::DEFAULT_GREETING_DELAY,
            Some(d) => match parse_duration(d) {
                Some(d) if d <= limits::MAX_GREETING_DELAY => d,
                _ => {
                    return Err(v.err(
                        "smtp.greeting_delay",
                        format!(
                            "{d:?} is not a duration of at most {}s (\"0s\" to disable)",
                            limits::MAX_GREETING_DELAY.as_secs()
                        ),
                    ));
                }
            },
        },
        bare_line_endings: s.bare_line_endings,
    })
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
            && upper.len() <= limits::MAX_RELAY_VERB
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

/// `[records]`: the file is opened by the writer, which reports its errors.
fn records(r: &RawRecords) -> Option<std::path::PathBuf> {
    r.path.clone()
}

/// `[metrics]`: off unless `listen` is set; never on an SMTP listener's address.
fn metrics(
    v: &V<'_>,
    m: &RawMetrics,
    listeners: &[ListenerSpec],
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(s) = &m.listen else { return Ok(None) };
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
    Ok(Some(addr))
}

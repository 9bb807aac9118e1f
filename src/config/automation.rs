//! `[acme]`, `[dane]` and `[mta_sts]`: the sections about the host's TLS
//! identity (certificates obtained by ACME, TLSA records, the MTA-STS policy),
//! validated like the others by [`super::validate`]. Nothing is read or bound
//! here: the state directory, the CA file and the trust anchor are opened
//! where they are used.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawAcme, RawDane, RawMtaSts};
use super::validate::V;
use super::values::{parse_duration, valid_hostname};
use super::{AcmeSettings, Challenge, ConfigError, DaneSettings, DnsSettings, MtaStsSettings};
use crate::limits;
use crate::mta_sts::{self, Mode, Policy};
use crate::outcome::KeyType;

/// Host names a list key holds, lower-cased; `wildcard` allows `*.domain`.
fn names(
    v: &V<'_>,
    key: &str,
    list: &[String],
    wildcard: bool,
) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for n in list {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        let bare = if wildcard {
            n.strip_prefix("*.").unwrap_or(&n)
        } else {
            &n
        };
        if !valid_hostname(bare) {
            return Err(v.err(key, format!("{n:?} is not a host name")));
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Addresses to listen on (`IP:PORT` each), or the defaults.
fn listen(
    v: &V<'_>,
    key: &str,
    list: Option<&[String]>,
    default: &[&str],
) -> Result<Vec<SocketAddr>, ConfigError> {
    let owned: Vec<String>;
    let list = match list {
        Some([]) => return Err(v.err(key, "empty list")),
        Some(l) => l,
        None => {
            owned = default.iter().map(|s| s.to_string()).collect();
            &owned
        }
    };
    list.iter()
        .map(|a| {
            a.parse::<SocketAddr>().map_err(|_| {
                v.err(
                    key,
                    format!("{a:?} is not IP:PORT (e.g. \"0.0.0.0:80\", \"[::]:80\")"),
                )
            })
        })
        .collect()
}

/// `[mta_sts]`: the policy tlsfront serves for each domain.
pub(super) fn mta_sts(
    v: &V<'_>,
    raw: Option<&RawMtaSts>,
    server_names: &[String],
) -> Result<Option<MtaStsSettings>, ConfigError> {
    let Some(m) = raw else { return Ok(None) };
    if m.domains.is_empty() {
        return Err(v.err(
            "mta_sts.domains",
            "name the mail domains whose policy tlsfront serves (e.g. [\"example.com\"])",
        ));
    }
    let domains = names(v, "mta_sts.domains", &m.domains, false)?;
    let mode = match m.mode.as_deref() {
        None => Mode::Testing,
        Some(s) => Mode::parse(s).ok_or_else(|| {
            v.err(
                "mta_sts.mode",
                format!("{s:?} is not a mode (valid: \"enforce\", \"testing\", \"none\")"),
            )
        })?,
    };
    let max_age = m.max_age.unwrap_or(limits::DEFAULT_MTA_STS_MAX_AGE);
    if max_age == 0 || max_age > limits::MAX_MTA_STS_MAX_AGE {
        return Err(v.err(
            "mta_sts.max_age",
            format!(
                "{max_age} is outside 1..={} seconds (RFC 8461)",
                limits::MAX_MTA_STS_MAX_AGE
            ),
        ));
    }
    let mx = match &m.mx {
        Some(list) => names(v, "mta_sts.mx", list, true)?,
        None => server_names.to_vec(),
    };
    if mx.is_empty() && mode != Mode::None {
        return Err(v.err("mta_sts.mx", "at least one MX pattern is needed"));
    }
    Ok(Some(MtaStsSettings {
        domains,
        listen: listen(
            v,
            "mta_sts.listen",
            m.listen.as_deref(),
            limits::DEFAULT_MTA_STS_LISTEN,
        )?,
        policy: Policy { mode, mx, max_age },
    }))
}

/// `[acme]`: the CA, the names, the key types, the challenge, the timing.
pub(super) fn acme(
    v: &V<'_>,
    raw: Option<&RawAcme>,
    server_names: &[String],
    mta_sts: Option<&MtaStsSettings>,
) -> Result<Option<AcmeSettings>, ConfigError> {
    let Some(a) = raw else { return Ok(None) };
    let directory = a
        .directory
        .clone()
        .unwrap_or_else(|| limits::DEFAULT_ACME_DIRECTORY.to_string());
    if !directory.starts_with("https://") {
        return Err(v.err(
            "acme.directory",
            format!("{directory:?}: the CA's directory is an https:// URL"),
        ));
    }
    for c in &a.contact {
        if !c.starts_with("mailto:") || !c.contains('@') {
            return Err(v.err(
                "acme.contact",
                format!("{c:?}: give mailto: addresses (e.g. \"mailto:postmaster@example.com\")"),
            ));
        }
    }
    let mut names = match &a.names {
        Some(list) if list.is_empty() => return Err(v.err("acme.names", "empty list")),
        Some(list) => names(v, "acme.names", list, false)?,
        None => server_names.to_vec(),
    };
    // The policy host needs a certificate too, and it is the same one.
    for d in mta_sts.map(|m| m.domains.as_slice()).unwrap_or_default() {
        let host = mta_sts::policy_host(d);
        if !names.contains(&host) {
            names.push(host);
        }
    }
    let key_types = match &a.key_types {
        Some(list) if list.is_empty() => {
            return Err(v.err(
                "acme.key_types",
                "empty list (leave the key out for [\"ecdsa_p256\"])",
            ));
        }
        Some(list) => {
            let mut out: Vec<KeyType> = Vec::new();
            for k in list {
                if !out.contains(k) {
                    out.push(*k);
                }
            }
            out
        }
        None => vec![KeyType::EcdsaP256],
    };
    let challenge = match (&a.webroot, &a.challenge_listen) {
        (Some(_), Some(_)) => {
            return Err(v.err(
                "acme.webroot",
                "give webroot (a web server answers) or challenge_listen (tlsfront answers), not both",
            ));
        }
        (Some(root), None) => Challenge::Webroot(root.clone()),
        (None, list) => Challenge::Listen(listen(
            v,
            "acme.challenge_listen",
            list.as_deref(),
            limits::DEFAULT_CHALLENGE_LISTEN,
        )?),
    };
    let renew_before = match &a.renew_before {
        None => None,
        Some(s) => match parse_duration(s) {
            Some(d) if !d.is_zero() && d <= limits::MAX_RENEW_BEFORE => Some(d),
            _ => {
                return Err(v.err(
                    "acme.renew_before",
                    format!(
                        "{s:?} is not a duration of at most {} days (e.g. \"30d\")",
                        limits::MAX_RENEW_BEFORE.as_secs() / 86_400
                    ),
                ));
            }
        },
    };
    let state_directory = a
        .state_directory
        .clone()
        .unwrap_or_else(default_state_directory);
    if !state_directory.is_absolute() {
        return Err(v.err(
            "acme.state_directory",
            format!("{}: give an absolute path", state_directory.display()),
        ));
    }
    Ok(Some(AcmeSettings {
        directory,
        contact: a.contact.clone(),
        names,
        key_types,
        challenge,
        renew_before,
        retry_initial: v.duration(
            "acme.retry_initial",
            &a.retry_initial,
            limits::DEFAULT_ACME_RETRY_INITIAL,
        )?,
        ca_file: a.ca_file.clone(),
        state_directory,
    }))
}

/// systemd's `StateDirectory=` (its first path), else the default.
fn default_state_directory() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|s| {
            s.to_str()
                .and_then(|s| s.split(':').next())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(limits::DEFAULT_STATE_DIRECTORY))
}

/// `[dane]`: the names looked up, the wait, where DNS questions go.
pub(super) fn dane(
    v: &V<'_>,
    raw: Option<&RawDane>,
    server_names: &[String],
) -> Result<Option<DaneSettings>, ConfigError> {
    let Some(d) = raw else { return Ok(None) };
    let names = match &d.names {
        Some(list) if list.is_empty() => return Err(v.err("dane.names", "empty list")),
        Some(list) => names(v, "dane.names", list, false)?,
        None => server_names.to_vec(),
    };
    let publish_wait = match &d.publish_wait {
        None => None,
        Some(_) => Some(v.duration("dane.publish_wait", &d.publish_wait, Duration::ZERO)?),
    };
    Ok(Some(DaneSettings {
        names,
        publish_wait,
        dns: dns(v, d.resolver.as_deref(), d.trust_anchor.clone())?,
    }))
}

/// A resolver address (port 53 when none is given) and a trust anchor file.
pub(super) fn dns(
    v: &V<'_>,
    resolver: Option<&str>,
    trust_anchor: Option<PathBuf>,
) -> Result<DnsSettings, ConfigError> {
    let resolver = match resolver {
        None => None,
        Some(s) => Some(crate::dns::parse_resolver(s).ok_or_else(|| {
            v.err(
                "dane.resolver",
                format!("{s:?} is not IP or IP:PORT (e.g. \"127.0.0.1\", \"[::1]:53\")"),
            )
        })?),
    };
    Ok(DnsSettings {
        resolver,
        trust_anchor,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Overrides, Settings, parse, validate};
    use super::*;

    const BASE: &str = "[server]\nhostname = \"mx.example.com\"\nnames = [\"mx2.example.com\"]\n\
                        [[listener]]\naddress = [\"127.0.0.1:2525\"]\n\
                        [backend]\naddress = \"127.0.0.1:10025\"\n";

    fn load(extra: &str) -> Result<Settings, ConfigError> {
        validate(
            parse(&format!("{BASE}{extra}"), "t.toml")?,
            &Overrides::default(),
            "t.toml",
        )
    }

    #[test]
    fn acme_defaults_cover_the_mx_names_and_the_policy_host() {
        let s =
            load("[acme]\nstate_directory = \"/tmp/s\"\n[mta_sts]\ndomains = [\"Example.com\"]\n")
                .unwrap();
        let a = s.acme.unwrap();
        assert_eq!(a.directory, limits::DEFAULT_ACME_DIRECTORY);
        assert_eq!(a.key_types, vec![KeyType::EcdsaP256]);
        assert_eq!(
            a.names,
            ["mx.example.com", "mx2.example.com", "mta-sts.example.com"]
        );
        assert_eq!(
            a.challenge,
            Challenge::Listen(vec![
                "0.0.0.0:80".parse().unwrap(),
                "[::]:80".parse().unwrap()
            ])
        );
        assert_eq!(a.renew_before, None);
        let m = s.mta_sts.unwrap();
        assert_eq!(m.policy.mode, Mode::Testing);
        assert_eq!(m.policy.mx, ["mx.example.com", "mx2.example.com"]);
        assert!(s.dane.is_none());
        let d = load("[dane]\nresolver = \"127.0.0.1\"\npublish_wait = \"2h\"\n")
            .unwrap()
            .dane
            .unwrap();
        assert_eq!(d.dns.resolver, Some("127.0.0.1:53".parse().unwrap()));
        assert_eq!(d.publish_wait, Some(Duration::from_secs(7200)));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key, words) in [
            (
                "[acme]\nwebroot = \"/w\"\nchallenge_listen = [\"0.0.0.0:80\"]\n",
                "acme.webroot",
                "not both",
            ),
            (
                "[acme]\nkey_types = [\"ed25519\"]\n",
                "acme.key_types",
                "ecdsa_p256",
            ),
            (
                "[acme]\ndirectory = \"http://ca.test/dir\"\n",
                "acme.directory",
                "https://",
            ),
            (
                "[acme]\nrenew_before = \"90d\"\n",
                "acme.renew_before",
                "60 days",
            ),
            (
                "[acme]\ncontact = [\"postmaster@example.com\"]\n",
                "acme.contact",
                "mailto:",
            ),
            (
                "[acme]\nstate_directory = \"state\"\n",
                "acme.state_directory",
                "absolute",
            ),
            (
                "[dane]\nresolver = \"dns.example\"\n",
                "dane.resolver",
                "IP:PORT",
            ),
            (
                "[mta_sts]\ndomains = [\"example.com\"]\nmode = \"strict\"\n",
                "mta_sts.mode",
                "enforce",
            ),
            (
                "[mta_sts]\ndomains = [\"example.com\"]\nmax_age = 0\n",
                "mta_sts.max_age",
                "31557600",
            ),
            ("[mta_sts]\n", "mta_sts.domains", "name the mail domains"),
        ] {
            let e = load(extra).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{key}`")) && e.contains(words),
                "{extra}: {e}"
            );
        }
    }
}

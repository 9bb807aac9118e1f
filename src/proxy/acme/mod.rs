//! Certificates that take care of themselves: tlsfront obtains and renews
//! its certificates from an ACME CA (RFC 8555), one per configured key type
//! (ECDSA P-256, optionally RSA 2048 beside it), for the MX names.
//!
//! - [`store`]: the state directory (account, keys, chains, status).
//! - [`client`]: the conversation with the CA (instant-acme).
//! - [`http01`]: the challenge answered on tlsfront's own port 80, or by
//!   files in a web server's root.
//! - [`renewal`]: when to order, the backoff, and which key (the DANE rule).
//!
//! [`Acme::run`] is the loop beside the server: it orders what is due,
//! stores it, and calls the daemon's reload, which swaps the certificates for
//! new handshakes without touching sessions in flight. A failure is logged,
//! counted (metrics), written to the status file (`check` shows it) and
//! retried with a doubling wait. With `[dane]`, the loop also watches the
//! next key's TLSA records and moves to that key only once they have been
//! visible long enough.

pub mod client;
pub mod http01;
pub mod renewal;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cert;
use crate::config::{AcmeSettings, Challenge, DaneSettings, Settings};
use crate::dane::Tlsa;
use crate::dns::{self, Resolver};
use crate::limits;
use crate::outcome::{AcmeResult, KeyType};
use http01::{Challenges, Responder};
use rcgen::PublicKeyData;
use renewal::{KeyChoice, Stored, Visibility};
use store::{KeyStatus, Sighting, Store, StoreError};

#[derive(Debug, Error)]
pub enum AcmeStartError {
    #[error("ACME state directory: {0}")]
    Store(#[from] StoreError),
    #[error("ACME challenge listener: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("DANE: {0}")]
    Dns(#[from] dns::DnsError),
}

/// The stored certificates `run` serves: each key type's chain and key, when
/// both are there and belong together (a half-written pair is left out, and
/// the loop orders it again).
pub fn served(settings: &Settings) -> Vec<(PathBuf, PathBuf)> {
    let Some(acme) = &settings.acme else {
        return Vec::new();
    };
    let store = Store::new(&acme.state_directory);
    acme.key_types
        .iter()
        .map(|k| store.files(*k))
        .filter(|f| stored(f).is_some_and(|s| s.key_matches))
        .map(|f| (f.cert, f.key))
        .collect()
}

/// The facts of a stored chain, and whether `key.pem` is its key.
fn stored(files: &store::KeyFiles) -> Option<Stored> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .ok()?
        .collect::<Result<_, _>>()
        .ok()?;
    let leaf = chain.first()?;
    let facts = cert::parse(leaf.as_ref()).ok()?;
    let key_matches = load_key(&files.key)
        .is_some_and(|k| cert::spki(leaf.as_ref()).ok() == Some(k.subject_public_key_info()));
    Some(Stored {
        not_before: facts.not_before,
        not_after: facts.not_after,
        names: facts.dns_names,
        key_matches,
    })
}

fn load_key(path: &std::path::Path) -> Option<rcgen::KeyPair> {
    let pem = std::fs::read_to_string(path).ok()?;
    rcgen::KeyPair::from_pem(&pem).ok()
}

/// A new private key of `kind`.
pub fn generate_key(kind: KeyType) -> Result<rcgen::KeyPair, rcgen::Error> {
    match kind {
        KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    }
}

/// The `3 1 1` TLSA record of a stored key file.
pub fn key_record(path: &std::path::Path) -> Option<Tlsa> {
    load_key(path).map(|k| Tlsa::for_key(&k.subject_public_key_info()))
}

/// Told how each order ended (the daemon counts them in the metrics).
pub type OrderObserver = Arc<dyn Fn(KeyType, AcmeResult) + Send + Sync>;

/// The certificate loop, bound and ready to run.
pub struct Acme {
    settings: AcmeSettings,
    dane: Option<DaneSettings>,
    resolver: Option<Resolver>,
    store: Store,
    responder: Responder,
    table: Arc<Challenges>,
    listeners: Vec<TcpListener>,
    observe: Option<OrderObserver>,
    account: Option<instant_acme::Account>,
    status: BTreeMap<KeyType, KeyStatus>,
}

impl Acme {
    /// Creates the state directory and binds the challenge listener; `None`
    /// without `[acme]`. Called before READY, so a port 80 in use or a state
    /// directory that cannot be written stops the start.
    pub fn bind(
        settings: &Settings,
        observe: Option<OrderObserver>,
    ) -> Result<Option<Acme>, AcmeStartError> {
        let Some(acme) = &settings.acme else {
            return Ok(None);
        };
        let store = Store::new(&acme.state_directory);
        store.create(&acme.key_types)?;
        let table = Arc::new(Challenges::default());
        let (responder, listeners) = match &acme.challenge {
            Challenge::Listen(addrs) => {
                let listeners = http01::bind(addrs)
                    .map_err(|(addr, source)| AcmeStartError::Bind { addr, source })?;
                (Responder::Table(table.clone()), listeners)
            }
            Challenge::Webroot(root) => (Responder::Webroot(root.clone()), Vec::new()),
        };
        let resolver = match &settings.dane {
            Some(d) => Some(Resolver::new(&d.dns)?),
            None => None,
        };
        Ok(Some(Acme {
            settings: acme.clone(),
            dane: settings.dane.clone(),
            resolver,
            status: store.status(),
            store,
            responder,
            table,
            listeners,
            observe,
            account: None,
        }))
    }

    /// The challenge listener's addresses (tests bind port 0).
    pub fn challenge_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Orders what is due, then sleeps until the next thing is, until
    /// `shutdown`. `apply` puts stored certificates into service (the
    /// daemon's reload).
    pub async fn run(mut self, apply: Box<dyn Fn() + Send + Sync>, shutdown: CancellationToken) {
        let listeners = std::mem::take(&mut self.listeners);
        if !listeners.is_empty() {
            tokio::spawn(http01::serve(
                listeners,
                self.table.clone(),
                shutdown.clone(),
            ));
        }
        loop {
            let now = jiff::Timestamp::now().as_second();
            let (changed, wake) = self.pass(now).await;
            if changed {
                apply();
            }
            let wait = Duration::from_secs(u64::try_from(wake - now).unwrap_or(0))
                .max(limits::MIN_TLSA_POLL_INTERVAL);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One round: the TLSA watch, then an order for each key type that is
    /// due. Whether a certificate changed, and when to look again (Unix
    /// seconds).
    pub async fn pass(&mut self, now: i64) -> (bool, i64) {
        let mut wake = now + limits::ACME_RETRY_MAX.as_secs() as i64;
        if let Some(poll) = self.watch_tlsa(now).await {
            wake = wake.min(poll);
        }
        let mut changed = false;
        for kind in self.settings.key_types.clone() {
            let status = self.status.get(&kind).cloned().unwrap_or_default();
            if let Some(next) = status.next_attempt.filter(|t| *t > now) {
                wake = wake.min(next);
                continue;
            }
            let files = self.store.files(kind);
            let stored = stored(&files);
            let reason = match renewal::due(
                stored.as_ref(),
                &self.settings.names,
                now,
                self.settings.renew_before,
            ) {
                Ok(at) => {
                    wake = wake.min(at);
                    continue;
                }
                Err(reason) => reason,
            };
            tracing::info!(key = %kind, names = ?self.settings.names, "ordering a certificate: {reason}");
            match self
                .renew(kind, stored.as_ref().map(|s| s.not_after), now)
                .await
            {
                Ok(Renewed::Later(at)) => wake = wake.min(at),
                Ok(Renewed::Now { held_back }) => {
                    changed = true;
                    self.record(kind, AcmeResult::Issued, now, |s| {
                        s.last_success = Some(now);
                        s.last_error = None;
                        s.failures = 0;
                        s.next_attempt = None;
                        s.key_held_back = held_back;
                    });
                    // The new certificate's own renewal time.
                    if let Some(s) = stored_for(&self.store, kind) {
                        wake = wake.min(renewal::renew_at(
                            s.not_before,
                            s.not_after,
                            self.settings.renew_before,
                        ));
                    }
                }
                Err(e) => {
                    let failures = status.failures + 1;
                    let wait = renewal::backoff(failures, self.settings.retry_initial);
                    let next = now + wait.as_secs() as i64;
                    tracing::error!(
                        key = %kind, failures, retry_in_s = wait.as_secs(),
                        "ACME order failed: {e}; the certificate in service stays"
                    );
                    self.record(kind, AcmeResult::Failed, now, |s| {
                        s.last_error = Some(e.to_string());
                        s.failures = failures;
                        s.next_attempt = Some(next);
                    });
                    wake = wake.min(next);
                }
            }
        }
        (changed, wake)
    }

    fn record(
        &mut self,
        kind: KeyType,
        result: AcmeResult,
        now: i64,
        update: impl FnOnce(&mut KeyStatus),
    ) {
        let s = self.status.entry(kind).or_default();
        s.last_attempt = Some(now);
        update(s);
        if let Err(e) = self.store.set_status(&self.status) {
            tracing::error!("cannot write the ACME status: {e}");
        }
        if let Some(observe) = &self.observe {
            observe(kind, result);
        }
    }

    /// One order for `kind`: the key chosen, the chain and key stored; or
    /// none yet, when the next key's records need a little longer.
    /// `not_after`: the certificate in service's, if there is one.
    async fn renew(
        &mut self,
        kind: KeyType,
        have_certificate: Option<i64>,
        now: i64,
    ) -> Result<Renewed, client::AcmeError> {
        let files = self.store.files(kind);
        let key_err = |e: rcgen::Error| client::AcmeError::Key(e.to_string());
        let current = load_key(&files.key);
        let next = match load_key(&files.next_key) {
            Some(k) => k,
            None => {
                let k = generate_key(kind).map_err(key_err)?;
                self.store
                    .write(&files.next_key, k.serialize_pem().as_bytes(), true)?;
                k
            }
        };
        // Which key: the first certificate (nothing served to protect) takes
        // the current key, made now if there is none; later ones follow the rule.
        let (choice, held_back) = match (&current, have_certificate) {
            (Some(_), Some(not_after)) => {
                let visibility = match self.dane.is_some() {
                    true => Some(self.visibility(kind, now).await),
                    false => None,
                };
                renewal::choose_key(visibility.as_ref(), now, not_after)
            }
            _ => (KeyChoice::Current, None),
        };
        if let KeyChoice::WaitUntil(at) = choice {
            tracing::info!(
                key = %kind,
                "DANE: the next key's TLSA record is out; ordering once it has been visible long enough (in {}s)",
                at - now
            );
            return Ok(Renewed::Later(at));
        }
        if let Some(why) = &held_back {
            let record = Tlsa::for_key(&next.subject_public_key_info());
            let names = self
                .dane
                .as_ref()
                .map(|d| d.names.clone())
                .unwrap_or_default();
            tracing::warn!(
                key = %kind,
                "DANE: renewing with the current key, not the next one: {why}; publish {}",
                names
                    .iter()
                    .map(|n| crate::dane::record_line(n, &record))
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
        }
        let key = match (choice, current) {
            (KeyChoice::Current, Some(k)) => k,
            (KeyChoice::Next, _) => next,
            _ => generate_key(kind).map_err(key_err)?,
        };
        if self.account.is_none() {
            self.account = Some(
                client::account(
                    &self.store,
                    &self.settings.directory,
                    &self.settings.contact,
                    self.settings.ca_file.as_deref(),
                )
                .await?,
            );
        }
        let account = self.account.as_ref().expect("set above");
        let chain = client::order(account, &self.settings.names, &key, &self.responder).await?;
        // Key first: a crash between the two leaves a pair that does not
        // match, which is never served and is ordered again.
        self.store
            .write(&files.key, key.serialize_pem().as_bytes(), true)?;
        self.store.write(&files.cert, chain.as_bytes(), false)?;
        if choice == KeyChoice::Next {
            let fresh = generate_key(kind).map_err(key_err)?;
            self.store
                .write(&files.next_key, fresh.serialize_pem().as_bytes(), true)?;
            tracing::info!(key = %kind, "moved to the pre-published next key; a new next key is waiting for its TLSA record");
        }
        tracing::info!(key = %kind, names = ?self.settings.names, "certificate obtained");
        Ok(Renewed::Now { held_back })
    }

    /// Looks up the TLSA records of every key type's next key (with
    /// `[dane]`), remembering since when each name shows it. When to look
    /// again.
    async fn watch_tlsa(&mut self, now: i64) -> Option<i64> {
        let (dane, resolver) = (self.dane.clone()?, self.resolver.clone()?);
        let mut sightings = self.store.sightings();
        let mut shortest_ttl = u32::MAX;
        let mut wanted = BTreeMap::new();
        for kind in &self.settings.key_types {
            let Some(record) = key_record(&self.store.files(*kind).next_key) else {
                continue;
            };
            let hex = record.rdata();
            let mut seen = sightings.records.remove(&hex).unwrap_or_default();
            for name in &dane.names {
                match resolver.tlsa(name).await {
                    Ok(answer) if answer.records.contains(&record) => {
                        shortest_ttl = shortest_ttl.min(answer.ttl);
                        let s = seen
                            .entry(name.clone())
                            .or_insert(Sighting { since: now, ttl: 0 });
                        s.ttl = s.ttl.max(answer.ttl);
                    }
                    Ok(_) => {
                        seen.remove(name);
                    }
                    // Unknown is not seen: the wait starts again once it is.
                    Err(e) => {
                        tracing::warn!("DANE: {e}");
                        seen.remove(name);
                    }
                }
            }
            wanted.insert(hex, seen);
        }
        // Records of keys no longer next are forgotten.
        sightings.records = wanted;
        if let Err(e) = self.store.set_sightings(&sightings) {
            tracing::error!("cannot write the DANE sightings: {e}");
        }
        let half_ttl = if shortest_ttl == u32::MAX {
            u64::MAX
        } else {
            u64::from(shortest_ttl) / 2
        };
        let every = Duration::from_secs(half_ttl).clamp(
            limits::MIN_TLSA_POLL_INTERVAL,
            limits::MAX_TLSA_POLL_INTERVAL,
        );
        Some(now + every.as_secs() as i64)
    }

    /// How far `kind`'s next key's TLSA records are out, looked up now.
    async fn visibility(&mut self, kind: KeyType, now: i64) -> Visibility {
        self.watch_tlsa(now).await;
        let names = self
            .dane
            .as_ref()
            .map(|d| d.names.clone())
            .unwrap_or_default();
        let record = key_record(&self.store.files(kind).next_key);
        let sightings = self.store.sightings();
        let seen = record
            .and_then(|r| sightings.records.get(&r.rdata()).cloned())
            .unwrap_or_default();
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !seen.contains_key(*n))
            .cloned()
            .collect();
        let since = if missing.is_empty() {
            seen.values().map(|s| s.since).max()
        } else {
            None
        };
        let ttl = seen.values().map(|s| s.ttl).max().unwrap_or(0);
        let wait = self
            .dane
            .as_ref()
            .and_then(|d| d.publish_wait)
            .unwrap_or(Duration::from_secs(2 * u64::from(ttl)));
        Visibility {
            since,
            missing,
            wait,
        }
    }
}

/// What a renewal did.
enum Renewed {
    /// A certificate was obtained and stored (with the reason the next key
    /// was held back, if it was).
    Now { held_back: Option<String> },
    /// Nothing yet: look again at this time.
    Later(i64),
}

fn stored_for(store: &Store, kind: KeyType) -> Option<Stored> {
    stored(&store.files(kind))
}

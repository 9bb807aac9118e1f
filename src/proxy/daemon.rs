//! The daemon's lifecycle around the [`Server`]: ready, reload (on SIGHUP or
//! when a certificate file changes), status and watchdog pings to systemd,
//! and stop; the ACME loop beside it puts each new certificate into service
//! through the same reload. Each step is a method of [`Daemon`] that tests call directly;
//! the signal loop and the timers are thin loops around them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::config::{ConfigError, Settings};
use crate::limits;
use crate::proxy::acme::{Acme, AcmeStartError};
use crate::proxy::backend::guard::{self, RelayVerdict};
use crate::proxy::mta_sts::PolicyServer;
use crate::proxy::notify::{self, Notifier};
use crate::proxy::records::{self, RecordFileError, RecordSink};
use crate::proxy::server::{Server, StartError};
use crate::proxy::session::Shared;
use crate::proxy::tls::{TlsError, TlsFront};

/// Reads the configuration again for a reload: the same file and command-line
/// overrides the daemon started with.
pub type Loader = Box<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

/// Why a reload was refused; the certificates in service stay.
#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Why `tlsfront run` could not start (or keep) serving.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Records(#[from] RecordFileError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Acme(#[from] AcmeStartError),
    #[error("MTA-STS policy listener: cannot listen on {addr}: {source}")]
    Policy {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A running tlsfront as systemd and the admin see it.
pub struct Daemon {
    shared: Arc<Shared>,
    notifier: Notifier,
    load: Loader,
    /// The certificate loop (`[acme]`), started by [`Daemon::serve`].
    acme: Mutex<Option<Acme>>,
    /// The MTA-STS policy server (`[mta_sts]`), started by [`Daemon::serve`].
    policy: Mutex<Option<PolicyServer>>,
}

impl Daemon {
    pub fn new(shared: Arc<Shared>, notifier: Notifier, load: Loader) -> Arc<Daemon> {
        Arc::new(Daemon {
            shared,
            notifier,
            load,
            acme: Mutex::new(None),
            policy: Mutex::new(None),
        })
    }

    /// Gives the daemon the MTA-STS policy server (bound) to run beside the server.
    pub fn attach_policy(&self, policy: PolicyServer) {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner()) = Some(policy);
    }

    /// Gives the daemon its ACME loop (bound, with its challenge listener),
    /// to run beside the server; each certificate it obtains is put into
    /// service by [`Daemon::reload`].
    pub fn attach_acme(&self, acme: Acme) {
        *self.acme.lock().unwrap_or_else(|e| e.into_inner()) = Some(acme);
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Every listener is bound and the certificates are loaded: tells systemd.
    pub fn ready(&self) {
        self.warn_expiry();
        self.notifier.notify("READY=1\nSTATUS=serving");
    }

    /// Re-reads the configuration and applies its certificates and TLS
    /// settings to new handshakes (sessions in flight keep theirs; listeners,
    /// backend and limits need a restart). On any error the certificates in
    /// service stay, and the error is logged as well as returned.
    pub fn reload(&self) -> Result<(), ReloadError> {
        self.notifier.notify("RELOADING=1\nSTATUS=reloading");
        let result = (self.load)()
            .map_err(ReloadError::from)
            .and_then(|settings| Ok(TlsFront::build(&settings)?));
        let result = match result {
            Ok(front) => {
                if let Some(front) = &front {
                    for e in front.entries() {
                        tracing::info!(source = %e.source, subject = %e.subject, key = %e.key_type, "certificate loaded");
                    }
                }
                self.shared.set_tls(front.map(Arc::new));
                tracing::info!(
                    "reloaded: new handshakes use the new certificates (listeners, backend and limits need a restart)"
                );
                self.warn_expiry();
                Ok(())
            }
            Err(e) => {
                tracing::error!("reload refused: {e}; the old certificates stay in service");
                Err(e)
            }
        };
        if let Some(m) = &self.shared.metrics {
            m.reload(result.is_ok());
        }
        self.notifier.notify("READY=1\nSTATUS=serving");
        result
    }

    /// SIGHUP: reopen the record file (logrotate renamed it) and reload.
    pub fn hangup(&self) -> Result<(), ReloadError> {
        self.shared.records.reopen();
        self.reload()
    }

    /// Stops gracefully: no new connections, sessions in flight get the
    /// shutdown grace (see [`Server::run`]).
    pub fn stop(&self) {
        self.notifier
            .notify("STOPPING=1\nSTATUS=stopping: finishing sessions in flight");
        self.shared.shutdown.cancel();
    }

    /// One STATUS= update with the live session count, with WATCHDOG=1 when
    /// systemd watches.
    pub fn status(&self, watchdog: bool) {
        let status = format!(
            "STATUS=serving, {} active sessions",
            self.shared.admission.active()
        );
        if watchdog {
            self.notifier.notify(&format!("WATCHDOG=1\n{status}"));
        } else {
            self.notifier.notify(&status);
        }
    }

    /// [`Daemon::status`] every `every` until stopped.
    pub async fn pulse(self: Arc<Self>, every: Duration, watchdog: bool) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => self.status(watchdog),
                _ = self.shared.shutdown.cancelled() => return,
            }
        }
    }

    /// Serves until stopped: ready, then the certificate watch
    /// (`tls.watch_interval`), the ACME loop (`[acme]`) and the status pings
    /// (under systemd) beside the server. Signals are not handled here (see [`Signals`]).
    pub async fn serve(self: &Arc<Self>, server: Server) {
        self.ready();
        if let Some(every) = self.shared.settings.tls.watch_interval {
            tokio::spawn(
                self.clone()
                    .watch_certificates(every, limits::CERT_SETTLE_DELAY),
            );
        }
        tokio::spawn(self.clone().guard_relay());
        if let Some(acme) = self.acme.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let daemon = self.clone();
            let apply = Box::new(move || {
                let _ = daemon.reload();
            });
            tokio::spawn(acme.run(apply, self.shared.shutdown.clone()));
        }
        if let Some(policy) = self.policy.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tokio::spawn(policy.serve(self.shared.clone()));
        }
        if self.notifier.enabled() {
            let watchdog = notify::watchdog_interval();
            let every = watchdog.map_or(limits::STATUS_INTERVAL, |w| w / 2);
            tokio::spawn(self.clone().pulse(every, watchdog.is_some()));
        }
        server.run().await;
    }

    /// Reloads, as SIGHUP would, when a certificate or key file changes (a
    /// certbot renewal): looks every `every`, and once it sees a change waits
    /// `settle` for the rest of the renewal's writes. Ends when stopped.
    pub async fn watch_certificates(self: Arc<Self>, every: Duration, settle: Duration) {
        let mut watch = CertificateWatch::new(&self.shared.settings);
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shared.shutdown.cancelled() => return,
            }
            if !watch.changed() {
                continue;
            }
            tokio::time::sleep(settle).await;
            // Writes that finished while settling are in this reload.
            watch.changed();
            tracing::info!("certificate files changed: reloading");
            let _ = self.reload();
        }
    }

    /// The open-relay guard ([`guard`]) once at start, beside serving: a
    /// warning when the backend lets tlsfront's connections relay (the words
    /// of `check`'s `backend_open_relay`). A backend not up yet is asked again
    /// every `backend.probe_interval` until it answers. Returns the verdict.
    pub async fn guard_relay(self: Arc<Self>) -> Option<RelayVerdict> {
        let settings = &self.shared.settings;
        let listener = settings.listeners.first()?.addr;
        loop {
            match guard::test_relay(&self.shared.backend, &settings.hostname, listener).await {
                Ok(test) => {
                    match &test.verdict {
                        RelayVerdict::Open { .. } => {
                            tracing::warn!(backend = %settings.backend.addr, "{}", test.message())
                        }
                        RelayVerdict::Refused { .. } => {
                            tracing::info!(backend = %settings.backend.addr, "{}", test.message())
                        }
                        RelayVerdict::Inconclusive { .. } => {
                            tracing::warn!(backend = %settings.backend.addr, "{}", test.message())
                        }
                    }
                    return Some(test.verdict);
                }
                // The probe says the backend is down; nothing to add here.
                Err(e) => tracing::debug!(error = %e, "relay test: backend not reachable yet"),
            }
            tokio::select! {
                _ = tokio::time::sleep(settings.backend.probe_interval) => {}
                _ = self.shared.shutdown.cancelled() => return None,
            }
        }
    }

    fn warn_expiry(&self) {
        if let Some(front) = self.shared.tls() {
            front.warn_expiry(jiff::Timestamp::now().as_second());
        }
    }
}

/// The modification times of the configured certificate and key files.
pub struct CertificateWatch {
    files: Vec<PathBuf>,
    last: Vec<Option<SystemTime>>,
}

impl CertificateWatch {
    pub fn new(settings: &Settings) -> CertificateWatch {
        let files: Vec<PathBuf> = settings
            .tls
            .certificates
            .iter()
            .flat_map(|c| [c.cert.clone(), c.key.clone()])
            .collect();
        let last = stamp(&files);
        CertificateWatch { files, last }
    }

    /// Whether a file changed (or appeared, or went) since the last look.
    pub fn changed(&mut self) -> bool {
        let now = stamp(&self.files);
        let changed = now != self.last;
        self.last = now;
        changed
    }
}

fn stamp(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// The process's signals: SIGTERM and SIGINT stop (gracefully), SIGHUP
/// reloads the certificates and reopens the record file.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Takes over the three signals from their default action (ending the
    /// process); needs a running tokio runtime.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Carries signals out on `daemon` until one stops it.
    pub async fn serve(mut self, daemon: Arc<Daemon>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => tracing::info!("SIGTERM received: stopping"),
                _ = self.int.recv() => tracing::info!("SIGINT received: stopping"),
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP received: reloading certificates, reopening the record file");
                    let _ = daemon.hangup();
                    continue;
                }
            }
            daemon.stop();
            return;
        }
    }
}

/// Worker threads for the runtime: the CPUs this process may run on, after
/// its affinity mask (taskset, systemd's `CPUAffinity=`) and its cgroup's CPU
/// quota (`CPUQuota=`, a container's limit). More workers than that would
/// only take turns on the same cores, each with its own queue of sessions.
pub fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// The runtime sessions run on, with `workers` worker threads (named, so
/// `top -H` shows them).
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name("tlsfront-worker")
        .enable_all()
        .build()
}

/// Counts each ACME order in the metrics, when they are on.
pub fn order_observer(shared: &Shared) -> Option<crate::proxy::acme::OrderObserver> {
    let metrics = shared.metrics.clone()?;
    Some(Arc::new(move |kind, result| {
        metrics.acme_order(kind, result)
    }))
}

/// `tlsfront run` after the command line: starts the record writer and the
/// runtime, binds, serves until SIGTERM or SIGINT, then drains the records.
/// `load` reads the configuration again on reload.
pub fn run(settings: Settings, load: Loader) -> Result<(), RunError> {
    let (sink, writer) = match &settings.records {
        Some(path) => {
            let (sink, handle) = records::start_writer(path)?;
            (sink, Some(handle))
        }
        None => {
            tracing::warn!(
                "no record file configured ([records] path or --records): handshake outcomes are only logged"
            );
            (RecordSink::disabled(), None)
        }
    };
    let workers = worker_threads();
    let runtime = runtime(workers).map_err(RunError::Runtime)?;
    tracing::info!(
        workers,
        "runtime: one worker thread per CPU this process may use (affinity and cgroup quota)"
    );
    let result = runtime.block_on(async move {
        let server = Server::bind(settings, sink).await?;
        let acme = Acme::bind(&server.shared.settings, order_observer(&server.shared))?;
        let daemon = Daemon::new(server.shared.clone(), Notifier::from_env(), load);
        if let Some(acme) = acme {
            daemon.attach_acme(acme);
        }
        if let Some(policy) = PolicyServer::bind(server.shared.settings.mta_sts.as_ref())
            .map_err(|(addr, source)| RunError::Policy { addr, source })?
        {
            daemon.attach_policy(policy);
        }
        // Before READY: a stop right after it must find the handlers in place.
        let signals = Signals::install().map_err(RunError::Signals)?;
        tokio::spawn(signals.serve(daemon.clone()));
        daemon.serve(server).await;
        Ok(())
    });
    // Every session (and record sink) is gone with the runtime: drain the writer.
    runtime.shutdown_timeout(limits::RUNTIME_SHUTDOWN_TIMEOUT);
    if let Some(handle) = writer {
        let _ = handle.join();
    }
    tracing::info!("stopped");
    result
}

//! tlsfront: an inline SMTP STARTTLS front for legacy MTAs.
//!
//! # Layout
//! Two wings over shared leaf modules that do no I/O of their own:
//! - [`proxy`]: the daemon (`tlsfront run`), along the data path
//!   listener → session → STARTTLS → backend relay → record, inside
//!   [`proxy::daemon`] (start, signals, reload, certificate watch, stop):
//!   [`proxy::server`], [`proxy::admission`], [`proxy::session`],
//!   [`proxy::tls`], [`proxy::stream`], [`proxy::backend`],
//!   [`proxy::records`], [`proxy::metrics`], [`proxy::notify`].
//! - [`tools`]: the admin's commands beside it: [`tools::check`],
//!   [`tools::probe`], [`tools::report`], and [`tools::legacy`], the legacy
//!   STARTTLS analysis `check` and `probe` share.
//!
//! Shared leaves:
//! - [`cert`]: the one certificate parser (DER in, facts out) for run, check and probe.
//! - [`config`]: the TOML file and command-line overrides, validated into [`config::Settings`].
//! - [`limits`]: every bound and timeout with its default and reason.
//! - [`outcome`]: the stable names of outcomes shared by records, logs, report and metrics.
//! - [`smtp`]: pure SMTP (lines, commands, replies, EHLO, end of data, trace headers).
//! - [`wire`]: pure TLS ClientHello and PROXY protocol parsing.
//! - [`escape`]: untrusted text made safe for a terminal (every text renderer).
//! - `fuzzing` (only with the `fuzzing` feature, which fuzz/ and the tests
//!   turn on; never in the release binary): fuzz targets over the pure
//!   parsers and the whole session, with their invariants.
//!
//! ARCHITECTURE.md at the top of the repository walks the data path and its invariants.

pub mod cert;
pub mod config;
pub mod dane;
pub mod dns;
pub mod escape;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod limits;
pub mod mta_sts;
pub mod outcome;
pub mod proxy;
pub mod smtp;
pub mod tools;
pub mod wire;

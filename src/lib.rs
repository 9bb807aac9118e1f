//! tlsfront: an inline SMTP STARTTLS front for legacy MTAs.
//!
//! # Layout
//! The modules follow the data path, listener → session → TLS → backend → record:
//! - [`config`]: the TOML file, command-line overrides, validation into [`config::Settings`].
//! - [`limits`]: every bound and timeout with its default and reason.
//! - [`server`]: binds listeners, accepts, runs sessions, shuts down.
//! - [`admission`]: the global and per-client connection caps.
//! - [`session`]: one client connection as an explicit SMTP state machine.
//! - [`tls`]: certificates, rustls configurations, certificate choice, the handshake.
//! - [`clienthello`]: pure ClientHello parser (certificate choice, failure records).
//! - [`stream`]: replay of already-read bytes; the plaintext-or-TLS client stream.
//! - [`backend`]: the legacy MTA: its session, its replies, its EHLO keywords.
//! - [`backend_tls`]: optional TLS on the backend hop (STARTTLS or implicit, verified or pinned).
//! - [`smtp`]: pure protocol code (lines, commands, replies, EHLO, end of data).
//! - [`proxyproto`]: PROXY protocol v1/v2 headers (to the backend, from a trusted balancer).
//! - [`notify`]: systemd readiness, reload, stop, status and watchdog notifications.
//! - [`records`]: one JSON line per connection, written off the hot path.
//! - [`metrics`]: Prometheus counters fed from the records, and their endpoint.
//! - [`fuzzing`]: fuzz targets over the pure parsers, with their invariants.
//! - [`outcome`]: the stable names of outcomes shared by records and logs.
//! - [`escape`]: untrusted text made safe for a terminal (every text renderer).
//! - [`report`]: `tlsfront report`: aggregates record files (plain or gzip) into
//!   TLS shares, failures, policy impact and the legacy-path verdict.
//!
//! `tlsfront check` sits beside the data path:
//! - [`check`]: checks what `run` would start; findings with stable codes, human or JSON.
//! - [`certcheck`]: pure certificate rules (key, chain, validity, names, SNI map).
//! - [`serverhello`]: pure TLS 1.2 probe code: the ClientHello sent to the backend's
//!   STARTTLS and a parser of its plaintext ServerHello..ServerHelloDone.
//!
//! `tlsfront probe` looks at any mail server's TLS as a modern sender does:
//! - [`probe`]: greeting, EHLO, STARTTLS or implicit TLS, a rustls handshake
//!   that records the chain and its verdict, names, SNI, and (when the modern
//!   handshake fails) the [`serverhello`] probe via [`check::read_flight`].

pub mod admission;
pub mod backend;
pub mod backend_tls;
pub mod certcheck;
pub mod check;
pub mod clienthello;
pub mod config;
pub mod escape;
pub mod fuzzing;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod outcome;
pub mod probe;
pub mod proxyproto;
pub mod records;
pub mod report;
pub mod server;
pub mod serverhello;
pub mod session;
pub mod smtp;
pub mod stream;
pub mod tls;

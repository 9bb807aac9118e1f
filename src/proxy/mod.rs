//! The daemon: everything `tlsfront run` does. [`daemon`] is its lifecycle
//! (start, signals, reload, certificate watch, systemd pings, stop); inside
//! it, in the order a connection meets them: [`server`] binds and accepts,
//! [`admission`] applies the caps, [`session`] runs the SMTP dialogue (with
//! [`tls`] for STARTTLS and implicit TLS over a [`stream`]), [`backend`] is
//! the legacy MTA, [`records`] writes the outcome, [`metrics`] counts it;
//! [`notify`] talks to systemd; [`acme`] obtains and renews the certificates
//! when `[acme]` is configured, and [`mta_sts`] serves the MTA-STS policy
//! (`[mta_sts]`).

pub mod acme;
pub mod admission;
pub mod backend;
pub mod daemon;
pub mod hkdf;
pub mod metrics;
pub mod mta_sts;
pub mod notify;
pub mod records;
pub mod server;
pub mod session;
pub mod small_http;
pub mod stream;
pub mod tls;

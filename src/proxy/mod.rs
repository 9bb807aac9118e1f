//! The daemon: everything `tlsfront run` does, in the order a connection
//! meets it. [`server`] binds and accepts, [`admission`] applies the caps,
//! [`session`] runs the SMTP dialogue (with [`tls`] for STARTTLS and implicit
//! TLS over a [`stream`]), [`backend`] is the legacy MTA, [`records`] writes
//! the outcome, [`metrics`] counts it; [`notify`] talks to systemd.

pub mod admission;
pub mod backend;
pub mod metrics;
pub mod notify;
pub mod records;
pub mod server;
pub mod session;
pub mod stream;
pub mod tls;

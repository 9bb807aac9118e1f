//! The admin's tools beside the daemon: [`check`] (what `run` would start),
//! [`probe`] (any mail server's TLS as senders see it), [`report`] (record
//! files summarised, the legacy-path verdict), and [`legacy`], the analysis of
//! a legacy STARTTLS that `check` and `probe` share.

pub mod check;
pub mod legacy;
pub mod probe;
pub mod report;

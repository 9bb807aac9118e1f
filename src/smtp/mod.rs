//! Pure SMTP protocol code: no I/O, bytes in and values out, so unit tests and
//! fuzzers can drive every parser directly.
//!
//! - [`line`]: cut bounded lines out of an input buffer.
//! - [`command`]: classify a client command line.
//! - [`reply`]: parse (multi-line) replies from the backend.
//! - [`ehlo`]: build tlsfront's EHLO reply from the backend's keywords.
//! - [`data`]: find the end of message content and keep it unambiguous.
//! - [`trace`]: the optional Received header and XCLIENT values.

pub mod command;
pub mod data;
pub mod ehlo;
pub mod line;
pub mod reply;
pub mod trace;

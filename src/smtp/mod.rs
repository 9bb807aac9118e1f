//! Pure SMTP protocol code: no I/O, bytes in and values out, so unit tests and
//! fuzzers can drive every parser directly. One exception, kept small:
//! [`client`], the loop that reads a reply with [`reply`]'s parser from a
//! stream its caller owns.
//!
//! - [`line`]: cut bounded lines out of an input buffer.
//! - [`command`]: classify a client command line.
//! - [`reply`]: parse (multi-line) replies from the backend.
//! - [`client`]: read one reply from a stream, with a deadline (every SMTP client in tlsfront).
//! - [`ehlo`]: build tlsfront's EHLO reply from the backend's keywords.
//! - [`data`]: find the end of message content and keep it unambiguous.
//! - [`trace`]: the optional Received header and XCLIENT values.

pub mod client;
pub mod command;
pub mod data;
pub mod ehlo;
pub mod line;
pub mod reply;
pub mod trace;

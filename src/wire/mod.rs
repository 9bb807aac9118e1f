//! Pure parsers and encoders of what crosses the wire below SMTP: the TLS
//! ClientHello ([`clienthello`]) with its compact summary ([`offer`]) and
//! the PROXY protocol ([`proxyproto`]). No I/O; unit tests and fuzz targets
//! drive them with bytes.

pub mod clienthello;
pub mod offer;
pub mod proxyproto;

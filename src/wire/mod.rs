//! Pure parsers and encoders of what crosses the wire below SMTP: the TLS
//! ClientHello ([`clienthello`]) and the PROXY protocol ([`proxyproto`]). No
//! I/O; unit tests and fuzz targets drive them with bytes.

pub mod clienthello;
pub mod proxyproto;

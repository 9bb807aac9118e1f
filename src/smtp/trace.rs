//! Trace information for the backend: the optional `Received:` header and
//! XCLIENT attribute values.

use std::net::SocketAddr;

/// What a Received header says about the hop from the client to tlsfront.
#[derive(Debug, Clone)]
pub struct Hop<'a> {
    pub helo: &'a str,
    pub client: SocketAddr,
    pub hostname: &'a str,
    pub session: &'a str,
    pub esmtp: bool,
    /// (version, suite, group) when TLS was used.
    pub tls: Option<(&'a str, &'a str, &'a str)>,
    /// RFC 5322 date-time of reception.
    pub date: &'a str,
}

/// A `Received:` header in the style of Postfix's `smtpd_tls_received_header`,
/// folded, CRLF-terminated, ready to be put before the message.
pub fn received_header(hop: &Hop<'_>) -> String {
    let proto = match (hop.esmtp, hop.tls.is_some()) {
        (true, true) => "ESMTPS",
        (true, false) => "ESMTP",
        (false, true) => "SMTPS",
        (false, false) => "SMTP",
    };
    let ip = hop.client.ip().to_canonical();
    let literal = if ip.is_ipv6() {
        format!("[IPv6:{ip}]")
    } else {
        format!("[{ip}]")
    };
    let mut h = format!(
        "Received: from {} ({literal}:{})\r\n",
        sanitize(hop.helo),
        hop.client.port()
    );
    if let Some((version, suite, group)) = hop.tls {
        h.push_str(&format!(
            "\t(using {version} with cipher {suite} key-exchange {group})\r\n"
        ));
    }
    h.push_str(&format!(
        "\tby {} (tlsfront) with {proto} id {};\r\n\t{}\r\n",
        hop.hostname, hop.session, hop.date
    ));
    h
}

/// Header-safe text: printable ASCII without parentheses, which would end a comment.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '(' && c != ')' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// RFC 3461 xtext, as XCLIENT attribute values need it.
pub fn xtext(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_header_with_tls() {
        let h = received_header(&Hop {
            helo: "mail.origin.test",
            client: "192.0.2.7:40000".parse().unwrap(),
            hostname: "mx.example.test",
            session: "abc-1",
            esmtp: true,
            tls: Some(("TLSv1.3", "TLS13_AES_256_GCM_SHA384", "X25519MLKEM768")),
            date: "Mon, 23 Nov 2026 17:00:00 +0000",
        });
        assert_eq!(
            h,
            "Received: from mail.origin.test ([192.0.2.7]:40000)\r\n\
             \t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384 key-exchange X25519MLKEM768)\r\n\
             \tby mx.example.test (tlsfront) with ESMTPS id abc-1;\r\n\
             \tMon, 23 Nov 2026 17:00:00 +0000\r\n"
        );
    }

    #[test]
    fn received_header_plain_ipv6_and_hostile_helo() {
        let h = received_header(&Hop {
            helo: "evil) (by\tfake",
            client: "[2001:db8::1]:25".parse().unwrap(),
            hostname: "mx",
            session: "s",
            esmtp: false,
            tls: None,
            date: "d",
        });
        assert!(
            h.starts_with("Received: from evil???by?fake ([IPv6:2001:db8::1]:25)\r\n"),
            "{h}"
        );
        assert!(h.contains("with SMTP id s;"));
    }

    #[test]
    fn xtext_encodes_specials() {
        assert_eq!(xtext(b"mail.example"), "mail.example");
        assert_eq!(xtext(b"a+b=c d"), "a+2Bb+3Dc+20d");
    }
}

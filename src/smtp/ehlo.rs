//! tlsfront's EHLO reply: the backend's extensions, filtered to those tlsfront
//! relays faithfully, plus tlsfront's own STARTTLS.
//!
//! Only keywords whose effect is confined to command parameters and replies
//! pass, because tlsfront forwards those lines untouched. Extensions that change
//! the framing of the stream (CHUNKING/BDAT, BINARYMIME, DEFLATE), that belong to
//! the hop between tlsfront and the backend (STARTTLS, XCLIENT, XFORWARD), or
//! that promise something the plaintext backend hop cannot keep (REQUIRETLS)
//! are never offered to clients.

use std::borrow::Cow;

use bytes::Bytes;

/// Keywords passed on from the backend's EHLO reply.
const RELAYED: &[&str] = &[
    "SIZE",
    "PIPELINING",
    "8BITMIME",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "SMTPUTF8",
    "VRFY",
    "ETRN",
    "DELIVERBY",
    "MT-PRIORITY",
    "MTRK",
    "FUTURERELEASE",
    "NO-SOLICITING",
    "RRVS",
    "LIMITS",
    "AUTH",
];

/// What tlsfront offers when it has never reached the backend: only what it can
/// honour on its own (it answers pipelined commands in order itself).
pub const CONSERVATIVE: &[&str] = &["PIPELINING"];

/// The keyword of an EHLO line ("SIZE 1000" -> "SIZE"; "AUTH=LOGIN" -> "AUTH").
pub fn keyword(line: &str) -> &str {
    let end = line.find([' ', '=']).unwrap_or(line.len());
    &line[..end]
}

/// Whether a backend EHLO line may reach the client in this session state.
pub fn relayable(line: &str, tls_active: bool, auth_before_tls: bool) -> bool {
    let kw = keyword(line);
    let Some(known) = RELAYED.iter().find(|k| k.eq_ignore_ascii_case(kw)) else {
        return false;
    };
    // AUTH before TLS would put passwords on the wire in clear.
    *known != "AUTH" || tls_active || auth_before_tls
}

/// Whether an EHLO reply offers `keyword` (without copying its lines).
pub fn offers(reply_lines: &[Bytes], wanted: &str) -> bool {
    keyword_lines(reply_lines).any(|l| keyword(&l).eq_ignore_ascii_case(wanted))
}

/// The keywords of the backend's EHLO reply (every line after the first).
pub fn keywords_of(reply_lines: &[Bytes]) -> Vec<String> {
    keyword_lines(reply_lines).map(Cow::into_owned).collect()
}

/// The keyword lines of an EHLO reply as [`keywords_of`] keeps them,
/// borrowed where they are UTF-8 (to compare without copying).
pub fn keyword_lines(reply_lines: &[Bytes]) -> impl Iterator<Item = Cow<'_, str>> {
    reply_lines
        .iter()
        .skip(1)
        .map(|l| match String::from_utf8_lossy(l) {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
            Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
        })
        .filter(|l| !l.is_empty())
}

/// What this session may be offered beyond the backend's keywords.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    pub tls_active: bool,
    /// A certificate is loaded, so STARTTLS can be offered before TLS.
    pub starttls_available: bool,
    pub auth_before_tls: bool,
}

/// Renders the multi-line 250 reply to EHLO.
pub fn render(hostname: &str, backend_keywords: &[String], offer: Offer) -> Bytes {
    let mut lines: Vec<&str> = Vec::with_capacity(backend_keywords.len() + 2);
    lines.push(hostname);
    lines.extend(
        backend_keywords
            .iter()
            .map(String::as_str)
            .filter(|l| relayable(l, offer.tls_active, offer.auth_before_tls)),
    );
    if offer.starttls_available && !offer.tls_active {
        lines.push("STARTTLS");
    }
    crate::smtp::reply::local(250, &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_reads_keywords_past_the_greeting_line() {
        let lines: Vec<Bytes> = [
            "pipelining.example Hello",
            "8BITMIME",
            "pipelining",
            "SIZE 100",
        ]
        .iter()
        .map(|l| Bytes::copy_from_slice(l.as_bytes()))
        .collect();
        assert!(offers(&lines, "PIPELINING"));
        assert!(offers(&lines, "SIZE"));
        assert!(
            !offers(&lines[..2], "PIPELINING"),
            "the greeting line is no keyword"
        );
    }

    fn kws(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const SENDMAIL: &[&str] = &[
        "ENHANCEDSTATUSCODES",
        "PIPELINING",
        "8BITMIME",
        "SIZE 10000000",
        "DSN",
        "ETRN",
        "AUTH DIGEST-MD5 CRAM-MD5 LOGIN PLAIN",
        "AUTH=LOGIN PLAIN",
        "STARTTLS",
        "DELIVERBY",
        "HELP",
        "CHUNKING",
        "XCLIENT ADDR NAME",
        "VERB",
    ];

    #[test]
    fn before_tls_offers_own_starttls_and_hides_auth() {
        let out = render(
            "mx.example",
            &kws(SENDMAIL),
            Offer {
                tls_active: false,
                starttls_available: true,
                auth_before_tls: false,
            },
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "250-mx.example\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-8BITMIME\r\n\
             250-SIZE 10000000\r\n250-DSN\r\n250-ETRN\r\n250-DELIVERBY\r\n250 STARTTLS\r\n"
        );
    }

    #[test]
    fn after_tls_offers_auth_and_no_starttls() {
        let out = render(
            "mx.example",
            &kws(SENDMAIL),
            Offer {
                tls_active: true,
                starttls_available: true,
                auth_before_tls: false,
            },
        );
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("250-AUTH DIGEST-MD5 CRAM-MD5 LOGIN PLAIN\r\n"));
        assert!(text.contains("250-AUTH=LOGIN PLAIN\r\n"));
        assert!(!text.contains("STARTTLS"));
        assert!(!text.contains("CHUNKING"));
        assert!(!text.contains("XCLIENT"));
        assert!(text.ends_with("250 DELIVERBY\r\n"));
    }

    #[test]
    fn auth_before_tls_when_configured() {
        let out = render(
            "h",
            &kws(&["AUTH PLAIN"]),
            Offer {
                tls_active: false,
                starttls_available: false,
                auth_before_tls: true,
            },
        );
        assert_eq!(&out[..], b"250-h\r\n250 AUTH PLAIN\r\n");
    }

    #[test]
    fn no_keywords_no_certificate() {
        let out = render(
            "h",
            &[],
            Offer {
                tls_active: false,
                starttls_available: false,
                auth_before_tls: false,
            },
        );
        assert_eq!(&out[..], b"250 h\r\n");
    }

    #[test]
    fn keywords_from_reply() {
        let lines = vec![
            Bytes::from("legacy.example Hello"),
            Bytes::from("PIPELINING"),
            Bytes::from(" "),
        ];
        assert_eq!(keywords_of(&lines), vec!["PIPELINING".to_string()]);
        assert_eq!(keyword("AUTH=LOGIN"), "AUTH");
        assert_eq!(keyword("size 5"), "size");
        assert!(relayable("size 5", false, false));
        assert!(!relayable("BDAT", true, true));
    }
}

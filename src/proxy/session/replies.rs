//! Every reply tlsfront writes itself, in one place: each variant is one
//! reply, its code and its text in one `match`. Backend replies are relayed
//! as they came and never pass through here.

use std::borrow::Cow;

use bytes::Bytes;

use crate::smtp::reply::local;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// The greeting (`220 <hostname> ESMTP`).
    Greeting(String),
    /// HELO's one-line answer: tlsfront's host name.
    HeloOk(String),
    Ok,
    Bye,
    Help,
    ReadyForTls,
    TooManyConnections,
    EarlyTalker,
    TooManyErrors,
    ShuttingDown,
    Timeout,
    LineTooLong {
        limit: usize,
    },
    /// A control byte in a command line: what it was.
    ControlByte(&'static str),
    BadSyntax,
    NotRecognized,
    NotImplemented,
    TlsAlreadyActive,
    NoParametersAllowed,
    TransactionInProgress,
    HeloFirst,
    NestedMail,
    NeedMail,
    NeedRcpt,
    NoValidRecipients,
    DataSyntax,
    TooManyRecipients,
    HeloSyntax {
        esmtp: bool,
    },
    InvalidHostName,
    AuthNeedsTls,
    StartTlsFirst,
    BdatNotOffered,
    NoMemoryForMessage,
    BackendUnavailable,
    BackendLost,
    BackendOutOfStep,
    BackendLostInData,
    BareLineEndings,
}

impl Local {
    pub fn code(&self) -> u16 {
        self.parts().0
    }

    pub fn text(&self) -> Cow<'static, str> {
        self.parts().1
    }

    /// The reply as sent: `code SP text CRLF`.
    pub fn render(&self) -> Bytes {
        let (code, text) = self.parts();
        local(code, &[&text])
    }

    fn parts(&self) -> (u16, Cow<'static, str>) {
        use Local::*;
        let (code, text): (u16, &'static str) = match self {
            Greeting(host) => return (220, format!("{host} ESMTP").into()),
            HeloOk(host) => return (250, host.clone().into()),
            LineTooLong { limit } => {
                return (
                    500,
                    format!("5.5.2 Line too long (limit {limit} bytes)").into(),
                );
            }
            ControlByte(what) => return (500, format!("5.5.2 Error: {what} in command").into()),
            HeloSyntax { esmtp } => {
                let verb = if *esmtp { "EHLO" } else { "HELO" };
                return (501, format!("5.5.4 Syntax: {verb} hostname").into());
            }
            Ok => (250, "2.0.0 Ok"),
            Bye => (221, "2.0.0 Bye"),
            Help => (
                214,
                "2.0.0 Commands: EHLO HELO STARTTLS MAIL RCPT DATA RSET NOOP QUIT VRFY",
            ),
            ReadyForTls => (220, "2.0.0 Ready to start TLS"),
            TooManyConnections => (421, "4.7.0 Too many connections, try again later"),
            EarlyTalker => (
                554,
                "5.5.1 Error: SMTP protocol synchronization (input before the greeting)",
            ),
            TooManyErrors => (421, "4.7.0 Too many errors, closing connection"),
            ShuttingDown => (421, "4.3.2 Service shutting down, closing connection"),
            Timeout => (421, "4.4.2 Timeout exceeded, closing connection"),
            BadSyntax => (500, "5.5.2 Error: bad syntax"),
            NotRecognized => (500, "5.5.2 Error: command not recognized"),
            NotImplemented => (502, "5.5.1 Error: command not implemented"),
            TlsAlreadyActive => (554, "5.5.1 Error: TLS already active"),
            NoParametersAllowed => (501, "5.5.4 Syntax error (no parameters allowed)"),
            TransactionInProgress => (503, "5.5.1 Error: MAIL transaction in progress"),
            HeloFirst => (503, "5.5.1 Error: send HELO/EHLO first"),
            NestedMail => (503, "5.5.1 Error: nested MAIL command"),
            NeedMail => (503, "5.5.1 Error: need MAIL command"),
            NeedRcpt => (503, "5.5.1 Error: need RCPT command"),
            NoValidRecipients => (554, "5.5.1 Error: no valid recipients"),
            DataSyntax => (501, "5.5.4 Syntax: DATA"),
            // RFC 5321 §4.5.3.1.10: 452 asks the client to send the rest later.
            TooManyRecipients => (452, "4.5.3 Error: too many recipients"),
            InvalidHostName => (501, "5.5.4 Syntax: invalid host name"),
            AuthNeedsTls => (
                538,
                "5.7.11 Encryption required for requested authentication mechanism",
            ),
            StartTlsFirst => (530, "5.7.0 Must issue a STARTTLS command first"),
            BdatNotOffered => (421, "4.5.0 BDAT was not offered, closing connection"),
            NoMemoryForMessage => (451, "4.3.1 Insufficient system resources, try again later"),
            BackendUnavailable => (
                451,
                "4.4.1 Backend temporarily unavailable, try again later",
            ),
            BackendLost => (451, "4.4.2 Backend connection lost, try again later"),
            BackendOutOfStep => (
                451,
                "4.4.2 Backend out of step (unexpected reply), try again later",
            ),
            BackendLostInData => (
                451,
                "4.4.2 Backend connection lost during message transfer; message not accepted",
            ),
            BareLineEndings => (
                550,
                "5.5.2 Message contains bare CR or LF line endings; not accepted",
            ),
        };
        (code, Cow::Borrowed(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reply_is_one_well_formed_line() {
        let all = [
            Local::Greeting("mx.test".into()),
            Local::HeloOk("mx.test".into()),
            Local::Ok,
            Local::Bye,
            Local::Help,
            Local::ReadyForTls,
            Local::TooManyConnections,
            Local::EarlyTalker,
            Local::TooManyErrors,
            Local::ShuttingDown,
            Local::Timeout,
            Local::LineTooLong { limit: 4096 },
            Local::ControlByte("NUL character"),
            Local::BadSyntax,
            Local::NotRecognized,
            Local::NotImplemented,
            Local::TlsAlreadyActive,
            Local::NoParametersAllowed,
            Local::TransactionInProgress,
            Local::HeloFirst,
            Local::NestedMail,
            Local::NeedMail,
            Local::NeedRcpt,
            Local::NoValidRecipients,
            Local::DataSyntax,
            Local::TooManyRecipients,
            Local::HeloSyntax { esmtp: true },
            Local::InvalidHostName,
            Local::AuthNeedsTls,
            Local::StartTlsFirst,
            Local::BdatNotOffered,
            Local::NoMemoryForMessage,
            Local::BackendUnavailable,
            Local::BackendLost,
            Local::BackendOutOfStep,
            Local::BackendLostInData,
            Local::BareLineEndings,
        ];
        for r in &all {
            let bytes = r.render();
            let line = std::str::from_utf8(&bytes).unwrap();
            assert!(
                line.ends_with("\r\n") && line.matches("\r\n").count() == 1,
                "{r:?}"
            );
            assert!((200..600).contains(&r.code()), "{r:?}");
            assert!(line.starts_with(&format!("{} ", r.code())), "{r:?}");
            // Enhanced status codes agree with the reply's class.
            let text = r.text();
            if let Some(first) = text.chars().next().filter(|c| c.is_ascii_digit()) {
                let class = char::from(b'0' + (r.code() / 100) as u8);
                assert_eq!(first, class, "{r:?}");
            }
        }
    }
}

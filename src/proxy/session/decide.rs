//! What a command gets, decided without I/O: the session's phase, the
//! command line and the policy in, a [`Decision`] out. The async session only
//! carries decisions out, so which reply a command gets in which phase is
//! covered by a table test here, not by sockets.

use crate::config::RequireTls;
use crate::outcome::CloseReason;
use crate::smtp::command::{self, Command, Verb};

use super::replies::Local;

/// Where the session is in the SMTP dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No HELO/EHLO yet (at the start, and again right after STARTTLS).
    Fresh,
    /// Greeted; no transaction.
    Greeted,
    /// MAIL accepted by the backend.
    Mail,
    /// At least one RCPT accepted by the backend.
    Rcpt,
}

impl Phase {
    pub fn in_transaction(self) -> bool {
        matches!(self, Phase::Mail | Phase::Rcpt)
    }
}

/// What the decision depends on besides the phase and the line.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub tls_active: bool,
    /// A certificate is loaded: STARTTLS can be offered.
    pub tls_available: bool,
    pub auth_before_tls: bool,
    pub require_tls: RequireTls,
    /// The transaction holds `smtp.max_recipients` already.
    pub recipients_full: bool,
    /// For an extension verb: on `smtp.relay_verbs` and announced by the backend.
    pub extension_relayed: bool,
}

/// Commands relayed to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    Mail,
    Rcpt,
    Auth,
    /// VRFY, EXPN, an extension verb.
    Other(Verb),
}

impl Relayed {
    pub fn verb(self) -> Verb {
        match self {
            Relayed::Mail => Verb::Mail,
            Relayed::Rcpt => Verb::Rcpt,
            Relayed::Auth => Verb::Auth,
            Relayed::Other(v) => v,
        }
    }
}

/// What the session does with one command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A reply of tlsfront's own; `error` counts toward `smtp.max_errors`.
    Answer {
        reply: Local,
        error: bool,
    },
    /// `530`: the listener requires TLS first (counted in the record).
    TlsRequired,
    /// HELO/EHLO with a valid name.
    Greet {
        esmtp: bool,
    },
    StartTls,
    /// RSET: the backend's transaction too, if there is one.
    Rset,
    Quit,
    /// Relay the line to the backend. `tls_would_refuse`: a log-only
    /// `require_tls` listener counts it.
    Relay {
        what: Relayed,
        tls_would_refuse: bool,
    },
    /// DATA: relay it, then the message content.
    Data,
    /// Reply and end the session.
    Close {
        reply: Local,
        reason: CloseReason,
    },
}

fn refuse(reply: Local) -> Decision {
    Decision::Answer { reply, error: true }
}

fn answer(reply: Local) -> Decision {
    Decision::Answer {
        reply,
        error: false,
    }
}

/// What one command line gets.
pub fn decide(phase: Phase, line: &[u8], p: &Policy) -> Decision {
    if let Some(byte) = command::forbidden_byte(line) {
        // Never valid SMTP: old parsers cut the line at a NUL, and a backend
        // that ends lines on CR would see several commands.
        return refuse(Local::ControlByte(match byte {
            0 => "NUL character",
            b'\r' => "CR inside a line",
            _ => "control character",
        }));
    }
    let cmd = Command::parse(line);
    let in_txn = phase.in_transaction();
    match cmd.verb {
        Verb::Ehlo | Verb::Helo => greet(&cmd),
        Verb::StartTls => {
            if p.tls_active {
                refuse(Local::TlsAlreadyActive)
            } else if !p.tls_available {
                refuse(Local::NotImplemented)
            } else if !cmd.args.is_empty() {
                refuse(Local::NoParametersAllowed)
            } else if in_txn {
                refuse(Local::TransactionInProgress)
            } else {
                Decision::StartTls
            }
        }
        Verb::Noop => answer(Local::Ok),
        Verb::Rset => Decision::Rset,
        Verb::Quit => Decision::Quit,
        Verb::Help => answer(Local::Help),
        Verb::Mail => {
            if phase == Phase::Fresh {
                refuse(Local::HeloFirst)
            } else if in_txn {
                refuse(Local::NestedMail)
            } else {
                relay(Relayed::Mail, p)
            }
        }
        Verb::Rcpt => {
            if !in_txn {
                refuse(Local::NeedMail)
            } else if p.recipients_full {
                answer(Local::TooManyRecipients)
            } else {
                Decision::Relay {
                    what: Relayed::Rcpt,
                    tls_would_refuse: false,
                }
            }
        }
        Verb::Data => {
            if !cmd.args.is_empty() {
                refuse(Local::DataSyntax)
            } else if phase == Phase::Mail {
                refuse(Local::NoValidRecipients)
            } else if phase != Phase::Rcpt {
                refuse(Local::NeedRcpt)
            } else {
                Decision::Data
            }
        }
        // The chunk that follows would be read as commands: a message
        // smuggled into the command stream. Never offered, so end here.
        Verb::Bdat => Decision::Close {
            reply: Local::BdatNotOffered,
            reason: CloseReason::ProtocolError,
        },
        Verb::Auth => {
            if !p.tls_active && !p.auth_before_tls {
                refuse(Local::AuthNeedsTls)
            } else if phase == Phase::Fresh {
                refuse(Local::HeloFirst)
            } else if in_txn {
                refuse(Local::TransactionInProgress)
            } else {
                Decision::Relay {
                    what: Relayed::Auth,
                    tls_would_refuse: false,
                }
            }
        }
        Verb::Vrfy | Verb::Expn | Verb::Other => {
            if command::NEVER_RELAYED
                .iter()
                .any(|b| b.eq_ignore_ascii_case(cmd.verb_raw))
            {
                refuse(Local::NotImplemented)
            } else if cmd.verb == Verb::Other && !p.extension_relayed {
                // Junk from scanners, message text pipelined after a refused
                // DATA, verbs that set backend state: never to the backend.
                refuse(Local::NotRecognized)
            } else if phase == Phase::Fresh {
                refuse(Local::HeloFirst)
            } else {
                relay(Relayed::Other(cmd.verb), p)
            }
        }
        Verb::Invalid => refuse(Local::BadSyntax),
    }
}

/// Relaying under the listener's `require_tls`.
fn relay(what: Relayed, p: &Policy) -> Decision {
    match (p.tls_active, p.require_tls) {
        (false, RequireTls::On) => Decision::TlsRequired,
        (false, RequireTls::LogOnly) => Decision::Relay {
            what,
            tls_would_refuse: true,
        },
        _ => Decision::Relay {
            what,
            tls_would_refuse: false,
        },
    }
}

fn greet(cmd: &Command<'_>) -> Decision {
    let esmtp = cmd.verb == Verb::Ehlo;
    let Some(name) = cmd.first_arg() else {
        return refuse(Local::HeloSyntax { esmtp });
    };
    // A domain or address literal: printable ASCII only. It is passed to the
    // backend in its own EHLO, so nothing else may get through.
    if !name.iter().all(|b| (0x21..0x7f).contains(b)) || name.len() > crate::limits::MAX_HELO_NAME {
        return refuse(Local::InvalidHostName);
    }
    Decision::Greet { esmtp }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per verb (and the byte-level refusals).
    const LINES: &[(&str, &[u8])] = &[
        ("EHLO", b"EHLO client.test"),
        ("HELO", b"HELO client.test"),
        ("STARTTLS", b"STARTTLS"),
        ("MAIL", b"MAIL FROM:<a@b.test>"),
        ("RCPT", b"RCPT TO:<c@d.test>"),
        ("DATA", b"DATA"),
        ("BDAT", b"BDAT 10 LAST"),
        ("RSET", b"RSET"),
        ("NOOP", b"NOOP"),
        ("QUIT", b"QUIT"),
        ("VRFY", b"VRFY postmaster"),
        ("EXPN", b"EXPN list"),
        ("HELP", b"HELP"),
        ("AUTH", b"AUTH PLAIN AGEAYg=="),
        ("ETRN", b"ETRN legacy.test"),
        ("XCLIENT", b"XCLIENT ADDR=1.2.3.4"),
        ("VERB", b"VERB"),
        ("junk", b"GET / HTTP/1.1"),
        ("invalid", b" EHLO x"),
        ("CR", b"MAIL FROM:<a>\rRCPT TO:<b>"),
        ("NUL", b"NOOP \0"),
    ];

    /// A short name for a decision, so the table reads like a protocol trace.
    fn short(d: &Decision) -> String {
        match d {
            Decision::Answer { reply, error } => {
                format!("{}{}", reply.code(), if *error { "!" } else { "" })
            }
            Decision::TlsRequired => "530!".into(),
            Decision::Greet { .. } => "greet".into(),
            Decision::StartTls => "starttls".into(),
            Decision::Rset => "rset".into(),
            Decision::Quit => "quit".into(),
            Decision::Relay {
                tls_would_refuse, ..
            } => if *tls_would_refuse {
                "relay(log)"
            } else {
                "relay"
            }
            .into(),
            Decision::Data => "data".into(),
            Decision::Close { reply, .. } => format!("close{}", reply.code()),
        }
    }

    fn policy() -> Policy {
        Policy {
            tls_active: false,
            tls_available: true,
            auth_before_tls: false,
            require_tls: RequireTls::Off,
            recipients_full: false,
            extension_relayed: false,
        }
    }

    const PHASES: [Phase; 4] = [Phase::Fresh, Phase::Greeted, Phase::Mail, Phase::Rcpt];

    /// Each verb in each phase under one policy: `(verb, [Fresh, Greeted, Mail, Rcpt])`.
    fn check(p: Policy, table: &[(&str, [&str; 4])]) {
        for (name, want) in table {
            let line = LINES.iter().find(|(n, _)| n == name).unwrap().1;
            for (phase, want) in PHASES.iter().zip(want) {
                let got = short(&decide(*phase, line, &p));
                assert_eq!(&got, want, "{name} in {phase:?} under {p:?}");
            }
        }
    }

    #[test]
    fn every_verb_in_every_phase_before_tls() {
        check(
            policy(),
            &[
                ("EHLO", ["greet"; 4]),
                ("HELO", ["greet"; 4]),
                ("STARTTLS", ["starttls", "starttls", "503!", "503!"]),
                ("MAIL", ["503!", "relay", "503!", "503!"]),
                ("RCPT", ["503!", "503!", "relay", "relay"]),
                ("DATA", ["503!", "503!", "554!", "data"]),
                ("BDAT", ["close421"; 4]),
                ("RSET", ["rset"; 4]),
                ("NOOP", ["250"; 4]),
                ("QUIT", ["quit"; 4]),
                ("VRFY", ["503!", "relay", "relay", "relay"]),
                ("EXPN", ["503!", "relay", "relay", "relay"]),
                ("HELP", ["214"; 4]),
                ("AUTH", ["538!"; 4]),
                ("ETRN", ["500!"; 4]),
                ("XCLIENT", ["502!"; 4]),
                ("VERB", ["502!"; 4]),
                ("junk", ["500!"; 4]),
                ("invalid", ["500!"; 4]),
                ("CR", ["500!"; 4]),
                ("NUL", ["500!"; 4]),
            ],
        );
    }

    #[test]
    fn every_verb_in_every_phase_under_tls() {
        check(
            Policy {
                tls_active: true,
                ..policy()
            },
            &[
                ("STARTTLS", ["554!"; 4]),
                ("MAIL", ["503!", "relay", "503!", "503!"]),
                ("AUTH", ["503!", "relay", "503!", "503!"]),
                ("VRFY", ["503!", "relay", "relay", "relay"]),
                ("ETRN", ["500!"; 4]),
                ("DATA", ["503!", "503!", "554!", "data"]),
            ],
        );
    }

    #[test]
    fn policy_flags() {
        // No certificate: no STARTTLS.
        check(
            Policy {
                tls_available: false,
                ..policy()
            },
            &[("STARTTLS", ["502!"; 4])],
        );
        // AUTH before TLS only when configured.
        check(
            Policy {
                auth_before_tls: true,
                ..policy()
            },
            &[("AUTH", ["503!", "relay", "503!", "503!"])],
        );
        // require_tls = true: work before TLS gets 530; AUTH keeps its 538.
        check(
            Policy {
                require_tls: RequireTls::On,
                ..policy()
            },
            &[
                ("MAIL", ["503!", "530!", "503!", "503!"]),
                ("VRFY", ["503!", "530!", "530!", "530!"]),
                ("AUTH", ["538!"; 4]),
                ("NOOP", ["250"; 4]),
                ("STARTTLS", ["starttls", "starttls", "503!", "503!"]),
            ],
        );
        // ... and under TLS it no longer applies.
        check(
            Policy {
                require_tls: RequireTls::On,
                tls_active: true,
                ..policy()
            },
            &[("MAIL", ["503!", "relay", "503!", "503!"])],
        );
        // require_tls = "log": relayed and counted.
        check(
            Policy {
                require_tls: RequireTls::LogOnly,
                ..policy()
            },
            &[
                ("MAIL", ["503!", "relay(log)", "503!", "503!"]),
                ("VRFY", ["503!", "relay(log)", "relay(log)", "relay(log)"]),
            ],
        );
        // The recipient cap answers 452 without counting an error.
        check(
            Policy {
                recipients_full: true,
                ..policy()
            },
            &[("RCPT", ["503!", "503!", "452", "452"])],
        );
        // An extension verb on the list and announced: relayed once greeted.
        check(
            Policy {
                extension_relayed: true,
                ..policy()
            },
            &[
                ("ETRN", ["503!", "relay", "relay", "relay"]),
                ("junk", ["503!", "relay", "relay", "relay"]),
                ("XCLIENT", ["502!"; 4]),
                ("VERB", ["502!"; 4]),
            ],
        );
    }

    #[test]
    fn nothing_reaches_the_backend_before_helo_whatever_the_policy() {
        for bits in 0..64u32 {
            let p = Policy {
                tls_active: bits & 1 != 0,
                tls_available: bits & 2 != 0,
                auth_before_tls: bits & 4 != 0,
                require_tls: [RequireTls::Off, RequireTls::On, RequireTls::LogOnly]
                    [(bits as usize >> 3) % 3],
                recipients_full: bits & 16 != 0,
                extension_relayed: bits & 32 != 0,
            };
            for (name, line) in LINES {
                let d = decide(Phase::Fresh, line, &p);
                assert!(
                    !matches!(d, Decision::Relay { .. } | Decision::Data),
                    "{name} relayed before HELO under {p:?}"
                );
                if !p.tls_active && p.require_tls == RequireTls::On {
                    for phase in PHASES {
                        let d = decide(phase, line, &p);
                        let relayed = matches!(d, Decision::Relay { what, .. } if what != Relayed::Rcpt && what != Relayed::Auth);
                        assert!(!relayed, "{name} relayed in clear under require_tls");
                    }
                }
            }
        }
    }

    #[test]
    fn greeting_names_are_checked() {
        let p = policy();
        assert_eq!(
            decide(Phase::Fresh, b"EHLO", &p),
            Decision::Answer {
                reply: Local::HeloSyntax { esmtp: true },
                error: true
            }
        );
        assert_eq!(
            decide(Phase::Fresh, b"HELO", &p),
            Decision::Answer {
                reply: Local::HeloSyntax { esmtp: false },
                error: true
            }
        );
        assert_eq!(
            short(&decide(Phase::Fresh, "EHLO h\u{e9}llo".as_bytes(), &p)),
            "501!"
        );
        let long = format!("EHLO {}", "a".repeat(256));
        assert_eq!(short(&decide(Phase::Fresh, long.as_bytes(), &p)), "501!");
        assert_eq!(
            decide(Phase::Fresh, b"EHLO [192.0.2.1]", &p),
            Decision::Greet { esmtp: true }
        );
    }
}

//! What `check` finds, as data: a level, a stable code for scripts, and a
//! message for people, about a subject in a section. [`About`] is the one
//! way to make a [`Finding`].

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Config,
    Certificates,
    Backend,
    /// Certificates obtained by ACME (the state directory).
    Acme,
    /// TLSA records against the keys (`--dane`).
    Dane,
    /// The MTA-STS record and policy of a domain (`--mta-sts`).
    #[serde(rename = "mta_sts")]
    MtaSts,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub section: Section,
    pub level: Level,
    /// What the finding is about, e.g. `certificate /etc/tlsfront/mx.pem`.
    pub subject: String,
    /// Stable snake_case name, for scripts.
    pub code: &'static str,
    pub message: String,
}

/// The section and subject that a run of findings shares.
#[derive(Debug, Clone)]
pub struct About {
    section: Section,
    subject: String,
}

impl About {
    pub fn new(section: Section, subject: impl Into<String>) -> About {
        About {
            section,
            subject: subject.into(),
        }
    }

    pub fn finding(&self, level: Level, code: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            section: self.section,
            level,
            subject: self.subject.clone(),
            code,
            message: message.into(),
        }
    }

    pub fn ok(&self, code: &'static str, message: impl Into<String>) -> Finding {
        self.finding(Level::Ok, code, message)
    }

    pub fn warning(&self, code: &'static str, message: impl Into<String>) -> Finding {
        self.finding(Level::Warning, code, message)
    }

    pub fn error(&self, code: &'static str, message: impl Into<String>) -> Finding {
        self.finding(Level::Error, code, message)
    }
}

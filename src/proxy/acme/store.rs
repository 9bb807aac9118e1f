//! The state directory: what ACME gave tlsfront, kept across restarts.
//!
//! ```text
//! STATE/acme/account-HASH.json   the account's key and URL, per CA directory (0600)
//! STATE/acme/KEY_TYPE/cert.pem   the certificate chain in service, leaf first
//! STATE/acme/KEY_TYPE/key.pem    its private key (PKCS#8, 0600)
//! STATE/acme/KEY_TYPE/next-key.pem  the key the next certificate moves to (0600)
//! STATE/acme/status.json         per key type: last try, last error, next try, key held back
//! STATE/acme/dane.json           per next key and MX name: when its TLSA record was first seen
//! ```
//!
//! Every write goes to a temporary file in the same folder, then is renamed
//! over the old one: a crash leaves the old file or the new one, never half.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::outcome::KeyType;

#[derive(Debug, Error)]
#[error("{path}: {source}")]
pub struct StoreError {
    pub path: String,
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.display().to_string(),
        source,
    }
}

/// Where one key type's files are.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub next_key: PathBuf,
}

/// The renewal state of one key type, kept so a restart neither forgets a
/// failure (and retries at once against the CA's rate limits) nor hides it
/// from `check`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatus {
    /// Unix seconds of the last order, of the last certificate obtained.
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    /// Why the last order failed (cleared by a success).
    pub last_error: Option<String>,
    /// Failures in a row.
    #[serde(default)]
    pub failures: u32,
    /// No order before this (backoff after a failure).
    pub next_attempt: Option<i64>,
    /// Why the last renewal kept the current key instead of the next one.
    pub key_held_back: Option<String>,
}

/// When each MX name's TLSA record for a next key was first seen (and the
/// longest TTL it came with), by the record's data in hex.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sightings {
    pub records: BTreeMap<String, BTreeMap<String, Sighting>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// Unix seconds: seen without a break since then.
    pub since: i64,
    pub ttl: u32,
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The ACME part of the state directory.
    pub fn new(state_directory: &Path) -> Store {
        Store {
            dir: state_directory.join("acme"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the folders (0700: the keys are inside).
    pub fn create(&self, key_types: &[KeyType]) -> Result<(), StoreError> {
        for k in key_types {
            let d = self.dir.join(k.as_str());
            std::fs::create_dir_all(&d).map_err(err(&d))?;
        }
        for d in std::iter::once(self.dir.clone())
            .chain(key_types.iter().map(|k| self.dir.join(k.as_str())))
        {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                .map_err(err(&d))?;
        }
        Ok(())
    }

    pub fn files(&self, key_type: KeyType) -> KeyFiles {
        let d = self.dir.join(key_type.as_str());
        KeyFiles {
            cert: d.join("cert.pem"),
            key: d.join("key.pem"),
            next_key: d.join("next-key.pem"),
        }
    }

    /// The account file for a CA: one per directory URL, so pointing
    /// `acme.directory` at another CA (staging, then production) never
    /// sends one CA's account to another.
    pub fn account_file(&self, directory: &str) -> PathBuf {
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, directory.as_bytes());
        let short: String = hash.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(format!("account-{short}.json"))
    }

    pub fn read(&self, path: &Path) -> Result<Option<String>, StoreError> {
        match std::fs::read_to_string(path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(path)(e)),
        }
    }

    /// Writes `data` to `path` whole (temporary file, then rename); `secret`
    /// files are 0600.
    pub fn write(&self, path: &Path, data: &[u8], secret: bool) -> Result<(), StoreError> {
        let tmp = path.with_extension("tmp");
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(if secret { 0o600 } else { 0o644 })
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(err(path))
    }

    fn status_file(&self) -> PathBuf {
        self.dir.join("status.json")
    }

    /// The renewal status of every key type (empty when none was written).
    pub fn status(&self) -> BTreeMap<KeyType, KeyStatus> {
        self.read(&self.status_file())
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    pub fn set_status(&self, status: &BTreeMap<KeyType, KeyStatus>) -> Result<(), StoreError> {
        let text = serde_json::to_string_pretty(status).unwrap_or_default();
        self.write(&self.status_file(), text.as_bytes(), false)
    }

    fn sightings_file(&self) -> PathBuf {
        self.dir.join("dane.json")
    }

    pub fn sightings(&self) -> Sightings {
        self.read(&self.sightings_file())
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    pub fn set_sightings(&self, s: &Sightings) -> Result<(), StoreError> {
        let text = serde_json::to_string_pretty(s).unwrap_or_default();
        self.write(&self.sightings_file(), text.as_bytes(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_whole_and_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.create(&[KeyType::EcdsaP256]).unwrap();
        let files = store.files(KeyType::EcdsaP256);
        store.write(&files.key, b"secret", true).unwrap();
        store.write(&files.key, b"secret2", true).unwrap();
        assert_eq!(store.read(&files.key).unwrap().unwrap(), "secret2");
        let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!files.key.with_extension("tmp").exists());
        assert_eq!(store.read(&files.cert).unwrap(), None);
        let mut status = BTreeMap::new();
        status.insert(
            KeyType::EcdsaP256,
            KeyStatus {
                failures: 2,
                last_error: Some("x".into()),
                ..KeyStatus::default()
            },
        );
        store.set_status(&status).unwrap();
        assert_eq!(store.status(), status);
        assert_ne!(
            store.account_file("https://a.test/dir"),
            store.account_file("https://b.test/dir")
        );
    }
}

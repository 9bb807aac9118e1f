//! Who can read the certificate and key files: the private key must be
//! readable by the service, and by nobody else.
//!
//! `check` by hand runs as root, which reads everything; the service does
//! not (`DynamicUser=yes` in tlsfront.service: an unprivileged user in no
//! group, which cannot enter certbot's 0700 `live/` and `archive/`). So as
//! root, `check` judges the files by their permission bits for the service's
//! user: the unit's dynamic user by default, or `--service-user NAME` (looked
//! up in /etc/passwd and /etc/group; ACLs are not read). A key systemd passes
//! with `LoadCredential=` is the service's own and is not judged.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::tools::check::findings::{About, Finding};

/// A user, as file permissions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `None`: a dynamic user, which owns none of the files looked at.
    pub uid: Option<u32>,
    pub gids: Vec<u32>,
    /// How messages name it.
    pub label: String,
}

impl Identity {
    /// tlsfront.service's `DynamicUser=yes`: a fresh UID, no supplementary group.
    pub fn dynamic() -> Identity {
        Identity {
            uid: None,
            gids: Vec::new(),
            label: "the service's user (DynamicUser=yes in tlsfront.service)".into(),
        }
    }

    /// A user by name, from /etc/passwd and /etc/group.
    pub fn named(name: &str) -> Result<Identity, String> {
        let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        Identity::from_files(name, &passwd, &group)
    }

    fn from_files(name: &str, passwd: &str, group: &str) -> Result<Identity, String> {
        // A name, or a UID (a user with no name in /etc/passwd has no groups).
        let entry = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && (f[0] == name || f[2] == name));
        let entry = match (entry, name.parse::<u32>()) {
            (Some(e), _) => e,
            (None, Ok(uid)) => {
                return Ok(Identity {
                    uid: Some(uid),
                    gids: Vec::new(),
                    label: format!("uid {uid}"),
                });
            }
            (None, Err(_)) => return Err(format!("no user {name:?} in /etc/passwd")),
        };
        let name = entry[0];
        let uid = entry[2].parse::<u32>().map_err(|e| e.to_string())?;
        let mut gids = vec![entry[3].parse::<u32>().map_err(|e| e.to_string())?];
        for g in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if g.len() >= 4
                && g[3].split(',').any(|m| m == name)
                && let Ok(gid) = g[2].parse::<u32>()
                && !gids.contains(&gid)
            {
                gids.push(gid);
            }
        }
        Ok(Identity {
            uid: Some(uid),
            gids,
            label: format!("user {name}"),
        })
    }

    /// This process: effective UID, GID and supplementary groups.
    pub fn current() -> Option<Identity> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let field = |key: &str| -> Vec<u32> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|rest| {
                    rest.split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let uid = *field("Uid:").get(1)?;
        let mut gids = vec![*field("Gid:").get(1)?];
        gids.extend(field("Groups:"));
        Some(Identity {
            uid: Some(uid),
            gids,
            label: format!("uid {uid}"),
        })
    }

    pub fn is_root(&self) -> bool {
        self.uid == Some(0)
    }

    /// The permission bits (rwx) that apply to this user on a file.
    fn bits(&self, meta: &std::fs::Metadata) -> u32 {
        let mode = meta.mode();
        if self.uid == Some(meta.uid()) {
            (mode >> 6) & 7
        } else if self.gids.contains(&meta.gid()) {
            (mode >> 3) & 7
        } else {
            mode & 7
        }
    }
}

/// `drwx------ 0:0`, for messages.
fn describe(meta: &std::fs::Metadata) -> String {
    format!(
        "mode {:04o}, owner {}:{}",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    )
}

/// Whether `who` can read `path`: search permission on every directory on
/// the way (as written, and where symbolic links lead), read permission on
/// the file. `Err` says where it stops.
pub fn readable_by(path: &Path, who: &Identity) -> Result<(), String> {
    if who.is_root() {
        return Ok(());
    }
    let absolute = std::path::absolute(path).map_err(|e| e.to_string())?;
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for p in [&absolute, &real] {
        for dir in p.ancestors().skip(1) {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    for dir in dirs.iter().rev() {
        // A component that is not there was reported by the canonicalize above.
        if let Ok(meta) = std::fs::metadata(dir)
            && who.bits(&meta) & 1 == 0
        {
            return Err(format!(
                "no search permission on directory {} ({})",
                dir.display(),
                describe(&meta)
            ));
        }
    }
    let meta = std::fs::metadata(&real).map_err(|e| e.to_string())?;
    if who.bits(&meta) & 4 == 0 {
        return Err(format!(
            "no read permission on {} ({})",
            real.display(),
            describe(&meta)
        ));
    }
    Ok(())
}

/// Who else may read a private key, by its permission bits.
pub fn key_exposure(about: &About, key: &Path) -> Option<Finding> {
    let meta = std::fs::metadata(key).ok()?;
    let mode = meta.mode() & 0o777;
    let fix = "chmod 600 it (owned by root) and give it to the service with \
               LoadCredential=NAME:FILE and key = \"%d/NAME\"";
    if mode & 0o004 != 0 {
        Some(about.warning(
            "key_world_readable",
            format!(
                "private key {} is readable by every user on this host (mode {mode:04o}): {fix}",
                key.display()
            ),
        ))
    } else if mode & 0o040 != 0 {
        Some(about.warning(
            "key_group_readable",
            format!(
                "private key {} is readable by group {} (mode {mode:04o}): every member can \
                 read it; {fix}",
                key.display(),
                meta.gid()
            ),
        ))
    } else {
        None
    }
}

/// The service's user cannot read a certificate or key file `check` read
/// as root: `run` under the unit would fail where `check` passed.
pub fn service_access(about: &About, what: &str, path: &Path, who: &Identity) -> Option<Finding> {
    let why = readable_by(path, who).err()?;
    let (code, fix) = if what == "key" {
        (
            "key_unreadable_by_service",
            "do not chmod it: give it to the service with LoadCredential=NAME:FILE in the unit \
             and key = \"%d/NAME\" in tlsfront.toml (docs/operations.md, Private keys)",
        )
    } else {
        (
            "certificate_unreadable_by_service",
            "give it with LoadCredential=NAME:FILE and cert = \"%d/NAME\", or copy it where \
             the service can read it",
        )
    };
    Some(about.error(
        code,
        format!(
            "{what} {}: {} cannot read it ({why}), so `run` under the unit would fail: {fix}",
            path.display(),
            who.label
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::check::findings::Section;
    use std::os::unix::fs::PermissionsExt;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          tlsfront:x:990:990::/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nssl-cert:x:111:tlsfront,postfix\ntlsfront:x:990:\n";

    #[test]
    fn named_users_come_with_their_groups() {
        let t = Identity::from_files("tlsfront", PASSWD, GROUP).unwrap();
        assert_eq!((t.uid, t.gids.clone()), (Some(990), vec![990, 111]));
        assert!(Identity::from_files("nobody-here", PASSWD, GROUP).is_err());
        assert_eq!(Identity::from_files("990", PASSWD, GROUP).unwrap(), t);
        let bare = Identity::from_files("4242", PASSWD, GROUP).unwrap();
        assert_eq!((bare.uid, bare.gids.len()), (Some(4242), 0));
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The bits decide, for owner, group and others; a directory on the way
    /// without search permission stops everyone but its owner (and root).
    #[test]
    fn readability_follows_the_permission_bits() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        std::fs::create_dir(&live).unwrap();
        let key = live.join("privkey.pem");
        std::fs::write(&key, "k").unwrap();
        let stranger = Identity::dynamic();
        let member = Identity {
            uid: Some(12345),
            gids: vec![std::fs::metadata(&key).unwrap().gid()],
            label: "member".into(),
        };
        chmod(dir.path(), 0o755);
        chmod(&live, 0o755);
        chmod(&key, 0o600);
        let owner = Identity {
            uid: Some(std::fs::metadata(&key).unwrap().uid()),
            gids: vec![],
            label: "owner".into(),
        };
        assert!(readable_by(&key, &owner).is_ok());
        assert!(
            readable_by(&key, &stranger)
                .unwrap_err()
                .contains("no read permission")
        );
        assert!(readable_by(&key, &member).is_err());
        chmod(&key, 0o640);
        assert!(readable_by(&key, &member).is_ok());
        assert!(readable_by(&key, &stranger).is_err());
        chmod(&key, 0o644);
        assert!(readable_by(&key, &stranger).is_ok());
        // certbot's live/ is 0700: the key's own bits do not matter then.
        chmod(&live, 0o700);
        let e = readable_by(&key, &stranger).unwrap_err();
        assert!(
            e.contains("no search permission on directory") && e.contains("live"),
            "{e}"
        );
        let root = Identity {
            uid: Some(0),
            ..stranger.clone()
        };
        assert!(readable_by(&key, &root).is_ok());
        assert!(Identity::current().is_some());
    }

    /// Through a symbolic link (certbot's live/ → archive/), the directories
    /// where it leads count too.
    #[test]
    fn symlinks_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (live, archive) = (dir.path().join("live"), dir.path().join("archive"));
        std::fs::create_dir(&live).unwrap();
        std::fs::create_dir(&archive).unwrap();
        std::fs::write(archive.join("privkey1.pem"), "k").unwrap();
        std::os::unix::fs::symlink("../archive/privkey1.pem", live.join("privkey.pem")).unwrap();
        chmod(dir.path(), 0o755);
        chmod(&live, 0o755);
        chmod(&archive, 0o700);
        chmod(&archive.join("privkey1.pem"), 0o644);
        let e = readable_by(&live.join("privkey.pem"), &Identity::dynamic()).unwrap_err();
        assert!(e.contains("archive"), "{e}");
    }

    #[test]
    fn exposure_by_mode() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        std::fs::write(&key, "k").unwrap();
        let about = About::new(Section::Certificates, "c");
        for (mode, code) in [
            (0o600, None),
            (0o400, None),
            (0o640, Some("key_group_readable")),
            (0o644, Some("key_world_readable")),
            (0o604, Some("key_world_readable")),
        ] {
            chmod(&key, mode);
            assert_eq!(key_exposure(&about, &key).map(|f| f.code), code, "{mode:o}");
        }
    }
}

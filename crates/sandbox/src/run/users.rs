//! A step's `user:` looked up in the ROOTFS's /etc/passwd and /etc/group (never the host's
//! NSS): `name`, `uid`, `uid:gid`, `name:group`, with the supplementary groups the rootfs's
//! /etc/group lists the user in.

use std::path::Path;

use crate::scoped::resolve;
use crate::SandboxError;

/// Who the step runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary one included.
    pub groups: Vec<u32>,
}

impl Identity {
    pub const ROOT: Identity = Identity {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    };
}

pub(crate) fn lookup(root: &Path, spec: &str) -> Result<Identity, SandboxError> {
    let passwd = read_db(root, "etc/passwd", spec)?;
    let group = read_db(root, "etc/group", spec)?;
    identity(spec, &passwd, &group)
}

fn read_db(root: &Path, rel: &str, spec: &str) -> Result<String, SandboxError> {
    let resolved = resolve(root, Path::new(rel), true)?;
    match std::fs::read(root.join(resolved)) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(SandboxError::User {
            user: spec.to_string(),
            reason: format!("reading the rootfs's /{rel}: {e}"),
        }),
    }
}

/// The fields of the colon-separated records of a passwd or group file.
fn records(db: &str) -> impl Iterator<Item = Vec<&str>> {
    db.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
}

pub(crate) fn identity(spec: &str, passwd: &str, group: &str) -> Result<Identity, SandboxError> {
    let fail = |reason: String| SandboxError::User {
        user: spec.to_string(),
        reason,
    };
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user_part.is_empty() || group_part == Some("") {
        return Err(fail("expected name, uid, uid:gid or name:group".into()));
    }
    let entry = records(passwd)
        .find(|f| f[0] == user_part || (user_part.parse::<u32>().is_ok() && f[2] == user_part));
    let (name, uid, primary) = match (&entry, user_part.parse::<u32>()) {
        (Some(f), _) => {
            let uid = f[2]
                .parse()
                .map_err(|_| fail(format!("/etc/passwd has a bad uid {:?}", f[2])))?;
            let gid = f[3]
                .parse()
                .map_err(|_| fail(format!("/etc/passwd has a bad gid {:?}", f[3])))?;
            (Some(f[0]), uid, gid)
        }
        // A numeric uid the rootfs does not know runs with gid 0, as in Docker.
        (None, Ok(uid)) => (None, uid, 0),
        (None, Err(_)) => return Err(fail("no such user in the rootfs's /etc/passwd".into())),
    };
    let gid = match group_part {
        None => primary,
        Some(g) => match records(group).find(|f| f[0] == g) {
            Some(f) => f[2]
                .parse()
                .map_err(|_| fail(format!("/etc/group has a bad gid {:?}", f[2])))?,
            None => g
                .parse()
                .map_err(|_| fail(format!("no group {g:?} in the rootfs's /etc/group")))?,
        },
    };
    let mut groups = vec![gid];
    if let Some(name) = name {
        for f in records(group) {
            if f[3].split(',').any(|member| member == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
    }
    Ok(Identity { uid, gid, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          app:x:1000:1000::/home/app:/bin/sh\n\
                          # comment\n\
                          daemon:x:1:1::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\nadm:x:4:app,daemon\napp:x:1000:\nstaff:x:50:app\n";

    #[test]
    fn names_numbers_and_groups_resolve_from_the_rootfs_files() {
        let app = identity("app", PASSWD, GROUP).unwrap();
        assert_eq!(
            app,
            Identity {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 4, 50]
            }
        );
        let numeric = identity("1000", PASSWD, GROUP).unwrap();
        assert_eq!(numeric.uid, 1000);
        assert_eq!(numeric.groups, vec![1000, 4, 50]);
        let with_group = identity("app:staff", PASSWD, GROUP).unwrap();
        assert_eq!((with_group.uid, with_group.gid), (1000, 50));
        let unknown_numeric = identity("4242:7", PASSWD, GROUP).unwrap();
        assert_eq!(
            unknown_numeric,
            Identity {
                uid: 4242,
                gid: 7,
                groups: vec![7]
            }
        );
        assert_eq!(identity("0", PASSWD, GROUP).unwrap().gid, 0);
    }

    #[test]
    fn unknown_names_are_errors_naming_the_file() {
        let err = identity("nobody", PASSWD, GROUP).unwrap_err().to_string();
        assert!(
            err.contains("no such user in the rootfs's /etc/passwd"),
            "{err}"
        );
        let err = identity("app:wheel", PASSWD, GROUP)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no group \"wheel\""), "{err}");
        assert!(identity("app:", PASSWD, GROUP).is_err());
    }
}

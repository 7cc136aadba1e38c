//! Reading local files with the task user's rights.
//!
//! `agora executor` runs as root (it must join cgroups and start the task as
//! its user), but what a task fetches from the agent's disk must be what
//! its user could read: otherwise a task running as `nobody` could fetch
//! `file:///etc/shadow`. A local source is therefore opened on a thread of
//! its own that first gives up root for good (supplementary groups, then
//! real, effective and saved gid and uid: Linux credentials are per thread
//! at the system-call level) and ends after the open; the open file is then
//! read as usual. Nothing else of the process changes credentials.

use std::fs::File;
use std::io;
use std::path::Path;

use rustix::process::{Gid, Uid};

/// The user a fetch runs for: its uid and primary gid (as the task runs:
/// with no supplementary groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FetchUser {
    pub uid: u32,
    pub gid: u32,
}

/// Opens `path` for reading as `user` (as the process itself when `None`).
pub(crate) fn open(path: &Path, user: Option<FetchUser>) -> io::Result<File> {
    let Some(user) = user else {
        return File::open(path);
    };
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("fetch-as-user".into())
        .spawn(move || {
            drop_to(user)?;
            File::open(&path)
        })?
        .join()
        .map_err(|_| io::Error::other("the thread that opens files as the task user panicked"))?
}

/// Gives up this thread's root rights for `user`'s, irrevocably.
fn drop_to(user: FetchUser) -> io::Result<()> {
    let gid = Gid::from_raw(user.gid);
    let uid = Uid::from_raw(user.uid);
    rustix::thread::set_thread_groups(&[gid])?;
    rustix::thread::set_thread_res_gid(gid, gid, gid)?;
    rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn without_a_user_the_process_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "x").unwrap();
        assert!(open(&path, None).is_ok());
    }

    /// Needs root: only root can become another user.
    #[test]
    fn another_user_is_held_to_its_own_rights() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "root only").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let public = dir.path().join("public");
        std::fs::write(&public, "anyone").unwrap();
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
        let nobody = FetchUser {
            uid: 65534,
            gid: 65534,
        };
        let refused = open(&secret, Some(nobody)).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied);
        assert!(open(&public, Some(nobody)).is_ok());
        // The rest of the process is still root.
        assert!(rustix::process::geteuid().is_root());
        assert!(File::open(&secret).is_ok());
    }
}

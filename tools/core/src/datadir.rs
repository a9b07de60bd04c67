//! An etcd member's data dir: is it in use, set its `member/` aside, swap a
//! restored one in atomically, fix ownership and mode.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use crate::fsutil::sync_dir;

pub const ASIDE_MARK: &str = ".wiped-";
/// Name of etcd2-restore's staging dir inside the data dir
/// (`.restore.<pid>.*`, see [`crate::scratch`]).
pub const RESTORE_STAGING: &str = ".restore";

/// What may stand in a data dir that wipe and restore act on: etcd's own
/// `member/`, our set-aside copies and staging, and a filesystem's
/// `lost+found` (a dedicated disk mounted there), which is never touched.
fn is_ours(name: &str) -> bool {
    name == "member"
        || name.starts_with(&format!("member{ASIDE_MARK}"))
        || name.starts_with(&format!("{RESTORE_STAGING}."))
        || name == "lost+found"
}

/// Refuse to act on anything but an etcd data dir: an empty dir, or one
/// holding nothing but what [`is_ours`] accepts, each a real directory (a
/// link is never followed out of the tree). Names what it found otherwise,
/// so a wrong ETCD_DATA_DIR (`/var/lib`, `/tmp`) is caught before anything
/// is moved or chowned.
pub fn check_recognised(data_dir: &Path) -> Result<()> {
    let rd = std::fs::read_dir(data_dir)
        .with_context(|| format!("reading data dir {} (ETCD_DATA_DIR)", data_dir.display()))?;
    let mut foreign = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("reading data dir {}", data_dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e
            .file_type()
            .with_context(|| format!("reading {}", e.path().display()))?;
        if ft.is_symlink() && is_ours(&name) {
            let to = std::fs::read_link(e.path()).unwrap_or_default();
            bail!(
                "{} is a symlink (to {}): refusing to follow a link out of the data dir",
                e.path().display(),
                to.display()
            );
        }
        if !(ft.is_dir() && is_ours(&name)) {
            foreign.push(name);
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        let n = foreign.len();
        foreign.truncate(5);
        bail!(
            "{} is not an etcd data dir: besides etcd's member/ it holds {}{}; refusing to touch \
             it (wrong ETCD_DATA_DIR or --data-dir?)",
            data_dir.display(),
            foreign.join(", "),
            if n > 5 {
                format!(" and {} more", n - 5)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// Which process has files under `dir` open, from /proc (best effort: other
/// users' processes may be invisible to a non-root caller).
pub fn open_by(dir: &Path) -> Option<(u32, String, PathBuf)> {
    let dir = std::fs::canonicalize(dir).ok()?;
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if target.starts_with(&dir) {
                    let comm =
                        std::fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
                    return Some((pid, comm.trim().to_owned(), target));
                }
            }
        }
    }
    None
}

/// Fail when an etcd process uses `data_dir`. etcd holds a lock on its bbolt
/// db (`member/snap/db`): probing that lock works even across PID
/// namespaces; /proc names the process where it is visible.
pub fn ensure_unused(data_dir: &Path) -> Result<()> {
    let member = data_dir.join("member");
    if let Some((pid, comm, file)) = open_by(&member) {
        bail!(
            "{} is in use: {comm} (pid {pid}) has {} open; stop it first (systemctl stop etcd2)",
            data_dir.display(),
            file.display()
        );
    }
    let db = member.join("snap/db");
    if let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(&db) {
        use nix::fcntl::{Flock, FlockArg};
        if let Err((_, nix::errno::Errno::EWOULDBLOCK)) =
            Flock::lock(f, FlockArg::LockExclusiveNonblock)
        {
            bail!(
                "{} is in use: another process holds the lock on {}; stop etcd first",
                data_dir.display(),
                db.display()
            );
        }
    }
    Ok(())
}

/// Old `member` dirs set aside in `data_dir`, oldest first.
pub fn set_aside_dirs(data_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("member{ASIDE_MARK}"))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Delete set-aside dirs beyond `keep` (at least 1), never `just_set`: the
/// copy this run set aside is always kept, and counts as one of the `keep`.
/// The others go oldest first by name; a clock that once ran ahead makes
/// their names claim to be newer than ours, which changes nothing for ours.
pub fn prune_aside(data_dir: &Path, keep: usize, just_set: Option<&Path>) -> Result<Vec<PathBuf>> {
    let others: Vec<PathBuf> = set_aside_dirs(data_dir)
        .into_iter()
        .filter(|d| Some(d.as_path()) != just_set)
        .collect();
    let keep_others = keep.max(1) - usize::from(just_set.is_some());
    let n = others.len().saturating_sub(keep_others);
    for d in &others[..n] {
        std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        tracing::info!("removed old {}", d.display());
    }
    Ok(others[..n].to_vec())
}

/// Move `data_dir/member` aside to `member.wiped-<time>`; None when there
/// was nothing to move.
pub fn set_aside(data_dir: &Path) -> Result<Option<PathBuf>> {
    let member = data_dir.join("member");
    if !member.exists() {
        return Ok(None);
    }
    let aside = unique(data_dir.join(format!(
        "member{ASIDE_MARK}{}",
        crate::clock::compact(SystemTime::now(), false)
    )));
    std::fs::rename(&member, &aside)
        .with_context(|| format!("moving {} aside to {}", member.display(), aside.display()))?;
    sync_dir(data_dir)?;
    Ok(Some(aside))
}

fn unique(p: PathBuf) -> PathBuf {
    if !p.exists() {
        return p;
    }
    (1..)
        .map(|i| PathBuf::from(format!("{}.{i}", p.display())))
        .find(|c| !c.exists())
        .unwrap_or(p)
}

/// Put `new_member` (a complete, checked `member` dir on the same
/// filesystem, in our scratch) in place of `data_dir/member`; the old one
/// ends up set aside as `member.wiped-<time>`. At no instant is there no
/// member dir, and at no instant is either copy inside scratch that a stop
/// or the next run's sweep would remove: the new member first moves into the
/// data dir under its set-aside name, then one `RENAME_EXCHANGE` swaps it
/// with the live one, so the old data takes that name.
pub fn install_member(data_dir: &Path, new_member: &Path) -> Result<Option<PathBuf>> {
    let member = data_dir.join("member");
    if !member.exists() {
        std::fs::rename(new_member, &member)
            .with_context(|| format!("moving the restored member into {}", member.display()))?;
        sync_dir(data_dir)?;
        return Ok(None);
    }
    let aside = unique(data_dir.join(format!(
        "member{ASIDE_MARK}{}",
        crate::clock::compact(SystemTime::now(), false)
    )));
    // Killed after this rename: the restored copy waits as a set-aside
    // dir, the live member is untouched.
    std::fs::rename(new_member, &aside)
        .with_context(|| format!("moving the restored member to {}", aside.display()))?;
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &aside,
        nix::fcntl::AT_FDCWD,
        &member,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    )
    .with_context(|| format!("exchanging {} with {}", aside.display(), member.display()))?;
    crate::scratch::fault_point("restore-swapped");
    sync_dir(data_dir)?;
    Ok(Some(aside))
}

/// The passwd files read when the user database (NSS) does not know a user:
/// the system's own, and Flatcar's, which keeps its system users (`etcd`
/// among them) in the read-only /usr and reaches them through its NSS
/// module `usrfiles`. Our tools are linked statically (`make release`): a
/// static glibc has the `files` module built in but can load no other, so
/// without this a static tool finds no `etcd` user on Flatcar.
const PASSWD_FILES: [&str; 2] = ["/etc/passwd", "/usr/share/baselayout/passwd"];

/// The uid and gid of `name` in passwd(5) text.
fn passwd_entry(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

/// `name`'s uid and gid: from NSS when looking at this host's root, else
/// (or when NSS does not know it) from [`PASSWD_FILES`] under `root`.
fn lookup_user(root: &Path, name: &str) -> Option<(nix::unistd::Uid, nix::unistd::Gid)> {
    if root == Path::new("/") {
        // An error from NSS (a module that failed to load) is no answer:
        // the files below still are.
        if let Ok(Some(u)) = nix::unistd::User::from_name(name) {
            return Some((u.uid, u.gid));
        }
    }
    PASSWD_FILES.iter().find_map(|f| {
        let text = std::fs::read_to_string(root.join(f.trim_start_matches('/'))).ok()?;
        let (uid, gid) = passwd_entry(&text, name)?;
        Some((
            nix::unistd::Uid::from_raw(uid),
            nix::unistd::Gid::from_raw(gid),
        ))
    })
}

/// Mode 0700 on the data dir and, when an `etcd` user exists and we may,
/// ownership by it for everything below (the original did `chown -R etcd:etcd`).
/// Only in a recognised data dir ([`check_recognised`]). The data dir as
/// named is followed if it is a link; below it a link is changed itself,
/// never followed (lchown), and the walk neither descends into a link, nor
/// crosses into another filesystem, nor enters `lost+found`.
pub fn fix_ownership(data_dir: &Path, user: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    check_recognised(data_dir)?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting mode 0700 on {}", data_dir.display()))?;
    let Some((uid, gid)) = lookup_user(Path::new("/"), user) else {
        tracing::debug!("no user {user:?} here; ownership left as is");
        return Ok(());
    };
    if !nix::unistd::geteuid().is_root() {
        tracing::debug!("not root; ownership left as is");
        return Ok(());
    }
    let dev = std::fs::metadata(data_dir)
        .with_context(|| format!("reading {}", data_dir.display()))?
        .dev();
    fn lchown(p: &Path, uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> Result<()> {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            p,
            Some(uid),
            Some(gid),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .with_context(|| format!("chown {}", p.display()))
    }
    fn walk(
        dir: &Path,
        top: bool,
        dev: u64,
        ids: (nix::unistd::Uid, nix::unistd::Gid),
    ) -> Result<()> {
        for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            if top && p.file_name().is_some_and(|n| n == "lost+found") {
                continue; // the filesystem's own
            }
            let meta = std::fs::symlink_metadata(&p)
                .with_context(|| format!("reading {}", p.display()))?;
            if meta.dev() != dev {
                continue; // a mount point below: not ours to change
            }
            lchown(&p, ids.0, ids.1)?;
            if meta.is_dir() {
                walk(&p, false, dev, ids)?;
            }
        }
        Ok(())
    }
    // The data dir itself as the operator named it: a link there
    // (/var/lib/etcd2 -> /data/etcd2) is followed, once; below it, never.
    nix::unistd::chown(data_dir, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", data_dir.display()))?;
    walk(data_dir, true, dev, (uid, gid))?;
    tracing::info!("{} owned by {user}, mode 0700", data_dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_only_in_flatcars_baselayout_is_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::create_dir_all(d.path().join("usr/share/baselayout")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "core:x:500:500::/home/core:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("usr/share/baselayout/passwd"),
            "root:x:0:0:root:/root:/bin/bash\netcd:x:232:232:etcd user:/dev/null:/sbin/nologin\n",
        )
        .unwrap();
        let ids = |n| lookup_user(d.path(), n).map(|(u, g)| (u.as_raw(), g.as_raw()));
        assert_eq!(ids("etcd"), Some((232, 232)));
        assert_eq!(ids("core"), Some((500, 500)));
        assert_eq!(ids("etc"), None, "a prefix is not a name");
        assert_eq!(ids("nobody"), None);
        assert_eq!(
            passwd_entry("etcd:x:notanumber:1::/:/bin/false\n", "etcd"),
            None
        );
    }

    #[test]
    fn install_swaps_atomically_and_sets_the_old_aside() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        std::fs::create_dir_all(data.join("member")).unwrap();
        std::fs::write(data.join("member/old"), b"old").unwrap();
        let new = data.join(".restore");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("new"), b"new").unwrap();
        let aside = install_member(data, &new).unwrap().unwrap();
        assert!(data.join("member/new").exists());
        assert!(aside.join("old").exists());
        assert!(!new.exists());
        assert_eq!(set_aside_dirs(data), vec![aside]);
    }

    #[test]
    fn set_aside_and_prune() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(set_aside(d.path()).unwrap(), None);
        for i in 0..3 {
            std::fs::create_dir_all(d.path().join("member")).unwrap();
            std::fs::write(d.path().join("member/x"), [i]).unwrap();
            assert!(set_aside(d.path()).unwrap().is_some());
        }
        assert_eq!(set_aside_dirs(d.path()).len(), 3);
        assert_eq!(prune_aside(d.path(), 1, None).unwrap().len(), 2);
        assert_eq!(set_aside_dirs(d.path()).len(), 1);
    }

    #[test]
    fn prune_keeps_what_was_just_set_aside_whatever_the_names_claim() {
        let d = tempfile::tempdir().unwrap();
        for future in ["20990101T000000Z", "20990102T000000Z"] {
            std::fs::create_dir_all(d.path().join(format!("member{ASIDE_MARK}{future}"))).unwrap();
        }
        std::fs::create_dir_all(d.path().join("member")).unwrap();
        let mine = set_aside(d.path()).unwrap().unwrap();
        for keep in [0, 1] {
            prune_aside(d.path(), keep, Some(&mine)).unwrap();
            assert_eq!(set_aside_dirs(d.path()), vec![mine.clone()], "keep {keep}");
        }
    }

    #[test]
    fn only_an_etcd_data_dir_is_recognised() {
        let d = tempfile::tempdir().unwrap();
        assert!(check_recognised(d.path()).is_ok(), "empty");
        for dir in [
            "member",
            "member.wiped-20261124T000000Z",
            ".restore.1.x",
            "lost+found",
        ] {
            std::fs::create_dir(d.path().join(dir)).unwrap();
        }
        assert!(check_recognised(d.path()).is_ok());
        std::fs::write(d.path().join("notes.txt"), b"x").unwrap();
        let e = check_recognised(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("not an etcd data dir") && e.contains("notes.txt"),
            "{e}"
        );
        std::fs::remove_file(d.path().join("notes.txt")).unwrap();
        // A file named member is not etcd's member dir.
        std::fs::remove_dir(d.path().join("member")).unwrap();
        std::fs::write(d.path().join("member"), b"x").unwrap();
        assert!(check_recognised(d.path()).is_err());
        std::fs::remove_file(d.path().join("member")).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("member")).unwrap();
        let e = check_recognised(d.path()).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
    }

    #[test]
    fn a_held_db_lock_means_in_use() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("member/snap")).unwrap();
        let db = d.path().join("member/snap/db");
        std::fs::write(&db, b"").unwrap();
        assert!(ensure_unused(d.path()).is_ok());
        // Another open file description holding the lock, as etcd's bbolt does.
        let f = std::fs::File::open(&db).unwrap();
        let _held =
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
        let e = ensure_unused(d.path()).unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
    }
}

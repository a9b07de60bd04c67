//! Atomic file writes: every file we produce appears whole or not at all.
//!
//! Data is written to an anonymous `O_TMPFILE` inode in the target directory,
//! so a process killed mid-write leaves nothing behind that a later run could
//! mistake for a backup. On commit the inode is fsynced, linked as
//! `NAME.part`, renamed over `NAME`, and the directory is fsynced. Filesystems
//! without `O_TMPFILE` fall back to a named `NAME.part`, which a later run for
//! the same target removes before it starts.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::fcntl::AtFlags;

pub struct AtomicFile {
    file: File,
    target: PathBuf,
    part: PathBuf,
    /// True when `file` is a named `NAME.part` (no O_TMPFILE support).
    named: bool,
    /// True when the target is a device or FIFO (`-o /dev/null`), written in
    /// place: never replaced, never removed.
    direct: bool,
    committed: bool,
}

impl AtomicFile {
    /// Prepare to write `target` with the given mode. Fails at once (before
    /// any expensive work) when the directory is missing or not writable.
    pub fn create(target: &Path, mode: u32) -> Result<Self> {
        let target = absolute(target)?;
        // Only a regular file (or nothing) is replaced. A device or FIFO
        // (`-o /dev/null`, a named pipe) is written in place: renaming over
        // it once replaced the host's /dev/null with a file of etcd's data.
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => bail!("{} is a directory", target.display()),
            Ok(m) if !m.file_type().is_file() && !m.file_type().is_symlink() => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .with_context(|| format!("opening {}", target.display()))?;
                return Ok(AtomicFile {
                    file,
                    part: target.clone(),
                    target,
                    named: false,
                    direct: true,
                    committed: false,
                });
            }
            _ => {}
        }
        let dir = parent_dir(&target);
        let part = part_path(&target);
        // A NAME.part can only be left by a run killed between link and
        // rename, or by the named fallback; it is never a finished backup.
        match std::fs::remove_file(&part) {
            Ok(()) => tracing::info!(
                "removed stale {} left by an interrupted run",
                part.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing stale {}", part.display())),
        }
        let anon = OpenOptions::new()
            .write(true)
            .mode(mode)
            .custom_flags(nix::libc::O_TMPFILE)
            .open(&dir);
        let (file, named) = match anon {
            Ok(f) => (f, false),
            Err(e) if is_unsupported(&e) => {
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&part)
                    .with_context(|| format!("creating {}", part.display()))?;
                (f, true)
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot write into {}", dir.display()));
            }
        };
        // The mode as asked, not as the umask leaves it: textfile metrics
        // are 0644 for node_exporter even under the units' UMask=0077.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", target.display()))?;
        Ok(AtomicFile {
            file,
            target,
            part,
            named,
            direct: false,
            committed: false,
        })
    }

    /// Flush to disk and publish under the target name, replacing any
    /// previous file of that name in one atomic step.
    /// The name the file gets on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn commit(mut self) -> Result<()> {
        if self.direct {
            self.committed = true;
            return self
                .file
                .flush()
                .with_context(|| format!("writing {}", self.target.display()));
        }
        self.file
            .sync_all()
            .with_context(|| format!("syncing {}", self.target.display()))?;
        if !self.named {
            let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
            nix::unistd::linkat(
                nix::fcntl::AT_FDCWD,
                proc_path.as_str(),
                nix::fcntl::AT_FDCWD,
                &self.part,
                AtFlags::AT_SYMLINK_FOLLOW,
            )
            .with_context(|| format!("linking {}", self.part.display()))?;
        }
        std::fs::rename(&self.part, &self.target)
            .with_context(|| format!("renaming {} into place", self.part.display()))?;
        self.committed = true;
        sync_dir(&parent_dir(&self.target))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed && !self.direct && (self.named || self.part.exists()) {
            // Cleanup of an abandoned write; the error path that got us here
            // is what the operator needs to see, not this one.
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

/// Write `bytes` to `path` atomically with the given mode.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = AtomicFile::create(path, mode)?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.commit()
}

/// Directories 0700 and files 0600 below (and including) `dir`, whatever
/// the umask they were written under. Links are neither followed nor
/// changed (the archive readers refuse them anyway).
pub fn make_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = if meta.is_dir() { 0o700 } else { 0o600 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", dir.display()))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            make_private(
                &e.with_context(|| format!("listing {}", dir.display()))?
                    .path(),
            )?;
        }
    }
    Ok(())
}

/// The secret in the file `path` (its first line, without the line end),
/// named `flag` in errors: for a password the operator keeps in a file
/// rather than on a command line. Refused unless it is a regular file of
/// ours (this user's or root's) that no other user can read or write
/// (mode 0600 or stricter). Errors never show what the file holds.
pub fn read_secret(path: &Path, flag: &str) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    const MAX: u64 = 4096;
    let shown = path.display();
    let f = File::open(path).with_context(|| format!("{flag} {shown}: cannot open"))?;
    let meta = f
        .metadata()
        .with_context(|| format!("{flag} {shown}: cannot stat"))?;
    if !meta.is_file() {
        bail!("{flag} {shown}: not a regular file");
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        bail!(
            "{flag} {shown}: owned by uid {}, not by root or this user (uid {me}): refused",
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        bail!(
            "{flag} {shown}: mode {:04o} lets other users read it: chmod 600 {shown}",
            meta.mode() & 0o7777
        );
    }
    if meta.len() > MAX {
        bail!(
            "{flag} {shown}: {} bytes, more than a password ({MAX} at most)",
            meta.len()
        );
    }
    let mut text = String::new();
    f.take(MAX)
        .read_to_string(&mut text)
        .with_context(|| format!("{flag} {shown}: cannot read it as text"))?;
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if first.is_empty() {
        bail!("{flag} {shown}: its first line is empty");
    }
    Ok(first.to_owned())
}

/// fsync a directory so that renames inside it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

pub fn part_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    target.with_file_name(name)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.file_name().is_none() {
        anyhow::bail!("{} is not a file name", path.display());
    }
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EOPNOTSUPP) | Some(nix::libc::EISDIR) | Some(nix::libc::EINVAL)
    )
}

/// An exclusive lock on this host (a push's: two pushes never interleave),
/// held until dropped; `who` names the holder kind in the refusal.
pub struct HostLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

pub fn lock(path: &Path, wait: Duration, who: &str) -> Result<HostLock> {
    use nix::fcntl::{Flock, FlockArg};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let deadline = Instant::now() + wait;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut l) => {
                // Informative only: who holds it, for the next one's message.
                let _ = l.set_len(0); // a stale pid is harmless
                let _ = writeln!(&mut *l, "{}", std::process::id());
                return Ok(HostLock { _lock: l });
            }
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                if Instant::now() >= deadline {
                    let holder = std::fs::read_to_string(path).unwrap_or_default();
                    return Err(crate::exit::coded(
                        crate::exit::EXIT_LOCKED,
                        if wait.is_zero() {
                            format!(
                                "locked: another {who} (pid {}) holds {}",
                                holder.trim(),
                                path.display()
                            )
                        } else {
                            format!(
                                "locked: another {who} (pid {}) holds {}; waited {} (--lock-wait)",
                                holder.trim(),
                                path.display(),
                                humantime::format_duration(wait)
                            )
                        },
                    ));
                }
                file = f;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.tar");
        {
            let mut f = AtomicFile::create(&target, 0o600).unwrap();
            f.write_all(b"half").unwrap();
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(names.is_empty(), "left behind: {names:?}");
    }

    /// `etcd2-snapshot -o /dev/null` once replaced the host's /dev/null with
    /// a regular 0600 file holding the archive (rename over it). A target
    /// that is not a regular file is written in place, never replaced. (A
    /// private null device node stands in for /dev/null: tests run as root.)
    #[test]
    fn a_device_target_is_written_in_place_never_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let null = dir.path().join("null");
        nix::sys::stat::mknod(
            &null,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .expect("mknod (tests run as root)");
        let mut f = AtomicFile::create(&null, 0o600).unwrap();
        f.write_all(b"all of etcd's data").unwrap();
        f.commit().unwrap();
        let meta = std::fs::symlink_metadata(&null).unwrap();
        assert!(meta.file_type().is_char_device(), "{meta:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn commit_replaces_existing_file_with_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        std::fs::write(&target, b"old").unwrap();
        std::fs::write(part_path(&target), b"stale").unwrap();
        write_atomic(&target, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(!part_path(&target).exists());
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn missing_directory_fails_naming_it() {
        let err = AtomicFile::create(Path::new("/nonexistent-dir/x"), 0o600)
            .err()
            .expect("must fail");
        assert!(format!("{err:#}").contains("/nonexistent-dir"), "{err:#}");
    }

    #[test]
    fn lock_excludes_a_second_holder_with_a_clear_message() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("push.lock");
        let first = lock(&p, Duration::ZERO, "etcd2-push").unwrap();
        let e = lock(&p, Duration::from_millis(200), "etcd2-push")
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with("locked: another etcd2-push"),
            "{e}"
        );
        drop(first);
        assert!(lock(&p, Duration::ZERO, "etcd2-push").is_ok());
    }

    #[test]
    fn a_secret_file_is_read_only_when_private_and_never_shown() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pw");
        let write = |text: &str, mode: u32| {
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("s3cr3t-canary\r\nsecond line\n", 0o600);
        assert_eq!(read_secret(&p, "--password-file").unwrap(), "s3cr3t-canary");
        write("s3cr3t-canary", 0o400);
        assert_eq!(read_secret(&p, "--password-file").unwrap(), "s3cr3t-canary");
        for (text, mode, says) in [
            (
                "s3cr3t-canary\n",
                0o644,
                "mode 0644 lets other users read it",
            ),
            ("s3cr3t-canary\n", 0o620, "mode 0620"),
            ("\ns3cr3t-canary\n", 0o600, "its first line is empty"),
        ] {
            write(text, mode);
            let e = format!("{:#}", read_secret(&p, "--password-file").unwrap_err());
            assert!(
                e.starts_with(&format!("--password-file {}", p.display())),
                "{e}"
            );
            assert!(e.contains(says), "{e}");
            assert!(!e.contains("canary"), "the secret shown: {e}");
        }
        let e = format!(
            "{:#}",
            read_secret(d.path(), "--password-file").unwrap_err()
        );
        assert!(e.contains("not a regular file"), "{e}");
        let e = format!(
            "{:#}",
            read_secret(&d.path().join("none"), "--password-file").unwrap_err()
        );
        assert!(e.contains("cannot open"), "{e}");
    }
}

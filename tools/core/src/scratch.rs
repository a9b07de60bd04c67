//! Our own debris: scratch on disk and child processes.
//!
//! - Scratch names carry the creating process's pid:
//!   `<prefix>.<pid>.<random>`. A later run [`sweep`]s entries of that shape
//!   whose pid no longer runs one of our tools and that belong to our user:
//!   what a SIGKILL left behind, and nothing else (a link is removed as a
//!   link, never followed).
//! - [`Guard`] registers scratch for the SIGTERM/SIGINT/SIGHUP handler that
//!   [`install_signal_handler`] starts: it passes SIGTERM to our registered
//!   children and waits up to 10 s for them to end (rclone aborts an S3
//!   multipart upload then), runs the [`OnStop`] work registered (aborting
//!   what rclone could not), removes registered scratch, prints one error
//!   line and exits 128+signal, the code systemd expects from a stopped
//!   service.
//! - [`dies_with_us`] gives a child `PR_SET_PDEATHSIG`, so that after a
//!   SIGKILL of ours (systemd's last resort) no rclone, etcdctl or temporary
//!   etcd outlives us.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

type Hook = std::sync::Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Registry {
    paths: BTreeSet<PathBuf>,
    children: BTreeSet<u32>,
    hooks: std::collections::BTreeMap<u64, Hook>,
    next_hook: u64,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    paths: BTreeSet::new(),
    children: BTreeSet::new(),
    hooks: std::collections::BTreeMap::new(),
    next_hook: 0,
});
static TOOL: OnceLock<String> = OnceLock::new();
/// Set once the signal handler runs: the tool is ending by it.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the signal handler is ending this tool: then it, not the main
/// thread (whose work fails as its children are stopped), says why and
/// exits.
pub fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Work the signal handler does if the signal comes while this guard lives,
/// after our children ended and before it exits (aborting an unfinished
/// upload on the remote). It runs even if the guard is dropped meanwhile
/// (the main thread unwinds as its children end), so it must be harmless
/// once its work is done, and bound its own time.
pub struct OnStop(u64);

impl OnStop {
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> OnStop {
        let mut r = registry();
        r.next_hook += 1;
        let id = r.next_hook;
        r.hooks.insert(id, std::sync::Arc::new(f));
        OnStop(id)
    }
}

impl Drop for OnStop {
    fn drop(&mut self) {
        registry().hooks.remove(&self.0);
    }
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves plain data behind: keep going.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tempfile prefix for scratch named `<prefix>.<pid>.`.
pub fn prefix(prefix: &str) -> String {
    format!("{prefix}.{}.", std::process::id())
}

/// Whether `pid` runs one of our tools (`etcd2-*`) right now.
fn ours_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.starts_with("etcd2-"))
        .unwrap_or(false)
}

/// The pid in a scratch name `<prefix>.<pid>.<rest>`, if it has that shape.
fn pid_of(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
    let (pid, tail) = rest.split_once('.')?;
    (!tail.is_empty()).then_some(())?;
    pid.parse().ok()
}

/// Remove stale scratch named `<prefix>.<pid>.*` directly in `dir`: its pid
/// runs none of our tools and it belongs to our user. Returns what went.
/// A missing `dir` has nothing to sweep.
pub fn sweep(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let me = nix::unistd::geteuid().as_raw();
    let mut gone = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = pid_of(&name, prefix) else {
            continue;
        };
        if pid == std::process::id() || ours_running(pid) {
            continue;
        }
        let p = e.path();
        let meta =
            std::fs::symlink_metadata(&p).with_context(|| format!("reading {}", p.display()))?;
        if meta.uid() != me {
            continue;
        }
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed.with_context(|| format!("removing stale {}", p.display()))?;
        tracing::info!(
            "removed {} left by an interrupted run (pid {pid})",
            p.display()
        );
        gone.push(p);
    }
    Ok(gone)
}

/// Create the work dir (ETCD_BACKUP_DIR) where it is missing, private
/// (0700), naming it in the error.
pub fn work_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating work dir {} (ETCD_BACKUP_DIR)", dir.display()))
}

/// A scratch dir `<prefix>.<pid>.<random>` in `parent`: what a killed run
/// left there is swept first (before we need the space), and the dir is
/// removed when dropped, or by the signal handler if we are stopped.
pub struct Dir {
    // Declared first, dropped first: removed, then unregistered.
    dir: tempfile::TempDir,
    _guard: Guard,
}

impl Dir {
    pub fn create(parent: &Path, prefix: &str) -> Result<Dir> {
        sweep(parent, prefix)?;
        // 0700 whatever the umask: it holds a copy of etcd's data.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix(&self::prefix(prefix))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .with_context(|| format!("creating a scratch dir in {}", parent.display()))?;
        let guard = Guard::new(dir.path());
        Ok(Dir { dir, _guard: guard })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Scratch removed by the signal handler if we are stopped while it exists.
/// Dropping the guard only unregisters it; its owner removes it.
pub struct Guard(PathBuf);

impl Guard {
    pub fn new(path: &Path) -> Guard {
        registry().paths.insert(path.to_path_buf());
        Guard(path.to_path_buf())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        registry().paths.remove(&self.0);
    }
}

/// A running child the signal handler stops; unregistered on drop.
pub struct ChildGuard(u32);

impl ChildGuard {
    pub fn new(pid: u32) -> ChildGuard {
        registry().children.insert(pid);
        ChildGuard(pid)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        registry().children.remove(&self.0);
    }
}

/// Make a child get SIGKILL when we die, however we die.
#[allow(unsafe_code)]
pub fn dies_with_us(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls (prctl, getppid); it allocates
    // nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            // We may have died between fork and prctl: then do not run.
            // (from_raw_os_error does not allocate, unlike io::Error::other.)
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// How long a stopped tool waits for its children to end after passing
/// SIGTERM on (rclone aborting an upload: one request to the remote).
const CHILD_GRACE: Duration = Duration::from_secs(10);

/// Whether `pid` still runs (a zombie, exited but not reaped, does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The handler's work, on `registry` as it stood when the signal came:
/// SIGTERM to the children, `wait` for them, run the [`OnStop`] hooks
/// (a hook must be safe to run after its work finished: push's abort
/// leaves a whole object alone), remove the scratch. Returns the children signalled and what was removed.
fn stop_work(
    registry: &Mutex<Registry>,
    wait: impl FnOnce(&BTreeSet<u32>),
) -> (BTreeSet<u32>, Vec<String>) {
    let lock = || registry.lock().unwrap_or_else(|e| e.into_inner());
    // All of it as registered when the signal came: the main thread,
    // failing as its children end, unwinds and unregisters meanwhile.
    let (paths, children, hooks) = {
        let r = lock();
        let hooks: Vec<Hook> = r.hooks.values().cloned().collect();
        (r.paths.clone(), r.children.clone(), hooks)
    };
    for pid in &children {
        // Best effort: it may have exited already.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    wait(&children);
    for h in hooks {
        h();
    }
    let mut removed = Vec::new();
    for p in &paths {
        let r = if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        };
        if r.is_ok() {
            removed.push(p.display().to_string());
        }
    }
    (children, removed)
}

/// Handle SIGTERM, SIGINT and SIGHUP for `tool`: stop registered children,
/// remove registered scratch, say so in one error line, exit 128+signal.
pub fn install_signal_handler(tool: &str) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    if TOOL.set(tool.to_owned()).is_err() {
        return; // installed already
    }
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot handle SIGTERM ({e}): a stop may leave scratch behind");
            return;
        }
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
            let name = match sig {
                SIGTERM => "SIGTERM",
                SIGINT => "SIGINT",
                _ => "SIGHUP",
            };
            let (children, removed) = stop_work(&REGISTRY, |children| {
                // Give them a moment to end cleanly before we exit (our
                // death SIGKILLs them, dies_with_us): rclone aborts an S3
                // multipart upload on SIGTERM, which a SIGKILL right after
                // would cut short.
                let deadline = Instant::now() + CHILD_GRACE;
                while children.iter().any(|pid| running(*pid)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let tool = TOOL.get().map(String::as_str).unwrap_or("etcd2-backup");
            crate::journal::error_line(
                tool,
                &format!(
                    "stopped by {name}{}{}",
                    if children.is_empty() {
                        String::new()
                    } else {
                        format!("; stopped {} child process(es)", children.len())
                    },
                    if removed.is_empty() {
                        String::new()
                    } else {
                        format!("; removed {}", removed.join(", "))
                    }
                ),
            );
            std::process::exit(128 + sig);
        }
    });
}

/// The hook tests use to stop a tool at an exact point: with
/// `ETCD2_BACKUP_FAULT_PAUSE=<point>` the tool announces the point on stderr
/// and pauses (at most 60 s). Not for operators; harmless when unset.
/// With `ETCD2_BACKUP_FAULT_RESUME=<path>` the pause ends as soon as that
/// path exists, so a test can interleave two tools.
pub fn fault_point(point: &str) {
    if std::env::var("ETCD2_BACKUP_FAULT_PAUSE").as_deref() == Ok(point) {
        eprintln!("fault-point: {point}");
        let resume = std::env::var_os("ETCD2_BACKUP_FAULT_RESUME").map(PathBuf::from);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && !resume.as_deref().is_some_and(Path::exists) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The main thread sees its upload fail as soon as systemd's SIGTERM
    /// ends rclone, and unwinds (dropping its [`OnStop`]) while the handler
    /// still waits for the children: the work registered when the signal
    /// came runs all the same (seen failing: the upload was left on S3).
    #[test]
    fn work_registered_when_the_signal_came_runs_though_unregistered_meanwhile() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let reg = Mutex::new(Registry::default());
        let ran = Arc::new(AtomicBool::new(false));
        {
            let ran = Arc::clone(&ran);
            let hook: Hook = Arc::new(move || ran.store(true, Ordering::SeqCst));
            reg.lock().unwrap().hooks.insert(1, hook);
        }
        stop_work(&reg, |_| {
            reg.lock().unwrap().hooks.remove(&1);
        });
        assert!(
            ran.load(Ordering::SeqCst),
            "the abort registered at the signal did not run"
        );
    }

    #[test]
    fn a_scratch_dir_is_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let s = Dir::create(d.path(), "etcd2-test").unwrap();
        let mode = std::fs::metadata(s.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }

    #[test]
    fn a_child_runs_until_it_exits_and_a_zombie_does_not() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(running(child.id()));
        child.kill().unwrap();
        // Exited but not reaped: a zombie, no longer running.
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!running(pid), "a killed child still runs");
        child.wait().unwrap();
        assert!(!running(pid));
    }

    #[test]
    fn scratch_names_carry_the_pid() {
        let p = prefix("etcd2-snapshot");
        assert_eq!(
            pid_of(&format!("{p}abc"), "etcd2-snapshot"),
            Some(std::process::id())
        );
        assert_eq!(pid_of("etcd2-snapshot.12.x", "etcd2-snapshot"), Some(12));
        assert_eq!(pid_of("etcd2-snapshot.12.", "etcd2-snapshot"), None);
        assert_eq!(pid_of("etcd2-snapshotx.12.a", "etcd2-snapshot"), None);
        assert_eq!(pid_of("etcd2-snapshot.abc.a", "etcd2-snapshot"), None);
    }

    #[test]
    fn sweep_removes_only_stale_scratch_of_ours() {
        let d = tempfile::tempdir().unwrap();
        // A pid that runs none of our tools (pid 1 here is not etcd2-*; if
        // it were, the test would keep it and fail loudly below).
        let stale = d.path().join("etcd2-snapshot.1.abc");
        std::fs::create_dir_all(stale.join("x")).unwrap();
        let live = d.path().join(format!("{}live", prefix("etcd2-snapshot")));
        std::fs::create_dir(&live).unwrap();
        let other = d.path().join("etcd2-snapshot-not-ours");
        std::fs::create_dir(&other).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let link = d.path().join("etcd2-snapshot.1.link");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        let gone = sweep(d.path(), "etcd2-snapshot").unwrap();
        assert_eq!(gone.len(), 2, "{gone:?}");
        assert!(!stale.exists() && !link.exists());
        assert!(live.exists() && other.exists());
        assert!(outside.path().join("keep").exists(), "followed a link");
        assert!(sweep(&d.path().join("missing"), "x").unwrap().is_empty());
    }
}

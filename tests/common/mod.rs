//! Test harness: real etcd members and real rclone remotes on loopback, each
//! test in its own temp dir, every process stopped by PID on drop.

pub mod etcd;
pub mod nspawn;
pub mod package;
pub mod rclone;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The workspace's top directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// Our tools, from the one list (tools/tools.list).
pub fn tools() -> Vec<&'static str> {
    etcd2_backup::tools()
}

/// When the newest source `name` is built from was last changed: the
/// library (tools/core), the tool's own crate (for the packager: packaging/
/// and every tool), tools.list and Cargo.lock. Only .rs, Cargo.toml and
/// tools.list count: what cargo rebuilds a binary for.
fn newest_source(name: &str) -> std::time::SystemTime {
    static NEWEST: Mutex<Option<std::collections::HashMap<String, std::time::SystemTime>>> =
        Mutex::new(None);
    fn walk(dir: &Path, newest: &mut std::time::SystemTime) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                walk(&p, newest);
            } else if p.extension().is_some_and(|x| x == "rs")
                || p.file_name()
                    .is_some_and(|n| n == "Cargo.toml" || n == "tools.list")
            {
                if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                    *newest = (*newest).max(m);
                }
            }
        }
    }
    let mut guard = NEWEST.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(Default::default);
    *cache.entry(name.to_owned()).or_insert_with(|| {
        let ws = workspace();
        let mut newest = std::fs::metadata(ws.join("Cargo.lock"))
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        let dirs: Vec<PathBuf> = if ws.join("tools").join(name).is_dir() {
            vec![
                ws.join("tools/core"),
                ws.join("tools").join(name),
                ws.join("tools/tools.list"),
            ]
        } else {
            // The packaging crate: the binary's own source (main.rs for the
            // packager, src/bin/NAME.rs for the others) and the tools it
            // links. Not packaging/Cargo.toml: cargo rightly leaves the
            // binaries alone when only its metadata (the .deb's) changes,
            // which would make them look stale forever.
            let own = ws.join("packaging/src/bin").join(format!("{name}.rs"));
            let own = if own.is_file() {
                own
            } else {
                ws.join("packaging/src/main.rs")
            };
            vec![own, ws.join("tools")]
        };
        for d in dirs {
            if d.is_file() {
                if let Ok(m) = std::fs::metadata(&d).and_then(|m| m.modified()) {
                    newest = newest.max(m);
                }
            } else {
                walk(&d, &mut newest);
            }
        }
        newest
    })
}

/// Path of one of our built binaries; refuses one older than the sources
/// (`cargo test` alone does not rebuild other packages' binaries: run
/// `cargo build --workspace` first, as `make test` does).
pub fn bin(name: &str) -> PathBuf {
    fresh(&profile_dir().join(name), "cargo build --workspace", name)
}

/// The target triple of the static builds (`make build`, `make release`).
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Path of one of our binaries as linked statically by `make build`
/// (`RUSTFLAGS='-C target-feature=+crt-static' cargo build --target
/// x86_64-unknown-linux-gnu`, same profile as this test binary); refuses a
/// missing or stale one like [`bin`].
pub fn static_bin(name: &str) -> PathBuf {
    let dir = profile_dir();
    let profile = dir.file_name().expect("profile dir").to_owned();
    let target = dir.parent().expect("target dir");
    fresh(
        &target.join(STATIC_TARGET).join(profile).join(name),
        "make build (it also builds the static tools)",
        name,
    )
}

/// cargo's output dir of this test binary's profile (target/debug).
fn profile_dir() -> PathBuf {
    let mut dir = std::env::current_exe().expect("current_exe");
    dir.pop(); // deps/
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn fresh(p: &Path, build: &str, name: &str) -> PathBuf {
    let built = std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is not built: run `{build}` first (make test does)",
                p.display()
            )
        });
    assert!(
        built >= newest_source(name),
        "{} is older than the sources: run `{build}` first (make test does); \
         testing a stale binary proves nothing",
        p.display()
    );
    p.to_path_buf()
}

/// A command for one of our tools with a clean environment: no inherited
/// etcd/rclone/our variables can leak in from the developer's shell.
pub fn tool(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("ETCD") || k.starts_with("RCLONE") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    // Never the settings file of the host this runs on.
    c.env("ETCD2_BACKUP_ENV_FILE", "");
    c
}

/// `etcd2-restore` of `archive` into `data` as the single member r1 (peer
/// URL 127.0.0.1:2380, never started by the tool): the restore most tests
/// of the data dir's safety need; add flags to taste.
pub fn restore_into(data: &Path, archive: &Path) -> Command {
    let mut c = tool("etcd2-restore");
    c.arg("--data-dir")
        .arg(data)
        .args(["--name", "r1", "--peer-urls", "http://127.0.0.1:2380"])
        .arg(archive);
    c
}

/// What a joiner's drop-in runs after etcd starts: `etcd2-health` promoting
/// the learner `name` until `members` members are healthy voters, bounded
/// at 60 s. `health` is the etcd2-health command (from [`tool`] or one with
/// another etcd on its PATH).
pub fn promote(mut health: Command, endpoint: &str, name: &str, members: usize) -> Command {
    health
        .args(["--endpoints", endpoint, "--promote", name, "--members"])
        .arg(members.to_string())
        .args(["--wait", "60s"]);
    health
}

/// [`tool`] with the etcd build in `bin` first on PATH (None: the system's).
pub fn tool_on(name: &str, bin: Option<&Path>) -> Command {
    let mut c = tool(name);
    if let Some(b) = bin {
        c.env("PATH", etcd::path_with(b));
    }
    c
}

/// Fail loudly (never skip) when a real dependency is missing.
pub fn require(program: &str, package: &str) -> PathBuf {
    which(program).unwrap_or_else(|| {
        panic!("{program} not found in PATH: install the Debian package {package} (make test installs it)")
    })
}

/// A program from PyPI, installed by `scripts/ensure-deps` into the
/// project's venv (build/venv), or else found in PATH. Fails loudly.
pub fn require_pypi(program: &str, package: &str) -> PathBuf {
    let venv = workspace().join("build/venv/bin").join(program);
    if venv.is_file() {
        return venv;
    }
    which(program).unwrap_or_else(|| {
        panic!(
            "{program} not found in build/venv/bin nor in PATH: run scripts/ensure-deps \
             (make test does), which pip-installs {package:?} into build/venv"
        )
    })
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free loopback port not handed out before in this test process.
pub fn free_port() -> u16 {
    let mut guard = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let used = guard.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        if used.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// Poll `f` until it returns Some, at most `limit`; panic naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run a command and return its output, with stderr echoed for debugging.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.stderr.is_empty() {
        eprintln!(
            "--- stderr of {:?}:\n{}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Run and require success.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Assert the failure shape every tool promises: exit 1 and a single
/// `tool: error: ...` line that contains `needle`. Returns the line.
pub fn assert_fails_with(out: &Output, tool: &str, needle: &str) -> String {
    assert_fails_with_code(out, tool, 1, needle)
}

/// [`assert_fails_with`] for a failure with its own exit code (stale 3, no
/// backup 4, unreachable 5, locked 6, refused 7).
pub fn assert_fails_with_code(out: &Output, tool: &str, code: i32, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}, stderr: {err}"
    );
    let prefix = format!("{tool}: error: ");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(lines.len(), 1, "expected one error line, stderr: {err}");
    assert!(
        lines[0].contains(needle),
        "error line lacks {needle:?}: {}",
        lines[0]
    );
    lines[0].to_owned()
}

/// Entries of a directory, sorted, as names.
/// The manifest of a zstd archive, read with the real tar.
pub fn manifest_of(archive: &Path) -> serde_json::Value {
    let out = run_ok(
        Command::new("tar")
            .arg("--zstd")
            .arg("-xOf")
            .arg(archive)
            .arg("manifest.json"),
    );
    serde_json::from_slice(&out.stdout).expect("manifest.json is JSON")
}

pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The environment our tools get in tests: a remote, a machine-id, a work
/// dir and lock of this test's own, and rclone retries kept short.
pub struct Env {
    pub work: PathBuf,
}

impl Env {
    pub fn new(base: &Path) -> Env {
        let work = base.join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        Env { work }
    }

    pub fn with(&self, mut cmd: Command, remote: &rclone::Remote, mid: &str) -> Command {
        remote.apply(&mut cmd);
        cmd.env("ETCD2_BACKUP_MACHINE_ID", mid)
            .env("ETCD_BACKUP_DIR", &self.work)
            .env("ETCD2_BACKUP_LOCK", self.work.join("push.lock"))
            .env("ETCD2_BACKUP_WATCH_LOCK", self.work.join("watch.lock"))
            .env("ETCD2_BACKUP_RCLONE_FLAGS", rclone::QUICK_FAIL);
        cmd
    }

    pub fn push(&self, remote: &rclone::Remote, mid: &str) -> Command {
        self.with(tool("etcd2-push"), remote, mid)
    }

    pub fn fetch(&self, remote: &rclone::Remote, mid: &str) -> Command {
        self.with(tool("etcd2-fetch"), remote, mid)
    }

    /// A published backup, the arrange of most remote tests: member 0's v3
    /// snapshot written to a file in the cluster's dir and pushed to
    /// `remote` as machine `mid`, both required to succeed.
    pub fn publish(&self, c: &etcd::Cluster, remote: &rclone::Remote, mid: &str) -> Published {
        let archive = c.path().join("published.tar.zst");
        c.snapshot_to(0, "v3", &archive);
        run_ok(self.push(remote, mid).arg(&archive));
        let generation = remote
            .pointer(mid)
            .expect("a pointer after a push that succeeded")
            .generation;
        Published {
            archive,
            generation,
        }
    }
}

/// The arrange most remote tests start from: a one-member cluster, a
/// remote of `backend` and our environment, all in the cluster's temp dir.
pub fn setup(backend: rclone::Backend) -> (etcd::Cluster, rclone::Remote, Env) {
    let c = etcd::Cluster::start(1);
    let remote = backend.start(c.path());
    let env = Env::new(c.path());
    (c, remote, env)
}

/// What [`Env::publish`] published.
pub struct Published {
    /// The archive pushed, still on local disk (to push it again).
    pub archive: PathBuf,
    /// Its generation id, which LATEST.json names.
    pub generation: String,
}

/// `producer | consumer`: the producer required to succeed, the
/// consumer's output returned whatever its exit.
pub fn pipe(mut producer: Command, consumer: &mut Command) -> Output {
    let mut p = producer
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {producer:?}: {e}"));
    consumer.stdin(p.stdout.take().expect("piped stdout"));
    let out = run(consumer);
    assert!(p.wait().expect("producer").success(), "{producer:?} failed");
    out
}

/// `producer | consumer`, both required to succeed (the shell's pipefail).
pub fn pipe_ok(producer: Command, mut consumer: Command) -> Output {
    let out = pipe(producer, &mut consumer);
    assert!(
        out.status.success(),
        "{consumer:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Start `cmd` with `ETCD2_BACKUP_FAULT_PAUSE=point` and return once it has
/// announced that it stopped there (stderr is drained in the background).
pub fn spawn_at_fault(cmd: &mut Command, point: &str) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .env("ETCD2_BACKUP_FAULT_PAUSE", point)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let want = format!("fault-point: {point}");
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(&want) => break,
            Some(Ok(l)) => seen.push(l),
            _ => panic!(
                "{cmd:?} ended before reaching {point}:\n{}",
                seen.join("\n")
            ),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// PIDs of processes whose command line mentions `needle`.
pub fn procs_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| *pid != me)
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains(needle))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A tmpfs of `bytes` mounted on `dir` (created), unmounted on drop: a small
/// disk that debris would fill.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, bytes: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("tmpfs mount point");
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "mount -t tmpfs on {} failed (tests run as root)",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a test that failed may still hold a file open in it.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

//! Real systemd, in `systemd-nspawn` containers booted from the host's own
//! root (recipe in shared/TESTING.md): a fresh tmpfs /etc and /var each, so
//! each has its own machine-id, sharing the host's loopback network.
//! Commands run inside through `nsenter` into the container's PID 1. Every
//! container is stopped by the PID of the nspawn we started, also on panic.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{require, wait_for};

pub struct Container {
    pub name: String,
    pub log: PathBuf,
    nspawn: Option<Child>,
    /// PID (on the host) of the container's systemd.
    leader: u32,
    /// The cgroups we made for it.
    cgroups: Vec<PathBuf>,
}

/// The cgroup hierarchies systemd tracks its units in (v1 named, v2).
const CGROUP_TREES: [&str; 3] = [
    "/sys/fs/cgroup/systemd",
    "/sys/fs/cgroup/unified",
    "/sys/fs/cgroup",
];

/// rmdir a cgroup and everything systemd left below it (empty once the
/// container is gone); errors are ignored, it is only tidying.
fn remove_cgroup(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The child of `pid` whose PID inside its namespace is 1.
fn find_leader(pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
        .find(|c| {
            std::fs::read_to_string(format!("/proc/{c}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("NSpid:"))
                        .map(str::to_owned)
                })
                .is_some_and(|l| l.split_whitespace().last() == Some("1"))
        })
}

impl Container {
    /// Boot a container named `name` with `binds` (host path, container
    /// path, read-only?). Waits (bounded) until its systemd is up.
    pub fn boot(name: &str, binds: &[(PathBuf, &str, bool)], log_dir: &Path) -> Container {
        // Debian's own etcd.service must not grab 2379 on the shared network.
        Container::boot_with(name, binds, &[], &["systemd.mask=etcd.service"], log_dir)
    }

    /// [`Container::boot`] with more nspawn options (`--overlay=...`,
    /// `--private-network`) and kernel command line arguments of our choice
    /// (no etcd.service mask unless given).
    pub fn boot_with(
        name: &str,
        binds: &[(PathBuf, &str, bool)],
        nspawn_args: &[String],
        kernel_args: &[&str],
        log_dir: &Path,
    ) -> Container {
        require("systemd-nspawn", "systemd-container");
        require("nsenter", "util-linux");
        let log = log_dir.join(format!("{name}.console.log"));
        let out = File::create(&log).expect("console log");
        // Without a host systemd, nspawn --keep-unit puts every container's
        // systemd in <our cgroup>/payload: three containers would then manage
        // the same system.slice/etcd2.service cgroup and stop each other's
        // etcd (seen: exit 219/CGROUP). So each nspawn starts in a cgroup of
        // its own, made here and removed in stop().
        let cgroups: Vec<PathBuf> = CGROUP_TREES
            .iter()
            .map(Path::new)
            .filter(|t| t.join("cgroup.procs").is_file())
            .map(|t| t.join(format!("etcd2-backup-test-{name}")))
            .collect();
        let mut script = String::new();
        for cg in &cgroups {
            std::fs::create_dir_all(cg)
                .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", cg.display()));
            script.push_str(&format!("echo $$ > {}/cgroup.procs && ", cg.display()));
        }
        script.push_str("exec systemd-nspawn \"$@\"");
        let mut c = Command::new("sh");
        c.args(["-c", &script, "sh"]);
        c.args([
            "--quiet",
            "--register=no",
            "--keep-unit",
            "--directory=/",
            "--volatile=yes",
            "--boot",
        ])
        .arg(format!("--machine={name}"));
        for (host, inside, ro) in binds {
            let flag = if *ro { "--bind-ro" } else { "--bind" };
            c.arg(format!("{flag}={}:{inside}", host.display()));
        }
        c.args(nspawn_args);
        // No first-boot prompt.
        c.arg("systemd.firstboot=off")
            .args(kernel_args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out);
        let child = c.spawn().expect("spawn systemd-nspawn");
        let pid = child.id();
        let mut ct = Container {
            name: name.to_owned(),
            log,
            nspawn: Some(child),
            leader: 0,
            cgroups,
        };
        ct.leader = wait_for(
            &format!("{name}: the container's PID 1"),
            Duration::from_secs(30),
            || find_leader(pid),
        );
        // Bounded wait for the boot to finish; on timeout, say where it was.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let o = ct.exec(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if matches!(state.as_str(), "running" | "degraded") {
                break;
            }
            if Instant::now() > deadline {
                let jobs = ct.exec(&["systemctl", "list-jobs", "--no-pager"]);
                let console = std::fs::read_to_string(&ct.log).unwrap_or_default();
                let lines: Vec<&str> = console.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                panic!(
                    "{name}: systemd did not finish booting in 60 s (state {state:?}, {}); jobs:\n{}\nconsole:\n{tail}",
                    String::from_utf8_lossy(&o.stderr).trim(),
                    String::from_utf8_lossy(&jobs.stdout),
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        ct
    }

    /// Run a command inside the container.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg("--target")
            .arg(self.leader.to_string())
            .arg("--all")
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// `systemctl status` and the journal of these units inside the container.
    pub fn journal(&self, units: &[&str]) -> String {
        let mut st = vec!["systemctl", "status", "--no-pager", "--lines=0"];
        st.extend_from_slice(units);
        let status = self.exec(&st);
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&status.stdout),
            self.journal_only(units)
        )
    }

    fn journal_only(&self, units: &[&str]) -> String {
        let mut args = vec![
            "journalctl",
            "--no-pager",
            "-o",
            "short-monotonic",
            "-n",
            "200",
        ];
        for u in units {
            args.extend(["-u", u]);
        }
        let o = self.exec(&args);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    /// `systemctl ARGS` as an operator types it; on failure, panic with the
    /// journal of the units named (and etcd2's) so the cause is in the output.
    pub fn systemctl(&self, args: &[&str]) {
        if let Err(e) = self.try_systemctl(args) {
            panic!("{e}");
        }
    }

    pub fn try_systemctl(&self, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["systemctl"];
        full.extend_from_slice(args);
        let o = self.exec(&full);
        if o.status.success() {
            return Ok(());
        }
        let mut units: Vec<&str> = args.iter().copied().filter(|a| a.contains('.')).collect();
        if !units.contains(&"etcd2.service") {
            units.push("etcd2.service");
        }
        Err(format!(
            "{}: `systemctl {}` failed ({}): {}\n--- journal of {} in {}:\n{}",
            self.name,
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim(),
            units.join(", "),
            self.name,
            self.journal(&units)
        ))
    }

    /// Poll `f` (bounded); on timeout panic with the journal of `units`.
    pub fn wait_until<T>(
        &self,
        what: &str,
        limit: Duration,
        units: &[&str],
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: timed out after {limit:?} waiting for {what}\n--- journal of {}:\n{}",
                    self.name,
                    units.join(", "),
                    self.journal(units)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `systemd-analyze verify` of installed units, as systemd itself reads
    /// them inside the container; panics with what it said.
    pub fn verify_units(&self, units: &[&str]) {
        let mut args = vec!["systemd-analyze", "verify", "--man=no"];
        args.extend_from_slice(units);
        let o = self.exec(&args);
        assert!(
            o.status.success(),
            "{}: systemd-analyze verify: {}",
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// A file's contents inside the container.
    pub fn read(&self, path: &str) -> String {
        let o = self.exec(&["cat", path]);
        assert!(
            o.status.success(),
            "{}: cat {path}: {}",
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Power off: SIGTERM to our nspawn (systemd shuts down), bounded; then
    /// SIGKILL to the container's PID 1 (ends its PID namespace) and nspawn.
    pub fn stop(&mut self) {
        self.power_off();
        // The kernel empties the cgroups a moment after nspawn exits.
        let deadline = Instant::now() + Duration::from_secs(5);
        for cg in &self.cgroups {
            while cg.exists() && Instant::now() < deadline {
                remove_cgroup(cg);
                if cg.exists() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn power_off(&mut self) {
        let Some(mut child) = self.nspawn.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{}: did not shut down in 30 s; killing it", self.name);
        if self.leader != 0 {
            let _ = kill(Pid::from_raw(self.leader as i32), Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.stop();
    }
}

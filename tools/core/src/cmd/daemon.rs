//! Long-lived children: started, watched and stopped, not waited for.

use std::io;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{format_tail, guard_children, human_duration, redact, Invocation};

/// A long-lived child (`rclone rcd`): its stdout and stderr merged and read
/// line by line by a thread, the last lines kept (redacted) for errors. It
/// is killed on drop, stopped by the signal handler, and dies with us.
pub struct Daemon {
    handle: std::sync::Arc<duct::ReaderHandle>,
    lines: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
    tail: Tail,
    display: String,
    _running: Vec<crate::scratch::ChildGuard>,
}

/// How many of a daemon's last lines are kept for errors.
const TAIL_LINES: usize = 8;

/// A daemon's last lines (redacted), shared with what outlives a borrow of
/// it (a download's error names what rclone logged meanwhile).
#[derive(Clone, Default)]
pub struct Tail(std::sync::Arc<std::sync::Mutex<TailBuf>>);

#[derive(Default)]
struct TailBuf {
    lines: std::collections::VecDeque<String>,
    /// Lines seen in all, so that a mark can tell the newer ones.
    seen: u64,
}

impl Tail {
    fn push(&self, line: String) {
        if let Ok(mut t) = self.0.lock() {
            if t.lines.len() >= TAIL_LINES {
                t.lines.pop_front();
            }
            t.lines.push_back(line);
            t.seen += 1;
        }
    }

    /// Where the output stands now, for [`Tail::since`].
    pub fn mark(&self) -> u64 {
        self.0.lock().map(|t| t.seen).unwrap_or_default()
    }

    /// Wait until a line came after `mark`, at most `timeout`.
    pub fn wait_since(&self, mark: u64, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.mark() == mark && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The kept lines printed after `mark`, formatted for an error (empty
    /// when there are none).
    pub fn since(&self, mark: u64) -> String {
        let lines: Vec<String> = self
            .0
            .lock()
            .map(|t| {
                let newer = t.seen.saturating_sub(mark).min(t.lines.len() as u64) as usize;
                t.lines
                    .iter()
                    .skip(t.lines.len() - newer)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        format_tail(&lines.join("\n"), "")
    }
}

impl Invocation {
    pub fn daemon(&self) -> Result<Daemon> {
        use std::io::BufRead;
        tracing::debug!("starting: {}", self.display());
        let handle = std::sync::Arc::new(
            self.bare_expression()?
                .stdin_null()
                .stderr_to_stdout()
                .reader()
                .with_context(|| format!("starting {}", self.program.path.display()))?,
        );
        let running = guard_children(handle.pids());
        let (tx, rx) = std::sync::mpsc::channel();
        let tail = Tail::default();
        let (h, t) = (std::sync::Arc::clone(&handle), tail.clone());
        std::thread::spawn(move || {
            for line in io::BufReader::new(&*h).lines() {
                let Ok(line) = line else { return };
                let line = redact(&line).into_owned();
                tracing::trace!("rclone: {line}");
                t.push(line.clone());
                let _ = tx.send(line); // nobody may be waiting any more
            }
        });
        Ok(Daemon {
            handle,
            lines: std::sync::Mutex::new(rx),
            tail,
            display: self.display(),
            _running: running,
        })
    }
}

impl Daemon {
    /// The first line of output for which `found` gives a value, waiting at
    /// most `timeout`; an error with the output so far when the child exits
    /// or the time is up.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        found: impl Fn(&str) -> Option<T>,
    ) -> Result<T> {
        let deadline = std::time::Instant::now() + timeout;
        let rx = self
            .lines
            .lock()
            .map_err(|_| anyhow::anyhow!("internal: daemon output lock poisoned"))?;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(v) = found(&line) {
                        return Ok(v);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => bail!(
                    "`{}` did not say {what} within {}{}",
                    self.display,
                    human_duration(timeout),
                    self.tail()
                ),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("`{}` exited before {what}{}", self.display, self.tail())
                }
            }
        }
    }

    /// The last lines the child printed (redacted), formatted for an error.
    pub fn tail(&self) -> String {
        self.tail.since(0)
    }

    /// Its last lines, shared.
    pub fn tail_handle(&self) -> Tail {
        self.tail.clone()
    }

    pub fn display(&self) -> &str {
        &self.display
    }
}

impl Daemon {
    /// Stop it as an operator would: SIGTERM, which lets rclone cancel what
    /// it has in flight (an S3 multipart upload is aborted, not left), then
    /// SIGKILL if it has not exited within `grace`.
    pub fn stop(&self, grace: Duration) {
        for pid in self.handle.pids() {
            // Best effort: it may have exited already.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = std::time::Instant::now() + grace;
        // Ok(None): still running; Ok(Some) or an error: it has exited.
        while matches!(self.handle.try_wait(), Ok(None)) {
            if std::time::Instant::now() >= deadline {
                tracing::debug!(
                    "`{}` still running {} after SIGTERM",
                    self.display,
                    human_duration(grace)
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.handle.kill(); // a no-op once it has exited
    }
}

/// How long a dropped daemon is waited for after its SIGKILL.
const REAP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for Daemon {
    /// Killed, and reaped before we go on (bounded): a tool that exits
    /// right after leaves nothing of its own behind, not even a dying
    /// process for systemd to find in the unit (seen: "Killing process N
    /// (rclone) with signal SIGKILL" after a push).
    fn drop(&mut self) {
        let _ = self.handle.kill(); // best effort: it may have exited
        let deadline = std::time::Instant::now() + REAP_WAIT;
        while matches!(self.handle.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// A long-lived child whose stdout and stderr go to a log file (`member`'s
/// private etcd), stopped by its owner. Started as every child is: the
/// invocation's environment, a parent-death signal, registered with the
/// signal handler until it is reaped. Its deadline does not apply.
pub struct Logged {
    handle: duct::Handle,
    running: Vec<crate::scratch::ChildGuard>,
}

impl Invocation {
    /// Start the child, stdin from /dev/null, stdout and stderr into `log`.
    pub fn spawn_logged(&self, log: std::fs::File) -> Result<Logged> {
        tracing::debug!("starting: {}", self.display());
        let out = log.try_clone().context("duplicating a log file")?;
        let handle = self
            .bare_expression()?
            .stdin_null()
            .stdout_file(out)
            .stderr_file(log)
            .start()
            .with_context(|| format!("starting {}", self.program.path.display()))?;
        let running = guard_children(handle.pids());
        Ok(Logged { handle, running })
    }
}

impl Logged {
    pub fn pid(&self) -> u32 {
        self.handle.pids().first().copied().unwrap_or_default()
    }

    /// Its exit status, once it has exited (it is reaped then, and the
    /// signal handler forgets its pid, which may be reused).
    pub fn try_wait(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        let status = self.handle.try_wait()?.map(|o| o.status);
        if status.is_some() {
            self.running.clear();
        }
        Ok(status)
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) -> io::Result<std::process::ExitStatus> {
        // It may have exited already: the wait says how.
        let _ = self.handle.kill();
        let status = self.handle.wait()?.status;
        self.running.clear();
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::Program;
    use std::time::{Duration, Instant};

    /// An error names what the daemon said after its mark, not before.
    #[test]
    fn a_tail_since_a_mark_holds_only_the_newer_lines() {
        let t = super::Tail::default();
        t.push("NOTICE: Serving remote control".into());
        let mark = t.mark();
        assert_eq!(t.since(mark), "");
        t.push("ERROR : x.bin: failed to authenticate decrypted block".into());
        assert_eq!(
            t.since(mark),
            ": ERROR : x.bin: failed to authenticate decrypted block"
        );
        for k in 0..20 {
            t.push(format!("line {k}"));
        }
        // At most the kept lines, the newest last.
        assert!(t.since(mark).ends_with("line 19"), "{}", t.since(mark));
        assert!(!t.since(mark).contains("authenticate"));
    }

    #[test]
    fn a_logged_child_logs_gets_the_scrubbed_environment_and_is_reaped() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        let sh = Program::find("sh", None, "dash").unwrap();
        // cargo runs tests with CARGO_PKG_NAME set; scrubbed here.
        let mut child = sh
            .command([
                "-c",
                "echo out; echo err >&2; echo \"${CARGO_PKG_NAME:-scrubbed}\"",
            ])
            .env_remove_prefix("CARGO_PKG_")
            .spawn_logged(std::fs::File::create(&log).unwrap())
            .unwrap();
        assert!(child.pid() > 0 && !child.running.is_empty());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "sh did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "out\nerr\nscrubbed\n"
        );
        assert!(child.running.is_empty(), "a reaped child stays registered");

        let mut sleeper = sh
            .command(["-c", "exec sleep 30"])
            .spawn_logged(std::fs::File::create(d.path().join("log2")).unwrap())
            .unwrap();
        assert!(!sleeper.kill().unwrap().success());
        assert!(sleeper.running.is_empty());
    }
}

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
    tail: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
    display: String,
    _running: Vec<crate::scratch::ChildGuard>,
}

impl Invocation {
    pub fn daemon(&self) -> Result<Daemon> {
        use std::io::BufRead;
        tracing::debug!("starting: {}", self.display());
        let handle = std::sync::Arc::new(
            self.bare_expression()
                .stdin_null()
                .stderr_to_stdout()
                .reader()
                .with_context(|| format!("starting {}", self.program.path.display()))?,
        );
        let running = guard_children(handle.pids());
        let (tx, rx) = std::sync::mpsc::channel();
        let tail = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let (h, t) = (std::sync::Arc::clone(&handle), std::sync::Arc::clone(&tail));
        std::thread::spawn(move || {
            for line in io::BufReader::new(&*h).lines() {
                let Ok(line) = line else { return };
                let line = redact(&line).into_owned();
                tracing::trace!("rclone: {line}");
                if let Ok(mut t) = t.lock() {
                    if t.len() >= 8 {
                        t.pop_front();
                    }
                    t.push_back(line.clone());
                }
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
        let lines: Vec<String> = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        format_tail(&lines.join("\n"), "")
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

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.handle.kill(); // best effort: it may have exited
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
            .bare_expression()
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

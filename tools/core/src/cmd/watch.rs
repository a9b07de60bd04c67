//! Children whose data streams through us: fed through a pipe to their
//! stdin ([`ChildWriter`]) or read from their stdout ([`StreamReader`]),
//! each bounded by a watchdog that kills the child at its deadline, or when
//! no data moved for its stall bound, and says which.

use std::io;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{
    bound_text, describe_status, format_tail, guard_children, human_duration, Captured,
    ChildFailure, Invocation, StderrTail,
};

impl Invocation {
    /// Start the child with a pipe to its stdin, for streaming data into it
    /// (`rclone rcat`). Its stdout and stderr are captured. A watchdog kills
    /// it at the deadline, or when a write of ours made no progress for the
    /// stall bound (a child that stopped reading), which also frees that
    /// blocked write.
    pub fn spawn_writer(&self) -> Result<ChildWriter> {
        tracing::debug!("running: {}", self.display());
        let (reader, writer) = io::pipe().context("creating a pipe")?;
        let (stderr, tail) = StderrTail::pipe()?;
        let handle = self
            .bare_expression()?
            .stdin_file(reader)
            .stdout_capture()
            .stderr_file(stderr)
            .start()
            .with_context(|| format!("starting {}", self.program.path.display()))?;
        let running = guard_children(handle.pids());
        let handle = std::sync::Arc::new(handle);
        let h = std::sync::Arc::clone(&handle);
        let watchdog = Watchdog::start(self, move || {
            let _ = h.kill(); // best effort: it may have just exited
        });
        Ok(ChildWriter {
            handle,
            stderr: tail,
            stdin: Some(writer),
            display: self.display(),
            watchdog,
            _running: running,
        })
    }
}

/// Kills a streaming child at its deadline or when no data moved through us
/// for its stall bound, and remembers which, for the error.
struct Watchdog {
    /// When data last moved; None once the stall clock is off.
    progress: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    fired: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// Dropping it stops the thread.
    _stop: std::sync::mpsc::Sender<()>,
}

impl Watchdog {
    fn start(inv: &Invocation, kill: impl Fn() + Send + 'static) -> Watchdog {
        use std::sync::{mpsc, Arc, Mutex};
        use std::time::Instant;
        let started = Instant::now();
        let progress = Arc::new(Mutex::new(Some(started)));
        let fired = Arc::new(Mutex::new(None::<String>));
        let (stop, rx) = mpsc::channel::<()>();
        let (p, f) = (Arc::clone(&progress), Arc::clone(&fired));
        let (total, total_name, stall) = (inv.timeout, inv.timeout_name, inv.stall);
        let display = inv.display();
        std::thread::spawn(move || loop {
            // Woken every 200 ms, or at once when the stream is done.
            if !matches!(
                rx.recv_timeout(Duration::from_millis(200)),
                Err(mpsc::RecvTimeoutError::Timeout)
            ) {
                return;
            }
            let idle = p
                .lock()
                .ok()
                .and_then(|t| t.map(|t| t.elapsed()))
                .unwrap_or_default();
            let why = if started.elapsed() >= total {
                Some(format!(
                    "`{display}` did not finish {} and was killed",
                    bound_text(total, total_name)
                ))
            } else {
                stall
                    .filter(|(limit, _)| idle >= *limit)
                    .map(|(limit, name)| {
                        format!(
                            "`{display}` moved no data for {} ({name}) and was killed",
                            human_duration(limit)
                        )
                    })
            };
            if let Some(why) = why {
                if let Ok(mut slot) = f.lock() {
                    *slot = Some(why);
                }
                kill();
                return;
            }
        });
        Watchdog {
            progress,
            fired,
            _stop: stop,
        }
    }

    /// Data moved: the stall clock restarts.
    fn progressed(&self) {
        if let Ok(mut t) = self.progress.lock() {
            if t.is_some() {
                *t = Some(std::time::Instant::now());
            }
        }
    }

    /// No more data passes through us: from here on only the deadline (and
    /// the child's own timeouts) apply.
    fn stop_stall_clock(&self) {
        if let Ok(mut t) = self.progress.lock() {
            *t = None;
        }
    }

    /// Why the watchdog killed the child, if it did.
    fn fired(&self) -> Option<String> {
        self.fired.lock().ok().and_then(|f| f.clone())
    }
}

/// A running child fed through a pipe to its stdin (see
/// [`Invocation::spawn_writer`]). Dropping it without `finish` kills the
/// child, so a failed producer never lets it commit a truncated stream as if
/// it were whole.
pub struct ChildWriter {
    handle: std::sync::Arc<duct::Handle>,
    stderr: StderrTail,
    stdin: Option<io::PipeWriter>,
    display: String,
    watchdog: Watchdog,
    _running: Vec<crate::scratch::ChildGuard>,
}

impl ChildWriter {
    /// Close the child's stdin (end of data) and wait for it (the watchdog
    /// still bounds the wait); fails with its command line and stderr tail.
    pub fn finish(mut self) -> Result<Captured> {
        drop(self.stdin.take());
        // All data is handed over; rclone may still be sending what it
        // buffered (up to --buffer-size) at the link's pace. From here on its
        // own idle timeout and our total deadline bound it, not our stall
        // clock, which sees no data move.
        self.watchdog.stop_stall_clock();
        let output = self
            .handle
            .wait()
            .with_context(|| format!("waiting for {}", self.display))?;
        // Reaped: its pid may be reused; the signal handler forgets it.
        self._running.clear();
        if let Some(why) = self.watchdog.fired() {
            bail!("{why}");
        }
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = self.stderr.text();
        if !output.status.success() {
            bail!(
                "`{}` failed ({}){}",
                self.display,
                describe_status(output.status),
                format_tail(&stderr, &stdout)
            );
        }
        Ok(Captured { stdout, stderr })
    }

    /// Why a write failed: the watchdog, or the child's own failure when it
    /// has exited.
    fn write_failure(&self, e: io::Error) -> io::Error {
        if let Some(why) = self.watchdog.fired() {
            return io::Error::other(why);
        }
        match self.handle.try_wait() {
            Ok(Some(out)) => io::Error::other(format!(
                "`{}` stopped reading ({}){}",
                self.display,
                describe_status(out.status),
                format_tail(&self.stderr.text(), "")
            )),
            _ => e,
        }
    }
}

impl io::Write for ChildWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(why) = self.watchdog.fired() {
            return Err(io::Error::other(why));
        }
        let w = self.stdin.as_mut().ok_or(io::ErrorKind::BrokenPipe)?;
        match w.write(buf) {
            Ok(n) => {
                self.watchdog.progressed();
                Ok(n)
            }
            Err(e) => Err(self.write_failure(e)),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ChildWriter {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            // Not finished: kill before closing stdin, so the child never
            // sees a clean end of a partial stream.
            let _ = self.handle.kill(); // no-op when it already exited
        }
    }
}

/// A child's stdout as a stream, bounded by a watchdog (deadline and stall)
/// that kills the child. At EOF the exit status is checked and a failure is
/// reported with the command line and the tail of stderr.
pub struct StreamReader {
    handle: std::sync::Arc<duct::ReaderHandle>,
    stderr: StderrTail,
    display: String,
    watchdog: Watchdog,
    _running: Vec<crate::scratch::ChildGuard>,
}

impl Invocation {
    pub fn stream(&self) -> Result<StreamReader> {
        tracing::debug!("streaming: {}", self.display());
        let (stderr, tail) = StderrTail::pipe()?;
        let handle = std::sync::Arc::new(
            self.expression()?
                .stderr_file(stderr)
                .reader()
                .with_context(|| format!("starting {}", self.program.path.display()))?,
        );
        let running = guard_children(handle.pids());
        let h = std::sync::Arc::clone(&handle);
        let watchdog = Watchdog::start(self, move || {
            let _ = h.kill(); // best effort: it may have just exited
        });
        Ok(StreamReader {
            handle,
            stderr: tail,
            display: self.display(),
            watchdog,
            _running: running,
        })
    }
}

impl StreamReader {
    fn failure(&self) -> io::Error {
        if let Some(why) = self.watchdog.fired() {
            return io::Error::other(ChildFailure(why));
        }
        match self.handle.try_wait() {
            Ok(Some(out)) if !out.status.success() => io::Error::other(ChildFailure(format!(
                "`{}` failed ({}){}",
                self.display,
                describe_status(out.status),
                format_tail(&self.stderr.text(), "")
            ))),
            Ok(_) => io::Error::other(ChildFailure(format!("`{}` ended abnormally", self.display))),
            Err(e) => e,
        }
    }
}

impl io::Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (&*self.handle).read(buf) {
            Ok(0) if !buf.is_empty() => {
                let r = match self.handle.try_wait() {
                    Ok(Some(out)) if out.status.success() => Ok(0),
                    _ => Err(self.failure()),
                };
                // The child is reaped now: its pid may be reused, so the
                // signal handler must no longer know it.
                self._running.clear();
                r
            }
            Ok(n) => {
                self.watchdog.progressed();
                Ok(n)
            }
            Err(_) => Err(self.failure()),
        }
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        // An unfinished child is killed (ReaderHandle's drop would too).
        let _ = self.handle.kill(); // no-op when it already exited
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;
    use crate::cmd::Program;
    use std::io::Write;

    #[test]
    fn a_child_fed_through_a_pipe_gets_every_byte() {
        let sh = Program::find("sh", None, "dash").unwrap();
        let mut w = sh.command(["-c", "wc -c"]).spawn_writer().unwrap();
        w.write_all(&[7u8; 300_000]).unwrap();
        assert_eq!(w.finish().unwrap().stdout.trim(), "300000");
    }

    #[test]
    fn a_child_that_stops_reading_fails_the_write_with_its_cause() {
        let sh = Program::find("sh", None, "dash").unwrap();
        let mut w = sh
            .command(["-c", "echo disk full >&2; exit 5"])
            .spawn_writer()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let e = w.write_all(&[0u8; 1 << 20]).unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
    }

    #[test]
    fn a_child_that_hangs_is_killed_at_the_deadline_even_mid_write() {
        let sh = Program::find("sh", None, "dash").unwrap();
        let mut w = sh
            .command(["-c", "exec sleep 30"])
            .timeout(Duration::from_millis(300))
            .spawn_writer()
            .unwrap();
        // More than a pipe holds: blocks until the watchdog kills sleep.
        let e = w.write_all(&[0u8; 4 << 20]).unwrap_err();
        assert!(e.to_string().contains("did not finish within"), "{e}");
    }

    #[test]
    fn a_writer_whose_child_stops_reading_is_killed_after_the_stall_bound() {
        let sh = Program::find("sh", None, "dash").unwrap();
        let mut w = sh
            .command(["-c", "exec sleep 30"])
            .bounded(Duration::from_secs(60), "--transfer-timeout")
            .stall(Duration::from_millis(400), "--stall-timeout")
            .spawn_writer()
            .unwrap();
        let e = w.write_all(&[0u8; 4 << 20]).unwrap_err();
        assert!(e.to_string().contains("moved no data for"), "{e}");
        assert!(e.to_string().contains("(--stall-timeout)"), "{e}");
    }

    #[test]
    fn dropping_an_unfinished_writer_kills_the_child_before_it_sees_eof() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let sh = Program::find("sh", None, "dash").unwrap();
        let script = format!("cat > {0}.part && mv {0}.part {0}", out.display());
        let mut w = sh.command(["-c", &script]).spawn_writer().unwrap();
        w.write_all(b"half").unwrap();
        drop(w);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!out.exists(), "a partial stream was committed");
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;
    use crate::cmd::Program;
    use std::io::Read;

    #[test]
    fn stream_reads_stdout_and_reports_failure_at_eof() {
        let sh = Program::find("sh", None, "dash").unwrap();
        let mut ok = String::new();
        sh.command(["-c", "echo hello"])
            .stream()
            .unwrap()
            .read_to_string(&mut ok)
            .unwrap();
        assert_eq!(ok, "hello\n");
        let mut buf = String::new();
        let err = sh
            .command(["-c", "echo part; echo broken >&2; exit 4"])
            .stream()
            .unwrap()
            .read_to_string(&mut buf)
            .unwrap_err();
        assert!(err.to_string().contains("exit code 4"), "{err}");
        assert!(err.to_string().contains("broken"), "{err}");
    }

    #[test]
    fn a_stream_that_stalls_is_killed_naming_the_bound_while_a_slow_one_lives() {
        let sh = Program::find("sh", None, "dash").unwrap();
        let mut buf = Vec::new();
        let err = sh
            .command(["-c", "echo start; exec sleep 30"])
            .stall(Duration::from_millis(400), "--stall-timeout")
            .stream()
            .unwrap()
            .read_to_end(&mut buf)
            .unwrap_err();
        assert!(err.to_string().contains("moved no data"), "{err}");
        // Slow but steady: a line every 150 ms for 1.2 s outlives a 400 ms
        // stall bound.
        let mut out = String::new();
        sh.command([
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.15; done",
        ])
        .stall(Duration::from_millis(400), "--stall-timeout")
        .stream()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
        assert_eq!(out.lines().count(), 8);
    }

    #[test]
    fn a_stream_whose_child_floods_stderr_fails_within_the_bound() {
        let sh = Program::find("sh", None, "dash").unwrap();
        let mut buf = Vec::new();
        let err = sh
            .command([
                "-c",
                "head -c 1048576 /dev/zero | tr '\\0' x >&2; printf '\\ncause\\n' >&2; exit 2",
            ])
            .stream()
            .unwrap()
            .read_to_end(&mut buf)
            .unwrap_err()
            .to_string();
        let (_, part) = err.split_once("failed (exit code 2)").expect(&err);
        assert!(
            part.len() <= crate::cmd::STDERR_TAIL_BYTES,
            "{}",
            part.len()
        );
        assert!(part.ends_with("cause"), "{part}");
    }

    #[test]
    fn stream_is_killed_at_the_deadline() {
        let sh = Program::find("sh", None, "dash").unwrap();
        let mut buf = Vec::new();
        let err = sh
            .command(["-c", "exec sleep 30"])
            .timeout(Duration::from_millis(300))
            .stream()
            .unwrap()
            .read_to_end(&mut buf)
            .unwrap_err();
        assert!(err.to_string().contains("did not finish within"), "{err}");
    }
}

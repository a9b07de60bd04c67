//! Progress of a long transfer, for a person: on a terminal a line redrawn
//! a few times a second (bytes done of the total, rate); elsewhere (the
//! journal, a pipe) a plain line at most every 30 s, so a 1 GiB push is not
//! a minute of silence and a 30 s backup cycle adds nothing. Off with -q.

use std::io::{IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static QUIET: AtomicBool = AtomicBool::new(false);

/// -q: no progress at all.
pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

/// Sizes for people: `512 B`, `3.0 MiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

const REDRAW: Duration = Duration::from_millis(200);
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Counts the bytes read through it and reports progress.
pub struct ProgressReader<R> {
    inner: R,
    what: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last: Instant,
    tty: bool,
    drawn: bool,
}

impl<R: Read> ProgressReader<R> {
    pub fn new(inner: R, what: impl Into<String>, total: Option<u64>) -> Self {
        let now = Instant::now();
        ProgressReader {
            inner,
            what: what.into(),
            total,
            done: 0,
            started: now,
            last: now,
            tty: std::io::stderr().is_terminal() && !crate::journal::stderr_is_journal(),
            drawn: false,
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = human_size((self.done as f64 / secs) as u64);
        match self.total {
            Some(t) if t > 0 => format!(
                "{}: {} of {} ({:.0}%), {rate}/s",
                self.what,
                human_size(self.done),
                human_size(t),
                self.done as f64 * 100.0 / t as f64
            ),
            _ => format!("{}: {}, {rate}/s", self.what, human_size(self.done)),
        }
    }

    fn report(&mut self) {
        if QUIET.load(Ordering::Relaxed) {
            return;
        }
        if self.tty {
            if self.last.elapsed() >= REDRAW {
                // Best effort: a progress line that cannot be drawn is
                // no reason to fail the transfer.
                let _ = write!(std::io::stderr(), "\r\x1b[K{}", self.line());
                self.drawn = true;
                self.last = Instant::now();
            }
        } else if self.last.elapsed() >= LOG_EVERY {
            tracing::info!("{}", self.line());
            self.last = Instant::now();
        }
    }
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if n == 0 {
            if self.drawn {
                // Leave the final figures on their own line.
                let _ = writeln!(std::io::stderr(), "\r\x1b[K{}", self.line());
                self.drawn = false;
            }
        } else {
            self.report();
        }
        Ok(n)
    }
}

impl<R> Drop for ProgressReader<R> {
    fn drop(&mut self) {
        if self.drawn {
            // Interrupted: end the redrawn line so the error starts clean.
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_lines_for_people() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 * 1024 * 1024 + 1), "3.0 MiB");
        let mut r = ProgressReader::new(&[0u8; 2048][..], "uploading", Some(4096));
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert!(
            r.line()
                .starts_with("uploading: 2.0 KiB of 4.0 KiB (50%), "),
            "{}",
            r.line()
        );
    }
}

//! The one bounded poll loop: probe until done, at most a limit, saying
//! every few seconds what we are still waiting for.

use std::time::{Duration, Instant};

use anyhow::Result;

/// What one probe found.
pub enum Probe<T> {
    Done(T),
    /// Not yet; why (shown while waiting and in the timeout error).
    Waiting(String),
}

/// How often a wait says it is still waiting.
const NOTE_EVERY: Duration = Duration::from_secs(5);

/// Call `probe` every `every` until it is done, at most `limit`. While it
/// waits it logs `{note} ({n}s): {why}` every 5 s; at the limit it fails
/// with `timed_out(why)`. An error from `probe` ends the wait at once.
pub fn until<T>(
    limit: Duration,
    every: Duration,
    note: &str,
    mut probe: impl FnMut() -> Result<Probe<T>>,
    timed_out: impl FnOnce(String) -> anyhow::Error,
) -> Result<T> {
    let started = Instant::now();
    let mut last_note = started;
    loop {
        let why = match probe()? {
            Probe::Done(v) => {
                crate::journal::notify_status("");
                return Ok(v);
            }
            Probe::Waiting(why) => why,
        };
        // Under systemd, `systemctl status` shows what we wait for.
        crate::journal::notify_status(&format!(
            "{note} ({:.0}s of {}): {why}",
            started.elapsed().as_secs_f64(),
            crate::cmd::human_duration(limit)
        ));
        if started.elapsed() >= limit {
            return Err(timed_out(why));
        }
        if last_note.elapsed() >= NOTE_EVERY {
            tracing::info!("{note} ({:.0}s): {why}", started.elapsed().as_secs_f64());
            last_note = Instant::now();
        }
        std::thread::sleep(every.min(limit.saturating_sub(started.elapsed())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_early_times_out_late_and_stops_on_error() {
        let mut n = 0;
        let v = until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            "waiting",
            || {
                n += 1;
                Ok(if n == 3 {
                    Probe::Done(n)
                } else {
                    Probe::Waiting("not yet".into())
                })
            },
            |why| anyhow::anyhow!("timeout: {why}"),
        )
        .unwrap();
        assert_eq!(v, 3);
        let e = until::<()>(
            Duration::from_millis(30),
            Duration::from_millis(5),
            "waiting",
            || Ok(Probe::Waiting("still down".into())),
            |why| anyhow::anyhow!("not ready within 30ms: {why}"),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "not ready within 30ms: still down");
        let e = until::<()>(
            Duration::from_secs(5),
            Duration::from_millis(1),
            "waiting",
            || anyhow::bail!("exited"),
            |_| unreachable!(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "exited");
    }
}

//! Points in time of the captured changes (docs/point-in-time.md): the
//! revision a time names, when a revision was received, and the captured
//! events between two times. Every segment read here is checked as a
//! restore reads it (its hash against its name); the times are those the
//! watcher received each event at.

use anyhow::{bail, Context, Result};

use super::changes::{Event, Segment, SegmentName};
use super::{Coverage, Repo};
use crate::clock::rfc3339_ms;

/// The revision a time names ([`Repo::revision_at_time`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimePoint {
    /// The newest revision every change up to which was received at or
    /// before the time.
    pub revision: u64,
    pub chain: String,
    /// When the first change after it was received (Unix ms): after the
    /// time, by construction.
    pub next_received_ms: u64,
}

/// What one chain covers, in revisions and receive times, for the
/// messages that name the nearest windows.
struct Span {
    chain: String,
    first: u64,
    reach: u64,
    from_ms: u64,
    to_ms: u64,
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chain {} covers revisions {} to {}, received from {} to {}",
            self.chain,
            self.first,
            self.reach,
            rfc3339_ms(self.from_ms),
            rfc3339_ms(self.to_ms)
        )
    }
}

impl Repo {
    /// The segments of `c` up to its reach (past a missing one nothing is
    /// followed), in revision order.
    fn reachable(&self, c: &Coverage) -> Result<Vec<SegmentName>> {
        Ok(self
            .segments(&c.chain)?
            .into_iter()
            .filter(|n| n.last <= c.reach)
            .collect())
    }

    fn segment(&self, chain: &str, name: &SegmentName) -> Result<Segment> {
        Ok(self.read_segment(chain, name)?.0)
    }

    /// When the watcher received revision `c.reach`, the newest of chain
    /// `c` (one segment read).
    pub fn reach_received_ms(&self, c: &Coverage) -> Result<Option<u64>> {
        let Some(tip) = self.reachable(c)?.pop() else {
            return Ok(None);
        };
        Ok(self.segment(&c.chain, &tip)?.received_to())
    }

    /// The revision time `t_ms` names: in the newest chain whose watch had
    /// started by then and whose changes go on past it, the newest
    /// revision every change up to which was received at or before
    /// `t_ms` (found by bisecting its segments: a few reads, not the
    /// whole chain). Refused, naming the nearest windows, for a time
    /// before every chain, in a range no chain captured, or after the
    /// newest captured change, where nothing on the remote shows what came
    /// after.
    pub fn revision_at_time(&self, t_ms: u64) -> Result<TimePoint> {
        let at = rfc3339_ms(t_ms);
        let coverage = self.coverage()?;
        if coverage.is_empty() {
            bail!(
                "no change was captured for machine-id {} (etcd2-watch's segments): a time can \
                 only be restored from captured changes; the full backups themselves are listed \
                 by --list and fetched by --generation",
                self.layout.machine_id
            );
        }
        let mut later: Option<Span> = None;
        for c in coverage.iter().rev() {
            let names = self.reachable(c)?;
            let Some(last) = names.last() else { continue };
            let mut hi = names.len() - 1;
            let mut at_hi = self.segment(&c.chain, last)?;
            let head_ms = || -> Result<u64> {
                // The chain's name is the time its watch started.
                match crate::clock::parse_compact(&c.chain) {
                    Some(ms) => Ok(ms),
                    None => Ok(self.segment(&c.chain, &names[0])?.header.opened_unix_ms),
                }
            };
            let span = Span {
                chain: c.chain.clone(),
                first: c.first,
                reach: c.reach,
                from_ms: head_ms()?,
                to_ms: at_hi.received_to().unwrap_or(at_hi.header.closed_unix_ms),
            };
            if t_ms >= span.to_ms {
                match &later {
                    None => bail!(
                        "{at} is after the newest captured change: the changes reach revision {}, \
                         received at {}, and nothing on the remote shows what came after \
                         (etcd2-watch stopped, or nothing was written since); --to-revision {} \
                         restores the newest captured state",
                        span.reach,
                        rfc3339_ms(span.to_ms),
                        span.reach
                    ),
                    Some(next) => bail!(
                        "{at} is in a range no change was captured for (a gap): {span}; the next \
                         {next}. Choose a time in one of them (see --list)"
                    ),
                }
            }
            if t_ms < span.from_ms {
                later = Some(span);
                continue;
            }
            // The first segment with a change received after t: the
            // times only grow along a chain.
            let mut lo = 0;
            while lo < hi {
                let mid = (lo + hi) / 2;
                let seg = self.segment(&c.chain, &names[mid])?;
                if seg.received_to().is_some_and(|ms| ms > t_ms) {
                    hi = mid;
                    at_hi = seg;
                } else {
                    lo = mid + 1;
                }
            }
            let seg = at_hi;
            let next = seg
                .first_received_after(t_ms)
                .context("internal: the bisection found no change after the time")?;
            if next == seg.header.first && seg.header.seq > 0 && lo == 0 {
                bail!(
                    "{at} is before the oldest change kept of chain {} (revision {next}; \
                     retention removed the older ones with the full backups they followed): \
                     {span}",
                    c.chain
                );
            }
            let next_received_ms = seg
                .events
                .iter()
                .find(|e| e.rev == next)
                .map_or(t_ms + 1, |e| e.ms);
            // The chain's own start revision is a full backup's, taken
            // before the watch began: held at any time after that.
            let revision = (next - 1).max(seg.header.start);
            tracing::info!(
                "{at} is revision {revision} (chain {}): every change up to it was received by \
                 then, revision {next} at {}",
                c.chain,
                rfc3339_ms(next_received_ms)
            );
            return Ok(TimePoint {
                revision,
                chain: c.chain.clone(),
                next_received_ms,
            });
        }
        match later {
            Some(first) => bail!("{at} is before the first captured change: {first}"),
            None => bail!("{at}: no change segment of this machine reads"),
        }
    }

    /// Every captured event received from `from_ms` to `to_ms`
    /// (inclusive), chains oldest first, each handed to `each` with its
    /// chain; the segments before the range are passed over by bisection.
    /// Returns how many segments were read.
    pub fn events_between(
        &self,
        from_ms: u64,
        to_ms: u64,
        mut each: impl FnMut(&str, &Event) -> Result<()>,
    ) -> Result<usize> {
        let mut read = 0;
        for c in self.coverage()? {
            let names = self.reachable(&c)?;
            if names.is_empty() {
                continue;
            }
            // The first segment with a change received at or after from.
            let (mut lo, mut hi) = (0, names.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                let seg = self.segment(&c.chain, &names[mid])?;
                read += 1;
                if seg.received_to().is_some_and(|ms| ms >= from_ms) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            for n in &names[lo..] {
                let seg = self.segment(&c.chain, n)?;
                read += 1;
                if seg.events.first().is_some_and(|e| e.ms > to_ms) {
                    break;
                }
                for e in seg
                    .events
                    .iter()
                    .filter(|e| (from_ms..=to_ms).contains(&e.ms))
                {
                    each(&c.chain, e)?;
                }
            }
        }
        Ok(read)
    }
}

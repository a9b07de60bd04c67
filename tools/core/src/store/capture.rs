//! The repository's change segments (docs/change-capture.md): listing
//! chains and their segments, reading one with every check, publishing
//! one (uploaded beside, moved into place, its remote copy checked), and
//! removing our own debris. The formats are in [`super::changes`].

use std::io::Read;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::changes::{plan, segment_names, Encoded, Link, Segment, SegmentName, CHANGES_DIR};
use super::{valid_generation_id, Repo, Verify};
use crate::digest::Hasher;
use crate::rclone::RemotePath;

/// Read no segment object larger than this: a segment closes at
/// `--segment-bytes` (MiBs).
const MAX_OBJECT: u64 = 256 << 20;

impl Repo {
    fn chain_dir(&self, chain: &str) -> RemotePath {
        self.layout.changes().join(chain)
    }

    /// The chains under `changes/`, oldest first (their names sort by
    /// time); names that are not a chain's are passed over.
    pub fn chains(&self) -> Result<Vec<String>> {
        let Some(entries) = self.rclone.list(&self.layout.changes(), false)? else {
            return Ok(vec![]);
        };
        let mut v: Vec<String> = entries
            .into_iter()
            .filter(|e| e.is_dir && valid_generation_id(&e.name))
            .map(|e| e.name)
            .collect();
        v.sort();
        Ok(v)
    }

    /// A chain's segments by name, in revision order.
    pub fn segments(&self, chain: &str) -> Result<Vec<SegmentName>> {
        let entries = self
            .rclone
            .list(&self.chain_dir(chain), false)?
            .unwrap_or_default();
        Ok(segment_names(
            entries
                .iter()
                .filter(|e| !e.is_dir)
                .map(|e| e.name.as_str()),
        ))
    }

    /// Segment `name` of `chain`, downloaded and checked (its hash against
    /// its name, its header against its name and events), with its whole
    /// sha256.
    pub fn read_segment(&self, chain: &str, name: &SegmentName) -> Result<(Segment, String)> {
        let path = self.chain_dir(chain).join(&name.file_name());
        let bytes = self.read_bytes(&path)?;
        Segment::decode(name, &bytes).with_context(|| format!("chain {chain}"))
    }

    /// The link of segment `name`: read and checked whole.
    pub fn link(&self, chain: &str, name: &SegmentName) -> Result<Link> {
        let (seg, sha256) = self.read_segment(chain, name)?;
        Ok(Link {
            name: name.clone(),
            header: seg.header,
            sha256,
        })
    }

    /// Publish `seg` in `chain`: uploaded beside its final name, moved
    /// into place (a rename on file backends, a server-side copy on object
    /// stores: never a half-written segment under a segment's name), then
    /// its remote copy checked as an archive's is. A copy that does not
    /// check is removed again.
    pub fn publish_segment(&self, chain: &str, seg: &Encoded) -> Result<String> {
        let dir = self.chain_dir(chain);
        let dst = dir.join(&seg.name.file_name());
        let tmp = dir.join(&format!("{}.tmp", seg.name.file_name()));
        self.rclone.put_bytes(&tmp, &seg.bytes)?;
        if let Err(e) = self.rclone.replace(&tmp, &dst) {
            let _ = self.rclone.delete(&tmp);
            return Err(e);
        }
        let mut h = Hasher::with_backend_hashes();
        h.update(&seg.bytes);
        match self.verify_copy(&dst, &h.finish(), None, Verify::Auto) {
            Ok(how) => Ok(how),
            Err(e) => {
                let _ = self.rclone.delete(&dst);
                Err(e.context(format!("{dst} did not check after its upload; removed it")))
            }
        }
    }

    /// Remove what an interrupted publication of `chain` left: the
    /// temporary copies beside segments (ours by their name), nothing
    /// else. Returns how many.
    pub fn sweep_chain(&self, chain: &str) -> Result<usize> {
        let dir = self.chain_dir(chain);
        let entries = self.rclone.list(&dir, false)?.unwrap_or_default();
        let mut n = 0;
        for e in entries.iter().filter(|e| !e.is_dir) {
            let Some(stem) = e.name.strip_suffix(".tmp") else {
                continue;
            };
            if SegmentName::parse(stem).is_some() {
                self.rclone.delete(&dir.join(&e.name))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Download the change segments that continue a base at revision
    /// `base` into `dir/changes/`, each checked as it is read, the chain
    /// checked as a whole ([`plan`]): the newest chain that started at or
    /// before `base + 1` and reaches past it. None where no chain does.
    /// A chain broken after the base (a segment missing, corrupt or out of
    /// order) is refused, naming how far it reaches, unless `last_good`:
    /// then what reaches that far is kept, with a warning.
    pub fn download_changes(
        &self,
        base: u64,
        dir: &Path,
        last_good: bool,
        upto: Option<u64>,
    ) -> Result<Option<FetchedChanges>> {
        // Asked for a revision past what was captured: said, never guessed.
        // Where a later chain exists, the point is in a gap: both sides named.
        let not_captured = |reach: u64| {
            let u = upto.unwrap_or_default();
            let next = self
                .coverage()
                .ok()
                .and_then(|all| all.into_iter().find(|c| c.first > reach));
            match next {
                Some(n) => anyhow::anyhow!(
                    "revision {u} is not captured: the changes after the full backup at revision \
                     {base} reach revision {reach}, and the next captured ones (chain {}) cover \
                     revisions {} to {}: revisions {} to {} are a gap no restore reaches (see \
                     --list)",
                    n.chain,
                    n.first,
                    n.reach,
                    reach + 1,
                    n.first - 1
                ),
                None => anyhow::anyhow!(
                    "revision {u} is not captured: the changes after the full backup at revision \
                     {base} reach revision {reach}, and nothing shows what came after (see --list)"
                ),
            }
        };
        for chain in self.chains()?.iter().rev() {
            let mut names: Vec<SegmentName> = self
                .segments(chain)?
                .into_iter()
                .filter(|n| n.last > base)
                .collect();
            let Some(first) = names.first() else {
                // The newest chain ends at or before the base: nothing
                // was captured after it.
                if upto.is_some_and(|u| u > base) {
                    return Err(not_captured(base));
                }
                return Ok(None);
            };
            let head = match self.link(chain, first) {
                Ok(h) => h,
                Err(e) if last_good => {
                    tracing::warn!(
                        "the first change segment after revision {base} does not read ({e:#}): \
                         no changes after the full backup (--to-last-good)"
                    );
                    return Ok(None);
                }
                Err(e) => bail!(
                    "the changes captured after revision {base} are broken: {e:#}. They reach \
                     revision {base}: restore the full backup alone with --no-changes (or \
                     --to-last-good)"
                ),
            };
            if head.header.start > base + 1 {
                // A chain started from a newer base (after a gap).
                continue;
            }
            // Up to the segment holding the point, no further.
            if let Some(u) = upto {
                names.retain(|n| n.first <= u);
            }
            let out = dir.join(CHANGES_DIR);
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let mut links = Vec::new();
            let mut unread = None;
            for n in &names {
                let path = self.chain_dir(chain).join(&n.file_name());
                let read = self.read_bytes(&path).and_then(|b| {
                    let (seg, sha256) = Segment::decode(n, &b)?;
                    Ok((b, seg, sha256))
                });
                match read {
                    Ok((bytes, seg, sha256)) => {
                        crate::fsutil::write_atomic(&out.join(n.file_name()), &bytes, 0o600)?;
                        links.push(Link {
                            name: n.clone(),
                            header: seg.header,
                            sha256,
                        });
                    }
                    Err(e) => {
                        unread = Some(format!("{e:#}"));
                        break;
                    }
                }
            }
            let (reach, broken) = match plan(base, &links) {
                Ok(p) => (p.reach, unread),
                Err(b) => (b.reach, Some(b.why)),
            };
            if let Some(why) = &broken {
                if !last_good {
                    bail!(
                        "the changes captured after revision {base} are broken: {why}. They \
                         reach revision {reach}: restore up to there with --to-last-good, or the \
                         full backup alone with --no-changes"
                    );
                }
                tracing::warn!(
                    "the changes captured after revision {base} are broken ({why}): keeping them \
                     up to revision {reach} only (--to-last-good)"
                );
                // What the replay must not read: the segments past the break.
                for l in links.iter().filter(|l| l.header.last > reach) {
                    let _ = std::fs::remove_file(out.join(l.name.file_name()));
                }
            }
            if let Some(u) = upto {
                if reach < u {
                    return Err(not_captured(reach));
                }
                write_replay_target(dir, u)?;
            }
            let kept = links.iter().filter(|l| l.header.last <= reach).count();
            tracing::info!(
                "fetched {kept} change segment(s) of chain {chain}: revisions after {base} up to {reach}"
            );
            return Ok(Some(FetchedChanges {
                chain: chain.clone(),
                reach,
                segments: kept,
            }));
        }
        if upto.is_some_and(|u| u > base) {
            return Err(not_captured(base));
        }
        Ok(None)
    }

    /// Retention of the changes, after the generations': remove every
    /// segment no kept generation needs, those whose last revision is at
    /// or before the oldest complete generation's (its revision is read
    /// before its snapshot, so this keeps a little more, never less).
    /// Returns how many were removed.
    pub fn retain_changes(&self) -> Result<usize> {
        let gens = self.layout.generations();
        let Some(entries) = self.rclone.list(&gens, false)? else {
            return Ok(0);
        };
        let listing = super::Listing::from_entries(&entries);
        let Some(oldest) = listing.complete().into_iter().next() else {
            return Ok(0);
        };
        let Some(floor) = self.sidecar(&oldest)?.manifest.revision else {
            return Ok(0);
        };
        let mut removed = 0;
        for chain in self.chains()? {
            for n in self.segments(&chain)?.iter().filter(|n| n.last <= floor) {
                self.rclone
                    .delete(&self.chain_dir(&chain).join(&n.file_name()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// What each chain covers, by its segments' names alone (one listing
    /// per chain; the contents are checked when fetched), oldest first.
    pub fn coverage(&self) -> Result<Vec<Coverage>> {
        let mut out = Vec::new();
        for chain in self.chains()? {
            let names = self.segments(&chain)?;
            let Some(first) = names.first() else {
                continue;
            };
            let mut reach = first.last;
            let mut broken_after = None;
            for n in &names[1..] {
                if n.first != reach + 1 {
                    broken_after = Some(reach);
                    break;
                }
                reach = n.last;
            }
            out.push(Coverage {
                first: first.first,
                reach,
                segments: names.len(),
                broken_after,
                chain,
            });
        }
        Ok(out)
    }

    fn read_bytes(&self, path: &RemotePath) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.rclone
            .stream_file(path)?
            .take(MAX_OBJECT + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("downloading {path}"))?;
        ensure!(
            bytes.len() as u64 <= MAX_OBJECT,
            "{path} is larger than any segment we write"
        );
        Ok(bytes)
    }
}

/// `dir/changes/TARGET.json`: the replay of the backup fetched into `dir`
/// is to stop at revision `u` (docs/point-in-time.md). Written also where
/// no segment is needed (`u` is the base's sidecar revision): the restore
/// still proves the base's own revision is not past `u`.
pub fn write_replay_target(dir: &Path, u: u64) -> Result<()> {
    let out = dir.join(CHANGES_DIR);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let target = crate::store::changes::ReplayTarget { revision: u };
    crate::fsutil::write_atomic(
        &out.join(crate::store::changes::TARGET_NAME),
        &serde_json::to_vec(&target)?,
        0o600,
    )?;
    tracing::info!("the replay is to stop at revision {u}");
    Ok(())
}

/// What one chain covers, by its segments' names ([`Repo::coverage`]).
#[derive(Debug, Clone)]
pub struct Coverage {
    pub chain: String,
    /// The first revision of its oldest segment kept.
    pub first: u64,
    /// The last revision reached with no gap between names.
    pub reach: u64,
    pub segments: usize,
    /// Where a segment is missing, the revision before it.
    pub broken_after: Option<u64>,
}

impl Coverage {
    /// The newest revision a replay onto a base at `base` reaches through
    /// the newest chain that continues it, if any does.
    pub fn reach_from(all: &[Coverage], base: u64) -> Option<u64> {
        Coverage::continuing(all, base).map(|c| c.reach)
    }

    /// The newest chain that continues a base at `base` (started at or
    /// before `base + 1`, reaching past it), if any does.
    pub fn continuing(all: &[Coverage], base: u64) -> Option<&Coverage> {
        all.iter()
            .rev()
            .find(|c| c.first <= base + 1 && c.reach > base)
    }

    /// Revisions no chain captured, between consecutive chains: (from, to,
    /// the chain before, the chain after).
    pub fn uncovered(all: &[Coverage]) -> Vec<(u64, u64, &str, &str)> {
        all.windows(2)
            .filter(|w| w[1].first > w[0].reach + 1)
            .map(|w| {
                (
                    w[0].reach + 1,
                    w[1].first - 1,
                    w[0].chain.as_str(),
                    w[1].chain.as_str(),
                )
            })
            .collect()
    }
}

/// What [`Repo::download_changes`] brought.
#[derive(Debug)]
pub struct FetchedChanges {
    pub chain: String,
    /// The newest revision they reach.
    pub reach: u64,
    pub segments: usize,
}

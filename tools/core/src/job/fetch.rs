//! The `etcd2-fetch` job: find a machine's newest (or a chosen) backup,
//! download it, verify every byte, and only then place it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::archive::{self, Api, Codec, Manifest, FORMAT_VERSION};
use crate::cmd::human_duration;
use crate::exit::{coded, EXIT_NO_BACKUP, EXIT_STALE, EXIT_UNREACHABLE};
use crate::fsutil::sync_dir;
use crate::rclone::RemotePath;
use crate::sink::{Output, Sink};
use crate::store::{Choice, Fleet, Repo, Sidecar, Source, VerifyRecord};

pub enum Target {
    /// Extract into a new (or empty) directory, placed by rename.
    Into(PathBuf),
    /// Write the archive itself.
    Archive(Output),
}

pub struct FetchJob {
    pub repo: Repo,
    pub generation: Option<String>,
    /// Fall back to the newest complete generation when LATEST.json cannot
    /// be followed.
    pub allow_older: bool,
    /// Fetch the original package's `<machine-id>_backup` copy instead.
    pub legacy_previous: bool,
    pub work_dir: PathBuf,
    /// Which change segments come with a v3 base (into a directory).
    pub changes: Changes,
}

/// The change segments captured after the base (docs/change-capture.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changes {
    /// All of them, refused if the chain is broken after the base.
    All,
    /// Up to the last revision an unbroken chain reaches.
    LastGood,
    /// None: the full backup alone.
    None,
    /// Up to this revision and no further, onto the newest full backup at
    /// or before it (docs/point-in-time.md).
    UpTo(u64),
    /// Up to the revision this time (Unix ms) names
    /// ([`crate::store::Repo::revision_at_time`]), as [`Changes::UpTo`].
    AtTime(u64),
}

/// One row of `--list`.
#[derive(Debug, Serialize)]
pub struct GenerationInfo {
    pub generation: String,
    pub latest: bool,
    /// Why the sidecar could not be read; the details are then absent.
    pub damaged: Option<String>,
    #[serde(flatten)]
    pub details: Option<Details>,
}

/// What a readable sidecar says of its generation.
#[derive(Debug, Serialize)]
pub struct Details {
    pub created_at: String,
    pub age_seconds: u64,
    pub size: u64,
    pub sha256: String,
    pub api: Api,
    pub member_name: String,
    pub member_id: String,
    pub cluster_id: String,
    pub revision: Option<u64>,
    pub raft_index: Option<u64>,
    pub key_count: Option<u64>,
    pub host: String,
    /// The newest revision the change segments after it reach (etcd2-watch);
    /// None where nothing was captured after it.
    pub changes_to: Option<u64>,
    /// When the watcher received revision `changes_to`: with `created_at`,
    /// the times a restore onto this backup can reach (its window).
    pub changes_to_received: Option<String>,
    pub changes_to_received_unix_ms: Option<u64>,
    /// The revisions after this window that no window covers (a gap in
    /// change capture), up to the next backup's.
    pub uncovered_after: Option<Uncovered>,
}

/// Revisions no restore reaches: `from ..= to`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Uncovered {
    pub from_revision: u64,
    pub to_revision: u64,
}

impl FetchJob {
    /// Decide what to fetch ([`Repo::choose`]: the one choice etcd2-verify
    /// makes too).
    pub fn resolve(&self) -> Result<Source> {
        self.resolve_for(self.point()?)
    }

    /// A time chooses its revision first (one bisection of the changes).
    fn point(&self) -> Result<Changes> {
        Ok(match self.changes {
            Changes::AtTime(t) => Changes::UpTo(self.repo.revision_at_time(t)?.revision),
            c => c,
        })
    }

    fn resolve_for(&self, changes: Changes) -> Result<Source> {
        if let (Changes::UpTo(rev), None) = (changes, &self.generation) {
            // The point chooses the base (docs/point-in-time.md).
            return Ok(Source::Generation(Box::new(
                self.repo.base_for_revision(rev)?,
            )));
        }
        self.repo.choose(&Choice {
            generation: self.generation.as_deref(),
            allow_older: self.allow_older,
            legacy_previous: self.legacy_previous,
        })
    }

    pub fn run(&self, target: &Target) -> Result<Manifest> {
        // Claim the destination before downloading anything: an occupied
        // directory or an unwritable file fails now. stdout gets only
        // verified bytes (spooled until then).
        let sink = match target {
            Target::Into(dir) => {
                check_target(dir)?;
                None
            }
            Target::Archive(o) => Some(Sink::open_verified(o, &self.work_dir)?),
        };
        let changes = self.point()?;
        match self.resolve_for(changes)? {
            Source::Generation(sc) => self.fetch_generation(&sc, target, sink, changes),
            Source::Legacy(dir) => self.fetch_legacy(&dir, target, sink),
        }
    }

    fn fetch_generation(
        &self,
        sc: &Sidecar,
        target: &Target,
        sink: Option<Sink>,
        changes: Changes,
    ) -> Result<Manifest> {
        let manifest = match (target, sink) {
            (Target::Into(dir), _) => {
                let staging = staging_for(dir)?;
                let data = staging.path().join("data");
                let m = self.repo.download(sc, Some(&data), None)?;
                let upto = match changes {
                    Changes::UpTo(u) => Some(u),
                    _ => None,
                };
                if let (Some(u), None) = (upto, m.revision) {
                    bail!(
                        "generation {} is a v2 backup: it has no revisions, and no changes are \
                         captured for it, so it cannot be restored to revision {u}",
                        sc.generation
                    );
                }
                if let (Some(u), Some(rev)) = (upto, m.revision) {
                    ensure!(
                        rev <= u,
                        "generation {} is at revision {rev}, past revision {u}: a restore to \
                         {u} needs an older full backup (see --list)",
                        sc.generation
                    );
                }
                if let (Some(rev), false) = (m.revision, changes == Changes::None) {
                    if upto == Some(rev) {
                        // No segment needed; the restore checks the base's
                        // own revision against the point.
                        crate::store::write_replay_target(&data, rev)?;
                    } else {
                        self.repo.download_changes(
                            rev,
                            &data,
                            changes == Changes::LastGood,
                            upto,
                        )?;
                    }
                }
                crate::scratch::fault_point("fetch-staged");
                place(&m, &data, dir)?;
                m
            }
            (Target::Archive(_), sink) => {
                let mut sink = sink.context("internal: no output sink")?;
                let m = self.repo.download(sc, None, Some(&mut sink))?;
                sink.finish()?;
                self.warn_changes_left_out(&m);
                m
            }
        };
        tracing::info!(
            "generation {} verified: archive sha256 {} and {} files match",
            sc.generation,
            &sc.sha256[..16],
            manifest.files.len()
        );
        Ok(manifest)
    }

    /// An archive is the full backup alone: say so where changes were
    /// captured after it, which only `--into` brings.
    fn warn_changes_left_out(&self, m: &Manifest) {
        let Some(rev) = m.revision else { return };
        let coverage = self.repo.coverage().unwrap_or_default();
        if let Some(reach) = crate::store::Coverage::reach_from(&coverage, rev) {
            tracing::warn!(
                "the archive holds the full backup only (revision {rev}): the changes captured \
                 after it, up to revision {reach}, are not in it; etcd2-fetch --into DIR brings \
                 them for etcd2-restore to replay"
            );
        }
    }

    fn fetch_legacy(
        &self,
        dir: &RemotePath,
        target: &Target,
        sink: Option<Sink>,
    ) -> Result<Manifest> {
        tracing::warn!(
            "{dir} is a backup written by etcd2-backup-coreos: UNVERIFIED legacy data, it carries no checksums"
        );
        let staging = match target {
            Target::Into(d) => staging_for(d)?,
            Target::Archive(_) => {
                crate::scratch::work_dir(&self.work_dir)?;
                crate::scratch::Dir::create(&self.work_dir, "etcd2-fetch")?
            }
        };
        let data = staging.path().join("data");
        self.repo
            .rclone()
            .copy_dir(&dir.join("member"), &data.join("member"))?;
        ensure!(
            data.join("member/wal").is_dir(),
            "legacy backup at {dir} has no member/wal: incomplete, refusing it"
        );
        // rclone wrote it under our umask; it is all of etcd's data.
        crate::fsutil::make_private(&data)?;
        let files = archive::list_files(&data)?;
        let manifest = Manifest {
            format: FORMAT_VERSION,
            etcd_version: "unknown".into(),
            machine_id: Some(self.repo.layout().machine_id.clone()),
            files: archive::file_entries(&data, &files)?,
            ..Manifest::new(
                format!(
                    "etcd2-fetch {} (legacy import, unverified)",
                    env!("CARGO_PKG_VERSION")
                ),
                Api::V2,
                Codec::Zstd,
            )
        };
        match (target, sink) {
            (Target::Into(d), _) => place(&manifest, &data, d)?,
            (Target::Archive(_), sink) => {
                let sink = sink.context("internal: no output sink")?;
                archive::write_archive(sink, &manifest, &data, 3, 1)?.finish()?;
            }
        }
        Ok(manifest)
    }

    /// How old this machine's newest complete generation is, against
    /// `max_age` (and `warn_age`, for Nagios's WARNING). A remote that
    /// fails is an error (exit 5 where it could not be reached), never
    /// "no backup".
    pub fn check(&self, max_age: Duration, warn_age: Option<Duration>) -> Result<Checked> {
        if let Some(w) = warn_age {
            ensure!(
                w < max_age,
                "--warn-age {} is not below --max-age {}: nothing would be a warning",
                human_duration(w),
                human_duration(max_age)
            );
        }
        self.repo.check_endpoint()?;
        let layout = self.repo.layout();
        // Newest first; a damaged sidecar is passed over (--list shows it).
        let listing = self.repo.listing().map_err(unreachable)?;
        let Some(sc) = self.repo.newest_readable(&listing).map_err(unreachable)? else {
            return Ok(Checked {
                freshness: Freshness::NoBackup,
                text: format!(
                    "no complete generation for machine-id {} under {}",
                    layout.machine_id, layout.endpoint
                ),
                age: None,
                size: None,
                max_age,
                warn_age,
            });
        };
        let m = &sc.manifest;
        let now = crate::clock::unix(SystemTime::now());
        let age = Duration::from_secs(now.saturating_sub(m.created_unix));
        let freshness = if age > max_age {
            Freshness::Stale
        } else if warn_age.is_some_and(|w| age > w) {
            Freshness::Old
        } else {
            Freshness::Fresh
        };
        let bound = match freshness {
            Freshness::Stale => format!(", more than --max-age {}", human_duration(max_age)),
            Freshness::Old => format!(
                ", more than --warn-age {} (--max-age {})",
                human_duration(warn_age.unwrap_or_default()),
                human_duration(max_age)
            ),
            _ => format!(" (--max-age {})", human_duration(max_age)),
        };
        Ok(Checked {
            freshness,
            text: format!(
                "{}: the newest backup, {} taken {}, is {} old{bound}",
                who(&m.member_name, &m.host, &layout.machine_id),
                sc.generation,
                m.created_at,
                human_duration(age)
            ),
            age: Some(age),
            size: Some(sc.size),
            max_age,
            warn_age,
        })
    }

    /// An empty `--list`: "no backup" (exit 4), as `--check` and a fetch
    /// say it.
    pub fn no_generations(&self) -> anyhow::Error {
        let layout = self.repo.layout();
        coded(
            EXIT_NO_BACKUP,
            format!(
                "no backup: no complete generation for machine-id {} under {}",
                layout.machine_id, layout.endpoint
            ),
        )
    }

    /// Every complete generation, oldest first.
    pub fn list(&self) -> Result<Vec<GenerationInfo>> {
        self.repo.check_endpoint()?;
        let listing = self.repo.listing()?;
        let latest = self.repo.pointer()?.map(|p| p.generation);
        let now = crate::clock::unix(SystemTime::now());
        let coverage = self.repo.coverage().unwrap_or_else(|e| {
            tracing::warn!("cannot list the change segments: {e:#}");
            Vec::new()
        });
        // Loudly: what no restore can reach but from a later full backup.
        for (from, to, before, after) in crate::store::Coverage::uncovered(&coverage) {
            tracing::warn!(
                "revisions {from} to {to} were not captured (a gap between change chains {before} \
                 and {after}): a restore reaches them only as a later full backup holds them"
            );
        }
        for c in coverage.iter().filter(|c| c.broken_after.is_some()) {
            tracing::warn!(
                "change chain {}: a segment is missing after revision {}; a restore through it \
                 stops there",
                c.chain,
                c.broken_after.unwrap_or_default()
            );
        }
        let mut rows = Vec::new();
        let mut received_of = std::collections::HashMap::new();
        for id in listing.complete() {
            let latest = latest.as_deref() == Some(id.as_str());
            let sc = match self.repo.sidecar(&id) {
                Ok(sc) => sc,
                Err(e) => {
                    tracing::warn!("{e:#}; listing it as damaged");
                    rows.push(GenerationInfo {
                        generation: id,
                        latest,
                        damaged: Some(format!("{e:#}")),
                        details: None,
                    });
                    continue;
                }
            };
            let m = &sc.manifest;
            let chain = m
                .revision
                .and_then(|r| crate::store::Coverage::continuing(&coverage, r));
            let changes_to = chain.map(|c| c.reach);
            // One segment read per chain: when its newest change came.
            let received = match chain {
                Some(c) => match received_of.get(&c.chain) {
                    Some(r) => *r,
                    None => {
                        let r = self.repo.reach_received_ms(c).unwrap_or_else(|e| {
                            tracing::warn!("change chain {}: {e:#}", c.chain);
                            None
                        });
                        received_of.insert(c.chain.clone(), r);
                        r
                    }
                },
                None => None,
            };
            rows.push(GenerationInfo {
                latest,
                generation: id,
                damaged: None,
                details: Some(Details {
                    created_at: m.created_at.clone(),
                    age_seconds: now.saturating_sub(m.created_unix),
                    size: sc.size,
                    sha256: sc.sha256.clone(),
                    api: m.api,
                    member_name: m.member_name.clone(),
                    member_id: m.member_id.clone(),
                    cluster_id: m.cluster_id.clone(),
                    revision: m.revision,
                    raft_index: m.raft_index,
                    key_count: m.key_count,
                    host: m.host.clone(),
                    changes_to,
                    changes_to_received: received.map(crate::clock::rfc3339_ms),
                    changes_to_received_unix_ms: received,
                    uncovered_after: None,
                }),
            });
        }
        if !coverage.is_empty() {
            mark_uncovered(&mut rows);
        }
        let incomplete = listing.archives.len() - rows.len();
        if incomplete > 0 {
            tracing::info!(
                "{incomplete} incomplete upload(s) not listed (the next push removes them)"
            );
        }
        Ok(rows)
    }
}

/// What `--changes` prints: the captured events received between two
/// times, under a prefix.
pub struct ChangesQuery {
    pub from_ms: u64,
    pub to_ms: u64,
    pub prefix: Vec<u8>,
    /// Print each put's value (off by default: they are the cluster's
    /// data, Secrets among them).
    pub values: bool,
    /// One JSON object per line instead of a table.
    pub json: bool,
}

/// One event of `--changes --json`.
#[derive(Serialize)]
struct EventLine<'a> {
    revision: u64,
    received: String,
    received_unix_ms: u64,
    op: &'static str,
    key: String,
    /// The key's bytes where they are not UTF-8 (`key` is then lossy).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    value_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    chain: &'a str,
}

/// A key or value as text: UTF-8 with control characters escaped, other
/// bytes as `\xNN` (a terminal never gets raw bytes from us).
fn printable(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for x in chunk.invalid() {
            out.push_str(&format!("\\x{x:02x}"));
        }
    }
    out
}

/// The revisions' summary: "4,812 deletes under /registry/".
struct RevisionTally {
    revision: u64,
    ms: u64,
    puts: usize,
    dels: usize,
    /// The longest prefix (up to a `/`) its keys share.
    common: Option<Vec<u8>>,
}

impl RevisionTally {
    fn new(e: &crate::store::changes::Event) -> RevisionTally {
        RevisionTally {
            revision: e.rev,
            ms: e.ms,
            puts: 0,
            dels: 0,
            common: None,
        }
    }

    fn add(&mut self, e: &crate::store::changes::Event) {
        match e.op {
            crate::store::changes::Op::Put { .. } => self.puts += 1,
            crate::store::changes::Op::Del { .. } => self.dels += 1,
        }
        let key = e.key();
        self.common = Some(match self.common.take() {
            None => key.to_vec(),
            Some(c) => {
                let n = c.iter().zip(key).take_while(|(a, b)| a == b).count();
                c[..n].to_vec()
            }
        });
    }

    /// Its line, for a revision of more than one event (one event is its
    /// own summary).
    fn line(&self) -> Option<String> {
        if self.puts + self.dels < 2 {
            return None;
        }
        let mut what = Vec::new();
        if self.puts > 0 {
            what.push(format!("{} put{}", thousands(self.puts), plural(self.puts)));
        }
        if self.dels > 0 {
            what.push(format!(
                "{} delete{}",
                thousands(self.dels),
                plural(self.dels)
            ));
        }
        let common = self.common.as_deref().unwrap_or_default();
        let under = match common.iter().rposition(|b| *b == b'/') {
            Some(i) => format!(" under {}", printable(&common[..=i])),
            None => String::new(),
        };
        Some(format!(
            "# revision {} at {}: {}{under}\n",
            self.revision,
            crate::clock::rfc3339_ms(self.ms),
            what.join(", ")
        ))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `4812` as `4,812`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl FetchJob {
    /// Print the captured events `q` asks for to `out`, as they are read
    /// (a table, or JSON lines), with a summary line after each revision
    /// of several events. Returns how many events were printed.
    pub fn print_changes(&self, q: &ChangesQuery, out: &mut impl io::Write) -> Result<u64> {
        use crate::store::changes::Op;
        ensure!(
            q.from_ms <= q.to_ms,
            "--from {} is after --to {}",
            crate::clock::rfc3339_ms(q.from_ms),
            crate::clock::rfc3339_ms(q.to_ms)
        );
        self.repo.check_endpoint()?;
        if !q.json {
            writeln!(
                out,
                "{:>10} {:<24} {:<3} {:>10}  KEY{}",
                "REVISION",
                "RECEIVED",
                "OP",
                "SIZE",
                if q.values { "  VALUE" } else { "" }
            )?;
        }
        let mut printed = 0u64;
        let mut tally: Option<RevisionTally> = None;
        let read = self.repo.events_between(q.from_ms, q.to_ms, |chain, e| {
            if !e.key().starts_with(&q.prefix) {
                return Ok(());
            }
            if tally.as_ref().is_some_and(|t| t.revision != e.rev) {
                if let Some(line) = tally.take().and_then(|t| t.line()).filter(|_| !q.json) {
                    out.write_all(line.as_bytes())?;
                }
            }
            tally.get_or_insert_with(|| RevisionTally::new(e)).add(e);
            let (op, value) = match &e.op {
                Op::Put { value, .. } => ("put", Some(value.as_slice())),
                Op::Del { .. } => ("del", None),
            };
            if q.json {
                let key = e.key();
                let line = EventLine {
                    revision: e.rev,
                    received: crate::clock::rfc3339_ms(e.ms),
                    received_unix_ms: e.ms,
                    op,
                    key: String::from_utf8_lossy(key).into_owned(),
                    key_base64: std::str::from_utf8(key)
                        .is_err()
                        .then(|| crate::store::changes::key_b64(key)),
                    value_size: value.map(<[u8]>::len),
                    value: value
                        .filter(|_| q.values)
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                    chain,
                };
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            } else {
                writeln!(
                    out,
                    "{:>10} {:<24} {:<3} {:>10}  {}{}",
                    e.rev,
                    crate::clock::rfc3339_ms(e.ms),
                    op,
                    value.map_or("-".to_owned(), |v| v.len().to_string()),
                    printable(e.key()),
                    match value {
                        Some(v) if q.values => format!("  {}", printable(v)),
                        _ => String::new(),
                    }
                )?;
            }
            printed += 1;
            Ok(())
        })?;
        if let Some(line) = tally.and_then(|t| t.line()).filter(|_| !q.json) {
            out.write_all(line.as_bytes())?;
        }
        out.flush()?;
        tracing::info!(
            "{printed} captured change(s) received from {} to {} (read {read} segment(s))",
            crate::clock::rfc3339_ms(q.from_ms),
            crate::clock::rfc3339_ms(q.to_ms.min(crate::clock::unix_ms(SystemTime::now())))
        );
        Ok(printed)
    }
}

/// Mark, on the row whose window ends just before it, every range of
/// revisions no window reaches (rows oldest first; a window is a base's
/// revision up to where its changes reach). Only from the first window
/// with changes on: before capture began nothing was missed, it was not
/// asked for.
fn mark_uncovered(rows: &mut [GenerationInfo]) {
    let mut covered: Option<(usize, u64)> = None;
    for i in 0..rows.len() {
        let Some(d) = &rows[i].details else { continue };
        let Some(base) = d.revision else { continue };
        let end = d.changes_to.unwrap_or(base);
        match covered {
            None if d.changes_to.is_some() => covered = Some((i, end)),
            None => {}
            Some((at, to)) => {
                if base > to + 1 {
                    if let Some(prev) = rows[at].details.as_mut() {
                        prev.uncovered_after = Some(Uncovered {
                            from_revision: to + 1,
                            to_revision: base - 1,
                        });
                    }
                }
                if end > to {
                    covered = Some((i, end));
                }
            }
        }
    }
}

/// `member NAME on host HOST (machine-id ID)`: whose backups, as an
/// operator knows the node (a missing name said as `?`).
fn who(member: &str, host: &str, machine_id: &str) -> String {
    let or_unknown = |s: &str| {
        if s.is_empty() {
            "?".to_owned()
        } else {
            s.to_owned()
        }
    };
    format!(
        "member {} on host {} (machine-id {machine_id})",
        or_unknown(member),
        or_unknown(host)
    )
}

/// A listing that failed: the remote could not be reached (exit 5).
fn unreachable(e: anyhow::Error) -> anyhow::Error {
    coded(EXIT_UNREACHABLE, format!("remote unreachable: {e:#}"))
}

/// What `--check` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Older than `--warn-age`, not yet than `--max-age` (Nagios's WARNING).
    Old,
    Stale,
    NoBackup,
}

/// `--check`'s verdict: how fresh, and the line that says of whom.
#[derive(Debug)]
pub struct Checked {
    pub freshness: Freshness,
    /// Whose backup, which generation, how old, against which bound.
    pub text: String,
    pub age: Option<Duration>,
    pub size: Option<u64>,
    pub max_age: Duration,
    pub warn_age: Option<Duration>,
}

impl Checked {
    /// Our own verdict: the `fresh:` line for stdout, or an error with
    /// the exit code of stale (3) or no backup (4).
    pub fn verdict(&self) -> Result<String> {
        match self.freshness {
            Freshness::Fresh | Freshness::Old => Ok(format!("fresh: {}", self.text)),
            Freshness::Stale => Err(coded(EXIT_STALE, format!("stale: {}", self.text))),
            Freshness::NoBackup => Err(coded(EXIT_NO_BACKUP, format!("no backup: {}", self.text))),
        }
    }
}

/// The Nagios plugin convention for a check's outcome: its exit status (0
/// OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and its one line for stdout
/// (`ETCD2-BACKUP STATE - text | perfdata`), secrets redacted. A check that
/// could not be made (unreachable remote, bad configuration) is UNKNOWN;
/// no backup at all is CRITICAL.
pub fn nagios(checked: &Result<Checked>) -> (u8, String) {
    let (code, state, text) = match checked {
        Err(e) => (3, "UNKNOWN", format!("{e:#}")),
        Ok(c) => {
            let (code, state) = match c.freshness {
                Freshness::Fresh => (0, "OK"),
                Freshness::Old => (1, "WARNING"),
                Freshness::Stale => (2, "CRITICAL"),
                Freshness::NoBackup => (2, "CRITICAL"),
            };
            let mut text = if c.freshness == Freshness::NoBackup {
                format!("no backup: {}", c.text)
            } else {
                c.text.clone()
            };
            if let (Some(age), Some(size)) = (c.age, c.size) {
                let warn = c
                    .warn_age
                    .map(|w| w.as_secs().to_string())
                    .unwrap_or_default();
                text.push_str(&format!(
                    " | age={}s;{warn};{};0 size={size}B",
                    age.as_secs(),
                    c.max_age.as_secs()
                ));
            }
            (code, state, text)
        }
    };
    let line = format!("ETCD2-BACKUP {state} - {text}");
    (code, crate::redact::redact(&line).replace('\n', " "))
}

/// One row of `--list-machines`: a machine-id's folder under the endpoint
/// and its newest complete backup (None where it has none).
#[derive(Debug, Serialize)]
pub struct MachineInfo {
    pub machine_id: String,
    pub host: Option<String>,
    pub member: Option<String>,
    pub generation: Option<String>,
    pub created_at: Option<String>,
    pub age_seconds: Option<u64>,
    pub size: Option<u64>,
    /// Complete generations.
    pub generations: usize,
    /// What etcd2-verify recorded last (VERIFIED.json); None where it never
    /// ran for this machine-id, or its record could not be read (warned).
    pub last_verify: Option<VerifyRecord>,
}

/// Every machine-id under the fleet's endpoint with its newest complete
/// backup, by machine-id. None at all is "no backup" (exit 4), as for
/// one machine.
pub fn list_machines(fleet: &Fleet) -> Result<Vec<MachineInfo>> {
    let ids = fleet.machines().map_err(unreachable)?;
    let now = crate::clock::unix(SystemTime::now());
    let mut rows = Vec::new();
    for id in ids {
        let repo = fleet.repo(&id)?;
        let listing = repo.listing().map_err(unreachable)?;
        let newest = repo.newest_readable(&listing).map_err(unreachable)?;
        let m = newest.as_ref().map(|sc| &sc.manifest);
        let last_verify = repo.last_verify().unwrap_or_else(|e| {
            tracing::warn!("machine-id {id}: {e:#}");
            None
        });
        rows.push(MachineInfo {
            host: m.map(|m| m.host.clone()),
            member: m.map(|m| m.member_name.clone()),
            generation: newest.as_ref().map(|sc| sc.generation.clone()),
            created_at: m.map(|m| m.created_at.clone()),
            age_seconds: m.map(|m| now.saturating_sub(m.created_unix)),
            size: newest.as_ref().map(|sc| sc.size),
            generations: listing.complete().len(),
            last_verify,
            machine_id: id,
        });
    }
    Ok(rows)
}

/// No machine under the endpoint: the "no backup" of `--list-machines`.
pub fn no_machines(fleet: &Fleet) -> anyhow::Error {
    coded(
        EXIT_NO_BACKUP,
        format!("no backup: no machine-id folder under {}", fleet.endpoint()),
    )
}

/// A human table of machines.
pub fn format_machines(rows: &[MachineInfo], now: u64) -> String {
    let dash = |s: &Option<String>| match s.as_deref() {
        None | Some("") => "-".to_owned(),
        Some(s) => s.to_owned(),
    };
    let mut out = format!(
        "{:<32} {:<20} {:<12} {:>9} {:>10} {:>4} {}\n",
        "MACHINE-ID", "HOST", "MEMBER", "AGE", "SIZE", "GENS", "LAST VERIFY"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<32} {:<20} {:<12} {:>9} {:>10} {:>4} {}\n",
            r.machine_id,
            dash(&r.host),
            dash(&r.member),
            r.age_seconds.map_or("no backup".into(), human_age),
            r.size.map_or("-".into(), crate::progress::human_size),
            r.generations,
            r.last_verify.as_ref().map_or("never".into(), |v| format!(
                "{} {} ago",
                if v.ok { "ok" } else { "FAILED" },
                human_age(now.saturating_sub(v.verified_unix))
            )),
        ));
    }
    out
}

/// A human table of generations.
pub fn format_table(rows: &[GenerationInfo]) -> String {
    let mut out = format!(
        "{:<30} {:<21} {:>9} {:>10} {:<3} {:<12} {:>10} {:>10} {:<24}\n",
        "GENERATION",
        "CREATED",
        "AGE",
        "SIZE",
        "API",
        "MEMBER",
        "REVISION",
        "CHANGES TO",
        "RECEIVED"
    );
    for r in rows {
        let mark = if r.latest { "  <- LATEST" } else { "" };
        let Some(d) = &r.details else {
            out.push_str(&format!(
                "{:<30} DAMAGED: {}{mark}\n",
                r.generation,
                r.damaged.as_deref().unwrap_or("unreadable sidecar")
            ));
            continue;
        };
        out.push_str(&format!(
            "{:<30} {:<21} {:>9} {:>10} {:<3} {:<12} {:>10} {:>10} {:<24}{mark}\n",
            r.generation,
            d.created_at,
            human_age(d.age_seconds),
            crate::progress::human_size(d.size),
            d.api.to_string(),
            if d.member_name.is_empty() {
                "?"
            } else {
                &d.member_name
            },
            d.revision
                .or(d.raft_index)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            d.changes_to
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            d.changes_to_received.as_deref().unwrap_or("-"),
        ));
        if let Some(u) = &d.uncovered_after {
            out.push_str(&format!(
                "{:<30} GAP: revisions {} to {} were not captured; no restore reaches them\n",
                "", u.from_revision, u.to_revision
            ));
        }
    }
    out
}

pub fn human_age(s: u64) -> String {
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// What `--into DIR` finds at DIR.
#[derive(Debug, PartialEq)]
enum Occupant {
    /// Nothing: DIR is absent (its parent exists) or empty.
    Nothing,
    /// An earlier `--into` of ours (as a rerun of the restore unit finds
    /// it): replaced once the new backup is verified and staged.
    EarlierFetch,
}

/// DIR must be absent, empty, or an earlier fetch of ours; anything else
/// is refused, naming what is there.
fn check_target(dir: &Path) -> Result<Occupant> {
    let names: Vec<std::ffi::OsString> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .with_context(|| format!("reading {}", dir.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = parent_of(dir);
            ensure!(parent.is_dir(), "{} does not exist", parent.display());
            return Ok(Occupant::Nothing);
        }
        Err(e) => return Err(e).with_context(|| format!("checking {}", dir.display())),
    };
    if names.is_empty() {
        return Ok(Occupant::Nothing);
    }
    match not_an_earlier_fetch(dir, &names) {
        None => Ok(Occupant::EarlierFetch),
        Some(why) => bail!(
            "{} exists and is not empty ({why}): fetch places a backup only into a new or empty \
             directory, or over an earlier fetch of its own",
            dir.display()
        ),
    }
}

/// Why DIR (holding `names`) is not an earlier `--into` of ours, if it is
/// not: ours holds our manifest, what it lists, and the captured changes,
/// and no symbolic link at its top (never followed).
fn not_an_earlier_fetch(dir: &Path, names: &[std::ffi::OsString]) -> Option<String> {
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Some("it is a symbolic link".into());
    }
    let manifest: Manifest = match std::fs::read(dir.join(archive::MANIFEST_NAME))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(m) => m,
        None => return Some(format!("no {} of an earlier fetch", archive::MANIFEST_NAME)),
    };
    let listed: std::collections::BTreeSet<&str> = manifest
        .files
        .iter()
        .filter_map(|f| f.path.split('/').next())
        .collect();
    for n in names {
        let name = n.to_string_lossy();
        let Ok(meta) = std::fs::symlink_metadata(dir.join(n)) else {
            return Some(format!("{name} cannot be read"));
        };
        if meta.file_type().is_symlink() {
            return Some(format!("{name} is a symbolic link"));
        }
        let ours = name == archive::MANIFEST_NAME
            || (name == crate::store::changes::CHANGES_DIR && meta.is_dir())
            || listed.contains(name.as_ref());
        if !ours {
            return Some(format!("{name} is no part of a fetched backup"));
        }
    }
    None
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temporary directory beside `dir`, on the same filesystem, so the final
/// placement is a rename (`.<name>.fetch.<pid>.*`). Removed on every path
/// unless placed; what a killed run left there is swept first.
fn staging_for(dir: &Path) -> Result<crate::scratch::Dir> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::scratch::Dir::create(&parent_of(dir), &format!(".{name}.fetch"))
}

/// Make `data` a verified directory (restore reads it) and rename it into
/// place.
fn place(manifest: &Manifest, data: &Path, dir: &Path) -> Result<()> {
    archive::mark_verified_dir(manifest, data)?;
    // Checked before the download too; rename(2) replaces an empty dir.
    let mut earlier = None;
    if check_target(dir)? == Occupant::EarlierFetch {
        // Moved into the staging dir (removed with it, or swept as ours
        // after a kill), the new one in its place, then the old removed.
        let old = data.with_file_name("earlier");
        std::fs::rename(dir, &old)
            .with_context(|| format!("moving the earlier fetch in {} aside", dir.display()))?;
        tracing::info!("replacing the earlier fetch in {}", dir.display());
        earlier = Some(old);
    }
    if let Err(e) = std::fs::rename(data, dir) {
        // The earlier fetch back where it was: nothing changed.
        if let Some(old) = &earlier {
            let _ = std::fs::rename(old, dir);
        }
        return Err(e)
            .with_context(|| format!("moving the verified backup into {}", dir.display()));
    }
    sync_dir(&parent_of(dir))?;
    tracing::info!("placed the backup in {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machines_table_says_no_backup_and_each_last_verify() {
        const NOW: u64 = 1_795_613_479;
        let verified = |ok: bool, ago: u64| VerifyRecord {
            format: 1,
            generation: "20261125T133119.835Z-5bdef278".into(),
            ok,
            verified_at: String::new(),
            verified_unix: NOW - ago,
            host: "node1".into(),
            revision: ok.then_some(21),
            error: (!ok).then(|| "does not restore".into()),
        };
        let row = |id: &str, backup: bool, last_verify| MachineInfo {
            machine_id: id.into(),
            host: backup.then(|| "node1".into()),
            member: backup.then(|| "e1".into()),
            generation: backup.then(|| "20261125T133119.835Z-5bdef278".into()),
            created_at: backup.then(|| "2026-11-25T13:31:19Z".into()),
            age_seconds: backup.then_some(12),
            size: backup.then_some(1255),
            generations: if backup { 3 } else { 0 },
            last_verify,
        };
        let table = format_machines(
            &[
                row(
                    "c0eff4c8a20b418ab9703ea0ddc086b0",
                    true,
                    Some(verified(true, 7200)),
                ),
                row(
                    "d1aa0e3b5c2f4e0f9b7c6a5d4e3f2a1b",
                    true,
                    Some(verified(false, 30)),
                ),
                row("f37b6c0e2d9a4c1b8e7f6a5d4c3b2a10", false, None),
            ],
            NOW,
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "c0eff4c8a20b418ab9703ea0ddc086b0",
                "node1",
                "e1",
                "12s",
                "1.2",
                "KiB",
                "3",
                "ok",
                "2h",
                "ago"
            ],
            "{table}"
        );
        assert!(lines[2].ends_with(" 3 FAILED 30s ago"), "{table}");
        assert!(
            lines[3].contains(" - ") && lines[3].contains("no backup"),
            "{table}"
        );
        assert!(lines[3].ends_with(" 0 never"), "{table}");
    }

    #[test]
    fn nagios_says_each_outcome_on_one_line_secrets_redacted() {
        let checked = |freshness, age: Option<u64>| {
            Ok(Checked {
                freshness,
                text: "member e1 on host node1 (machine-id m)".into(),
                age: age.map(Duration::from_secs),
                size: age.map(|_| 10),
                max_age: Duration::from_secs(600),
                warn_age: Some(Duration::from_secs(300)),
            })
        };
        let (code, line) = nagios(&checked(Freshness::Fresh, Some(12)));
        assert_eq!(code, 0);
        assert_eq!(
            line,
            "ETCD2-BACKUP OK - member e1 on host node1 (machine-id m) | age=12s;300;600;0 size=10B"
        );
        assert_eq!(nagios(&checked(Freshness::Old, Some(400))).0, 1);
        assert_eq!(nagios(&checked(Freshness::Stale, Some(900))).0, 2);
        let (code, line) = nagios(&checked(Freshness::NoBackup, None));
        assert_eq!(code, 2);
        assert!(
            line.starts_with("ETCD2-BACKUP CRITICAL - no backup: "),
            "{line}"
        );
        let failed = Err(anyhow::anyhow!(
            "listing :s3,secret_access_key=CANARY:bucket\nsecond line"
        ));
        let (code, line) = nagios(&failed);
        assert_eq!(code, 3);
        assert!(line.starts_with("ETCD2-BACKUP UNKNOWN - listing"), "{line}");
        assert!(!line.contains("CANARY") && !line.contains('\n'), "{line}");
    }

    #[test]
    fn human_formats() {
        assert_eq!(human_age(30), "30s");
        assert_eq!(human_age(3600), "60m");
        assert_eq!(human_age(3 * 86400), "3d");
    }

    #[test]
    fn occupied_target_is_refused_before_any_download() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x"), b"1").unwrap();
        let e = check_target(d.path()).unwrap_err();
        assert!(e.to_string().contains("is not empty"), "{e}");
        assert!(e.to_string().contains("no manifest.json"), "{e}");
        assert_eq!(
            check_target(&d.path().join("new")).unwrap(),
            Occupant::Nothing
        );
        assert!(check_target(Path::new("/nonexistent/a/b")).is_err());
    }

    /// An earlier fetch of ours: our manifest, what it lists, the changes.
    fn earlier_fetch(dir: &Path) {
        std::fs::create_dir_all(dir.join("member/snap")).unwrap();
        std::fs::write(dir.join("member/snap/db"), b"db").unwrap();
        std::fs::create_dir_all(dir.join("changes/chain")).unwrap();
        let files = archive::file_entries(dir, &["member/snap/db".to_owned()]).unwrap();
        let m = Manifest {
            files,
            ..Manifest::new("test".into(), Api::V3, Codec::Zstd)
        };
        archive::mark_verified_dir(&m, dir).unwrap();
    }

    #[test]
    fn an_earlier_fetch_is_recognised_and_anything_more_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("backup");
        earlier_fetch(&dir);
        assert_eq!(check_target(&dir).unwrap(), Occupant::EarlierFetch);

        std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
        let e = check_target(&dir).unwrap_err().to_string();
        assert!(
            e.contains("notes.txt is no part of a fetched backup"),
            "{e}"
        );
        std::fs::remove_file(dir.join("notes.txt")).unwrap();

        std::os::unix::fs::symlink("/etc", dir.join("etc")).unwrap();
        let e = check_target(&dir).unwrap_err().to_string();
        assert!(e.contains("etc is a symbolic link"), "{e}");
        std::fs::remove_file(dir.join("etc")).unwrap();

        let link = d.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let e = check_target(&link).unwrap_err().to_string();
        assert!(e.contains("it is a symbolic link"), "{e}");
    }

    #[test]
    fn placing_over_an_earlier_fetch_replaces_it_and_leaves_nothing_beside() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("backup");
        earlier_fetch(&dir);
        let staging = d.path().join(".backup.fetch.1");
        let data = staging.join("data");
        std::fs::create_dir_all(data.join("member/snap")).unwrap();
        std::fs::write(data.join("member/snap/db"), b"newer").unwrap();
        let files = archive::file_entries(&data, &["member/snap/db".to_owned()]).unwrap();
        let m = Manifest {
            files,
            ..Manifest::new("test".into(), Api::V3, Codec::Zstd)
        };
        place(&m, &data, &dir).unwrap();
        assert_eq!(std::fs::read(dir.join("member/snap/db")).unwrap(), b"newer");
        assert!(
            !dir.join("changes").exists(),
            "the earlier changes went with it"
        );
        assert!(archive::verify_dir(&dir).is_ok());
        assert_eq!(
            names(&staging),
            ["earlier"],
            "moved aside, into the staging dir"
        );
    }

    fn names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn row(revision: u64, changes_to: Option<u64>) -> GenerationInfo {
        GenerationInfo {
            generation: format!("g{revision}"),
            latest: false,
            damaged: None,
            details: Some(Details {
                created_at: String::new(),
                age_seconds: 0,
                size: 0,
                sha256: String::new(),
                api: Api::V3,
                member_name: String::new(),
                member_id: String::new(),
                cluster_id: String::new(),
                revision: Some(revision),
                raft_index: None,
                key_count: None,
                host: String::new(),
                changes_to,
                changes_to_received: None,
                changes_to_received_unix_ms: None,
                uncovered_after: None,
            }),
        }
    }

    fn uncovered(rows: &[GenerationInfo]) -> Vec<Option<(u64, u64)>> {
        rows.iter()
            .map(|r| {
                r.details
                    .as_ref()
                    .and_then(|d| d.uncovered_after.as_ref())
                    .map(|u| (u.from_revision, u.to_revision))
            })
            .collect()
    }

    #[test]
    fn uncovered_revisions_are_marked_on_the_window_before_them_once_capture_began() {
        // Before capture began nothing is uncovered; a window that reaches
        // the next base is whole; one that stops short leaves a gap up to
        // the next base; a base inside an earlier window's reach is covered.
        let mut rows = vec![
            row(10, None),
            row(20, Some(40)),
            row(40, Some(45)),
            row(60, Some(90)),
            row(70, None),
            row(95, None),
        ];
        mark_uncovered(&mut rows);
        assert_eq!(
            uncovered(&rows),
            vec![None, None, Some((46, 59)), Some((91, 94)), None, None]
        );
        // A damaged row is passed over, not a gap of its own.
        let mut rows = vec![row(5, Some(9)), row(10, Some(12))];
        rows.insert(
            1,
            GenerationInfo {
                generation: "bad".into(),
                latest: false,
                damaged: Some("unreadable".into()),
                details: None,
            },
        );
        mark_uncovered(&mut rows);
        assert_eq!(uncovered(&rows), vec![None, None, None]);
    }

    fn event(rev: u64, key: &[u8], put: bool) -> crate::store::changes::Event {
        use crate::store::changes::{Event, Op};
        Event {
            rev,
            ms: 1_796_302_862_000,
            op: if put {
                Op::Put {
                    key: key.to_vec(),
                    value: b"v".to_vec(),
                    lease: 0,
                    create: rev,
                    ver: 1,
                }
            } else {
                Op::Del { key: key.to_vec() }
            },
        }
    }

    #[test]
    fn a_revision_of_many_events_is_summed_up_under_the_prefix_its_keys_share() {
        let mut t = RevisionTally::new(&event(7, b"/registry/pods/a", false));
        t.add(&event(7, b"/registry/pods/a", false));
        assert_eq!(t.line(), None, "one event is its own summary");
        for i in 0..4811 {
            let key = format!(
                "/registry/{}/x{i}",
                if i % 2 == 0 { "pods" } else { "secrets" }
            );
            t.add(&event(7, key.as_bytes(), false));
        }
        assert_eq!(
            t.line().unwrap(),
            "# revision 7 at 2026-12-03T13:01:02.000Z: 4,812 deletes under /registry/\n"
        );
        let mut t = RevisionTally::new(&event(8, b"a", true));
        t.add(&event(8, b"a", true));
        t.add(&event(8, b"b", false));
        assert_eq!(
            t.line().unwrap(),
            "# revision 8 at 2026-12-03T13:01:02.000Z: 1 put, 1 delete\n",
            "no shared prefix up to a slash: no `under`"
        );
    }

    #[test]
    fn counts_and_keys_are_printed_for_a_terminal() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(printable("/k/é".as_bytes()), "/k/é");
        assert_eq!(printable(b"a\nb\x1b[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(printable(b"\xff\xfe/x"), "\\xff\\xfe/x");
    }
}

//! The `etcd2-fetch` job: find a machine's newest (or a chosen) backup,
//! download it, verify every byte, and only then place it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use crate::archive::{self, Api, Codec, Manifest, FORMAT_VERSION};
use crate::fsutil::sync_dir;
use crate::rclone::RemotePath;
use crate::sink::{Output, Sink};
use crate::store::{Choice, Repo, Sidecar, Source};

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
}

impl FetchJob {
    /// Decide what to fetch ([`Repo::choose`]: the one choice etcd2-verify
    /// makes too).
    pub fn resolve(&self) -> Result<Source> {
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
                check_empty_target(dir)?;
                None
            }
            Target::Archive(o) => Some(Sink::open_verified(o, &self.work_dir)?),
        };
        match self.resolve()? {
            Source::Generation(sc) => self.fetch_generation(&sc, target, sink),
            Source::Legacy(dir) => self.fetch_legacy(&dir, target, sink),
        }
    }

    fn fetch_generation(
        &self,
        sc: &Sidecar,
        target: &Target,
        sink: Option<Sink>,
    ) -> Result<Manifest> {
        let manifest = match (target, sink) {
            (Target::Into(dir), _) => {
                let staging = staging_for(dir)?;
                let data = staging.path().join("data");
                let m = self.repo.download(sc, Some(&data), None)?;
                crate::scratch::fault_point("fetch-staged");
                place(&m, &data, dir)?;
                m
            }
            (Target::Archive(_), sink) => {
                let mut sink = sink.context("internal: no output sink")?;
                let m = self.repo.download(sc, None, Some(&mut sink))?;
                sink.finish()?;
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

    /// Whether the newest complete generation is younger than `max_age`:
    /// the one-line verdict, or an error carrying the exit code of
    /// "stale", "no backup" or "remote unreachable" (`cli::EXIT_*`).
    pub fn check(&self, max_age: std::time::Duration) -> Result<String> {
        use crate::cli::{coded, EXIT_NO_BACKUP, EXIT_STALE, EXIT_UNREACHABLE};
        self.repo.check_endpoint()?;
        let layout = self.repo.layout();
        let unreachable =
            |e: anyhow::Error| coded(EXIT_UNREACHABLE, format!("remote unreachable: {e:#}"));
        // Newest first; a damaged sidecar is passed over (--list shows it).
        let listing = self.repo.listing().map_err(unreachable)?;
        let Some(sc) = self.repo.newest_readable(&listing).map_err(unreachable)? else {
            return Err(coded(
                EXIT_NO_BACKUP,
                format!(
                    "no backup: no complete generation for machine-id {} under {}",
                    layout.machine_id, layout.endpoint
                ),
            ));
        };
        let now = crate::clock::unix(SystemTime::now());
        let age = std::time::Duration::from_secs(now.saturating_sub(sc.manifest.created_unix));
        let (age_s, max_s) = (
            crate::cmd::human_duration(age),
            crate::cmd::human_duration(max_age),
        );
        if age > max_age {
            return Err(coded(
                EXIT_STALE,
                format!(
                    "stale: the newest backup of machine-id {} ({}, taken {}) is {age_s} old, more \
                     than --max-age {max_s}",
                    layout.machine_id, sc.generation, sc.manifest.created_at
                ),
            ));
        }
        Ok(format!(
            "fresh: the newest backup of machine-id {} ({}, taken {}) is {age_s} old (--max-age {max_s})",
            layout.machine_id, sc.generation, sc.manifest.created_at
        ))
    }

    /// Every complete generation, oldest first.
    pub fn list(&self) -> Result<Vec<GenerationInfo>> {
        self.repo.check_endpoint()?;
        let listing = self.repo.listing()?;
        let latest = self.repo.pointer()?.map(|p| p.generation);
        let now = crate::clock::unix(SystemTime::now());
        let mut rows = Vec::new();
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
                }),
            });
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

/// A human table of generations.
pub fn format_table(rows: &[GenerationInfo]) -> String {
    let mut out = format!(
        "{:<30} {:<21} {:>9} {:>10} {:<3} {:<12} {:>10}\n",
        "GENERATION", "CREATED", "AGE", "SIZE", "API", "MEMBER", "REVISION"
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
            "{:<30} {:<21} {:>9} {:>10} {:<3} {:<12} {:>10}{mark}\n",
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
        ));
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

fn check_empty_target(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            ensure!(
                rd.next().is_none(),
                "{} exists and is not empty: fetch places a backup only into a new or empty directory",
                dir.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = parent_of(dir);
            ensure!(parent.is_dir(), "{} does not exist", parent.display());
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("checking {}", dir.display())),
    }
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
    if dir.exists() {
        // Checked empty before the download; rename(2) replaces an empty dir.
        check_empty_target(dir)?;
    }
    std::fs::rename(data, dir)
        .with_context(|| format!("moving the verified backup into {}", dir.display()))?;
    sync_dir(&parent_of(dir))?;
    tracing::info!("placed the backup in {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let e = check_empty_target(d.path()).unwrap_err();
        assert!(e.to_string().contains("is not empty"));
        assert!(check_empty_target(&d.path().join("new")).is_ok());
        assert!(check_empty_target(Path::new("/nonexistent/a/b")).is_err());
    }
}

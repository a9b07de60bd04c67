//! The `etcd2-restore` job: turn a fetched backup into the data dir of a
//! healthy single-member cluster (the founding member). The live data dir
//! is replaced only once the restored one is complete and checked.

use std::io::BufReader;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::archive::{self, Manifest};
use crate::cmd::Program;
use crate::datadir;
use crate::etcd::Etcdctl;
use crate::member;

pub struct RestoreJob {
    /// A directory from `etcd2-fetch --into`, or an archive file.
    pub from: PathBuf,
    pub data_dir: PathBuf,
    pub name: String,
    /// This member's peer URL(s), as the cluster will know it.
    pub peer_urls: String,
    pub etcd: Program,
    /// etcdctl, for talking to the private temporary etcd.
    pub etcdctl: Etcdctl,
    pub wait: Duration,
    /// v3: raise the restored revision by this much (`--bump-revision`).
    pub bump_revision: Option<u64>,
    /// With `bump_revision`: `--mark-compacted`.
    pub mark_compacted: bool,
    pub keep_aside: usize,
    pub owner: String,
    /// Where the replay of the changes stops (only ever earlier than the
    /// fetch's own stop).
    pub stop: Option<member::Stop>,
    /// Restore beside the live member instead, never touching the data
    /// dir (docs/point-in-time.md, "a side cluster").
    pub side: Option<Side>,
}

/// A side restore: the member built (and the changes replayed) in scratch
/// under `work_dir`, then served on private loopback ports and/or written
/// as a snapshot file.
pub struct Side {
    pub work_dir: PathBuf,
    /// Serve it until stopped (SIGINT/SIGTERM), printing its endpoint.
    pub keep_running: bool,
    /// Write it as an etcd snapshot file (`etcdctl snapshot save`).
    pub output: Option<PathBuf>,
}

impl RestoreJob {
    pub fn run(&self) -> Result<()> {
        if let Some(side) = &self.side {
            return self.run_side(side);
        }
        let started = Instant::now();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.data_dir)
            .with_context(|| {
                format!(
                    "creating data dir {} (ETCD_DATA_DIR)",
                    self.data_dir.display()
                )
            })?;
        datadir::check_recognised(&self.data_dir)?;
        datadir::ensure_unused(&self.data_dir)?;
        let peer = self.peer_urls.trim();
        ensure!(
            !peer.is_empty()
                && peer
                    .split(',')
                    .all(|u| u.starts_with("http://") || u.starts_with("https://")),
            "--peer-urls {peer:?} is not a list of http(s) URLs (ETCD_INITIAL_ADVERTISE_PEER_URLS)"
        );

        // Staging inside the data dir: same filesystem, so the final step is
        // an atomic exchange. Removed on every error path.
        let staging = crate::scratch::Dir::create(&self.data_dir, datadir::RESTORE_STAGING)?;
        let (manifest, backup) = self.open_backup(staging.path())?;
        self.check_can_run(&manifest)?;
        tracing::info!(
            "restoring {} backup of member {:?} (cluster {}) taken {} into {} as member {:?} with peer URLs {peer}",
            manifest.api,
            manifest.member_name,
            manifest.cluster_id,
            manifest.created_at,
            self.data_dir.display(),
            self.name
        );
        let new_dir = staging.path().join("data");
        member::build(&self.spec(), &backup, &manifest, &new_dir, staging.path())?;
        let aside = datadir::install_member(&self.data_dir, &new_dir.join("member"))?;
        if let Some(a) = &aside {
            tracing::info!("previous member data kept at {}", a.display());
        }
        datadir::prune_aside(&self.data_dir, self.keep_aside, aside.as_deref())?;
        drop(staging);
        datadir::fix_ownership(&self.data_dir, &self.owner)?;
        tracing::info!(
            "restored {} as a single-member cluster in {:.1}s: start etcd now, then add the other members one at a time",
            self.data_dir.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The backup verified: a fetched directory as it is, an archive
    /// extracted into `staging`.
    fn open_backup(&self, staging: &Path) -> Result<(Manifest, PathBuf)> {
        if self.from.is_dir() {
            return Ok((archive::verify_dir(&self.from)?, self.from.clone()));
        }
        let f = std::fs::File::open(&self.from)
            .with_context(|| format!("opening {}", self.from.display()))?;
        let dest = staging.join("backup");
        let size = f.metadata().map(|m| m.len()).ok();
        let reader = crate::progress::ProgressReader::new(BufReader::new(f), "extracting", size);
        let m = archive::read_verified(reader, Some(&dest)).with_context(|| {
            format!(
                "{} is not a whole etcd2-backup archive",
                self.from.display()
            )
        })?;
        Ok((m, dest))
    }

    /// The side restore: built and checked as a restore builds the
    /// founder's member, in scratch; then written as a snapshot file and/or
    /// served on private loopback ports until stopped. The data dir and
    /// the live member are never touched; the scratch goes when we do.
    fn run_side(&self, side: &Side) -> Result<()> {
        let started = Instant::now();
        // Claim the output first: a bad path fails before any work.
        let out = match &side.output {
            Some(o) => Some((o, crate::fsutil::AtomicFile::create(o, 0o600)?)),
            None => None,
        };
        crate::scratch::work_dir(&side.work_dir)?;
        let staging = crate::scratch::Dir::create(&side.work_dir, "etcd2-restore-side")?;
        let (manifest, backup) = self.open_backup(staging.path())?;
        ensure!(
            manifest.api == archive::Api::V3,
            "{} is a v2 backup: a side restore serves v3 keys only (restore it as the founder, \
             or convert it: docs/etcd2-convert.md)",
            self.from.display()
        );
        let spec = member::Spec {
            name: "etcd2-restore-side",
            // Never listened on: the member is started on private
            // loopback ports of its own.
            peer_urls: "http://127.0.0.1:2380",
            bump_revision: None,
            mark_compacted: false,
            ..self.spec()
        };
        member::check_can_build(&spec, &manifest)?;
        let new_dir = staging.path().join("data");
        let built = member::build(&spec, &backup, &manifest, &new_dir, staging.path())?;
        let rev = built.revision.unwrap_or_default();
        let mut serving = member::serve(&spec, &new_dir, staging.path())?;
        let url = serving.client_url().to_owned();
        if let Some((o, mut file)) = out {
            let saved = staging.path().join("snapshot.db");
            self.etcdctl.at(&url).snapshot_save(&saved)?;
            let mut f = std::fs::File::open(&saved)
                .with_context(|| format!("opening {}", saved.display()))?;
            std::io::copy(&mut f, &mut file).with_context(|| format!("writing {}", o.display()))?;
            file.commit()?;
            tracing::info!(
                "wrote the restored keyspace at revision {rev} to {} as an etcd snapshot file \
                 (etcdutl snapshot status / restore read it)",
                o.display()
            );
        }
        if !side.keep_running {
            serving.stop()?;
            tracing::info!(
                "side restore done in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        crate::cli::print_stdout(&format!("ETCDCTL_ENDPOINTS={url}\n"))?;
        tracing::info!(
            "side member serving the restored keyspace at revision {rev} on {url} (etcd pid {}), \
             apart from the live cluster, ready in {:.1}s: read what to copy back with \
             ETCDCTL_ENDPOINTS={url} etcdctl get --prefix KEY; stop it with Ctrl-C (or kill {}): \
             the side member and its scratch in {} go with it",
            serving.pid().map_or("?".to_owned(), |p| p.to_string()),
            started.elapsed().as_secs_f64(),
            std::process::id(),
            side.work_dir.display()
        );
        crate::journal::notify_status(&format!("side member serving revision {rev} on {url}"));
        serving.wait()
    }

    /// Refuse, before anything is built, what this host's etcd tools cannot
    /// do: a v2 backup where etcd is 3.6 (no v2 store), a revision bump where
    /// the snapshot tool lacks the flag or the backup is v2.
    fn spec(&self) -> member::Spec<'_> {
        member::Spec {
            etcd: &self.etcd,
            etcdctl: &self.etcdctl,
            name: &self.name,
            peer_urls: self.peer_urls.trim(),
            wait: self.wait,
            bump_revision: self.bump_revision,
            mark_compacted: self.mark_compacted,
            stop: self.stop,
        }
    }

    fn check_can_run(&self, manifest: &Manifest) -> Result<()> {
        member::check_can_build(&self.spec(), manifest)
    }
}

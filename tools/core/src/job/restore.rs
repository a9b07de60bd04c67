//! The `etcd2-restore` job: turn a fetched backup into the data dir of a
//! healthy single-member cluster (the founding member). The live data dir
//! is replaced only once the restored one is complete and checked.

use std::io::BufReader;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
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
}

impl RestoreJob {
    pub fn run(&self) -> Result<()> {
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
        let (manifest, backup) = if self.from.is_dir() {
            (archive::verify_dir(&self.from)?, self.from.clone())
        } else {
            let f = std::fs::File::open(&self.from)
                .with_context(|| format!("opening {}", self.from.display()))?;
            let dest = staging.path().join("backup");
            let size = f.metadata().map(|m| m.len()).ok();
            let reader =
                crate::progress::ProgressReader::new(BufReader::new(f), "extracting", size);
            let m = archive::read_verified(reader, Some(&dest)).with_context(|| {
                format!(
                    "{} is not a whole etcd2-backup archive",
                    self.from.display()
                )
            })?;
            (m, dest)
        };
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
        }
    }

    fn check_can_run(&self, manifest: &Manifest) -> Result<()> {
        member::check_can_build(&self.spec(), manifest)
    }
}

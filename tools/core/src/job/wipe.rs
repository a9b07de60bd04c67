//! The `etcd2-wipe` job: set an etcd member's data aside (or purge it) so
//! the node can be restored or re-joined; only in a recognised data dir.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::datadir;

pub struct WipeJob {
    pub data_dir: PathBuf,
    /// Delete the member data instead of setting it aside.
    pub purge: bool,
    pub keep_aside: usize,
    /// Owner to give the data dir, when that user exists.
    pub owner: String,
}

impl WipeJob {
    /// Make the data dir ready to receive a new member. Returns where the
    /// old member went (None when purged or absent).
    pub fn run(&self) -> Result<Option<PathBuf>> {
        let (data_dir, purge, keep_aside, owner) = (
            self.data_dir.as_path(),
            self.purge,
            self.keep_aside,
            self.owner.as_str(),
        );
        let meta = std::fs::metadata(data_dir)
            .with_context(|| format!("data dir {} (ETCD_DATA_DIR)", data_dir.display()))?;
        anyhow::ensure!(meta.is_dir(), "{} is not a directory", data_dir.display());
        datadir::check_recognised(data_dir)?;
        datadir::ensure_unused(data_dir)?;
        let member = data_dir.join("member");
        let result = if !member.exists() {
            tracing::info!(
                "{} holds no member data: nothing to wipe",
                data_dir.display()
            );
            None
        } else if purge {
            std::fs::remove_dir_all(&member)
                .with_context(|| format!("deleting {}", member.display()))?;
            crate::fsutil::sync_dir(data_dir)?;
            tracing::info!("deleted {}", member.display());
            None
        } else {
            let aside = datadir::set_aside(data_dir)?;
            if let Some(a) = &aside {
                tracing::info!("moved {} aside to {}", member.display(), a.display());
            }
            aside
        };
        datadir::prune_aside(data_dir, keep_aside, result.as_deref())?;
        datadir::fix_ownership(data_dir, owner)?;
        Ok(result)
    }
}

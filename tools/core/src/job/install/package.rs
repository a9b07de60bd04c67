//! The package: its layout (shared with the packager, so the two cannot
//! drift apart) and its verification against SHA256SUMS.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};

use crate::cmd::show;

/// The package's layout: paths inside the extracted `etcd2-backup/` folder.
pub mod payload {
    /// The installer itself, at the top.
    pub const INSTALLER: &str = "etcd2-backup-install";
    /// Our programs, and rclone/etcdctl/etcd when bundled.
    pub const BIN: &str = "bin";
    /// The systemd units.
    pub const UNITS: &str = "units";
    /// The settings drop-in.
    pub const CONF: &str = "conf/30-etcd2-backup-restore.conf";
    /// The operator's rclone config (secrets).
    pub const RCLONE_CONF: &str = "conf/rclone.conf";
    /// Man pages and shell completions.
    pub const SHARE: &str = "share";
    /// `sha256  path` of every other file of the package.
    pub const SUMS: &str = "SHA256SUMS";
    /// The tools the package always holds in bin/: every tool of
    /// `tools/tools.list` but the installer, which sits at the top.
    pub fn tools() -> Vec<&'static str> {
        crate::tools()
            .into_iter()
            .filter(|t| *t != INSTALLER)
            .collect()
    }
    /// Third-party programs the package may bundle.
    pub const BUNDLED: [&str; 3] = ["rclone", "etcdctl", "etcd"];
    /// The units, all installed; none enabled by the installer.
    pub const UNIT_FILES: [&str; 8] = [
        "etcd2-backup.service",
        "etcd2-backup.timer",
        "etcd2-restore.service",
        "etcd2-restore-member@.service",
        "etcd2-join.service",
        "etcd2-verify.service",
        "etcd2-verify.timer",
        "etcd2-watch.service",
    ];
}

/// Check every file listed in SHA256SUMS and that every file to install is
/// listed; a damaged or half-extracted package installs nothing.
pub fn verify_payload(dir: &Path) -> Result<BTreeMap<String, String>> {
    let sums_path = dir.join(payload::SUMS);
    let text = fs::read_to_string(&sums_path).with_context(|| {
        format!(
            "reading {}: is {} an extracted etcd2-backup.tgz? (pass --from DIR)",
            show(&sums_path),
            show(dir)
        )
    })?;
    let mut sums = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let Some((sum, rel)) = line.split_once("  ") else {
            bail!("{} line {}: not `sha256  path`", show(&sums_path), n + 1);
        };
        let rel_path = Path::new(rel);
        if rel_path.is_absolute()
            || rel_path
                .components()
                .any(|c| matches!(c, Component::ParentDir))
        {
            bail!(
                "{} line {}: path {rel:?} leaves the package",
                show(&sums_path),
                n + 1
            );
        }
        let got = crate::digest::file_sha256(&dir.join(rel))?.sha256;
        if got != sum {
            bail!(
                "{} is damaged: sha256 {got}, SHA256SUMS says {sum}; extract the package again",
                show(&dir.join(rel))
            );
        }
        sums.insert(rel.to_string(), got);
    }
    for required in [payload::CONF, payload::RCLONE_CONF]
        .into_iter()
        .map(String::from)
        .chain(
            payload::UNIT_FILES
                .iter()
                .map(|u| format!("{}/{u}", payload::UNITS)),
        )
        .chain(
            payload::tools()
                .into_iter()
                .map(|t| format!("{}/{t}", payload::BIN)),
        )
    {
        if !sums.contains_key(&required) {
            bail!("the package lacks {required} (not in {})", payload::SUMS);
        }
    }
    tracing::info!(
        "package {} verified: {} files match SHA256SUMS",
        show(dir),
        sums.len()
    );
    Ok(sums)
}

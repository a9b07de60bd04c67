//! What was installed (`installed.json`), and uninstalling exactly that.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{at, systemctl, systemd_running, MANIFEST, MAN_DIR, UNIT_DIR};
use crate::cmd::show;

/// What we installed, so that a reinstall knows the operator's edits and an
/// uninstall removes exactly our files.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Manifest {
    pub version: String,
    pub entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    File {
        path: String,
        sha256: String,
        mode: u32,
        keep: bool,
    },
    Link {
        path: String,
        target: String,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::File { path, .. } | Entry::Link { path, .. } => path,
        }
    }
}

pub(super) fn read_manifest(root: &Path) -> Result<Manifest> {
    let p = at(root, MANIFEST);
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{} is damaged", show(&p))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", show(&p))),
    }
}

/// Remove what the manifest lists, except files the operator changed since
/// and files marked keep (the settings and the rclone config); stop and
/// disable the timer. Last, one line names every copy of the credentials
/// and settings left: the kept files and their copies beside them.
pub fn uninstall(root: &Path) -> Result<()> {
    if root == Path::new("/") && !nix::unistd::geteuid().is_root() {
        bail!("uninstalling from / needs root (or use --root DIR)");
    }
    let mpath = at(root, MANIFEST);
    if !mpath.exists() {
        bail!(
            "{} not found: etcd2-backup is not installed under {}",
            show(&mpath),
            show(root)
        );
    }
    let manifest = read_manifest(root)?;
    if systemd_running(root) {
        for args in [
            ["stop", "etcd2-backup.timer"],
            ["disable", "etcd2-backup.timer"],
        ] {
            if let Err(e) = systemctl(&args) {
                tracing::warn!("systemctl {}: {e:#}", args.join(" "));
            }
        }
    }
    // `systemctl enable` made these; remove them so no dangling link stays.
    let wants_dirs = std::iter::once("timers.target".to_string())
        .chain(super::EtcdUnit::ALL.iter().map(|u| u.name().to_string()));
    for wants in wants_dirs {
        let l = at(
            root,
            &format!("{UNIT_DIR}/{wants}.wants/etcd2-backup.timer"),
        );
        if fs::symlink_metadata(&l).is_ok() {
            fs::remove_file(&l).with_context(|| format!("removing {}", show(&l)))?;
            tracing::info!("removed {}", show(&l));
        }
    }
    let mut dirs = std::collections::BTreeSet::new();
    let mut left = Vec::new();
    for e in manifest.entries.iter().rev() {
        let p = at(root, e.path());
        match e {
            Entry::File {
                keep: true, path, ..
            } => {
                let copies = copies_of(root, path)?;
                if p.exists() {
                    tracing::warn!("kept {path}: it holds the remote's credentials or settings");
                    left.push(path.clone());
                }
                left.extend(copies);
                continue;
            }
            Entry::File { sha256, path, .. } => {
                match crate::digest::file_sha256(&p).map(|d| d.sha256) {
                    Ok(s) if s == *sha256 => {}
                    Ok(_) => {
                        tracing::warn!("kept {path}: it was changed since it was installed");
                        continue;
                    }
                    Err(_) if !p.exists() => continue,
                    Err(e) => return Err(e),
                }
            }
            Entry::Link { target, .. } => {
                if !fs::read_link(&p).is_ok_and(|t| t == Path::new(target)) {
                    continue;
                }
            }
        }
        fs::remove_file(&p).with_context(|| format!("removing {}", show(&p)))?;
        if super::is_doc(e.path()) {
            tracing::debug!("removed {}", e.path());
        } else {
            tracing::info!("removed {}", e.path());
        }
        if let Some(d) = Path::new(e.path()).parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    fs::remove_file(&mpath).with_context(|| format!("removing {}", show(&mpath)))?;
    dirs.insert(
        Path::new(MANIFEST)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    );
    // Empty directories we filled, deepest first; never /opt/bin or the unit dir.
    let mut dirs: Vec<PathBuf> = dirs.into_iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let mut d = d.as_path();
        while d.starts_with("/opt/etcd2-backup")
            || d.starts_with(MAN_DIR)
            || Some(d) == Path::new(MAN_DIR).parent()
            || d.extension().is_some_and(|x| x == "d")
        {
            if fs::remove_dir(at(root, &d.to_string_lossy())).is_err() {
                break;
            }
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
    }
    if systemd_running(root) {
        systemctl(&["daemon-reload"])?;
    }
    tracing::info!(
        "uninstalled from {}; backups on the remote and etcd's data are untouched",
        show(root)
    );
    if !left.is_empty() {
        left.sort();
        left.dedup();
        tracing::warn!(
            "left on this host, holding the remote's credentials or settings: {}; remove them \
             yourself when no longer needed",
            left.join(", ")
        );
    }
    Ok(())
}

/// The copies of a kept file beside it (`abs` inside `root`): the
/// package's version a reinstall put there (`FILE.new`) and the copies
/// earlier installers set aside (`FILE.before-install-<time>`), as
/// absolute paths on the target.
fn copies_of(root: &Path, abs: &str) -> Result<Vec<String>> {
    let p = Path::new(abs);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
        return Ok(vec![]);
    };
    let name = name.to_string_lossy();
    let rd = match fs::read_dir(at(root, &dir.to_string_lossy())) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let n = e.file_name().to_string_lossy().into_owned();
        let copy = n
            .strip_prefix(name.as_ref())
            .is_some_and(|rest| rest == ".new" || rest.starts_with(".before-install-"));
        if copy {
            out.push(dir.join(&n).display().to_string());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copies_of_a_kept_file_are_its_new_and_before_install_siblings() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        fs::create_dir_all(&etc).unwrap();
        for n in [
            "rclone.conf",
            "rclone.conf.new",
            "rclone.conf.before-install-20261125T134313Z",
            "rclone.conf.bak",
            "rclone.confx.new",
            "other.new",
        ] {
            fs::write(etc.join(n), "x").unwrap();
        }
        assert_eq!(
            copies_of(root.path(), "/etc/rclone.conf").unwrap(),
            [
                "/etc/rclone.conf.before-install-20261125T134313Z",
                "/etc/rclone.conf.new"
            ]
        );
        assert!(copies_of(root.path(), "/nowhere/rclone.conf")
            .unwrap()
            .is_empty());
    }
}

//! The `etcd2-backup-install` job: puts an extracted `etcd2-backup.tgz` in
//! place on a host (or under a staging root), and takes it away again. Split
//! by concern: [`package`] (layout and SHA256SUMS), [`os`], [`dropins`]
//! (etcd's settings drop-ins), [`record`] (installed.json and uninstall).
//!
//! The package layout ([`Payload`]) is shared with the packager, so the two
//! cannot drift apart. Every file is written atomically; a file that the
//! operator changed since we installed it is copied aside before it is
//! replaced (the settings and the rclone config are not replaced: the
//! package's version goes beside them as `FILE.new`), and left alone on
//! uninstall.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cmd::{show, Program};
use crate::fsutil::{sync_dir, AtomicFile};

pub mod dropins;
pub mod etcd_unit;
pub mod kubeadm;
pub mod os;
pub mod package;
pub mod record;

pub use dropins::{dropin_env, env_only_dropin, Setting};
pub use etcd_unit::EtcdUnit;
pub use os::{classify_os, parse_os_release, read_os, Os};
pub use package::{payload, verify_payload};
pub use record::{uninstall, Entry, Manifest};

/// Where things go on the target (absolute paths inside the root).
pub const BIN_DIR: &str = "/opt/bin";
pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const SHARE_DIR: &str = "/opt/etcd2-backup/share";
/// Man pages: man-db searches `DIR/../share/man` for every DIR of PATH, so
/// with /opt/bin in PATH (as on Flatcar) `man etcd2-push` finds them here
/// without MANPATH.
pub const MAN_DIR: &str = "/opt/share/man";
/// bash completions: bash-completion sources every file of its compat dir
/// when an interactive shell starts (/usr/share/bash-completion, where it
/// loads them on demand, is read-only on Flatcar).
pub const BASH_COMPLETION_DIR: &str = "/etc/bash_completion.d";
pub const MANIFEST: &str = "/opt/etcd2-backup/installed.json";
pub const DEFAULT_RCLONE_CONF: &str = "/etc/rclone.conf";
/// The units that get the settings file and etcd's settings.
pub const JOBS: [&str; 6] = [
    "etcd2-backup",
    "etcd2-restore",
    "etcd2-restore-member@",
    "etcd2-join",
    "etcd2-verify",
    "etcd2-watch",
];
/// The settings drop-in of earlier versions (and of the original package),
/// in each job's `.d` dir: its name is not taken by etcd's drop-ins.
pub const OUR_DROPIN: &str = "30-etcd2-backup-restore.conf";
/// The top of the settings file the installer writes from the package's
/// settings drop-in.
const ENV_FILE_HEADER: &str = "\
# /etc/etcd2-backup/etcd2-backup.env: the settings of etcd2-backup, written by
# etcd2-backup-install from the package's 30-etcd2-backup-restore.conf. The
# units read it (EnvironmentFile=), and so does every etcd2-* tool started
# in a shell, so `etcd2-fetch --list` needs no settings typed. A variable set
# in the environment wins over this file; a flag wins over both. NAME=value
# lines; quote values with spaces (\"...\"). Mode 0600: it may hold secrets.
# After editing it: nothing to reload, each start reads it.
#
# The member's own settings (ETCD_NAME, ETCD_INITIAL_ADVERTISE_PEER_URLS,
# ETCD_ADVERTISE_CLIENT_URLS, ETCD_DATA_DIR) reach the units from etcd's unit
# and drop-ins; set them here only to override (this file wins over them,
# /etc/default/etcd on Debian wins over this file).
";
/// The drop-in etcd2-join.service writes; never linked into our units.
pub const JOIN_DROPIN: &str = "40-join-cluster.conf";

/// Where a file of the package's share/ goes: man pages and bash
/// completions where `man` and bash look; zsh and fish completions, which
/// have no such place outside /usr, under [`SHARE_DIR`].
pub fn share_dest(rel: &str) -> String {
    if let Some(page) = rel.strip_prefix("man/") {
        format!("{MAN_DIR}/{page}")
    } else if let Some(name) = rel.strip_prefix("completions/bash/") {
        format!("{BASH_COMPLETION_DIR}/{name}")
    } else {
        format!("{SHARE_DIR}/{rel}")
    }
}

/// Documentation (man pages, completions): installed and removed at debug
/// level, so the log names what matters.
pub(crate) fn is_doc(abs: &str) -> bool {
    [SHARE_DIR, MAN_DIR, BASH_COMPLETION_DIR]
        .iter()
        .any(|d| abs.starts_with(&format!("{d}/")))
}

/// A path on the target, inside `root`.
pub(crate) fn at(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn mkdirs(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", show(dir)))
}

pub struct InstallJob {
    /// The extracted package.
    pub from: PathBuf,
    /// The target's root: `/`, or a staging dir.
    pub root: PathBuf,
    /// Install on an OS other than CoreOS/Flatcar/Fedora CoreOS.
    pub any_os: bool,
    /// etcd settings drop-ins to use, besides those found.
    pub etcd_dropins: Vec<PathBuf>,
    /// The unit etcd runs as [default: the one found on the target].
    pub etcd_unit: Option<EtcdUnit>,
}

struct Installer<'a> {
    root: &'a Path,
    previous: BTreeMap<String, Entry>,
    entries: Vec<Entry>,
    changed: usize,
}

impl Installer<'_> {
    /// Put `bytes` at `abs` with `mode`, atomically. A file there that is
    /// neither this content nor what we installed last time (the operator
    /// edited it, or it was never ours) is copied aside first.
    fn file(&mut self, abs: &str, bytes: &[u8], mode: u32, keep: bool) -> Result<()> {
        if keep {
            return self.conffile(abs, bytes, mode);
        }
        let path = at(self.root, abs);
        let sha = crate::digest::sha256_hex(bytes);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                let old = crate::digest::file_sha256(&path)?.sha256;
                if old == sha && meta.permissions().mode() & 0o7777 == mode {
                    tracing::debug!("{abs}: unchanged");
                    self.entries.push(Entry::File {
                        path: abs.into(),
                        sha256: sha,
                        mode,
                        keep,
                    });
                    return Ok(());
                }
                let ours = matches!(self.previous.get(abs), Some(Entry::File { sha256, .. }) if *sha256 == old);
                if old != sha && !ours {
                    let aside = at(
                        self.root,
                        &format!(
                            "{abs}.before-install-{}",
                            crate::clock::compact(std::time::SystemTime::now(), false)
                        ),
                    );
                    fs::copy(&path, &aside)
                        .with_context(|| format!("keeping {} as {}", show(&path), show(&aside)))?;
                    tracing::warn!(
                        "{abs} was changed here since it was installed: kept it as {}",
                        show(&aside)
                    );
                }
            }
            Ok(meta) if meta.is_dir() => bail!("{} is a directory; expected a file", show(&path)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("inspecting {}", show(&path))),
        }
        self.write(&path, bytes, mode)?;
        if is_doc(abs) {
            tracing::debug!("installed {abs} (mode {mode:04o})");
        } else {
            tracing::info!("installed {abs} (mode {mode:04o})");
        }
        self.changed += 1;
        self.entries.push(Entry::File {
            path: abs.into(),
            sha256: sha,
            mode,
            keep,
        });
        Ok(())
    }

    /// A file the operator owns once it is installed (the settings, the
    /// rclone config; kept on uninstall), handled as dpkg handles a
    /// conffile: written where missing or unchanged since we installed it;
    /// one changed here (or never ours, or a link) stays in effect as it
    /// is, and the package's version goes beside it as `FILE.new`, named in
    /// a warning. Replacing it would silently undo the operator's settings
    /// (their remote, their credentials) on every upgrade; refusing would
    /// hold back the upgrade's fixes for a settings tweak.
    fn conffile(&mut self, abs: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let path = at(self.root, abs);
        let sha = crate::digest::sha256_hex(bytes);
        let entry = Entry::File {
            path: abs.into(),
            sha256: sha.clone(),
            mode,
            keep: true,
        };
        let new_abs = format!("{abs}.new");
        let new_path = at(self.root, &new_abs);
        let current = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Some(crate::digest::file_sha256(&path)?.sha256),
            Ok(meta) if meta.is_dir() => bail!("{} is a directory; expected a file", show(&path)),
            // A link (or anything else) there is the operator's doing.
            Ok(_) => Some(String::new()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("inspecting {}", show(&path))),
        };
        let ours = |cur: &str| matches!(self.previous.get(abs), Some(Entry::File { sha256, .. }) if sha256 == cur);
        match current.as_deref() {
            Some(cur) if cur == sha => {
                // Private, as installed, whoever loosened it.
                let meta =
                    fs::metadata(&path).with_context(|| format!("inspecting {}", show(&path)))?;
                if meta.permissions().mode() & 0o7777 != mode {
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                        .with_context(|| format!("setting mode {mode:o} on {}", show(&path)))?;
                    tracing::info!("set mode {mode:04o} on {abs}");
                    self.changed += 1;
                } else {
                    tracing::debug!("{abs}: unchanged");
                }
                // The operator took the package's version: its copy beside
                // it says nothing more.
                if fs::read(&new_path).is_ok_and(|b| b == bytes) {
                    fs::remove_file(&new_path)
                        .with_context(|| format!("removing {}", show(&new_path)))?;
                    tracing::info!("removed {new_abs}: {abs} holds the same");
                    self.changed += 1;
                }
            }
            Some(cur) if !ours(cur) => {
                if fs::read(&new_path).is_ok_and(|b| b == bytes)
                    && fs::metadata(&new_path)
                        .is_ok_and(|m| m.permissions().mode() & 0o7777 == mode)
                {
                    tracing::debug!("{new_abs}: unchanged");
                } else {
                    self.write(&new_path, bytes, mode)?;
                    self.changed += 1;
                }
                tracing::warn!(
                    "kept {abs} as it is: it was changed here since it was installed; the \
                     package's version is {new_abs}: merge what you need into {abs} (which \
                     the units read), then delete {new_abs}"
                );
            }
            _ => {
                self.write(&path, bytes, mode)?;
                tracing::info!("installed {abs} (mode {mode:04o})");
                self.changed += 1;
            }
        }
        self.entries.push(entry);
        Ok(())
    }

    /// `bytes` at `path` with `mode`, atomically.
    fn write(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
        if let Some(d) = path.parent() {
            mkdirs(d)?;
        }
        let mut f = AtomicFile::create(path, mode)?;
        io::Write::write_all(&mut f, bytes).with_context(|| format!("writing {}", show(path)))?;
        f.commit()?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting mode {mode:o} on {}", show(path)))
    }

    /// A symlink `abs` -> `target`, replaced atomically when it differs.
    fn link(&mut self, abs: &str, target: &str) -> Result<()> {
        let path = at(self.root, abs);
        if fs::read_link(&path).is_ok_and(|t| t == Path::new(target)) {
            tracing::debug!("{abs} -> {target}: unchanged");
        } else {
            if let Some(d) = path.parent() {
                mkdirs(d)?;
            }
            if fs::symlink_metadata(&path).is_ok_and(|m| !m.file_type().is_symlink()) {
                bail!(
                    "{} exists and is not a link; move it away first",
                    show(&path)
                );
            }
            let tmp = crate::fsutil::part_path(&path);
            let _ = fs::remove_file(&tmp);
            symlink(target, &tmp).with_context(|| format!("creating link {}", show(&tmp)))?;
            fs::rename(&tmp, &path)
                .with_context(|| format!("renaming {} into place", show(&tmp)))?;
            if let Some(d) = path.parent() {
                sync_dir(d)?;
            }
            tracing::info!("linked {abs} -> {target}");
            self.changed += 1;
        }
        self.entries.push(Entry::Link {
            path: abs.into(),
            target: target.into(),
        });
        Ok(())
    }
}

pub(crate) fn systemd_running(root: &Path) -> bool {
    root == Path::new("/") && Path::new("/run/systemd/system").is_dir()
}

pub(crate) fn systemctl(args: &[&str]) -> Result<()> {
    let prog = Program::find("systemctl", None, "systemd")?;
    prog.command(args).run().map(|_| ())
}

impl InstallJob {
    pub fn run(&self) -> Result<()> {
        let root = self.root.as_path();
        if root == Path::new("/") && !nix::unistd::geteuid().is_root() {
            bail!("installing into / needs root (or stage it with --root DIR)");
        }
        match read_os(root)? {
            Os::Supported(name) => tracing::info!("target OS: {name}"),
            Os::Other(name) if self.any_os => {
                tracing::warn!("target OS is {name}, not CoreOS/Flatcar/Fedora CoreOS: installing anyway (--any-os)")
            }
            Os::Other(name) => bail!(
                "the target OS is {name}, not Container Linux, Flatcar or Fedora CoreOS; \
                 on another systemd host pass --any-os"
            ),
        }
        let sums = verify_payload(&self.from)?;
        // Every check that can refuse comes before the first write, so a
        // refusal leaves the target as it was.
        let unit = etcd_unit::choose(root, self.etcd_unit)?;
        let settings = dropins::etcd_settings(root, unit, &self.etcd_dropins)?;
        // What etcd's unit sets for it; for kubeadm's static pod, what its
        // manifest does.
        let kubeadm = unit == EtcdUnit::Unitless && kubeadm::has_manifest(root);
        let unit_settings = if kubeadm {
            kubeadm::settings(root)?
        } else {
            unit.settings()
        };
        let previous = record::read_manifest(root)?
            .entries
            .into_iter()
            .map(|e| (e.path().to_string(), e))
            .collect();
        let mut inst = Installer {
            root,
            previous,
            entries: Vec::new(),
            changed: 0,
        };
        let read = |rel: &str| -> Result<Vec<u8>> {
            let p = self.from.join(rel);
            fs::read(&p).with_context(|| format!("reading {}", show(&p)))
        };

        // Programs: ours, then whatever third-party ones the package bundles.
        for name in payload::tools().into_iter().chain(payload::BUNDLED) {
            let rel = format!("{}/{name}", payload::BIN);
            if sums.contains_key(&rel) {
                inst.file(&format!("{BIN_DIR}/{name}"), &read(&rel)?, 0o755, false)?;
            }
        }
        // The installer too, so that `etcd2-backup-install --uninstall` is at hand.
        inst.file(
            &format!("{BIN_DIR}/{}", payload::INSTALLER),
            &read(payload::INSTALLER)?,
            0o755,
            false,
        )?;
        let conf = read(payload::CONF)?;
        // Our units name etcd2.service; on another etcd unit they are
        // rewritten for it.
        for file in payload::UNIT_FILES.into_iter().filter(|f| unit.installs(f)) {
            let text = String::from_utf8(read(&format!("{}/{file}", payload::UNITS))?)
                .with_context(|| format!("{file} is not UTF-8"))?;
            inst.file(
                &format!("{UNIT_DIR}/{file}"),
                unit.rewrite(&text).as_bytes(),
                0o644,
                false,
            )?;
        }
        if unit == EtcdUnit::Unitless && !kubeadm {
            tracing::warn!(
                "no etcd unit and no {}: set ETCDCTL_ENDPOINTS (and the TLS files) in {}",
                kubeadm::MANIFEST,
                crate::settings::ENV_FILE
            );
        } else if settings.is_empty() && !matches!(unit, EtcdUnit::Etcd | EtcdUnit::Unitless) {
            tracing::warn!(
                "found no {unit} settings drop-in in {}: the units see only {}, \
                 so it must set ETCD_NAME and ETCD_INITIAL_ADVERTISE_PEER_URLS for restore and join",
                unit.dropin_dirs().join(" or "),
                crate::settings::ENV_FILE
            );
        }
        for job in JOBS
            .into_iter()
            .filter(|j| unit.installs(&format!("{j}.service")))
        {
            let d = format!("{UNIT_DIR}/{job}.service.d");
            inst.file(
                &format!("{d}/{}", etcd_unit::UNIT_DROPIN),
                unit_settings.as_bytes(),
                0o644,
                false,
            )?;
            for s in &settings {
                match s {
                    Setting::Link { abs } => {
                        let name = Path::new(abs)
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        inst.link(&format!("{d}/{name}"), abs)?;
                    }
                    Setting::Copy { name, text } => {
                        inst.file(&format!("{d}/{name}"), text.as_bytes(), 0o644, false)?;
                    }
                }
            }
        }
        // The settings, for the units (EnvironmentFile=) and a root shell
        // alike; they may hold secrets (a connection string): 0600, kept on
        // uninstall.
        let mut env_file =
            crate::settings::from_dropin(&String::from_utf8_lossy(&conf), ENV_FILE_HEADER);
        if kubeadm {
            env_file = kubeadm::env_file(&env_file);
        }
        inst.file(crate::settings::ENV_FILE, env_file.as_bytes(), 0o600, true)?;
        // The rclone config holds the remote's credentials: 0600, kept on uninstall.
        let conf_text = String::from_utf8_lossy(&conf);
        let rclone_conf = dropin_env(&conf_text, "RCLONE_CONFIG_PATH")
            .filter(|p| p.starts_with('/'))
            .unwrap_or_else(|| DEFAULT_RCLONE_CONF.to_string());
        inst.file(&rclone_conf, &read(payload::RCLONE_CONF)?, 0o600, true)?;
        // Man pages and completions.
        let share_files: Vec<&String> = sums
            .keys()
            .filter(|k| k.starts_with(&format!("{}/", payload::SHARE)))
            .collect();
        for rel in share_files {
            let dest = share_dest(&rel[payload::SHARE.len() + 1..]);
            inst.file(&dest, &read(rel)?, 0o644, false)?;
        }

        // Whatever we installed last time and not now (an older package's
        // file) is left for the operator, and named.
        let now: Vec<String> = inst.entries.iter().map(|e| e.path().to_string()).collect();
        let mut carried = Vec::new();
        for (old, e) in inst.previous.iter().filter(|(p, _)| !now.contains(p)) {
            tracing::warn!("{old} was installed by an earlier package and is not part of this one: left in place");
            // Credentials stay recorded (an earlier RCLONE_CONFIG_PATH), so
            // that --uninstall still names them.
            if matches!(e, Entry::File { keep: true, .. }) && at(root, old).exists() {
                carried.push(e.clone());
            }
        }
        inst.entries.extend(carried);
        let manifest = Manifest {
            version: env!("CARGO_PKG_VERSION").into(),
            entries: inst.entries.clone(),
        };
        let mpath = at(root, MANIFEST);
        mkdirs(mpath.parent().unwrap_or(root))?;
        let text = serde_json::to_vec_pretty(&manifest)?;
        if fs::read(&mpath).ok().as_deref() != Some(text.as_slice()) {
            crate::fsutil::write_atomic(&mpath, &text, 0o644)?;
        }

        if systemd_running(root) {
            systemctl(&["daemon-reload"])?;
            tracing::info!("systemctl daemon-reload: done");
        } else {
            tracing::info!("systemd is not running here (or --root): no daemon-reload");
        }
        tracing::info!(
            "installed {} paths ({} changed) under {}; to take backups on this node: \
             systemctl enable --now etcd2-backup.timer",
            inst.entries.len(),
            inst.changed,
            show(root)
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_and_bash_completions_go_where_man_and_bash_look() {
        assert_eq!(
            share_dest("man/man1/etcd2-push.1"),
            "/opt/share/man/man1/etcd2-push.1"
        );
        assert_eq!(
            share_dest("completions/bash/etcd2-push"),
            "/etc/bash_completion.d/etcd2-push"
        );
        assert_eq!(
            share_dest("completions/zsh/_etcd2-push"),
            "/opt/etcd2-backup/share/completions/zsh/_etcd2-push"
        );
        assert!(is_doc("/etc/bash_completion.d/etcd2-push"));
        assert!(!is_doc("/etc/bash_completion.dx"));
        assert!(!is_doc("/opt/bin/etcd2-push"));
    }
}

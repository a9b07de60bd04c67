//! The installer: puts an extracted `etcd2-backup.tgz` in place on a host (or
//! under a staging root), and takes it away again.
//!
//! The package layout ([`Payload`]) is shared with the packager, so the two
//! cannot drift apart. Every file is written atomically; a file that the
//! operator changed since we installed it is copied aside before it is
//! replaced, and left alone on uninstall.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cmd::{show, Program};
use crate::fsutil::{sync_dir, AtomicFile};

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
    /// The tools the package always holds.
    pub const TOOLS: [&str; 7] = [
        "etcd2-snapshot",
        "etcd2-push",
        "etcd2-fetch",
        "etcd2-wipe",
        "etcd2-restore",
        "etcd2-member-add",
        "etcd2-health",
    ];
    /// Third-party programs the package may bundle.
    pub const BUNDLED: [&str; 3] = ["rclone", "etcdctl", "etcd"];
    /// The units, all installed; none enabled by the installer.
    pub const UNIT_FILES: [&str; 4] = [
        "etcd2-backup.service",
        "etcd2-backup.timer",
        "etcd2-restore.service",
        "etcd2-join.service",
    ];
}

/// Where things go on the target (absolute paths inside the root).
pub const BIN_DIR: &str = "/opt/bin";
pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const SHARE_DIR: &str = "/opt/etcd2-backup/share";
pub const MANIFEST: &str = "/opt/etcd2-backup/installed.json";
pub const DEFAULT_RCLONE_CONF: &str = "/etc/rclone.conf";
/// The units that get our settings drop-in and etcd2's settings.
pub const JOBS: [&str; 3] = ["etcd2-backup", "etcd2-restore", "etcd2-join"];
/// Where etcd2's own settings drop-ins live (CoreOS put its cloud-config
/// one, 20-cloudinit.conf, in /run).
pub const ETCD_DROPIN_DIRS: [&str; 2] = [
    "/etc/systemd/system/etcd2.service.d",
    "/run/systemd/system/etcd2.service.d",
];
/// The drop-in etcd2-join.service writes; never linked into our units.
pub const JOIN_DROPIN: &str = "40-join-cluster.conf";

/// An `/etc/os-release` verdict.
#[derive(Debug, PartialEq, Eq)]
pub enum Os {
    Supported(String),
    Other(String),
}

/// Parse os-release (`KEY=value`, values optionally quoted).
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, _)| !k.starts_with('#'))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// CoreOS Container Linux, Flatcar and Fedora CoreOS are supported; every
/// other OS is named so the operator can decide on --any-os.
pub fn classify_os(fields: &BTreeMap<String, String>) -> Os {
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    let id = get("ID");
    let like = get("ID_LIKE").split_whitespace().any(|l| l == "coreos");
    let name = match get("PRETTY_NAME") {
        "" => format!("ID={id}"),
        p => format!("{p} (ID={id})"),
    };
    if id == "coreos"
        || id == "flatcar"
        || like
        || (id == "fedora" && get("VARIANT_ID") == "coreos")
    {
        Os::Supported(name)
    } else {
        Os::Other(name)
    }
}

/// Read the target's os-release (`etc/os-release`, else `usr/lib/os-release`).
pub fn read_os(root: &Path) -> Result<Os> {
    for p in ["etc/os-release", "usr/lib/os-release"] {
        match fs::read_to_string(root.join(p)) {
            Ok(t) => return Ok(classify_os(&parse_os_release(&t))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", show(&root.join(p)))),
        }
    }
    Ok(Os::Other("an OS without /etc/os-release".into()))
}

/// Whether an etcd2 drop-in only sets environment, so that linking it into
/// our units gives them the member's settings and nothing else. Returns the
/// first offending line otherwise.
pub fn env_only_dropin(text: &str) -> std::result::Result<(), String> {
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
            if section != "[Service]" {
                return Err(line.to_string());
            }
            continue;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        if section != "[Service]" || !matches!(key, "Environment" | "EnvironmentFile") {
            return Err(line.to_string());
        }
    }
    Ok(())
}

/// The value of `Environment="NAME=value"` in a drop-in, if set (the last
/// one wins, as in systemd). Quoted and unquoted forms, one variable a line.
pub fn dropin_env(text: &str, name: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("Environment=") else {
            continue;
        };
        let rest = rest.trim().trim_matches('"');
        if let Some(v) = rest.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            found = Some(v.to_string());
        }
    }
    found
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::archive::hex(&Sha256::digest(bytes))
}

fn sha256_file(path: &Path) -> Result<String> {
    crate::fsutil::file_hash(path, "sha256")
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
        let got = sha256_file(&dir.join(rel))?;
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
            payload::TOOLS
                .iter()
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

/// A path on the target, inside `root`.
fn at(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn read_manifest(root: &Path) -> Result<Manifest> {
    let p = at(root, MANIFEST);
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{} is damaged", show(&p))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", show(&p))),
    }
}

fn mkdirs(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", show(dir)))
}

fn now_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
        .replace(':', "")
}

pub struct InstallJob {
    /// The extracted package.
    pub from: PathBuf,
    /// The target's root: `/`, or a staging dir.
    pub root: PathBuf,
    /// Install on an OS other than CoreOS/Flatcar/Fedora CoreOS.
    pub any_os: bool,
    /// etcd2 settings drop-ins to link, besides those found.
    pub etcd_dropins: Vec<PathBuf>,
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
        let path = at(self.root, abs);
        let sha = sha256_hex(bytes);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                let old = sha256_file(&path)?;
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
                    let aside = at(self.root, &format!("{abs}.before-install-{}", now_stamp()));
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
        if let Some(d) = path.parent() {
            mkdirs(d)?;
        }
        let mut f = AtomicFile::create(&path, mode)?;
        io::Write::write_all(&mut f, bytes).with_context(|| format!("writing {}", show(&path)))?;
        f.commit()?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting mode {mode:o} on {}", show(&path)))?;
        if abs.starts_with(SHARE_DIR) {
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

fn systemd_running(root: &Path) -> bool {
    root == Path::new("/") && Path::new("/run/systemd/system").is_dir()
}

fn systemctl(args: &[&str]) -> Result<()> {
    let prog = Program::find("systemctl", None, "systemd")?;
    prog.command(args).run().map(|_| ())
}

/// etcd2's settings drop-ins on the target: found in [`ETCD_DROPIN_DIRS`]
/// plus the given ones; only environment-only ones are kept.
fn etcd_settings(root: &Path, extra: &[PathBuf]) -> Result<Vec<String>> {
    let mut found: Vec<String> = Vec::new();
    for dir in ETCD_DROPIN_DIRS {
        let Ok(rd) = fs::read_dir(at(root, dir)) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".conf") && n != JOIN_DROPIN)
            .collect();
        names.sort();
        found.extend(names.into_iter().map(|n| format!("{dir}/{n}")));
    }
    for p in extra {
        let s = p.to_string_lossy().into_owned();
        if !p.is_absolute() {
            bail!("--etcd-dropin {s}: give the absolute path on the target");
        }
        if !at(root, &s).is_file() {
            bail!("--etcd-dropin {s}: no such file under {}", show(root));
        }
        if !found.contains(&s) {
            found.push(s);
        }
    }
    let mut keep = Vec::new();
    for abs in found {
        let text = fs::read_to_string(at(root, &abs)).with_context(|| format!("reading {abs}"))?;
        match env_only_dropin(&text) {
            Ok(()) => keep.push(abs),
            Err(line) => tracing::warn!(
                "not linking {abs} into our units: it sets more than the environment ({line:?}); \
                 put etcd's Environment= lines in a drop-in of their own"
            ),
        }
    }
    Ok(keep)
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
        let settings = etcd_settings(root, &self.etcd_dropins)?;
        let previous = read_manifest(root)?
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
        for name in payload::TOOLS.iter().chain(payload::BUNDLED.iter()) {
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
        for unit in payload::UNIT_FILES {
            inst.file(
                &format!("{UNIT_DIR}/{unit}"),
                &read(&format!("{}/{unit}", payload::UNITS))?,
                0o644,
                false,
            )?;
        }
        if settings.is_empty() {
            tracing::warn!(
                "found no etcd2 settings drop-in in {}: the units see only 30-etcd2-backup-restore.conf, \
                 so it must set ETCD_NAME and ETCD_INITIAL_ADVERTISE_PEER_URLS for restore and join",
                ETCD_DROPIN_DIRS.join(" or ")
            );
        }
        for job in JOBS {
            let d = format!("{UNIT_DIR}/{job}.service.d");
            inst.file(
                &format!("{d}/30-etcd2-backup-restore.conf"),
                &conf,
                0o644,
                false,
            )?;
            for s in &settings {
                let name = Path::new(s)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name == "30-etcd2-backup-restore.conf" {
                    continue;
                }
                inst.link(&format!("{d}/{name}"), s)?;
            }
        }
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
            let dest = format!("{SHARE_DIR}/{}", &rel[payload::SHARE.len() + 1..]);
            inst.file(&dest, &read(rel)?, 0o644, false)?;
        }

        // Whatever we installed last time and not now (an older package's
        // file) is left for the operator, and named.
        let now: Vec<String> = inst.entries.iter().map(|e| e.path().to_string()).collect();
        for old in inst.previous.keys().filter(|p| !now.contains(p)) {
            tracing::warn!("{old} was installed by an earlier package and is not part of this one: left in place");
        }
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

/// Remove what the manifest lists, except files the operator changed since
/// and files marked keep (the rclone config); stop and disable the timer.
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
    for wants in ["timers.target.wants", "etcd2.service.wants"] {
        let l = at(root, &format!("{UNIT_DIR}/{wants}/etcd2-backup.timer"));
        if fs::symlink_metadata(&l).is_ok() {
            fs::remove_file(&l).with_context(|| format!("removing {}", show(&l)))?;
            tracing::info!("removed {}", show(&l));
        }
    }
    let mut dirs = std::collections::BTreeSet::new();
    for e in manifest.entries.iter().rev() {
        let p = at(root, e.path());
        match e {
            Entry::File {
                keep: true, path, ..
            } => {
                tracing::warn!("kept {path}: it holds the remote's credentials; remove it yourself when no longer needed");
                continue;
            }
            Entry::File { sha256, path, .. } => match sha256_file(&p) {
                Ok(s) if s == *sha256 => {}
                Ok(_) => {
                    tracing::warn!("kept {path}: it was changed since it was installed");
                    continue;
                }
                Err(_) if !p.exists() => continue,
                Err(e) => return Err(e),
            },
            Entry::Link { target, .. } => {
                if !fs::read_link(&p).is_ok_and(|t| t == Path::new(target)) {
                    continue;
                }
            }
        }
        fs::remove_file(&p).with_context(|| format!("removing {}", show(&p)))?;
        if e.path().starts_with(SHARE_DIR) {
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
        while d.starts_with("/opt/etcd2-backup") || d.extension().is_some_and(|x| x == "d") {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_accepts_the_coreos_family_only() {
        let os = |t: &str| classify_os(&parse_os_release(t));
        assert!(matches!(os("ID=coreos\n"), Os::Supported(_)));
        assert!(matches!(
            os("ID=flatcar\nID_LIKE=coreos\nPRETTY_NAME=\"Flatcar Container Linux\"\n"),
            Os::Supported(_)
        ));
        assert!(matches!(
            os("ID=fedora\nVARIANT_ID=coreos\n"),
            Os::Supported(_)
        ));
        assert_eq!(
            os("ID=fedora\nVARIANT_ID=workstation\n"),
            Os::Other("ID=fedora".into())
        );
        assert_eq!(
            os("PRETTY_NAME='Debian GNU/Linux 12 (bookworm)'\nID=debian\n"),
            Os::Other("Debian GNU/Linux 12 (bookworm) (ID=debian)".into())
        );
    }

    #[test]
    fn only_environment_dropins_are_linked() {
        assert_eq!(
            env_only_dropin(
                "[Service]\n# x\nEnvironment=\"ETCD_NAME=e1\"\nEnvironmentFile=/etc/e\n"
            ),
            Ok(())
        );
        assert_eq!(
            env_only_dropin("[Service]\nExecStart=\nExecStart=/bin/etcd\n"),
            Err("ExecStart=".into())
        );
        assert_eq!(env_only_dropin("[Unit]\nAfter=x\n"), Err("[Unit]".into()));
    }

    #[test]
    fn dropin_env_finds_the_last_setting() {
        let t = "[Service]\n#Environment=\"RCLONE_CONFIG_PATH=/no\"\nEnvironment=\"RCLONE_CONFIG_PATH=/a\"\nEnvironment=RCLONE_CONFIG_PATH=/b\n";
        assert_eq!(dropin_env(t, "RCLONE_CONFIG_PATH").as_deref(), Some("/b"));
        assert_eq!(dropin_env(t, "RCLONE_CONFIG"), None);
        assert_eq!(
            dropin_env("Environment=\"RCLONE_ENDPOINT=\"\n", "RCLONE_ENDPOINT").as_deref(),
            Some("")
        );
    }
}

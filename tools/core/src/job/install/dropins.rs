//! etcd's settings drop-ins: which are linked next to our units (those
//! that set nothing but the environment), which reach them as a copy of
//! their Environment= lines (the others), and reading a variable from one.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::etcd_unit::{
    environment_copy, environment_lines, names_its_unit, EtcdUnit, UNIT_DROPIN,
};
use super::{at, JOIN_DROPIN, OUR_DROPIN};
use crate::cmd::show;

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

/// How one of etcd's settings drop-ins reaches our units.
#[derive(Debug, PartialEq, Eq)]
pub enum Setting {
    /// Linked: it sets nothing but the environment, so later edits of it
    /// reach our jobs at their next start.
    Link { abs: String },
    /// Copied: it also sets other things (Flatcar's documented drop-in
    /// overrides ExecStart=), or names its unit with a specifier; our units
    /// get its Environment= lines only, in a file of the same name.
    Copy { name: String, text: String },
}

/// etcd's settings drop-ins on the target for `unit`: those in its drop-in
/// dirs (but the one etcd2-join.service writes) plus the given ones.
pub(super) fn etcd_settings(
    root: &Path,
    unit: EtcdUnit,
    extra: &[PathBuf],
) -> Result<Vec<Setting>> {
    let mut found: Vec<String> = Vec::new();
    for dir in unit.dropin_dirs() {
        let Ok(rd) = fs::read_dir(at(root, &dir)) else {
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
        let name = Path::new(&abs)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == UNIT_DROPIN || name == OUR_DROPIN {
            tracing::warn!("not using {abs}: its name is one of our own drop-ins'; rename it");
            continue;
        }
        match env_only_dropin(&text) {
            Ok(()) if !names_its_unit(&text) => keep.push(Setting::Link { abs }),
            other => {
                if environment_lines(&text, unit).is_empty() {
                    tracing::warn!("not using {abs} in our units: it sets no environment");
                    continue;
                }
                let why = match other {
                    Err(line) => format!("it also sets {line:?}"),
                    Ok(()) => {
                        "it names its unit with a specifier (%n, %p...), which would name ours"
                            .to_string()
                    }
                };
                tracing::info!(
                    "using only the Environment= lines of {abs} in our units ({why}): \
                     run the installer again after changing them"
                );
                keep.push(Setting::Copy {
                    text: environment_copy(&abs, &text, unit),
                    name,
                });
            }
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

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

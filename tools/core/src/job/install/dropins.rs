//! etcd's settings drop-ins: which may be linked next to our units (only
//! those that set nothing but the environment), and reading a variable
//! from one.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{at, ETCD_DROPIN_DIRS, JOIN_DROPIN};
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

pub(super) fn etcd_settings(root: &Path, extra: &[PathBuf]) -> Result<Vec<String>> {
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

//! Building the install tarball with the real packager, and unpacking it with
//! the real tar, as an operator does.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{bin, run_ok};

/// The repository's own units and settings.
pub fn repo_units() -> PathBuf {
    super::workspace().join("units")
}

/// The shipped settings drop-in with RCLONE_ENDPOINT and the founder's
/// client URL filled in, plus any extra `Environment=` lines.
pub fn conf_with(endpoint: &str, founder: &str, extra: &[&str]) -> String {
    let shipped = std::fs::read_to_string(repo_units().join("30-etcd2-backup-restore.conf"))
        .expect("read the shipped conf");
    let mut s = shipped
        .replace(
            "#Environment=\"RCLONE_ENDPOINT=s3-remote:etcd2-backup-bucket/backups\"",
            &format!("Environment=\"RCLONE_ENDPOINT={endpoint}\""),
        )
        .replace(
            "#Environment=\"ETCD_RESTORE_MASTER_ADV_PEER_URLS=http://172.17.8.101:2379\"",
            &format!("Environment=\"ETCD_RESTORE_MASTER_ADV_PEER_URLS={founder}\""),
        );
    assert!(
        s.contains(&format!("RCLONE_ENDPOINT={endpoint}")),
        "the shipped conf changed shape"
    );
    for line in extra {
        s.push_str(&format!("Environment=\"{line}\"\n"));
    }
    s
}

/// The packager, run like `make package` does, on the debug build.
pub fn packager(dir: &Path, conf: &str, rclone_conf: Option<&str>, out: &Path) -> Command {
    let conf_path = dir.join("30-etcd2-backup-restore.conf");
    std::fs::write(&conf_path, conf).expect("write conf");
    let rc = dir.join("rclone.conf");
    if let Some(text) = rclone_conf {
        std::fs::write(&rc, text).expect("write rclone.conf");
    }
    let mut c = Command::new(bin("etcd2-backup-package"));
    let bin_dir = bin("etcd2-push").parent().expect("bin dir").to_path_buf();
    c.arg("--bin-dir")
        .arg(bin_dir)
        .arg("--units")
        .arg(repo_units())
        .arg("--conf")
        .arg(&conf_path)
        .arg("--rclone-conf")
        .arg(&rc)
        .arg("--output")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("RCLONE_CONF");
    c
}

/// Build a package and return the tarball's path.
pub fn build(dir: &Path, conf: &str, rclone_conf: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let out = dir.join("etcd2-backup.tgz");
    run_ok(&mut packager(dir, conf, Some(rclone_conf), &out));
    out
}

/// `tar xzf` it into `into`; returns the extracted etcd2-backup/ folder.
pub fn extract(tgz: &Path, into: &Path) -> PathBuf {
    std::fs::create_dir_all(into).expect("mkdir");
    run_ok(Command::new("tar").arg("-xzf").arg(tgz).arg("-C").arg(into));
    into.join("etcd2-backup")
}

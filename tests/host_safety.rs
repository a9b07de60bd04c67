//! "The tools never harm the host": wipe and restore pointed at the wrong
//! directory, links planted in a data dir, the data dir found the same way by
//! every tool.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::etcd::Cluster;
use common::{assert_fails_with, run, run_ok, tool};

/// Every entry below `dir` (links not followed): mode, owner, and content.
fn state(dir: &Path) -> BTreeMap<String, (u32, u32, u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, u32, u32, Vec<u8>)>) {
        let m = std::fs::symlink_metadata(dir).unwrap();
        let rel = dir.strip_prefix(root).unwrap().display().to_string();
        let content = if m.is_file() {
            std::fs::read(dir).unwrap()
        } else if m.file_type().is_symlink() {
            std::fs::read_link(dir)
                .unwrap()
                .display()
                .to_string()
                .into_bytes()
        } else {
            vec![]
        };
        out.insert(rel, (m.mode(), m.uid(), m.gid(), content));
        if m.is_dir() {
            for e in std::fs::read_dir(dir).unwrap() {
                walk(root, &e.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A stand-in for /tmp or /var/lib: other users' files, open modes.
fn foreign_dir(base: &Path, with_member: bool) -> std::path::PathBuf {
    let d = base.join("not-etcd");
    std::fs::create_dir_all(d.join("someone/.cache")).unwrap();
    std::fs::write(d.join("someone/notes.txt"), b"mine").unwrap();
    std::fs::write(d.join("report.pdf"), b"%PDF").unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    nix::unistd::chown(
        &d.join("someone"),
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    if with_member {
        std::fs::create_dir_all(d.join("member/wal")).unwrap();
    }
    d
}

#[test]
fn wipe_and_restore_refuse_a_directory_that_is_not_an_etcd_data_dir() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let archive = c.path().join("a.tar.zst");
    run_ok(
        tool("etcd2-snapshot")
            .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .args(["--api", "v3", "-o"])
            .arg(&archive),
    );
    for with_member in [false, true] {
        let base = c.path().join(format!("case-{with_member}"));
        let d = foreign_dir(&base, with_member);
        let before = state(&d);
        let out = run(tool("etcd2-wipe").arg(&d));
        let line = assert_fails_with(&out, "etcd2-wipe", "not an etcd data dir");
        assert!(
            line.contains("report.pdf") && line.contains("someone"),
            "{line}"
        );
        assert_eq!(state(&d), before, "wipe changed {}", d.display());
        let out = run(tool("etcd2-restore")
            .arg("--data-dir")
            .arg(&d)
            .args(["--name", "r1", "--peer-urls", "http://127.0.0.1:2380"])
            .arg(&archive));
        assert_fails_with(&out, "etcd2-restore", "not an etcd data dir");
        assert_eq!(state(&d), before, "restore changed {}", d.display());
    }
}

#[test]
fn a_link_planted_in_the_data_dir_never_changes_its_target() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let archive = c.path().join("a.tar.zst");
    run_ok(
        tool("etcd2-snapshot")
            .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .args(["--api", "v3", "-o"])
            .arg(&archive),
    );
    // A root-only file outside, and a data dir whose member/ (writable by
    // the etcd user in real life) holds a link to it.
    let secret = c.path().join("shadow");
    std::fs::write(&secret, b"root only").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let owner = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    let want = owner(&secret);
    for step in ["wipe", "restore"] {
        let data = c.path().join(format!("data-{step}"));
        std::fs::create_dir_all(data.join("member/wal")).unwrap();
        std::os::unix::fs::symlink(&secret, data.join("member/wal/evil")).unwrap();
        std::os::unix::fs::symlink(c.path(), data.join("member/up")).unwrap();
        if step == "wipe" {
            run_ok(tool("etcd2-wipe").arg(&data));
        } else {
            run_ok(
                tool("etcd2-restore")
                    .arg("--data-dir")
                    .arg(&data)
                    .args(["--name", "r1", "--peer-urls", "http://127.0.0.1:2380"])
                    .arg(&archive),
            );
        }
        assert_eq!(owner(&secret), want, "{step} changed the link's target");
        assert_eq!(
            owner(c.path()),
            (0, 0, owner(c.path()).2),
            "{step} chowned a directory outside the data dir"
        );
    }
}

#[test]
fn wipe_finds_the_data_dir_like_every_tool_flag_env_default() {
    // No argument, ETCD_DATA_DIR set: CoreOS keeps it in etcd2.service.
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("etcd2");
    std::fs::create_dir_all(data.join("member/wal")).unwrap();
    run_ok(tool("etcd2-wipe").env("ETCD_DATA_DIR", &data));
    assert!(!data.join("member").exists());
    // Neither: the documented default, named in the error when it is absent.
    let out = run(&mut tool("etcd2-wipe"));
    if !Path::new("/var/lib/etcd2").exists() {
        assert_fails_with(&out, "etcd2-wipe", "/var/lib/etcd2");
    }
    let help = run(tool("etcd2-wipe").arg("--help"));
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("default: /var/lib/etcd2"),
        "--help names the default"
    );
}

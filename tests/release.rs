//! The portable release: every tool linked statically, so one build runs on
//! any x86_64 Linux, whatever its libc.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{require, run, run_ok, static_bin, tools};

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

/// A root with nothing in it but what a test puts there: no loader, no libc,
/// no NSS modules.
fn empty_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    fs::create_dir_all(root.join("etc")).expect("mkdir");
    root
}

/// Run `args` (a program inside `root`) chrooted into `root`, with /proc
/// mounted in a mount namespace of its own that dies with the command.
fn in_root(root: &Path, args: &[&str]) -> std::process::Output {
    require("unshare", "util-linux");
    fs::create_dir_all(root.join("proc")).expect("mkdir proc");
    let script = "mount -t proc proc \"$1/proc\" && shift && exec chroot \"$@\"";
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(root)
    .arg(root)
    .args(args)
    .env_clear();
    run(&mut c)
}

#[test]
fn every_tool_is_linked_statically_and_runs_where_there_is_no_libc() {
    require("file", "file");
    require("ldd", "libc-bin");
    let t = tempfile::tempdir().expect("tempdir");
    let root = empty_root(t.path());
    for tool in tools() {
        let p = static_bin(tool);
        let file = stdout(Command::new("file").arg("-b").arg(&p));
        assert!(
            file.contains("statically linked") || file.contains("static-pie linked"),
            "{tool}: file says: {file}"
        );
        // ldd: "statically linked" for a static-pie, "not a dynamic
        // executable" (exit 1) for a static non-PIE program.
        let ldd = run(Command::new("ldd").arg(&p));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&ldd.stdout),
            String::from_utf8_lossy(&ldd.stderr)
        );
        assert!(
            said.contains("statically linked") || said.contains("not a dynamic executable"),
            "{tool}: ldd says: {said}"
        );
        let v = stdout(Command::new(&p).arg("--version"));
        assert_eq!(v.trim(), format!("{tool} {}", env!("CARGO_PKG_VERSION")));
        // And where the host has nothing to lend it.
        fs::copy(&p, root.join(tool)).expect("copy");
        let o = in_root(&root, &[&format!("/{tool}"), "--version"]);
        assert!(
            o.status.success(),
            "{tool} --version in an empty root: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("{tool} {}", env!("CARGO_PKG_VERSION"))
        );
    }
    // The empty root has teeth: the ordinary (dynamic) build cannot run there.
    fs::copy(harness::bin("etcd2-push"), root.join("dynamic")).expect("copy");
    assert!(!in_root(&root, &["/dynamic", "--version"]).status.success());
}

/// Flatcar keeps its system users, etcd among them, in
/// /usr/share/baselayout/passwd, reached through its NSS module
/// `usrfiles`, which a static glibc cannot load: wipe (and restore) must
/// still give the data dir to the etcd user there.
#[test]
fn a_static_tool_finds_the_etcd_user_where_flatcar_keeps_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = empty_root(t.path());
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").expect("w");
    fs::write(
        root.join("etc/nsswitch.conf"),
        "passwd: files usrfiles\ngroup: files usrfiles\n",
    )
    .expect("w");
    fs::create_dir_all(root.join("usr/share/baselayout")).expect("mkdir");
    fs::write(
        root.join("usr/share/baselayout/passwd"),
        "root:x:0:0:root:/root:/bin/bash\netcd:x:232:232:etcd user:/dev/null:/sbin/nologin\n",
    )
    .expect("w");
    fs::create_dir_all(root.join("data/member/wal")).expect("mkdir");
    fs::copy(static_bin("etcd2-wipe"), root.join("etcd2-wipe")).expect("copy");
    let o = in_root(&root, &["/etcd2-wipe", "/data"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "etcd2-wipe: {err}");
    let meta = fs::metadata(root.join("data")).expect("stat");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777),
        (232, 232, 0o700),
        "the data dir was not given to Flatcar's etcd user: {err}"
    );
}

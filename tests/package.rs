//! The install tarball and the installer: what `make package` builds, what
//! `etcd2-backup-install --root` puts where (file by file), its refusals, and
//! `systemd-analyze verify` on the units as installed.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use harness::package::{build, conf_with, extract, packager};
use harness::{assert_fails_with, run, run_ok};

const RCLONE_CONF: &str = "[backups]\ntype = local\n";

/// The units the package ships: the installer's own list.
const UNITS: [&str; 8] = etcd2_backup::job::install::payload::UNIT_FILES;

/// The services the installer gives settings drop-ins (the timer has none).
const SERVICES: [&str; 6] = [
    "etcd2-backup",
    "etcd2-restore",
    "etcd2-restore-member@",
    "etcd2-join",
    "etcd2-verify",
    "etcd2-watch",
];

fn conf() -> String {
    conf_with("backups:/srv/etcd2-backups", "http://10.0.0.1:2379", &[])
}

/// One package for the tests of this file, built once.
fn shared() -> &'static (tempfile::TempDir, PathBuf) {
    static PKG: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    PKG.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        let tgz = build(&t.path().join("build"), &conf(), RCLONE_CONF);
        (t, tgz)
    })
}

/// A fresh extraction of the shared package.
fn payload(dir: &Path) -> PathBuf {
    extract(&shared().1, &dir.join("x"))
}

/// A target root with CoreOS's etcd2.service (and its drop-in dir).
fn stage(dir: &Path, os_release: &str) -> PathBuf {
    let root = bare_stage(dir, os_release);
    fs::create_dir_all(root.join("etc/systemd/system/etcd2.service.d")).expect("mkdir");
    fs::write(root.join("etc/systemd/system/etcd2.service"), ETCD2_UNIT).expect("w");
    root
}

/// A target root with an os-release and nothing else.
fn bare_stage(dir: &Path, os_release: &str) -> PathBuf {
    let root = dir.join("root");
    fs::create_dir_all(root.join("etc")).expect("mkdir");
    fs::write(root.join("etc/os-release"), os_release).expect("os-release");
    root
}

/// CoreOS Container Linux's etcd2.service, as it shipped (abridged).
const ETCD2_UNIT: &str = "[Unit]\nDescription=etcd2\nConflicts=etcd.service\n\n\
    [Service]\nUser=etcd\nType=notify\nEnvironment=ETCD_DATA_DIR=/var/lib/etcd2\n\
    Environment=ETCD_NAME=%m\nExecStart=/usr/bin/etcd2\n";

const FLATCAR: &str = "NAME=\"Flatcar Container Linux by Kinvolk\"\nID=flatcar\nID_LIKE=coreos\n";

fn install(payload: &Path, root: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = Command::new(payload.join("etcd2-backup-install"));
    c.arg("--root").arg(root).args(extra);
    run(&mut c)
}

/// An install that must succeed and say `says`; its log.
fn install_saying(payload: &Path, root: &Path, extra: &[&str], says: &str) -> String {
    let o = install(payload, root, extra);
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{log}");
    assert!(log.contains(says), "{log}");
    log
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// Every path under `root` with its type, mode, size, mtime and link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let m = fs::symlink_metadata(&p).expect("stat");
            let rel = p.strip_prefix(root).expect("rel").display().to_string();
            let desc = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).expect("readlink").display())
            } else {
                format!(
                    "{:o} {} {}",
                    m.mode(),
                    m.len(),
                    m.mtime_nsec() + m.mtime() * 1_000_000_000
                )
            };
            out.insert(rel, desc);
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn package_refuses_without_rclone_conf_or_endpoint_and_writes_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("etcd2-backup.tgz");
    let o = run(&mut packager(t.path(), &conf(), None, &out));
    assert_fails_with(&o, "etcd2-backup-package", "rclone.conf not found");

    let no_endpoint = conf().replace(
        "Environment=\"RCLONE_ENDPOINT=",
        "#Environment=\"RCLONE_ENDPOINT=",
    );
    let o = run(&mut packager(
        t.path(),
        &no_endpoint,
        Some(RCLONE_CONF),
        &out,
    ));
    assert_fails_with(&o, "etcd2-backup-package", "RCLONE_ENDPOINT is not set");

    let other_remote = conf_with("s3prod:bucket/etcd", "http://10.0.0.1:2379", &[]);
    let o = run(&mut packager(
        t.path(),
        &other_remote,
        Some(RCLONE_CONF),
        &out,
    ));
    assert_fails_with(
        &o,
        "etcd2-backup-package",
        "rclone.conf has no [s3prod] section",
    );
    assert!(
        !out.exists()
            && fs::read_dir(t.path())
                .expect("ls")
                .all(|e| { !e.expect("e").file_name().to_string_lossy().contains(".tgz") })
    );
}

#[test]
fn package_is_reproducible_private_and_complete() {
    let (_, tgz) = shared();
    let t = tempfile::tempdir().expect("tempdir");
    let again = build(&t.path().join("again"), &conf(), RCLONE_CONF);
    assert_eq!(
        fs::read(tgz).expect("read"),
        fs::read(&again).expect("read"),
        "two builds differ"
    );
    assert_eq!(mode(tgz), 0o600, "the tarball holds secrets");

    // What the real tar sees: owners, modes, one mtime, sorted names.
    let listing = run_ok(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("--full-time")
            .arg("-tvzf")
            .arg(tgz),
    );
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let mut names = Vec::new();
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[1], "0/0", "{line}");
        assert_eq!(
            format!("{} {}", f[3], f[4]),
            "2023-11-14 22:13:20",
            "{line}"
        );
        let name = f[5].to_string();
        let want = if name.ends_with('/') {
            "drwxr-xr-x"
        } else if name.ends_with("/rclone.conf") {
            "-rw-------"
        } else if name.contains("/bin/") || name == "etcd2-backup/etcd2-backup-install" {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(f[0], want, "{line}");
        names.push(name);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are not sorted");
    let tools = [
        "snapshot",
        "push",
        "fetch",
        "wipe",
        "restore",
        "member-add",
        "health",
    ];
    for t in tools {
        for want in [
            format!("etcd2-backup/bin/etcd2-{t}"),
            format!("etcd2-backup/share/man/man1/etcd2-{t}.1"),
            format!("etcd2-backup/share/completions/bash/etcd2-{t}"),
            format!("etcd2-backup/share/completions/zsh/_etcd2-{t}"),
            format!("etcd2-backup/share/completions/fish/etcd2-{t}.fish"),
        ] {
            assert!(names.contains(&want), "{want} missing from:\n{listing}");
        }
    }
    for unit in UNITS {
        assert!(
            names.contains(&format!("etcd2-backup/units/{unit}")),
            "{unit} missing"
        );
    }

    // The man page is the tool's own --help, rendered.
    let x = payload(t.path());
    let man = fs::read_to_string(x.join("share/man/man1/etcd2-push.1")).expect("man page");
    assert!(
        man.contains("ETCD2_BACKUP_KEEP") && man.contains("LATEST.json"),
        "{man}"
    );
    // SHA256SUMS checks out with the real sha256sum.
    run_ok(
        Command::new("sha256sum")
            .arg("--quiet")
            .arg("-c")
            .arg("SHA256SUMS")
            .current_dir(&x),
    );
    assert_eq!(
        fs::read_to_string(x.join("conf/rclone.conf")).expect("read"),
        RCLONE_CONF
    );
}

#[test]
fn installer_puts_every_file_in_place_and_reinstalls_idempotently() {
    let t = tempfile::tempdir().expect("tempdir");
    let x = payload(t.path());
    let root = stage(t.path(), FLATCAR);
    let etcd_d = root.join("etc/systemd/system/etcd2.service.d");
    fs::write(
        etcd_d.join("20-cloudinit.conf"),
        "[Service]\nEnvironment=\"ETCD_NAME=e1\"\n",
    )
    .expect("w");
    fs::write(
        etcd_d.join("10-exec.conf"),
        "[Service]\nExecStart=\nExecStart=/usr/bin/etcd --x\n",
    )
    .expect("w");
    fs::create_dir_all(root.join("run/systemd/system/etcd2.service.d")).expect("mkdir");
    fs::write(
        root.join("run/systemd/system/etcd2.service.d/40-join-cluster.conf"),
        "[Service]\n",
    )
    .expect("w");

    let o = install(&x, &root, &[]);
    assert!(o.status.success());
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("not using /etc/systemd/system/etcd2.service.d/10-exec.conf in our units: it sets no environment"),
        "{log}"
    );
    assert!(
        log.contains("etcd runs as etcd2.service here (/etc/systemd/system/etcd2.service)"),
        "{log}"
    );

    for tool in [
        "snapshot",
        "push",
        "fetch",
        "wipe",
        "restore",
        "member-add",
        "health",
        "backup-install",
    ] {
        let p = root.join(format!("opt/bin/etcd2-{tool}"));
        assert_eq!(mode(&p), 0o755, "{}", p.display());
        assert_eq!(
            fs::read(&p).expect("r"),
            fs::read(x.join(if tool == "backup-install" {
                "etcd2-backup-install".to_string()
            } else {
                format!("bin/etcd2-{tool}")
            }))
            .expect("r")
        );
    }
    for unit in UNITS {
        let p = root.join("etc/systemd/system").join(unit);
        assert_eq!(mode(&p), 0o644);
        assert_eq!(
            fs::read(&p).expect("r"),
            fs::read(harness::package::repo_units().join(unit)).expect("r")
        );
    }
    for job in ["etcd2-backup", "etcd2-restore", "etcd2-join"] {
        let d = root.join(format!("etc/systemd/system/{job}.service.d"));
        assert_eq!(
            harness::names(&d),
            ["10-etcd-unit.conf", "20-cloudinit.conf"],
            "{job}"
        );
        assert!(fs::read_to_string(d.join("10-etcd-unit.conf"))
            .expect("r")
            .contains("\nEnvironment=\"ETCD_DATA_DIR=/var/lib/etcd2\"\n"));
        assert_eq!(
            fs::read_link(d.join("20-cloudinit.conf")).expect("link"),
            Path::new("/etc/systemd/system/etcd2.service.d/20-cloudinit.conf")
        );
    }
    let rc = root.join("etc/rclone.conf");
    assert_eq!(
        (mode(&rc), fs::read_to_string(&rc).expect("r").as_str()),
        (0o600, RCLONE_CONF)
    );
    // The settings, for the units and a root shell: the package's, 0600.
    let env_file = root.join("etc/etcd2-backup/etcd2-backup.env");
    assert_eq!(mode(&env_file), 0o600);
    let settings = fs::read_to_string(&env_file).expect("r");
    for line in [
        "RCLONE_ENDPOINT=backups:/srv/etcd2-backups",
        "ETCD_RESTORE_MASTER_ADV_PEER_URLS=http://10.0.0.1:2379",
        "RCLONE_CONFIG_PATH=/etc/rclone.conf",
        "ETCD2_BACKUP_KEEP=3",
        "#ETCD2_BACKUP_RCLONE_FLAGS=--bwlimit=10M",
    ] {
        assert!(
            settings.lines().any(|l| l == line),
            "{line} not in:\n{settings}"
        );
    }
    for unit in SERVICES {
        let text =
            fs::read_to_string(root.join(format!("etc/systemd/system/{unit}.service"))).expect("r");
        assert!(
            text.lines()
                .any(|l| l == "EnvironmentFile=-/etc/etcd2-backup/etcd2-backup.env"),
            "{unit}"
        );
    }
    assert!(root.join("opt/share/man/man1/etcd2-restore.1").is_file());
    assert!(root.join("etc/bash_completion.d/etcd2-restore").is_file());
    assert!(root.join("opt/etcd2-backup/installed.json").is_file());
    // Nothing enabled, nothing outside the expected places.
    assert!(!root.join("etc/systemd/system/timers.target.wants").exists());
    let mut top = harness::names(&root);
    top.sort();
    assert_eq!(top, ["etc", "opt", "run"]);

    // Again: nothing changes, not even an mtime.
    let before = snapshot(&root);
    let o = install(&x, &root, &[]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("(0 changed)"));
    assert_eq!(before, snapshot(&root));

    // The operator's edits of the settings and the rclone config stay in
    // effect through a reinstall, as dpkg keeps an edited conffile: their
    // file in place, the package's beside it as FILE.new (private still),
    // both named in the output.
    let rc_edited = format!("{RCLONE_CONF}[other]\ntype = local\n");
    let env_edited = format!("{settings}ETCD2_BACKUP_KEEP=9\n");
    fs::write(&rc, &rc_edited).expect("w");
    fs::write(&env_file, &env_edited).expect("w");
    let o = install(&x, &root, &[]);
    assert!(o.status.success());
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    for (file, edited, package) in [
        (&env_file, &env_edited, &settings),
        (&rc, &rc_edited, &RCLONE_CONF.to_string()),
    ] {
        assert_eq!(&fs::read_to_string(file).expect("r"), edited, "{log}");
        let new = file.with_file_name(format!(
            "{}.new",
            file.file_name().expect("name").to_string_lossy()
        ));
        assert_eq!(&fs::read_to_string(&new).expect(".new"), package, "{log}");
        assert_eq!(mode(&new), 0o600);
        let abs = format!("/{}", file.strip_prefix(&root).expect("rel").display());
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("kept {abs}")) && l.contains(&format!("{abs}.new"))),
            "{abs} and {abs}.new not named on one line:\n{log}"
        );
    }
    let aside: Vec<String> = harness::names(env_file.parent().expect("dir"))
        .into_iter()
        .filter(|n| n.contains("before-install"))
        .collect();
    assert_eq!(aside, Vec::<String>::new(), "nothing else set aside");
    // Again: the edits stay, nothing changes.
    let before = snapshot(&root);
    let o = install(&x, &root, &[]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("(0 changed)"));
    assert_eq!(before, snapshot(&root));

    // A newer package's settings: an unedited file takes them, an edited
    // one stays and gets the new ones beside it.
    fs::write(&rc, RCLONE_CONF).expect("w");
    fs::remove_file(root.join("etc/rclone.conf.new")).expect("rm");
    let newer = build(
        &t.path().join("newer"),
        &conf_with(
            "backups:/srv/etcd2-backups",
            "http://10.0.0.1:2379",
            &["ETCD2_BACKUP_KEEP=5"],
        ),
        "[backups]\ntype = local\ncopy_links = true\n",
    );
    let y = extract(&newer, &t.path().join("y"));
    let o = install(&y, &root, &[]);
    assert!(o.status.success());
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        fs::read_to_string(&rc).expect("r"),
        "[backups]\ntype = local\ncopy_links = true\n",
        "{log}"
    );
    assert!(!root.join("etc/rclone.conf.new").exists(), "{log}");
    assert_eq!(
        fs::read_to_string(&env_file).expect("r"),
        env_edited,
        "{log}"
    );
    let env_new = root.join("etc/etcd2-backup/etcd2-backup.env.new");
    let text = fs::read_to_string(&env_new).expect("r");
    assert!(text.ends_with("ETCD2_BACKUP_KEEP=5\n"), "{text}");
}

#[test]
fn installer_refuses_an_unknown_os_unless_told_and_a_damaged_package() {
    let t = tempfile::tempdir().expect("tempdir");
    let x = payload(t.path());
    let root = stage(t.path(), "PRETTY_NAME=\"Ubuntu 24.04 LTS\"\nID=ubuntu\n");
    let o = install(&x, &root, &[]);
    let line = assert_fails_with(&o, "etcd2-backup-install", "Ubuntu 24.04 LTS (ID=ubuntu)");
    assert!(line.contains("--any-os"), "{line}");
    let mut top = harness::names(&root);
    top.sort();
    assert_eq!(top, ["etc"], "nothing may be installed");
    assert_eq!(harness::names(&root.join("etc")), ["os-release", "systemd"]);

    // A bit flipped in one program: refused before anything is written.
    let victim = x.join("bin/etcd2-push");
    let mut bytes = fs::read(&victim).expect("r");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&victim, bytes).expect("w");
    let o = install(&x, &root, &["--any-os"]);
    assert_fails_with(&o, "etcd2-backup-install", "bin/etcd2-push is damaged");
    assert!(!root.join("opt").exists());

    // A bad --etcd-dropin is refused before anything is written.
    let x2 = extract(&shared().1, &t.path().join("x2"));
    let o = install(
        &x2,
        &root,
        &["--any-os", "--etcd-dropin", "20-cloudinit.conf"],
    );
    assert_fails_with(
        &o,
        "etcd2-backup-install",
        "--etcd-dropin 20-cloudinit.conf: give the absolute path",
    );
    assert!(!root.join("opt").exists());

    // With the flag and an intact package it installs.
    let o = install(&x2, &root, &["--any-os"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("installing anyway (--any-os)"));
    // No etcd2 settings drop-in on this host: said so.
    assert!(String::from_utf8_lossy(&o.stderr).contains("found no etcd2.service settings drop-in"));
}

#[test]
fn uninstall_removes_ours_and_keeps_the_credentials_and_local_edits() {
    let t = tempfile::tempdir().expect("tempdir");
    let x = payload(t.path());
    let root = stage(t.path(), FLATCAR);
    fs::write(
        root.join("etc/systemd/system/etcd2.service.d/20-cloudinit.conf"),
        "[Service]\n",
    )
    .expect("w");
    let o = install(&x, &root, &[]);
    assert!(o.status.success());
    // What `systemctl enable etcd2-backup.timer` would have made.
    let wants = root.join("etc/systemd/system/timers.target.wants");
    fs::create_dir_all(&wants).expect("mkdir");
    std::os::unix::fs::symlink(
        "/etc/systemd/system/etcd2-backup.timer",
        wants.join("etcd2-backup.timer"),
    )
    .expect("ln");
    // Credentials in more places: an edited rclone.conf that a reinstall
    // kept (the package's beside it, .new), and a copy an older installer
    // set aside.
    fs::write(
        root.join("etc/rclone.conf"),
        format!("{RCLONE_CONF}[mine]\ntype = local\n"),
    )
    .expect("w");
    let o = install(&x, &root, &[]);
    assert!(o.status.success());
    assert!(root.join("etc/rclone.conf.new").is_file());
    let old_copy = "etc/etcd2-backup/etcd2-backup.env.before-install-20261125T134313Z";
    fs::write(root.join(old_copy), "RCLONE_ENDPOINT=x:y\n").expect("w");
    let edited = root.join("etc/systemd/system/etcd2-backup.service.d/10-etcd-unit.conf");
    fs::write(&edited, "# mine\n").expect("w");

    let o = run(Command::new(root.join("opt/bin/etcd2-backup-install"))
        .arg("--uninstall")
        .arg("--root")
        .arg(&root));
    assert!(o.status.success());
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("kept /etc/rclone.conf"), "{log}");
    assert!(
        log.contains("kept /etc/etcd2-backup/etcd2-backup.env"),
        "{log}"
    );
    // One line names every copy of the credentials and settings left.
    let left_line = log
        .lines()
        .find(|l| l.contains("credentials") && l.contains("left on this host"))
        .unwrap_or_else(|| panic!("no line lists the credentials left:\n{log}"));
    for p in [
        "/etc/rclone.conf",
        "/etc/rclone.conf.new",
        "/etc/etcd2-backup/etcd2-backup.env",
        &format!("/{old_copy}"),
    ] {
        assert!(
            left_line.split([' ', ',', ':', ';']).any(|w| w == p),
            "{p} not in: {left_line}"
        );
    }
    assert!(
        log.contains("kept /etc/systemd/system/etcd2-backup.service.d/10-etcd-unit.conf"),
        "{log}"
    );

    let left: Vec<String> = snapshot(&root).into_keys().collect();
    assert_eq!(
        left,
        [
            "etc",
            "etc/etcd2-backup",
            "etc/etcd2-backup/etcd2-backup.env",
            "etc/etcd2-backup/etcd2-backup.env.before-install-20261125T134313Z",
            "etc/os-release",
            "etc/rclone.conf",
            "etc/rclone.conf.new",
            "etc/systemd",
            "etc/systemd/system",
            "etc/systemd/system/etcd2-backup.service.d",
            "etc/systemd/system/etcd2-backup.service.d/10-etcd-unit.conf",
            "etc/systemd/system/etcd2.service",
            "etc/systemd/system/etcd2.service.d",
            "etc/systemd/system/etcd2.service.d/20-cloudinit.conf",
            "etc/systemd/system/timers.target.wants",
            "opt",
            "opt/bin",
        ]
    );
    // Uninstalling twice says there is nothing installed.
    let o = run(Command::new(x.join("etcd2-backup-install"))
        .arg("--uninstall")
        .arg("--root")
        .arg(&root));
    assert_fails_with(&o, "etcd2-backup-install", "etcd2-backup is not installed");
}

/// `systemd-analyze verify` on the units as installed, with the installed
/// programs at /opt/bin: run in a throwaway container so that the host's
/// /opt and /etc are not touched.
fn verify_units(root: &Path, units: &[&str]) -> (bool, String) {
    harness::require("systemd-nspawn", "systemd-container");
    let mut c = Command::new("systemd-nspawn");
    c.args([
        "--quiet",
        "--register=no",
        "--keep-unit",
        "--directory=/",
        "--volatile=yes",
    ])
    .arg(format!("--machine=verify-{}", std::process::id()))
    .arg(format!("--bind-ro={}:/opt", root.join("opt").display()))
    .arg(format!(
        "--bind-ro={}:/etc/systemd/system",
        root.join("etc/systemd/system").display()
    ))
    .args(["systemd-analyze", "verify", "--man=no"])
    .args(units.iter().map(|u| format!("/etc/systemd/system/{u}")));
    let o = run(&mut c);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn installed_units_pass_systemd_analyze_verify_and_a_broken_one_fails() {
    let t = tempfile::tempdir().expect("tempdir");
    let x = payload(t.path());
    let root = stage(t.path(), FLATCAR);
    assert!(install(&x, &root, &[]).status.success());
    let (ok, text) = verify_units(&root, &UNITS);
    assert!(ok, "systemd-analyze verify: {text}");
    assert!(!text.contains("etcd2-"), "verify complained: {text}");

    // The check bites: a unit naming a program that is not installed.
    let broken = root.join("etc/systemd/system/etcd2-broken.service");
    let unit = fs::read_to_string(root.join("etc/systemd/system/etcd2-join.service")).expect("r");
    fs::write(
        &broken,
        unit.replace("/opt/bin/etcd2-wipe", "/opt/bin/etcd2-wipe-typo"),
    )
    .expect("w");
    let (ok, text) = verify_units(&root, &["etcd2-broken.service"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("/opt/bin/etcd2-wipe-typo is not executable"),
        "{text}"
    );
}

#[test]
fn bundled_rclone_and_etcdctl_are_installed_next_to_our_tools() {
    let rclone = harness::require("rclone", "rclone");
    let etcdctl = harness::require("etcdctl", "etcd-client");
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("build");
    fs::create_dir_all(&dir).expect("mkdir");
    let out = dir.join("etcd2-backup.tgz");
    let mut c = packager(&dir, &conf(), Some(RCLONE_CONF), &out);
    c.arg("--with-rclone")
        .arg(&rclone)
        .arg("--with-etcdctl")
        .arg(&etcdctl);
    run_ok(&mut c);
    let x = extract(&out, &t.path().join("x"));
    let root = stage(t.path(), FLATCAR);
    assert!(install(&x, &root, &[]).status.success());
    for (name, src) in [("rclone", &rclone), ("etcdctl", &etcdctl)] {
        let p = root.join("opt/bin").join(name);
        assert_eq!(mode(&p), 0o755, "{}", p.display());
        assert!(
            fs::read(&p).expect("r") == fs::read(src).expect("r"),
            "{name} differs from {}",
            src.display()
        );
    }
    // Not bundled, not installed.
    assert!(!root.join("opt/bin/etcd").exists());
    // And an uninstall takes them away again.
    let o = run(Command::new(root.join("opt/bin/etcd2-backup-install"))
        .arg("--uninstall")
        .arg("--root")
        .arg(&root));
    assert!(o.status.success());
    assert!(!root.join("opt/bin/rclone").exists() && !root.join("opt/bin/etcdctl").exists());
}

/// Every unit we install, as text, by file name.
fn installed_units(root: &Path) -> BTreeMap<&'static str, String> {
    UNITS
        .iter()
        .map(|u| {
            let p = root.join("etc/systemd/system").join(u);
            (*u, fs::read_to_string(&p).expect("installed unit"))
        })
        .collect()
}

/// The directives that tie our units to etcd's, for `unit`, and no
/// etcd2.service left anywhere in them.
fn assert_units_name(root: &Path, unit: &str) {
    let units = installed_units(root);
    let has = |file: &str, line: &str| {
        assert!(
            units[file].lines().any(|l| l == line),
            "{file} lacks {line:?}:\n{}",
            units[file]
        )
    };
    has("etcd2-backup.service", &format!("After={unit}"));
    has("etcd2-backup.timer", &format!("WantedBy={unit}"));
    for job in ["etcd2-restore.service", "etcd2-join.service"] {
        has(job, &format!("Before={unit}"));
        assert!(
            units[job]
                .lines()
                .any(|l| l.starts_with(&format!("Conflicts={unit} "))),
            "{job}: {}",
            units[job]
        );
    }
    has(
        "etcd2-join.service",
        &format!(
            "ExecStart=/opt/bin/etcd2-member-add --dropin /run/systemd/system/{unit}.d/40-join-cluster.conf"
        ),
    );
    if unit != "etcd2.service" {
        for (file, text) in &units {
            assert!(
                !text.contains("etcd2.service"),
                "{file} still names etcd2.service:\n{text}"
            );
        }
    }
}

#[test]
fn installer_targets_debians_etcd_service_with_its_data_dir_and_etc_default() {
    // Debian's own unit from the etcd-server package, installed on this
    // host, with the alias etcd2.service its postinst creates.
    let debian_unit = Path::new("/lib/systemd/system/etcd.service");
    harness::require("etcd", "etcd-server");
    let t = tempfile::tempdir().expect("tempdir");
    let x = payload(t.path());
    let root = bare_stage(
        t.path(),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
    );
    fs::create_dir_all(root.join("lib/systemd/system")).expect("mkdir");
    fs::copy(debian_unit, root.join("lib/systemd/system/etcd.service")).expect("cp");
    fs::create_dir_all(root.join("etc/systemd/system")).expect("mkdir");
    std::os::unix::fs::symlink(
        "/lib/systemd/system/etcd.service",
        root.join("etc/systemd/system/etcd2.service"),
    )
    .expect("ln");

    install_saying(
        &x,
        &root,
        &["--any-os"],
        "etcd runs as etcd.service here (/lib/systemd/system/etcd.service)",
    );
    assert_units_name(&root, "etcd.service");
    for job in SERVICES {
        let d = root.join(format!("etc/systemd/system/{job}.service.d"));
        assert_eq!(harness::names(&d), ["10-etcd-unit.conf"], "{job}");
        let settings = fs::read_to_string(d.join("10-etcd-unit.conf")).expect("r");
        for line in [
            "Environment=\"ETCD_DATA_DIR=/var/lib/etcd/default\"",
            "Environment=\"ETCD_NAME=%H\"",
            "EnvironmentFile=-/etc/default/etcd",
        ] {
            assert!(
                settings.lines().any(|l| l == line),
                "{line} not in:\n{settings}"
            );
        }
    }
    // Debian's unit sets these for etcd in the same way.
    let debian = fs::read_to_string(debian_unit).expect("r");
    assert!(
        debian.contains("Environment=ETCD_DATA_DIR=/var/lib/etcd/default"),
        "{debian}"
    );
    assert!(
        debian.contains("EnvironmentFile=-/etc/default/%p"),
        "{debian}"
    );

    // systemd accepts the rewritten units.
    let (ok, text) = verify_units(&root, &UNITS);
    assert!(ok, "systemd-analyze verify: {text}");
}

/// Flatcar's etcd-member.service (abridged: it runs etcd in a container).
const ETCD_MEMBER_UNIT: &str = "[Unit]\nDescription=etcd (System Application Container)\n\
    Conflicts=etcd.service etcd2.service\n\n[Service]\nType=notify\n\
    Environment=\"ETCD_IMAGE_TAG=v3.5.0\"\nEnvironment=\"ETCD_DATA_DIR=/var/lib/etcd\"\n\
    Environment=\"ETCD_USER=etcd\"\nExecStart=/usr/lib/flatcar/etcd-wrapper $ETCD_OPTS\n";

/// The drop-in Flatcar's documentation has Butane write for etcd: [Unit]
/// lines and an ExecStart= override beside the environment.
const FLATCAR_ETCD_DROPIN: &str = "[Unit]\nRequires=coreos-metadata.service\n\
    After=coreos-metadata.service\n\n[Service]\nEnvironmentFile=/run/metadata/flatcar\n\
    Environment=\"ETCD_NAME=node1\"\n\
    Environment=\"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://10.0.0.11:2380\"\n\
    ExecStart=\nExecStart=/usr/lib/coreos/etcd-wrapper $ETCD_OPTS \\\n  \
    --listen-peer-urls=\"http://${COREOS_CUSTOM_PRIVATE_IPV4}:2380\" \\\n  \
    --listen-client-urls=\"http://0.0.0.0:2379\"\n";

#[test]
fn installer_targets_flatcars_etcd_member_and_takes_only_its_dropins_environment() {
    let t = tempfile::tempdir().expect("tempdir");
    let x = payload(t.path());
    let root = bare_stage(t.path(), FLATCAR);
    fs::create_dir_all(root.join("usr/lib/systemd/system")).expect("mkdir");
    fs::write(
        root.join("usr/lib/systemd/system/etcd-member.service"),
        ETCD_MEMBER_UNIT,
    )
    .expect("w");
    let dropins = root.join("etc/systemd/system/etcd-member.service.d");
    fs::create_dir_all(&dropins).expect("mkdir");
    fs::write(
        dropins.join("20-clct-etcd-member.conf"),
        FLATCAR_ETCD_DROPIN,
    )
    .expect("w");

    install_saying(
        &x,
        &root,
        &[],
        "using only the Environment= lines of /etc/systemd/system/etcd-member.service.d/20-clct-etcd-member.conf",
    );
    assert_units_name(&root, "etcd-member.service");
    for job in SERVICES {
        let d = root.join(format!("etc/systemd/system/{job}.service.d"));
        assert_eq!(
            harness::names(&d),
            ["10-etcd-unit.conf", "20-clct-etcd-member.conf"],
            "{job}"
        );
        assert!(fs::read_to_string(d.join("10-etcd-unit.conf"))
            .expect("r")
            .contains("Environment=\"ETCD_DATA_DIR=/var/lib/etcd\"\n"));
        let copy = d.join("20-clct-etcd-member.conf");
        assert!(fs::symlink_metadata(&copy).expect("stat").is_file());
        let text = fs::read_to_string(&copy).expect("r");
        let settings: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            settings,
            [
                "[Service]",
                "EnvironmentFile=/run/metadata/flatcar",
                "Environment=\"ETCD_NAME=node1\"",
                "Environment=\"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://10.0.0.11:2380\"",
            ],
            "{text}"
        );
    }
    let (ok, text) = verify_units(&root, &UNITS);
    assert!(ok, "systemd-analyze verify: {text}");
}

#[test]
fn installer_refuses_when_the_etcd_unit_is_ambiguous_or_missing_unless_told() {
    let t = tempfile::tempdir().expect("tempdir");
    let x = payload(t.path());
    let root = bare_stage(t.path(), FLATCAR);
    let o = install(&x, &root, &[]);
    let line = assert_fails_with(
        &o,
        "etcd2-backup-install",
        "found no etcd unit on the target",
    );
    assert!(
        line.ends_with(
            "pass --etcd-unit NAME, or --etcd-unit none where no systemd unit runs etcd"
        ),
        "{line}"
    );
    assert!(!root.join("opt").exists(), "a refusal writes nothing");

    fs::create_dir_all(root.join("usr/lib/systemd/system")).expect("mkdir");
    fs::write(
        root.join("usr/lib/systemd/system/etcd-member.service"),
        ETCD_MEMBER_UNIT,
    )
    .expect("w");
    fs::create_dir_all(root.join("etc/systemd/system")).expect("mkdir");
    fs::write(root.join("etc/systemd/system/etcd2.service"), ETCD2_UNIT).expect("w");
    let o = install(&x, &root, &[]);
    assert_fails_with(
        &o,
        "etcd2-backup-install",
        "found several etcd units on the target: etcd2.service (/etc/systemd/system/etcd2.service), \
         etcd-member.service (/usr/lib/systemd/system/etcd-member.service); pass --etcd-unit NAME",
    );
    assert!(!root.join("opt").exists(), "a refusal writes nothing");

    let o = install(&x, &root, &["--etcd-unit", "etcd-member"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_units_name(&root, "etcd-member.service");

    // A name that is none of them is a usage error.
    let o = install(&x, &root, &["--etcd-unit", "etcd3.service"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("etcd3.service: not one of"));
}

/// `systemd-analyze security` of an installed unit, offline, on the staged
/// root: the exposure score it prints (0 = locked down, 10 = none).
fn exposure(root: &Path, unit: &str) -> f64 {
    harness::require("systemd-analyze", "systemd");
    let o = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg(unit));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let needle = format!("Overall exposure level for {unit}: ");
    let line = out
        .lines()
        .find_map(|l| l.split_once(&needle).map(|(_, r)| r.to_owned()))
        .unwrap_or_else(|| {
            panic!(
                "no score for {unit} in systemd-analyze security:\n{out}{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable score {line:?}"))
}

#[test]
fn installed_services_are_sandboxed_backup_exposure_at_most_3() {
    let t = tempfile::tempdir().expect("tempdir");
    let x = payload(t.path());
    let root = stage(t.path(), FLATCAR);
    assert!(install(&x, &root, &[]).status.success());
    let mut scores = Vec::new();
    for job in SERVICES {
        // A template is analyzed as one of its instances.
        let instance = if job.ends_with('@') { "e1" } else { "" };
        let unit = format!("{job}{instance}.service");
        let score = exposure(&root, &unit);
        eprintln!("systemd-analyze security {unit}: {score:.1}");
        scores.push((job, score));
    }
    // The backup reads one data dir and writes one scratch dir and the
    // remote: the issue's bound. Restore and join write etcd's data dir
    // and own it, so they keep three capabilities and a writable /var, and
    // still stay under the same bound (9.6 unsandboxed).
    for (job, score) in scores {
        assert!(score <= 3.0, "{job}.service: exposure {score} > 3.0");
    }
    // The check bites: the unit without its sandbox scores far worse.
    let unit = root.join("etc/systemd/system/etcd2-backup.service");
    let text = fs::read_to_string(&unit).expect("r");
    let bare: String = text
        .split("# ---- Sandbox")
        .next()
        .expect("the unit's head")
        .to_owned();
    fs::write(&unit, bare).expect("w");
    let score = exposure(&root, "etcd2-backup.service");
    assert!(score > 9.0, "unsandboxed backup scored {score}");
}

/// The push's check is only as strong as the settings let it be: every
/// settings source we ship (the drop-in the package is built from, the
/// units, the Butane config, the settings file the installer writes and the
/// one the .deb carries) leaves ETCD2_BACKUP_VERIFY unset or at a level no
/// weaker than the default `auto` (which reads back what the backend cannot
/// hash: crypt, WebDAV, S3 multipart).
#[test]
fn shipped_settings_leave_verification_at_its_default_or_stronger() {
    const NAME: &str = "ETCD2_BACKUP_VERIFY";
    let strong = |v: &Option<String>| matches!(v.as_deref(), None | Some("auto" | "download"));
    let ws = harness::workspace();
    let mut seen = Vec::new();

    // Drop-in shaped sources: the package's settings, every unit, Butane.
    let mut dropins = vec![ws.join("units/30-etcd2-backup-restore.conf")];
    dropins.extend(UNITS.iter().map(|u| ws.join("units").join(u)));
    dropins.push(ws.join("packaging/butane/etcd2-backup.bu"));
    for p in dropins {
        let text = fs::read_to_string(&p).expect("read a shipped source");
        let v = etcd2_backup::job::install::dropin_env(&text, NAME);
        seen.push((p.display().to_string(), v));
    }

    // The settings file the installer writes from the package.
    let t = tempfile::tempdir().expect("tempdir");
    let x = payload(t.path());
    let root = stage(t.path(), FLATCAR);
    assert!(install(&x, &root, &[]).status.success());
    let env_files = [root.join("etc/etcd2-backup/etcd2-backup.env"), {
        // The .deb's copy, staged as `make deb` stages it.
        let out = t.path().join("deb");
        run_ok(
            Command::new(harness::bin("etcd2-backup-stage"))
                .args(["--etcd-unit", "etcd.service", "--units"])
                .arg(ws.join("units"))
                .arg("--conf")
                .arg(ws.join("units/30-etcd2-backup-restore.conf"))
                .arg("--out")
                .arg(&out),
        );
        out.join("etc/etcd2-backup/etcd2-backup.env")
    }];
    for p in env_files {
        let text = fs::read_to_string(&p).expect("read a settings file");
        let vars = etcd2_backup::settings::parse(&text).expect("parse a shipped settings file");
        let v = vars
            .into_iter()
            .rev()
            .find(|(n, _)| n == NAME)
            .map(|(_, v)| v);
        seen.push((p.display().to_string(), v));
    }

    let weak: Vec<_> = seen.iter().filter(|(_, v)| !strong(v)).collect();
    assert!(
        weak.is_empty(),
        "shipped settings weaken verification below --verify auto: {weak:?}"
    );
}

//! The portable release: every tool linked statically (so one build runs on
//! any x86_64 Linux, whatever its libc), and the generic, secret-free
//! systemd-sysext image built from those tools, checked by reading its tree
//! and by loading it into real systemd.

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

/// A secret that must never end up in a release artifact: it sits in the
/// rclone config next to the build, in the environment of the build and in
/// the config the installed units use.
const CANARY: &str = "canary-5ecret-7b1f0c";

/// An rclone config with a local remote `drill` and the canary as a
/// credential of another.
fn rclone_conf(dir: &Path) -> PathBuf {
    let p = dir.join("rclone.conf");
    fs::write(
        &p,
        format!("[drill]\ntype = local\n\n[vault]\ntype = sftp\nuser = u\npass = {CANARY}\n"),
    )
    .expect("write rclone.conf");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
    p
}

/// `make release`'s image step on the static tools, run from a directory
/// holding an rclone.conf and with the build's environment pointing at it,
/// as a careless build host would.
fn build_image(dir: &Path, out: &Path) {
    let rc = rclone_conf(dir);
    let bins = static_bin("etcd2-push");
    run_ok(
        Command::new(static_bin("etcd2-backup-sysext"))
            .current_dir(dir)
            .arg("--bin-dir")
            .arg(bins.parent().expect("bin dir"))
            .arg("--units")
            .arg(harness::package::repo_units())
            .arg("--output")
            .arg(out)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("RCLONE_CONFIG", &rc)
            .env("RCLONE_CONF", &rc)
            .env("RCLONE_CONFIG_VAULT_PASS", CANARY),
    );
}

/// The image both image tests read, built once per test run (a build
/// squashes some 250 MB of debug binaries) under cargo's scratch dir for
/// integration tests, replaced by the next run.
fn shared_image() -> &'static Path {
    static IMAGE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("release-image");
        if dir.exists() {
            fs::remove_dir_all(&dir).expect("removing the last run's image");
        }
        fs::create_dir_all(&dir).expect("mkdir");
        let image = dir.join("out/etcd2-backup.raw");
        build_image(&dir, &image);
        image
    })
}

/// The image's tree as `unsquashfs` reads it, into `into`.
fn unsquash(image: &Path, into: &Path) -> PathBuf {
    require("unsquashfs", "squashfs-tools");
    fs::create_dir_all(into).expect("mkdir");
    let tree = into.join("etcd2-backup");
    run_ok(
        Command::new("unsquashfs")
            .args(["-no-progress", "-d"])
            .arg(&tree)
            .arg(image),
    );
    tree
}

fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if e.file_type().expect("file type").is_dir() {
            files_below(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_sysext_image_holds_tools_units_and_docs_and_no_secret() {
    require("mksquashfs", "squashfs-tools");
    let t = tempfile::tempdir().expect("tempdir");
    let image = shared_image();
    assert_eq!(
        fs::metadata(image).expect("stat").permissions().mode() & 0o777,
        0o644
    );

    // Its listing, as `unsquashfs -lls` gives it: every entry root's.
    let lls = stdout(
        Command::new("unsquashfs")
            .args(["-no-progress", "-lls"])
            .arg(image),
    );
    let entries: Vec<&str> = lls
        .lines()
        .filter(|l| l.contains("squashfs-root"))
        .collect();
    assert!(entries.iter().all(|l| l.contains(" root/root ")), "{lls}");
    let paths: Vec<String> = entries
        .iter()
        .filter_map(|l| l.split("squashfs-root").nth(1))
        .map(str::to_owned)
        .collect();
    let has = |p: &str| paths.iter().any(|x| x == p);
    let installer = "etcd2-backup-install";
    for tool in tools().into_iter().filter(|t| *t != installer) {
        for p in [
            format!("/usr/bin/{tool}"),
            format!("/usr/share/man/man1/{tool}.1"),
            format!("/usr/share/bash-completion/completions/{tool}"),
            format!("/usr/share/zsh/site-functions/_{tool}"),
            format!("/usr/share/fish/vendor_completions.d/{tool}.fish"),
        ] {
            assert!(has(&p), "{p} missing from the image:\n{lls}");
        }
    }
    // The installer installs a tarball; the image is installed by systemd.
    assert!(!has(&format!("/usr/bin/{installer}")), "{lls}");
    for unit in harness::names(&harness::package::repo_units())
        .into_iter()
        .filter(|n| n.ends_with(".service") || n.ends_with(".timer"))
    {
        assert!(
            has(&format!("/usr/lib/systemd/system/{unit}")),
            "{unit} missing:\n{lls}"
        );
    }
    assert!(has(
        "/usr/lib/extension-release.d/extension-release.etcd2-backup"
    ));
    // Only /usr: no /etc (settings are the operator's), nothing else.
    assert!(
        paths.iter().all(|p| p.is_empty() || p.starts_with("/usr")),
        "{lls}"
    );

    // The tree itself.
    let tree = unsquash(image, t.path());
    let release =
        fs::read_to_string(tree.join("usr/lib/extension-release.d/extension-release.etcd2-backup"))
            .expect("extension-release");
    assert!(release.lines().any(|l| l == "ID=_any"), "{release}");
    assert!(
        release.lines().any(|l| l == "ARCHITECTURE=x86-64"),
        "{release}"
    );
    let backup =
        fs::read_to_string(tree.join("usr/lib/systemd/system/etcd2-backup.service")).expect("unit");
    assert!(
        backup.contains("/usr/bin/etcd2-snapshot --output - | /usr/bin/etcd2-push "),
        "the unit does not run the image's program:\n{backup}"
    );
    // No secret and no rclone config in any file: not the canary, not a
    // remote's `type =` line, nothing named rclone.conf.
    let mut files = Vec::new();
    files_below(&tree, &mut files);
    for f in &files {
        let bytes = fs::read(f).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(CANARY), "{} holds the canary", f.display());
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("type =") || l.trim() == "[drill]"),
            "{} holds an rclone remote",
            f.display()
        );
        assert!(!f.ends_with("rclone.conf"), "{}", f.display());
    }
    let raw = fs::read(image).expect("read image");
    assert!(!raw.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()));

    // Reproducible: built again elsewhere, the same bytes.
    let again = t.path().join("again/etcd2-backup.raw");
    build_image(t.path(), &again);
    assert!(raw == fs::read(&again).expect("read"), "two builds differ");
}

/// A one-member etcd standing in for the host's etcd2.service (as in the
/// drill); its settings come from a drop-in.
const ETCD2_SERVICE: &str = "\
[Unit]
Description=etcd (test fixture standing in for etcd2.service)

[Service]
Type=notify
Environment=ETCD_DATA_DIR=/var/lib/etcd2
ExecStart=/usr/bin/etcd
TimeoutStartSec=90
";

#[test]
fn the_sysext_merges_runs_a_backup_from_its_units_and_unmerges() {
    require("etcd", "etcd-server");
    require("etcdctl", "etcd-client");
    require("rclone", "rclone");
    let t = tempfile::tempdir().expect("tempdir");
    let base = t.path();
    // No loop devices in the container: systemd-sysext takes the image's
    // tree as a plain directory extension.
    let tree = unsquash(shared_image(), &base.join("ext"));

    let client = format!("http://127.0.0.1:{}", harness::free_port());
    let peer = format!("http://127.0.0.1:{}", harness::free_port());
    let node = [
        ("ETCD_NAME", "e1".to_string()),
        ("ETCD_LISTEN_CLIENT_URLS", client.clone()),
        ("ETCD_ADVERTISE_CLIENT_URLS", client.clone()),
        ("ETCD_LISTEN_PEER_URLS", peer.clone()),
        ("ETCD_INITIAL_ADVERTISE_PEER_URLS", peer.clone()),
        ("ETCD_INITIAL_CLUSTER", format!("e1={peer}")),
        ("ETCD_INITIAL_CLUSTER_STATE", "new".into()),
        ("ETCD_INITIAL_CLUSTER_TOKEN", "sysext".into()),
    ]
    .iter()
    .fold(String::from("[Service]\n"), |s, (k, v)| {
        s + &format!("Environment=\"{k}={v}\"\n")
    });
    // What the operator supplies at install time: etcd's settings, ours
    // for the backup unit, and the rclone config (0600).
    let etcd_d = base.join("etcd2.service.d");
    let backup_d = base.join("etcd2-backup.service.d");
    for d in [&etcd_d, &backup_d] {
        fs::create_dir_all(d).expect("mkdir");
        fs::write(d.join("20-node.conf"), &node).expect("w");
    }
    let remote_in = "/srv/etcd2-backups";
    // The sandboxed unit writes only where it is told: a local remote is
    // one of those places (units/README.md), as in the drill.
    fs::write(
        backup_d.join("40-local-remote.conf"),
        format!("[Service]\nReadWritePaths={remote_in}\n"),
    )
    .expect("w");
    fs::write(
        backup_d.join("30-etcd2-backup-restore.conf"),
        harness::package::conf_with(
            &format!("drill:{remote_in}"),
            &client,
            &["ETCD_DATA_DIR=/var/lib/etcd2"],
        ),
    )
    .expect("w");
    let rc = rclone_conf(base);
    fs::write(base.join("etcd2.service"), ETCD2_SERVICE).expect("w");
    let data = base.join("data");
    let remote = base.join("remote");
    fs::create_dir_all(&data).expect("mkdir");
    fs::create_dir_all(&remote).expect("mkdir");

    let binds = [
        (
            base.join("etcd2.service"),
            "/etc/systemd/system/etcd2.service",
            true,
        ),
        (etcd_d.clone(), "/etc/systemd/system/etcd2.service.d", true),
        (
            backup_d.clone(),
            "/etc/systemd/system/etcd2-backup.service.d",
            true,
        ),
        (rc.clone(), "/etc/rclone.conf", true),
        (tree.clone(), "/var/lib/extensions/etcd2-backup", true),
        (data.clone(), "/var/lib/etcd2", false),
        (remote.clone(), remote_in, false),
        // man-db's own config: the container's /etc starts empty.
        (
            PathBuf::from("/etc/manpath.config"),
            "/etc/manpath.config",
            true,
        ),
    ];
    let mut ct =
        harness::nspawn::Container::boot(&format!("sysext-{}", std::process::id()), &binds, base);
    let sh = |cmd: &str| ct.exec(&["sh", "-c", cmd]);
    // systemd-sysext.service may have merged it at boot already (as on
    // Flatcar); start from an unmerged /usr to see merge do it.
    let o = ct.exec(&["systemd-sysext", "unmerge"]);
    assert!(
        o.status.success(),
        "systemd-sysext unmerge: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !sh("test -e /usr/bin/etcd2-push").status.success(),
        "etcd2-push is there before the merge"
    );

    let o = ct.exec(&["systemd-sysext", "merge"]);
    assert!(
        o.status.success(),
        "systemd-sysext merge: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = ct.exec(&["systemd-sysext", "list"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("etcd2-backup"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = ct.exec(&["etcd2-push", "--version"]);
    assert!(o.status.success(), "etcd2-push from the merged /usr/bin");
    // man and bash find the image's pages and completions where they look
    // on any distribution (bash loads a completion from there on the first
    // TAB, through _completion_loader).
    let o = ct.exec(&["man", "-w", "etcd2-push"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "/usr/share/man/man1/etcd2-push.1",
        "man -w etcd2-push: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = sh(
        "bash --norc -i -c '. /usr/share/bash-completion/bash_completion; \
         _completion_loader etcd2-push; complete -p etcd2-push' 2>&1",
    );
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("etcd2-push"),
        "bash has no completion for etcd2-push: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    ct.systemctl(&["daemon-reload"]);
    let o = ct.exec(&[
        "systemctl",
        "show",
        "-P",
        "FragmentPath",
        "etcd2-backup.service",
    ]);
    // (/lib/systemd/system on a merged-/usr Debian: the same directory.)
    let fragment = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    let o = ct.exec(&["realpath", &fragment]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "/usr/lib/systemd/system/etcd2-backup.service",
        "systemd loads the backup unit from {fragment}"
    );

    // A backup of a real member, by the image's unit.
    ct.systemctl(&["start", "--no-block", "etcd2.service"]);
    let etcdctl = |args: &[&str]| {
        run(Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={client}"))
            .args(args))
    };
    ct.wait_until(
        "etcd healthy",
        std::time::Duration::from_secs(60),
        &["etcd2.service"],
        || {
            etcdctl(&["endpoint", "health"])
                .status
                .success()
                .then_some(())
        },
    );
    assert!(etcdctl(&["put", "sysext/key", "backed up from the image"])
        .status
        .success());
    ct.systemctl(&["start", "etcd2-backup.service"]);
    let mid = ct.read("/etc/machine-id").trim().to_owned();
    assert!(
        remote.join(&mid).join("LATEST.json").is_file(),
        "no backup published; journal:\n{}",
        ct.journal(&["etcd2-backup.service"])
    );
    let journal = ct.journal(&["etcd2-backup.service"]);
    assert!(!journal.contains(CANARY), "{journal}");
    // The backup holds the key: fetched and listed on the host, with the
    // static tools and the same config.
    let list = run_ok(
        harness::tool("etcd2-fetch")
            .args(["--list"])
            .env("RCLONE_CONFIG", &rc)
            .env("RCLONE_ENDPOINT", format!("drill:{}", remote.display()))
            .env("ETCD2_BACKUP_MACHINE_ID", &mid),
    );
    assert!(!list.stdout.is_empty(), "etcd2-fetch --list shows nothing");

    // Unmerged, the tools and units are gone again.
    ct.systemctl(&["stop", "etcd2.service"]);
    let o = ct.exec(&["systemd-sysext", "unmerge"]);
    assert!(
        o.status.success(),
        "systemd-sysext unmerge: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!sh("test -e /usr/bin/etcd2-push").status.success());
    ct.systemctl(&["daemon-reload"]);
    let o = ct.exec(&[
        "systemctl",
        "show",
        "-P",
        "LoadState",
        "etcd2-backup.service",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "not-found");
    ct.stop();
}

/// The Butane config (packaging/butane/etcd2-backup.bu) as JSON, read by a
/// real YAML parser (PyYAML, from build/venv). Debian has no `butane`, so
/// this checks its structure against Butane's flatcar 1.0.0 schema for the
/// keys it uses and its meaning against the image and the units; it does not
/// transpile it.
fn butane() -> serde_json::Value {
    let py = harness::workspace().join("build/venv/bin/python3");
    assert!(
        py.is_file(),
        "{} missing: run scripts/ensure-deps (it pip-installs pyyaml)",
        py.display()
    );
    let bu = harness::workspace().join("packaging/butane/etcd2-backup.bu");
    let out = run_ok(
        Command::new(py)
            .args([
                "-c",
                "import json,sys,yaml\njson.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
            ])
            .arg(&bu),
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the YAML")
}

/// Every key of `v` is one the schema allows at this place.
fn only_keys(v: &serde_json::Value, allowed: &[&str], at: &str) {
    let map = v.as_object().unwrap_or_else(|| panic!("{at} is not a map"));
    for k in map.keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "{at}.{k}: not a key of Butane's flatcar 1.0.0 schema here"
        );
    }
}

#[test]
fn the_butane_config_places_the_image_settings_and_credentials() {
    let b = butane();
    only_keys(
        &b,
        &[
            "variant",
            "version",
            "ignition",
            "storage",
            "systemd",
            "passwd",
            "kernel_arguments",
        ],
        "",
    );
    assert_eq!(b["variant"], "flatcar");
    assert_eq!(b["version"], "1.0.0");
    only_keys(
        &b["storage"],
        &[
            "files",
            "links",
            "directories",
            "disks",
            "filesystems",
            "luks",
            "raid",
            "trees",
        ],
        "storage",
    );
    let files = b["storage"]["files"].as_array().expect("storage.files");
    let links = b["storage"]["links"].as_array().expect("storage.links");
    for f in files {
        only_keys(
            f,
            &[
                "path",
                "overwrite",
                "contents",
                "append",
                "mode",
                "user",
                "group",
            ],
            "storage.files[]",
        );
        only_keys(
            &f["contents"],
            &[
                "compression",
                "http_headers",
                "source",
                "inline",
                "local",
                "verification",
            ],
            "storage.files[].contents",
        );
        assert!(f["path"].as_str().expect("path").starts_with('/'));
    }
    for l in links {
        only_keys(
            l,
            &["path", "overwrite", "user", "group", "target", "hard"],
            "storage.links[]",
        );
    }
    let file = |path: &str| {
        files
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("no storage.files entry for {path}"))
    };
    let link = |path: &str| {
        links
            .iter()
            .find(|l| l["path"] == path)
            .unwrap_or_else(|| panic!("no storage.links entry for {path}"))
    };

    // The image: downloaded (and hash-checked) under /opt/extensions,
    // linked under the one name systemd-sysext accepts for it.
    let ext = link("/etc/extensions/etcd2-backup.raw");
    assert_eq!(ext["hard"], false);
    let image = file(ext["target"].as_str().expect("target"));
    assert!(image["path"]
        .as_str()
        .is_some_and(|p| p.starts_with("/opt/extensions/")));
    assert!(image["contents"]["source"]
        .as_str()
        .is_some_and(|s| s.ends_with("/etcd2-backup.raw")));
    assert!(image["contents"]["verification"]["hash"]
        .as_str()
        .is_some_and(|h| h.starts_with("sha256-")));
    assert_eq!(image["mode"], 0o644);

    // The settings: the settings file every unit (EnvironmentFile=) and
    // every tool reads, private, in the syntax systemd reads; no drop-in.
    let settings = file(etcd2_backup::settings::ENV_FILE);
    assert_eq!(settings["mode"], 0o600);
    let conf = settings["contents"]["inline"].as_str().expect("inline");
    let vars = etcd2_backup::settings::parse(conf).expect("systemd reads it");
    let env = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(env("ETCD_DATA_DIR").as_deref(), Some("/var/lib/etcd"));
    let rclone_path = env("RCLONE_CONFIG_PATH").expect("RCLONE_CONFIG_PATH");
    for f in files {
        assert!(
            !f["path"].as_str().unwrap().contains(".service.d/"),
            "a drop-in besides the settings file: {}",
            f["path"]
        );
    }
    let unit = fs::read_to_string(harness::package::repo_units().join("etcd2-backup.service"))
        .expect("the backup unit");
    assert!(
        unit.lines()
            .any(|l| l == format!("EnvironmentFile=-{}", etcd2_backup::settings::ENV_FILE)),
        "the units do not read the settings file"
    );

    // The credentials: root only, and they hold the endpoint's remote.
    let rclone = file(&rclone_path);
    assert_eq!(rclone["mode"], 0o600, "{rclone_path} must be 0600");
    let endpoint = env("RCLONE_ENDPOINT").expect("RCLONE_ENDPOINT");
    let remote = endpoint.split_once(':').expect("REMOTE:PATH").0;
    assert!(
        rclone["contents"]["inline"]
            .as_str()
            .expect("inline")
            .lines()
            .any(|l| l.trim() == format!("[{remote}]")),
        "{rclone_path} has no [{remote}] section for RCLONE_ENDPOINT={endpoint}"
    );

    // The timer enabled as `systemctl enable` would: a link to the unit
    // the image ships, in the target its [Install] names.
    let timer = link("/etc/systemd/system/timers.target.wants/etcd2-backup.timer");
    assert_eq!(
        timer["target"],
        "/usr/lib/systemd/system/etcd2-backup.timer"
    );
    let unit = fs::read_to_string(harness::package::repo_units().join("etcd2-backup.timer"))
        .expect("the timer unit");
    assert!(
        unit.lines().any(|l| l.trim() == "WantedBy=timers.target"),
        "{unit}"
    );
}

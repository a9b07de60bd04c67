//! The .deb (`make deb`): built by the real cargo-deb from the tools and
//! the units staged for Debian's etcd.service; what it holds (no rclone
//! config, no secret); what Debian's lintian says of it (no error); and
//! `dpkg -i` in a container booted from this host's
//! Debian, where Debian's own etcd.service runs etcd (as user etcd, data in
//! /var/lib/etcd/default, settings in /etc/default/etcd) and our backup
//! unit backs it up to a real rclone remote.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use harness::nspawn::Container;
use harness::{assert_fails_with, bin, require, run, run_ok, workspace};

const TOOLS: [&str; 10] = [
    "etcd2-snapshot",
    "etcd2-push",
    "etcd2-fetch",
    "etcd2-wipe",
    "etcd2-restore",
    "etcd2-member-add",
    "etcd2-health",
    "etcd2-verify",
    "etcd2-watch",
    "etcd2-convert",
];
const REMOTE_IN: &str = "/srv/etcd2-backups";

/// The .deb, built once for this file as `make deb` builds it, but from
/// the debug build the tests run (cargo-deb --profile dev).
fn deb() -> &'static Path {
    static DEB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DEB.get_or_init(|| {
        require("dpkg-deb", "dpkg");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let v = Command::new(&cargo).args(["deb", "--version"]).output();
        assert!(
            v.as_ref().is_ok_and(|o| o.status.success()),
            "cargo-deb not found (`cargo deb --version` failed): make deps installs it \
             (scripts/ensure-deps)"
        );
        let t = tempfile::tempdir().expect("tempdir");
        let ws = workspace();
        run_ok(
            Command::new(bin("etcd2-backup-stage"))
                .args(["--etcd-unit", "etcd.service", "--units"])
                .arg(ws.join("units"))
                .arg("--conf")
                .arg(ws.join("units/30-etcd2-backup-restore.conf"))
                .arg("--out")
                .arg(ws.join("build/deb")),
        );
        let out = t.path().join("etcd2-backup.deb");
        run_ok(
            Command::new(&cargo)
                .args(["deb", "-p", "etcd2-backup-package", "--no-build"])
                .args(["--profile", "dev", "-o"])
                .arg(&out)
                .current_dir(&ws),
        );
        (t, out)
    })
    .1
}

#[test]
fn deb_holds_the_tools_and_units_for_debians_etcd_and_no_secret() {
    let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(deb()));
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let entries: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((*f.first()?, *f.last()?))
        })
        .collect();
    let mode_of = |path: &str| {
        entries
            .iter()
            .find(|(_, p)| p.trim_start_matches("./") == path)
            .map(|(m, _)| *m)
            .unwrap_or_else(|| panic!("{path} not in the .deb:\n{listing}"))
    };
    // Each tool with its man page and completions where Debian's man-db,
    // bash-completion, zsh and fish look.
    for t in TOOLS {
        assert_eq!(mode_of(&format!("usr/bin/{t}")), "-rwxr-xr-x");
        for doc in [
            format!("usr/share/man/man1/{t}.1.gz"),
            format!("usr/share/bash-completion/completions/{t}"),
            format!("usr/share/zsh/vendor-completions/_{t}"),
            format!("usr/share/fish/vendor_completions.d/{t}.fish"),
        ] {
            assert_eq!(mode_of(&doc), "-rw-r--r--", "{doc}");
        }
    }
    // The tarball's installer is not in the .deb: nor is its page.
    assert!(!listing.contains("etcd2-backup-install"), "{listing}");
    for unit in etcd2_backup::job::install::payload::UNIT_FILES {
        assert_eq!(mode_of(&format!("lib/systemd/system/{unit}")), "-rw-r--r--");
    }
    for job in [
        "etcd2-backup",
        "etcd2-restore",
        "etcd2-join",
        "etcd2-verify",
        "etcd2-watch",
    ] {
        mode_of(&format!(
            "lib/systemd/system/{job}.service.d/10-etcd-unit.conf"
        ));
    }
    // The settings file may come to hold secrets: private from the start.
    assert_eq!(mode_of("etc/etcd2-backup/etcd2-backup.env"), "-rw-------");
    assert!(
        !listing.contains("rclone.conf") && !listing.contains("/opt/"),
        "{listing}"
    );

    // What it holds, read: units for etcd.service and /usr/bin, settings
    // without any site's remote, nothing that looks like a credential.
    let t = tempfile::tempdir().expect("tempdir");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(deb()).arg(t.path()));
    let text = |rel: &str| fs::read_to_string(t.path().join(rel)).expect(rel);
    let backup = text("lib/systemd/system/etcd2-backup.service");
    for line in [
        "After=etcd.service",
        "EnvironmentFile=-/etc/etcd2-backup/etcd2-backup.env",
    ] {
        assert!(backup.lines().any(|l| l == line), "{line}:\n{backup}");
    }
    assert!(
        backup.lines().any(|l| l.starts_with("ExecStart=")
            && l.contains("/usr/bin/etcd2-snapshot --output - | /usr/bin/etcd2-push --local-copy")),
        "{backup}"
    );
    assert!(text("lib/systemd/system/etcd2-backup.timer")
        .lines()
        .any(|l| l == "WantedBy=etcd.service"));
    // Metrics to Debian's prometheus-node-exporter textfile dir, which the
    // sandboxed units may write.
    assert!(text("etc/etcd2-backup/etcd2-backup.env")
        .lines()
        .any(|l| l == "ETCD2_BACKUP_METRICS_DIR=/var/lib/prometheus/node-exporter"));
    for unit in ["etcd2-backup.service", "etcd2-verify.service"] {
        let body = text(&format!("lib/systemd/system/{unit}"));
        assert!(
            body.lines()
                .any(|l| l == "ReadWritePaths=-/var/lib/prometheus/node-exporter"),
            "{unit}:\n{body}"
        );
    }
    let settings = text("lib/systemd/system/etcd2-backup.service.d/10-etcd-unit.conf");
    assert!(settings.contains("Environment=\"ETCD_DATA_DIR=/var/lib/etcd/default\"\n"));
    assert!(settings.contains("EnvironmentFile=-/etc/default/etcd\n"));
    let mut files = vec![t.path().join("etc"), t.path().join("lib")];
    let mut texts = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(fs::read_dir(&p).expect("ls").map(|e| e.expect("e").path()));
            continue;
        }
        let body = fs::read_to_string(&p).expect("our units and settings are text");
        texts += 1;
        assert!(!body.contains("etcd2.service"), "{}", p.display());
        assert!(!body.contains("ExecStart=/opt/bin"), "{}", p.display());
        for line in body.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let lower = line.to_lowercase();
            assert!(
                ![
                    "secret",
                    "password",
                    "pass =",
                    "token",
                    "key_id",
                    "access_key"
                ]
                .iter()
                .any(|w| lower.contains(w)),
                "{}: {line}",
                p.display()
            );
            assert!(
                !line.starts_with("RCLONE_ENDPOINT="),
                "{}: {line}",
                p.display()
            );
        }
    }
    assert_eq!(texts, 8 + 6 + 1, "units, drop-ins, settings");

    // The stage refuses a settings drop-in with a site's remote in it.
    let conf = t.path().join("site.conf");
    fs::write(
        &conf,
        "[Service]\nEnvironment=\"RCLONE_ENDPOINT=s3prod:bucket/etcd\"\n",
    )
    .expect("w");
    let o = run(Command::new(bin("etcd2-backup-stage"))
        .args(["--etcd-unit", "etcd.service", "--conf"])
        .arg(&conf)
        .arg("--units")
        .arg(workspace().join("units"))
        .arg("--out")
        .arg(t.path().join("stage")));
    assert_fails_with(
        &o,
        "etcd2-backup-stage",
        "sets RCLONE_ENDPOINT: a distribution package carries no site's settings",
    );
    assert!(!t.path().join("stage").exists());
}

/// Debian's own package checker, as a Debian developer would run it on the
/// .deb: no error (warnings are listed in packaging/README.md, with why
/// each stays).
#[test]
fn lintian_finds_no_error_in_the_deb() {
    require("lintian", "lintian");
    let o = run(Command::new("lintian").arg(deb()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let errors = said.lines().filter(|l| l.starts_with("E: ")).count();
    // lintian exits 2 on an error tag (its --fail-on default), 1 when it
    // could not check at all.
    assert!(
        errors == 0 && o.status.success(),
        "lintian: {errors} errors, {}:\n{said}",
        o.status
    );
}

fn ok(ct: &Container, args: &[&str]) -> String {
    let o = ct.exec(args);
    assert!(
        o.status.success(),
        "{}: {} failed: {}{}",
        ct.name,
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn dpkg_i_in_a_container_and_the_backup_unit_backs_up_debians_etcd_service() {
    require("etcd", "etcd-server");
    require("rclone", "rclone");
    let debian_unit = Path::new("/lib/systemd/system/etcd.service");
    assert!(
        debian_unit.is_file(),
        "Debian's etcd.service: apt-get install etcd-server"
    );
    let deb = deb().to_path_buf();
    let t = tempfile::tempdir().expect("tempdir");
    let base = t.path();
    let remote = base.join("remote");
    for d in ["remote", "usr-upper", "var-upper", "deb"] {
        fs::create_dir_all(base.join(d)).expect("mkdir");
    }
    fs::copy(&deb, base.join("deb/etcd2-backup.deb")).expect("cp");

    // This host's Debian, with /usr and /var (dpkg's database) writable through
    // overlays whose changes land in our temp dir (the host's stay as they
    // are), its own network (Debian's etcd takes 2379/2380 in there), and
    // the etcd user and /etc/default/etcd of the host's etcd-server package.
    let overlay = |lower: &str, upper: &str| {
        format!("--overlay={lower}:{}:{lower}", base.join(upper).display())
    };
    let nspawn_args = [
        "--private-network".to_string(),
        overlay("/usr", "usr-upper"),
        // (/var whole: a volatile root has no /var/lib to mount on.)
        overlay("/var", "var-upper"),
    ];
    let binds = [
        (PathBuf::from("/etc/passwd"), "/etc/passwd", true),
        (PathBuf::from("/etc/group"), "/etc/group", true),
        (
            PathBuf::from("/etc/default/etcd"),
            "/etc/default/etcd",
            true,
        ),
        // etcd listens on "localhost" by default: resolve it as the host does.
        (PathBuf::from("/etc/hosts"), "/etc/hosts", true),
        (
            PathBuf::from("/etc/nsswitch.conf"),
            "/etc/nsswitch.conf",
            true,
        ),
        // man-db's, as on every Debian host with man installed.
        (
            PathBuf::from("/etc/manpath.config"),
            "/etc/manpath.config",
            true,
        ),
        (base.join("deb"), "/root/deb", true),
        (remote.clone(), REMOTE_IN, false),
    ];
    let mut ct = Container::boot_with(
        &format!("deb-{}", std::process::id()),
        &binds,
        &nspawn_args,
        // Only loopback in there: nothing to wait for to be "online".
        &["systemd.mask=systemd-networkd-wait-online.service"],
        base,
    );

    let out = ok(&ct, &["dpkg", "-i", "/root/deb/etcd2-backup.deb"]);
    assert!(out.contains("Setting up etcd2-backup"), "{out}");
    // man-db finds the pages, and so the units' Documentation=man: links
    // resolve (systemd-analyze verify checks them with man).
    assert_eq!(
        ok(&ct, &["man", "-w", "etcd2-push"]).trim(),
        "/usr/share/man/man1/etcd2-push.1.gz"
    );
    let units: Vec<String> = etcd2_backup::job::install::payload::UNIT_FILES
        .iter()
        .map(|u| format!("/lib/systemd/system/{u}"))
        .collect();
    let mut verify = vec!["systemd-analyze", "verify"];
    verify.extend(units.iter().map(String::as_str));
    ok(&ct, &verify);
    // The postinst made systemd read the units; they name Debian's etcd.
    let show = ok(
        &ct,
        &[
            "systemctl",
            "show",
            "-p",
            "After",
            "-p",
            "DropInPaths",
            "-p",
            "Environment",
            "-p",
            "EnvironmentFiles",
            "etcd2-backup.service",
        ],
    );
    for want in [
        "etcd.service",
        "/lib/systemd/system/etcd2-backup.service.d/10-etcd-unit.conf",
        "ETCD_DATA_DIR=/var/lib/etcd/default",
        "/etc/etcd2-backup/etcd2-backup.env",
        "/etc/default/etcd",
    ] {
        assert!(show.contains(want), "{want} not in:\n{show}");
    }
    assert_eq!(
        ok(
            &ct,
            &["stat", "-c", "%a", "/etc/etcd2-backup/etcd2-backup.env"]
        ),
        "600\n"
    );
    // Nothing enabled by the package.
    assert_eq!(
        String::from_utf8_lossy(
            &ct.exec(&["systemctl", "is-enabled", "etcd2-backup.timer"])
                .stdout
        )
        .trim(),
        "disabled"
    );

    // Debian's etcd, as its package runs it: etcd.service, user etcd.
    ok(
        &ct,
        &[
            "install",
            "-d",
            "-o",
            "etcd",
            "-g",
            "etcd",
            "-m",
            "0700",
            "/var/lib/etcd",
        ],
    );
    ct.systemctl(&["start", "etcd.service"]);
    ok(&ct, &["etcdctl", "put", "deb/key", "debian's etcd"]);
    assert!(
        ok(&ct, &["ls", "/var/lib/etcd/default"]).contains("member"),
        "etcd.service did not use /var/lib/etcd/default"
    );

    // Debian's prometheus-node-exporter, as its package ships the textfile
    // dir (root:root 0755; its postinst chowns only /var/lib/prometheus):
    // the backup's metrics go there, with no setting of the operator's.
    ok(
        &ct,
        &[
            "install",
            "-d",
            "-m",
            "0755",
            "/var/lib/prometheus/node-exporter",
        ],
    );

    // The operator's part, as the package's description says: the remote
    // in the settings file, its rclone config 0600 (and, for a local
    // remote, write access for the sandboxed backup).
    ok(
        &ct,
        &[
            "sh",
            "-c",
            &format!(
                "echo 'RCLONE_ENDPOINT=deb:{REMOTE_IN}' >> /etc/etcd2-backup/etcd2-backup.env \
                 && printf '[deb]\\ntype = local\\n' > /etc/rclone.conf && chmod 600 /etc/rclone.conf \
                 && mkdir -p /etc/systemd/system/etcd2-backup.service.d \
                 && printf '[Service]\\nReadWritePaths={REMOTE_IN}\\n' \
                    > /etc/systemd/system/etcd2-backup.service.d/50-local-remote.conf \
                 && systemctl daemon-reload"
            ),
        ],
    );
    ct.systemctl(&["start", "etcd2-backup.service"]);
    let mid = ct.read("/etc/machine-id").trim().to_owned();
    let latest: serde_json::Value = serde_json::from_slice(
        &fs::read(remote.join(&mid).join("LATEST.json")).expect("LATEST.json on the remote"),
    )
    .expect("json");
    let generation = latest["generation"].as_str().expect("generation");
    // A root shell finds it through the same settings file.
    let listing = ok(&ct, &["etcd2-fetch", "--list"]);
    assert!(listing.contains(generation), "{listing}");
    for step in ["snapshot", "push"] {
        let prom = ct.read(&format!(
            "/var/lib/prometheus/node-exporter/etcd2_backup_{step}.prom"
        ));
        assert!(
            prom.contains(&format!(
                "etcd2_backup_last_success_timestamp_seconds{{step=\"{step}\"}}"
            )),
            "{prom}"
        );
    }

    // Removed: the units go, the settings (a conffile) stay until purge,
    // and the removal names every copy of the credentials it leaves: the
    // settings, dpkg's copy of an earlier version of them, the rclone
    // config they name.
    ok(
        &ct,
        &[
            "cp",
            "-p",
            "/etc/etcd2-backup/etcd2-backup.env",
            "/etc/etcd2-backup/etcd2-backup.env.dpkg-old",
        ],
    );
    let o = ct.exec(&["dpkg", "-r", "etcd2-backup"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "dpkg -r: {said}");
    let line = said
        .lines()
        .find(|l| l.contains("left on this host"))
        .unwrap_or_else(|| panic!("dpkg -r names no credentials left:\n{said}"));
    for p in [
        "/etc/etcd2-backup/etcd2-backup.env",
        "/etc/etcd2-backup/etcd2-backup.env.dpkg-old",
        "/etc/rclone.conf",
    ] {
        assert!(
            line.split([' ', ',', ':', ';']).any(|w| w == p),
            "{p} not in: {line}"
        );
    }
    assert!(!ct
        .exec(&["systemctl", "cat", "etcd2-backup.service"])
        .status
        .success());
    ok(&ct, &["test", "-f", "/etc/etcd2-backup/etcd2-backup.env"]);
    ct.stop();
}

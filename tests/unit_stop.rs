//! `systemctl stop` of a backup mid-push, under real systemd 252 (nspawn),
//! with the package installed by its installer: the tools get to finish
//! their own cleanup (push aborts its S3 multipart upload, which holds the
//! etcd data sent so far) before the unit ends, on rclone 1.60 and 1.75; a
//! stop leaves the unit inactive, not failed; a backup that outlives
//! TimeoutStartSec= is stopped the same way and fails with "timeout".
//! The remote is S3 (moto on loopback); the push is slowed by rclone's own
//! --bwlimit, so that the stop lands while it uploads.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use harness::etcd::Cluster;
use harness::nspawn::Container;
use harness::package::{build, conf_with, extract};
use harness::rclone::Remote;
use harness::require;

/// Stands in for etcd's unit, which the installer looks for; never started
/// (the member runs on the host, on loopback, shared with the container).
const ETCD2_SERVICE: &str =
    "[Unit]\nDescription=etcd (fixture)\n\n[Service]\nExecStart=/bin/true\n";

/// rclone inside the container: Debian's (1.60) and sid's 1.75, bound in.
const RCLONE_175_IN: &str = "/opt/rclone-1.75";

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn show(ct: &Container, prop: &str) -> String {
    let o = ct.exec(&["systemctl", "show", "-P", prop, "etcd2-backup.service"]);
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn stopping_a_backup_mid_push_lets_the_tools_clean_up() {
    require("etcd", "etcd-server");
    require("rclone", "rclone");
    let rclone_175 = harness::rclone::rclone_175();
    let c = Cluster::start(1);
    // Hard to compress: about 3 MB of archive, a multipart upload once
    // rclone has read 100 KiB of the stream; at 100 KiB/s, half a minute.
    let mut rnd = std::fs::File::open("/dev/urandom").unwrap();
    for k in 0..50 {
        let mut b = vec![0u8; 32 << 10];
        rnd.read_exact(&mut b).unwrap();
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        c.put_v3(0, &format!("/big{k}"), &hex);
    }
    let t = tempfile::tempdir().expect("tempdir");
    let base = t.path();
    let remote = Remote::s3(base);
    let conf = conf_with(
        &remote.endpoint,
        c.endpoint(0),
        &[
            &format!("ETCDCTL_ENDPOINTS={}", c.endpoint(0)),
            "ETCD2_BACKUP_API=v3",
            "ETCD2_BACKUP_RCLONE_FLAGS=--bwlimit=100k",
        ],
    );
    let rclone_conf = std::fs::read_to_string(&remote.config).expect("rclone.conf");
    let pkg = extract(
        &build(&base.join("build"), &conf, &rclone_conf),
        &base.join("pkg"),
    );
    std::fs::write(base.join("etcd2.service"), ETCD2_SERVICE).expect("w");
    let binds = [
        (
            base.join("etcd2.service"),
            "/etc/systemd/system/etcd2.service",
            true,
        ),
        (pkg, "/root/etcd2-backup", true),
        (
            rclone_175.parent().expect("dir").to_path_buf(),
            RCLONE_175_IN,
            true,
        ),
    ];
    let mut ct = Container::boot(&format!("stop-{}", std::process::id()), &binds, base);
    let o = ct.exec(&["/root/etcd2-backup/etcd2-backup-install", "--any-os"]);
    assert!(o.status.success(), "install failed:\n{}", out(&o));
    // The timeout case: the same stop, by systemd, after 8 s.
    let o = ct.exec(&[
        "sh",
        "-c",
        "mkdir -p /run/systemd/system/etcd2-backup.service.d && \
         printf '[Service]\\nTimeoutStartSec=8s\\n' \
           > /run/systemd/system/etcd2-backup.service.d/90-timeout.conf.off",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let mid = ct.read("/etc/machine-id").trim().to_owned();
    let ours = format!("etcd/{mid}/");
    let uploads = |remote: &Remote| -> Vec<String> {
        remote
            .multipart_uploads()
            .into_iter()
            .filter(|k| k.starts_with(&ours))
            .collect()
    };

    let cases: [(&str, PathBuf, bool); 3] = [
        ("1.60", PathBuf::from("/usr/bin/rclone"), false),
        ("1.75", PathBuf::from(RCLONE_175_IN).join("rclone"), false),
        ("1.60", PathBuf::from("/usr/bin/rclone"), true),
    ];
    let (mut failures, mut contexts) = (Vec::new(), Vec::new());
    for (tag, rclone, timeout) in cases {
        let how = if timeout { "timed out" } else { "stopped" };
        let o = ct.exec(&[
            "sh",
            "-c",
            &format!(
                "echo ETCD2_BACKUP_RCLONE={} >> /etc/etcd2-backup/etcd2-backup.env",
                rclone.display()
            ),
        ]);
        assert!(o.status.success(), "{}", out(&o));
        if timeout {
            let o = ct.exec(&[
                "mv",
                "/run/systemd/system/etcd2-backup.service.d/90-timeout.conf.off",
                "/run/systemd/system/etcd2-backup.service.d/90-timeout.conf",
            ]);
            assert!(o.status.success(), "{}", out(&o));
            ct.systemctl(&["daemon-reload"]);
        }
        ct.systemctl(&["start", "--no-block", "etcd2-backup.service"]);
        ct.wait_until(
            &format!("rclone {tag}: a multipart upload under {ours}"),
            Duration::from_secs(60),
            &["etcd2-backup.service"],
            || (!uploads(&remote).is_empty()).then_some(()),
        );
        let invocation = show(&ct, "InvocationID");
        if timeout {
            ct.wait_until(
                &format!("rclone {tag}: the backup {how}"),
                Duration::from_secs(120),
                &["etcd2-backup.service"],
                || {
                    (!matches!(
                        show(&ct, "ActiveState").as_str(),
                        "activating" | "deactivating"
                    ))
                    .then_some(())
                },
            );
        } else {
            ct.systemctl(&["stop", "etcd2-backup.service"]);
        }
        // journald files a stopped unit's last lines a moment after the
        // unit ends: wait (bounded) for push's last line before judging.
        let read_journal = || {
            let o = ct.exec(&[
                "journalctl",
                "--no-pager",
                "-o",
                "cat",
                &format!("_SYSTEMD_INVOCATION_ID={invocation}"),
            ]);
            out(&o)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut journal = read_journal();
        while !journal.contains("etcd2-push: error:") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            journal = read_journal();
        }
        let context = format!(
            "rclone {tag}, {how}; journal of this run:\n{journal}\n{}",
            ct.journal(&["etcd2-backup.service"])
        );
        let mut wrong = Vec::new();
        // Push ran its cleanup to the end: its children stopped, its
        // upload aborted (by rclone, or by push after it), its one line
        // said so; nothing of it was cut short.
        if !journal.contains("etcd2-push: error: stopped by SIGTERM; stopped 1 child process(es)") {
            wrong.push("no 'etcd2-push: error: stopped by SIGTERM' line".to_string());
        }
        if journal.contains("could not abort") {
            wrong.push("push's abort of its upload was cut short".to_string());
        }
        let left = uploads(&remote);
        if !left.is_empty() {
            wrong.push(format!(
                "a multipart upload of etcd data was left: {left:?}"
            ));
        }
        // Nothing was published and nothing of ours is left: no object
        // under the machine's folder, no local copy, no scratch.
        let objects = remote.list(&format!("{mid}/generations"));
        if !objects.is_empty() || remote.read(&format!("{mid}/LATEST.json")).is_some() {
            wrong.push(format!("objects left on the remote: {objects:?}"));
        }
        let o = ct.exec(&["find", "/var/lib/etcd2-backup", "-mindepth", "1"]);
        let local = String::from_utf8_lossy(&o.stdout).into_owned();
        if local.contains(".part")
            || local.contains("etcd2-backup.archive")
            || local.contains("etcd2-snapshot.")
        {
            wrong.push(format!("debris in the state dir: {local}"));
        }
        // The unit's end, as units/README.md says: a stop is no failure; a
        // timeout is.
        let end = (show(&ct, "ActiveState"), show(&ct, "Result"));
        let want = if timeout {
            ("failed", "timeout")
        } else {
            ("inactive", "success")
        };
        if (end.0.as_str(), end.1.as_str()) != want {
            wrong.push(format!("the unit ended {end:?}, not {want:?}"));
        }
        if !wrong.is_empty() {
            failures.push(format!("rclone {tag}, {how}: {}", wrong.join("; ")));
            contexts.push(context);
        }
        // (Only a failed unit has anything to reset; the result is read.)
        let _ = ct.exec(&["systemctl", "reset-failed", "etcd2-backup.service"]);
    }
    ct.stop();
    assert!(
        failures.is_empty(),
        "{}\n\n{}",
        failures.join("\n"),
        contexts.join("\n\n")
    );
}

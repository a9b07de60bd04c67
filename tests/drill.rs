//! The recovery drill under real systemd: three systemd-nspawn containers,
//! each with an etcd2.service fixture and our package installed by the
//! installer; the timer takes real backups to a shared rclone remote; then
//! the seed README's "Restore the cluster" procedure, typed as an operator
//! would with systemctl, with no sleeps; every key checked on every node.
//! Then the whole cluster restored at once (etcd2-restore-member@), checked
//! by etcd2-health.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::nspawn::Container;
use harness::package::{build, conf_with, extract};
use harness::{free_port, require, run, run_ok};

const KEYS: usize = 100;
const REMOTE_IN: &str = "/srv/etcd2-backups";

struct Node {
    name: String,
    client: String,
    peer: String,
    /// Host side of the container's /var/lib/etcd2.
    data: PathBuf,
}

/// The stand-in for CoreOS's etcd2.service: Debian's etcd, configured
/// through the environment of its settings drop-in, like the original, except
/// ETCD_DATA_DIR, which CoreOS sets in etcd2.service itself: the installer
/// links only the drop-in, so our units do not see it and must find the data
/// dir by the documented default.
const ETCD2_SERVICE: &str = "\
[Unit]
Description=etcd (drill fixture standing in for etcd2.service)
After=network.target

[Service]
Type=notify
Environment=ETCD_DATA_DIR=/var/lib/etcd2
ExecStart=/usr/bin/etcd
TimeoutStartSec=90
";
// No [Install]: a container with an empty /etc applies the presets at first
// boot, which would enable it and make the boot wait for quorum.

/// Backups every few seconds instead of 30 s, so the drill is quick. (One
/// empty assignment resets the unit's whole list of timers.)
const TIMER_DROPIN: &str = "\
[Timer]
OnActiveSec=
OnActiveSec=1s
OnUnitActiveSec=3s
RandomizedDelaySec=0
";

fn settings(n: &Node, all: &[Node]) -> String {
    let cluster: Vec<String> = all
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer))
        .collect();
    let env = [
        ("ETCD_NAME", n.name.clone()),
        ("ETCD_LISTEN_CLIENT_URLS", n.client.clone()),
        ("ETCD_ADVERTISE_CLIENT_URLS", n.client.clone()),
        ("ETCD_LISTEN_PEER_URLS", n.peer.clone()),
        ("ETCD_INITIAL_ADVERTISE_PEER_URLS", n.peer.clone()),
        ("ETCD_INITIAL_CLUSTER", cluster.join(",")),
        ("ETCD_INITIAL_CLUSTER_STATE", "new".into()),
        ("ETCD_INITIAL_CLUSTER_TOKEN", "drill".into()),
        // As etcd's own drop-ins often do: our units see it through the
        // linked drop-in, and our etcdctl calls must not care.
        ("ETCDCTL_API", "3".into()),
    ];
    let mut s = String::from("[Service]\n");
    for (k, v) in env {
        s.push_str(&format!("Environment=\"{k}={v}\"\n"));
    }
    s
}

fn etcdctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new("etcdctl");
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args);
    run(&mut c)
}

/// Every key, read from this member alone (serializable): what it holds.
fn keys_at(endpoint: &str) -> Option<Vec<(String, String)>> {
    let o = etcdctl(endpoint, &["--consistency=s", "get", "--prefix", "drill/"]);
    if !o.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    Some(
        lines
            .chunks(2)
            .map(|kv| (kv[0].to_owned(), kv.get(1).unwrap_or(&"").to_string()))
            .collect(),
    )
}

fn expected() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = (0..KEYS)
        .map(|i| {
            (
                format!("drill/key-{i:03}"),
                format!("value {i} of the drill"),
            )
        })
        .collect();
    v.sort();
    v
}

/// Keys written after e1's last full backup, captured by etcd2-watch.
const CAPTURED: usize = 5;

fn captured() -> Vec<(String, String)> {
    (0..CAPTURED)
        .map(|i| (format!("drill/later-{i}"), format!("captured {i}")))
        .collect()
}

/// The newest revision a change segment of `mid` on the shared remote
/// reaches (from the segments' names).
fn captured_to(remote: &Path, mid: &str) -> u64 {
    let Ok(chains) = fs::read_dir(remote.join(mid).join("changes")) else {
        return 0;
    };
    chains
        .flatten()
        .filter_map(|c| fs::read_dir(c.path()).ok())
        .flatten()
        .flatten()
        .filter_map(|f| {
            let name = f.file_name().to_string_lossy().into_owned();
            etcd2_backup::store::changes::SegmentName::parse(&name).map(|n| n.last)
        })
        .max()
        .unwrap_or(0)
}

/// Complete generations (sidecars) of one machine on the shared remote.
fn generations(remote: &Path, mid: &str) -> usize {
    fs::read_dir(remote.join(mid).join("generations"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

/// A line of a command's output with what differs from run to run made
/// alike: hex ids and hashes (8+ digits) H, numbers N, month and day names,
/// the journal's host field, systemd's "; 3s ago" and state bullets, runs
/// of blanks.
fn alike(line: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 8 && run.bytes().any(|b| b.is_ascii_digit()) {
            out.push('H');
        } else {
            let mut digits = false;
            for c in run.chars() {
                if c.is_ascii_digit() {
                    if !digits {
                        out.push('N');
                    }
                    digits = true;
                } else {
                    out.push(c);
                    digits = false;
                }
            }
        }
        run.clear();
    };
    for c in line.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    // systemctl's state bullets (● active, ○ inactive): the state itself
    // is in the Active: line.
    let out = out.replace(['●', '○'], "*");
    let mut words: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    for w in &mut words {
        if MONTHS.contains(&w.as_str()) {
            *w = "MON".into();
        } else if DAYS.contains(&w.as_str()) {
            *w = "DAY".into();
        }
    }
    // A journal line: MON N N:N:N HOST prog[N]: ...
    if words.len() > 4 && words[0] == "MON" && words[2] == "N:N:N" {
        words[3] = "HOST".into();
    }
    let mut line = words.join(" ");
    if let (Some(a), Some(b)) = (line.find("; "), line.find(" ago")) {
        if a < b {
            line.replace_range(a..b + 4, "; AGO");
        }
    }
    line
}

/// Every line of the doc's console block for `# cmd` is, made [`alike`],
/// a line of `real`, what the command printed here.
fn assert_doc_shows(doc: &str, cmd: &str, real: &str) {
    let block = doc
        .split("```console\n")
        .skip(1)
        .find_map(|b| b.strip_prefix(&format!("# {cmd}\n")))
        .unwrap_or_else(|| panic!("docs/first-backup.md shows no `# {cmd}`"));
    let block = block.split("```").next().unwrap();
    assert!(
        block.lines().any(|l| !l.trim().is_empty()),
        "docs/first-backup.md shows nothing for `{cmd}`; it prints here:\n{real}"
    );
    let have: std::collections::BTreeSet<String> = real.lines().map(alike).collect();
    let stale: Vec<&str> = block
        .lines()
        .filter(|l| !l.trim().is_empty() && !have.contains(&alike(l)))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/first-backup.md shows for `{cmd}` lines it no longer prints:\n{}\n--- what it prints here:\n{real}",
        stale.join("\n")
    );
}

/// What the mischievous friend does: overwrite every WAL and the db.
fn corrupt(data: &Path) {
    let member = data.join("member");
    let mut hit = 0;
    for sub in ["wal", "snap"] {
        for e in fs::read_dir(member.join(sub))
            .expect("member dir")
            .flatten()
        {
            let p = e.path();
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".wal") || name == "db" {
                let len = fs::metadata(&p).expect("stat").len() as usize;
                fs::write(&p, vec![0xA5u8; len.max(1)]).expect("overwrite");
                hit += 1;
            }
        }
    }
    assert!(hit >= 2, "nothing to corrupt in {}", member.display());
}

#[test]
fn restore_the_cluster_procedure_under_systemd() {
    require("etcd", "etcd-server");
    require("etcdctl", "etcd-client");
    require("rclone", "rclone");
    let t = tempfile::tempdir().expect("tempdir");
    let base = t.path();

    let nodes: Vec<Node> = (1..=3)
        .map(|i| Node {
            name: format!("e{i}"),
            client: format!("http://127.0.0.1:{}", free_port()),
            peer: format!("http://127.0.0.1:{}", free_port()),
            data: base.join(format!("e{i}/data")),
        })
        .collect();

    // The package, configured as the seed README says: the founder's client
    // URL and the remote (here a local rclone remote named in rclone.conf).
    let conf = conf_with(&format!("drill:{REMOTE_IN}"), &nodes[0].client, &[]);
    let tgz = build(&base.join("build"), &conf, "[drill]\ntype = local\n");
    let pkg = extract(&tgz, &base.join("pkg"));
    let remote = base.join("remote");
    fs::create_dir_all(&remote).expect("mkdir");
    fs::create_dir_all(base.join("timer.d")).expect("mkdir");
    fs::write(base.join("timer.d/10-drill.conf"), TIMER_DROPIN).expect("w");
    fs::write(base.join("etcd2.service"), ETCD2_SERVICE).expect("w");

    let mut cts: Vec<Container> = Vec::new();
    for n in &nodes {
        let d = base.join(&n.name);
        fs::create_dir_all(&n.data).expect("mkdir");
        fs::create_dir_all(d.join("etcd2.service.d")).expect("mkdir");
        fs::write(d.join("etcd2.service.d/20-node.conf"), settings(n, &nodes)).expect("w");
        let binds = [
            (
                base.join("etcd2.service"),
                "/etc/systemd/system/etcd2.service",
                true,
            ),
            (
                d.join("etcd2.service.d"),
                "/etc/systemd/system/etcd2.service.d",
                true,
            ),
            (
                base.join("timer.d"),
                "/etc/systemd/system/etcd2-backup.timer.d",
                true,
            ),
            (pkg.clone(), "/root/etcd2-backup", true),
            (n.data.clone(), "/var/lib/etcd2", false),
            (remote.clone(), REMOTE_IN, false),
        ];
        cts.push(Container::boot(
            &format!("drill-{}-{}", n.name, std::process::id()),
            &binds,
            base,
        ));
    }

    // Install on every node, as root, with the installer from the tarball.
    for ct in &cts {
        let o = ct.exec(&["/root/etcd2-backup/etcd2-backup-install", "--any-os"]);
        let log = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{}: install failed:\n{log}", ct.name);
        assert!(
            log.contains("linked /etc/systemd/system/etcd2-restore.service.d/20-node.conf"),
            "{log}"
        );
        assert!(log.contains("systemctl daemon-reload: done"), "{log}");
        for private in ["/etc/rclone.conf", "/etc/etcd2-backup/etcd2-backup.env"] {
            assert_eq!(
                ct.exec(&["stat", "-c", "%a", private]).stdout,
                b"600\n",
                "{private}"
            );
        }
        // The remote here is a local path: the sandboxed units may write
        // there only when told, as an operator with a local or NFS remote
        // does (units/README.md): one drop-in for every etcd2-*.service
        // (the backup, the watcher, verify), not etcd2.service.
        let o = ct.exec(&[
            "sh",
            "-c",
            &format!(
                "mkdir -p /etc/systemd/system/etcd2-.service.d \
                 && printf '[Service]\\nReadWritePaths={REMOTE_IN}\\n' \
                 > /etc/systemd/system/etcd2-.service.d/50-local-remote.conf \
                 && systemctl daemon-reload"
            ),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // The units as installed pass systemd's own check.
        ct.verify_units(&[
            "etcd2-backup.service",
            "etcd2-backup.timer",
            "etcd2-restore.service",
            "etcd2-restore-member@e1.service",
            "etcd2-join.service",
        ]);
    }

    // The cluster as it ran before the disaster.
    for ct in &cts {
        ct.systemctl(&["start", "--no-block", "etcd2.service"]);
    }
    for (n, ct) in nodes.iter().zip(&cts) {
        ct.wait_until(
            "etcd healthy",
            Duration::from_secs(60),
            &["etcd2.service"],
            || {
                etcdctl(&n.client, &["endpoint", "health"])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }
    for (k, v) in expected() {
        run_ok(
            std::process::Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", nodes[1].client))
                .args(["put", &k, &v]),
        );
    }

    // Each node takes backups, as the seed README's installation says.
    for ct in &cts {
        ct.systemctl(&["enable", "--now", "etcd2-backup.timer"]);
    }
    let mids: Vec<String> = cts
        .iter()
        .map(|c| c.read("/etc/machine-id").trim().to_owned())
        .collect();
    for (ct, mid) in cts.iter().zip(&mids) {
        ct.wait_until(
            "two backups taken by the timer",
            Duration::from_secs(60),
            &["etcd2-backup.timer", "etcd2-backup.service"],
            || (generations(&remote, mid) >= 2).then_some(()),
        );
    }
    // An operator's root shell (no variables of ours set): the settings
    // file the units use tells etcd2-fetch where the backups are.
    for (ct, mid) in cts.iter().zip(&mids) {
        // (Read before listing: the timer keeps publishing newer ones.)
        let latest: serde_json::Value = serde_json::from_slice(
            &fs::read(remote.join(mid).join("LATEST.json")).expect("LATEST.json"),
        )
        .expect("json");
        let generation = latest["generation"].as_str().expect("generation");
        let o = ct.exec(&["/opt/bin/etcd2-fetch", "--list"]);
        let listing = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{}: etcd2-fetch --list in a root shell: {}",
            ct.name,
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(listing.contains(generation), "{}: {listing}", ct.name);
    }
    // The newest backup is also on local disk (the original's promise), as
    // push's tee of what it published: it is one of the published archives.
    for (ct, mid) in cts.iter().zip(&mids) {
        let o = ct.exec(&["sha256sum", "/var/lib/etcd2-backup/etcd2-backup.archive"]);
        assert!(o.status.success(), "{}: no local copy", ct.name);
        let local = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let published: Vec<String> = fs::read_dir(remote.join(mid).join("generations"))
            .expect("generations")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| {
                let v: serde_json::Value =
                    serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
                v["sha256"].as_str().map(str::to_owned)
            })
            .collect();
        assert!(
            published.contains(&local),
            "{}: the local copy {local} is none of the published {published:?}",
            ct.name
        );
    }
    let journal = cts[0].journal(&["etcd2-backup.service"]);
    assert!(
        journal.contains("etcd2-push") || journal.contains("published"),
        "{journal}"
    );
    // Each tool of the pipeline is named in the journal by its own name,
    // not bash's (the unit's main process): `journalctl -t etcd2-push`
    // finds push's lines, `-t etcd2-snapshot` the snapshot's.
    for (tool, says) in [("etcd2-push", "pushed "), ("etcd2-snapshot", "wrote ")] {
        let o = cts[0].exec(&["journalctl", "--no-pager", "-o", "cat", "-t", tool]);
        let lines = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            lines.contains(says),
            "journalctl -t {tool} shows no line saying {says:?}:\n{lines}\nthe unit's journal:\n{journal}"
        );
    }
    let bash = cts[0].exec(&["journalctl", "--no-pager", "-o", "cat", "-t", "bash"]);
    assert!(
        bash.stdout.is_empty(),
        "lines under bash's name:\n{}",
        String::from_utf8_lossy(&bash.stdout)
    );
    // Every tool waits for what it started: systemd finds nothing of ours
    // left to kill when a backup ends.
    assert!(
        !journal.contains("Killing process"),
        "a backup left processes for systemd to kill:\n{journal}"
    );
    // docs/first-backup.md shows what these print on a node like this one:
    // every line it shows must still be one that systemd and the tools
    // print (times, ids, sizes and pids aside).
    // Taken between two backups, as the doc shows them: the timer stopped
    // (stopping etcd below stops it anyway) and the last run finished.
    cts[0].systemctl(&["stop", "etcd2-backup.timer"]);
    cts[0].wait_until(
        "the last backup to finish",
        Duration::from_secs(60),
        &["etcd2-backup.service"],
        || {
            let o = cts[0].exec(&["systemctl", "is-active", "etcd2-backup.service"]);
            (String::from_utf8_lossy(&o.stdout).trim() == "inactive").then_some(())
        },
    );
    let doc = fs::read_to_string(harness::workspace().join("docs/first-backup.md")).unwrap();
    for cmd in [
        "systemctl status etcd2-backup.service",
        "journalctl -u etcd2-backup.service",
        "systemctl show -p Environment etcd2-backup.service",
    ] {
        let real =
            String::from_utf8_lossy(&cts[0].exec(&cmd.split(' ').collect::<Vec<_>>()).stdout)
                .into_owned();
        assert_doc_shows(&doc, cmd, &real);
    }
    // Quiet in the journal: our own lines at info and above (not systemd's
    // Starting/Finished) are at most three per backup cycle.
    let ours = cts[0].exec(&[
        "journalctl",
        "--no-pager",
        "-o",
        "cat",
        "-p",
        "info",
        "_SYSTEMD_UNIT=etcd2-backup.service",
    ]);
    let ours = String::from_utf8_lossy(&ours.stdout).into_owned();
    // Whole cycles only: up to the last 'pushed' line (one may be running).
    let lines: Vec<&str> = ours.lines().collect();
    let end = lines
        .iter()
        .rposition(|l| l.contains("pushed "))
        .unwrap_or_else(|| panic!("no 'pushed' line in the journal:\n{ours}"));
    let cycles = lines[..=end]
        .iter()
        .filter(|l| l.contains("pushed "))
        .count();
    assert!(
        end < 3 * cycles,
        "more than three lines per backup cycle ({cycles} cycles):\n{ours}"
    );

    // ---- Change capture on e1 (docs/change-capture.md): its timer is
    // stopped, so what is written now reaches the remote only through
    // etcd2-watch.service, and the restore below replays it. ----
    cts[0].systemctl(&["start", "etcd2-watch.service"]);
    for (k, v) in captured() {
        run_ok(
            std::process::Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", nodes[0].client))
                .args(["put", &k, &v]),
        );
    }
    let status = etcdctl(&nodes[0].client, &["endpoint", "status", "-w", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let rev = status[0]["Status"]["header"]["revision"]
        .as_u64()
        .expect("a revision");
    cts[0].wait_until(
        "the captured changes on the remote",
        Duration::from_secs(60),
        &["etcd2-watch.service"],
        || (captured_to(&remote, &mids[0]) >= rev).then_some(()),
    );
    // `systemctl status` says how far capture is (sd_notify STATUS=).
    let text = cts[0].exec(&[
        "systemctl",
        "show",
        "-p",
        "StatusText",
        "--value",
        "etcd2-watch.service",
    ]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("captured up to revision"), "{text}");

    // ---- The disaster: every data dir corrupted. ----
    // Stopping etcd stops the timer too (PartOf=): no backups of a stopped
    // member are tried while it is down.
    for ct in &cts {
        ct.systemctl(&["stop", "etcd2.service"]);
        let o = ct.exec(&["systemctl", "is-active", "etcd2-backup.timer"]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "inactive",
            "{}: the timer outlived etcd2.service",
            ct.name
        );
        ct.systemctl(&["stop", "etcd2-backup.service"]);
    }
    for n in &nodes {
        corrupt(&n.data);
    }

    // A failing step shows its journal, and costs no data: restoring e2
    // from a machine-id that has no backups fails in the fetch, before
    // anything of e2's is touched.
    let before: Vec<String> = harness::names(&nodes[1].data.join("member/wal"));
    cts[1].systemctl(&[
        "set-environment",
        "ETCD2_BACKUP_MACHINE_ID=00000000000000000000000000000000",
    ]);
    let err = cts[1]
        .try_systemctl(&["start", "etcd2-restore.service"])
        .expect_err("restore from nothing");
    assert!(err.contains("journal of etcd2-restore.service"), "{err}");
    assert!(err.contains("etcd2-fetch: error:"), "{err}");
    assert!(err.contains("00000000000000000000000000000000"), "{err}");
    // The reason is in the journal at its priority: `journalctl -p warning`
    // shows our error line, not only systemd's "Failed".
    let warnings = cts[1].exec(&[
        "journalctl",
        "--no-pager",
        "-o",
        "cat",
        "-p",
        "warning",
        "-u",
        "etcd2-restore.service",
    ]);
    let warnings = String::from_utf8_lossy(&warnings.stdout);
    assert!(
        warnings
            .lines()
            .any(|l| l.starts_with("etcd2-fetch: error:")),
        "journalctl -p warning lacks our error line:\n{warnings}"
    );
    cts[1].systemctl(&["unset-environment", "ETCD2_BACKUP_MACHINE_ID"]);
    assert_eq!(harness::names(&nodes[1].data.join("member/wal")), before);
    assert!(!harness::names(&nodes[1].data)
        .iter()
        .any(|n| n.starts_with("member.wiped")));

    // ---- The seed README's procedure, as written but without `sleep 10`. ----
    // for node in e{1..3}: systemctl stop etcd2.service etcd2-backup.{timer,service}
    for ct in &cts {
        ct.systemctl(&[
            "stop",
            "etcd2.service",
            "etcd2-backup.timer",
            "etcd2-backup.service",
        ]);
    }
    // e1: systemctl start etcd2-restore.service && systemctl start etcd2.service
    cts[0].systemctl(&["start", "etcd2-restore.service"]);
    cts[0].systemctl(&["start", "etcd2.service"]);
    // e2, e3: systemctl start etcd2-join.service && systemctl start etcd2.service
    for ct in &cts[1..] {
        ct.systemctl(&["start", "etcd2-join.service"]);
        ct.systemctl(&["start", "etcd2.service"]);
    }

    // Every key on every node, each read from that member alone: the full
    // backup's and the changes captured after it.
    let mut want = expected();
    want.extend(captured());
    want.sort();
    for (n, ct) in nodes.iter().zip(&cts) {
        let got = ct.wait_until(
            "every key",
            Duration::from_secs(60),
            &[
                "etcd2.service",
                "etcd2-join.service",
                "etcd2-restore.service",
            ],
            || keys_at(&n.client).filter(|k| *k == want),
        );
        assert_eq!(got.len(), KEYS + CAPTURED);
    }
    let replayed = cts[0].journal(&["etcd2-restore.service"]);
    assert!(replayed.contains("replayed "), "{replayed}");
    let members = etcdctl(&nodes[0].client, &["member", "list"]);
    let list = String::from_utf8_lossy(&members.stdout).into_owned();
    assert_eq!(
        list.lines().filter(|l| l.contains(", started, ")).count(),
        3,
        "{list}"
    );
    // The last column is isLearner: the drop-ins' promotion step ran.
    assert!(
        list.lines().all(|l| l.trim_end().ends_with(", false")),
        "a joined learner was never promoted:\n{list}"
    );
    for n in &nodes {
        assert!(list.contains(&n.peer), "{} missing from\n{list}", n.name);
        // The corrupted data was moved aside, not deleted.
        assert!(
            harness::names(&n.data)
                .iter()
                .any(|x| x.starts_with("member.wiped-")),
            "{}",
            n.name
        );
    }

    // Backups resume by themselves: etcd2.service pulled the timer back in,
    // and the restored founder publishes a new generation.
    let latest = |mid: &str| fs::read(remote.join(mid).join("LATEST.json")).ok();
    let before = latest(&mids[0]);
    let o = cts[0].exec(&["systemctl", "is-active", "etcd2-backup.timer"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "active");
    cts[0].wait_until(
        "a backup after the restore",
        Duration::from_secs(60),
        &["etcd2-backup.timer", "etcd2-backup.service"],
        || (latest(&mids[0]) != before).then_some(()),
    );

    // ---- The other procedure (docs/whole-cluster-restore.md): every node
    // restores e1's backup itself, with the whole member list, and all
    // start together; nothing streamed between them. ----
    for ct in &cts {
        ct.systemctl(&[
            "stop",
            "etcd2.service",
            "etcd2-backup.timer",
            "etcd2-backup.service",
            "etcd2-watch.service",
        ]);
    }
    for n in &nodes {
        corrupt(&n.data);
    }
    let unit = format!("etcd2-restore-member@{}.service", mids[0]);
    for ct in &cts {
        ct.systemctl(&["start", &unit]);
    }
    // etcd is ready only once a majority runs: start all without waiting.
    for ct in &cts {
        ct.systemctl(&["start", "--no-block", "etcd2.service"]);
    }
    for (n, ct) in nodes.iter().zip(&cts) {
        ct.wait_until(
            "every key after the all-at-once restore",
            Duration::from_secs(60),
            &["etcd2.service", &unit],
            || keys_at(&n.client).filter(|k| *k == want),
        );
    }
    let endpoints: Vec<&str> = nodes.iter().map(|n| n.client.as_str()).collect();
    let health = cts[0].exec(&[
        "/opt/bin/etcd2-health",
        "--members",
        "3",
        "--wait",
        "60s",
        "--endpoints",
        &endpoints.join(","),
    ]);
    let said = String::from_utf8_lossy(&health.stderr).into_owned();
    assert!(health.status.success(), "etcd2-health: {said}");
    assert!(said.contains("the members hold the same keys"), "{said}");
    // Each node recorded the same backup, revision and token.
    let records: Vec<serde_json::Value> = nodes
        .iter()
        .map(|n| {
            let p = n.data.join("member/etcd2-restored.json");
            serde_json::from_slice(&fs::read(&p).expect("the restore's record")).expect("json")
        })
        .collect();
    for (n, r) in nodes.iter().zip(&records) {
        assert_eq!(r["mode"], "whole-cluster", "{}: {r}", n.name);
        for f in [
            "backup_db_sha256",
            "revision",
            "initial_cluster_token",
            "kv_hash",
        ] {
            assert_eq!(r[f], records[0][f], "{}'s {f}", n.name);
        }
    }
    let journal = cts[1].journal(&[&unit]);
    assert!(
        journal.contains("made e2 a member of the whole cluster e1, e2, e3"),
        "{journal}"
    );
    for ct in &mut cts {
        ct.stop();
    }
}

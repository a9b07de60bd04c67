//! Operators see that backups stopped: `etcd2-fetch --check --max-age` for a
//! monitoring host, with one line and a distinct exit code for each verdict.

use harness::etcd::Cluster;
use harness::rclone::Remote;
use harness::{assert_fails_with_code, free_port, run, run_ok, tool, Env};

const MID: &str = "f0000000000000000000000000000001";

#[test]
fn check_says_fresh_stale_no_backup_or_unreachable_with_distinct_codes() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);

    // No backup yet: 4.
    let out = run(env.fetch(&remote, MID).args(["--check", "--max-age", "5m"]));
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backup"));
    // Nagios: CRITICAL, said on stdout (Nagios shows only stdout), naming
    // the machine-id.
    let line = nagios(&mut env.fetch(&remote, MID), &["--max-age", "5m"], 2);
    assert!(
        line.starts_with("ETCD2-BACKUP CRITICAL - no backup"),
        "{line}"
    );
    assert!(line.contains(MID), "{line}");
    // --list says "nothing there" with the same 4, table or JSON.
    let out = run(env.fetch(&remote, MID).arg("--list"));
    assert_fails_with_code(&out, "etcd2-fetch", 4, "no backup");
    let out = run(env.fetch(&remote, MID).args(["--list", "--json"]));
    assert_fails_with_code(&out, "etcd2-fetch", 4, "no backup");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");

    run_ok(env.push(&remote, MID).arg(&archive));
    let ptr = remote.pointer(MID).unwrap().json;
    let (host, member) = (ptr["host"].as_str().unwrap(), "member e1");
    assert!(!host.is_empty());
    // Fresh: 0, one line on stdout naming the host, the member, the
    // generation and its age.
    let out = run_ok(env.fetch(&remote, MID).args(["--check", "--max-age", "5m"]));
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.starts_with("fresh:"), "{line}");
    assert!(line.contains(&format!("{member} on host {host}")), "{line}");
    let line = nagios(&mut env.fetch(&remote, MID), &["--max-age", "5m"], 0);
    assert!(line.starts_with("ETCD2-BACKUP OK - "), "{line}");
    assert!(line.contains(&format!("{member} on host {host}")), "{line}");
    assert!(line.contains("| age="), "perfdata: {line}");

    // Stale: 3 (the backup was taken more than 1 s ago by now).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = run(env.fetch(&remote, MID).args(["--check", "--max-age", "1s"]));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stale") && err.contains("--max-age 1s"),
        "{err}"
    );
    assert!(err.contains(&format!("{member} on host {host}")), "{err}");
    // Nagios: older than --warn-age is WARNING, than --max-age CRITICAL.
    let line = nagios(
        &mut env.fetch(&remote, MID),
        &["--warn-age", "1s", "--max-age", "5m"],
        1,
    );
    assert!(line.starts_with("ETCD2-BACKUP WARNING - "), "{line}");
    assert!(line.contains(&format!("{member} on host {host}")), "{line}");
    let line = nagios(&mut env.fetch(&remote, MID), &["--max-age", "1s"], 2);
    assert!(line.starts_with("ETCD2-BACKUP CRITICAL - "), "{line}");
    assert!(line.contains(&format!("{member} on host {host}")), "{line}");

    // Unreachable remote: 5, rclone's cause in the line.
    let out =
        run(refused(&mut env.fetch(&remote, MID), c.path()).args(["--check", "--max-age", "5m"]));
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection refused"));
    // Nagios: UNKNOWN (nothing could be checked), the cause on stdout.
    let line = nagios(
        refused(&mut env.fetch(&remote, MID), c.path()),
        &["--max-age", "5m"],
        3,
    );
    assert!(line.starts_with("ETCD2-BACKUP UNKNOWN - "), "{line}");
    assert!(line.contains("connection refused"), "{line}");

    // The codes are documented where operators look.
    let help = run_ok(tool("etcd2-fetch").arg("--help"));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Exit status") && help.contains("3") && help.contains("stale"),
        "{help}"
    );
}

/// `etcd2-fetch --check --nagios` with `args`: exit `code` and exactly one
/// line on stdout (what Nagios shows), returned.
fn nagios(cmd: &mut std::process::Command, args: &[&str], code: i32) -> String {
    let out = run(cmd.args(["--check", "--nagios"]).args(args));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(code), "{text}");
    assert_eq!(text.lines().count(), 1, "one line on stdout: {text:?}");
    text
}

/// `cmd` pointed at a WebDAV remote on a loopback port nobody listens on
/// (its config written in `dir`): every call is refused.
fn refused<'a>(
    cmd: &'a mut std::process::Command,
    dir: &std::path::Path,
) -> &'a mut std::process::Command {
    let conf = dir.join("refused.conf");
    std::fs::write(
        &conf,
        format!(
            "[backup]\ntype = webdav\nurl = http://127.0.0.1:{}\nvendor = other\n",
            free_port()
        ),
    )
    .unwrap();
    cmd.env("RCLONE_CONFIG_PATH", &conf)
        .env("RCLONE_ENDPOINT", "backup:etcd")
}

/// `etcd2-fetch --list-machines`: every machine-id folder under the remote,
/// with its host, member and newest backup, as a table and as JSON; only
/// machine-id folders; none at all is "nothing there" (4).
#[test]
fn list_machines_shows_every_machine_of_the_remote() {
    let c = Cluster::start(1);
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let fleet = |env: &Env| {
        let mut cmd = env.fetch(&remote, MID);
        cmd.env_remove("ETCD2_BACKUP_MACHINE_ID")
            .arg("--list-machines");
        cmd
    };
    std::fs::create_dir_all(&remote.root).unwrap();
    let out = run(&mut fleet(&env));
    assert_fails_with_code(&out, "etcd2-fetch", 4, "no backup");

    const OTHER: &str = "f0000000000000000000000000000002";
    const EMPTY: &str = "f0000000000000000000000000000003";
    env.publish(&c, &remote, MID);
    env.publish(&c, &remote, OTHER);
    run_ok(
        env.push(&remote, OTHER)
            .arg(c.path().join("published.tar.zst")),
    );
    // A machine whose push never completed, and what is not a machine.
    std::fs::create_dir_all(remote.machine_dir(EMPTY).join("generations")).unwrap();
    std::fs::create_dir_all(remote.root.join(format!("{MID}_backup/member"))).unwrap();
    std::fs::create_dir_all(remote.root.join("notes")).unwrap();
    // MID was verified (with the real etcd2-verify), OTHER never.
    run_ok(
        env.with(tool("etcd2-verify"), &remote, MID)
            .args(["--wait", "60s"]),
    );
    let host = remote.pointer(MID).unwrap().json["host"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = run_ok(&mut fleet(&env));
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three machines: {table}");
    assert!(
        lines[0].starts_with("MACHINE-ID") && lines[0].contains("LAST VERIFY"),
        "{table}"
    );
    for (line, id, gens, verified) in [(lines[1], MID, "1", "ok"), (lines[2], OTHER, "2", "never")]
    {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[..3], &[id, host.as_str(), "e1"], "{line}");
        assert_eq!(cols[6], gens, "{line}");
        assert_eq!(cols[7], verified, "{line}");
    }
    assert!(
        lines[3].starts_with(EMPTY) && lines[3].contains("no backup"),
        "{table}"
    );

    let out = run_ok(fleet(&env).arg("--json"));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let other = &rows[1];
    assert_eq!(other["machine_id"], OTHER);
    assert_eq!(other["member"], "e1");
    assert_eq!(other["host"], host.as_str());
    assert_eq!(other["generations"], 2);
    assert_eq!(
        other["generation"],
        remote.pointer(OTHER).unwrap().generation.as_str()
    );
    assert_eq!(other["size"], remote.pointer(OTHER).unwrap().size);
    assert!(other["age_seconds"].as_u64().is_some(), "{other}");
    assert!(other["last_verify"].is_null(), "{other}");
    let mine = &rows[0]["last_verify"];
    assert_eq!(mine["ok"], true, "{mine}");
    assert_eq!(
        mine["generation"],
        remote.pointer(MID).unwrap().generation.as_str()
    );
    assert_eq!(rows[2]["machine_id"], EMPTY);
    assert!(rows[2]["generation"].is_null() && rows[2]["age_seconds"].is_null());
}

/// The textfile's samples, parsed by Prometheus's own text parser
/// (prometheus_client, from build/venv): (name, labels, value).
fn parse_prom(file: &std::path::Path) -> Vec<(String, serde_json::Value, f64)> {
    let py = harness::workspace().join("build/venv/bin/python3");
    assert!(
        py.is_file(),
        "{} missing: run scripts/ensure-deps",
        py.display()
    );
    let script = "import json,sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\nout=[]\nfor f in p(open(sys.argv[1]).read()):\n  for s in f.samples: out.append([s.name, s.labels, s.value])\nprint(json.dumps(out))\n";
    let out = run_ok(
        std::process::Command::new(py)
            .args(["-c", script])
            .arg(file),
    );
    serde_json::from_slice::<Vec<(String, serde_json::Value, f64)>>(&out.stdout).unwrap()
}

fn sample(s: &[(String, serde_json::Value, f64)], name: &str, step: &str) -> Option<f64> {
    s.iter()
        .find(|(n, l, _)| n == name && l["step"] == step)
        .map(|(_, _, v)| *v)
}

#[test]
fn snapshot_and_push_write_textfile_metrics_that_parse_and_count_failures() {
    let mut c = Cluster::start(1);
    for k in 0..5 {
        c.put_v3(0, &format!("/k{k}"), "v");
    }
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let metrics = c.path().join("textfile_collector");
    std::fs::create_dir(&metrics).unwrap();
    let archive = c.path().join("a.tar.zst");
    let snapshot = |c: &Cluster| {
        let mut cmd = tool("etcd2-snapshot");
        cmd.env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .env("ETCD2_BACKUP_METRICS_DIR", &metrics)
            .args(["--api", "v3", "--query-timeout", "3s", "-o"])
            .arg(&archive);
        cmd
    };
    run_ok(&mut snapshot(&c));
    run_ok(
        env.push(&remote, MID)
            .env("ETCD2_BACKUP_METRICS_DIR", &metrics)
            .arg(&archive),
    );
    let snap = parse_prom(&metrics.join("etcd2_backup_snapshot.prom"));
    let push = parse_prom(&metrics.join("etcd2_backup_push.prom"));
    let ok_at = sample(
        &snap,
        "etcd2_backup_last_success_timestamp_seconds",
        "snapshot",
    )
    .unwrap();
    assert_eq!(
        sample(
            &snap,
            "etcd2_backup_last_attempt_timestamp_seconds",
            "snapshot"
        ),
        Some(ok_at)
    );
    assert_eq!(
        sample(&snap, "etcd2_backup_failures_total", "snapshot"),
        Some(0.0)
    );
    assert!(sample(&snap, "etcd2_backup_keys", "snapshot").unwrap() >= 5.0);
    assert!(sample(&snap, "etcd2_backup_archive_bytes", "snapshot").unwrap() > 0.0);
    assert!(sample(&push, "etcd2_backup_last_success_timestamp_seconds", "push").is_some());
    assert_eq!(sample(&push, "etcd2_backup_generations", "push"), Some(1.0));
    let info = push
        .iter()
        .find(|(n, _, _)| n == "etcd2_backup_info")
        .expect("an info metric");
    assert_eq!(info.1["api"], "v3");
    // The backup published last, by when it was taken (--list's CREATED):
    // the sidecar's manifest says.
    let created = |remote: &Remote| {
        let pointer = remote.pointer(MID).unwrap();
        let sidecar: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                remote
                    .machine_dir(MID)
                    .join(format!("generations/{}.json", pointer.generation)),
            )
            .unwrap(),
        )
        .unwrap();
        sidecar["manifest"]["created_unix"].as_f64().unwrap()
    };
    assert_eq!(
        sample(&push, "etcd2_backup_created_timestamp_seconds", "push"),
        Some(created(&remote))
    );
    // The next push (a new generation) writes the same series, new values:
    // a series per generation (a label naming it) would grow Prometheus's
    // index every 30 s.
    let series = |s: &[(String, serde_json::Value, f64)]| -> Vec<String> {
        s.iter().map(|(n, l, _)| format!("{n}{l}")).collect()
    };
    run_ok(&mut snapshot(&c));
    run_ok(
        env.push(&remote, MID)
            .env("ETCD2_BACKUP_METRICS_DIR", &metrics)
            .arg(&archive),
    );
    let again = parse_prom(&metrics.join("etcd2_backup_push.prom"));
    assert_eq!(series(&again), series(&push));
    assert_eq!(
        sample(&again, "etcd2_backup_generations", "push"),
        Some(2.0)
    );
    assert_eq!(
        sample(&again, "etcd2_backup_created_timestamp_seconds", "push"),
        Some(created(&remote))
    );

    let ok_at = sample(
        &parse_prom(&metrics.join("etcd2_backup_snapshot.prom")),
        "etcd2_backup_last_success_timestamp_seconds",
        "snapshot",
    )
    .unwrap();

    // etcd stopped: the snapshot fails, the failure counts, the last
    // success stays where it was.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    c.members[0].stop();
    let out = run(&mut snapshot(&c));
    assert_eq!(out.status.code(), Some(1));
    let snap = parse_prom(&metrics.join("etcd2_backup_snapshot.prom"));
    assert_eq!(
        sample(&snap, "etcd2_backup_failures_total", "snapshot"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &snap,
            "etcd2_backup_last_success_timestamp_seconds",
            "snapshot"
        ),
        Some(ok_at)
    );
    assert!(
        sample(
            &snap,
            "etcd2_backup_last_attempt_timestamp_seconds",
            "snapshot"
        )
        .unwrap()
            > ok_at
    );
    // Only our files, no temporaries, in the collector's directory.
    assert_eq!(
        harness::names(&metrics),
        vec!["etcd2_backup_push.prom", "etcd2_backup_snapshot.prom"]
    );
}

#[test]
fn under_the_journal_every_line_carries_its_priority() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("stderr");
    let run_with = |journal: bool| {
        let f = std::fs::File::create(&log).unwrap();
        let m = f.metadata().unwrap();
        let mut cmd = tool("etcd2-snapshot");
        cmd.env(
            "ETCDCTL_ENDPOINTS",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env("ETCD_BACKUP_DIR", d.path().join("work"))
        .args(["--query-timeout", "2s", "-o"])
        .arg(d.path().join("a.tar.zst"))
        .stderr(f);
        if journal {
            // What systemd sets when it connects stderr to the journal.
            cmd.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
        }
        let st = cmd.status().unwrap();
        assert_eq!(st.code(), Some(1));
        std::fs::read_to_string(&log).unwrap()
    };
    let plain = run_with(false);
    assert!(!plain.lines().any(|l| l.starts_with('<')), "{plain}");
    let journal = run_with(true);
    let last = journal.lines().last().unwrap_or_default();
    assert!(last.starts_with("<3>etcd2-snapshot: error: "), "{journal}");
    assert!(
        journal.lines().all(|l| l.starts_with('<')),
        "every line has a priority: {journal}"
    );
}

#[test]
fn scripts_get_json_results_and_distinct_exit_codes() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let archive = c.path().join("a.tar.zst");
    // snapshot --json: the manifest, on stdout beside -o FILE.
    let out = run_ok(
        tool("etcd2-snapshot")
            .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .args(["--api", "v3", "--json", "-o"])
            .arg(&archive),
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["manifest"]["api"], "v3");
    assert!(m["archive_sha256"].as_str().is_some_and(|s| s.len() == 64));
    // push --json: the generation it published.
    let out = run_ok(env.push(&remote, MID).arg("--json").arg(&archive));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pointer: serde_json::Value = serde_json::from_slice(
        &std::fs::read(remote.machine_dir(MID).join("LATEST.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(p["generation"], pointer["generation"]);
    // health --json: the members.
    let out = run_ok(tool("etcd2-health").args(["--endpoints", c.endpoint(0), "--json"]));
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h["started"], 1);

    // Locked: 6.
    let lock = env.work.join("push.lock");
    let f = std::fs::File::create(&lock).unwrap();
    let _held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let out = run(env.push(&remote, MID).arg(&archive));
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(_held);
    // Another member's backups under this machine-id: 7.
    let mut ptr = pointer.clone();
    ptr["host"] = "some-other-host".into();
    std::fs::write(
        remote.machine_dir(MID).join("LATEST.json"),
        serde_json::to_vec(&ptr).unwrap(),
    )
    .unwrap();
    let out = run(env.push(&remote, MID).arg(&archive));
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A fetch with no backup: 4; an unreachable remote: 5.
    let out = run(env
        .fetch(&remote, "f0000000000000000000000000000009")
        .args(["-o", "/dev/null"]));
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in ["etcd2-push", "etcd2-fetch"] {
        let help = run_ok(tool(t).arg("--help"));
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("Exit status"),
            "{t}"
        );
    }
}

#[test]
fn a_successful_cycle_writes_at_most_three_lines() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let archive = c.path().join("a.tar.zst");
    let snap = run_ok(
        tool("etcd2-snapshot")
            .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .args(["--api", "v3", "-o"])
            .arg(&archive),
    );
    let push = run_ok(env.push(&remote, MID).arg(&archive));
    let lines: Vec<String> = [&snap.stderr, &push.stderr]
        .iter()
        .flat_map(|e| {
            String::from_utf8_lossy(e)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        lines.len() <= 3,
        "a backup every 30 s must not flood the journal: {lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("pushed ")), "{lines:#?}");
}

#[test]
fn a_push_on_a_terminal_shows_its_progress_and_elsewhere_does_not_redraw() {
    // Well above what the pipe to rclone buffers (socket buffers, a few
    // MiB), so the read paces with the throttled upload for seconds.
    let c = crate::host_safety::cluster_with_data(16);
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let archive = c.path().join("big.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    // rclone throttled, so the upload takes a few seconds.
    let push = |mid: &str| {
        let mut cmd = env.push(&remote, mid);
        cmd.args(["--rclone-flag=--bwlimit=2M"]).arg(&archive);
        cmd
    };
    // On a pty (script(1) gives the command one), as an operator at a shell.
    let cmd = push(MID);
    let mut line = String::new();
    for (k, v) in cmd.get_envs() {
        if let (k, Some(v)) = (k.to_string_lossy(), v) {
            line.push_str(&format!("{k}='{}' ", v.to_string_lossy()));
        }
    }
    line.push_str(&format!("'{}'", cmd.get_program().to_string_lossy()));
    for a in cmd.get_args() {
        line.push_str(&format!(" '{}'", a.to_string_lossy()));
    }
    let out = run_ok(std::process::Command::new("script").args([
        "-qfec",
        &format!("env {line}"),
        "/dev/null",
    ]));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains('\r'),
        "a redrawn line on a terminal: {shown:?}"
    );
    assert!(
        shown.contains("MiB") && shown.contains("/s"),
        "bytes and rate: {shown:?}"
    );
    // Not a terminal: no redrawing into a log.
    let out = run_ok(&mut push("f0000000000000000000000000000002"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\r'));
}

#[test]
fn under_systemd_a_wait_says_what_it_waits_for_in_the_unit_status() {
    // systemd's notify socket, as it hands it to a unit with NotifyAccess=.
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut child = tool("etcd2-health")
        .env("NOTIFY_SOCKET", &path)
        .args(["--endpoints", &format!("http://127.0.0.1:{}", free_port())])
        .args(["--wait", "4s", "--members", "1"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a STATUS= message while waiting");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(1));
    assert!(msg.starts_with("STATUS=waiting for the cluster"), "{msg}");
}

/// The units run with UMask=0077; node_exporter reads the textfiles as its
/// own user, so they are 0644 whatever the umask. An empty
/// ETCD2_BACKUP_METRICS_DIR (the settings drop-in's way to say "off") is
/// not a usage error.
#[test]
fn metrics_files_are_world_readable_under_the_units_umask_and_empty_means_off() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::start(1);
    c.put_v3(0, "/k", "v");
    let metrics = c.path().join("textfile_collector");
    std::fs::create_dir(&metrics).unwrap();
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "umask 077; exec \"$0\" \"$@\""])
        .arg(harness::bin("etcd2-snapshot"))
        .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
        .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
        .env("ETCD2_BACKUP_METRICS_DIR", &metrics)
        .args(["--api", "v3", "-o"])
        .arg(c.path().join("a.tar.zst"));
    run_ok(&mut cmd);
    let mode = std::fs::metadata(metrics.join("etcd2_backup_snapshot.prom"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "{mode:o}");
    // The archive itself stays private.
    let mode = std::fs::metadata(c.path().join("a.tar.zst"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    run_ok(
        tool("etcd2-snapshot")
            .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .env("ETCD2_BACKUP_METRICS_DIR", "")
            .args(["--api", "v3", "-o"])
            .arg(c.path().join("b.tar.zst")),
    );
}

/// The alert rules docs/monitoring.md gives: its one YAML block that
/// starts with `groups:`.
fn documented_rules() -> String {
    let doc = std::fs::read_to_string(harness::workspace().join("docs/monitoring.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(y, _)| y))
        .filter(|y| y.starts_with("groups:"))
        .collect();
    assert_eq!(blocks.len(), 1, "one rules block in docs/monitoring.md");
    blocks[0].to_owned()
}

/// A promtool `input_series` entry: `sample` from a textfile, as node
/// `instance` of job etcd-nodes, constant for the test's 20 minutes.
fn series(name: &str, labels: &serde_json::Value, instance: &str, value: f64) -> String {
    let mut l: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v))
        .collect();
    l.push(format!("instance=\"{instance}\""));
    l.push("job=\"etcd-nodes\"".into());
    let series = format!("{name}{{{}}}", l.join(","));
    format!(
        "      - series: {}\n        values: '{value}x20'\n",
        serde_json::Value::from(series)
    )
}

/// The documented rules pass `promtool check rules`, and `promtool test
/// rules` (Prometheus's own evaluator) fires them as documented: "backups
/// stopped" for a node whose push never succeeded (the textfile the real
/// etcd2-push wrote), "missing" for a node that writes no metrics at all,
/// "absent" when no node does, and nothing for a node that succeeded a
/// minute before.
#[test]
fn the_documented_alerts_fire_for_a_node_that_never_succeeded_and_one_that_writes_nothing() {
    let promtool = harness::require("promtool", "prometheus");
    let d = tempfile::tempdir().unwrap();
    let rules = d.path().join("rules.yml");
    std::fs::write(&rules, documented_rules()).unwrap();
    let out = run_ok(
        std::process::Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(&rules),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 4 rules found"),
        "{out:?}"
    );

    // Node "never": its first push ever fails (the remote refuses).
    let c = Cluster::start(1);
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let metrics = c.path().join("textfile_collector");
    std::fs::create_dir(&metrics).unwrap();
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    let out = run(refused(&mut env.push(&remote, MID), c.path())
        .env("ETCD2_BACKUP_METRICS_DIR", &metrics)
        .arg(&archive));
    assert_eq!(out.status.code(), Some(5), "the remote refused");
    let never = parse_prom(&metrics.join("etcd2_backup_push.prom"));
    let mut input = String::new();
    for (name, labels, value) in &never {
        input.push_str(&series(name, labels, "never", *value));
        // Node "fresh": the same, but its last success a minute before
        // the evaluation at 10m (promtool's clock starts at 0).
        let value = if name == "etcd2_backup_last_success_timestamp_seconds" {
            540.0
        } else {
            *value
        };
        input.push_str(&series(name, labels, "fresh", value));
    }
    // Node "silent": node_exporter answers, no etcd2-backup metrics.
    let up = serde_json::json!({});
    for node in ["never", "fresh", "silent"] {
        input.push_str(&series("up", &up, node, 1.0));
    }
    let alert = |name: &str, labels: &str, summary: &str| {
        format!(
            "          - exp_labels: {{alertname: {name}{labels}}}\n            \
             exp_annotations: {{summary: {}}}\n",
            serde_json::Value::from(summary)
        )
    };
    let test = format!(
        "rule_files: [{}]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{input}\
         \n    alert_rule_test:\n      - eval_time: 10m\n        alertname: EtcdBackupsStopped\n        exp_alerts:\n{}\
         \n      - eval_time: 10m\n        alertname: EtcdBackupsMissing\n        exp_alerts:\n{}\
         \n      - eval_time: 10m\n        alertname: EtcdBackupsAbsent\n        exp_alerts: []\n\
         \n  - interval: 1m\n    input_series:\n{}\
         \n    alert_rule_test:\n      - eval_time: 10m\n        alertname: EtcdBackupsAbsent\n        exp_alerts:\n{}",
        serde_json::Value::from(rules.display().to_string()),
        alert(
            "EtcdBackupsStopped",
            ", step: push, instance: never, job: etcd-nodes",
            "no etcd backup published from never for 5 minutes"
        ),
        alert(
            "EtcdBackupsMissing",
            ", instance: silent, job: etcd-nodes",
            "silent writes no etcd2-backup push metrics: is etcd2-backup.timer enabled?"
        ),
        series("up", &up, "silent", 1.0),
        alert(
            "EtcdBackupsAbsent",
            ", step: push",
            "no node writes etcd2-backup push metrics"
        ),
    );
    let file = d.path().join("test.yml");
    std::fs::write(&file, &test).unwrap();
    let out = run(std::process::Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(&file));
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}\n{test}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

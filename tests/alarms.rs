//! etcd's alarms: a member whose database is full (NOSPACE) refuses every
//! write. Its backup says so, and a restore never hands the operator a
//! member that refuses writes after saying "checked".

use std::path::Path;

use harness::etcd::{self, Cluster};
use harness::rclone::Remote;
use harness::{free_port, run, run_ok, tool_on, Env};

const MID: &str = "a1a00000000000000000000000000001";

/// Small enough to fill in a second: etcd raises NOSPACE past it.
const QUOTA: &str = "--quota-backend-bytes=2097152";

/// Overwrite one key with 60 KB values until etcd refuses the write: the
/// history fills the quota (as churning leases and events do), while the
/// live data stays one key.
fn fill_until_nospace(c: &Cluster) {
    let value = "x".repeat(60_000);
    for _ in 0..400 {
        let out = run(c.etcdctl(0, "3").args(["put", "/churn", &value]));
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("database space exceeded"), "{err}");
            let alarms = run_ok(c.etcdctl(0, "3").args(["alarm", "list"]));
            assert!(String::from_utf8_lossy(&alarms.stdout).contains("NOSPACE"));
            return;
        }
    }
    panic!("etcd never raised NOSPACE with {QUOTA}");
}

fn manifest_of(archive: &Path, dir: &Path) -> serde_json::Value {
    std::fs::create_dir_all(dir).unwrap();
    run_ok(
        std::process::Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(dir)
            .arg("manifest.json"),
    );
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn a_nospace_member_is_backed_up_with_a_warning_and_restored_writable_on_3_4() {
    nospace_round_trip(None);
}

/// etcd 3.5 reports a member with an alarm as unhealthy: the restore's
/// throwaway member must not wait for a health that never comes.
#[test]
fn a_nospace_member_is_backed_up_with_a_warning_and_restored_writable_on_3_5() {
    nospace_round_trip(Some(&etcd::bin_of("3.5.30")));
}

#[test]
fn a_nospace_member_is_backed_up_with_a_warning_and_restored_writable_on_3_7() {
    nospace_round_trip(Some(&etcd::bin_of("3.7.3")));
}

/// NOSPACE through snapshot, verify and restore, with the etcd build in
/// `bin` (None: Debian's).
fn nospace_round_trip(bin: Option<&Path>) {
    let c = Cluster::start_flags(1, bin, &[QUOTA]);
    c.put_v3(0, "/kept", "yes");
    fill_until_nospace(&c);

    let metrics = c.path().join("metrics");
    std::fs::create_dir(&metrics).unwrap();
    let archive = c.path().join("full.tar.zst");
    let out = run_ok(
        tool_on("etcd2-snapshot", bin)
            .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .env("ETCD2_BACKUP_METRICS_DIR", &metrics)
            .args(["--api", "v3", "-o"])
            .arg(&archive),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARN") && err.contains("NOSPACE"),
        "the snapshot must warn of the alarm: {err}"
    );
    let m = manifest_of(&archive, &c.path().join("m"));
    assert_eq!(m["alarms"][0]["alarm"], "NOSPACE", "{m}");
    let prom = std::fs::read_to_string(metrics.join("etcd2_backup_snapshot.prom")).unwrap();
    assert!(
        prom.lines()
            .any(|l| l.starts_with("etcd2_backup_etcd_alarms") && l.ends_with(" 1")),
        "{prom}"
    );

    // verify says what it found.
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    run_ok(env.push(&remote, MID).arg(&archive));
    let out = run_ok(
        env.with(tool_on("etcd2-verify", bin), &remote, MID)
            .args(["--wait", "60s"]),
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("NOSPACE"),
        "verify must report the alarm: {said}"
    );

    // The restore names the alarm and clears it: the member it leaves
    // takes writes, under the same quota.
    let data = c.path().join("restored");
    let pp = free_port();
    let peer = format!("http://127.0.0.1:{pp}");
    let out = run_ok(
        tool_on("etcd2-restore", bin)
            .arg("--data-dir")
            .arg(&data)
            .args(["--name", "r1", "--peer-urls", &peer, "--wait", "60s"])
            .arg(&archive),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NOSPACE"),
        "restore must name the alarm: {err}"
    );
    let m = etcd::start_alone_on(bin, c.path(), data, pp, vec![QUOTA.to_owned()], &[]);
    let ctl = |args: &[&str]| {
        let mut cmd =
            std::process::Command::new(bin.map_or("etcdctl".into(), |b| b.join("etcdctl")));
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", m.client_url))
            .args(args);
        cmd
    };
    let alarms = run_ok(&mut ctl(&["alarm", "list"]));
    assert_eq!(
        String::from_utf8_lossy(&alarms.stdout).trim(),
        "",
        "the restored member still has an alarm"
    );
    run_ok(&mut ctl(&["put", "/after", "writes work"]));
    let got = run_ok(&mut ctl(&["get", "--print-value-only", "/kept"]));
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "yes");
}

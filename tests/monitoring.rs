//! Operators see that backups stopped: `etcd2-fetch --check --max-age` for a
//! monitoring host, with one line and a distinct exit code for each verdict.

use harness::etcd::Cluster;
use harness::rclone::Remote;
use harness::{free_port, run, run_ok, tool, Env};

const MID: &str = "f0000000000000000000000000000001";

#[test]
fn check_says_fresh_stale_no_backup_or_unreachable_with_distinct_codes() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let archive = c.path().join("a.tar.zst");
    run_ok(
        tool("etcd2-snapshot")
            .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .args(["--api", "v3", "-o"])
            .arg(&archive),
    );

    // No backup yet: 4.
    let out = run(env.fetch(&remote, MID).args(["--check", "--max-age", "5m"]));
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backup"));

    run_ok(env.push(&remote, MID).arg(&archive));
    // Fresh: 0, one line on stdout naming the generation and its age.
    let out = run_ok(env.fetch(&remote, MID).args(["--check", "--max-age", "5m"]));
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.starts_with("fresh:"), "{line}");

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

    // Unreachable remote: 5, rclone's cause in the line.
    let conf = c.path().join("refused.conf");
    std::fs::write(
        &conf,
        format!(
            "[backup]\ntype = webdav\nurl = http://127.0.0.1:{}\nvendor = other\n",
            free_port()
        ),
    )
    .unwrap();
    let out = run(env
        .fetch(&remote, MID)
        .env("RCLONE_CONFIG_PATH", &conf)
        .env("RCLONE_ENDPOINT", "backup:etcd")
        .args(["--check", "--max-age", "5m"]));
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection refused"));

    // The codes are documented where operators look.
    let help = run_ok(tool("etcd2-fetch").arg("--help"));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Exit status") && help.contains("3") && help.contains("stale"),
        "{help}"
    );
}

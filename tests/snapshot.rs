//! etcd2-snapshot against real etcd 3.4 members.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::etcd::{self, Cluster, MemberSpec};
use harness::rclone::Remote;
use harness::{assert_fails_with, free_port, names, run, run_ok, tool, wait_for, Env};

fn snapshot(c: &Cluster, i: usize) -> Command {
    let mut cmd = tool("etcd2-snapshot");
    cmd.env("ETCDCTL_ENDPOINTS", c.endpoint(i))
        .env("ETCD_DATA_DIR", &c.members[i].data_dir)
        .env("ETCD_BACKUP_DIR", c.path().join("work"));
    cmd
}

/// `tar -tf` with no help from us: the archive is a standard tar.
fn tar_list(archive: &Path) -> Vec<String> {
    let out = run_ok(Command::new("tar").arg("-tf").arg(archive));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Extract with plain tar and check every manifest entry with sha256sum.
fn extract_and_check(archive: &Path, into: &Path) -> serde_json::Value {
    std::fs::create_dir_all(into).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(into),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(into.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert!(!files.is_empty());
    if manifest["format"] == 2 || manifest["format"] == 3 {
        // The hashes are in SHA256SUMS, checked as a person would.
        run_ok(
            Command::new("sha256sum")
                .args(["-c", "--strict", "SHA256SUMS"])
                .current_dir(into),
        );
        let sums = std::fs::read_to_string(into.join("SHA256SUMS")).unwrap();
        // Format 3 covers the manifest too, on the first line.
        let covered = usize::from(manifest["format"] == 3);
        assert_eq!(sums.lines().count(), files.len() + covered, "{sums}");
        if covered == 1 {
            assert!(
                sums.lines().next().unwrap().ends_with("  manifest.json"),
                "{sums}"
            );
        }
    }
    for f in files {
        let p = into.join(f["path"].as_str().unwrap());
        let out = run_ok(Command::new("sha256sum").arg(&p));
        let sum = String::from_utf8_lossy(&out.stdout);
        let want = match f["sha256"].as_str() {
            Some(h) => h.to_owned(),
            None => {
                let sums = std::fs::read_to_string(into.join("SHA256SUMS")).unwrap();
                let line = sums
                    .lines()
                    .find(|l| l.ends_with(&format!("  {}", f["path"].as_str().unwrap())))
                    .unwrap_or_else(|| panic!("{f} not in SHA256SUMS"));
                line[..64].to_owned()
            }
        };
        assert_eq!(sum.split_whitespace().next().unwrap(), want, "{p:?}");
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            f["size"].as_u64().unwrap()
        );
    }
    manifest
}

/// Start one member from a data dir; v2 backups need --force-new-cluster.
fn start_single(dir: &Path, data_dir: PathBuf, extra: Vec<String>) -> (etcd::Member, u16) {
    let (c, p) = (free_port(), free_port());
    let m = etcd::spawn(
        MemberSpec {
            name: "r1",
            data_dir,
            client_port: c,
            peer_port: p,
            initial_cluster: format!("r1=http://127.0.0.1:{p}"),
            state: "new",
            token: "restored",
            tls: None,
            extra,
            bin: None,
        },
        dir,
    );
    etcd::endpoint_wait_healthy(&m.client_url, &[], &m.log);
    (m, p)
}

#[test]
fn v3_snapshot_of_a_three_member_cluster_restores_the_keys() {
    let c = Cluster::start(3);
    for k in 0..20 {
        c.put_v3(k % 3, &format!("/app/k{k}"), &format!("value-{k}"));
    }
    let archive = c.path().join("v3.tar.zst");
    run_ok(snapshot(&c, 1).args(["--api", "v3", "-o"]).arg(&archive));

    let listing = tar_list(&archive);
    assert_eq!(listing, vec!["manifest.json", "snapshot.db", "SHA256SUMS"]);
    let x = c.path().join("x");
    let m = extract_and_check(&archive, &x);
    assert_eq!(m["api"], "v3");
    assert_eq!(m["codec"], "zstd");
    assert_eq!(m["etcd_version"], "3.4.23");
    assert_eq!(m["member_name"], "e2");
    assert!(m["revision"].as_u64().unwrap() >= 21, "{m}");
    assert!(m["key_count"].as_u64().unwrap() >= 20, "{m}");
    assert!(!m["cluster_id"].as_str().unwrap().is_empty());

    // Restore with etcd's own tool and read the keys back.
    let p = free_port();
    let restored = c.path().join("restored");
    run_ok(
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "restore"])
            .arg(x.join("snapshot.db"))
            .arg("--data-dir")
            .arg(&restored)
            .args(["--name", "r1", "--initial-cluster"])
            .arg(format!("r1=http://127.0.0.1:{p}"))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{p}")),
    );
    let (c2, pp) = (free_port(), p);
    let member = etcd::spawn(
        MemberSpec {
            name: "r1",
            data_dir: restored,
            client_port: c2,
            peer_port: pp,
            initial_cluster: format!("r1=http://127.0.0.1:{pp}"),
            state: "new",
            token: "restored",
            tls: None,
            extra: vec![],
            bin: None,
        },
        c.path(),
    );
    etcd::endpoint_wait_healthy(&member.client_url, &[], &member.log);
    for k in 0..20 {
        assert_eq!(
            etcd::get_v3_at(&member.client_url, &[], &format!("/app/k{k}")).as_deref(),
            Some(format!("value-{k}").as_str())
        );
    }
}

#[test]
fn v2_snapshot_with_gzip_restores_with_force_new_cluster() {
    let c = Cluster::start(3);
    for k in 0..10 {
        c.put_v2(k % 3, &format!("/v2/k{k}"), &format!("old-{k}"));
    }
    let archive = c.path().join("v2.tar.gz");
    run_ok(
        snapshot(&c, 0)
            .args(["--codec", "gzip", "-o"])
            .arg(&archive),
    );
    let listing = tar_list(&archive);
    assert_eq!(listing[0], "manifest.json");
    assert!(
        listing.iter().any(|f| f.starts_with("member/wal/")),
        "{listing:?}"
    );
    let x = c.path().join("x");
    let m = extract_and_check(&archive, &x);
    assert_eq!(
        m["api"], "v2",
        "auto mode must pick v2 when only v2 holds data"
    );
    assert_eq!(m["codec"], "gzip");
    std::fs::remove_file(x.join("manifest.json")).unwrap();

    let (member, _) = start_single(c.path(), x, vec!["--force-new-cluster".into()]);
    for k in 0..10 {
        assert_eq!(
            etcd::get_v2_at(&member.client_url, &format!("/v2/k{k}")).as_deref(),
            Some(format!("old-{k}").as_str())
        );
    }
}

#[test]
fn auto_mode_refuses_to_drop_a_keyspace_and_explains() {
    let c = Cluster::start(1);
    c.put_v2(0, "/v2key", "a");
    c.put_v3(0, "v3key", "b");
    let archive = c.path().join("both.tar.zst");
    let out = run(snapshot(&c, 0).arg("-o").arg(&archive));
    assert_fails_with(&out, "etcd2-snapshot", "both the v2 and the v3 keyspace");
    assert!(!archive.exists());

    // An explicit choice needs the explicit permission to drop the other.
    let out = run(snapshot(&c, 0).args(["--api", "v3", "-o"]).arg(&archive));
    assert_fails_with(&out, "etcd2-snapshot", "--allow-dropping-keyspace");
    let out = run_ok(
        snapshot(&c, 0)
            .args(["--api", "v3", "--allow-dropping-keyspace", "-o"])
            .arg(&archive),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("v2 keyspace holds data and is NOT in this backup"),
        "{err}"
    );
    assert!(archive.exists());
}

#[test]
fn auto_mode_picks_v3_when_only_v3_holds_data() {
    let c = Cluster::start(1);
    c.put_v3(0, "only", "v3");
    let out = run_ok(snapshot(&c, 0).args(["-o", "-"]).stdout(Stdio::piped()));
    let x = c.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    let mut tar = Command::new("tar")
        // GNU tar cannot sniff the codec of a pipe; from a file it can.
        .args(["--zstd", "-xf", "-", "-C"])
        .arg(&x)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    tar.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    assert!(tar.wait().unwrap().success());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["api"], "v3");
    assert_eq!(
        names(&x),
        vec!["SHA256SUMS", "manifest.json", "snapshot.db"]
    );
}

#[test]
fn tls_member_works_with_certs_and_fails_clearly_without() {
    let c = Cluster::start_tls(1);
    c.put_v3(0, "secure", "yes");
    let t = c.tls.clone().unwrap();
    let archive = c.path().join("tls.tar.zst");
    let out = run_ok(
        snapshot(&c, 0)
            .env("ETCDCTL_CACERT", &t.ca)
            .env("ETCDCTL_CERT", &t.client_cert)
            .env("ETCDCTL_KEY", &t.client_key)
            .arg("-vo")
            .arg(&archive),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("PRIVATE KEY"),
        "key material must never be logged"
    );
    assert!(tar_list(&archive).contains(&"snapshot.db".to_owned()));

    let out = run(snapshot(&c, 0)
        .env("ETCDCTL_CACERT", &t.ca)
        .arg("-o")
        .arg(&archive));
    assert_fails_with(
        &out,
        "etcd2-snapshot",
        &format!("cannot reach etcd at {} over TLS", c.endpoint(0)),
    );

    // Without --cacert the system's roots do not know the test CA.
    let out = run(snapshot(&c, 0)
        .env("ETCDCTL_CERT", &t.client_cert)
        .env("ETCDCTL_KEY", &t.client_key)
        .arg("-o")
        .arg(&archive));
    let line = assert_fails_with(
        &out,
        "etcd2-snapshot",
        &format!("cannot reach etcd at {} over TLS", c.endpoint(0)),
    );
    assert!(line.contains("certificate"), "{line}");

    let out = run(snapshot(&c, 0)
        .env("ETCDCTL_CACERT", c.path().join("missing-ca.pem"))
        .arg("-o")
        .arg(&archive));
    assert_fails_with(&out, "etcd2-snapshot", "--cacert");
}

#[test]
fn bad_inputs_fail_with_one_line_and_leave_no_output() {
    let c = Cluster::start(1);
    c.put_v2(0, "/k", "v");
    let out_dir = c.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let target = out_dir.join("b.tar.zst");

    let cases: Vec<(&str, Command)> = vec![
        ("does-not-exist", {
            let mut s = snapshot(&c, 0);
            s.env("ETCD_DATA_DIR", c.path().join("does-not-exist"));
            s
        }),
        ("holds no etcd member", {
            let mut s = snapshot(&c, 0);
            s.env("ETCD_DATA_DIR", &out_dir);
            s
        }),
        ("cannot reach etcd at http://127.0.0.1:1", {
            let mut s = snapshot(&c, 0);
            s.env("ETCDCTL_ENDPOINTS", "http://127.0.0.1:1")
                .args(["--query-timeout", "5s"]);
            s
        }),
        ("etcdctl not found", {
            let mut s = snapshot(&c, 0);
            s.env("ETCD2_BACKUP_ETCDCTL", "/nonexistent/etcdctl");
            s
        }),
        ("not found in PATH (install etcd-client)", {
            let mut s = snapshot(&c, 0);
            s.env("PATH", "/nonexistent");
            s
        }),
    ];
    for (needle, mut cmd) in cases {
        let out = run(cmd.arg("-o").arg(&target));
        assert_fails_with(&out, "etcd2-snapshot", needle);
        assert!(
            names(&out_dir).is_empty(),
            "{needle}: left {:?}",
            names(&out_dir)
        );
    }

    // Unwritable destination: fails before touching etcd, names the dir.
    let out = run(snapshot(&c, 0).args(["-o", "/nonexistent-dir/b.tar.zst"]));
    assert_fails_with(&out, "etcd2-snapshot", "/nonexistent-dir");

    // A terminal is no place for an archive; a pipe is.
    let bad_level = run(snapshot(&c, 0).args(["--level", "42", "-o"]).arg(&target));
    assert_fails_with(&bad_level, "etcd2-snapshot", "zstd level must be 1..19");
    assert!(names(&out_dir).is_empty(), "left {:?}", names(&out_dir));
}

/// `n` values of 1 MB, poorly compressible: a snapshot that takes a while.
fn put_big_values(c: &Cluster, n: usize) {
    let mut seed = 0x9e3779b97f4a7c15u64;
    for k in 0..n {
        let val: String = (0..1_000_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (b'!' + (seed % 90) as u8) as char
            })
            .collect();
        let f = c.path().join("val");
        std::fs::write(&f, &val).unwrap();
        let st = c
            .etcdctl(0, "3")
            .args(["put", &format!("big{k}")])
            .stdin(std::fs::File::open(&f).unwrap())
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
}

#[test]
fn killed_mid_write_leaves_no_file_and_the_next_run_succeeds() {
    let c = Cluster::start(1);
    put_big_values(&c, 24);
    let out_dir = c.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let target = out_dir.join("b.tar.gz");
    let mut child = snapshot(&c, 0)
        .args(["--codec", "gzip", "--level", "9", "-o"])
        .arg(&target)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the archive is being written (an unlinked file open in the
    // output dir), then SIGKILL: no chance to clean up.
    wait_for(
        "the archive write to start",
        Duration::from_secs(60),
        || {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
            fds.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .any(|l| l.starts_with(&out_dir))
                .then_some(())
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        names(&out_dir).is_empty(),
        "left behind: {:?}",
        names(&out_dir)
    );

    run_ok(snapshot(&c, 0).args(["--codec", "gzip", "-o"]).arg(&target));
    assert_eq!(names(&out_dir), vec!["b.tar.gz"]);
    assert_eq!(tar_list(&target)[0], "manifest.json");
}

#[test]
fn auto_mode_on_a_member_without_the_v2_api_backs_up_v3() {
    // etcd 3.4's default: no v2 API. The v2 probe gets a 404 page; that is
    // an empty v2 keyspace, not an unreachable member.
    let t = tempfile::tempdir().unwrap();
    let (m, _) = start_single(
        t.path(),
        t.path().join("d"),
        vec!["--enable-v2=false".into()],
    );
    run_ok(
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", m.client_url))
            .args(["put", "k", "v3 only"]),
    );
    let out_file = t.path().join("b.tar.zst");
    // Its log, at the default level, with this work dir and these flags.
    let snapshot_log = |work: &str, args: &[&str]| {
        let out = run_ok(
            tool("etcd2-snapshot")
                .env("ETCDCTL_ENDPOINTS", &m.client_url)
                .env("ETCD_BACKUP_DIR", t.path().join(work))
                .args(args)
                .arg("-o")
                .arg(&out_file),
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let log = snapshot_log("work", &[]);
    assert!(log.contains("the v2 API is disabled"), "{log}");
    // v2 data can reach this member's store through others: not "empty",
    // but a warning that it cannot be seen from here.
    assert!(
        log.contains("WARN") && log.contains("cannot be checked"),
        "{log}"
    );
    // A reminder once a day, not a warning every 30 s cycle.
    let again = snapshot_log("work", &[]);
    assert!(!again.contains("cannot be checked"), "{again}");
    // Nor any notice where --api v3 said that v2 data does not matter (a
    // fresh work dir: no daily reminder was given there).
    let v3 = snapshot_log("work-v3", &["--api", "v3"]);
    assert!(!v3.contains("v2"), "{v3}");
    let manifest = extract_and_check(&out_file, &t.path().join("x"));
    assert_eq!(manifest["api"], "v3");
}

/// Restore `db` with etcd's own tool (which checks its sha256 trailer) and
/// start a member from it.
fn restore_with_etcdctl(dir: &Path, db: &Path) -> etcd::Member {
    let p = free_port();
    let restored = dir.join("restored-by-etcdctl");
    run_ok(
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "restore"])
            .arg(db)
            .arg("--data-dir")
            .arg(&restored)
            .args(["--name", "r1", "--initial-cluster"])
            .arg(format!("r1=http://127.0.0.1:{p}"))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{p}")),
    );
    let m = etcd::spawn(
        MemberSpec {
            name: "r1",
            data_dir: restored,
            client_port: free_port(),
            peer_port: p,
            initial_cluster: format!("r1=http://127.0.0.1:{p}"),
            state: "new",
            token: "restored",
            tls: None,
            extra: vec![],
            bin: None,
        },
        dir,
    );
    etcd::endpoint_wait_healthy(&m.client_url, &[], &m.log);
    m
}

#[test]
fn v3_snapshot_streams_from_etcd_without_etcdctl_and_restores_with_its_hash_check() {
    let c = Cluster::start(1);
    for k in 0..30 {
        c.put_v3(0, &format!("/s/k{k}"), &format!("v{k}"));
    }
    c.put_v3(0, "/s/last", "acknowledged");
    // What a killed older etcd2-snapshot staged (a db) is still swept.
    let work = c.path().join("work");
    let debris = work.join("etcd2-snapshot.4000000.old");
    std::fs::create_dir_all(&debris).unwrap();
    std::fs::write(debris.join("snapshot.db"), "old").unwrap();
    let archive = c.path().join("s.tar.zst");
    let out = run_ok(snapshot(&c, 0).args(["--api", "v3", "-vo"]).arg(&archive));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("grpc: Maintenance.Snapshot"), "{err}");
    for spawned in ["snapshot save", "snapshot status"] {
        assert!(!err.contains(spawned), "no etcdctl {spawned}: {err}");
    }
    assert!(
        !names(&work)
            .iter()
            .any(|n| n.starts_with("etcd2-snapshot.")),
        "nothing staged, the debris swept: {:?}",
        names(&work)
    );

    // Format 3, checkable by hand: tar -xf, then sha256sum -c SHA256SUMS.
    assert_eq!(
        tar_list(&archive),
        vec!["manifest.json", "snapshot.db", "SHA256SUMS"]
    );
    let x = c.path().join("x");
    let m = extract_and_check(&archive, &x);
    assert_eq!(m["format"], 3);
    assert!(m["revision"].as_u64().unwrap() >= 32, "{m}");
    assert_eq!(m["key_count"].as_u64(), Some(31), "{m}");
    // etcdctl's file: the db, then the sha256 of the db.
    let db = std::fs::read(x.join("snapshot.db")).unwrap();
    let (body, trailer) = db.split_at(db.len() - 32);
    let out = run_ok(Command::new("sha256sum").arg("-").stdin({
        std::fs::write(x.join("body"), body).unwrap();
        std::fs::File::open(x.join("body")).unwrap()
    }));
    let hex: String = trailer.iter().map(|b| format!("{b:02x}")).collect();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&hex));

    let member = restore_with_etcdctl(c.path(), &x.join("snapshot.db"));
    assert_eq!(
        etcd::get_v3_at(&member.client_url, &[], "/s/last").as_deref(),
        Some("acknowledged")
    );
}

/// A format-2 archive rebuilt with plain tar from `dir`'s entries, in order.
fn retar(dir: &Path, entries: &[&str], out: &Path) {
    run_ok(
        Command::new("tar")
            .arg("--zstd")
            .arg("-cf")
            .arg(out)
            .arg("-C")
            .arg(dir)
            .args(entries),
    );
}

#[test]
fn push_refuses_a_doctored_format_2_archive_naming_what_is_wrong() {
    let c = Cluster::start(1);
    c.put_v3(0, "/k", "v");
    let archive = c.path().join("good.tar.zst");
    run_ok(snapshot(&c, 0).args(["--api", "v3", "-o"]).arg(&archive));
    let x = c.path().join("x");
    extract_and_check(&archive, &x);
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let mid = "a0000000000000000000000000000013";

    let bad = c.path().join("bad.tar.zst");
    retar(&x, &["manifest.json", "snapshot.db"], &bad);
    let out = run(env.push(&remote, mid).arg(&bad));
    assert_fails_with(&out, "etcd2-push", "has no SHA256SUMS after its files");

    std::fs::write(x.join("junk"), "x").unwrap();
    retar(
        &x,
        &["manifest.json", "snapshot.db", "SHA256SUMS", "junk"],
        &bad,
    );
    let out = run(env.push(&remote, mid).arg(&bad));
    assert_fails_with(&out, "etcd2-push", "entry junk follows SHA256SUMS");

    // snapshot.db's line zeroed (format 3 lists manifest.json first).
    let sums = std::fs::read_to_string(x.join("SHA256SUMS")).unwrap();
    let doctored: String = sums
        .lines()
        .map(|l| match l.strip_suffix("  snapshot.db") {
            Some(_) => format!("{}  snapshot.db\n", "0".repeat(64)),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(x.join("SHA256SUMS"), doctored).unwrap();
    retar(&x, &["manifest.json", "snapshot.db", "SHA256SUMS"], &bad);
    let out = run(env.push(&remote, mid).arg(&bad));
    assert_fails_with(&out, "etcd2-push", "snapshot.db does not match SHA256SUMS");

    // Nothing was published; the good one pushes and fetches.
    run_ok(env.push(&remote, mid).arg(&archive));
    let into = c.path().join("fetched");
    run_ok(env.fetch(&remote, mid).arg("--into").arg(&into));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(into.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["files"][0]["sha256"].as_str().unwrap().len(), 64, "{m}");
}

/// The pid of the process whose command line mentions `needle` (the etcd
/// of one data dir).
fn pid_mentioning(needle: &str) -> i32 {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no process mentions {needle}"))
}

/// Start `cmd` paused at fault point `point` (until `resume` exists);
/// returns it and a thread collecting the rest of its stderr.
fn spawn_paused(
    cmd: &mut Command,
    point: &str,
    resume: &Path,
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .env("ETCD2_BACKUP_FAULT_PAUSE", point)
        .env("ETCD2_BACKUP_FAULT_RESUME", resume)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(&format!("fault-point: {point}")) => break,
            Some(Ok(_)) => continue,
            _ => panic!("ended before {point}"),
        }
    }
    let rest =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    (child, rest)
}

/// Send `sig` to the etcd of member `i`.
fn signal_etcd(c: &Cluster, i: usize, sig: nix::sys::signal::Signal) {
    let pid = pid_mentioning(&c.members[i].data_dir.display().to_string());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

#[test]
fn a_snapshot_cut_by_etcd_dying_mid_stream_never_looks_whole() {
    let c = Cluster::start(1);
    // Well past what the receiver and the HTTP/2 window hold (12 MiB).
    put_big_values(&c, 40);
    let part = c.path().join("part.tar.zst");
    let resume = c.path().join("resume");
    let mut cmd = snapshot(&c, 0);
    cmd.args(["--api", "v3", "-o", "-"])
        .stdout(std::fs::File::create(&part).unwrap());
    // Paused with the stream started: SIGKILL etcd, then go on.
    let (mut child, stderr) = spawn_paused(&mut cmd, "snapshot-streaming", &resume);
    // Let the receiver fill its channel first, so that some of the db
    // reaches stdout before the cut (a zstd frame holds ~128 KiB back).
    std::thread::sleep(Duration::from_secs(1));
    signal_etcd(&c, 0, nix::sys::signal::Signal::SIGKILL);
    std::fs::write(&resume, "").unwrap();
    let st = child.wait().unwrap();
    let err = stderr.join().unwrap();
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.starts_with("etcd2-snapshot: error: ") && err.contains("Maintenance.Snapshot"),
        "{err}"
    );
    // What went to stdout (whatever got through) is no archive any reader
    // takes: cut before SHA256SUMS and the end of the tar and codec.
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let out = run(env
        .push(&remote, "a0000000000000000000000000000014")
        .arg(&part));
    let line = assert_fails_with(&out, "etcd2-push", "part.tar.zst");
    let len = std::fs::metadata(&part).unwrap().len();
    if len > 0 {
        assert!(
            line.contains("not a whole etcd2-backup archive"),
            "{len}: {line}"
        );
    }
    eprintln!("cut: {len} bytes on stdout; {err}; push: {line}");
}

#[test]
fn a_stalled_snapshot_stream_fails_within_query_timeout_naming_it() {
    use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
    let c = Cluster::start(1);
    put_big_values(&c, 40);
    let out_dir = c.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let resume = c.path().join("resume");
    let mut cmd = snapshot(&c, 0);
    cmd.args(["--api", "v3", "--query-timeout", "3s", "-o"])
        .arg(out_dir.join("b.tar.zst"));
    let (mut child, stderr) = spawn_paused(&mut cmd, "snapshot-streaming", &resume);
    signal_etcd(&c, 0, SIGSTOP);
    let t = std::time::Instant::now();
    std::fs::write(&resume, "").unwrap();
    let st = child.wait().unwrap();
    let took = t.elapsed();
    signal_etcd(&c, 0, SIGCONT);
    let err = stderr.join().unwrap();
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("etcd sent no snapshot data for 3s while receiving (--query-timeout)"),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(names(&out_dir).is_empty(), "{:?}", names(&out_dir));
}

/// Operators export `ETCDCTL_API` in their profile and etcd's own drop-ins
/// carry it into our units: whatever its value, our v2 calls stay v2 and the
/// v2 keyspace is never dropped.
#[test]
fn an_exported_etcdctl_api_changes_nothing() {
    let c = Cluster::start(1);
    c.put_v2(0, "/v2/only", "kept");
    for api in ["2", "3"] {
        let archive = c.path().join(format!("auto-{api}.tar.zst"));
        run_ok(
            snapshot(&c, 0)
                .env("ETCDCTL_API", api)
                .arg("-o")
                .arg(&archive),
        );
        let m = extract_and_check(&archive, &c.path().join(format!("x-auto-{api}")));
        assert_eq!(
            m["api"], "v2",
            "ETCDCTL_API={api}: auto must still see the v2 keyspace"
        );

        let archive = c.path().join(format!("v2-{api}.tar.zst"));
        run_ok(
            snapshot(&c, 0)
                .env("ETCDCTL_API", api)
                .args(["--api", "v2", "-o"])
                .arg(&archive),
        );
        let m = extract_and_check(&archive, &c.path().join(format!("x-v2-{api}")));
        assert_eq!(m["api"], "v2");
    }

    // With both keyspaces holding data the refusal stands, variable or not.
    c.put_v3(0, "v3key", "b");
    for api in ["2", "3"] {
        let archive = c.path().join(format!("both-{api}.tar.zst"));
        let out = run(snapshot(&c, 0)
            .env("ETCDCTL_API", api)
            .arg("-o")
            .arg(&archive));
        assert_fails_with(&out, "etcd2-snapshot", "both the v2 and the v3 keyspace");
        assert!(!archive.exists());
    }
}

/// "Cannot reach" is said only of a member that did not answer: one that
/// answered with a refusal is named by its refusal.
#[test]
fn a_member_that_answers_with_a_refusal_is_not_called_unreachable() {
    // Auth on, and we send no user: etcd refuses, it was reached.
    let c = Cluster::start(1);
    c.put_v3(0, "/k", "v");
    run_ok(
        c.etcdctl(0, "3")
            .args(["user", "add", "root:s3cret-canary"]),
    );
    run_ok(c.etcdctl(0, "3").args(["auth", "enable"]));
    let archive = c.path().join("auth.tar.zst");
    let out = run(snapshot(&c, 0).args(["--api", "v3", "-o"]).arg(&archive));
    let line = assert_fails_with(&out, "etcd2-snapshot", "authentication");
    assert!(!line.contains("cannot reach"), "{line}");
    assert!(!line.contains("s3cret-canary"), "{line}");
    assert!(!archive.exists());

    // A learner serves no linearizable read: said as such.
    let c = Cluster::start(1);
    c.put_v3(0, "/k", "v");
    let (cp, pp) = (free_port(), free_port());
    let peer = format!("http://127.0.0.1:{pp}");
    run_ok(c.etcdctl(0, "3").args([
        "member",
        "add",
        "l1",
        &format!("--peer-urls={peer}"),
        "--learner",
    ]));
    let learner = etcd::spawn(
        MemberSpec {
            name: "l1",
            data_dir: c.path().join("l1"),
            client_port: cp,
            peer_port: pp,
            initial_cluster: format!("{}={},l1={peer}", c.members[0].name, c.members[0].peer_url),
            state: "existing",
            token: &c.token,
            tls: None,
            extra: vec![],
            bin: None,
        },
        c.path(),
    );
    wait_for(
        "the learner's client port to listen",
        Duration::from_secs(30),
        || std::net::TcpStream::connect(("127.0.0.1", cp)).ok(),
    );
    let archive = c.path().join("learner.tar.zst");
    let out = run(tool("etcd2-snapshot")
        .env("ETCDCTL_ENDPOINTS", &learner.client_url)
        .env("ETCD_BACKUP_DIR", c.path().join("work"))
        .args(["--api", "v3", "-o"])
        .arg(&archive));
    let line = assert_fails_with(&out, "etcd2-snapshot", "learner");
    assert!(!line.contains("cannot reach"), "{line}");
    assert!(!archive.exists());
}

/// etcd2-snapshot backs up one member: the first of --endpoints, and it
/// says so; an error names that member only.
#[test]
fn only_the_first_endpoint_is_backed_up_and_errors_name_it() {
    let c = Cluster::start(1);
    c.put_v3(0, "/k", "v");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let archive = c.path().join("a.tar.zst");
    let out = run_ok(
        snapshot(&c, 0)
            .env("ETCDCTL_ENDPOINTS", format!("{},{dead}", c.endpoint(0)))
            .args(["--api", "v3", "-o"])
            .arg(&archive),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("backs up the member at {}", c.endpoint(0))) && err.contains(&dead),
        "says which member it backs up and which endpoints it leaves: {err}"
    );
    let out = run(snapshot(&c, 0)
        .env("ETCDCTL_ENDPOINTS", format!("{dead},{}", c.endpoint(0)))
        .args(["--api", "v3", "-o"])
        .arg(&archive));
    let line = assert_fails_with(
        &out,
        "etcd2-snapshot",
        &format!("cannot reach etcd at {dead}"),
    );
    assert!(
        !line.contains(c.endpoint(0)),
        "names only the member tried: {line}"
    );
}

/// Coming from `etcdctl snapshot save` + cron: the saved file, and a copy of
/// a stopped member's member/snap/db, each wrapped by `--from-file` into an
/// archive (etcd not asked), pushed, fetched, restored and started with
/// every key; the copied db restored with --skip-hash-check, which its
/// manifest asks for. On etcd 3.4 (etcdctl reads the file) and the newest
/// build (etcdutl does). The files given are left as they were.
#[test]
fn from_file_wraps_a_saved_snapshot_and_a_copied_db_that_push_fetch_and_restore() {
    for bin in [
        None,
        Some(etcd::bin_of(&etcd::builds().last().unwrap().version)),
    ] {
        let bin = bin.as_deref();
        let mut c = match bin {
            Some(b) => Cluster::start_bin(1, b),
            None => Cluster::start(1),
        };
        for k in 0..20 {
            c.put_v3(0, &format!("/cron/k{k}"), &format!("v{k}"));
        }
        let saved = c.path().join("saved.db");
        let ctl = bin.map_or(PathBuf::from("etcdctl"), |b| b.join("etcdctl"));
        run_ok(
            Command::new(ctl)
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", c.endpoint(0)))
                .args(["snapshot", "save"])
                .arg(&saved),
        );
        c.members[0].stop();
        let copied = c.path().join("copied.db");
        std::fs::copy(c.members[0].data_dir.join("member/snap/db"), &copied).unwrap();
        let remote = Remote::local(c.path());
        let env = Env::new(c.path());
        for (db, kind, skip) in [
            (&saved, "snapshot save", false),
            (&copied, "copied db", true),
        ] {
            let before = std::fs::read(db).unwrap();
            let archive = c.path().join(format!("{kind}.tar.zst").replace(' ', "-"));
            let out = run_ok(
                harness::tool_on("etcd2-snapshot", bin)
                    .env("ETCD_BACKUP_DIR", c.path().join("work"))
                    .env("ETCD2_BACKUP_METRICS_DIR", c.path().join("no-metrics"))
                    .arg("--from-file")
                    .arg(db)
                    .arg("-o")
                    .arg(&archive),
            );
            let log = String::from_utf8_lossy(&out.stderr);
            assert_eq!(log.contains("--skip-hash-check"), skip, "{kind}: {log}");
            assert_eq!(
                std::fs::read(db).unwrap(),
                before,
                "{kind}: the file changed"
            );
            let m = harness::manifest_of(&archive);
            assert_eq!(m["imported_from"]["kind"], kind, "{m}");
            assert_eq!(m["imported_from"]["skip_hash_check"], skip, "{m}");
            assert!(m["revision"].as_u64().unwrap() >= 21, "{m}");
            run_ok(
                env.push(&remote, "d0000000000000000000000000000009")
                    .arg(&archive),
            );
            let fetched = c.path().join(format!("fetched-{skip}"));
            run_ok(
                env.fetch(&remote, "d0000000000000000000000000000009")
                    .arg("--into")
                    .arg(&fetched),
            );
            let pp = free_port();
            let data = c.path().join(format!("restored-{skip}"));
            let out = run_ok(
                harness::tool_on("etcd2-restore", bin)
                    .arg("--data-dir")
                    .arg(&data)
                    .args(["-v", "--name", "r1", "--wait", "60s", "--peer-urls"])
                    .arg(format!("http://127.0.0.1:{pp}"))
                    .arg(&fetched),
            );
            let log = String::from_utf8_lossy(&out.stderr);
            assert_eq!(log.contains("--skip-hash-check"), skip, "{kind}: {log}");
            let m = etcd::start_alone_on(bin, c.path(), data, pp, vec![], &[]);
            for k in [0, 19] {
                assert_eq!(
                    etcd::get_v3_at(&m.client_url, &[], &format!("/cron/k{k}")).as_deref(),
                    Some(format!("v{k}").as_str()),
                    "{kind}: /cron/k{k}"
                );
            }
        }
        // A saved snapshot whose sha256 trailer no longer matches its bytes
        // is refused, and nothing is written.
        let mut bytes = std::fs::read(&saved).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let damaged = c.path().join("damaged.db");
        std::fs::write(&damaged, bytes).unwrap();
        let out_file = c.path().join("damaged.tar.zst");
        let out = run(harness::tool_on("etcd2-snapshot", bin)
            .arg("--from-file")
            .arg(&damaged)
            .arg("-o")
            .arg(&out_file));
        assert_fails_with(&out, "etcd2-snapshot", "sha256 trailer does not match");
        assert!(!out_file.exists(), "a damaged snapshot left {out_file:?}");
        // No metrics: an import is no backup of a running member.
        assert!(!c.path().join("no-metrics").exists());
    }
}

/// What is no etcd database is refused by --from-file, naming the file and
/// what it is, with nothing written.
#[test]
fn from_file_refuses_what_is_no_etcd_database() {
    let t = tempfile::tempdir().unwrap();
    let out_file = t.path().join("out.tar.zst");
    let tarball = t.path().join("a.tar.zst");
    std::fs::write(&tarball, [0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]).unwrap();
    let text = t.path().join("notes.txt");
    std::fs::write(&text, vec![b'x'; 4096]).unwrap();
    for (file, says) in [
        (
            &tarball,
            "is compressed (gzip or zstd), not an etcd database",
        ),
        (&text, "is not an etcd database (no bbolt magic"),
        (&t.path().join("missing.db"), "No such file or directory"),
        (&t.path().to_path_buf(), "not a regular file"),
    ] {
        let out = run(tool("etcd2-snapshot")
            .arg("--from-file")
            .arg(file)
            .arg("-o")
            .arg(&out_file));
        let line = assert_fails_with(&out, "etcd2-snapshot", says);
        assert!(line.contains(&file.display().to_string()), "{line}");
        assert!(!out_file.exists(), "{says}: left {out_file:?}");
    }
}

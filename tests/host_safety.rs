//! "The tools never harm the host": wipe and restore pointed at the wrong
//! directory, links planted in a data dir, the data dir found the same way by
//! every tool.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use harness::etcd::Cluster;
use harness::{assert_fails_with, assert_fails_with_code, run, run_ok, tool};

/// Every entry below `dir` (links not followed): mode, owner, and content.
fn state(dir: &Path) -> BTreeMap<String, (u32, u32, u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, u32, u32, Vec<u8>)>) {
        let m = std::fs::symlink_metadata(dir).unwrap();
        let rel = dir.strip_prefix(root).unwrap().display().to_string();
        let content = if m.is_file() {
            std::fs::read(dir).unwrap()
        } else if m.file_type().is_symlink() {
            std::fs::read_link(dir)
                .unwrap()
                .display()
                .to_string()
                .into_bytes()
        } else {
            vec![]
        };
        out.insert(rel, (m.mode(), m.uid(), m.gid(), content));
        if m.is_dir() {
            for e in std::fs::read_dir(dir).unwrap() {
                walk(root, &e.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A stand-in for /tmp or /var/lib: other users' files, open modes.
fn foreign_dir(base: &Path, with_member: bool) -> std::path::PathBuf {
    let d = base.join("not-etcd");
    std::fs::create_dir_all(d.join("someone/.cache")).unwrap();
    std::fs::write(d.join("someone/notes.txt"), b"mine").unwrap();
    std::fs::write(d.join("report.pdf"), b"%PDF").unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    nix::unistd::chown(
        &d.join("someone"),
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    if with_member {
        std::fs::create_dir_all(d.join("member/wal")).unwrap();
    }
    d
}

#[test]
fn wipe_and_restore_refuse_a_directory_that_is_not_an_etcd_data_dir() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    for with_member in [false, true] {
        let base = c.path().join(format!("case-{with_member}"));
        let d = foreign_dir(&base, with_member);
        let before = state(&d);
        let out = run(tool("etcd2-wipe").arg(&d));
        let line = assert_fails_with(&out, "etcd2-wipe", "not an etcd data dir");
        assert!(
            line.contains("report.pdf") && line.contains("someone"),
            "{line}"
        );
        assert_eq!(state(&d), before, "wipe changed {}", d.display());
        let out = run(&mut harness::restore_into(&d, &archive));
        assert_fails_with(&out, "etcd2-restore", "not an etcd data dir");
        assert_eq!(state(&d), before, "restore changed {}", d.display());
    }
}

#[test]
fn a_link_planted_in_the_data_dir_never_changes_its_target() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    // A root-only file outside, and a data dir whose member/ (writable by
    // the etcd user in real life) holds a link to it.
    let secret = c.path().join("shadow");
    std::fs::write(&secret, b"root only").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let owner = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    let want = owner(&secret);
    for step in ["wipe", "restore"] {
        let data = c.path().join(format!("data-{step}"));
        std::fs::create_dir_all(data.join("member/wal")).unwrap();
        std::os::unix::fs::symlink(&secret, data.join("member/wal/evil")).unwrap();
        std::os::unix::fs::symlink(c.path(), data.join("member/up")).unwrap();
        if step == "wipe" {
            run_ok(tool("etcd2-wipe").arg(&data));
        } else {
            run_ok(&mut harness::restore_into(&data, &archive));
        }
        assert_eq!(owner(&secret), want, "{step} changed the link's target");
        assert_eq!(
            owner(c.path()),
            (0, 0, owner(c.path()).2),
            "{step} chowned a directory outside the data dir"
        );
    }
}

#[test]
fn wipe_finds_the_data_dir_like_every_tool_flag_env_default() {
    // No argument, ETCD_DATA_DIR set: CoreOS keeps it in etcd2.service.
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("etcd2");
    std::fs::create_dir_all(data.join("member/wal")).unwrap();
    run_ok(tool("etcd2-wipe").env("ETCD_DATA_DIR", &data));
    assert!(!data.join("member").exists());
    // Neither: the documented default, named in the error when it is absent.
    let out = run(&mut tool("etcd2-wipe"));
    if !Path::new("/var/lib/etcd2").exists() {
        assert_fails_with(&out, "etcd2-wipe", "/var/lib/etcd2");
    }
    let help = run(tool("etcd2-wipe").arg("--help"));
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("default: /var/lib/etcd2"),
        "--help names the default"
    );
}

const MID: &str = "c0000000000000000000000000000001";

/// Secret canaries in a connection-string endpoint, in rclone flags given as
/// a flag and through the environment: never printed, at any verbosity, in
/// any error, nor by --help.
#[test]
fn secrets_never_reach_stderr_stdout_or_help() {
    use harness::rclone::Remote;
    use harness::Env;
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let mut remote = Remote::s3(c.path());
    let env = Env::new(c.path());
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    // Shapes real secrets have: a quoted value holding , and : (AWS secrets
    // hold / and +, rclone's obscured passwords may start with -).
    let canaries = ["AKIDCANARY1", "RET:CANARY2", "TOKENCANARY3", "PASSCANARY4"];
    let port = remote
        .rclone(&["config", "show"])
        .stdout
        .split(|b| *b == b'\n')
        .find_map(|l| {
            let l = String::from_utf8_lossy(l);
            l.strip_prefix("endpoint = ").map(str::to_owned)
        })
        .expect("moto endpoint in the test config");
    let endpoint = format!(
        ":s3,provider=Other,endpoint='{port}',access_key_id={},secret_access_key='SEC,{}',force_path_style=true:etcd-backups/etcd",
        canaries[0], canaries[1]
    );
    let empty_conf = c.path().join("empty-rclone.conf");
    std::fs::write(&empty_conf, "").unwrap();
    let work = env.work.clone();
    let with = |mut cmd: std::process::Command| {
        cmd.env_remove("AWS_CA_BUNDLE")
            .env("ETCD2_BACKUP_MACHINE_ID", MID)
            .env("ETCD_BACKUP_DIR", &work)
            .env("ETCD2_BACKUP_LOCK", work.join("push.lock"))
            .env("RCLONE_ENDPOINT", &endpoint)
            .env("RCLONE_CONFIG_PATH", &empty_conf)
            .env(
                "ETCD2_BACKUP_RCLONE_FLAGS",
                format!("--sftp-pass=-{} --retries=1", canaries[3]),
            )
            .arg(format!("--rclone-flag=--s3-session-token={}", canaries[2]));
        cmd
    };
    let check = |what: &str, out: &std::process::Output| {
        for stream in [&out.stderr, &out.stdout] {
            let text = String::from_utf8_lossy(stream);
            for canary in canaries {
                assert!(!text.contains(canary), "{what} printed {canary}:\n{text}");
            }
        }
    };
    for verbosity in ["-q", "-v", "-vv"] {
        let out = run(with(tool("etcd2-push")).arg(verbosity).arg(&archive));
        check(&format!("push {verbosity}"), &out);
        assert!(out.status.success());
    }
    let out = run(with(tool("etcd2-push")).arg(&archive));
    check("push", &out);
    assert!(out.status.success());
    let out = run(with(tool("etcd2-fetch")).args(["-vv", "--list"]));
    check("fetch --list -vv", &out);
    assert!(out.status.success());
    // Failures: a generation that does not exist, a server that is gone.
    let out = run(with(tool("etcd2-fetch")).args([
        "-vv",
        "--generation",
        "20200101T000000.000Z-00",
        "-o",
        "/dev/null",
    ]));
    check("fetch of a missing generation", &out);
    assert_eq!(out.status.code(), Some(1));
    remote.stop_server();
    for (name, extra) in [
        ("etcd2-push", archive.display().to_string()),
        ("etcd2-fetch", "--list".into()),
    ] {
        for verbosity in ["-q", "-v"] {
            let out = run(with(tool(name))
                .arg(verbosity)
                .args([
                    "--rclone-flag=--contimeout=1s",
                    "--rclone-flag=--low-level-retries=1",
                ])
                .arg(&extra));
            check(&format!("{name} {verbosity} against a dead server"), &out);
            assert_eq!(
                out.status.code(),
                Some(5),
                "{name} must fail: the remote is gone"
            );
        }
    }
    for name in ["etcd2-push", "etcd2-fetch", "etcd2-snapshot"] {
        let mut cmd = tool(name);
        cmd.env("RCLONE_ENDPOINT", &endpoint).env(
            "ETCD2_BACKUP_RCLONE_FLAGS",
            format!("--sftp-pass=-{} --retries=1", canaries[3]),
        );
        let out = run(cmd.arg("--help"));
        assert!(out.status.success());
        check(&format!("{name} --help"), &out);
    }
}

/// A member holding `mib` MiB of incompressible v3 data.
pub(crate) fn cluster_with_data(mib: usize) -> Cluster {
    use std::io::Write;
    let c = Cluster::start(1);
    for k in 0..mib {
        let mut put = c
            .etcdctl(0, "3")
            .args(["put", &format!("/big/{k}")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut v = vec![0u8; 1 << 20];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut v))
            .unwrap();
        // etcdctl reads a value from stdin as text: keep it printable.
        let v: Vec<u8> = v.iter().map(|b| b'a' + b % 26).collect();
        put.stdin.take().unwrap().write_all(&v).unwrap();
        assert!(put.wait().unwrap().success());
    }
    c
}

fn entries_named(dir: &Path, prefix: &str) -> Vec<String> {
    harness::names(dir)
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn stop(mut child: std::process::Child, sig: nix::sys::signal::Signal) -> std::process::ExitStatus {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
    child.wait().unwrap()
}

#[test]
fn snapshot_and_fetch_stopped_or_killed_leave_nothing_the_rerun_cannot_sweep() {
    use nix::sys::signal::Signal::{SIGKILL, SIGTERM};
    use std::os::unix::process::ExitStatusExt;
    let c = cluster_with_data(3);
    let remote = harness::rclone::Remote::local(c.path());
    let env = harness::Env::new(c.path());
    let archive = c.path().join("a.tar.zst");
    let snap = |work: &Path| {
        let mut cmd = tool("etcd2-snapshot");
        cmd.env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", work)
            .args(["--api", "v3", "-o"])
            .arg(&archive);
        cmd
    };
    run_ok(&mut snap(&c.path().join("plain-work")));
    let db_size = {
        let out = run_ok(Command::new("sh").arg("-c").arg(format!(
            "tar --zstd -xOf {} snapshot.db | wc -c",
            archive.display()
        )));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    // Room for one run's scratch, not for a second beside a killed one's.
    let small = db_size + db_size / 2;

    // etcd2-snapshot --api v3 stages nothing: the snapshot streams from
    // etcd into the archive. A work dir far smaller than the db does, and
    // a stop mid-stream leaves no scratch to sweep.
    let work = c.path().join("snap-tmpfs");
    let _fs = harness::Tmpfs::mount(&work, 64 << 10);
    assert!(db_size > 1 << 20, "the db outgrows the work dir: {db_size}");
    for sig in [SIGTERM, SIGKILL] {
        let st = stop(
            harness::spawn_at_fault(&mut snap(&work), "snapshot-streaming"),
            sig,
        );
        assert!(!st.success(), "{sig:?}: {st:?}");
        assert!(
            entries_named(&work, "etcd2-snapshot.").is_empty(),
            "{sig:?} left scratch"
        );
    }
    run_ok(&mut snap(&work));
    assert!(
        entries_named(&work, "etcd2-snapshot.").is_empty(),
        "a v3 snapshot leaves nothing in the work dir"
    );

    // etcd2-fetch --into, stopped with the extracted backup in staging.
    run_ok(env.push(&remote, MID).arg(&archive));
    let dest = c.path().join("fetch-tmpfs");
    let _fs2 = harness::Tmpfs::mount(&dest, small);
    let into = dest.join("restored");
    let fetch = || {
        let mut cmd = env.fetch(&remote, MID);
        cmd.arg("--into").arg(&into);
        cmd
    };
    let st = stop(
        harness::spawn_at_fault(&mut fetch(), "fetch-staged"),
        SIGTERM,
    );
    assert_eq!(st.code(), Some(143));
    assert!(
        entries_named(&dest, ".restored.fetch").is_empty(),
        "SIGTERM left staging"
    );
    let st = stop(
        harness::spawn_at_fault(&mut fetch(), "fetch-staged"),
        SIGKILL,
    );
    assert_eq!(st.signal(), Some(9));
    assert_eq!(entries_named(&dest, ".restored.fetch").len(), 1);
    run_ok(&mut fetch());
    assert_eq!(
        harness::names(&dest),
        vec!["restored"],
        "only the placed backup is left"
    );
}

#[test]
fn restore_stopped_or_killed_leaves_no_temporary_etcd_and_no_staging() {
    use nix::sys::signal::Signal::{SIGKILL, SIGTERM};
    let c = Cluster::start(1);
    c.put_v2(0, "/a", "1");
    let archive = c.path().join("v2.tar.zst");
    c.snapshot_to(0, "v2", &archive);
    let data = c.path().join("restore-data");
    let restore = || harness::restore_into(&data, &archive);
    let needle = data.display().to_string();
    for sig in [SIGTERM, SIGKILL] {
        let child = harness::spawn_at_fault(&mut restore(), "restore-etcd-started");
        let pid = child.id();
        assert!(
            harness::procs_mentioning(&needle).iter().any(|p| *p != pid),
            "the temporary etcd runs (the test bites)"
        );
        stop(child, sig);
        harness::wait_for(
            &format!("the temporary etcd to die after {sig}"),
            std::time::Duration::from_secs(10),
            || harness::procs_mentioning(&needle).is_empty().then_some(()),
        );
        let staging = entries_named(&data, ".restore.");
        if sig == SIGTERM {
            assert!(staging.is_empty(), "SIGTERM left {staging:?}");
        }
    }
    run_ok(&mut restore());
    assert!(
        entries_named(&data, ".restore.").is_empty(),
        "the rerun swept the staging"
    );
    assert!(data.join("member/wal").is_dir());
}

/// A webdav remote at `port` (nothing there, or our stalling listener).
fn webdav_conf(dir: &Path, port: u16) -> std::path::PathBuf {
    let conf = dir.join(format!("webdav-{port}.conf"));
    std::fs::write(
        &conf,
        format!("[backup]\ntype = webdav\nurl = http://127.0.0.1:{port}\nvendor = other\n"),
    )
    .unwrap();
    conf
}

/// Our tools with a remote and none of the test suite's quick-fail rclone
/// flags: the defaults are what is tested.
fn with_remote(mut cmd: Command, conf: &Path, work: &Path) -> Command {
    cmd.env("RCLONE_ENDPOINT", "backup:etcd")
        .env("RCLONE_CONFIG_PATH", conf)
        .env("ETCD2_BACKUP_MACHINE_ID", MID)
        .env("ETCD_BACKUP_DIR", work)
        .env("ETCD2_BACKUP_LOCK", work.join("push.lock"));
    cmd
}

#[test]
fn a_refused_or_stalled_remote_fails_within_its_documented_bound_naming_the_cause() {
    let d = tempfile::tempdir().unwrap();
    let work = d.path().join("work");
    // Nothing listens on this port: connection refused.
    let refused = webdav_conf(d.path(), harness::free_port());
    let started = std::time::Instant::now();
    let out = run(with_remote(tool("etcd2-fetch"), &refused, &work).arg("--list"));
    let took = started.elapsed();
    let line = assert_fails_with_code(&out, "etcd2-fetch", 5, "connection refused");
    // The documented default bound on a metadata call is --remote-timeout
    // 60s; rclone's own retries used to take 205 s to say it.
    assert!(
        took < std::time::Duration::from_secs(60),
        "gave up after {took:?}, past the 60s --remote-timeout default: {line}"
    );

    // A server that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().take(64) {
            held.push(s);
        }
    });
    let stalled = webdav_conf(d.path(), port);
    let archive = d.path().join("a.tar.zst");
    {
        let c = Cluster::start(1);
        c.put_v3(0, "/a", "1");
        run_ok(
            tool("etcd2-snapshot")
                .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
                .env("ETCD_BACKUP_DIR", &work)
                .args(["--api", "v3", "-o"])
                .arg(&archive),
        );
    }
    let started = std::time::Instant::now();
    let out = run(with_remote(tool("etcd2-push"), &stalled, &work)
        .args(["--stall-timeout", "2s", "--remote-timeout", "20s"])
        .arg(&archive));
    let took = started.elapsed();
    let line = assert_fails_with_code(&out, "etcd2-push", 5, "--stall-timeout");
    assert!(
        took < std::time::Duration::from_secs(20),
        "a stalled upload took {took:?}: {line}"
    );
    // Metadata calls are bounded by --remote-timeout, named when hit.
    let out = run(with_remote(tool("etcd2-fetch"), &stalled, &work).args([
        "--stall-timeout",
        "30s",
        "--remote-timeout",
        "2s",
        "--list",
    ]));
    assert_fails_with_code(&out, "etcd2-fetch", 5, "--remote-timeout");
}

// ---- Wrong causes and panics: one test each -------------------------------

#[test]
fn a_full_disk_during_a_snapshot_is_named_as_such() {
    // A v3 snapshot stages nothing in the work dir (it streams from etcd
    // into the archive): the disk that fills is the output's.
    let c = cluster_with_data(3);
    let tiny = c.path().join("tiny");
    let _fs = harness::Tmpfs::mount(&tiny, 1 << 20);
    let out = run(tool("etcd2-snapshot")
        .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
        .env("ETCD_BACKUP_DIR", c.path().join("work"))
        .args(["--api", "v3", "-o"])
        .arg(tiny.join("a.tar.zst")));
    let line = assert_fails_with(&out, "etcd2-snapshot", "No space left on device");
    assert!(line.contains("a.tar.zst"), "{line}");
    assert!(!line.contains("cannot reach etcd"), "{line}");
    assert!(
        harness::names(&tiny).is_empty(),
        "{:?}",
        harness::names(&tiny)
    );
}

#[test]
fn an_unreadable_data_dir_is_named_as_unreadable() {
    let c = Cluster::start(1);
    c.put_v2(0, "/a", "1");
    // Traversable by anyone down to the data dir; member/ root-only.
    let top = tempfile::Builder::new()
        .prefix("unreadable")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = top.path().join("data");
    std::fs::create_dir_all(data.join("member/wal")).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("member"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let work = top.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = Command::new(harness::require("setpriv", "util-linux"));
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(harness::bin("etcd2-snapshot"))
        .env_remove("ETCDCTL_API")
        .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
        .env("ETCD_DATA_DIR", &data)
        .env("ETCD_BACKUP_DIR", &work)
        .args(["--api", "v2", "-o"])
        .arg(work.join("a.tar.zst"));
    let out = run(&mut cmd);
    let line = assert_fails_with(&out, "etcd2-snapshot", "ermission denied");
    assert!(line.contains(&data.display().to_string()), "{line}");
    assert!(!line.contains("wrong ETCD_DATA_DIR"), "{line}");
}

#[test]
fn an_endpoint_that_is_neither_a_remote_nor_an_absolute_path_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let archive = d.path().join("a.tar.zst");
    std::fs::write(&archive, b"x").unwrap();
    for (tool_name, extra) in [
        ("etcd2-push", vec![archive.display().to_string()]),
        ("etcd2-fetch", vec!["--list".into()]),
    ] {
        let out = run(tool(tool_name)
            .current_dir(d.path())
            .env("RCLONE_ENDPOINT", "s3bucket/etcd-backups")
            .env("ETCD2_BACKUP_MACHINE_ID", MID)
            .env("ETCD_BACKUP_DIR", d.path().join("work"))
            .env("ETCD2_BACKUP_LOCK", d.path().join("lock"))
            .args(&extra));
        assert_fails_with(&out, tool_name, "s3bucket/etcd-backups");
        assert_eq!(out.status.code(), Some(1));
        assert!(
            !d.path().join("s3bucket").exists(),
            "{tool_name} wrote into a relative dir"
        );
    }
}

#[test]
fn a_download_that_times_out_is_not_called_a_failed_verification() {
    use std::io::Read;
    let c = Cluster::start(1);
    // Hard to compress: about 130 KB of archive, 13 s at 10 KiB/s.
    let mut rnd = std::fs::File::open("/dev/urandom").unwrap();
    for k in 0..8 {
        let mut b = vec![0u8; 16 << 10];
        rnd.read_exact(&mut b).unwrap();
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        c.put_v3(0, &format!("/big{k}"), &hex);
    }
    let remote = harness::rclone::Remote::local(c.path());
    let env = harness::Env::new(c.path());
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    run_ok(env.push(&remote, MID).arg(&archive));
    // The archive's download crawls (rclone's own --bwlimit, through the
    // run's rcd) or hangs (an `rclone cat` child); everything else is
    // real rclone.
    let wrapper = c.path().join("rclone-slow-download");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\ncase \" $* \" in *' cat '*.tar.*) exec sleep 30;; *' rcd '*) exec rclone \"$@\" --bwlimit 10k;; esac\nexec rclone \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(env
        .fetch(&remote, MID)
        .env("ETCD2_BACKUP_RCLONE", &wrapper)
        .args(["--transfer-timeout", "2s", "-o"])
        .arg(c.path().join("out.tar.zst")));
    let line = assert_fails_with_code(&out, "etcd2-fetch", 5, "--transfer-timeout");
    assert!(!line.contains("failed verification"), "{line}");
}

#[test]
fn a_closed_stdout_is_not_a_failure_and_never_a_panic() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let remote = harness::rclone::Remote::local(c.path());
    let env = harness::Env::new(c.path());
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    run_ok(env.push(&remote, MID).arg(&archive));
    for args in [vec!["--list"], vec!["--list", "--json"]] {
        // `etcd2-fetch --list | head -0`: the reader is gone before we write.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env
            .fetch(&remote, MID)
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn an_absurd_wait_is_a_usage_error_not_a_panic() {
    for (name, flag) in [
        ("etcd2-push", "--lock-wait"),
        ("etcd2-health", "--wait"),
        ("etcd2-member-add", "--wait"),
        ("etcd2-restore", "--wait"),
    ] {
        let out = run(tool(name).args([flag, "1000000000d", "--help"]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {flag}: {err}");
        assert!(
            err.contains(flag) && !err.contains("panicked"),
            "{name}: {err}"
        );
    }
    // And at run time, where the old code overflowed an Instant.
    let d = tempfile::tempdir().unwrap();
    let out = run(tool("etcd2-push")
        .env("RCLONE_ENDPOINT", d.path())
        .env("ETCD2_BACKUP_MACHINE_ID", MID)
        .env("ETCD2_BACKUP_LOCK", d.path().join("lock"))
        .args(["--lock-wait", "1000000000d"])
        .arg(d.path().join("missing.tar.zst")));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    assert_ne!(out.status.code(), Some(101), "a panic");
}

#[test]
fn an_oversized_sidecar_is_reported_damaged_without_being_read_whole() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let remote = harness::rclone::Remote::local(c.path());
    let env = harness::Env::new(c.path());
    for i in 0..2 {
        let archive = c.path().join(format!("{i}.tar.zst"));
        c.snapshot_to(0, "v3", &archive);
        run_ok(env.push(&remote, MID).arg(&archive));
    }
    let gens = remote.machine_dir(MID).join("generations");
    let oldest = harness::names(&gens)
        .into_iter()
        .find(|n| n.ends_with(".json"))
        .unwrap();
    // 64 MiB of spaces then a brace: valid-looking JSON start, huge.
    let f = std::fs::File::create(gens.join(&oldest)).unwrap();
    f.set_len(64 << 20).unwrap();
    let out = run_ok(env.fetch(&remote, MID).args(["--list", "--json"]));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let damaged = rows[0]["damaged"].as_str().unwrap_or_default().to_owned();
    assert!(damaged.contains("larger than"), "{rows}");
}

#[test]
fn push_stopped_or_killed_leaves_nothing_locally_and_publishes_nothing() {
    use nix::sys::signal::Signal::{SIGKILL, SIGTERM};
    use std::io::Write;
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let remote = harness::rclone::Remote::local(c.path());
    let env = harness::Env::new(c.path());
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    let local_files = || -> Vec<String> {
        harness::names(&env.work)
            .into_iter()
            .filter(|n| n != "push.lock")
            .collect()
    };
    // Killed while spooling stdin (the producer still writing).
    let mut push = env
        .push(&remote, MID)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = push.stdin.take().unwrap();
    stdin
        .write_all(&std::fs::read(&archive).unwrap()[..100])
        .unwrap();
    harness::wait_for(
        "push to start spooling",
        std::time::Duration::from_secs(10),
        || {
            std::fs::read_to_string(format!("/proc/{}/wchan", push.id()))
                .ok()
                .filter(|w| w.contains("pipe"))
                .map(|_| ())
        },
    );
    stop(push, SIGKILL);
    drop(stdin);
    assert!(local_files().is_empty(), "SIGKILL left {:?}", local_files());
    // Stopped after its upload, before its sidecar: nothing published.
    let child = harness::spawn_at_fault(env.push(&remote, MID).arg(&archive), "after-upload");
    assert_eq!(stop(child, SIGTERM).code(), Some(143));
    assert!(local_files().is_empty(), "SIGTERM left {:?}", local_files());
    assert!(
        !remote.machine_dir(MID).join("LATEST.json").exists(),
        "a stopped push published"
    );
    // And the next push goes through.
    run_ok(env.push(&remote, MID).arg(&archive));
    assert!(remote.machine_dir(MID).join("LATEST.json").exists());
}

#[test]
fn a_restore_stopped_at_the_swap_keeps_the_old_member_data() {
    use nix::sys::signal::Signal::{SIGKILL, SIGTERM};
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    for sig in [SIGTERM, SIGKILL] {
        let data = c.path().join(format!("data-{sig}"));
        std::fs::create_dir_all(data.join("member/wal")).unwrap();
        std::fs::write(data.join("member/wal/precious"), b"the old member").unwrap();
        let child = harness::spawn_at_fault(
            &mut harness::restore_into(&data, &archive),
            "restore-swapped",
        );
        stop(child, sig);
        // And a later run, which sweeps stale scratch.
        run_ok(harness::restore_into(&data, &archive).args(["--keep-aside", "5"]));
        let kept = harness::names(&data)
            .into_iter()
            .any(|n| std::fs::read(data.join(&n).join("wal/precious")).is_ok());
        assert!(
            kept,
            "{sig} at the swap lost the old member: {:?}",
            harness::names(&data)
        );
    }
}

#[test]
fn a_data_dir_given_as_a_link_is_owned_by_etcd_through_the_link() {
    // /var/lib/etcd2 -> /data/etcd2 is common; etcd must own the real dir.
    let Ok(Some(etcd)) = nix::unistd::User::from_name("etcd") else {
        panic!("no etcd user: Debian's etcd-server package creates it (make test installs it)");
    };
    let d = tempfile::tempdir().unwrap();
    let real = d.path().join("real-etcd2");
    std::fs::create_dir_all(real.join("member/wal")).unwrap();
    let link = d.path().join("etcd2");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    run_ok(tool("etcd2-wipe").arg(&link));
    let m = std::fs::metadata(&real).unwrap();
    assert_eq!(m.uid(), etcd.uid.as_raw(), "the real data dir is etcd's");
    assert_eq!(m.mode() & 0o777, 0o700);
}

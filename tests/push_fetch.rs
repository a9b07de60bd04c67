//! etcd2-push and etcd2-fetch against real rclone remotes (local and
//! `rclone serve sftp` on loopback) and real etcd members.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::etcd::{self, Cluster};
use harness::rclone::{Backend, Remote, QUICK_FAIL};
use harness::{
    assert_fails_with, assert_fails_with_code, free_port, names, pipe_ok, run, run_ok, setup, tool,
    wait_for, Env, Published,
};

const OLD: &str = "0000000000000000000000000000000a";
const NEW: &str = "0000000000000000000000000000000b";

/// Start a member from fetched data: v3 via `snapshot restore`, v2 via
/// --force-new-cluster. Returns the member (stopped on drop).
fn start_from(dir: &Path, data: &Path) -> etcd::Member {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("manifest.json")).unwrap()).unwrap();
    let pp = free_port();
    let peer = format!("http://127.0.0.1:{pp}");
    let (data_dir, extra) = if manifest["api"] == "v3" {
        let restored = dir.join("restored");
        run_ok(
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["snapshot", "restore"])
                .arg(data.join("snapshot.db"))
                .arg("--data-dir")
                .arg(&restored)
                .args(["--name", "r1", "--initial-cluster", &format!("r1={peer}")])
                .args(["--initial-advertise-peer-urls", &peer]),
        );
        (restored, vec![])
    } else {
        std::fs::remove_file(data.join("manifest.json")).unwrap();
        (data.to_path_buf(), vec!["--force-new-cluster".to_owned()])
    };
    etcd::start_alone(dir, data_dir, pp, extra)
}

#[test]
fn v3_round_trip_over_sftp_restores_the_keys() {
    let (c, remote, env) = setup(Backend::Sftp);
    for k in 0..10 {
        c.put_v3(0, &format!("k{k}"), &format!("v{k}"));
    }
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    let out = run_ok(env.push(&remote, OLD).arg(&archive));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("remote copy verified (size and sha1)"),
        "{err}"
    );
    assert!(!err.contains("test-password"), "secrets must not be logged");

    let into = c.path().join("fetched");
    run_ok(env.fetch(&remote, OLD).arg("--into").arg(&into));
    assert_eq!(names(&into), vec!["manifest.json", "snapshot.db"]);
    let m = start_from(c.path(), &into);
    for k in 0..10 {
        assert_eq!(
            etcd::get_v3_at(&m.client_url, &[], &format!("k{k}")),
            Some(format!("v{k}"))
        );
    }
}

#[test]
fn v2_pipeline_round_trip_and_migration_with_fetch_push() {
    let (c, remote, env) = setup(Backend::Local);
    for k in 0..5 {
        c.put_v2(0, &format!("/old/k{k}"), &format!("v{k}"));
    }
    // etcd2-snapshot -o - | etcd2-push -
    let mut snap = c.snapshot(0);
    snap.args(["-o", "-"]);
    let mut push = env.push(&remote, OLD);
    push.arg("-");
    pipe_ok(snap, push);
    assert_eq!(remote.complete(OLD).len(), 1);

    // Migration: etcd2-fetch --machine-id OLD -o - | etcd2-push --machine-id NEW -
    let mut fetch = env.fetch(&remote, OLD);
    fetch.args(["-o", "-"]);
    let mut push = env.push(&remote, NEW);
    push.arg("-");
    pipe_ok(fetch, push);
    assert_eq!(
        remote.pointer(NEW).expect("LATEST.json").json["sha256"],
        remote.pointer(OLD).expect("LATEST.json").json["sha256"]
    );

    let into = c.path().join("migrated");
    run_ok(env.fetch(&remote, NEW).arg("--into").arg(&into));
    let m = start_from(c.path(), &into);
    for k in 0..5 {
        assert_eq!(
            etcd::get_v2_at(&m.client_url, &format!("/old/k{k}")),
            Some(format!("v{k}"))
        );
    }
}

/// Start a push that pauses at a fault point, wait for it to get there.
fn push_paused_at(env: &Env, remote: &Remote, mid: &str, archive: &Path, point: &str) -> Child {
    let mut cmd = env.push(remote, mid);
    // --keep 1 so that retention has something to delete.
    cmd.env("ETCD2_BACKUP_FAULT_PAUSE", point)
        .args(["--keep", "1"])
        .arg(archive)
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("fault-point:") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("push never reached {point}"));
    child
}

fn assert_fetch_verifies(env: &Env, remote: &Remote, mid: &str, expect_gen: &str, tag: &str) {
    let out = run_ok(
        env.fetch(remote, mid)
            .arg("--into")
            .arg(env.work.join(format!("check-{tag}"))),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("generation {expect_gen} verified")),
        "{tag}: {err}"
    );
}

#[test]
fn sigkill_at_every_step_leaves_a_whole_backup_and_the_next_push_cleans_up() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "k", "v");
    let archive = env.publish(&c, &remote, OLD).archive;
    run_ok(env.push(&remote, OLD).arg(&archive));

    for point in [
        "after-upload",
        "before-pointer",
        "after-pointer",
        "retention",
    ] {
        let before = remote.latest(OLD).expect("LATEST.json");
        let mut child = push_paused_at(&env, &remote, OLD, &archive, point);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let now = remote.latest(OLD).expect("LATEST.json");
        if point == "after-pointer" || point == "retention" {
            assert_ne!(
                now, before,
                "{point}: the pointer had moved before the kill"
            );
        } else {
            assert_eq!(
                now, before,
                "{point}: the pointer moved before verification"
            );
        }
        assert_fetch_verifies(&env, &remote, OLD, &now, point);

        // The next push succeeds and leaves only complete generations.
        run_ok(env.push(&remote, OLD).args(["--keep", "2"]).arg(&archive));
        let files = remote.generations(OLD);
        let ids = remote.complete(OLD);
        assert_eq!(ids.len(), 2, "{point}: {files:?}");
        assert_eq!(files.len(), 4, "{point}: orphans left: {files:?}");
    }
}

#[test]
fn sigkill_during_upload_and_sftp_server_stopped_mid_upload() {
    let (c, mut remote, env) = setup(Backend::Sftp);
    // ~6 MB of poorly compressible data, uploaded at 1 MiB/s.
    let f = c.path().join("val");
    let mut seed = 7u64;
    let val: String = (0..1_000_000)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (b'!' + ((seed >> 33) % 90) as u8) as char
        })
        .collect();
    std::fs::write(&f, &val).unwrap();
    for k in 0..6 {
        let mut put = c.etcdctl(0, "3");
        put.args(["put", &format!("big{k}")])
            .stdin(std::fs::File::open(&f).unwrap());
        run_ok(&mut put);
    }
    let Published {
        archive,
        generation: first,
    } = env.publish(&c, &remote, OLD);
    let gens = remote.machine_dir(OLD).join("generations");

    for stop_server in [false, true] {
        let mut cmd = env.push(&remote, OLD);
        cmd.env(
            "ETCD2_BACKUP_RCLONE_FLAGS",
            format!("{QUICK_FAIL} --bwlimit=1M"),
        )
        .arg(&archive)
        .stderr(Stdio::piped());
        let before = names(&gens);
        let mut child = cmd.spawn().unwrap();
        // Wait until a new archive is arriving on the server.
        wait_for("the upload to start", Duration::from_secs(30), || {
            names(&gens)
                .iter()
                .any(|n| n.contains(".tar.") && !before.contains(n))
                .then_some(())
        });
        if stop_server {
            remote.stop_server();
            let out = child.wait_with_output().unwrap();
            assert_fails_with(&out, "etcd2-push", "uploading to");
            remote.start_server();
        } else {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        assert_eq!(remote.latest(OLD).expect("LATEST.json"), first);
        assert_fetch_verifies(&env, &remote, OLD, &first, &format!("stop{stop_server}"));
    }
    run_ok(env.push(&remote, OLD).arg(&archive));
    let files = remote.generations(OLD);
    assert_eq!(
        files.len(),
        4,
        "orphans of the interrupted uploads remain: {files:?}"
    );
}

#[test]
fn corrupt_or_truncated_remote_archive_is_refused_and_dir_untouched() {
    let (c, remote, env) = setup(Backend::Local);
    for k in 0..50 {
        c.put_v3(0, &format!("key{k}"), &"x".repeat(200));
    }
    let archive = c.path().join("a.tar.gz");
    run_ok(
        c.snapshot(0)
            .args(["--codec", "gzip", "--level", "0", "-o"])
            .arg(&archive),
    );
    run_ok(env.push(&remote, OLD).arg(&archive));
    let p = remote.pointer(OLD).expect("LATEST.json").json;
    let gen = p["generation"].as_str().unwrap().to_owned();
    let remote_file = remote
        .machine_dir(OLD)
        .join("generations")
        .join(p["archive"].as_str().unwrap());
    let good = std::fs::read(&remote_file).unwrap();

    let into = c.path().join("target");
    std::fs::create_dir_all(&into).unwrap();
    let mut flipped = good.clone();
    let i = flipped.len() / 2;
    flipped[i] ^= 0x40;
    for (what, bytes) in [
        ("flipped", flipped),
        ("truncated", good[..good.len() * 2 / 3].to_vec()),
    ] {
        std::fs::write(&remote_file, &bytes).unwrap();
        let out = run(env.fetch(&remote, OLD).arg("--into").arg(&into));
        let line = assert_fails_with(&out, "etcd2-fetch", &format!("generation {gen}"));
        assert!(
            line.contains("does not match")
                || line.contains("sha256")
                || line.contains("truncated")
                || line.contains("corrupt"),
            "{what}: {line}"
        );
        assert!(
            names(&into).is_empty(),
            "{what}: target was touched: {:?}",
            names(&into)
        );
        assert!(
            !names(c.path())
                .iter()
                .any(|n| n.starts_with(".target.fetch-")),
            "{what}: staging dir left behind"
        );
        let out_file = c.path().join("out.tar.gz");
        let out = run(env.fetch(&remote, OLD).arg("-o").arg(&out_file));
        assert_fails_with(&out, "etcd2-fetch", &format!("generation {gen}"));
        assert!(!out_file.exists(), "{what}: a bad archive was written");
    }
}

#[test]
fn retention_keeps_n_and_never_the_pointer_target() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "k", "v");
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    for _ in 0..5 {
        let out = run_ok(env.push(&remote, OLD).args(["--keep", "3"]).arg(&archive));
        // The local backend has sha256: the strongest hash is the one compared.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("remote copy verified (size and sha256)"),
            "{err}"
        );
    }
    let ids = remote.complete(OLD);
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(remote.latest(OLD).expect("LATEST.json"), ids[2]);

    // Point LATEST.json at the oldest kept generation by hand (as an
    // operator might after a bad backup): fetch honours it.
    let oldest = ids[0].clone();
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            remote
                .machine_dir(OLD)
                .join("generations")
                .join(format!("{oldest}.json")),
        )
        .unwrap(),
    )
    .unwrap();
    let mut p = remote.pointer(OLD).expect("LATEST.json").json;
    p["generation"] = oldest.clone().into();
    p["archive"] = side["archive"].clone();
    p["sha256"] = side["sha256"].clone();
    p["size"] = side["size"].clone();
    remote.set_pointer(OLD, &p);
    assert_fetch_verifies(&env, &remote, OLD, &oldest, "pointer");
    // (That retention spares the pointer's target whatever its age is
    // unit-tested on the plan: a push always moves the pointer first.)
    run_ok(env.push(&remote, OLD).args(["--keep", "2"]).arg(&archive));
    let after = remote.complete(OLD);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(remote.latest(OLD).expect("LATEST.json"), after[1]);

    // --list shows them, --json for scripts.
    let out = run_ok(env.fetch(&remote, OLD).args(["--list", "--json"]));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[1]["latest"], true);
    assert_eq!(rows[1]["api"], "v3");
    let out = run_ok(env.fetch(&remote, OLD).arg("--list"));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("GENERATION"), "{table}");
    assert!(table.contains("<- LATEST"), "{table}");
}

#[test]
fn concurrent_pushes_never_interleave() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "k", "v");
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    let mut first = push_paused_at(&env, &remote, OLD, &archive, "before-pointer");
    let out = run(env.push(&remote, OLD).arg(&archive));
    assert_fails_with_code(&out, "etcd2-push", 6, "locked: another etcd2-push");
    // A second push that waits gets its turn once the first is gone.
    let mut waiting = env.push(&remote, OLD);
    waiting
        .args(["--lock-wait", "30s"])
        .arg(&archive)
        .stderr(Stdio::null());
    let waiting = waiting.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    first.kill().unwrap();
    first.wait().unwrap();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        remote.complete(OLD).len(),
        1 + 1,
        "the killed push's generation is complete but unpublished"
    );
}

#[test]
fn another_members_pointer_is_refused_unless_forced() {
    let a = Cluster::start(1);
    let b = Cluster::start(1);
    a.put_v3(0, "k", "a");
    b.put_v3(0, "k", "b");
    let remote = Remote::local(a.path());
    let env = Env::new(a.path());
    let (aa, ba) = (a.path().join("a.tar.zst"), b.path().join("b.tar.zst"));
    a.snapshot_to(0, "v3", &aa);
    b.snapshot_to(0, "v3", &ba);
    // Both clusters' members are named e1 on this host; make b look cloned
    // from elsewhere by rewriting the pointer's host.
    run_ok(env.push(&remote, OLD).arg(&aa));
    let mut p = remote.pointer(OLD).expect("LATEST.json").json;
    p["host"] = "some-other-host".into();
    remote.set_pointer(OLD, &p);
    let out = run(env.push(&remote, OLD).arg(&ba));
    assert_fails_with_code(&out, "etcd2-push", 7, "share this machine-id");
    assert_eq!(
        remote.complete(OLD).len(),
        1,
        "nothing may be uploaded when refused"
    );
    run_ok(env.push(&remote, OLD).arg("--force").arg(&ba));
}

#[test]
fn configuration_mistakes_give_one_clear_line() {
    let base = tempfile::tempdir().unwrap();
    let remote = Remote::local(base.path());
    let env = Env::new(base.path());
    let archive = base.path().join("none.tar.zst");
    std::fs::write(&archive, b"not an archive").unwrap();

    let mut unknown = env.push(&remote, OLD);
    unknown.env("RCLONE_ENDPOINT", "nosuch:path").arg(&archive);
    assert_fails_with(&run(&mut unknown), "etcd2-push", "rclone remote \"nosuch\"");

    let mut missing = env.fetch(&remote, OLD);
    missing
        .env("RCLONE_CONFIG_PATH", base.path().join("missing.conf"))
        .arg("--list");
    assert_fails_with(
        &run(&mut missing),
        "etcd2-fetch",
        "missing.conf (RCLONE_CONFIG_PATH) is not readable",
    );

    let out = run(env
        .fetch(&remote, OLD)
        .arg("--into")
        .arg(base.path().join("x")));
    assert_fails_with_code(
        &out,
        "etcd2-fetch",
        4,
        &format!("no backup yet for machine-id {OLD}"),
    );

    let out = run(env.push(&remote, OLD).arg(&archive));
    assert_fails_with(&out, "etcd2-push", "is not a whole etcd2-backup archive");

    let mut empty = env.push(&remote, OLD);
    empty.arg("-").stdin(Stdio::null());
    assert_fails_with(&run(&mut empty), "etcd2-push", "stdin is empty");

    let mut bad_id = env.push(&remote, "../../etc");
    bad_id.arg(&archive);
    assert_fails_with(&run(&mut bad_id), "etcd2-push", "is not a machine-id");

    let out = run(tool("etcd2-push")
        .env("ETCD2_BACKUP_MACHINE_ID", OLD)
        .arg(&archive));
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing --remote is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--remote"));
    let help = run_ok(tool("etcd2-push").arg("--help"));
    assert!(String::from_utf8_lossy(&help.stdout).contains("env: RCLONE_ENDPOINT"));
}

#[test]
fn legacy_backup_written_like_the_original_is_fetched_as_unverified() {
    let (c, remote, env) = setup(Backend::Local);
    for k in 0..5 {
        c.put_v2(0, &format!("/legacy/k{k}"), &format!("v{k}"));
    }
    // What etcd2-backup.service did: etcdctl backup, then rclone copy.
    let b = c.path().join("legacy-backup");
    c.etcdctl_backup(0, &b);
    std::fs::write(b.join("member/snap/.marker"), b"").ok();
    run_ok(
        Command::new(&remote.bin)
            .arg("--config")
            .arg(&remote.config)
            .arg("copy")
            .arg(&b)
            .arg(format!("{}/{OLD}", remote.endpoint)),
    );
    let into = c.path().join("legacy-fetched");
    let out = run_ok(env.fetch(&remote, OLD).arg("--into").arg(&into));
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNVERIFIED legacy data"));
    // rclone copied it, under the test's umask (022): still private.
    let mut stack = vec![into.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            use std::os::unix::fs::PermissionsExt;
            let m = e.metadata().unwrap();
            let want = if m.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(
                m.permissions().mode() & 0o777,
                want,
                "{}",
                e.path().display()
            );
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    let m = start_from(c.path(), &into);
    for k in 0..5 {
        assert_eq!(
            etcd::get_v2_at(&m.client_url, &format!("/legacy/k{k}")),
            Some(format!("v{k}"))
        );
    }
    // And it converts into a verified generation: fetch -o | push.
    let mut fetch = env.fetch(&remote, OLD);
    fetch.args(["-o", "-"]);
    let mut push = env.push(&remote, NEW);
    push.arg("-");
    pipe_ok(fetch, push);
    assert_eq!(remote.complete(NEW).len(), 1);
}

#[test]
fn a_damaged_pointer_does_not_switch_the_owner_check_off() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "k", "a");
    let archive = env.publish(&c, &remote, OLD).archive;
    // The newest backup is another host's (a cloned machine-id), and
    // LATEST.json got damaged: the sidecar still tells whose backups these are.
    let gens = remote.machine_dir(OLD).join("generations");
    let side = names(&gens)
        .into_iter()
        .find(|n| n.ends_with(".json"))
        .unwrap();
    let mut sc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gens.join(&side)).unwrap()).unwrap();
    sc["manifest"]["host"] = "some-other-host".into();
    std::fs::write(gens.join(&side), serde_json::to_vec(&sc).unwrap()).unwrap();
    std::fs::write(remote.machine_dir(OLD).join("LATEST.json"), b"{damaged").unwrap();
    let out = run(env.push(&remote, OLD).arg(&archive));
    assert_fails_with_code(&out, "etcd2-push", 7, "share this machine-id");
    // --force publishes, and the pointer is whole again.
    run_ok(env.push(&remote, OLD).arg("--force").arg(&archive));
    let p = remote.pointer(OLD).expect("LATEST.json").json;
    assert!(p["generation"].is_string());
}

/// What an operator does in a root shell: nothing but the settings file
/// says where the backups are. `etcd2-fetch --list` finds them; the
/// environment beats the file; a file others may write is refused, one
/// others may read is warned about, a line systemd ignores is ignored with
/// a warning, and no value from it is printed.
#[test]
fn fetch_list_in_a_shell_reads_the_settings_file_and_the_environment_wins() {
    use std::os::unix::fs::PermissionsExt;
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "k", "v");
    let generation = env.publish(&c, &remote, OLD).generation;

    // The settings file as the installer writes it: NAME=value, 0600.
    let file = c.path().join("etcd2-backup.env");
    std::fs::write(
        &file,
        format!(
            "# the settings\nRCLONE_ENDPOINT={}\nRCLONE_CONFIG_PATH=\"{}\"\n\
             ETCD2_BACKUP_MACHINE_ID={OLD}\nETCD_BACKUP_DIR={}\n",
            remote.endpoint,
            remote.config.display(),
            env.work.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A shell's environment: PATH and HOME, none of our variables.
    let shell = |file: &Path| {
        let mut cmd = Command::new(harness::bin("etcd2-fetch"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", c.path())
            .env("ETCD2_BACKUP_ENV_FILE", file)
            .arg("--list");
        cmd
    };
    let out = run_ok(&mut shell(&file));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&generation), "{listing}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains(&remote.endpoint),
        "a setting was printed: {err}"
    );

    // Without the file, the same shell has no remote: clap says which.
    let out = run(&mut shell(&c.path().join("absent.env")));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--remote <REMOTE:PATH>"));

    // The environment wins over the file: another machine-id, no backups
    // (nothing there: 4, as --check says it).
    let out = run(shell(&file).env("ETCD2_BACKUP_MACHINE_ID", NEW));
    assert_fails_with_code(
        &out,
        "etcd2-fetch",
        4,
        "no complete generation for machine-id",
    );

    // Readable by others: works, with a warning; writable: refused.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_ok(&mut shell(&file));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("etcd2-fetch: warning: ")
            && err.contains(
                "is readable by other users (mode 0644) and may hold secrets: chmod 600 it"
            ),
        "{err}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = run(&mut shell(&file));
    let line = assert_fails_with(&out, "etcd2-fetch", "refusing the settings in");
    assert!(
        line.contains("other users may change it") && line.contains("mode 0666"),
        "{line}"
    );

    // A line systemd ignores is ignored too (the units run on): a warning
    // names it by number, its content is never printed.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}:s3,secret_access_key=hunter2:b\n")).unwrap();
    let out = run_ok(&mut shell(&file));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&generation));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("etcd2-fetch: warning: ")
            && err.contains("line 6: ignored, as systemd ignores it"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

/// A remote defined only by rclone's environment variables
/// (`RCLONE_CONFIG_<NAME>_TYPE=...`, as a unit's `Environment=` may define
/// it) is accepted by push and fetch alike, on rclone 1.60 and 1.75; a
/// remote defined nowhere is still refused, by name. (Push asks its one
/// rclone rcd, whose `config/listremotes` omits such remotes on 1.60; every
/// version lists them lower-cased, while rclone finds `envRemote:` by
/// RCLONE_CONFIG_ENVREMOTE_TYPE.)
#[test]
fn a_remote_defined_by_environment_variables_is_accepted_on_each_rclone() {
    let c = Cluster::start(1);
    c.put_v3(0, "k", "v");
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    for (tag, bin) in harness::rclone::each_version() {
        let base = c.path().join(format!("rclone-{tag}"));
        let remote = Remote::local(&base).using(bin);
        let env = Env::new(&base);
        let endpoint = format!("envRemote:{}/etcd", base.join("env-defined").display());
        let defined = |mut cmd: Command| {
            cmd.env("RCLONE_ENDPOINT", &endpoint)
                .env("RCLONE_CONFIG_ENVREMOTE_TYPE", "local");
            cmd
        };
        let out = run(defined(env.push(&remote, OLD)).arg(&archive));
        assert!(
            out.status.success(),
            "rclone {tag}: push refused a remote defined by the environment: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run_ok(defined(env.fetch(&remote, OLD)).args(["--list", "--json"]));
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(listed.contains("\"generation\""), "rclone {tag}: {listed}");
        run_ok(
            defined(env.fetch(&remote, OLD))
                .arg("--into")
                .arg(base.join("fetched")),
        );

        let mut unknown = defined(env.push(&remote, OLD));
        unknown.env("RCLONE_ENDPOINT", "nosuch:path").arg(&archive);
        let line = assert_fails_with(&run(&mut unknown), "etcd2-push", "rclone remote \"nosuch\"");
        assert!(line.contains("is not defined"), "rclone {tag}: {line}");
    }
}

/// A fetch of a published backup starts one rclone process, and so do
/// `--list`, `--check` and `--list-machines`: every call of the run goes to one `rclone rcd`
/// (counted by a wrapper that logs each start of rclone).
#[test]
fn a_fetch_list_and_check_each_start_one_rclone_process() {
    use std::os::unix::fs::PermissionsExt;
    let (c, remote, env) = setup(Backend::Sftp);
    env.publish(&c, &remote, NEW);
    let starts = c.path().join("rclone-starts");
    let wrapper = c.path().join("rclone-counted");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            starts.display(),
            remote.bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let counted = |args: &[&str]| -> Vec<String> {
        let _ = std::fs::remove_file(&starts);
        let mut cmd = env.fetch(&remote, NEW);
        cmd.env("ETCD2_BACKUP_RCLONE", &wrapper).args(args);
        run_ok(&mut cmd);
        std::fs::read_to_string(&starts)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let into = c.path().join("fetched");
    let into_arg = into.display().to_string();
    for args in [
        vec!["--into", into_arg.as_str()],
        vec!["--list"],
        vec!["--check"],
        vec!["--list-machines"],
    ] {
        let started = counted(&args);
        assert_eq!(
            started.len(),
            1,
            "etcd2-fetch {args:?} started rclone {} times: {started:#?}",
            started.len()
        );
    }
    assert!(into.join("manifest.json").is_file());
}

#[test]
fn a_full_local_disk_is_named_as_such_not_as_a_bad_backup() {
    // A backup whose archive is far larger than the disk it is fetched to.
    let c = crate::host_safety::cluster_with_data(2);
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    env.publish(&c, &remote, OLD);
    let disk = c.path().join("small-disk");
    let _fs = harness::Tmpfs::mount(&disk, 256 << 10);
    let verdict = |out: &std::process::Output, what: &str| {
        let line = assert_fails_with(out, "etcd2-fetch", "No space left on device");
        assert!(
            !line.contains("failed verification") && !line.contains("is not"),
            "{what}: a full disk is not a bad backup: {line}"
        );
        line
    };

    let file = disk.join("a.tar.zst");
    let out = run(env.fetch(&remote, OLD).arg("-o").arg(&file));
    let line = verdict(&out, "-o FILE");
    assert!(
        line.contains(&disk.display().to_string()),
        "names the file: {line}"
    );
    assert!(names(&disk).is_empty(), "-o FILE left {:?}", names(&disk));

    let into = disk.join("restored");
    let out = run(env.fetch(&remote, OLD).arg("--into").arg(&into));
    verdict(&out, "--into");
    assert!(names(&disk).is_empty(), "--into left {:?}", names(&disk));

    // -o - spools in the work dir until verified: a full one says so, and
    // nothing reaches stdout.
    let out = run(env
        .fetch(&remote, OLD)
        .env("ETCD_BACKUP_DIR", &disk)
        .args(["-o", "-"]));
    let line = verdict(&out, "-o -");
    assert!(line.contains("spool"), "names the spool: {line}");
    assert!(out.stdout.is_empty(), "unverified bytes reached stdout");
    assert!(names(&disk).is_empty(), "-o - left {:?}", names(&disk));
    // The generation is whole: the same fetch onto a disk with room works.
    run_ok(
        env.fetch(&remote, OLD)
            .arg("-o")
            .arg(c.path().join("ok.tar.zst")),
    );
}

/// The restore unit fetches into the same directory every run: a second
/// `--into` replaces the first once the newer backup is verified (nothing
/// left beside it), and a directory holding anything not ours is refused,
/// naming it, and left as it was.
#[test]
fn fetch_into_replaces_an_earlier_fetch_and_refuses_a_foreign_directory() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "/first", "1");
    env.publish(&c, &remote, OLD);
    let into = c.path().join("restore-dir");
    std::fs::create_dir(&into).unwrap();
    let dir = into.join("backup");
    run_ok(env.fetch(&remote, OLD).arg("--into").arg(&dir));
    let first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();

    c.put_v3(0, "/second", "2");
    env.publish(&c, &remote, OLD);
    let out = run_ok(env.fetch(&remote, OLD).arg("--into").arg(&dir));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replacing the earlier fetch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(second["revision"].as_u64() > first["revision"].as_u64());
    assert_eq!(names(&into), ["backup"], "nothing left beside it");

    std::fs::write(dir.join("notes.txt"), b"the operator's").unwrap();
    let out = run(env.fetch(&remote, OLD).arg("--into").arg(&dir));
    assert_fails_with(
        &out,
        "etcd2-fetch",
        "notes.txt is no part of a fetched backup",
    );
    assert_eq!(
        std::fs::read(dir.join("notes.txt")).unwrap(),
        b"the operator's"
    );
    assert_eq!(names(&into), ["backup"]);
}

//! "Nothing acknowledged is lost, and LATEST.json always names a backup that
//! restores", tested on the shapes operators have rather than the ones we
//! chose: idle clusters, followers, a steady writer, WebDAV and S3 remotes,
//! an archive replaced mid-push, broken codec framing, two writers for one
//! machine-id, a damaged sidecar and a clock that once ran ahead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::etcd::{self, Cluster};
use harness::rclone::{Backend, Remote};
use harness::{assert_fails_with, free_port, names, run, run_ok, setup, tool, wait_for, Env};

const MID: &str = "a0000000000000000000000000000001";

/// etcd2-restore of `archive` into a fresh data dir, then that member
/// started alone on new loopback ports (stopped on drop).
fn restore_and_start(dir: &Path, tag: &str, archive: &Path) -> etcd::Member {
    let pp = free_port();
    let peer = format!("http://127.0.0.1:{pp}");
    let data = dir.join(format!("restored-{tag}"));
    run_ok(
        tool("etcd2-restore")
            .arg("--data-dir")
            .arg(&data)
            .args(["--name", "r1", "--peer-urls", &peer, "-q"])
            .arg(archive),
    );
    etcd::start_alone(dir, data, pp, vec![])
}

/// The keys under `prefix`, read from one member alone.
fn keys(endpoint: &str, api: &str, prefix: &str) -> Vec<String> {
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", api)
        .arg(format!("--endpoints={endpoint}"));
    if api == "2" {
        c.args(["ls", prefix]);
    } else {
        c.args(["get", "--prefix", "--keys-only", "--consistency=s", prefix]);
    }
    let out = c.output().expect("etcdctl");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn key(prefix: &str, n: usize) -> String {
    format!("{prefix}/k{n:05}")
}

/// Index of the current leader.
fn leader(c: &Cluster) -> usize {
    let out = run_ok(c.etcdctl(0, "3").args(["endpoint", "status", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let leader = v[0]["Status"]["leader"].as_u64().unwrap();
    (0..c.members.len())
        .find(|&i| {
            let out = run_ok(c.etcdctl(i, "3").args(["endpoint", "status", "-w", "json"]));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v[0]["Status"]["header"]["member_id"].as_u64() == Some(leader)
        })
        .expect("a leader")
}

fn idle_cluster_keeps_every_write(api: &str) {
    let c = Cluster::start(3);
    let n = 40;
    for k in 0..n {
        if api == "2" {
            c.put_v2(k % 3, &key("/idle", k), "v");
        } else {
            c.put_v3(k % 3, &key("/idle", k), "v");
        }
    }
    // Quiet: nothing after the last acknowledged write.
    std::thread::sleep(Duration::from_secs(2));
    let l = leader(&c);
    let follower = (l + 1) % 3;
    let want: Vec<String> = (0..n).map(|k| key("/idle", k)).collect();
    for (who, i) in [("follower", follower), ("leader", l)] {
        let archive = c.path().join(format!("{who}.tar.zst"));
        c.snapshot_to(i, &format!("v{api}"), &archive);
        let m = restore_and_start(c.path(), who, &archive);
        assert_eq!(
            keys(&m.client_url, api, "/idle"),
            want,
            "a v{api} backup of the {who} (e{}) must hold every acknowledged write, the last one too",
            i + 1
        );
    }
}

#[test]
fn idle_v2_cluster_keeps_the_last_acknowledged_write_on_leader_and_follower() {
    idle_cluster_keeps_every_write("2");
}

#[test]
fn idle_v3_cluster_keeps_the_last_acknowledged_write_on_leader_and_follower() {
    idle_cluster_keeps_every_write("3");
}

/// A writer that keeps writing numbered keys through member 0 and records
/// each write etcd acknowledged.
struct Writer {
    acked: Arc<Mutex<Vec<usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(endpoint: String, api: &'static str) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (Arc::clone(&acked), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            // Bounded: at most 5000 writes even if nobody stops us.
            while !s.load(Ordering::SeqCst) && n < 5000 {
                let verb = if api == "2" { "set" } else { "put" };
                let ok = Command::new("etcdctl")
                    .env("ETCDCTL_API", api)
                    .arg(format!("--endpoints={endpoint}"))
                    .args([verb, &key("/busy", n), "v"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok {
                    a.lock().unwrap().push(n);
                }
                n += 1;
            }
        });
        Writer {
            acked,
            stop,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> Vec<usize> {
        self.acked.lock().unwrap().clone()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn busy_cluster_keeps_every_write_acknowledged_before_the_snapshot(api: &'static str) {
    let c = Cluster::start(3);
    let l = leader(&c);
    let follower = (l + 1) % 3;
    let writer = Writer::start(c.endpoint(l).to_owned(), api);
    wait_for("20 acknowledged writes", Duration::from_secs(30), || {
        (writer.acked().len() >= 20).then_some(())
    });
    let before = writer.acked();
    let archive = c.path().join("busy.tar.zst");
    c.snapshot_to(follower, &format!("v{api}"), &archive);
    drop(writer);
    let m = restore_and_start(c.path(), "busy", &archive);
    let have = keys(&m.client_url, api, "/busy");
    let missing: Vec<String> = before
        .iter()
        .map(|&n| key("/busy", n))
        .filter(|k| !have.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "writes acknowledged before etcd2-snapshot started are missing from the v{api} backup: {missing:?}"
    );
}

#[test]
fn busy_v2_cluster_keeps_every_write_acknowledged_before_the_snapshot() {
    busy_cluster_keeps_every_write_acknowledged_before_the_snapshot("2");
}

#[test]
fn busy_v3_cluster_keeps_every_write_acknowledged_before_the_snapshot() {
    busy_cluster_keeps_every_write_acknowledged_before_the_snapshot("3");
}

/// Several backup cycles with a changed key in between: after each, LATEST
/// names the newest complete generation, fetch brings that one back, and
/// --keep holds.
fn cycles_publish_the_newest(remote: &Remote, c: &Cluster, env: &Env) -> String {
    let mut all_stderr = String::new();
    let mut revisions = Vec::new();
    for cycle in 0..4 {
        c.put_v3(0, "/cycle", &cycle.to_string());
        let archive = c.path().join(format!("cycle{cycle}.tar.zst"));
        c.snapshot_to(0, "v3", &archive);
        let out = run_ok(env.push(remote, MID).args(["--keep", "2"]).arg(&archive));
        all_stderr.push_str(&String::from_utf8_lossy(&out.stderr));
        let complete = remote.complete(MID);
        assert!(complete.len() <= 2, "--keep 2 holds: {complete:?}");
        assert_eq!(
            remote.latest(MID).as_ref(),
            complete.last(),
            "cycle {cycle}: LATEST.json names the newest complete generation"
        );
        let into = c.path().join(format!("fetched{cycle}"));
        run_ok(env.fetch(remote, MID).arg("--into").arg(&into));
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(into.join("manifest.json")).unwrap()).unwrap();
        let rev = m["revision"].as_u64().unwrap();
        assert!(
            revisions.last().is_none_or(|&r| rev > r),
            "cycle {cycle}: fetch brought revision {rev}, not the newest (had {revisions:?})"
        );
        revisions.push(rev);
    }
    all_stderr
}

#[test]
fn webdav_every_cycle_publishes_and_fetches_the_newest_backup() {
    let (c, remote, env) = setup(Backend::Webdav);
    cycles_publish_the_newest(&remote, &c, &env);
}

#[test]
fn s3_every_cycle_publishes_and_fetches_the_newest_backup() {
    let (c, remote, env) = setup(Backend::S3);
    let stderr = cycles_publish_the_newest(&remote, &c, &env);
    // rclone cat of a missing S3 object exits 0 with no output: the first
    // push must read that as "no backup yet", not as a damaged pointer.
    assert!(!stderr.contains("damaged"), "{stderr}");
}

/// An rclone wrapper that pauses every upload (copyto, rcat, or the rcd that serves it) until the test
/// says go, announcing the pause with a marker file.
fn pausing_rclone(dir: &Path, bin: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let wrapper = dir.join("rclone-pausing");
    let (marker, go) = (dir.join("upload-paused"), dir.join("upload-go"));
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \" $* \" in *' copyto '*|*' rcat '*|*' rcd '*)\n  touch {m}\n  i=0; while [ ! -e {g} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done;;\nesac\nexec {b} \"$@\"\n",
            m = marker.display(),
            g = go.display(),
            b = bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    (wrapper, marker, go)
}

#[test]
fn an_archive_replaced_during_the_push_never_publishes_what_fetch_refuses() {
    // sftp reports sha1, not sha256: the path where the old push hashed the
    // file again from disk.
    let (c, remote, env) = setup(Backend::Sftp);
    for k in 0..20 {
        c.put_v3(0, &key("/r", k), &"x".repeat(100));
    }
    let archive = c.path().join("unit.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    let (wrapper, marker, go) = pausing_rclone(c.path(), &remote.bin);
    let push = env
        .push(&remote, MID)
        .env("ETCD2_BACKUP_RCLONE", &wrapper)
        .arg(&archive)
        .stderr(Stdio::piped())
        .spawn()
        .expect("push");
    wait_for(
        "the push to start its upload",
        Duration::from_secs(30),
        || marker.exists().then_some(()),
    );
    // Another writer replaces the file the way etcd2-snapshot -o does
    // (write beside, rename over): same size, other bytes.
    let mut other = std::fs::read(&archive).unwrap();
    let mid = other.len() / 2;
    other[mid] ^= 0xff;
    let tmp = c.path().join("unit.tar.zst.new");
    std::fs::write(&tmp, &other).unwrap();
    std::fs::rename(&tmp, &archive).unwrap();
    std::fs::write(&go, b"").unwrap();
    let out = push.wait_with_output().unwrap();
    eprintln!("push: {}", String::from_utf8_lossy(&out.stderr));
    if remote.latest(MID).is_some() {
        let into = c.path().join("fetched");
        let f = run(env.fetch(&remote, MID).arg("--into").arg(&into));
        assert!(
            f.status.success(),
            "push published a generation (exit {:?}) that fetch refuses: {}",
            out.status.code(),
            String::from_utf8_lossy(&f.stderr)
        );
    } else {
        assert!(
            !out.status.success(),
            "nothing published, yet push succeeded"
        );
    }
}

/// The gzip and zstd archives of one small backup, made by etcd2-snapshot.
fn archives(c: &Cluster) -> Vec<(&'static str, Vec<u8>)> {
    ["gzip", "zstd"]
        .into_iter()
        .map(|codec| {
            let p = c.path().join(format!("good.{codec}"));
            run_ok(
                c.snapshot(0)
                    .args(["--api", "v3", "--codec", codec, "-o"])
                    .arg(&p),
            );
            (codec, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Broken framing: the archive minus its last 1..=12 bytes, or with junk
/// after the codec's end of stream.
fn broken_variants(good: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for cut in 1..=12 {
        v.push((
            format!("minus {cut} bytes"),
            good[..good.len() - cut].to_vec(),
        ));
    }
    for junk in [&b"\0"[..], b"junk", &[0u8; 512]] {
        let mut b = good.to_vec();
        b.extend_from_slice(junk);
        v.push((format!("plus {} bytes of junk", junk.len()), b));
    }
    v
}

#[test]
fn truncated_or_junk_suffixed_archives_are_refused_by_push_and_fetch() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "/a", "1");
    for (codec, good) in archives(&c) {
        // A whole archive goes through (so the refusals below are about
        // the damage, not about the archive).
        let path = c.path().join(format!("a.{codec}"));
        std::fs::write(&path, &good).unwrap();
        run_ok(env.push(&remote, MID).arg(&path));
        for (what, bytes) in broken_variants(&good) {
            std::fs::write(&path, &bytes).unwrap();
            let out = run(env.push(&remote, MID).arg(&path));
            assert_fails_with(&out, "etcd2-push", "not a whole etcd2-backup archive");
            let _ = what;
        }
    }
    // fetch: a stored archive damaged the same way, with a sidecar that
    // agrees with the damaged bytes (so size and sha256 cannot catch it).
    let gens = remote.machine_dir(MID).join("generations");
    let latest = remote.latest(MID).unwrap();
    let sidecar_path = gens.join(format!("{latest}.json"));
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sidecar_path).unwrap()).unwrap();
    let archive_path = gens.join(sidecar["archive"].as_str().unwrap());
    let good = std::fs::read(&archive_path).unwrap();
    for (i, (what, bytes)) in broken_variants(&good).into_iter().enumerate() {
        use sha2::Digest;
        std::fs::write(&archive_path, &bytes).unwrap();
        let mut sc = sidecar.clone();
        sc["size"] = bytes.len().into();
        sc["sha256"] = common_hex(&sha2::Sha256::digest(&bytes)).into();
        std::fs::write(&sidecar_path, serde_json::to_vec_pretty(&sc).unwrap()).unwrap();
        let into = c.path().join(format!("fetched-{i}"));
        let out = run(env.fetch(&remote, MID).arg("--into").arg(&into));
        assert_eq!(
            out.status.code(),
            Some(1),
            "fetch of an archive {what} must fail"
        );
        assert!(!into.exists(), "nothing placed for an archive {what}");
    }
}

fn common_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Start a push that pauses at `point` until `resume` exists.
fn push_paused(
    env: &Env,
    remote: &Remote,
    archive: &Path,
    point: &str,
    lock: &Path,
    resume: &Path,
) -> Child {
    use std::io::{BufRead, BufReader};
    let mut child = env
        .push(remote, MID)
        .env("ETCD2_BACKUP_FAULT_PAUSE", point)
        .env("ETCD2_BACKUP_FAULT_RESUME", resume)
        .env("ETCD2_BACKUP_LOCK", lock)
        .args(["--keep", "1"])
        .arg(archive)
        .stderr(Stdio::piped())
        .spawn()
        .expect("push");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let want = format!("fault-point: {point}");
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(&want) => break,
            Some(Ok(_)) => continue,
            _ => panic!("push ended before reaching {point}"),
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

#[test]
fn two_pushes_without_a_shared_lock_never_publish_a_deleted_or_older_generation() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "/a", "1");
    let a = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &a);
    let resume = c.path().join("resume");
    // Push A (its own lock, as on a cloned host) stops just before it moves
    // the pointer; push B runs whole meanwhile, --keep 1.
    let first = push_paused(
        &env,
        &remote,
        &a,
        "before-pointer",
        &c.path().join("lock-a"),
        &resume,
    );
    run_ok(
        env.push(&remote, MID)
            .env("ETCD2_BACKUP_LOCK", c.path().join("lock-b"))
            .args(["--keep", "1"])
            .arg(&a),
    );
    let b_gen = remote.latest(MID).expect("B published");
    std::fs::write(&resume, b"").unwrap();
    let out = first.wait_with_output().unwrap();
    let now = remote.latest(MID).expect("a pointer");
    let complete = remote.complete(MID);
    assert!(
        complete.contains(&now),
        "LATEST.json names {now}, which is not complete ({complete:?}); push A exit {:?}",
        out.status.code()
    );
    assert!(
        now >= b_gen,
        "LATEST.json moved backwards from {b_gen} to {now}"
    );
    // A's generation was named before B's, so it is the older one: A must not
    // report success for a generation it could not publish.
    assert!(
        !out.status.success(),
        "push A succeeded although B published a newer generation meanwhile"
    );
}

#[test]
fn a_damaged_sidecar_is_listed_as_damaged_and_fetch_falls_back_only_when_told() {
    let (c, remote, env) = setup(Backend::Local);
    for i in 0..3 {
        c.put_v3(0, "/a", &i.to_string());
        env.publish(&c, &remote, MID);
    }
    let gens = remote.complete(MID);
    assert_eq!(gens.len(), 3);
    let dir = remote.machine_dir(MID).join("generations");
    std::fs::write(dir.join(format!("{}.json", gens[0])), b"{garbage").unwrap();
    let out = run_ok(env.fetch(&remote, MID).args(["--list", "--json"]));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows[0]["damaged"].as_str().is_some_and(|d| !d.is_empty()),
        "{rows:?}"
    );
    assert!(
        rows[1]["damaged"].is_null() && rows[2]["latest"] == true,
        "{rows:?}"
    );
    let out = run_ok(env.fetch(&remote, MID).arg("--list"));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("DAMAGED"), "{table}");
    // The latest is fine: fetch works as ever.
    run_ok(
        env.fetch(&remote, MID)
            .arg("--into")
            .arg(c.path().join("f1")),
    );

    // Now LATEST's own sidecar is damaged: refuse, naming the way out...
    std::fs::write(dir.join(format!("{}.json", gens[2])), b"").unwrap();
    let into = c.path().join("f2");
    let out = run(env.fetch(&remote, MID).arg("--into").arg(&into));
    let line = assert_fails_with(&out, "etcd2-fetch", "--allow-older");
    assert!(
        line.contains(&gens[1]),
        "names the fallback generation: {line}"
    );
    assert!(!into.exists());
    // ...and with --allow-older fetch the newest complete one, loudly.
    let out = run_ok(
        env.fetch(&remote, MID)
            .arg("--allow-older")
            .arg("--into")
            .arg(&into),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WARN") && err.contains(&gens[1]), "{err}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(into.join("manifest.json")).unwrap()).unwrap();
    assert!(m["revision"].as_u64().is_some());
}

fn future_aside(data: &Path) -> Vec<PathBuf> {
    let future: Vec<PathBuf> = ["20990101T000000Z", "20990102T000000Z"]
        .iter()
        .map(|s| data.join(format!("member.wiped-{s}")))
        .collect();
    for f in &future {
        std::fs::create_dir_all(f.join("wal")).unwrap();
    }
    future
}

#[test]
fn future_dated_set_aside_dirs_never_cost_the_data_just_set_aside() {
    // What of the dirs set aside in `data` still holds the precious file.
    let kept_aside = |data: &Path| -> Vec<String> {
        names(data)
            .into_iter()
            .filter(|n| std::fs::metadata(data.join(n).join("wal/precious")).is_ok())
            .collect()
    };
    let d = tempfile::tempdir().unwrap();
    // wipe
    let data = d.path().join("wipe");
    std::fs::create_dir_all(data.join("member/wal")).unwrap();
    std::fs::write(data.join("member/wal/precious"), b"x").unwrap();
    future_aside(&data);
    run_ok(tool("etcd2-wipe").args(["--keep-aside", "1"]).arg(&data));
    let kept = kept_aside(&data);
    assert_eq!(
        kept.len(),
        1,
        "wipe kept what it set aside: {:?}",
        names(&data)
    );

    // restore
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let archive = c.path().join("r.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    let data = d.path().join("restore");
    std::fs::create_dir_all(data.join("member/wal")).unwrap();
    std::fs::write(data.join("member/wal/precious"), b"x").unwrap();
    future_aside(&data);
    run_ok(harness::restore_into(&data, &archive).args(["--keep-aside", "1"]));
    let kept = kept_aside(&data);
    assert_eq!(
        kept.len(),
        1,
        "restore kept what it set aside: {:?}",
        names(&data)
    );
}

/// A sidecar or pointer (damaged, or written by someone hostile) may name
/// only objects inside its own machine's generations/: never another
/// machine's backup, restored as if it were this one's.
#[test]
fn a_sidecar_or_pointer_naming_objects_outside_its_machine_is_refused() {
    const OTHER: &str = "b0000000000000000000000000000002";
    let (c, remote, env) = setup(Backend::Local);
    for (mid, who) in [(MID, "this machine"), (OTHER, "another machine")] {
        c.put_v3(0, "/who", who);
        env.publish(&c, &remote, mid);
    }
    let read_json = |rel: &str| -> serde_json::Value {
        serde_json::from_slice(&remote.read(rel).expect(rel)).unwrap()
    };
    let mine = remote.pointer(MID).expect("LATEST.json");
    let theirs = remote.pointer(OTHER).expect("LATEST.json");
    let (my_gen, their_gen) = (mine.generation, theirs.generation);
    let (mine, theirs) = (mine.json, theirs.json);

    // This machine's sidecar, rewritten to describe the other machine's
    // archive by a path that climbs out of generations/.
    let mut sidecar = read_json(&format!("{OTHER}/generations/{their_gen}.json"));
    let escape = format!("../../{OTHER}/generations/{their_gen}.tar.zst");
    sidecar["generation"] = my_gen.clone().into();
    sidecar["archive"] = escape.clone().into();
    remote.write(
        &format!("{MID}/generations/{my_gen}.json"),
        &serde_json::to_vec_pretty(&sidecar).unwrap(),
    );
    let mut pointer = mine.clone();
    for k in ["archive", "size", "sha256", "cluster_id", "member_id"] {
        pointer[k] = if k == "archive" {
            escape.clone().into()
        } else {
            theirs[k].clone()
        };
    }
    remote.set_pointer(MID, &pointer);
    let into = c.path().join("fetched");
    let out = run(env.fetch(&remote, MID).arg("--into").arg(&into));
    let line = assert_fails_with(&out, "etcd2-fetch", "outside");
    assert!(line.contains(&my_gen), "names the sidecar: {line}");
    assert!(!into.exists(), "nothing placed");
    let out = run(env
        .fetch(&remote, MID)
        .args(["--generation", &my_gen, "--into"])
        .arg(&into));
    assert_fails_with(&out, "etcd2-fetch", "outside");
    assert!(!into.exists(), "nothing placed");

    // A pointer whose generation climbs out: damaged, never followed.
    let mut pointer = mine.clone();
    pointer["generation"] = format!("../{OTHER}/generations/{their_gen}").into();
    remote.set_pointer(MID, &pointer);
    let out = run(env.fetch(&remote, MID).arg("--into").arg(&into));
    let line = assert_fails_with(&out, "etcd2-fetch", "LATEST.json");
    assert!(!line.contains("another machine"), "{line}");
    assert!(!into.exists(), "nothing placed");
}

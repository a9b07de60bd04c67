//! etcd2-watch against a real etcd and a real rclone remote: every change
//! after the full backup is published once, in chained segments that
//! check; a watcher killed mid-segment resumes with no gap and no
//! duplicate; a compaction past where it must resume is said as a gap and
//! a new chain starts from a newer full backup.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use etcd2_backup::store::changes::{self, Link, Segment, SegmentName};
use harness::etcd::Cluster;
use harness::rclone::{Backend, Remote};
use harness::{run_ok, setup, tool, wait_for, Env};

use crate::restore;

pub(crate) const MID: &str = "c0000000000000000000000000000022";

/// A running etcd2-watch, SIGKILLed (by PID) when dropped.
pub(crate) struct Watcher {
    child: Child,
    log: PathBuf,
}

/// etcd2-watch on member 0, as the tests run it.
fn watch(env: &Env, remote: &Remote, c: &Cluster) -> std::process::Command {
    let mut cmd = env.with(tool("etcd2-watch"), remote, MID);
    cmd.args(["--endpoints", c.endpoint(0), "--segment-interval", "300ms"]);
    cmd
}

impl Watcher {
    pub(crate) fn start(env: &Env, remote: &Remote, c: &Cluster, extra: &[&str]) -> Watcher {
        let log = env.work.join(format!("watch-{}.log", rand_suffix()));
        let mut cmd = watch(env, remote, c);
        cmd.args(["--base-wait", "60s"])
            .args(extra)
            .env("ETCD2_BACKUP_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        Watcher {
            child: cmd.spawn().expect("etcd2-watch starts"),
            log,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "etcd2-watch ended: {}",
            self.log()
        );
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// The member's current revision.
pub(crate) fn revision(c: &Cluster) -> u64 {
    let out = run_ok(c.etcdctl(0, "3").args(["endpoint", "status", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["Status"]["header"]["revision"].as_u64().unwrap()
}

/// The revision the published generation's manifest records.
pub(crate) fn base_revision(remote: &Remote) -> u64 {
    let gen = remote.pointer(MID).unwrap().generation;
    let side = remote
        .read(&format!("{MID}/generations/{gen}.json"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&side).unwrap();
    v["manifest"]["revision"].as_u64().unwrap()
}

/// Every chain on the remote with its segments, read and checked as a
/// restore reads them: (chain, links, segments), chains oldest first.
pub(crate) fn chains(remote: &Remote) -> Vec<(String, Vec<Link>, Vec<Segment>)> {
    let mut by_chain: std::collections::BTreeMap<String, Vec<SegmentName>> = Default::default();
    for path in remote.list_all(&format!("{MID}/{}", changes::CHANGES_DIR)) {
        let (chain, file) = path.split_once('/').expect("chain/segment");
        if let Some(name) = SegmentName::parse(file) {
            by_chain.entry(chain.to_owned()).or_default().push(name);
        }
    }
    by_chain
        .into_iter()
        .map(|(chain, mut names)| {
            names.sort();
            let mut links = Vec::new();
            let mut segs = Vec::new();
            for n in names {
                let bytes = remote
                    .read(&format!("{MID}/changes/{chain}/{}", n.file_name()))
                    .unwrap();
                let (seg, sha256) = Segment::decode(&n, &bytes).unwrap();
                links.push(Link {
                    name: n,
                    header: seg.header.clone(),
                    sha256,
                });
                segs.push(seg);
            }
            (chain, links, segs)
        })
        .collect()
}

/// The newest revision any segment on the remote reaches.
pub(crate) fn reached(remote: &Remote) -> u64 {
    remote
        .list_all(&format!("{MID}/changes"))
        .iter()
        .filter_map(|p| SegmentName::parse(p.rsplit('/').next().unwrap()))
        .map(|n| n.last)
        .max()
        .unwrap_or(0)
}

pub(crate) fn wait_reached(remote: &Remote, w: &mut Watcher, rev: u64) {
    wait_for(
        &format!("segments reaching revision {rev}"),
        Duration::from_secs(60),
        || {
            w.assert_running();
            (reached(remote) >= rev).then_some(())
        },
    );
}

/// A local remote with a full backup and a watcher that has published
/// `puts` changes after it.
fn capturing(puts: u32) -> (Cluster, Remote, Env, Watcher) {
    let (c, remote, env) = setup(Backend::Local);
    env.publish(&c, &remote, MID);
    let mut w = Watcher::start(&env, &remote, &c, &[]);
    put_many(&c, 0, puts);
    wait_reached(&remote, &mut w, revision(&c));
    (c, remote, env, w)
}

pub(crate) fn put_many(c: &Cluster, from: u32, to: u32) {
    for k in from..to {
        c.put_v3(0, &format!("/k{k}"), &format!("v{k}"));
    }
}

/// Every put after the base is in the segments exactly once, at its own
/// revision, in one chain that plans from the base's revision; a
/// watcher SIGKILLed mid-way resumes that chain with no gap and no
/// duplicate.
fn every_change_once_across_a_kill(backend: Backend) {
    let hashless = matches!(backend, Backend::Crypt);
    let (c, remote, env) = setup(backend);
    put_many(&c, 0, 5);
    env.publish(&c, &remote, MID);
    let base = base_revision(&remote);

    let mut w = Watcher::start(&env, &remote, &c, &[]);
    put_many(&c, 5, 25);
    wait_reached(&remote, &mut w, revision(&c));
    // Killed while it may hold unpublished changes.
    put_many(&c, 25, 30);
    w.kill();
    put_many(&c, 30, 50);
    let metrics = env.work.join("metrics");
    std::fs::create_dir_all(&metrics).unwrap();
    let dir = metrics.to_str().unwrap();
    let mut w = Watcher::start(&env, &remote, &c, &["--metrics-dir", dir]);
    let target = revision(&c);
    wait_reached(&remote, &mut w, target);
    assert!(w.log().contains("resuming chain"), "{}", w.log());
    if hashless {
        assert!(
            w.log().contains("downloaded and sha256 compared"),
            "{}",
            w.log()
        );
    }
    // The textfile metrics say how far capture is.
    let prom = metrics.join("etcd2_backup_watch.prom");
    wait_for(
        "the watcher's metrics to reach the revision",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&prom).ok()?;
            let rev: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("etcd2_backup_captured_revision{step=\"watch\"} "))?
                .trim()
                .parse()
                .ok()?;
            (rev == target).then_some(())
        },
    );

    let all = chains(&remote);
    assert_eq!(
        all.len(),
        1,
        "one chain: {:?}",
        all.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    let (_, links, segs) = &all[0];
    let plan = changes::plan(base, links).unwrap_or_else(|b| panic!("{b}"));
    assert_eq!(plan.reach, target);
    assert!(links.len() >= 2, "published in segments: {links:?}");
    let events: Vec<&changes::Event> = segs.iter().flat_map(|s| &s.events).collect();
    let revs: Vec<u64> = events.iter().map(|e| e.rev).collect();
    let want: Vec<u64> = (revs[0]..=target).collect();
    assert_eq!(revs, want, "every revision once, in order");
    assert!(
        revs[0] <= base + 1,
        "no gap after the base at {base}: {}",
        revs[0]
    );
    for e in &events {
        let changes::Op::Put { key, value, .. } = &e.op else {
            panic!("only puts were made: {e:?}")
        };
        let k = String::from_utf8_lossy(key);
        let n = k.trim_start_matches("/k");
        assert_eq!(String::from_utf8_lossy(value), format!("v{n}"), "{k}");
    }
    // An archive is the full backup alone, and says so.
    let out = run_ok(
        env.fetch(&remote, MID)
            .arg("-o")
            .arg(c.path().join("base-only.tar.zst")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARN") && err.contains(&format!("up to revision {target}, are not in it")),
        "{err}"
    );
    // Nothing temporary left beside the segments.
    let files = remote.list_all(&format!("{MID}/changes"));
    assert!(files.iter().all(|f| f.ends_with(".seg.zst")), "{files:?}");
}

#[test]
fn every_change_is_published_once_across_a_kill_on_a_local_remote() {
    every_change_once_across_a_kill(Backend::Local);
}

#[test]
fn every_change_is_published_once_across_a_kill_on_s3() {
    every_change_once_across_a_kill(Backend::S3);
}

/// Crypt reports no hash: each segment's remote copy is downloaded again
/// and compared before the watcher goes on.
#[test]
fn every_change_is_published_once_across_a_kill_through_crypt() {
    every_change_once_across_a_kill(Backend::Crypt);
}

/// A watcher down while etcd compacts past its last segment cannot resume:
/// it says "gap" naming the revisions, runs --on-gap, and starts a new
/// chain from the next full backup at or after the compaction; the old
/// chain is left as it was. `--list` names the gap, and no point inside it
/// is restored, by revision or by time: each refusal names the windows.
#[test]
fn a_compaction_past_the_last_segment_is_a_gap_no_restore_point_falls_in() {
    let (c, remote, env, mut w) = capturing(3);
    w.kill();
    // A moment no watcher saw: after the first chain's last change.
    std::thread::sleep(Duration::from_millis(50));
    let in_gap =
        etcd2_backup::clock::rfc3339_ms(etcd2_backup::clock::unix_ms(std::time::SystemTime::now()));
    std::thread::sleep(Duration::from_millis(50));
    put_many(&c, 3, 10);
    let compacted = revision(&c);
    run_ok(c.etcdctl(0, "3").args(["compact", &compacted.to_string()]));

    let flag = env.work.join("on-gap-ran");
    let on_gap = format!("touch {}", flag.display());
    let mut w = Watcher::start(&env, &remote, &c, &["--on-gap", &on_gap]);
    wait_for("--on-gap to run", Duration::from_secs(30), || {
        w.assert_running();
        flag.exists().then_some(())
    });
    let log = w.log();
    assert!(
        log.contains("ERROR")
            && log.contains("gap")
            && log.contains(&format!("revision {compacted}")),
        "{log}"
    );
    assert_eq!(chains(&remote).len(), 1, "no new chain before a new base");

    // A new full backup past the compaction: a new chain from it.
    env.publish(&c, &remote, MID);
    put_many(&c, 10, 13);
    wait_reached(&remote, &mut w, revision(&c));
    let all = chains(&remote);
    assert_eq!(all.len(), 2, "{log}");
    let new = &all[1].1;
    assert_eq!(new[0].header.seq, 0);
    assert!(new[0].header.start >= compacted, "{:?}", new[0].header);
    changes::plan(base_revision(&remote), new).unwrap_or_else(|b| panic!("{b}"));

    // --list names the revisions no chain captured, and how far each
    // backup's changes reach.
    let out = run_ok(env.fetch(&remote, MID).args(["--list", "--json"]));
    let err = String::from_utf8_lossy(&out.stderr);
    let old_reach = all[0].1.last().unwrap().header.last;
    let gap = format!(
        "revisions {} to {} were not captured",
        old_reach + 1,
        new[0].header.first - 1
    );
    assert!(err.contains("WARN") && err.contains(&gap), "{err}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows[0]["changes_to"], old_reach, "{rows:?}");
    assert_eq!(rows.last().unwrap()["changes_to"], revision(&c), "{rows:?}");
    assert_eq!(
        rows[0]["uncovered_after"],
        serde_json::json!({"from_revision": old_reach + 1, "to_revision": new[0].header.first - 1}),
        "{rows:?}"
    );
    let table = String::from_utf8(run_ok(env.fetch(&remote, MID).arg("--list")).stdout).unwrap();
    assert!(
        table.contains(&format!("GAP: {gap}; no restore reaches them")),
        "{table}"
    );

    // No point in the gap restores: by revision, nor by time.
    let refused = c.path().join("refused");
    let inside = (old_reach + 1).to_string();
    let out = harness::run(
        env.fetch(&remote, MID)
            .arg("--into")
            .arg(&refused)
            .args(["--to-revision", &inside]),
    );
    let line = harness::assert_fails_with(&out, "etcd2-fetch", &format!("revision {inside}"));
    assert!(
        line.contains(&format!(
            "not captured: the changes after the full backup at revision {} reach revision \
             {old_reach}, and the next captured ones (chain {}) cover revisions {} to",
            all[0].2[0].header.start, all[1].0, new[0].header.first
        )) && line.contains(&format!(
            "revisions {} to {} are a gap",
            old_reach + 1,
            new[0].header.first - 1
        )),
        "names the windows either side: {line}"
    );
    let out = harness::run(
        env.fetch(&remote, MID)
            .arg("--into")
            .arg(&refused)
            .args(["--to-time", &in_gap]),
    );
    let line = harness::assert_fails_with(
        &out,
        "etcd2-fetch",
        &format!("{in_gap} is in a range no change was captured for (a gap)"),
    );
    assert!(
        line.contains(&format!("{} covers revisions", all[0].0))
            && line.contains(&format!("the next chain {}", all[1].0)),
        "names the windows either side: {line}"
    );
    assert!(!refused.exists(), "nothing placed by a refused fetch");

    // A point in the older chain is reached through it, though a newer
    // chain exists (it starts after the point).
    let out = run_ok(
        env.fetch(&remote, MID)
            .arg("--into")
            .arg(c.path().join("at-old-reach"))
            .args(["--to-revision", &old_reach.to_string()]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("stop at revision {old_reach}")),
        "{err}"
    );
}

/// No backup yet: the watcher waits for one, saying so, and fails at
/// --base-wait naming what it waited for.
#[test]
fn without_a_full_backup_the_watcher_waits_then_fails_naming_it() {
    let (c, remote, env) = setup(Backend::Local);
    let out = harness::run(watch(&env, &remote, &c).args(["--base-wait", "3s"]));
    harness::assert_fails_with(&out, "etcd2-watch", "no backup published yet");
}

/// A second watcher on the host is refused while the first holds the lock.
#[test]
fn a_second_watcher_is_refused() {
    let (c, remote, env, _w) = capturing(2);
    let out = harness::run(&mut watch(&env, &remote, &c));
    let line =
        harness::assert_fails_with_code(&out, "etcd2-watch", 6, "locked: another etcd2-watch");
    assert!(
        line.contains("watch.lock") && !line.contains("--lock-wait"),
        "{line}"
    );
}

/// Every key with its revisions, version and lease, and the revision, as
/// `etcdctl get -w json` shows them at `endpoint`.
pub(crate) fn keyspace(endpoint: &str) -> (u64, Vec<serde_json::Value>) {
    keyspace_at(endpoint, None)
}

/// [`keyspace`] as it was at revision `rev` (`get --rev`); the revision
/// returned is the member's current one.
pub(crate) fn keyspace_at(endpoint: &str, rev: Option<u64>) -> (u64, Vec<serde_json::Value>) {
    let out = run_ok(
        std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(["get", "", "--prefix", "-w", "json"])
            .args(rev.map(|r| format!("--rev={r}"))),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
    (v["header"]["revision"].as_u64().unwrap(), kvs)
}

/// `etcdctl` against member 0, its one line of stdout.
pub(crate) fn ctl(c: &Cluster, args: &[&str]) -> String {
    let out = run_ok(c.etcdctl(0, "3").args(args));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A lease granted on member 0: its id in hex, as etcdctl takes it.
fn grant(c: &Cluster, ttl: u32) -> String {
    // "lease 694d7f7e1c1b2a0e granted with TTL(600s)"
    ctl(c, &["lease", "grant", &ttl.to_string()])
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// Fetch into a directory and restore it into `data` as member r1, as the
/// restore unit does: the changes come with the base and are replayed.
pub(crate) fn fetch_and_restore(
    env: &Env,
    remote: &Remote,
    c: &Cluster,
    extra: &[&str],
) -> (PathBuf, u16) {
    fetch_and_restore_on(None, env, remote, c, extra)
}

/// [`fetch_and_restore`] with the etcd build in `bin` restoring.
pub(crate) fn fetch_and_restore_on(
    bin: Option<&std::path::Path>,
    env: &Env,
    remote: &Remote,
    c: &Cluster,
    extra: &[&str],
) -> (PathBuf, u16) {
    let (data, pp, _) = fetch_and_restore_with(bin, &[], env, remote, c, extra);
    (data, pp)
}

/// [`fetch_and_restore_on`] with `vars` in etcd2-restore's environment; and
/// what etcd2-restore said.
pub(crate) fn fetch_and_restore_with(
    bin: Option<&std::path::Path>,
    vars: &[(&str, &str)],
    env: &Env,
    remote: &Remote,
    c: &Cluster,
    extra: &[&str],
) -> (PathBuf, u16, String) {
    let fetched = c.path().join(format!("fetched-{}", rand_suffix()));
    run_ok(
        env.fetch(remote, MID)
            .arg("--into")
            .arg(&fetched)
            .args(extra),
    );
    let data = c.path().join(format!("restored-{}", rand_suffix()));
    let pp = harness::free_port();
    let out = run_ok(
        harness::tool_on("etcd2-restore", bin)
            .envs(vars.iter().copied())
            .arg("--data-dir")
            .arg(&data)
            .args(["--name", "r1", "--peer-urls"])
            .arg(format!("http://127.0.0.1:{pp}"))
            .args(["--wait", "60s"])
            .arg(&fetched),
    );
    (data, pp, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The arrange of the replay tests: a full backup of 5 keys, a watcher,
/// then 15 more keys and one overwritten.
pub(crate) fn watched_history() -> (Cluster, Remote, Env, Watcher) {
    let (c, remote, env) = setup(Backend::Local);
    put_many(&c, 0, 5);
    env.publish(&c, &remote, MID);
    let w = Watcher::start(&env, &remote, &c, &[]);
    put_many(&c, 5, 20);
    c.put_v3(0, "/k3", "overwritten");
    (c, remote, env, w)
}

/// The restore replays the captured changes: the restored member holds
/// every key as the original does, with the same create and mod
/// revisions, versions and leases, at the same revision; a live lease is
/// attached with its TTL, a lease that expired and one that was revoked
/// are gone with their keys, and a `del --prefix` replays as one revision.
#[test]
fn a_restore_replays_the_changes_exactly_leases_included() {
    let (c, remote, env, mut w) = watched_history();
    ctl(&c, &["del", "--prefix", "/k1"]);
    let live = grant(&c, 600);
    ctl(&c, &["put", "--lease", &live, "/leased", "kept"]);
    let revoked = grant(&c, 600);
    ctl(&c, &["put", "--lease", &revoked, "/revoked", "gone"]);
    ctl(&c, &["lease", "revoke", &revoked]);
    let short = grant(&c, 2);
    ctl(&c, &["put", "--lease", &short, "/short", "expires"]);
    wait_for("the 2 s lease to expire", Duration::from_secs(30), || {
        c.get_v3(0, "/short").is_none().then_some(())
    });
    let (rev, original) = keyspace(c.endpoint(0));
    wait_reached(&remote, &mut w, rev);

    let (data, pp) = fetch_and_restore(&env, &remote, &c, &[]);
    let m = harness::etcd::start_alone_on(None, c.path(), data, pp, vec![], &[]);
    let (restored_rev, restored) = keyspace(&m.client_url);
    assert_eq!(
        restored_rev, rev,
        "the restored member is at the original revision"
    );
    assert_eq!(
        restored, original,
        "every key, revision, version and lease as the original"
    );
    let keys: Vec<&str> = restored
        .iter()
        .map(|kv| kv["key"].as_str().unwrap())
        .collect();
    assert!(!keys.is_empty());
    let ttl = run_ok(
        std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", m.client_url))
            .args(["lease", "timetolive", "--keys", &live]),
    );
    let ttl = String::from_utf8_lossy(&ttl.stdout);
    assert!(
        ttl.contains("granted with TTL(600s)") && ttl.contains("/leased"),
        "{ttl}"
    );
    for gone in [&revoked, &short] {
        let out = run_ok(
            std::process::Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", m.client_url))
                .args(["lease", "timetolive", gone]),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("already expired"), "lease {gone}: {text}");
    }
}

/// The replay keeps many transactions in flight; one that reaches etcd
/// before the one it follows fails its guard, changes nothing, and is sent
/// again in order (the fault injector holds back every third transaction
/// so that the next one overtakes it): the history is the original's.
#[test]
fn transactions_that_overtake_one_another_in_the_replay_are_put_back_in_order() {
    let (c, remote, env) = setup(Backend::Local);
    put_many(&c, 0, 3);
    env.publish(&c, &remote, MID);
    let mut w = Watcher::start(&env, &remote, &c, &[]);
    put_many(&c, 3, 30);
    ctl(&c, &["del", "--prefix", "/k1"]);
    put_many(&c, 30, 40);
    let (rev, original) = keyspace(c.endpoint(0));
    wait_reached(&remote, &mut w, rev);
    w.kill();
    let (data, pp, said) = fetch_and_restore_with(
        None,
        &[("ETCD2_BACKUP_FAULT_REORDER", "3")],
        &env,
        &remote,
        &c,
        &[],
    );
    assert!(said.contains("sent again in order"), "{said}");
    let m = harness::etcd::start_alone_on(None, c.path(), data, pp, vec![], &[]);
    assert_eq!(keyspace(&m.client_url), (rev, original));
}

/// A segment corrupted in the middle of the chain: fetch refuses, naming
/// the revision the changes reach and --to-last-good; with it, the
/// restore reaches exactly that revision. The same segment missing is
/// refused at the same revision.
#[test]
fn a_corrupt_or_missing_segment_is_refused_naming_how_far_the_changes_reach() {
    let (c, remote, env, mut w) = capturing(3);
    let mut marks = Vec::new();
    for round in 0..3 {
        put_many(&c, 10 * (round + 1), 10 * (round + 1) + 3);
        let rev = revision(&c);
        wait_reached(&remote, &mut w, rev);
        marks.push(rev);
    }
    w.kill();
    let (_, links, _) = chains(&remote).pop().unwrap();
    // The segment that starts after the first mark: everything before it
    // is reachable, nothing after.
    let bad = links
        .iter()
        .find(|l| l.header.first > marks[0])
        .expect("a segment after the first mark");
    let reach = bad.header.first - 1;
    remote.corrupt(&format!(
        "{MID}/changes/{}/{}",
        bad.header.chain,
        bad.name.file_name()
    ));

    let fetched = c.path().join("refused");
    let out = harness::run(env.fetch(&remote, MID).arg("--into").arg(&fetched));
    let line = harness::assert_fails_with(&out, "etcd2-fetch", "is corrupt");
    assert!(
        line.contains(&format!("reach revision {reach}")) && line.contains("--to-last-good"),
        "{line}"
    );
    assert!(!fetched.exists(), "a refused fetch placed nothing");

    let (data, pp) = fetch_and_restore(&env, &remote, &c, &["--to-last-good"]);
    let m = harness::etcd::start_alone_on(None, c.path(), data, pp, vec![], &[]);
    assert_eq!(keyspace(&m.client_url).0, reach);

    // The same segment gone: missing, refused at the same revision.
    let gone = format!(
        "{MID}/changes/{}/{}",
        bad.header.chain,
        bad.name.file_name()
    );
    let del = remote.rclone(&["deletefile", &format!("{}/{gone}", remote.endpoint)]);
    assert!(del.status.success(), "{del:?}");
    let out = harness::run(env.fetch(&remote, MID).arg("--into").arg(&fetched));
    let line = harness::assert_fails_with(&out, "etcd2-fetch", "missing or out of order");
    assert!(line.contains(&format!("reach revision {reach}")), "{line}");
    assert!(!fetched.exists(), "a refused fetch placed nothing");
}

/// Retention: a push that expires generations removes the segments no
/// kept generation needs (all at or before the oldest kept one's
/// revision), keeps every later one, and the newest backup still restores
/// with its changes.
#[test]
fn retention_removes_the_segments_no_kept_backup_needs() {
    let (c, remote, env, mut w) = capturing(3);
    for round in 0..3 {
        put_many(&c, 10 * (round + 1), 10 * (round + 1) + 3);
        wait_reached(&remote, &mut w, revision(&c));
        let archive = c.path().join("again.tar.zst");
        let _ = std::fs::remove_file(&archive);
        c.snapshot_to(0, "v3", &archive);
        let out = run_ok(env.push(&remote, MID).args(["--keep", "2"]).arg(&archive));
        if round == 2 {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("change segment(s) no kept backup needs"),
                "{err}"
            );
        }
    }
    put_many(&c, 50, 53);
    let rev = revision(&c);
    wait_reached(&remote, &mut w, rev);
    let complete = remote.complete(MID);
    assert_eq!(complete.len(), 2, "{complete:?}");
    let side = remote
        .read(&format!("{MID}/generations/{}.json", complete[0]))
        .unwrap();
    let floor = serde_json::from_slice::<serde_json::Value>(&side).unwrap()["manifest"]["revision"]
        .as_u64()
        .unwrap();
    let (_, links, _) = chains(&remote).pop().unwrap();
    assert!(
        links.iter().all(|l| l.header.last > floor),
        "a segment at or before revision {floor} is left: {links:?}"
    );
    assert_eq!(links.last().unwrap().header.last, rev);

    let (data, pp) = fetch_and_restore(&env, &remote, &c, &[]);
    let m = harness::etcd::start_alone_on(None, c.path(), data, pp, vec![], &[]);
    assert_eq!(keyspace(&m.client_url), keyspace(c.endpoint(0)));
}

/// The replay on every etcd build the suite claims (3.4's etcdctl restore,
/// 3.5's etcdutl and --unsafe-no-fsync, 3.6 and 3.7): the restored member
/// equals the original key by key, at the original revision.
#[test]
fn the_replay_reproduces_the_history_on_every_etcd_build() {
    for b in harness::etcd::builds() {
        let bin = harness::etcd::bin_of(&b.version);
        let c = Cluster::start_bin(1, &bin);
        let remote = Backend::Local.start(c.path());
        let env = Env::new(c.path());
        put_many(&c, 0, 3);
        env.publish(&c, &remote, MID);
        let mut w = Watcher::start(&env, &remote, &c, &[]);
        put_many(&c, 3, 12);
        ctl(&c, &["del", "--prefix", "/k1"]);
        let lease = grant(&c, 600);
        ctl(&c, &["put", "--lease", &lease, "/leased", "v"]);
        let (rev, original) = keyspace(c.endpoint(0));
        wait_reached(&remote, &mut w, rev);
        w.kill();
        let (data, pp) = fetch_and_restore_on(Some(&bin), &env, &remote, &c, &[]);
        let m = harness::etcd::start_alone_on(Some(&bin), c.path(), data, pp, vec![], &[]);
        assert_eq!(
            keyspace(&m.client_url),
            (rev, original),
            "etcd {}",
            b.version
        );
    }
}

/// The first segment after the full backup corrupt: nothing of the
/// changes can be replayed; fetch refuses naming --no-changes, and with
/// --to-last-good the restore is the full backup alone.
#[test]
fn a_corrupt_first_segment_leaves_the_full_backup_alone() {
    let (c, remote, env, mut w) = capturing(3);
    w.kill();
    let base = base_revision(&remote);
    let (_, links, _) = chains(&remote).pop().unwrap();
    let first = links.iter().find(|l| l.header.last > base).unwrap();
    remote.corrupt(&format!(
        "{MID}/changes/{}/{}",
        first.header.chain,
        first.name.file_name()
    ));
    let fetched = c.path().join("refused");
    let out = harness::run(env.fetch(&remote, MID).arg("--into").arg(&fetched));
    let line = harness::assert_fails_with(&out, "etcd2-fetch", "is corrupt");
    assert!(
        line.contains(&format!("reach revision {base}")) && line.contains("--no-changes"),
        "{line}"
    );
    assert!(!fetched.exists());
    let (data, pp) = fetch_and_restore(&env, &remote, &c, &["--to-last-good"]);
    let m = harness::etcd::start_alone_on(None, c.path(), data, pp, vec![], &[]);
    assert_eq!(keyspace(&m.client_url).0, base);
}

/// `get PREFIX --prefix -w json` of a member, serializable: key -> (value,
/// create revision, mod revision, version).
fn revisions_at(endpoint: &str, prefix: &str) -> BTreeMap<String, (String, u64, u64, u64)> {
    let out = run_ok(
        std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(["get", prefix, "--prefix", "--consistency=s", "-w", "json"]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b64 = |x: &serde_json::Value| {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(x.as_str().unwrap_or_default())
            .unwrap();
        String::from_utf8(raw).unwrap()
    };
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
    v["kvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            (
                b64(&kv["key"]),
                (
                    b64(&kv["value"]),
                    n(&kv["create_revision"]),
                    n(&kv["mod_revision"]),
                    n(&kv["version"]),
                ),
            )
        })
        .collect()
}

/// A writer thread: puts PREFIX<n> on ENDPOINT until one fails (its
/// member died), returning each acknowledged key with when it was.
fn busy_writer(
    endpoint: String,
    prefix: String,
) -> std::thread::JoinHandle<Vec<(String, Instant)>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        for n in 0.. {
            let key = format!("{prefix}{n:06}");
            let ok = std::process::Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={endpoint}"))
                .args(["--dial-timeout=2s", "--command-timeout=5s", "put", &key])
                .arg(format!("v{n}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                break;
            }
            acked.push((key, Instant::now()));
        }
        acked
    })
}

/// The slowest publication etcd2-watch logged ("... in N ms").
fn slowest_publication(log: &str) -> Duration {
    let ms = log
        .lines()
        .filter(|l| l.contains("published segment"))
        .filter_map(|l| {
            l.split(") in ")
                .nth(1)?
                .split(" ms")
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .expect("the watcher logged its publications");
    Duration::from_millis(ms)
}

/// The node dies under a busy writer: the watcher and its etcd are
/// SIGKILLed at a moment of no one's choosing. The cluster restored from
/// the full backup and its changes, founder then joins, holds on every
/// member every write acknowledged more than one segment interval (plus
/// the slowest publication the watcher logged) before the kill, each at the
/// create and mod revision and version it had in the original cluster.
#[test]
fn a_node_killed_under_a_busy_writer_restores_every_captured_write_at_its_revision_on_every_member()
{
    let mut c = Cluster::start(3);
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    put_many(&c, 0, 5);
    env.publish(&c, &remote, MID);
    let mut w = Watcher::start(&env, &remote, &c, &[]);
    wait_for(
        "the watcher to start watching",
        Duration::from_secs(30),
        || {
            w.assert_running();
            w.log().contains("starting chain").then_some(())
        },
    );

    let writers: Vec<_> = (0..4)
        .map(|t| busy_writer(c.endpoint(0).to_owned(), format!("/busy/{t}/")))
        .collect();
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    std::thread::sleep(Duration::from_millis(2500 + u64::from(jitter)));
    // The node dies: the watcher first, so nothing is published after.
    w.kill();
    let killed = Instant::now();
    c.members[0].kill();
    let acked: Vec<(String, Instant)> = writers
        .into_iter()
        .flat_map(|t| t.join().expect("a writer thread"))
        .collect();
    let interval = Duration::from_millis(300);
    let bound = interval + slowest_publication(&w.log());
    let must: Vec<&String> = acked
        .iter()
        .filter(|(_, at)| killed.duration_since(*at) > bound)
        .map(|(k, _)| k)
        .collect();
    assert!(
        must.len() >= 20,
        "a busy writer: {} writes acknowledged, {} of them more than {bound:?} before the kill",
        acked.len(),
        must.len()
    );
    // What the two surviving members hold is the original history.
    let original = revisions_at(c.endpoint(1), "/busy/");
    for (k, _) in &acked {
        assert!(
            original.contains_key(k),
            "acknowledged {k} is in the cluster"
        );
    }

    restore::destroy_all(&mut c);
    restore::founder(&mut c, 0, &remote, &env, MID);
    restore::join(&mut c, 0, 1, 2);
    restore::join(&mut c, 0, 2, 3);
    for i in 0..3 {
        let got = revisions_at(c.endpoint(i), "/busy/");
        for k in &must {
            assert!(
                got.contains_key(*k),
                "member {i}: {k}, acknowledged more than {bound:?} before the kill, is missing \
                 ({} of {} restored)",
                got.len(),
                acked.len()
            );
        }
        for (k, v) in &got {
            assert_eq!(
                Some(v),
                original.get(k),
                "member {i}: {k} (value, create, mod revision, version) as in the original"
            );
        }
    }
}

/// The bad night: keys written and overwritten, then all of them deleted
/// with `del --prefix` and more written. `etcd2-fetch --to-revision` of the
/// revision before the delete, restored, holds every key exactly as it was
/// at that revision (value, create and mod revision, version, as `get
/// --rev` of the original shows them) and is at that revision: nothing of
/// what came after. A revision past what was captured, or before every full
/// backup, is refused, naming how far the backups reach.
#[test]
fn a_restore_to_the_revision_before_a_bad_delete_brings_every_key_back_as_it_was() {
    let (c, remote, env, mut w) = watched_history();
    let before = revision(&c);
    let (_, as_it_was) = keyspace_at(c.endpoint(0), Some(before));
    ctl(&c, &["del", "--prefix", "/k"]);
    put_many(&c, 100, 105);
    let end = revision(&c);
    wait_reached(&remote, &mut w, end);
    w.kill();
    // A newer full backup, already past the point: not the one chosen.
    let newer = env.publish(&c, &remote, MID).generation;
    let newest_base = base_revision(&remote);

    let (data, pp) = fetch_and_restore(&env, &remote, &c, &["--to-revision", &before.to_string()]);
    let m = harness::etcd::start_alone_on(None, c.path(), data, pp, vec![], &[]);
    let (restored_rev, restored) = keyspace(&m.client_url);
    assert_eq!(
        restored_rev, before,
        "restored to exactly the revision asked"
    );
    assert_eq!(
        restored, as_it_was,
        "every key as it was at revision {before}"
    );
    assert!(
        restored.len() >= 20,
        "the deleted keys are back: {}",
        restored.len()
    );

    let into = c.path().join("refused");
    let past = (end + 10).to_string();
    let out = harness::run(
        env.fetch(&remote, MID)
            .arg("--into")
            .arg(&into)
            .args(["--to-revision", &past]),
    );
    harness::assert_fails_with(
        &out,
        "etcd2-fetch",
        &format!("revision {past} is not captured: the changes after the full backup at revision {newest_base} reach revision {end}"),
    );
    let out = harness::run(
        env.fetch(&remote, MID)
            .arg("--into")
            .arg(&into)
            .args(["--to-revision", "1"]),
    );
    harness::assert_fails_with(
        &out,
        "etcd2-fetch",
        "revision 1 is before every full backup",
    );
    let out = harness::run(env.fetch(&remote, MID).arg("--into").arg(&into).args([
        "--to-revision",
        &before.to_string(),
        "--generation",
        &newer,
    ]));
    harness::assert_fails_with(
        &out,
        "etcd2-fetch",
        &format!("generation {newer} is at revision"),
    );
    assert!(!into.exists(), "nothing placed by a refused fetch");

    // The point is a base's own revision: no segment is needed, but the
    // stop is recorded all the same, so the restore checks that the base
    // (whose sidecar revision is read before its snapshot) is not past it.
    let at_base = c.path().join("at-base");
    run_ok(
        env.fetch(&remote, MID)
            .arg("--into")
            .arg(&at_base)
            .args(["--to-revision", &newest_base.to_string()]),
    );
    let target: serde_json::Value =
        serde_json::from_slice(&std::fs::read(at_base.join("changes/TARGET.json")).unwrap())
            .unwrap();
    assert_eq!(target["revision"], newest_base);
}

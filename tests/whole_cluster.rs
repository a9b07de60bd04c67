//! The whole cluster restored at once (etcd's own disaster-recovery way):
//! every member restored on its own from the same fetched backup with the
//! full member list, all started together, nothing streamed between them;
//! and etcd2-health proving afterwards that they hold the same keys, or
//! naming the member that does not.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use harness::etcd::Cluster;
use harness::rclone::Remote;
use harness::{assert_fails_with, run, run_ok, tool, tool_on, Env};

use crate::restore::{assert_v3_keys_everywhere, destroy_all};

const MID: &str = "e1000000000000000000000000000001";

/// etcd's `--initial-cluster` of the cluster's members, as their etcd
/// drop-ins set ETCD_INITIAL_CLUSTER.
fn initial_cluster(c: &Cluster) -> String {
    c.members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect::<Vec<_>>()
        .join(",")
}

fn all_endpoints(c: &Cluster) -> String {
    (0..c.members.len())
        .map(|i| c.endpoint(i).to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// What one node runs: `etcd2-restore --whole-cluster` of its own fetched
/// copy, the member list from etcd's ETCD_INITIAL_CLUSTER.
fn restore_member(c: &Cluster, i: usize, fetched: &Path) -> Command {
    let m = &c.members[i];
    let mut cmd = tool_on("etcd2-restore", c.bin.as_deref());
    cmd.arg("--data-dir")
        .arg(&m.data_dir)
        .args(["--name", &m.name, "--peer-urls", &m.peer_url])
        .arg("--whole-cluster")
        .env("ETCD_INITIAL_CLUSTER", initial_cluster(c))
        .arg(fetched);
    cmd
}

/// Run every command at the same time, each required to succeed.
fn all_at_once(cmds: Vec<Command>) -> Vec<Output> {
    let running: Vec<_> = cmds
        .into_iter()
        .map(|mut c| {
            let child = c
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {c:?}: {e}"));
            (format!("{c:?}"), child)
        })
        .collect();
    running
        .into_iter()
        .map(|(what, child)| {
            let out = child.wait_with_output().expect("waiting");
            eprintln!(
                "--- stderr of {what}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success(),
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out
        })
        .collect()
}

/// Each node's fetch of the founder's backup (`--generation` pins one).
fn fetch_each(
    c: &Cluster,
    remote: &Remote,
    env: &Env,
    generation: &[Option<&str>],
) -> Vec<PathBuf> {
    (0..c.members.len())
        .map(|i| {
            let dir = c.path().join(format!("fetched-{i}"));
            let mut f = env.fetch(remote, MID);
            f.arg("--into").arg(&dir);
            if let Some(g) = generation[i] {
                f.args(["--generation", g]);
            }
            run_ok(&mut f);
            dir
        })
        .collect()
}

/// Start every member on its restored data dir with the full member list,
/// as etcd2.service would on each node.
fn start_all(c: &mut Cluster) {
    let ic = initial_cluster(c);
    for i in 0..c.members.len() {
        c.start_again(i, Some((ic.clone(), "new".to_owned())));
    }
}

fn record(c: &Cluster, i: usize) -> serde_json::Value {
    record_at(&c.members[i].data_dir)
}

/// What the restore of `data_dir` recorded in its member.
fn record_at(data_dir: &Path) -> serde_json::Value {
    let p = data_dir.join("member/etcd2-restored.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// `etcd2-health --members 3` through `endpoints`, bounded at 60 s, with
/// the cluster's etcdctl.
fn health(c: &Cluster, endpoints: &str) -> Command {
    let mut h = tool_on("etcd2-health", c.bin.as_deref());
    h.args(["--members", "3", "--wait", "60s", "--endpoints", endpoints]);
    h
}

fn cluster_id(c: &Cluster, i: usize) -> u64 {
    let out = run_ok(c.etcdctl(i, "3").args(["endpoint", "status", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["Status"]["header"]["cluster_id"].as_u64().unwrap()
}

#[test]
fn every_member_restored_at_once_from_one_backup() {
    restored_at_once(None);
}

/// Three members restored at the same time from one generation, on the
/// etcd build in `bin` (None: Debian's, on PATH); the version matrix runs
/// it on every other build of scripts/versions.
pub(crate) fn restored_at_once(bin: Option<&Path>) {
    let mut c = match bin {
        Some(b) => Cluster::start_bin(3, b),
        None => Cluster::start(3),
    };
    for k in 0..30 {
        c.put_v3(k % 3, &format!("/k{k}"), &format!("v{k}"));
    }
    let original = cluster_id(&c, 0);
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    env.publish(&c, &remote, MID);
    destroy_all(&mut c);

    let fetched = fetch_each(&c, &remote, &env, &[None, None, None]);
    // e3's member list from --initial-cluster, the others' from etcd's
    // own ETCD_INITIAL_CLUSTER; the three restores run at once.
    let mut third = restore_member(&c, 2, &fetched[2]);
    third
        .env_remove("ETCD_INITIAL_CLUSTER")
        .args(["--initial-cluster", &initial_cluster(&c)]);
    let outs = all_at_once(vec![
        restore_member(&c, 0, &fetched[0]),
        restore_member(&c, 1, &fetched[1]),
        third,
    ]);
    let log = String::from_utf8_lossy(&outs[0].stderr);
    assert!(
        log.contains("member of the whole cluster e1, e2, e3"),
        "the restore says what it made: {log}"
    );

    start_all(&mut c);
    for i in 0..3 {
        c.wait_healthy(i);
    }
    let out = run_ok(health(&c, &all_endpoints(&c)).arg("--json"));
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let agreed = &health["agreement"];
    assert_eq!(agreed["members"].as_array().unwrap().len(), 3, "{health}");

    // Every member recorded the same backup, revision, token and KV hash,
    // and the running cluster hashes to what the restores recorded.
    let records: Vec<_> = (0..3).map(|i| record(&c, i)).collect();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["mode"], "whole-cluster", "{r}");
        assert_eq!(r["name"], c.members[i].name.as_str());
        for field in [
            "backup_db_sha256",
            "revision",
            "kv_hash",
            "initial_cluster",
            "initial_cluster_token",
        ] {
            assert_eq!(r[field], records[0][field], "member {i}'s {field}");
            assert!(!r[field].is_null(), "member {i} recorded no {field}");
        }
    }
    assert_eq!(agreed["revision"], records[0]["revision"], "{health}");
    assert_eq!(
        format!("{:08x}", agreed["kv_hash"].as_u64().unwrap()),
        records[0]["kv_hash"].as_str().unwrap()
    );

    assert_v3_keys_everywhere(&c, 30);
    let ids: Vec<u64> = (0..3).map(|i| cluster_id(&c, i)).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one cluster: {ids:?}");
    assert_ne!(ids[0], original, "a new cluster, not the original's token");
    // And it is one cluster: a write on e1 is read on e3.
    c.put_v3(0, "/after", "restored");
    assert_eq!(c.get_v3(2, "/after").as_deref(), Some("restored"));
}

/// Two backups of the same cluster, 20 keys apart: the newest on e1 and
/// e2, the older on e3.
fn restore_e3_from_an_older_generation(token: Option<&str>) -> Cluster {
    let mut c = Cluster::start(3);
    for k in 0..10 {
        c.put_v3(0, &format!("/k{k}"), &format!("v{k}"));
    }
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let older = env.publish(&c, &remote, MID);
    for k in 10..30 {
        c.put_v3(0, &format!("/k{k}"), &format!("v{k}"));
    }
    env.publish(&c, &remote, MID);
    destroy_all(&mut c);
    let fetched = fetch_each(&c, &remote, &env, &[None, None, Some(&older.generation)]);
    let cmds = (0..3)
        .map(|i| {
            let mut r = restore_member(&c, i, &fetched[i]);
            if let Some(t) = token {
                r.args(["--initial-cluster-token", t]);
            }
            r
        })
        .collect();
    all_at_once(cmds);
    start_all(&mut c);
    c.wait_healthy(0);
    c.wait_healthy(1);
    c
}

#[test]
fn a_member_restored_from_another_backup_forms_no_cluster_and_is_named() {
    // The default token follows the data: e3's is another, so its etcd
    // has another cluster ID and never joins; e1 and e2 have quorum.
    let c = restore_e3_from_an_older_generation(None);
    let (r1, r3) = (record(&c, 0), record(&c, 2));
    assert_ne!(r1["initial_cluster_token"], r3["initial_cluster_token"]);
    // Asked through e1 alone: the member list shows e3 as not started, and
    // its peer URL answers with its own cluster ID.
    let out = run(&mut health(&c, c.endpoint(0)));
    let line = assert_fails_with(&out, "etcd2-health", &c.members[2].peer_url);
    assert!(line.contains("answers as a member of cluster"), "{line}");
    assert!(line.contains("restored from other data"), "{line}");
    assert_eq!(c.get_v3(0, "/k29").as_deref(), Some("v29"));
}

#[test]
fn a_member_restored_from_another_backup_with_the_same_token_is_named() {
    // Forced into one cluster by a shared token, e3 holds the older keys:
    // the same history up to its revision (equal hashes there), then it
    // lags behind at the same raft index.
    let c = restore_e3_from_an_older_generation(Some("one-token-for-all"));
    c.wait_healthy(2);
    let out = run(&mut health(&c, &all_endpoints(&c)));
    let line = assert_fails_with(&out, "etcd2-health", "the members hold different keys");
    // The older keys hash alike up to e3's revision: it is the revisions
    // at one raft index that tell.
    assert!(line.contains("their revisions differ"), "{line}");
    assert!(line.contains("e3 at "), "names e3: {line}");
    assert!(line.contains(", the others at "), "{line}");
    // Without the comparison the cluster looks healthy: what the hash and
    // revision check is there to catch.
    run_ok(health(&c, &all_endpoints(&c)).arg("--no-kv-hash"));
}

#[test]
fn a_whole_cluster_restore_refuses_what_it_cannot_make() {
    // The v3 backup first: a member with keys in both keyspaces is
    // refused by etcd2-snapshot.
    let c = Cluster::start(1);
    let v3 = c.path().join("v3.tar.zst");
    c.snapshot_to(0, "v3", &v3);
    c.put_v2(0, "/v2/k", "v");
    let v2 = c.path().join("v2.tar.zst");
    c.snapshot_to(0, "v2", &v2);
    let data = c.path().join("restored");
    let restore = |from: &Path, ic: Option<&str>| {
        let mut r = tool("etcd2-restore");
        r.arg("--data-dir")
            .arg(&data)
            .args(["--name", "r1", "--peer-urls", "http://127.0.0.1:2380"])
            .arg("--whole-cluster")
            .env_remove("ETCD_INITIAL_CLUSTER")
            .arg(from);
        if let Some(ic) = ic {
            r.env("ETCD_INITIAL_CLUSTER", ic);
        }
        run(&mut r)
    };
    let ic = "r1=http://127.0.0.1:2380,r2=http://127.0.0.1:2381";
    let line = assert_fails_with(&restore(&v2, Some(ic)), "etcd2-restore", "is a v2 backup");
    assert!(line.contains("--force-new-cluster"), "says why: {line}");
    assert!(
        line.contains("join the others"),
        "points at the founder's way: {line}"
    );
    assert_fails_with(&restore(&v3, None), "etcd2-restore", "ETCD_INITIAL_CLUSTER");
    assert_fails_with(
        &restore(
            &v3,
            Some("r2=http://127.0.0.1:2381,r3=http://127.0.0.1:2382"),
        ),
        "etcd2-restore",
        "not this member, \"r1\"",
    );
    assert_fails_with(
        &restore(
            &v3,
            Some("r1=http://127.0.0.1:2390,r2=http://127.0.0.1:2381"),
        ),
        "etcd2-restore",
        "says http://127.0.0.1:2380",
    );
    // Nothing was made on any of these paths.
    assert!(
        !data.join("member").exists(),
        "a refused restore made a member"
    );
    // The founder's restore on a host whose etcd sets ETCD_INITIAL_CLUSTER
    // stays a founder's: the variable is read only with --whole-cluster.
    run_ok(harness::restore_into(&data, &v3).env("ETCD_INITIAL_CLUSTER", "x=http://127.0.0.1:1"));
    assert_eq!(record_at(&data)["mode"], "founder");
    // A second whole-cluster restore from the same backup, on a node the
    // first one restored, with the same (default) token: refused, naming
    // the token, for a member left running from the first could be taken
    // for a peer of the second. A new token, the same on every node, goes.
    let again = c.path().join("again");
    let whole = |token: Option<&str>| {
        let mut r = tool("etcd2-restore");
        r.arg("--data-dir")
            .arg(&again)
            .args(["--name", "r1", "--peer-urls", "http://127.0.0.1:2380"])
            .args(["--whole-cluster", "--initial-cluster", ic]);
        if let Some(t) = token {
            r.args(["--initial-cluster-token", t]);
        }
        run(r.arg(&v3))
    };
    assert!(whole(None).status.success());
    let first = record_at(&again);
    let token = first["initial_cluster_token"].as_str().unwrap().to_owned();
    let line = assert_fails_with(&whole(None), "etcd2-restore", &token);
    assert!(line.contains("--initial-cluster-token"), "says how: {line}");
    assert_eq!(
        record_at(&again),
        first,
        "a refused restore changed the member"
    );
    assert!(whole(Some("second-recovery")).status.success());
    assert_eq!(
        record_at(&again)["initial_cluster_token"],
        "second-recovery"
    );

    // --initial-cluster without --whole-cluster is a usage error.
    let out = run(harness::restore_into(&data, &v3).args(["--initial-cluster", ic]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PATH whose etcdctl is the real one, but every `endpoint hashkv`
/// starts `secs` late: the fault a slow hash (a large keyspace) makes.
fn slow_hashkv_path(dir: &Path, secs: u32) -> std::ffi::OsString {
    let real = harness::require("etcdctl", "etcd-client");
    let bin = dir.join(format!("slow-hashkv-{secs}"));
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("etcdctl");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" hashkv \"*) sleep {secs};; esac\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = bin.into_os_string();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

#[test]
fn a_lease_expiring_in_the_check_start_is_not_in_the_restored_member() {
    // A key under the shortest lease etcd grants: it expires while the
    // check start hashes (made slow here), and etcd deletes it there. The
    // member handed to the cluster is the backup as restored, every node
    // alike, not what one node's check start happened to do to it.
    let c = Cluster::start(1);
    let out = run_ok(c.etcdctl(0, "3").args(["lease", "grant", "2"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lease = text.split_whitespace().nth(1).unwrap().to_owned();
    run_ok(
        c.etcdctl(0, "3")
            .args(["put", "/leased", "v", "--lease", &lease]),
    );
    c.put_v3(0, "/kept", "v");
    let v3 = c.path().join("v3.tar.zst");
    c.snapshot_to(0, "v3", &v3);
    let out = run_ok(c.etcdctl(0, "3").args(["endpoint", "status", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backed_up = v[0]["Status"]["header"]["revision"].as_u64().unwrap();

    let data = c.path().join("restored");
    run_ok(
        tool("etcd2-restore")
            .env("PATH", slow_hashkv_path(c.path(), 5))
            .arg("--data-dir")
            .arg(&data)
            .args(["--name", "r1", "--peer-urls", "http://127.0.0.1:2380"])
            .args(["--whole-cluster", "--initial-cluster"])
            .arg("r1=http://127.0.0.1:2380,r2=http://127.0.0.1:2381")
            .arg(&v3),
    );
    let out = run_ok(
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "-w", "json"])
            .arg(data.join("member/snap/db")),
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["revision"].as_u64(), Some(backed_up), "{st}");
    assert_eq!(record_at(&data)["revision"].as_u64(), Some(backed_up));
}

#[test]
fn a_slow_kv_hash_is_waited_for() {
    // A keyspace of several GiB hashes for longer than a status query may
    // take: the comparison waits for it (bounded by --timeout), and does
    // not fail the cluster as "not compared".
    let c = Cluster::start(1);
    c.put_v3(0, "/k", "v");
    let out = run(tool("etcd2-health")
        .env("PATH", slow_hashkv_path(c.path(), 12))
        .args(["--members", "1", "--wait", "40s", "--json", "--endpoints"])
        .arg(c.endpoint(0)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(health["agreement"]["kv_hash"].is_u64(), "{health}");
}

#[test]
fn an_endpoint_serving_a_cluster_of_its_own_is_named() {
    // r1 serves a one-member cluster of its own (restored as a founder by
    // mistake, say): the others never list it, so only asking each of
    // --endpoints finds it, and names it against the listed members.
    let c = Cluster::start(2);
    let alone = harness::etcd::start_alone(
        c.path(),
        c.path().join("alone"),
        harness::free_port(),
        vec![],
    );
    let endpoints = format!("{},{},{}", alone.client_url, c.endpoint(0), c.endpoint(1));
    let mut h = tool("etcd2-health");
    h.args(["--members", "2", "--wait", "20s", "--endpoints", &endpoints]);
    let out = run(&mut h);
    let line = assert_fails_with(
        &out,
        "etcd2-health",
        &format!("the member at {} (id ", alone.client_url),
    );
    assert!(line.contains("restored from other data"), "{line}");
    for i in 0..2 {
        assert!(
            !line.contains(&format!("the member at {} ", c.endpoint(i))),
            "e{} is of the listed members' cluster: {line}",
            i + 1
        );
    }
}

#[test]
fn a_cluster_taking_writes_throughout_is_not_judged_divergent() {
    // A writer that never pauses while the members are compared: a write
    // applied between two readings is no divergence. The check ends
    // healthy, by revisions at a quiet look or by the hash alone (and
    // then says so).
    let c = Cluster::start(3);
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "i=0; while :; do i=$((i+1)); ETCDCTL_API=3 etcdctl --endpoints={} put /busy \"$i\" \
             >/dev/null || exit 1; done",
            c.endpoint(0)
        ))
        .spawn()
        .expect("spawning the writer");
    let out = run(health(&c, &all_endpoints(&c)).arg("--json"));
    let still_writing = writer.try_wait().expect("the writer").is_none();
    writer.kill().expect("stopping the writer");
    writer.wait().expect("reaping the writer");
    assert!(still_writing, "the writer stopped before the check ended");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let agreed = &health["agreement"];
    assert!(agreed["kv_hash"].is_u64(), "{health}");
    if agreed["revision"].is_null() {
        assert!(err.contains("judged by the KV hash"), "{err}");
    }
}

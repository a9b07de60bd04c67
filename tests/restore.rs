//! The seed README's recovery scenarios, run with our tools against real
//! 3-member etcd clusters on loopback: restore, migrate, change the founder;
//! and the failure paths of wipe, restore and member-add.

use std::path::Path;
use std::process::Command;

use harness::etcd::{self, parse_dropin, Cluster};
use harness::rclone::Remote;
use harness::{assert_fails_with, assert_fails_with_code, names, pipe_ok, run, run_ok, tool, Env};

const MID: [&str; 3] = [
    "e1000000000000000000000000000001",
    "e2000000000000000000000000000002",
    "e3000000000000000000000000000003",
];
const NEW_MID: &str = "f1000000000000000000000000000001";

/// etcd2-snapshot -o - | etcd2-push -, for member i.
fn backup(c: &Cluster, i: usize, remote: &Remote, env: &Env, mid: &str) {
    let mut snap = tool("etcd2-snapshot");
    snap.env("ETCDCTL_ENDPOINTS", c.endpoint(i))
        .env("ETCD_DATA_DIR", &c.members[i].data_dir)
        .env("ETCD_BACKUP_DIR", c.path().join(format!("snapwork{i}")))
        .args(["-q", "-o", "-"]);
    let mut push = env.push(remote, mid);
    push.arg("-");
    pipe_ok(snap, push);
}

/// The disaster: every member stopped, every WAL and db overwritten.
pub(crate) fn destroy_all(c: &mut Cluster) {
    for m in c.members.iter_mut() {
        m.stop();
        let member = m.data_dir.join("member");
        for f in names(&member.join("wal")) {
            std::fs::write(member.join("wal").join(f), b"garbage").unwrap();
        }
        std::fs::write(member.join("snap/db"), b"garbage").unwrap();
    }
}

pub(crate) fn founder(c: &mut Cluster, i: usize, remote: &Remote, env: &Env, mid: &str) {
    let fetched = c.path().join(format!("fetched-{i}"));
    run_ok(env.fetch(remote, mid).arg("--into").arg(&fetched));
    run_ok(
        tool("etcd2-restore")
            .arg("--data-dir")
            .arg(&c.members[i].data_dir)
            .args([
                "--name",
                &c.members[i].name.clone(),
                "--peer-urls",
                &c.members[i].peer_url.clone(),
            ])
            .arg(&fetched),
    );
    c.restart(i, None);
}

fn member_add(c: &Cluster, founder: usize, j: usize) -> Command {
    let mut cmd = tool("etcd2-member-add");
    cmd.env("ETCD_RESTORE_MASTER_ADV_PEER_URLS", c.endpoint(founder))
        .env("ETCD_NAME", &c.members[j].name)
        .env("ETCD_INITIAL_ADVERTISE_PEER_URLS", &c.members[j].peer_url)
        .arg("--dropin")
        .arg(c.path().join(format!("join-{j}.conf")));
    cmd
}

/// What etcd2-join.service does, then starting etcd2 with the drop-in, whose
/// promotion step (etcd2-health --promote: the joiner is a learner until
/// then) also replaces `sleep 10`.
pub(crate) fn join(c: &mut Cluster, founder: usize, j: usize, started_after: usize) {
    run_ok(tool("etcd2-wipe").arg(&c.members[j].data_dir));
    run_ok(&mut member_add(c, founder, j));
    let text = std::fs::read_to_string(c.path().join(format!("join-{j}.conf"))).unwrap();
    let name = c.members[j].name.clone();
    assert!(
        text.contains("--promote"),
        "a learner's drop-in promotes it: {text}"
    );
    c.start_again(j, Some(parse_dropin(&text, &name)));
    run_ok(
        harness::promote(
            tool("etcd2-health"),
            c.endpoint(founder),
            &name,
            started_after,
        )
        .arg("-q"),
    );
    c.wait_healthy(j);
}

fn member_count(c: &Cluster, i: usize) -> usize {
    let out = run_ok(c.etcdctl(i, "3").args(["member", "list"]));
    String::from_utf8_lossy(&out.stdout).lines().count()
}

pub(crate) fn assert_v3_keys_everywhere(c: &Cluster, keys: usize) {
    for i in 0..c.members.len() {
        for k in 0..keys {
            let out = run_ok(c.etcdctl(i, "3").args([
                "get",
                "--consistency=s",
                "--print-value-only",
                &format!("/k{k}"),
            ]));
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                format!("v{k}"),
                "member {i} key {k}"
            );
        }
    }
}

#[test]
fn restore_the_cluster_v3_with_idempotent_and_guarded_joins() {
    let mut c = Cluster::start(3);
    for k in 0..30 {
        c.put_v3(k % 3, &format!("/k{k}"), &format!("v{k}"));
    }
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    backup(&c, 0, &remote, &env, MID[0]);
    destroy_all(&mut c);

    founder(&mut c, 0, &remote, &env, MID[0]);
    assert_eq!(member_count(&c, 0), 1);

    // e2 added but not started yet: a rerun adds no duplicate and writes the
    // same drop-in; adding e3 now is refused, naming e2.
    run_ok(tool("etcd2-wipe").arg(&c.members[1].data_dir));
    run_ok(&mut member_add(&c, 0, 1));
    let first = std::fs::read_to_string(c.path().join("join-1.conf")).unwrap();
    let out = run_ok(&mut member_add(&c, 0, 1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not adding again"));
    assert_eq!(
        std::fs::read_to_string(c.path().join("join-1.conf")).unwrap(),
        first
    );
    assert_eq!(member_count(&c, 0), 2);
    let out = run(member_add(&c, 0, 2).args(["--wait", "3s"]));
    assert_fails_with(&out, "etcd2-member-add", &c.members[1].peer_url.clone());
    assert_eq!(member_count(&c, 0), 2, "a refused add must not add");

    // Started from the drop-in; its promotion step makes the learner vote.
    c.start_again(1, Some(parse_dropin(&first, "e2")));
    run_ok(harness::promote(tool("etcd2-health"), c.endpoint(0), "e2", 2).arg("-q"));
    c.wait_healthy(1);
    join(&mut c, 0, 2, 3);
    assert_v3_keys_everywhere(&c, 30);
    assert_eq!(member_count(&c, 2), 3);
}

#[test]
fn a_join_is_refused_while_a_listed_member_is_in_a_cluster_of_its_own() {
    // e2 was added, then started as a cluster of its own (restored from
    // other data): the founder lists it as a member that never started.
    // Adding e3 now could cost quorum: refused, naming e2's peer URL.
    let mut c = Cluster::start(3);
    c.put_v3(0, "/k0", "v0");
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    backup(&c, 0, &remote, &env, MID[0]);
    destroy_all(&mut c);
    founder(&mut c, 0, &remote, &env, MID[0]);
    run_ok(tool("etcd2-wipe").arg(&c.members[1].data_dir));
    run_ok(&mut member_add(&c, 0, 1));
    c.restart(1, None);
    let out = run(member_add(&c, 0, 2).args(["--wait", "5s"]));
    let line = assert_fails_with(&out, "etcd2-member-add", &c.members[1].peer_url.clone());
    assert!(line.contains("answers as a member of cluster"), "{line}");
    assert_eq!(member_count(&c, 0), 2, "a refused add must not add");
}

#[test]
fn restore_the_cluster_v2_keeps_keys_and_ttls() {
    let mut c = Cluster::start(3);
    for k in 0..20 {
        c.put_v2(k % 3, &format!("/v2/k{k}"), &format!("v{k}"));
    }
    run_ok(
        c.etcdctl(0, "2")
            .args(["set", "--ttl", "3600", "/v2/ttl", "expiring"]),
    );
    let remote = Remote::sftp(c.path());
    let env = Env::new(c.path());
    backup(&c, 0, &remote, &env, MID[0]);
    destroy_all(&mut c);
    founder(&mut c, 0, &remote, &env, MID[0]);
    join(&mut c, 0, 1, 2);
    join(&mut c, 0, 2, 3);
    for i in 0..3 {
        for k in 0..20 {
            assert_eq!(
                etcd::get_v2_at(c.endpoint(i), &format!("/v2/k{k}")),
                Some(format!("v{k}")),
                "member {i}"
            );
        }
        let out = run_ok(c.etcdctl(i, "2").args(["-o", "extended", "get", "/v2/ttl"]));
        let ext = String::from_utf8_lossy(&out.stdout);
        let ttl: i64 = ext
            .lines()
            .find_map(|l| l.strip_prefix("TTL: "))
            .unwrap_or_else(|| panic!("no TTL on member {i}: {ext}"))
            .parse()
            .unwrap();
        assert!(ttl > 3000 && ttl <= 3600, "member {i}: TTL {ttl}");
    }
}

#[test]
fn migrate_the_cluster_with_fetch_push_to_new_machine_ids() {
    let mut old = Cluster::start(1);
    for k in 0..10 {
        old.put_v3(0, &format!("/k{k}"), &format!("v{k}"));
    }
    let remote = Remote::local(old.path());
    let env = Env::new(old.path());
    backup(&old, 0, &remote, &env, MID[0]);
    old.members[0].stop(); // the coffee (its temp dir holds the remote: keep it)

    // The new cluster q1..q3, with data of its own that the migration replaces.
    let mut q = Cluster::start(3);
    q.put_v3(0, "/k0", "new-cluster-value");
    let mut fetch = env.fetch(&remote, MID[0]);
    fetch.args(["-o", "-"]);
    let mut push = env.push(&remote, NEW_MID);
    push.arg("-");
    pipe_ok(fetch, push);

    for m in q.members.iter_mut() {
        m.stop();
    }
    founder(&mut q, 0, &remote, &env, NEW_MID);
    join(&mut q, 0, 1, 2);
    join(&mut q, 0, 2, 3);
    assert_v3_keys_everywhere(&q, 10);
}

#[test]
fn change_the_founding_member_to_e2() {
    let mut c = Cluster::start(3);
    for k in 0..10 {
        c.put_v3(k % 3, &format!("/k{k}"), &format!("v{k}"));
    }
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    for (i, mid) in MID.iter().enumerate() {
        backup(&c, i, &remote, &env, mid);
    }
    destroy_all(&mut c);
    founder(&mut c, 1, &remote, &env, MID[1]);
    join(&mut c, 1, 0, 2);
    join(&mut c, 1, 2, 3);
    assert_v3_keys_everywhere(&c, 10);
}

/// Every file below `dir` with its content, to prove a dir untouched.
fn snapshot_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push((
                    p.strip_prefix(base).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn failures_leave_the_data_dir_as_it_was() {
    let mut c = Cluster::start(1);
    c.put_v3(0, "/k0", "v0");
    let mut remote = Remote::sftp(c.path());
    let env = Env::new(c.path());
    backup(&c, 0, &remote, &env, MID[0]);
    let data = c.members[0].data_dir.clone();
    let restore = |from: &Path| {
        run(tool("etcd2-restore")
            .arg("--data-dir")
            .arg(&data)
            .args(["--name", "e1", "--peer-urls", "http://127.0.0.1:1"])
            .arg(from))
    };

    // etcd running: wipe and restore both refuse and name it.
    let pid = c.members[0].pid().unwrap();
    let out = run(tool("etcd2-wipe").arg(&data));
    assert_fails_with(&out, "etcd2-wipe", &format!("pid {pid}"));
    let fetched = c.path().join("fetched");
    run_ok(env.fetch(&remote, MID[0]).arg("--into").arg(&fetched));
    assert_fails_with(&restore(&fetched), "etcd2-restore", "is in use");

    c.members[0].stop();
    let before = snapshot_tree(&data);

    // Remote down: fetch fails and places nothing.
    remote.stop_server();
    let out = run(env
        .fetch(&remote, MID[0])
        .arg("--into")
        .arg(c.path().join("f2")));
    assert_fails_with_code(&out, "etcd2-fetch", 5, "connect");
    assert!(!c.path().join("f2").exists());
    remote.start_server();

    // A fetched dir altered since: restore refuses before touching anything.
    std::fs::write(fetched.join("snapshot.db"), b"tampered").unwrap();
    assert_fails_with(
        &restore(&fetched),
        "etcd2-restore",
        "does not match its manifest",
    );
    // A corrupt archive file: the same.
    let bad = c.path().join("bad.tar.zst");
    std::fs::write(&bad, b"\x28\xb5\x2f\xfdnot really zstd").unwrap();
    assert_fails_with(
        &restore(&bad),
        "etcd2-restore",
        "is not a whole etcd2-backup archive",
    );
    assert_eq!(snapshot_tree(&data), before, "the data dir changed");
    assert!(
        !names(&data).iter().any(|n| n.starts_with(".restore-")),
        "staging left behind"
    );

    // Founder unreachable: a bounded wait, then one clear line.
    let out = run(tool("etcd2-member-add")
        .args([
            "--endpoints",
            "http://127.0.0.1:1",
            "--name",
            "e9",
            "--peer-urls",
            "http://127.0.0.1:2",
        ])
        .args(["--wait", "3s"]));
    assert_fails_with(&out, "etcd2-member-add", "not healthy within 3s");

    // The member still starts from its untouched data.
    c.restart(0, None);
    assert_eq!(c.get_v3(0, "/k0").as_deref(), Some("v0"));
}

//! Every etcd an operator runs, for real: the version matrix (generated from
//! scripts/versions by tests/build.rs: a round trip on each build, an
//! upgrade restore between consecutive minor lines), learner joins, revision
//! bumps where the tools can, and what each version needs.

use std::path::{Path, PathBuf};
use std::process::Command;

use etcd2_backup::etcd::Version;
use harness::etcd::{self, bin_of, parse_dropin, path_with, version_of, Cluster, MemberSpec};
use harness::rclone::Remote;
use harness::{assert_fails_with, free_port, run, run_ok, tool, Env};

const MID: &str = "d0000000000000000000000000000001";

/// Our tool, pointed at the etcd build in `bin` through PATH, as an
/// operator would (etcdctl, etcdutl and etcd found there).
fn tool_at(name: &str, bin: &Path) -> Command {
    let mut c = tool(name);
    c.env("PATH", path_with(bin));
    c
}

fn snapshot_to(c: &Cluster, bin: &Path, out: &Path) -> std::process::Output {
    run_ok(
        tool_at("etcd2-snapshot", bin)
            .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .args(["-v", "--api", "v3", "-o"])
            .arg(out),
    )
}

/// etcd2-member-add for joiner `name` at `peer` against `founder`, then the
/// joiner started from the drop-in, then `etcd2-health --promote`.
fn join(c: &Cluster, bin: &Path, founder: &str, name: &str, extra_add: &[&str]) -> etcd::Member {
    let (cp, pp) = (free_port(), free_port());
    let peer = format!("http://127.0.0.1:{pp}");
    let dropin = c.path().join(format!("join-{name}.conf"));
    run_ok(
        tool_at("etcd2-member-add", bin)
            .args(["--endpoints", founder, "--name", name, "--peer-urls", &peer])
            .args(extra_add)
            .arg("--dropin")
            .arg(&dropin),
    );
    let text = std::fs::read_to_string(&dropin).unwrap();
    let (ic, state) = parse_dropin(&text, name);
    let m = etcd::spawn(
        MemberSpec {
            name,
            data_dir: c.path().join(format!("data-{name}")),
            client_port: cp,
            peer_port: pp,
            initial_cluster: ic,
            state: &state,
            token: &c.token,
            tls: None,
            extra: vec![],
            bin: Some(bin),
        },
        c.path(),
    );
    // Not waited for here: a learner refuses the linearizable read behind
    // `endpoint health` until it is promoted.
    m
}

/// The etcdctl of `bin` at `endpoint`, with ETCDCTL_API only for an
/// etcdctl that reads it (before 3.6).
fn ctl(bin: &Path, endpoint: &str) -> Command {
    let mut c = Command::new(bin.join("etcdctl"));
    if version_of(bin).is_none_or(|v| v.has_v2()) {
        c.env("ETCDCTL_API", "3");
    }
    c.arg(format!("--endpoints={endpoint}"));
    c
}

fn members_json(bin: &Path, endpoint: &str) -> serde_json::Value {
    let out = run_ok(ctl(bin, endpoint).args(["member", "list", "-w", "json"]));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn learners(bin: &Path, endpoint: &str) -> usize {
    members_json(bin, endpoint)["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["isLearner"] == true)
        .count()
}

fn get_at(bin: &Path, endpoint: &str, key: &str) -> Option<String> {
    let out = ctl(bin, endpoint)
        .args(["get", "--consistency=s", "--print-value-only", key])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn revision(bin: &Path, endpoint: &str) -> u64 {
    let out = run_ok(ctl(bin, endpoint).args(["endpoint", "status", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["Status"]["header"]["revision"].as_u64().unwrap()
}

/// Whether the build's restore tool takes --bump-revision: etcdutl >=
/// 3.5.10 (3.4 has no etcdutl, and its etcdctl only from 3.4.27).
fn has_bump(v: Version) -> bool {
    v >= Version(3, 5, 10) || (v.1 == 4 && v >= Version(3, 4, 27))
}

const KEYS: usize = 20;

fn put_keys(c: &Cluster, prefix: &str) {
    for k in 0..KEYS {
        c.put_v3(0, &format!("/{prefix}{k}"), &format!("v{k}"));
    }
}

fn assert_keys(bin: &Path, endpoints: &[&str], prefix: &str) {
    for ep in endpoints {
        for k in 0..KEYS {
            assert_eq!(
                get_at(bin, ep, &format!("/{prefix}{k}")),
                Some(format!("v{k}")),
                "{ep} /{prefix}{k}"
            );
        }
    }
}

/// etcd2-restore of `from` into member `i`'s data dir by the tools of `bin`,
/// with a revision bump where they have it, asked for as a unit does (the
/// settings file's variables, not flags); its stderr.
fn restore(c: &Cluster, i: usize, bin: &Path, from: &Path) -> String {
    let v = version_of(bin).unwrap();
    let mut cmd = tool_at("etcd2-restore", bin);
    cmd.arg("--data-dir")
        .arg(&c.members[i].data_dir)
        .args(["-v", "--name", &c.members[i].name.clone()])
        .args(["--peer-urls", &c.members[i].peer_url.clone()]);
    if has_bump(v) {
        cmd.env("ETCD2_BACKUP_BUMP_REVISION", "1000000")
            .env("ETCD2_BACKUP_MARK_COMPACTED", "true");
    }
    let out = run_ok(cmd.arg(from));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// After a restore with --bump-revision --mark-compacted: the revision is
/// above the one before the disaster, and a watch from an old revision is
/// told it was compacted (so a client re-lists instead of missing changes).
fn assert_bumped(bin: &Path, endpoint: &str, before: u64) {
    let after = revision(bin, endpoint);
    assert!(
        after > before + 1_000_000 - 1,
        "revision {after} after restore, {before} before"
    );
    let out = run(ctl(bin, endpoint)
        .args(["--command-timeout=10s", "watch", "--rev=2", "/k0"])
        .stdin(std::process::Stdio::null()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && text.contains("compacted"),
        "a watch from revision 2 must get a compaction error: {text}"
    );
}

/// The main round trip on etcd `version`: snapshot -> push -> fetch ->
/// restore (revision bumped where the tools can) -> two learner joins, each
/// promoted -> every key on every member.
fn round_trip(version: &str) {
    let bin = bin_of(version);
    let v = version_of(&bin).unwrap();
    let mut c = Cluster::start_bin(1, &bin);
    put_keys(&c, "k");
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let archive = c.path().join("a.tar.zst");
    let out = run_ok(
        tool_at("etcd2-snapshot", &bin)
            .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .args(["-v", "-o"])
            .arg(&archive),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // The snapshot streams over gRPC: neither etcdctl nor etcdutl reads
    // the db.
    assert!(err.contains("grpc: Maintenance.Snapshot"), "{err}");
    assert!(!err.contains("snapshot save"), "{err}");
    assert!(err.contains(&format!("etcd {version}")), "{err}");
    run_ok(env.push(&remote, MID).arg(&archive));
    let before = revision(&bin, c.endpoint(0));

    // The disaster, then the founder restored from what fetch brings back.
    c.members[0].stop();
    std::fs::remove_dir_all(c.members[0].data_dir.join("member")).unwrap();
    let fetched = c.path().join("fetched");
    run_ok(env.fetch(&remote, MID).arg("--into").arg(&fetched));
    let err = restore(&c, 0, &bin, &fetched);
    let want = if v >= Version(3, 5, 0) {
        "running: etcdutl snapshot restore"
    } else {
        "running: etcdctl snapshot restore"
    };
    assert!(err.contains(want), "{want}: {err}");
    assert!(
        !err.contains("--enable-v2"),
        "a v3 restore needs no v2 API: {err}"
    );
    assert!(
        !err.contains("--experimental"),
        "no experimental flags: {err}"
    );
    c.restart(0, None);
    let founder = c.endpoint(0).to_owned();
    if has_bump(v) {
        assert_bumped(&bin, &founder, before);
    }

    // Two joins, each a learner until etcd2-health --promote (3.6+ allows
    // one learner at a time).
    let mut joined = Vec::new();
    for (name, n) in [("e2", 2), ("e3", 3)] {
        let m = join(&c, &bin, &founder, name, &[]);
        run_ok(&mut harness::promote(
            tool_at("etcd2-health", &bin),
            &founder,
            name,
            n,
        ));
        etcd::endpoint_wait_healthy(&m.client_url, &[], &m.log);
        joined.push(m);
    }
    assert_eq!(learners(&bin, &founder), 0, "all promoted");
    assert_eq!(
        members_json(&bin, &founder)["members"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_keys(
        &bin,
        &[&founder, &joined[0].client_url, &joined[1].client_url],
        "k",
    );
}

/// An upgrade's restore: a backup taken on etcd `from` restored by the
/// tools of etcd `to` and started on `to`, every key there.
fn upgrade_restore(from: &str, to: &str) {
    let (old, new) = (bin_of(from), bin_of(to));
    let mut c = Cluster::start_bin(1, &old);
    put_keys(&c, "u");
    let archive = c.path().join("old.tar.zst");
    run_ok(
        tool_at("etcd2-snapshot", &old)
            .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .arg("-o")
            .arg(&archive),
    );
    let before = revision(&old, c.endpoint(0));
    c.members[0].stop();
    std::fs::remove_dir_all(c.members[0].data_dir.join("member")).unwrap();
    c.bin = Some(new.clone());
    restore(&c, 0, &new, &archive);
    c.restart(0, None);
    let ep = c.endpoint(0).to_owned();
    let out = run_ok(ctl(&new, &ep).args(["endpoint", "status", "-w", "json"]));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["Status"]["version"], to, "runs on the new etcd");
    assert_keys(&new, &[&ep], "u");
    if has_bump(version_of(&new).unwrap()) {
        assert_bumped(&new, &ep, before);
    }
}

// The matrix: `round_trip_on_etcd_X_Y_Z` per build of scripts/versions,
// `upgrade_restore_from_etcd_A_to_etcd_B` per pair of consecutive minor lines,
// `whole_cluster_restore_on_etcd_X_Y_Z` per build but the system's.
include!(concat!(env!("OUT_DIR"), "/version_matrix.rs"));

#[test]
fn the_matrix_covers_every_build_of_scripts_versions() {
    let builds = etcd::builds();
    assert!(builds.len() >= 5, "{builds:?}");
    assert_eq!(etcd::default_version(), "3.4.23");
    let text = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/version_matrix.rs")).unwrap();
    for b in &builds {
        let f = format!("fn round_trip_on_etcd_{}()", b.version.replace('.', "_"));
        assert!(text.contains(&f), "{f} missing");
    }
    for b in builds.iter().filter(|b| b.source != "system") {
        let f = format!(
            "fn whole_cluster_restore_on_etcd_{}()",
            b.version.replace('.', "_")
        );
        assert!(text.contains(&f), "{f} missing");
    }
    for (from, to) in [("3_5_30", "3_6_16"), ("3_6_16", "3_7_3")] {
        let f = format!("fn upgrade_restore_from_etcd_{from}_to_etcd_{to}()");
        assert!(text.contains(&f), "{f} missing: {text}");
    }
}

#[test]
fn scripts_versions_is_parsed_row_by_row() {
    let b = etcd::parse_versions(
        "# comment\netcd 3.4.23 system\n\netcd 3.6.16 go # built\nrclone 1.75.2 deb sid 1.75.2-2\n",
    );
    assert_eq!(
        b.iter()
            .map(|b| (b.version.as_str(), b.source.as_str()))
            .collect::<Vec<_>>(),
        [("3.4.23", "system"), ("3.6.16", "go")]
    );
}

#[test]
fn a_learner_join_keeps_the_founder_writable_until_the_joiner_is_promoted() {
    // Debian's 3.4.23: learners exist since 3.4.
    let bin = PathBuf::from(harness::require("etcd", "etcd-server").parent().unwrap());
    let c = Cluster::start(1);
    c.put_v3(0, "/before", "1");
    let founder = c.endpoint(0).to_owned();
    let (pp, name) = (free_port(), "e2");
    let peer = format!("http://127.0.0.1:{pp}");
    let add = || {
        let mut c = tool("etcd2-member-add");
        c.args([
            "--endpoints",
            &founder,
            "--name",
            name,
            "--peer-urls",
            &peer,
        ]);
        c
    };
    run_ok(&mut add());
    assert_eq!(learners(&bin, &founder), 1, "added as a learner");
    // Added, not started: a voter would make quorum 2 and block this write.
    let out = run(c
        .etcdctl(0, "3")
        .args(["--command-timeout=5s", "put", "/while-joining", "1"]));
    assert!(
        out.status.success(),
        "the founder must stay writable while the joiner has not started: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Rerun (idempotent), then --no-learner keeps today's voting add for a
    // node that asks for it (a fresh name and peer).
    run_ok(&mut add());
    assert_eq!(
        members_json(&bin, &founder)["members"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_voting_add_is_still_there_with_no_learner() {
    let bin = PathBuf::from(harness::require("etcd", "etcd-server").parent().unwrap());
    let c = Cluster::start(1);
    let founder = c.endpoint(0).to_owned();
    let peer = format!("http://127.0.0.1:{}", free_port());
    run_ok(tool("etcd2-member-add").args([
        "--endpoints",
        &founder,
        "--name",
        "v2",
        "--peer-urls",
        &peer,
        "--no-learner",
    ]));
    assert_eq!(learners(&bin, &founder), 0);
    assert_eq!(
        members_json(&bin, &founder)["members"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // What learners avoid: a voting member added to a one-member cluster
    // makes quorum two, and the founder cannot commit a write until the
    // joiner starts.
    let out = run(c
        .etcdctl(0, "3")
        .args(["--command-timeout=3s", "put", "/blocked", "1"]));
    assert!(
        !out.status.success(),
        "a voting add should leave the founder without quorum"
    );
}

#[test]
fn bump_revision_needs_a_tool_that_has_it_and_the_error_names_the_version() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let archive = c.path().join("a.tar.zst");
    let debian = PathBuf::from(harness::require("etcdctl", "etcd-client").parent().unwrap());
    snapshot_to(&c, &debian, &archive);
    let data = c.path().join("bump");
    let out = run(tool_at("etcd2-restore", &debian)
        .arg("--data-dir")
        .arg(&data)
        .args(["--name", "r", "--peer-urls", "http://127.0.0.1:2380"])
        .args(["--bump-revision", "1000000", "--mark-compacted"])
        .arg(&archive));
    let line = assert_fails_with(&out, "etcd2-restore", "--bump-revision");
    assert!(
        line.contains("etcdctl 3.4.23"),
        "names the tool and version: {line}"
    );
    assert!(!data.join("member").exists(), "nothing restored");
    // --mark-compacted alone is a usage error.
    let out = run(tool("etcd2-restore")
        .args([
            "--name",
            "r",
            "--peer-urls",
            "http://h:1",
            "--mark-compacted",
        ])
        .arg(&archive));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_readme_support_matrix_names_exactly_the_versions_tested() {
    let readme = std::fs::read_to_string(harness::workspace().join("README.md")).unwrap();
    let section = readme
        .split("## Supported etcd versions")
        .nth(1)
        .expect("README has a Supported etcd versions section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let rows: Vec<String> = section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| etcd ") && !l.starts_with("| ---"))
        .map(|l| l.split('|').nth(1).unwrap_or_default().trim().to_owned())
        .collect();
    let pinned: Vec<String> = etcd::builds().into_iter().map(|b| b.version).collect();
    assert_eq!(
        rows, pinned,
        "README.md's support matrix must name the builds of scripts/versions, in order"
    );
}

/// Neither an `ETCDCTL_API` complaint nor any JSON log line of etcd's.
fn assert_no_raw_etcd_output(line: &str) {
    assert!(
        !line.contains("ETCDCTL_API"),
        "ETCDCTL_API given to etcdctl 3.6+: {line}"
    );
    assert!(!line.contains("{\"level\""), "a raw etcd log line: {line}");
}

#[test]
fn etcdctl_3_7_gets_no_etcdctl_api_and_its_log_lines_stay_out_of_errors() {
    let bin = bin_of("3.7.3");
    let c = Cluster::start_bin(1, &bin);
    // A peer URL list that holds the founder's own: etcd refuses the add.
    let peers = format!("http://127.0.0.1:{},{}", free_port(), c.members[0].peer_url);
    let out = run(tool_at("etcd2-member-add", &bin).args([
        "--endpoints",
        c.endpoint(0),
        "--name",
        "e2",
        "--peer-urls",
        &peers,
        "--wait",
        "10s",
    ]));
    let line = assert_fails_with(&out, "etcd2-member-add", "Peer URLs already exists");
    assert_no_raw_etcd_output(&line);
}

/// A v2 backup (etcdctl backup on Debian's 3.4.23) pushed to a local remote.
fn v2_backup_pushed(c: &Cluster, env: &Env, remote: &Remote) -> PathBuf {
    c.put_v2(0, "/a", "1");
    let archive = c.path().join("v2.tar.zst");
    c.snapshot_to(0, "v2", &archive);
    run_ok(env.push(remote, MID).arg(&archive));
    archive
}

#[test]
fn a_v2_backup_is_refused_up_front_by_restore_and_verify_on_etcd_3_7() {
    let bin = bin_of("3.7.3");
    let c = Cluster::start(1);
    let (env, remote) = (Env::new(c.path()), Remote::local(c.path()));
    let archive = v2_backup_pushed(&c, &env, &remote);
    let data = c.path().join("restored");
    let out = run(tool_at("etcd2-restore", &bin)
        .arg("--data-dir")
        .arg(&data)
        .args(["--name", "r", "--peer-urls", "http://127.0.0.1:2380"])
        .arg(&archive));
    let restore_line = assert_fails_with(&out, "etcd2-restore", "etcd 3.7.3");
    assert!(
        restore_line.contains("etcd2-convert"),
        "names the way on: {restore_line}"
    );
    assert!(
        !data.exists() || harness::names(&data).is_empty(),
        "nothing written"
    );
    let mut verify = env.with(tool("etcd2-verify"), &remote, MID);
    let out = run(verify.env("PATH", path_with(&bin)).args(["--wait", "30s"]));
    let verify_line = assert_fails_with(&out, "etcd2-verify", "has no v2 store");
    assert!(
        !verify_line.contains("usage") && !verify_line.contains("temporary etcd"),
        "{verify_line}"
    );
    // One sentence, the same for both.
    let cause = |l: &str| {
        l.split("this backup is of the v2 keyspace")
            .nth(1)
            .map(str::to_owned)
    };
    assert_eq!(
        cause(&verify_line),
        cause(&restore_line),
        "{verify_line}\n{restore_line}"
    );
    assert!(cause(&verify_line).is_some(), "{verify_line}");
}

#[test]
fn restore_with_an_etcdctl_3_7_and_no_etcdutl_names_what_is_missing() {
    let bin = bin_of("3.7.3");
    let d = tempfile::tempdir().unwrap();
    let only = d.path().join("bin");
    std::fs::create_dir_all(&only).unwrap();
    for p in ["etcd", "etcdctl"] {
        std::os::unix::fs::symlink(bin.join(p), only.join(p)).unwrap();
    }
    let mut c = Cluster::start_bin(1, &bin);
    c.put_v3(0, "/a", "1");
    let archive = c.path().join("a.tar.zst");
    snapshot_to(&c, &bin, &archive);
    c.members[0].stop();
    let data = c.path().join("restored");
    // PATH holds no other etcdutl: only this dir and the system's (which has none).
    let out = run(tool("etcd2-restore")
        .env("PATH", path_with(&only))
        .arg("--data-dir")
        .arg(&data)
        .args(["--name", "r", "--peer-urls", "http://127.0.0.1:2380"])
        .arg(&archive));
    let line = assert_fails_with(&out, "etcd2-restore", "etcdutl");
    assert!(line.contains("etcdctl 3.7.3"), "{line}");
    assert!(
        !line.contains("Usage") && !line.contains("Available Commands"),
        "{line}"
    );
    assert!(!data.join("member").exists(), "nothing restored");
}

#[test]
fn member_add_with_a_learner_pending_waits_for_its_promotion_or_names_it() {
    let bin = bin_of("3.7.3");
    let c = Cluster::start_bin(1, &bin);
    let founder = c.endpoint(0).to_owned();
    let e2 = join(&c, &bin, &founder, "e2", &[]);
    // e2 runs as a learner, not promoted: a second add is refused by etcd
    // 3.6+ (--max-learners 1). Within a short wait: one line naming it.
    let peer3 = format!("http://127.0.0.1:{}", free_port());
    let add3 = |wait: &str| {
        let mut cmd = tool_at("etcd2-member-add", &bin);
        cmd.args([
            "--endpoints",
            &founder,
            "--name",
            "e3",
            "--peer-urls",
            &peer3,
        ])
        .args(["--wait", wait])
        .arg("--dropin")
        .arg(c.path().join("join-e3.conf"));
        cmd
    };
    let out = run(&mut add3("3s"));
    let line = assert_fails_with(&out, "etcd2-member-add", "e2");
    assert!(line.contains("learner"), "{line}");
    assert!(
        line.contains("etcd2-health") && line.contains("--promote e2"),
        "{line}"
    );
    assert_no_raw_etcd_output(&line);
    assert_eq!(learners(&bin, &founder), 1, "nothing added");
    // Given time, it waits for the promotion, then adds.
    let waiting = add3("90s")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    run_ok(&mut harness::promote(
        tool_at("etcd2-health", &bin),
        &founder,
        "e2",
        2,
    ));
    let out = waiting.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("e2"), "says what it waited for: {err}");
    assert_eq!(
        members_json(&bin, &founder)["members"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    drop(e2);
}

#[test]
fn the_v2_off_notice_names_the_etcd_version_the_member_runs() {
    let bin = bin_of("3.5.30");
    let d = tempfile::tempdir().unwrap();
    let (cp, pp) = (free_port(), free_port());
    let m = etcd::spawn(
        MemberSpec {
            name: "a",
            data_dir: d.path().join("a"),
            client_port: cp,
            peer_port: pp,
            initial_cluster: format!("a=http://127.0.0.1:{pp}"),
            state: "new",
            token: "t35",
            tls: None,
            extra: vec!["--enable-v2=false".into()],
            bin: Some(&bin),
        },
        d.path(),
    );
    etcd::endpoint_wait_healthy(&m.client_url, &[], &m.log);
    let out = run_ok(
        tool_at("etcd2-snapshot", &bin)
            .env("ETCDCTL_ENDPOINTS", &m.client_url)
            .env("ETCD_BACKUP_DIR", d.path().join("work"))
            .args(["--api", "auto", "-o"])
            .arg(d.path().join("a.tar.zst")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let notice = err
        .lines()
        .find(|l| l.contains("the v2 API is disabled"))
        .unwrap_or_else(|| panic!("no v2 notice: {err}"));
    assert!(notice.contains("etcd 3.5.30"), "{notice}");
    assert!(!notice.contains("etcd 3.4's default"), "{notice}");
}

/// A host without etcdctl (a kubeadm node has only the etcd image): a v3
/// backup talks gRPC and needs none, on every build; `--api auto` needs one
/// only where the member may hold v2 data (before 3.6), and says so.
#[test]
fn a_v3_backup_needs_no_etcdctl_on_every_build() {
    let empty = tempfile::tempdir().unwrap();
    for b in etcd::builds() {
        let bin = bin_of(&b.version);
        let v = version_of(&bin).unwrap();
        let c = Cluster::start_bin(1, &bin);
        for k in 0..3 {
            c.put_v3(0, &format!("/k{k}"), "v");
        }
        let snapshot = |api: &str, out: &Path| {
            let mut cmd = tool("etcd2-snapshot");
            cmd.env("PATH", empty.path())
                .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
                .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
                .args(["--api", api, "-o"])
                .arg(out);
            run(&mut cmd)
        };
        let archive = c.path().join("v3.tar.zst");
        let out = snapshot("v3", &archive);
        assert!(out.status.success(), "etcd {v}: {out:?}");
        let m = harness::manifest_of(&archive);
        assert_eq!(m["key_count"], 3, "etcd {v}: {m}");

        let out = snapshot("auto", &c.path().join("auto.tar.zst"));
        if v >= Version(3, 6, 0) {
            assert!(out.status.success(), "etcd {v}: {out:?}");
        } else {
            let err = assert_fails_with(&out, "etcd2-snapshot", "only etcdctl can look for");
            assert!(err.contains("pass --api v3"), "etcd {v}: {err}");
            assert!(!c.path().join("auto.tar.zst").exists(), "etcd {v}");
        }
    }
}

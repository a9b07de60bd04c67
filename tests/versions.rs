//! Every etcd an operator runs: Debian's 3.4.23 and 3.5.1 (with etcdutl)
//! for real, 3.6's removals simulated on 3.5 (no v2 commands in etcdctl, no
//! --enable-v2 flag), learner joins, and revision bumps where the tools can.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::etcd::{self, etcd35, parse_dropin, path_with, Cluster, MemberSpec};
use harness::rclone::Remote;
use harness::{assert_fails_with, free_port, names, run, run_ok, tool, Env};

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

fn members_json(bin: &Path, endpoint: &str) -> serde_json::Value {
    let out = run_ok(
        Command::new(bin.join("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(["member", "list", "-w", "json"]),
    );
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
    let out = Command::new(bin.join("etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["get", "--consistency=s", "--print-value-only", key])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

#[test]
fn v3_backup_restore_and_learner_joins_on_etcd_3_5_with_etcdutl() {
    let bin = etcd35();
    let mut c = Cluster::start_bin(1, &bin);
    for k in 0..20 {
        c.put_v3(0, &format!("/k{k}"), &format!("v{k}"));
    }
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let archive = c.path().join("a.tar.zst");
    let out = snapshot_to(&c, &bin, &archive);
    let err = String::from_utf8_lossy(&out.stderr);
    // The snapshot streams over gRPC: neither etcdctl nor etcdutl reads
    // the db (etcdutl snapshot status mapped all of it to count keys).
    assert!(err.contains("grpc: Maintenance.Snapshot"), "{err}");
    assert!(!err.contains("snapshot status"), "{err}");
    assert!(!err.contains("snapshot save"), "{err}");
    assert!(err.contains("etcd 3.5.1"), "{err}");
    run_ok(env.push(&remote, MID).arg(&archive));

    // The disaster, then the founder restored with etcdutl.
    c.members[0].stop();
    std::fs::remove_dir_all(c.members[0].data_dir.join("member")).unwrap();
    let fetched = c.path().join("fetched");
    run_ok(env.fetch(&remote, MID).arg("--into").arg(&fetched));
    let out = run_ok(
        tool_at("etcd2-restore", &bin)
            .arg("--data-dir")
            .arg(&c.members[0].data_dir)
            .args([
                "-v",
                "--name",
                "e1",
                "--peer-urls",
                &c.members[0].peer_url.clone(),
            ])
            .arg(&fetched),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("running: etcdutl snapshot restore"),
        "etcdutl for restore: {err}"
    );
    assert!(
        !err.contains("--enable-v2"),
        "a v3 restore needs no v2 API: {err}"
    );
    c.restart(0, None);
    let founder = c.endpoint(0).to_owned();

    // Two joins, each a learner until etcd2-health --promote.
    let e2 = join(&c, &bin, &founder, "e2", &[]);
    run_ok(tool_at("etcd2-health", &bin).args([
        "--endpoints",
        &founder,
        "--promote",
        "e2",
        "--members",
        "2",
        "--wait",
        "60s",
    ]));
    etcd::endpoint_wait_healthy(&e2.client_url, &[], &e2.log);
    let e3 = join(&c, &bin, &founder, "e3", &[]);
    run_ok(tool_at("etcd2-health", &bin).args([
        "--endpoints",
        &founder,
        "--promote",
        "e3",
        "--members",
        "3",
        "--wait",
        "60s",
    ]));
    etcd::endpoint_wait_healthy(&e3.client_url, &[], &e3.log);
    assert_eq!(learners(&bin, &founder), 0, "all promoted");
    assert_eq!(
        members_json(&bin, &founder)["members"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    for ep in [founder.as_str(), &e2.client_url, &e3.client_url] {
        for k in 0..20 {
            assert_eq!(
                get_at(&bin, ep, &format!("/k{k}")),
                Some(format!("v{k}")),
                "{ep} /k{k}"
            );
        }
    }
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
    run_ok(tool("etcd2-member-add").args([
        "--endpoints",
        &founder,
        "--name",
        name,
        "--peer-urls",
        &peer,
    ]));
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
    run_ok(tool("etcd2-member-add").args([
        "--endpoints",
        &founder,
        "--name",
        name,
        "--peer-urls",
        &peer,
    ]));
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

/// A directory whose etcdctl refuses the v2 commands and whose etcd refuses
/// --enable-v2, in front of 3.5.1: etcd 3.6's removals, as far as our tools
/// can see them (a fault injector: the real work is done by 3.5.1).
fn etcd36_like(dir: &Path, etcd35: &Path) -> PathBuf {
    let d = dir.join("etcd36-like");
    std::fs::create_dir_all(&d).unwrap();
    let write = |name: &str, body: String| {
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write(
        "etcdctl",
        format!(
            "#!/bin/sh\nif [ \"$ETCDCTL_API\" = 2 ]; then echo 'Error: unknown command for etcdctl (no v2 in 3.6)' >&2; exit 1; fi\nexec {}/etcdctl \"$@\"\n",
            etcd35.display()
        ),
    );
    write(
        "etcd",
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --enable-v2*) echo \"unrecognized flag $a (removed in 3.6)\" >&2; exit 2;; esac; done\nexec {}/etcd \"$@\"\n",
            etcd35.display()
        ),
    );
    std::os::unix::fs::symlink(etcd35.join("etcdutl"), d.join("etcdutl")).unwrap();
    d
}

#[test]
fn without_v2_in_etcdctl_or_etcd_a_v3_backup_and_restore_still_work() {
    let e35 = etcd35();
    let d = tempfile::tempdir().unwrap();
    let like36 = etcd36_like(d.path(), &e35);
    let (cp, pp) = (free_port(), free_port());
    let peer = format!("http://127.0.0.1:{pp}");
    let m = etcd::spawn(
        MemberSpec {
            name: "a",
            data_dir: d.path().join("a"),
            client_port: cp,
            peer_port: pp,
            initial_cluster: format!("a={peer}"),
            state: "new",
            token: "t36",
            tls: None,
            extra: vec!["--enable-v2=false".into()],
            bin: Some(&e35),
        },
        d.path(),
    );
    etcd::endpoint_wait_healthy(&m.client_url, &[], &m.log);
    run_ok(Command::new(e35.join("etcdctl")).args([
        &format!("--endpoints={}", m.client_url),
        "put",
        "/only-v3",
        "yes",
    ]));
    let archive = d.path().join("a.tar.zst");
    for api in ["v3", "auto"] {
        run_ok(
            tool_at("etcd2-snapshot", &like36)
                .env("ETCDCTL_ENDPOINTS", &m.client_url)
                .env("ETCD_BACKUP_DIR", d.path().join("work"))
                .args(["--api", api, "-o"])
                .arg(&archive),
        );
    }
    let data = d.path().join("restored");
    let rpeer = format!("http://127.0.0.1:{}", free_port());
    run_ok(
        tool_at("etcd2-restore", &like36)
            .arg("--data-dir")
            .arg(&data)
            .args(["--name", "r", "--peer-urls", &rpeer])
            .arg(&archive),
    );
    assert!(names(&data).contains(&"member".to_owned()));
}

#[test]
fn bump_revision_needs_a_tool_that_has_it_and_the_error_names_the_version() {
    let c = Cluster::start(1);
    c.put_v3(0, "/a", "1");
    let archive = c.path().join("a.tar.zst");
    let debian = PathBuf::from(harness::require("etcdctl", "etcd-client").parent().unwrap());
    snapshot_to(&c, &debian, &archive);
    for (bin, want) in [(debian, "etcdctl 3.4.23"), (etcd35(), "etcdutl 3.5.1")] {
        let data = c.path().join(format!("bump-{}", want.replace(' ', "-")));
        let out = run(tool_at("etcd2-restore", &bin)
            .arg("--data-dir")
            .arg(&data)
            .args(["--name", "r", "--peer-urls", "http://127.0.0.1:2380"])
            .args(["--bump-revision", "1000000", "--mark-compacted"])
            .arg(&archive));
        let line = assert_fails_with(&out, "etcd2-restore", "--bump-revision");
        assert!(line.contains(want), "names the tool and version: {line}");
        assert!(!data.join("member").exists(), "nothing restored");
    }
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
fn a_v2_backup_is_refused_up_front_where_etcd_is_3_6() {
    let c = Cluster::start(1);
    c.put_v2(0, "/a", "1");
    let archive = c.path().join("v2.tar.zst");
    run_ok(
        tool("etcd2-snapshot")
            .env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_DATA_DIR", &c.members[0].data_dir)
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .args(["--api", "v2", "-o"])
            .arg(&archive),
    );
    // An etcd that says it is 3.6 (the version probe's input; a fault
    // injector: no 3.6 binary can be had here).
    let fake = c.path().join("etcd-3.6");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'etcd Version: 3.6.5'; exit 0; }\nexit 99\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = c.path().join("restored");
    let out = run(tool("etcd2-restore")
        .env("ETCD2_BACKUP_ETCD", &fake)
        .arg("--data-dir")
        .arg(&data)
        .args(["--name", "r", "--peer-urls", "http://127.0.0.1:2380"])
        .arg(&archive));
    let line = assert_fails_with(&out, "etcd2-restore", "3.6.5");
    assert!(line.contains("v2") && line.contains("migrat"), "{line}");
    assert!(!data.exists() || names(&data).is_empty(), "nothing written");
}

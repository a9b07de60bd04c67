//! Point-in-time restore (docs/point-in-time.md): a restore to a chosen
//! revision or time, the window it is chosen from (`--list`, `--changes`),
//! the refusals that name the nearest windows, and a side restore that
//! serves the past beside the live cluster.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use etcd2_backup::clock;
use harness::etcd::Cluster;
use harness::rclone::Remote;
use harness::{assert_fails_with, run, run_ok, tool, wait_for, Env};

use crate::capture::{
    ctl, fetch_and_restore, keyspace, keyspace_at, put_many, rand_suffix, revision, wait_reached,
    watched_history, MID,
};

/// The night itself: 20 keys (one overwritten), the moment noted, then
/// `del --prefix /k` and five keys written after it, all captured.
struct BadNight {
    c: Cluster,
    remote: Remote,
    env: Env,
    /// The revision before the delete, and the keyspace as it was there.
    before: u64,
    as_it_was: Vec<serde_json::Value>,
    /// A time after every change up to `before` was captured and before
    /// the delete (RFC 3339, milliseconds).
    moment: String,
    /// The newest revision, captured.
    end: u64,
}

fn bad_night() -> BadNight {
    let (c, remote, env, mut w) = watched_history();
    let before = revision(&c);
    wait_reached(&remote, &mut w, before);
    let (_, as_it_was) = keyspace_at(c.endpoint(0), Some(before));
    // Received by now, all of it; the delete is received after.
    let moment = clock::rfc3339_ms(clock::unix_ms(SystemTime::now()));
    std::thread::sleep(Duration::from_millis(50));
    ctl(&c, &["del", "--prefix", "/k"]);
    put_many(&c, 100, 105);
    let end = revision(&c);
    wait_reached(&remote, &mut w, end);
    w.kill();
    BadNight {
        c,
        remote,
        env,
        before,
        as_it_was,
        moment,
        end,
    }
}

impl BadNight {
    /// `etcd2-fetch --into` a new directory with `extra`; the directory.
    fn fetch(&self, extra: &[&str]) -> PathBuf {
        let into = self.c.path().join(format!("fetched-{}", rand_suffix()));
        run_ok(
            self.env
                .fetch(&self.remote, MID)
                .arg("--into")
                .arg(&into)
                .args(extra),
        );
        into
    }

    /// etcd2-restore of `from` beside the live cluster (`extra` chooses
    /// how), its scratch under `work`.
    fn side(&self, from: &Path, work: &Path, extra: &[&str]) -> std::process::Command {
        std::fs::create_dir_all(work).unwrap();
        let mut cmd = tool("etcd2-restore");
        cmd.arg(from)
            .arg("--work-dir")
            .arg(work)
            .args(["--wait", "60s"])
            .args(extra);
        cmd
    }

    fn changes(&self, extra: &[&str]) -> String {
        let out = run_ok(
            self.env
                .fetch(&self.remote, MID)
                .arg("--changes")
                .args(extra),
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Restored to a time just before `del --prefix`: every deleted key is back
/// with its value, revisions and version, and nothing written after that
/// moment is there; the fetch stops there, and so does a restore of a whole
/// fetch told the same time, or the revision.
#[test]
fn a_restore_to_the_moment_before_a_mass_delete_brings_every_key_back_and_nothing_after() {
    let n = bad_night();
    let (c, before) = (&n.c, n.before);

    // The fetch chooses the revision the time names.
    let into = n.c.path().join("at-moment");
    let out = run_ok(
        n.env
            .fetch(&n.remote, MID)
            .arg("--into")
            .arg(&into)
            .args(["--to-time", &n.moment]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{} is revision {before}", n.moment)),
        "{err}"
    );
    let data = c.path().join("restored-at-moment");
    let pp = harness::free_port();
    run_ok(
        tool("etcd2-restore")
            .arg("--data-dir")
            .arg(&data)
            .args(["--name", "r1", "--peer-urls"])
            .arg(format!("http://127.0.0.1:{pp}"))
            .args(["--wait", "60s"])
            .arg(&into),
    );
    let m = harness::etcd::start_alone_on(None, c.path(), data, pp, vec![], &[]);
    let (rev, restored) = keyspace(&m.client_url);
    assert_eq!(rev, before, "restored to the revision the time names");
    assert_eq!(
        restored, n.as_it_was,
        "every key as it was before the delete"
    );
    assert_eq!(restored.len(), 20, "the 20 deleted keys are back");
    let keys: Vec<&str> = restored
        .iter()
        .filter_map(|kv| kv["key"].as_str())
        .collect();
    // `get -w json` gives keys in base64: /k100 is L2sxMDA=.
    assert!(
        !keys.contains(&"L2sxMDA="),
        "nothing written after the moment"
    );
    drop(m);

    // A whole fetch, and the restore's own stop: the same keyspace.
    let whole = n.fetch(&[]);
    let work = c.path().join("side-work");
    let snap = c.path().join("before-the-delete.db");
    let out = run_ok(
        n.side(&whole, &work, &["--to-time", &n.moment, "-o"])
            .arg(&snap),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "stopped the replay at revision {before}, as asked"
        )),
        "{err}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&snap).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the snapshot holds the keyspace: 0600");
    let status = run_ok(
        std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", "-w", "json"])
            .arg(&snap),
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["revision"], before, "{status}");
    assert_eq!(
        harness::names(&work),
        Vec::<String>::new(),
        "no scratch left"
    );

    // With --to-revision, the fetch and the restore of it (as
    // fetch_and_restore runs them) land on the same keyspace.
    let (data, pp) = fetch_and_restore(
        &n.env,
        &n.remote,
        c,
        &["--to-revision", &before.to_string()],
    );
    let m = harness::etcd::start_alone_on(None, c.path(), data, pp, vec![], &[]);
    assert_eq!(keyspace(&m.client_url), (before, n.as_it_was.clone()));
}

/// `--changes` shows the accident at its revision, summed up; `--json` the
/// same for scripts, values only when asked for; `--list --json` the
/// window each backup's changes reach.
#[test]
fn the_changes_show_the_mass_delete_at_its_revision_and_the_list_its_window() {
    let n = bad_night();
    let deleted = n.before + 1;

    let table = n.changes(&["--from", &n.moment]);
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["REVISION", "RECEIVED", "OP", "SIZE", "KEY"],
        "{table}"
    );
    let dels: Vec<&str> = table
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("del"))
        .collect();
    assert_eq!(dels.len(), 20, "{table}");
    assert!(
        dels.iter()
            .all(|l| l.split_whitespace().next() == Some(deleted.to_string().as_str())),
        "every delete at revision {deleted}: {table}"
    );
    let summary = format!("# revision {deleted} at ");
    let summary = table
        .lines()
        .find(|l| l.starts_with(&summary))
        .unwrap_or_else(|| panic!("no summary of revision {deleted}: {table}"));
    assert!(summary.ends_with(": 20 deletes under /"), "{summary}");
    let revisions: Vec<u64> = table
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        (revisions.first(), revisions.last(), revisions.len()),
        (Some(&deleted), Some(&n.end), 25),
        "from the delete on, nothing received before --from: {table}"
    );

    // Scripts: one object a line, under --prefix; a value only with --values.
    let json = n.changes(&["--from", &n.moment, "--prefix", "/k10", "--json"]);
    let events: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let shape: Vec<(u64, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["revision"].as_u64().unwrap(),
                e["op"].as_str().unwrap(),
                e["key"].as_str().unwrap(),
            )
        })
        .collect();
    let mut want = vec![(deleted, "del", "/k10")];
    for (i, k) in ["/k100", "/k101", "/k102", "/k103", "/k104"]
        .into_iter()
        .enumerate()
    {
        want.push((deleted + 1 + i as u64, "put", k));
    }
    assert_eq!(shape, want, "{json}");
    assert_eq!(events[1]["value_size"], 4);
    assert!(events.iter().all(|e| e.get("value").is_none()), "{json}");
    let with_values = n.changes(&[
        "--from", &n.moment, "--prefix", "/k100", "--json", "--values",
    ]);
    let e: serde_json::Value = serde_json::from_str(with_values.lines().next().unwrap()).unwrap();
    assert_eq!(e["value"], "v100", "{with_values}");

    // --list --json: the newest backup's window reaches the newest
    // change, received after the moment, with nothing uncovered.
    let out = run_ok(n.env.fetch(&n.remote, MID).args(["--list", "--json"]));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = rows.as_array().unwrap().last().unwrap();
    assert_eq!(last["changes_to"], n.end, "{last}");
    let received = last["changes_to_received_unix_ms"].as_u64().unwrap();
    let moment = clock::parse_moment(&n.moment, SystemTime::now()).unwrap();
    assert!(received > moment, "{last}");
    assert_eq!(
        last["changes_to_received"],
        clock::rfc3339_ms(received),
        "{last}"
    );
    assert!(last["uncovered_after"].is_null(), "{last}");
    let table =
        String::from_utf8(run_ok(n.env.fetch(&n.remote, MID).arg("--list")).stdout).unwrap();
    assert!(
        table.contains("RECEIVED") && table.contains(&clock::rfc3339_ms(received)),
        "{table}"
    );
}

/// A point no capture reaches is refused, naming the window: after the
/// newest captured change, before the first, before the backup itself,
/// past the fetch's own stop; a time without its zone is a usage error.
#[test]
fn a_point_outside_the_window_is_refused_naming_it() {
    let n = bad_night();
    let refused = n.c.path().join("refused");
    let fetch_at = |time: &str| {
        run(n
            .env
            .fetch(&n.remote, MID)
            .arg("--into")
            .arg(&refused)
            .args(["--to-time", time]))
    };
    let out = fetch_at(&clock::rfc3339_ms(
        clock::unix_ms(SystemTime::now()) + 60_000,
    ));
    let line = assert_fails_with(&out, "etcd2-fetch", "is after the newest captured change");
    assert!(
        line.contains(&format!("the changes reach revision {}", n.end))
            && line.contains(&format!(
                "--to-revision {} restores the newest captured state",
                n.end
            )),
        "{line}"
    );
    let out = fetch_at("@1000000000");
    let line = assert_fails_with(&out, "etcd2-fetch", "is before the first captured change");
    assert!(
        line.contains(&format!("to {}", n.end)),
        "names the window: {line}"
    );
    let out = fetch_at("2026-12-03T03:12:07");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("with its zone"));
    assert!(!refused.exists(), "nothing placed by a refused fetch");

    // The restore's own stop: never past its fetch, nor before its backup.
    let stopped = n.fetch(&["--to-revision", &n.before.to_string()]);
    let work = n.c.path().join("side-work");
    let out = run(n
        .side(
            &stopped,
            &work,
            &["--to-revision", &n.end.to_string(), "-o"],
        )
        .arg(n.c.path().join("x.db")));
    assert_fails_with(
        &out,
        "etcd2-restore",
        &format!(
            "revision {} is past revision {}, where the fetch stopped",
            n.end, n.before
        ),
    );
    let whole = n.fetch(&[]);
    let past = (n.end + 5).to_string();
    let out = run(&mut n.side(&whole, &work, &["--to-revision", &past, "--keep-running"]));
    assert_fails_with(
        &out,
        "etcd2-restore",
        &format!(
            "revision {past} is past the newest fetched change (revision {}, in",
            n.end
        ),
    );
    let out = run(&mut n.side(
        &whole,
        &work,
        &["--to-time", "@1000000000", "--keep-running"],
    ));
    assert_fails_with(&out, "etcd2-restore", "was taken at");
    assert!(
        !n.c.path().join("x.db").exists(),
        "no snapshot file from a refused restore"
    );
    assert_eq!(
        harness::names(&work),
        Vec::<String>::new(),
        "no scratch left"
    );
}

/// The side restore: the past served on a private port while the live
/// cluster serves the present; the documented recipe (etcdctl make-mirror
/// of one prefix) copies just that prefix back; SIGTERM takes the side
/// member and its scratch with it.
#[test]
fn a_side_restore_serves_the_old_keys_beside_the_live_cluster_until_stopped() {
    let n = bad_night();
    let whole = n.fetch(&[]);
    let work = n.c.path().join("side-work");
    let log = n.c.path().join("side.log");
    let mut child = n
        .side(
            &whole,
            &work,
            &["--to-revision", &n.before.to_string(), "--keep-running"],
        )
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Its first line, once it serves: ETCDCTL_ENDPOINTS=http://127.0.0.1:PORT.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            panic!(
                "the side member's endpoint within 120s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    let url = line
        .trim()
        .strip_prefix("ETCDCTL_ENDPOINTS=")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    assert_eq!(
        keyspace(&url),
        (n.before, n.as_it_was.clone()),
        "the past, on the side"
    );
    let (live_rev, live) = keyspace(n.c.endpoint(0));
    assert_eq!(live_rev, n.end, "the live cluster serves its own");
    assert_eq!(live.len(), 5, "the live keys: /k100../k104");

    // The recipe: copy one prefix back to the live cluster with etcdctl.
    let mut mirror = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &url, "make-mirror", "--prefix", "/k1"])
        .arg(n.c.endpoint(0))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let copied: Vec<&serde_json::Value> = n
        .as_it_was
        .iter()
        .filter(|kv| {
            let key = base64_key(kv);
            key == "/k1" || key.starts_with("/k1") && key.len() == 4
        })
        .collect();
    assert_eq!(copied.len(), 11, "/k1 and /k10../k19");
    let on_live = |key: &str| {
        let out = run_ok(n.c.etcdctl(0, "3").args(["get", key, "--print-value-only"]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    wait_for(
        "make-mirror to copy /k1* back",
        Duration::from_secs(30),
        || (on_live("/k19") == "v19").then_some(()),
    );
    let _ = mirror.kill();
    let _ = mirror.wait();
    for kv in copied {
        let key = base64_key(kv);
        let value = String::from_utf8(base64_decode(kv["value"].as_str().unwrap())).unwrap();
        assert_eq!(
            on_live(&key),
            value,
            "{key} back on the live cluster as it was"
        );
    }
    assert_eq!(on_live("/k2"), "", "only the prefix copied back");

    let said = std::fs::read_to_string(&log).unwrap();
    let pid: u32 = said
        .split("etcd pid ")
        .nth(1)
        .and_then(|r| r.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the side etcd's pid: {said}"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_for(
        "etcd2-restore to end on SIGTERM",
        Duration::from_secs(30),
        || child.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(143), "{status}");
    wait_for(
        "the side etcd to end with it",
        Duration::from_secs(10),
        || (!Path::new(&format!("/proc/{pid}")).exists()).then_some(()),
    );
    assert_eq!(
        harness::names(&work),
        Vec::<String>::new(),
        "the scratch went with it"
    );
    assert_eq!(
        keyspace(n.c.endpoint(0)).1.len(),
        5 + 11,
        "the live cluster: its own keys and the prefix copied back, nothing else"
    );
}

/// etcd2-verify proves the newest backup and the changes after it end to
/// end: the throwaway member comes up at the newest captured revision, and
/// the line and the record say so.
#[test]
fn verify_replays_the_changes_to_the_newest_captured_revision() {
    let n = bad_night();
    let out = run_ok(
        n.env
            .with(tool("etcd2-verify"), &n.remote, MID)
            .args(["--wait", "60s"]),
    );
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(
        line.contains(&format!(
            "replayed to revision {}, the newest captured: a member started from it at revision {}",
            n.end, n.end
        )),
        "{line}"
    );
    let record = n.remote.read(&format!("{MID}/VERIFIED.json")).unwrap();
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["revision"], n.end, "{record}");
    assert_eq!(record["ok"], true, "{record}");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// The key of a `get -w json` entry (base64 there), as text.
fn base64_key(kv: &serde_json::Value) -> String {
    String::from_utf8(base64_decode(kv["key"].as_str().unwrap())).unwrap()
}

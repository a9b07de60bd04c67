//! etcd2-verify: prove that a backup restores, on throwaway ports and dirs,
//! leaving the live member alone and nothing behind.

use std::io::Write;
use std::path::Path;

use harness::etcd::Cluster;
use harness::rclone::{Backend, Remote};
use harness::{assert_fails_with, names, procs_mentioning, run, run_ok, setup, tool, Env};

const MID: &str = "e0000000000000000000000000000009";

fn verify(env: &Env, remote: &Remote) -> std::process::Command {
    let mut c = env.with(tool("etcd2-verify"), remote, MID);
    c.args(["--wait", "60s"]);
    c
}

/// Nothing of a verify run is left in the work dir but the push lock.
fn leftovers(work: &Path) -> Vec<String> {
    names(work)
        .into_iter()
        .filter(|n| n != "push.lock")
        .collect()
}

/// What etcd2-verify recorded on the remote for MID (VERIFIED.json).
fn recorded(remote: &Remote) -> serde_json::Value {
    let path = remote.machine_dir(MID).join("VERIFIED.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// No temporary record is left beside VERIFIED.json.
fn assert_no_record_debris(remote: &Remote) {
    let names = names(&remote.machine_dir(MID));
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

fn assert_no_leftovers(env: &Env) {
    assert!(
        leftovers(&env.work).is_empty(),
        "{:?}",
        leftovers(&env.work)
    );
}

#[test]
fn a_good_generation_verifies_and_leaves_nothing_behind() {
    let (c, remote, env) = setup(Backend::Local);
    for k in 0..10 {
        c.put_v3(0, &format!("/k{k}"), "v");
    }
    env.publish(&c, &remote, MID);
    let live = harness::names(&c.members[0].data_dir.join("member"));
    let out = run_ok(&mut verify(&env, &remote));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with("verified:") && line.contains("revision"),
        "{line}"
    );
    assert_no_leftovers(&env);
    assert!(
        procs_mentioning(&env.work.display().to_string()).is_empty(),
        "a temporary etcd is left"
    );
    assert_eq!(harness::names(&c.members[0].data_dir.join("member")), live);
    assert_eq!(
        c.get_v3(0, "/k3").as_deref(),
        Some("v"),
        "the live member is untouched"
    );
    // The verdict, on the remote for a monitoring host, and no temporary
    // file beside it.
    let v = recorded(&remote);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["generation"],
        remote.pointer(MID).unwrap().generation.as_str()
    );
    assert!(
        v["revision"].as_u64().is_some() && v["error"].is_null(),
        "{v}"
    );
    assert_no_record_debris(&remote);
}

/// A verdict that cannot be recorded on the remote (here VERIFIED.json is
/// a directory, so rclone cannot move the record over it): a warning naming
/// the file; the verification stands and nothing of ours is left there.
#[test]
fn a_verdict_that_cannot_be_recorded_is_a_warning() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "/a", "1");
    env.publish(&c, &remote, MID);
    let blocker = remote.machine_dir(MID).join("VERIFIED.json");
    std::fs::create_dir(&blocker).unwrap();
    let out = run_ok(&mut verify(&env, &remote));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l.contains("WARN")
            && l.contains("could not record")
            && l.contains("VERIFIED.json")),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("verified:"));
    assert!(
        blocker.is_dir() && names(&blocker).is_empty(),
        "{:?}",
        names(&blocker)
    );
    assert_no_record_debris(&remote);
}

#[test]
fn a_corrupted_generation_fails_verification_in_one_line() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "/a", "1");
    env.publish(&c, &remote, MID);
    let archive = remote.pointer(MID).expect("LATEST.json").archive;
    run_ok(&mut verify(&env, &remote));
    assert_eq!(recorded(&remote)["ok"], true);
    remote.corrupt(&format!("{MID}/generations/{archive}"));
    let out = run(&mut verify(&env, &remote));
    assert_fails_with(&out, "etcd2-verify", "failed verification");
    assert_no_leftovers(&env);
    // The failure replaces the earlier success on the remote, with why.
    let v = recorded(&remote);
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("failed verification") && v["revision"].is_null(),
        "{v}"
    );
}

/// A v3 archive whose snapshot.db is not a database, with a manifest and
/// sidecar that agree with it: every byte verifies, and etcd cannot use it.
fn unrestorable_archive(c: &Cluster, out: &Path) {
    use sha2::Digest;
    let good = c.path().join("good.tar.zst");
    c.snapshot_to(0, "v3", &good);
    let dir = c.path().join("unpacked");
    run_ok(
        std::process::Command::new("tar")
            .args(["--zstd", "-xf"])
            .arg(&good)
            .arg("-C")
            .arg({
                std::fs::create_dir_all(&dir).unwrap();
                &dir
            }),
    );
    let junk = vec![0x5au8; 64 * 1024];
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    // Format 1 (hashes in the manifest): a whole archive of a junk db.
    m["format"] = 1.into();
    m["files"][0]["size"] = junk.len().into();
    m["files"][0]["sha256"] = sha2::Sha256::digest(&junk)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into();
    let json = serde_json::to_vec_pretty(&m).unwrap();
    let f = std::fs::File::create(out).unwrap();
    let enc = zstd::Encoder::new(f, 3).unwrap();
    let mut t = tar::Builder::new(enc);
    for (name, data) in [("manifest.json", &json[..]), ("snapshot.db", &junk[..])] {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        t.append(&h, data).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

#[test]
fn a_generation_etcd_cannot_start_from_fails_clearly() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "/a", "1");
    let archive = c.path().join("junk.tar.zst");
    unrestorable_archive(&c, &archive);
    run_ok(env.push(&remote, MID).arg(&archive));
    let out = run(&mut verify(&env, &remote));
    assert_fails_with(&out, "etcd2-verify", "does not restore");
    assert_no_leftovers(&env);
}

#[test]
fn a_verify_killed_mid_way_leaves_no_etcd_and_the_next_run_sweeps_its_scratch() {
    use nix::sys::signal::{kill, Signal};
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "/a", "1");
    env.publish(&c, &remote, MID);
    let mut child = harness::spawn_at_fault(&mut verify(&env, &remote), "restore-etcd-started");
    kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let needle = env.work.display().to_string();
    harness::wait_for(
        "the temporary etcd to die",
        std::time::Duration::from_secs(10),
        || procs_mentioning(&needle).is_empty().then_some(()),
    );
    assert!(
        !leftovers(&env.work).is_empty(),
        "SIGKILL leaves scratch (the test bites)"
    );
    run_ok(&mut verify(&env, &remote));
    assert_no_leftovers(&env);
}

/// Under systemd (NOTIFY_SOCKET set for the tool), the throwaway etcd must
/// not talk to systemd: it is not the unit's main process, and systemd logs
/// "reception only permitted for main PID" for each of its messages.
#[test]
fn the_throwaway_member_does_not_inherit_the_units_notify_socket() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "/a", "1");
    env.publish(&c, &remote, MID);
    let resume = c.path().join("resume");
    let mut cmd = verify(&env, &remote);
    cmd.env("NOTIFY_SOCKET", c.path().join("no-systemd-here"))
        .env("ETCD2_BACKUP_FAULT_RESUME", &resume);
    let child = harness::spawn_at_fault(&mut cmd, "restore-etcd-started");
    let needle = env.work.display().to_string();
    let etcds: Vec<u32> = procs_mentioning(&needle)
        .into_iter()
        .filter(|p| *p != child.id())
        .collect();
    assert!(
        !etcds.is_empty(),
        "the temporary etcd runs (the test bites)"
    );
    for pid in etcds {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&environ).contains("NOTIFY_SOCKET="),
            "the temporary etcd (pid {pid}) got NOTIFY_SOCKET"
        );
    }
    std::fs::write(&resume, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "verify failed after the pause");
}

/// verify proves what the restore path would fetch: where etcd2-fetch
/// (what etcd2-restore.service runs) refuses, so does verify, for the same
/// reason; --allow-older lets both take the newest complete generation.
#[test]
fn verify_refuses_what_fetch_refuses() {
    let (c, remote, env) = setup(Backend::Local);
    c.put_v3(0, "/k", "v");
    env.publish(&c, &remote, MID);
    remote.write(&format!("{MID}/LATEST.json"), b"{damaged");
    let into = c.path().join("fetched");
    let fetch = run(env.fetch(&remote, MID).arg("--into").arg(&into));
    let fetch_line = assert_fails_with(&fetch, "etcd2-fetch", "--allow-older");
    let out = run(&mut verify(&env, &remote));
    let line = assert_fails_with(&out, "etcd2-verify", "--allow-older");
    assert!(
        line.contains("is damaged"),
        "{line} (fetch said: {fetch_line})"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("verified:"));
    let out = run_ok(verify(&env, &remote).arg("--allow-older"));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("verified:"));
}

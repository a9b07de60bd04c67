//! etcd with authentication on, as many Kubernetes and shared etcds run:
//! users `root` and `backup` (both with etcd's root role, which etcd asks
//! of snapshots, member status and alarms). Every tool that talks to etcd
//! authenticates with --user and --password-file; the member a restore
//! builds from such a backup has the same users and is checked with them;
//! a refusal is named as one; the password never appears in what the
//! tools print, even at -vv.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::etcd::{self, Cluster};
use harness::rclone::Remote;
use harness::{assert_fails_with, free_port, run, run_ok, tool, tool_on, Env};

const MID: &str = "a0700000000000000000000000000001";

/// The backup user's password: a canary that must never be printed.
const PASSWORD: &str = "pw-canary-7Hq2xZ";
const ROOT: &str = "root:root-canary-Kp4";

/// Users root and backup (root role both), ten keys, then auth on.
fn secure(c: &Cluster) {
    for args in [
        vec!["user", "add", "root", "--new-user-password=root-canary-Kp4"],
        vec!["user", "grant-role", "root", "root"],
        vec![
            "user",
            "add",
            "backup",
            &format!("--new-user-password={PASSWORD}"),
        ],
        vec!["user", "grant-role", "backup", "root"],
        vec!["user", "add", "reader", "--new-user-password=reader-pw"],
    ] {
        run_ok(c.etcdctl(0, "3").args(&args));
    }
    for i in 0..10 {
        c.put_v3(0, &format!("/app/k{i}"), &format!("v{i}"));
    }
    run_ok(c.etcdctl(0, "3").args(["auth", "enable"]));
}

/// The password in a file as a unit would keep it: mode 0600.
fn password_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_secret(out: &Output, step: &str) {
    let text = said(out);
    for secret in [PASSWORD, "root-canary"] {
        assert!(!text.contains(secret), "{step} printed a password: {text}");
    }
}

/// snapshot → push → fetch → restore → start → every key, on the etcd
/// build in `bin`, and each refusal named on the way.
fn round_trip(dir: &Path) {
    let c = Cluster::start_bin(1, dir);
    let bin = Some(dir);
    secure(&c);
    let pw = password_file(c.path(), "password", PASSWORD, 0o600);
    let user = |cmd: &mut Command| {
        cmd.args(["--user", "backup", "--password-file"]).arg(&pw);
    };

    // Without a user, and with a wrong password: refused, and said so.
    let snap = || {
        let mut s = tool_on("etcd2-snapshot", bin);
        s.env("ETCDCTL_ENDPOINTS", c.endpoint(0))
            .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
            .args(["--api", "v3", "-o"])
            .arg(c.path().join("refused.tar.zst"));
        s
    };
    let out = run(&mut snap());
    assert_fails_with(
        &out,
        "etcd2-snapshot",
        "has authentication enabled and refused a request without a user: pass --user NAME",
    );
    let wrong = password_file(c.path(), "wrong-password", "not-the-password", 0o600);
    let out = run(snap()
        .args(["--user", "backup", "--password-file"])
        .arg(&wrong));
    let line = assert_fails_with(
        &out,
        "etcd2-snapshot",
        "refused: authentication failed for user backup",
    );
    assert!(!line.contains("cannot reach"), "{line}");
    // A user without the root role reaches etcd and is refused a snapshot.
    let out = run(snap().args(["--user", "reader:reader-pw"]));
    assert_fails_with(&out, "etcd2-snapshot", "permission denied for user reader");
    assert!(!c.path().join("refused.tar.zst").exists());

    // The backup, at -vv: the password is never printed.
    let archive = c.path().join("auth.tar.zst");
    let mut s = tool_on("etcd2-snapshot", bin);
    s.env("ETCDCTL_ENDPOINTS", c.endpoint(0))
        .env("ETCD_BACKUP_DIR", c.path().join("snapwork"))
        .args(["-vv", "--api", "v3", "-o"])
        .arg(&archive);
    user(&mut s);
    let out = run_ok(&mut s);
    assert_no_secret(&out, "etcd2-snapshot -vv");

    // etcd2-health, as the join unit runs it, authenticates too.
    let mut h = tool_on("etcd2-health", bin);
    h.args(["-vv", "--endpoints", c.endpoint(0)]);
    user(&mut h);
    assert_no_secret(&run_ok(&mut h), "etcd2-health -vv");
    // A refused user is said at once, not waited out and not "unreachable".
    // (A user without the root role may ask for health: only 3.5 refuses
    // it member status.)
    let out = run(tool_on("etcd2-health", bin).args([
        "--endpoints",
        c.endpoint(0),
        "--wait",
        "20s",
        "--user",
        "backup:wrong",
    ]));
    let line = assert_fails_with(
        &out,
        "etcd2-health",
        "refused: authentication failed for user backup",
    );
    assert!(!line.contains("not healthy within"), "{line}");

    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    run_ok(env.push(&remote, MID).arg(&archive));
    let fetched = c.path().join("fetched.tar.zst");
    run_ok(env.fetch(&remote, MID).arg("-o").arg(&fetched));

    // verify's throwaway member has the backup's users: it is checked
    // with the same one.
    let mut v = env.with(tool_on("etcd2-verify", bin), &remote, MID);
    v.args(["-vv", "--wait", "60s"]);
    user(&mut v);
    assert_no_secret(&run_ok(&mut v), "etcd2-verify -vv");

    // A restore without the user stops at once, naming why.
    let restore = |data: &Path, peer: &str| {
        let mut r = tool_on("etcd2-restore", bin);
        r.arg("--data-dir")
            .arg(data)
            .args(["--name", "r1", "--peer-urls", peer, "--wait", "60s"])
            .arg(&fetched);
        r
    };
    let pp = free_port();
    let peer = format!("http://127.0.0.1:{pp}");
    let refused = c.path().join("refused-data");
    let out = run(&mut restore(&refused, &peer));
    assert_fails_with(
        &out,
        "etcd2-restore",
        "has etcd authentication on (the backed-up cluster had it) and refused a request without a user",
    );
    assert!(
        !refused.join("member").exists(),
        "a refused restore left a member"
    );

    let data = c.path().join("restored");
    let mut r = restore(&data, &peer);
    r.arg("-vv");
    user(&mut r);
    assert_no_secret(&run_ok(&mut r), "etcd2-restore -vv");

    let as_root = vec![format!("--user={ROOT}")];
    let m = etcd::start_alone_on(bin, c.path(), data, pp, vec![], &as_root);
    for i in 0..10 {
        assert_eq!(
            etcd::get_v3_at(&m.client_url, &as_root, &format!("/app/k{i}")).as_deref(),
            Some(format!("v{i}").as_str()),
            "key /app/k{i} after the restore"
        );
    }
    // Auth is still on in the restored member.
    let out = run(Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", m.client_url))
        .args(["get", "/app/k0"]));
    assert!(!out.status.success(), "the restored member lost its auth");
}

/// Every etcd build we claim (scripts/versions), one after the other.
#[test]
fn an_auth_enabled_etcd_is_backed_up_and_restored_with_its_users_on_every_version() {
    for b in etcd::builds() {
        eprintln!("--- etcd {}", b.version);
        round_trip(&etcd::bin_of(&b.version));
    }
}

/// The password settings are checked before anything runs, each mistake in
/// one line naming the flag; no etcd is needed to refuse them.
#[test]
fn password_settings_that_do_not_fit_are_refused_naming_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let open = password_file(d.path(), "open", PASSWORD, 0o644);
    let private = password_file(d.path(), "private", PASSWORD, 0o600);
    let open_s = open.display().to_string();
    let private_s = private.display().to_string();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--user", "backup", "--password-file", &open_s],
            format!("--password-file {open_s}: mode 0644 lets other users read it"),
        ),
        (
            vec!["--user", "backup"],
            "--user backup has no password: give --password-file FILE".to_owned(),
        ),
        (
            vec!["--password-file", &private_s],
            "a password was given (--password or --password-file) but no --user NAME".to_owned(),
        ),
        (
            vec!["--user", "backup:x", "--password-file", &private_s],
            "carries a password already".to_owned(),
        ),
    ];
    for (args, says) in cases {
        let out = run(tool("etcd2-health")
            .args(["--endpoints", "http://127.0.0.1:1"])
            .args(&args));
        assert_fails_with(&out, "etcd2-health", &says);
        assert_no_secret(&out, &format!("etcd2-health {args:?}"));
    }
    // ETCDCTL_USER and ETCDCTL_PASSWORD, etcdctl's own names, are read too.
    let out = run(tool("etcd2-health")
        .env("ETCDCTL_USER", "backup")
        .env("ETCDCTL_PASSWORD", PASSWORD)
        .env("ETCD2_BACKUP_PASSWORD_FILE", &private)
        .args(["--endpoints", "http://127.0.0.1:1"]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--password-file"),
        "{}",
        said(&out)
    );
    assert_no_secret(&out, "etcd2-health with ETCDCTL_PASSWORD");
}

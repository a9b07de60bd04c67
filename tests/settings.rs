//! The settings file (/etc/etcd2-backup/etcd2-backup.env) is read by two
//! parsers: systemd's, for the units (`EnvironmentFile=`), and ours, for
//! every tool (also under the unit, and in a root shell). They must agree:
//! here real systemd 252 (in a container) reads each file and dumps what a
//! unit gets, and that is compared with what `settings::parse` returns.
//! Then the tool side: a settings file that is not a regular file, or that
//! another user could swap, is refused with one line and no hang.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::nspawn::Container;
use harness::{assert_fails_with, assert_fails_with_code, run};

/// Each case: a name and the file's bytes.
const CASES: &[(&str, &[u8])] = &[
    ("duplicates", b"A=1\nB=x\nA=2\n"),
    (
        "continuation",
        b"A=one \\\ntwo\nB=\"x\\\ny\"\nC=\\\nlater\nD=end\\\n",
    ),
    (
        "double-quotes",
        b"A=\"q\\\"d \\$x \\`y\\` \\\\ \\n \\t\"\nB=\"a\"'b'c\nC=\"x\" \"y\"\nD=\"  padded  \"\n",
    ),
    ("single-quotes", b"A='s \"q\" \\n $x \\'\nB='it'\\''s'\n"),
    (
        "whitespace",
        b"A=v   \nB=  v\t\nC = w\n  D=z\nE=a  b\nF=x\\ \n\tG=t\n",
    ),
    (
        "comments",
        b"# c\n; c\nA=1 # not a comment\n#B=2\n  # indented\nC=3\n;D=4\nE=x;y\n",
    ),
    (
        "comment-ending-in-backslash",
        b"# a comment \\\nHIDDEN=1\nSHOWN=2\n",
    ),
    ("empty", b"A=\nB=\"\"\nC=''\nD=   \n"),
    (
        "invalid-lines",
        b"export X=1\n1A=2\nA-B=3\nnoequals\nGOOD=1\n:s3,secret_access_key=hunter2:b\n=v\nA B=4\n",
    ),
    ("crlf", b"A=1\r\nB=\"2\"\r\n# c\r\nC=3 \r\n"),
    ("multi-line-quote", b"A=\"line1\nline2\"\nB='x\ny'\nC=3\n"),
    ("unterminated-quote", b"A=1\nB=\"abc\nC=2\n"),
    ("no-final-newline", b"A=1\nB=2"),
    ("bare-escapes", b"A=a\\b\\\\c\\$d\nB=\\\"q\\\"\n"),
    ("utf8", "A=héllo wörld\nB=\"日本\"\n".as_bytes()),
    ("lowercase-and-underscore", b"_x=1\nabc_D9=2\n"),
];

/// Files systemd does not read at all (the unit runs without them, the
/// `-` of `EnvironmentFile=-`): our parser refuses them.
const UNREADABLE: &[(&str, &[u8])] = &[
    ("nul-byte", b"A=1\nB=2\0C=3\n"),
    ("invalid-utf8-value", b"A=1\nB=\xff\xfe\n"),
];

const MID: &str = "0123456789abcdef0123456789abcdef";

const DUMP_UNIT: &str = "[Service]\nType=oneshot\nExecStart=/usr/bin/env -0\n";

/// What a oneshot unit with `EnvironmentFile=-` of each file gets, minus
/// what it gets without one (empty: systemd read none of the file).
fn systemd_reads(files: &[(&str, PathBuf)]) -> BTreeMap<String, BTreeMap<String, String>> {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    fs::create_dir_all(dir.join("in")).expect("mkdir");
    fs::create_dir_all(dir.join("out")).expect("mkdir");
    for (name, src) in files {
        fs::copy(src, dir.join("in").join(name)).expect("copy case");
    }
    let mut ct = Container::boot(
        &format!("settings-{}", std::process::id()),
        &[(dir.to_path_buf(), "/work", false)],
        dir,
    );
    let mut units = vec![("baseline".to_string(), None)];
    units.extend(files.iter().map(|(n, _)| (n.to_string(), Some(n))));
    for (name, file) in &units {
        let mut text = DUMP_UNIT.to_string();
        if let Some(f) = file {
            text.push_str(&format!("EnvironmentFile=-/work/in/{f}\n"));
        }
        text.push_str(&format!("StandardOutput=file:/work/out/{name}\n"));
        fs::write(dir.join(format!("envdump-{name}.service")), text).expect("unit");
        let o = ct.exec(&[
            "cp",
            &format!("/work/envdump-{name}.service"),
            "/etc/systemd/system/",
        ]);
        assert!(o.status.success(), "{o:?}");
    }
    ct.systemctl(&["daemon-reload"]);
    let dump = |name: &str| -> BTreeMap<String, String> {
        let bytes = fs::read(dir.join("out").join(name)).expect("dump");
        bytes
            .split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let e = String::from_utf8(e.to_vec()).expect("utf-8 env");
                let (k, v) = e.split_once('=').expect("k=v");
                (k.to_string(), v.to_string())
            })
            .collect()
    };
    let mut out = BTreeMap::new();
    ct.systemctl(&["start", "envdump-baseline.service"]);
    let base = dump("baseline");
    for (name, _) in files {
        ct.systemctl(&["start", &format!("envdump-{name}.service")]);
        let got: BTreeMap<String, String> = dump(name)
            .into_iter()
            .filter(|(k, v)| {
                base.get(k) != Some(v) && k != "INVOCATION_ID" && k != "SYSTEMD_EXEC_PID"
            })
            .collect();
        out.insert(name.to_string(), got);
    }
    ct.stop();
    out
}

#[test]
fn the_tools_read_the_settings_file_exactly_as_systemd_does() {
    let t = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (name, bytes) in CASES.iter().chain(UNREADABLE) {
        let p = t.path().join(name);
        fs::write(&p, bytes).expect("write case");
        files.push((*name, p));
    }
    let systemd = systemd_reads(&files);
    let mut wrong = Vec::new();
    for (name, bytes) in CASES {
        let ours = etcd2_backup::settings::read(bytes)
            .map(|s| s.vars.into_iter().collect::<BTreeMap<_, _>>());
        let theirs = &systemd[*name];
        if ours.as_ref().ok() != Some(theirs) {
            wrong.push(format!("{name}: systemd {theirs:?}, ours {ours:?}"));
        }
        // parse() (what the fuzz target calls) agrees with read().
        if let Ok(text) = std::str::from_utf8(bytes) {
            let p = etcd2_backup::settings::parse(text).map(|v| v.into_iter().collect());
            assert_eq!(p.ok(), ours.clone().ok(), "{name}");
        }
    }
    for (name, bytes) in UNREADABLE {
        let ours = etcd2_backup::settings::read(bytes);
        // systemd reads none of it (not even the line before the culprit).
        if !systemd[*name].is_empty() || ours.is_ok() {
            wrong.push(format!(
                "{name}: systemd {:?}, ours {ours:?} (both should refuse the whole file)",
                systemd[*name]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A shell's etcd2-fetch --list with only `file` as its settings.
fn fetch_list(file: &Path) -> Command {
    let mut cmd = Command::new(harness::bin("etcd2-fetch"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ETCD2_BACKUP_ENV_FILE", file)
        .arg("--list");
    cmd
}

/// What an operator's settings file may hold: a name set twice (the
/// second one wins, as for the units), a continuation line, a line
/// systemd ignores (ignored with a warning naming its number only).
#[test]
fn a_tool_takes_the_last_value_continuations_and_warns_about_ignored_lines() {
    let t = tempfile::tempdir().expect("tempdir");
    let good = t.path().join("backups");
    fs::create_dir_all(&good).expect("mkdir");
    let rc = t.path().join("rclone.conf");
    fs::write(&rc, "").expect("w");
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).expect("chmod");
    let file = t.path().join("etcd2-backup.env");
    fs::write(
        &file,
        format!(
            "RCLONE_ENDPOINT=/nonexistent/other-remote\nRCLONE_CONFIG_PATH={}\n\
             ETCD2_BACKUP_MACHINE_ID=0123456789abcdef\\\n0123456789abcdef\n\
             export SECRET=hunter2\nRCLONE_ENDPOINT={}\n",
            rc.display(),
            good.display()
        ),
    )
    .expect("w");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
    let o = run(&mut fetch_list(&file));
    // The last RCLONE_ENDPOINT (an empty repository, not the first one),
    // and the machine-id continued on the next line.
    // Nothing there: exit 4.
    assert_fails_with_code(
        &o,
        "etcd2-fetch",
        4,
        &format!(
            "no complete generation for machine-id 0123456789abcdef0123456789abcdef under {}",
            good.display()
        ),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("hunter2"), "a value was printed: {err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("etcd2-fetch: warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains(&format!(
            "{}: line 5: ignored, as systemd ignores it",
            file.display()
        )),
        "{err}"
    );
}

/// Run `cmd`, bounded: a tool that blocks (on a FIFO without a writer) is
/// killed by its PID after `secs` and the test fails saying so.
fn run_bounded(cmd: &mut Command, secs: u64) -> std::process::Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("wait");
        }
        if std::time::Instant::now() > deadline {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let o = child.wait_with_output().expect("wait");
            panic!(
                "{cmd:?} did not exit within {secs} s (blocked?); stderr: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Anything but a regular file is refused with one line, at once: a FIFO
/// (no writer: reading it would block forever), a directory, a device.
#[test]
fn a_settings_file_that_is_not_a_regular_file_is_refused_without_hanging() {
    let t = tempfile::tempdir().expect("tempdir");
    let fifo = t.path().join("fifo.env");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let dir = t.path().join("dir.env");
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    for (p, kind) in [
        (fifo.as_path(), "a FIFO"),
        (dir.as_path(), "a directory"),
        (Path::new("/dev/null"), "a character device"),
    ] {
        let o = run_bounded(&mut fetch_list(p), 20);
        let line = assert_fails_with(&o, "etcd2-fetch", "refusing the settings in");
        assert!(
            line.contains(&format!("is {kind}, not a regular file")),
            "{line}"
        );
    }
}

/// A link another user owns in a sticky world-writable dir (the case
/// fs.protected_symlinks guards), and a file or dir on the way that others
/// may write, are refused: either lets another user choose the settings
/// root's tools run with.
#[test]
fn a_settings_file_others_could_swap_is_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    let backups = t.path().join("backups");
    fs::create_dir(&backups).expect("mkdir");
    let rc = t.path().join("rclone.conf");
    fs::write(&rc, "").expect("w");
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).expect("chmod");
    let real = t.path().join("real.env");
    fs::write(
        &real,
        format!(
            "RCLONE_ENDPOINT={}\nRCLONE_CONFIG_PATH={}\nETCD2_BACKUP_MACHINE_ID={MID}\n",
            backups.display(),
            rc.display()
        ),
    )
    .expect("w");
    fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).expect("chmod");
    let me = nix::unistd::geteuid();
    assert!(
        me.is_root(),
        "this test needs root (to own a link as another user)"
    );
    let nobody = nix::unistd::Uid::from_raw(65534);

    // A trusted link (ours, in our dir) is followed.
    let link = t.path().join("link.env");
    std::os::unix::fs::symlink(&real, &link).expect("ln");
    let o = run(&mut fetch_list(&link));
    assert_fails_with_code(
        &o,
        "etcd2-fetch",
        4,
        &format!(
            "no complete generation for machine-id {MID} under {}",
            backups.display()
        ),
    );

    // The same link owned by nobody, in a sticky world-writable dir.
    let sticky = t.path().join("tmp");
    fs::create_dir(&sticky).expect("mkdir");
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).expect("chmod");
    let theirs = sticky.join("settings.env");
    std::os::unix::fs::symlink(&real, &theirs).expect("ln");
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &theirs,
        Some(nobody),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .expect("lchown");
    let o = run(&mut fetch_list(&theirs));
    let line = assert_fails_with(&o, "etcd2-fetch", "refusing the settings in");
    assert!(line.contains("owned by uid 65534"), "{line}");

    // A file of ours in a dir others may write (not sticky): anyone can
    // replace it.
    let open = t.path().join("open");
    fs::create_dir(&open).expect("mkdir");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
    let inside = open.join("etcd2-backup.env");
    fs::copy(&real, &inside).expect("cp");
    fs::set_permissions(&inside, fs::Permissions::from_mode(0o600)).expect("chmod");
    let o = run(&mut fetch_list(&inside));
    let line = assert_fails_with(&o, "etcd2-fetch", "refusing the settings in");
    assert!(
        line.contains(&format!("{} is writable by other users", open.display())),
        "{line}"
    );

    // A dir on the way owned by another user: its owner can swap the file.
    let owned = t.path().join("owned");
    fs::create_dir(&owned).expect("mkdir");
    let inside = owned.join("etcd2-backup.env");
    fs::copy(&real, &inside).expect("cp");
    fs::set_permissions(&inside, fs::Permissions::from_mode(0o600)).expect("chmod");
    nix::unistd::chown(&owned, Some(nobody), None).expect("chown");
    let o = run(&mut fetch_list(&inside));
    let line = assert_fails_with(&o, "etcd2-fetch", "refusing the settings in");
    assert!(
        line.contains(&format!("{} is owned by uid 65534", owned.display())),
        "{line}"
    );
}

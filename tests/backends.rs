//! The backends operators use, each through the whole cycle as the units run
//! it (`etcd2-snapshot -o - | etcd2-push -`): local, `rclone serve sftp`, S3
//! (moto on loopback, an archive above the multipart chunk size), rclone
//! crypt over local, and `rclone serve webdav`. Each: push from a pipe with
//! one rclone process, --list, fetch, retention, a stored object corrupted
//! at rest refused by fetch, and a copy corrupted between upload and
//! publication refused by push's default verification (the backend's hash
//! where it has one, a download and sha256 comparison where it has none).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use harness::etcd::Cluster;
use harness::rclone::{Backend, Remote};
use harness::{assert_fails_with, run, run_ok, spawn_at_fault, Env};

const MID: &str = "0000000000000000000000000000000b";

/// An rclone that logs each start (its arguments) to `log`, then runs `bin`.
fn counting_rclone(dir: &Path, bin: &Path) -> (PathBuf, PathBuf) {
    let wrapper = dir.join("rclone-counting");
    let log = dir.join("rclone-starts.log");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$1 $2\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    (wrapper, log)
}

fn starts(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `snapshot -o - | push -`; the push's output.
fn pipe_push(c: &Cluster, push: &mut Command) -> std::process::Output {
    let mut snap = c.snapshot(0);
    snap.args(["--api", "v3", "-o", "-"]);
    harness::pipe(snap, push.arg("-"))
}

/// The archive LATEST.json names, if any.
fn pointer(remote: &Remote) -> Option<String> {
    remote.pointer(MID).map(|p| p.archive)
}

/// The whole cycle on `backend` (with rclone `bin` instead of this run's,
/// if given): on a backend with multipart uploads, with an archive above
/// the chunk size, so the upload has parts.
fn cycle(backend: Backend, bin: Option<PathBuf>) {
    let multipart = backend.multipart_flags();
    let c = if multipart.is_some() {
        big_cluster()
    } else {
        small_cluster()
    };
    let mut remote = backend.start(c.path());
    if let Some(bin) = bin {
        remote = remote.using(bin);
    }
    let extra_flags = multipart.unwrap_or_default();
    let c = &c;
    let env = Env::new(c.path());
    let (wrapper, log) = counting_rclone(c.path(), &remote.bin);
    let push = |keep: &str| {
        let mut cmd = env.push(&remote, MID);
        cmd.env("ETCD2_BACKUP_RCLONE", &wrapper)
            .env(
                "ETCD2_BACKUP_RCLONE_FLAGS",
                format!("{} {extra_flags}", harness::rclone::QUICK_FAIL),
            )
            .args(["--keep", keep]);
        cmd
    };

    // Three cycles, --keep 2: one rclone process per push, whatever the
    // number of calls; the default verification says how it checked.
    let mut archives = Vec::new();
    for n in 0..3 {
        c.put_v3(0, "/cycle", &n.to_string());
        let before = starts(&log).len();
        let out = pipe_push(c, &mut push("2"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{backend} push {n}: {stderr}");
        let spawned = starts(&log)[before..].to_vec();
        assert!(
            spawned.len() <= 3,
            "{backend}: a push started {} rclone processes: {spawned:?}",
            spawned.len()
        );
        let how = backend.verification().says();
        assert!(stderr.contains(&how), "{backend}: verified how? {stderr}");
        archives.push(pointer(&remote).expect("a published pointer"));
    }
    let out = run_ok(env.fetch(&remote, MID).args(["--list", "--json"]));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--list --json");
    let text = listed.to_string();
    assert!(
        !text.contains(&archives[0][..20]) && text.contains(&archives[1][..20]),
        "{backend}: --keep 2 keeps the two newest: {text}"
    );
    if multipart.is_some() {
        let size = remote.pointer(MID).expect("pointer").size;
        assert!(size > 5 << 20, "not above the 5 MiB chunk: {size} bytes");
    }
    let into = c.path().join("fetched");
    run_ok(env.fetch(&remote, MID).arg("--into").arg(&into));
    assert!(into.join("manifest.json").exists());

    // A copy that changes between upload and publication: never published.
    let published = pointer(&remote).expect("pointer");
    let mut cmd = push("2");
    let snap = c.path().join("next.tar.zst");
    c.snapshot_to(0, "v3", &snap);
    cmd.arg(&snap)
        .env("ETCD2_BACKUP_FAULT_RESUME", c.path().join("resume"));
    let child = spawn_at_fault(&mut cmd, "after-upload");
    let uploaded = {
        // The archive just uploaded: the one not named by the pointer.
        let names = remote.list(&format!("{MID}/generations"));
        names
            .into_iter()
            .filter(|n| n.contains(".tar.") && !archives.contains(n))
            .max()
            .expect("the uploaded archive")
    };
    remote.corrupt(&format!("{MID}/generations/{uploaded}"));
    std::fs::write(c.path().join("resume"), b"").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "{backend}: push published a copy corrupted after its upload"
    );
    assert_eq!(
        pointer(&remote).as_deref(),
        Some(published.as_str()),
        "{backend}: the pointer moved to a corrupted copy"
    );

    // Corrupted at rest: fetch refuses it and says why.
    remote.corrupt(&format!("{MID}/generations/{published}"));
    let out = run(env
        .fetch(&remote, MID)
        .arg("--into")
        .arg(c.path().join("refetched")));
    assert_fails_with(&out, "etcd2-fetch", "");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    // crypt's authentication fails inside rclone, which says only
    // "unexpected EOF" (1.60) or "failed to authenticate decrypted block"
    // (1.75); every other backend's bytes reach our sha256 check.
    let why: &[&str] = if backend.authenticates() {
        &["unexpected eof", "failed to authenticate"]
    } else {
        // Or zstd's own check, where the flipped byte reaches it first
        // (S3 on rclone 1.75).
        &["sha256", "failed verification"]
    };
    assert!(
        why.iter().any(|w| err.contains(w)) && err.contains(&published[..20].to_lowercase()),
        "{backend}: fetch's refusal does not name the copy and why: {err}"
    );
    assert!(!c.path().join("refetched").exists());
}

fn small_cluster() -> Cluster {
    let c = Cluster::start(1);
    for k in 0..20 {
        c.put_v3(0, &format!("/k{k}"), &"v".repeat(200));
    }
    c
}

/// `keys` keys of 64 KiB each, hard to compress (hex of random bytes).
fn incompressible_cluster(keys: usize) -> Cluster {
    let c = Cluster::start(1);
    let mut rnd = std::fs::File::open("/dev/urandom").unwrap();
    for k in 0..keys {
        let mut b = vec![0u8; 32 << 10];
        rnd.read_exact(&mut b).unwrap();
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        c.put_v3(0, &format!("/big{k}"), &hex);
    }
    c
}

/// About 6.5 MB of archive.
fn big_cluster() -> Cluster {
    incompressible_cluster(200)
}

#[test]
fn local_backend_full_cycle() {
    cycle(Backend::Local, None);
}

#[test]
fn sftp_backend_full_cycle() {
    cycle(Backend::Sftp, None);
}

#[test]
fn webdav_backend_full_cycle() {
    cycle(Backend::Webdav, None);
}

#[test]
fn crypt_backend_full_cycle() {
    cycle(Backend::Crypt, None);
}

/// The same cycle with rclone 1.75.2 (Debian sid) as the tools' rclone:
/// the rclone operators install from rclone.org today. The servers (sftp,
/// WebDAV) stay Debian 12's 1.60; the client under test is 1.75.
#[test]
fn every_backend_full_cycle_on_rclone_1_75() {
    let bin = harness::rclone::rclone_175();
    for backend in Backend::ALL {
        cycle(backend, Some(bin.clone()));
    }
}

/// Above S3's smallest multipart chunk (5 MiB), so the upload has parts.
#[test]
fn s3_backend_full_cycle_with_a_multipart_archive() {
    cycle(Backend::S3, None);
}

/// A push from a pipe writes nothing to local disk: its work dir, a 1 MiB
/// tmpfs, takes a 3 MB archive streamed through it (the old push spooled
/// stdin there first, and failed with "No space left on device").
#[test]
fn a_piped_push_needs_no_local_disk() {
    let c = incompressible_cluster(100);
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let _tiny = harness::Tmpfs::mount(&env.work, 1 << 20);
    let mut push = env.push(&remote, MID);
    // The lock file is not scratch; keep it off the tiny disk.
    push.env("ETCD2_BACKUP_LOCK", c.path().join("push.lock"));
    let out = pipe_push(&c, &mut push);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = remote.pointer(MID).expect("published").size;
    assert!(
        size > 2 << 20,
        "archive of {size} bytes is not twice the disk"
    );
}

/// `--local-copy`: the original's "newest backup also on local disk", as a
/// tee of the pushed stream: it is exactly the published archive, 0600,
/// and a push that publishes nothing leaves the previous copy as it was.
#[test]
fn the_local_copy_is_the_published_archive_and_only_that() {
    use std::os::unix::fs::PermissionsExt;
    let c = small_cluster();
    let remote = Remote::local(c.path());
    let env = Env::new(c.path());
    let copy = c.path().join("newest.tar.zst");
    let mut push = env.push(&remote, MID);
    push.arg("--local-copy").arg(&copy);
    let out = pipe_push(&c, &mut push);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = remote.pointer(MID).expect("published");
    let bytes = std::fs::read(&copy).expect("the local copy");
    let stored = remote
        .read(&format!("{MID}/generations/{}", p.archive))
        .unwrap();
    assert_eq!(
        bytes, stored,
        "the local copy differs from the published archive"
    );
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A push that fails (the remote's directory is a file now) keeps it.
    let before = std::fs::read(&copy).unwrap();
    c.put_v3(0, "/changed", "1");
    let broken = Remote::local(&c.path().join("broken"));
    std::fs::create_dir_all(broken.root.parent().unwrap()).unwrap();
    std::fs::write(&broken.root, b"not a directory").unwrap();
    let mut push = env.push(&broken, MID);
    push.arg("--local-copy").arg(&copy);
    let out = pipe_push(&c, &mut push);
    assert!(!out.status.success(), "a push into a file succeeded");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        before,
        "a failed push replaced the local copy"
    );
    let leftovers: Vec<_> = std::fs::read_dir(c.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// An S3 error is one `tool: error:` line: rclone 1.60's (the AWS SDK's)
/// carry their status on a second line (`...\n\tstatus code: 400, request
/// id: ...`), and push's rcd replies passed that on.
#[test]
fn an_s3_error_is_one_line_on_each_rclone() {
    let c = small_cluster();
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    for (tag, bin) in harness::rclone::each_version() {
        let base = c.path().join(format!("rclone-{tag}"));
        std::fs::create_dir_all(&base).unwrap();
        let remote = Remote::s3(&base).using(bin);
        let env = Env::new(&base);
        // A bucket name S3 refuses (shorter than 3 characters).
        let mut push = env.push(&remote, MID);
        push.env("RCLONE_ENDPOINT", "backup:ab/etcd").arg(&archive);
        let out = run(&mut push);
        let line = assert_fails_with(&out, "etcd2-push", "InvalidBucketName");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.trim_end().ends_with(&line),
            "rclone {tag}: more after the error line: {err}"
        );
    }
}

/// No S3 multipart upload of etcd data outlives a push: one interrupted
/// by SIGTERM, or whose producer died mid-stream, aborts its own; one
/// killed (SIGKILL) leaves it, and the next push removes it once it is
/// older than --transfer-timeout, and removes nothing of anyone else's
/// (another machine's upload, one outside the endpoint). Uploads are
/// listed by the S3 API itself.
fn no_multipart_upload_outlives_a_push(tag: &str, bin: PathBuf) {
    use std::time::{Duration, Instant};
    // Hard to compress: about 3 MB of archive, a multipart upload once
    // rclone has read 100 KiB of a stream.
    let c = incompressible_cluster(100);
    let archive = c.path().join("a.tar.zst");
    c.snapshot_to(0, "v3", &archive);
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.len() > 2 << 20, "{} bytes", bytes.len());
    let remote = Remote::s3(c.path()).using(bin);
    let env = Env::new(c.path());
    let ours = format!("etcd/{MID}/");
    let foreign = [
        "etcd/0000000000000000000000000000000c/generations/x.tar.zst".to_owned(),
        "elsewhere/y.tar.zst".to_owned(),
    ];
    for k in &foreign {
        remote.start_multipart_upload(k);
    }
    let left = |remote: &Remote| -> Vec<String> {
        remote
            .multipart_uploads()
            .into_iter()
            .filter(|k| k.starts_with(&ours))
            .collect()
    };

    let mut killed_at = None;
    for how in ["producer-died", "sigterm", "sigterm-cgroup", "sigkill"] {
        let mut push = env.push(&remote, MID);
        push.arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = push.spawn().expect("push");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&bytes[..2 << 20]).unwrap();
        harness::wait_for(
            &format!("{how}: a multipart upload under {ours}"),
            Duration::from_secs(30),
            || (!left(&remote).is_empty()).then_some(()),
        );
        match how {
            "producer-died" => drop(stdin),
            "sigterm" => {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                )
                .unwrap();
            }
            "sigterm-cgroup" => {
                // As systemd's stop of the unit: SIGTERM to every process
                // of its cgroup at once, rclone too.
                let config = remote.config.display().to_string();
                let mut pids = harness::procs_mentioning(&config);
                pids.push(child.id());
                for pid in pids {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
            _ => {
                // As systemd's SIGKILL of the unit's cgroup: rclone too,
                // not only after us (it could abort on seeing our socket
                // close first).
                let config = remote.config.display().to_string();
                for pid in harness::procs_mentioning(&config) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                child.kill().unwrap();
                killed_at = Some(Instant::now());
            }
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "rclone {tag}, {how}: {err}");
        if how != "sigkill" {
            assert_eq!(
                left(&remote),
                Vec::<String>::new(),
                "rclone {tag}, {how}: the push left a multipart upload: {err}"
            );
        }
    }
    // What SIGKILL left (nothing of ours can abort it then).
    let killed = left(&remote);
    assert!(
        !killed.is_empty(),
        "rclone {tag}: SIGKILL left no upload to remove"
    );

    // The next push removes what is older than its --transfer-timeout:
    // no push's upload lasts longer.
    let bound = Duration::from_secs(3);
    let since = killed_at.unwrap().elapsed();
    std::thread::sleep((bound + Duration::from_secs(1)).saturating_sub(since));
    let out = run_ok(
        env.push(&remote, MID)
            .args(["--transfer-timeout", "3s"])
            .arg(&archive),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        left(&remote),
        Vec::<String>::new(),
        "rclone {tag}: the next push left the killed one's upload {killed:?}: {err}"
    );
    let all = remote.multipart_uploads();
    for k in &foreign {
        assert!(all.contains(k), "rclone {tag}: {k} was removed: {all:?}");
    }
}

#[test]
fn no_multipart_upload_outlives_a_push_on_rclone_1_60() {
    no_multipart_upload_outlives_a_push("1.60", harness::require("rclone", "rclone"));
}

#[test]
fn no_multipart_upload_outlives_a_push_on_rclone_1_75() {
    no_multipart_upload_outlives_a_push("1.75", harness::rclone::rclone_175());
}

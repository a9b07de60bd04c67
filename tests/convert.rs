//! etcd2-convert: an etcd2 (v2) backup carried to etcd 3.7, for real. The
//! v2 data is written on Debian's etcd 3.4.23 (the system etcd, which has
//! the v2 store), backed up as the original package did (`etcdctl backup`)
//! and as we do (`etcd2-snapshot --api v2`), converted with 3.4.23,
//! published, and restored on etcd 3.7.3, whose keys are then read back.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use harness::etcd::{bin_of, path_with, Cluster};
use harness::rclone::Remote;
use harness::{assert_fails_with, pipe_ok, run, run_ok, tool, Env};

const MID: &str = "c0000000000000000000000000000001";

/// Form-encode every byte (what the v2 API takes: any bytes).
fn form(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// A v2 PUT of `body` (a form, given on stdin) to `path` (`/v2/keys/...`).
fn v2_put(endpoint: &str, path: &str, body: &str) {
    use std::io::Write as _;
    let url = format!("{endpoint}{path}");
    let mut child = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "10", "-X", "PUT"])
        .args(["-H", "Content-Type: application/x-www-form-urlencoded"])
        .args(["--data-binary", "@-", &url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("curl (Debian's curl package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PUT {url}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The v2 keys every conversion must carry: plain, deep, empty, text with
/// control characters and NUL, non-ASCII, a large value.
fn plain_keys() -> BTreeMap<String, Vec<u8>> {
    let mut all: Vec<u8> = (0u8..0x80).collect();
    all.extend("é漢字🙂".as_bytes());
    BTreeMap::from([
        ("/a".to_owned(), b"1".to_vec()),
        ("/deep/er/and/deeper/key".to_owned(), b"deep".to_vec()),
        ("/empty-value".to_owned(), Vec::new()),
        ("/bytes".to_owned(), all),
        ("/big".to_owned(), vec![b'x'; 200_000]),
        ("/spaces and = & ?".to_owned(), b"q=1&r=2".to_vec()),
    ])
}

/// Fill member 0's v2 store: the plain keys, a key with a TTL, a directory
/// with a TTL holding a key, an empty directory and a hidden key.
fn fill_v2(c: &Cluster) {
    let ep = c.endpoint(0);
    for (k, v) in plain_keys() {
        let path: String = k
            .split('/')
            .map(|s| form(s.as_bytes()))
            .collect::<Vec<_>>()
            .join("/");
        v2_put(
            ep,
            &format!("/v2/keys{path}"),
            &format!("value={}", form(&v)),
        );
    }
    v2_put(ep, "/v2/keys/ttl-key", "value=soon&ttl=3600");
    v2_put(ep, "/v2/keys/ttl-dir", "dir=true&ttl=1800");
    v2_put(ep, "/v2/keys/ttl-dir/child", "value=c");
    v2_put(ep, "/v2/keys/empty-dir", "dir=true");
    v2_put(ep, "/v2/keys/_hidden", "value=h");
}

/// Every v3 key of the 3.7 member at `endpoint`: value and lease.
fn v3_keys(bin: &Path, endpoint: &str) -> BTreeMap<String, (Vec<u8>, i64)> {
    let out = run_ok(
        Command::new(bin.join("etcdctl"))
            .arg(format!("--endpoints={endpoint}"))
            .args(["get", "", "--prefix", "-w", "json"]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b64 = |s: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_str().unwrap_or(""))
            .unwrap()
    };
    v["kvs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            (
                String::from_utf8(b64(&kv["key"])).unwrap(),
                (b64(&kv["value"]), kv["lease"].as_i64().unwrap_or(0)),
            )
        })
        .collect()
}

/// The remaining TTL etcd 3.7 reports for `lease`.
fn lease_ttl(bin: &Path, endpoint: &str, lease: i64) -> i64 {
    let out = run_ok(
        Command::new(bin.join("etcdctl"))
            .arg(format!("--endpoints={endpoint}"))
            .args(["lease", "timetolive", &format!("{lease:x}"), "-w", "json"]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["ttl"].as_i64().unwrap()
}

/// Restore `from` into a fresh 3.7.3 member and check every key: the plain
/// ones byte-identical without a lease, the TTL ones on leases of at most
/// their TTL, the directories and the hidden key absent.
fn assert_restores_on_3_7(from: &Path) {
    let bin = bin_of("3.7.3");
    let mut c = Cluster::start_bin(1, &bin);
    c.members[0].stop();
    std::fs::remove_dir_all(c.members[0].data_dir.join("member")).unwrap();
    run_ok(
        tool("etcd2-restore")
            .env("PATH", path_with(&bin))
            .arg("--data-dir")
            .arg(&c.members[0].data_dir)
            .args(["--name", &c.members[0].name.clone()])
            .args(["--peer-urls", &c.members[0].peer_url.clone()])
            .arg(from),
    );
    c.restart(0, None);
    let got = v3_keys(&bin, c.endpoint(0));
    let mut want: Vec<String> = plain_keys().into_keys().collect();
    want.extend(["/ttl-key".to_owned(), "/ttl-dir/child".to_owned()]);
    want.sort();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want, "the v3 keys");
    for (k, v) in plain_keys() {
        assert_eq!(got[&k].0, v, "value of {k}");
        assert_eq!(got[&k].1, 0, "{k} has no TTL, so no lease");
    }
    assert_eq!(got["/ttl-key"].0, b"soon");
    assert_eq!(got["/ttl-dir/child"].0, b"c");
    for (k, ttl) in [("/ttl-key", 3600), ("/ttl-dir/child", 1800)] {
        let lease = got[k].1;
        assert_ne!(lease, 0, "{k} keeps its TTL on a lease");
        let left = lease_ttl(&bin, c.endpoint(0), lease);
        assert!(
            left > 0 && left <= ttl,
            "{k}: lease TTL {left}s, v2 TTL {ttl}s"
        );
    }
}

fn v2_cluster() -> Cluster {
    let c = Cluster::start(1);
    fill_v2(&c);
    c
}

/// `etcdctl backup` of member 0, as the original package's unit ran it.
fn seed_backup(c: &Cluster) -> std::path::PathBuf {
    let dir = c.path().join("etcdctl-backup");
    c.etcdctl_backup(0, &dir);
    dir
}

fn convert(c: &Cluster) -> Command {
    let mut cmd = tool("etcd2-convert");
    cmd.env("ETCD_BACKUP_DIR", c.path().join("convert-work"))
        .args(["--wait", "60s"]);
    cmd
}

#[test]
fn a_backup_written_as_the_seed_wrote_it_converts_and_restores_on_etcd_3_7() {
    let c = v2_cluster();
    let dir = seed_backup(&c);
    let out_file = c.path().join("converted.tar.zst");
    let out = run_ok(convert(&c).arg(&dir).arg("-o").arg(&out_file));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("etcd2-convert: converted:"))
        .unwrap_or_else(|| panic!("no summary line: {err}"));
    let keys = plain_keys().len() + 2;
    assert!(line.contains(&format!("{keys} v2 keys")), "{line}");
    assert!(line.contains("2 on 2 leases"), "{line}");
    assert!(line.contains("1 empty v2 directories"), "{line}");
    assert!(line.contains("hidden keys"), "{line}");
    assert!(
        !harness::names(&c.path().join("convert-work"))
            .iter()
            .any(|n| n.starts_with("etcd2-convert.")),
        "the scratch is gone"
    );
    // An ordinary v3 archive, which says where it came from.
    let m = etcd2_backup::archive::read_verified(std::fs::File::open(&out_file).unwrap(), None)
        .unwrap();
    assert_eq!(m.api, etcd2_backup::archive::Api::V3);
    assert_eq!(m.key_count, Some(keys as u64));
    let from = m.converted_from.expect("converted_from");
    assert_eq!(from.tool, "etcdctl backup");
    assert_eq!(
        (from.keys, from.empty_dirs, from.leases),
        (keys as u64, 1, 2)
    );
    assert_restores_on_3_7(&out_file);
}

#[test]
fn our_v2_backup_converts_into_a_pipe_to_push_and_restores_on_etcd_3_7() {
    let c = v2_cluster();
    let archive = c.path().join("v2.tar.zst");
    c.snapshot_to(0, "v2", &archive);
    let (env, remote) = (Env::new(c.path()), Remote::local(c.path()));
    let mut conv = convert(&c);
    conv.arg(&archive).args(["-o", "-"]);
    let mut push = env.push(&remote, MID);
    push.arg("-");
    pipe_ok(conv, push);
    let fetched = c.path().join("fetched");
    run_ok(env.fetch(&remote, MID).arg("--into").arg(&fetched));
    let m = etcd2_backup::archive::verify_dir(&fetched).unwrap();
    assert_eq!(m.api, etcd2_backup::archive::Api::V3);
    let from = m.converted_from.expect("converted_from");
    assert!(from.tool.starts_with("etcd2-snapshot"), "{}", from.tool);
    assert_eq!(from.etcd_version, "3.4.23");
    assert_restores_on_3_7(&fetched);
}

#[test]
fn with_only_etcd_3_7_convert_refuses_before_any_work_and_writes_nothing() {
    let c = v2_cluster();
    let dir = seed_backup(&c);
    let out_file = c.path().join("converted.tar.zst");
    let bin = bin_of("3.7.3");
    let out = run(convert(&c)
        .arg("--etcd")
        .arg(bin.join("etcd"))
        .arg(&dir)
        .arg("-o")
        .arg(&out_file));
    let line = assert_fails_with(&out, "etcd2-convert", "etcd 3.7.3");
    assert!(
        line.contains("has no v2 store") && line.contains("--etcd"),
        "{line}"
    );
    assert!(!out_file.exists(), "nothing written");
    assert!(!c.path().join("convert-work").exists(), "no scratch made");
}

#[test]
fn convert_refuses_a_v3_backup_and_a_directory_that_is_no_backup() {
    let c = Cluster::start(1);
    c.put_v3(0, "/k", "v");
    let v3 = c.path().join("v3.tar.zst");
    c.snapshot_to(0, "v3", &v3);
    let out_file = c.path().join("out.tar.zst");
    let out = run(convert(&c).arg(&v3).arg("-o").arg(&out_file));
    assert_fails_with(&out, "etcd2-convert", "nothing to convert");
    assert!(!out_file.exists(), "nothing written");
    let empty = c.path().join("not-a-backup");
    std::fs::create_dir(&empty).unwrap();
    let out = run(convert(&c).arg(&empty).arg("-o").arg(&out_file));
    assert_fails_with(&out, "etcd2-convert", "no member/wal");
    assert!(!out_file.exists(), "nothing written");
}

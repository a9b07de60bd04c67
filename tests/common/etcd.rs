//! Real etcd members on free loopback ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd2_backup::etcd::Version;

use super::{free_port, require, run, wait_for};

/// Client TLS files generated for one test (CA, server and client certs).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// Generate a throw-away CA plus server and client certs with openssl.
    pub fn generate(dir: &Path) -> TlsFiles {
        require("openssl", "openssl");
        std::fs::create_dir_all(dir).expect("tls dir");
        let sh = |script: &str| {
            let out = Command::new("sh")
                .arg("-ec")
                .arg(script)
                .current_dir(dir)
                .output()
                .expect("running openssl");
            assert!(
                out.status.success(),
                "openssl failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
              -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > server.ext
            printf 'extendedKeyUsage=clientAuth\n' > client.ext
            for n in server client; do
              openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -keyout $n.key -out $n.csr -subj /CN=$n 2>/dev/null
              openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                -out $n.pem -days 2 -extfile $n.ext 2>/dev/null
            done");
        TlsFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

/// One etcd process we started.
pub struct Member {
    pub name: String,
    pub data_dir: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    pub client_url: String,
    pub peer_url: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Member {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL the process we started (by its PID) and reap it: the node
    /// died.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM the process we started, wait (bounded), SIGKILL if needed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How to launch one member.
pub struct MemberSpec<'a> {
    pub name: &'a str,
    pub data_dir: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    pub initial_cluster: String,
    pub state: &'a str,
    pub token: &'a str,
    pub tls: Option<&'a TlsFiles>,
    pub extra: Vec<String>,
    /// The etcd build to run (a directory holding etcd and etcdctl), or the
    /// one on PATH (Debian's 3.4).
    pub bin: Option<&'a Path>,
}

/// One etcd build of the version matrix, as scripts/versions pins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub version: String,
    /// `system`, `deb` or `go` (scripts/versions says what each means).
    pub source: String,
}

/// The etcd rows of scripts/versions, the one place the versions are pinned
/// (scripts/ensure-deps installs them; tests/build.rs generates the matrix
/// from them).
pub fn builds() -> Vec<Build> {
    let path = super::workspace().join("scripts/versions");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_versions(&text)
}

/// The etcd rows of a scripts/versions text.
pub fn parse_versions(text: &str) -> Vec<Build> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 3 && w[0] == "etcd").then(|| Build {
                version: w[1].to_owned(),
                source: w[2].to_owned(),
            })
        })
        .collect()
}

/// The suite's default etcd: the `system` row (Debian 12's, on PATH).
pub fn default_version() -> String {
    builds()
        .into_iter()
        .find(|b| b.source == "system")
        .expect("scripts/versions has a system etcd row")
        .version
}

/// The directory holding etcd, etcdctl (and etcdutl, 3.5+) of `version`, a
/// row of scripts/versions; checked to be that version. A build that is not
/// there fails the test, naming what installs it (never a skip).
pub fn bin_of(version: &str) -> PathBuf {
    let b = builds()
        .into_iter()
        .find(|b| b.version == version)
        .unwrap_or_else(|| panic!("etcd {version} is not a row of scripts/versions"));
    let dir = if b.source == "system" {
        PathBuf::from(require("etcd", "etcd-server").parent().expect("etcd's dir"))
    } else {
        super::workspace().join(format!("build/etcd-{version}/usr/bin"))
    };
    let reported = dir
        .join("etcd")
        .is_file()
        .then(|| version_of(&dir))
        .flatten();
    assert_eq!(
        reported.map(|v| v.to_string()).as_deref(),
        Some(version),
        "etcd {version} ({} build) not found at {}: run scripts/ensure-deps (make test does), \
         which installs every etcd of scripts/versions",
        b.source,
        dir.display()
    );
    dir
}

/// The version `dir/etcd --version` reports, asked once per directory.
pub fn version_of(dir: &Path) -> Option<Version> {
    static SEEN: std::sync::Mutex<Vec<(PathBuf, Option<Version>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, v)) = seen.iter().find(|(d, _)| d == dir) {
        return *v;
    }
    let v = Command::new(dir.join("etcd"))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| Version::find(&String::from_utf8_lossy(&o.stdout)));
    seen.push((dir.to_path_buf(), v));
    v
}

/// The version of the etcd build in `bin`, or of the one on PATH.
fn version_at(bin: Option<&Path>) -> Option<Version> {
    match bin {
        Some(d) => version_of(d),
        None => version_of(require("etcd", "etcd-server").parent()?),
    }
}

/// PATH with `dir` first: how an operator points our tools at an etcd build.
pub fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).expect("PATH")
}

pub fn scheme(tls: Option<&TlsFiles>) -> &'static str {
    if tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// Start etcd (not waiting for health).
pub fn spawn(spec: MemberSpec<'_>, log_dir: &Path) -> Member {
    require("etcd", "etcd-server");
    let client_url = format!("{}://127.0.0.1:{}", scheme(spec.tls), spec.client_port);
    let peer_url = format!("http://127.0.0.1:{}", spec.peer_port);
    let log = log_dir.join(format!("{}.log", spec.name));
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("member log");
    let mut cmd = Command::new(spec.bin.map_or(PathBuf::from("etcd"), |d| d.join("etcd")));
    cmd.args(["--name", spec.name])
        .arg("--data-dir")
        .arg(&spec.data_dir)
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &spec.initial_cluster])
        .args([
            "--initial-cluster-state",
            spec.state,
            "--initial-cluster-token",
            spec.token,
        ])
        .arg("--log-outputs=stderr")
        .args(&spec.extra)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().expect("log clone"))
        .stderr(logf);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD") {
            cmd.env_remove(k);
        }
    }
    if let Some(t) = spec.tls {
        cmd.arg("--cert-file").arg(&t.server_cert);
        cmd.arg("--key-file").arg(&t.server_key);
        cmd.arg("--trusted-ca-file").arg(&t.ca);
        cmd.arg("--client-cert-auth");
    }
    // The v2 API for the tests that write v2 keys, where etcd still has it
    // (3.6 removed the flag: it would print its usage and exit).
    let has_v2 = version_at(spec.bin).is_none_or(|v| v.has_v2());
    if has_v2 && !spec.extra.iter().any(|a| a.starts_with("--enable-v2")) {
        cmd.arg("--enable-v2=true");
    }
    let child = cmd.spawn().expect("spawning etcd");
    Member {
        name: spec.name.to_owned(),
        data_dir: spec.data_dir,
        client_port: spec.client_port,
        peer_port: spec.peer_port,
        client_url,
        peer_url,
        log,
        child: Some(child),
    }
}

/// Member `r1` started alone from restored data (Debian's etcd), a
/// cluster of its own on `peer_port` (the one the restore was told) and a
/// free client port, waited for until healthy; its log in `log_dir`.
pub fn start_alone(
    log_dir: &Path,
    data_dir: PathBuf,
    peer_port: u16,
    extra: Vec<String>,
) -> Member {
    start_alone_on(None, log_dir, data_dir, peer_port, extra, &[])
}

/// [`start_alone`] with the etcd build in `bin` (None: Debian's), waited
/// for with these extra etcdctl arguments (a `--user` where the restored
/// data has auth on).
pub fn start_alone_on(
    bin: Option<&Path>,
    log_dir: &Path,
    data_dir: PathBuf,
    peer_port: u16,
    extra: Vec<String>,
    ctl_args: &[String],
) -> Member {
    let m = spawn(
        MemberSpec {
            name: "r1",
            data_dir,
            client_port: super::free_port(),
            peer_port,
            initial_cluster: format!("r1=http://127.0.0.1:{peer_port}"),
            state: "new",
            token: "r",
            tls: None,
            extra,
            bin,
        },
        log_dir,
    );
    endpoint_wait_healthy(&m.client_url, ctl_args, &m.log);
    m
}

/// N real etcd members on loopback, in a temp dir, stopped on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    pub tls: Option<TlsFiles>,
    pub token: String,
    /// The etcd build (None: the one on PATH).
    pub bin: Option<PathBuf>,
    /// Extra etcd flags of every member, restarts included.
    pub extra: Vec<String>,
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, false, None, &[])
    }

    pub fn start_tls(n: usize) -> Cluster {
        Self::start_with(n, true, None, &[])
    }

    /// N members of the etcd build in `bin` (see [`bin_of`]).
    pub fn start_bin(n: usize, bin: &Path) -> Cluster {
        Self::start_with(n, false, Some(bin.to_path_buf()), &[])
    }

    /// N members of the etcd build in `bin` (None: the one on PATH), each
    /// started with these extra etcd flags.
    pub fn start_flags(n: usize, bin: Option<&Path>, extra: &[&str]) -> Cluster {
        Self::start_with(n, false, bin.map(Path::to_path_buf), extra)
    }

    fn start_with(n: usize, tls: bool, bin: Option<PathBuf>, extra: &[&str]) -> Cluster {
        require("etcdctl", "etcd-client");
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = tls.then(|| TlsFiles::generate(&dir.path().join("tls")));
        let token = format!("t{}", free_port());
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("e{}=http://127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let name = format!("e{}", i + 1);
            members.push(spawn(
                MemberSpec {
                    name: &name,
                    data_dir: dir.path().join(&name),
                    client_port: *c,
                    peer_port: *p,
                    initial_cluster: initial.clone(),
                    state: "new",
                    token: &token,
                    tls: tls.as_ref(),
                    extra: extra.iter().map(|s| s.to_string()).collect(),
                    bin: bin.as_deref(),
                },
                dir.path(),
            ));
        }
        let cluster = Cluster {
            dir,
            members,
            tls,
            token,
            bin,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            cluster.wait_healthy(i);
        }
        cluster
    }

    /// Start member `i` again on its own ports and data dir, the way its
    /// etcd2.service would: `initial` is (ETCD_INITIAL_CLUSTER,
    /// ETCD_INITIAL_CLUSTER_STATE) from a join drop-in, or None for a member
    /// whose data dir already holds its membership.
    pub fn restart(&mut self, i: usize, initial: Option<(String, String)>) {
        self.start_again(i, initial);
        self.wait_healthy(i);
    }

    /// [`Cluster::restart`] without waiting for health: a learner answers no
    /// linearizable read (`endpoint health`) until it is promoted.
    pub fn start_again(&mut self, i: usize, initial: Option<(String, String)>) {
        assert!(!self.members[i].running(), "member {i} still running");
        let (ic, state) = initial.unwrap_or_else(|| {
            (
                format!("{}={}", self.members[i].name, self.members[i].peer_url),
                "new".to_owned(),
            )
        });
        let name = self.members[i].name.clone();
        let m = spawn(
            MemberSpec {
                name: &name,
                data_dir: self.members[i].data_dir.clone(),
                client_port: self.members[i].client_port,
                peer_port: self.members[i].peer_port,
                initial_cluster: ic,
                state: &state,
                token: &self.token,
                tls: self.tls.as_ref(),
                extra: self.extra.clone(),
                bin: self.bin.as_deref(),
            },
            self.dir.path(),
        );
        self.members[i] = m;
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn endpoint(&self, i: usize) -> &str {
        &self.members[i].client_url
    }

    /// Flags that let etcdctl (and our tools) reach member `i`.
    pub fn tls_args_v3(&self) -> Vec<String> {
        match &self.tls {
            None => vec![],
            Some(t) => vec![
                format!("--cacert={}", t.ca.display()),
                format!("--cert={}", t.client_cert.display()),
                format!("--key={}", t.client_key.display()),
            ],
        }
    }

    fn tls_args_v2(&self) -> Vec<String> {
        match &self.tls {
            None => vec![],
            Some(t) => vec![
                format!("--ca-file={}", t.ca.display()),
                format!("--cert-file={}", t.client_cert.display()),
                format!("--key-file={}", t.client_key.display()),
            ],
        }
    }

    pub fn etcdctl(&self, i: usize, api: &str) -> Command {
        let mut c = Command::new(
            self.bin
                .as_ref()
                .map_or(PathBuf::from("etcdctl"), |d| d.join("etcdctl")),
        );
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCDCTL") {
                c.env_remove(k);
            }
        }
        // Only an etcdctl before 3.6 reads ETCDCTL_API (3.6+ warns of it).
        if version_at(self.bin.as_deref()).is_none_or(|v| v.has_v2()) {
            c.env("ETCDCTL_API", api);
        }
        c.arg(format!("--endpoints={}", self.endpoint(i)));
        c.args(if api == "2" {
            self.tls_args_v2()
        } else {
            self.tls_args_v3()
        });
        c
    }

    /// `etcd2-snapshot` of member `i`, arguments still to add: its
    /// endpoint, its data dir (for a v2 backup), scratch of its own in the
    /// cluster's dir.
    pub fn snapshot(&self, i: usize) -> Command {
        let mut c = super::tool("etcd2-snapshot");
        c.env("ETCDCTL_ENDPOINTS", self.endpoint(i))
            .env("ETCD_DATA_DIR", &self.members[i].data_dir)
            .env("ETCD_BACKUP_DIR", self.path().join(format!("snapwork{i}")));
        c
    }

    /// `etcd2-snapshot --api API -o OUT` of member `i` ([`Cluster::snapshot`]),
    /// required to succeed.
    pub fn snapshot_to(&self, i: usize, api: &str, out: &Path) {
        super::run_ok(self.snapshot(i).args(["--api", api, "-o"]).arg(out));
    }

    /// `etcdctl backup` of member `i`'s data dir into `dir`, as the original
    /// package's etcd2-backup.service took its backups.
    pub fn etcdctl_backup(&self, i: usize, dir: &Path) {
        super::run_ok(
            Command::new("etcdctl")
                .env("ETCDCTL_API", "2")
                .arg("backup")
                .arg("--data-dir")
                .arg(&self.members[i].data_dir)
                .arg("--backup-dir")
                .arg(dir),
        );
    }

    pub fn wait_healthy(&self, i: usize) {
        endpoint_wait_healthy(self.endpoint(i), &self.tls_args_v3(), &self.members[i].log);
    }

    pub fn put_v3(&self, i: usize, key: &str, val: &str) {
        let out = run(self.etcdctl(i, "3").args(["put", key, val]));
        assert!(out.status.success(), "put {key} failed");
    }

    pub fn get_v3(&self, i: usize, key: &str) -> Option<String> {
        get_v3_at(self.endpoint(i), &self.tls_args_v3(), key)
    }

    pub fn put_v2(&self, i: usize, key: &str, val: &str) {
        let out = run(self.etcdctl(i, "2").args(["set", key, val]));
        assert!(out.status.success(), "v2 set {key} failed");
    }

    pub fn get_v2(&self, i: usize, key: &str) -> Option<String> {
        get_v2_at(self.endpoint(i), key)
    }
}

pub fn endpoint_wait_healthy(endpoint: &str, tls_args: &[String], log: &Path) {
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            &format!("etcd at {endpoint} to be healthy"),
            Duration::from_secs(30),
            || {
                let out = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={endpoint}"))
                    .args(tls_args)
                    .args([
                        "--dial-timeout=1s",
                        "--command-timeout=2s",
                        "endpoint",
                        "health",
                    ])
                    .output()
                    .ok()?;
                out.status.success().then_some(())
            },
        )
    }));
    if let Err(e) = ok {
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = tail.lines().collect();
        eprintln!(
            "last lines of {}:\n{}",
            log.display(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        );
        std::panic::resume_unwind(e);
    }
}

pub fn get_v3_at(endpoint: &str, tls_args: &[String], key: &str) -> Option<String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(tls_args)
        .args(["get", "--print-value-only", key])
        .output()
        .expect("etcdctl get");
    assert!(
        out.status.success(),
        "get {key}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout)
        .trim_end_matches('\n')
        .to_owned();
    (!s.is_empty()).then_some(s)
}

pub fn get_v2_at(endpoint: &str, key: &str) -> Option<String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "2")
        .arg(format!("--endpoints={endpoint}"))
        .args(["get", key])
        .output()
        .expect("etcdctl get");
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_owned()
    })
}

/// ETCD_INITIAL_CLUSTER and ETCD_INITIAL_CLUSTER_STATE from a drop-in
/// written by etcd2-member-add (and its ETCD_NAME, checked).
pub fn parse_dropin(text: &str, expect_name: &str) -> (String, String) {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("Environment=\"{k}=")))
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{k} missing from drop-in:\n{text}"))
            .to_owned()
    };
    assert!(text.contains("[Service]"), "{text}");
    assert_eq!(get("ETCD_NAME"), expect_name);
    (
        get("ETCD_INITIAL_CLUSTER"),
        get("ETCD_INITIAL_CLUSTER_STATE"),
    )
}

//! Real rclone remotes with a test-owned rclone.conf: a local remote, rclone
//! crypt over local, `rclone serve sftp` and `rclone serve webdav` on
//! 127.0.0.1 (stoppable mid-test, restartable), and S3 (moto on loopback).
//! [`Backend`] names them and says what differs between them; [`Pointer`]
//! is a machine's LATEST.json as a test reads it.
//!
//! Which rclone: Debian 12's 1.60 from PATH, or the one `ETCD2_TEST_RCLONE`
//! names (a path, or `1.75` for the sid build scripts/ensure-deps unpacks),
//! for a whole run; one test picks its own with [`Remote::using`].

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, require, wait_for};

/// The backends operators use, and what a test must know of each: adding
/// one is one arm in each method here (and its [`Remote`] constructor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Local,
    Sftp,
    Webdav,
    Crypt,
    S3,
}

/// How etcd2-push checks an upload on a backend, as its stderr says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Size and the backend's own hash; `None` where which hash depends on
    /// the pair of rclones (client and server).
    Hash(Option<&'static str>),
    /// The backend reports no hash: the copy downloaded, its sha256 compared.
    Download,
}

impl Verification {
    /// What push's stderr says of a copy checked this way.
    pub fn says(self) -> String {
        match self {
            Verification::Hash(Some(h)) => format!("size and {h}"),
            Verification::Hash(None) => "size and".into(),
            Verification::Download => "downloaded and sha256 compared".into(),
        }
    }
}

impl Backend {
    /// Every backend, in the order the cycle tests run them.
    pub const ALL: [Backend; 5] = [
        Backend::Local,
        Backend::Sftp,
        Backend::Webdav,
        Backend::Crypt,
        Backend::S3,
    ];

    /// Its name in test messages (rclone's backend type).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Sftp => "sftp",
            Backend::Webdav => "webdav",
            Backend::Crypt => "crypt",
            Backend::S3 => "s3",
        }
    }

    /// A remote of this backend under `base`, its server (if any) started.
    pub fn start(self, base: &Path) -> Remote {
        match self {
            Backend::Local => Remote::local(base),
            Backend::Sftp => Remote::sftp(base),
            Backend::Webdav => Remote::webdav(base),
            Backend::Crypt => Remote::crypt(base),
            Backend::S3 => Remote::s3(base),
        }
    }

    /// What push verifies an upload by here: local has sha256; the sftp
    /// server computes one (sha1 with rclone 1.60); WebDAV (`vendor =
    /// other`), crypt and moto's S3 give none push trusts.
    pub fn verification(self) -> Verification {
        match self {
            Backend::Local => Verification::Hash(Some("sha256")),
            Backend::Sftp => Verification::Hash(None),
            Backend::Webdav | Backend::Crypt | Backend::S3 => Verification::Download,
        }
    }

    /// Whether the backend authenticates what it stores (crypt): bytes
    /// changed at rest fail inside rclone, before they reach our sha256.
    pub fn authenticates(self) -> bool {
        self == Backend::Crypt
    }

    /// The rclone flags that make an upload above 5 MiB a multipart one,
    /// on a backend that has them (S3: 5 MiB chunks, two at a time).
    pub fn multipart_flags(self) -> Option<&'static str> {
        (self == Backend::S3).then_some("--s3-chunk-size=5M --s3-upload-concurrency=2")
    }

    /// Where the bytes of the remote file `rel` rest on local disk, if a
    /// backend keeps them in a file (crypt: its ciphertext, `.bin` added).
    fn file_at_rest(self, remote: &Remote, rel: &str) -> Option<PathBuf> {
        match self {
            Backend::Local | Backend::Sftp | Backend::Webdav => Some(remote.root.join(rel)),
            Backend::Crypt => Some(remote.root.join(format!("{rel}.bin"))),
            // Objects are not files here.
            Backend::S3 => None,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One machine's LATEST.json, read through rclone: the fields tests look
/// at, and the whole document (to look at others, or to rewrite it).
#[derive(Clone, Debug)]
pub struct Pointer {
    pub generation: String,
    pub archive: String,
    pub size: u64,
    pub json: serde_json::Value,
}

pub struct Remote {
    /// Which backend this is.
    pub backend: Backend,
    /// The rclone binary the tools and the test-side inspection run.
    pub bin: PathBuf,
    /// rclone.conf owned by this test.
    pub config: PathBuf,
    /// What RCLONE_ENDPOINT is set to.
    pub endpoint: String,
    /// The local directory that holds what the endpoint stores.
    pub root: PathBuf,
    server: Option<Child>,
    /// Program and arguments of the server behind the remote, if any.
    serve_cmd: Vec<String>,
    /// The server's loopback address, waited for on (re)start.
    addr: String,
    /// Environment variables rclone must not see (AWS_CA_BUNDLE breaks the
    /// s3 backend on this machine, TESTING.md).
    env_remove: Vec<&'static str>,
}

/// Flags that keep rclone's own retries short in tests, so a dead server
/// fails a command within seconds rather than minutes.
pub const QUICK_FAIL: &str = "--retries=1 --low-level-retries=1 --contimeout=2s --timeout=5s";

/// Debian sid's rclone 1.75.2, unpacked by scripts/ensure-deps into
/// build/rclone-1.75.2. Fails loudly when it is not there.
pub fn rclone_175() -> PathBuf {
    let p = super::workspace().join("build/rclone-1.75.2/usr/bin/rclone");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/ensure-deps (make test does), which unpacks Debian sid's \
         rclone 1.75.2 there",
        p.display()
    );
    p
}

/// The rclone of this run: `ETCD2_TEST_RCLONE` (a path, or `1.75`), else
/// rclone from PATH (Debian's 1.60). Fails loudly when missing.
pub fn program() -> PathBuf {
    match std::env::var_os("ETCD2_TEST_RCLONE") {
        Some(v) if v == "1.75" => rclone_175(),
        Some(v) if !v.is_empty() => {
            let p = PathBuf::from(v);
            assert!(
                p.is_file(),
                "ETCD2_TEST_RCLONE={} is not a file",
                p.display()
            );
            p
        }
        _ => require("rclone", "rclone"),
    }
}

/// Each rclone the tools support, tagged: Debian 12's 1.60 (from PATH)
/// and Debian sid's 1.75 ([`rclone_175`]).
pub fn each_version() -> [(&'static str, PathBuf); 2] {
    [
        ("1.60", require("rclone", "rclone")),
        ("1.75", rclone_175()),
    ]
}

/// `rclone version`'s first line of `bin` (e.g. `rclone v1.60.1-DEV`).
pub fn version(bin: &Path) -> String {
    let out = Command::new(bin)
        .arg("version")
        .output()
        .unwrap_or_else(|e| panic!("running {} version: {e}", bin.display()));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

impl Remote {
    /// A `local` backend remote under `base`.
    pub fn local(base: &Path) -> Remote {
        let bin = program();
        let root = base.join("remote-local");
        std::fs::create_dir_all(&root).expect("remote dir");
        let config = base.join("rclone-local.conf");
        std::fs::write(&config, "[backup]\ntype = local\n").expect("rclone.conf");
        Remote {
            backend: Backend::Local,
            bin,
            config,
            endpoint: format!("backup:{}/etcd", root.display()),
            root: root.join("etcd"),
            server: None,
            serve_cmd: vec![],
            addr: String::new(),
            env_remove: vec![],
        }
    }

    /// rclone `crypt` over a local directory: contents encrypted with
    /// authentication, no hashes reported. Names are left readable (with
    /// `.bin` appended) so a test can find one file's ciphertext under
    /// `root`.
    pub fn crypt(base: &Path) -> Remote {
        let bin = program();
        let root = base.join("remote-crypt");
        std::fs::create_dir_all(&root).expect("remote dir");
        let obscure = |p: &str| {
            let out = Command::new(&bin)
                .args(["obscure", p])
                .output()
                .expect("rclone obscure");
            assert!(out.status.success(), "rclone obscure");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let config = base.join("rclone-crypt.conf");
        std::fs::write(
            &config,
            format!(
                "[under]\ntype = local\n\n[backup]\ntype = crypt\nremote = under:{}\n\
                 filename_encryption = off\ndirectory_name_encryption = false\n\
                 password = {}\npassword2 = {}\n",
                root.display(),
                obscure("CRYPTPASSCANARY"),
                obscure("CRYPTSALTCANARY")
            ),
        )
        .expect("rclone.conf");
        Remote {
            backend: Backend::Crypt,
            bin,
            config,
            endpoint: "backup:etcd".into(),
            root: root.join("etcd"),
            server: None,
            serve_cmd: vec![],
            addr: String::new(),
            env_remove: vec![],
        }
    }

    /// `rclone serve sftp` on a free loopback port, with a password and an
    /// openssl-generated host key (so nothing is written under ~/.cache).
    pub fn sftp(base: &Path) -> Remote {
        require("openssl", "openssl");
        let key = base.join("sftp-host-key.pem");
        let st = Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&key)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl genpkey failed");
        let config = base.join("rclone-sftp.conf");
        Remote::served(
            base,
            Backend::Sftp,
            |port, pass| {
                format!("[backup]\ntype = sftp\nhost = 127.0.0.1\nport = {port}\nuser = etcd\npass = {pass}\n")
            },
            &[
                "--key".into(),
                key.display().to_string(),
                "--config".into(),
                config.display().to_string(),
            ],
        )
    }

    /// `rclone serve webdav` on a free loopback port, reached through an
    /// rclone `webdav` remote with `vendor = other`: no hashes, and `moveto`
    /// over a file of the same size is skipped unless forced (TESTING.md).
    pub fn webdav(base: &Path) -> Remote {
        Remote::served(
            base,
            Backend::Webdav,
            |port, pass| {
                format!(
                    "[backup]\ntype = webdav\nurl = http://127.0.0.1:{port}\nvendor = other\nuser = etcd\npass = {pass}\n"
                )
            },
            &["--config".into(), "/dev/null".into()],
        )
    }

    /// `rclone serve KIND` (the backend's name) of a local directory on a
    /// free loopback port, user `etcd` with a password, started; `conf`
    /// writes the client's remote from the port and the obscured password,
    /// `extra` are the server's own flags.
    fn served(
        base: &Path,
        backend: Backend,
        conf: impl FnOnce(u16, &str) -> String,
        extra: &[String],
    ) -> Remote {
        let bin = program();
        let kind = backend.name();
        let served = base.join(format!("remote-{kind}"));
        std::fs::create_dir_all(&served).expect("served dir");
        let port = free_port();
        let pass = "test-password";
        let config = base.join(format!("rclone-{kind}.conf"));
        std::fs::write(&config, conf(port, &obscure(&bin, pass))).expect("rclone.conf");
        let addr = format!("127.0.0.1:{port}");
        let mut serve_cmd = [
            &bin.display().to_string(),
            "serve",
            kind,
            &served.display().to_string(),
            "--addr",
            &addr,
            "--user",
            "etcd",
            "--pass",
            pass,
        ]
        .map(String::from)
        .to_vec();
        serve_cmd.extend_from_slice(extra);
        let mut r = Remote {
            backend,
            bin,
            config,
            endpoint: "backup:etcd".into(),
            root: served.join("etcd"),
            server: None,
            serve_cmd,
            addr,
            env_remove: vec![],
        };
        r.start_server();
        r
    }

    /// A real S3 API on loopback: `moto_server` (PyPI moto[server]), with a
    /// bucket made through rclone. Objects are not files here: `root` is
    /// unused and inspection goes through rclone.
    pub fn s3(base: &Path) -> Remote {
        let bin = program();
        let moto = super::require_pypi("moto_server", "moto[server]");
        let port = free_port();
        let config = base.join("rclone-s3.conf");
        std::fs::write(
            &config,
            format!(
                "[backup]\ntype = s3\nprovider = Other\nendpoint = http://127.0.0.1:{port}\n\
                 access_key_id = AKIDTESTCANARY\nsecret_access_key = S3SECRETCANARY\nforce_path_style = true\n"
            ),
        )
        .expect("rclone.conf");
        let serve_cmd = [
            &moto.display().to_string(),
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]
        .map(String::from)
        .to_vec();
        let mut r = Remote {
            backend: Backend::S3,
            bin,
            config,
            endpoint: "backup:etcd-backups/etcd".into(),
            root: base.join("s3-has-no-local-root"),
            server: None,
            serve_cmd,
            addr: format!("127.0.0.1:{port}"),
            env_remove: vec!["AWS_CA_BUNDLE"],
        };
        r.start_server();
        // A versioned bucket (as docs/security.md recommends). Also moto's
        // quirk: in an unversioned bucket it answers a completed multipart
        // upload with version id "null", and then refuses rclone's HEAD of
        // `?versionId=null` (400), so a streamed upload (size unknown,
        // always multipart) fails there; real S3 sends no version id.
        r.boto3(
            "s.create_bucket(Bucket='etcd-backups')\n\
             s.put_bucket_versioning(Bucket='etcd-backups',\n\
                 VersioningConfiguration={'Status': 'Enabled'})\n",
        );
        r
    }

    /// Python with boto3 against this S3 remote's moto (`s` is the client).
    fn boto3(&self, body: &str) -> String {
        let python = super::require_pypi("python3", "moto[server]");
        let script = format!(
            "import boto3, json\n\
             s = boto3.client('s3', endpoint_url='http://{}', region_name='us-east-1',\n\
                 aws_access_key_id='AKIDTESTCANARY', aws_secret_access_key='S3SECRETCANARY')\n{body}",
            self.addr
        );
        let out = Command::new(&python)
            .args(["-c", &script])
            .env_remove("AWS_CA_BUNDLE")
            .output()
            .expect("running the venv's python for boto3");
        assert!(
            out.status.success(),
            "boto3 against moto: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The keys of the S3 bucket's unfinished multipart uploads, asked of
    /// the S3 API itself (not through rclone), sorted.
    pub fn multipart_uploads(&self) -> Vec<String> {
        let out = self.boto3(
            "r = s.list_multipart_uploads(Bucket='etcd-backups')\n\
             print(json.dumps([u['Key'] for u in r.get('Uploads', [])]))\n",
        );
        let mut v: Vec<String> = serde_json::from_str(out.trim()).expect("uploads as JSON");
        v.sort();
        v
    }

    /// Start a multipart upload of `key` (with one part) that nobody
    /// finishes: another writer's, as S3 would hold it.
    pub fn start_multipart_upload(&self, key: &str) {
        self.boto3(&format!(
            "u = s.create_multipart_upload(Bucket='etcd-backups', Key={key:?})\n\
             s.upload_part(Bucket='etcd-backups', Key={key:?}, UploadId=u['UploadId'], PartNumber=1, Body=b'x' * 1024)\n"
        ));
    }

    /// Run this test's tools and inspection on rclone `bin` from now on
    /// (a server already serving the remote keeps running as it started).
    pub fn using(mut self, bin: PathBuf) -> Remote {
        self.bin = bin;
        self
    }

    /// Run rclone against this remote's config (test-side inspection).
    pub fn rclone(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(&self.bin);
        c.arg("--config").arg(&self.config).args(args);
        for k in &self.env_remove {
            c.env_remove(k);
        }
        c.output().expect("running rclone")
    }

    /// A remote file's bytes, read through rclone; None when missing.
    pub fn read(&self, rel: &str) -> Option<Vec<u8>> {
        let out = self.rclone(&["cat", &format!("{}/{rel}", self.endpoint)]);
        (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
    }

    /// Replace a remote file's bytes, through rclone.
    pub fn write(&self, rel: &str, bytes: &[u8]) {
        let mut c = Command::new(&self.bin);
        c.arg("--config")
            .arg(&self.config)
            .args(["rcat", &format!("{}/{rel}", self.endpoint)])
            .stdin(Stdio::piped());
        for k in &self.env_remove {
            c.env_remove(k);
        }
        let mut child = c.spawn().expect("rclone rcat");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(bytes)
            .expect("writing to rclone rcat");
        assert!(
            child.wait().expect("rclone rcat").success(),
            "rclone rcat {rel}"
        );
    }

    /// File names in a remote directory, through rclone (any backend).
    pub fn list(&self, rel: &str) -> Vec<String> {
        let out = self.rclone(&["lsf", "--files-only", &format!("{}/{rel}", self.endpoint)]);
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    /// Every file under `rel`, at any depth, as paths below it, sorted.
    pub fn list_all(&self, rel: &str) -> Vec<String> {
        let out = self.rclone(&[
            "lsf",
            "-R",
            "--files-only",
            &format!("{}/{rel}", self.endpoint),
        ]);
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "server already running");
        let child = Command::new(&self.serve_cmd[0])
            .args(&self.serve_cmd[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.serve_cmd[0]));
        self.server = Some(child);
        let addr = self.addr.clone();
        wait_for(
            &format!("{} on {addr}", self.serve_cmd.join(" ")),
            Duration::from_secs(30),
            || std::net::TcpStream::connect(&addr).ok().map(|_| ()),
        );
    }

    /// Stop the server we started, by its PID.
    pub fn stop_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Point a command at this remote the way the units do.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("RCLONE_ENDPOINT", &self.endpoint)
            .env("RCLONE_CONFIG_PATH", &self.config)
            .env("ETCD2_BACKUP_RCLONE", &self.bin);
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
    }

    /// Where one machine's backups live on disk.
    pub fn machine_dir(&self, machine_id: &str) -> PathBuf {
        self.root.join(machine_id)
    }

    pub fn generations(&self, machine_id: &str) -> Vec<String> {
        super::names(&self.machine_dir(machine_id).join("generations"))
    }

    /// Machine `mid`'s complete generations (archive and sidecar both
    /// there), oldest first, listed through rclone (any backend).
    pub fn complete(&self, mid: &str) -> Vec<String> {
        let files = self.list(&format!("{mid}/generations"));
        let mut ids: Vec<String> = files
            .iter()
            .filter_map(|f| f.strip_suffix(".json").map(str::to_owned))
            .filter(|id| {
                files
                    .iter()
                    .any(|f| f.starts_with(id.as_str()) && f.contains(".tar."))
            })
            .collect();
        ids.sort();
        ids
    }

    /// Machine `mid`'s LATEST.json, read through rclone (any backend);
    /// None when there is none. Panics on one that is not a pointer.
    pub fn pointer(&self, mid: &str) -> Option<Pointer> {
        let bytes = self.read(&format!("{mid}/LATEST.json"))?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("LATEST.json is JSON");
        let field = |k: &str| {
            json[k]
                .as_str()
                .unwrap_or_else(|| panic!("LATEST.json has no {k}: {json}"))
                .to_owned()
        };
        Some(Pointer {
            generation: field("generation"),
            archive: field("archive"),
            size: json["size"]
                .as_u64()
                .unwrap_or_else(|| panic!("LATEST.json has no size: {json}")),
            json,
        })
    }

    /// The generation machine `mid`'s LATEST.json names, if it has one.
    pub fn latest(&self, mid: &str) -> Option<String> {
        self.pointer(mid).map(|p| p.generation)
    }

    /// Replace machine `mid`'s LATEST.json with `json`, through rclone.
    pub fn set_pointer(&self, mid: &str, json: &serde_json::Value) {
        self.write(
            &format!("{mid}/LATEST.json"),
            &serde_json::to_vec_pretty(json).expect("a pointer as JSON"),
        );
    }

    /// Corrupt the stored copy of the remote file `rel` at rest, keeping
    /// its size: one byte in the middle flipped, in the file the backend
    /// keeps, or rewritten through the server where objects are no files.
    pub fn corrupt(&self, rel: &str) {
        match self.backend.file_at_rest(self, rel) {
            Some(path) => flip_file(&path),
            None => {
                let mut bytes = self
                    .read(rel)
                    .unwrap_or_else(|| panic!("{rel} is not stored"));
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0xff;
                self.write(rel, &bytes);
            }
        }
    }
}

/// Flip one byte in the middle of a file: same size, other content.
fn flip_file(path: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let len = f.metadata().expect("metadata").len();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(len / 2)).expect("seek");
    f.read_exact(&mut b).expect("read");
    f.seek(SeekFrom::Start(len / 2)).expect("seek");
    f.write_all(&[b[0] ^ 0xff]).expect("write");
}

fn obscure(bin: &Path, pass: &str) -> String {
    let out = Command::new(bin)
        .args(["obscure", pass])
        .output()
        .expect("rclone obscure");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.stop_server();
    }
}

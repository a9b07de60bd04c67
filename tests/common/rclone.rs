//! Real rclone remotes with a test-owned rclone.conf: a local remote, and
//! `rclone serve sftp` on 127.0.0.1 (stoppable mid-test, restartable).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, require, wait_for};

pub struct Remote {
    /// rclone.conf owned by this test.
    pub config: PathBuf,
    /// What RCLONE_ENDPOINT is set to.
    pub endpoint: String,
    /// The local directory that holds what the endpoint stores.
    pub root: PathBuf,
    server: Option<Child>,
    serve_args: Vec<String>,
}

/// Flags that keep rclone's own retries short in tests, so a dead server
/// fails a command within seconds rather than minutes.
pub const QUICK_FAIL: &str = "--retries=1 --low-level-retries=1 --contimeout=2s --timeout=5s";

impl Remote {
    /// A `local` backend remote under `base`.
    pub fn local(base: &Path) -> Remote {
        require("rclone", "rclone");
        let root = base.join("remote-local");
        std::fs::create_dir_all(&root).expect("remote dir");
        let config = base.join("rclone-local.conf");
        std::fs::write(&config, "[backup]\ntype = local\n").expect("rclone.conf");
        Remote {
            config,
            endpoint: format!("backup:{}/etcd", root.display()),
            root: root.join("etcd"),
            server: None,
            serve_args: vec![],
        }
    }

    /// `rclone serve sftp` on a free loopback port, with a password and an
    /// openssl-generated host key (so nothing is written under ~/.cache).
    pub fn sftp(base: &Path) -> Remote {
        require("rclone", "rclone");
        require("openssl", "openssl");
        let served = base.join("remote-sftp");
        std::fs::create_dir_all(&served).expect("served dir");
        let key = base.join("sftp-host-key.pem");
        let st = Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&key)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl genpkey failed");
        let port = free_port();
        let pass = "test-password";
        let obscured = Command::new("rclone")
            .args(["obscure", pass])
            .output()
            .expect("rclone obscure");
        let config = base.join("rclone-sftp.conf");
        std::fs::write(
            &config,
            format!(
                "[backup]\ntype = sftp\nhost = 127.0.0.1\nport = {port}\nuser = etcd\npass = {}\n",
                String::from_utf8_lossy(&obscured.stdout).trim()
            ),
        )
        .expect("rclone.conf");
        let serve_args = vec![
            "serve".into(),
            "sftp".into(),
            served.display().to_string(),
            "--addr".into(),
            format!("127.0.0.1:{port}"),
            "--user".into(),
            "etcd".into(),
            "--pass".into(),
            pass.into(),
            "--key".into(),
            key.display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ];
        let mut r = Remote {
            config,
            endpoint: "backup:etcd".into(),
            root: served.join("etcd"),
            server: None,
            serve_args,
        };
        r.start_server();
        r
    }

    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "server already running");
        let child = Command::new("rclone")
            .args(&self.serve_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rclone serve sftp");
        self.server = Some(child);
        let addr = self.serve_args[4].clone();
        wait_for(
            &format!("rclone serve sftp on {addr}"),
            Duration::from_secs(15),
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
            .env("RCLONE_CONFIG_PATH", &self.config);
    }

    /// Where one machine's backups live on disk.
    pub fn machine_dir(&self, machine_id: &str) -> PathBuf {
        self.root.join(machine_id)
    }

    pub fn generations(&self, machine_id: &str) -> Vec<String> {
        super::names(&self.machine_dir(machine_id).join("generations"))
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.stop_server();
    }
}

//! The `etcd2-restore` job: turn a fetched backup into the data dir of a
//! healthy single-member cluster (the founding member). The live data dir
//! is replaced only once the restored one is complete and checked.

use std::io::BufReader;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::archive::{self, Api, Manifest};
use crate::cmd::Program;
use crate::datadir;
use crate::etcd::{hex_id, Etcdctl};

pub struct RestoreJob {
    /// A directory from `etcd2-fetch --into`, or an archive file.
    pub from: PathBuf,
    pub data_dir: PathBuf,
    pub name: String,
    /// This member's peer URL(s), as the cluster will know it.
    pub peer_urls: String,
    pub etcd: Program,
    /// etcdctl, for talking to the private temporary etcd.
    pub etcdctl: Etcdctl,
    pub wait: Duration,
    /// v3: raise the restored revision by this much (`--bump-revision`).
    pub bump_revision: Option<u64>,
    /// With `bump_revision`: `--mark-compacted`.
    pub mark_compacted: bool,
    pub keep_aside: usize,
    pub owner: String,
}

/// An etcd we started on private loopback ports; stopped by PID.
struct TempEtcd {
    child: Option<Child>,
    client_url: String,
    log: PathBuf,
    _running: crate::scratch::ChildGuard,
}

/// Two distinct free loopback ports (client, peer): both listeners are held
/// while the second is picked, so the kernel cannot hand out one twice.
fn two_free_ports() -> Result<(u16, u16)> {
    let bind =
        || std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port");
    let (a, b) = (bind()?, bind()?);
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    crate::cmd::format_tail(&text, "")
}

impl TempEtcd {
    fn start(
        etcd: &Program,
        name: &str,
        data_dir: &Path,
        extra: &[&str],
        log: PathBuf,
    ) -> Result<TempEtcd> {
        let (client_port, peer_port) = two_free_ports()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let logf =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = std::process::Command::new(etcd.path());
        cmd.args(["--name", name])
            .arg("--data-dir")
            .arg(data_dir)
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
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        // The node's own etcd settings (ETCD_*) must not leak into this
        // private instance: it listens only where we say.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        // It serves the restored keys on loopback: it must not outlive us,
        // whatever stops us.
        crate::scratch::dies_with_us(&mut cmd);
        tracing::debug!("starting temporary etcd on {client_url}: {cmd:?}");
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", etcd.path().display()))?;
        let running = crate::scratch::ChildGuard::new(child.id());
        crate::scratch::fault_point("restore-etcd-started");
        Ok(TempEtcd {
            child: Some(child),
            client_url,
            log,
            _running: running,
        })
    }

    fn wait_healthy(&mut self, ctl: &Etcdctl, limit: Duration) -> Result<()> {
        let started = Instant::now();
        let mut last_note = Instant::now();
        let mut ctl = ctl.at(&self.client_url);
        ctl.query_timeout = Duration::from_secs(5);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    self.child = None;
                    bail!(
                        "temporary etcd exited ({st}) before it became healthy{}",
                        log_tail(&self.log)
                    );
                }
            }
            if ctl.v3(&["endpoint", "health"]).run().is_ok() {
                tracing::info!(
                    "temporary etcd healthy after {:.1}s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!(
                    "temporary etcd on {} not healthy within {}{}",
                    self.client_url,
                    humantime::format_duration(limit),
                    log_tail(&self.log)
                );
            }
            if last_note.elapsed() > Duration::from_secs(5) {
                tracing::info!(
                    "waiting for temporary etcd to become healthy ({:.0}s)",
                    started.elapsed().as_secs_f64()
                );
                last_note = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, then wait (bounded); a member that needs SIGKILL fails the restore.
    fn stop(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM); // it may have exited
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if c.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = c.kill(); // last resort
                let _ = c.wait();
                bail!(
                    "temporary etcd did not stop within 30s of SIGTERM{}",
                    log_tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TempEtcd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // error path: never leave it running
            let _ = c.wait();
        }
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

impl RestoreJob {
    pub fn run(&self) -> Result<()> {
        let started = Instant::now();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.data_dir)
            .with_context(|| {
                format!(
                    "creating data dir {} (ETCD_DATA_DIR)",
                    self.data_dir.display()
                )
            })?;
        datadir::check_recognised(&self.data_dir)?;
        datadir::ensure_unused(&self.data_dir)?;
        let peer = self.peer_urls.trim();
        ensure!(
            !peer.is_empty()
                && peer
                    .split(',')
                    .all(|u| u.starts_with("http://") || u.starts_with("https://")),
            "--peer-urls {peer:?} is not a list of http(s) URLs (ETCD_INITIAL_ADVERTISE_PEER_URLS)"
        );

        // Staging inside the data dir: same filesystem, so the final step is
        // an atomic exchange. Removed on every error path.
        crate::scratch::sweep(&self.data_dir, datadir::RESTORE_STAGING)?;
        let staging = tempfile::Builder::new()
            .prefix(&crate::scratch::prefix(datadir::RESTORE_STAGING))
            .tempdir_in(&self.data_dir)
            .with_context(|| format!("creating a staging dir in {}", self.data_dir.display()))?;
        let _stop_removes = crate::scratch::Guard::new(staging.path());
        let (manifest, backup) = if self.from.is_dir() {
            (archive::verify_dir(&self.from)?, self.from.clone())
        } else {
            let f = std::fs::File::open(&self.from)
                .with_context(|| format!("opening {}", self.from.display()))?;
            let dest = staging.path().join("backup");
            let size = f.metadata().map(|m| m.len()).ok();
            let reader =
                crate::progress::ProgressReader::new(BufReader::new(f), "extracting", size);
            let m = archive::read_verified(reader, Some(&dest)).with_context(|| {
                format!(
                    "{} is not a whole etcd2-backup archive",
                    self.from.display()
                )
            })?;
            (m, dest)
        };
        self.check_can_run(&manifest)?;
        tracing::info!(
            "restoring {} backup of member {:?} (cluster {}) taken {} into {} as member {:?} with peer URLs {peer}",
            manifest.api,
            manifest.member_name,
            manifest.cluster_id,
            manifest.created_at,
            self.data_dir.display(),
            self.name
        );
        let new_dir = staging.path().join("data");
        match manifest.api {
            Api::V2 => self.restore_v2(&backup, &new_dir, staging.path())?,
            Api::V3 => self.restore_v3(&backup, &manifest, &new_dir, staging.path())?,
        }
        let aside = datadir::install_member(&self.data_dir, &new_dir.join("member"))?;
        if let Some(a) = &aside {
            tracing::info!("previous member data kept at {}", a.display());
        }
        datadir::prune_aside(&self.data_dir, self.keep_aside, aside.as_deref())?;
        drop(staging);
        datadir::fix_ownership(&self.data_dir, &self.owner)?;
        tracing::info!(
            "restored {} as a single-member cluster in {:.1}s: start etcd now, then add the other members one at a time",
            self.data_dir.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Refuse, before anything is built, what this host's etcd tools cannot
    /// do: a v2 backup where etcd is 3.6 (no v2 store), a revision bump where
    /// the snapshot tool lacks the flag or the backup is v2.
    fn check_can_run(&self, manifest: &Manifest) -> Result<()> {
        let etcd = crate::etcd::program_version(&self.etcd)?;
        tracing::info!(
            "etcd {etcd} at {} will run the restored member",
            self.etcd.path().display()
        );
        if manifest.api == Api::V2 && !etcd.has_v2() {
            bail!(
                "this backup is of the v2 keyspace (etcdctl backup, etcd {}), and etcd {etcd} at {} \
                 has no v2 store: it cannot restore it. Restore it with etcd 3.5 or older, then \
                 migrate its v2 data to v3 (and back it up with --api v3) before upgrading to 3.6",
                manifest.etcd_version,
                self.etcd.path().display()
            );
        }
        if self.bump_revision.is_some() {
            ensure!(
                manifest.api == Api::V3,
                "--bump-revision applies to v3 backups only; this one is of the v2 keyspace"
            );
            if !self.etcdctl.snapshot_restore_has("--bump-revision")? {
                bail!(
                    "--bump-revision needs etcdutl >= 3.5.10 or etcdctl >= 3.4.27; this host has {}, \
                     whose snapshot restore lacks it. Install a newer etcdutl (--etcdutl PATH) or \
                     restore without it",
                    self.etcdctl.describe_snapshot_tool()
                );
            }
        }
        Ok(())
    }

    fn restore_v2(&self, backup: &Path, new_dir: &Path, staging: &Path) -> Result<()> {
        ensure!(
            backup.join("member/wal").is_dir(),
            "the v2 backup has no member/wal"
        );
        copy_tree(&backup.join("member"), &new_dir.join("member"))?;
        // force-new-cluster keeps the old peer URL (or localhost): start it
        // privately, fix the peer URL, stop it cleanly.
        let mut etcd = TempEtcd::start(
            &self.etcd,
            &self.name,
            new_dir,
            // The v2 store is served only with the v2 API on.
            &["--force-new-cluster", "--enable-v2=true"],
            staging.join("etcd.log"),
        )?;
        etcd.wait_healthy(&self.etcdctl, self.wait)?;
        let ctl = self.etcdctl.at(&etcd.client_url);
        let list = ctl.member_list()?;
        ensure!(
            list.members.len() == 1,
            "expected one member after --force-new-cluster, found {}",
            list.members.len()
        );
        let me = &list.members[0];
        ctl.member_update(me.id, self.peer_urls.trim())?;
        let after = ctl.member_list()?;
        let want: Vec<&str> = self.peer_urls.trim().split(',').collect();
        ensure!(
            after.members[0]
                .peer_urls
                .iter()
                .map(String::as_str)
                .eq(want.iter().copied()),
            "member {} still advertises {:?} after member update",
            hex_id(me.id),
            after.members[0].peer_urls
        );
        tracing::info!(
            "member {} now advertises peer URLs {}",
            hex_id(me.id),
            self.peer_urls.trim()
        );
        etcd.stop()
    }

    fn restore_v3(
        &self,
        backup: &Path,
        manifest: &Manifest,
        new_dir: &Path,
        staging: &Path,
    ) -> Result<()> {
        let db = backup.join(archive::V3_SNAPSHOT_NAME);
        let token = format!(
            "etcd2-restore-{}",
            crate::repo::new_generation_id(std::time::SystemTime::now())
        );
        let ic = format!("{}={}", self.name, self.peer_urls.trim());
        let bump = self.bump_revision.map(|n| n.to_string());
        let mut args = vec![
            "--name",
            &self.name,
            "--initial-cluster",
            &ic,
            "--initial-cluster-token",
            &token,
            "--initial-advertise-peer-urls",
            self.peer_urls.trim(),
        ];
        if let Some(n) = &bump {
            args.extend(["--bump-revision", n.as_str()]);
            if self.mark_compacted {
                args.push("--mark-compacted");
            }
        }
        self.etcdctl.snapshot_restore(&db, new_dir, &args)?;
        // Check it: start it privately and compare its revision.
        let mut etcd = TempEtcd::start(
            &self.etcd,
            &self.name,
            new_dir,
            &[],
            staging.join("etcd.log"),
        )?;
        etcd.wait_healthy(&self.etcdctl, self.wait)?;
        let st = self.etcdctl.at(&etcd.client_url).endpoint_status()?;
        if let Some(rev) = manifest.revision {
            let rev = rev + self.bump_revision.unwrap_or(0);
            ensure!(
                st.status.header.revision >= rev,
                "restored member is at revision {}, the backup was at {rev}",
                st.status.header.revision
            );
        }
        tracing::info!(
            "restored member checked: revision {}, cluster {}",
            st.status.header.revision,
            hex_id(st.status.header.cluster_id)
        );
        etcd.stop()
    }
}

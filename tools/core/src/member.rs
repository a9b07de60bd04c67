//! A member built from a verified backup in a directory: the v3 snapshot
//! restored (etcdutl or etcdctl) or the v2 WAL forced into a new cluster,
//! then started once on private loopback ports to check it, and stopped.
//! etcd2-restore builds the founder's new member with it; etcd2-verify
//! builds a throwaway one. Change segments fetched with a v3 backup are
//! replayed first (docs/change-capture.md).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::archive::{self, Api, Manifest};
use crate::cmd::{Logged, Program};
use crate::etcd::{hex_id, Etcdctl};

/// How to build the member.
pub struct Spec<'a> {
    pub etcd: &'a Program,
    /// etcdctl (and etcdutl) for the offline restore and the private etcd.
    pub etcdctl: &'a Etcdctl,
    pub name: &'a str,
    pub peer_urls: &'a str,
    /// Bound on the private etcd becoming healthy.
    pub wait: Duration,
    pub bump_revision: Option<u64>,
    pub mark_compacted: bool,
    /// Where the replay of the changes stops, lowering any stop the fetch
    /// recorded (docs/point-in-time.md); None: where the fetch said, else
    /// the newest fetched.
    pub stop: Option<Stop>,
    /// v3: take the checked member's KV hash at its revision (recorded by a
    /// whole-cluster restore, for every member to compare).
    pub kv_hash: bool,
}

/// A restore's own point (`etcd2-restore --to-revision/--to-time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Revision(u64),
    /// Unix milliseconds: the newest revision every change up to which
    /// was received by then.
    Time(u64),
}

/// What building a member found.
#[derive(Debug, Default)]
pub struct Built {
    /// The revision the member came up at (v3).
    pub revision: Option<u64>,
    /// Alarms its data carried, cleared before it was handed over.
    pub cleared_alarms: Vec<String>,
    /// Its KV hash at the revision of [`Built::cluster`] (with
    /// [`Spec::kv_hash`]).
    pub kv_hash: Option<u32>,
    /// What a member of the whole cluster is restored from (v3).
    pub cluster: Option<ClusterSource>,
}

/// The db every member of a whole-cluster restore is made from, and how:
/// the backup's (or the replay's) db as this restore restored it, not the
/// checked member's, whose check start may have changed it (a lease that
/// expired there, deleted by etcd at a moment of that node's own): every
/// node restoring the same backup makes the same keys. Only where the
/// check start had to clear a NOSPACE alarm is it the checked db (the
/// backup's would carry the alarm into the cluster).
#[derive(Debug)]
pub struct ClusterSource {
    pub db: PathBuf,
    /// The restore flags beyond the membership (`--bump-revision`, ...).
    pub flags: Vec<String>,
    /// The revision `flags` add.
    pub bump: u64,
    /// The revision the member holds once restored from it (the KV hash
    /// was taken at it).
    pub revision: u64,
}

/// Build `new_dir/member` from the backup files in `backup` (described by
/// `manifest`), checked by starting it once; `staging` holds the logs.
pub fn build(
    sp: &Spec<'_>,
    backup: &Path,
    manifest: &Manifest,
    new_dir: &Path,
    staging: &Path,
) -> Result<Built> {
    for a in &manifest.alarms {
        tracing::warn!(
            "this backup was taken with alarm {} active (raised by member {})",
            a.alarm,
            a.member_id
        );
    }
    match manifest.api {
        Api::V2 => build_v2(sp, backup, new_dir, staging),
        Api::V3 => build_v3(sp, backup, manifest, new_dir, staging),
    }
}

/// Refuse, before anything is built, what this host's etcd tools cannot do
/// with the backup `manifest` describes: a v2 backup where etcd is 3.6+ (no
/// v2 store: its etcd would refuse --enable-v2 with its whole usage text), a
/// v3 one without a tool that restores snapshots, a revision bump where that
/// tool lacks the flag or the backup is v2. The one check of etcd2-restore
/// and etcd2-verify alike.
pub fn check_can_build(sp: &Spec<'_>, manifest: &Manifest) -> Result<()> {
    let etcd = crate::etcd::program_version(sp.etcd)?;
    tracing::info!(
        "etcd {etcd} at {} will run the restored member",
        sp.etcd.path().display()
    );
    if manifest.api == Api::V2 && !etcd.has_v2() {
        bail!(
            "this backup is of the v2 keyspace (etcdctl backup, etcd {}), and etcd {etcd} at {} \
             has no v2 store: it cannot restore it. Convert it into a v3 backup first, where an \
             etcd 3.5 or older is at hand: etcd2-convert BACKUP -o - | etcd2-push - \
             (docs/etcd2-convert.md)",
            manifest.etcd_version,
            sp.etcd.path().display()
        );
    }
    if sp.bump_revision.is_some() {
        ensure!(
            manifest.api == Api::V3,
            "--bump-revision applies to v3 backups only; this one is of the v2 keyspace"
        );
    }
    if let Some(stop) = sp.stop {
        ensure!(
            manifest.api == Api::V3,
            "a restore to {} replays captured v3 changes; this backup is of the v2 keyspace, \
             which etcd2-watch never captures",
            stop.describe()
        );
    }
    if manifest.api == Api::V3 {
        sp.etcdctl.check_can_restore(sp.bump_revision.is_some())?;
    }
    Ok(())
}

/// An etcd we started on private loopback ports; stopped by PID.
struct TempEtcd {
    child: Option<Logged>,
    client_url: String,
    log: PathBuf,
}

/// Two distinct free loopback ports (client, peer): both listeners are held
/// while the second is picked, so the kernel cannot hand out one twice.
fn two_free_ports() -> Result<(u16, u16)> {
    let bind =
        || std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port");
    let (a, b) = (bind()?, bind()?);
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// A restored member has the users, roles and auth setting of the cluster
/// it was backed up from: a refusal of ours is not a wait for health but a
/// missing or wrong --user, said at once (waiting would not change it).
fn auth_refusal(text: &str, auth: Option<&crate::etcd::Auth>) -> Option<String> {
    use crate::etcd::Refusal;
    let user = auth.map_or("(none)", |a| a.user.as_str());
    Some(match crate::etcd::refusal(text)? {
        Refusal::NoUser => "has etcd authentication on (the backed-up cluster had it) and \
             refused a request without a user: pass --user NAME and --password-file FILE of a \
             user with the root role in that cluster"
            .to_owned(),
        Refusal::Authentication => format!(
            "has etcd authentication on (the backed-up cluster had it) and refused user {user}: \
             authentication failed (wrong user or password for that cluster)"
        ),
        Refusal::Permission => format!(
            "refused user {user}: permission denied (a user with the root role in the \
             backed-up cluster is needed)"
        ),
        Refusal::Learner => return None,
    })
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
        // The node's own etcd settings (ETCD_*) must not leak into this
        // private instance: it listens only where we say. Nor may it talk
        // to systemd: under a unit it is not the main process, and systemd
        // would log each of its READY=1 messages as refused.
        let inv = etcd
            .command(["--name", name])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("{name}={peer_url}"))
            .env_remove_prefix("ETCD_")
            .env_remove_prefix("NOTIFY_SOCKET");
        let inv = extra.iter().fold(inv, |inv, a| inv.arg(*a));
        // It serves the restored keys on loopback: it must not outlive us,
        // whatever stops us (cmd gives it the parent-death signal and
        // registers it with the signal handler).
        tracing::debug!("starting temporary etcd on {client_url}");
        let child = inv.spawn_logged(logf)?;
        crate::scratch::fault_point("restore-etcd-started");
        Ok(TempEtcd {
            child: Some(child),
            client_url,
            log,
        })
    }

    fn wait_healthy(&mut self, ctl: &Etcdctl, limit: Duration) -> Result<()> {
        let started = Instant::now();
        let mut ctl = ctl.at(&self.client_url);
        ctl.query_timeout = Duration::from_secs(5);
        let (url, log) = (self.client_url.clone(), self.log.clone());
        let child = &mut self.child;
        crate::poll::until(
            limit,
            Duration::from_millis(200),
            "waiting for the temporary etcd to become healthy",
            || {
                if let Some(c) = child.as_mut() {
                    if let Some(st) = c.try_wait()? {
                        *child = None;
                        bail!(
                            "temporary etcd exited ({st}) before it became healthy{}",
                            log_tail(&log)
                        );
                    }
                }
                Ok(match ctl.v3(&["endpoint", "health"]).run() {
                    Ok(_) => {
                        tracing::info!(
                            "temporary etcd healthy after {:.1}s",
                            started.elapsed().as_secs_f64()
                        );
                        crate::poll::Probe::Done(())
                    }
                    // etcd 3.5+ reports a member with an active alarm as
                    // unhealthy: it is up, and the alarm is dealt with next.
                    Err(_) if ctl.alarm_list().is_ok_and(|a| !a.is_empty()) => {
                        crate::poll::Probe::Done(())
                    }
                    Err(e) => {
                        let text = format!("{e:#}");
                        if let Some(why) = auth_refusal(&text, ctl.auth()) {
                            bail!("temporary etcd on {url} {why}");
                        }
                        crate::poll::Probe::Waiting(format!("not healthy yet: {text}"))
                    }
                })
            },
            |last| {
                anyhow::anyhow!(
                    "temporary etcd on {url} not healthy within {} (last seen: {last}){}",
                    humantime::format_duration(limit),
                    log_tail(&log)
                )
            },
        )
    }

    /// A member whose data carries an alarm is never handed over as is:
    /// NOSPACE (it would refuse every write) is cleared as etcd's
    /// maintenance guide says; any other alarm is refused, naming it and
    /// the command that clears it. Returns what was cleared.
    fn clear_alarms(&mut self, ctl: &Etcdctl, limit: Duration) -> Result<Vec<String>> {
        let ctl = ctl.at(&self.client_url);
        let alarms = ctl.alarm_list()?;
        if alarms.is_empty() {
            return Ok(Vec::new());
        }
        let described = crate::etcd::describe_alarms(&alarms);
        if !alarms.iter().all(crate::etcd::Alarm::is_nospace) {
            bail!(
                "the restored data carries alarm {described}: etcd flagged it, so it is not handed \
                 over as a healthy member. Inspect the backup; to accept it anyway, restore it with \
                 etcdutl snapshot restore and run etcdctl alarm disarm on the started member"
            );
        }
        tracing::warn!(
            "the restored data carries alarm {described}: the backup was taken while etcd refused \
             writes; clearing it (compact, defrag, disarm)"
        );
        let rev = ctl.clear_nospace().with_context(|| {
            format!(
                "clearing alarm {described} in the restored member (by hand: etcdctl compact \
                 <revision>; etcdctl defrag; etcdctl alarm disarm)"
            )
        })?;
        let left = ctl.alarm_list()?;
        ensure!(
            left.is_empty(),
            "alarm {} still active in the restored member after compact, defrag and disarm: \
             its data does not fit etcd's quota (--quota-backend-bytes)",
            crate::etcd::describe_alarms(&left)
        );
        self.wait_healthy(&ctl, limit)?;
        tracing::info!(
            "cleared NOSPACE in the restored member: history compacted up to revision {rev}, \
             defragmented, alarm disarmed"
        );
        Ok(alarms.into_iter().map(|a| a.alarm).collect())
    }

    /// SIGTERM, then wait (bounded); a member that needs SIGKILL fails the restore.
    fn stop(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(c.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM); // it may have exited
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if c.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = c.kill(); // last resort
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

/// A built member serving on private loopback ports (a side restore, for
/// an operator to copy keys back from); stopped by PID, and killed on drop
/// or with us: it never outlives the tool that started it.
pub struct Serving {
    etcd: TempEtcd,
}

impl Serving {
    /// `http://127.0.0.1:PORT`.
    pub fn client_url(&self) -> &str {
        &self.etcd.client_url
    }

    pub fn pid(&self) -> Option<u32> {
        self.etcd.child.as_ref().map(|c| c.pid())
    }

    /// Block while it serves; an exit of its own is an error, with its
    /// log's tail.
    pub fn wait(&mut self) -> Result<()> {
        loop {
            if let Some(c) = self.etcd.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    self.etcd.child = None;
                    bail!("the side member exited ({st}){}", log_tail(&self.etcd.log));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stop it with SIGTERM, bounded.
    pub fn stop(mut self) -> Result<()> {
        self.etcd.stop()
    }
}

/// Start the member built in `dir` (by [`build`]) on private loopback
/// ports, healthy; its log in `staging`.
pub fn serve(sp: &Spec<'_>, dir: &Path, staging: &Path) -> Result<Serving> {
    let mut etcd = TempEtcd::start(sp.etcd, sp.name, dir, &[], staging.join("side-etcd.log"))?;
    etcd.wait_healthy(sp.etcdctl, sp.wait)?;
    Ok(Serving { etcd })
}

/// A private member serving a v2 backup's store (the v2 API on) on
/// loopback, for etcd2-convert to read it and write its v3 keys; stopped
/// by PID (and killed on drop: it never outlives us).
pub struct ServingV2 {
    etcd: TempEtcd,
    /// Alarms its data carried, cleared before it was handed over.
    pub cleared_alarms: Vec<String>,
}

impl ServingV2 {
    /// `http://127.0.0.1:PORT`: the v2 HTTP API and the v3 gRPC API both.
    pub fn client_url(&self) -> &str {
        &self.etcd.client_url
    }

    /// Stop it with SIGTERM, bounded.
    pub fn stop(mut self) -> Result<()> {
        self.etcd.stop()
    }
}

/// Start the v2 backup in `backup` (its `member/`, copied into `new_dir`)
/// as a single-member cluster on private loopback ports, healthy and with
/// any NOSPACE alarm cleared.
pub fn serve_v2(sp: &Spec<'_>, backup: &Path, new_dir: &Path, staging: &Path) -> Result<ServingV2> {
    ensure!(
        backup.join("member/wal").is_dir(),
        "the v2 backup has no member/wal"
    );
    copy_tree(&backup.join("member"), &new_dir.join("member"))?;
    let mut etcd = TempEtcd::start(
        sp.etcd,
        sp.name,
        new_dir,
        // The v2 store is served only with the v2 API on (an etcd that has
        // it: check_can_build refused 3.6+).
        &["--force-new-cluster", "--enable-v2=true"],
        staging.join("etcd.log"),
    )?;
    etcd.wait_healthy(sp.etcdctl, sp.wait)?;
    let cleared_alarms = etcd.clear_alarms(sp.etcdctl, sp.wait)?;
    Ok(ServingV2 {
        etcd,
        cleared_alarms,
    })
}

fn build_v2(sp: &Spec<'_>, backup: &Path, new_dir: &Path, staging: &Path) -> Result<Built> {
    // force-new-cluster keeps the old peer URL (or localhost): start it
    // privately, fix the peer URL, stop it cleanly.
    let ServingV2 {
        mut etcd,
        cleared_alarms,
    } = serve_v2(sp, backup, new_dir, staging)?;
    let ctl = sp.etcdctl.at(&etcd.client_url);
    let list = ctl.member_list()?;
    ensure!(
        list.members.len() == 1,
        "expected one member after --force-new-cluster, found {}",
        list.members.len()
    );
    let me = &list.members[0];
    ctl.member_update(me.id, sp.peer_urls)?;
    let after = ctl.member_list()?;
    let want: Vec<&str> = sp.peer_urls.split(',').collect();
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
        sp.peer_urls
    );
    etcd.stop()?;
    Ok(Built {
        revision: None,
        cleared_alarms,
        kv_hash: None,
        cluster: None,
    })
}

fn build_v3(
    sp: &Spec<'_>,
    backup: &Path,
    manifest: &Manifest,
    new_dir: &Path,
    staging: &Path,
) -> Result<Built> {
    let db = backup.join(archive::V3_SNAPSHOT_NAME);
    let token = format!(
        "etcd2-restore-{}",
        crate::store::new_generation_id(std::time::SystemTime::now())
    );
    let ic = format!("{}={}", sp.name, sp.peer_urls);
    let bump = sp.bump_revision.map(|n| n.to_string());
    let membership = [
        "--name",
        sp.name,
        "--initial-cluster",
        &ic,
        "--initial-cluster-token",
        &token,
        "--initial-advertise-peer-urls",
        sp.peer_urls,
    ];
    let mut args = membership.to_vec();
    if let Some(n) = &bump {
        args.extend(["--bump-revision", n.as_str()]);
        if sp.mark_compacted {
            args.push("--mark-compacted");
        }
    }
    // A db copied from a data dir (etcd2-snapshot --from-file) carries no
    // sha256 trailer for etcd to check; our archive's sha256 covered it.
    if manifest
        .imported_from
        .as_ref()
        .is_some_and(|i| i.skip_hash_check)
    {
        args.push("--skip-hash-check");
    }
    // Change segments fetched with the base: replayed on a member of
    // their own first, and the member is built from what that made.
    let changes = backup.join(crate::store::changes::CHANGES_DIR);
    if let (Some(stop), false) = (sp.stop, changes.is_dir()) {
        bail!(
            "{} holds the full backup alone (no changes/): a restore to {} needs the changes \
             captured after it; fetch them with etcd2-fetch --into DIR --to-revision or \
             --to-time",
            backup.display(),
            stop.describe()
        );
    }
    let (db, want) = if changes.is_dir() {
        let r = replay(sp, &db, manifest, &args, &changes, staging)?;
        (r.db, Some(r.reach))
    } else {
        (db, manifest.revision)
    };
    if changes.is_dir() && !args.contains(&"--skip-hash-check") {
        // The replayed member's own db: no snapshot trailer.
        args.push("--skip-hash-check");
    }
    sp.etcdctl.snapshot_restore(&db, new_dir, &args)?;
    // Check it: start it privately and compare its revision.
    let mut etcd = TempEtcd::start(sp.etcd, sp.name, new_dir, &[], staging.join("etcd.log"))?;
    etcd.wait_healthy(sp.etcdctl, sp.wait)?;
    let cleared_alarms = etcd.clear_alarms(sp.etcdctl, sp.wait)?;
    let st = sp.etcdctl.at(&etcd.client_url).endpoint_status()?;
    if let Some(rev) = want {
        let rev = rev + sp.bump_revision.unwrap_or(0);
        ensure!(
            st.status.header.revision >= rev,
            "restored member is at revision {}, the backup was at {rev}",
            st.status.header.revision
        );
    }
    let rev = st.status.header.revision;
    let bumped = sp.bump_revision.unwrap_or(0);
    let cluster = if cleared_alarms.is_empty() {
        ClusterSource {
            db: db.clone(),
            flags: args[membership.len()..]
                .iter()
                .map(|a| a.to_string())
                .collect(),
            bump: bumped,
            revision: want.map_or(rev, |w| w + bumped),
        }
    } else {
        ClusterSource {
            db: new_dir.join("member/snap/db"),
            flags: vec!["--skip-hash-check".into()],
            bump: 0,
            revision: rev,
        }
    };
    let kv_hash = match sp.kv_hash {
        true => Some(
            sp.etcdctl
                .at(&etcd.client_url)
                .hashkv(cluster.revision)?
                .hash,
        ),
        false => None,
    };
    tracing::info!(
        "restored member checked: revision {rev}, cluster {}{}",
        hex_id(st.status.header.cluster_id),
        kv_hash.map_or(String::new(), |h| format!(
            ", KV hash {h:08x} at revision {}",
            cluster.revision
        ))
    );
    etcd.stop()?;
    Ok(Built {
        revision: Some(rev),
        cleared_alarms,
        kv_hash,
        cluster: Some(cluster),
    })
}

/// The whole cluster a member is restored into (`etcd2-restore
/// --whole-cluster`): every member, and the token every one uses.
pub struct Cluster<'a> {
    /// etcd's `--initial-cluster`: `name=peer-URL,...`.
    pub initial_cluster: &'a str,
    pub token: &'a str,
}

/// Make `out/member` for one member of `cluster` from what [`build`]
/// restored and checked (`src`): that db restored once more, now with
/// every member and the cluster's token, as etcd's disaster-recovery guide
/// restores each member from the same snapshot. It cannot be started alone
/// to check it (no quorum without the others); etcd's own snapshot status
/// reads back that it holds the revision of `src` (its newest key's: a
/// compaction may have removed a newer tombstone, the same in both).
pub fn for_cluster(
    sp: &Spec<'_>,
    src: &ClusterSource,
    cluster: &Cluster<'_>,
    out: &Path,
) -> Result<()> {
    let mut args = vec![
        "--name",
        sp.name,
        "--initial-cluster",
        cluster.initial_cluster,
        "--initial-cluster-token",
        cluster.token,
        "--initial-advertise-peer-urls",
        sp.peer_urls,
    ];
    args.extend(src.flags.iter().map(String::as_str));
    let before = sp.etcdctl.snapshot_status(&src.db)?.revision;
    sp.etcdctl.snapshot_restore(&src.db, out, &args)?;
    let after = sp
        .etcdctl
        .snapshot_status(&out.join("member/snap/db"))?
        .revision;
    ensure!(
        after == before + src.bump,
        "the member restored for the whole cluster holds revision {after}, the db it was \
         restored from {before}{}",
        match src.bump {
            0 => String::new(),
            n => format!(" (+{n} bumped)"),
        }
    );
    Ok(())
}

/// What a replay made: the db of the base with the changes applied.
struct Replayed {
    db: PathBuf,
    /// The newest revision replayed (the base's where there was nothing
    /// after it).
    reach: u64,
}

/// Replay the change segments in `changes` onto the base snapshot `db`
/// (docs/change-capture.md): the base restored (as `restore_args` say,
/// without a revision bump) and started on private ports without fsync,
/// each revision after its own applied as one transaction that must come
/// back as that revision, every lease kept alive meanwhile (an expiry would
/// add a revision), leases granted with their ids and TTLs before their
/// first put, those gone in the original revoked once keyless; then the
/// member stopped cleanly, its db the result.
fn replay(
    sp: &Spec<'_>,
    db: &Path,
    manifest: &Manifest,
    restore_args: &[&str],
    changes: &Path,
    staging: &Path,
) -> Result<Replayed> {
    use crate::etcd::grpc::{Client, TxnOp, TxnPipeline};
    use crate::store::changes::{plan, segment_names, Link, Op, Segment};

    let started = Instant::now();
    let files: Vec<String> = std::fs::read_dir(changes)
        .with_context(|| format!("reading {}", changes.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let names = segment_names(files.iter().map(String::as_str));
    let read = |n: &crate::store::changes::SegmentName| -> Result<(Segment, String)> {
        let path = changes.join(n.file_name());
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        Segment::decode(n, &bytes).context("a fetched segment changed since it was fetched")
    };
    let mut links = Vec::new();
    // With --to-time: the first revision with a change received after it,
    // where the replay stops (the segment's start, a full backup's
    // revision, is held at any time after the chain began).
    let mut after_time: Option<(u64, u64)> = None;
    let mut newest_ms = None;
    for n in &names {
        let (seg, sha256) = read(n)?;
        if let (Some(Stop::Time(t)), None) = (sp.stop, after_time) {
            if let Some(next) = seg.first_received_after(t) {
                after_time = Some((next, seg.header.start));
            }
        }
        newest_ms = newest_ms.max(seg.received_to());
        links.push(Link {
            name: n.clone(),
            header: seg.header,
            sha256,
        });
    }
    // A point-in-time fetch's stop (docs/point-in-time.md), and the
    // restore's own, which may only lower it.
    let target = changes.join(crate::store::changes::TARGET_NAME);
    let fetched_upto = match std::fs::read(&target) {
        Ok(b) => Some(
            serde_json::from_slice::<crate::store::changes::ReplayTarget>(&b)
                .with_context(|| format!("reading {}", target.display()))?
                .revision,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", target.display())),
    };
    let own = match sp.stop {
        None => None,
        Some(Stop::Revision(r)) => Some(r),
        Some(Stop::Time(t)) => {
            let at = crate::clock::rfc3339_ms(t);
            let taken_ms = manifest.created_unix.saturating_mul(1000);
            ensure!(
                taken_ms <= t,
                "the full backup in {} was taken at {}, after {at}: fetch an older one with \
                 etcd2-fetch --into DIR --to-time {at}",
                changes.parent().unwrap_or(changes).display(),
                manifest.created_at
            );
            let Some((next, start)) = after_time else {
                bail!(
                    "{at} is after the newest change fetched ({}{}): nothing in {} shows what \
                     came after; fetch again with etcd2-fetch --into DIR --to-time {at}",
                    newest_ms.map_or("none".to_owned(), crate::clock::rfc3339_ms),
                    fetched_upto
                        .map(|u| format!(", the fetch stopped at revision {u}"))
                        .unwrap_or_default(),
                    changes.display()
                );
            };
            let r = (next - 1).max(start);
            tracing::info!(
                "--to-time {at} is revision {r}: every change up to it was received by then"
            );
            Some(r)
        }
    };
    let asked = |o: u64| match sp.stop {
        Some(Stop::Time(t)) => format!("revision {o} (--to-time {})", crate::clock::rfc3339_ms(t)),
        _ => format!("revision {o}"),
    };
    let upto = match (fetched_upto, own) {
        (Some(f), Some(o)) if o > f => bail!(
            "{} is past revision {f}, where the fetch stopped ({}): a restore can only stop \
             earlier than its fetch; fetch again with etcd2-fetch --into DIR --to-revision {o}",
            asked(o),
            target.display()
        ),
        (f, o) => o.or(f),
    };
    // Refused before any etcd starts: a stop past what was fetched.
    let fetched_reach = links
        .iter()
        .map(|l| l.header.last)
        .chain(manifest.revision)
        .max()
        .unwrap_or_default();
    if let Some(o) = own.filter(|o| *o > fetched_reach) {
        bail!(
            "{} is past the newest fetched change (revision {fetched_reach}, in {}): nothing \
             fetched shows what came after; fetch again with etcd2-fetch --into DIR \
             --to-revision {o}",
            asked(o),
            changes.display()
        );
    }

    let dir = staging.join("replay");
    let args: Vec<&str> = restore_args
        .iter()
        .copied()
        .filter(|a| *a != "--mark-compacted")
        .collect();
    let args = without_bump(&args);
    sp.etcdctl.snapshot_restore(db, &dir, &args)?;
    let mut extra = vec![
        "--max-txn-ops",
        "1000000",
        "--max-request-bytes",
        "268435456",
    ];
    if crate::etcd::program_version(sp.etcd)? >= crate::etcd::Version(3, 5, 0) {
        // Scratch until the final swap: a crash loses nothing live.
        extra.push("--unsafe-no-fsync");
    }
    let mut etcd = TempEtcd::start(
        sp.etcd,
        sp.name,
        &dir,
        &extra,
        staging.join("replay-etcd.log"),
    )?;
    etcd.wait_healthy(sp.etcdctl, sp.wait)?;
    let ctl = sp.etcdctl.at(&etcd.client_url);
    let client = Client::of(&ctl)?;
    let base = client.status()?.status.header.revision;
    if let Some(u) = upto {
        ensure!(
            u >= base,
            "the full backup already holds revision {base}, past revision {u} asked for: the \
             fetch chose it by the revision its sidecar names, which is read before the \
             snapshot; take an older one (etcd2-fetch --list, --generation)"
        );
    }
    let plan = plan(base, &links).map_err(|b| {
        anyhow::anyhow!(
            "the fetched changes cannot be replayed onto the full backup, which is at revision \
             {base}: {b}"
        )
    })?;
    let alive = Client::of(&ctl)?.keep_leases_alive(Duration::from_secs(1))?;
    let mut granted: std::collections::HashSet<i64> = client.lease_ids()?.into_iter().collect();
    let mut ttls = std::collections::HashMap::new();
    let (mut now, mut revisions) = (base, 0u64);
    let applying = Instant::now();
    let mut txns = TxnPipeline::new(&client);
    for &i in &plan.take {
        let (seg, _) = read(&links[i].name)?;
        for l in &seg.header.leases {
            ttls.insert(l.id, l.ttl);
        }
        let mut events = seg
            .events
            .into_iter()
            .filter(|e| e.rev > base && upto.is_none_or(|u| e.rev <= u))
            .peekable();
        while let Some(first) = events.next() {
            let rev = first.rev;
            let mut ops = vec![first];
            while let Some(e) = events.next_if(|e| e.rev == rev) {
                ops.push(e);
            }
            ensure!(
                rev == now + 1,
                "the changes jump from revision {now} to {rev}: revisions are missing"
            );
            let mut txn = Vec::with_capacity(ops.len());
            for e in ops {
                txn.push(match e.op {
                    Op::Put {
                        key, value, lease, ..
                    } => {
                        if lease != 0 && granted.insert(lease) {
                            client.grant_lease_id(lease, ttls.get(&lease).copied().unwrap_or(1))?;
                        }
                        TxnOp::Put { key, value, lease }
                    }
                    Op::Del { key } => TxnOp::Delete { key },
                });
            }
            txns.send(rev, txn)?;
            now = rev;
            revisions += 1;
        }
        if !seg.header.leases_gone.is_empty() {
            txns.finish()?;
        }
        for g in seg.header.leases_gone.iter().filter(|g| g.rev <= now) {
            let r = client.lease_ttl(g.id, true)?;
            if r.ttl >= 0 && r.keys.is_empty() {
                client.revoke_lease(g.id)?;
                granted.remove(&g.id);
            }
        }
    }
    txns.finish()?;
    if let Some(u) = upto {
        ensure!(
            now == u,
            "the fetched changes reach revision {now}, not revision {u} asked for"
        );
        let left_out = plan.reach.saturating_sub(u);
        tracing::info!(
            "stopped the replay at revision {u}, as asked: {revisions} revision(s) replayed after \
             the full backup of {}, {left_out} fetched revision(s) after it left out",
            manifest.created_at
        );
    }
    let applied = applying.elapsed().as_secs_f64();
    drop(alive);
    // Stopped cleanly (SIGTERM: etcd commits its backend and closes it),
    // the member's own db is the replayed keyspace: no snapshot stream of
    // the whole database through gRPC and onto disk once more. Like a db
    // copied from a data dir it has no sha256 trailer (restored with
    // --skip-hash-check); the member built from it is started and its
    // revision checked against the replay's.
    etcd.stop()?;
    let out = dir.join("member/snap/db");
    tracing::info!(
        "replayed {revisions} revision(s) from {} change segment(s) onto the full backup at \
         revision {base}: now at revision {now} ({:.1}s; applied in {applied:.2}s, {:.0} \
         revisions/s{})",
        plan.take.len(),
        started.elapsed().as_secs_f64(),
        revisions as f64 / applied.max(0.001),
        if txns.resent > 0 {
            format!(", {} sent again in order", txns.resent)
        } else {
            String::new()
        }
    );
    Ok(Replayed {
        db: out,
        reach: now,
    })
}

impl Stop {
    /// `revision R` / `the time T`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Stop::Revision(r) => format!("revision {r}"),
            Stop::Time(t) => format!("the time {}", crate::clock::rfc3339_ms(*t)),
        }
    }
}

/// `args` without `--bump-revision N` (and what goes with it): the replay
/// needs the original revisions; the bump comes after, on the real member.
fn without_bump<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if *a == "--bump-revision" {
            it.next();
        } else {
            out.push(*a);
        }
    }
    out
}

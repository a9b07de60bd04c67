//! The `etcd2-restore` job: turn a fetched backup into the data dir of a
//! healthy single-member cluster (the founding member), or of one member of
//! the whole cluster restored at once from the same backup
//! (`--whole-cluster`). The live data dir is replaced only once the restored
//! one is complete and checked.

use std::io::BufReader;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::archive::{self, Manifest};
use crate::cmd::Program;
use crate::datadir;
use crate::etcd::Etcdctl;
use crate::member;

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
    /// Where the replay of the changes stops (only ever earlier than the
    /// fetch's own stop).
    pub stop: Option<member::Stop>,
    /// Restore beside the live member instead, never touching the data
    /// dir (docs/point-in-time.md, "a side cluster").
    pub side: Option<Side>,
    /// Restore this member as one of the whole cluster instead of as the
    /// founder (docs/whole-cluster-restore.md).
    pub cluster: Option<WholeCluster>,
}

/// `--whole-cluster`: every member restored from the same backup with the
/// full member list and one token, all started together.
pub struct WholeCluster {
    /// `name=peer-URL,...` (`--initial-cluster`, else etcd's own
    /// `ETCD_INITIAL_CLUSTER`); None: neither was given.
    pub initial_cluster: Option<String>,
    /// None: derived from the backup and the revision restored, the same on
    /// every member restored from it.
    pub token: Option<String>,
}

/// Where the record of a restore is kept: inside `member/`, so that it
/// travels with the member it describes (set aside with it by a wipe).
pub const RECORD_NAME: &str = "etcd2-restored.json";

/// What a restore made, written to `member/etcd2-restored.json` and logged:
/// on every member of a whole-cluster restore the backup, revision and KV
/// hash must be the same.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub restored_at: String,
    /// `founder` or `whole-cluster`.
    pub mode: String,
    pub name: String,
    pub peer_urls: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_cluster_token: Option<String>,
    /// The backup: whose, when, and its database's sha256.
    pub backup_member: String,
    pub backup_cluster_id: String,
    pub backup_created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_machine_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_db_sha256: Option<String>,
    /// The revision the restored member holds (v3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Its KV hash at `revision` (whole-cluster restores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_hash: Option<String>,
}

/// The members of `--initial-cluster`, checked against this member's own
/// name and peer URLs: `name=URL` pairs of http(s) URLs (a member may list
/// several), ours among them with exactly our URLs, no URL twice. etcd
/// would say much the same, but only once the data dir is replaced.
pub fn parse_initial_cluster(ic: &str, name: &str, peer_urls: &str) -> Result<Vec<String>> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    let mut urls = std::collections::HashSet::new();
    for part in ic.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((n, u)) = part.split_once('=') else {
            bail!("--initial-cluster: {part:?} is not NAME=PEER_URL");
        };
        let (n, u) = (n.trim(), u.trim());
        ensure!(
            !n.is_empty() && (u.starts_with("http://") || u.starts_with("https://")),
            "--initial-cluster: {part:?} is not NAME=PEER_URL with an http(s) URL"
        );
        ensure!(
            urls.insert(u.to_owned()),
            "--initial-cluster: peer URL {u} is listed twice"
        );
        match members.iter_mut().find(|(m, _)| m == n) {
            Some((_, us)) => us.push(u.to_owned()),
            None => members.push((n.to_owned(), vec![u.to_owned()])),
        }
    }
    ensure!(!members.is_empty(), "--initial-cluster is empty");
    let names: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
    let Some((_, ours)) = members.iter().find(|(n, _)| n == name) else {
        bail!(
            "--initial-cluster lists {} but not this member, {name:?} (--name, ETCD_NAME)",
            names.join(", ")
        );
    };
    let mut want: Vec<&str> = peer_urls.split(',').map(str::trim).collect();
    let mut have: Vec<&str> = ours.iter().map(String::as_str).collect();
    want.sort_unstable();
    have.sort_unstable();
    ensure!(
        want == have,
        "--initial-cluster gives {name} peer URL(s) {}, but --peer-urls \
         (ETCD_INITIAL_ADVERTISE_PEER_URLS) says {peer_urls}",
        have.join(",")
    );
    Ok(names)
}

/// The token of a whole-cluster restore when none is given: the same on
/// every member restored from the same database to the same revision, and
/// different for any other (so that a member fed other data gets another
/// cluster ID and can never join the others), never the original
/// cluster's.
pub fn default_token(db_sha256: &str, revision: u64) -> String {
    let short: String = db_sha256.chars().take(16).collect();
    format!("etcd2-restore-{short}-{revision}")
}

/// A side restore: the member built (and the changes replayed) in scratch
/// under `work_dir`, then served on private loopback ports and/or written
/// as a snapshot file.
pub struct Side {
    pub work_dir: PathBuf,
    /// Serve it until stopped (SIGINT/SIGTERM), printing its endpoint.
    pub keep_running: bool,
    /// Write it as an etcd snapshot file (`etcdctl snapshot save`).
    pub output: Option<PathBuf>,
}

impl RestoreJob {
    pub fn run(&self) -> Result<()> {
        if let Some(side) = &self.side {
            return self.run_side(side);
        }
        let started = Instant::now();
        let initial_cluster = match &self.cluster {
            None => None,
            Some(c) => {
                let ic = c.initial_cluster.as_deref().context(
                    "--whole-cluster needs every member: pass --initial-cluster \
                     NAME=PEER_URL,... or set ETCD_INITIAL_CLUSTER (etcd's own drop-in sets it)",
                )?;
                let names = parse_initial_cluster(ic, &self.name, self.peer_urls.trim())?;
                Some((ic.trim().to_owned(), names))
            }
        };
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
        let staging = crate::scratch::Dir::create(&self.data_dir, datadir::RESTORE_STAGING)?;
        let (manifest, backup) = self.open_backup(staging.path())?;
        if initial_cluster.is_some() {
            ensure!(
                manifest.api == archive::Api::V3,
                "{} is a v2 backup: a v2 restore needs --force-new-cluster, which makes a \
                 one-member cluster, so the whole cluster cannot be restored at once from it. \
                 Restore the founder without --whole-cluster and join the others one at a time \
                 (README, Recovery procedure), or convert it first (docs/etcd2-convert.md)",
                self.from.display()
            );
        }
        self.check_can_run(&manifest)?;
        tracing::info!(
            "restoring {} backup of member {:?} (cluster {}) taken {} into {} as member {:?} with peer URLs {peer}{}",
            manifest.api,
            manifest.member_name,
            manifest.cluster_id,
            manifest.created_at,
            self.data_dir.display(),
            self.name,
            initial_cluster.as_ref().map_or(String::new(), |(_, names)| format!(
                ", one of the whole cluster {}",
                names.join(", ")
            ))
        );
        let new_dir = staging.path().join("data");
        let built = member::build(&self.spec(), &backup, &manifest, &new_dir, staging.path())?;
        let db_sha256 = manifest
            .files
            .iter()
            .find(|f| f.path == archive::V3_SNAPSHOT_NAME)
            .map(|f| f.sha256.clone());
        let mut record = Record {
            restored_at: crate::clock::now().1,
            mode: "founder".into(),
            name: self.name.clone(),
            peer_urls: peer.to_owned(),
            initial_cluster: None,
            initial_cluster_token: None,
            backup_member: manifest.member_name.clone(),
            backup_cluster_id: manifest.cluster_id.clone(),
            backup_created_at: manifest.created_at.clone(),
            backup_machine_id: manifest.machine_id.clone(),
            backup_db_sha256: db_sha256.clone(),
            revision: built.revision,
            kv_hash: built.kv_hash.map(|h| format!("{h:08x}")),
        };
        let mut member_dir = new_dir.join("member");
        if let Some((ic, names)) = &initial_cluster {
            let src = built
                .cluster
                .as_ref()
                .context("the restored v3 member reported no revision")?;
            let revision = src.revision;
            let token = match self.cluster.as_ref().and_then(|c| c.token.clone()) {
                Some(t) => t,
                None => default_token(
                    db_sha256
                        .as_deref()
                        .context("the backup's manifest lists no snapshot.db hash")?,
                    revision,
                ),
            };
            let cluster_dir = staging.path().join("cluster");
            let cluster = member::Cluster {
                initial_cluster: ic,
                token: &token,
            };
            self.refuse_same_token(&token)?;
            member::for_cluster(&self.spec(), src, &cluster, &cluster_dir)?;
            tracing::info!(
                "made {} a member of the whole cluster {} (token {token}), at revision {revision}{}",
                self.name,
                names.join(", "),
                record
                    .kv_hash
                    .as_ref()
                    .map_or(String::new(), |h| format!(", KV hash {h}"))
            );
            record.mode = "whole-cluster".into();
            record.revision = Some(revision);
            record.initial_cluster = Some(ic.clone());
            record.initial_cluster_token = Some(token);
            member_dir = cluster_dir.join("member");
        }
        let text = serde_json::to_string_pretty(&record)? + "\n";
        crate::fsutil::write_atomic(&member_dir.join(RECORD_NAME), text.as_bytes(), 0o644)?;
        tracing::info!(
            "recorded what was restored in {}",
            self.data_dir.join("member").join(RECORD_NAME).display()
        );
        let aside = datadir::install_member(&self.data_dir, &member_dir)?;
        if let Some(a) = &aside {
            tracing::info!("previous member data kept at {}", a.display());
        }
        datadir::prune_aside(&self.data_dir, self.keep_aside, aside.as_deref())?;
        drop(staging);
        datadir::fix_ownership(&self.data_dir, &self.owner)?;
        match &initial_cluster {
            None => tracing::info!(
                "restored {} as a single-member cluster in {:.1}s: start etcd now, then add the \
                 other members one at a time",
                self.data_dir.display(),
                started.elapsed().as_secs_f64()
            ),
            Some((_, names)) => tracing::info!(
                "restored {} as member {} of {} in {:.1}s: start etcd on every member once each \
                 is restored from the same backup, then check them with etcd2-health --members {} \
                 --endpoints <every member's client URL>",
                self.data_dir.display(),
                self.name,
                names.join(", "),
                started.elapsed().as_secs_f64(),
                names.len()
            ),
        }
        Ok(())
    }

    /// A token is one recovery's: a member of an earlier whole-cluster
    /// recovery with the same token (the default one repeats when the same
    /// backup is restored to the same revision again) would be taken for a
    /// peer of this one, its own writes since then and all. The member this
    /// restore replaces tells, by the record its restore left.
    fn refuse_same_token(&self, token: &str) -> Result<()> {
        let path = self.data_dir.join("member").join(RECORD_NAME);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let Ok(earlier) = serde_json::from_str::<Record>(&text) else {
            return Ok(());
        };
        if earlier.initial_cluster_token.as_deref() == Some(token) {
            bail!(
                "{} was already restored into a whole cluster with token {token} (at {}): this \
                 recovery must not reuse it, or a member left from that one would be taken for a \
                 peer of this one. Give every node of this recovery the same new token: \
                 --initial-cluster-token or ETCD2_RESTORE_CLUSTER_TOKEN (e.g. {token}-2)",
                self.data_dir.display(),
                earlier.restored_at
            );
        }
        Ok(())
    }

    /// The backup verified: a fetched directory as it is, an archive
    /// extracted into `staging`.
    fn open_backup(&self, staging: &Path) -> Result<(Manifest, PathBuf)> {
        if self.from.is_dir() {
            return Ok((archive::verify_dir(&self.from)?, self.from.clone()));
        }
        let f = std::fs::File::open(&self.from)
            .with_context(|| format!("opening {}", self.from.display()))?;
        let dest = staging.join("backup");
        let size = f.metadata().map(|m| m.len()).ok();
        let reader = crate::progress::ProgressReader::new(BufReader::new(f), "extracting", size);
        let m = archive::read_verified(reader, Some(&dest)).with_context(|| {
            format!(
                "{} is not a whole etcd2-backup archive",
                self.from.display()
            )
        })?;
        Ok((m, dest))
    }

    /// The side restore: built and checked as a restore builds the
    /// founder's member, in scratch; then written as a snapshot file and/or
    /// served on private loopback ports until stopped. The data dir and
    /// the live member are never touched; the scratch goes when we do.
    fn run_side(&self, side: &Side) -> Result<()> {
        let started = Instant::now();
        // Claim the output first: a bad path fails before any work.
        let out = match &side.output {
            Some(o) => Some((o, crate::fsutil::AtomicFile::create(o, 0o600)?)),
            None => None,
        };
        crate::scratch::work_dir(&side.work_dir)?;
        let staging = crate::scratch::Dir::create(&side.work_dir, "etcd2-restore-side")?;
        let (manifest, backup) = self.open_backup(staging.path())?;
        ensure!(
            manifest.api == archive::Api::V3,
            "{} is a v2 backup: a side restore serves v3 keys only (restore it as the founder, \
             or convert it: docs/etcd2-convert.md)",
            self.from.display()
        );
        let spec = member::Spec {
            name: "etcd2-restore-side",
            // Never listened on: the member is started on private
            // loopback ports of its own.
            peer_urls: "http://127.0.0.1:2380",
            bump_revision: None,
            mark_compacted: false,
            kv_hash: false,
            ..self.spec()
        };
        member::check_can_build(&spec, &manifest)?;
        let new_dir = staging.path().join("data");
        let built = member::build(&spec, &backup, &manifest, &new_dir, staging.path())?;
        let rev = built.revision.unwrap_or_default();
        let mut serving = member::serve(&spec, &new_dir, staging.path())?;
        let url = serving.client_url().to_owned();
        if let Some((o, mut file)) = out {
            let saved = staging.path().join("snapshot.db");
            self.etcdctl.at(&url).snapshot_save(&saved)?;
            let mut f = std::fs::File::open(&saved)
                .with_context(|| format!("opening {}", saved.display()))?;
            std::io::copy(&mut f, &mut file).with_context(|| format!("writing {}", o.display()))?;
            file.commit()?;
            tracing::info!(
                "wrote the restored keyspace at revision {rev} to {} as an etcd snapshot file \
                 (etcdutl snapshot status / restore read it)",
                o.display()
            );
        }
        if !side.keep_running {
            serving.stop()?;
            tracing::info!(
                "side restore done in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        crate::cli::print_stdout(&format!("ETCDCTL_ENDPOINTS={url}\n"))?;
        tracing::info!(
            "side member serving the restored keyspace at revision {rev} on {url} (etcd pid {}), \
             apart from the live cluster, ready in {:.1}s: read what to copy back with \
             ETCDCTL_ENDPOINTS={url} etcdctl get --prefix KEY; stop it with Ctrl-C (or kill {}): \
             the side member and its scratch in {} go with it",
            serving.pid().map_or("?".to_owned(), |p| p.to_string()),
            started.elapsed().as_secs_f64(),
            std::process::id(),
            side.work_dir.display()
        );
        crate::journal::notify_status(&format!("side member serving revision {rev} on {url}"));
        serving.wait()
    }

    /// Refuse, before anything is built, what this host's etcd tools cannot
    /// do: a v2 backup where etcd is 3.6 (no v2 store), a revision bump where
    /// the snapshot tool lacks the flag or the backup is v2.
    fn spec(&self) -> member::Spec<'_> {
        member::Spec {
            etcd: &self.etcd,
            etcdctl: &self.etcdctl,
            name: &self.name,
            peer_urls: self.peer_urls.trim(),
            wait: self.wait,
            bump_revision: self.bump_revision,
            mark_compacted: self.mark_compacted,
            stop: self.stop,
            kv_hash: self.cluster.is_some(),
        }
    }

    fn check_can_run(&self, manifest: &Manifest) -> Result<()> {
        member::check_can_build(&self.spec(), manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_cluster_must_hold_this_member_as_it_is() {
        let ic = "e1=http://10.0.0.1:2380,e2=http://10.0.0.2:2380,e3=http://10.0.0.3:2380";
        assert_eq!(
            parse_initial_cluster(ic, "e2", "http://10.0.0.2:2380").unwrap(),
            ["e1", "e2", "e3"]
        );
        // A member with two peer URLs, given in another order.
        let two = "e1=http://a:2380,e1=https://b:2380,e2=http://c:2380";
        assert!(parse_initial_cluster(two, "e1", "https://b:2380,http://a:2380").is_ok());
        let err = |ic: &str, name: &str, peer: &str| {
            format!("{:#}", parse_initial_cluster(ic, name, peer).unwrap_err())
        };
        assert!(err(ic, "e4", "http://10.0.0.4:2380").contains("not this member, \"e4\""));
        assert!(err(ic, "e2", "http://10.0.0.9:2380").contains("says http://10.0.0.9:2380"));
        assert!(
            err("e1=http://a:2380,e2=http://a:2380", "e1", "http://a:2380")
                .contains("listed twice")
        );
        assert!(err("e1", "e1", "http://a:2380").contains("not NAME=PEER_URL"));
        assert!(err("e1=a:2380", "e1", "a:2380").contains("http(s) URL"));
        assert!(err(" , ", "e1", "http://a:2380").contains("empty"));
    }

    #[test]
    fn the_default_token_follows_the_data() {
        let a = "0123456789abcdef0123456789abcdef";
        assert_eq!(default_token(a, 42), "etcd2-restore-0123456789abcdef-42");
        assert_ne!(default_token(a, 42), default_token(a, 43));
        assert_ne!(default_token(a, 42), default_token("f123456789abcdef", 42));
    }
}

//! The `etcd2-snapshot` job: one consistent backup of the local member,
//! written as one archive (see [`crate::archive`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::archive::{self, Api, Codec, Manifest};
use crate::digest::HashingWriter;
use crate::etcd::{hex_id, Etcdctl};
use crate::sink::Output;

/// Which etcd API the backup is taken through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApiChoice {
    /// Pick the keyspace that holds data; fail if both do
    Auto,
    /// `etcdctl backup` of the data dir: the v2 keyspace (the original package's path)
    V2,
    /// etcd's snapshot stream (gRPC Maintenance.Snapshot) from the endpoint: the v3 keyspace
    V3,
}

pub struct SnapshotJob {
    pub api: ApiChoice,
    pub allow_dropping_keyspace: bool,
    pub data_dir: PathBuf,
    pub etcd: Etcdctl,
    pub output: Output,
    pub codec: Codec,
    pub level: Option<i32>,
    pub threads: u32,
    pub work_dir: PathBuf,
    pub machine_id: Option<String>,
    /// `--from-file`: wrap this database file instead of asking etcd.
    pub from_file: Option<PathBuf>,
}

/// bbolt's magic, in its meta page at the start of every etcd database
/// (after the 16-byte page header, little-endian).
const BBOLT_MAGIC: u32 = 0xED0C_DAED;

/// etcd's rule for a snapshot file (`snapshot save`, and etcd's snapshot
/// stream): the db (whole 512-byte multiples) and a sha256 trailer of it.
/// A db copied from a data dir has no trailer.
const TRAILER: u64 = 32;

/// What kind of database file `--from-file` was given, from its first page
/// and its size; refused, saying what it is not, otherwise.
pub fn db_kind(head: &[u8], size: u64) -> Result<bool> {
    if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        bail!("it is compressed (gzip or zstd), not an etcd database: an archive of ours? push it with etcd2-push");
    }
    let magic = head
        .get(16..20)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if magic != Some(BBOLT_MAGIC) {
        bail!("it is not an etcd database (no bbolt magic in its first page)");
    }
    match size % 512 {
        TRAILER => Ok(true),
        0 => Ok(false),
        _ => bail!(
            "its size ({size} bytes) is neither a database's (512-byte pages) nor a snapshot's \
             (pages and a 32-byte sha256): truncated?"
        ),
    }
}

/// Name of the scratch dir in the work dir (`etcd2-snapshot.<pid>.*`).
const SCRATCH: &str = "etcd2-snapshot";

/// Snapshot chunks (32 KiB each from etcd) held between the receiver and
/// the compressor: 8 MiB, enough to ride out a slow moment on either side,
/// bounded so that memory does not grow with the db.
const STREAM_DEPTH: usize = 256;

/// What a finished snapshot produced (`etcd2-snapshot --json`).
#[derive(Debug, serde::Serialize)]
pub struct Produced {
    pub manifest: Manifest,
    pub archive_size: u64,
    pub archive_sha256: String,
}

/// What the textfile metrics say of a snapshot.
impl crate::metrics::Measured for Produced {
    fn samples(&self) -> Vec<crate::metrics::Sample> {
        use crate::metrics::Sample;
        let m = &self.manifest;
        let mut v = vec![
            Sample::gauge(
                "etcd2_backup_archive_bytes",
                "Size of the archive written last.",
                self.archive_size as f64,
            ),
            Sample::gauge(
                "etcd2_backup_etcd_bytes",
                "etcd data in the archive written last.",
                m.total_size() as f64,
            ),
        ];
        if let Some(r) = m.revision {
            v.push(Sample::gauge(
                "etcd2_backup_revision",
                "v3 revision of the backup written last.",
                r as f64,
            ));
        }
        v.push(Sample::gauge(
            "etcd2_backup_etcd_alarms",
            "Alarms (NOSPACE, CORRUPT) active in the cluster at the backup written last.",
            m.alarms.len() as f64,
        ));
        if let Some(k) = m.key_count {
            v.push(Sample::gauge(
                "etcd2_backup_keys",
                "Keys in the backup written last (v3).",
                k as f64,
            ));
        }
        v
    }
}

const BOTH_KEYSPACES: &str = "this member holds data in both the v2 and the v3 keyspace, and \
etcd 3.4 cannot put both into one backup of a running member: `etcdctl snapshot save` (--api v3) \
leaves out the v2 store and `etcdctl backup` (--api v2) leaves out the v3 keys. Refusing to drop \
either silently. Migrate the v2 data to v3, or choose one keyspace explicitly with --api v2|v3 \
together with --allow-dropping-keyspace";

/// Decide which API to back up through, given which keyspaces hold data.
/// Returns the API and, when a keyspace is knowingly left out, a warning.
pub fn choose_api(
    requested: ApiChoice,
    v2_has: bool,
    v3_has: bool,
    allow_dropping: bool,
) -> Result<(Api, Option<String>)> {
    let api = match requested {
        ApiChoice::Auto => match (v2_has, v3_has) {
            (true, true) => bail!("{BOTH_KEYSPACES}"),
            (true, false) => Api::V2,
            _ => Api::V3,
        },
        ApiChoice::V2 => Api::V2,
        ApiChoice::V3 => Api::V3,
    };
    let dropped = match api {
        Api::V2 if v3_has => Some("v3"),
        Api::V3 if v2_has => Some("v2"),
        _ => None,
    };
    match dropped {
        None => Ok((api, None)),
        Some(_) if !allow_dropping => bail!("{BOTH_KEYSPACES}"),
        Some(k) => Ok((
            api,
            Some(format!(
                "the {k} keyspace holds data and is NOT in this backup (--allow-dropping-keyspace)"
            )),
        )),
    }
}

fn check_data_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("etcd data dir {} (ETCD_DATA_DIR)", dir.display()))?;
    if !meta.is_dir() {
        bail!("etcd data dir {} is not a directory", dir.display());
    }
    let wal = dir.join("member/wal");
    match std::fs::metadata(&wal) {
        Ok(m) if m.is_dir() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "etcd data dir {} holds no etcd member (no member/wal inside): wrong ETCD_DATA_DIR?",
            dir.display()
        ),
        Ok(_) => bail!("{} is not a directory", wal.display()),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot read {} in etcd data dir {} (run as root, or as etcd's own user)",
                wal.display(),
                dir.display()
            )
        }),
    }
}

/// Marks, in the work dir, when we last warned that the v2 keyspace cannot
/// be checked: the warning is a daily reminder, not a line every 30 s.
const V2_UNCHECKED_MARK: &str = ".v2-unchecked-warned";

impl SnapshotJob {
    /// The member's v2 API is off, so its v2 keyspace cannot be seen. Said
    /// as a warning once a day with --api auto (or v2), and otherwise only
    /// at debug: a notice on every 30 s run says nothing new, and an
    /// explicit --api v3 already said that v2 data does not matter.
    /// `version`: what the member reports it runs.
    fn cannot_see_v2(&self, version: &str) {
        let msg = format!(
            "the v2 API is disabled on {} (etcd {version}; off by default since 3.4): whether its v2 keyspace holds \
             data (from etcd2 days, or written through another member) cannot be checked, and a \
             v3 backup does not hold it. Start the member with --enable-v2 for the check, or \
             pass --api v3 where v2 data cannot exist",
            self.etcd.endpoints()
        );
        let mark = self.work_dir.join(V2_UNCHECKED_MARK);
        let recent = std::fs::metadata(&mark)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < std::time::Duration::from_secs(24 * 3600));
        if self.api == ApiChoice::V3 || recent {
            tracing::debug!("{msg}");
            return;
        }
        tracing::warn!("{msg} (repeated once a day)");
        // Best effort: without the mark the warning just comes again.
        if crate::scratch::work_dir(&self.work_dir).is_ok() {
            let _ = crate::fsutil::write_atomic(&mark, b"", 0o600);
        }
    }

    /// The cluster's active alarms, for the manifest, each warned of: a
    /// NOSPACE member refuses every write, and the backup says so. Not
    /// being able to list them (a user without the permission) is said and
    /// does not stop the backup.
    fn alarms(&self, grpc: &crate::etcd::grpc::Client) -> Vec<archive::AlarmRecord> {
        let alarms = match grpc.alarms() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("could not list etcd's alarms at {}: {e:#}", grpc.url());
                return Vec::new();
            }
        };
        for a in &alarms {
            let what = if a.is_nospace() {
                "its database reached its quota (--quota-backend-bytes) and etcd refuses every \
                 write. This backup records the alarm; etcd2-restore clears it in the member it \
                 restores. On the live cluster: etcdctl compact, etcdctl defrag, etcdctl alarm \
                 disarm (etcd's maintenance guide)"
            } else {
                "this backup records it; check the cluster before relying on this backup"
            };
            tracing::warn!("etcd reports alarm {a} at {}: {what}", grpc.url());
        }
        alarms
            .into_iter()
            .map(|a| archive::AlarmRecord {
                alarm: a.alarm,
                member_id: a.member_id,
            })
            .collect()
    }

    /// The manifest of an archive written now by this tool, of `api`, with
    /// nothing yet known of etcd: each way in fills in what it knows.
    fn manifest(&self, api: Api) -> Manifest {
        Manifest {
            host: crate::node::hostname(),
            machine_id: self.machine_id.clone(),
            ..Manifest::new(
                format!("etcd2-snapshot {}", env!("CARGO_PKG_VERSION")),
                api,
                self.codec,
            )
        }
    }

    /// `--from-file`: an existing database file (an `etcdctl snapshot save`
    /// file, or a copied `member/snap/db`) wrapped into a verified archive,
    /// etcd not asked: what etcd's own `snapshot status` reads in it (its
    /// revision) goes into the manifest, and with it whether restoring it
    /// needs `--skip-hash-check`. A snapshot's sha256 trailer is checked
    /// as it is read; nothing is written where it does not match.
    fn import(&self, db: &Path) -> Result<Produced> {
        use std::io::Read;
        if self.api == ApiChoice::V2 {
            bail!("--from-file wraps a v3 database: --api v2 cannot go with it");
        }
        let mut sink = crate::sink::Sink::open(&self.output)?;
        let level = self.level.unwrap_or_else(|| self.codec.default_level());
        self.codec.check_level(level)?;
        let started = Instant::now();
        let what = || format!("--from-file {}", db.display());
        let mut file = std::fs::File::open(db).with_context(what)?;
        let meta = file.metadata().with_context(what)?;
        if !meta.is_file() {
            bail!("{}: not a regular file", what());
        }
        let size = meta.len();
        let mut head = vec![0u8; 4096.min(size as usize)];
        file.read_exact(&mut head).with_context(what)?;
        let has_trailer = db_kind(&head, size).with_context(what)?;
        let status = self
            .etcd
            .snapshot_status(db)
            .context("etcd's own reader cannot read it as a database (damaged?)")
            .with_context(what)?;
        let kind = if has_trailer {
            "snapshot save"
        } else {
            "copied db"
        };
        if !has_trailer {
            tracing::warn!(
                "{} is a database copied from a data dir (no sha256 trailer): etcd2-restore will \
                 restore it with --skip-hash-check. A copy taken while etcd ran may be torn; \
                 `etcdctl snapshot save` makes a consistent one",
                db.display()
            );
        }
        let modified_at = meta
            .modified()
            .map(crate::clock::rfc3339)
            .unwrap_or_default();
        let manifest = Manifest {
            etcd_version: status.version.clone().unwrap_or_default(),
            // Not in the file: the member, the cluster and the key count
            // are unknown.
            revision: Some(status.revision),
            files: vec![archive::FileEntry {
                path: archive::V3_SNAPSHOT_NAME.to_owned(),
                size,
                sha256: String::new(),
            }],
            imported_from: Some(archive::ImportedFrom {
                path: db.display().to_string(),
                modified_at,
                kind: kind.to_owned(),
                skip_hash_check: !has_trailer,
            }),
            ..self.manifest(Api::V3)
        };
        std::io::Seek::rewind(&mut file).with_context(what)?;
        let hashing = HashingWriter::new(&mut sink);
        let (hashing, manifest) =
            archive::write_streamed(hashing, &manifest, level, self.threads, |_, w| {
                copy_checking_trailer(&mut file, w, size, has_trailer)
            })
            .with_context(|| format!("{}: writing {}", what(), self.output))?;
        let (written, _) = hashing.finish();
        sink.finish()?;
        tracing::info!(
            "wrote {}: {} ({kind}, {size} bytes, revision {}) -> {} bytes {} (sha256 {}) in {:.1}s",
            self.output,
            db.display(),
            status.revision,
            written.size,
            manifest.codec,
            &written.sha256[..16],
            started.elapsed().as_secs_f64()
        );
        Ok(Produced {
            manifest,
            archive_size: written.size,
            archive_sha256: written.sha256,
        })
    }

    pub fn run(&self) -> Result<Produced> {
        if let Some(db) = &self.from_file {
            return self.import(db);
        }
        // Claim the output first, so that an unwritable destination fails
        // before any expensive work and before etcd is touched.
        let mut sink = crate::sink::Sink::open(&self.output)?;
        // So is a level the codec lacks: the stream below cannot wait.
        let level = self.level.unwrap_or_else(|| self.codec.default_level());
        self.codec.check_level(level)?;

        let started = Instant::now();
        // One gRPC connection for status, member list, the v3 probe and
        // the snapshot: no etcdctl process for any of them.
        let grpc = crate::etcd::grpc::Client::of(&self.etcd)?;
        let status = grpc.status().map_err(|e| self.etcd.failure(e))?;
        let members = grpc.member_list().map_err(|e| self.etcd.failure(e))?;
        let me = status.status.header.member_id;
        let member_name = members
            .members
            .iter()
            .find(|m| m.id == me)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        tracing::debug!(
            "etcd {} member {} ({}) of cluster {} at {}",
            status.status.version,
            if member_name.is_empty() {
                "?"
            } else {
                &member_name
            },
            hex_id(me),
            hex_id(status.status.header.cluster_id),
            self.etcd.endpoints()
        );
        let alarms = self.alarms(&grpc);
        // The v2 keyspace is probed only where it can hold data: not on etcd
        // 3.6+ (no v2 store), and not with an etcdctl that has no v2
        // commands (3.6's). An explicit --api v3 still probes on 3.4/3.5,
        // where v2 data can exist: dropping it is refused unless asked for.
        let member_version = crate::etcd::Version::find(&status.status.version);
        let member_has_v2 = member_version.is_none_or(|v| v.has_v2());
        if self.api == ApiChoice::V2 && !member_has_v2 {
            bail!(
                "etcd {} has no v2 store (removed in 3.6): --api v2 cannot back it up; use --api v3",
                status.status.version
            );
        }
        // An explicit --api v3 acknowledges that no v2 data matters; auto
        // and v2 look (and warn where they cannot see).
        // Only etcdctl can probe the v2 keyspace: a host without it (a
        // kubeadm node) backs up with --api v3, or from etcd 3.6 on.
        let v2_has = if !member_has_v2 {
            false
        } else if let Err(why) = self.etcd.require_etcdctl() {
            match self.api {
                ApiChoice::V3 => {
                    tracing::debug!("no etcdctl here: the v2 keyspace is not probed (--api v3)");
                    false
                }
                ApiChoice::V2 => bail!("--api v2 backs up with `etcdctl backup`: {why:#}"),
                ApiChoice::Auto => bail!(
                    "etcd {} may hold v2 data, which only etcdctl can look for: {why:#}; where \
                     no v2 data can exist (a kubeadm cluster), pass --api v3, which needs no \
                     etcdctl",
                    status.status.version
                ),
            }
        } else {
            match self.etcd.v2_has_keys_if_any()? {
                Some(has) => has,
                None => {
                    self.cannot_see_v2(&status.status.version);
                    false
                }
            }
        };
        // Also the v3 half of the acknowledged-write guarantee: this probe
        // is a linearizable read of the member backed up, answered only once
        // it applied everything committed before it (a lagging follower
        // catches up first), so the snapshot below, taken on the same
        // member after it, holds every write acknowledged before we
        // started: at least the revision it answers at. Its count is the
        // manifest's key count. Keep it ahead of the snapshot.
        let (v3_keys, v3_revision) = grpc.count_keys().map_err(|e| self.etcd.failure(e))?;
        let v3_has = v3_keys > 0;
        let (api, warning) = choose_api(self.api, v2_has, v3_has, self.allow_dropping_keyspace)?;
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        tracing::debug!(
            "keyspaces: v2 {}, v3 {}; backing up through the {api} API",
            if !member_has_v2 {
                "not probed (no v2 store)"
            } else if v2_has {
                "has data"
            } else {
                "empty"
            },
            if v3_has { "has data" } else { "empty" }
        );

        let mut manifest = Manifest {
            etcd_version: status.status.version.clone(),
            member_name,
            member_id: hex_id(me),
            cluster_id: hex_id(status.status.header.cluster_id),
            raft_index: Some(status.status.raft_index),
            alarms,
            ..self.manifest(api)
        };
        let hashing = HashingWriter::new(&mut sink);
        let (hashing, manifest) = match api {
            Api::V3 => {
                // Streamed: etcd's bytes go through tar and the compressor
                // as they arrive; nothing is staged on disk, and no etcdctl
                // maps the db to count its keys.
                // Versions before the stream staged the db in the work dir:
                // what a killed one left (up to the db's size) still goes.
                // Best effort: this path needs no work dir at all.
                if let Err(e) = crate::scratch::sweep(&self.work_dir, SCRATCH) {
                    tracing::warn!("{e:#}");
                }
                let stream = grpc
                    .snapshot(STREAM_DEPTH)
                    .map_err(|e| self.etcd.failure(e))?;
                tracing::debug!(
                    "v3 snapshot: {} bytes of db, {v3_keys} keys at revision {v3_revision} or later",
                    stream.db_size()
                );
                manifest.revision = Some(v3_revision);
                manifest.key_count = Some(v3_keys);
                crate::scratch::fault_point("snapshot-streaming");
                let (hashing, done) = stream
                    .archive(hashing, manifest, level, self.threads)
                    .with_context(|| format!("writing {}", self.output))?;
                (hashing, done)
            }
            Api::V2 => {
                drop(grpc);
                crate::scratch::work_dir(&self.work_dir)?;
                // What a killed run left (up to the size of the data) goes first.
                let scratch = crate::scratch::Dir::create(&self.work_dir, SCRATCH)?;
                check_data_dir(&self.data_dir)?;
                self.etcd.v2_quorum_barrier()?;
                let root = scratch.path().join("backup");
                self.etcd.v2_backup(&self.data_dir, &root)?;
                tracing::debug!("v2 backup of {} taken", self.data_dir.display());
                crate::scratch::fault_point("snapshot-saved");
                let files = archive::list_files(&root)?;
                if files.is_empty() {
                    bail!("etcdctl produced no files in {}", root.display());
                }
                // The files are on disk, their hashes known before the
                // manifest goes out: the manifest carries them, and
                // SHA256SUMS (format 3) covers the manifest as well.
                manifest.files = archive::file_entries(&root, &files)?;
                let hashing =
                    archive::write_archive(hashing, &manifest, &root, level, self.threads)
                        .with_context(|| format!("writing {}", self.output))?;
                (hashing, manifest)
            }
        };
        let (written, _) = hashing.finish();
        let (archive_size, archive_sha256) = (written.size, written.sha256);
        sink.finish()?;
        tracing::info!(
            "wrote {}: {} files, {} bytes of etcd data -> {} bytes {} (sha256 {}) in {:.1}s",
            self.output,
            manifest.files.len(),
            manifest.total_size(),
            archive_size,
            manifest.codec,
            &archive_sha256[..16],
            started.elapsed().as_secs_f64()
        );
        Ok(Produced {
            manifest,
            archive_size,
            archive_sha256,
        })
    }
}

/// Copy `size` bytes of `from` to `to`; with `trailer`, the last 32 must be
/// the sha256 of the rest (etcd's snapshot trailer), or the copy fails.
fn copy_checking_trailer(
    from: &mut impl std::io::Read,
    to: &mut dyn std::io::Write,
    size: u64,
    trailer: bool,
) -> Result<()> {
    use sha2::Digest;
    let body = if trailer { size - TRAILER } else { size };
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = body;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = from.read(&mut buf[..want])?;
        if n == 0 {
            bail!("the file ended {left} bytes early (it changed while read?)");
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        left -= n as u64;
    }
    if trailer {
        let mut tail = [0u8; TRAILER as usize];
        from.read_exact(&mut tail)?;
        to.write_all(&tail)?;
        if hasher.finalize().as_slice() != tail {
            bail!("its sha256 trailer does not match its contents: the snapshot is damaged");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_file_is_told_by_its_magic_and_its_size() {
        let mut page = vec![0u8; 4096];
        page[16..20].copy_from_slice(&BBOLT_MAGIC.to_le_bytes());
        assert!(db_kind(&page, 24576 + 32).unwrap(), "a snapshot: trailer");
        assert!(!db_kind(&page, 24576).unwrap(), "a copied db: none");
        let e = db_kind(&page, 24577).unwrap_err().to_string();
        assert!(e.contains("truncated?"), "{e}");
        let e = db_kind(&[0x1f, 0x8b, 8, 0], 4).unwrap_err().to_string();
        assert!(e.contains("compressed"), "{e}");
        let e = db_kind(&[0; 10], 10).unwrap_err().to_string();
        assert!(e.contains("no bbolt magic"), "{e}");
    }

    #[test]
    fn a_snapshot_trailer_is_checked_as_the_file_is_copied() {
        use sha2::Digest;
        let body = vec![7u8; 1000];
        let mut file = body.clone();
        file.extend_from_slice(&sha2::Sha256::digest(&body));
        let mut out = Vec::new();
        copy_checking_trailer(&mut file.as_slice(), &mut out, file.len() as u64, true).unwrap();
        assert_eq!(out, file);
        *file.last_mut().unwrap() ^= 1;
        let e = copy_checking_trailer(
            &mut file.as_slice(),
            &mut Vec::new(),
            file.len() as u64,
            true,
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        let e = copy_checking_trailer(&mut &body[..10], &mut Vec::new(), 1000, false).unwrap_err();
        assert!(e.to_string().contains("ended 990 bytes early"), "{e}");
    }

    #[test]
    fn auto_picks_the_keyspace_with_data() {
        assert_eq!(
            choose_api(ApiChoice::Auto, true, false, false).unwrap().0,
            Api::V2
        );
        assert_eq!(
            choose_api(ApiChoice::Auto, false, true, false).unwrap().0,
            Api::V3
        );
        assert_eq!(
            choose_api(ApiChoice::Auto, false, false, false).unwrap().0,
            Api::V3
        );
    }

    #[test]
    fn both_keyspaces_fail_with_an_explanation() {
        let e = choose_api(ApiChoice::Auto, true, true, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("both the v2 and the v3 keyspace"), "{e}");
        // --allow-dropping-keyspace does not make auto guess.
        assert!(choose_api(ApiChoice::Auto, true, true, true).is_err());
    }

    #[test]
    fn explicit_choice_that_drops_data_needs_the_flag() {
        assert!(choose_api(ApiChoice::V3, true, false, false).is_err());
        let (api, w) = choose_api(ApiChoice::V3, true, true, true).unwrap();
        assert_eq!(api, Api::V3);
        assert!(w.unwrap().contains("v2 keyspace holds data"));
        assert!(choose_api(ApiChoice::V2, true, false, false)
            .unwrap()
            .1
            .is_none());
    }
}

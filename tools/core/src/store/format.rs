//! The repository's formats, pure (no remote call here): the layout of one
//! machine's backups under `<RCLONE_ENDPOINT>/<machine-id>/`, generation
//! ids, the sidecar and pointer formats and their checks, what a listing
//! holds, the owner check and the retention plan. [`super::Repo`] reads and
//! writes them.
//!
//! ```text
//! <endpoint>/<machine-id>/LATEST.json                  pointer, written last
//! <endpoint>/<machine-id>/generations/<GEN>.tar.zst    immutable archive
//! <endpoint>/<machine-id>/generations/<GEN>.json       sidecar: written after the
//!                                                      archive is verified; a
//!                                                      generation is complete iff
//!                                                      its sidecar exists
//! <endpoint>/<machine-id>/member/...                   legacy (etcd2-backup-coreos)
//! ```
//!
//! docs/remote-layout.md describes it for operators.

use std::collections::BTreeMap;
use std::time::SystemTime;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::archive::{Codec, Manifest};
use crate::rclone::{Entry, RemotePath, Small};

pub const POINTER_NAME: &str = "LATEST.json";
/// etcd2-verify's last verdict on this machine's backups.
pub const VERIFIED_NAME: &str = "VERIFIED.json";
pub const GENERATIONS_DIR: &str = "generations";
pub const SIDECAR_FORMAT: u32 = 1;

/// Where one machine's backups live.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The endpoint as given (for messages).
    pub endpoint: String,
    pub machine_id: String,
    root: RemotePath,
}

impl Layout {
    pub fn new(endpoint: &str, machine_id: &str) -> Result<Self> {
        let endpoint = crate::rclone::Endpoint::parse(endpoint)?;
        crate::node::validate_machine_id(machine_id)?;
        Ok(Layout {
            endpoint: endpoint.as_str().to_owned(),
            machine_id: machine_id.to_owned(),
            root: RemotePath::root(&endpoint),
        })
    }

    /// `<endpoint>/<machine-id>`.
    pub fn base(&self) -> RemotePath {
        self.root.join(&self.machine_id)
    }

    pub fn generations(&self) -> RemotePath {
        self.base().join(GENERATIONS_DIR)
    }

    pub fn pointer(&self) -> RemotePath {
        self.base().join(POINTER_NAME)
    }

    /// `<endpoint>/<machine-id>/changes`: the change segments' chains.
    pub fn changes(&self) -> RemotePath {
        self.base().join(super::changes::CHANGES_DIR)
    }

    /// `<endpoint>/<machine-id>/VERIFIED.json`: the last verification.
    pub fn verified(&self) -> RemotePath {
        self.base().join(VERIFIED_NAME)
    }

    /// The original package's copy of the previous backup.
    pub fn legacy_previous(&self) -> RemotePath {
        self.root.join(&format!("{}_backup", self.machine_id))
    }
}

/// A generation's name: UTC time to the millisecond (so names sort by time)
/// plus a random suffix (so two writers never collide).
pub fn new_generation_id(now: SystemTime) -> String {
    let mut bytes = [0u8; 4];
    // Best effort randomness: the timestamp already orders; this only splits
    // ties between writers, so falling back to time-derived bits is fine.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let nanos = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        bytes = (nanos ^ std::process::id()).to_le_bytes();
    }
    format!(
        "{}-{}",
        crate::clock::compact(now, true),
        crate::digest::hex(&bytes)
    )
}

/// Checks a generation id is one of ours (and safe to use in a path).
pub fn valid_generation_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() < 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !id.starts_with('.')
}

/// The sidecar beside each archive, written once the archive is verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub format: u32,
    pub generation: String,
    /// File name of the archive in the generations directory.
    pub archive: String,
    pub size: u64,
    pub sha256: String,
    pub codec: Codec,
    pub pushed_at: String,
    pub pushed_from: String,
    /// The archive's own manifest, so listings need not download archives.
    pub manifest: Manifest,
}

/// VERIFIED.json: what etcd2-verify found the last time it ran for this
/// machine-id, so a monitoring host sees it beside the backups
/// (`etcd2-fetch --list-machines`). Only a verdict on a chosen generation is
/// recorded (one that restored, or one whose data or restore failed); a run
/// that found nothing to verify, or no remote, leaves it as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRecord {
    pub format: u32,
    pub generation: String,
    /// Whether a member started from the generation (etcd2-verify exit 0).
    pub ok: bool,
    pub verified_at: String,
    pub verified_unix: u64,
    /// The host etcd2-verify ran on.
    pub host: String,
    /// The revision the throwaway member came up at (v3, when it did).
    pub revision: Option<u64>,
    /// Why it failed: etcd2-verify's error line, secrets redacted.
    pub error: Option<String>,
}

/// LATEST.json: which generation is the newest whole backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    pub format: u32,
    pub generation: String,
    pub archive: String,
    pub size: u64,
    pub sha256: String,
    pub member_name: String,
    pub member_id: String,
    pub cluster_id: String,
    pub host: String,
    pub written_at: String,
}

impl Pointer {
    /// The pointer that would name `sc`'s generation.
    pub fn of(sc: &Sidecar) -> Pointer {
        let m = &sc.manifest;
        Pointer {
            format: SIDECAR_FORMAT,
            generation: sc.generation.clone(),
            archive: sc.archive.clone(),
            size: sc.size,
            sha256: sc.sha256.clone(),
            member_name: m.member_name.clone(),
            member_id: m.member_id.clone(),
            cluster_id: m.cluster_id.clone(),
            host: m.host.clone(),
            written_at: sc.pushed_at.clone(),
        }
    }
}

/// Generation `id`'s sidecar from the bytes read at `path` (named in
/// errors): it parses and names only its own generation's archive.
pub fn parse_sidecar(id: &str, path: &str, bytes: &[u8]) -> Result<Sidecar> {
    let sc: Sidecar = serde_json::from_slice(bytes)
        .with_context(|| format!("generation {id}: sidecar {path} is damaged"))?;
    check_sidecar_names(id, &sc).with_context(|| format!("generation {id}: sidecar {path}"))?;
    Ok(sc)
}

/// A sidecar names only its own generation's archive, beside it: a
/// damaged or hostile one must not lead a restore to another object (say,
/// `../../<other machine>/generations/…`: another machine's backup).
fn check_sidecar_names(id: &str, sc: &Sidecar) -> Result<()> {
    ensure!(
        sc.generation == id,
        "names generation {:?}, not its own",
        sc.generation
    );
    let want = format!("{id}.{}", sc.codec.extension());
    ensure!(
        sc.archive == want,
        "names archive {:?}, not {want:?}: refusing an object outside this generation",
        sc.archive
    );
    Ok(())
}

/// The archive that came through (its manifest, size and sha256) is the one
/// its sidecar describes.
pub fn check_sidecar(sc: &Sidecar, manifest: &Manifest, size: u64, sha256: &str) -> Result<()> {
    anyhow::ensure!(
        size == sc.size && sha256 == sc.sha256,
        "generation {}: the archive is {size} bytes sha256 {sha256}, its sidecar says {} bytes sha256 {}",
        sc.generation,
        sc.size,
        sc.sha256
    );
    anyhow::ensure!(
        *manifest == sc.manifest,
        "generation {}: the archive's manifest differs from its sidecar's",
        sc.generation
    );
    Ok(())
}

/// What the generations directory holds, by generation id.
#[derive(Debug, Default)]
pub struct Listing {
    /// Generation id -> archive file name and size.
    pub archives: BTreeMap<String, (String, u64)>,
    /// Generation ids with a sidecar.
    pub sidecars: Vec<String>,
    /// Anything else of ours (interrupted pointer writes), by file name.
    pub strays: Vec<String>,
}

impl Listing {
    pub fn from_entries(entries: &[Entry]) -> Listing {
        let mut l = Listing::default();
        for e in entries.iter().filter(|e| !e.is_dir) {
            let n = &e.name;
            if let Some(id) = n.strip_suffix(".json") {
                if valid_generation_id(id) {
                    l.sidecars.push(id.to_owned());
                    continue;
                }
            }
            let archive_id = [Codec::Zstd, Codec::Gzip]
                .iter()
                .find_map(|c| n.strip_suffix(&format!(".{}", c.extension())));
            match archive_id {
                Some(id) if valid_generation_id(id) => {
                    l.archives
                        .insert(id.to_owned(), (n.clone(), e.size.max(0) as u64));
                }
                _ => l.strays.push(n.clone()),
            }
        }
        l.sidecars.sort();
        l
    }

    /// Complete generations (sidecar and archive both present), oldest first.
    pub fn complete(&self) -> Vec<String> {
        self.sidecars
            .iter()
            .filter(|id| self.archives.contains_key(*id))
            .cloned()
            .collect()
    }
}

/// Refuse to publish over another member's backups (a cloned machine-id).
pub fn check_owner(prev: &Pointer, m: &Manifest, where_: &str, force: bool) -> Result<()> {
    // An imported archive (etcd2-snapshot --from-file) does not know its
    // member: on the same host it matches the member's own backups.
    let names_differ = !prev.member_name.is_empty()
        && !m.member_name.is_empty()
        && prev.member_name != m.member_name;
    if names_differ || prev.host != m.host {
        let msg = format!(
            "{where_} holds backups of member {:?} ({}) of cluster {} from host {:?} (last {}), \
             but this archive is of member {:?} ({}) of cluster {} from host {:?}: two machines \
             share this machine-id (a cloned VM?). Give each its own --machine-id, or pass --force \
             if this machine really replaces the other",
            prev.member_name,
            prev.member_id,
            prev.cluster_id,
            prev.host,
            prev.written_at,
            m.member_name,
            m.member_id,
            m.cluster_id,
            m.host
        );
        if !force {
            return Err(crate::exit::coded(crate::exit::EXIT_REFUSED, msg));
        }
        tracing::warn!("--force: {msg}");
    } else if prev.cluster_id != m.cluster_id
        && !prev.cluster_id.is_empty()
        && !m.cluster_id.is_empty()
    {
        tracing::info!(
            "cluster id changed from {} to {} since the last backup (a restored cluster?)",
            prev.cluster_id,
            m.cluster_id
        );
    }
    Ok(())
}

/// What LATEST.json holds.
pub enum PointerState {
    /// No pointer yet: no backup was ever published here.
    Missing,
    /// Present but unreadable (the reason).
    Damaged(String),
    Valid(Pointer),
}

/// What LATEST.json holds, from what reading it found; `generations`
/// (the directory its generation must lie in) is named in messages.
pub fn pointer_state(read: Small, generations: &str) -> PointerState {
    match read {
        Small::Missing => PointerState::Missing,
        Small::Bytes(b) if b.is_empty() => PointerState::Missing,
        Small::TooLarge => PointerState::Damaged(Small::TOO_LARGE.to_owned()),
        Small::Bytes(b) => match serde_json::from_slice::<Pointer>(&b) {
            Ok(p) if !valid_generation_id(&p.generation) => PointerState::Damaged(format!(
                "its generation {:?} is not a generation id (it would name an object outside \
                 {generations})",
                p.generation
            )),
            Ok(p) => PointerState::Valid(p),
            Err(e) => PointerState::Damaged(e.to_string()),
        },
    }
}

/// What retention deletes.
#[derive(Debug, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Complete generations beyond the newest `keep`, oldest first.
    pub expired: Vec<String>,
    /// File names left by interrupted pushes: archives without sidecar and
    /// sidecars without archive (older than the generation just published),
    /// and temporary pointers.
    pub orphans: Vec<String>,
}

/// Keep the newest `keep` complete generations, the pointer's target, the
/// generation just published and anything newer than it, whatever their age;
/// everything of ours older than `published` that is not a complete
/// generation is an orphan.
pub fn plan_retention(
    listing: &Listing,
    pointed: Option<&str>,
    published: &str,
    keep: usize,
) -> RetentionPlan {
    let complete = listing.complete();
    let keep_from = complete.len().saturating_sub(keep);
    // Only generations older than the one just published: a newer complete
    // one belongs to a push still running elsewhere (a cloned machine-id),
    // about to be published.
    let expired = complete[..keep_from]
        .iter()
        .filter(|id| Some(id.as_str()) != pointed && id.as_str() < published)
        .cloned()
        .collect();
    let mut orphans = Vec::new();
    for (id, (name, _)) in &listing.archives {
        if id.as_str() < published && !listing.sidecars.contains(id) && Some(id.as_str()) != pointed
        {
            orphans.push(name.clone());
        }
    }
    for id in &listing.sidecars {
        if id.as_str() < published && !listing.archives.contains_key(id) {
            orphans.push(format!("{id}.json"));
        }
    }
    let tmp_prefix = format!("{POINTER_NAME}.tmp-");
    for stray in &listing.strays {
        // Only temporary pointers of older generations: a newer one is
        // another writer's, about to be moved into place.
        if stray
            .strip_prefix(&tmp_prefix)
            .is_some_and(|g| g < published)
        {
            orphans.push(stray.clone());
        }
    }
    RetentionPlan { expired, orphans }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive;
    use crate::rclone::parse_lsjson;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn generation_ids_sort_by_time_and_differ() {
        let t0 = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let t1 = t0 + Duration::from_millis(1);
        let (a, b, c) = (
            new_generation_id(t0),
            new_generation_id(t0),
            new_generation_id(t1),
        );
        assert!(a.starts_with("20261118T110640.123Z-"), "{a}");
        assert_ne!(a, b);
        assert!(a < c && b < c);
        assert!(valid_generation_id(&a));
        assert!(!valid_generation_id("../LATEST"));
    }

    #[test]
    fn listing_classifies_files() {
        let json = r#"[
          {"Name":"20261124T000000.000Z-aa.tar.zst","Size":10,"IsDir":false},
          {"Name":"20261124T000000.000Z-aa.json","Size":1,"IsDir":false},
          {"Name":"20261124T000001.000Z-bb.tar.gz","Size":10,"IsDir":false},
          {"Name":"20261124T000002.000Z-cc.json","Size":1,"IsDir":false},
          {"Name":"LATEST.json.tmp-x","Size":1,"IsDir":false}
        ]"#;
        let l = Listing::from_entries(&parse_lsjson(json).unwrap());
        assert_eq!(l.complete(), vec!["20261124T000000.000Z-aa"]);
        assert_eq!(l.archives.len(), 2);
        assert_eq!(l.strays, vec!["LATEST.json.tmp-x"]);
    }

    fn manifest(name: &str, host: &str, cluster: &str) -> Manifest {
        Manifest {
            format: 1,
            tool: "t".into(),
            api: archive::Api::V3,
            codec: archive::Codec::Zstd,
            etcd_version: "3.4.23".into(),
            member_name: name.into(),
            member_id: "a".into(),
            cluster_id: cluster.into(),
            revision: Some(1),
            raft_index: Some(1),
            key_count: Some(1),
            created_at: "x".into(),
            created_unix: 0,
            host: host.into(),
            machine_id: None,
            files: vec![],
            alarms: vec![],
            converted_from: None,
            imported_from: None,
        }
    }

    fn pointer(name: &str, host: &str, cluster: &str) -> Pointer {
        Pointer {
            format: 1,
            generation: "g".into(),
            archive: "g.tar.zst".into(),
            size: 1,
            sha256: "s".into(),
            member_name: name.into(),
            member_id: "b".into(),
            cluster_id: cluster.into(),
            host: host.into(),
            written_at: "w".into(),
        }
    }

    #[test]
    fn owner_check_refuses_another_member_or_host() {
        let p = pointer("e1", "h1", "c1");
        assert!(check_owner(&p, &manifest("e1", "h1", "c1"), "r:x", false).is_ok());
        // A restored cluster has a new cluster id: same member, same host.
        assert!(check_owner(&p, &manifest("e1", "h1", "c2"), "r:x", false).is_ok());
        let e = check_owner(&p, &manifest("e2", "h2", "c1"), "r:x", false).unwrap_err();
        assert!(e.to_string().contains("share this machine-id"), "{e}");
        assert!(check_owner(&p, &manifest("e1", "h2", "c1"), "r:x", false).is_err());
        assert!(check_owner(&p, &manifest("e2", "h2", "c1"), "r:x", true).is_ok());
        // An import (etcd2-snapshot --from-file) names no member: on the
        // same host it is the member's, both ways; on another it is not.
        let imported = pointer("", "h1", "");
        assert!(check_owner(&imported, &manifest("e1", "h1", "c1"), "r:x", false).is_ok());
        assert!(check_owner(&p, &manifest("", "h1", ""), "r:x", false).is_ok());
        assert!(check_owner(&imported, &manifest("e1", "h2", "c1"), "r:x", false).is_err());
    }

    fn listing(names: &[&str]) -> Listing {
        let json: Vec<String> = names
            .iter()
            .map(|n| format!(r#"{{"Name":"{n}","Size":1,"IsDir":false}}"#))
            .collect();
        Listing::from_entries(
            &crate::rclone::parse_lsjson(&format!("[{}]", json.join(","))).unwrap(),
        )
    }

    /// A listing of complete generations `ids` (archive and sidecar each).
    fn complete(ids: &[&str]) -> Listing {
        let names: Vec<String> = ids
            .iter()
            .flat_map(|id| [format!("{id}.tar.zst"), format!("{id}.json")])
            .collect();
        listing(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn retention_keeps_newest_n_and_the_pointer_target() {
        let l = complete(&["A", "B", "C", "D"]);
        let plan = plan_retention(&l, Some("D"), "D", 2);
        assert_eq!(plan.expired, vec!["A", "B"]);
        assert!(plan.orphans.is_empty());
        // The pointer names an old generation: it survives even --keep 1.
        let plan = plan_retention(&l, Some("A"), "D", 1);
        assert_eq!(plan.expired, vec!["B", "C"]);
        // The generation just published survives even if the pointer moved on.
        let plan = plan_retention(&l, Some("B"), "C", 1);
        assert_eq!(plan.expired, vec!["A"]);
    }

    #[test]
    fn retention_never_expires_a_complete_generation_newer_than_the_one_published() {
        // B and C are complete and newer than A, the one this push published
        // (another writer's, about to be published): --keep 1 keeps them.
        let l = complete(&["0", "A", "B", "C"]);
        let plan = plan_retention(&l, Some("A"), "A", 1);
        assert_eq!(plan.expired, vec!["0"]);
    }

    #[test]
    fn retention_removes_orphans_older_than_the_new_generation_only() {
        let l = listing(&[
            "A.tar.zst",
            "B.json",
            "C.tar.zst",
            "C.json",
            "E.tar.zst",
            "LATEST.json.tmp-A",
            "LATEST.json.tmp-C",
            "LATEST.json.tmp-E",
        ]);
        // E (an upload still running elsewhere, newer than C) is left
        // alone, and so is a newer writer's temporary pointer.
        let plan = plan_retention(&l, Some("C"), "C", 3);
        assert!(plan.expired.is_empty());
        assert_eq!(
            plan.orphans,
            vec!["A.tar.zst", "B.json", "LATEST.json.tmp-A"]
        );
    }
}

//! The `etcd2-push` job: publish one archive as a new immutable generation,
//! verified on the remote before the pointer moves, then apply retention.

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use sha1::Digest as _;

use crate::archive::{self, Manifest};
use crate::remote::{
    join, new_generation_id, Layout, Listing, Pointer, Rclone, Sidecar, POINTER_NAME,
    SIDECAR_FORMAT,
};

/// How the uploaded copy is checked before it is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verify {
    /// Compare size and the strongest hash the backend reports (sha256, sha1, md5);
    /// backends without hashes (crypt, webdav) are checked by size
    Hash,
    /// Also download the copy again and compare its sha256 (works on every backend)
    Download,
}

pub enum Input {
    File(PathBuf),
    Stdin,
}

pub struct PushJob {
    pub input: Input,
    pub rclone: Rclone,
    pub layout: Layout,
    pub keep: usize,
    pub verify: Verify,
    pub force: bool,
    pub work_dir: PathBuf,
    pub lock_file: PathBuf,
    pub lock_wait: Duration,
}

#[derive(Debug)]
pub struct Pushed {
    pub generation: String,
    pub size: u64,
    pub sha256: String,
    pub deleted: Vec<String>,
}

/// Reads through, hashing everything that passes with sha256.
struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }
    fn finish(self) -> (u64, String) {
        (self.count, archive::hex(&self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Verify an archive stream end to end (every file against the manifest) and
/// return its manifest, total size and sha256. With `extract`, files land
/// below that directory.
pub fn verify_stream<R: Read>(r: R, extract: Option<&Path>) -> Result<(Manifest, u64, String)> {
    let mut hr = HashingReader::new(r);
    // read_verified reads to the end (and refuses anything after the
    // codec's end), so the hash covers the whole file.
    let manifest = archive::read_verified(&mut hr, extract)?;
    let (n, sha) = hr.finish();
    Ok((manifest, n, sha))
}

/// The hook tests use to SIGKILL a push at an exact point: with
/// `ETCD2_BACKUP_FAULT_PAUSE=<point>` the tool announces the point on stderr
/// and pauses (at most 60 s). Not for operators; harmless when unset.
pub fn fault_point(point: &str) {
    if std::env::var("ETCD2_BACKUP_FAULT_PAUSE").as_deref() == Ok(point) {
        eprintln!("fault-point: {point}");
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// An exclusive lock on this host, so two pushes never interleave.
pub struct HostLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

pub fn lock(path: &Path, wait: Duration) -> Result<HostLock> {
    use nix::fcntl::{Flock, FlockArg};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let deadline = Instant::now() + wait;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut l) => {
                // Informative only: who holds it, for the next one's message.
                let _ = l.set_len(0); // a stale pid is harmless
                let _ = writeln!(&mut *l, "{}", std::process::id());
                return Ok(HostLock { _lock: l });
            }
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                if Instant::now() >= deadline {
                    let holder = std::fs::read_to_string(path).unwrap_or_default();
                    bail!(
                        "locked: another etcd2-push (pid {}) holds {}; waited {} (--lock-wait)",
                        holder.trim(),
                        path.display(),
                        humantime::format_duration(wait)
                    );
                }
                file = f;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
}

/// Refuse to publish over another member's backups (a cloned machine-id).
pub fn check_owner(prev: &Pointer, m: &Manifest, where_: &str, force: bool) -> Result<()> {
    if prev.member_name != m.member_name || prev.host != m.host {
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
            bail!("{msg}");
        }
        tracing::warn!("--force: {msg}");
    } else if prev.cluster_id != m.cluster_id {
        tracing::info!(
            "cluster id changed from {} to {} since the last backup (a restored cluster?)",
            prev.cluster_id,
            m.cluster_id
        );
    }
    Ok(())
}

/// Read LATEST.json; a missing pointer is None, a damaged one is reported
/// and treated as missing (generations are still listed by their sidecars).
pub fn read_pointer(rclone: &Rclone, layout: &Layout) -> Result<Option<Pointer>> {
    let Some(bytes) = rclone.cat(&layout.pointer())? else {
        return Ok(None);
    };
    match serde_json::from_slice::<Pointer>(&bytes) {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            tracing::warn!("{} is damaged ({e}); ignoring it", layout.pointer());
            Ok(None)
        }
    }
}

impl PushJob {
    pub fn run(&self) -> Result<Pushed> {
        let started = Instant::now();
        let _lock = lock(&self.lock_file, self.lock_wait)?;
        self.rclone.check_endpoint(&self.layout.endpoint)?;

        // The archive as a local file: the given one, or stdin spooled to
        // the work dir (so a truncated stream is caught before upload).
        let spool;
        let path: &Path = match &self.input {
            Input::File(p) => p,
            Input::Stdin => {
                std::fs::create_dir_all(&self.work_dir).with_context(|| {
                    format!(
                        "creating work dir {} (ETCD_BACKUP_DIR)",
                        self.work_dir.display()
                    )
                })?;
                let mut t = tempfile::Builder::new()
                    .prefix("etcd2-push.")
                    .tempfile_in(&self.work_dir)
                    .with_context(|| {
                        format!("creating a spool file in {}", self.work_dir.display())
                    })?;
                let n = io::copy(&mut io::stdin().lock(), t.as_file_mut())
                    .context("reading the archive from stdin")?;
                if n == 0 {
                    bail!("stdin is empty: no archive to push (did the producer fail?)");
                }
                spool = t;
                spool.path()
            }
        };
        let shown = match &self.input {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "stdin".to_owned(),
        };
        let file = std::fs::File::open(path).with_context(|| format!("opening {shown}"))?;
        let (manifest, size, sha256) = verify_stream(BufReader::new(file), None)
            .with_context(|| format!("{shown} is not a whole etcd2-backup archive"))?;
        tracing::info!(
            "verified {shown}: {} backup of member {:?} taken {} ({} bytes, sha256 {})",
            manifest.api,
            manifest.member_name,
            manifest.created_at,
            size,
            &sha256[..16]
        );

        let base = self.layout.base();
        if let Some(prev) = read_pointer(&self.rclone, &self.layout)? {
            check_owner(&prev, &manifest, &base, self.force)?;
        }

        let generation = new_generation_id(SystemTime::now());
        let gens = self.layout.generations();
        let archive_name = format!("{generation}.{}", manifest.codec.extension());
        let remote_archive = join(&gens, &archive_name);
        tracing::info!("uploading generation {generation} to {gens}");
        self.rclone.copyto(path, &remote_archive)?;
        fault_point("after-upload");
        let how = self.verify_remote(&gens, &archive_name, path, size, &sha256)?;
        tracing::info!("remote copy verified ({how})");

        let sidecar = Sidecar {
            format: SIDECAR_FORMAT,
            generation: generation.clone(),
            archive: archive_name.clone(),
            size,
            sha256: sha256.clone(),
            codec: manifest.codec,
            pushed_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            pushed_from: crate::node::hostname(),
            manifest: manifest.clone(),
        };
        let side_bytes = serde_json::to_vec_pretty(&sidecar)?;
        let side_path = join(&gens, &format!("{generation}.json"));
        self.rclone.put_bytes(&side_path, &side_bytes)?;
        ensure!(
            self.rclone.cat(&side_path)?.as_deref() == Some(side_bytes.as_slice()),
            "sidecar {side_path} did not read back as written"
        );
        fault_point("before-pointer");

        let pointer = Pointer {
            format: SIDECAR_FORMAT,
            generation: generation.clone(),
            archive: archive_name,
            size,
            sha256: sha256.clone(),
            member_name: manifest.member_name.clone(),
            member_id: manifest.member_id.clone(),
            cluster_id: manifest.cluster_id.clone(),
            host: manifest.host.clone(),
            written_at: sidecar.pushed_at.clone(),
        };
        let ptr_bytes = serde_json::to_vec_pretty(&pointer)?;
        // Written beside, then moved over LATEST.json: a rename on file
        // backends, one PUT on object stores; never a half-written pointer.
        let tmp = join(&gens, &format!("{POINTER_NAME}.tmp-{generation}"));
        self.rclone.put_bytes(&tmp, &ptr_bytes)?;
        self.rclone.moveto(&tmp, &self.layout.pointer())?;
        ensure!(
            self.rclone.cat(&self.layout.pointer())?.as_deref() == Some(ptr_bytes.as_slice()),
            "{} did not read back as written",
            self.layout.pointer()
        );
        tracing::info!("published {generation} as {}", self.layout.pointer());
        fault_point("after-pointer");

        let deleted = self.retention(&generation).with_context(|| {
            format!("generation {generation} is published, but retention failed")
        })?;
        tracing::info!(
            "pushed {generation} ({size} bytes, sha256 {}) to {base} in {:.1}s; deleted {}",
            &sha256[..16],
            started.elapsed().as_secs_f64(),
            if deleted.is_empty() {
                "nothing".to_owned()
            } else {
                deleted.join(", ")
            }
        );
        Ok(Pushed {
            generation,
            size,
            sha256,
            deleted,
        })
    }

    fn verify_remote(
        &self,
        dir: &str,
        name: &str,
        local: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<String> {
        let remote = join(dir, name);
        let e = self
            .rclone
            .stat(dir, name)?
            .with_context(|| format!("{remote} is missing right after its upload"))?;
        ensure!(
            e.size as u64 == size,
            "{remote} holds {} bytes after upload, expected {size}",
            e.size
        );
        let mut how = format!("size {size}");
        let mut checked = false;
        for algo in ["sha256", "sha1", "md5"] {
            if let Some(theirs) = e.hashes.get(algo).filter(|h| !h.is_empty()) {
                let ours = if algo == "sha256" {
                    sha256.to_owned()
                } else {
                    crate::fsutil::file_hash(local, algo)?
                };
                ensure!(
                    theirs.eq_ignore_ascii_case(&ours),
                    "{remote}: remote {algo} {theirs} differs from the local {ours}"
                );
                how = format!("size and {algo}");
                checked = true;
                break;
            }
        }
        if !checked && self.verify == Verify::Hash {
            tracing::warn!("{remote}: the backend reports no hash; checked the size only (use --verify download)");
        }
        if self.verify == Verify::Download {
            let stream = self.rclone.stream_file(&remote)?;
            let mut hr = HashingReader::new(stream);
            io::copy(&mut hr, &mut io::sink())
                .with_context(|| format!("downloading {remote} to verify it"))?;
            let (n, theirs) = hr.finish();
            ensure!(
                n == size && theirs == sha256,
                "{remote} downloads as {n} bytes sha256 {theirs}, expected {size} bytes sha256 {sha256}"
            );
            how.push_str(", downloaded and sha256 compared");
        }
        Ok(how)
    }

    fn retention(&self, published: &str) -> Result<Vec<String>> {
        let gens = self.layout.generations();
        let Some(entries) = self.rclone.list(&gens, false)? else {
            return Ok(vec![]);
        };
        let listing = Listing::from_entries(&entries);
        let pointed = read_pointer(&self.rclone, &self.layout)?.map(|p| p.generation);
        let plan = plan_retention(&listing, pointed.as_deref(), published, self.keep);
        for id in &plan.expired {
            // Sidecar first: the generation stops being "complete" before
            // its data goes; a kill in between leaves an orphan, not a lie.
            self.rclone.delete(&join(&gens, &format!("{id}.json")))?;
            fault_point("retention");
            if let Some((name, _)) = listing.archives.get(id) {
                self.rclone.delete(&join(&gens, name))?;
            }
        }
        for name in &plan.orphans {
            tracing::info!("removing {name}, left by an interrupted push");
            self.rclone.delete(&join(&gens, name))?;
        }
        Ok(plan.expired)
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

/// Keep the newest `keep` complete generations, the pointer's target and
/// the generation just published, whatever their age; everything of ours
/// older than `published` that is not a complete generation is an orphan.
pub fn plan_retention(
    listing: &Listing,
    pointed: Option<&str>,
    published: &str,
    keep: usize,
) -> RetentionPlan {
    let complete = listing.complete();
    let keep_from = complete.len().saturating_sub(keep);
    let expired = complete[..keep_from]
        .iter()
        .filter(|id| Some(id.as_str()) != pointed && id.as_str() != published)
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
        if stray.starts_with(&tmp_prefix) && !stray.ends_with(published) {
            orphans.push(stray.clone());
        }
    }
    RetentionPlan { expired, orphans }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    fn listing(names: &[&str]) -> Listing {
        let json: Vec<String> = names
            .iter()
            .map(|n| format!(r#"{{"Name":"{n}","Size":1,"IsDir":false}}"#))
            .collect();
        Listing::from_entries(
            &crate::remote::parse_lsjson(&format!("[{}]", json.join(","))).unwrap(),
        )
    }

    #[test]
    fn retention_keeps_newest_n_and_the_pointer_target() {
        let l = listing(&[
            "A.tar.zst",
            "A.json",
            "B.tar.zst",
            "B.json",
            "C.tar.zst",
            "C.json",
            "D.tar.zst",
            "D.json",
        ]);
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
    fn retention_removes_orphans_older_than_the_new_generation_only() {
        let l = listing(&[
            "A.tar.zst",
            "B.json",
            "C.tar.zst",
            "C.json",
            "E.tar.zst",
            "LATEST.json.tmp-A",
            "LATEST.json.tmp-C",
        ]);
        // E (an upload still running elsewhere, newer than C) is left alone.
        let plan = plan_retention(&l, Some("C"), "C", 3);
        assert!(plan.expired.is_empty());
        assert_eq!(
            plan.orphans,
            vec!["A.tar.zst", "B.json", "LATEST.json.tmp-A"]
        );
    }

    #[test]
    fn lock_excludes_a_second_holder_with_a_clear_message() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("push.lock");
        let first = lock(&p, Duration::ZERO).unwrap();
        let e = lock(&p, Duration::from_millis(200)).err().unwrap();
        assert!(
            e.to_string().starts_with("locked: another etcd2-push"),
            "{e}"
        );
        drop(first);
        assert!(lock(&p, Duration::ZERO).is_ok());
    }
}

//! The backup repository and its protocol: one machine's backups on the
//! remote, read and written only here. A [`Repo`] (an rclone and a
//! [`Layout`]) has the operations the jobs need and nothing else: read the
//! pointer (missing vs damaged), list, choose a generation (the one picker),
//! download and verify a generation (optionally teeing its bytes), upload
//! an archive and verify the copy, publish (sidecar, then a pointer that
//! never moves backwards, each read back), retain. The jobs hold a `Repo`
//! and spell no remote name themselves.
//!
//! [`format`] holds the formats, pure: layout, generation ids, sidecar and
//! pointer, listing, the owner check and the retention plan.
//! docs/remote-layout.md describes the repository for operators.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use crate::archive::Manifest;
use crate::digest::{BackendHash, Digests, HashType, Hasher, HashingReader};
use crate::rclone::{Rclone, RemotePath};

mod capture;
pub use capture::{write_replay_target, Coverage, FetchedChanges};
pub mod changes;
pub mod format;
mod point;
pub use point::TimePoint;

pub use format::{
    check_owner, check_sidecar, new_generation_id, parse_sidecar, plan_retention, pointer_state,
    valid_generation_id, Layout, Listing, Pointer, PointerState, RetentionPlan, Sidecar,
    VerifyRecord, GENERATIONS_DIR, POINTER_NAME, SIDECAR_FORMAT, VERIFIED_NAME,
};

/// How an uploaded copy is checked before it is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verify {
    /// Size and the strongest hash the backend reports (sha256, sha1, md5); where it
    /// reports none (crypt, webdav, S3 multipart uploads), download the copy and
    /// compare its sha256
    Auto,
    /// Size and the backend's hash only; where it reports none, the size alone (a
    /// warning says so): no download, at the cost of missing a same-size corruption
    Hash,
    /// Also download the copy again and compare its sha256 (works on every backend)
    Download,
}

/// What [`Repo::choose`] is asked for.
pub struct Choice<'a> {
    pub generation: Option<&'a str>,
    /// Fall back to the newest complete generation when LATEST.json cannot
    /// be followed.
    pub allow_older: bool,
    /// The original package's `<machine-id>_backup` copy.
    pub legacy_previous: bool,
}

/// What a reader will take.
pub enum Source {
    Generation(Box<Sidecar>),
    /// A plain `etcdctl backup` directory written by etcd2-backup-coreos.
    Legacy(RemotePath),
}

/// One machine's backups on the remote.
pub struct Repo {
    rclone: Rclone,
    layout: Layout,
}

impl Repo {
    pub fn new(rclone: Rclone, layout: Layout) -> Repo {
        Repo { rclone, layout }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The rclone under it, for what is not the repository's (a legacy
    /// directory's plain files).
    pub fn rclone(&self) -> &Rclone {
        &self.rclone
    }

    /// A configuration mistake in the endpoint, named before any call.
    pub fn check_endpoint(&self) -> Result<()> {
        self.rclone.check_endpoint(&self.layout.endpoint)
    }

    /// What LATEST.json holds, telling a missing pointer from a damaged one.
    /// Empty counts as missing: `rclone cat` of a missing S3 object exits 0
    /// and prints nothing, and we never write an empty pointer.
    pub fn pointer_state(&self) -> Result<PointerState> {
        Ok(pointer_state(
            self.rclone.cat_small(&self.layout.pointer())?,
            &self.layout.generations().to_string(),
        ))
    }

    /// Record what etcd2-verify found (VERIFIED.json), written beside and
    /// moved over as the pointer is, and read back.
    pub fn record_verify(&self, record: &VerifyRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record)?;
        let dst = self.layout.verified();
        let tmp = self
            .layout
            .base()
            .join(&format!("{VERIFIED_NAME}.tmp-{}", record.generation));
        self.rclone.put_bytes(&tmp, &bytes)?;
        if let Err(e) = self.rclone.replace(&tmp, &dst) {
            // Ours, and of no use now.
            let _ = self.rclone.delete(&tmp);
            return Err(e);
        }
        ensure!(
            self.rclone.cat(&dst)?.as_deref() == Some(bytes.as_slice()),
            "{dst} did not read back as written"
        );
        Ok(())
    }

    /// VERIFIED.json: None where no verification was recorded (empty reads
    /// as missing, as for the pointer); an error naming the file where it
    /// does not parse.
    pub fn last_verify(&self) -> Result<Option<VerifyRecord>> {
        let path = self.layout.verified();
        match self.rclone.cat(&path)? {
            None => Ok(None),
            Some(b) if b.is_empty() => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .with_context(|| format!("{path} is damaged")),
        }
    }

    /// LATEST.json; a missing pointer is None, a damaged one is reported and
    /// treated as missing (generations are still listed by their sidecars).
    pub fn pointer(&self) -> Result<Option<Pointer>> {
        match self.pointer_state()? {
            PointerState::Missing => Ok(None),
            PointerState::Damaged(e) => {
                tracing::warn!("{} is damaged ({e}); ignoring it", self.layout.pointer());
                Ok(None)
            }
            PointerState::Valid(p) => Ok(Some(p)),
        }
    }

    /// What the generations directory holds (empty when it does not exist).
    pub fn listing(&self) -> Result<Listing> {
        Ok(self
            .rclone
            .list(&self.layout.generations(), false)?
            .map(|e| Listing::from_entries(&e))
            .unwrap_or_default())
    }

    /// Generation `id`'s sidecar; an error says whether it is missing or
    /// damaged.
    pub fn sidecar(&self, id: &str) -> Result<Sidecar> {
        ensure!(
            valid_generation_id(id),
            "{id:?} is not a generation id (it would name an object outside {})",
            self.layout.generations()
        );
        let path = self.sidecar_path(id);
        let bytes = self
            .rclone
            .cat(&path)?
            .with_context(|| format!("generation {id}: sidecar {path} is missing"))?;
        parse_sidecar(id, &path.to_string(), &bytes)
    }

    /// The newest complete generation whose sidecar reads (one that is
    /// missing or damaged is passed over), if any; a remote that fails is
    /// an error, never "no backup".
    pub fn newest_readable(&self, listing: &Listing) -> Result<Option<Sidecar>> {
        for id in listing.complete().into_iter().rev() {
            let path = self.sidecar_path(&id);
            match self.rclone.cat_small(&path)? {
                crate::rclone::Small::Bytes(b) => match parse_sidecar(&id, &path.to_string(), &b) {
                    Ok(sc) => return Ok(Some(sc)),
                    Err(e) => tracing::debug!("passing over {id}: {e:#}"),
                },
                _ => tracing::debug!("passing over {id}: its sidecar is missing or too large"),
            }
        }
        Ok(None)
    }

    /// The newest complete generation whose revision is at or before
    /// `rev`: where a replay to `rev` starts (docs/point-in-time.md). One
    /// whose sidecar does not read is passed over, loudly.
    pub fn base_for_revision(&self, rev: u64) -> Result<Sidecar> {
        self.check_endpoint()?;
        let mut oldest: Option<(String, u64)> = None;
        for id in self.listing()?.complete().into_iter().rev() {
            let sc = match self.sidecar(&id) {
                Ok(sc) => sc,
                Err(e) => {
                    tracing::warn!("passing over generation {id}: {e:#}");
                    continue;
                }
            };
            // A v2 backup has no revision: nothing to replay onto.
            let Some(r) = sc.manifest.revision else {
                continue;
            };
            if r <= rev {
                tracing::info!("revision {rev}: replaying onto full backup {id}, at revision {r}");
                return Ok(sc);
            }
            oldest = Some((id, r));
        }
        match oldest {
            Some((id, r)) => bail!(
                "revision {rev} is before every full backup of this machine: the oldest, {id}, is \
                 at revision {r} (see --list)"
            ),
            None => Err(crate::exit::coded(
                crate::exit::EXIT_NO_BACKUP,
                format!("no complete v3 backup under {}", self.layout.base()),
            )),
        }
    }

    fn sidecar_path(&self, id: &str) -> RemotePath {
        self.layout.generations().join(&format!("{id}.json"))
    }

    /// Whether `dir` holds the original package's plain `member/wal` layout.
    fn is_legacy(&self, dir: &RemotePath) -> Result<bool> {
        let member = dir.join("member");
        Ok(self
            .rclone
            .list(&member, false)?
            .is_some_and(|e| e.iter().any(|x| x.is_dir && x.name == "wal")))
    }

    /// Which generation a reader takes, saying why when it is not the
    /// obvious one: `--generation`, else the one LATEST.json names, else
    /// (only with `--allow-older`, loudly) the newest complete one; the
    /// original package's plain layout where nothing of ours is there.
    /// etcd2-fetch and etcd2-verify both choose here, so verify proves what
    /// a restore gets.
    pub fn choose(&self, want: &Choice<'_>) -> Result<Source> {
        self.check_endpoint()?;
        let layout = &self.layout;
        let base = layout.base();
        if want.legacy_previous {
            let prev = layout.legacy_previous();
            ensure!(self.is_legacy(&prev)?, "no legacy backup at {prev}");
            return Ok(Source::Legacy(prev));
        }
        let listing = self.listing()?;
        let complete = listing.complete();
        if let Some(id) = want.generation {
            ensure!(
                valid_generation_id(id),
                "{id:?} is not a generation id (see --list)"
            );
            ensure!(
                complete.iter().any(|c| c == id),
                "generation {id} is not a complete backup under {base} (see --list)"
            );
            return Ok(Source::Generation(Box::new(self.sidecar(id)?)));
        }
        let pointer = layout.pointer();
        // Why LATEST.json cannot be followed, when it cannot.
        let problem = match self.pointer_state()? {
            PointerState::Valid(p) if complete.contains(&p.generation) => {
                match self.sidecar(&p.generation) {
                    Ok(sc) => {
                        let newer: Vec<&str> = complete
                            .iter()
                            .filter(|g| **g > p.generation)
                            .map(String::as_str)
                            .collect();
                        if !newer.is_empty() {
                            tracing::warn!(
                                "{pointer} names {}, but newer complete generations exist \
                                 unpublished ({}): a push failed at its last step, or another \
                                 writer uses this machine-id. Fetching {} as published; see \
                                 --list and --generation",
                                p.generation,
                                newer.join(", "),
                                p.generation
                            );
                        }
                        return Ok(Source::Generation(Box::new(sc)));
                    }
                    Err(e) => format!(
                        "{pointer} names {}, whose sidecar is damaged ({e:#})",
                        p.generation
                    ),
                }
            }
            PointerState::Valid(p) => format!(
                "{pointer} names {}, which is not a complete generation (deleted?)",
                p.generation
            ),
            PointerState::Damaged(e) => format!("{pointer} is damaged ({e})"),
            PointerState::Missing if complete.is_empty() => {
                if self.is_legacy(&base)? {
                    return Ok(Source::Legacy(base));
                }
                return Err(crate::exit::coded(
                    crate::exit::EXIT_NO_BACKUP,
                    format!(
                        "no backup yet for machine-id {} under {} (no {POINTER_NAME}, no complete \
                         generation, no legacy member/ dir)",
                        layout.machine_id, layout.endpoint,
                    ),
                ));
            }
            PointerState::Missing => {
                format!("{pointer} is missing: no backup was published here")
            }
        };
        let Some(sc) = self.newest_readable(&listing)? else {
            bail!(
                "{problem}, and no complete generation with a readable sidecar is left under {base}"
            );
        };
        if !want.allow_older {
            bail!(
                "{problem}; the newest complete generation is {} (taken {}): pass --generation {} \
                 or --allow-older to fetch it",
                sc.generation,
                sc.manifest.created_at,
                sc.generation
            );
        }
        tracing::warn!(
            "{problem}; --allow-older: fetching the newest complete generation {} (taken {}) \
             instead",
            sc.generation,
            sc.manifest.created_at
        );
        Ok(Source::Generation(Box::new(sc)))
    }

    /// Download generation `sc` and verify every byte: against its manifest
    /// (the archive reader), and its size, sha256 and manifest against the
    /// sidecar. Extracted into `into` when given; every byte read is also
    /// written to `tee` when given (the caller keeps it only on success).
    pub fn download(
        &self,
        sc: &Sidecar,
        into: Option<&Path>,
        tee: Option<&mut crate::sink::Sink>,
    ) -> Result<Manifest> {
        let remote = self.layout.generations().join(&sc.archive);
        tracing::info!(
            "fetching generation {} ({} backup of member {:?}, taken {}, {} bytes) from {remote}",
            sc.generation,
            sc.manifest.api,
            sc.manifest.member_name,
            sc.manifest.created_at,
            sc.size
        );
        let stream = crate::progress::ProgressReader::new(
            self.rclone.stream_file(&remote)?,
            format!("downloading {}", sc.generation),
            Some(sc.size),
        );
        let verified = match tee {
            Some(sink) => {
                let mut tee = crate::sink::Tee::new(stream, &mut *sink);
                let verified = crate::archive::verify_stream(&mut tee, into);
                match (verified, tee.into_parts().2) {
                    // The copy failed, not the data: name the copy.
                    (Err(_), Some(e)) => {
                        Err(crate::sink::WriteFailed::new(sink.describe(), e).into())
                    }
                    (verified, _) => verified,
                }
            }
            None => crate::archive::verify_stream(stream, into),
        };
        let (manifest, size, sha256) = verified.map_err(|e| {
            // The download (rclone died, a bound was hit) or the data (it
            // failed verification), said as such.
            if crate::sink::is_write_failure(&e) {
                e.context(format!("fetching generation {}", sc.generation))
            } else if crate::cmd::is_child_failure(&e) {
                self.rclone.explain(e.context(format!(
                    "downloading generation {} from {remote}",
                    sc.generation
                )))
            } else {
                e.context(format!(
                    "generation {} at {remote} failed verification",
                    sc.generation
                ))
            }
        })?;
        check_sidecar(sc, &manifest, size, &sha256)?;
        Ok(manifest)
    }

    /// Which hash the backend of the generations directory reports for
    /// what we upload.
    pub fn compared_hash(&self) -> Result<BackendHash> {
        self.rclone.compared_hash(&self.layout.generations())
    }

    /// Start uploading a new generation's archive `name` (`size` bytes when
    /// known); the upload is aborted on the remote if we are stopped
    /// meanwhile, and by [`Upload::abandon`] when the caller gives up.
    pub fn upload(&self, name: &str, size: Option<u64>) -> Result<Upload> {
        let path = self.layout.generations().join(name);
        let writer = self.rclone.rcat(&path, size)?;
        // Stopped mid-upload (SIGTERM): rclone gets SIGTERM and aborts its
        // upload, but 1.75 may do so with a context already cancelled. The
        // signal handler runs this once our children ended.
        let on_stop = {
            let (rclone, path) = (self.rclone.clone(), path.clone());
            crate::scratch::OnStop::new(move || {
                let _one = ABANDONING.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = rclone.abandon_upload(&path) {
                    warn_unaborted(&path, &e);
                }
            })
        };
        Ok(Upload {
            writer,
            path,
            _on_stop: on_stop,
        })
    }

    /// Abort what is left of our unfinished upload to `path`: an S3
    /// multipart upload holds the etcd data it was sent, billed, until
    /// someone aborts it. Best effort, after a failure that is the error to
    /// report: what is left, the next push's [`Repo::sweep_uploads`]
    /// removes. Stopped by a signal, the handler's hook does it instead,
    /// once our children ended (an upload failing then is the stop's
    /// doing).
    fn abandon(&self, path: &RemotePath) {
        use crate::scratch::stopping;
        if stopping() {
            return;
        }
        let _one = ABANDONING.lock().unwrap_or_else(|e| e.into_inner());
        if stopping() {
            return;
        }
        if let Err(e) = self.rclone.abandon_upload(path) {
            // Cut short by a stop (the handler stops our rclone): the
            // handler tries again once this returns.
            if !stopping() {
                warn_unaborted(path, &e);
            }
        }
    }

    /// Abort the S3 multipart uploads under this machine's generations
    /// that a killed push left (they hold every key of etcd, are billed,
    /// and no lifecycle rule need exist): those started longer ago than
    /// --transfer-timeout, which no live push's upload can be. Only this
    /// machine's prefix; a failure is a warning (ListMultipartUploads may
    /// not be granted), never a reason not to back up.
    pub fn sweep_uploads(&self) {
        let gens = self.layout.generations();
        match self.rclone.sweep_uploads(&gens, self.rclone.bounds.transfer) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "aborted {n} multipart upload(s) under {gens} left by an interrupted push"
            ),
            Err(e) => tracing::warn!(
                "could not remove the multipart uploads an interrupted push left under {gens}: {e:#}"
            ),
        }
    }

    /// The uploaded archive `name` is what we sent: its size and the
    /// strongest hash the backend reports (`only`: the one asked for), and
    /// with `verify` download (or auto, where it reports none) its sha256
    /// downloaded. Says how it was checked.
    pub fn verify_upload(
        &self,
        name: &str,
        ours: &Digests,
        only: Option<HashType>,
        verify: Verify,
    ) -> Result<String> {
        self.verify_copy(&self.layout.generations().join(name), ours, only, verify)
    }

    /// [`Repo::verify_upload`] of any object we uploaded.
    fn verify_copy(
        &self,
        remote: &RemotePath,
        ours: &Digests,
        only: Option<HashType>,
        verify: Verify,
    ) -> Result<String> {
        let size = ours.size;
        let e = self
            .rclone
            .stat(remote, only)?
            .with_context(|| format!("{remote} is missing right after its upload"))?;
        ensure!(
            e.size as u64 == size,
            "{remote} holds {} bytes after upload, expected {size}",
            e.size
        );
        let mut how = format!("size {size}");
        let mut checked = false;
        for algo in HashType::ALL {
            if let Some(theirs) = e.hashes.get(algo.name()).filter(|h| !h.is_empty()) {
                let ours = ours.get(algo).context("internal: hash not computed")?;
                ensure!(
                    theirs.eq_ignore_ascii_case(ours),
                    "{remote}: remote {} {theirs} differs from the uploaded bytes' {ours}",
                    algo.name()
                );
                how = format!("size and {}", algo.name());
                checked = true;
                break;
            }
        }
        if !checked && verify == Verify::Hash {
            tracing::warn!("{remote}: the backend reports no hash; checked the size only (--verify hash; auto would download it)");
        }
        if verify == Verify::Download || (!checked && verify == Verify::Auto) {
            let stream = self.rclone.stream_file(remote)?;
            let mut hr = HashingReader::new(stream, Hasher::new());
            io::copy(&mut hr, &mut io::sink())
                .with_context(|| format!("downloading {remote} to verify it"))?;
            let theirs = hr.finish();
            ensure!(
                theirs.size == size && theirs.sha256 == ours.sha256,
                "{remote} downloads as {} bytes sha256 {}, expected {size} bytes sha256 {}",
                theirs.size,
                theirs.sha256,
                ours.sha256
            );
            how.push_str(", downloaded and sha256 compared");
        }
        Ok(how)
    }

    /// Remove archive `name` we uploaded but will not publish (best effort:
    /// an archive without a sidecar is an orphan the next push removes).
    pub fn discard(&self, name: &str) {
        let _ = self.rclone.delete(&self.layout.generations().join(name));
    }

    /// May `generation` (of manifest `m`) be published now? Not over
    /// another member's backups (`owner`: checked once, before the
    /// sidecar), and never moving LATEST.json backwards to an older
    /// generation than it names (`force` overrides both, loudly).
    pub fn check_publishable(
        &self,
        m: &Manifest,
        generation: &str,
        owner: bool,
        force: bool,
    ) -> Result<()> {
        let prev = match self.pointer_state()? {
            PointerState::Missing => return Ok(()),
            PointerState::Valid(p) => p,
            PointerState::Damaged(why) => {
                // Whose backups these are is also in the newest sidecar: a
                // damaged pointer must not switch the owner check off.
                tracing::warn!(
                    "{} is damaged ({why}); checking against the newest complete generation \
                     instead, and this push rewrites the pointer",
                    self.layout.pointer()
                );
                match self.newest_readable(&self.listing()?)? {
                    Some(sc) => Pointer::of(&sc),
                    None => return Ok(()),
                }
            }
        };
        if owner {
            check_owner(&prev, m, &self.layout.base().to_string(), force)?;
        }
        if prev.generation.as_str() >= generation {
            let msg = format!(
                "{} already names generation {}, newer than this push's {generation}: another \
                 push for this machine-id published meanwhile (a cloned machine-id, or two lock \
                 files?), or this host's clock is behind (or was ahead when that was pushed)",
                self.layout.pointer(),
                prev.generation
            );
            if !force {
                bail!("{msg}. Not moving the pointer backwards; {generation} stays unpublished (--force publishes it)");
            }
            tracing::warn!("--force: {msg}; publishing {generation} all the same");
        }
        Ok(())
    }

    /// Publish the generation `sidecar` describes, whose archive is uploaded
    /// and verified: the owner and order checks, its sidecar (read back:
    /// from here it is complete), the checks again (another writer may
    /// have published meanwhile), then LATEST.json, written beside and moved
    /// over (a rename on file backends, one PUT on object stores; never a
    /// half-written pointer), read back.
    pub fn publish(&self, sidecar: &Sidecar, force: bool) -> Result<()> {
        let (m, generation) = (&sidecar.manifest, sidecar.generation.as_str());
        if let Err(e) = self.check_publishable(m, generation, true, force) {
            self.discard(&sidecar.archive);
            return Err(e);
        }
        let side_bytes = serde_json::to_vec_pretty(sidecar)?;
        let side_path = self.sidecar_path(generation);
        self.rclone.put_bytes(&side_path, &side_bytes)?;
        ensure!(
            self.rclone.cat(&side_path)?.as_deref() == Some(side_bytes.as_slice()),
            "sidecar {side_path} did not read back as written"
        );
        crate::scratch::fault_point("before-pointer");

        self.check_publishable(m, generation, false, force)?;
        let ptr_bytes = serde_json::to_vec_pretty(&Pointer::of(sidecar))?;
        let tmp = self
            .layout
            .generations()
            .join(&format!("{POINTER_NAME}.tmp-{generation}"));
        self.rclone.put_bytes(&tmp, &ptr_bytes)?;
        self.rclone.replace(&tmp, &self.layout.pointer())?;
        ensure!(
            self.rclone.cat(&self.layout.pointer())?.as_deref() == Some(ptr_bytes.as_slice()),
            "{} did not read back as written",
            self.layout.pointer()
        );
        tracing::debug!("published {generation} as {}", self.layout.pointer());
        Ok(())
    }

    /// Retention after publishing `published`: the plan
    /// ([`plan_retention`], newest `keep` kept), carried out; returns the
    /// expired generations.
    pub fn retain(&self, published: &str, keep: usize) -> Result<Vec<String>> {
        let gens = self.layout.generations();
        let Some(entries) = self.rclone.list(&gens, false)? else {
            return Ok(vec![]);
        };
        let listing = Listing::from_entries(&entries);
        let pointed = self.pointer()?.map(|p| p.generation);
        let plan = plan_retention(&listing, pointed.as_deref(), published, keep);
        for id in &plan.expired {
            // Sidecar first: the generation stops being "complete" before
            // its data goes; a kill in between leaves an orphan, not a lie.
            self.rclone.delete(&self.sidecar_path(id))?;
            crate::scratch::fault_point("retention");
            if let Some((name, _)) = listing.archives.get(id) {
                self.rclone.delete(&gens.join(name))?;
            }
        }
        for name in &plan.orphans {
            tracing::info!("removing {name}, left by an interrupted push");
            self.rclone.delete(&gens.join(name))?;
        }
        Ok(plan.expired)
    }

    /// After retention: LATEST.json still names `generation` and it is
    /// still complete, or we did not publish it (another writer won).
    /// Returns how many complete generations there are.
    pub fn confirm_published(&self, generation: &str) -> Result<usize> {
        let now = self.pointer()?.map(|p| p.generation);
        ensure!(
            now.as_deref() == Some(generation),
            "{} names {} instead of {generation} after publishing it: another push for this \
             machine-id is writing here too (a cloned machine-id, or two lock files?)",
            self.layout.pointer(),
            now.as_deref().unwrap_or("nothing")
        );
        let complete = self.listing()?.complete();
        ensure!(
            complete.iter().any(|g| g == generation),
            "generation {generation} was deleted right after it was published: another push \
             for this machine-id is writing here too (a cloned machine-id, or two lock files?)"
        );
        Ok(complete.len())
    }
}

/// Every machine's backups under one endpoint: a monitoring host's view
/// (`etcd2-fetch --list-machines`). Its repositories share its rclone, so a
/// run that reads them all still has one rclone process.
pub struct Fleet {
    rclone: Rclone,
    endpoint: String,
    root: RemotePath,
}

impl Fleet {
    pub fn new(rclone: Rclone, endpoint: &str) -> Result<Fleet> {
        let parsed = crate::rclone::Endpoint::parse(endpoint)?;
        Ok(Fleet {
            rclone,
            endpoint: parsed.as_str().to_owned(),
            root: RemotePath::root(&parsed),
        })
    }

    /// The endpoint (for messages).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The machine-ids with a folder under the endpoint, sorted. Other
    /// names are not ours (the original package's `<machine-id>_backup`
    /// copies among them) and are passed over.
    pub fn machines(&self) -> Result<Vec<String>> {
        self.rclone.check_endpoint(&self.endpoint)?;
        let mut ids: Vec<String> = self
            .rclone
            .list(&self.root, false)?
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.is_dir && crate::node::validate_machine_id(&e.name).is_ok())
            .map(|e| e.name)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Machine `id`'s repository, through the fleet's rclone.
    pub fn repo(&self, id: &str) -> Result<Repo> {
        Ok(Repo::new(
            self.rclone.clone(),
            Layout::new(&self.endpoint, id)?,
        ))
    }
}

/// An archive being uploaded into the generations directory: write it,
/// then [`Upload::finish`]; or [`Upload::abandon`] it.
pub struct Upload {
    writer: crate::rclone::Uploader,
    path: RemotePath,
    _on_stop: crate::scratch::OnStop,
}

impl Upload {
    /// Where it goes (for messages).
    pub fn path(&self) -> &RemotePath {
        &self.path
    }

    /// The upload ended cleanly: rclone stored the whole object.
    pub fn finish(self, repo: &Repo) -> Result<()> {
        let Upload { writer, path, .. } = self;
        if let Err(e) = writer.finish() {
            repo.abandon(&path);
            return Err(repo
                .rclone
                .explain(e.context(format!("uploading to {path}"))));
        }
        Ok(())
    }

    /// Give up: the upload is cut off mid-body (rclone never stores it as
    /// a whole object) and what is left of it on the remote aborted.
    pub fn abandon(self, repo: &Repo) {
        let Upload { writer, path, .. } = self;
        drop(writer);
        repo.abandon(&path);
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// One abort of an unfinished upload at a time: a stop's handler (its own
/// thread) and the main thread's failure path would otherwise each stop the
/// rclone rcd the other's calls go to (seen with rclone 1.60 under
/// `systemctl stop`: "rclone rcd did not answer ... Connection reset by
/// peer", the abort not made).
static ABANDONING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn warn_unaborted(remote_archive: &RemotePath, e: &anyhow::Error) {
    tracing::warn!(
        "could not abort the unfinished upload to {remote_archive} ({e:#}); the next \
         push removes it once it is older than --transfer-timeout"
    );
}

//! The `etcd2-push` job: publish one archive as a new immutable generation,
//! verified on the remote before the pointer moves, then apply retention.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};

use crate::archive::{self, Manifest};
use crate::cli::Input;
use crate::digest::{Digests, Hasher, HashingReader};
use crate::rclone::{join, Rclone, Small};
use crate::repo::{
    check_owner, new_generation_id, plan_retention, read_pointer, read_pointer_checked, Layout,
    Listing, Pointer, PointerState, Sidecar, POINTER_NAME, SIDECAR_FORMAT,
};

/// How the uploaded copy is checked before it is published.
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

/// One abort of an unfinished upload at a time: a stop's handler (its own
/// thread) and the main thread's failure path would otherwise each stop the
/// rclone rcd the other's calls go to (seen with rclone 1.60 under
/// `systemctl stop`: "rclone rcd did not answer ... Connection reset by
/// peer", the abort not made).
static ABANDONING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn warn_unaborted(remote_archive: &str, e: &anyhow::Error) {
    tracing::warn!(
        "could not abort the unfinished upload to {remote_archive} ({e:#}); the next \
         push removes it once it is older than --transfer-timeout"
    );
}

pub struct PushJob {
    pub input: Input,
    pub rclone: Rclone,
    pub layout: Layout,
    pub keep: usize,
    pub verify: Verify,
    pub force: bool,
    pub lock_file: PathBuf,
    pub lock_wait: Duration,
    /// Also keep the archive here (written as it is read, renamed into
    /// place only once the generation is published).
    pub local_copy: Option<PathBuf>,
}

/// The local copy of what is pushed, written as it is read: a tee, not a
/// stage. A write error (a full disk) drops the copy with a warning; the
/// push, which is what matters, goes on.
struct LocalCopy<R> {
    inner: R,
    copy: std::rc::Rc<std::cell::RefCell<Option<crate::fsutil::AtomicFile>>>,
    path: PathBuf,
}

impl<R: Read> Read for LocalCopy<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut slot = self.copy.borrow_mut();
        if let Some(f) = slot.as_mut() {
            if let Err(e) = f.write_all(&buf[..n]) {
                tracing::warn!(
                    "not keeping the local copy {}: {e}; the push goes on",
                    self.path.display()
                );
                *slot = None;
            }
        }
        Ok(n)
    }
}

/// What a push published (`etcd2-push --json`).
#[derive(Debug, serde::Serialize)]
pub struct Pushed {
    pub generation: String,
    pub size: u64,
    pub sha256: String,
    pub deleted: Vec<String>,
    pub manifest: Manifest,
    /// Complete generations on the remote after retention.
    pub generations: usize,
}

impl Pushed {
    /// What the textfile metrics say of a push.
    pub fn samples(&self) -> Vec<crate::metrics::Sample> {
        use crate::metrics::Sample;
        let m = &self.manifest;
        vec![
            Sample::gauge(
                "etcd2_backup_generations",
                "Complete generations on the remote after retention.",
                self.generations as f64,
            ),
            Sample::gauge(
                "etcd2_backup_pushed_bytes",
                "Size of the archive pushed last.",
                self.size as f64,
            ),
            Sample {
                name: "etcd2_backup_info",
                help: "The backup published last.",
                labels: vec![
                    ("api", m.api.to_string()),
                    ("codec", m.codec.to_string()),
                    ("member", m.member_name.clone()),
                    ("cluster", m.cluster_id.clone()),
                    ("generation", self.generation.clone()),
                ],
                value: 1.0,
            },
        ]
    }
}

/// Passes reads through while writing them to `out` (the upload). A
/// failed write is kept apart, so that the error names the upload, not the
/// archive being read.
struct TeeReader<R, W> {
    inner: R,
    out: W,
    out_error: Option<io::Error>,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let shown = io::Error::new(e.kind(), e.to_string());
            self.out_error = Some(e);
            return Err(shown);
        }
        Ok(n)
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
                    return Err(crate::cli::coded(
                        crate::cli::EXIT_LOCKED,
                        format!(
                            "locked: another etcd2-push (pid {}) holds {}; waited {} (--lock-wait)",
                            holder.trim(),
                            path.display(),
                            humantime::format_duration(wait)
                        ),
                    ));
                }
                file = f;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
}

impl PushJob {
    pub fn run(&self) -> Result<Pushed> {
        let started = Instant::now();
        let _lock = lock(&self.lock_file, self.lock_wait)?;
        // The archive read exactly once, as a stream: stdin (a pipe from
        // etcd2-snapshot) or the given file. What is verified, hashed and
        // uploaded are the same bytes, uploaded while they are read:
        // nothing is spooled to disk, whatever the size.
        let shown = match &self.input {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "stdin".to_owned(),
        };
        let (source, size): (Box<dyn Read>, Option<u64>) = match &self.input {
            Input::File(p) => {
                let f = std::fs::File::open(p).with_context(|| format!("opening {shown}"))?;
                let size = f
                    .metadata()
                    .with_context(|| format!("reading the size of {shown}"))?
                    .len();
                (Box::new(f), Some(size))
            }
            Input::Stdin => (Box::new(io::stdin().lock()), None),
        };
        let copy = std::rc::Rc::new(std::cell::RefCell::new(match &self.local_copy {
            // Claimed before anything is uploaded: a directory that is not
            // there fails now, not after the upload.
            Some(p) => Some(
                crate::fsutil::AtomicFile::create(p, 0o600)
                    .with_context(|| format!("--local-copy {}", p.display()))?,
            ),
            None => None,
        }));
        let source: Box<dyn Read> = match &self.local_copy {
            Some(p) => Box::new(LocalCopy {
                inner: source,
                copy: std::rc::Rc::clone(&copy),
                path: p.clone(),
            }),
            None => source,
        };
        let mut source = BufReader::with_capacity(1 << 20, source);
        // The file is open (a file replaced from here on is not what we
        // push); a configuration mistake is named before its content.
        self.rclone.check_endpoint(&self.layout.endpoint)?;
        let head = source
            .fill_buf()
            .with_context(|| format!("reading {shown}"))?;
        ensure!(
            !head.is_empty(),
            "{shown} is empty: no archive to push (did the producer fail?)"
        );
        // The codec is known from the first bytes; the archive's name needs it.
        let codec = archive::Codec::sniff(head).with_context(|| {
            format!("{shown} is not a whole etcd2-backup archive: not gzip or zstd data")
        })?;

        let generation = new_generation_id(SystemTime::now());
        let gens = self.layout.generations();
        let archive_name = format!("{generation}.{}", codec.extension());
        let remote_archive = join(&gens, &archive_name);
        tracing::debug!("uploading {shown} as generation {generation} to {gens}");
        // Hash (besides sha256) only what the backend will report, and ask it
        // for that one alone: the local backend reads the file once per type.
        let compared = self.rclone.compared_hash(&gens)?;
        self.sweep_uploads(&gens);
        let upload = self.rclone.rcat(&remote_archive, size)?;
        // Stopped mid-upload (SIGTERM): rclone gets SIGTERM and aborts its
        // upload, but 1.75 may do so with a context already cancelled. The
        // signal handler runs this once our children ended.
        let on_stop = {
            let (rclone, path) = (self.rclone.clone(), remote_archive.clone());
            crate::scratch::OnStop::new(move || {
                let _one = ABANDONING.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = rclone.abandon_upload(&path) {
                    warn_unaborted(&path, &e);
                }
            })
        };
        let mut tee = TeeReader {
            inner: HashingReader::new(
                crate::progress::ProgressReader::new(
                    source,
                    format!("uploading {generation}"),
                    size,
                ),
                match compared {
                    // Not known: every hash a backend may report.
                    None => Hasher::with_backend_hashes(),
                    Some(algo) => Hasher::for_backend(Some(algo.unwrap_or("none"))),
                },
            ),
            out: upload,
            out_error: None,
        };
        let manifest = archive::read_verified(&mut tee, None);
        let TeeReader {
            inner,
            out: upload,
            out_error,
        } = tee;
        let manifest = match (manifest, out_error) {
            (Ok(m), _) => m,
            (Err(_), Some(e)) => {
                drop(upload);
                self.abandon_upload(&remote_archive);
                let e = anyhow::Error::new(e).context(format!("uploading to {remote_archive}"));
                return Err(self.rclone.explain(e));
            }
            (Err(e), None) => {
                // Dropping the upload unfinished aborts it before rclone
                // sees an end: nothing whole is left under that name.
                drop(upload);
                self.abandon_upload(&remote_archive);
                return Err(e.context(format!("{shown} is not a whole etcd2-backup archive")));
            }
        };
        let digests = inner.finish();
        let size = digests.size;
        if let Err(e) = upload.finish() {
            self.abandon_upload(&remote_archive);
            return Err(self
                .rclone
                .explain(e.context(format!("uploading to {remote_archive}"))));
        }
        drop(on_stop);
        tracing::debug!(
            "verified {shown}: {} backup of member {:?} taken {} ({size} bytes, sha256 {})",
            manifest.api,
            manifest.member_name,
            manifest.created_at,
            &digests.sha256[..16]
        );
        crate::scratch::fault_point("after-upload");
        let how = self.verify_remote(&gens, &archive_name, &digests, compared.flatten())?;
        tracing::debug!("remote copy verified ({how})");

        // Refuse before the sidecar makes the upload a complete generation
        // under this machine-id.
        let base = self.layout.base();
        if let Err(e) = self.check_publishable(&manifest, &generation, true) {
            // Best effort: an archive without a sidecar is an orphan that the
            // next push removes anyway.
            let _ = self.rclone.delete(&remote_archive);
            return Err(e);
        }

        let sha256 = digests.sha256.clone();
        let sidecar = Sidecar {
            format: SIDECAR_FORMAT,
            generation: generation.clone(),
            archive: archive_name.clone(),
            size,
            sha256: sha256.clone(),
            codec: manifest.codec,
            pushed_at: crate::clock::rfc3339(SystemTime::now()),
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
        crate::scratch::fault_point("before-pointer");

        // Again, just before the pointer moves: another writer for this
        // machine-id may have published meanwhile.
        self.check_publishable(&manifest, &generation, false)?;
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
        self.rclone.replace(&tmp, &self.layout.pointer())?;
        ensure!(
            self.rclone.cat(&self.layout.pointer())?.as_deref() == Some(ptr_bytes.as_slice()),
            "{} did not read back as written",
            self.layout.pointer()
        );
        tracing::debug!("published {generation} as {}", self.layout.pointer());
        crate::scratch::fault_point("after-pointer");

        let deleted = self.retention(&generation).with_context(|| {
            format!("generation {generation} is published, but retention failed")
        })?;
        let generations = self.confirm_published(&generation)?;
        if let (Some(f), Some(p)) = (copy.borrow_mut().take(), &self.local_copy) {
            match f.commit() {
                Ok(()) => tracing::debug!("kept the published archive as {}", p.display()),
                Err(e) => tracing::warn!("not keeping the local copy {}: {e:#}", p.display()),
            }
        }
        // The one line a successful push writes at info (the steps are at
        // debug): the journal gets one line per push, not a dozen.
        tracing::info!(
            "pushed {generation} ({size} bytes, sha256 {}, remote copy verified ({how})) to {base} in {:.1}s; deleted {}",
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
            manifest,
            generations,
        })
    }

    /// Abort what is left of our unfinished upload: an S3 multipart upload
    /// holds the etcd data it was sent, billed, until someone aborts it.
    /// Best effort, after a failure that is the error to report: what is
    /// left, the next push's [`PushJob::sweep_uploads`] removes.
    /// Stopped by a signal, the handler's [`crate::scratch::OnStop`] does
    /// it instead, once our children ended (an upload failing then is the
    /// stop's doing).
    fn abandon_upload(&self, remote_archive: &str) {
        use crate::scratch::stopping;
        if stopping() {
            return;
        }
        let _one = ABANDONING.lock().unwrap_or_else(|e| e.into_inner());
        if stopping() {
            return;
        }
        if let Err(e) = self.rclone.abandon_upload(remote_archive) {
            // Cut short by a stop (the handler stops our rclone): the
            // handler tries again once this returns.
            if !stopping() {
                warn_unaborted(remote_archive, &e);
            }
        }
    }

    /// Abort the S3 multipart uploads under this machine's generations
    /// that a killed push left (they hold every key of etcd, are billed,
    /// and no lifecycle rule need exist): those started longer ago than
    /// --transfer-timeout, which no live push's upload can be. Only this
    /// machine's prefix; a failure is a warning (ListMultipartUploads may
    /// not be granted), never a reason not to back up.
    fn sweep_uploads(&self, gens: &str) {
        match self.rclone.sweep_uploads(gens, self.rclone.bounds.transfer) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "aborted {n} multipart upload(s) under {gens} left by an interrupted push"
            ),
            Err(e) => tracing::warn!(
                "could not remove the multipart uploads an interrupted push left under {gens}: {e:#}"
            ),
        }
    }

    /// May `generation` be published now? Not over another member's
    /// backups (`owner`: checked once, before the sidecar), and never
    /// moving LATEST.json backwards to an older generation than it names.
    fn check_publishable(&self, m: &Manifest, generation: &str, owner: bool) -> Result<()> {
        let prev = match read_pointer_checked(&self.rclone, &self.layout)? {
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
                match self.newest_sidecar()? {
                    Some(sc) => Pointer::of(&sc),
                    None => return Ok(()),
                }
            }
        };
        if owner {
            check_owner(&prev, m, &self.layout.base(), self.force)?;
        }
        if prev.generation.as_str() >= generation {
            let msg = format!(
                "{} already names generation {}, newer than this push's {generation}: another \
                 push for this machine-id published meanwhile (a cloned machine-id, or two lock \
                 files?), or this host's clock is behind (or was ahead when that was pushed)",
                self.layout.pointer(),
                prev.generation
            );
            if !self.force {
                bail!("{msg}. Not moving the pointer backwards; {generation} stays unpublished (--force publishes it)");
            }
            tracing::warn!("--force: {msg}; publishing {generation} all the same");
        }
        Ok(())
    }

    /// The newest complete generation's sidecar that reads, if any.
    fn newest_sidecar(&self) -> Result<Option<Sidecar>> {
        let gens = self.layout.generations();
        let listing = self
            .rclone
            .list(&gens, false)?
            .map(|e| Listing::from_entries(&e))
            .unwrap_or_default();
        for id in listing.complete().into_iter().rev() {
            if let Small::Bytes(b) = self.rclone.cat_small(&join(&gens, &format!("{id}.json")))? {
                if let Ok(sc) = serde_json::from_slice::<Sidecar>(&b) {
                    return Ok(Some(sc));
                }
            }
        }
        Ok(None)
    }

    /// After retention: LATEST.json still names our generation and it is
    /// still complete, or we did not publish it (another writer won).
    /// Returns how many complete generations there are.
    fn confirm_published(&self, generation: &str) -> Result<usize> {
        let now = read_pointer(&self.rclone, &self.layout)?.map(|p| p.generation);
        ensure!(
            now.as_deref() == Some(generation),
            "{} names {} instead of {generation} after publishing it: another push for this \
             machine-id is writing here too (a cloned machine-id, or two lock files?)",
            self.layout.pointer(),
            now.as_deref().unwrap_or("nothing")
        );
        let listing = self
            .rclone
            .list(&self.layout.generations(), false)?
            .map(|e| Listing::from_entries(&e))
            .unwrap_or_default();
        ensure!(
            listing.complete().iter().any(|g| g == generation),
            "generation {generation} was deleted right after it was published: another push \
             for this machine-id is writing here too (a cloned machine-id, or two lock files?)"
        );
        Ok(listing.complete().len())
    }

    fn verify_remote(
        &self,
        dir: &str,
        name: &str,
        ours: &Digests,
        only: Option<&str>,
    ) -> Result<String> {
        let remote = join(dir, name);
        let size = ours.size;
        let e = self
            .rclone
            .stat(dir, name, only)?
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
                let ours = ours.get(algo).context("internal: hash not computed")?;
                ensure!(
                    theirs.eq_ignore_ascii_case(ours),
                    "{remote}: remote {algo} {theirs} differs from the uploaded bytes' {ours}"
                );
                how = format!("size and {algo}");
                checked = true;
                break;
            }
        }
        if !checked && self.verify == Verify::Hash {
            tracing::warn!("{remote}: the backend reports no hash; checked the size only (--verify hash; auto would download it)");
        }
        if self.verify == Verify::Download || (!checked && self.verify == Verify::Auto) {
            let stream = self.rclone.stream_file(&remote)?;
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
            crate::scratch::fault_point("retention");
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

#[cfg(test)]
mod tests {
    use super::*;

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

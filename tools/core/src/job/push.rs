//! The `etcd2-push` job: publish one archive as a new immutable generation,
//! verified on the remote before the pointer moves, then apply retention.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Context, Result};

use crate::archive::{self, Manifest};
use crate::digest::{Digests, Hasher, HashingReader};
use crate::sink::{Input, Tee};
use crate::store::{new_generation_id, Repo, Sidecar, SIDECAR_FORMAT};

pub use crate::store::Verify;

pub struct PushJob {
    pub input: Input,
    pub repo: Repo,
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

/// What the textfile metrics say of a push.
impl crate::metrics::Measured for Pushed {
    fn samples(&self) -> Vec<crate::metrics::Sample> {
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
            crate::metrics::created(m.created_unix),
            // No generation label: it would start a new series every push.
            Sample {
                name: "etcd2_backup_info",
                help: "The backup published last.",
                labels: vec![
                    ("api", m.api.to_string()),
                    ("codec", m.codec.to_string()),
                    ("member", m.member_name.clone()),
                    ("cluster", m.cluster_id.clone()),
                ],
                value: 1.0,
            },
        ]
    }
}

impl PushJob {
    pub fn run(&self) -> Result<Pushed> {
        let started = Instant::now();
        let _lock = crate::fsutil::lock(&self.lock_file, self.lock_wait, "etcd2-push")?;
        let (source, size, shown) = self.open_input()?;
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
        let (generation, archive_name, manifest, digests, how) =
            self.upload_verified(source, size, &shown)?;
        let sidecar = Sidecar {
            format: SIDECAR_FORMAT,
            generation: generation.clone(),
            archive: archive_name,
            size: digests.size,
            sha256: digests.sha256.clone(),
            codec: manifest.codec,
            pushed_at: crate::clock::rfc3339(SystemTime::now()),
            pushed_from: crate::node::hostname(),
            manifest,
        };
        self.repo.publish(&sidecar, self.force)?;
        crate::scratch::fault_point("after-pointer");

        let deleted = self.repo.retain(&generation, self.keep).with_context(|| {
            format!("generation {generation} is published, but retention failed")
        })?;
        // The change segments no kept generation needs go with them; a
        // failure here loses nothing (they are removed next time).
        let segments = self.repo.retain_changes().unwrap_or_else(|e| {
            tracing::warn!("could not remove the change segments no kept backup needs: {e:#}");
            0
        });
        let generations = self.repo.confirm_published(&generation)?;
        if let (Some(f), Some(p)) = (copy.borrow_mut().take(), &self.local_copy) {
            match f.commit() {
                Ok(()) => tracing::debug!("kept the published archive as {}", p.display()),
                Err(e) => tracing::warn!("not keeping the local copy {}: {e:#}", p.display()),
            }
        }
        // The one line a successful push writes at info (the steps are at
        // debug): the journal gets one line per push, not a dozen.
        tracing::info!(
            "pushed {generation} ({} bytes, sha256 {}, remote copy verified ({how})) to {} in \
             {:.1}s; deleted {}{}",
            digests.size,
            &digests.sha256[..16],
            self.repo.layout().base(),
            started.elapsed().as_secs_f64(),
            if deleted.is_empty() {
                "nothing".to_owned()
            } else {
                deleted.join(", ")
            },
            match segments {
                0 => String::new(),
                n => format!(" and {n} change segment(s) no kept backup needs"),
            }
        );
        Ok(Pushed {
            generation,
            size: digests.size,
            sha256: digests.sha256,
            deleted,
            manifest: sidecar.manifest,
            generations,
        })
    }

    /// The archive, read exactly once, as a stream: stdin (a pipe from
    /// etcd2-snapshot) or the given file (its size then known); and its
    /// name for messages. What is verified, hashed and uploaded are the
    /// same bytes, uploaded while they are read: nothing is spooled to
    /// disk, whatever the size.
    fn open_input(&self) -> Result<(Box<dyn Read>, Option<u64>, String)> {
        Ok(match &self.input {
            Input::File(p) => {
                let shown = p.display().to_string();
                let f = std::fs::File::open(p).with_context(|| format!("opening {shown}"))?;
                let size = f
                    .metadata()
                    .with_context(|| format!("reading the size of {shown}"))?
                    .len();
                (Box::new(f), Some(size), shown)
            }
            Input::Stdin => (Box::new(io::stdin().lock()), None, "stdin".to_owned()),
        })
    }

    /// Upload `source` as a new generation's archive in one pass: hashed,
    /// uploaded and verified by the archive reader as it is read (a stream
    /// that breaks off, or is not a whole archive, aborts the upload
    /// mid-body), then the remote copy checked. Returns the generation, the
    /// archive's name, its manifest and digests, and how the copy was
    /// checked.
    fn upload_verified(
        &self,
        source: Box<dyn Read>,
        size: Option<u64>,
        shown: &str,
    ) -> Result<(String, String, Manifest, Digests, String)> {
        let mut source = BufReader::with_capacity(1 << 20, source);
        // The file is open (a file replaced from here on is not what we
        // push); a configuration mistake is named before its content.
        self.repo.check_endpoint()?;
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
        let archive_name = format!("{generation}.{}", codec.extension());
        // Hash (besides sha256) only what the backend will report, and ask it
        // for that one alone: the local backend reads the file once per type.
        let compared = self.repo.compared_hash()?;
        self.repo.sweep_uploads();
        let upload = self.repo.upload(&archive_name, size)?;
        tracing::debug!(
            "uploading {shown} as generation {generation} to {}",
            upload.path()
        );
        let mut tee = Tee::new(
            HashingReader::new(
                crate::progress::ProgressReader::new(
                    source,
                    format!("uploading {generation}"),
                    size,
                ),
                Hasher::for_backend(compared),
            ),
            upload,
        );
        let manifest = archive::read_verified(&mut tee, None);
        let (inner, upload, out_error) = tee.into_parts();
        let manifest = match (manifest, out_error) {
            (Ok(m), _) => m,
            (Err(_), Some(e)) => {
                let path = upload.path().to_owned();
                upload.abandon(&self.repo);
                let e = anyhow::Error::new(e).context(format!("uploading to {path}"));
                return Err(self.repo.rclone().explain(e));
            }
            (Err(e), None) => {
                // Cut off unfinished, the upload is aborted before rclone
                // sees an end: nothing whole is left under that name.
                upload.abandon(&self.repo);
                return Err(e.context(format!("{shown} is not a whole etcd2-backup archive")));
            }
        };
        let digests = inner.finish();
        upload.finish(&self.repo)?;
        tracing::debug!(
            "verified {shown}: {} backup of member {:?} taken {} ({} bytes, sha256 {})",
            manifest.api,
            manifest.member_name,
            manifest.created_at,
            digests.size,
            &digests.sha256[..16]
        );
        crate::scratch::fault_point("after-upload");
        let how = self
            .repo
            .verify_upload(&archive_name, &digests, compared.only(), self.verify)?;
        tracing::debug!("remote copy verified ({how})");
        Ok((generation, archive_name, manifest, digests, how))
    }
}

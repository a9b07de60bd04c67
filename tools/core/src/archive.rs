//! The backup archive: a standard tar stream, gzip- or zstd-compressed, whose
//! first entry is `manifest.json` describing the backup and listing every
//! other entry. Format 1 gives each entry's size and sha256 in the
//! manifest; format 2, written while the data streams in (its hashes are not
//! known when the manifest goes out), gives sizes there and the hashes in a
//! last entry, `SHA256SUMS` (`sha256sum -c` reads it). Plain `tar -xf`
//! unpacks either; our readers verify every byte against the manifest (and
//! `SHA256SUMS`) before anything is placed, and return a complete manifest.
//! Format 3 (written now, by both writers) lists `manifest.json` in
//! `SHA256SUMS` too, and zstd frames carry their content checksum: every
//! byte is covered.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::{self, HashingWriter};
use crate::sink::{Tee, WriteFailed};

pub const MANIFEST_NAME: &str = "manifest.json";
/// The format whose manifest holds every file's sha256 (files on disk
/// first: the v2 backup, the legacy import).
pub const FORMAT_VERSION: u32 = 1;
/// The streamed format: sizes in the manifest, sha256s in a last
/// `SHA256SUMS` entry.
pub const FORMAT_STREAMED: u32 = 2;
/// Format 3: as format 2, and its `SHA256SUMS` also lists `manifest.json`,
/// so that every byte of the archive is covered; written by both writers.
pub const FORMAT_SUMMED: u32 = 3;
/// The last entry of a format-2 archive, in `sha256sum -c` format.
pub const SUMS_NAME: &str = "SHA256SUMS";
/// The v3 snapshot's name inside a v3 archive.
pub const V3_SNAPSHOT_NAME: &str = "snapshot.db";
const MAX_MANIFEST_BYTES: u64 = 16 << 20;
const BUF: usize = 256 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// etcd v2 keyspace, via `etcdctl backup` of the data dir (the original package's path)
    V2,
    /// etcd v3 keyspace, via `etcdctl snapshot save` from the endpoint
    V3,
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Api::V2 => "v2",
            Api::V3 => "v3",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// zstd: fast and compact; `tar --zstd` or GNU tar with zstd installed reads it
    Zstd,
    /// gzip: the most compatible; any tar reads it
    Gzip,
}

impl Codec {
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Zstd => "tar.zst",
            Codec::Gzip => "tar.gz",
        }
    }

    pub fn default_level(self) -> i32 {
        match self {
            Codec::Zstd => 3,
            Codec::Gzip => 6,
        }
    }

    /// Refuse a level the codec does not have.
    pub fn check_level(self, level: i32) -> Result<()> {
        match self {
            Codec::Gzip => ensure!(
                (0..=9).contains(&level),
                "gzip level must be 0..9, got {level}"
            ),
            Codec::Zstd => ensure!(
                (1..=19).contains(&level),
                "zstd level must be 1..19, got {level}"
            ),
        }
        Ok(())
    }

    /// Recognise a compressed stream by its magic bytes.
    pub fn sniff(head: &[u8]) -> Option<Codec> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Codec::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Codec::Zstd)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    /// Empty in a format-2 archive's own manifest (the hash is in
    /// `SHA256SUMS`); always filled in what the readers return.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
}

/// Everything known about one backup, stored as the archive's first entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub tool: String,
    pub api: Api,
    pub codec: Codec,
    pub etcd_version: String,
    pub member_name: String,
    pub member_id: String,
    pub cluster_id: String,
    /// v3 store revision at the time of the snapshot.
    pub revision: Option<u64>,
    /// Raft index of the member when the backup was taken.
    pub raft_index: Option<u64>,
    /// Number of keys, where etcd reports it (v3 snapshots).
    pub key_count: Option<u64>,
    /// RFC 3339, UTC, seconds.
    pub created_at: String,
    pub created_unix: u64,
    pub host: String,
    pub machine_id: Option<String>,
    pub files: Vec<FileEntry>,
    /// Alarms active in the cluster when the backup was taken (NOSPACE:
    /// the member refused writes). Absent in older archives and where
    /// there was none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<AlarmRecord>,
    /// Set by etcd2-convert: the v2 backup this v3 one was converted from.
    /// Absent in every other archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_from: Option<ConvertedFrom>,
    /// Set by `etcd2-snapshot --from-file`: the database file this archive
    /// wraps. Absent in every other archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<ImportedFrom>,
}

/// The etcd database file an imported archive wraps (`etcd2-snapshot
/// --from-file`): an `etcdctl snapshot save` file (etcd's sha256 trailer
/// checked as it was read), or a copy of a member's `member/snap/db`, which
/// has no trailer: `snapshot restore` then needs `--skip-hash-check`, and
/// etcd2-restore passes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedFrom {
    /// The file as given, and its modification time (RFC 3339).
    pub path: String,
    pub modified_at: String,
    /// `snapshot save` or `copied db`.
    pub kind: String,
    /// Whether restoring it needs `snapshot restore --skip-hash-check`.
    pub skip_hash_check: bool,
}

/// The v2 backup an `etcd2-convert` archive was made from, as its manifest
/// (or, for a bare `etcdctl backup` directory, the directory) described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvertedFrom {
    /// The tool that wrote it (`etcd2-snapshot 0.1.0`), or `etcdctl backup`.
    pub tool: String,
    /// The etcd version it was taken from; empty where unknown.
    pub etcd_version: String,
    pub member_name: String,
    pub member_id: String,
    pub cluster_id: String,
    /// When it was taken (RFC 3339); empty where unknown.
    pub created_at: String,
    /// Keys converted, v2 directories left empty (not carried: v3 has no
    /// directories), leases granted, and the keys put on them (their TTL).
    pub keys: u64,
    pub empty_dirs: u64,
    pub leases: u64,
    pub ttl_keys: u64,
}

/// One alarm as the manifest records it: etcd's name of it ("NOSPACE",
/// "CORRUPT") and the member that raised it, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmRecord {
    pub alarm: String,
    pub member_id: String,
}

impl Manifest {
    /// The manifest of an archive written now by `tool`, of `api` and
    /// `codec` (format 3), with nothing yet known of etcd, its host or its
    /// files: each writer fills in what it knows.
    pub fn new(tool: String, api: Api, codec: Codec) -> Manifest {
        let (created_unix, created_at) = crate::clock::now();
        Manifest {
            format: FORMAT_SUMMED,
            tool,
            api,
            codec,
            etcd_version: String::new(),
            member_name: String::new(),
            member_id: String::new(),
            cluster_id: String::new(),
            revision: None,
            raft_index: None,
            key_count: None,
            created_at,
            created_unix,
            host: String::new(),
            machine_id: None,
            files: Vec::new(),
            alarms: Vec::new(),
            converted_from: None,
            imported_from: None,
        }
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Regular files below `root`, as sorted relative paths. Anything else
/// (symlinks, devices) is an error: a backup holds plain files only.
pub fn list_files(root: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) -> Result<()> {
        let dir = root.join(rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let ft = e.file_type()?;
            let r = rel.join(e.file_name());
            if ft.is_dir() {
                walk(root, &r, out)?;
            } else if ft.is_file() {
                let s = r
                    .to_str()
                    .with_context(|| format!("{} is not a UTF-8 path", r.display()))?;
                out.push(s.to_owned());
            } else {
                bail!("{} is not a regular file", root.join(&r).display());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out)?;
    Ok(out)
}

/// Hash the given files below `root` into manifest entries.
pub fn file_entries(root: &Path, files: &[String]) -> Result<Vec<FileEntry>> {
    files
        .iter()
        .map(|p| {
            let d = digest::file_sha256(&root.join(p))?;
            Ok(FileEntry {
                path: p.clone(),
                size: d.size,
                sha256: d.sha256,
            })
        })
        .collect()
}

/// A compressing writer of either codec.
pub enum Encoder<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn new(out: W, codec: Codec, level: i32, threads: u32) -> Result<Self> {
        Ok(match codec {
            Codec::Gzip => {
                codec.check_level(level)?;
                Encoder::Gzip(flate2::write::GzEncoder::new(
                    out,
                    flate2::Compression::new(level as u32),
                ))
            }
            Codec::Zstd => {
                codec.check_level(level)?;
                let mut e = zstd::stream::write::Encoder::new(out, level)?;
                // Every frame ends with its content's checksum, which the
                // decoder checks: a flipped bit anywhere is refused.
                e.include_checksum(true)
                    .context("enabling zstd's content checksum")?;
                if threads >= 1 {
                    e.multithread(threads)
                        .context("enabling zstd worker threads")?;
                }
                Encoder::Zstd(e)
            }
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

fn header(path: &str, size: u64, mode: u32, mtime: u64) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)
        .with_context(|| format!("tar path {path}"))?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// Stream the archive for `manifest` (whose files live below `root`) into
/// `out`. Memory use is bounded by the codec's window, not the data size.
pub fn write_archive<W: Write>(
    out: W,
    manifest: &Manifest,
    root: &Path,
    level: i32,
    threads: u32,
) -> Result<W> {
    if manifest.format == FORMAT_SUMMED {
        check_listable(&manifest.files)?;
    }
    let enc = Encoder::new(out, manifest.codec, level, threads)?;
    let mut tar = tar::Builder::new(enc);
    let json = serde_json::to_vec_pretty(manifest)?;
    let mtime = manifest.created_unix;
    tar.append(
        &header(MANIFEST_NAME, json.len() as u64, 0o644, mtime)?,
        json.as_slice(),
    )
    .context("writing the manifest entry")?;
    for f in &manifest.files {
        let path = root.join(&f.path);
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // take() keeps the entry exactly as long as the manifest says even if
        // the file were to grow; a shrunk file fails in append.
        let reader = BufReader::with_capacity(BUF, file).take(f.size);
        tar.append(&header(&f.path, f.size, 0o600, mtime)?, reader)
            .with_context(|| format!("archiving {}", path.display()))?;
    }
    if manifest.format == FORMAT_SUMMED {
        let sums = format!(
            "{}  {MANIFEST_NAME}\n{}",
            digest::sha256_hex(&json),
            sums_text(&manifest.files)
        );
        tar.append(
            &header(SUMS_NAME, sums.len() as u64, 0o644, mtime)?,
            sums.as_bytes(),
        )
        .context("writing the SHA256SUMS entry")?;
    }
    let enc = tar.into_inner().context("finishing the tar stream")?;
    enc.finish().context("finishing compression")
}

/// Write one tar entry whose bytes come from `fill`, which must write
/// exactly `size` bytes; returns their sha256.
fn append_filled<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    mtime: u64,
    fill: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
) -> Result<String> {
    let out = tar.get_mut();
    out.write_all(header(path, size, 0o600, mtime)?.as_bytes())?;
    let mut hw = HashingWriter::new(&mut *out);
    fill(&mut hw)?;
    let (d, _) = hw.finish();
    // A short entry would shift every later header: a corrupt tar.
    ensure!(
        d.size == size,
        "{path}: {} bytes written, the manifest says {size}",
        d.size
    );
    let pad = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize])?;
    Ok(d.sha256)
}

/// `SHA256SUMS`: one `<hex>  <path>` line per file, as `sha256sum` prints.
pub fn sums_text(files: &[FileEntry]) -> String {
    files
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.path))
        .collect()
}

/// Refuse a file `SHA256SUMS` cannot list: it is one line per file, so a
/// name holding a line break would make an archive no reader accepts.
fn check_listable(files: &[FileEntry]) -> Result<()> {
    for f in files {
        ensure!(
            !f.path.contains(['\n', '\r']),
            "cannot archive {:?}: a file name with a line break cannot be listed in {SUMS_NAME}",
            f.path
        );
    }
    Ok(())
}

/// Parse `SHA256SUMS` into (path, sha256) pairs, in order.
pub fn parse_sums(text: &str) -> Result<Vec<(String, String)>> {
    text.lines()
        .map(|l| {
            let (h, p) = l
                .split_once("  ")
                .with_context(|| format!("{SUMS_NAME}: line {l:?} is not `<sha256>  <path>`"))?;
            ensure!(
                h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{SUMS_NAME}: {h:?} is not a sha256"
            );
            Ok((p.to_owned(), h.to_owned()))
        })
        .collect()
}

/// Stream a format-2 archive into `out`: the manifest (sizes only), each
/// file's bytes as `fill(file, writer)` writes them (exactly the size the
/// manifest gives, hashed as they pass), then `SHA256SUMS`. Returns `out`
/// and the manifest completed with the hashes. A `fill` that fails leaves
/// the stream without its `SHA256SUMS` and end: readers refuse it.
pub fn write_streamed<W: Write>(
    out: W,
    manifest: &Manifest,
    level: i32,
    threads: u32,
    mut fill: impl FnMut(&FileEntry, &mut dyn Write) -> Result<()>,
) -> Result<(W, Manifest)> {
    ensure!(
        manifest.format == FORMAT_STREAMED || manifest.format == FORMAT_SUMMED,
        "write_streamed writes format {FORMAT_STREAMED} or {FORMAT_SUMMED}"
    );
    check_listable(&manifest.files)?;
    let enc = Encoder::new(out, manifest.codec, level, threads)?;
    let mut tar = tar::Builder::new(enc);
    let mut head = manifest.clone();
    for f in &mut head.files {
        f.sha256.clear();
    }
    let json = serde_json::to_vec_pretty(&head)?;
    let mtime = manifest.created_unix;
    tar.append(
        &header(MANIFEST_NAME, json.len() as u64, 0o644, mtime)?,
        json.as_slice(),
    )
    .context("writing the manifest entry")?;
    let mut done = manifest.clone();
    for f in &mut done.files {
        let entry = f.clone();
        f.sha256 = append_filled(&mut tar, &f.path, f.size, mtime, &mut |w| fill(&entry, w))
            .with_context(|| format!("archiving {}", f.path))?;
    }
    let mut sums = sums_text(&done.files);
    if manifest.format == FORMAT_SUMMED {
        sums.insert_str(
            0,
            &format!("{}  {MANIFEST_NAME}\n", digest::sha256_hex(&json)),
        );
    }
    tar.append(
        &header(SUMS_NAME, sums.len() as u64, 0o644, mtime)?,
        sums.as_bytes(),
    )
    .context("writing the SHA256SUMS entry")?;
    let enc = tar.into_inner().context("finishing the tar stream")?;
    let out = enc.finish().context("finishing compression")?;
    Ok((out, done))
}

/// Peek at a stream's magic bytes.
fn sniff_codec<R: BufRead>(br: &mut R) -> Result<Codec> {
    let head = br.fill_buf().context("reading the archive header")?;
    match Codec::sniff(head) {
        Some(c) => Ok(c),
        None if head.is_empty() => bail!("the archive is empty"),
        None => bail!("not a gzip or zstd compressed archive"),
    }
}

/// The codec of an archive file, from its first bytes, read without moving
/// the file's offset.
pub fn sniff_file(f: &File) -> Result<Codec> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 4];
    let n = f
        .read_at(&mut head, 0)
        .context("reading the archive header")?;
    match Codec::sniff(&head[..n]) {
        Some(c) => Ok(c),
        None if n == 0 => bail!("the archive is empty"),
        None => bail!("not a gzip or zstd compressed archive"),
    }
}

/// The decompressor for `codec` over `br`, stopping at the end of the one
/// gzip member or zstd frame our writer produces (never reading past it), so
/// the caller can tell that nothing follows.
fn decoder<'a, R: BufRead + 'a>(br: R, codec: Codec) -> Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        Codec::Gzip => Box::new(flate2::bufread::GzDecoder::new(br)),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(br)?.single_frame()),
    })
}

/// Check that `p` is a plain relative path that cannot escape a directory.
fn safe_relative(p: &Path) -> Result<()> {
    ensure!(
        !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_))),
        "unsafe path {:?} in archive",
        p
    );
    Ok(())
}

/// Read an archive stream, verifying every entry against the manifest. With
/// `dest`, files are written below it (dirs 0700, files 0600); `dest` must
/// be an empty or missing directory that the caller renames into place only
/// after this returns Ok. Without `dest`, it only verifies.
///
/// The whole stream is part of the check: the tar's end, the codec's own end
/// of stream (gzip's CRC32 and length, zstd's frame end), and nothing after
/// it. `gzip -t`, `zstd -t` and the hand restore (`tar -xf`) fail on an archive
/// that misses its last bytes or carries junk, so we refuse it too. On Ok the
/// reader has been read to its end.
pub fn read_verified<R: Read>(r: R, dest: Option<&Path>) -> Result<Manifest> {
    let mut br = BufReader::with_capacity(BUF, r);
    let codec = sniff_codec(&mut br)?;
    let mut dec = decoder(&mut br, codec)?;
    let manifest = read_entries(&mut dec, codec, dest)?;
    // Past the tar's end-of-archive marker only zero padding may follow,
    // then the codec's trailer, which the decoder checks as it reaches it.
    let mut tail = [0u8; 4096];
    loop {
        let n = match dec.read(&mut tail) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "the {codec} stream does not end properly (archive truncated or corrupt?)"
                    )
                })
            }
        };
        ensure!(
            tail[..n].iter().all(|b| *b == 0),
            "data after the end of the tar archive: not an archive etcd2-snapshot wrote"
        );
    }
    drop(dec);
    let rest = br.fill_buf().context("reading the end of the archive")?;
    ensure!(
        rest.is_empty(),
        "{} or more bytes follow the end of the {codec} stream (junk appended to the archive?)",
        rest.len()
    );
    Ok(manifest)
}

fn read_entries(dec: &mut dyn Read, codec: Codec, dest: Option<&Path>) -> Result<Manifest> {
    let mut ar = tar::Archive::new(dec);
    let mut entries = ar.entries().context("reading the tar stream")?;

    let mut first = entries
        .next()
        .context("the archive holds no entries")?
        .context("reading the first tar entry (archive truncated or corrupt?)")?;
    let first_path = first.path()?.into_owned();
    ensure!(
        first_path == Path::new(MANIFEST_NAME),
        "first entry is {:?}, not {MANIFEST_NAME}: not an etcd2-backup archive",
        first_path
    );
    ensure!(
        first.size() <= MAX_MANIFEST_BYTES,
        "manifest is implausibly large"
    );
    let mut json = Vec::new();
    first
        .read_to_end(&mut json)
        .context("reading the manifest")?;
    let manifest: Manifest = serde_json::from_slice(&json).context("parsing the manifest")?;
    let mut manifest: Manifest = manifest;
    // Formats 2 and 3 end with SHA256SUMS; format 3's covers the manifest.
    let (streamed, summed) = match manifest.format {
        FORMAT_VERSION => (false, false),
        FORMAT_STREAMED => (true, false),
        FORMAT_SUMMED => (true, true),
        f => bail!(
            "archive format {f} is not supported (this tool reads formats {FORMAT_VERSION} to {FORMAT_SUMMED})"
        ),
    };
    if manifest.codec != codec {
        tracing::warn!("manifest says {} but the stream is {codec}", manifest.codec);
    }

    let mut expected: BTreeMap<String, FileEntry> = BTreeMap::new();
    for f in &manifest.files {
        safe_relative(Path::new(&f.path))?;
        ensure!(
            f.path != SUMS_NAME && f.path != MANIFEST_NAME,
            "manifest lists {} as a data file",
            f.path
        );
        ensure!(
            expected.insert(f.path.clone(), f.clone()).is_none(),
            "manifest lists {} twice",
            f.path
        );
    }
    // What each file hashed to, as read.
    let mut computed: BTreeMap<String, String> = BTreeMap::new();
    if summed {
        computed.insert(MANIFEST_NAME.to_owned(), digest::sha256_hex(&json));
    }
    let mut sums_seen = false;
    if let Some(d) = dest {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .with_context(|| format!("creating {}", d.display()))?;
    }

    let mut seen = 0usize;
    for entry in entries {
        let mut entry = entry.context("reading a tar entry (archive truncated or corrupt?)")?;
        let path = entry.path()?.into_owned();
        let name = path.to_string_lossy().into_owned();
        ensure!(
            !sums_seen,
            "entry {name} follows {SUMS_NAME}, which must be last: not an archive etcd2-snapshot wrote"
        );
        if entry.header().entry_type().is_dir() {
            continue;
        }
        ensure!(
            entry.header().entry_type().is_file(),
            "entry {name} is not a regular file"
        );
        if streamed && name == SUMS_NAME {
            if let Some(missing) = expected.keys().next() {
                bail!("archive is missing {missing} listed in the manifest (truncated?)");
            }
            ensure!(
                entry.size() <= MAX_MANIFEST_BYTES,
                "{SUMS_NAME} is implausibly large"
            );
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .with_context(|| format!("reading {SUMS_NAME} (archive truncated or corrupt?)"))?;
            check_sums(&parse_sums(&text)?, &computed)?;
            sums_seen = true;
            continue;
        }
        let want = expected
            .remove(name.as_str())
            .with_context(|| format!("entry {name} is not in the manifest (or appears twice)"))?;
        // The size is checked before a byte is read.
        ensure!(
            entry.size() == want.size,
            "{name} does not match the manifest: the archive holds {} bytes, the manifest says {}",
            entry.size(),
            want.size
        );
        let (size, sha) = match dest {
            Some(d) => {
                let out_path = d.join(&path);
                if let Some(parent) = out_path.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                let out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&out_path)
                    .map_err(|e| {
                        WriteFailed::new(format!("{} (creating it)", out_path.display()), e)
                    })?;
                let mut hashing = HashingWriter::new(io::BufWriter::with_capacity(BUF, out));
                // Reading the archive and writing the host are told apart:
                // a full disk is not a corrupt backup.
                let mut tee = Tee::new(&mut entry, &mut hashing);
                let copied = io::copy(&mut tee, &mut io::sink());
                match (copied, tee.into_parts().2) {
                    (Err(_), Some(e)) => return Err(WriteFailed::new(out_path.display(), e).into()),
                    (Err(e), None) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("extracting {name} (archive truncated or corrupt?)")))
                    }
                    (Ok(_), _) => {}
                }
                let (d, w) = hashing.finish();
                let file = w
                    .into_inner()
                    .map_err(|e| WriteFailed::new(out_path.display(), e.into_error()))?;
                file.sync_all().map_err(|e| {
                    WriteFailed::new(format!("{} (syncing it)", out_path.display()), e)
                })?;
                (d.size, d.sha256)
            }
            None => {
                let d = digest::reader_sha256(&mut entry)
                    .with_context(|| format!("reading {name} (archive truncated or corrupt?)"))?;
                (d.size, d.sha256)
            }
        };
        ensure!(
            size == want.size && ((streamed && want.sha256.is_empty()) || sha == want.sha256),
            "{name} does not match the manifest: {size} bytes sha256 {sha}, expected {} bytes sha256 {}",
            want.size,
            want.sha256
        );
        computed.insert(name, sha);
        seen += 1;
    }
    if let Some((missing, _)) = expected.into_iter().next() {
        bail!("archive is missing {missing} listed in the manifest (truncated?)");
    }
    if streamed {
        ensure!(
            sums_seen,
            "archive has no {SUMS_NAME} after its files (truncated?)"
        );
        for f in &mut manifest.files {
            if let Some(h) = computed.get(&f.path) {
                f.sha256.clone_from(h);
            }
        }
    }
    tracing::debug!("verified {seen} files against the manifest");
    Ok(manifest)
}

/// A format-2 archive's `SHA256SUMS` must list exactly the files read, each
/// once, each with the hash computed as it was read.
fn check_sums(sums: &[(String, String)], computed: &BTreeMap<String, String>) -> Result<()> {
    let mut listed = BTreeMap::new();
    for (p, h) in sums {
        ensure!(
            listed.insert(p.as_str(), h.as_str()).is_none(),
            "{SUMS_NAME} lists {p} twice"
        );
        let got = computed
            .get(p)
            .with_context(|| format!("{SUMS_NAME} lists {p}, which is not in the archive"))?;
        ensure!(
            got == h,
            "{p} does not match {SUMS_NAME}: read sha256 {got}, {SUMS_NAME} says {h}"
        );
    }
    if let Some(p) = computed.keys().find(|p| !listed.contains_key(p.as_str())) {
        bail!("{SUMS_NAME} does not list {p}");
    }
    Ok(())
}

/// Verify an archive stream end to end (every file against the manifest) and
/// return its manifest, total size and sha256. With `extract`, files land
/// below that directory.
pub fn verify_stream<R: Read>(r: R, extract: Option<&Path>) -> Result<(Manifest, u64, String)> {
    let mut hr = digest::HashingReader::new(r, digest::Hasher::new());
    // read_verified reads to the end (and refuses anything after the
    // codec's end), so the hash covers the whole file.
    let manifest = read_verified(&mut hr, extract)?;
    let d = hr.finish();
    Ok((manifest, d.size, d.sha256))
}

/// A verified directory: what `etcd2-fetch --into` leaves and
/// `etcd2-restore` reads. The archive's files as extracted, and its
/// manifest as `manifest.json` at the top (docs/archive-format.md).
pub fn mark_verified_dir(manifest: &Manifest, dir: &Path) -> Result<()> {
    crate::fsutil::write_atomic(
        &dir.join(MANIFEST_NAME),
        &serde_json::to_vec_pretty(manifest)?,
        0o600,
    )
}

/// Read a verified directory's manifest and re-check every file against it
/// (size and sha256): it may have changed since it was fetched.
pub fn verify_dir(dir: &Path) -> Result<Manifest> {
    let mpath = dir.join(MANIFEST_NAME);
    let bytes = std::fs::read(&mpath).with_context(|| {
        format!(
            "reading {} (was {} made by etcd2-fetch --into?)",
            mpath.display(),
            dir.display()
        )
    })?;
    let m: Manifest =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", mpath.display()))?;
    for f in &m.files {
        safe_relative(Path::new(&f.path))?;
        let d = digest::file_sha256(&dir.join(&f.path))?;
        ensure!(
            d.size == f.size && d.sha256 == f.sha256,
            "{} in {} does not match its manifest (changed since it was fetched?)",
            f.path,
            dir.display()
        );
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(root: &Path, codec: Codec) -> Manifest {
        std::fs::create_dir_all(root.join("member/snap")).unwrap();
        std::fs::write(root.join("member/snap/db"), vec![7u8; 100_000]).unwrap();
        std::fs::write(root.join("member/a.wal"), b"wal").unwrap();
        let files = list_files(root).unwrap();
        assert_eq!(files, vec!["member/a.wal", "member/snap/db"]);
        Manifest {
            format: FORMAT_VERSION,
            tool: "test".into(),
            api: Api::V2,
            codec,
            etcd_version: "3.4.23".into(),
            member_name: "e1".into(),
            member_id: "1".into(),
            cluster_id: "2".into(),
            revision: None,
            raft_index: Some(4),
            key_count: None,
            created_at: "2026-11-24T00:00:00Z".into(),
            created_unix: 1_795_000_000,
            host: "h".into(),
            machine_id: None,
            alarms: Vec::new(),
            converted_from: None,
            imported_from: None,
            files: file_entries(root, &files).unwrap(),
        }
    }

    #[test]
    fn round_trip_both_codecs() {
        for codec in [Codec::Gzip, Codec::Zstd] {
            let src = tempfile::tempdir().unwrap();
            let m = sample(src.path(), codec);
            let bytes =
                write_archive(Vec::new(), &m, src.path(), codec.default_level(), 1).unwrap();
            assert_eq!(Codec::sniff(&bytes), Some(codec));
            let dst = tempfile::tempdir().unwrap();
            let out = dst.path().join("x");
            let got = read_verified(bytes.as_slice(), Some(&out)).unwrap();
            assert_eq!(got, m);
            assert_eq!(std::fs::read(out.join("member/a.wal")).unwrap(), b"wal");
        }
    }

    #[test]
    fn flipped_byte_and_truncation_are_caught() {
        let src = tempfile::tempdir().unwrap();
        // Uncompressible data so that a flipped compressed byte lands in a
        // file's payload rather than only breaking the codec framing.
        let m = sample(src.path(), Codec::Gzip);
        let bytes = write_archive(Vec::new(), &m, src.path(), 0, 1).unwrap();
        let mut bad = bytes.clone();
        let i = bad.len() - 2000;
        bad[i] ^= 0x01;
        assert!(read_verified(bad.as_slice(), None).is_err());
        let cut = &bytes[..bytes.len() / 2];
        let e = read_verified(cut, None).unwrap_err();
        assert!(!format!("{e:#}").is_empty());
    }

    #[test]
    fn the_codec_end_and_nothing_after_it_are_verified() {
        for codec in [Codec::Gzip, Codec::Zstd] {
            let src = tempfile::tempdir().unwrap();
            let m = sample(src.path(), codec);
            let good = write_archive(Vec::new(), &m, src.path(), codec.default_level(), 1).unwrap();
            assert_eq!(read_verified(good.as_slice(), None).unwrap(), m);
            for cut in 1..=12 {
                let e = read_verified(&good[..good.len() - cut], None).unwrap_err();
                assert!(
                    format!("{e:#}").contains("truncated"),
                    "{codec} minus {cut} bytes: {e:#}"
                );
            }
            for junk in [&b"\0"[..], b"junk", &[0u8; 512], &good] {
                let mut bad = good.clone();
                bad.extend_from_slice(junk);
                let e = read_verified(bad.as_slice(), None).unwrap_err();
                assert!(
                    format!("{e:#}").contains("follow the end of the"),
                    "{codec} plus {} bytes: {e:#}",
                    junk.len()
                );
            }
        }
    }

    #[test]
    fn manifest_mismatch_is_named() {
        let src = tempfile::tempdir().unwrap();
        let mut m = sample(src.path(), Codec::Zstd);
        m.files[0].sha256 = "00".repeat(32);
        let bytes = write_archive(Vec::new(), &m, src.path(), 3, 1).unwrap();
        let e = read_verified(bytes.as_slice(), None).unwrap_err();
        assert!(
            format!("{e:#}").contains("member/a.wal does not match the manifest"),
            "{e:#}"
        );
    }

    fn streamed_manifest(codec: Codec, files: &[(&str, u64)]) -> Manifest {
        let mut m = sample(tempfile::tempdir().unwrap().path(), codec);
        m.format = FORMAT_STREAMED;
        m.api = Api::V3;
        m.files = files
            .iter()
            .map(|(p, size)| FileEntry {
                path: (*p).into(),
                size: *size,
                sha256: String::new(),
            })
            .collect();
        m
    }

    /// A format-2 archive of `db` as snapshot.db, written by the streamed writer.
    fn streamed(codec: Codec, db: &[u8]) -> (Vec<u8>, Manifest) {
        let m = streamed_manifest(codec, &[(V3_SNAPSHOT_NAME, db.len() as u64)]);
        write_streamed(Vec::new(), &m, codec.default_level(), 1, |_, w| {
            w.write_all(db)?;
            Ok(())
        })
        .unwrap()
    }

    /// An archive of exactly these entries, in this order (for doctoring).
    fn raw(codec: Codec, entries: &[(&str, &[u8])]) -> Vec<u8> {
        let enc = Encoder::new(Vec::new(), codec, codec.default_level(), 0).unwrap();
        let mut t = tar::Builder::new(enc);
        for (p, data) in entries {
            t.append(&header(p, data.len() as u64, 0o600, 1).unwrap(), *data)
                .unwrap();
        }
        t.into_inner().unwrap().finish().unwrap()
    }

    /// Every entry of an archive, decompressed.
    fn entries_of(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let codec = Codec::sniff(bytes).unwrap();
        let mut dec = decoder(bytes, codec).unwrap();
        let mut t = tar::Archive::new(&mut dec);
        t.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut v = Vec::new();
                e.read_to_end(&mut v).unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), v)
            })
            .collect()
    }

    /// Found by `make fuzz` (target archive_roundtrip): a file name with a
    /// line break was written into SHA256SUMS as is, and the reader then
    /// refused the archive its own writer had just made ("SHA256SUMS: line
    /// \"\" is not `<sha256>  <path>`"). Both writers refuse such a name
    /// before writing a byte; format 1, without SHA256SUMS, still takes it.
    #[test]
    fn a_file_name_sha256sums_cannot_list_is_refused_by_the_writers() {
        for name in ["a\nb", "\n", "trailing\r"] {
            let s = streamed_manifest(Codec::Zstd, &[(name, 1)]);
            let e = write_streamed(Vec::new(), &s, 3, 1, |_, w| Ok(w.write_all(b"x")?))
                .err()
                .unwrap_or_else(|| panic!("write_streamed took {name:?}"));
            assert!(format!("{e:#}").contains("line break"), "{e:#}");

            let src = tempfile::tempdir().unwrap();
            let mut m = sample(src.path(), Codec::Gzip);
            std::fs::write(src.path().join(name), b"x").unwrap();
            m.files = file_entries(src.path(), &[name.to_owned()]).unwrap();
            m.format = FORMAT_SUMMED;
            let e = write_archive(Vec::new(), &m, src.path(), 3, 1)
                .err()
                .unwrap_or_else(|| panic!("write_archive took {name:?}"));
            assert!(format!("{e:#}").contains("line break"), "{e:#}");
            m.format = FORMAT_VERSION;
            let bytes = write_archive(Vec::new(), &m, src.path(), 3, 1).unwrap();
            read_verified(bytes.as_slice(), None).expect("format 1 has no SHA256SUMS");
        }
    }

    /// New archives, from either writer: one flipped digit in the manifest
    /// (still valid JSON, as the field report's "c8730d66636f6.40") is
    /// refused, because SHA256SUMS covers the manifest too.
    #[test]
    fn a_flip_in_the_manifest_of_a_new_archive_is_refused() {
        let src = tempfile::tempdir().unwrap();
        let db = b"the db bytes".as_slice();
        for codec in [Codec::Gzip, Codec::Zstd] {
            let mut m = sample(src.path(), codec);
            m.format = FORMAT_SUMMED;
            m.cluster_id = "c8730d66636f6040".into();
            let from_files = write_archive(Vec::new(), &m, src.path(), 3, 1).unwrap();
            let mut s = streamed_manifest(codec, &[(V3_SNAPSHOT_NAME, db.len() as u64)]);
            s.format = FORMAT_SUMMED;
            s.cluster_id = "c8730d66636f6040".into();
            let (from_stream, _) = write_streamed(Vec::new(), &s, 3, 1, |_, w| {
                w.write_all(db)?;
                Ok(())
            })
            .unwrap();
            for bytes in [from_files, from_stream] {
                read_verified(bytes.as_slice(), None).expect("the archive as written reads");
                let mut entries = entries_of(&bytes);
                assert_eq!(entries.last().unwrap().0, SUMS_NAME);
                let text = String::from_utf8(entries[0].1.clone()).unwrap();
                entries[0].1 = text
                    .replace("c8730d66636f6040", "c8730d66636f6.40")
                    .into_bytes();
                let doctored: Vec<(&str, &[u8])> = entries
                    .iter()
                    .map(|(p, d)| (p.as_str(), d.as_slice()))
                    .collect();
                let e = read_verified(raw(codec, &doctored).as_slice(), None).unwrap_err();
                assert!(
                    format!("{e:#}").contains("manifest.json does not match SHA256SUMS"),
                    "{codec}: {e:#}"
                );
            }
        }
    }

    /// zstd frames carry their content checksum (Frame_Header_Descriptor
    /// bit 2), which the decoder checks at the frame's end.
    #[test]
    fn zstd_archives_carry_a_content_checksum() {
        let (bytes, _) = streamed(Codec::Zstd, b"hello");
        assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_ne!(
            bytes[4] & 0x04,
            0,
            "no content checksum in the frame header"
        );
    }

    #[test]
    fn format_2_round_trip_returns_a_complete_manifest() {
        let db: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        for codec in [Codec::Gzip, Codec::Zstd] {
            let (bytes, done) = streamed(codec, &db);
            assert_eq!(done.files[0].sha256, digest::sha256_hex(&db));
            let dst = tempfile::tempdir().unwrap();
            let out = dst.path().join("x");
            let got = read_verified(bytes.as_slice(), Some(&out)).unwrap();
            assert_eq!(got, done, "the reader fills in the hashes");
            assert_eq!(got.format, FORMAT_STREAMED);
            assert_eq!(std::fs::read(out.join(V3_SNAPSHOT_NAME)).unwrap(), db);
            assert!(!out.join(SUMS_NAME).exists());
            // The verified directory's manifest is complete: verify_dir works.
            mark_verified_dir(&got, &out).unwrap();
            assert_eq!(verify_dir(&out).unwrap(), done);
        }
    }

    #[test]
    fn format_2_manifest_entry_has_no_hashes_and_sums_come_last() {
        let (bytes, done) = streamed(Codec::Gzip, b"hello");
        let mut t = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let mut names = Vec::new();
        let mut texts = Vec::new();
        for e in t.entries().unwrap() {
            let mut e = e.unwrap();
            names.push(e.path().unwrap().to_string_lossy().into_owned());
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            texts.push(s);
        }
        assert_eq!(names, vec![MANIFEST_NAME, V3_SNAPSHOT_NAME, SUMS_NAME]);
        assert!(!texts[0].contains("sha256"), "{}", texts[0]);
        assert_eq!(
            texts[2],
            format!("{}  snapshot.db\n", done.files[0].sha256),
            "sha256sum -c format"
        );
    }

    #[test]
    fn a_fill_that_writes_the_wrong_size_fails_the_write() {
        let m = streamed_manifest(Codec::Zstd, &[(V3_SNAPSHOT_NAME, 10)]);
        let e =
            write_streamed(Vec::new(), &m, 3, 1, |_, w| Ok(w.write_all(b"short")?)).unwrap_err();
        assert!(
            format!("{e:#}").contains("5 bytes written, the manifest says 10"),
            "{e:#}"
        );
        let e = write_streamed(Vec::new(), &m, 3, 1, |_, _| anyhow::bail!("etcd went away"))
            .unwrap_err();
        assert!(format!("{e:#}").contains("etcd went away"), "{e:#}");
    }

    #[test]
    fn doctored_format_2_archives_are_refused_by_name() {
        let db = b"the db bytes".as_slice();
        let m = streamed_manifest(Codec::Zstd, &[(V3_SNAPSHOT_NAME, db.len() as u64)]);
        let json = serde_json::to_vec_pretty(&m).unwrap();
        let good_sums = format!("{}  snapshot.db\n", digest::sha256_hex(db));
        let bad_sums = format!("{}  snapshot.db\n", "ab".repeat(32));
        let other_sums = format!("{good_sums}{}  other\n", "ab".repeat(32));
        type Entries<'a> = Vec<(&'a str, &'a [u8])>;
        let cases: Vec<(&str, Entries)> = vec![
            (
                "has no SHA256SUMS after its files",
                vec![(MANIFEST_NAME, &json), (V3_SNAPSHOT_NAME, db)],
            ),
            (
                "snapshot.db does not match SHA256SUMS",
                vec![
                    (MANIFEST_NAME, &json),
                    (V3_SNAPSHOT_NAME, db),
                    (SUMS_NAME, bad_sums.as_bytes()),
                ],
            ),
            (
                "entry junk follows SHA256SUMS",
                vec![
                    (MANIFEST_NAME, &json),
                    (V3_SNAPSHOT_NAME, db),
                    (SUMS_NAME, good_sums.as_bytes()),
                    ("junk", b"x"),
                ],
            ),
            (
                "SHA256SUMS lists other, which is not in the archive",
                vec![
                    (MANIFEST_NAME, &json),
                    (V3_SNAPSHOT_NAME, db),
                    (SUMS_NAME, other_sums.as_bytes()),
                ],
            ),
            (
                "SHA256SUMS does not list snapshot.db",
                vec![
                    (MANIFEST_NAME, &json),
                    (V3_SNAPSHOT_NAME, db),
                    (SUMS_NAME, b""),
                ],
            ),
            (
                "archive is missing snapshot.db",
                vec![(MANIFEST_NAME, &json), (SUMS_NAME, good_sums.as_bytes())],
            ),
            (
                "the archive holds 5 bytes, the manifest says 12",
                vec![
                    (MANIFEST_NAME, &json),
                    (V3_SNAPSHOT_NAME, b"short"),
                    (SUMS_NAME, good_sums.as_bytes()),
                ],
            ),
        ];
        // The control: the same entries, undoctored, read fine.
        let ok = raw(
            Codec::Zstd,
            &[
                (MANIFEST_NAME, &json),
                (V3_SNAPSHOT_NAME, db),
                (SUMS_NAME, good_sums.as_bytes()),
            ],
        );
        read_verified(ok.as_slice(), None).unwrap();
        for (needle, entries) in cases {
            let e = read_verified(raw(Codec::Zstd, &entries).as_slice(), None).unwrap_err();
            assert!(format!("{e:#}").contains(needle), "{needle}: {e:#}");
        }
    }

    #[test]
    fn format_1_archives_from_the_old_writer_still_read() {
        // write_archive is the format-1 writer every existing backup came from.
        let src = tempfile::tempdir().unwrap();
        let m = sample(src.path(), Codec::Zstd);
        assert_eq!(m.format, FORMAT_VERSION);
        let bytes = write_archive(Vec::new(), &m, src.path(), 3, 1).unwrap();
        assert_eq!(read_verified(bytes.as_slice(), None).unwrap(), m);
        // A SHA256SUMS entry means nothing in format 1: it is not listed.
        let json = serde_json::to_vec_pretty(&m).unwrap();
        let bad = raw(Codec::Zstd, &[(MANIFEST_NAME, &json), (SUMS_NAME, b"")]);
        let e = read_verified(bad.as_slice(), None).unwrap_err();
        assert!(
            format!("{e:#}").contains("SHA256SUMS is not in the manifest"),
            "{e:#}"
        );
        // An unknown format is refused by number.
        let mut m3 = m.clone();
        m3.format = FORMAT_SUMMED + 1;
        let json = serde_json::to_vec_pretty(&m3).unwrap();
        let e = read_verified(raw(Codec::Zstd, &[(MANIFEST_NAME, &json)]).as_slice(), None)
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("archive format 4 is not supported"),
            "{e:#}"
        );
    }

    #[test]
    fn rejects_unsafe_paths_and_non_archives() {
        assert!(safe_relative(Path::new("../etc/passwd")).is_err());
        assert!(safe_relative(Path::new("/etc/passwd")).is_err());
        assert!(safe_relative(Path::new("member/snap/db")).is_ok());
        let e = read_verified(&b"hello world"[..], None).unwrap_err();
        assert_eq!(e.to_string(), "not a gzip or zstd compressed archive");
    }
}

//! Remote storage through the real `rclone` (any backend, crypt included),
//! and the layout of backups under `<RCLONE_ENDPOINT>/<machine-id>/`:
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::archive::{Codec, Manifest};
use crate::cmd::{Captured, Invocation, Program};

pub const POINTER_NAME: &str = "LATEST.json";
pub const GENERATIONS_DIR: &str = "generations";
pub const SIDECAR_FORMAT: u32 = 1;
/// The most a pointer or sidecar may hold. A sidecar lists every file of a
/// backup (about 150 bytes each); a v2 backup has tens.
pub const SMALL_FILE_MAX: u64 = 1 << 20;
/// What [`Rclone::cat_small`] found.
pub enum Small {
    Missing,
    TooLarge,
    Bytes(Vec<u8>),
}

impl Small {
    pub const TOO_LARGE: &'static str = "is larger than 1 MiB: not a file etcd2-push wrote";
}

/// rclone's exit codes for "directory not found" and "file not found".
const NOT_FOUND: &[i32] = &[3, 4];

/// The `rclone` program with the operator's config and extra flags.
#[derive(Debug, Clone)]
pub struct Rclone {
    program: Program,
    config: Option<PathBuf>,
    flags: Vec<String>,
    pub bounds: Bounds,
}

/// How long rclone may take, each bound named by the flag that sets it.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Establishing a connection (rclone's --contimeout).
    pub connect: Duration,
    /// No data moving, on the network (rclone's --timeout, its idle
    /// timeout) or through our pipe to or from rclone.
    pub stall: Duration,
    /// One listing or small read/write, retries included.
    pub remote: Duration,
    /// One archive upload or download, whatever its pace.
    pub transfer: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            connect: Duration::from_secs(10),
            stall: Duration::from_secs(60),
            remote: Duration::from_secs(60),
            transfer: Duration::from_secs(3600),
        }
    }
}

/// rclone's flag value for a duration (whole seconds, at least 1).
fn rclone_secs(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

/// One entry of `rclone lsjson`.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Size")]
    pub size: i64,
    #[serde(rename = "IsDir")]
    pub is_dir: bool,
    #[serde(rename = "Hashes", default)]
    pub hashes: BTreeMap<String, String>,
}

pub fn parse_lsjson(json: &str) -> Result<Vec<Entry>> {
    serde_json::from_str(json).context("parsing `rclone lsjson` output")
}

impl Rclone {
    /// Resolve rclone and check the config file (when one is named) is
    /// readable. Its contents are never read or logged by us.
    pub fn new(path: Option<&Path>, config: Option<PathBuf>, flags: Vec<String>) -> Result<Self> {
        if let Some(c) = &config {
            std::fs::File::open(c).with_context(|| {
                format!(
                    "rclone config {} (RCLONE_CONFIG_PATH) is not readable",
                    c.display()
                )
            })?;
        }
        let program = Program::find("rclone", path, "rclone")?;
        Ok(Rclone {
            program,
            config,
            flags,
            bounds: Bounds::default(),
        })
    }

    /// One rclone call bounded by --remote-timeout. rclone's own defaults
    /// retry a refused connection for minutes (205 s measured) before it
    /// says why; ours give up within seconds with rclone's cause in the
    /// error: one attempt, two low-level tries, the connect and stall
    /// bounds. The operator's --rclone-flag values come after ours and win.
    fn cmd(&self, args: &[&str]) -> Invocation {
        let mut inv = self.program.command(args.iter().copied());
        if let Some(c) = &self.config {
            inv = inv.arg("--config").arg(c);
        }
        inv = inv
            .arg(format!("--contimeout={}", rclone_secs(self.bounds.connect)))
            .arg(format!("--timeout={}", rclone_secs(self.bounds.stall)))
            .arg("--low-level-retries=2")
            .arg("--retries=1");
        for f in &self.flags {
            inv = inv.arg(f);
        }
        inv.bounded(self.bounds.remote, "--remote-timeout")
    }

    /// One archive transfer: bounded in total by --transfer-timeout, and
    /// by --stall-timeout while no data moves through us.
    fn transfer(&self, args: &[&str]) -> Invocation {
        self.cmd(args)
            .bounded(self.bounds.transfer, "--transfer-timeout")
            .stall(self.bounds.stall, "--stall-timeout")
    }

    /// Run `inv`; a failure gets `what` as context, and [`Rclone::explain`].
    fn run(
        &self,
        inv: Invocation,
        accept: &[i32],
        what: impl FnOnce() -> String,
    ) -> Result<(i32, Captured)> {
        inv.run_accepting(accept)
            .map_err(|e| self.explain(e.context(what())))
    }

    /// Say which bound rclone hit when it gave up on a timeout of its own.
    pub fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        // rclone's (Go's) words for a timeout; not "timeout" alone, which
        // our own command line (--contimeout=, --timeout=) contains.
        let text = format!("{e:#}").to_lowercase();
        let timed_out = [
            "i/o timeout",
            "deadline exceeded",
            "client.timeout",
            "timeout awaiting",
            "handshake timeout",
        ]
        .iter()
        .any(|w| text.contains(w));
        if timed_out {
            e.context(format!(
                "the remote did not answer: no connection within --connect-timeout {} or no \
                 data moving for --stall-timeout {}",
                crate::cmd::human_duration(self.bounds.connect),
                crate::cmd::human_duration(self.bounds.stall)
            ))
        } else {
            e
        }
    }

    /// Fail with one clear line when `endpoint` names a remote that the
    /// config does not define. Local paths and `:backend:` strings pass.
    pub fn check_endpoint(&self, endpoint: &str) -> Result<()> {
        let Some(name) = remote_name(endpoint) else {
            return Ok(());
        };
        let (_, out) = self.run(self.cmd(&["listremotes"]), &[], || {
            "listing rclone remotes".to_owned()
        })?;
        let names: Vec<&str> = out
            .stdout
            .lines()
            .map(|l| l.trim_end_matches(':'))
            .collect();
        if !names.contains(&name) {
            let cfg = match &self.config {
                Some(c) => c.display().to_string(),
                None => "rclone's default config".to_owned(),
            };
            bail!(
                "rclone remote {name:?} (from RCLONE_ENDPOINT {endpoint}) is not defined in {cfg}; defined: {}",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            );
        }
        Ok(())
    }

    /// A small remote file (a pointer or sidecar), reading at most
    /// [`SMALL_FILE_MAX`] bytes of it: a larger one is not one we wrote.
    pub fn cat_small(&self, path: &str) -> Result<Small> {
        let count = (SMALL_FILE_MAX + 1).to_string();
        let inv = self.cmd(&["cat", "--count", &count, path]);
        let (code, out) = self.run(inv, NOT_FOUND, || format!("reading {path}"))?;
        if code != 0 {
            return Ok(Small::Missing);
        }
        let bytes = out.stdout.into_bytes();
        Ok(if bytes.len() as u64 > SMALL_FILE_MAX {
            Small::TooLarge
        } else {
            Small::Bytes(bytes)
        })
    }

    /// The whole content of a small remote file; None when it does not
    /// exist; an error when it is larger than [`SMALL_FILE_MAX`].
    pub fn cat(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.cat_small(path)? {
            Small::Missing => Ok(None),
            Small::Bytes(b) => Ok(Some(b)),
            Small::TooLarge => bail!("{path} {}", Small::TOO_LARGE),
        }
    }

    /// List a remote directory; None when it does not exist.
    pub fn list(&self, dir: &str, hashes: bool) -> Result<Option<Vec<Entry>>> {
        let mut args = vec!["lsjson", dir];
        if hashes {
            args.push("--hash");
        }
        let (code, out) = self.run(self.cmd(&args), NOT_FOUND, || format!("listing {dir}"))?;
        if code != 0 {
            return Ok(None);
        }
        parse_lsjson(&out.stdout).map(Some)
    }

    /// One file's size and the hashes the backend knows; None when missing.
    pub fn stat(&self, dir: &str, name: &str) -> Result<Option<Entry>> {
        let path = join(dir, name);
        // Only the hashes we compare: a bare --hash makes the local backend
        // compute every type it knows (whirlpool, crc32, quickxor, ...),
        // reading the archive once per type: 3.9 s instead of 0.6 s for a
        // 120 MB archive. Hashing a large file is a transfer's worth of
        // reading on some backends: the transfer bound applies.
        let inv = self
            .cmd(&[
                "lsjson",
                "--hash-type",
                "sha256",
                "--hash-type",
                "sha1",
                "--hash-type",
                "md5",
                "--files-only",
                &path,
            ])
            .bounded(self.bounds.transfer, "--transfer-timeout");
        let (code, out) = self.run(inv, NOT_FOUND, || format!("checking {path}"))?;
        if code != 0 {
            return Ok(None);
        }
        Ok(parse_lsjson(&out.stdout)?
            .into_iter()
            .find(|e| e.name == name && !e.is_dir))
    }

    /// Write small bytes to a remote file.
    pub fn put_bytes(&self, remote: &str, bytes: &[u8]) -> Result<()> {
        let inv = self.cmd(&["rcat", remote]).stdin_bytes(bytes.to_vec());
        self.run(inv, &[], || format!("writing {remote}"))?;
        Ok(())
    }

    /// Move `src` over `dst`, unconditionally. rclone skips a move whose
    /// destination has the same size (and, where known, time) and deletes the
    /// source all the same: on WebDAV (vendor other) a rewritten pointer kept
    /// its old content. `--ignore-times` makes it transfer every time; the
    /// caller reads the result back by content.
    pub fn replace(&self, src: &str, dst: &str) -> Result<()> {
        let inv = self.cmd(&["moveto", "--ignore-times", src, dst]);
        self.run(inv, &[], || format!("moving {src} to {dst}"))?;
        Ok(())
    }

    /// Start `rclone rcat` into `remote`, fed through the returned writer;
    /// `size` must be the exact number of bytes that will be written (rclone
    /// then uploads as it would a file of that size: one PUT or multipart on
    /// object stores, no spooling on its side). Bounded by the transfer
    /// timeout; dropping the writer unfinished kills rclone.
    pub fn rcat(&self, remote: &str, size: u64) -> Result<crate::cmd::ChildWriter> {
        self.transfer(&["rcat", "--size", &size.to_string(), remote])
            .spawn_writer()
            .with_context(|| format!("uploading to {remote}"))
    }

    /// Delete one file; a file already gone is not an error.
    pub fn delete(&self, path: &str) -> Result<()> {
        self.run(self.cmd(&["deletefile", path]), NOT_FOUND, || {
            format!("deleting {path}")
        })?;
        Ok(())
    }

    /// Copy a remote directory tree to a local directory.
    pub fn copy_dir(&self, remote: &str, local: &Path) -> Result<()> {
        let l = local.to_string_lossy();
        let inv = self
            .cmd(&["copy", remote, &l])
            .bounded(self.bounds.transfer, "--transfer-timeout");
        self.run(inv, &[], || format!("downloading {remote}"))?;
        Ok(())
    }

    /// A remote file as a byte stream, bounded by the transfer timeout.
    pub fn stream_file(&self, remote: &str) -> Result<crate::cmd::StreamReader> {
        self.transfer(&["cat", remote]).stream()
    }
}

/// `name` of a `name:path` endpoint; None for local paths and `:backend:`
/// connection strings.
pub fn remote_name(endpoint: &str) -> Option<&str> {
    if endpoint.starts_with('/') || endpoint.starts_with('.') || endpoint.starts_with(':') {
        return None;
    }
    let (name, _) = endpoint.split_once(':')?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// Join remote path components the way rclone expects (`remote:` + `x` is
/// `remote:x`, not `remote:/x`).
pub fn join(base: &str, name: &str) -> String {
    if base.ends_with(':') || base.ends_with('/') {
        format!("{base}{name}")
    } else {
        format!("{base}/{name}")
    }
}

/// Where one machine's backups live.
#[derive(Debug, Clone)]
pub struct Layout {
    pub endpoint: String,
    pub machine_id: String,
}

impl Layout {
    pub fn new(endpoint: &str, machine_id: &str) -> Result<Self> {
        if endpoint.trim().is_empty() {
            bail!("RCLONE_ENDPOINT is empty: set --endpoint or RCLONE_ENDPOINT (e.g. s3:bucket/backups)");
        }
        // rclone takes anything without a colon as a path relative to the
        // working directory: a typo (`s3bucket/x` for `s3:bucket/x`) would
        // put backups where nobody looks.
        if !endpoint.starts_with('/') && !endpoint.contains(':') {
            bail!(
                "RCLONE_ENDPOINT {endpoint:?} is neither an rclone remote (NAME:PATH, \
                 :BACKEND:PATH) nor an absolute local path: a typo? (rclone would write \
                 into {endpoint:?} below the working directory)"
            );
        }
        crate::node::validate_machine_id(machine_id)?;
        Ok(Layout {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            machine_id: machine_id.to_owned(),
        })
    }

    pub fn base(&self) -> String {
        join(&self.endpoint, &self.machine_id)
    }

    pub fn generations(&self) -> String {
        join(&self.base(), GENERATIONS_DIR)
    }

    pub fn pointer(&self) -> String {
        join(&self.base(), POINTER_NAME)
    }

    /// The original package's copy of the previous backup.
    pub fn legacy_previous(&self) -> String {
        join(&self.endpoint, &format!("{}_backup", self.machine_id))
    }
}

/// A generation's name: UTC time to the millisecond (so names sort by time)
/// plus a random suffix (so two writers never collide).
pub fn new_generation_id(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ts = humantime::format_rfc3339_millis(now).to_string(); // 2026-11-24T15:01:02.123Z
    let compact: String = ts.chars().filter(|c| *c != '-' && *c != ':').collect();
    let mut bytes = [0u8; 4];
    // Best effort randomness: the timestamp already orders; this only splits
    // ties between writers, so falling back to time-derived bits is fine.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        bytes = (d.subsec_nanos() ^ std::process::id()).to_le_bytes();
    }
    format!("{compact}-{}", crate::archive::hex(&bytes))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_names() {
        assert_eq!(remote_name("s3:bucket/backups"), Some("s3"));
        assert_eq!(remote_name("/var/backups"), None);
        assert_eq!(remote_name(":local:/x"), None);
        assert_eq!(remote_name("relative/dir"), None);
    }

    #[test]
    fn joins_like_rclone() {
        assert_eq!(join("s3:", "abc"), "s3:abc");
        assert_eq!(join("s3:b/p", "abc"), "s3:b/p/abc");
        let l = Layout::new("s3:b/p/", "0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            l.pointer(),
            "s3:b/p/0123456789abcdef0123456789abcdef/LATEST.json"
        );
        assert_eq!(
            l.legacy_previous(),
            "s3:b/p/0123456789abcdef0123456789abcdef_backup"
        );
        assert!(Layout::new("", "0123456789abcdef0123456789abcdef").is_err());
        assert!(Layout::new("s3bucket/x", "0123456789abcdef0123456789abcdef").is_err());
        assert!(Layout::new("relative", "0123456789abcdef0123456789abcdef").is_err());
        assert!(Layout::new("/var/backups", "0123456789abcdef0123456789abcdef").is_ok());
        assert!(Layout::new(":local:/x", "0123456789abcdef0123456789abcdef").is_ok());
        assert!(Layout::new("s3:", "../x").is_err());
    }

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
}

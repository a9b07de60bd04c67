//! The real `rclone` program (any backend, crypt included), driven as a thin
//! facade: each method is one rclone operation, bounded, with secrets
//! redacted from anything shown, written once per transport (a child per
//! call in [`child`], the run's `rclone rcd` in [`rc`]) and dispatched once.
//! It knows nothing of our backup layout ([`crate::store`] does).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::cmd::{Captured, Invocation, Program};
use crate::digest::{BackendHash, HashType};
use crate::rcd::Session;

mod child;
mod rc;

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

/// The names of the hashes we compare, strongest first; asking for all
/// would make the local backend compute every type it knows.
const HASHES: [&str; 3] = [
    HashType::Sha256.name(),
    HashType::Sha1.name(),
    HashType::Md5.name(),
];

/// rclone's words (1.60 and 1.75) for a remote it finds neither in its
/// config file nor in its environment.
const NOT_IN_CONFIG: &str = "didn't find section in config file";

/// rclone's words for a backend command the backend does not have.
const NO_COMMAND: &str = "command not found";

/// How long rclone may take to cancel an abandoned upload on SIGTERM (one
/// request to the remote) before it is killed.
const UPLOAD_CANCEL: Duration = Duration::from_secs(10);

/// rclone's exit codes for "directory not found" and "file not found".
const NOT_FOUND: &[i32] = &[3, 4];

/// The `rclone` program with the operator's config and extra flags.
#[derive(Debug, Clone)]
pub struct Rclone {
    program: Program,
    config: Option<PathBuf>,
    flags: Vec<String>,
    pub bounds: Bounds,
    /// With [`Rclone::one_process`]: the `rclone rcd` every call goes
    /// through, started at the first call.
    daemon: Option<Daemon>,
}

/// The shared, lazily started `rclone rcd` of a run.
#[derive(Clone, Default)]
struct Daemon(Arc<Mutex<Option<Arc<Session>>>>);

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rclone rcd")
    }
}

/// Where an upload's bytes go: an `rclone rcat` child, or the run's rcd.
pub enum Uploader {
    Child(crate::cmd::ChildWriter),
    Rc(crate::rcd::Upload),
}

impl Uploader {
    /// The end of the stream: the upload is stored, or the error says why.
    pub fn finish(self) -> Result<()> {
        match self {
            Uploader::Child(c) => c.finish().map(drop),
            Uploader::Rc(u) => u.finish(),
        }
    }
}

impl std::io::Write for Uploader {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Uploader::Child(c) => c.write(buf),
            Uploader::Rc(u) => u.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Uploader::Child(c) => c.flush(),
            Uploader::Rc(u) => u.flush(),
        }
    }
}

pub use crate::rcd::Bounds;

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

/// `key` of an rcd answer; null where it has none or is not an object
/// (`answer[key]` would panic there: serde_json indexes only an object
/// mutably).
fn take_key(answer: &mut serde_json::Value, key: &str) -> serde_json::Value {
    answer
        .get_mut(key)
        .map(serde_json::Value::take)
        .unwrap_or_default()
}

/// The entries of rcd's `operations/list` answer (`{"list": [...]}`, the
/// same entries as `lsjson`).
pub fn parse_rc_list(mut answer: serde_json::Value) -> serde_json::Result<Vec<Entry>> {
    serde_json::from_value(take_key(&mut answer, "list"))
}

/// The `result` of rcd's `backend/command` answer.
pub fn rc_result(mut answer: serde_json::Value) -> serde_json::Value {
    take_key(&mut answer, "result")
}

/// The entry of rcd's `operations/stat` answer (`{"item": {...}}`); None
/// where `item` is null (nothing there).
pub fn parse_rc_stat(mut answer: serde_json::Value) -> serde_json::Result<Option<Entry>> {
    match take_key(&mut answer, "item") {
        serde_json::Value::Null => Ok(None),
        item => serde_json::from_value(item).map(Some),
    }
}

/// The strongest of the hashes we compare that rcd's `operations/fsinfo`
/// answer lists under `Hashes` (any case); None when it lists none of them.
pub fn fsinfo_compared_hash(info: Option<&serde_json::Value>) -> Option<HashType> {
    let has: Vec<HashType> = info
        .and_then(|v| {
            v.get("Hashes").and_then(|h| h.as_array()).map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().and_then(HashType::of))
                    .collect()
            })
        })
        .unwrap_or_default();
    HashType::ALL.into_iter().find(|h| has.contains(h))
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
            daemon: None,
        })
    }

    /// Send every call of this run (and of its clones) through one
    /// long-lived `rclone rcd`, started at the first call: one rclone
    /// process instead of one per call.
    pub fn one_process(mut self) -> Self {
        self.daemon = Some(Daemon::default());
        self
    }

    /// The run's rcd, started now if this is the first call.
    fn session(&self) -> Result<Option<Arc<Session>>> {
        let Some(d) = &self.daemon else {
            return Ok(None);
        };
        let mut slot =
            d.0.lock()
                .map_err(|_| anyhow::anyhow!("internal: rclone rcd lock poisoned"))?;
        if let Some(s) = slot.as_ref() {
            return Ok(Some(Arc::clone(s)));
        }
        let s = Arc::new(
            Session::start(self.cmd(&[]), &self.bounds)
                .map_err(|e| self.explain(e.context("starting rclone rcd")))?,
        );
        *slot = Some(Arc::clone(&s));
        Ok(Some(s))
    }

    /// The transport of this call: the run's rcd (started now if this is
    /// the first call), or a child of its own.
    fn via(&self) -> Result<Box<dyn Transport + '_>> {
        Ok(match self.session()? {
            Some(s) => Box::new(rc::Rc::new(self, s)),
            None => Box::new(child::Child(self)),
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
            .arg("--retries=1")
            // rclone reads 16 MiB ahead of an upload by default: memory for
            // nothing (our pipe already overlaps reading and sending), and
            // the progress we show would run 16 MiB ahead of the upload.
            .arg("--buffer-size=1M");
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
        let e = if timed_out {
            e.context(format!(
                "the remote did not answer: no connection within --connect-timeout {} or no \
                 data moving for --stall-timeout {}",
                crate::cmd::human_duration(self.bounds.connect),
                crate::cmd::human_duration(self.bounds.stall)
            ))
        } else {
            e
        };
        if timed_out || unreachable(&text) {
            // Its own exit status, for scripts and monitoring.
            return crate::exit::coded(crate::exit::EXIT_UNREACHABLE, format!("{e:#}"));
        }
        e
    }

    /// Fail with one clear line when `endpoint` names a remote that rclone
    /// cannot make. Local paths and `:backend:` strings pass.
    ///
    /// rclone itself is asked (it builds the remote's root, without listing
    /// it): it finds a remote in the config file or in its environment
    /// (`RCLONE_CONFIG_<NAME>_TYPE=...`, any case of NAME). A list of our
    /// own would not: rcd's `config/listremotes` omits the environment's
    /// remotes on rclone 1.60, and every version lists them lower-cased.
    pub fn check_endpoint(&self, endpoint: &str) -> Result<()> {
        let Some(name) = remote_name(endpoint) else {
            return Ok(());
        };
        let root = format!("{name}:");
        let what = format!("checking rclone remote {name:?} (from RCLONE_ENDPOINT {endpoint})");
        let via = self.via()?;
        match via.make_root(&root, &what) {
            Ok(()) => Ok(()),
            Err(e) if format!("{e:#}").contains(NOT_IN_CONFIG) => {
                let cfg = match &self.config {
                    Some(c) => c.display().to_string(),
                    None => "rclone's default config".to_owned(),
                };
                let names = via.remote_names()?;
                bail!(
                    "rclone remote {name:?} (from RCLONE_ENDPOINT {endpoint}) is not defined in \
                     {cfg} nor by RCLONE_CONFIG_{}_TYPE in the environment; defined: {}",
                    name.to_uppercase().replace('-', "_"),
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                );
            }
            Err(e) => Err(e),
        }
    }

    /// A small remote file (a pointer or sidecar), reading at most
    /// [`SMALL_FILE_MAX`] bytes of it: a larger one is not one we wrote.
    pub fn cat_small(&self, path: &RemotePath) -> Result<Small> {
        self.via()?.cat_small(path)
    }

    /// The whole content of a small remote file; None when it does not
    /// exist; an error when it is larger than [`SMALL_FILE_MAX`].
    pub fn cat(&self, path: &RemotePath) -> Result<Option<Vec<u8>>> {
        match self.cat_small(path)? {
            Small::Missing => Ok(None),
            Small::Bytes(b) => Ok(Some(b)),
            Small::TooLarge => bail!("{path} {}", Small::TOO_LARGE),
        }
    }

    /// List a remote directory; None when it does not exist.
    pub fn list(&self, dir: &RemotePath, hashes: bool) -> Result<Option<Vec<Entry>>> {
        self.via()?.list(dir, hashes)
    }

    /// The strongest of the hashes we compare (sha256, sha1, md5) that the
    /// backend of `dir` reports, or that it reports none; unknown where a
    /// child per call does not ask.
    pub fn compared_hash(&self, dir: &RemotePath) -> Result<BackendHash> {
        self.via()?.compared_hash(dir)
    }

    /// One file's size and the hashes the backend knows (only `only`, when
    /// given: computing one costs a read of the file on some backends);
    /// None when missing.
    pub fn stat(&self, path: &RemotePath, only: Option<HashType>) -> Result<Option<Entry>> {
        let types: Vec<&str> = match only {
            Some(h) => vec![h.name()],
            None => HASHES.to_vec(),
        };
        self.via()?.stat(path, &types)
    }

    /// Write small bytes to a remote file.
    pub fn put_bytes(&self, remote: &RemotePath, bytes: &[u8]) -> Result<()> {
        self.via()?.put_bytes(remote, bytes)
    }

    /// Move `src` over `dst`, unconditionally. rclone skips a move whose
    /// destination has the same size (and, where known, time) and deletes the
    /// source all the same: on WebDAV (vendor other) a rewritten pointer kept
    /// its old content. Every transport makes it transfer every time; the
    /// caller reads the result back by content.
    pub fn replace(&self, src: &RemotePath, dst: &RemotePath) -> Result<()> {
        self.via()?.replace(src, dst)
    }

    /// Start uploading into `remote`, fed through the returned writer;
    /// `size` must be the exact number of bytes that will be written (rclone
    /// then uploads as it would a file of that size: one PUT or multipart on
    /// object stores, no spooling on its side). Bounded by the transfer
    /// timeout; dropping the writer unfinished aborts the upload mid-body.
    pub fn rcat(&self, remote: &RemotePath, size: Option<u64>) -> Result<Uploader> {
        self.via()?.rcat(remote, size)
    }

    /// Abort what is left of an upload to `path` that did not end (its
    /// producer died, the archive was not whole, rclone failed): stop the
    /// run's rcd, which lets rclone cancel its upload itself (it aborts an
    /// S3 multipart upload on SIGTERM), then abort any multipart upload
    /// still open for exactly that key: rclone 1.75 cancels with the
    /// request's context, which our abandoned request has already ended,
    /// and 1.60 and 1.75 alike are killed before cancelling when we exit.
    /// Only S3 has such uploads; other backends answer "command not found".
    pub fn abandon_upload(&self, path: &RemotePath) -> Result<()> {
        if let Some(d) = &self.daemon {
            let stopped =
                d.0.lock()
                    .map_err(|_| anyhow::anyhow!("internal: rclone rcd lock poisoned"))?
                    .take();
            if let Some(s) = stopped {
                s.stop(UPLOAD_CANCEL);
            }
        }
        // A finished object (the failure was in rclone's answer) is no
        // upload; naming it as the root would make its directory the root.
        let listed = self.list(&path.parent(), false)?.unwrap_or_default();
        if listed.iter().any(|e| e.name == path.name() && !e.is_dir) {
            return Ok(());
        }
        self.backend_command("cleanup", path, &[("max-age", "0s")])
            .map(drop)
    }

    /// Abort the S3 multipart uploads under `dir` started longer than
    /// `older_than` ago, which no live push can still be sending; returns
    /// how many there were. Not an S3 backend: 0.
    pub fn sweep_uploads(&self, dir: &RemotePath, older_than: Duration) -> Result<usize> {
        let count = |v: Option<serde_json::Value>| -> usize {
            v.as_ref()
                .and_then(|v| v.as_object())
                .map(|m| m.values().map(|l| l.as_array().map_or(0, Vec::len)).sum())
                .unwrap_or(0)
        };
        let before = count(self.backend_command("list-multipart-uploads", dir, &[])?);
        if before == 0 {
            return Ok(0);
        }
        let age = rclone_secs(older_than);
        self.backend_command("cleanup", dir, &[("max-age", age.as_str())])?;
        let after = count(self.backend_command("list-multipart-uploads", dir, &[])?);
        Ok(before.saturating_sub(after))
    }

    /// `rclone backend COMMAND ROOT -o K=V...`; its JSON result, or None
    /// when the backend has no such command.
    fn backend_command(
        &self,
        command: &str,
        root: &RemotePath,
        opts: &[(&str, &str)],
    ) -> Result<Option<serde_json::Value>> {
        let c = BackendCommand {
            command,
            root,
            opts,
            what: format!("rclone backend {command} {root}"),
        };
        match self.via()?.backend_command(&c) {
            Err(e) if format!("{e:#}").contains(NO_COMMAND) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Delete one file; a file already gone is not an error.
    pub fn delete(&self, path: &RemotePath) -> Result<()> {
        self.via()?.delete(path)
    }

    /// Copy a remote directory tree to a local directory.
    pub fn copy_dir(&self, remote: &RemotePath, local: &Path) -> Result<()> {
        self.via()?.copy_dir(remote, &local.to_string_lossy())
    }

    /// A remote file as a byte stream, bounded by the transfer timeout.
    pub fn stream_file(&self, remote: &RemotePath) -> Result<Box<dyn Read + Send>> {
        self.via()?.stream_file(remote)
    }
}

/// How calls reach rclone: a child process per call ([`child`]), or the
/// run's one `rclone rcd` ([`rc`]). Each operation is written once per
/// transport, and [`Rclone`] dispatches each call once.
trait Transport {
    /// Make (not list) the remote's root `root`: the remote is defined.
    fn make_root(&self, root: &str, what: &str) -> Result<()>;
    /// The remotes rclone lists (for a message: see [`Rclone::check_endpoint`]).
    fn remote_names(&self) -> Result<Vec<String>>;
    fn cat_small(&self, path: &RemotePath) -> Result<Small>;
    fn list(&self, dir: &RemotePath, hashes: bool) -> Result<Option<Vec<Entry>>>;
    fn compared_hash(&self, dir: &RemotePath) -> Result<BackendHash>;
    /// One file, with the hashes of `types` only.
    fn stat(&self, path: &RemotePath, types: &[&str]) -> Result<Option<Entry>>;
    fn put_bytes(&self, remote: &RemotePath, bytes: &[u8]) -> Result<()>;
    fn replace(&self, src: &RemotePath, dst: &RemotePath) -> Result<()>;
    fn rcat(&self, remote: &RemotePath, size: Option<u64>) -> Result<Uploader>;
    /// The command's result (null when it printed nothing); "command not
    /// found" is an error here, which [`Rclone`] reads.
    fn backend_command(&self, c: &BackendCommand<'_>) -> Result<serde_json::Value>;
    fn delete(&self, path: &RemotePath) -> Result<()>;
    fn copy_dir(&self, remote: &RemotePath, local: &str) -> Result<()>;
    fn stream_file(&self, remote: &RemotePath) -> Result<Box<dyn Read + Send>>;
}

/// `rclone backend COMMAND ROOT -o K=V...`, and how errors name it.
struct BackendCommand<'a> {
    command: &'a str,
    root: &'a RemotePath,
    opts: &'a [(&'a str, &'a str)],
    what: String,
}

/// What reading a small file found, from its first bytes (at most one more
/// than [`SMALL_FILE_MAX`]).
fn small(bytes: Vec<u8>) -> Small {
    if bytes.len() as u64 > SMALL_FILE_MAX {
        Small::TooLarge
    } else {
        Small::Bytes(bytes)
    }
}

/// Whether a failure says the remote could not be reached or answered too
/// slowly: our own bounds killing rclone, or rclone's (Go's) network errors.
fn unreachable(text_lowercase: &str) -> bool {
    [
        "connection refused",
        "no route to host",
        "network is unreachable",
        "no such host",
        "connection reset",
        "did not finish within",
        "moved no data for",
    ]
    .iter()
    .any(|w| text_lowercase.contains(w))
}

/// An rclone endpoint as `RCLONE_ENDPOINT` gives it, checked once by the
/// one parser every tool and the packager use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    text: String,
}

impl Endpoint {
    /// `NAME:PATH`, `:BACKEND:PATH` or an absolute local path; a trailing
    /// `/` dropped. Anything else is refused: rclone takes a string without
    /// a colon as a path below its working directory, so a typo
    /// (`s3bucket/x` for `s3:bucket/x`) would put backups where nobody looks.
    pub fn parse(endpoint: &str) -> Result<Endpoint> {
        if endpoint.trim().is_empty() {
            bail!("RCLONE_ENDPOINT is empty: set --endpoint or RCLONE_ENDPOINT (e.g. s3:bucket/backups)");
        }
        if !endpoint.starts_with('/') && !endpoint.contains(':') {
            bail!(
                "RCLONE_ENDPOINT {endpoint:?} is neither an rclone remote (NAME:PATH, \
                 :BACKEND:PATH) nor an absolute local path: a typo? (rclone would write \
                 into {endpoint:?} below the working directory)"
            );
        }
        Ok(Endpoint {
            text: endpoint.trim_end_matches('/').to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The rclone.conf section it names (`NAME` of `NAME:PATH`); None for
    /// a local path or a `:BACKEND:` connection string.
    pub fn remote(&self) -> Option<&str> {
        remote_name(&self.text)
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

/// A path on the remote, typed once from the endpoint: rclone's root as
/// the endpoint gives it (`fs`) and the path below it (`rel`), kept apart
/// so that nothing splits a string again (a connection string's own `/`
/// would fool a split). Shown as rclone writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePath {
    fs: String,
    rel: String,
}

impl RemotePath {
    /// The endpoint itself.
    pub fn root(endpoint: &Endpoint) -> RemotePath {
        RemotePath {
            fs: endpoint.as_str().to_owned(),
            rel: String::new(),
        }
    }

    /// `name` (one or more components) below this path.
    pub fn join(&self, name: &str) -> RemotePath {
        let name = name.trim_matches('/');
        RemotePath {
            fs: self.fs.clone(),
            rel: if self.rel.is_empty() {
                name.to_owned()
            } else {
                format!("{}/{name}", self.rel)
            },
        }
    }

    /// rclone's root (`fs` of an rc call).
    pub fn fs(&self) -> &str {
        &self.fs
    }

    /// The path below the root (`remote` of an rc call); empty for the root.
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// The last component (empty for the root).
    pub fn name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or("")
    }

    /// The directory holding it (the root holds itself).
    pub fn parent(&self) -> RemotePath {
        RemotePath {
            fs: self.fs.clone(),
            rel: self
                .rel
                .rsplit_once('/')
                .map(|(d, _)| d.to_owned())
                .unwrap_or_default(),
        }
    }

    /// As one rclone argument.
    pub fn full(&self) -> String {
        if self.rel.is_empty() {
            self.fs.clone()
        } else {
            join(&self.fs, &self.rel)
        }
    }
}

impl std::fmt::Display for RemotePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full())
    }
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
    fn a_remote_path_keeps_root_and_path_apart() {
        let e = Endpoint::parse(":s3,endpoint='http://127.0.0.1:9':b/etcd").unwrap();
        let p = RemotePath::root(&e).join("m").join("generations/x.json");
        assert_eq!(p.fs(), ":s3,endpoint='http://127.0.0.1:9':b/etcd");
        assert_eq!(p.rel(), "m/generations/x.json");
        assert_eq!(p.name(), "x.json");
        assert_eq!(p.parent().rel(), "m/generations");
        assert_eq!(
            p.to_string(),
            ":s3,endpoint='http://127.0.0.1:9':b/etcd/m/generations/x.json"
        );
        let r = RemotePath::root(&Endpoint::parse("s3:").unwrap());
        assert_eq!(r.join("b").to_string(), "s3:b");
        assert_eq!(r.to_string(), "s3:");
    }

    #[test]
    fn joins_like_rclone() {
        assert_eq!(join("s3:", "abc"), "s3:abc");
        assert_eq!(join("s3:b/p", "abc"), "s3:b/p/abc");
    }

    /// rclone 1.60's answers (`rclone rc --loopback operations/...` on a
    /// local directory), abridged.
    #[test]
    fn rc_answers_as_rclone_gives_them() {
        let list = serde_json::from_str(
            r#"{"list":[{"IsDir":false,"MimeType":"text/plain; charset=utf-8",
            "ModTime":"2026-12-02T15:57:12.233432738Z","Name":"a.txt","Path":"a.txt","Size":3}]}"#,
        )
        .unwrap();
        let e = parse_rc_list(list).unwrap();
        assert_eq!(
            (e[0].name.as_str(), e[0].size, e[0].is_dir),
            ("a.txt", 3, false)
        );
        let missing = serde_json::from_str(r#"{"item": null}"#).unwrap();
        assert!(parse_rc_stat(missing).unwrap().is_none());
        let info =
            serde_json::from_str(r#"{"Hashes":["md5","sha1","whirlpool","crc32","sha256"]}"#)
                .unwrap();
        assert_eq!(fsinfo_compared_hash(Some(&info)), Some(HashType::Sha256));
        let info = serde_json::from_str(r#"{"Hashes":["MD5"]}"#).unwrap();
        assert_eq!(fsinfo_compared_hash(Some(&info)), Some(HashType::Md5));
        assert_eq!(fsinfo_compared_hash(None), None);
    }

    /// Found by `make fuzz` (target rclone): an rcd answer that is not a
    /// JSON object (here lsjson's array) panicked in serde_json's
    /// `answer["list"]`, which cannot index a non-object mutably.
    #[test]
    fn rc_answers_that_are_not_objects_are_errors_not_panics() {
        let lsjson = serde_json::json!([{"Name": "a", "Size": 1, "IsDir": false}]);
        assert!(parse_rc_list(lsjson).is_err());
        assert!(parse_rc_list(serde_json::json!("list")).is_err());
        assert!(parse_rc_list(serde_json::Value::Null).is_err());
        assert!(parse_rc_stat(serde_json::json!(1)).unwrap().is_none());
        assert_eq!(rc_result(serde_json::json!([1])), serde_json::Value::Null);
        assert_eq!(
            rc_result(serde_json::json!({"result": {"a": 1}})),
            serde_json::json!({"a": 1})
        );
    }
}

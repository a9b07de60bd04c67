//! Running external programs (`etcdctl`, `rclone`, `etcd`) with a timeout and
//! with errors that carry the command line and the tail of the child's stderr.
//!
//! This file is the runner: a [`Program`] resolved once, an [`Invocation`]
//! of it (arguments, environment, deadline), run to completion, and the
//! errors it fails with. [`watch`] holds the children whose data streams
//! through us (stall watchdogs), [`daemon`] the long-lived ones. Every
//! child is started from [`Invocation`]'s one expression: the same
//! environment, the parent-death signal, registered with the signal handler.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::redact::is_secret_flag;
pub use crate::redact::redact;

pub mod daemon;
pub mod watch;

pub use daemon::{Daemon, Logged, Tail};
pub use watch::{ChildWriter, StreamReader};

/// An external program resolved once, at start-up, to an absolute path.
#[derive(Debug, Clone)]
pub struct Program {
    name: &'static str,
    path: PathBuf,
    /// Why it could not be found, for a program looked for on PATH that
    /// only some jobs need ([`Program::find_if_any`]): running it fails
    /// with this reason.
    absent: Option<String>,
}

impl Program {
    /// Resolve `name` (or an explicit `path` given by the operator) to an
    /// executable. `package` names the Debian package that ships it, for the
    /// error message an operator sees on a host that lacks it.
    pub fn find(name: &'static str, path: Option<&Path>, package: &str) -> Result<Self> {
        let resolved = match path {
            Some(p) => which::which(p).with_context(|| {
                format!(
                    "{name} not found at {} (check the configured path)",
                    p.display()
                )
            })?,
            None => which::which(name)
                .map_err(|_| anyhow::anyhow!("{name} not found in PATH (install {package})"))?,
        };
        Ok(Program {
            name,
            path: resolved,
            absent: None,
        })
    }

    /// [`Program::find`] for a program that only some of a tool's jobs
    /// need (etcdctl, for a v2 probe a v3 backup can do without): not
    /// found on PATH it is [absent](Program::is_absent), and running it
    /// fails with the reason [`Program::find`] gives. An explicit `path`
    /// that is wrong is still refused at once.
    pub fn find_if_any(name: &'static str, path: Option<&Path>, package: &str) -> Result<Self> {
        if path.is_some() {
            return Program::find(name, path, package);
        }
        Ok(
            Program::find(name, None, package).unwrap_or_else(|e| Program {
                name,
                path: PathBuf::from(name),
                absent: Some(e.to_string()),
            }),
        )
    }

    /// Not found ([`Program::find_if_any`]).
    pub fn is_absent(&self) -> bool {
        self.absent.is_some()
    }

    /// Fails with the reason it was not found, if it was not.
    pub fn require(&self) -> Result<()> {
        match &self.absent {
            Some(why) => bail!("{why}"),
            None => Ok(()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Start describing one invocation of this program.
    pub fn command<I, S>(&self, args: I) -> Invocation
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Invocation {
            program: self.clone(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            env_remove_prefixes: Vec::new(),
            stdin: None,
            timeout: Duration::from_secs(60),
            timeout_name: None,
            stall: None,
        }
    }
}

/// One invocation of a [`Program`]: its arguments, environment and deadline.
#[derive(Debug, Clone)]
pub struct Invocation {
    program: Program,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_remove_prefixes: Vec<String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    /// The flag that sets `timeout`, named when it is hit.
    timeout_name: Option<&'static str>,
    /// For streams: kill when no data moved for this long (and its flag).
    stall: Option<(Duration, &'static str)>,
}

/// What a finished child printed.
#[derive(Debug)]
pub struct Captured {
    pub stdout: String,
    /// Its last [`STDERR_TAIL_BYTES`].
    pub stderr: String,
}

/// The environment a child gets, built in this one place: `inherited`
/// without any variable whose name starts with one of `remove_prefixes`,
/// then every `set` pair, which wins over anything inherited (duct's nested
/// `env_remove` would otherwise undo a variable set outside it: an exported
/// `ETCDCTL_API=3` turned our v2 calls into v3 ones).
pub fn environment(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    remove_prefixes: &[&str],
    set: &[(OsString, OsString)],
) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = inherited
        .into_iter()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            !remove_prefixes.iter().any(|p| k.starts_with(p))
        })
        .filter(|(k, _)| !set.iter().any(|(s, _)| s == k))
        .collect();
    for (k, v) in set {
        out.retain(|(o, _)| o != k);
        out.push((k.clone(), v.clone()));
    }
    out
}

/// How many trailing stderr lines of a failed child an error message quotes.
const STDERR_TAIL_LINES: usize = 6;

/// How much of a child's stderr is kept, from its end: what its error
/// message quotes, and all of [`Captured::stderr`].
pub const STDERR_TAIL_BYTES: usize = 8 << 10;

/// A child's stderr, drained by a thread for as long as the child writes
/// (so it never blocks on a full pipe), of which only the last
/// [`STDERR_TAIL_BYTES`] are kept.
struct StderrTail {
    reader: std::sync::Mutex<Option<std::thread::JoinHandle<Vec<u8>>>>,
    text: std::sync::OnceLock<String>,
}

impl StderrTail {
    /// The write end, for the child's stderr (`stderr_file`), and the tail
    /// of what comes out of the other.
    fn pipe() -> Result<(io::PipeWriter, StderrTail)> {
        let (r, w) = io::pipe().context("creating a pipe for a child's stderr")?;
        let reader = std::thread::Builder::new()
            .name("child-stderr".into())
            .spawn(move || keep_tail(r, STDERR_TAIL_BYTES))
            .context("starting the thread that reads a child's stderr")?;
        Ok((
            w,
            StderrTail {
                reader: std::sync::Mutex::new(Some(reader)),
                text: std::sync::OnceLock::new(),
            },
        ))
    }

    /// The tail, once every writer closed the pipe (call it once the child
    /// has exited; it waits for the end of its stderr, as a capture would).
    fn text(&self) -> String {
        self.text
            .get_or_init(|| {
                let reader = self.reader.lock().ok().and_then(|mut r| r.take());
                // A reader that panicked leaves no tail: the error still
                // has the command line and its exit status.
                let bytes = reader.and_then(|r| r.join().ok()).unwrap_or_default();
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .clone()
    }
}

/// Everything `from` yields until its end, of which only the last `bound`
/// bytes are kept. Where the front was cut, what is kept starts at a line
/// (a half line would read as a message of its own), unless the kept
/// bytes hold only one line: then at a character.
fn keep_tail(mut from: impl io::Read, bound: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut cut = false;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                // Trimmed in batches: memory stays under 2 * bound + buf.
                if tail.len() > 2 * bound {
                    tail.drain(..tail.len() - bound);
                    cut = true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A pipe read fails only when it is gone: nothing more comes.
            Err(_) => break,
        }
    }
    if tail.len() > bound {
        tail.drain(..tail.len() - bound);
        cut = true;
    }
    if cut {
        match tail.iter().position(|&b| b == b'\n') {
            Some(i) if tail[i + 1..].iter().any(|b| !b.is_ascii_whitespace()) => {
                tail.drain(..=i);
            }
            _ => {
                // Not inside a character: past UTF-8 continuation bytes.
                let start = tail
                    .iter()
                    .position(|b| !(0x80..0xc0).contains(b))
                    .unwrap_or(tail.len());
                tail.drain(..start);
            }
        }
    }
    tail
}

impl Invocation {
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, val: impl Into<OsString>) -> Self {
        self.env.push((key.into(), val.into()));
        self
    }

    /// Remove every inherited environment variable whose name starts with
    /// `prefix`. etcdctl exits fatally when `ETCDCTL_X` is set and `--x` is
    /// passed too, so we pass every setting as a flag and scrub the variables.
    pub fn env_remove_prefix(mut self, prefix: &str) -> Self {
        self.env_remove_prefixes.push(prefix.to_owned());
        self
    }

    /// Feed these bytes to the child's stdin (small payloads only).
    pub fn stdin_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A deadline set by an operator's flag, which the error names when hit.
    pub fn bounded(mut self, timeout: Duration, flag: &'static str) -> Self {
        self.timeout = timeout;
        self.timeout_name = Some(flag);
        self
    }

    /// For [`Invocation::stream`] and [`Invocation::spawn_writer`]: kill the
    /// child when no data moved through us for `stall`, naming `flag`.
    pub fn stall(mut self, stall: Duration, flag: &'static str) -> Self {
        self.stall = Some((stall, flag));
        self
    }

    /// "within 1m (--remote-timeout)": the bound, as an error names it.
    fn bound_text(&self) -> String {
        bound_text(self.timeout, self.timeout_name)
    }

    /// The command line as shown in logs and errors, secrets redacted
    /// ([`redact`]).
    pub fn display(&self) -> String {
        let mut out = self.program.name.to_owned();
        let mut redact_next = false;
        for a in &self.args {
            let s = a.to_string_lossy();
            out.push(' ');
            if redact_next {
                out.push_str("***");
                redact_next = false;
                continue;
            }
            if is_secret_flag(&s) && !s.contains('=') {
                out.push_str(&s);
                redact_next = true;
                continue;
            }
            // Redact the raw argument, then quote: quoting first would turn
            // a quoted secret's ' into '\'' and hide its end from the rule.
            match s.split_once('=') {
                Some((flag, _)) if is_secret_flag(flag) => {
                    out.push_str(flag);
                    out.push_str("=***");
                }
                _ => out.push_str(&shell_quote(&redact(&s))),
            }
        }
        out
    }

    fn expression(&self) -> Result<duct::Expression> {
        let e = self.bare_expression()?;
        Ok(match &self.stdin {
            Some(b) => e.stdin_bytes(b.clone()),
            None => e.stdin_null(),
        })
    }

    /// Program, arguments and environment; stdin, stdout and stderr unset.
    /// Fails, naming why, for an absent program.
    fn bare_expression(&self) -> Result<duct::Expression> {
        self.program.require()?;
        let e = duct::cmd(self.program.path.as_os_str(), &self.args)
            .unchecked()
            .before_spawn(|cmd| {
                crate::scratch::dies_with_us(cmd);
                Ok(())
            });
        Ok(e.full_env(self.environment()))
    }

    /// The child's whole environment: ours, minus the scrubbed prefixes,
    /// plus what this invocation sets.
    fn environment(&self) -> Vec<(OsString, OsString)> {
        let prefixes: Vec<&str> = self
            .env_remove_prefixes
            .iter()
            .map(String::as_str)
            .collect();
        environment(std::env::vars_os(), &prefixes, &self.env)
    }

    /// Run to completion, capturing stdout and stderr. Fails with the command
    /// line and the tail of stderr when the child exits non-zero, and kills it
    /// when it outlives the timeout.
    pub fn run(&self) -> Result<Captured> {
        self.run_accepting(&[]).map(|(_, c)| c)
    }

    /// Like [`Invocation::run`], but the exit codes in `accept` also count as
    /// success and are returned (0 for plain success).
    pub fn run_accepting(&self, accept: &[i32]) -> Result<(i32, Captured)> {
        tracing::debug!("running: {}", self.display());
        let (stderr, tail) = StderrTail::pipe()?;
        let handle = self
            .expression()?
            .stdout_capture()
            .stderr_file(stderr)
            .start()
            .with_context(|| format!("starting {}", self.program.path.display()))?;
        let running = guard_children(handle.pids());
        let waited = handle
            .wait_timeout(self.timeout)
            .with_context(|| format!("waiting for {}", self.display()))?;
        if waited.is_some() {
            // Reaped: its pid may be reused; the signal handler forgets it.
            drop(running);
        }
        let Some(output) = waited else {
            // The child is stuck (a hung remote, an etcd that does not
            // answer). Kill it and say so.
            let _ = handle.kill(); // best effort: it may have just exited
            bail!(
                "`{}` did not finish {} and was killed",
                self.display(),
                self.bound_text()
            );
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = tail.text();
        let code = output.status.code();
        if output.status.success() {
            return Ok((0, Captured { stdout, stderr }));
        }
        if let Some(c) = code.filter(|c| accept.contains(c)) {
            return Ok((c, Captured { stdout, stderr }));
        }
        bail!(
            "`{}` failed ({}){}",
            self.display(),
            describe_status(output.status),
            format_tail(&stderr, &stdout)
        );
    }
}

/// Register running children with the signal handler until dropped.
fn guard_children(pids: Vec<u32>) -> Vec<crate::scratch::ChildGuard> {
    pids.into_iter()
        .map(crate::scratch::ChildGuard::new)
        .collect()
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// The last few non-empty lines of stderr (or stdout when stderr is empty),
/// formatted for the end of an error message.
pub fn format_tail(stderr: &str, stdout: &str) -> String {
    let source = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<String> = messages(source)
        .iter()
        .filter_map(|l| readable_line(l))
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    format!(": {}", redact(&lines[start..].join(" | ")))
}

/// A program's output as its messages, one per entry: a line indented
/// with whitespace continues the message above it (rclone 1.60's S3 errors
/// end `...\n\tstatus code: 400, request id: ...`), blank lines are none.
fn messages(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match out.last_mut() {
            Some(prev) if line.starts_with(char::is_whitespace) => {
                prev.push(' ');
                prev.push_str(line.trim());
            }
            _ => out.push(line.trim_end().to_owned()),
        }
    }
    out
}

/// Another program's message (rclone's, from its stderr or an rcd reply)
/// as one line of ours: every error a tool prints is one line, and the
/// journal makes one entry of each line.
pub fn one_line(text: &str) -> String {
    messages(text).join(" | ")
}

/// A line of a child's output as a message may show it. etcd (server, and
/// etcdctl 3.6+) logs JSON objects (`{"level":"warn","ts":...,"msg":...}`),
/// which are never passed through raw: a warning or error that carries an
/// `error` becomes `msg: error`, an error without one its `msg`, and the rest
/// (info, and warnings such as etcdctl 3.6's "unrecognized environment
/// variable") is left out. Other lines are kept as they are.
fn readable_line(line: &str) -> Option<String> {
    let t = line.trim();
    if !t.starts_with('{') {
        return Some(line.to_owned());
    }
    let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(t) else {
        return Some(line.to_owned());
    };
    let (Some(level), Some(msg)) = (
        o.get("level").and_then(|v| v.as_str()),
        o.get("msg").and_then(|v| v.as_str()),
    ) else {
        return Some(line.to_owned());
    };
    let error = o.get("error").and_then(|v| v.as_str());
    match (level, error) {
        ("warn" | "error" | "dpanic" | "panic" | "fatal", Some(e)) => Some(format!("{msg}: {e}")),
        ("error" | "dpanic" | "panic" | "fatal", None) => Some(msg.to_owned()),
        _ => None,
    }
}

/// A duration for messages, to the second (`3s`, `5m`), never `2s 999ms 944us`.
pub fn human_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs_f64().round() as u64)).to_string()
}

/// Render a path for messages.
pub fn show(path: &Path) -> std::path::Display<'_> {
    path.display()
}

fn bound_text(limit: Duration, flag: Option<&'static str>) -> String {
    match flag {
        Some(f) => format!("within {} ({f})", human_duration(limit)),
        None => format!("within {}", human_duration(limit)),
    }
}

/// The failure of the child behind a stream or pipe, as opposed to a
/// problem with the data that came through it: callers tell "the download
/// failed" from "the archive is corrupt" with [`is_child_failure`].
#[derive(Debug)]
pub struct ChildFailure(pub String);

impl std::fmt::Display for ChildFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ChildFailure {}

/// Whether `e` (anywhere in its chain) is a [`ChildFailure`].
pub fn is_child_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<ChildFailure>()
            || c.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<ChildFailure>())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_we_set_for_a_child_wins_over_what_it_inherits() {
        let os = |k: &str, v: &str| (OsString::from(k), OsString::from(v));
        let inherited = vec![
            os("ETCDCTL_API", "3"),
            os("ETCDCTL_ENDPOINTS", "http://elsewhere:2379"),
            os("PATH", "/bin"),
            os("RCLONE_X", "old"),
        ];
        let env = environment(
            inherited,
            &["ETCDCTL_"],
            &[os("ETCDCTL_API", "2"), os("RCLONE_X", "new")],
        );
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        env.sort();
        let want = [("ETCDCTL_API", "2"), ("PATH", "/bin"), ("RCLONE_X", "new")];
        assert_eq!(
            env,
            want.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
    }

    #[test]
    fn durations_round_to_seconds() {
        assert_eq!(human_duration(Duration::from_millis(2_999)), "3s");
        assert_eq!(human_duration(Duration::from_secs(300)), "5m");
    }

    #[test]
    fn etcd_json_log_lines_are_never_passed_through_raw() {
        // Captured from etcdctl 3.7.3 (member add of a second learner).
        let err = r#"{"level":"warn","ts":"2026-12-02T10:07:06.795744Z","caller":"flags/flag.go:94","msg":"unrecognized environment variable","environment-variable":"ETCDCTL_API=3"}
{"level":"warn","ts":"2026-12-02T10:07:06.801704Z","logger":"etcd-client","caller":"v3@v3.7.3/retry_interceptor.go:68","msg":"retrying of unary invoker failed","target":"etcd-endpoints://0x18fb112fcc00/127.0.0.1:38953","attempt":0,"error":"rpc error: code = FailedPrecondition desc = etcdserver: too many learner members in cluster"}
{"level":"info","msg":"closing"}
{"level":"fatal","msg":"discovery failed"}
Error: etcdserver: too many learner members in cluster
{not json"#;
        assert_eq!(
            format_tail(err, ""),
            ": retrying of unary invoker failed: rpc error: code = FailedPrecondition desc = \
             etcdserver: too many learner members in cluster | discovery failed | Error: \
             etcdserver: too many learner members in cluster | {not json"
        );
        assert_eq!(format_tail(r#"{"level":"info","msg":"x"}"#, ""), "");
    }

    #[test]
    fn tail_keeps_last_lines_and_prefers_stderr() {
        let err = "a\n\nb\nc\nd\ne\nf\ng\n";
        assert_eq!(format_tail(err, "out"), ": b | c | d | e | f | g");
        assert_eq!(format_tail("  \n", "only stdout"), ": only stdout");
        assert_eq!(format_tail("", ""), "");
    }

    #[test]
    fn a_message_continued_on_indented_lines_is_one_line() {
        // rclone 1.60's S3 error, as its rcd replies it.
        let s3 = "InvalidBucketName: The specified bucket is not valid.\n\tstatus code: 400, request id: X, host id: ";
        assert_eq!(
            one_line(s3),
            "InvalidBucketName: The specified bucket is not valid. status code: 400, request id: X, host id:"
        );
        assert_eq!(one_line("a\n\nb\n"), "a | b");
        assert_eq!(
            format_tail(&format!("x\n{s3}\n"), ""),
            format!(": x | {}", one_line(s3))
        );
    }

    #[test]
    fn display_redacts_before_quoting() {
        let p = Program {
            name: "rclone",
            path: PathBuf::from("/bin/true"),
            absent: None,
        };
        let shown = p
            .command([
                "lsjson",
                ":s3,access_key_id=AK,secret_access_key='SEC,RET:X':b",
                "--webdav-pass=-Zx9 y",
            ])
            .display();
        for secret in ["AK,", "RET:X", "Zx9"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn display_redacts_secret_flags_and_quotes() {
        let p = Program {
            name: "rclone",
            path: PathBuf::from("/bin/true"),
            absent: None,
        };
        let inv = p.command(["serve", "--pass", "hunter2", "--user=bob", "a b"]);
        let shown = inv.display();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("bob"), "{shown}");
        assert_eq!(shown, "rclone serve --pass *** --user=*** 'a b'");
    }

    #[test]
    fn a_program_only_some_jobs_need_fails_when_run_not_when_looked_for() {
        let p = Program::find_if_any("etcd2-no-such-program", None, "pkg").expect("not an error");
        assert!(p.is_absent());
        let err = p.command(["x"]).run().expect_err("absent");
        assert_eq!(
            format!("{err:#}"),
            "etcd2-no-such-program not found in PATH (install pkg)"
        );
        // An explicit path that is wrong is a wrong setting: refused at once.
        let err = Program::find_if_any("sh", Some(Path::new("/nonexistent/sh")), "dash")
            .expect_err("wrong path");
        assert!(
            format!("{err:#}").contains("check the configured path"),
            "{err:#}"
        );
        assert!(!Program::find_if_any("sh", None, "dash")
            .unwrap()
            .is_absent());
    }

    #[test]
    fn failing_child_reports_command_and_stderr_tail() {
        let p = Program::find("sh", None, "dash").expect("sh exists");
        let err = p
            .command(["-c", "echo boom >&2; exit 3"])
            .run()
            .expect_err("must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains("exit code 3"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
        assert!(msg.contains("sh -c"), "{msg}");
    }

    /// A child that logs without end costs us at most the bound, and is
    /// never blocked on a full pipe: its error still ends with the line
    /// that says why.
    #[test]
    fn a_child_flooding_stderr_fails_with_its_last_line_within_the_bound() {
        let p = Program::find("sh", None, "dash").expect("sh exists");
        // 16 lines of 64 KiB (1 MiB), then the cause.
        let script = "l=$(head -c 65536 /dev/zero | tr '\\0' x); \
                      for i in $(seq 16); do echo \"$l\" >&2; done; \
                      echo 'the real cause' >&2; exit 1";
        let err = p
            .command(["-c", script])
            .timeout(Duration::from_secs(30))
            .run()
            .expect_err("must fail");
        let msg = format!("{err:#}");
        let (_, part) = msg.split_once("failed (exit code 1)").expect(&msg);
        assert!(part.len() <= STDERR_TAIL_BYTES, "{} bytes", part.len());
        assert!(
            part.ends_with("the real cause"),
            "{}",
            &part[part.len().saturating_sub(200)..]
        );
    }

    #[test]
    fn a_tail_keeps_the_end_from_a_line_start_or_a_character() {
        let t = |input: &[u8], bound| String::from_utf8(keep_tail(input, bound)).unwrap();
        assert_eq!(t(b"short\n", 100), "short\n");
        // Cut: from the first whole line on.
        assert_eq!(t(b"aaaa\nbbbb\ncc\n", 7), "cc\n");
        // One line longer than the bound: its end, never half a character.
        assert_eq!(t("x".repeat(20).as_bytes(), 8), "xxxxxxxx");
        assert_eq!(t("ééééé\n".as_bytes(), 6), "éé\n");
        let mut long = vec![b'y'; 3 << 20];
        long.extend_from_slice(b"\nend\n");
        assert_eq!(t(&long, STDERR_TAIL_BYTES), "end\n");
    }

    #[test]
    fn stuck_child_is_killed_at_the_timeout() {
        let p = Program::find("sleep", None, "coreutils").expect("sleep exists");
        let err = p
            .command(["30"])
            .timeout(Duration::from_millis(200))
            .run()
            .expect_err("must time out");
        assert!(
            format!("{err:#}").contains("did not finish within"),
            "{err:#}"
        );
    }

    #[test]
    fn missing_program_names_the_package() {
        let err = Program::find("etcdctl-does-not-exist", None, "etcd-client").unwrap_err();
        assert_eq!(
            err.to_string(),
            "etcdctl-does-not-exist not found in PATH (install etcd-client)"
        );
    }
}

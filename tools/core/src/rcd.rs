//! One long-lived `rclone rcd` serving a run's remote calls: one rclone
//! process per push instead of one per call (about fourteen), each call an
//! HTTP request to it. It listens on 127.0.0.1 on a port of its choosing,
//! and answers only to a random credential handed to it in its environment
//! (never on a command line, which other users can read in /proc). The
//! operator's config, flags and our bounds are its command line, as for
//! every other rclone call (the rclone module's).
//!
//! Bounds: small calls are bounded by --remote-timeout; transfers by
//! --stall-timeout on every socket read and write and by --transfer-timeout
//! in total. Each is named when hit, in the words the child-process path
//! uses, so `Rclone::explain` (rclone.rs) classifies both alike. The
//! [`Bounds`] are defined here, below the rclone facade that re-exports them.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::cmd::{human_duration, one_line, redact, ChildFailure, Daemon, Invocation};

/// How long rclone may take to start listening, beyond the connect bound.
const START: Duration = Duration::from_secs(20);
/// What rclone prints once it listens.
const LISTENING: &str = "Serving remote control on http://";
/// Upload chunks handed to the HTTP thread; 2 in flight (with the socket
/// buffers, what is read runs ahead of what rclone took by a few MiB at
/// most, so the progress shown is the upload's).
const CHUNK: usize = 256 << 10;

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

pub struct Session {
    daemon: Daemon,
    base: String,
    auth: String,
    agent: ureq::Agent,
    bounds: Bounds,
}

/// A random credential, hex: 128 bits from the kernel.
fn random_hex() -> Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom for the rclone rcd credential")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Percent-encode everything but unreserved characters (and `/` where
/// `keep_slash`), for a path segment of the rcd URL.
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `--rc-serve` can read below the root `fs`: Go's HTTP router
/// cleans `//` out of a URL path (and redirects), so a connection string
/// holding one (`endpoint='http://…'`) cannot be named there. Those reads
/// go through an `rclone cat` child instead.
pub fn servable(fs: &str) -> bool {
    !fs.contains("//")
}

/// The error text of an rcd reply (`{"error": ..., "status": ...}`); the
/// reply's echo of our input is left out (it may hold a connection string).
pub fn reply_error(status: u16, body: &str) -> String {
    let text = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.trim().chars().take(300).collect());
    format!("{} (HTTP {status})", redact(&one_line(&text)))
}

/// Whether a failed call is rclone saying "not found" (directory or file).
fn is_not_found(status: u16, body: &str) -> bool {
    status == 404
        || ["directory not found", "object not found", "file not found"]
            .iter()
            .any(|w| body.contains(w))
}

/// rcd's refusal of a call: `None` where it says "not found", else an
/// error with rclone's words.
fn refusal<T>(what: &str, code: u16, resp: ureq::Response) -> Result<Option<T>> {
    let body = resp.into_string().unwrap_or_default();
    if is_not_found(code, &body) {
        return Ok(None);
    }
    bail!("{what}: {}", reply_error(code, &body))
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

impl Session {
    /// Start `rclone rcd` (`inv` is rclone with the config, flags and
    /// bounds of every call) and wait until it listens.
    pub fn start(inv: Invocation, bounds: &Bounds) -> Result<Session> {
        let (user, pass) = (random_hex()?, random_hex()?);
        let daemon = inv
            .arg("rcd")
            .arg("--rc-addr=127.0.0.1:0")
            .arg("--rc-serve")
            .env("RCLONE_RC_USER", &user)
            .env("RCLONE_RC_PASS", &pass)
            // rclone rcd tells systemd it is ready where it finds a notify
            // socket: it would speak for our unit, and it exits where the
            // socket is not there (seen under etcd2-verify's test).
            .env_remove_prefix("NOTIFY_SOCKET")
            .daemon()?;
        let addr = daemon.wait_for(bounds.connect + START, "where it listens", |line| {
            let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
            let addr = rest.trim_end().trim_end_matches('/');
            addr.starts_with("127.0.0.1:").then(|| addr.to_owned())
        })?;
        use base64::Engine;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(bounds.connect)
            .timeout_read(bounds.stall)
            .timeout_write(bounds.stall)
            .max_idle_connections(4)
            .build();
        tracing::debug!("rclone rcd listening on {addr}");
        Ok(Session {
            daemon,
            base: format!("http://{addr}"),
            auth,
            agent,
            bounds: bounds.clone(),
        })
    }

    /// Stop rclone with SIGTERM (it cancels what it has in flight), SIGKILL
    /// after `grace`.
    pub fn stop(&self, grace: Duration) {
        self.daemon.stop(grace);
    }

    fn timeout_error(&self, what: &str, bound: Duration, flag: &str) -> anyhow::Error {
        anyhow!(
            "`{}` {what} did not finish within {} ({flag})",
            self.daemon.display(),
            human_duration(bound)
        )
    }

    fn transport_error(&self, what: &str, e: ureq::Error) -> anyhow::Error {
        match e {
            ureq::Error::Status(code, resp) => {
                let body = resp.into_string().unwrap_or_default();
                anyhow!("{what}: {}", reply_error(code, &body))
            }
            ureq::Error::Transport(t) => {
                let text = t.to_string();
                if text.contains("timed out") || text.contains("Timeout") {
                    self.timeout_error(what, self.bounds.remote, "--remote-timeout")
                } else {
                    anyhow!(
                        "{what}: rclone rcd did not answer: {}{}",
                        redact(&one_line(&text)),
                        self.daemon.tail()
                    )
                }
            }
        }
    }

    /// One rc method with JSON parameters, bounded by --remote-timeout (or
    /// the transfer bound where `long`); `None` when rclone says the
    /// object or directory does not exist.
    pub fn call(
        &self,
        method: &str,
        params: Value,
        what: &str,
        long: bool,
    ) -> Result<Option<Value>> {
        let (bound, flag) = if long {
            (self.bounds.transfer, "--transfer-timeout")
        } else {
            (self.bounds.remote, "--remote-timeout")
        };
        tracing::debug!("rclone rc {method} ({what})");
        let started = Instant::now();
        let reply = self
            .agent
            .post(&format!("{}/{method}", self.base))
            .set("Authorization", &self.auth)
            .set("Content-Type", "application/json")
            .timeout(bound)
            .send_string(&params.to_string());
        let resp = match reply {
            Ok(r) => r,
            Err(ureq::Error::Status(code, resp)) => return refusal(what, code, resp),
            Err(e) if started.elapsed() >= bound => {
                tracing::debug!("rclone rc {method}: {e}");
                return Err(self.timeout_error(what, bound, flag));
            }
            Err(e) => return Err(self.transport_error(what, e)),
        };
        let body = resp.into_string().map_err(|e| {
            if timed_out(&e) || started.elapsed() >= bound {
                self.timeout_error(what, bound, flag)
            } else {
                anyhow!("{what}: reading rclone rcd's reply: {e}")
            }
        })?;
        let v = serde_json::from_str(&body)
            .with_context(|| format!("{what}: rclone rcd's reply is not JSON"))?;
        Ok(Some(v))
    }

    /// A remote file as a stream (`--rc-serve`); `None` when missing.
    /// `transfer`: an archive, bounded by the transfer and stall bounds;
    /// otherwise a small file, bounded by --remote-timeout.
    pub fn open(&self, fs: &str, name: &str, transfer: bool) -> Result<Option<Download>> {
        let path = crate::redact::redact(&format!("{fs}/{name}")).into_owned();
        let url = format!(
            "{}/[{}]/{}",
            self.base,
            encode(fs, false),
            encode(name, true)
        );
        let (bound, flag) = if transfer {
            (self.bounds.transfer, "--transfer-timeout")
        } else {
            (self.bounds.remote, "--remote-timeout")
        };
        tracing::debug!("rclone rc serve {path}");
        let what = format!("reading {path}");
        let started = Instant::now();
        // Before the request: rclone may log why it fails the body before
        // the answer's headers reach us.
        let log = (self.daemon.tail_handle(), self.daemon.tail_handle().mark());
        let resp = match self.agent.get(&url).set("Authorization", &self.auth).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, resp)) => return refusal(&what, code, resp),
            Err(e) => {
                let e = if started.elapsed() >= self.bounds.stall {
                    anyhow!(
                        "`{}` {what}: moved no data for {} (--stall-timeout)",
                        self.daemon.display(),
                        human_duration(self.bounds.stall)
                    )
                } else {
                    self.transport_error(&what, e)
                };
                return Err(e);
            }
        };
        Ok(Some(Download {
            log,
            inner: resp.into_reader(),
            deadline: started + bound,
            bound: (bound, flag),
            stall: self.bounds.stall,
            what,
            display: self.daemon.display().to_owned(),
        }))
    }

    /// Start uploading to `path`, fed through the returned writer; its size
    /// need not be known. rclone streams it to the backend as it arrives
    /// (a multipart upload on object stores). Dropping the writer without
    /// [`Upload::finish`] aborts the request mid-body: rclone never sees a
    /// whole file, so it commits nothing as if it were whole.
    pub fn upload(&self, dir: &str, name: &str) -> Result<Upload> {
        let boundary = format!("etcd2-backup-{}", random_hex()?);
        let url = format!(
            "{}/operations/uploadfile?fs={}&remote=",
            self.base,
            encode(dir, false)
        );
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            name.replace(['"', '\r', '\n'], "_")
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
        let deadline = Instant::now() + self.bounds.transfer;
        let body = Body {
            rx,
            head: io::Cursor::new(head.into_bytes()),
            cur: io::Cursor::new(Vec::new()),
            tail: io::Cursor::new(tail.into_bytes()),
            ended: false,
            deadline,
            transfer: self.bounds.transfer,
        };
        let req = self.agent.post(&url).set("Authorization", &self.auth).set(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        );
        let (display, stall, transfer) = (
            self.daemon.display().to_owned(),
            self.bounds.stall,
            self.bounds.transfer,
        );
        tracing::debug!(
            "rclone rc operations/uploadfile ({})",
            redact(&format!("{dir}/{name}"))
        );
        // The caller's context names the upload; these errors say why.
        let thread = std::thread::spawn(move || -> std::result::Result<(), String> {
            match req.send(body) {
                Ok(_) => Ok(()),
                Err(ureq::Error::Status(code, resp)) => {
                    let body = resp.into_string().unwrap_or_default();
                    Err(reply_error(code, &body))
                }
                Err(ureq::Error::Transport(t)) => {
                    let text = t.to_string();
                    Err(if Instant::now() >= deadline {
                        format!(
                            "`{display}` did not finish the upload within {} (--transfer-timeout)",
                            human_duration(transfer)
                        )
                    } else if text.contains("timed out") || text.contains("Timeout") {
                        format!(
                            "`{display}` moved no data for {} (--stall-timeout)",
                            human_duration(stall)
                        )
                    } else {
                        redact(&one_line(&text)).into_owned()
                    })
                }
            }
        });
        Ok(Upload {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
            thread: Some(thread),
        })
    }
}

enum Chunk {
    Data(Vec<u8>),
    End,
}

/// The multipart body, pulled by the HTTP thread: head, the chunks as they
/// come, and the closing boundary only after an explicit end.
struct Body {
    rx: Receiver<Chunk>,
    head: io::Cursor<Vec<u8>>,
    cur: io::Cursor<Vec<u8>>,
    tail: io::Cursor<Vec<u8>>,
    ended: bool,
    deadline: Instant,
    transfer: Duration,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        loop {
            if self.ended {
                return self.tail.read(buf);
            }
            let n = self.cur.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if Instant::now() >= self.deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("not done within {}", human_duration(self.transfer)),
                ));
            }
            match self.rx.recv() {
                Ok(Chunk::Data(v)) => self.cur = io::Cursor::new(v),
                Ok(Chunk::End) => self.ended = true,
                // The writer went away unfinished: abort, never end cleanly.
                Err(_) => return Err(io::Error::other("upload abandoned by its producer")),
            }
        }
    }
}

/// The writing end of [`Session::upload`].
pub struct Upload {
    tx: Option<SyncSender<Chunk>>,
    buf: Vec<u8>,
    thread: Option<std::thread::JoinHandle<std::result::Result<(), String>>>,
}

impl Upload {
    /// The HTTP thread's own error, once it has stopped taking chunks.
    fn thread_error(&mut self) -> String {
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => e,
            Some(Ok(Ok(()))) => "rclone rcd answered before the end of the upload".to_owned(),
            _ => "the upload thread failed".to_owned(),
        }
    }

    fn send(&mut self, c: Chunk) -> io::Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.send(c).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(io::Error::other(ChildFailure(self.thread_error())))
        }
    }

    /// Send the end of the stream and wait for rclone to have stored it.
    pub fn finish(mut self) -> Result<()> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            self.send(Chunk::Data(rest))?;
        }
        self.send(Chunk::End)?;
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(anyhow::Error::new(ChildFailure(e))),
            _ => bail!("the upload thread failed"),
        }
    }
}

impl Write for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.send(Chunk::Data(full))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A remote file's bytes from rcd, bounded in total and per read.
pub struct Download {
    /// rclone's log, and where it stood when the download began: rclone
    /// says why it cut a body short (crypt: "failed to authenticate
    /// decrypted block") only there.
    log: (crate::cmd::Tail, u64),
    inner: Box<dyn Read + Send + Sync + 'static>,
    deadline: Instant,
    bound: (Duration, &'static str),
    stall: Duration,
    what: String,
    display: String,
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(io::Error::other(ChildFailure(format!(
                "`{}` {} did not finish within {} ({})",
                self.display,
                self.what,
                human_duration(self.bound.0),
                self.bound.1
            ))));
        }
        self.inner.read(buf).map_err(|e| {
            let why = if timed_out(&e) {
                format!(
                    "`{}` {}: moved no data for {} (--stall-timeout)",
                    self.display,
                    self.what,
                    human_duration(self.stall)
                )
            } else {
                // rclone logs its reason as it ends the body: a moment
                // (bounded) for that line to reach us.
                self.log.0.wait_since(self.log.1, Duration::from_secs(1));
                format!(
                    "{}: {}{}",
                    self.what,
                    redact(&one_line(&e.to_string())),
                    self.log.0.since(self.log.1)
                )
            };
            io::Error::other(ChildFailure(why))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_connection_strings_are_not_servable() {
        assert!(servable("backup:etcd"));
        assert!(!servable(":s3,endpoint='http://127.0.0.1:9':b"));
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(encode("b:etc d/[x]", false), "b%3Aetc%20d%2F%5Bx%5D");
        assert_eq!(encode("a/b c", true), "a/b%20c");
    }

    #[test]
    fn a_reply_error_shows_rclones_words_not_our_input() {
        let body = r#"{"error":"directory not found","input":{"fs":":s3,secret_access_key=S3CANARY:b"},"status":404}"#;
        let e = reply_error(404, body);
        assert_eq!(e, "directory not found (HTTP 404)");
        assert!(is_not_found(404, body));
        assert!(!is_not_found(500, r#"{"error":"permission denied"}"#));
        let s3 = r#"{"error":"InvalidBucketName: not valid.\n\tstatus code: 400, request id: X","status":500}"#;
        assert_eq!(
            reply_error(500, s3),
            "InvalidBucketName: not valid. status code: 400, request id: X (HTTP 500)"
        );
    }

    #[test]
    fn an_abandoned_upload_body_errors_instead_of_ending() {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let mut body = Body {
            rx,
            head: io::Cursor::new(b"H".to_vec()),
            cur: io::Cursor::new(Vec::new()),
            tail: io::Cursor::new(b"T".to_vec()),
            ended: false,
            deadline: Instant::now() + Duration::from_secs(60),
            transfer: Duration::from_secs(60),
        };
        tx.send(Chunk::Data(b"data".to_vec())).unwrap();
        drop(tx);
        let mut got = Vec::new();
        let e = body.read_to_end(&mut got).unwrap_err();
        assert_eq!(got, b"Hdata");
        assert!(e.to_string().contains("abandoned"), "{e}");

        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        body.rx = rx;
        body.ended = false;
        tx.send(Chunk::Data(b"more".to_vec())).unwrap();
        tx.send(Chunk::End).unwrap();
        let mut got = Vec::new();
        body.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"moreT");
    }
}

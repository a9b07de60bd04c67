//! Where an archive comes from and goes to: `Input` and `Output` (FILE or
//! `-`, as the flags give them), the one output `Sink`, and the one `Tee`.
//!
//! A sink is an atomic file (nothing appears under its name before
//! [`Sink::finish`]) or stdout. stdout comes in two kinds: streamed, for a
//! tool whose reader verifies what it receives (`etcd2-snapshot -o - |
//! etcd2-push -`), or spooled, for a tool that must not hand on a byte it
//! has not verified (`etcd2-fetch -o -`): the bytes wait in an unlinked
//! file and reach stdout only when `finish` is called, after verification.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::fsutil::AtomicFile;

/// Where a tool reads an archive from: a file or stdin (`-`).
#[derive(Debug, Clone)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl std::str::FromStr for Input {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(if s == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(s))
        })
    }
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::File(p) => write!(f, "{}", p.display()),
            Input::Stdin => f.write_str("stdin"),
        }
    }
}

/// Where a tool writes an archive: a file (written atomically) or stdout
/// (`-`). Parsed by clap from FILE|-.
#[derive(Debug, Clone)]
pub enum Output {
    File(PathBuf),
    Stdout,
}

impl std::str::FromStr for Output {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(if s == "-" {
            Output::Stdout
        } else {
            Output::File(PathBuf::from(s))
        })
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::File(p) => write!(f, "{}", p.display()),
            Output::Stdout => f.write_str("stdout"),
        }
    }
}

/// A write on this host failed (disk full, read-only, no permission): the
/// data being written is not at fault, and the error says so instead of
/// blaming the backup. Told apart with [`is_write_failure`].
#[derive(Debug)]
pub struct WriteFailed {
    what: String,
    error: io::Error,
}

impl WriteFailed {
    pub fn new(what: impl std::fmt::Display, error: io::Error) -> WriteFailed {
        WriteFailed {
            what: what.to_string(),
            error,
        }
    }
}

impl std::fmt::Display for WriteFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing {}: {}", self.what, self.error)
    }
}

impl std::error::Error for WriteFailed {}

/// Whether `e` (anywhere in its chain) is a [`WriteFailed`].
pub fn is_write_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<WriteFailed>())
}

/// An archive's destination, claimed before any expensive work so that an
/// unwritable one fails first.
pub enum Sink {
    /// Committed under its name by `finish`, never before.
    File(AtomicFile),
    /// stdout, written as the bytes come.
    Stdout(io::StdoutLock<'static>),
    /// stdout, written by `finish` from an unlinked spool file.
    Spooled(File, PathBuf),
}

impl Sink {
    /// A file, or stdout streamed: for tools whose reader verifies.
    pub fn open(output: &Output) -> Result<Sink> {
        Ok(match output {
            Output::File(p) => Sink::File(AtomicFile::create(p, 0o600)?),
            Output::Stdout => {
                refuse_terminal()?;
                Sink::Stdout(io::stdout().lock())
            }
        })
    }

    /// A file, or stdout spooled in `work_dir` until `finish`: for tools
    /// that hand on only what they verified.
    pub fn open_verified(output: &Output, work_dir: &Path) -> Result<Sink> {
        Ok(match output {
            Output::File(_) => Sink::open(output)?,
            Output::Stdout => {
                refuse_terminal()?;
                crate::scratch::work_dir(work_dir)?;
                // Unlinked from the start: nothing is left, whatever kills us.
                let spool = tempfile::tempfile_in(work_dir)
                    .with_context(|| format!("creating a spool file in {}", work_dir.display()))?;
                Sink::Spooled(spool, work_dir.to_owned())
            }
        })
    }

    /// What a failed write names: the file, the spool, or stdout.
    pub fn describe(&self) -> String {
        match self {
            Sink::File(f) => f.target().display().to_string(),
            Sink::Stdout(_) => "stdout".into(),
            Sink::Spooled(_, dir) => format!(
                "the spool file in {} (stdout gets the archive once verified)",
                dir.display()
            ),
        }
    }

    /// Deliver what was written: commit the file, flush stdout, or copy the
    /// spool to stdout. A sink dropped without `finish` delivers nothing
    /// (but what a streamed stdout already passed on).
    pub fn finish(self) -> Result<()> {
        match self {
            Sink::File(f) => f.commit(),
            Sink::Stdout(mut s) => s.flush().context("flushing the archive to stdout"),
            Sink::Spooled(mut f, _) => {
                f.seek(io::SeekFrom::Start(0))?;
                let mut out = io::stdout().lock();
                io::copy(&mut f, &mut out)
                    .and_then(|_| out.flush())
                    .context("writing the archive to stdout")
            }
        }
    }
}

fn refuse_terminal() -> Result<()> {
    if io::stdout().is_terminal() {
        bail!(
            "refusing to write a binary archive to a terminal: \
             use -o FILE, or pipe it (-o - | etcd2-push -)"
        );
    }
    Ok(())
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Stdout(s) => s.write(buf),
            Sink::Spooled(f, _) => f.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Stdout(s) => s.flush(),
            Sink::Spooled(f, _) => f.flush(),
        }
    }
}

/// Passes reads through while writing each to `out`. A failed write is
/// kept apart ([`Tee::into_parts`]), so that an error can name the writer
/// (the upload, the output file), not the data being read.
pub struct Tee<R, W> {
    inner: R,
    out: W,
    out_error: Option<io::Error>,
}

impl<R: Read, W: Write> Tee<R, W> {
    pub fn new(inner: R, out: W) -> Tee<R, W> {
        Tee {
            inner,
            out,
            out_error: None,
        }
    }

    /// The reader, the writer, and the writer's error if a write failed.
    pub fn into_parts(self) -> (R, W, Option<io::Error>) {
        (self.inner, self.out, self.out_error)
    }
}

impl<R: Read, W: Write> Read for Tee<R, W> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes `room` bytes and then fails.
    struct Full {
        room: usize,
        got: Vec<u8>,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.got.len() + buf.len() > self.room {
                return Err(io::Error::other("no space left on the writer"));
            }
            self.got.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_tee_copies_every_byte_read_and_keeps_the_writers_failure_apart() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut tee = Tee::new(
            &data[..],
            Full {
                room: usize::MAX,
                got: vec![],
            },
        );
        let mut read = vec![];
        tee.read_to_end(&mut read).unwrap();
        let (_, out, err) = tee.into_parts();
        assert_eq!(read, data);
        assert_eq!(out.got, data);
        assert!(err.is_none());

        let mut tee = Tee::new(
            &data[..],
            Full {
                room: 100,
                got: vec![],
            },
        );
        let mut buf = [0u8; 64];
        let failed = (0..10).find_map(|_| tee.read(&mut buf).err());
        let shown = failed.expect("the read fails once the writer does");
        assert!(shown.to_string().contains("no space left"), "{shown}");
        let (_, _, err) = tee.into_parts();
        assert!(err.is_some(), "the writer's error is kept for the caller");
    }

    #[test]
    fn an_output_file_appears_only_when_the_sink_finishes() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.tar.zst");
        let output: Output = path.to_str().unwrap().parse().unwrap();
        let mut sink = Sink::open_verified(&output, d.path()).unwrap();
        sink.write_all(b"archive bytes").unwrap();
        assert!(!path.exists(), "nothing under its name before finish");
        sink.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"archive bytes");

        let abandoned = d.path().join("b.tar.zst");
        let output: Output = abandoned.to_str().unwrap().parse().unwrap();
        let mut sink = Sink::open(&output).unwrap();
        sink.write_all(b"half").unwrap();
        drop(sink);
        assert!(
            !abandoned.exists(),
            "a sink dropped unfinished leaves nothing"
        );
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no debris beside the one finished file"
        );
    }
}

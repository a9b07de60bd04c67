//! Hashing: the one owner of hex digests and of hashing while reading or
//! writing. sha256 is what our manifests, sidecars and SHA256SUMS record;
//! sha1 and md5 are computed alongside, in the same pass, only to compare
//! with what an rclone backend reports for an upload.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::Digest as _;

const BUF: usize = 256 << 10;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of bytes in memory, as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

/// A hash a backend may report that we compare with ours, strongest first
/// in [`HashType::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashType {
    Sha256,
    Sha1,
    Md5,
}

impl HashType {
    pub const ALL: [HashType; 3] = [HashType::Sha256, HashType::Sha1, HashType::Md5];

    /// As rclone names it.
    pub const fn name(self) -> &'static str {
        match self {
            HashType::Sha256 => "sha256",
            HashType::Sha1 => "sha1",
            HashType::Md5 => "md5",
        }
    }

    /// The type rclone names `name` (any case), if we compare it.
    pub fn of(name: &str) -> Option<HashType> {
        HashType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

/// What a backend reports of an upload, as far as we compare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendHash {
    /// Not asked (hash every type it may report).
    Unknown,
    /// None of ours: the copy is checked otherwise.
    Nothing,
    /// This one, the strongest it has.
    Reports(HashType),
}

impl BackendHash {
    /// The type to ask the backend for, when one is known.
    pub fn only(self) -> Option<HashType> {
        match self {
            BackendHash::Reports(t) => Some(t),
            _ => None,
        }
    }
}

/// What passed through a [`HashingReader`] or [`HashingWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    pub sha256: String,
    /// Only when asked for ([`Hasher::with_backend_hashes`]).
    pub sha1: Option<String>,
    pub md5: Option<String>,
}

impl Digests {
    /// Ours of a hash type, when computed.
    pub fn get(&self, t: HashType) -> Option<&str> {
        match t {
            HashType::Sha256 => Some(&self.sha256),
            HashType::Sha1 => self.sha1.as_deref(),
            HashType::Md5 => self.md5.as_deref(),
        }
    }
}

/// sha256, and optionally sha1 and md5, of a byte stream, in one pass.
pub struct Hasher {
    sha256: sha2::Sha256,
    sha1: Option<sha1::Sha1>,
    md5: Option<md5::Md5>,
    size: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher {
            sha256: sha2::Sha256::new(),
            sha1: None,
            md5: None,
            size: 0,
        }
    }

    /// Also sha1 and md5, the hashes rclone backends report.
    pub fn with_backend_hashes() -> Hasher {
        Hasher::for_backend(BackendHash::Unknown)
    }

    /// Also what the backend reports: the one type it reports (sha256
    /// needs nothing more), none, or sha1 and md5 both where that is not
    /// known.
    pub fn for_backend(b: BackendHash) -> Hasher {
        let wants = |t| matches!(b, BackendHash::Unknown) || b == BackendHash::Reports(t);
        Hasher {
            sha1: wants(HashType::Sha1).then(sha1::Sha1::new),
            md5: wants(HashType::Md5).then(md5::Md5::new),
            ..Hasher::new()
        }
    }

    pub fn update(&mut self, buf: &[u8]) {
        self.sha256.update(buf);
        if let Some(h) = &mut self.sha1 {
            h.update(buf);
        }
        if let Some(h) = &mut self.md5 {
            h.update(buf);
        }
        self.size += buf.len() as u64;
    }

    pub fn finish(self) -> Digests {
        Digests {
            size: self.size,
            sha256: hex(&self.sha256.finalize()),
            sha1: self.sha1.map(|h| hex(&h.finalize())),
            md5: self.md5.map(|h| hex(&h.finalize())),
        }
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

/// Reads through, hashing everything that passes.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, hasher: Hasher) -> Self {
        HashingReader { inner, hasher }
    }
    pub fn finish(self) -> Digests {
        self.hasher.finish()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Writes through, hashing everything that was written.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }
    /// What was written, and the inner writer back.
    pub fn finish(self) -> (Digests, W) {
        (self.hasher.finish(), self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Size and sha256 of everything `r` yields.
pub fn reader_sha256(r: &mut dyn Read) -> io::Result<Digests> {
    let mut h = HashingReader::new(r, Hasher::new());
    io::copy(&mut h, &mut io::sink())?;
    Ok(h.finish())
}

/// Size and sha256 of a file, read in bounded chunks.
pub fn file_sha256(path: &Path) -> Result<Digests> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = io::BufReader::with_capacity(BUF, f);
    reader_sha256(&mut r).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_in_one_pass() {
        let only = Hasher::for_backend(BackendHash::Reports(HashType::Sha256));
        let d = {
            let mut h = only;
            h.update(b"abc");
            h.finish()
        };
        assert!(d.sha1.is_none() && d.md5.is_none());
        let d = {
            let mut h = Hasher::for_backend(BackendHash::Reports(HashType::Md5));
            h.update(b"abc");
            h.finish()
        };
        assert!(d.sha1.is_none() && d.md5.is_some());
        let mut h = Hasher::with_backend_hashes();
        h.update(b"ab");
        h.update(b"c");
        let d = h.finish();
        assert_eq!(d.size, 3);
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            d.get(HashType::Sha1),
            Some("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(
            d.get(HashType::Md5),
            Some("900150983cd24fb0d6963f7d28e17f72")
        );
        let none = {
            let mut h = Hasher::for_backend(BackendHash::Nothing);
            h.update(b"abc");
            h.finish()
        };
        assert!(none.sha1.is_none() && none.md5.is_none());
        assert_eq!(HashType::of("MD5"), Some(HashType::Md5));
        assert_eq!(HashType::of("whirlpool"), None);
        assert_eq!(sha256_hex(b"abc"), d.sha256);
        assert_eq!(Hasher::new().finish().sha1, None);
    }

    #[test]
    fn reader_writer_and_file_agree() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let mut w = HashingWriter::new(File::create(&p).unwrap());
        w.write_all(&[7u8; 300_000]).unwrap();
        let (written, _) = w.finish();
        assert_eq!(file_sha256(&p).unwrap(), written);
        assert_eq!(reader_sha256(&mut &[7u8; 300_000][..]).unwrap(), written);
    }
}

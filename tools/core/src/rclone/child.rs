//! The child-per-call transport: each operation one `rclone` process,
//! bounded by [`Rclone`]'s command line (our connect, stall and retry flags;
//! the operator's flags after ours).

use std::io::Read;

use anyhow::{Context, Result};

use crate::digest::BackendHash;

use super::{
    parse_lsjson, small, BackendCommand, Entry, Rclone, RemotePath, Small, Transport, Uploader,
    NOT_FOUND, SMALL_FILE_MAX,
};

/// Calls made as children of their own.
pub(super) struct Child<'a>(pub(super) &'a Rclone);

impl Transport for Child<'_> {
    fn make_root(&self, root: &str, what: &str) -> Result<()> {
        let r = self.0;
        r.run(r.cmd(&["backend", "features", root]), &[], || {
            what.to_owned()
        })
        .map(drop)
    }

    fn remote_names(&self) -> Result<Vec<String>> {
        let r = self.0;
        let (_, out) = r.run(r.cmd(&["listremotes"]), &[], || {
            "listing rclone remotes".to_owned()
        })?;
        Ok(out
            .stdout
            .lines()
            .map(|l| l.trim_end_matches(':').to_owned())
            .collect())
    }

    fn cat_small(&self, path: &RemotePath) -> Result<Small> {
        let r = self.0;
        let path = &path.full();
        let count = (SMALL_FILE_MAX + 1).to_string();
        let inv = r.cmd(&["cat", "--count", &count, path]);
        let (code, out) = r.run(inv, NOT_FOUND, || format!("reading {path}"))?;
        if code != 0 {
            return Ok(Small::Missing);
        }
        Ok(small(out.stdout.into_bytes()))
    }

    fn list(&self, dir: &RemotePath, hashes: bool) -> Result<Option<Vec<Entry>>> {
        let r = self.0;
        let dir = &dir.full();
        let mut args = vec!["lsjson", dir];
        if hashes {
            args.push("--hash");
        }
        let (code, out) = r.run(r.cmd(&args), NOT_FOUND, || format!("listing {dir}"))?;
        if code != 0 {
            return Ok(None);
        }
        parse_lsjson(&out.stdout).map(Some)
    }

    /// Not asked: one more process for what the upload's hashing covers
    /// anyway (every type a backend may report).
    fn compared_hash(&self, _dir: &RemotePath) -> Result<BackendHash> {
        Ok(BackendHash::Unknown)
    }

    fn stat(&self, file: &RemotePath, types: &[&str]) -> Result<Option<Entry>> {
        let r = self.0;
        let (path, name) = (file.full(), file.name());
        // Only the hashes we compare: a bare --hash makes the local backend
        // compute every type it knows (whirlpool, crc32, quickxor, ...),
        // reading the archive once per type: 3.9 s instead of 0.6 s for a
        // 120 MB archive. Hashing a large file is a transfer's worth of
        // reading on some backends: the transfer bound applies.
        let mut args = vec!["lsjson"];
        for t in types {
            args.extend(["--hash-type", t]);
        }
        args.extend(["--files-only", &path]);
        let inv = r
            .cmd(&args)
            .bounded(r.bounds.transfer, "--transfer-timeout");
        let (code, out) = r.run(inv, NOT_FOUND, || format!("checking {path}"))?;
        if code != 0 {
            return Ok(None);
        }
        Ok(parse_lsjson(&out.stdout)?
            .into_iter()
            .find(|e| e.name == name && !e.is_dir))
    }

    fn put_bytes(&self, remote: &RemotePath, bytes: &[u8]) -> Result<()> {
        let r = self.0;
        let remote = &remote.full();
        let inv = r.cmd(&["rcat", remote]).stdin_bytes(bytes.to_vec());
        r.run(inv, &[], || format!("writing {remote}"))?;
        Ok(())
    }

    fn replace(&self, src: &RemotePath, dst: &RemotePath) -> Result<()> {
        let r = self.0;
        let (src, dst) = (&src.full(), &dst.full());
        let inv = r.cmd(&["moveto", "--ignore-times", src, dst]);
        r.run(inv, &[], || format!("moving {src} to {dst}"))?;
        Ok(())
    }

    /// `rclone rcat`; dropping the writer unfinished kills rclone.
    fn rcat(&self, remote: &RemotePath, size: Option<u64>) -> Result<Uploader> {
        let remote = &remote.full();
        let size = size.map(|n| n.to_string());
        let mut args = vec!["rcat"];
        if let Some(n) = &size {
            args.extend(["--size", n]);
        }
        args.push(remote);
        self.0
            .transfer(&args)
            .spawn_writer()
            .map(Uploader::Child)
            .with_context(|| format!("uploading to {remote}"))
    }

    fn backend_command(&self, c: &BackendCommand<'_>) -> Result<serde_json::Value> {
        let r = self.0;
        let root = c.root.full();
        let mut args = vec!["backend", c.command, &root];
        let kv: Vec<String> = c.opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for o in &kv {
            args.extend(["-o", o]);
        }
        let (_, out) = r.run(r.cmd(&args), &[], || c.what.clone())?;
        if out.stdout.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("{}: parsing rclone's answer", c.what))
    }

    fn delete(&self, path: &RemotePath) -> Result<()> {
        let r = self.0;
        let path = &path.full();
        r.run(r.cmd(&["deletefile", path]), NOT_FOUND, || {
            format!("deleting {path}")
        })?;
        Ok(())
    }

    fn copy_dir(&self, remote: &RemotePath, local: &str) -> Result<()> {
        let r = self.0;
        let remote = &remote.full();
        let inv = r
            .cmd(&["copy", remote, local])
            .bounded(r.bounds.transfer, "--transfer-timeout");
        r.run(inv, &[], || format!("downloading {remote}"))?;
        Ok(())
    }

    fn stream_file(&self, remote: &RemotePath) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(
            self.0.transfer(&["cat", &remote.full()]).stream()?,
        ))
    }
}

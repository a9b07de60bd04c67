//! The one-process transport: every operation a call to the run's
//! `rclone rcd` ([`crate::rcd`]), with the same bounds as a child. What
//! `--rc-serve` cannot read (a connection string holding `//`) goes through
//! a child instead.

use std::io::Read;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::child::Child;
use super::{
    fsinfo_compared_hash, parse_rc_list, parse_rc_stat, rc_result, small, BackendCommand, Entry,
    Rclone, RemotePath, Small, Transport, Uploader, HASHES, SMALL_FILE_MAX,
};
use crate::digest::BackendHash;
use crate::rcd::{servable, Session};

/// Calls made to the run's rcd.
pub(super) struct Rc<'a> {
    r: &'a Rclone,
    s: Arc<Session>,
}

impl<'a> Rc<'a> {
    pub(super) fn new(r: &'a Rclone, s: Arc<Session>) -> Rc<'a> {
        Rc { r, s }
    }

    /// One rc call, explained like a child's failure; None where rclone
    /// answers "not found".
    fn call(
        &self,
        method: &str,
        params: serde_json::Value,
        what: &str,
        long: bool,
    ) -> Result<Option<serde_json::Value>> {
        self.s
            .call(method, params, what, long)
            .map_err(|e| self.r.explain(e))
    }
}

impl Transport for Rc<'_> {
    fn make_root(&self, root: &str, what: &str) -> Result<()> {
        self.call("operations/fsinfo", json!({"fs": root}), what, false)
            .map(drop)
    }

    fn remote_names(&self) -> Result<Vec<String>> {
        Ok(self
            .call(
                "config/listremotes",
                json!({}),
                "listing rclone remotes",
                false,
            )?
            .and_then(|v| {
                v.get("remotes").and_then(|r| r.as_array()).map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default())
    }

    fn cat_small(&self, path: &RemotePath) -> Result<Small> {
        if !servable(path.fs()) {
            return Child(self.r).cat_small(path);
        }
        let opened = self.s.open(path.fs(), path.rel(), false);
        let Some(stream) = opened.map_err(|e| self.r.explain(e))? else {
            return Ok(Small::Missing);
        };
        let mut bytes = Vec::new();
        stream
            .take(SMALL_FILE_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                self.r
                    .explain(anyhow::Error::new(e).context(format!("reading {path}")))
            })?;
        Ok(small(bytes))
    }

    fn list(&self, dir: &RemotePath, hashes: bool) -> Result<Option<Vec<Entry>>> {
        let mut opt = json!({});
        if hashes {
            opt = json!({"showHash": true, "hashTypes": HASHES});
        }
        let params = json!({"fs": dir.fs(), "remote": dir.rel(), "opt": opt});
        let what = format!("listing {dir}");
        match self.call("operations/list", params, &what, hashes)? {
            None => Ok(None),
            Some(v) => parse_rc_list(v)
                .map(Some)
                .with_context(|| format!("{what}: parsing rclone's listing")),
        }
    }

    fn compared_hash(&self, dir: &RemotePath) -> Result<BackendHash> {
        let what = format!("asking rclone which hashes {dir} has");
        let info = self.call("operations/fsinfo", json!({"fs": dir.full()}), &what, false)?;
        Ok(fsinfo_compared_hash(info.as_ref()).map_or(BackendHash::Nothing, BackendHash::Reports))
    }

    fn stat(&self, file: &RemotePath, types: &[&str]) -> Result<Option<Entry>> {
        let params = json!({"fs": file.fs(), "remote": file.rel(),
            "opt": {"showHash": true, "hashTypes": types, "filesOnly": true}});
        let what = format!("checking {file}");
        // Hashing a large file is a transfer's worth of reading.
        match self.call("operations/stat", params, &what, true)? {
            None => Ok(None),
            Some(v) => parse_rc_stat(v).with_context(|| format!("{what}: parsing rclone's answer")),
        }
    }

    fn put_bytes(&self, remote: &RemotePath, bytes: &[u8]) -> Result<()> {
        let mut up = self.s.upload(&remote.parent().full(), remote.name())?;
        std::io::Write::write_all(&mut up, bytes).map_err(|e| {
            self.r
                .explain(anyhow::Error::new(e).context(format!("writing {remote}")))
        })?;
        up.finish()
            .map_err(|e| self.r.explain(e.context(format!("writing {remote}"))))
    }

    fn replace(&self, src: &RemotePath, dst: &RemotePath) -> Result<()> {
        let params = json!({"srcFs": src.fs(), "srcRemote": src.rel(),
            "dstFs": dst.fs(), "dstRemote": dst.rel(),
            "_config": {"IgnoreTimes": true}});
        let what = format!("moving {src} to {dst}");
        match self.call("operations/movefile", params, &what, false)? {
            Some(_) => Ok(()),
            None => bail!("{what}: {src} not found"),
        }
    }

    /// A multipart body to rcd that aborts (never ends cleanly) when its
    /// producer fails.
    fn rcat(&self, remote: &RemotePath, _size: Option<u64>) -> Result<Uploader> {
        self.s
            .upload(&remote.parent().full(), remote.name())
            .map(Uploader::Rc)
    }

    fn backend_command(&self, c: &BackendCommand<'_>) -> Result<serde_json::Value> {
        let opt: serde_json::Map<String, serde_json::Value> = c
            .opts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let params = json!({"command": c.command, "fs": c.root.full(), "opt": opt});
        Ok(self
            .call("backend/command", params, &c.what, false)?
            .map(rc_result)
            .unwrap_or_default())
    }

    fn delete(&self, path: &RemotePath) -> Result<()> {
        let params = json!({"fs": path.fs(), "remote": path.rel()});
        self.call(
            "operations/deletefile",
            params,
            &format!("deleting {path}"),
            false,
        )?;
        Ok(())
    }

    fn copy_dir(&self, remote: &RemotePath, local: &str) -> Result<()> {
        let what = format!("downloading {remote}");
        let params = json!({"srcFs": remote.full(), "dstFs": local});
        match self.call("sync/copy", params, &what, true)? {
            Some(_) => Ok(()),
            None => bail!("{what}: directory not found"),
        }
    }

    fn stream_file(&self, remote: &RemotePath) -> Result<Box<dyn Read + Send>> {
        if !servable(remote.fs()) {
            return Child(self.r).stream_file(remote);
        }
        match self
            .s
            .open(remote.fs(), remote.rel(), true)
            .map_err(|e| self.r.explain(e))?
        {
            Some(d) => Ok(Box::new(d)),
            None => bail!("{remote} not found"),
        }
    }
}

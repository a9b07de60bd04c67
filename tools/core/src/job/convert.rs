//! The `etcd2-convert` job: an etcd2 (v2) backup carried to etcd 3.6 and
//! later, which have no v2 store. The backup is started as a private member
//! of an etcd that still has one (3.5 or older) on loopback, its whole v2
//! store read over the v2 API, every key written as the v3 key of the same
//! name into the same member, checked key by key, and that member's v3
//! snapshot written as an ordinary v3 archive. docs/etcd2-convert.md.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::archive::{self, Api, Codec, ConvertedFrom, Manifest, FORMAT_SUMMED};
use crate::cmd::Program;
use crate::etcd::{hex_id, Etcdctl};
use crate::member;
use crate::sink::{Input, Output};

pub struct ConvertJob {
    /// An archive (a file or stdin), a verified directory (etcd2-fetch
    /// --into), or a bare `etcdctl backup` directory (the original
    /// package's).
    pub from: Input,
    pub output: Output,
    pub codec: Codec,
    pub level: Option<i32>,
    pub threads: u32,
    /// Scratch (`etcd2-convert.<pid>.*`): the backup's copy and the member.
    pub work_dir: PathBuf,
    pub etcd: Program,
    pub etcdctl: Etcdctl,
    pub wait: Duration,
}

const SCRATCH: &str = "etcd2-convert";

/// etcd's bound on one transaction's operations (--max-txn-ops), and a
/// byte bound well inside its request bound (--max-request-bytes, 1.5 MiB).
const TXN_OPS: usize = 128;
const TXN_BYTES: usize = 1 << 20;

/// What a conversion did (`--json`, and the one line on stderr).
#[derive(Debug, serde::Serialize)]
pub struct Converted {
    pub manifest: Manifest,
    pub archive_size: u64,
    pub archive_sha256: String,
    /// Keys whose value held U+FFFD as the v2 API served it (see
    /// [`replaced_bytes`]).
    pub replaced: Vec<String>,
    pub seconds: f64,
}

impl Converted {
    pub fn line(&self, output: &Output) -> String {
        let c = self
            .manifest
            .converted_from
            .as_ref()
            .expect("a conversion records its source");
        format!(
            "converted: {} v2 keys -> v3 keys of the same names ({} on {} leases for their \
             TTLs), {} empty v2 directories not carried (v3 has no directories); v2's hidden \
             keys (names starting with _) and its internal membership keys are not listed by \
             the v2 API and are not converted; wrote {output}: a v3 backup at revision {} \
             ({:.1}s)",
            c.keys,
            c.ttl_keys,
            c.leases,
            c.empty_dirs,
            self.manifest.revision.unwrap_or(0),
            self.seconds
        )
    }
}

/// One v2 node as `GET /v2/keys/?recursive=true` serves it.
#[derive(Debug, serde::Deserialize)]
struct V2Node {
    key: Option<String>,
    value: Option<String>,
    #[serde(default)]
    dir: bool,
    #[serde(default)]
    nodes: Vec<V2Node>,
    /// Remaining seconds, on a node with an expiration.
    ttl: Option<i64>,
}

#[derive(Debug, serde::Deserialize)]
struct V2Response {
    node: V2Node,
}

/// A v2 key as it becomes a v3 one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Key {
    pub key: String,
    pub value: String,
    /// The least remaining TTL of the key and its directories (a directory
    /// with a TTL takes its children with it), in whole seconds, at least 1.
    pub ttl: Option<i64>,
}

/// The v2 store, flattened.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct V2Store {
    pub keys: Vec<V2Key>,
    pub empty_dirs: Vec<String>,
}

/// Parse the answer of `GET /v2/keys/?recursive=true` into its keys (in
/// the order served) and its empty directories.
pub fn parse_v2_tree(body: &[u8]) -> Result<V2Store> {
    let r: V2Response =
        serde_json::from_slice(body).context("the v2 API's answer is not a v2 key tree")?;
    let mut out = V2Store::default();
    flatten(&r.node, None, true, &mut out)?;
    Ok(out)
}

fn flatten(n: &V2Node, inherited: Option<i64>, root: bool, out: &mut V2Store) -> Result<()> {
    let ttl = match (inherited, n.ttl.map(|t| t.max(1))) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if n.dir {
        if n.nodes.is_empty() && !root {
            out.empty_dirs.push(n.key.clone().unwrap_or_default());
        }
        for c in &n.nodes {
            flatten(c, ttl, false, out)?;
        }
        return Ok(());
    }
    let key = n
        .key
        .clone()
        .context("the v2 API served a key without a name")?;
    out.keys.push(V2Key {
        value: n.value.clone().unwrap_or_default(),
        key,
        ttl,
    });
    Ok(())
}

/// The keys whose value holds U+FFFD: v2 values travel as JSON text, and
/// etcd's JSON encoder replaces bytes that are not UTF-8 with it. Such a
/// value may have held other bytes in etcd2 (or the character itself);
/// the v2 API cannot tell, so the conversion names them.
pub fn replaced_bytes(store: &V2Store) -> Vec<String> {
    store
        .keys
        .iter()
        .filter(|k| k.value.contains('\u{FFFD}'))
        .map(|k| k.key.clone())
        .collect()
}

/// Where the v2 backup came from, as far as it says.
fn describe(m: Option<&Manifest>) -> ConvertedFrom {
    let mut c = ConvertedFrom {
        tool: "etcdctl backup".into(),
        etcd_version: String::new(),
        member_name: String::new(),
        member_id: String::new(),
        cluster_id: String::new(),
        created_at: String::new(),
        keys: 0,
        empty_dirs: 0,
        leases: 0,
        ttl_keys: 0,
    };
    if let Some(m) = m {
        c.tool = m.tool.clone();
        c.etcd_version = m.etcd_version.clone();
        c.member_name = m.member_name.clone();
        c.member_id = m.member_id.clone();
        c.cluster_id = m.cluster_id.clone();
        c.created_at = m.created_at.clone();
    }
    c
}

impl ConvertJob {
    /// Refuse before any work an etcd without the v2 store.
    fn check_etcd(&self) -> Result<()> {
        let v = crate::etcd::program_version(&self.etcd)?;
        ensure!(
            v.has_v2(),
            "etcd {v} at {} has no v2 store (removed in 3.6): converting a v2 backup needs an \
             etcd 3.5 or older to read it. Install one beside it (Debian 12's etcd-server is \
             3.4; Debian's 3.5 packages unpack anywhere) and pass it with --etcd PATH \
             (ETCD2_BACKUP_ETCD); the converted backup then restores on etcd {v}",
            self.etcd.path().display()
        );
        tracing::info!(
            "etcd {v} at {} will read the v2 store",
            self.etcd.path().display()
        );
        Ok(())
    }

    /// The v2 backup's files in a directory, and its manifest where it has
    /// one (none: a bare `etcdctl backup` directory).
    fn load(&self, scratch: &Path) -> Result<(PathBuf, Option<Manifest>)> {
        let (dir, manifest) = match &self.from {
            Input::File(p) if p.is_dir() => {
                if p.join(archive::MANIFEST_NAME).exists() {
                    (p.clone(), Some(archive::verify_dir(p)?))
                } else if p.join("member/wal").is_dir() {
                    tracing::info!(
                        "{} has no manifest: taking it as an etcdctl backup directory (the \
                         original package's)",
                        p.display()
                    );
                    (p.clone(), None)
                } else {
                    bail!(
                        "{} is neither a verified backup directory (no manifest.json: made by \
                         etcd2-fetch --into?) nor an etcdctl backup directory (no member/wal)",
                        p.display()
                    );
                }
            }
            Input::File(p) => {
                let f =
                    std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
                let dest = scratch.join("backup");
                let m =
                    archive::read_verified(BufReader::new(f), Some(&dest)).with_context(|| {
                        format!("{} is not a whole etcd2-backup archive", p.display())
                    })?;
                (dest, Some(m))
            }
            Input::Stdin => {
                let dest = scratch.join("backup");
                let m =
                    archive::read_verified(BufReader::new(std::io::stdin().lock()), Some(&dest))
                        .context("stdin is not a whole etcd2-backup archive")?;
                (dest, Some(m))
            }
        };
        if let Some(m) = &manifest {
            ensure!(
                m.api == Api::V2,
                "{} is already a v3 backup (of member {:?}, etcd {}): there is nothing to convert; \
                 etcd2-restore restores it as it is",
                self.from,
                m.member_name,
                m.etcd_version
            );
        }
        Ok((dir, manifest))
    }

    pub fn run(&self) -> Result<Converted> {
        let started = Instant::now();
        self.check_etcd()?;
        let level = self.level.unwrap_or_else(|| self.codec.default_level());
        self.codec.check_level(level)?;
        // Claim the output before any expensive work.
        let mut sink = crate::sink::Sink::open(&self.output)?;
        crate::scratch::work_dir(&self.work_dir)?;
        let scratch = crate::scratch::Dir::create(&self.work_dir, SCRATCH)?;
        let (backup, source) = self.load(scratch.path())?;
        let mut from = describe(source.as_ref());

        let spec = member::Spec {
            etcd: &self.etcd,
            etcdctl: &self.etcdctl,
            name: "etcd2-convert",
            peer_urls: "http://127.0.0.1:2380",
            wait: self.wait,
            bump_revision: None,
            mark_compacted: false,
            stop: None,
            kv_hash: false,
        };
        let serving = member::serve_v2(
            &spec,
            &backup,
            &scratch.path().join("member-data"),
            scratch.path(),
        )?;
        let url = serving.client_url().to_owned();
        let store = self.read_v2(&url)?;
        let replaced = replaced_bytes(&store);
        if !replaced.is_empty() {
            tracing::warn!(
                "{} v2 values hold U+FFFD as the v2 API serves them ({}{}): v2 carries values as \
                 JSON text, and etcd replaces bytes that are not UTF-8 with U+FFFD; they are \
                 converted as etcd serves them",
                replaced.len(),
                replaced[..replaced.len().min(5)].join(", "),
                if replaced.len() > 5 { ", ..." } else { "" }
            );
        }

        let mut ctl = self.etcdctl.at(&url);
        ctl.query_timeout = self.wait;
        let grpc = crate::etcd::grpc::Client::of(&ctl)?;
        let (v3_before, _) = grpc.count_keys()?;
        ensure!(
            v3_before == 0,
            "this v2 backup also holds {v3_before} v3 keys (etcdctl backup --with-v3?): \
             converting would mix its v2 keys into them. Restore it on etcd 3.5 instead"
        );
        let leases = self.write_v3(&grpc, &store)?;
        self.check_v3(&grpc, &store, &leases)?;
        from.keys = store.keys.len() as u64;
        from.empty_dirs = store.empty_dirs.len() as u64;
        from.leases = leases.len() as u64;
        from.ttl_keys = store.keys.iter().filter(|k| k.ttl.is_some()).count() as u64;

        let status = grpc.status()?;
        let (key_count, revision) = grpc.count_keys()?;
        let (created_unix, created_at) = crate::clock::now();
        let manifest = Manifest {
            format: FORMAT_SUMMED,
            tool: format!("etcd2-convert {}", env!("CARGO_PKG_VERSION")),
            api: Api::V3,
            codec: self.codec,
            etcd_version: status.status.version.clone(),
            member_name: from.member_name.clone(),
            member_id: hex_id(status.status.header.member_id),
            cluster_id: hex_id(status.status.header.cluster_id),
            revision: Some(revision),
            raft_index: Some(status.status.raft_index),
            key_count: Some(key_count),
            created_at,
            created_unix,
            host: crate::node::hostname(),
            machine_id: source.as_ref().and_then(|m| m.machine_id.clone()),
            files: Vec::new(),
            alarms: Vec::new(),
            converted_from: Some(from),
            imported_from: None,
        };
        let hashing = crate::digest::HashingWriter::new(&mut sink);
        let (hashing, manifest) = grpc
            .snapshot(256)?
            .archive(hashing, manifest, level, self.threads)
            .with_context(|| format!("writing {}", self.output))?;
        let (written, _) = hashing.finish();
        serving.stop()?;
        sink.finish()?;
        Ok(Converted {
            manifest,
            archive_size: written.size,
            archive_sha256: written.sha256,
            replaced,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The whole v2 store, in one linearizable (quorum) read.
    fn read_v2(&self, url: &str) -> Result<V2Store> {
        let what = format!("{url}/v2/keys/?recursive=true&sorted=true&quorum=true");
        let agent = ureq::AgentBuilder::new().timeout(self.wait).build();
        let resp = agent
            .get(&format!("{url}/v2/keys/"))
            .query("recursive", "true")
            .query("sorted", "true")
            .query("quorum", "true")
            .call()
            .map_err(|e| anyhow::anyhow!("reading the v2 store ({what}): {e}"))?;
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut body)
            .with_context(|| format!("reading the v2 store ({what})"))?;
        let store = parse_v2_tree(&body)?;
        tracing::info!(
            "read the v2 store: {} keys ({} with a TTL), {} empty directories",
            store.keys.len(),
            store.keys.iter().filter(|k| k.ttl.is_some()).count(),
            store.empty_dirs.len()
        );
        Ok(store)
    }

    /// Every v2 key as the v3 key of the same name, in transactions; a key
    /// with a TTL on a lease of that TTL (one lease per distinct TTL).
    /// Returns the leases, by TTL.
    fn write_v3(
        &self,
        grpc: &crate::etcd::grpc::Client,
        store: &V2Store,
    ) -> Result<BTreeMap<i64, i64>> {
        let mut leases = BTreeMap::new();
        for ttl in store.keys.iter().filter_map(|k| k.ttl) {
            if let std::collections::btree_map::Entry::Vacant(e) = leases.entry(ttl) {
                e.insert(grpc.grant_lease(ttl)?);
            }
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        for k in &store.keys {
            let put = crate::etcd::grpc::PutRequest {
                key: k.key.as_bytes().to_vec(),
                value: k.value.as_bytes().to_vec(),
                lease: k.ttl.map_or(0, |t| leases[&t]),
            };
            let size = put.key.len() + put.value.len();
            if !batch.is_empty() && (batch.len() == TXN_OPS || bytes + size > TXN_BYTES) {
                grpc.put_all(std::mem::take(&mut batch))?;
                bytes = 0;
            }
            bytes += size;
            batch.push(put);
        }
        if !batch.is_empty() {
            grpc.put_all(batch)?;
        }
        Ok(leases)
    }

    /// Read every v3 key back: exactly the v2 keys, byte for byte, each
    /// with a TTL on its lease and the others on none.
    fn check_v3(
        &self,
        grpc: &crate::etcd::grpc::Client,
        store: &V2Store,
        leases: &BTreeMap<i64, i64>,
    ) -> Result<()> {
        let got: BTreeMap<Vec<u8>, (Vec<u8>, i64)> = grpc
            .all_keys(1000)?
            .into_iter()
            .map(|kv| (kv.key, (kv.value, kv.lease)))
            .collect();
        ensure!(
            got.len() == store.keys.len(),
            "the v3 keyspace holds {} keys after the conversion of {} v2 keys",
            got.len(),
            store.keys.len()
        );
        for k in &store.keys {
            let want_lease = k.ttl.map_or(0, |t| leases[&t]);
            match got.get(k.key.as_bytes()) {
                Some((v, l)) if v == k.value.as_bytes() && *l == want_lease => {}
                Some(_) => bail!(
                    "v3 key {} does not read back as its v2 value and TTL",
                    k.key
                ),
                None => bail!("v3 key {} is missing after the conversion", k.key),
            }
        }
        tracing::info!(
            "every one of the {} v3 keys reads back as its v2 key",
            got.len()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_tree_flattens_to_its_keys_with_inherited_ttls_and_empty_dirs() {
        let body = br#"{"action":"get","node":{"dir":true,"nodes":[
            {"key":"/a","value":"1","modifiedIndex":4,"createdIndex":4},
            {"key":"/d","dir":true,"ttl":30,"expiration":"x","nodes":[
                {"key":"/d/x","value":"","ttl":100},
                {"key":"/d/y","value":"v","ttl":10}]},
            {"key":"/e","dir":true},
            {"key":"/t","value":"t","ttl":0}]}}"#;
        let s = parse_v2_tree(body).unwrap();
        let got: Vec<(&str, &str, Option<i64>)> = s
            .keys
            .iter()
            .map(|k| (k.key.as_str(), k.value.as_str(), k.ttl))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/a", "1", None),
                ("/d/x", "", Some(30)),
                ("/d/y", "v", Some(10)),
                ("/t", "t", Some(1)),
            ]
        );
        assert_eq!(s.empty_dirs, vec!["/e".to_owned()]);
    }

    #[test]
    fn an_empty_store_has_no_keys_and_no_empty_dirs() {
        let s = parse_v2_tree(br#"{"action":"get","node":{"dir":true}}"#).unwrap();
        assert_eq!(s, V2Store::default());
    }

    #[test]
    fn what_is_not_a_v2_tree_is_refused() {
        for bad in [
            &br#"{"errorCode":100,"message":"Key not found"}"#[..],
            b"<html>",
            br#"{"node":{"value":"no name"}}"#,
        ] {
            assert!(
                parse_v2_tree(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn values_holding_the_replacement_character_are_named() {
        let s = parse_v2_tree(
            "{\"node\":{\"dir\":true,\"nodes\":[{\"key\":\"/ok\",\"value\":\"\\u0000\\u00e9\"},\
             {\"key\":\"/bad\",\"value\":\"\\ufffd\"}]}}"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(replaced_bytes(&s), vec!["/bad".to_owned()]);
    }
}

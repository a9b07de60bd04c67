//! etcd driven through the real `etcdctl` (both its v2 and v3 modes), and
//! the parsers of what it prints.
//!
//! Every setting is passed as a flag and inherited `ETCDCTL_*` variables are
//! scrubbed from the child, because etcdctl 3.4 exits fatally when a variable
//! and its matching flag are both given. The one exception is the etcd user
//! and password, set as `ETCDCTL_USER`/`ETCDCTL_PASSWORD` (no flag with them).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::{hex_id, Alarm, EndpointStatus, HashKv, MemberList, Recipe, Tls, Version};
use crate::cmd::{Captured, Invocation, Program};

/// The version a program reports (`etcdctl version`, `etcdutl version`,
/// `etcd --version`).
pub fn program_version(p: &Program) -> Result<Version> {
    let arg = if p.name() == "etcd" {
        "--version"
    } else {
        "version"
    };
    let out = p
        .command([arg])
        .env_remove_prefix("ETCDCTL_")
        .timeout(Duration::from_secs(10))
        .run()
        .with_context(|| format!("asking {} for its version", p.path().display()))?;
    Version::find(&out.stdout).with_context(|| {
        format!(
            "{} printed no version: {:?}",
            p.path().display(),
            out.stdout.lines().next().unwrap_or_default()
        )
    })
}

/// A connection recipe for one etcd member, with the etcdctl (and etcdutl)
/// that speaks to it: a [`Recipe`] with a program, read through as one
/// (`ctl.endpoints()`, `ctl.query_timeout`).
#[derive(Debug, Clone)]
pub struct Etcdctl {
    program: Program,
    /// etcdctl's version, asked once (None: it printed none).
    version: std::sync::Arc<std::sync::OnceLock<Option<Version>>>,
    /// etcdutl (3.5+), which takes over snapshot restore (and status) from
    /// etcdctl (deprecated there in 3.5, removed in 3.6).
    etcdutl: Option<Program>,
    recipe: Recipe,
}

impl std::ops::Deref for Etcdctl {
    type Target = Recipe;
    fn deref(&self) -> &Recipe {
        &self.recipe
    }
}

impl std::ops::DerefMut for Etcdctl {
    fn deref_mut(&mut self) -> &mut Recipe {
        &mut self.recipe
    }
}

pub fn parse_endpoint_status(json: &str) -> Result<EndpointStatus> {
    let mut list: Vec<EndpointStatus> =
        serde_json::from_str(json).context("parsing `etcdctl endpoint status -w json` output")?;
    if list.is_empty() {
        bail!("`etcdctl endpoint status` returned no endpoint");
    }
    Ok(list.swap_remove(0))
}

/// `etcdctl endpoint hashkv -w json`: `[{"Endpoint":..,"HashKV":{..}}]`.
pub fn parse_hashkv(json: &str) -> Result<HashKv> {
    #[derive(Deserialize)]
    struct One {
        #[serde(rename = "HashKV")]
        hash_kv: HashKv,
    }
    let mut list: Vec<One> =
        serde_json::from_str(json).context("parsing `etcdctl endpoint hashkv -w json` output")?;
    if list.is_empty() {
        bail!("`etcdctl endpoint hashkv` returned no endpoint");
    }
    Ok(list.swap_remove(0).hash_kv)
}

pub fn parse_member_list(json: &str) -> Result<MemberList> {
    serde_json::from_str(json).context("parsing `etcdctl member list -w json` output")
}

/// `etcdctl alarm list -w json`: `{"alarms":[{"memberID":N,"alarm":1}]}`
/// (no `alarms` at all when there is none).
pub fn parse_alarm_list(json: &str) -> Result<Vec<Alarm>> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "memberID", default)]
        member_id: u64,
        #[serde(default)]
        alarm: i32,
    }
    #[derive(Deserialize)]
    struct List {
        #[serde(default)]
        alarms: Vec<Raw>,
    }
    let list: List =
        serde_json::from_str(json).context("parsing `etcdctl alarm list -w json` output")?;
    Ok(list
        .alarms
        .into_iter()
        .filter(|a| a.alarm != 0)
        .map(|a| Alarm::from_raw(a.member_id, a.alarm))
        .collect())
}

/// What `snapshot status -w json` says of a database file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DbStatus {
    pub revision: u64,
    /// The storage version (etcdutl 3.5+); absent before.
    #[serde(default)]
    pub version: Option<String>,
}

pub fn parse_db_status(json: &str) -> Result<DbStatus> {
    serde_json::from_str(json.trim()).context("parsing `snapshot status -w json` output")
}

/// etcdctl (v2)'s complaint when the member serves no v2 API: it got the
/// HTTP 404 page instead of JSON.
pub fn v2_api_disabled(stderr: &str) -> bool {
    stderr.contains("response is invalid json") || stderr.contains("404 page not found")
}

/// v2 `etcdctl ls /` prints one key or directory per line; an empty store
/// prints nothing.
pub fn parse_v2_ls_has_keys(out: &str) -> bool {
    out.lines().any(|l| l.starts_with('/'))
}

impl Etcdctl {
    pub fn new(program: Program, endpoints: &str, tls: Tls) -> Self {
        Etcdctl {
            program,
            version: Default::default(),
            etcdutl: None,
            recipe: Recipe::new(endpoints, tls),
        }
    }

    /// The arguments that make another of our tools reach etcd as this one
    /// does: the resolved etcdctl and the TLS files.
    pub fn conn_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !self.program.is_absent() {
            v.push("--etcdctl".to_owned());
            v.push(self.program.path().display().to_string());
        }
        for (flag, p) in [
            ("--cacert", &self.recipe.tls.cacert),
            ("--cert", &self.recipe.tls.cert),
            ("--key", &self.recipe.tls.key),
        ] {
            if let Some(p) = p {
                v.push(flag.to_owned());
                v.push(p.display().to_string());
            }
        }
        v
    }

    /// Fails, saying why, where no etcdctl was found: a v3 backup, which
    /// talks gRPC, needs none; every etcdctl call fails so without one.
    pub fn require_etcdctl(&self) -> Result<()> {
        self.program.require()
    }

    /// Use etcdutl for offline snapshot work.
    pub fn with_etcdutl(mut self, etcdutl: Option<Program>) -> Self {
        self.etcdutl = etcdutl;
        self
    }

    /// The program for offline snapshot work: etcdutl where there is one.
    fn snapshot_tool(&self) -> &Program {
        self.etcdutl.as_ref().unwrap_or(&self.program)
    }

    /// etcdctl's version, asked of it once; None when it prints none (an
    /// unknown etcdctl is treated as a current one would be).
    pub fn version(&self) -> Option<Version> {
        *self
            .version
            .get_or_init(|| program_version(&self.program).ok())
    }

    /// The snapshot tool's name and version ("etcdutl", 3.5.30).
    fn snapshot_tool_version(&self) -> Option<Version> {
        match &self.etcdutl {
            Some(u) => program_version(u).ok(),
            None => self.version(),
        }
    }

    /// "etcdutl 3.5.1" or "etcdctl 3.4.23 (no etcdutl)": for messages.
    pub fn describe_snapshot_tool(&self) -> String {
        let v = self
            .snapshot_tool_version()
            .map_or_else(|| "of unknown version".to_owned(), |v| v.to_string());
        if self.etcdutl.is_some() {
            format!("etcdutl {v}")
        } else {
            format!("etcdctl {v} (no etcdutl)")
        }
    }

    /// Refuse up front what this host's snapshot tool cannot restore: an
    /// etcdctl 3.6+ without etcdutl (its `snapshot restore` is gone), and
    /// with `bump`, a tool whose restore lacks `--bump-revision`. Decided by
    /// the versions, not by parsing help text (3.7 reorganised etcdctl's).
    pub fn check_can_restore(&self, bump: bool) -> Result<()> {
        if self.etcdutl.is_none() {
            self.program
                .require()
                .context("neither etcdutl nor etcdctl was found for snapshot restore")?;
        }
        let v = self.snapshot_tool_version();
        if self.etcdutl.is_none() && v.is_some_and(|v| !v.etcdctl_restores()) {
            bail!(
                "etcdctl {} ({}) has no snapshot restore (moved to etcdutl in 3.5, removed from \
                 etcdctl in 3.6), and no etcdutl was found on PATH or beside it: install etcdutl \
                 of the same version (--etcdutl PATH)",
                v.map(|v| v.to_string()).unwrap_or_default(),
                self.program.path().display()
            );
        }
        let tool = self.snapshot_tool().name();
        if bump && !v.is_some_and(|v| v.restore_bumps_revision(tool)) {
            bail!(
                "--bump-revision needs etcdutl >= 3.5.10 or etcdctl >= 3.4.27; this host has {}, \
                 whose snapshot restore lacks it. Install a newer etcdutl (--etcdutl PATH) or \
                 restore without it",
                self.describe_snapshot_tool()
            );
        }
        Ok(())
    }

    /// `snapshot restore` of `db` into `data_dir` with the given extra
    /// arguments, by etcdutl where there is one.
    pub fn snapshot_restore(&self, db: &Path, data_dir: &Path, args: &[&str]) -> Result<()> {
        let (d, dbs) = (data_dir.to_string_lossy(), db.to_string_lossy());
        let mut all = vec![
            "snapshot",
            "restore",
            dbs.as_ref(),
            "--data-dir",
            d.as_ref(),
        ];
        all.extend_from_slice(args);
        self.snapshot_command(&all)
            .run()
            .with_context(|| format!("{} snapshot restore", self.snapshot_tool().name()))?;
        Ok(())
    }

    /// `etcdctl snapshot save FILE` from the configured endpoint: etcd's
    /// own snapshot file (with its sha256 trailer), bounded by the long
    /// timeout; etcdctl writes `FILE.part` and renames it.
    pub fn snapshot_save(&self, file: &Path) -> Result<()> {
        let f = file.to_string_lossy();
        self.v3(&["snapshot", "save", f.as_ref()])
            .bounded(self.long_timeout, "--timeout")
            .run()
            .with_context(|| format!("etcdctl snapshot save {}", file.display()))?;
        Ok(())
    }

    /// `snapshot status` of a database file, by etcdutl where there is one:
    /// the revision it holds and the storage version it reports (3.5+),
    /// proving on the way that etcd's own code can read it.
    pub fn snapshot_status(&self, db: &Path) -> Result<DbStatus> {
        let d = db.to_string_lossy();
        let out = self
            .snapshot_command(&["snapshot", "status", d.as_ref(), "-w", "json"])
            .run()
            .with_context(|| format!("{} snapshot status", self.snapshot_tool().name()))?;
        parse_db_status(&out.stdout)
    }

    /// An offline snapshot command (`snapshot restore`, `snapshot status`)
    /// by the snapshot tool: etcdutl where there is one (inherited
    /// `ETCDCTL_*` scrubbed), else etcdctl's v3; bounded by --timeout.
    fn snapshot_command(&self, args: &[&str]) -> Invocation {
        let inv = match &self.etcdutl {
            Some(u) => u
                .command(args.iter().copied())
                .env_remove_prefix("ETCDCTL_"),
            None => self.base("3", args),
        };
        inv.bounded(self.long_timeout, "--timeout")
    }

    /// etcdctl with `args`, inherited `ETCDCTL_*` scrubbed, and
    /// `ETCDCTL_API` only for an etcdctl that reads it (before 3.6; 3.6+
    /// knows only v3 and logs a warning of the variable on every call).
    fn base(&self, api: &str, args: &[&str]) -> Invocation {
        let inv = self
            .program
            .command(args.iter().copied())
            .env_remove_prefix("ETCDCTL_");
        if self.version().is_none_or(|v| v.etcdctl_reads_api()) {
            inv.env("ETCDCTL_API", api)
        } else {
            inv
        }
    }

    /// A v3 command against the configured endpoints.
    pub fn v3(&self, args: &[&str]) -> Invocation {
        let mut inv = self
            .base("3", &[])
            .arg(format!("--endpoints={}", self.recipe.endpoints));
        if let Some(p) = &self.recipe.tls.cacert {
            inv = inv.arg("--cacert").arg(p);
        }
        if let Some(p) = &self.recipe.tls.cert {
            inv = inv.arg("--cert").arg(p);
        }
        if let Some(p) = &self.recipe.tls.key {
            inv = inv.arg("--key").arg(p);
        }
        // Through the environment, not --user/--password: an argument list
        // is shown to every user by ps, a child's environment is not.
        if let Some(a) = self.recipe.auth() {
            inv = inv
                .env("ETCDCTL_USER", &a.user)
                .env("ETCDCTL_PASSWORD", a.password());
        }
        for a in args {
            inv = inv.arg(*a);
        }
        inv.bounded(self.query_timeout, "--query-timeout")
    }

    /// A v2 command against the configured endpoints (v2 etcdctl spells its
    /// TLS flags differently).
    pub fn v2(&self, args: &[&str]) -> Invocation {
        let mut inv = self
            .base("2", &[])
            .arg(format!("--endpoints={}", self.recipe.endpoints));
        if let Some(p) = &self.recipe.tls.cacert {
            inv = inv.arg("--ca-file").arg(p);
        }
        if let Some(p) = &self.recipe.tls.cert {
            inv = inv.arg("--cert-file").arg(p);
        }
        if let Some(p) = &self.recipe.tls.key {
            inv = inv.arg("--key-file").arg(p);
        }
        for a in args {
            inv = inv.arg(*a);
        }
        inv.bounded(self.query_timeout, "--query-timeout")
    }

    /// An offline command (no endpoint involved).
    pub fn offline(&self, api: &str, args: &[&str]) -> Invocation {
        self.base(api, args).bounded(self.long_timeout, "--timeout")
    }

    /// The same recipe aimed at the first of its endpoints only: for the
    /// tools that work on one member (etcd2-snapshot backs up one). Says so
    /// when others were given.
    pub fn one_member(&self) -> Result<Etcdctl> {
        let mut all = self
            .endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty());
        let first = all.next().context("no etcd endpoint given (--endpoints)")?;
        let rest: Vec<&str> = all.collect();
        if !rest.is_empty() {
            tracing::info!(
                "backs up the member at {first}, the first of --endpoints; not used: {}",
                rest.join(", ")
            );
        }
        Ok(self.at(first))
    }

    /// The same connection recipe aimed at other endpoints (TLS kept).
    pub fn at(&self, endpoints: &str) -> Etcdctl {
        let mut c = self.clone();
        c.recipe.endpoints = endpoints.to_owned();
        c
    }

    /// `member update <id> --peer-urls=<urls>`.
    pub fn member_update(&self, id: u64, peer_urls: &str) -> Result<()> {
        let id = hex_id(id);
        self.v3(&["member", "update", &id, &format!("--peer-urls={peer_urls}")])
            .run()
            .with_context(|| format!("updating member {id}'s peer URLs to {peer_urls}"))?;
        Ok(())
    }

    /// `member add <name> --peer-urls=<urls>` (with `--learner`: a member
    /// that does not count for quorum until promoted); the raw error is
    /// returned so that callers can tell a transient refusal from a real one.
    pub fn member_add(&self, name: &str, peer_urls: &str, learner: bool) -> Result<MemberList> {
        let peer = format!("--peer-urls={peer_urls}");
        let mut args = vec!["member", "add", name, &peer, "-w", "json"];
        if learner {
            args.push("--learner");
        }
        let out = self.v3(&args).run()?;
        parse_member_list(&out.stdout)
    }

    /// `member promote <id>`: a learner becomes a voting member. The raw
    /// error is returned (etcd refuses while the learner is not in sync).
    pub fn member_promote(&self, id: u64) -> Result<()> {
        self.v3(&["member", "promote", &hex_id(id)]).run()?;
        Ok(())
    }

    pub fn endpoint_status(&self) -> Result<EndpointStatus> {
        let out = self
            .v3(&["endpoint", "status", "-w", "json"])
            .run()
            .map_err(|e| self.failure(e))?;
        parse_endpoint_status(&out.stdout)
    }

    /// `endpoint hashkv --rev R`: the member's hash of its keys up to
    /// revision `rev`; the raw error is kept in the chain (a compacted
    /// revision is told by [`super::is_compacted`]).
    ///
    /// It reads the whole keyspace: bounded by --timeout, not by a
    /// query's (several GiB hash for longer than a status takes).
    pub fn hashkv(&self, rev: u64) -> Result<HashKv> {
        let r = rev.to_string();
        let command_timeout = format!("--command-timeout={}s", self.long_timeout.as_secs().max(1));
        let out = self
            .v3(&[
                "endpoint",
                "hashkv",
                "--rev",
                &r,
                "-w",
                "json",
                &command_timeout,
            ])
            .bounded(self.long_timeout, "--timeout")
            .run()
            .map_err(|e| self.failure(e))?;
        parse_hashkv(&out.stdout)
    }

    /// `alarm list`: the alarms active in the member's cluster.
    pub fn alarm_list(&self) -> Result<Vec<Alarm>> {
        let out = self
            .v3(&["alarm", "list", "-w", "json"])
            .run()
            .map_err(|e| self.failure(e))?;
        parse_alarm_list(&out.stdout)
    }

    /// etcd's documented recovery from NOSPACE (its maintenance guide):
    /// compact the history up to the current revision, defragment to give
    /// the space back, then disarm. Returns the revision compacted at.
    pub fn clear_nospace(&self) -> Result<u64> {
        let rev = self.endpoint_status()?.status.header.revision;
        let r = rev.to_string();
        if let Err(e) = self.v3(&["compact", &r, "--physical"]).run() {
            // Already compacted there (a restore with --mark-compacted
            // marks its bumped revision compacted): nothing to free.
            if !format!("{e:#}").contains("compacted") {
                return Err(e.context(format!("compacting the history up to revision {rev}")));
            }
        }
        self.v3(&[
            "defrag",
            &format!("--command-timeout={}s", self.long_timeout.as_secs().max(1)),
        ])
        .bounded(self.long_timeout, "--timeout")
        .run()
        .context("defragmenting")?;
        self.v3(&["alarm", "disarm"])
            .run()
            .context("disarming the alarm")?;
        Ok(rev)
    }

    pub fn member_list(&self) -> Result<MemberList> {
        let out = self
            .v3(&["member", "list", "-w", "json"])
            .run()
            .map_err(|e| self.failure(e))?;
        parse_member_list(&out.stdout)
    }

    /// Whether the v2 keyspace holds at least one visible key or directory.
    /// (Hidden top-level v2 keys, whose names start with `_`, are not listed
    /// by the v2 API and so are not seen here.)
    /// Whether the v2 keyspace holds keys. A member with the v2 API
    /// disabled (etcd 3.4's default) answers the v2 probe with a non-JSON
    /// 404 (etcdctl exit 4, "server error"): no client can have written v2
    /// keys through it, so that counts as empty.
    /// None when this member cannot tell: its v2 API is disabled (3.4's
    /// default), yet the v2 store is replicated to every member whatever its
    /// --enable-v2, so data from etcd2 days or written through another
    /// member cannot be seen from here.
    pub fn v2_has_keys(&self) -> Result<Option<bool>> {
        let (code, out) = self
            .v2(&["ls", "/"])
            .run_accepting(&[4])
            .map_err(|e| self.failure(e))?;
        if code == 4 {
            if v2_api_disabled(&out.stderr) {
                return Ok(None);
            }
            return Err(self.failure(anyhow::anyhow!(
                "`etcdctl ls /` failed (exit code 4): {}",
                out.stderr.trim()
            )));
        }
        Ok(Some(parse_v2_ls_has_keys(&out.stdout)))
    }

    /// [`Etcdctl::v2_has_keys`], where this etcdctl still has v2 commands:
    /// one without them (3.6) cannot have written v2 keys either, and its
    /// member has no v2 store to hold them.
    pub fn v2_has_keys_if_any(&self) -> Result<Option<bool>> {
        match self.version() {
            Some(v) if !v.has_v2() => {
                tracing::info!(
                    "etcdctl {v} ({}) has no v2 commands: the v2 keyspace is not probed",
                    self.program.path().display()
                );
                Ok(Some(false))
            }
            _ => self.v2_has_keys(),
        }
    }

    /// Make the member's on-disk raft log cover every write it acknowledged
    /// before now, for `etcdctl backup` (v2), which reads the WAL as found on
    /// disk.
    ///
    /// etcd does not flush a HardState change that only moves the commit
    /// index, so on an idle member the WAL's commit lags its last entry;
    /// `etcdctl backup` then lowers it further by every entry it strips, and
    /// `--force-new-cluster` drops what lies past it: the last acknowledged
    /// write is lost (TESTING.md: 39 of 40 keys on any member). A v2 quorum
    /// read is a raft entry that changes no key: appending it flushes a
    /// HardState whose commit covers everything acknowledged before it. Two
    /// in a row leave one spare entry between that commit and the last write,
    /// so one stripped entry past the commit cannot reach the write. Sent to
    /// the member being backed up, which answers only once it applied it.
    pub fn v2_quorum_barrier(&self) -> Result<()> {
        for _ in 0..2 {
            let (code, out) = self
                .v2(&["ls", "--quorum", "/"])
                .run_accepting(&[4])
                .map_err(|e| self.failure(e))?;
            if code == 4 {
                if v2_api_disabled(&out.stderr) {
                    // v2 writes may still arrive through other members: the
                    // barrier cannot be sent through this one.
                    tracing::warn!(
                        "the v2 API is disabled on {}: no quorum barrier before etcdctl backup, \
                         so an idle cluster's last v2 write may be missing; enable --enable-v2 \
                         on this member",
                        self.recipe.endpoints
                    );
                    return Ok(());
                }
                return Err(self.failure(anyhow::anyhow!(
                    "`etcdctl ls --quorum /` failed (exit code 4): {}",
                    out.stderr.trim()
                )));
            }
        }
        Ok(())
    }

    /// The original package's path: `etcdctl backup` of a data dir (v2 data).
    pub fn v2_backup(&self, data_dir: &Path, backup_dir: &Path) -> Result<Captured> {
        let d = data_dir.to_string_lossy();
        let b = backup_dir.to_string_lossy();
        self.offline("2", &["backup", "--data-dir", &d, "--backup-dir", &b])
            .run()
            .with_context(|| format!("backing up etcd data dir {}", data_dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::describe_alarms;

    #[test]
    fn hashkv_is_read_as_each_version_prints_it() {
        // etcd 3.4.23, then 3.7.3 (which adds hash_revision).
        let h = parse_hashkv(r#"[{"Endpoint":"http://127.0.0.1:23999","HashKV":{"header":{"cluster_id":6328709751833505057,"member_id":11719934994822390420,"revision":2,"raft_term":2},"hash":3628877040,"compact_revision":-1}}]"#).unwrap();
        assert_eq!(
            (h.hash, h.compact_revision, h.header.revision),
            (3628877040, -1, 2)
        );
        let h = parse_hashkv(r#"[{"Endpoint":"http://127.0.0.1:23999","HashKV":{"header":{"cluster_id":6328709751833505057,"member_id":11719934994822390420,"revision":2,"raft_term":2},"compact_revision":5,"hash_revision":2}}]"#).unwrap();
        assert_eq!((h.hash, h.compact_revision), (0, 5), "a 0 hash is omitted");
        assert!(parse_hashkv("[]").is_err());
    }

    // Captured from etcd 3.4.23 (Debian etcd-server/etcd-client).
    const STATUS: &str = r#"[{"Endpoint":"http://127.0.0.1:23790","Status":{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":1,"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":3319814642761637952,"raftIndex":4,"raftTerm":2,"raftAppliedIndex":4,"dbSizeInUse":16384}}]"#;
    const MEMBERS: &str = r#"{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"raft_term":2},"members":[{"ID":3319814642761637952,"name":"e1","peerURLs":["http://127.0.0.1:23800"],"clientURLs":["http://127.0.0.1:23790"]},{"ID":1,"peerURLs":["http://127.0.0.1:23801"]}]}"#;

    #[test]
    fn a_member_without_the_v2_api_is_told_apart_from_other_failures() {
        assert!(v2_api_disabled(
            "Error:  client: response is invalid json. The endpoint is probably not valid etcd cluster endpoint\n"
        ));
        assert!(!v2_api_disabled("Error:  client: etcd cluster is unavailable or misconfigured; error #0: dial tcp 127.0.0.1:1: connect: connection refused\n"));
        assert!(!v2_api_disabled("Error:  100: Key not found (/x) [3]\n"));
    }

    #[test]
    fn parses_endpoint_status() {
        let s = parse_endpoint_status(STATUS).unwrap();
        assert_eq!(s.status.version, "3.4.23");
        assert_eq!(hex_id(s.status.header.member_id), "2e1259d415f2a040");
        assert_eq!(s.status.raft_index, 4);
        assert_eq!(s.status.header.revision, 1);
    }

    #[test]
    fn parses_member_list_with_unstarted_member() {
        let m = parse_member_list(MEMBERS).unwrap();
        assert_eq!(m.members.len(), 2);
        assert!(m.members[0].started());
        assert!(!m.members[1].started());
        assert_eq!(m.members[1].peer_urls, vec!["http://127.0.0.1:23801"]);
    }

    #[test]
    fn garbage_is_an_error_naming_the_command() {
        let e = parse_endpoint_status("Error: x").unwrap_err();
        assert!(format!("{e:#}").contains("endpoint status"));
        assert!(parse_endpoint_status("[]").is_err());
    }

    #[test]
    fn alarm_lists_as_etcdctl_prints_them() {
        // etcdctl 3.4.23, a member past --quota-backend-bytes.
        let a =
            parse_alarm_list(r#"{"alarms":[{"memberID":3319814642761637952,"alarm":1}]}"#).unwrap();
        assert_eq!(
            a,
            vec![Alarm {
                alarm: "NOSPACE".into(),
                member_id: "2e1259d415f2a040".into()
            }]
        );
        assert!(a[0].is_nospace());
        assert_eq!(
            describe_alarms(&a),
            "NOSPACE (raised by member 2e1259d415f2a040)"
        );
        // None active: etcdctl prints a header and no alarms.
        let none = r#"{"header":{"cluster_id":1,"member_id":2,"revision":3,"raft_term":2}}"#;
        assert!(parse_alarm_list(none).unwrap().is_empty());
        assert_eq!(Alarm::from_raw(1, 2).alarm, "CORRUPT");
        assert_eq!(Alarm::from_raw(1, 7).alarm, "alarm 7");
        assert!(parse_alarm_list("not json").is_err());
    }

    #[test]
    fn newer_etcd_output_with_unknown_fields_still_parses() {
        // Captured from etcd 3.5.1, plus fields no version has (yet).
        let s = r#"[{"Endpoint":"http://127.0.0.1:23791","Status":{"header":{"cluster_id":1,"member_id":2,"revision":2,"raft_term":2},"version":"3.5.1","dbSize":20480,"leader":2,"raftIndex":5,"raftTerm":2,"raftAppliedIndex":5,"dbSizeInUse":16384,"storageVersion":"3.6.0","downgradeInfo":{"enabled":false}}}]"#;
        assert_eq!(parse_endpoint_status(s).unwrap().status.version, "3.5.1");
        let m = r#"{"header":{"cluster_id":1,"member_id":2,"raft_term":2},"members":[{"ID":3,"peerURLs":["http://127.0.0.1:23802"],"isLearner":true,"future":1},{"ID":2,"name":"a","peerURLs":["http://127.0.0.1:23801"],"clientURLs":["http://127.0.0.1:23791"]}]}"#;
        let m = parse_member_list(m).unwrap();
        assert!(m.members[0].is_learner && !m.members[0].started());
    }

    #[test]
    fn v2_ls_detection() {
        assert!(!parse_v2_ls_has_keys(""));
        assert!(parse_v2_ls_has_keys("/a\n/d\n"));
    }
}

//! etcd: what its two clients share. [`etcdctl`] drives the real
//! `etcdctl` (v2 and v3); [`grpc`] speaks etcd's v3 gRPC API. Neither half
//! imports the other: both take the [`Recipe`] (endpoints, TLS, bounds)
//! and give the types here (status, member list, alarms, refusals), so a
//! caller can ask either and read the same answer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub mod etcdctl;
pub mod grpc;

pub use etcdctl::{
    parse_alarm_list, parse_endpoint_status, parse_hashkv, parse_member_list, parse_v2_ls_has_keys,
    program_version, v2_api_disabled, Etcdctl,
};

/// Client TLS material for talking to etcd.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Tls {
    /// Check that every configured file is readable, naming the flag of the
    /// first one that is not. etcdctl itself would only say "context deadline
    /// exceeded".
    pub fn check(&self) -> Result<()> {
        for (flag, p) in [
            ("--cacert", &self.cacert),
            ("--cert", &self.cert),
            ("--key", &self.key),
        ] {
            if let Some(p) = p {
                std::fs::File::open(p)
                    .with_context(|| format!("{flag} {}: cannot read TLS file", p.display()))?;
            }
        }
        if self.cert.is_some() != self.key.is_some() {
            bail!("--cert and --key must be given together");
        }
        Ok(())
    }

    fn is_set(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some()
    }
}

/// A user of etcd's v3 authentication with their password. The password
/// is never shown: `Debug` prints `***`, and it reaches etcdctl through its
/// environment (`ETCDCTL_PASSWORD`), never its argument list, which `ps`
/// shows to every user.
#[derive(Clone)]
pub struct Auth {
    pub user: String,
    password: String,
}

impl Auth {
    pub fn new(user: &str, password: &str) -> Auth {
        Auth {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// An etcd version, as the programs print it (`3.5.1`, `etcd Version:
/// 3.6.5`, `etcdctl version: 3.4.23`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// The first `X.Y.Z` in `text`.
    pub fn find(text: &str) -> Option<Version> {
        text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .find_map(|w| {
                let mut it = w.split('.').map(|n| n.parse::<u32>().ok());
                match (it.next(), it.next(), it.next()) {
                    (Some(Some(a)), Some(Some(b)), Some(Some(c))) => Some(Version(a, b, c)),
                    _ => None,
                }
            })
    }

    /// etcd 3.6 removed the v2 store, etcdctl's v2 commands and --enable-v2.
    pub fn has_v2(self) -> bool {
        self < Version(3, 6, 0)
    }

    /// Whether an etcdctl of this version reads `ETCDCTL_API` (3.6+ knows
    /// only v3 and warns of the variable on every call).
    pub fn etcdctl_reads_api(self) -> bool {
        self.has_v2()
    }

    /// Whether this version's etcdctl has `snapshot restore` (deprecated in
    /// 3.5 for etcdutl's, removed in 3.6).
    pub fn etcdctl_restores(self) -> bool {
        self.has_v2()
    }

    /// Whether `snapshot restore` of `tool` (etcdctl or etcdutl) at this
    /// version takes `--bump-revision` and `--mark-compacted`: etcdutl and
    /// etcdctl from 3.5.10, 3.4's etcdctl from 3.4.27.
    pub fn restore_bumps_revision(self, tool: &str) -> bool {
        match tool {
            "etcdutl" => self >= Version(3, 5, 10),
            _ if self.1 == 4 && self.0 == 3 => self >= Version(3, 4, 27),
            _ => self >= Version(3, 5, 10) && self.etcdctl_restores(),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// A connection recipe for etcd: where (the endpoints), how (TLS) and how
/// long to wait. [`Etcdctl`] is one with a program; [`grpc::Client::of`]
/// connects with one.
#[derive(Debug, Clone)]
pub struct Recipe {
    endpoints: String,
    tls: Tls,
    /// The etcd user to authenticate as, where etcd has auth on.
    auth: Option<Auth>,
    /// Bound on quick queries (status, member list, key probes), on
    /// connecting over gRPC and on any pause in the snapshot stream.
    pub query_timeout: Duration,
    /// Bound on long operations (a whole snapshot stream, backup, restore).
    pub long_timeout: Duration,
}

impl Recipe {
    pub fn new(endpoints: &str, tls: Tls) -> Recipe {
        Recipe {
            endpoints: endpoints.to_owned(),
            tls,
            auth: None,
            query_timeout: Duration::from_secs(30),
            long_timeout: Duration::from_secs(600),
        }
    }

    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// The TLS files of this recipe.
    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// The user this recipe authenticates as (none: etcd without auth).
    pub fn auth(&self) -> Option<&Auth> {
        self.auth.as_ref()
    }

    pub fn set_auth(&mut self, auth: Option<Auth>) {
        self.auth = auth;
    }

    /// Say why a call to etcd failed, as its cause: a member that answered
    /// with a refusal (authentication, permission, a learner) is named by
    /// the refusal; only one that did not answer "cannot be reached".
    pub fn failure(&self, e: anyhow::Error) -> anyhow::Error {
        let tls = if self.tls.is_set() { " over TLS" } else { "" };
        let at = &self.endpoints;
        let user = self.auth.as_ref().map(|a| a.user.as_str());
        let what = match refusal(&format!("{e:#}")) {
            Some(Refusal::NoUser) => format!(
                "etcd at {at}{tls} has authentication enabled and refused a request without a \
                 user: pass --user NAME and --password-file FILE (a user with etcd's root role)"
            ),
            Some(Refusal::Authentication) => match user {
                Some(u) => format!(
                    "etcd at {at}{tls} refused: authentication failed for user {u} (wrong user \
                     or password)"
                ),
                None => format!(
                    "etcd at {at}{tls} refused: authentication failed (wrong user or password)"
                ),
            },
            Some(Refusal::Permission) => format!(
                "etcd at {at}{tls} refused: permission denied for user {}: etcd serves \
                 snapshots, member status and alarms only to a user with its root role \
                 (etcdctl user grant-role {} root)",
                user.unwrap_or("(none)"),
                user.unwrap_or("NAME")
            ),
            Some(Refusal::Learner) => format!(
                "etcd at {at}{tls} is a learner (a member not yet promoted), which serves no such \
                 request: point --endpoints at a voting member, or promote it (etcd2-health \
                 --promote NAME)"
            ),
            None if reached(&format!("{e:#}")) => format!("etcd at {at}{tls} refused"),
            None => format!("cannot reach etcd at {at}{tls}"),
        };
        e.context(what)
    }
}

/// `etcdctl endpoint status -w json`, one element.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointStatus {
    #[serde(rename = "Endpoint")]
    pub endpoint: String,
    #[serde(rename = "Status")]
    pub status: StatusBody,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusBody {
    pub header: Header,
    pub version: String,
    #[serde(rename = "dbSize")]
    pub db_size: u64,
    #[serde(rename = "raftIndex")]
    pub raft_index: u64,
    #[serde(rename = "raftAppliedIndex", default)]
    pub raft_applied_index: u64,
    pub leader: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub cluster_id: u64,
    pub member_id: u64,
    #[serde(default)]
    pub revision: u64,
}

/// `etcdctl endpoint hashkv --rev R -w json`: a member's hash of its keys
/// up to revision R (etcd's own corruption check compares the same).
#[derive(Debug, Clone, Deserialize)]
pub struct HashKv {
    pub header: Header,
    /// omitted by etcdctl when 0.
    #[serde(default)]
    pub hash: u32,
    /// -1 when never compacted.
    #[serde(default)]
    pub compact_revision: i64,
}

/// `etcdctl member list -w json`.
#[derive(Debug, Clone, Deserialize)]
pub struct MemberList {
    pub header: Header,
    #[serde(default)]
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    #[serde(rename = "ID")]
    pub id: u64,
    /// Empty for a member that was added but has not started yet.
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

impl Member {
    pub fn started(&self) -> bool {
        !self.name.is_empty()
    }
}

/// The cluster ID a member answers with on its peer URL (`GET /members`,
/// header `X-Etcd-Cluster-ID`), which etcd serves before it has a leader
/// and before it publishes its client URLs: how a member that formed a
/// cluster of its own is told apart from one not started. Plain http peers
/// only (None over https, or where nothing answers within 3 s).
pub fn peer_cluster_id(peer_url: &str) -> Option<u64> {
    if !peer_url.starts_with("http://") {
        return None;
    }
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(3))
        .build();
    let resp = agent
        .get(&format!("{}/members", peer_url.trim_end_matches('/')))
        .call()
        .ok()?;
    u64::from_str_radix(resp.header("X-Etcd-Cluster-ID")?, 16).ok()
}

/// etcd IDs are shown in hex everywhere operators see them.
pub fn hex_id(id: u64) -> String {
    format!("{id:x}")
}

/// An alarm etcd raised on a member: NOSPACE (the database reached its
/// quota; every write is refused until it is cleared) or CORRUPT (a
/// consistency check failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// etcd's name of it: "NOSPACE", "CORRUPT" (or "alarm 7" for one
    /// this version does not know).
    pub alarm: String,
    /// The member that raised it, in hex.
    pub member_id: String,
}

impl Alarm {
    /// From etcd's numbers (`AlarmType` in etcd's rpc.proto).
    pub fn from_raw(member_id: u64, alarm: i32) -> Alarm {
        let alarm = match alarm {
            1 => "NOSPACE".to_owned(),
            2 => "CORRUPT".to_owned(),
            n => format!("alarm {n}"),
        };
        Alarm {
            alarm,
            member_id: hex_id(member_id),
        }
    }

    pub fn is_nospace(&self) -> bool {
        self.alarm == "NOSPACE"
    }
}

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (raised by member {})", self.alarm, self.member_id)
    }
}

/// "NOSPACE (raised by member 2e13…), CORRUPT (…)": for messages.
pub fn describe_alarms(alarms: &[Alarm]) -> String {
    alarms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A request etcd answered with a refusal, by etcd's own words (gRPC and
/// etcdctl carry the same server messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Auth is on and no user was sent.
    NoUser,
    /// Wrong user or password, or a token etcd no longer accepts.
    Authentication,
    /// The user lacks the role for it.
    Permission,
    /// A learner serves no linearizable reads and no maintenance writes.
    Learner,
}

pub fn refusal(message: &str) -> Option<Refusal> {
    let m = message.to_ascii_lowercase();
    if m.contains("user name is empty") {
        Some(Refusal::NoUser)
    } else if m.contains("authentication failed")
        || m.contains("user name not found")
        || m.contains("invalid auth token")
        || m.contains("unauthenticated")
    {
        Some(Refusal::Authentication)
    } else if m.contains("permission denied") {
        Some(Refusal::Permission)
    } else if m.contains("not supported for learner") {
        Some(Refusal::Learner)
    } else {
        None
    }
}

/// Whether etcd refused the user (none, a wrong one, or one without the
/// role): waiting does not change that, so no wait should wait it out.
pub fn is_auth_refusal(e: &anyhow::Error) -> bool {
    matches!(
        refusal(&format!("{e:#}")),
        Some(Refusal::NoUser | Refusal::Authentication | Refusal::Permission)
    )
}

/// etcd's refusal of a revision below its compaction (`endpoint hashkv
/// --rev`, a get or watch at an old revision): ask again at a newer one.
pub fn is_compacted(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("required revision has been compacted")
}

/// Whether an error came from a member that answered (a gRPC status other
/// than a transport failure, or an `etcdserver:` message), as opposed to
/// one that could not be reached.
fn reached(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("etcdserver:") && !m.contains("etcdserver: request timed out")
}

/// Errors etcd gives while a reconfiguration is unsafe for a moment (etcd
/// 3.4 rejects `member add` for ~5 s after a member joins); worth a retry.
pub fn is_transient_reconfig_error(msg: &str) -> bool {
    [
        "unhealthy cluster",
        "not healthy for reconfigure",
        "has no leader",
        "too many requests",
        "context deadline exceeded",
        "leader changed",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_from_what_etcd_said() {
        // gRPC (ours) and etcdctl 3.4.23, against a member with auth on.
        let cases = [
            (
                "KV.Range count_only linearizable (whole keyspace): InvalidArgument: etcdserver: user name is empty",
                Some(Refusal::NoUser),
            ),
            (
                "Error: etcdserver: authentication failed, invalid user ID or password",
                Some(Refusal::Authentication),
            ),
            ("Error: etcdserver: permission denied", Some(Refusal::Permission)),
            // A user was sent, and etcd does not know it: not "no user".
            (
                "Error: etcdserver: user name not found",
                Some(Refusal::Authentication),
            ),
            (
                "KV.Range: Unavailable: etcdserver: rpc not supported for learner",
                Some(Refusal::Learner),
            ),
            (
                "connecting: transport error: tcp connect error: Connection refused (os error 111)",
                None,
            ),
            ("context deadline exceeded", None),
        ];
        for (text, want) in cases {
            assert_eq!(refusal(text), want, "{text}");
        }
        assert!(reached("Error: etcdserver: mvcc: database space exceeded"));
        assert!(!reached("Error: context deadline exceeded"));
        assert!(!reached("etcdserver: request timed out"));
    }

    #[test]
    fn versions_from_what_the_programs_print() {
        assert_eq!(
            Version::find("etcd Version: 3.6.5\nGit SHA: x"),
            Some(Version(3, 6, 5))
        );
        assert_eq!(
            Version::find("etcdctl version: 3.4.23\nAPI version: 3.4"),
            Some(Version(3, 4, 23))
        );
        assert_eq!(Version::find("no version"), None);
        assert!(Version(3, 5, 1).has_v2() && !Version(3, 6, 0).has_v2());
        assert!(Version(3, 4, 27) > Version(3, 4, 23));
    }

    #[test]
    fn what_each_version_can_do_is_decided_by_comparing_versions() {
        let v = |s: &str| Version::find(s).unwrap();
        assert!(v("3.5.30").etcdctl_reads_api() && !v("3.6.16").etcdctl_reads_api());
        assert!(v("3.5.30").etcdctl_restores() && !v("3.7.3").etcdctl_restores());
        for (tool, ver, bumps) in [
            ("etcdctl", "3.4.23", false),
            ("etcdctl", "3.4.27", true),
            ("etcdctl", "3.5.1", false),
            ("etcdctl", "3.5.16", true),
            ("etcdctl", "3.7.3", false),
            ("etcdutl", "3.5.1", false),
            ("etcdutl", "3.5.10", true),
            ("etcdutl", "3.7.3", true),
        ] {
            assert_eq!(v(ver).restore_bumps_revision(tool), bumps, "{tool} {ver}");
        }
    }

    #[test]
    fn transient_reconfig_errors() {
        assert!(is_transient_reconfig_error(
            "Error: etcdserver: unhealthy cluster"
        ));
        assert!(!is_transient_reconfig_error(
            "Error: etcdserver: Peer URLs already exists"
        ));
    }

    #[test]
    fn tls_check_names_the_flag() {
        let tls = Tls {
            cacert: Some("/no/such/ca.pem".into()),
            ..Default::default()
        };
        let e = tls.check().unwrap_err();
        assert!(
            format!("{e:#}").starts_with("--cacert /no/such/ca.pem"),
            "{e:#}"
        );
    }

    /// The two halves stay apart: etcdctl.rs names nothing of gRPC and
    /// grpc/ nothing of etcdctl.rs (both use only this module's types).
    #[test]
    fn neither_half_imports_the_other() {
        let code = |s: &'static str| s.split("#[cfg(test)]").next().unwrap_or(s);
        for (name, text, other) in [
            (
                "etcdctl.rs",
                code(include_str!("etcdctl.rs")),
                ["grpc", "grpc"],
            ),
            (
                "grpc/mod.rs",
                code(include_str!("grpc/mod.rs")),
                ["etcdctl", "Etcdctl"],
            ),
            (
                "grpc/watch.rs",
                code(include_str!("grpc/watch.rs")),
                ["etcdctl", "Etcdctl"],
            ),
        ] {
            for (n, line) in text.lines().enumerate() {
                let line = line.split("//").next().unwrap_or("");
                assert!(
                    !other.iter().any(|o| line.contains(o)),
                    "etcd/{name}:{}: names the other half: {}",
                    n + 1,
                    line.trim()
                );
            }
        }
    }
}

//! A cluster's health as our jobs judge it: every started member reachable,
//! agreeing on a leader and caught up; and the bounded wait for it that
//! replaces the original's `sleep 10` (etcd2-health, etcd2-member-add);
//! then whether the members hold the same keys (one cluster ID, the same
//! revision at the same raft index, the same KV hash at a common revision),
//! which a cluster restored member by member from one backup must prove.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::etcd::{hex_id, EndpointStatus, Etcdctl, Member};
use crate::poll::{self, Probe};

/// What a health check found (`etcd2-health --json`).
#[derive(Debug, serde::Serialize)]
pub struct Health {
    pub started: usize,
    pub unstarted: Vec<String>,
    pub problems: Vec<String>,
    /// Members that formed a cluster of their own: no wait mends that.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub foreign: Vec<String>,
    /// What the members agreed on, once healthy (`etcd2-health` without
    /// `--no-kv-hash`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<Agreement>,
}

/// Every member holds the same keys: one cluster ID, one KV hash at a
/// common revision, and (where the cluster was quiet long enough to see
/// it) the same revision at the same applied raft index.
#[derive(Debug, serde::Serialize)]
pub struct Agreement {
    pub cluster_id: String,
    pub members: Vec<String>,
    /// The revision the hashes were taken at.
    pub hash_revision: u64,
    pub kv_hash: u32,
    /// The revision every member was at, at one applied raft index; None
    /// where writes never paused long enough to see it.
    pub revision: Option<u64>,
}

impl Health {
    pub fn ok(&self, want_started: usize) -> bool {
        self.problems.is_empty()
            && self.foreign.is_empty()
            && self.unstarted.is_empty()
            && self.started >= want_started
    }

    pub fn describe(&self, want_started: usize) -> String {
        let mut parts = vec![format!(
            "{}/{} members started",
            self.started,
            want_started.max(self.started)
        )];
        if !self.unstarted.is_empty() {
            parts.push(format!("not started: {}", self.unstarted.join(", ")));
        }
        parts.extend(self.foreign.iter().cloned());
        parts.extend(self.problems.iter().cloned());
        parts.join("; ")
    }
}

/// One look at the cluster through `ctl`: every started member reachable,
/// agreeing on a leader, and caught up (applied the leader's commit index as
/// it was when the check began).
pub fn check_health(ctl: &Etcdctl) -> Result<Health> {
    let list = ctl.member_list()?;
    let mut h = Health {
        started: 0,
        unstarted: vec![],
        problems: vec![],
        foreign: vec![],
        agreement: None,
    };
    let mut statuses = Vec::new();
    for m in &list.members {
        if !m.started() || m.client_urls.is_empty() {
            // Not started, or started in a cluster of its own (restored
            // from other data): its peer URL tells.
            let theirs = m
                .peer_urls
                .iter()
                .find_map(|u| crate::etcd::peer_cluster_id(u));
            match theirs {
                Some(c) if c != list.header.cluster_id => h.foreign.push(format!(
                    "member {} ({}) answers as a member of cluster {}, not of cluster {} of the \
                     others: {FOREIGN}",
                    hex_id(m.id),
                    peer(m),
                    hex_id(c),
                    hex_id(list.header.cluster_id)
                )),
                _ => h.unstarted.push(format!("{} ({})", hex_id(m.id), peer(m))),
            }
            continue;
        }
        h.started += 1;
        let mut c = ctl.at(&m.client_urls.join(","));
        c.query_timeout = Duration::from_secs(5);
        match c.endpoint_status() {
            Ok(s) => statuses.push((m.name.clone(), s)),
            // It answered, and refused us: not "unreachable".
            Err(e) if crate::etcd::is_auth_refusal(&e) => return Err(e),
            Err(_) => h.problems.push(format!(
                "{} unreachable at {}",
                m.name,
                m.client_urls.join(",")
            )),
        }
    }
    h.foreign.extend(foreign_members(ctl, &statuses));
    let leaders: std::collections::BTreeSet<u64> =
        statuses.iter().map(|(_, s)| s.status.leader).collect();
    if leaders.len() > 1 || leaders.contains(&0) {
        h.problems.push("members do not agree on a leader".into());
        return Ok(h);
    }
    if let Some((_, ls)) = statuses
        .iter()
        .find(|(_, s)| s.status.leader == s.status.header.member_id)
    {
        let target = ls.status.raft_index;
        for (name, s) in &statuses {
            let applied = s.status.raft_applied_index.max(s.status.raft_index);
            if applied < target {
                h.problems
                    .push(format!("{name} catching up (index {applied} of {target})"));
            }
        }
    } else if !statuses.is_empty() {
        h.problems
            .push("the leader is not among the reachable members".into());
    }
    Ok(h)
}

/// Poll until healthy with at least `want_started` started members and no
/// unstarted one, logging progress; bounded by `limit`.
pub fn wait_healthy(ctl: &Etcdctl, want_started: usize, limit: Duration) -> Result<Health> {
    let started = std::time::Instant::now();
    poll::until(
        limit,
        Duration::from_millis(500),
        "waiting for the cluster",
        || {
            Ok(match check_health(ctl) {
                // A member in a cluster of its own never joins by waiting.
                Ok(h) if !h.foreign.is_empty() => bail!("{}", h.foreign.join("; ")),
                Ok(h) if h.ok(want_started) => {
                    tracing::info!(
                        "cluster healthy: {} ({:.1}s)",
                        h.describe(want_started),
                        started.elapsed().as_secs_f64()
                    );
                    Probe::Done(h)
                }
                Ok(h) => Probe::Waiting(h.describe(want_started)),
                Err(e) if crate::etcd::is_auth_refusal(&e) => return Err(e),
                Err(e) => Probe::Waiting(format!("{e:#}")),
            })
        },
        |last| {
            anyhow::anyhow!(
                "cluster at {} not healthy within {}: {last}",
                ctl.endpoints(),
                crate::cmd::human_duration(limit)
            )
        },
    )
}

/// Why a member is in a cluster of its own, and what to do.
const FOREIGN: &str = "it was restored from other data, or with another --initial-cluster or \
     --initial-cluster-token; stop it and restore it again from the same backup as the others, \
     with the same --initial-cluster";

/// A member restored from other data, or with another `--initial-cluster`
/// or token, forms a cluster of its own: it never publishes its client
/// URLs to the others, so their member list shows it only as not started.
/// Asked directly (each of `--endpoints`), it names its own cluster ID.
fn foreign_members(ctl: &Etcdctl, listed: &[(String, EndpointStatus)]) -> Vec<String> {
    let endpoints: Vec<&str> = ctl
        .endpoints()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.len() < 2 {
        return Vec::new();
    }
    let mut seen: Vec<(String, u64, u64)> = Vec::new();
    for ep in endpoints {
        // A listed member's status was just taken: not asked twice.
        let known = listed.iter().find(|(_, s)| s.endpoint == ep);
        let status = match known {
            Some((_, s)) => Some(s.clone()),
            None => {
                let mut c = ctl.at(ep);
                c.query_timeout = Duration::from_secs(5);
                c.endpoint_status().ok()
            }
        };
        if let Some(s) = status {
            seen.push((
                ep.to_owned(),
                s.status.header.cluster_id,
                s.status.header.member_id,
            ));
        }
    }
    // The cluster of the started members wins; else the most common one.
    let Some(ours) = listed
        .first()
        .map(|(_, s)| s.status.header.cluster_id)
        .or_else(|| majority(seen.iter().map(|(_, c, _)| *c)))
    else {
        return Vec::new();
    };
    seen.iter()
        .filter(|(_, c, _)| *c != ours)
        .map(|(ep, c, m)| {
            format!(
                "the member at {ep} (id {}) is in cluster {}, not in cluster {} of the others: \
                 {FOREIGN}",
                hex_id(*m),
                hex_id(*c),
                hex_id(ours)
            )
        })
        .collect()
}

/// The most common value (the first of equals).
fn majority<T: Eq + Copy>(vals: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: Vec<(T, usize)> = Vec::new();
    for v in vals {
        match counts.iter_mut().find(|(c, _)| *c == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(v, _)| v)
}

/// `name at X` for each member whose value is not the majority's, or
/// every member's where there is no majority.
fn odd_ones<T: Eq + Copy + std::fmt::Display>(vals: &[(String, T)]) -> String {
    let best = majority(vals.iter().map(|(_, v)| *v));
    let count = |x: T| vals.iter().filter(|(_, v)| *v == x).count();
    match best.filter(|b| count(*b) * 2 > vals.len()) {
        Some(b) => {
            let odd: Vec<String> = vals
                .iter()
                .filter(|(_, v)| *v != b)
                .map(|(n, v)| format!("{n} at {v}"))
                .collect();
            format!("{}, the others at {b}", odd.join(", "))
        }
        None => vals
            .iter()
            .map(|(n, v)| format!("{n} at {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Prove, once the cluster is healthy, that every started member holds the
/// same keys: at a common revision (the lowest any member is at) every
/// member's KV hash (`endpoint hashkv --rev`, etcd's own corruption check)
/// must be equal, and whenever all report one applied raft index their
/// revisions must be equal too (a member restored from an older backup of
/// the same history hashes alike up to its revision, but lags behind it
/// forever; the same mismatch seen three times). A disagreement
/// fails naming the odd member; a
/// cluster never quiet within a few tries is judged by the hash alone, and
/// the agreement says so.
pub fn check_agreement(ctl: &Etcdctl, limit: Duration) -> Result<Agreement> {
    const QUIET_TRIES: usize = 20;
    const REVISION_MISMATCHES: usize = 3;
    let (mut tries, mut mismatches) = (0usize, 0usize);
    // The last mismatch seen: only the same one seen again and again is
    // divergence; a write applied between one member's two readings is not.
    let mut last_mismatch: Option<(u64, Vec<(String, u64)>)> = None;
    poll::until(
        limit,
        Duration::from_millis(300),
        "comparing the members' keys",
        || {
            tries += 1;
            let list = match ctl.member_list() {
                Ok(l) => l,
                Err(e) if crate::etcd::is_auth_refusal(&e) => return Err(e),
                Err(e) => return Ok(Probe::Waiting(format!("{e:#}"))),
            };
            let mut statuses = Vec::new();
            // A learner serves no hash (etcd refuses it every RPC but
            // status and serializable reads); it is compared once promoted.
            for m in list.members.iter().filter(|m| m.started() && !m.is_learner) {
                let mut c = ctl.at(&m.client_urls.join(","));
                c.query_timeout = Duration::from_secs(10);
                match c.endpoint_status() {
                    Ok(s) => statuses.push((m.name.clone(), c, s)),
                    Err(e) => return Ok(Probe::Waiting(format!("{}: {e:#}", m.name))),
                }
            }
            let Some(at) = statuses
                .iter()
                .map(|(_, _, s)| s.status.header.revision)
                .min()
            else {
                return Ok(Probe::Waiting("no started member".into()));
            };
            let applied: Vec<u64> = statuses.iter().map(|(_, _, s)| applied_index(s)).collect();
            let quiet = applied.iter().all(|a| *a == applied[0]);
            // A hash reads the whole keyspace: taken only once the members
            // are quiet, or once they never were within the tries.
            if !quiet && tries < QUIET_TRIES {
                return Ok(Probe::Waiting("members still applying writes".into()));
            }
            let mut hashes = Vec::new();
            for (name, c, _) in &statuses {
                match c.hashkv(at) {
                    Ok(h) => hashes.push((name.clone(), h)),
                    Err(e) if crate::etcd::is_compacted(&e) => {
                        return Ok(Probe::Waiting(format!("revision {at} compacted meanwhile")))
                    }
                    Err(e) if crate::etcd::is_auth_refusal(&e) => return Err(e),
                    Err(e) => return Ok(Probe::Waiting(format!("{name}: {e:#}"))),
                }
            }
            let compacted: Vec<(String, i64)> = hashes
                .iter()
                .map(|(n, h)| (n.clone(), h.compact_revision))
                .collect();
            if compacted.iter().any(|(_, c)| *c != compacted[0].1) {
                return Ok(Probe::Waiting(format!(
                    "a compaction not yet applied everywhere ({})",
                    odd_ones(&compacted)
                )));
            }
            let kv: Vec<(String, u32)> = hashes.iter().map(|(n, h)| (n.clone(), h.hash)).collect();
            if kv.iter().any(|(_, h)| *h != kv[0].1) {
                bail!(
                    "the members hold different keys: their KV hashes at revision {at} differ \
                     ({}): a member restored from another backup, or corrupt; stop it and \
                     restore it again from the same backup as the others",
                    odd_ones(&kv)
                );
            }
            let revisions: Vec<(String, u64)> = statuses
                .iter()
                .map(|(n, _, s)| (n.clone(), s.status.header.revision))
                .collect();
            let agreement = |revision| Agreement {
                cluster_id: hex_id(list.header.cluster_id),
                members: {
                    let mut m: Vec<String> = statuses.iter().map(|(n, _, _)| n.clone()).collect();
                    m.sort();
                    m
                },
                hash_revision: at,
                kv_hash: kv[0].1,
                revision,
            };
            if quiet && revisions.iter().all(|(_, r)| *r == revisions[0].1) {
                return Ok(Probe::Done(agreement(Some(revisions[0].1))));
            }
            if quiet {
                let seen = Some((applied[0], revisions.clone()));
                mismatches = if seen == last_mismatch {
                    mismatches + 1
                } else {
                    1
                };
                last_mismatch = seen;
                if mismatches >= REVISION_MISMATCHES {
                    bail!(
                        "the members hold different keys: at one applied raft index {} their \
                         revisions differ ({}): a member restored from another backup (an \
                         older one of the same history hashes alike up to its own revision); \
                         stop it and restore it again from the same backup as the others",
                        applied[0],
                        odd_ones(&revisions)
                    );
                }
                return Ok(Probe::Waiting(format!(
                    "revisions differ at raft index {} ({})",
                    applied[0],
                    odd_ones(&revisions)
                )));
            }
            tracing::warn!(
                "writes never paused long enough to compare the members' revisions at one raft \
                 index: judged by the KV hash at revision {at} alone"
            );
            Ok(Probe::Done(agreement(None)))
        },
        |last| {
            anyhow::anyhow!(
                "the members' keys not compared within {}: {last}",
                crate::cmd::human_duration(limit)
            )
        },
    )
}

/// The raft index a member has applied, which its revision follows;
/// etcd's `raftIndex` is only what it has committed.
fn applied_index(s: &EndpointStatus) -> u64 {
    s.status.raft_applied_index
}

pub(crate) fn peer(m: &Member) -> String {
    m.peer_urls.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_odd_member_is_named_against_the_majority() {
        let v = |n: &str, x: u64| (n.to_owned(), x);
        assert_eq!(
            odd_ones(&[v("e1", 7), v("e2", 7), v("e3", 5)]),
            "e3 at 5, the others at 7"
        );
        // Two members, two values: no majority to stand against.
        assert_eq!(odd_ones(&[v("e1", 7), v("e2", 5)]), "e1 at 7, e2 at 5");
        assert_eq!(majority([3, 4, 4].into_iter()), Some(4));
        assert_eq!(majority(std::iter::empty::<u8>()), None);
    }

    #[test]
    fn a_member_is_compared_at_the_index_it_applied_not_the_one_it_committed() {
        // A follower that has committed 9 entries but applied 5 holds the
        // revision of entry 5: compared with a member at 9 it is not quiet.
        let status: EndpointStatus = serde_json::from_str(
            r#"{"Endpoint":"http://127.0.0.1:2379","Status":{"header":{"cluster_id":1,
            "member_id":2,"revision":40},"version":"3.6.16","dbSize":20480,"leader":2,
            "raftIndex":9,"raftTerm":2,"raftAppliedIndex":5}}"#,
        )
        .unwrap();
        assert_eq!(applied_index(&status), 5);
    }
}

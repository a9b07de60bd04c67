//! A cluster's health as our jobs judge it: every started member reachable,
//! agreeing on a leader and caught up; and the bounded wait for it that
//! replaces the original's `sleep 10` (etcd2-health, etcd2-member-add).

use std::time::Duration;

use anyhow::Result;

use crate::etcd::{hex_id, Etcdctl, Member};
use crate::poll::{self, Probe};

/// What a health check found (`etcd2-health --json`).
#[derive(Debug, serde::Serialize)]
pub struct Health {
    pub started: usize,
    pub unstarted: Vec<String>,
    pub problems: Vec<String>,
}

impl Health {
    pub fn ok(&self, want_started: usize) -> bool {
        self.problems.is_empty() && self.unstarted.is_empty() && self.started >= want_started
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
    };
    let mut statuses = Vec::new();
    for m in &list.members {
        if !m.started() || m.client_urls.is_empty() {
            h.unstarted.push(format!("{} ({})", hex_id(m.id), peer(m)));
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

pub(crate) fn peer(m: &Member) -> String {
    m.peer_urls.join(",")
}

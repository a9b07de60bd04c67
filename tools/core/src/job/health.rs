//! The `etcd2-health` job: wait, bounded, until the cluster has the wanted
//! number of started members, all healthy and caught up; then prove they
//! hold the same keys (cluster::check_agreement).

use std::time::Duration;

use std::time::Instant;

use anyhow::{Context, Result};

use crate::cluster::{self, Health};
use crate::etcd::{hex_id, Etcdctl};
use crate::poll::{self, Probe};

pub struct HealthJob {
    pub etcd: Etcdctl,
    /// At least this many started members, and none added but unstarted.
    pub members: usize,
    pub wait: Duration,
    /// First promote this learner (by name) once it caught up.
    pub promote: Option<String>,
    /// Then compare the members' KV hashes and revisions.
    pub kv_hash: bool,
}

impl HealthJob {
    pub fn run(&self) -> Result<Health> {
        // A member that does not answer within 10 s is down for this check.
        let mut ctl = self.etcd.clone();
        ctl.query_timeout = ctl.query_timeout.min(Duration::from_secs(10));
        let started = Instant::now();
        if let Some(name) = &self.promote {
            promote(&ctl, name, self.wait)?;
        }
        let left = self.wait.saturating_sub(started.elapsed());
        let mut health = cluster::wait_healthy(&ctl, self.members, left)?;
        if self.kv_hash {
            let left = self.wait.saturating_sub(started.elapsed());
            let a = cluster::check_agreement(&ctl, left.max(Duration::from_secs(10)))?;
            tracing::info!(
                "the members hold the same keys: {} of cluster {}, KV hash {:08x} at revision {}{}",
                a.members.join(", "),
                a.cluster_id,
                a.kv_hash,
                a.hash_revision,
                match a.revision {
                    Some(r) => format!(", all at revision {r}"),
                    None => ", revisions not compared (never quiet)".to_owned(),
                }
            );
            health.agreement = Some(a);
        }
        Ok(health)
    }
}

/// etcd's refusals of a promotion that a later try can pass: the learner
/// is not yet in sync with the leader, or the cluster is busy.
pub fn promotion_refused_for_now(msg: &str) -> bool {
    [
        "in sync with leader",
        "too many requests",
        "not healthy",
        "leader changed",
        "context deadline exceeded",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

/// Promote learner `name` to a voting member, waiting (bounded) while it is
/// not started or not yet in sync with the leader (etcd refuses until then).
/// A member that already votes is left as it is.
fn promote(ctl: &Etcdctl, name: &str, wait: Duration) -> Result<()> {
    poll::until(
        wait,
        Duration::from_secs(1),
        &format!("waiting to promote {name}"),
        || {
            let list = match ctl.member_list() {
                Ok(l) => l,
                Err(e) if crate::etcd::is_auth_refusal(&e) => return Err(e),
                // The founder busy (sending the learner a snapshot, a
                // leader change): not a reason to stop the learner.
                Err(e) => return Ok(Probe::Waiting(format!("{e:#}"))),
            };
            let Some(m) = list.members.iter().find(|m| m.name == name) else {
                return Ok(Probe::Waiting(format!(
                    "{name} has not started (or is not a member)"
                )));
            };
            if !m.is_learner {
                tracing::info!("{name} ({}) is a voting member", hex_id(m.id));
                return Ok(Probe::Done(()));
            }
            match ctl.member_promote(m.id) {
                Ok(()) => {
                    tracing::info!(
                        "promoted learner {name} ({}) to a voting member",
                        hex_id(m.id)
                    );
                    Ok(Probe::Done(()))
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    let cause = msg.rsplit(" | ").next().unwrap_or(&msg).to_owned();
                    if promotion_refused_for_now(&msg) {
                        Ok(Probe::Waiting(format!("{name} is catching up ({cause})")))
                    } else {
                        Err(e).context(format!("promoting {name} ({})", hex_id(m.id)))
                    }
                }
            }
        },
        |last| {
            anyhow::anyhow!(
                "learner {name} not promoted within {}: {last}",
                crate::cmd::human_duration(wait)
            )
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_learner_not_yet_in_sync_is_waited_for() {
        // etcd's own words (server/etcdserver/api/membership/errors.go).
        assert!(super::promotion_refused_for_now(
            "Error: etcdserver: can only promote a learner member which is in sync with leader"
        ));
        assert!(!super::promotion_refused_for_now(
            "Error: etcdserver: can only promote a learner member"
        ));
    }
}

//! The `etcd2-health` job: wait, bounded, until the cluster has the wanted
//! number of started members, all healthy and caught up.

use std::time::Duration;

use anyhow::Result;

use crate::cluster::{self, Health};
use crate::etcd::Etcdctl;

pub struct HealthJob {
    pub etcd: Etcdctl,
    /// At least this many started members, and none added but unstarted.
    pub members: usize,
    pub wait: Duration,
}

impl HealthJob {
    pub fn run(&self) -> Result<Health> {
        // A member that does not answer within 10 s is down for this check.
        let mut ctl = self.etcd.clone();
        ctl.query_timeout = ctl.query_timeout.min(Duration::from_secs(10));
        cluster::wait_healthy(&ctl, self.members, self.wait)
    }
}

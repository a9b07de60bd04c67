//! The command line of etcd2-health, as a library so the packager can
//! generate its man page and shell completions from the same definition.

use clap::Parser;
use etcd2_backup::cli::{self, EtcdArgs, LogArgs};
use std::time::Duration;

/// Wait until the cluster is healthy with at least N started members, all
/// reachable, agreeing on a leader and caught up with it; no member added but
/// not started. Then prove they hold the same keys: one cluster ID (each of
/// --endpoints is asked: a member restored from other data forms a cluster of
/// its own, which the others' member list shows only as not started), the
/// same KV hash at a common revision, and the same revision at one applied
/// raft index. Exits 0 then, or 1 at --wait saying what is missing, or at
/// once naming the member that holds other keys.
///
/// Use it between joins instead of the original's `sleep 10`:
///   etcd2-member-add ... && systemctl start etcd2 && etcd2-health --members 2
/// and after an all-at-once restore, with every member's client URL:
///   etcd2-health --members 3 --endpoints https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Cli {
    /// How many started members to wait for
    #[arg(long, env = "ETCD2_BACKUP_MEMBERS", default_value_t = 1)]
    pub members: usize,

    /// Give up after this long
    #[arg(long, env = "ETCD2_BACKUP_HEALTH_WAIT", default_value = "5m", value_parser = cli::parse_duration, value_name = "DURATION")]
    pub wait: Duration,

    /// First promote this learner (a member's name) to a voting member, as
    /// soon as it started and caught up (etcd refuses before); a member that
    /// already votes is left as it is. etcd2-member-add's drop-in runs this
    /// after etcd starts
    #[arg(long, value_name = "NAME")]
    pub promote: Option<String>,

    /// Skip comparing the members' keys (KV hash, revisions) once healthy
    #[arg(long)]
    pub no_kv_hash: bool,

    #[command(flatten)]
    pub etcd: EtcdArgs,

    /// Print the verdict (members started, unstarted, problems) as JSON on stdout
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub log: LogArgs,
}

impl etcd2_backup::cli::Tool for Cli {
    const NAME: &'static str = "etcd2-health";
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

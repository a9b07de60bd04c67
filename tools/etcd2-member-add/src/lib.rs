//! The command line of etcd2-member-add, as a library so the packager can
//! generate its man page and shell completions from the same definition.

use clap::Parser;
use etcd2_backup::cli::{self, EtcdConnArgs, LogArgs};
use std::path::PathBuf;
use std::time::Duration;

/// Add this node to the founding member's cluster as a learner; write the drop-in to join it.
///
/// Waits (bounded) until the cluster is healthy and every member caught up,
/// then runs `etcdctl member add`, retrying while etcd refuses it as unsafe
/// (etcd 3.4 does for ~5 s after each join). Safe to run again: if this node's
/// peer URL is already an unstarted member it is not added twice. Refuses
/// while another added member has not started (adding would cost quorum).
/// Writes the etcd2.service drop-in (ETCD_NAME, ETCD_INITIAL_CLUSTER,
/// ETCD_INITIAL_CLUSTER_STATE=existing) to --dropin atomically, or stdout.
///
/// The founder's CLIENT URL: --endpoints, else ETCD_RESTORE_MASTER_ADV_PEER_URLS
/// (the original package's name; despite it, it always held a client URL).
///
/// Example:
///   etcd2-member-add --endpoints http://10.0.0.1:2379 --name e2 \
///     --peer-urls http://10.0.0.2:2380 \
///     --dropin /run/systemd/system/etcd2.service.d/40-join-cluster.conf
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Cli {
    /// Client URL(s) of the founding member, comma-separated
    #[arg(long, env = "ETCD_RESTORE_MASTER_ADV_PEER_URLS", value_name = "URLS")]
    pub endpoints: String,

    /// This member's name
    #[arg(long, env = "ETCD_NAME")]
    pub name: String,

    /// This member's peer URL(s)
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", value_name = "URLS")]
    pub peer_urls: String,

    /// Write the systemd drop-in here (atomically) instead of stdout
    #[arg(long, value_name = "PATH")]
    pub dropin: Option<PathBuf>,

    /// Bound on waiting for a healthy cluster and an accepted add
    #[arg(long, env = "ETCD2_BACKUP_HEALTH_WAIT", default_value = "5m", value_parser = cli::parse_duration, value_name = "DURATION")]
    pub wait: Duration,

    /// Add a voting member at once, as before etcd 3.4's learners. By default
    /// the node joins as a learner, which does not count for quorum: a
    /// one-member founder stays writable even if the joiner never starts. The
    /// drop-in then promotes it once it caught up (etcd2-health --promote)
    #[arg(long, env = "ETCD2_BACKUP_NO_LEARNER", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub no_learner: bool,

    #[command(flatten)]
    pub conn: EtcdConnArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl etcd2_backup::cli::Tool for Cli {
    const NAME: &'static str = "etcd2-member-add";
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

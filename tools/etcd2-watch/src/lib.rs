//! The command line of etcd2-watch, as a library so the packager can
//! generate its man page and shell completions from the same definition.

use clap::Parser;
use etcd2_backup::cli::{self, EtcdArgs, LogArgs, MetricsArgs, RemoteArgs};
use std::path::PathBuf;
use std::time::Duration;

/// Capture every change of etcd's v3 keyspace, published within seconds.
///
/// Watches the member's whole v3 keyspace from the newest full backup's
/// revision (or resumes after the last change segment it published) and
/// publishes what changed as immutable, verified change segments beside the
/// full backups: one every --segment-interval, or sooner at
/// --segment-bytes; nothing for an interval without changes. Each segment
/// names its revisions and the hash of the one before it, so a restore
/// detects a gap, a duplicate or a reordering (docs/change-capture.md).
/// Runs until stopped (etcd2-watch.service); a failure exits non-zero, and
/// the next start resumes where the remote ends, nothing captured twice.
///
/// When etcd has compacted past where it must start (etcd down or the
/// remote unreachable for longer than etcd keeps history), that is a gap:
/// it says so as an error, runs --on-gap (a full backup) and starts a new
/// chain from the next full backup. The v2 keyspace is not captured: v2
/// backups stay full backups only.
///
/// Example:
///   etcd2-watch --segment-interval 5s
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
#[command(after_help = "Exit status:
  0  stopped
  1  failed (one line on stderr says why); a restart resumes after the last
     published segment
  2  usage error
  5  the remote cannot be reached, or did not answer within its bounds
  6  another etcd2-watch runs on this host (it holds --lock-file)")]
pub struct Cli {
    /// How long a change waits to be on the remote, from when the watcher
    /// received it: its segment closes earlier by what the last publication
    /// took (at most half of it), so a killed node loses about this much
    /// (more when an upload is slower than the last, or retried)
    #[arg(long, env = "ETCD2_BACKUP_SEGMENT_INTERVAL", default_value = "5s", value_parser = cli::parse_duration, value_name = "DURATION")]
    pub segment_interval: Duration,

    /// Publish a segment sooner once its changes reach this many bytes
    #[arg(long, env = "ETCD2_BACKUP_SEGMENT_BYTES", default_value_t = 4 << 20, value_name = "BYTES")]
    pub segment_bytes: usize,

    /// Run this (by sh -c) when a gap is found, to start a full backup
    #[arg(long, env = "ETCD2_BACKUP_ON_GAP", value_name = "COMMAND")]
    pub on_gap: Option<String>,

    /// How long to wait for a full backup to start from (none yet, or none
    /// past a gap) before failing
    #[arg(long, env = "ETCD2_BACKUP_BASE_WAIT", default_value = "1h", value_parser = cli::parse_duration, value_name = "DURATION")]
    pub base_wait: Duration,

    /// One watcher per host: the lock held while it runs
    #[arg(
        long,
        env = "ETCD2_BACKUP_WATCH_LOCK",
        default_value = "/run/lock/etcd2-watch.lock",
        value_name = "FILE"
    )]
    pub lock_file: PathBuf,

    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(flatten)]
    pub etcd: EtcdArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl etcd2_backup::cli::Tool for Cli {
    const NAME: &'static str = "etcd2-watch";
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

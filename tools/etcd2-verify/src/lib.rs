//! The command line of etcd2-verify, as a library so the packager can
//! generate its man page and shell completions from the same definition.

use clap::Parser;
use etcd2_backup::cli::{self, EtcdConnArgs, LogArgs, MetricsArgs, RemoteArgs};
use std::path::PathBuf;
use std::time::Duration;

/// Prove that a backup restores, without touching the live member.
///
/// Fetches a generation (the one LATEST.json names, or --generation),
/// verifies every byte against its sidecar and manifest, builds a throwaway
/// member from it (etcdutl/etcdctl snapshot restore for v3, a private
/// --force-new-cluster start for v2) on private loopback ports in a scratch
/// dir under ETCD_BACKUP_DIR, starts it, checks it against the manifest,
/// stops it and removes everything. Prints one line. Run it from a timer
/// (etcd2-verify.timer, daily) so that a backup that cannot be restored is
/// found before the night it is needed.
///
/// Example:
///   etcd2-verify
///   etcd2-verify --generation 20261124T150102.123Z-9f31c2aa
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
#[command(after_help = "Exit status:
  0  the generation restores
  1  it does not (one line on stderr says why), or verification failed
  2  usage error
  4  no backup for this machine-id
  5  the remote cannot be reached, or did not answer within its bounds")]
pub struct Cli {
    /// Verify this generation instead of the one LATEST.json names
    #[arg(long, value_name = "ID")]
    pub generation: Option<String>,

    /// When LATEST.json cannot be followed (missing, damaged, or naming a
    /// generation gone or damaged), verify the newest complete generation
    /// instead (with a warning), as `etcd2-fetch --allow-older` would fetch
    /// it. Without it verify fails where the restore path (etcd2-fetch)
    /// refuses, and for the same reason
    #[arg(long, env = "ETCD2_BACKUP_ALLOW_OLDER", conflicts_with = "generation")]
    pub allow_older: bool,

    /// Scratch space for the download and the throwaway member
    #[arg(long, env = "ETCD_BACKUP_DIR", default_value = cli::DEFAULT_WORK_DIR, value_name = "DIR")]
    pub work_dir: PathBuf,

    /// etcd binary for the throwaway member [default: etcd from PATH]
    #[arg(long, env = "ETCD2_BACKUP_ETCD", value_name = "PATH")]
    pub etcd: Option<PathBuf>,

    /// Bound on the throwaway member becoming healthy
    #[arg(long, env = "ETCD2_BACKUP_RESTORE_WAIT", default_value = "2m", value_parser = cli::parse_duration, value_name = "DURATION")]
    pub wait: Duration,

    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(flatten)]
    pub conn: EtcdConnArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl etcd2_backup::cli::Tool for Cli {
    const NAME: &'static str = "etcd2-verify";
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

//! The command line of etcd2-push, as a library so the packager can
//! generate its man page and shell completions from the same definition.

use clap::Parser;
use etcd2_backup::cli::{self, LogArgs, RemoteArgs};
use etcd2_backup::store::Verify;
use std::path::PathBuf;
use std::time::Duration;

/// Publish one backup archive as a new, verified generation on an rclone remote.
///
/// The archive (from etcd2-snapshot, a file or - for stdin) is uploaded while
/// it is read and verified (nothing is spooled to disk), under
/// <remote>/<machine-id>/generations/ with a unique time-ordered name,
/// checked on the remote (size and the backend's hash; downloaded again and
/// compared where the backend has no hash), described by a sidecar, and only
/// then named by <remote>/<machine-id>/LATEST.json. One rclone process
/// (`rclone rcd`, on 127.0.0.1 with a random credential) serves all of it. Older generations beyond
/// --keep are deleted; the one LATEST.json names never is. An interrupted push
/// leaves the previous backup untouched; the next push cleans up after it.
///
/// Examples:
///   etcd2-snapshot -o - | etcd2-push -
///   etcd2-push --remote s3:bucket/etcd /var/lib/etcd2-backup/now.tar.zst
///   etcd2-fetch --machine-id OLD -o - | etcd2-push --machine-id NEW -   (migration)
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
#[command(after_help = "Exit status:
  0  published
  1  failed (one line on stderr says why; nothing unverified is published)
  2  usage error
  5  the remote cannot be reached, or did not answer within its bounds
  6  locked: another etcd2-push holds the lock (--lock-wait)
  7  refused: the remote holds another member's backups under this machine-id (--force)")]
pub struct Cli {
    /// The archive to push, or - to read it from stdin
    #[arg(value_name = "ARCHIVE|-")]
    pub archive: cli::Input,

    #[command(flatten)]
    pub remote: RemoteArgs,

    /// How many complete generations to keep (the original kept 2: %m and %m_backup)
    #[arg(long, env = "ETCD2_BACKUP_KEEP", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,

    /// How to check the uploaded copy before publishing it
    #[arg(long, env = "ETCD2_BACKUP_VERIFY", value_enum, default_value_t = Verify::Auto)]
    pub verify: Verify,

    /// Publish even though LATEST.json was written for another member or host
    #[arg(long)]
    pub force: bool,

    /// Accepted for compatibility; unused (stdin is no longer spooled)
    #[arg(long, hide = true, env = "ETCD_BACKUP_DIR", default_value = cli::DEFAULT_WORK_DIR, value_name = "DIR")]
    pub work_dir: PathBuf,

    /// Also keep the pushed archive in FILE (the original's "newest backup on
    /// local disk"): written as it is read, no extra pass, and renamed into
    /// place only once its generation is published; mode 0600
    #[arg(long, env = "ETCD2_BACKUP_LOCAL_COPY", value_name = "FILE")]
    pub local_copy: Option<PathBuf>,

    /// Lock file that keeps two pushes on this host from interleaving
    #[arg(
        long,
        env = "ETCD2_BACKUP_LOCK",
        default_value = "/run/lock/etcd2-push.lock",
        value_name = "FILE"
    )]
    pub lock_file: PathBuf,

    /// How long to wait for another push to finish before giving up
    #[arg(long, env = "ETCD2_BACKUP_LOCK_WAIT", default_value = "0s",
          value_parser = cli::parse_duration, value_name = "DURATION")]
    pub lock_wait: Duration,

    #[command(flatten)]
    pub metrics: cli::MetricsArgs,

    /// Print what was published (generation, size, sha256, what retention deleted)
    /// as JSON on stdout
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub log: LogArgs,
}

impl etcd2_backup::cli::Tool for Cli {
    const NAME: &'static str = "etcd2-push";
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

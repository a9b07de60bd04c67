//! The command line of etcd2-snapshot, as a library so the packager can
//! generate its man page and shell completions from the same definition.

use clap::Parser;
use etcd2_backup::cli::{self, EtcdArgs, LogArgs};
use etcd2_backup::job::snapshot::ApiChoice;
use std::path::PathBuf;

/// Take a consistent backup of the local etcd member and write it as one archive.
///
/// The archive is a standard tar stream (zstd or gzip compressed) whose first
/// entry, manifest.json, records the etcd member, cluster, revision and the
/// sha256 of every file. Plain `tar -xf` unpacks it; etcd2-fetch verifies it.
///
/// Examples:
///   etcd2-snapshot -o /var/lib/etcd2-backup/now.tar.zst
///   etcd2-snapshot -o - | etcd2-push -
///   etcd2-snapshot --api v2 --data-dir /var/lib/etcd2 -o backup.tar.gz --codec gzip
///   etcdctl snapshot save s.db && etcd2-snapshot --from-file s.db -o - | etcd2-push -
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Cli {
    /// Where to write the archive: a file (written atomically) or - for stdout
    #[arg(short, long, value_name = "FILE|-")]
    pub output: cli::Output,

    /// Wrap an existing etcd database file instead of asking etcd: an
    /// `etcdctl snapshot save` file (its sha256 trailer checked), or a copy of
    /// a member's member/snap/db (restored with --skip-hash-check, which the
    /// archive records). Read with `snapshot status` (etcdutl, or etcdctl
    /// before 3.5) for its revision; writes no metrics
    #[arg(long, value_name = "DB")]
    pub from_file: Option<PathBuf>,

    /// Which etcd keyspace to back up
    #[arg(long, env = "ETCD2_BACKUP_API", value_enum, default_value_t = ApiChoice::Auto)]
    pub api: ApiChoice,

    /// Go ahead with --api v2|v3 even though the other keyspace holds data,
    /// which will NOT be in the backup
    #[arg(long, env = "ETCD2_BACKUP_ALLOW_DROPPING_KEYSPACE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub allow_dropping_keyspace: bool,

    /// The member's data dir, read by `etcdctl backup` for --api v2
    #[arg(
        long,
        env = "ETCD_DATA_DIR",
        default_value = cli::DEFAULT_DATA_DIR,
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Scratch space for etcdctl's output before it is archived
    #[arg(long, env = "ETCD_BACKUP_DIR", default_value = cli::DEFAULT_WORK_DIR, value_name = "DIR")]
    pub work_dir: PathBuf,

    #[command(flatten)]
    pub compress: cli::CompressArgs,

    /// Recorded in the manifest [default: read from /etc/machine-id]
    #[arg(long, env = "ETCD2_BACKUP_MACHINE_ID", value_name = "ID")]
    pub machine_id: Option<String>,

    #[command(flatten)]
    pub etcd: EtcdArgs,

    #[command(flatten)]
    pub metrics: cli::MetricsArgs,

    /// Print what was written (the manifest, size and sha256) as JSON on stdout;
    /// needs -o FILE, since stdout otherwise carries the archive
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub log: LogArgs,
}

impl etcd2_backup::cli::Tool for Cli {
    const NAME: &'static str = "etcd2-snapshot";
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

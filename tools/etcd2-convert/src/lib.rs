//! The command line of etcd2-convert, as a library so the packager can
//! generate its man page and shell completions from the same definition.

use clap::Parser;
use etcd2_backup::cli::{self, EtcdConnArgs, LogArgs};
use std::path::PathBuf;
use std::time::Duration;

/// Carry an etcd2 (v2) backup to etcd 3.6 and later: convert it into a v3 backup archive.
///
/// etcd 3.6 removed the v2 store, so a v2 backup (etcdctl backup, or
/// etcd2-snapshot --api v2) no longer restores there. etcd2-convert starts
/// it as a private member of an etcd that still has a v2 store (3.5 or
/// older, --etcd) on loopback ports in a scratch dir, reads the whole v2
/// store, writes every v2 key as the v3 key of the same name with the same
/// value (a key with a TTL on a lease of its remaining TTL), reads every
/// key back, and writes that member's v3 snapshot as an ordinary backup
/// archive, which etcd2-push publishes and etcd2-restore restores on 3.7.
/// v3 has no directories: an empty v2 directory is not carried (counted).
/// v2's hidden keys (names starting with _) are not listed by the v2 API
/// and are not converted. The live cluster is never touched.
/// docs/etcd2-convert.md has the whole path from etcd2 to 3.7.
///
/// BACKUP is an archive (a file, or - for stdin), a directory made by
/// `etcd2-fetch --into`, or a bare `etcdctl backup` directory (member/wal,
/// member/snap: the original package's).
///
/// Examples:
///   etcd2-convert /var/lib/etcd2-backup/etcd2-backup.archive -o - | etcd2-push -
///   etcd2-fetch -o - | etcd2-convert - -o converted.tar.zst
///   etcd2-convert /tmp/etcd2-backup-dir -o converted.tar.zst --etcd /usr/bin/etcd
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
#[command(after_help = "Exit status:
  0  converted: one line on stderr says what was carried and what was not
  1  it could not be converted (one line on stderr says why); nothing written
  2  usage error")]
pub struct Cli {
    /// The v2 backup: an archive file, - for stdin, or a directory
    #[arg(value_name = "BACKUP|-")]
    pub from: cli::Input,

    /// Where to write the v3 archive: a file (written atomically) or - for stdout
    #[arg(short, long, value_name = "FILE|-")]
    pub output: cli::Output,

    /// etcd binary with a v2 store (3.5 or older) for the private member
    /// [default: etcd from PATH]
    #[arg(long, env = "ETCD2_BACKUP_ETCD", value_name = "PATH")]
    pub etcd: Option<PathBuf>,

    /// Scratch space for the backup's copy and the private member
    #[arg(long, env = "ETCD_BACKUP_DIR", default_value = cli::DEFAULT_WORK_DIR, value_name = "DIR")]
    pub work_dir: PathBuf,

    /// Bound on the private member becoming healthy, and on each call to it
    #[arg(long, env = "ETCD2_BACKUP_RESTORE_WAIT", default_value = "2m", value_parser = cli::parse_duration, value_name = "DURATION")]
    pub wait: Duration,

    #[command(flatten)]
    pub compress: cli::CompressArgs,

    #[command(flatten)]
    pub conn: EtcdConnArgs,

    /// Print what was written (the manifest, size and sha256) as JSON on
    /// stdout; needs -o FILE, since stdout otherwise carries the archive
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub log: LogArgs,
}

impl etcd2_backup::cli::Tool for Cli {
    const NAME: &'static str = "etcd2-convert";
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

//! etcd2-snapshot: take a consistent backup of the local etcd member and write
//! it as one verifiable archive.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use etcd2_backup::archive::Codec;
use etcd2_backup::cli::{self, EtcdArgs, LogArgs};
use etcd2_backup::snapshot::{ApiChoice, Output, SnapshotJob};

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
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Where to write the archive: a file (written atomically) or - for stdout
    #[arg(short, long, value_name = "FILE|-")]
    output: String,

    /// Which etcd keyspace to back up
    #[arg(long, env = "ETCD2_BACKUP_API", value_enum, default_value_t = ApiChoice::Auto)]
    api: ApiChoice,

    /// Go ahead with --api v2|v3 even though the other keyspace holds data,
    /// which will NOT be in the backup
    #[arg(long)]
    allow_dropping_keyspace: bool,

    /// The member's data dir, read by `etcdctl backup` for --api v2
    #[arg(
        long,
        env = "ETCD_DATA_DIR",
        default_value = "/var/lib/etcd2",
        value_name = "DIR"
    )]
    data_dir: PathBuf,

    /// Scratch space for etcdctl's output before it is archived
    #[arg(
        long,
        env = "ETCD_BACKUP_DIR",
        default_value = "/var/lib/etcd2-backup",
        value_name = "DIR"
    )]
    work_dir: PathBuf,

    /// Compression of the archive
    #[arg(long, env = "ETCD2_BACKUP_CODEC", value_enum, default_value_t = Codec::Zstd)]
    codec: Codec,

    /// Compression level [default: zstd 3, gzip 6]
    #[arg(long, env = "ETCD2_BACKUP_LEVEL")]
    level: Option<i32>,

    /// Compression worker threads (zstd only; 0 compresses on the main thread)
    #[arg(long, env = "ETCD2_BACKUP_THREADS", default_value_t = 1)]
    threads: u32,

    /// Recorded in the manifest [default: read from /etc/machine-id]
    #[arg(long, env = "ETCD2_BACKUP_MACHINE_ID", value_name = "ID")]
    machine_id: Option<String>,

    #[command(flatten)]
    etcd: EtcdArgs,

    #[command(flatten)]
    log: LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    cli::run_main("etcd2-snapshot", || {
        let job = SnapshotJob {
            api: cli.api,
            allow_dropping_keyspace: cli.allow_dropping_keyspace,
            data_dir: cli.data_dir,
            etcd: cli.etcd.client()?,
            output: Output::parse(&cli.output),
            codec: cli.codec,
            level: cli.level,
            threads: cli.threads,
            work_dir: cli.work_dir,
            machine_id: cli::machine_id_or_local(cli.machine_id)?,
        };
        job.run().map(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}

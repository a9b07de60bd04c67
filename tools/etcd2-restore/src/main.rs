//! etcd2-restore: make the founding member's data dir from a fetched backup.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use etcd2_backup::cli::{self, EtcdConnArgs, LogArgs};
use etcd2_backup::cmd::Program;
use etcd2_backup::restore::RestoreJob;

/// Turn a fetched backup into the data dir of a healthy single-member cluster.
///
/// For the founding member only: the other members join it afterwards with
/// etcd2-member-add. FROM is a directory made by `etcd2-fetch --into`, or an
/// archive file. v2 backups are started once with --force-new-cluster on
/// private loopback ports, their peer URL set to --peer-urls, and stopped; v3
/// backups go through `etcdctl snapshot restore` and are started once to
/// check them. Only then is DATA_DIR/member replaced, in one atomic exchange,
/// the old one kept as member.wiped-<time>. Any failure leaves DATA_DIR as it was.
///
/// Examples:
///   etcd2-fetch --into /var/lib/etcd2-restore/now && etcd2-restore /var/lib/etcd2-restore/now
///   etcd2-restore --name e1 --peer-urls http://10.0.0.1:2380 --data-dir /var/lib/etcd2 backup.tar.zst
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// The fetched backup: a directory from etcd2-fetch --into, or an archive
    #[arg(value_name = "FROM")]
    from: PathBuf,

    /// The data dir to restore into (its member/ is replaced)
    #[arg(
        long,
        env = "ETCD_DATA_DIR",
        default_value = "/var/lib/etcd2",
        value_name = "DIR"
    )]
    data_dir: PathBuf,

    /// This member's name
    #[arg(long, env = "ETCD_NAME")]
    name: String,

    /// This member's peer URL(s), as the restored cluster will advertise them
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", value_name = "URLS")]
    peer_urls: String,

    /// etcd binary to run for the restore [default: etcd from PATH]
    #[arg(long, env = "ETCD2_BACKUP_ETCD", value_name = "PATH")]
    etcd: Option<PathBuf>,

    /// Bound on waiting for the temporary etcd to become healthy
    #[arg(long, default_value = "2m", value_parser = cli::parse_duration, value_name = "DURATION")]
    wait: Duration,

    /// How many set-aside copies of old member data to keep
    #[arg(long, env = "ETCD2_BACKUP_KEEP_ASIDE", default_value_t = 2)]
    keep_aside: usize,

    /// Owner to give the data dir, when that user exists
    #[arg(long, env = "ETCD2_BACKUP_ETCD_USER", default_value = "etcd")]
    owner: String,

    #[command(flatten)]
    conn: EtcdConnArgs,

    #[command(flatten)]
    log: LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    cli::run_main("etcd2-restore", || {
        let job = RestoreJob {
            from: cli.from,
            data_dir: cli.data_dir,
            name: cli.name,
            peer_urls: cli.peer_urls,
            etcd: Program::find("etcd", cli.etcd.as_deref(), "etcd-server")?,
            // The temporary etcd is plain http on loopback; TLS flags do not apply.
            etcdctl: EtcdConnArgs {
                cacert: None,
                cert: None,
                key: None,
                ..cli.conn
            }
            .client("http://127.0.0.1:1")?,
            wait: cli.wait,
            keep_aside: cli.keep_aside,
            owner: cli.owner,
        };
        job.run()
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

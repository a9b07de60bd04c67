//! etcd2-wipe: move a member's data aside (or delete it) so it can be replaced.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use etcd2_backup::cli::{self, LogArgs};

/// Move an etcd member's data aside so the node can be restored or re-joined.
///
/// Refuses while a process (etcd) uses the data dir, and names it. By default
/// DATA_DIR/member is renamed to DATA_DIR/member.wiped-<time> and only the
/// newest --keep-aside such copies are kept; --purge deletes it instead. The
/// data dir is left mode 0700, owned by the etcd user when one exists.
///
/// Examples:
///   etcd2-wipe /var/lib/etcd2
///   ETCD_DATA_DIR=/var/lib/etcd2 etcd2-wipe --purge
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// The member's data dir
    #[arg(env = "ETCD_DATA_DIR", value_name = "DATA_DIR")]
    data_dir: PathBuf,

    /// Delete the member data instead of moving it aside
    #[arg(long)]
    purge: bool,

    /// How many set-aside copies to keep
    #[arg(long, env = "ETCD2_BACKUP_KEEP_ASIDE", default_value_t = 2)]
    keep_aside: usize,

    /// Owner to give the data dir, when that user exists
    #[arg(long, env = "ETCD2_BACKUP_ETCD_USER", default_value = "etcd")]
    owner: String,

    #[command(flatten)]
    log: LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    cli::run_main("etcd2-wipe", || {
        etcd2_backup::datadir::wipe(&cli.data_dir, cli.purge, cli.keep_aside, &cli.owner)
            .map(|_| ())
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

//! etcd2-wipe: move a member's data aside (or delete it) so it can be replaced.

use clap::Parser;
use etcd2_backup::cli;
use std::process::ExitCode;

use etcd2_wipe::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    cli::run_main("etcd2-wipe", || {
        etcd2_backup::datadir::wipe(&cli.data_dir, cli.purge, cli.keep_aside, &cli.owner)
            .map(|_| ())
    })
}

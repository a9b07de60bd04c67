//! etcd2-wipe: move a member's data aside (or delete it) so it can be replaced.

use clap::Parser;
use etcd2_backup::cli;
use std::process::ExitCode;

use etcd2_wipe::Cli;

fn main() -> ExitCode {
    // The settings file first: its variables are the flags' defaults.
    etcd2_backup::settings::load("etcd2-wipe");
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    cli::run_main("etcd2-wipe", || {
        etcd2_backup::job::wipe::WipeJob {
            data_dir: cli.data_dir,
            purge: cli.purge,
            keep_aside: cli.keep_aside,
            owner: cli.owner,
        }
        .run()
        .map(|_| ())
    })
}

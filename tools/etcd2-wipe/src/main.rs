//! etcd2-wipe: move a member's data aside (or delete it) so it can be replaced.

use etcd2_backup::cli;
use std::process::ExitCode;

use etcd2_wipe::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
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

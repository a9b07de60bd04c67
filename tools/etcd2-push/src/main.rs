//! etcd2-push: publish one backup archive as a new verified generation.

use etcd2_backup::cli;
use etcd2_backup::job::push::PushJob;
use etcd2_backup::metrics;
use std::process::ExitCode;

use etcd2_push::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        let pushed = metrics::measured(cli.metrics.dir(), "push", || {
            PushJob {
                input: cli.archive,
                repo: cli.remote.repo()?,
                keep: cli.keep as usize,
                verify: cli.verify,
                force: cli.force,
                lock_file: cli.lock_file,
                lock_wait: cli.lock_wait,
                local_copy: cli.local_copy,
            }
            .run()
        })?;
        if cli.json {
            cli::print_json(&pushed)?;
        }
        Ok(())
    })
}

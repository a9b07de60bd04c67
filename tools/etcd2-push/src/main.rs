//! etcd2-push: publish one backup archive as a new verified generation.

use clap::Parser;
use etcd2_backup::cli;
use etcd2_backup::job::push::PushJob;
use etcd2_backup::metrics;
use std::process::ExitCode;

use etcd2_push::Cli;

fn main() -> ExitCode {
    // The settings file first: its variables are the flags' defaults.
    etcd2_backup::settings::load("etcd2-push");
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    cli::run_main("etcd2-push", || {
        let started = std::time::Instant::now();
        let pushed = (|| {
            let job = PushJob {
                input: cli.archive,
                repo: cli.remote.repo()?,
                keep: cli.keep as usize,
                verify: cli.verify,
                force: cli.force,
                lock_file: cli.lock_file,
                lock_wait: cli.lock_wait,
                local_copy: cli.local_copy,
            };
            job.run()
        })();
        let samples = pushed.as_ref().ok().map(|p| p.samples());
        metrics::record(cli.metrics.dir(), "push", started, samples);
        let pushed = pushed?;
        if cli.json {
            cli::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&pushed)?))?;
        }
        Ok(())
    })
}

//! etcd2-health: wait until a cluster is healthy, instead of `sleep 10`.

use clap::Parser;
use etcd2_backup::cli;
use std::process::ExitCode;

use etcd2_health::Cli;

fn main() -> ExitCode {
    // The settings file first: its variables are the flags' defaults.
    etcd2_backup::settings::load("etcd2-health");
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    cli::run_main("etcd2-health", || {
        let health = etcd2_backup::job::health::HealthJob {
            etcd: cli.etcd.client()?,
            members: cli.members,
            wait: cli.wait,
            promote: cli.promote,
        }
        .run()?;
        if cli.json {
            cli::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&health)?))?;
        }
        Ok(())
    })
}

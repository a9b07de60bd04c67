//! etcd2-health: wait until a cluster is healthy, instead of `sleep 10`.

use clap::Parser;
use etcd2_backup::cli;
use std::process::ExitCode;
use std::time::Duration;

use etcd2_health::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    cli::run_main("etcd2-health", || {
        let mut ctl = cli.etcd.client()?;
        ctl.query_timeout = ctl.query_timeout.min(Duration::from_secs(10));
        etcd2_backup::join::wait_healthy(&ctl, cli.members, cli.wait).map(|_| ())
    })
}

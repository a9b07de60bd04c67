//! etcd2-health: wait until a cluster is healthy, instead of `sleep 10`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use etcd2_backup::cli::{self, EtcdArgs, LogArgs};

/// Wait until the cluster is healthy with at least N started members, all
/// reachable, agreeing on a leader and caught up with it; no member added but
/// not started. Exits 0 then, or 1 at --wait saying what is missing.
///
/// Use it between joins instead of the original's `sleep 10`:
///   etcd2-member-add ... && systemctl start etcd2 && etcd2-health --members 2
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// How many started members to wait for
    #[arg(long, default_value_t = 1)]
    members: usize,

    /// Give up after this long
    #[arg(long, default_value = "5m", value_parser = cli::parse_duration, value_name = "DURATION")]
    wait: Duration,

    #[command(flatten)]
    etcd: EtcdArgs,

    #[command(flatten)]
    log: LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    cli::run_main("etcd2-health", || {
        let mut ctl = cli.etcd.client()?;
        ctl.query_timeout = ctl.query_timeout.min(Duration::from_secs(10));
        etcd2_backup::join::wait_healthy(&ctl, cli.members, cli.wait).map(|_| ())
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

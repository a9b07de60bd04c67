//! etcd2-health: wait until a cluster is healthy, instead of `sleep 10`.

use etcd2_backup::cli;
use std::process::ExitCode;

use etcd2_health::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        let health = etcd2_backup::job::health::HealthJob {
            etcd: cli.etcd.client()?,
            members: cli.members,
            wait: cli.wait,
            promote: cli.promote,
            kv_hash: !cli.no_kv_hash,
        }
        .run()?;
        if cli.json {
            cli::print_json(&health)?;
        }
        Ok(())
    })
}

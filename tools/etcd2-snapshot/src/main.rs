//! etcd2-snapshot: take a consistent backup of the local etcd member and write
//! it as one verifiable archive.

use etcd2_backup::cli;
use etcd2_backup::job::snapshot::SnapshotJob;
use etcd2_backup::metrics;
use std::process::ExitCode;

use etcd2_snapshot::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        let json = cli.json;
        if json && matches!(cli.output, cli::Output::Stdout) {
            anyhow::bail!("--json needs -o FILE: stdout carries the archive with -o -");
        }
        // An import is no backup of the member: the metrics of the last
        // snapshot stay as they are.
        let metrics_dir = cli.metrics.dir().filter(|_| cli.from_file.is_none());
        let produced = metrics::measured(metrics_dir, "snapshot", || {
            let job = SnapshotJob {
                api: cli.api,
                allow_dropping_keyspace: cli.allow_dropping_keyspace,
                data_dir: cli.data_dir,
                // One member is backed up: the first of --endpoints.
                etcd: cli.etcd.client()?.one_member()?,
                output: cli.output,
                codec: cli.compress.codec,
                level: cli.compress.level,
                threads: cli.compress.threads,
                work_dir: cli.work_dir,
                machine_id: cli::machine_id_or_local(cli.machine_id)?,
                from_file: cli.from_file,
            };
            job.run()
        })?;
        if json {
            cli::print_json(&produced)?;
        }
        Ok(())
    })
}

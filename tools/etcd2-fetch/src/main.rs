//! etcd2-fetch: download, verify and place a backup generation.

use etcd2_backup::cli;
use etcd2_backup::job::fetch::{format_table, FetchJob, Target};
use std::process::ExitCode;

use etcd2_fetch::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        let job = FetchJob {
            repo: cli.remote.repo()?,
            generation: cli.generation,
            allow_older: cli.allow_older,
            legacy_previous: cli.legacy_previous,
            work_dir: cli.work_dir,
        };
        if cli.check {
            return cli::print_stdout(&format!("{}\n", job.check(cli.max_age)?));
        }
        if cli.list {
            let rows = job.list()?;
            if cli.json {
                cli::print_json(&rows)?;
            } else if rows.is_empty() {
                anyhow::bail!("no complete generations under {}", job.repo.layout().base());
            } else {
                cli::print_stdout(&format_table(&rows))?;
            }
            return Ok(());
        }
        let target = match (cli.into, cli.output) {
            (Some(dir), _) => Target::Into(dir),
            (None, Some(o)) => Target::Archive(o),
            (None, None) => unreachable!("clap requires one of --into, -o, --list"),
        };
        job.run(&target).map(|_| ())
    })
}

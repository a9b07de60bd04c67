//! etcd2-fetch: download, verify and place a backup generation.

use etcd2_backup::cli;
use etcd2_backup::exit::coded;
use etcd2_backup::job::fetch::{self, format_table, FetchJob, Target};
use std::process::ExitCode;

use etcd2_fetch::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        if cli.list_machines {
            let fleet = cli.remote.fleet()?;
            let rows = fetch::list_machines(&fleet)?;
            if cli.json {
                cli::print_json(&rows)?;
            } else if !rows.is_empty() {
                let now = etcd2_backup::clock::unix(std::time::SystemTime::now());
                cli::print_stdout(&fetch::format_machines(&rows, now))?;
            }
            // Nothing there: exit 4, as for one machine.
            return if rows.is_empty() {
                Err(fetch::no_machines(&fleet))
            } else {
                Ok(())
            };
        }
        let job = cli.remote.repo().map(|repo| FetchJob {
            repo,
            generation: cli.generation,
            allow_older: cli.allow_older,
            legacy_previous: cli.legacy_previous,
            work_dir: cli.work_dir,
            changes: match (
                cli.to_revision,
                cli.to_time,
                cli.no_changes,
                cli.to_last_good,
            ) {
                (Some(r), _, _, _) => fetch::Changes::UpTo(r),
                (_, Some(t), _, _) => fetch::Changes::AtTime(t),
                (_, _, true, _) => fetch::Changes::None,
                (_, _, _, true) => fetch::Changes::LastGood,
                _ => fetch::Changes::All,
            },
        });
        if cli.check && cli.nagios {
            // Whatever fails, even the settings, Nagios gets its one line.
            let checked = job.and_then(|j| j.check(cli.max_age, cli.warn_age));
            let (code, line) = fetch::nagios(&checked);
            cli::print_stdout(&format!("{line}\n"))?;
            return match code {
                0 => Ok(()),
                code => Err(coded(code, line)),
            };
        }
        let job = job?;
        if cli.check {
            let verdict = job.check(cli.max_age, cli.warn_age)?.verdict()?;
            return cli::print_stdout(&format!("{verdict}\n"));
        }
        if cli.changes {
            let q = fetch::ChangesQuery {
                from_ms: cli.from.unwrap_or(0),
                to_ms: cli.to.unwrap_or(u64::MAX),
                prefix: cli.prefix.unwrap_or_default().into_bytes(),
                values: cli.values,
                json: cli.json,
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            return match job.print_changes(&q, &mut out) {
                // A reader that went away (| head) did not want the rest.
                Err(e) if cli::broken_pipe(&e) => Ok(()),
                r => r.map(|_| ()),
            };
        }
        if cli.list {
            let rows = job.list()?;
            if cli.json {
                cli::print_json(&rows)?;
            } else if !rows.is_empty() {
                cli::print_stdout(&format_table(&rows))?;
            }
            return if rows.is_empty() {
                Err(job.no_generations())
            } else {
                Ok(())
            };
        }
        let target = match (cli.into, cli.output) {
            (Some(dir), _) => Target::Into(dir),
            (None, Some(o)) => Target::Archive(o),
            (None, None) => {
                unreachable!("clap requires one of --into, -o, --list, --check, --list-machines")
            }
        };
        job.run(&target).map(|_| ())
    })
}

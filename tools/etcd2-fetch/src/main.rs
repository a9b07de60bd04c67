//! etcd2-fetch: download, verify and place a backup generation.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use etcd2_backup::cli::{self, LogArgs, RemoteArgs};
use etcd2_backup::fetch::{format_table, FetchJob, Target};
use etcd2_backup::snapshot::Output;

/// Download a machine's newest (or a chosen) backup, verify it, then place it.
///
/// The generation named by <endpoint>/<machine-id>/LATEST.json (or
/// --generation ID) is downloaded and checked byte for byte: the archive's
/// sha256 against its sidecar, every file against the archive's manifest.
/// Only then is it placed: --into DIR extracts beside DIR and renames into it;
/// -o FILE writes the archive atomically; -o - streams it to stdout. Nothing is
/// placed when verification fails. Backups written by etcd2-backup-coreos (a
/// plain member/ directory) are fetched too, reported as unverified.
///
/// Examples:
///   etcd2-fetch --list
///   etcd2-fetch --into /var/lib/etcd2-restore
///   etcd2-fetch --machine-id OLD -o - | etcd2-push --machine-id NEW -   (migration)
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["into", "output", "list"])))]
struct Cli {
    /// Extract the verified backup into this new or empty directory
    #[arg(long, value_name = "DIR")]
    into: Option<PathBuf>,

    /// Write the verified archive to FILE (atomically) or - for stdout
    #[arg(short, long, value_name = "FILE|-")]
    output: Option<String>,

    /// List the complete generations (newest last) instead of fetching
    #[arg(long)]
    list: bool,

    /// With --list: JSON for scripts instead of a table
    #[arg(long, requires = "list")]
    json: bool,

    /// Fetch this generation instead of the one LATEST.json names
    #[arg(long, value_name = "ID", conflicts_with = "list")]
    generation: Option<String>,

    /// Fetch the original package's previous copy (<machine-id>_backup)
    #[arg(long, conflicts_with_all = ["generation", "list"])]
    legacy_previous: bool,

    /// Scratch space for an archive streamed to stdout
    #[arg(
        long,
        env = "ETCD_BACKUP_DIR",
        default_value = "/var/lib/etcd2-backup",
        value_name = "DIR"
    )]
    work_dir: PathBuf,

    #[command(flatten)]
    remote: RemoteArgs,

    #[command(flatten)]
    log: LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    cli::run_main("etcd2-fetch", || {
        let job = FetchJob {
            rclone: cli.remote.rclone()?,
            layout: cli.remote.layout()?,
            generation: cli.generation,
            legacy_previous: cli.legacy_previous,
            work_dir: cli.work_dir,
        };
        if cli.list {
            let rows = job.list()?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                anyhow::bail!("no complete generations under {}", job.layout.base());
            } else {
                print!("{}", format_table(&rows));
            }
            return Ok(());
        }
        let target = match (cli.into, cli.output) {
            (Some(dir), _) => Target::Into(dir),
            (None, Some(o)) => Target::Archive(Output::parse(&o)),
            (None, None) => unreachable!("clap requires one of --into, -o, --list"),
        };
        job.run(&target).map(|_| ())
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

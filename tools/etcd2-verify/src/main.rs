//! etcd2-verify: prove that a backup restores.

use etcd2_backup::cli;
use etcd2_backup::cmd::Program;
use etcd2_backup::job::verify::VerifyJob;
use etcd2_backup::metrics;
use std::process::ExitCode;

use etcd2_verify::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        let verified = metrics::measured(cli.metrics.dir(), "verify", || {
            VerifyJob {
                repo: cli.remote.repo()?,
                generation: cli.generation.clone(),
                allow_older: cli.allow_older,
                work_dir: cli.work_dir.clone(),
                etcd: Program::find("etcd", cli.etcd.as_deref(), "etcd-server")?,
                // The private etcd is plain http on loopback.
                etcdctl: cli.conn.private_client()?,
                wait: cli.wait,
            }
            .run()
        })?;
        cli::print_stdout(&format!("{}\n", verified.line()))
    })
}

//! etcd2-verify: prove that a backup restores.

use clap::Parser;
use etcd2_backup::cli;
use etcd2_backup::cmd::Program;
use etcd2_backup::job::verify::VerifyJob;
use etcd2_backup::metrics;
use std::process::ExitCode;

use etcd2_verify::Cli;

fn main() -> ExitCode {
    // The settings file first: its variables are the flags' defaults.
    etcd2_backup::settings::load("etcd2-verify");
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    cli::run_main("etcd2-verify", || {
        let started = std::time::Instant::now();
        let verified = (|| {
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
        })();
        let samples = verified.as_ref().ok().map(|v| v.samples());
        metrics::record(cli.metrics.dir(), "verify", started, samples);
        cli::print_stdout(&format!("{}\n", verified?.line()))
    })
}

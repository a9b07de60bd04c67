//! etcd2-convert: carry an etcd2 (v2) backup to etcd 3.6+ as a v3 backup archive.

use etcd2_backup::cli;
use etcd2_backup::cmd::Program;
use etcd2_backup::job::convert::ConvertJob;
use std::process::ExitCode;

use etcd2_convert::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        if cli.json && matches!(cli.output, cli::Output::Stdout) {
            anyhow::bail!("--json needs -o FILE: stdout carries the archive with -o -");
        }
        let converted = ConvertJob {
            from: cli.from.clone(),
            output: cli.output.clone(),
            codec: cli.compress.codec,
            level: cli.compress.level,
            threads: cli.compress.threads,
            work_dir: cli.work_dir.clone(),
            etcd: Program::find("etcd", cli.etcd.as_deref(), "etcd-server")?,
            // The private etcd is plain http on loopback.
            etcdctl: cli.conn.private_client()?,
            wait: cli.wait,
        }
        .run()?;
        eprintln!("etcd2-convert: {}", converted.line(&cli.output));
        if cli.json {
            cli::print_json(&converted)?;
        }
        Ok(())
    })
}

//! etcd2-backup-install: install the package on a host, or uninstall it.

use anyhow::Context;
use etcd2_backup::cli;
use etcd2_backup::job::install::{uninstall, InstallJob};
use std::process::ExitCode;

use etcd2_backup_install::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        if cli.uninstall {
            return uninstall(&cli.root);
        }
        let from = match cli.from {
            Some(d) => d,
            None => std::env::current_exe()
                .context("finding this program's directory (pass --from DIR)")?
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default(),
        };
        InstallJob {
            from,
            root: cli.root,
            any_os: cli.any_os,
            etcd_dropins: cli.etcd_dropin,
            etcd_unit: cli.etcd_unit,
        }
        .run()
    })
}

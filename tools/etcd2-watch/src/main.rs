//! etcd2-watch: capture every change of etcd's v3 keyspace as change
//! segments on the remote.

use etcd2_backup::cli;
use etcd2_backup::job::watch::WatchJob;
use std::process::ExitCode;

use etcd2_watch::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        let started = std::time::Instant::now();
        let dir = cli.metrics.dir().map(std::path::Path::to_path_buf);
        let ran = (|| {
            WatchJob {
                repo: cli.remote.repo()?,
                etcd: cli.etcd.client()?.one_member()?,
                interval: cli.segment_interval,
                max_bytes: cli.segment_bytes,
                lock_file: cli.lock_file,
                on_gap: cli.on_gap,
                base_wait: cli.base_wait,
                metrics_dir: dir.clone(),
            }
            .run()
        })();
        if ran.is_err() {
            // A failure counts; the capture metrics of the last good
            // rewrite stay as they were.
            etcd2_backup::metrics::record(dir.as_deref(), "watch", started, None);
        }
        ran
    })
}

//! etcd2-restore: make the founding member's data dir from a fetched backup
//! (or one member's, with the whole cluster restored at once).

use etcd2_backup::cli;
use etcd2_backup::cmd::Program;
use etcd2_backup::job::restore::{RestoreJob, Side, WholeCluster};
use etcd2_backup::member::Stop;
use std::process::ExitCode;

use etcd2_restore::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        // etcd's own ETCD_INITIAL_CLUSTER is read only in this mode: a
        // founder's restore on a host that sets it stays a founder's.
        let cluster = cli.whole_cluster.then(|| WholeCluster {
            initial_cluster: cli
                .initial_cluster
                .or_else(|| std::env::var("ETCD_INITIAL_CLUSTER").ok()),
            token: cli.initial_cluster_token.or_else(|| {
                std::env::var("ETCD2_RESTORE_CLUSTER_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty())
            }),
        });
        let job = RestoreJob {
            from: cli.from,
            data_dir: cli.data_dir,
            name: cli.name.unwrap_or_default(),
            peer_urls: cli.peer_urls.unwrap_or_default(),
            etcd: Program::find("etcd", cli.etcd.as_deref(), "etcd-server")?,
            // The temporary etcd is plain http on loopback: TLS flags do
            // not apply; --user does, where the backup's cluster had auth.
            etcdctl: cli.conn.private_client()?,
            wait: cli.wait,
            bump_revision: cli.bump_revision,
            mark_compacted: cli.mark_compacted,
            keep_aside: cli.keep_aside,
            owner: cli.owner,
            stop: match (cli.to_revision, cli.to_time) {
                (Some(r), _) => Some(Stop::Revision(r)),
                (_, Some(t)) => Some(Stop::Time(t)),
                _ => None,
            },
            side: (cli.keep_running || cli.output.is_some()).then_some(Side {
                work_dir: cli.work_dir,
                keep_running: cli.keep_running,
                output: cli.output,
            }),
            cluster,
        };
        job.run()
    })
}

//! etcd2-member-add: add this node to the founding member's cluster.

use etcd2_backup::cli;
use etcd2_backup::job::member_add::MemberAddJob;
use std::process::ExitCode;
use std::time::Duration;

use etcd2_member_add::Cli;

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        let mut founder = cli.conn.client(&cli.endpoints)?;
        founder.query_timeout = founder.query_timeout.min(Duration::from_secs(15));
        let health_args = founder.conn_args();
        let job = MemberAddJob {
            health_args,
            founder,
            name: cli.name,
            peer_urls: cli.peer_urls,
            dropin: cli.dropin,
            wait: cli.wait,
            learner: !cli.no_learner,
            // The etcd2-health installed beside us, for the drop-in's
            // promotion step.
            health_program: std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("etcd2-health")))
                .unwrap_or_else(|| "/opt/bin/etcd2-health".into()),
        };
        job.run().map(|_| ())
    })
}

//! The command line of etcd2-restore, as a library so the packager can
//! generate its man page and shell completions from the same definition.

use clap::Parser;
use etcd2_backup::cli::{self, EtcdConnArgs, LogArgs};
use std::path::PathBuf;
use std::time::Duration;

/// Turn a fetched backup into the data dir of a healthy single-member cluster.
///
/// For the founding member: the other members join it afterwards with
/// etcd2-member-add. With --whole-cluster (v3 backups), every member is
/// restored instead, each on its own node from the same fetched backup, with
/// every member's name and peer URL (--initial-cluster, by default etcd's own
/// ETCD_INITIAL_CLUSTER) and one token derived from the backup; then all are
/// started together and find each other, nothing streamed between them
/// (docs/whole-cluster-restore.md). FROM is a directory made by `etcd2-fetch --into`, or an
/// archive file. v2 backups are started once with --force-new-cluster on
/// private loopback ports, their peer URL set to --peer-urls, and stopped; v3
/// backups go through `etcdctl snapshot restore` and are started once to
/// check them. Only then is DATA_DIR/member replaced, in one atomic exchange,
/// the old one kept as member.wiped-<time>. Any failure leaves DATA_DIR as it was.
///
/// With changes fetched after the backup (etcd2-watch), they are replayed up
/// to where the fetch stopped, or earlier with --to-revision/--to-time. With
/// --keep-running or -o FILE it restores beside the live cluster instead:
/// into a throwaway member on private loopback ports, DATA_DIR untouched, to
/// copy back just the keys that were lost (docs/point-in-time.md).
///
/// Examples:
///   etcd2-fetch --into /var/lib/etcd2-restore/now && etcd2-restore /var/lib/etcd2-restore/now
///   etcd2-restore --name e1 --peer-urls http://10.0.0.1:2380 --data-dir /var/lib/etcd2 backup.tar.zst
///   etcd2-fetch --into /var/lib/etcd2-restore/pit --to-time "15 minutes ago"
///   etcd2-restore /var/lib/etcd2-restore/pit --to-revision 48210 --keep-running   (a side member)
///   etcd2-restore /var/lib/etcd2-restore/pit -o before-the-delete.db              (a snapshot file)
///   etcd2-restore /var/lib/etcd2-restore/now --whole-cluster \
///       --initial-cluster e1=https://10.0.0.1:2380,e2=https://10.0.0.2:2380,e3=https://10.0.0.3:2380
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
#[command(group(clap::ArgGroup::new("side").multiple(true).args(["keep_running", "output"])))]
pub struct Cli {
    /// The fetched backup: a directory from etcd2-fetch --into, or an archive
    #[arg(value_name = "FROM")]
    pub from: PathBuf,

    /// The data dir to restore into (its member/ is replaced)
    #[arg(
        long,
        env = "ETCD_DATA_DIR",
        default_value = cli::DEFAULT_DATA_DIR,
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// This member's name (not needed for a side restore)
    #[arg(long, env = "ETCD_NAME", required_unless_present = "side")]
    pub name: Option<String>,

    /// This member's peer URL(s), as the restored cluster will advertise them
    /// (not needed for a side restore)
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        value_name = "URLS",
        required_unless_present = "side"
    )]
    pub peer_urls: Option<String>,

    /// Replay the fetched changes only up to revision R (the one before a
    /// bad delete, say), lower than where the fetch stopped; refused past it
    #[arg(long, value_name = "R", conflicts_with = "to_time")]
    pub to_revision: Option<u64>,

    /// Replay the fetched changes up to the newest revision every change up
    /// to which etcd2-watch received at or before TIME (RFC 3339 with its
    /// zone, "10 minutes ago", or @UNIX_SECONDS); refused before the
    /// backup, or after the newest fetched change
    #[arg(long, value_parser = cli::parse_moment, value_name = "TIME")]
    pub to_time: Option<u64>,

    /// Restore this node as one member of the whole cluster, every member
    /// from the same backup (fetch the founder's: --machine-id, pinned with
    /// --generation, and --to-revision with changes), all started together.
    /// Records the backup, revision, token and KV hash in
    /// DATA_DIR/member/etcd2-restored.json; etcd2-health compares the members
    /// once started. v3 backups only
    #[arg(long, conflicts_with = "side")]
    pub whole_cluster: bool,

    /// With --whole-cluster: every member, NAME=PEER_URL,... as etcd's own
    /// --initial-cluster; this member among them with --peer-urls
    /// [default: $ETCD_INITIAL_CLUSTER]
    #[arg(long, value_name = "NAME=URL,...", requires = "whole_cluster")]
    pub initial_cluster: Option<String>,

    /// With --whole-cluster: the new cluster's token, the same on every
    /// member, one per recovery [default: $ETCD2_RESTORE_CLUSTER_TOKEN, else
    /// etcd2-restore-<the backup's db sha256, 16 digits>-<the revision
    /// restored>: the same on members restored alike, and a member fed other
    /// data gets another cluster ID, so it never joins]. A member this
    /// restore replaces that an earlier recovery made with the same token is
    /// refused: restoring the same backup again needs a new token
    #[arg(long, value_name = "TOKEN", requires = "whole_cluster")]
    pub initial_cluster_token: Option<String>,

    /// Side restore: serve the restored keyspace from a throwaway member on
    /// a private loopback port (printed on stdout as ETCDCTL_ENDPOINTS=...)
    /// until stopped with Ctrl-C or SIGTERM, which removes it; DATA_DIR and
    /// the live member are never touched
    #[arg(long)]
    pub keep_running: bool,

    /// Side restore: write the restored keyspace as an etcd snapshot file
    /// (0600; for etcdutl snapshot restore, or to keep); DATA_DIR untouched
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Side restore: where the throwaway member lives while it runs
    #[arg(long, env = "ETCD_BACKUP_DIR", default_value = cli::DEFAULT_WORK_DIR, value_name = "DIR")]
    pub work_dir: PathBuf,

    /// etcd binary to run for the restore [default: etcd from PATH]
    #[arg(long, env = "ETCD2_BACKUP_ETCD", value_name = "PATH")]
    pub etcd: Option<PathBuf>,

    /// Bound on waiting for the temporary etcd to become healthy
    #[arg(long, env = "ETCD2_BACKUP_RESTORE_WAIT", default_value = "2m", value_parser = cli::parse_duration, value_name = "DURATION")]
    pub wait: Duration,

    /// v3 backups: raise the restored revision by N, so that watchers and
    /// caches (Kubernetes) never see the revision go backwards. Needs
    /// etcdutl >= 3.5.10 or etcdctl >= 3.4.27; refused, naming the tool,
    /// where it has no such flag
    #[arg(
        long,
        env = "ETCD2_BACKUP_BUMP_REVISION",
        value_name = "N",
        conflicts_with = "side"
    )]
    pub bump_revision: Option<u64>,

    /// With --bump-revision: mark the revisions in between compacted, so
    /// that watchers resume with a compaction error and re-list instead of
    /// missing events
    #[arg(long, env = "ETCD2_BACKUP_MARK_COMPACTED", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue, requires = "bump_revision")]
    pub mark_compacted: bool,

    /// How many set-aside copies of old member data to keep (the one this run sets aside always stays)
    #[arg(long, env = "ETCD2_BACKUP_KEEP_ASIDE", default_value_t = 2)]
    pub keep_aside: usize,

    /// Owner to give the data dir, when that user exists
    #[arg(long, env = "ETCD2_BACKUP_ETCD_USER", default_value = "etcd")]
    pub owner: String,

    #[command(flatten)]
    pub conn: EtcdConnArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl etcd2_backup::cli::Tool for Cli {
    const NAME: &'static str = "etcd2-restore";
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

//! The command line of etcd2-fetch, as a library so the packager can
//! generate its man page and shell completions from the same definition.

use clap::Parser;
use etcd2_backup::cli::{self, LogArgs, RemoteArgs};
use std::path::PathBuf;

/// Download a machine's newest (or a chosen) backup, verify it, then place it.
///
/// The generation named by <remote>/<machine-id>/LATEST.json (or
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
///   etcd2-fetch --changes --from "20 minutes ago" --prefix /registry/   (find the bad delete)
///   etcd2-fetch --into /var/lib/etcd2-restore --to-revision 48210   (the revision before it)
///   etcd2-fetch --into /var/lib/etcd2-restore --to-time 2026-12-03T03:12:00Z
///   etcd2-fetch --list-machines                   (every machine of the remote)
///   etcd2-fetch --check --nagios --machine-id ID  (a Nagios/Icinga plugin)
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["into", "output", "list", "check", "list_machines", "changes"])))]
#[command(group(clap::ArgGroup::new("listing").args(["list", "list_machines", "changes"])))]
#[command(after_help = "Exit status:
  0  done (with --check: the newest backup is fresh)
  1  failed (one line on stderr says why)
  2  usage error
  3  --check: the newest complete backup is older than --max-age (stale)
  4  nothing there: no complete backup for this machine-id (fetching,
     --check, --list), or no machine under the remote (--list-machines)
  5  the remote cannot be reached, or did not answer within its bounds

With --check --nagios, the Nagios plugin statuses instead, the line on stdout:
  0  OK        the newest backup is younger than --warn-age (or --max-age)
  1  WARNING   older than --warn-age
  2  CRITICAL  older than --max-age, or no backup at all
  3  UNKNOWN   nothing could be checked (remote unreachable, a setting wrong)
  (a usage error still exits 2, which Nagios shows as CRITICAL)")]
pub struct Cli {
    /// Extract the verified backup into this new or empty directory (or
    /// over an earlier --into there, replaced once the new one is verified),
    /// with the change segments captured after it
    #[arg(long, value_name = "DIR")]
    pub into: Option<PathBuf>,

    /// Write the verified archive to FILE (atomically) or - for stdout
    #[arg(short, long, value_name = "FILE|-")]
    pub output: Option<cli::Output>,

    /// List the complete generations (newest last) instead of fetching,
    /// each with its window: from its revision (CREATED) up to where the
    /// changes captured after it reach (CHANGES TO, RECEIVED), and a GAP
    /// line for revisions no window reaches; a generation whose sidecar
    /// cannot be read is listed as DAMAGED
    #[arg(long)]
    pub list: bool,

    /// Print the changes etcd2-watch captured instead of fetching (received
    /// between --from and --to, under --prefix): one line per event
    /// (revision, time received, put/del, value size, key) and, after a
    /// revision of several events, its summary ("# revision 48211 at ...:
    /// 4,812 deletes under /registry/"). Restore to the revision before the
    /// accident with --to-revision
    #[arg(long, conflicts_with_all = ["generation", "allow_older", "legacy_previous"])]
    pub changes: bool,

    /// With --changes: from this time on (RFC 3339 with its zone, "10 minutes
    /// ago", or @UNIX_SECONDS) [default: the first captured change]
    #[arg(long, requires = "changes", value_parser = cli::parse_moment, value_name = "TIME")]
    pub from: Option<u64>,

    /// With --changes: up to this time, inclusive [default: now]
    #[arg(long, requires = "changes", value_parser = cli::parse_moment, value_name = "TIME")]
    pub to: Option<u64>,

    /// With --changes: only keys that start with this
    #[arg(long, requires = "changes", value_name = "PREFIX")]
    pub prefix: Option<String>,

    /// With --changes: print each put's value too (they are the cluster's
    /// data: Secrets among them)
    #[arg(long, requires = "changes")]
    pub values: bool,

    /// Check, for monitoring, that this machine's newest complete backup is
    /// younger than --max-age: one line, and the exit status says which
    /// (see below). Runs anywhere rclone reaches the remote
    #[arg(long, conflicts_with_all = ["generation", "allow_older", "legacy_previous"])]
    pub check: bool,

    /// With --check: the oldest the newest backup may be (backups run every
    /// 30 s by default; a few intervals is a fair bound)
    #[arg(long, env = "ETCD2_BACKUP_MAX_AGE", default_value = "10m", value_parser = cli::parse_duration, value_name = "DURATION")]
    pub max_age: std::time::Duration,

    /// With --check: speak the Nagios plugin convention (also Icinga,
    /// Naemon, Sensu): one line on stdout naming host and member, with
    /// perfdata, whatever the outcome, and the statuses 0-3 below
    #[arg(long, requires = "check")]
    pub nagios: bool,

    /// With --check --nagios: older than this is WARNING (older than
    /// --max-age is CRITICAL) [default: no warning]
    #[arg(long, env = "ETCD2_BACKUP_WARN_AGE", value_parser = cli::parse_duration, value_name = "DURATION")]
    pub warn_age: Option<std::time::Duration>,

    /// List every machine-id under the remote instead: host, member, the
    /// newest complete backup's age and size, and its complete generations
    /// (for a monitoring host; no --machine-id needed), and what etcd2-verify
    /// found last (ok or FAILED, how long ago; "never" where it never ran)
    #[arg(long, conflicts_with_all = ["generation", "allow_older", "legacy_previous"])]
    pub list_machines: bool,

    /// With --list, --list-machines or --changes (one object per line): JSON
    /// for scripts instead of a table
    #[arg(long, requires = "listing")]
    pub json: bool,

    /// Fetch this generation instead of the one LATEST.json names
    #[arg(long, value_name = "ID", conflicts_with = "list")]
    pub generation: Option<String>,

    /// When LATEST.json is missing or damaged, or names a generation that is
    /// gone or damaged, fetch the newest complete generation instead (with a
    /// warning). Without it fetch refuses and names that generation, so that
    /// nothing older than what was published is restored unasked
    #[arg(long, env = "ETCD2_BACKUP_ALLOW_OLDER", conflicts_with_all = ["generation", "list"])]
    pub allow_older: bool,

    /// Fetch the original package's previous copy (<machine-id>_backup)
    #[arg(long, conflicts_with_all = ["generation", "list"])]
    pub legacy_previous: bool,

    /// With --into: the newest full backup at or before revision R and the
    /// changes after it up to R, for a restore to exactly R (the revision
    /// before a bad delete, say); refused when no backup and its changes
    /// reach R. With --generation, that backup is the one replayed onto
    /// (docs/point-in-time.md)
    #[arg(long, requires = "into", value_name = "R", conflicts_with_all = ["no_changes", "to_last_good", "allow_older", "legacy_previous", "to_time"])]
    pub to_revision: Option<u64>,

    /// With --into: as --to-revision, for the newest revision every change
    /// up to which etcd2-watch received at or before TIME (RFC 3339 with
    /// its zone, "10 minutes ago", or @UNIX_SECONDS). Refused, naming the
    /// nearest windows, before the first captured change, in a gap, or
    /// after the newest captured change (nothing shows what came after)
    #[arg(long, requires = "into", value_parser = cli::parse_moment, value_name = "TIME", conflicts_with_all = ["no_changes", "to_last_good", "allow_older", "legacy_previous"])]
    pub to_time: Option<u64>,

    /// With --into: the full backup alone, without the change segments
    /// etcd2-watch captured after it (which come by default, and which
    /// etcd2-restore then replays)
    #[arg(long, requires = "into", conflicts_with = "to_last_good")]
    pub no_changes: bool,

    /// With --into: where the captured changes are broken after the backup
    /// (a segment missing, corrupt or out of order), bring them up to the
    /// last revision they reach unbroken instead of refusing
    #[arg(long, requires = "into")]
    pub to_last_good: bool,

    /// Scratch space for an archive streamed to stdout
    #[arg(long, env = "ETCD_BACKUP_DIR", default_value = cli::DEFAULT_WORK_DIR, value_name = "DIR")]
    pub work_dir: PathBuf,

    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl etcd2_backup::cli::Tool for Cli {
    const NAME: &'static str = "etcd2-fetch";
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

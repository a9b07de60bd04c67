//! The command line of etcd2-wipe, as a library so the packager can
//! generate its man page and shell completions from the same definition.

use clap::Parser;
use etcd2_backup::cli::{self, LogArgs};
use std::path::PathBuf;

/// Move an etcd member's data aside so the node can be restored or re-joined.
///
/// Acts only on an etcd data dir: empty, or holding nothing but member/, our
/// member.wiped-* copies and a filesystem's lost+found; anything else is
/// refused and named, so a wrong ETCD_DATA_DIR changes nothing. Links inside
/// are never followed. Refuses while a process (etcd) uses the data dir, and
/// names it. By default
/// DATA_DIR/member is renamed to DATA_DIR/member.wiped-<time> and only the
/// newest --keep-aside such copies are kept; --purge deletes it instead. The
/// data dir is left mode 0700, owned by the etcd user when one exists.
///
/// Examples:
///   etcd2-wipe /var/lib/etcd2
///   ETCD_DATA_DIR=/var/lib/etcd2 etcd2-wipe --purge
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Cli {
    /// The member's data dir; wipe acts only on an etcd data dir (nothing in
    /// it but member/, member.wiped-*, lost+found) and names anything else
    #[arg(env = "ETCD_DATA_DIR", default_value = cli::DEFAULT_DATA_DIR, value_name = "DATA_DIR")]
    pub data_dir: PathBuf,

    /// Delete the member data instead of moving it aside
    #[arg(long)]
    pub purge: bool,

    /// How many set-aside copies to keep (the one this run sets aside always stays)
    #[arg(long, env = "ETCD2_BACKUP_KEEP_ASIDE", default_value_t = 2)]
    pub keep_aside: usize,

    /// Owner to give the data dir, when that user exists
    #[arg(long, env = "ETCD2_BACKUP_ETCD_USER", default_value = "etcd")]
    pub owner: String,

    #[command(flatten)]
    pub log: LogArgs,
}

impl etcd2_backup::cli::Tool for Cli {
    const NAME: &'static str = "etcd2-wipe";
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

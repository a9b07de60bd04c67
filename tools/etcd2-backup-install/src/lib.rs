//! The command line of etcd2-backup-install, as a library so the packager can
//! generate its man page and shell completions from the same definition.

use clap::Parser;
use etcd2_backup::cli::LogArgs;
use etcd2_backup::job::install::EtcdUnit;
use std::path::PathBuf;

/// Install etcd2-backup from this extracted package, or uninstall it.
///
/// Checks /etc/os-release (Container Linux, Flatcar or Fedora CoreOS; other
/// systemd hosts with --any-os) and the package's SHA256SUMS, then installs,
/// each file atomically:
///   /opt/bin/etcd2-*                      the tools (and rclone, etcdctl,
///                                         etcd when the package bundles them)
///   /etc/systemd/system/etcd2-backup.{service,timer},
///     etcd2-restore.service, etcd2-join.service, etcd2-verify.{service,timer}
///                                         rewritten for etcd's unit (--etcd-unit)
///   /etc/systemd/system/etcd2-{backup,restore,join,verify}.service.d/
///     10-etcd-unit.conf                   what etcd's unit sets: the data dir
///                                         (Debian's: /etc/default/etcd too)
///     <etcd's settings drop-ins>          a link, so the jobs see ETCD_NAME...
///                                         (a copy of its Environment= lines
///                                         when it sets more, as Flatcar's does)
///   /etc/etcd2-backup/etcd2-backup.env    the settings (from the package's
///                                         30-etcd2-backup-restore.conf), 0600:
///                                         read by the units and the tools
///   /etc/rclone.conf (RCLONE_CONFIG_PATH) mode 0600
///   /opt/share/man/man1/etcd2-*.1         man pages (man finds them from
///                                         /opt/bin in PATH)
///   /etc/bash_completion.d/etcd2-*        bash completions
///   /opt/etcd2-backup/share/completions/  zsh and fish completions
///   /opt/etcd2-backup/installed.json      what was installed, for uninstall
/// then runs `systemctl daemon-reload`. Nothing is enabled or started.
/// Running it again (the same or a newer package) is safe: unchanged files
/// are left alone; programs, units and drop-ins changed here since the last
/// install are copied aside (FILE.before-install-<time>) before they are
/// replaced; the settings file and the rclone config, if changed here, stay
/// as they are, in effect, and the package's version goes beside each as
/// FILE.new, named in a warning (merge it, then delete it).
/// --uninstall ends by naming every copy of the credentials and settings it
/// leaves (those two files, their .new and .before-install-<time> copies).
///
/// Examples:
///   tar xzf etcd2-backup.tgz && sudo ./etcd2-backup/etcd2-backup-install
///   sudo systemctl enable --now etcd2-backup.timer
///   ./etcd2-backup/etcd2-backup-install --root /tmp/stage --any-os
///   sudo ./etcd2-backup/etcd2-backup-install --uninstall
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Cli {
    /// Install under this root instead of /, touching nothing else on the
    /// host (no systemctl)
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// The extracted package [default: the directory this program is in]
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,

    /// Install on a systemd host that is not Container Linux, Flatcar or
    /// Fedora CoreOS
    #[arg(long)]
    pub any_os: bool,

    /// Also use this etcd settings drop-in (absolute path on the target)
    /// in our units; those in /etc/systemd/system/<etcd unit>.d/ and
    /// /run/systemd/system/<etcd unit>.d/ are found by themselves
    #[arg(long, value_name = "FILE")]
    pub etcd_dropin: Vec<PathBuf>,

    /// The unit etcd runs as: etcd2.service (CoreOS, data in
    /// /var/lib/etcd2), etcd.service (Debian: /var/lib/etcd/default,
    /// /etc/default/etcd) or etcd-member.service (Flatcar: /var/lib/etcd);
    /// or none, where no systemd unit runs etcd (kubeadm's static pod, whose
    /// manifest gives the settings): only the backup and verify units
    /// [default: the one of them the target has, else none where kubeadm's
    /// manifest is there; refused if it has none or several]
    #[arg(long, value_name = "UNIT")]
    pub etcd_unit: Option<EtcdUnit>,

    /// Stop and disable the timer, remove what was installed (not the
    /// rclone config or the settings file, not files changed since, not
    /// backups or etcd data), and name every copy of the credentials left
    #[arg(long, conflicts_with_all = ["from", "any_os", "etcd_dropin", "etcd_unit"])]
    pub uninstall: bool,

    #[command(flatten)]
    pub log: LogArgs,
}

impl etcd2_backup::cli::Tool for Cli {
    const NAME: &'static str = "etcd2-backup-install";
    const SETTINGS: bool = false;
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

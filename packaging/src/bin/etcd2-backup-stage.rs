//! etcd2-backup-stage: the files a distribution package (`make deb`) adds
//! beside the programs: our units rewritten for the distribution's etcd unit
//! and program dir, the drop-in with what that etcd unit sets
//! (10-etcd-unit.conf), a settings file without any site's settings, and
//! the tools' man pages and completions (rendered as for the tarball and the
//! sysext image) where Debian's readers look. The metrics go to the
//! distribution's node exporter directory: the settings name it, and the
//! units' sandbox lets them write there instead of node_exporter's default.
//! The same rewriting the installer does on a host (job::install), done at
//! build time, so that the package needs no installer run.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd2_backup::cli::{self, LogArgs};
use etcd2_backup::job::install::{dropin_env, etcd_unit, payload, EtcdUnit, BIN_DIR, JOBS};
use etcd2_backup::{metrics, settings};
use etcd2_backup_package::DocKind;

/// Stage the units and settings of a distribution package under --out.
///
/// Example (what `make deb` runs):
///   etcd2-backup-stage --etcd-unit etcd.service --bin-dir /usr/bin \
///     --unit-dir /lib/systemd/system --out build/deb
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// The systemd units to stage
    #[arg(long, value_name = "DIR", default_value = "units")]
    units: PathBuf,

    /// The settings drop-in; it must not set RCLONE_ENDPOINT (a
    /// distribution package carries no site's settings)
    #[arg(
        long,
        value_name = "FILE",
        default_value = "units/30-etcd2-backup-restore.conf"
    )]
    conf: PathBuf,

    /// The unit etcd runs as on the distribution
    #[arg(long, value_name = "UNIT")]
    etcd_unit: EtcdUnit,

    /// Where the package puts the programs (replaces /opt/bin in the units)
    #[arg(long, value_name = "DIR", default_value = "/usr/bin")]
    bin_dir: String,

    /// Where the package puts the units
    #[arg(long, value_name = "DIR", default_value = "/lib/systemd/system")]
    unit_dir: String,

    /// The textfile directory of the distribution's node exporter (Debian's
    /// prometheus-node-exporter reads this one): the settings file sets
    /// ETCD2_BACKUP_METRICS_DIR to it, and the units may write there
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/prometheus/node-exporter"
    )]
    metrics_dir: String,

    /// The date of the man pages, seconds since 1970
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    mtime: u64,

    /// The staging dir (emptied first)
    #[arg(long, short, value_name = "DIR")]
    out: PathBuf,

    #[command(flatten)]
    log: LogArgs,
}

fn write(out: &Path, abs: &str, bytes: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    let p = out.join(abs.trim_start_matches('/'));
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut f = fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?;
    f.write_all(bytes.as_ref())
        .with_context(|| format!("writing {}", p.display()))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", p.display()))?;
    Ok(())
}

/// One of our unit files for the package: etcd's unit, the program dir and
/// the metrics dir its sandbox may write.
fn render_unit(text: &str, unit: EtcdUnit, bin_dir: &str, metrics_dir: &str) -> String {
    unit.rewrite(text)
        .replace(
            &format!("{BIN_DIR}/"),
            &format!("{}/", bin_dir.trim_end_matches('/')),
        )
        .replace(
            &format!("ReadWritePaths=-{}\n", metrics::DEFAULT_DIR),
            &format!("ReadWritePaths=-{metrics_dir}\n"),
        )
}

const METRICS_VAR: &str = "ETCD2_BACKUP_METRICS_DIR";

/// The settings file with the metrics dir set to `dir`.
fn with_metrics_dir(settings: &str, dir: &str) -> String {
    settings::with_value(
        settings,
        METRICS_VAR,
        dir,
        "Set by the package: the directory the distribution's node exporter reads.",
    )
}

fn stage(cli: &Cli) -> Result<()> {
    let conf =
        fs::read_to_string(&cli.conf).with_context(|| format!("reading {}", cli.conf.display()))?;
    if dropin_env(&conf, "RCLONE_ENDPOINT").is_some_and(|e| !e.is_empty()) {
        bail!(
            "{} sets RCLONE_ENDPOINT: a distribution package carries no site's settings \
             (operators set it in {} after installing)",
            cli.conf.display(),
            settings::ENV_FILE
        );
    }
    if cli.etcd_unit == EtcdUnit::Unitless {
        bail!(
            "--etcd-unit none: a distribution package is for an etcd its distribution's unit runs"
        );
    }
    if cli.out.exists() {
        fs::remove_dir_all(&cli.out).with_context(|| format!("emptying {}", cli.out.display()))?;
    }
    for file in payload::UNIT_FILES {
        let src = cli.units.join(file);
        let text =
            fs::read_to_string(&src).with_context(|| format!("reading {}", src.display()))?;
        write(
            &cli.out,
            &format!("{}/{file}", cli.unit_dir),
            render_unit(&text, cli.etcd_unit, &cli.bin_dir, &cli.metrics_dir),
            0o644,
        )?;
    }
    for job in JOBS {
        write(
            &cli.out,
            &format!(
                "{}/{job}.service.d/{}",
                cli.unit_dir,
                etcd_unit::UNIT_DROPIN
            ),
            cli.etcd_unit.settings(),
            0o644,
        )?;
    }
    // Debian's places: man-db's, bash-completion's, and the vendor dirs of
    // Debian's zsh and fish (zsh's site-functions is not in Debian's fpath).
    // cargo-deb gzips the pages.
    for d in etcd2_backup_package::docs(cli.mtime, &payload::tools())? {
        let dir = match d.kind {
            DocKind::Man => "/usr/share/man/man1",
            DocKind::Bash => "/usr/share/bash-completion/completions",
            DocKind::Zsh => "/usr/share/zsh/vendor-completions",
            DocKind::Fish => "/usr/share/fish/vendor_completions.d",
        };
        write(&cli.out, &format!("{dir}/{}", d.file), &d.bytes, 0o644)?;
    }
    let header = format!(
        "# {}: the settings of etcd2-backup. The units read it\n\
         # (EnvironmentFile=), and so does every etcd2-* tool started in a shell.\n\
         # A variable set in the environment wins over this file; a flag wins over\n\
         # both. NAME=value lines; quote values with spaces (\"...\"). Mode 0600: it\n\
         # may hold secrets. Set RCLONE_ENDPOINT (and put the remote's credentials\n\
         # in RCLONE_CONFIG_PATH, 0600), then: systemctl enable --now etcd2-backup.timer\n",
        settings::ENV_FILE
    );
    write(
        &cli.out,
        settings::ENV_FILE,
        with_metrics_dir(&settings::from_dropin(&conf, &header), &cli.metrics_dir),
        0o600,
    )?;
    tracing::info!(
        "staged the units for {} (programs in {}), {}, man pages and completions under {}",
        cli.etcd_unit,
        cli.bin_dir,
        settings::ENV_FILE,
        cli.out.display()
    );
    Ok(())
}

impl cli::Tool for Cli {
    const NAME: &'static str = "etcd2-backup-stage";
    // A build tool: the host's settings file is not its business.
    const SETTINGS: bool = false;
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

fn main() -> ExitCode {
    cli::main(|cli: Cli| stage(&cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_dir_replaces_the_templates_line_or_is_added() {
        let dir = "/var/lib/prometheus/node-exporter";
        let want = format!("{METRICS_VAR}={dir}");
        for template in [
            "A=1\n#ETCD2_BACKUP_METRICS_DIR=/var/lib/node_exporter/textfile_collector\nB=2\n",
            "A=1\nETCD2_BACKUP_METRICS_DIR=/srv/metrics\nB=2\n",
            "A=1\nB=2\n",
        ] {
            let out = with_metrics_dir(template, dir);
            let set: Vec<&str> = out
                .lines()
                .filter(|l| l.trim_start_matches('#').starts_with(METRICS_VAR))
                .collect();
            assert_eq!(set, [want.as_str()], "{out}");
            assert!(out.starts_with("A=1\n") && out.contains("B=2\n"), "{out}");
        }
    }

    #[test]
    fn the_units_sandbox_opens_the_metrics_dir_and_no_other() {
        let unit = format!(
            "ExecStart={BIN_DIR}/etcd2-verify\nReadWritePaths=-{}\n",
            metrics::DEFAULT_DIR
        );
        let out = render_unit(
            &unit,
            EtcdUnit::Etcd2,
            "/usr/bin",
            "/var/lib/prometheus/node-exporter",
        );
        assert_eq!(
            out,
            "ExecStart=/usr/bin/etcd2-verify\nReadWritePaths=-/var/lib/prometheus/node-exporter\n"
        );
    }
}

//! etcd2-backup-package: build the install tarball (`make package`).
//!
//! Reproducible: entries sorted, owner root:root (0:0), every mtime the
//! given epoch, gzip header without name or time; the same inputs give the
//! same bytes. Man pages and completions are generated from the very clap
//! definitions the tools parse with.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd2_backup::cli::{self, LogArgs};
use etcd2_backup::digest::sha256_hex;
use etcd2_backup::job::install::{dropin_env, payload};
use etcd2_backup_package::DocKind;

const TOP: &str = "etcd2-backup";

/// Build etcd2-backup.tgz: the tools, units, settings, the operator's
/// rclone.conf, man pages, completions and the installer, in one
/// reproducible tarball. The tarball holds the rclone credentials.
///
/// Example (what `make package` runs):
///   etcd2-backup-package --bin-dir target/x86_64-unknown-linux-gnu/release \
///     --rclone-conf rclone.conf --conf units/30-etcd2-backup-restore.conf \
///     -o build/etcd2-backup.tgz
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Where the built tools are (`make static` puts them here)
    #[arg(
        long,
        value_name = "DIR",
        default_value = "target/x86_64-unknown-linux-gnu/release"
    )]
    bin_dir: PathBuf,

    /// The systemd units to pack
    #[arg(long, value_name = "DIR", default_value = "units")]
    units: PathBuf,

    /// The settings drop-in, edited for this cluster
    #[arg(
        long,
        value_name = "FILE",
        default_value = "units/30-etcd2-backup-restore.conf"
    )]
    conf: PathBuf,

    /// The rclone config to install as /etc/rclone.conf; required, as in
    /// the original package
    #[arg(
        long,
        value_name = "FILE",
        env = "RCLONE_CONF",
        default_value = "rclone.conf"
    )]
    rclone_conf: PathBuf,

    /// Bundle this rclone binary, for hosts without one
    #[arg(long, value_name = "FILE")]
    with_rclone: Option<PathBuf>,

    /// Bundle this etcdctl binary, for hosts without one
    #[arg(long, value_name = "FILE")]
    with_etcdctl: Option<PathBuf>,

    /// Bundle this etcd binary (etcd2-restore runs it once, privately)
    #[arg(long, value_name = "FILE")]
    with_etcd: Option<PathBuf>,

    /// The time stamped on every entry, seconds since 1970
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    mtime: u64,

    /// The tarball to write (atomically, mode 0600)
    #[arg(short, long, value_name = "FILE", default_value = "etcd2-backup.tgz")]
    output: PathBuf,

    #[command(flatten)]
    log: LogArgs,
}

/// Refuse a settings drop-in that would make every backup fail, and an
/// rclone.conf that lacks the endpoint's remote. Returns warnings.
fn check_config(conf: &str, rclone_conf: &str) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let endpoint = dropin_env(conf, "RCLONE_ENDPOINT").unwrap_or_default();
    if endpoint.trim().is_empty() {
        bail!("RCLONE_ENDPOINT is not set in the settings drop-in: set Environment=\"RCLONE_ENDPOINT=REMOTE:PATH\" (where backups go)");
    }
    // The tools' own parser: what they would refuse at run time is
    // refused here. `remote:path` names a section of rclone.conf; `/path`
    // is local and `:backend:path` is an on-the-fly remote: neither needs one.
    let parsed = etcd2_backup::rclone::Endpoint::parse(&endpoint)?;
    if let Some(remote) = parsed.remote() {
        let section = format!("[{remote}]");
        if !rclone_conf.lines().any(|l| l.trim() == section) {
            bail!("RCLONE_ENDPOINT={endpoint} names the remote {remote:?}, but rclone.conf has no {section} section");
        }
    }
    if dropin_env(conf, "ETCD_RESTORE_MASTER_ADV_PEER_URLS").is_none_or(|v| v.trim().is_empty()) {
        warnings.push(
            "ETCD_RESTORE_MASTER_ADV_PEER_URLS is not set: etcd2-join.service needs the founding member's client URL"
                .to_string(),
        );
    }
    Ok(warnings)
}

struct Entry {
    mode: u32,
    /// None for a directory.
    data: Option<Vec<u8>>,
}

fn read(p: &Path) -> Result<Vec<u8>> {
    fs::read(p).with_context(|| format!("reading {}", p.display()))
}

fn build(cli: &Cli) -> Result<BTreeMap<String, Entry>> {
    if !cli.rclone_conf.is_file() {
        bail!(
            "{} not found: the package installs it as /etc/rclone.conf for the backups to reach the remote; \
             create it with `rclone config --config {}` (or pass --rclone-conf FILE)",
            cli.rclone_conf.display(),
            cli.rclone_conf.display()
        );
    }
    let conf = read(&cli.conf)?;
    let rclone_conf = read(&cli.rclone_conf)?;
    for w in check_config(
        &String::from_utf8_lossy(&conf),
        &String::from_utf8_lossy(&rclone_conf),
    )
    .with_context(|| format!("checking {}", cli.conf.display()))?
    {
        tracing::warn!("{w}");
    }

    let mut files: BTreeMap<String, Entry> = BTreeMap::new();
    let mut add = |rel: String, mode: u32, data: Vec<u8>| {
        files.insert(
            rel,
            Entry {
                mode,
                data: Some(data),
            },
        );
    };
    for tool in payload::tools() {
        add(
            format!("{}/{tool}", payload::BIN),
            0o755,
            read(&cli.bin_dir.join(tool))?,
        );
    }
    add(
        payload::INSTALLER.into(),
        0o755,
        read(&cli.bin_dir.join(payload::INSTALLER))?,
    );
    for (name, given) in
        payload::BUNDLED
            .iter()
            .zip([&cli.with_rclone, &cli.with_etcdctl, &cli.with_etcd])
    {
        if let Some(p) = given {
            add(format!("{}/{name}", payload::BIN), 0o755, read(p)?);
        }
    }
    for unit in payload::UNIT_FILES {
        add(
            format!("{}/{unit}", payload::UNITS),
            0o644,
            read(&cli.units.join(unit))?,
        );
    }
    add(payload::CONF.into(), 0o644, conf);
    add(payload::RCLONE_CONF.into(), 0o600, rclone_conf);

    for d in etcd2_backup_package::docs(cli.mtime, &etcd2_backup::tools())? {
        let rel = match d.kind {
            DocKind::Man => format!("man/man1/{}", d.file),
            DocKind::Bash => format!("completions/bash/{}", d.file),
            DocKind::Zsh => format!("completions/zsh/{}", d.file),
            DocKind::Fish => format!("completions/fish/{}", d.file),
        };
        add(format!("{}/{rel}", payload::SHARE), 0o644, d.bytes);
    }
    add("README".into(), 0o644, INSTALL_README.as_bytes().to_vec());

    let sums: String = files
        .iter()
        .map(|(rel, e)| {
            format!(
                "{}  {rel}\n",
                sha256_hex(e.data.as_deref().unwrap_or_default())
            )
        })
        .collect();
    files.insert(
        payload::SUMS.into(),
        Entry {
            mode: 0o644,
            data: Some(sums.into_bytes()),
        },
    );

    // Every directory on the way, as its own entry.
    let dirs: Vec<String> = files
        .keys()
        .flat_map(|rel| {
            Path::new(rel)
                .ancestors()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut all: BTreeMap<String, Entry> = BTreeMap::new();
    all.insert(
        format!("{TOP}/"),
        Entry {
            mode: 0o755,
            data: None,
        },
    );
    for d in dirs {
        all.insert(
            format!("{TOP}/{d}/"),
            Entry {
                mode: 0o755,
                data: None,
            },
        );
    }
    for (rel, e) in files {
        all.insert(format!("{TOP}/{rel}"), e);
    }
    Ok(all)
}

fn write_tgz(entries: &BTreeMap<String, Entry>, mtime: u64, out: &Path) -> Result<()> {
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let file = etcd2_backup::fsutil::AtomicFile::create(out, 0o600)?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, e) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root").context("tar header")?;
        h.set_groupname("root").context("tar header")?;
        h.set_mtime(mtime);
        match &e.data {
            Some(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, path, data.as_slice())
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, path, std::io::empty())
            }
        }
        .with_context(|| format!("adding {path}"))?;
    }
    let gz = tar.into_inner().context("finishing the tar stream")?;
    let mut file = gz.finish().context("finishing gzip")?;
    file.flush()?;
    file.commit()
}

const INSTALL_README: &str = "\
etcd2-backup: remote backup and multi-node restore for etcd clusters.

Install on each node (as root):
  tar xzf etcd2-backup.tgz
  ./etcd2-backup/etcd2-backup-install            # --help: what goes where
  systemctl enable --now etcd2-backup.timer      # on nodes that take backups

Restore a cluster: etcd2-restore.service on the founding member, then
etcd2-join.service on each other node; or, for large data, every node at
once from one backup with etcd2-restore-member@<machine-id>.service; see
`man etcd2-restore` (installed in /opt/share/man, found from /opt/bin in
PATH) and the project README.

This package holds conf/rclone.conf: the credentials of your backup remote.
Copy it over trusted channels only and delete it when the install is done.
";

impl cli::Tool for Cli {
    const NAME: &'static str = "etcd2-backup-package";
    // A build tool: the host's settings file is not its business.
    const SETTINGS: bool = false;
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        let entries = build(&cli)?;
        write_tgz(&entries, cli.mtime, &cli.output)?;
        for (path, e) in &entries {
            let size = e.data.as_ref().map_or(0, Vec::len);
            println!("{:04o} root/root {size:>10} {path}", e.mode);
        }
        let bytes = fs::metadata(&cli.output).map(|m| m.len()).unwrap_or(0);
        tracing::info!(
            "wrote {} ({} entries, {bytes} bytes, sha256 {})",
            cli.output.display(),
            entries.len(),
            sha256_hex(&read(&cli.output)?)
        );
        tracing::warn!(
            "{} holds the rclone credentials of {}: it is mode 0600; copy it over trusted channels only",
            cli.output.display(),
            cli.rclone_conf.display()
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_needs_an_endpoint_whose_remote_is_in_rclone_conf() {
        let rc = "[s3]\ntype = s3\n";
        let conf = |e: &str| {
            format!(
                "[Service]\nEnvironment=\"ETCD_RESTORE_MASTER_ADV_PEER_URLS=http://a:2379\"\n{e}\n"
            )
        };
        let err = |c: &str| format!("{:#}", check_config(c, rc).unwrap_err());
        assert!(err(&conf("#Environment=\"RCLONE_ENDPOINT=s3:b\""))
            .contains("RCLONE_ENDPOINT is not set"));
        assert!(err(&conf("Environment=\"RCLONE_ENDPOINT=gcs:b/x\"")).contains("no [gcs] section"));
        assert_eq!(
            check_config(&conf("Environment=\"RCLONE_ENDPOINT=s3:b/x\""), rc).unwrap(),
            Vec::<String>::new()
        );
        assert!(check_config(&conf("Environment=\"RCLONE_ENDPOINT=/srv/backups\""), rc).is_ok());
        assert!(check_config(&conf("Environment=\"RCLONE_ENDPOINT=:local:/srv/b\""), rc).is_ok());
        let w = check_config("Environment=\"RCLONE_ENDPOINT=s3:b\"\n", rc).unwrap();
        assert!(w[0].contains("ETCD_RESTORE_MASTER_ADV_PEER_URLS"), "{w:?}");
    }

    /// What every tool refuses at run time (rclone would write below its
    /// working directory) is refused when the package is made, in the
    /// tools' own words: one endpoint parser for both.
    #[test]
    fn config_refuses_an_endpoint_the_tools_would_refuse() {
        let rc = "[s3]\ntype = s3\n";
        for e in ["./backups", "s3bucket/x", "relative"] {
            let conf = format!("Environment=\"RCLONE_ENDPOINT={e}\"\n");
            let err = format!("{:#}", check_config(&conf, rc).unwrap_err());
            assert!(err.contains("neither an rclone remote"), "{e}: {err}");
        }
    }
}

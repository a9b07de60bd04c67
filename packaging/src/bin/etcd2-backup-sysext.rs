//! etcd2-backup-sysext: build the generic systemd-sysext image
//! `etcd2-backup.raw` (`make release`).
//!
//! Generic and secret-free: it reads no settings and no rclone config; the
//! operator supplies both at install time. Reproducible: mksquashfs is
//! given one time for every inode and the superblock, root ownership and
//! no xattrs, and every mode is set here: the same inputs give the same
//! bytes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd2_backup::cli::{self, LogArgs};
use etcd2_backup::cmd::Program;
use etcd2_backup::digest::sha256_hex;
use etcd2_backup::job::install::payload;
use etcd2_backup_package::DocKind;

/// The extension's name: systemd-sysext matches it against the image's
/// file name, so the image must be named (or linked as) etcd2-backup.raw.
const NAME: &str = "etcd2-backup";

/// Build the systemd-sysext image etcd2-backup.raw: the tools in /usr/bin,
/// the units in /usr/lib/systemd/system, man pages and completions in
/// /usr/share. It holds no settings and no credentials.
///
/// Example (what `make release` runs):
///   etcd2-backup-sysext --bin-dir target/x86_64-unknown-linux-gnu/release \
///     --units units -o build/release/etcd2-backup.raw
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Where the built tools are; they must be statically linked
    #[arg(
        long,
        value_name = "DIR",
        default_value = "target/x86_64-unknown-linux-gnu/release"
    )]
    bin_dir: PathBuf,

    /// The systemd units to ship (every *.service and *.timer in it)
    #[arg(long, value_name = "DIR", default_value = "units")]
    units: PathBuf,

    /// The time stamped on every inode, seconds since 1970
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    mtime: u64,

    /// The image to write (atomically, mode 0644)
    #[arg(short, long, value_name = "FILE", default_value = "etcd2-backup.raw")]
    output: PathBuf,

    #[command(flatten)]
    log: LogArgs,
}

/// The extension-release file: `ID=_any` loads it on any OS (then neither
/// SYSEXT_LEVEL nor VERSION_ID is checked); ARCHITECTURE keeps it off hosts
/// the binaries cannot run on; EXTENSION_RELOAD_MANAGER makes systemd 255+
/// reload its units after a merge (older ones need `systemctl daemon-reload`).
const EXTENSION_RELEASE: &str = "ID=_any\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\n";

/// The units name our programs where the tarball's installer puts them
/// (/opt/bin); in the image they are in /usr/bin. Only our tools' paths
/// change, nothing else in the unit.
fn relocate(unit: &str, tools: &[&str]) -> String {
    let mut out = unit.to_string();
    for t in tools {
        out = out.replace(&format!("/opt/bin/{t} "), &format!("/usr/bin/{t} "));
        out = out.replace(&format!("/opt/bin/{t}\n"), &format!("/usr/bin/{t}\n"));
    }
    out
}

/// Refuse a dynamically linked program: the image is for any x86_64 Linux
/// with systemd, whatever its libc. An ELF with a PT_INTERP program header
/// needs a loader (and that loader's libc) from the host.
fn check_static(name: &str, elf: &[u8]) -> Result<()> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // ELF64, little-endian (x86_64).
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("{name} is not an x86_64 ELF program");
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        bail!("{name}: truncated ELF header");
    };
    for i in 0..usize::from(phnum) {
        let at = phoff as usize + i * usize::from(phentsize);
        const PT_INTERP: u32 = 3;
        match elf.get(at..at + 4) {
            Some(t) if u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == PT_INTERP => bail!(
                "{name} is dynamically linked (it names a program interpreter): build the tools \
                 statically, as `make release` does (RUSTFLAGS='-C target-feature=+crt-static' \
                 cargo build --release --target x86_64-unknown-linux-gnu)"
            ),
            Some(_) => {}
            None => bail!("{name}: truncated ELF program headers"),
        }
    }
    Ok(())
}

fn read(p: &Path) -> Result<Vec<u8>> {
    fs::read(p).with_context(|| format!("reading {}", p.display()))
}

/// Every file of the image: path below the image's root, mode, content.
fn tree(cli: &Cli) -> Result<Vec<(String, u32, Vec<u8>)>> {
    let tools = payload::tools();
    let mut files = Vec::new();
    for tool in &tools {
        let bytes = read(&cli.bin_dir.join(tool))?;
        check_static(tool, &bytes)?;
        files.push((format!("usr/bin/{tool}"), 0o755, bytes));
    }
    let mut units: Vec<PathBuf> = fs::read_dir(&cli.units)
        .with_context(|| format!("reading {}", cli.units.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", cli.units.display()))?;
    units.sort();
    for p in units {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = String::from_utf8(read(&p)?)
            .with_context(|| format!("{} is not UTF-8", p.display()))?;
        if name.ends_with(".service") || name.ends_with(".timer") {
            files.push((
                format!("usr/lib/systemd/system/{name}"),
                0o644,
                relocate(&text, &tools).into_bytes(),
            ));
        } else if name.ends_with(".conf") {
            // The settings' template, as shipped (no operator's values):
            // what to copy to /etc and edit.
            files.push((
                format!("usr/share/doc/{NAME}/examples/{name}"),
                0o644,
                text.into_bytes(),
            ));
        }
    }
    for d in etcd2_backup_package::docs(cli.mtime, &tools)? {
        let dir = match d.kind {
            DocKind::Man => "usr/share/man/man1",
            DocKind::Bash => "usr/share/bash-completion/completions",
            DocKind::Zsh => "usr/share/zsh/site-functions",
            DocKind::Fish => "usr/share/fish/vendor_completions.d",
        };
        files.push((format!("{dir}/{}", d.file), 0o644, d.bytes));
    }
    files.push((
        format!("usr/lib/extension-release.d/extension-release.{NAME}"),
        0o644,
        EXTENSION_RELEASE.as_bytes().to_vec(),
    ));
    files.sort();
    Ok(files)
}

/// Stage the tree in a private dir next to the output and squash it.
fn build(cli: &Cli, files: &[(String, u32, Vec<u8>)]) -> Result<()> {
    let parent = match cli.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let stage = tempfile::Builder::new()
        .prefix(".etcd2-backup-sysext.")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a staging dir in {}", parent.display()))?;
    let root = stage.path().join("root");
    for (rel, mode, bytes) in files {
        let p = root.join(rel);
        let dir = p.parent().unwrap_or(&root);
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))
            .with_context(|| format!("chmod {}", p.display()))?;
    }
    // Directories 0755 whatever the umask.
    fn dirs_0755(d: &Path) -> Result<()> {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", d.display()))?;
        for e in fs::read_dir(d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            if e.file_type()?.is_dir() {
                dirs_0755(&e.path())?;
            }
        }
        Ok(())
    }
    dirs_0755(&root)?;
    let part = stage.path().join(format!("{NAME}.raw"));
    let epoch = cli.mtime.to_string();
    let mut args: Vec<std::ffi::OsString> = vec![root.into(), part.clone().into()];
    // gzip: every kernel with squashfs reads it.
    for a in [
        "-noappend",
        "-all-root",
        "-no-xattrs",
        "-quiet",
        "-comp",
        "gzip",
        "-mkfs-time",
        &epoch,
        "-all-time",
        &epoch,
    ] {
        args.push(a.into());
    }
    Program::find("mksquashfs", None, "squashfs-tools")?
        .command(args)
        // Ours are given explicitly; mksquashfs would read it too.
        .env_remove_prefix("SOURCE_DATE_EPOCH")
        .timeout(Duration::from_secs(600))
        .run()?;
    fs::set_permissions(&part, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod {}", part.display()))?;
    fs::rename(&part, &cli.output)
        .with_context(|| format!("renaming {} to {}", part.display(), cli.output.display()))?;
    etcd2_backup::fsutil::sync_dir(&parent)?;
    Ok(())
}

impl cli::Tool for Cli {
    const NAME: &'static str = "etcd2-backup-sysext";
    // A build tool: the host's settings file is not its business.
    const SETTINGS: bool = false;
    fn log(&self) -> &LogArgs {
        &self.log
    }
}

fn main() -> ExitCode {
    cli::main(|cli: Cli| {
        let files = tree(&cli)?;
        build(&cli, &files)?;
        for (path, mode, bytes) in &files {
            println!("{mode:04o} root/root {:>10} /{path}", bytes.len());
        }
        tracing::info!(
            "wrote {} ({} files, sha256 {}); install it as /etc/extensions/{NAME}.raw",
            cli.output.display(),
            files.len(),
            sha256_hex(&read(&cli.output)?)
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
    fn only_our_programs_move_to_usr_bin() {
        let unit = "ExecStart=/opt/bin/etcd2-push ${X}/a\nExecStart=/opt/bin/etcd2-wipe\n\
                    Environment=PATH=/opt/bin:/usr/bin\nExecStart=/opt/bin/other --x\n";
        assert_eq!(
            relocate(unit, &["etcd2-push", "etcd2-wipe"]),
            "ExecStart=/usr/bin/etcd2-push ${X}/a\nExecStart=/usr/bin/etcd2-wipe\n\
             Environment=PATH=/opt/bin:/usr/bin\nExecStart=/opt/bin/other --x\n"
        );
    }

    #[test]
    fn a_dynamically_linked_program_is_refused() {
        // This test binary is dynamically linked in a normal build.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let static_build = !me.windows(b"ld-linux".len()).any(|w| w == b"ld-linux");
        match check_static("me", &me) {
            Ok(()) => assert!(static_build, "a dynamic program passed"),
            Err(e) => assert!(format!("{e:#}").contains("dynamically linked"), "{e:#}"),
        }
        assert!(check_static("x", b"#!/bin/sh\n").is_err());
    }
}

//! The settings file, `/etc/etcd2-backup/etcd2-backup.env`: one file that
//! the units read (`EnvironmentFile=`) and that every tool reads at start,
//! so that `etcd2-fetch --list` in a root shell sees the same remote as the
//! units without restating it. Its variables are defaults: one set in the
//! environment always wins (as a flag beats both).
//!
//! The format is the common ground of systemd's `EnvironmentFile=` and
//! `sh` (so `set -a; . FILE` works too): `NAME=value` lines, `#`
//! comments, values optionally in double or single quotes. The file may
//! hold secrets (a connection string in RCLONE_ENDPOINT): the installer
//! writes it 0600, the tools refuse one that others may write (it chooses
//! the programs root runs) and warn about one that others may read. No
//! value from it is ever printed.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where the settings live, for the units and for a root shell.
pub const ENV_FILE: &str = "/etc/etcd2-backup/etcd2-backup.env";

/// Names another settings file for the tools; empty reads none (tests).
pub const ENV_FILE_VAR: &str = "ETCD2_BACKUP_ENV_FILE";

/// Parse the file: `(name, value)` in order. A line that is not
/// `NAME=value` is an error naming its number only (it may hold a secret).
pub fn parse(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("line {}: not NAME=value", n + 1));
        };
        let name = name.trim();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("line {}: not NAME=value", n + 1));
        }
        let value = unquote(value.trim())
            .ok_or_else(|| format!("line {}: unbalanced quotes in {name}'s value", n + 1))?;
        out.push((name.to_string(), value));
    }
    Ok(out)
}

/// `"..."` (backslash escapes `\" \\ \$ \``), `'...'` (literal), or bare.
fn unquote(v: &str) -> Option<String> {
    if let Some(inner) = v.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let mut s = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some(e @ ('"' | '\\' | '$' | '`')) => s.push(e),
                    Some(e) => {
                        s.push('\\');
                        s.push(e);
                    }
                    None => return None,
                }
            } else if c == '"' {
                return None;
            } else {
                s.push(c);
            }
        }
        Some(s)
    } else if let Some(inner) = v.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'')?;
        (!inner.contains('\'')).then(|| inner.to_string())
    } else if v.contains('"') || v.contains('\'') {
        None
    } else {
        Some(v.to_string())
    }
}

/// A value as the file holds it: bare when plain, else double-quoted with
/// the characters both systemd and sh treat specially escaped.
pub fn quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/:.,_-+=@%".contains(c));
    if plain {
        return v.to_string();
    }
    let mut s = String::from('"');
    for c in v.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// The settings file written from a settings drop-in (the package's
/// `30-etcd2-backup-restore.conf`): every `Environment="NAME=value"` line
/// becomes `NAME=value`, a commented one `#NAME=value`; other comments
/// are kept, the drop-in's own header (up to `[Service]`) is replaced by
/// `header`.
pub fn from_dropin(dropin: &str, header: &str) -> String {
    let mut out = String::from(header);
    let body = match dropin.split_once("[Service]") {
        Some((_, b)) => b,
        None => dropin,
    };
    for raw in body.lines() {
        let line = raw.trim();
        let (commented, rest) = match line.strip_prefix('#') {
            Some(r) => (true, r.trim_start()),
            None => (false, line),
        };
        if let Some(assign) = rest.strip_prefix("Environment=") {
            let assign = assign.trim();
            let assign = assign
                .strip_prefix('"')
                .and_then(|a| a.strip_suffix('"'))
                .unwrap_or(assign);
            if let Some((name, value)) = assign.split_once('=') {
                let hash = if commented { "#" } else { "" };
                out.push_str(&format!("{hash}{name}={}\n", quote(value)));
                continue;
            }
        }
        out.push_str(raw.trim_end());
        out.push('\n');
    }
    out
}

/// Which settings file the tools read: ETCD2_BACKUP_ENV_FILE if set
/// (empty: none), else [`ENV_FILE`].
fn path() -> Option<PathBuf> {
    match std::env::var_os(ENV_FILE_VAR) {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from(ENV_FILE)),
    }
}

/// Read `path` when it exists and set each of its variables that the
/// environment lacks. Refuses a file that another user may write; returns
/// warnings (a file others may read, one root cannot read).
pub fn apply(path: &Path) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(notes),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let me = nix::unistd::geteuid().as_raw();
    if meta.mode() & 0o022 != 0 || (meta.uid() != 0 && meta.uid() != me) {
        bail!(
            "refusing the settings in {}: other users may change it (owner uid {}, mode {:04o}); \
             chown root and chmod 600 it",
            path.display(),
            meta.uid(),
            meta.mode() & 0o7777
        );
    }
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            notes.push(format!(
                "cannot read {} (permission denied): its settings are root's; \
                 run as root or set them in the environment",
                path.display()
            ));
            return Ok(notes);
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if meta.mode() & 0o044 != 0 {
        notes.push(format!(
            "{} is readable by other users (mode {:04o}) and may hold secrets: chmod 600 it",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    let vars = parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for (name, value) in vars {
        if std::env::var_os(&name).is_none() {
            // Before any thread exists (first thing in main): setting the
            // environment is sound here, and every child inherits it, as
            // under the unit's EnvironmentFile=.
            std::env::set_var(&name, value);
        }
    }
    Ok(notes)
}

/// First thing in every tool's main, before the command line is parsed
/// (its flags fall back to these variables): read the settings file. A
/// refusal ends the tool (exit 1) with one `tool: error:` line; warnings
/// are printed as `tool: warning:` lines.
pub fn load(tool: &str) {
    let Some(p) = path() else {
        return;
    };
    let journal = crate::cli::stderr_is_journal();
    match apply(&p) {
        Ok(notes) => {
            for n in notes {
                let prefix = if journal { "<4>" } else { "" };
                eprintln!("{prefix}{tool}: warning: {n}");
            }
        }
        Err(e) => {
            let prefix = if journal { "<3>" } else { "" };
            eprintln!("{prefix}{tool}: error: {e:#}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_name_value_lines_with_optional_quotes() {
        let text = "# settings\n\nRCLONE_ENDPOINT=s3:bucket/backups\n; old comment\n\
                    ETCD2_BACKUP_RCLONE_FLAGS=\"--bwlimit=10M --fast-list\"\n\
                    X='a \"b\" $c'\nY=\"q\\\"\\$x\\\\\"\n  EMPTY=\n";
        assert_eq!(
            parse(text).unwrap(),
            [
                ("RCLONE_ENDPOINT".into(), "s3:bucket/backups".into()),
                (
                    "ETCD2_BACKUP_RCLONE_FLAGS".into(),
                    "--bwlimit=10M --fast-list".into()
                ),
                ("X".into(), "a \"b\" $c".into()),
                ("Y".into(), "q\"$x\\".into()),
                ("EMPTY".into(), String::new()),
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named_by_its_number_not_its_content() {
        assert_eq!(
            parse("A=1\nsecret-token-xyz\n").unwrap_err(),
            "line 2: not NAME=value"
        );
        assert_eq!(parse("export A=1\n").unwrap_err(), "line 1: not NAME=value");
        let e = parse("A=\"s3cr3t\n").unwrap_err();
        assert_eq!(e, "line 1: unbalanced quotes in A's value");
        assert!(!e.contains("s3cr3t"));
    }

    #[test]
    fn quoting_round_trips() {
        for v in [
            "plain/path:x",
            "with space",
            "q\"uote",
            "$HOME `x` \\",
            "",
            "it's",
        ] {
            let line = format!("V={}\n", quote(v));
            assert_eq!(
                parse(&line).unwrap(),
                [("V".into(), v.to_string())],
                "{line}"
            );
        }
    }

    #[test]
    fn the_package_dropin_becomes_the_settings_file() {
        let dropin = "# header\n# more header\n\n[Service]\n# The remote.\n\
                      #Environment=\"RCLONE_ENDPOINT=s3-remote:bucket\"\n\
                      Environment=\"RCLONE_ENDPOINT=drill:/srv/b\"\n\
                      Environment=RCLONE_CONFIG_PATH=/etc/rclone.conf\n\
                      #Environment=\"ETCD2_BACKUP_RCLONE_FLAGS=--bwlimit=10M --x\"\n";
        let file = from_dropin(dropin, "# HEAD\n");
        assert_eq!(
            file,
            "# HEAD\n\n# The remote.\n#RCLONE_ENDPOINT=s3-remote:bucket\n\
             RCLONE_ENDPOINT=drill:/srv/b\nRCLONE_CONFIG_PATH=/etc/rclone.conf\n\
             #ETCD2_BACKUP_RCLONE_FLAGS=\"--bwlimit=10M --x\"\n"
        );
        assert_eq!(
            parse(&file).unwrap(),
            [
                ("RCLONE_ENDPOINT".into(), "drill:/srv/b".into()),
                ("RCLONE_CONFIG_PATH".into(), "/etc/rclone.conf".into()),
            ]
        );
    }
}

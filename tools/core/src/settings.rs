//! The settings file, `/etc/etcd2-backup/etcd2-backup.env`: one file that
//! the units read (`EnvironmentFile=`) and that every tool reads at start,
//! so that `etcd2-fetch --list` in a root shell sees the same remote as the
//! units without restating it. Its variables are defaults: one set in the
//! environment always wins (as a flag beats both).
//!
//! # Read exactly as systemd reads it
//!
//! Two parsers read this file: systemd's for the units, ours for every
//! tool (also under a unit, where a refusal would stop the backup). So
//! [`read`] is systemd's `EnvironmentFile=` parser (`load_env_file` in
//! src/basic/env-file.c, then the unit's check of each name), state for
//! state as in systemd 252, and tests/settings.rs feeds the same files to
//! a real systemd and compares:
//!
//! - `NAME=value`; whitespace around the name and the value is dropped; a
//!   name set twice takes its last value;
//! - a line starting (after blanks) with `#` or `;` is a comment; elsewhere
//!   they are plain characters (`A=1 # x` is `1 # x`); a backslash at the
//!   end of a comment continues the comment onto the next line (systemd
//!   252; 254 and later read that next line: we warn about it);
//! - outside quotes a backslash takes the next character literally, and
//!   at the end of a line joins the next line (continuation);
//! - `'...'` is literal; in `"..."` a backslash escapes `" \ ` $` and a
//!   newline (continuation), and is kept before any other character;
//!   quotes may span lines, and quoted and bare parts join (`"a"'b'c` is
//!   `abc`); an unterminated quote runs to the end of the file;
//! - a line without `=`, and a name that is not letters, digits and `_`
//!   (not starting with a digit), e.g. `export A=1`, are ignored, by
//!   systemd and by us: we say so in a warning naming the line's number;
//! - a file holding a NUL byte, or invalid UTF-8 in a name or value, is
//!   not read at all by systemd (the units run without it: `-` in
//!   `EnvironmentFile=-`); the tools refuse it, naming the line.
//!
//! No value from the file is ever printed (it may hold secrets: a
//! connection string in RCLONE_ENDPOINT): errors and warnings name lines.
//!
//! # Trusted only when only root (or we) can change it
//!
//! It chooses the programs root runs, so the tools refuse a file that is
//! not a regular file (a FIFO would block every tool), that another user
//! owns or may write, or that is reached through a directory or link that
//! another user could change: every directory on the way (links resolved
//! one by one) is owned by root or us and not writable by others, except
//! a sticky one (/tmp) holding an entry of root's or ours; a link another
//! user owns in such a sticky directory is refused (the case
//! fs.protected_symlinks guards). The file is then opened without
//! following a link and without blocking, and the checks are made again
//! on the opened file (fstat), so a swap between check and open is caught.
//! A file others may read is read, with a warning.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// Where the settings live, for the units and for a root shell.
pub const ENV_FILE: &str = "/etc/etcd2-backup/etcd2-backup.env";

/// Names another settings file for the tools; empty reads none (tests).
pub const ENV_FILE_VAR: &str = "ETCD2_BACKUP_ENV_FILE";

/// The file as read: its effective assignments (a name set twice has its
/// last value, at the place of its first) and warnings for the operator
/// (lines systemd ignores, named by number only).
#[derive(Debug, PartialEq, Eq)]
pub struct Settings {
    pub vars: Vec<(String, String)>,
    pub notes: Vec<String>,
}

/// The effective assignments of a settings file, as systemd's
/// `EnvironmentFile=` gives them to a unit; an error for a file systemd
/// would not read at all. See the module doc.
pub fn parse(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    read(text.as_bytes()).map(|s| s.vars)
}

/// systemd's WHITESPACE and NEWLINE sets (string-util.h).
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}
fn is_newline(c: u8) -> bool {
    matches!(c, b'\n' | b'\r')
}

/// One assignment as the state machine found it: the line it starts on,
/// the name and the value (None: nothing after `=`).
struct Raw {
    line: usize,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    Single,
    Double,
    DoubleEscape,
    Comment,
    CommentEscape,
}

/// [`parse`] on the file's bytes, with the notes.
pub fn read(bytes: &[u8]) -> std::result::Result<Settings, String> {
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        return Err(format!(
            "line {line}: a NUL byte: systemd reads none of this file (the units run without it)"
        ));
    }
    let mut notes = Vec::new();
    let mut raws: Vec<Raw> = Vec::new();
    let mut state = State::PreKey;
    let (mut key, mut value): (Vec<u8>, Option<Vec<u8>>) = (Vec::new(), None);
    // Where trailing whitespace of the key and the bare value begins.
    let (mut key_ws, mut value_ws): (Option<usize>, Option<usize>) = (None, None);
    let (mut line, mut start) = (1usize, 1usize);
    let push = |raws: &mut Vec<Raw>,
                key: &mut Vec<u8>,
                value: &mut Option<Vec<u8>>,
                key_ws: Option<usize>,
                value_ws: Option<usize>,
                bare: bool,
                start: usize| {
        let mut k = std::mem::take(key);
        if let Some(w) = key_ws {
            k.truncate(w);
        }
        let mut v = value.take();
        if bare {
            if let (Some(v), Some(w)) = (v.as_mut(), value_ws) {
                v.truncate(w);
            }
        }
        raws.push(Raw {
            line: start,
            key: k,
            value: v,
        });
    };
    for &c in bytes {
        match state {
            State::PreKey => {
                if c == b'#' || c == b';' {
                    state = State::Comment;
                } else if !is_space(c) {
                    state = State::Key;
                    start = line;
                    key_ws = None;
                    key.push(c);
                }
            }
            State::Key => {
                if is_newline(c) {
                    state = State::PreKey;
                    notes.push(format!(
                        "line {start}: ignored, as systemd ignores it: no `=` (NAME=value)"
                    ));
                    key.clear();
                } else if c == b'=' {
                    state = State::PreValue;
                    value_ws = None;
                } else {
                    if !is_space(c) {
                        key_ws = None;
                    } else if key_ws.is_none() {
                        key_ws = Some(key.len());
                    }
                    key.push(c);
                }
            }
            State::PreValue => {
                if is_newline(c) {
                    state = State::PreKey;
                    push(
                        &mut raws, &mut key, &mut value, key_ws, value_ws, false, start,
                    );
                } else if c == b'\'' {
                    state = State::Single;
                } else if c == b'"' {
                    state = State::Double;
                } else if c == b'\\' {
                    state = State::ValueEscape;
                } else if !is_space(c) {
                    state = State::Value;
                    value.get_or_insert_with(Vec::new).push(c);
                }
            }
            State::Value => {
                if is_newline(c) {
                    state = State::PreKey;
                    push(
                        &mut raws, &mut key, &mut value, key_ws, value_ws, true, start,
                    );
                } else if c == b'\\' {
                    state = State::ValueEscape;
                    value_ws = None;
                } else {
                    let v = value.get_or_insert_with(Vec::new);
                    if !is_space(c) {
                        value_ws = None;
                    } else if value_ws.is_none() {
                        value_ws = Some(v.len());
                    }
                    v.push(c);
                }
            }
            State::ValueEscape => {
                state = State::Value;
                // An escaped newline is eaten: the continuation line.
                if !is_newline(c) {
                    value.get_or_insert_with(Vec::new).push(c);
                }
            }
            State::Single => {
                if c == b'\'' {
                    state = State::PreValue;
                } else {
                    value.get_or_insert_with(Vec::new).push(c);
                }
            }
            State::Double => {
                if c == b'"' {
                    state = State::PreValue;
                } else if c == b'\\' {
                    state = State::DoubleEscape;
                } else {
                    value.get_or_insert_with(Vec::new).push(c);
                }
            }
            State::DoubleEscape => {
                state = State::Double;
                let v = value.get_or_insert_with(Vec::new);
                if matches!(c, b'"' | b'\\' | b'`' | b'$') {
                    v.push(c);
                } else if c != b'\n' {
                    v.extend_from_slice(&[b'\\', c]);
                }
            }
            State::Comment => {
                if c == b'\\' {
                    state = State::CommentEscape;
                } else if is_newline(c) {
                    state = State::PreKey;
                }
            }
            State::CommentEscape => {
                state = State::Comment;
                if c == b'\n' {
                    notes.push(format!(
                        "line {}: read as part of the comment on line {line}, which ends in a \
                         backslash (as systemd 252 reads it; systemd 254 and later read it as a \
                         line of its own): remove the backslash or the line",
                        line + 1
                    ));
                }
            }
        }
        if c == b'\n' {
            line += 1;
        }
    }
    match state {
        State::PreValue
        | State::ValueEscape
        | State::Single
        | State::Double
        | State::DoubleEscape => push(
            &mut raws, &mut key, &mut value, key_ws, value_ws, false, start,
        ),
        State::Value => push(
            &mut raws, &mut key, &mut value, key_ws, value_ws, true, start,
        ),
        State::Key => notes.push(format!(
            "line {start}: ignored, as systemd ignores it: no `=` (NAME=value)"
        )),
        State::PreKey | State::Comment | State::CommentEscape => {}
    }

    let mut vars: Vec<(String, String)> = Vec::new();
    for raw in raws {
        let (Ok(name), Ok(value)) = (
            String::from_utf8(raw.key),
            String::from_utf8(raw.value.unwrap_or_default()),
        ) else {
            return Err(format!(
                "line {}: invalid UTF-8: systemd reads none of this file (the units run without it)",
                raw.line
            ));
        };
        let valid = name.bytes().next().is_some_and(|c| !c.is_ascii_digit())
            && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if !valid {
            notes.push(format!(
                "line {}: ignored, as systemd ignores it: the name is not letters, digits and _ \
                 (NAME=value, no `export`)",
                raw.line
            ));
            continue;
        }
        match vars.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => vars.push((name, value)),
        }
    }
    Ok(Settings { vars, notes })
}

/// A settings file's text with `name` set to `value`: its line (commented
/// out or not) replaced, or one added at the end, under the comment `why`.
/// For the packagers that adapt the shipped settings to a host (the .deb's
/// metrics dir, a kubeadm node's API).
pub fn with_value(text: &str, name: &str, value: &str, why: &str) -> String {
    let line = format!("# {why}\n{name}={}\n", quote(value));
    let mut out = String::new();
    let mut set = false;
    for l in text.lines() {
        if l.trim_start_matches('#')
            .trim_start()
            .starts_with(&format!("{name}="))
        {
            if !set {
                out.push_str(&line);
                set = true;
            }
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !set {
        out.push_str(&line);
    }
    out
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

/// What a file type is called in a refusal.
fn kind(ft: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Why another user could change what `entry` (in `dir`, whose metadata
/// is `dir_meta`) is, if they could.
fn untrusted(
    dir: &Path,
    dir_meta: &fs::Metadata,
    entry: &Path,
    meta: &fs::Metadata,
) -> Option<String> {
    let me = nix::unistd::geteuid().as_raw();
    let ours = |uid: u32| uid == 0 || uid == me;
    if !ours(meta.uid()) {
        // fs.protected_symlinks' case when in a sticky world-writable dir;
        // anywhere else its owner still chooses what it is or points to.
        return Some(format!(
            "{} is owned by uid {}",
            entry.display(),
            meta.uid()
        ));
    }
    // In a sticky dir others may add entries but not replace ours.
    let sticky = dir_meta.mode() & 0o1000 != 0;
    if dir_meta.mode() & 0o022 != 0 && !sticky {
        return Some(format!(
            "{} is writable by other users (mode {:04o})",
            dir.display(),
            dir_meta.mode() & 0o7777
        ));
    }
    None
}

/// Resolve `path` one component at a time, refusing any step another
/// user could change. Ok(None): it does not exist.
fn resolve(path: &Path) -> Result<Option<(PathBuf, fs::Metadata)>> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("reading the current directory")?
            .join(path)
    };
    let refuse = |why: String| -> anyhow::Error {
        anyhow!(
            "refusing the settings in {}: {why}, so other users may change it; \
             keep it in a directory only root can write (chown root, chmod 600 the file)",
            path.display()
        )
    };
    let mut todo: Vec<std::ffi::OsString> = abs
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::from("/");
    let mut cur_meta = fs::metadata(&cur).context("reading /")?;
    if let Some(why) = untrusted(&cur, &cur_meta, &cur, &cur_meta) {
        return Err(refuse(why));
    }
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            // Back to a directory already checked on the way here.
            cur.pop();
            cur_meta = fs::metadata(&cur).with_context(|| format!("reading {}", cur.display()))?;
            continue;
        }
        let next = cur.join(&name);
        let meta = match fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", next.display())),
        };
        if let Some(why) = untrusted(&cur, &cur_meta, &next, &meta) {
            return Err(refuse(why));
        }
        let ft = meta.file_type();
        if ft.is_symlink() {
            links += 1;
            if links > 40 {
                return Err(refuse("too many levels of symbolic links".into()));
            }
            let target =
                fs::read_link(&next).with_context(|| format!("reading {}", next.display()))?;
            if target.is_absolute() {
                cur = PathBuf::from("/");
                cur_meta = fs::metadata(&cur).context("reading /")?;
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => todo.push(n.to_owned()),
                    Component::ParentDir => todo.push("..".into()),
                    _ => {}
                }
            }
        } else if todo.is_empty() {
            return Ok(Some((next, meta)));
        } else if ft.is_dir() {
            cur = next;
            cur_meta = meta;
        } else {
            // A file where a directory should be: nothing there (ENOTDIR).
            return Ok(None);
        }
    }
    // The path named a directory ("/", "a/.."): not a settings file.
    Ok(Some((cur.clone(), cur_meta)))
}

/// Read `path` when it exists and set each of its variables that the
/// environment lacks. Refuses a file that another user may change or
/// that is not a regular file (module doc); returns warnings (lines
/// systemd ignores, a file others may read, one we may not read).
pub fn apply(path: &Path) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let denied = |notes: &mut Vec<String>| {
        notes.push(format!(
            "cannot read {} (permission denied): its settings are root's; \
             run as root or set them in the environment",
            path.display()
        ));
    };
    let (real, meta) = match resolve(path) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(notes),
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied) =>
        {
            denied(&mut notes);
            return Ok(notes);
        }
        Err(e) => return Err(e),
    };
    let not_regular = |ft: fs::FileType| {
        anyhow!(
            "refusing the settings in {}: it is {}, not a regular file",
            path.display(),
            kind(ft)
        )
    };
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    // No link followed, no wait for a FIFO's writer: whatever was swapped in
    // since the checks above is caught by the fstat below.
    let mut f = match fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(&real)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            denied(&mut notes);
            return Ok(notes);
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let opened = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !opened.file_type().is_file() {
        return Err(not_regular(opened.file_type()));
    }
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        bail!(
            "refusing the settings in {}: it was replaced while being read; try again",
            path.display()
        );
    }
    let me = nix::unistd::geteuid().as_raw();
    if opened.mode() & 0o022 != 0 || (opened.uid() != 0 && opened.uid() != me) {
        bail!(
            "refusing the settings in {}: other users may change it (owner uid {}, mode {:04o}); \
             chown root and chmod 600 it",
            path.display(),
            opened.uid(),
            opened.mode() & 0o7777
        );
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if opened.mode() & 0o044 != 0 {
        notes.push(format!(
            "{} is readable by other users (mode {:04o}) and may hold secrets: chmod 600 it",
            path.display(),
            opened.mode() & 0o7777
        ));
    }
    let settings = read(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    notes.extend(
        settings
            .notes
            .into_iter()
            .map(|n| format!("{}: {n}", path.display())),
    );
    for (name, value) in settings.vars {
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
    match apply(&p) {
        Ok(notes) => {
            for n in notes {
                crate::journal::warning_line(tool, &n);
            }
        }
        Err(e) => {
            crate::journal::error_line(tool, &format!("{e:#}"));
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
    fn a_line_systemd_ignores_is_ignored_and_named_by_its_number_not_its_content() {
        let s = read(b"A=1\nsecret-token-xyz\nexport B=2\n1C=3\nA=4\n").unwrap();
        assert_eq!(s.vars, [("A".to_string(), "4".to_string())]);
        assert_eq!(
            s.notes,
            [
                "line 2: ignored, as systemd ignores it: no `=` (NAME=value)",
                "line 3: ignored, as systemd ignores it: the name is not letters, digits and _ \
                 (NAME=value, no `export`)",
                "line 4: ignored, as systemd ignores it: the name is not letters, digits and _ \
                 (NAME=value, no `export`)",
            ]
        );
        assert!(!s.notes.concat().contains("secret"));
    }

    #[test]
    fn a_name_set_twice_has_its_last_value_and_lines_continue() {
        let s = read(b"E=first\nK=a \\\n  b\nQ=\"x\\\ny\"\nE=last\n").unwrap();
        assert_eq!(
            s.vars,
            [
                ("E".to_string(), "last".to_string()),
                // The next line's blanks are kept, as systemd keeps them.
                ("K".to_string(), "a   b".to_string()),
                ("Q".to_string(), "xy".to_string()),
            ]
        );
        assert!(s.notes.is_empty());
    }

    #[test]
    fn a_comment_ending_in_a_backslash_swallows_the_next_line_with_a_warning() {
        let s = read(b"# c \\\nHIDDEN=1\nA=2\n").unwrap();
        assert_eq!(s.vars, [("A".to_string(), "2".to_string())]);
        assert_eq!(s.notes.len(), 1);
        assert!(s.notes[0].starts_with("line 2: read as part of the comment on line 1"));
    }

    #[test]
    fn a_file_systemd_reads_none_of_is_refused_naming_the_line_only() {
        let e = read(b"A=1\nB=s3cr3t\0\n").unwrap_err();
        assert!(e.starts_with("line 2: a NUL byte"), "{e}");
        let e = read(b"A=1\n\nB=s3cr3t\xff\n").unwrap_err();
        assert!(e.starts_with("line 3: invalid UTF-8"), "{e}");
        assert!(!e.contains("s3cr3t"));
        // Invalid UTF-8 in a comment is no value: systemd reads the file.
        assert_eq!(
            read(b"# caf\xe9\nA=1\n").unwrap().vars,
            [("A".to_string(), "1".to_string())]
        );
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

//! What the install tarball (`etcd2-backup-package`), the sysext image
//! (`etcd2-backup-sysext`) and the .deb (staged by `etcd2-backup-stage`)
//! share: the tools' command lines and the man pages and shell completions
//! rendered from them, so every artifact documents exactly the flags the
//! tools parse.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

/// The tools' command lines, by program name, in tools/tools.list's order.
pub fn commands() -> Vec<clap::Command> {
    vec![
        etcd2_snapshot::Cli::command(),
        etcd2_push::Cli::command(),
        etcd2_fetch::Cli::command(),
        etcd2_wipe::Cli::command(),
        etcd2_restore::Cli::command(),
        etcd2_member_add::Cli::command(),
        etcd2_health::Cli::command(),
        etcd2_verify::Cli::command(),
        etcd2_watch::Cli::command(),
        etcd2_convert::Cli::command(),
        etcd2_backup_install::Cli::command(),
    ]
}

/// What a rendered file documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Man,
    Bash,
    Zsh,
    Fish,
}

/// One rendered man page or completion script.
pub struct Doc {
    /// The program it documents.
    pub tool: String,
    pub kind: DocKind,
    /// Its file name, as the reader of that kind looks it up
    /// (`etcd2-push.1`, `etcd2-push`, `_etcd2-push`, `etcd2-push.fish`).
    pub file: String,
    pub bytes: Vec<u8>,
}

/// The man page (section 1) and the bash, zsh and fish completions of
/// every tool in `tools`, dated `mtime` (seconds since 1970) so that the
/// same sources give the same bytes.
pub fn docs(mtime: u64, tools: &[&str]) -> Result<Vec<Doc>> {
    let date =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(mtime)).to_string();
    let mut out = Vec::new();
    for mut cmd in commands() {
        let name = cmd.get_name().to_string();
        if !tools.contains(&name.as_str()) {
            continue;
        }
        let mut man = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .date(&date[..10])
            .manual("etcd2-backup")
            .render(&mut man)
            .with_context(|| format!("rendering the man page of {name}"))?;
        out.push(Doc {
            tool: name.clone(),
            kind: DocKind::Man,
            file: format!("{name}.1"),
            bytes: man,
        });
        for (shell, kind, file) in [
            (Shell::Bash, DocKind::Bash, name.clone()),
            (Shell::Zsh, DocKind::Zsh, format!("_{name}")),
            (Shell::Fish, DocKind::Fish, format!("{name}.fish")),
        ] {
            let mut bytes = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut bytes);
            out.push(Doc {
                tool: name.clone(),
                kind,
                file,
                bytes,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_line_is_well_formed_and_every_tool_has_one() {
        let cmds = commands();
        for c in &cmds {
            c.clone().debug_assert();
        }
        let names: Vec<String> = cmds.iter().map(|c| c.get_name().to_owned()).collect();
        assert_eq!(
            names,
            etcd2_backup::tools(),
            "commands() and tools/tools.list disagree"
        );
    }

    #[test]
    fn each_tool_asked_for_gets_a_man_page_and_three_completions() {
        let d = docs(1_700_000_000, &["etcd2-push"]).unwrap();
        let files: Vec<&str> = d.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "etcd2-push.1",
                "etcd2-push",
                "_etcd2-push",
                "etcd2-push.fish"
            ]
        );
        assert!(String::from_utf8_lossy(&d[0].bytes).contains("2023-11-14"));
    }
}

//! Every tool of the one list: `--help` teaches, `--version` answers, a bad
//! flag exits 2.

use harness::{run, tool, tools};

#[test]
fn help_version_and_bad_flags() {
    let tools = tools();
    assert!(tools.len() >= 8, "{tools:?}");
    for t in tools {
        let out = run(tool(t).arg("--help"));
        assert!(out.status.success(), "{t} --help failed");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Usage:"), "{t}: {help}");
        assert!(help.contains("--verbose"), "{t} lacks -v: {help}");

        let out = run(tool(t).arg("--version"));
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(t));

        let out = run(tool(t).arg("--no-such-flag"));
        assert_eq!(out.status.code(), Some(2), "{t}: bad flag must exit 2");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    }
}

#[test]
fn the_repository_root_holds_no_runtime_leftovers() {
    // A benchmark's pid file was once committed there; runtime files of
    // `make bench`, `make demo` and the tests belong under build/ or a
    // temp dir.
    let root = harness::workspace();
    let leftovers: Vec<String> = harness::names(&root)
        .into_iter()
        .filter(|n| [".pid", ".log", ".sock"].iter().any(|x| n.ends_with(x)))
        .collect();
    assert!(
        leftovers.is_empty(),
        "runtime files in {}: {leftovers:?}",
        root.display()
    );
}

/// The flags a unit cannot need, each for its reason: they choose what one
/// run prints or where it puts its result (a unit passes those on its
/// command line), pin one run, or destroy or override a refusal, which a
/// line left in a settings file must never do to every later run.
const COMMAND_LINE_ONLY: &[&str] = &[
    "--help",
    "--version",
    "--verbose",
    "--quiet",
    "--json",
    // what one run reads or prints, or where its result goes
    "--list",
    "--from-file",
    "--list-machines",
    "--check",
    // how one run speaks: a monitoring host's choice, never a unit's
    "--nagios",
    "--into",
    "--output",
    "--dropin",
    "--promote",
    // a pin for one run
    "--generation",
    "--legacy-previous",
    // what one restore accepts of the captured changes: the operator's
    // call on the night, never a standing setting
    "--no-changes",
    "--to-last-good",
    // the point to restore to: a standing variable would make every later
    // restore stop there too
    "--to-revision",
    "--to-time",
    // the shape of one recovery, passed by its unit (etcd2-restore reads
    // etcd's own ETCD_INITIAL_CLUSTER itself, only in that mode, so that a
    // founder's restore on a host that sets it is not changed by it; the
    // token is never the original cluster's)
    "--whole-cluster",
    "--initial-cluster",
    "--initial-cluster-token",
    // what one run of etcd2-health checks
    "--no-kv-hash",
    // what one run of etcd2-fetch --changes prints
    "--changes",
    "--to",
    "--prefix",
    "--values",
    // a side restore is one operator's look at the past, never a unit's
    "--keep-running",
    // destructive, or overriding a refusal
    "--force",
    "--purge",
    // the installer's, which reads no settings
    "--root",
    "--from",
    "--any-os",
    "--etcd-dropin",
    "--etcd-unit",
    "--uninstall",
];

/// Each `--flag` of a tool's `--help` (its Options) with the text of its
/// entry.
fn flags_of(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let options = help.split_once("\nOptions:\n").map_or("", |(_, o)| o);
    for line in options.lines() {
        let t = line.trim_start();
        let starts = t.starts_with("--") || (t.starts_with('-') && t.get(2..4) == Some(", "));
        if starts && line.starts_with("  ") && !line.starts_with("          ") {
            let flag = t
                .split([' ', '=', '<', '.'])
                .map(|w| w.trim_end_matches(','))
                .find(|w| w.starts_with("--"))
                .unwrap_or_default()
                .to_owned();
            out.push((flag, String::new()));
        } else if let Some((_, text)) = out.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

#[test]
fn every_flag_a_unit_may_need_has_a_variable_and_the_settings_file_names_it() {
    let conf =
        std::fs::read_to_string(harness::workspace().join("units/30-etcd2-backup-restore.conf"))
            .unwrap();
    let mut missing = Vec::new();
    let mut undocumented = Vec::new();
    for t in tools() {
        let help = String::from_utf8_lossy(&run(tool(t).arg("--help")).stdout).into_owned();
        let flags = flags_of(&help);
        assert!(flags.len() >= 4, "{t}: {flags:?}");
        for (flag, text) in flags {
            let var = text
                .split("[env: ")
                .nth(1)
                .map(|v| v.split(['=', ']']).next().unwrap().to_owned());
            match var {
                None if !COMMAND_LINE_ONLY.contains(&flag.as_str()) => {
                    missing.push(format!("{t} {flag}"))
                }
                // The member's own settings come from etcd's unit.
                Some(v) if !v.starts_with("ETCD_") && !conf.contains(&format!("\"{v}=")) => {
                    undocumented.push(format!("{t} {flag} ({v})"))
                }
                _ => {}
            }
        }
    }
    assert!(missing.is_empty(), "flags without a variable: {missing:?}");
    assert!(
        undocumented.is_empty(),
        "variables units/30-etcd2-backup-restore.conf does not name: {undocumented:?}"
    );
}

/// The rclone remote is `--remote`: `--endpoint` differed from etcd's
/// `--endpoints` by one letter. The old spelling still works, hidden, and
/// says so.
#[test]
fn the_remote_flag_is_remote_and_the_old_spelling_still_works_with_a_notice() {
    for t in ["etcd2-push", "etcd2-fetch", "etcd2-verify"] {
        let help = String::from_utf8_lossy(&run(tool(t).arg("--help")).stdout).into_owned();
        assert!(help.contains("--remote <REMOTE:PATH>"), "{t}: {help}");
        assert!(!help.contains("--endpoint "), "{t}: {help}");
        let out = run(tool(t).env_remove("RCLONE_ENDPOINT").env(
            "ETCD2_BACKUP_MACHINE_ID",
            "d0000000000000000000000000000001",
        ));
        assert_eq!(out.status.code(), Some(2), "{t}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--remote"),
            "{t}"
        );
    }
    let d = tempfile::tempdir().unwrap();
    let remote = d.path().join("remote");
    std::fs::create_dir(&remote).unwrap();
    for flag in ["--remote", "--endpoint"] {
        let out = run(tool("etcd2-fetch")
            .env_remove("RCLONE_ENDPOINT")
            .env(
                "ETCD2_BACKUP_MACHINE_ID",
                "d0000000000000000000000000000001",
            )
            .arg(flag)
            .arg(&remote)
            .args(["--list", "--json"]));
        let err = String::from_utf8_lossy(&out.stderr);
        // Taken (no backup is there: not a usage error).
        assert_ne!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(!err.contains("Usage:"), "{flag}: {err}");
        assert_eq!(
            err.contains("--endpoint is the old name of --remote"),
            flag == "--endpoint",
            "{flag}: {err}"
        );
    }
}

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

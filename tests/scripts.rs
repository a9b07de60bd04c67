//! Our shell scripts, read as bash runs them.

use harness::workspace;

/// `set -o pipefail` with `PROG | grep -q PAT`: grep exits at its first
/// match, PROG is killed by SIGPIPE writing the rest, and the pipeline fails
/// though PROG said the right thing. `rclone version` lost that race 5 times
/// in 50 on this machine, and ensure-deps then reported a working rclone as
/// "does not run as rclone 1.75.2". Every check reads the whole output first.
#[test]
fn no_script_under_pipefail_pipes_a_program_into_grep_q() {
    let mut found = Vec::new();
    for e in std::fs::read_dir(workspace().join("scripts")).unwrap() {
        let p = e.unwrap().path();
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        if !text.contains("pipefail") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or("");
            if code.trim_start().starts_with('#') {
                continue;
            }
            if code.contains("| grep -q") {
                found.push(format!("{}:{}: {}", p.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a program piped into grep -q under pipefail:\n{}",
        found.join("\n")
    );
}

//! Man pages and bash completions where the readers look, after the
//! installer ran into a root laid out like Flatcar (tools in /opt/bin):
//! man-db finds pages from PATH (/opt/bin -> /opt/share/man), and
//! bash-completion sources /etc/bash_completion.d. (The sysext image's
//! /usr/share places are checked in tests/release.rs.)

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use harness::package::{build, conf_with, extract};
use harness::{require, run, tools};

const FLATCAR: &str = "NAME=\"Flatcar Container Linux by Kinvolk\"\nID=flatcar\nID_LIKE=coreos\n";
const BASH_COMPLETION: &str = "/usr/share/bash-completion/bash_completion";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `man ARGS` as an operator's shell runs it: PATH with the root's /opt/bin
/// first, no MANPATH (man-db derives the search path from PATH), a HOME of
/// our own (no ~/.manpath).
fn man(root: &Path, home: &Path, args: &[&str]) -> Output {
    let mut c = Command::new("man");
    c.args(args)
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", root.join("opt/bin").display()),
        )
        .env("HOME", home)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80");
    run(&mut c)
}

/// `complete -p NAME` in an interactive bash whose rc file loads
/// bash-completion, as Debian's /etc/bash.bashrc does once enabled; the
/// compat dir (/etc/bash_completion.d) is the root's.
fn complete_p(root: &Path, home: &Path, name: &str) -> Output {
    let rc = home.join("bashrc");
    fs::write(&rc, format!(". {BASH_COMPLETION}\n")).expect("write rc");
    let mut c = Command::new("bash");
    c.arg("--rcfile")
        .arg(&rc)
        .args(["-i", "-c", &format!("complete -p {name}")])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env(
            "BASH_COMPLETION_COMPAT_DIR",
            root.join("etc/bash_completion.d"),
        );
    run(&mut c)
}

#[test]
fn after_install_on_flatcars_layout_man_and_bash_find_every_tool() {
    require("man", "man-db");
    require("bash", "bash");
    assert!(
        Path::new(BASH_COMPLETION).is_file(),
        "{BASH_COMPLETION} missing: install the Debian package bash-completion (make test does)"
    );
    let t = tempfile::tempdir().expect("tempdir");
    let home = t.path().join("home");
    fs::create_dir_all(&home).expect("mkdir");
    let tgz = build(
        &t.path().join("build"),
        &conf_with("backups:/srv/b", "http://10.0.0.1:2379", &[]),
        "[backups]\ntype = local\n",
    );
    let x = extract(&tgz, &t.path().join("x"));
    let root = t.path().join("root");
    fs::create_dir_all(root.join("etc")).expect("mkdir");
    fs::write(root.join("etc/os-release"), FLATCAR).expect("os-release");
    let o = run(Command::new(x.join("etcd2-backup-install"))
        .args(["--etcd-unit", "etcd-member.service", "--root"])
        .arg(&root));
    assert!(o.status.success(), "install: {}", text(&o));

    for tool in tools() {
        let o = man(&root, &home, &["-w", tool]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            root.join(format!("opt/share/man/man1/{tool}.1"))
                .display()
                .to_string(),
            "man -w {tool}: {}",
            text(&o)
        );
        let o = complete_p(&root, &home, tool);
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(tool),
            "bash has no completion for {tool}: {}",
            text(&o)
        );
    }
    // The page renders, and documents the flags the tool parses.
    let o = man(&root, &home, &["etcd2-push"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--keep"), "{}", text(&o));
}

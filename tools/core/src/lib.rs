//! Shared library of the etcd2-backup tools.
//!
//! Every tool's `main.rs` is a thin shim: it parses its flags and calls into
//! this crate. This crate is the only code that spawns `etcdctl` or `rclone`,
//! reads configuration from the environment, or touches on-disk layouts.
//!
//! # Layers: infrastructure below, one job per tool above, nothing sideways
//!
//! - **The ground floor** ([`exit`], [`journal`], [`redact`]) imports nothing
//!   of the crate but itself (a unit test in each checks), so that any
//!   module may use it: no module reaches up to [`cli`] for an exit code or
//!   the journal, and no infrastructure module imports [`cli`] at all.
//! - **Infrastructure** (the modules at the top level) wraps a program or
//!   owns a format or concern: [`cmd`] runs programs, [`etcd`] and
//!   [`rclone`] wrap theirs ([`etcd::etcdctl`] the program, [`etcd::grpc`]
//!   etcd's gRPC API, on one shared recipe), [`store`] owns the backup
//!   repository and its protocol (the jobs spell no remote name),
//!   [`archive`] the archive and the verified directory, [`digest`] hashing,
//!   [`sink`] where an archive goes (and the one tee), [`fsutil`] atomic files, [`datadir`] an etcd data dir, [`scratch`] our
//!   debris, [`cluster`] a cluster's health, [`poll`] bounded waits,
//!   [`clock`] timestamps, [`metrics`] the textfile metrics, [`progress`]
//!   progress for people, [`member`] a member built from a backup, [`node`]
//!   this host, [`cli`] the shared command line. Infrastructure never imports from the job module; only files
//!   under `job/` do.
//! - **Jobs** ([`job`]) are one per tool, named after it. A job uses
//!   infrastructure and never another job.
//!
//! docs/architecture.md describes each module and how a backup's bytes flow.

pub mod archive;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod cmd;
pub mod datadir;
pub mod digest;
pub mod etcd;
pub mod exit;
pub mod fsutil;
pub mod job;
pub mod journal;
pub mod member;
pub mod metrics;
pub mod node;
pub mod poll;
pub mod progress;
pub mod rcd;
pub mod rclone;
pub mod redact;
pub mod scratch;
pub mod settings;
pub mod sink;
pub mod store;

/// The tools etcd2-backup ships, from `tools/tools.list`: the one list the
/// packager, the installer, the tests and the bench read.
pub fn tools() -> Vec<&'static str> {
    include_str!("../../tools.list")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The ground floor's check: a ground module imports nothing of the crate
/// but the ground modules (`exit`, `journal`, `redact`), so that every
/// module may use it without a loop.
#[cfg(test)]
mod ground {
    pub fn assert_ground(source: &str, name: &str) {
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or("");
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                let after = &rest[i + 7..];
                assert!(
                    ["exit", "journal", "redact"]
                        .iter()
                        .any(|g| after.starts_with(g)),
                    "{name}.rs:{}: a ground module imports {}",
                    n + 1,
                    line.trim()
                );
                rest = after;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// docs/architecture.md's module table names every module of the
    /// crate, and every job: a newcomer finds each one there.
    #[test]
    fn the_architecture_doc_names_every_module_and_job() {
        let doc = include_str!("../../../docs/architecture.md");
        let table: String = doc
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| l.split(" | ").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        let mods = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod "))
            .map(|l| l.trim_end_matches(';').to_owned())
            .filter(|m| m != "job");
        let missing: Vec<String> = mods
            .filter(|m| !table.contains(&format!("`{m}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "modules missing from docs/architecture.md's table: {missing:?}"
        );
        let jobs_section = doc.split("### Jobs").nth(1).unwrap_or("");
        let jobs = include_str!("job/mod.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod "))
            .map(|l| l.trim_end_matches(';').to_owned());
        let missing: Vec<String> = jobs
            .filter(|j| {
                !jobs_section.contains(&format!("`{j}`"))
                    && !jobs_section.contains(&format!("`{j}/`"))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "jobs missing from docs/architecture.md: {missing:?}"
        );
    }

    #[test]
    fn the_tool_list_names_each_tool_crate_once() {
        let tools = super::tools();
        assert!(tools.contains(&"etcd2-snapshot") && tools.contains(&"etcd2-backup-install"));
        let mut sorted = tools.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), tools.len(), "a tool listed twice");
        for t in tools {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(t);
            assert!(
                dir.join("Cargo.toml").is_file(),
                "{t} has no crate in tools/"
            );
        }
    }
}

//! Metrics in node_exporter's textfile convention: after every run, success
//! or failure, a step (snapshot, push) rewrites `etcd2_backup_<step>.prom`
//! in the collector's directory, atomically. Each step owns its own file,
//! so two tools never need to share a lock to update one; counters and the
//! last success survive in the file itself (we own its format).
//!
//! Off when the directory is not there: a host without node_exporter's
//! textfile collector gets no stray files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// Where the tools write unless told otherwise (`--metrics-dir`): the
/// directory node_exporter's own docs and packages use. A distribution's
/// package may point its settings elsewhere (Debian's reads
/// /var/lib/prometheus/node-exporter: packaging's etcd2-backup-stage).
pub const DEFAULT_DIR: &str = "/var/lib/node_exporter/textfile_collector";

/// One sample: name, labels (besides `step`), value, and its help text.
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Sample {
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Sample {
        Sample {
            name,
            help,
            labels: vec![],
            value,
        }
    }
}

/// When the backup a step handled last was taken: which backup, as a
/// value (a label naming the generation would start a new series every
/// run, and Prometheus keeps each one).
pub fn created(created_unix: u64) -> Sample {
    Sample::gauge(
        "etcd2_backup_created_timestamp_seconds",
        "When the backup the step handled last was taken (Unix time).",
        created_unix as f64,
    )
}

const ATTEMPT: &str = "etcd2_backup_last_attempt_timestamp_seconds";
const SUCCESS: &str = "etcd2_backup_last_success_timestamp_seconds";
const DURATION: &str = "etcd2_backup_duration_seconds";
const FAILURES: &str = "etcd2_backup_failures_total";

/// The textfile for `step` in `dir`.
pub fn file(dir: &Path, step: &str) -> PathBuf {
    dir.join(format!("etcd2_backup_{step}.prom"))
}

/// A job's result that has samples to record.
pub trait Measured {
    fn samples(&self) -> Vec<Sample>;
}

/// Run `job` as `step` and record it (`dir` from `--metrics-dir`),
/// whether it succeeded or failed; its result is returned untouched.
pub fn measured<T: Measured>(
    dir: Option<&Path>,
    step: &str,
    job: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let done = job();
    record(
        dir,
        step,
        started,
        done.as_ref().ok().map(Measured::samples),
    );
    done
}

/// Record one run of `step` that began at `started`: on success with its
/// samples, on failure keeping the last success's samples and counting the
/// failure. Never fails the run: a problem is a warning.
pub fn record(dir: Option<&Path>, step: &str, started: Instant, outcome: Option<Vec<Sample>>) {
    let Some(dir) = dir.filter(|d| d.is_dir()) else {
        tracing::debug!("no metrics directory: textfile metrics off");
        return;
    };
    let path = file(dir, step);
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let text = render(step, started.elapsed().as_secs_f64(), &previous, outcome);
    if let Err(e) = crate::fsutil::write_atomic(&path, text.as_bytes(), 0o644) {
        tracing::warn!("writing metrics {}: {e:#}", path.display());
    }
}

/// The value of `name{step="..."}` (no other labels) in a previous file.
fn previous_value(previous: &str, name: &str) -> Option<f64> {
    previous.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix("{step=\"")?;
        let (_, value) = rest.split_once("\"} ")?;
        value.trim().parse().ok()
    })
}

/// Sample lines of a previous file, by metric name, to carry over.
fn previous_lines(previous: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in previous
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if let Some((name, _)) = l.split_once('{') {
            out.entry(name.to_owned()).or_default().push(l.to_owned());
        }
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The whole file after a run of `step` lasting `duration` seconds.
pub fn render(step: &str, duration: f64, previous: &str, outcome: Option<Vec<Sample>>) -> String {
    let now = crate::clock::unix(SystemTime::now()) as f64;
    let ok = outcome.is_some();
    let failures = previous_value(previous, FAILURES).unwrap_or(0.0) + if ok { 0.0 } else { 1.0 };
    // Never succeeded: 0, the epoch. A missing series would keep
    // `time() - last_success > N` from ever firing for this node.
    let success = if ok {
        now
    } else {
        previous_value(previous, SUCCESS).unwrap_or(0.0)
    };
    let mut out = String::new();
    let mut emit = |name: &str, help: &str, kind: &str, lines: Vec<String>| {
        if lines.is_empty() {
            return;
        }
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    };
    let one = |name: &str, v: f64| vec![format!("{name}{{step=\"{step}\"}} {v}")];
    emit(
        ATTEMPT,
        "When the step last ran (Unix time).",
        "gauge",
        one(ATTEMPT, now),
    );
    emit(
        SUCCESS,
        "When the step last succeeded (Unix time; 0: never). Alert when it is old.",
        "gauge",
        one(SUCCESS, success),
    );
    emit(
        DURATION,
        "How long the last run of the step took.",
        "gauge",
        one(DURATION, duration),
    );
    emit(
        FAILURES,
        "Failed runs of the step since the file was created.",
        "counter",
        one(FAILURES, failures),
    );
    match outcome {
        Some(samples) => {
            for s in samples {
                let mut labels = format!("step=\"{step}\"");
                for (k, v) in &s.labels {
                    labels.push_str(&format!(",{k}=\"{}\"", escape(v)));
                }
                emit(
                    s.name,
                    s.help,
                    "gauge",
                    vec![format!("{}{{{labels}}} {}", s.name, s.value)],
                );
            }
        }
        None => {
            // The last success's samples still describe the newest backup.
            let keep = [ATTEMPT, SUCCESS, DURATION, FAILURES];
            let helps: BTreeMap<&str, &str> = previous
                .lines()
                .filter_map(|l| l.strip_prefix("# HELP "))
                .filter_map(|l| l.split_once(' '))
                .collect();
            for (name, lines) in previous_lines(previous) {
                if !keep.contains(&name.as_str()) {
                    let help = helps
                        .get(name.as_str())
                        .copied()
                        .unwrap_or("See etcd2-backup's docs.");
                    emit(&name, help, "gauge", lines);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_counts_and_keeps_the_last_success() {
        let ok = render(
            "push",
            1.5,
            "",
            Some(vec![Sample {
                name: "etcd2_backup_info",
                help: "The newest backup.",
                labels: vec![("member", "e\"1".into())],
                value: 1.0,
            }]),
        );
        assert!(
            ok.contains("etcd2_backup_failures_total{step=\"push\"} 0\n"),
            "{ok}"
        );
        assert!(
            ok.contains("etcd2_backup_info{step=\"push\",member=\"e\\\"1\"} 1\n"),
            "{ok}"
        );
        let success = previous_value(&ok, SUCCESS).unwrap();
        let failed = render("push", 0.1, &ok, None);
        assert_eq!(previous_value(&failed, FAILURES), Some(1.0));
        assert_eq!(previous_value(&failed, SUCCESS), Some(success));
        assert!(
            failed.contains("etcd2_backup_info{step=\"push\",member=\"e\\\"1\"} 1\n"),
            "{failed}"
        );
        let again = render("push", 0.1, &failed, None);
        assert_eq!(previous_value(&again, FAILURES), Some(2.0));
        // The first run ever failing: last success 0, so that an alert on
        // its age fires for a node that never succeeded.
        assert_eq!(
            previous_value(&render("push", 0.1, "", None), SUCCESS),
            Some(0.0)
        );
    }
}

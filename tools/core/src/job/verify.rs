//! The `etcd2-verify` job: prove that a backup restores. Fetch a generation
//! (the published one by default), verify every byte, build a throwaway
//! member from it on private loopback ports in scratch, start it, check it
//! against the manifest, stop it and remove everything. The live member and
//! its data dir are never touched.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::archive;
use crate::cmd::Program;
use crate::etcd::Etcdctl;
use crate::member;
use crate::store::{Choice, Repo, Sidecar, Source, VerifyRecord};

pub struct VerifyJob {
    pub repo: Repo,
    /// This generation instead of the published one.
    pub generation: Option<String>,
    /// Fall back to the newest complete generation, as fetch would.
    pub allow_older: bool,
    /// Where the scratch goes (`etcd2-verify.<pid>.*`).
    pub work_dir: PathBuf,
    pub etcd: Program,
    pub etcdctl: Etcdctl,
    pub wait: Duration,
}

/// What a verification proved.
#[derive(Debug, serde::Serialize)]
pub struct Verified {
    pub generation: String,
    pub api: archive::Api,
    /// When the verified backup was taken (its manifest's `created_unix`).
    pub created_unix: u64,
    /// The revision the throwaway member came up at (v3).
    pub revision: Option<u64>,
    /// Alarms its data carried (NOSPACE), which a restore clears.
    pub alarms: Vec<String>,
    /// The change segments captured after it and replayed onto it: how
    /// many, and the newest revision they reach on the remote (which the
    /// member came up at).
    pub changes: Option<(usize, u64)>,
    pub seconds: f64,
}

const SCRATCH: &str = "etcd2-verify";

impl VerifyJob {
    /// The generation to verify: the one the restore path would fetch
    /// ([`Repo::choose`], as etcd2-fetch chooses).
    fn pick(&self) -> Result<Sidecar> {
        let choice = Choice {
            generation: self.generation.as_deref(),
            allow_older: self.allow_older,
            legacy_previous: false,
        };
        match self.repo.choose(&choice)? {
            Source::Generation(sc) => Ok(*sc),
            Source::Legacy(dir) => bail!(
                "{dir} holds a backup in the original package's plain layout, which has no \
                 manifest to verify against: push it as a generation first (etcd2-fetch -o - | \
                 etcd2-push -)"
            ),
        }
    }

    /// Verify the chosen generation and record the verdict on the remote
    /// (VERIFIED.json), whichever it is. A verdict that cannot be recorded
    /// is a warning: the verification itself stands.
    pub fn run(&self) -> Result<Verified> {
        let started = Instant::now();
        let sc = self.pick()?;
        let outcome = self.prove(&sc, started);
        let (verified_unix, verified_at) = crate::clock::now();
        let record = VerifyRecord {
            format: crate::store::SIDECAR_FORMAT,
            generation: sc.generation.clone(),
            ok: outcome.is_ok(),
            verified_at,
            verified_unix,
            host: crate::node::hostname(),
            revision: outcome.as_ref().ok().and_then(|v| v.revision),
            error: outcome.as_ref().err().map(|e| {
                crate::redact::redact(&format!("{e:#}"))
                    .lines()
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
        };
        if let Err(e) = self.repo.record_verify(&record) {
            tracing::warn!(
                "could not record this verification in {}: {e:#}",
                self.repo.layout().verified()
            );
        }
        outcome
    }

    fn prove(&self, sc: &Sidecar, started: Instant) -> Result<Verified> {
        crate::scratch::work_dir(&self.work_dir)?;
        let scratch = crate::scratch::Dir::create(&self.work_dir, SCRATCH)?;

        // Every byte against the sidecar and the manifest.
        let data = scratch.path().join("backup");
        let manifest = self.repo.download(sc, Some(&data), None)?;
        // And the changes captured after it: the restore path replays them.
        let fetched = match manifest.revision {
            Some(rev) => self.repo.download_changes(rev, &data, false, None)?,
            None => None,
        };

        // A throwaway member from it, started once and checked.
        let member_dir = scratch.path().join("member-data");
        let spec = member::Spec {
            etcd: &self.etcd,
            etcdctl: &self.etcdctl,
            name: "etcd2-verify",
            // Never listened on: the member is restored and started on
            // private loopback ports of its own.
            peer_urls: "http://127.0.0.1:2380",
            wait: self.wait,
            bump_revision: None,
            mark_compacted: false,
            stop: None,
            kv_hash: false,
        };
        member::check_can_build(&spec, &manifest)
            .with_context(|| format!("generation {} cannot be verified here", sc.generation))?;
        let built = member::build(&spec, &data, &manifest, &member_dir, scratch.path())
            .with_context(|| {
                format!(
                    "generation {} does not restore: its data verified, but etcd could not build \
                     a member from it",
                    sc.generation
                )
            })?;
        // End to end: the member holds the newest captured revision, as
        // the remote's segments name it, not only what the replay said.
        if let Some(f) = &fetched {
            ensure!(
                built.revision == Some(f.reach),
                "generation {}: its changes on the remote reach revision {} (chain {}), but the \
                 member replayed from them came up at revision {}",
                sc.generation,
                f.reach,
                f.chain,
                built
                    .revision
                    .map_or("unknown".to_owned(), |r| r.to_string())
            );
        }
        Ok(Verified {
            generation: sc.generation.clone(),
            changes: fetched.as_ref().map(|f| (f.segments, f.reach)),
            created_unix: sc.manifest.created_unix,
            api: manifest.api,
            revision: built.revision,
            alarms: built.cleared_alarms,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// What the textfile metrics say of a verification.
impl crate::metrics::Measured for Verified {
    fn samples(&self) -> Vec<crate::metrics::Sample> {
        use crate::metrics::Sample;
        // No generation label: it would start a new series every run.
        vec![
            crate::metrics::created(self.created_unix),
            Sample {
                name: "etcd2_backup_verified_info",
                help: "The backup verified last (value 1).",
                labels: vec![("api", self.api.to_string())],
                value: 1.0,
            },
        ]
    }
}

impl Verified {
    /// The one line for stdout.
    pub fn line(&self) -> String {
        let alarms = if self.alarms.is_empty() {
            String::new()
        } else {
            format!(
                "; its data carries alarm {} (taken while etcd refused writes), which the \
                 restore clears",
                self.alarms.join(", ")
            )
        };
        let changes = match self.changes {
            Some((n, reach)) => format!(
                ", with the {n} change segment(s) captured after it replayed to revision \
                 {reach}, the newest captured"
            ),
            None => String::new(),
        };
        format!(
            "verified: generation {} ({} backup) restores{changes}{}{alarms} ({:.1}s)",
            self.generation,
            self.api,
            self.revision
                .map(|r| format!(": a member started from it at revision {r}"))
                .unwrap_or_else(|| ": a member started from it".to_owned()),
            self.seconds
        )
    }
}

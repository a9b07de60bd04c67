//! The `etcd2-watch` job: capture every change of the member's v3
//! keyspace from an etcd watch and publish it as change segments on the
//! remote, a few seconds at a time (docs/change-capture.md is the
//! contract). It starts from the newest full backup's revision, or resumes
//! after the last published segment; a compaction past where it must start
//! is a gap, said loudly, and a new chain starts from a newer full backup.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use crate::cmd::{human_duration, Program};
use crate::etcd::grpc::watch::{Compacted, Watched};
use crate::etcd::grpc::{Client, MvccEvent};
use crate::etcd::{hex_id, Etcdctl};
use crate::poll::{self, Probe};
use crate::store::changes::{
    Event, LeaseGone, LeaseSeen, Op, Segment, SegmentHeader, SEGMENT_FORMAT,
};
use crate::store::{new_generation_id, Repo};

pub struct WatchJob {
    pub repo: Repo,
    pub etcd: Etcdctl,
    /// A segment is on the remote about this long after its first change
    /// was received: it closes earlier by what the last publication took
    /// (at most half of it; a slower or retried upload goes past it)...
    pub interval: Duration,
    /// ...or once its events reach this many bytes.
    pub max_bytes: usize,
    pub lock_file: PathBuf,
    /// Run (by `sh -c`) when a gap is found: start a full backup.
    pub on_gap: Option<String>,
    /// How long to wait for a full backup to start from.
    pub base_wait: Duration,
    /// node_exporter's textfile directory (`etcd2_backup_watch.prom`).
    pub metrics_dir: Option<PathBuf>,
}

/// What the textfile metrics say of capture, rewritten every few seconds.
struct Progress {
    started: Instant,
    written: Instant,
    segments: u64,
    bytes: u64,
}

impl Progress {
    fn samples(&self, captured: u64, captured_unix: u64) -> Vec<crate::metrics::Sample> {
        use crate::metrics::Sample;
        vec![
            Sample::gauge(
                "etcd2_backup_captured_revision",
                "The newest etcd revision captured (published, or idle up to it).",
                captured as f64,
            ),
            Sample::gauge(
                "etcd2_backup_captured_timestamp_seconds",
                "When the captured revision was last known current (Unix time). Alert when it is old.",
                captured_unix as f64,
            ),
            Sample::gauge(
                "etcd2_backup_segments_published",
                "Change segments published by this run of etcd2-watch.",
                self.segments as f64,
            ),
            Sample::gauge(
                "etcd2_backup_segment_bytes_published",
                "Bytes of change segments published by this run of etcd2-watch.",
                self.bytes as f64,
            ),
        ]
    }
}

/// Where the chain being written is.
#[derive(Debug)]
struct Chain {
    id: String,
    start: u64,
    seq: u64,
    prev: Option<String>,
    /// The next revision to capture.
    next: u64,
    base: String,
}

/// Whose changes these are.
struct Member {
    member_id: String,
    cluster_id: String,
}

/// A segment being filled.
struct Pending {
    opened: Instant,
    opened_ms: u64,
    events: Vec<Event>,
    bytes: usize,
    leases: Vec<LeaseSeen>,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            opened: Instant::now(),
            opened_ms: now_ms(),
            events: Vec::new(),
            bytes: 0,
            leases: Vec::new(),
        }
    }
}

/// Which lease each leased key has, and how many keys each lease holds:
/// a lease whose last key is deleted is asked whether it is gone.
#[derive(Default)]
struct Leases {
    of_key: HashMap<Vec<u8>, i64>,
    keys: HashMap<i64, usize>,
    /// Leases seen in this chain (their TTL recorded once).
    known: BTreeSet<i64>,
    /// Leases whose last key went in the segment being filled.
    emptied: BTreeSet<i64>,
}

impl Leases {
    fn attach(&mut self, key: &[u8], lease: i64) {
        self.detach(key);
        if lease != 0 {
            self.of_key.insert(key.to_vec(), lease);
            *self.keys.entry(lease).or_default() += 1;
            self.emptied.remove(&lease);
        }
    }

    fn detach(&mut self, key: &[u8]) {
        if let Some(old) = self.of_key.remove(key) {
            let n = self.keys.entry(old).or_default();
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.keys.remove(&old);
                self.emptied.insert(old);
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How often an idle watch asks etcd how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often the textfile metrics are rewritten.
const METRICS_EVERY: Duration = Duration::from_secs(5);
/// How often the journal hears what was captured.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// Watch batches queued before the receiver stops reading etcd.
const QUEUE: usize = 16;
/// Publication attempts of one segment before the watcher gives up (and
/// systemd restarts it, resuming after the last published segment).
const PUBLISH_TRIES: u32 = 4;

impl WatchJob {
    pub fn run(&self) -> Result<()> {
        let _lock = crate::fsutil::lock(&self.lock_file, Duration::ZERO, "etcd2-watch")?;
        let client = Client::of(&self.etcd)?;
        let st = client.status().map_err(|e| self.etcd.failure(e))?;
        let me = Member {
            member_id: hex_id(st.status.header.member_id),
            cluster_id: hex_id(st.status.header.cluster_id),
        };
        let mut min_base = 0;
        loop {
            let mut chain = self.chain_to_continue(&me, min_base)?;
            match self.capture(&client, &me, &mut chain) {
                Err(e) => match e.downcast_ref::<Compacted>() {
                    Some(c) => {
                        self.gap(c, &chain);
                        min_base = c.compact_revision;
                    }
                    None => return Err(e),
                },
                Ok(()) => return Ok(()),
            }
        }
    }

    /// The chain to write: the newest one, resumed after its last segment,
    /// when it reaches the newest full backup; else a new one from that
    /// backup's revision (at or after `min_base`).
    fn chain_to_continue(&self, me: &Member, min_base: u64) -> Result<Chain> {
        let (generation, base_rev) = self.wait_for_base(me, min_base)?;
        if let Some(id) = self.repo.chains()?.pop() {
            match self.repo.sweep_chain(&id) {
                Ok(0) => {}
                Ok(n) => tracing::info!("removed {n} temporary segment file(s) an interrupted watcher left in chain {id}"),
                Err(e) => tracing::warn!("chain {id}: {e:#}"),
            }
            if let Some(tip) = self.repo.segments(&id)?.pop() {
                match self.repo.link(&id, &tip) {
                    Ok(l) if l.header.member_id == me.member_id && l.header.last >= base_rev => {
                        tracing::info!(
                            "resuming chain {id} after segment {tip} (revision {})",
                            l.header.last
                        );
                        return Ok(Chain {
                            id,
                            start: l.header.start,
                            seq: l.header.seq + 1,
                            prev: Some(l.sha256),
                            next: l.header.last + 1,
                            base: l.header.base,
                        });
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        "the last segment of chain {id} does not read ({e:#}): starting a new chain"
                    ),
                }
            }
        }
        let id = new_generation_id(SystemTime::now());
        tracing::info!(
            "starting chain {id} at revision {base_rev}, the revision of full backup {generation}"
        );
        Ok(Chain {
            id,
            start: base_rev,
            seq: 0,
            prev: None,
            next: base_rev.max(1),
            base: generation,
        })
    }

    /// The newest full backup of this member at revision `min_base` or
    /// later: its generation and its revision (read before its snapshot,
    /// so at or before the snapshot's own). Waits for one.
    fn wait_for_base(&self, me: &Member, min_base: u64) -> Result<(String, u64)> {
        let machine = &self.repo.layout().machine_id;
        poll::until(
            self.base_wait,
            Duration::from_secs(2),
            "waiting for a full backup to start change capture from",
            || {
                let Some(p) = self.repo.pointer()? else {
                    return Ok(Probe::Waiting(format!(
                        "no backup published yet for machine-id {machine}"
                    )));
                };
                if p.member_id != me.member_id {
                    bail!(
                        "LATEST.json of machine-id {machine} was written for member {} on host {}, \
                         and this etcd is member {}: refusing to add its changes to another \
                         member's backups",
                        p.member_id,
                        p.host,
                        me.member_id
                    );
                }
                let sc = self.repo.sidecar(&p.generation)?;
                let rev = sc.manifest.revision.with_context(|| {
                    format!(
                        "generation {} is a v2 backup: change capture needs a v3 one",
                        p.generation
                    )
                })?;
                if rev < min_base {
                    return Ok(Probe::Waiting(format!(
                        "the newest backup, {}, is at revision {rev}, before the compaction at {min_base}",
                        p.generation
                    )));
                }
                Ok(Probe::Done((p.generation, rev)))
            },
            |why| {
                anyhow::anyhow!(
                    "no full backup to start change capture from within {} (--base-wait): {why}",
                    human_duration(self.base_wait)
                )
            },
        )
    }

    /// Say a gap loudly, and ask for a full backup that covers past it.
    fn gap(&self, c: &Compacted, chain: &Chain) {
        tracing::error!(
            "change capture has a gap: {c}. Chain {} ends at revision {}; until a full backup \
             at or after revision {} is published, the changes after it are not on the remote",
            chain.id,
            chain.next.saturating_sub(1),
            c.compact_revision
        );
        crate::journal::notify_status(&format!(
            "GAP after revision {}: waiting for a new full backup",
            chain.next.saturating_sub(1)
        ));
        let Some(cmd) = &self.on_gap else {
            tracing::warn!(
                "no --on-gap command: run a full backup now (systemctl start etcd2-backup.service)"
            );
            return;
        };
        let ran = Program::find("sh", None, "dash").and_then(|sh| {
            sh.command(["-c", cmd.as_str()])
                .timeout(Duration::from_secs(60))
                .run()
        });
        match ran {
            Ok(_) => tracing::info!("ran --on-gap: {cmd}"),
            Err(e) => tracing::error!("--on-gap failed: {e:#}"),
        }
    }

    /// Watch from `chain.next` and publish segments until stopped or
    /// failed; a compaction is a [`Compacted`] error.
    fn capture(&self, client: &Client, me: &Member, chain: &mut Chain) -> Result<()> {
        let stream = Client::of(&self.etcd)?
            .watch(chain.next, QUEUE)
            .map_err(|e| self.etcd.failure(e))?;
        let mut leases = Leases::default();
        if chain.next > 1 {
            match client.leased_keys(chain.next - 1, 1000) {
                Ok(keys) => {
                    for (k, l) in keys {
                        leases.attach(&k, l);
                    }
                    leases.emptied.clear();
                }
                Err(e) => tracing::warn!(
                    "cannot list the leased keys at revision {} ({e:#}): a lease whose keys all go \
                     in the changes may come back, keyless, after a restore",
                    chain.next - 1
                ),
            }
        }
        crate::journal::notify_status(&format!("watching from revision {}", chain.next));
        let mut pending = Pending::new();
        let mut captured = chain.next.saturating_sub(1);
        let mut captured_at = Instant::now();
        let mut asked = Instant::now();
        let mut summary = (Instant::now(), 0u64, 0usize);
        let mut progress = Progress {
            started: Instant::now(),
            // The first rewrite at once (checked: near boot an Instant has
            // no 5 s behind it).
            written: Instant::now()
                .checked_sub(METRICS_EVERY)
                .unwrap_or_else(Instant::now),
            segments: 0,
            bytes: 0,
        };
        let mut captured_unix = crate::clock::unix(SystemTime::now());
        // What the last publication took: a segment closes that much before
        // its interval ends, so that it is on the remote when it does.
        let mut lead = Duration::ZERO;
        loop {
            let close_after = self.interval.saturating_sub(lead);
            let wait = if pending.events.is_empty() {
                PROGRESS_EVERY
            } else {
                close_after.saturating_sub(pending.opened.elapsed())
            };
            match stream.next(wait.max(Duration::from_millis(10)))? {
                Some(Watched::Events(evs)) => {
                    if pending.events.is_empty() {
                        // The interval counts from a segment's first change.
                        pending = Pending::new();
                    }
                    for ev in evs {
                        let e = self.event(client, ev, chain, &mut leases, &mut pending)?;
                        captured = e.rev;
                        pending.bytes += e.size();
                        pending.events.push(e);
                    }
                    captured_at = Instant::now();
                }
                Some(Watched::Progress { revision }) => {
                    if revision > captured && pending.events.is_empty() {
                        captured = revision;
                    }
                    captured_at = Instant::now();
                    if pending.events.is_empty() {
                        captured_unix = crate::clock::unix(SystemTime::now());
                    }
                }
                None => {}
            }
            let due = !pending.events.is_empty()
                && (pending.opened.elapsed() >= close_after || pending.bytes >= self.max_bytes);
            if due {
                let full = std::mem::replace(&mut pending, Pending::new());
                let (n, bytes) = (full.events.len(), full.bytes);
                let took = Instant::now();
                let published = self.publish(client, me, chain, full, &mut leases)?;
                lead = took.elapsed().min(self.interval / 2);
                summary.1 += n as u64;
                summary.2 += bytes;
                progress.segments += 1;
                progress.bytes += published as u64;
                if pending.events.is_empty() {
                    captured_unix = crate::clock::unix(SystemTime::now());
                }
            } else if pending.events.is_empty() && asked.elapsed() >= PROGRESS_EVERY {
                stream.request_progress();
                asked = Instant::now();
            }
            // On the remote up to here: what was published, and while
            // nothing waits, up to where etcd says the watch is.
            let durable = if pending.events.is_empty() {
                captured.max(chain.next.saturating_sub(1))
            } else {
                chain.next.saturating_sub(1)
            };
            crate::journal::notify_status(&format!(
                "captured up to revision {durable}, {} ago ({} change(s) pending); chain {}, {} \
                 segment(s)",
                human_duration(Duration::from_secs(captured_at.elapsed().as_secs())),
                pending.events.len(),
                chain.id,
                chain.seq
            ));
            if progress.written.elapsed() >= METRICS_EVERY {
                crate::metrics::record(
                    self.metrics_dir.as_deref(),
                    "watch",
                    progress.started,
                    Some(progress.samples(durable, captured_unix)),
                );
                progress.written = Instant::now();
            }
            if summary.0.elapsed() >= SUMMARY_EVERY && summary.1 > 0 {
                tracing::info!(
                    "captured {} event(s) ({}) in the last {}; up to revision {captured}, chain {} \
                     segment {}",
                    summary.1,
                    crate::progress::human_size(summary.2 as u64),
                    human_duration(summary.0.elapsed()),
                    chain.id,
                    chain.seq.saturating_sub(1)
                );
                summary = (Instant::now(), 0, 0);
            }
        }
    }

    /// One watched event as a segment's, its lease recorded at first
    /// sight.
    fn event(
        &self,
        client: &Client,
        ev: MvccEvent,
        chain: &Chain,
        leases: &mut Leases,
        pending: &mut Pending,
    ) -> Result<Event> {
        let delete = ev.is_delete();
        let kv = ev.kv.context("etcd sent a watch event without its key")?;
        let rev = u64::try_from(kv.mod_revision).unwrap_or(0);
        if rev < chain.next {
            bail!(
                "etcd sent revision {rev} to a watch from revision {}: refusing to record it",
                chain.next
            );
        }
        let op = if delete {
            leases.detach(&kv.key);
            Op::Del { key: kv.key }
        } else {
            if kv.lease != 0 && leases.known.insert(kv.lease) {
                let r = client.lease_ttl(kv.lease, false)?;
                // Gone already (a short lease): its granted TTL is lost
                // with it; 1 s, the least etcd grants.
                let ttl = if r.granted_ttl > 0 { r.granted_ttl } else { 1 };
                pending.leases.push(LeaseSeen { id: kv.lease, ttl });
            }
            leases.attach(&kv.key, kv.lease);
            Op::Put {
                key: kv.key,
                value: kv.value,
                lease: kv.lease,
                create: u64::try_from(kv.create_revision).unwrap_or(0),
                ver: u64::try_from(kv.version).unwrap_or(0),
            }
        };
        Ok(Event {
            rev,
            ms: now_ms(),
            op,
        })
    }

    /// Close `full` as the chain's next segment and publish it (a few
    /// tries); the chain moves on only once it is published.
    fn publish(
        &self,
        client: &Client,
        me: &Member,
        chain: &mut Chain,
        full: Pending,
        leases: &mut Leases,
    ) -> Result<usize> {
        let first = full.events.first().map_or(chain.next, |e| e.rev);
        let last = full.events.last().map_or(chain.next, |e| e.rev);
        let mut gone = Vec::new();
        for id in std::mem::take(&mut leases.emptied) {
            if client.lease_ttl(id, false)?.ttl < 0 {
                gone.push(LeaseGone { id, rev: last });
                leases.known.remove(&id);
            }
        }
        let seg = Segment {
            header: SegmentHeader {
                format: SEGMENT_FORMAT,
                chain: chain.id.clone(),
                seq: chain.seq,
                start: chain.start,
                first,
                last,
                prev: chain.prev.clone(),
                base: chain.base.clone(),
                member_id: me.member_id.clone(),
                cluster_id: me.cluster_id.clone(),
                host: crate::node::hostname(),
                opened_unix_ms: full.opened_ms,
                closed_unix_ms: now_ms(),
                events: full.events.len() as u64,
                leases: full.leases,
                leases_gone: gone,
            },
            events: full.events,
        };
        let enc = seg.encode()?;
        crate::scratch::fault_point("before-segment");
        let took = Instant::now();
        let mut tries = 0;
        let how = loop {
            tries += 1;
            match self.repo.publish_segment(&chain.id, &enc) {
                Ok(how) => break how,
                Err(e) if tries < PUBLISH_TRIES && !crate::scratch::stopping() => {
                    let pause = Duration::from_secs(1 << tries);
                    tracing::warn!(
                        "publishing segment {} failed ({e:#}); trying again in {}",
                        enc.name,
                        human_duration(pause)
                    );
                    std::thread::sleep(pause);
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "publishing segment {} of chain {} (revisions {first}-{last})",
                        enc.name, chain.id
                    )))
                }
            }
        };
        tracing::debug!(
            "published segment {} of chain {} ({} events, {} bytes; {how}) in {} ms, {} ms after \
             its first change",
            enc.name,
            chain.id,
            seg.header.events,
            enc.bytes.len(),
            took.elapsed().as_millis(),
            now_ms().saturating_sub(seg.header.opened_unix_ms)
        );
        chain.seq += 1;
        chain.prev = Some(enc.sha256);
        chain.next = last + 1;
        Ok(enc.bytes.len())
    }
}

//! What change capture and its replay say to etcd over gRPC: the watch
//! stream (`Watch.Watch`, read on its own thread into a bounded channel,
//! as the snapshot is), the lease calls (`LeaseTimeToLive`, a `LeaseGrant`
//! with a given id, `LeaseRevoke`, `LeaseLeases`, a `LeaseKeepAlive`
//! stream) and one `KV.Txn` of puts and deletes per replayed revision.
//! Field numbers from etcd's `api/etcdserverpb/rpc.proto` and
//! `api/mvccpb/kv.proto`.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use super::proto::*;
use super::{status_line, Client, LEASE_GRANT};

const WATCH: &str = "/etcdserverpb.Watch/Watch";
const LEASE_REVOKE: &str = "/etcdserverpb.Lease/LeaseRevoke";
const LEASE_TTL: &str = "/etcdserverpb.Lease/LeaseTimeToLive";
const LEASE_LEASES: &str = "/etcdserverpb.Lease/LeaseLeases";
const LEASE_KEEPALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";

/// etcd refused to start a watch at a revision it has compacted away.
#[derive(Debug)]
pub struct Compacted {
    pub requested: u64,
    /// The oldest revision etcd still has.
    pub compact_revision: u64,
}

impl std::fmt::Display for Compacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "etcd has compacted its history up to revision {}: revisions {} to {} can no longer \
             be watched",
            self.compact_revision,
            self.requested,
            self.compact_revision.saturating_sub(1)
        )
    }
}

impl std::error::Error for Compacted {}

/// What the watch stream says.
#[derive(Debug)]
pub enum Watched {
    /// The events of one or more whole revisions, in revision order.
    Events(Vec<MvccEvent>),
    /// etcd's answer to a progress request: everything up to `revision`
    /// was sent.
    Progress { revision: u64 },
}

/// Open the bidirectional stream `path`, its requests fed from `req`.
async fn bidi<Req, Resp>(
    channel: tonic::transport::Channel,
    req: tonic::Request<tokio_stream::wrappers::ReceiverStream<Req>>,
    path: &'static str,
) -> Result<tonic::Streaming<Resp>, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(256 << 20);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::from_error(e.into()))?;
    Ok(grpc
        .streaming(
            req,
            http::uri::PathAndQuery::from_static(path),
            tonic::codec::ProstCodec::<Req, Resp>::default(),
        )
        .await?
        .into_inner())
}

/// One watch on the whole keyspace, read on its own thread.
pub struct WatchStream {
    rx: Receiver<Result<Watched, WatchFailure>>,
    requests: tokio::sync::mpsc::Sender<WatchRequest>,
    receiver: Option<std::thread::JoinHandle<()>>,
}

/// Why the receiver stopped.
#[derive(Debug)]
enum WatchFailure {
    Compacted(Compacted),
    Other(String),
}

impl WatchStream {
    /// The next batch, waiting at most `wait`: None when nothing came.
    pub fn next(&self, wait: Duration) -> Result<Option<Watched>> {
        match self.rx.recv_timeout(wait) {
            Ok(Ok(w)) => Ok(Some(w)),
            Ok(Err(WatchFailure::Compacted(c))) => Err(anyhow::Error::new(c)),
            Ok(Err(WatchFailure::Other(e))) => Err(anyhow::anyhow!(e)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                bail!("the watch receiver stopped without a word (a bug)")
            }
        }
    }

    /// Ask etcd how far the watch is (answered as [`Watched::Progress`]
    /// once every event before it was sent). Never blocks: a request still
    /// queued is as good as a new one.
    pub fn request_progress(&self) {
        let _ = self.requests.try_send(WatchRequest {
            create_request: None,
            progress_request: Some(Ignored {}),
        });
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        // Dropping the receiver ends the thread at its next send; it is
        // not waited for (it may be blocked on etcd).
        self.receiver.take();
    }
}

impl Client {
    /// Watch the whole keyspace from `start` (inclusive), fragments joined
    /// into whole revisions, at most `depth` batches queued before the
    /// receiver stops reading (etcd then holds the rest). A compacted
    /// `start` is a [`Compacted`] error, from the first [`WatchStream::next`]
    /// or from here.
    pub fn watch(self, start: u64, depth: usize) -> Result<WatchStream> {
        tracing::debug!("grpc: Watch.Watch from revision {start} at {}", self.url);
        let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
        let (req_tx, req_rx) = tokio::sync::mpsc::channel(4);
        req_tx
            .try_send(WatchRequest {
                create_request: Some(WatchCreateRequest {
                    key: vec![0],
                    range_end: vec![0],
                    start_revision: i64::try_from(start).context("revision out of range")?,
                    progress_notify: true,
                    fragment: true,
                }),
                progress_request: None,
            })
            .expect("a new channel has room");
        let receiver = std::thread::Builder::new()
            .name("etcd-watch".into())
            .spawn(move || self.receive_watch(start, req_rx, &tx))
            .context("starting the watch receiver thread")?;
        Ok(WatchStream {
            rx,
            requests: req_tx,
            receiver: Some(receiver),
        })
    }

    fn receive_watch(
        self,
        start: u64,
        requests: tokio::sync::mpsc::Receiver<WatchRequest>,
        tx: &SyncSender<Result<Watched, WatchFailure>>,
    ) {
        let q = self.bounds.query;
        let req = self.request(tokio_stream::wrappers::ReceiverStream::new(requests));
        let result: Result<(), WatchFailure> = self.rt.block_on(async {
            let other = WatchFailure::Other;
            let mut stream = tokio::time::timeout(
                q,
                bidi::<WatchRequest, WatchResponse>(self.channel.clone(), req, WATCH),
            )
            .await
            .map_err(|_| {
                other(format!(
                    "Watch.Watch did not start within {}",
                    humantime::format_duration(q)
                ))
            })?
            .map_err(|s| other(format!("Watch.Watch: {}", status_line(&s))))?;
            let mut fragments: Vec<MvccEvent> = Vec::new();
            loop {
                // No bound here: an idle watch is quiet for as long as
                // nobody writes; HTTP/2 pings (KEEPALIVE) end a dead one.
                let msg = stream
                    .message()
                    .await
                    .map_err(|s| other(format!("Watch.Watch: {}", status_line(&s))))?
                    .ok_or_else(|| other("etcd ended the watch stream".into()))?;
                if msg.compact_revision > 0 {
                    return Err(WatchFailure::Compacted(Compacted {
                        requested: start,
                        compact_revision: u64::try_from(msg.compact_revision).unwrap_or(0),
                    }));
                }
                if msg.canceled {
                    return Err(other(format!(
                        "etcd cancelled the watch: {}",
                        if msg.cancel_reason.is_empty() {
                            "no reason given"
                        } else {
                            &msg.cancel_reason
                        }
                    )));
                }
                let out = if msg.events.is_empty() {
                    if msg.created || msg.fragment {
                        continue;
                    }
                    let rev = msg.header.map_or(0, |h| h.revision);
                    Watched::Progress {
                        revision: u64::try_from(rev).unwrap_or(0),
                    }
                } else {
                    fragments.extend(msg.events);
                    if msg.fragment {
                        continue;
                    }
                    Watched::Events(std::mem::take(&mut fragments))
                };
                // Blocks while the consumer is behind: the watch is then
                // not read, and etcd holds the events.
                if tx.send(Ok(out)).is_err() {
                    return Ok(());
                }
            }
        });
        if let Err(e) = result {
            let _ = tx.send(Err(e));
        }
    }

    /// `Lease.LeaseTimeToLive`: (seconds left, granted TTL, keys when
    /// asked); seconds left is -1 for a lease that is gone.
    pub fn lease_ttl(&self, id: i64, keys: bool) -> Result<LeaseTimeToLiveResponse> {
        self.unary(
            LEASE_TTL,
            "Lease.LeaseTimeToLive",
            LeaseIdRequest { id, keys },
        )
    }

    /// `Lease.LeaseGrant` of lease `id` with `ttl` seconds; a lease of
    /// that id that exists already is fine (the base holds it).
    pub fn grant_lease_id(&self, id: i64, ttl: i64) -> Result<()> {
        let r: Result<LeaseGrantResponse> = self.unary(
            LEASE_GRANT,
            "Lease.LeaseGrant",
            LeaseGrantRequest { ttl, id },
        );
        match r {
            Ok(r) => {
                ensure!(
                    r.error.is_empty(),
                    "Lease.LeaseGrant of lease {id:x}: {}",
                    r.error
                );
                Ok(())
            }
            Err(e) if format!("{e:#}").contains("lease already exists") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `Lease.LeaseRevoke`.
    pub fn revoke_lease(&self, id: i64) -> Result<()> {
        let _: Ignored = self.unary(
            LEASE_REVOKE,
            "Lease.LeaseRevoke",
            LeaseIdRequest { id, keys: false },
        )?;
        Ok(())
    }

    /// `Lease.LeaseLeases`: every lease's id.
    pub fn lease_ids(&self) -> Result<Vec<i64>> {
        let r: LeaseLeasesResponse = self.unary(LEASE_LEASES, "Lease.LeaseLeases", Ignored {})?;
        Ok(r.leases.into_iter().map(|l| l.id).collect())
    }

    /// Every key that has a lease, with it, as of `revision` (0: now):
    /// keys-only ranges of at most `page` keys.
    pub fn leased_keys(&self, revision: u64, page: i64) -> Result<Vec<(Vec<u8>, i64)>> {
        Ok(self
            .range_pages(page, revision, true, "KV.Range (keys only)")?
            .into_iter()
            .filter(|kv| kv.lease != 0)
            .map(|kv| (kv.key, kv.lease))
            .collect())
    }

    /// Keep every lease of the member alive until the returned guard is
    /// dropped: a `LeaseKeepAlive` stream on its own thread, renewing all
    /// of `LeaseLeases` every `every`. For a replay, where an expiry would
    /// add a revision.
    pub fn keep_leases_alive(self, every: Duration) -> Result<KeepAlive> {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("etcd-keepalive".into())
            .spawn(move || {
                if let Err(e) = self.keepalive_loop(every, &stop_rx) {
                    tracing::warn!("keeping the replay's leases alive: {e:#}");
                }
            })
            .context("starting the lease keep-alive thread")?;
        Ok(KeepAlive {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    fn keepalive_loop(&self, every: Duration, stop: &Receiver<()>) -> Result<()> {
        let q = self.bounds.query;
        let (req_tx, req_rx) = tokio::sync::mpsc::channel::<LeaseIdRequest>(1024);
        let mut req_rx = Some(req_rx);
        let mut responses = None;
        loop {
            for id in self.lease_ids()? {
                let tx = req_tx.clone();
                self.rt
                    .block_on(async { tx.send(LeaseIdRequest { id, keys: false }).await })
                    .map_err(|_| anyhow::anyhow!("the keep-alive stream closed"))?;
                // etcd answers the stream's opening only with the answer
                // to its first request: open it once one is queued.
                if let Some(rx) = req_rx.take() {
                    let req = self.request(tokio_stream::wrappers::ReceiverStream::new(rx));
                    let open =
                        bidi::<LeaseIdRequest, Ignored>(self.channel.clone(), req, LEASE_KEEPALIVE);
                    responses = Some(
                        self.rt
                            .block_on(async { tokio::time::timeout(q, open).await })
                            .map_err(|_| anyhow::anyhow!("Lease.LeaseKeepAlive did not open"))?
                            .map_err(|s| {
                                anyhow::anyhow!("Lease.LeaseKeepAlive: {}", status_line(&s))
                            })?,
                    );
                }
                // Its answer, so that answers never pile up.
                let stream = responses
                    .as_mut()
                    .context("internal: no keep-alive stream")?;
                self.rt
                    .block_on(async { tokio::time::timeout(q, stream.message()).await })
                    .map_err(|_| anyhow::anyhow!("Lease.LeaseKeepAlive did not answer"))?
                    .map_err(|s| anyhow::anyhow!("Lease.LeaseKeepAlive: {}", status_line(&s)))?;
            }
            match stop.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return Ok(()),
            }
        }
    }
}

/// Leases kept alive while it lives ([`Client::keep_leases_alive`]).
pub struct KeepAlive {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! etcd's v3 gRPC API, for the calls where `etcdctl` would cost a process
//! and, for the snapshot, a copy of the whole db on disk: the snapshot
//! stream (`Maintenance.Snapshot`), the keyspace probe (`KV.Range`), the
//! member's status (`Maintenance.Status`) and `Cluster.MemberList`; and,
//! for etcd2-convert's private member only, `KV.Txn` puts, `Lease.LeaseGrant`
//! and a keys-and-values `KV.Range`. With a user (`--user`), the client
//! first trades it and its password for etcd's token (`Auth.Authenticate`)
//! and sends the token with every request.
//!
//! A blocking facade over tonic on a current-thread tokio runtime: the rest
//! of the code stays synchronous. The few messages are declared here by
//! hand, field numbers from etcd's `api/etcdserverpb/rpc.proto` (no protoc,
//! no build script); prost skips the fields we do not declare.
//!
//! The replay's transactions go through [`TxnPipeline`]: many in flight,
//! each guarded so that etcd applies them in order.
//!
//! The snapshot arrives on its own thread into a bounded channel of chunks
//! ([`SnapshotStream::next_chunk`]), so that the caller compresses while
//! etcd sends.
//! [`SnapshotDecoder`] checks the stream as etcd defines it (see its doc):
//! a stream that is short, long, or whose sha256 trailer does not match
//! never ends as a whole snapshot.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{Recipe, Tls};
use crate::digest::hex;

mod pipeline;
mod proto;
pub mod watch;

pub use pipeline::TxnPipeline;

pub use proto::*;

const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";
const RANGE: &str = "/etcdserverpb.KV/Range";
const TXN: &str = "/etcdserverpb.KV/Txn";
const LEASE_GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
const STATUS: &str = "/etcdserverpb.Maintenance/Status";
const ALARM: &str = "/etcdserverpb.Maintenance/Alarm";
const MEMBER_LIST: &str = "/etcdserverpb.Cluster/MemberList";
const WINDOW: u32 = 4 << 20;
const KEEPALIVE: Duration = Duration::from_secs(10);
const SNAPSHOT: &str = "/etcdserverpb.Maintenance/Snapshot";

/// One operation of a [`Client::txn`].
pub enum TxnOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    Delete {
        key: Vec<u8>,
    },
}

/// The wire form of [`TxnOp`]s.
fn request_ops(ops: Vec<TxnOp>) -> Vec<RequestOp> {
    ops.into_iter()
        .map(|op| match op {
            TxnOp::Put { key, value, lease } => RequestOp {
                request_put: Some(PutRequest { key, value, lease }),
                request_delete_range: None,
            },
            TxnOp::Delete { key } => RequestOp {
                request_put: None,
                request_delete_range: Some(DeleteRangeRequest { key }),
            },
        })
        .collect()
}

/// Bounds on every wait of a [`Client`], each with the flag that sets it
/// (named in the error when it runs out).
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Connecting, and each quick call.
    pub query: Duration,
    pub query_flag: &'static str,
    /// The whole snapshot stream, however steady.
    pub total: Duration,
    pub total_flag: &'static str,
}

/// One member, reached over gRPC.
pub struct Client {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    url: String,
    bounds: Bounds,
    /// etcd's token for the authenticated user, sent as the `token`
    /// metadata of every request (as etcd's own client does).
    token: Option<tonic::metadata::AsciiMetadataValue>,
}

/// The URL tonic connects to: the first of etcd's comma-separated
/// endpoints (the member backed up), with a scheme (`https` where TLS
/// material is given, as etcdctl does for a bare host:port).
pub fn endpoint_url(endpoints: &str, tls: bool) -> Result<String> {
    let first = endpoints
        .split(',')
        .map(str::trim)
        .find(|e| !e.is_empty())
        .context("no etcd endpoint given")?;
    Ok(if first.contains("://") {
        first.to_owned()
    } else if tls {
        format!("https://{first}")
    } else {
        format!("http://{first}")
    })
}

fn read(flag: &str, p: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("{flag} {}: cannot read TLS file", p.display()))
}

/// An error and its causes as one line, each said once (hyper and rustls
/// repeat their cause in their own message).
fn chain_line(first: String, mut src: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut line = first;
    while let Some(e) = src {
        let text = e.to_string();
        if !line.contains(&text) {
            line.push_str(&format!(": {text}"));
        }
        src = e.source();
    }
    line
}

/// A tonic status as one line: its code and etcd's message (tonic's own
/// Display carries the metadata too), then its causes.
fn status_line(s: &tonic::Status) -> String {
    chain_line(
        format!("{:?}: {}", s.code(), s.message()),
        std::error::Error::source(s),
    )
}

impl Client {
    /// The member of `ctl` over gRPC: its first endpoint, its TLS files,
    /// connecting and each quick call bounded by --query-timeout, a snapshot
    /// stream by --timeout. A failure says why as etcdctl's would
    /// ([`Recipe::failure`]: cannot reach, or the member's refusal). An
    /// `&Etcdctl` is one.
    pub fn of(ctl: &Recipe) -> Result<Client> {
        let mut c = Client::connect(
            ctl.endpoints(),
            ctl.tls(),
            Bounds {
                query: ctl.query_timeout,
                query_flag: "--query-timeout",
                total: ctl.long_timeout,
                total_flag: "--timeout",
            },
        )
        .map_err(|e| ctl.failure(e))?;
        if let Some(auth) = ctl.auth() {
            c.authenticate(auth).map_err(|e| ctl.failure(e))?;
        }
        Ok(c)
    }

    /// `Auth.Authenticate`: trade the user and password for etcd's token.
    /// A member with auth off says so and is then spoken to without one,
    /// as etcd's own client does.
    fn authenticate(&mut self, auth: &super::Auth) -> Result<()> {
        let req = AuthenticateRequest {
            name: auth.user.clone(),
            password: auth.password().to_owned(),
        };
        let what = format!("Auth.Authenticate as user {}", auth.user);
        match self.unary::<_, AuthenticateResponse>(AUTHENTICATE, &what, req) {
            Ok(r) => {
                let token = r
                    .token
                    .parse()
                    .context("etcd's auth token is not valid gRPC metadata")?;
                self.token = Some(token);
                Ok(())
            }
            Err(e) if format!("{e:#}").contains("authentication is not enabled") => {
                tracing::debug!("grpc: etcd at {} has auth off; --user not needed", self.url);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A request carrying the token, where there is one.
    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("token", t.clone());
        }
        r
    }

    /// Connect to the first of `endpoints`, within `bounds.query`.
    pub fn connect(endpoints: &str, tls: &Tls, bounds: Bounds) -> Result<Client> {
        let tls_set = tls.cacert.is_some() || tls.cert.is_some();
        let url = endpoint_url(endpoints, tls_set)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the gRPC runtime")?;
        let mut ep = Endpoint::from_shared(url.clone())
            .with_context(|| format!("etcd endpoint {url} is not a URL"))?
            .connect_timeout(bounds.query)
            .tcp_nodelay(true)
            // HTTP/2's default 64 KiB window makes etcd wait for a window
            // update every two chunks; 4 MiB lets it send ahead (the
            // memory it may hold is bounded by these, as the channel's is).
            .initial_stream_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            // A watch may be idle for hours: HTTP/2 pings find a dead
            // member (or a dropped connection) within a bound.
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .keep_alive_while_idle(true);
        if url.starts_with("https://") {
            let mut cfg = ClientTlsConfig::new();
            // As etcdctl: the given CA only, else the system's roots.
            cfg = match &tls.cacert {
                Some(ca) => cfg.ca_certificate(Certificate::from_pem(read("--cacert", ca)?)),
                None => cfg.with_native_roots(),
            };
            if let (Some(c), Some(k)) = (&tls.cert, &tls.key) {
                cfg = cfg.identity(Identity::from_pem(read("--cert", c)?, read("--key", k)?));
            }
            ep = ep
                .tls_config(cfg)
                .context("setting up TLS for the gRPC connection")?;
        }
        tracing::debug!("grpc: connecting to {url}");
        let q = bounds.query;
        let channel = rt
            .block_on(async { tokio::time::timeout(q, ep.connect()).await })
            .map_err(|_| {
                anyhow::anyhow!(
                    "no connection within {} ({})",
                    humantime::format_duration(q),
                    bounds.query_flag
                )
            })?
            .map_err(|e| {
                anyhow::anyhow!(
                    "connecting: {}",
                    chain_line(e.to_string(), std::error::Error::source(&e))
                )
            })?;
        Ok(Client {
            rt,
            channel,
            url,
            bounds,
            token: None,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One unary call as a future of its own (the token sent, no bound
    /// yet): [`Client::unary`] waits for it, [`TxnPipeline`] spawns many.
    fn call<Req, Resp>(
        &self,
        path: &'static str,
        req: Req,
    ) -> impl std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>> + Send + 'static
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let req = self.request(req);
        async move {
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::from_error(e.into()))?;
            grpc.unary(
                req,
                http::uri::PathAndQuery::from_static(path),
                tonic::codec::ProstCodec::<Req, Resp>::default(),
            )
            .await
        }
    }

    /// One unary call, bounded by the quick-call bound and named in errors.
    fn unary<Req, Resp>(&self, path: &'static str, what: &str, req: Req) -> Result<Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        tracing::debug!("grpc: {what} at {}", self.url);
        let q = self.bounds.query;
        let call = self.call::<Req, Resp>(path, req);
        let resp = self
            .rt
            .block_on(async { tokio::time::timeout(q, call).await })
            .map_err(|_| {
                anyhow::anyhow!(
                    "{what} did not answer within {} ({})",
                    humantime::format_duration(q),
                    self.bounds.query_flag
                )
            })?
            .map_err(|s| anyhow::anyhow!("{what}: {}", status_line(&s)))?;
        Ok(resp.into_inner())
    }

    /// How many keys the v3 keyspace holds, and at which revision: a
    /// linearizable count-only Range over the whole keyspace. The member
    /// answers only once it applied everything committed before the
    /// request, so a snapshot taken after it holds at least that revision.
    pub fn count_keys(&self) -> Result<(u64, u64)> {
        let req = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..RangeRequest::default()
        };
        let resp: RangeResponse = self.unary(
            RANGE,
            "KV.Range count_only linearizable (whole keyspace)",
            req,
        )?;
        let rev = resp.header.map_or(0, |h| h.revision);
        Ok((
            u64::try_from(resp.count).unwrap_or(0),
            u64::try_from(rev).unwrap_or(0),
        ))
    }

    /// Every key of the v3 keyspace with its value and lease, in key order:
    /// linearizable ranges of at most `page` keys each, so that no answer
    /// outgrows a gRPC message however large the keyspace.
    pub fn all_keys(&self, page: i64) -> Result<Vec<KeyValue>> {
        self.range_pages(page, 0, false, "KV.Range (keys and values)")
    }

    /// The whole keyspace at `revision` (0: the newest), in ranges of at
    /// most `page` keys; with `keys_only`, no values.
    fn range_pages(
        &self,
        page: i64,
        revision: u64,
        keys_only: bool,
        what: &str,
    ) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        let mut from = vec![0u8];
        loop {
            let req = RangeRequest {
                key: from,
                range_end: vec![0],
                limit: page,
                revision: i64::try_from(revision).context("revision out of range")?,
                keys_only,
                ..RangeRequest::default()
            };
            let resp: RangeKvsResponse = self.unary(RANGE, what, req)?;
            let Some(last) = resp.kvs.last() else { break };
            // The next page starts just after the last key: key + \0.
            from = last.key.clone();
            from.push(0);
            out.extend(resp.kvs);
            if !resp.more {
                break;
            }
        }
        Ok(out)
    }

    /// Put `kvs` (key, value, lease) in one `KV.Txn`: all or none. etcd
    /// bounds a transaction's operations (--max-txn-ops, 128 by default).
    pub fn put_all(&self, kvs: Vec<PutRequest>) -> Result<u64> {
        self.txn(
            kvs.into_iter()
                .map(|p| TxnOp::Put {
                    key: p.key,
                    value: p.value,
                    lease: p.lease,
                })
                .collect(),
        )
    }

    /// One `KV.Txn` of puts and deletes, all or none: the revision etcd
    /// answered with.
    pub fn txn(&self, ops: Vec<TxnOp>) -> Result<u64> {
        let n = ops.len();
        let req = TxnRequest {
            compare: Vec::new(),
            success: request_ops(ops),
        };
        let r: TxnResponse = self.unary(TXN, "KV.Txn", req)?;
        ensure!(r.succeeded, "KV.Txn of {n} operations did not succeed");
        Ok(r.header
            .map_or(0, |h| u64::try_from(h.revision).unwrap_or(0)))
    }

    /// `Lease.LeaseGrant` of `ttl` seconds; returns the lease's ID.
    pub fn grant_lease(&self, ttl: i64) -> Result<i64> {
        let r: LeaseGrantResponse = self.unary(
            LEASE_GRANT,
            "Lease.LeaseGrant",
            LeaseGrantRequest { ttl, id: 0 },
        )?;
        ensure!(
            r.error.is_empty(),
            "Lease.LeaseGrant of {ttl}s: {}",
            r.error
        );
        Ok(r.id)
    }

    /// `Maintenance.Status` of the member, as `etcdctl endpoint status`
    /// reports it.
    pub fn status(&self) -> Result<super::EndpointStatus> {
        let r: StatusResponse = self.unary(STATUS, "Maintenance.Status", StatusRequest {})?;
        let h = r.header.unwrap_or_default();
        Ok(super::EndpointStatus {
            endpoint: self.url.clone(),
            status: super::StatusBody {
                header: super::Header {
                    cluster_id: h.cluster_id,
                    member_id: h.member_id,
                    revision: u64::try_from(h.revision).unwrap_or(0),
                },
                version: r.version,
                db_size: u64::try_from(r.db_size).unwrap_or(0),
                raft_index: r.raft_index,
                raft_applied_index: r.raft_applied_index,
                leader: r.leader,
            },
        })
    }

    /// `Maintenance.Alarm` GET: the alarms active in the cluster, as
    /// `etcdctl alarm list` reports them.
    pub fn alarms(&self) -> Result<Vec<super::Alarm>> {
        let r: AlarmResponse =
            self.unary(ALARM, "Maintenance.Alarm (list)", AlarmRequest::default())?;
        Ok(r.alarms
            .into_iter()
            .filter(|a| a.alarm != 0)
            .map(|a| super::Alarm::from_raw(a.member_id, a.alarm))
            .collect())
    }

    /// `Cluster.MemberList`, as `etcdctl member list` reports it.
    pub fn member_list(&self) -> Result<super::MemberList> {
        let r: MemberListResponse =
            self.unary(MEMBER_LIST, "Cluster.MemberList", MemberListRequest {})?;
        let h = r.header.unwrap_or_default();
        Ok(super::MemberList {
            header: super::Header {
                cluster_id: h.cluster_id,
                member_id: h.member_id,
                revision: u64::try_from(h.revision).unwrap_or(0),
            },
            members: r
                .members
                .into_iter()
                .map(|m| super::Member {
                    id: m.id,
                    name: m.name,
                    peer_urls: m.peer_urls,
                    client_urls: m.client_urls,
                    is_learner: m.is_learner,
                })
                .collect(),
        })
    }

    /// Start `Maintenance.Snapshot`: the stream is read on its own thread
    /// into a channel of at most `depth` chunks; waits for the first one
    /// (which tells the db size).
    pub fn snapshot(self, depth: usize) -> Result<SnapshotStream> {
        tracing::debug!("grpc: Maintenance.Snapshot from {}", self.url);
        let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
        let started = Instant::now();
        let bounds = self.bounds.clone();
        let url = self.url.clone();
        let receiver = std::thread::Builder::new()
            .name("etcd-snapshot".into())
            .spawn(move || self.receive(&tx, started))
            .context("starting the snapshot receiver thread")?;
        let mut s = SnapshotStream {
            rx,
            receiver: Some(receiver),
            bounds,
            url,
            started,
            db_size: 0,
            pending: None,
            done: None,
        };
        match s.next_event()? {
            Event::Start { db_size, first } => {
                s.db_size = db_size;
                s.pending = Some(first);
            }
            _ => bail!("the snapshot stream did not start with data"),
        }
        Ok(s)
    }

    /// The receiver thread: read the stream, check it, pass it on. Ends
    /// when the stream ends, fails, or the consumer hangs up.
    fn receive(self, tx: &SyncSender<Result<Event, String>>, started: Instant) {
        let b = &self.bounds;
        let req = self.request(SnapshotRequest {});
        let result = self.rt.block_on(async {
            let mut grpc =
                tonic::client::Grpc::new(self.channel.clone()).max_decoding_message_size(64 << 20);
            let deadline = started + b.total;
            let within = |what: &'static str| {
                let left = deadline.saturating_duration_since(Instant::now());
                let (d, msg) = if left < b.query {
                    (
                        left,
                        format!(
                            "the snapshot did not finish within {} ({})",
                            humantime::format_duration(b.total),
                            b.total_flag
                        ),
                    )
                } else {
                    (
                        b.query,
                        format!(
                            "etcd sent no snapshot data for {} while {what} ({})",
                            humantime::format_duration(b.query),
                            b.query_flag
                        ),
                    )
                };
                (d, msg)
            };
            let (d, msg) = within("starting the stream");
            let mut stream = tokio::time::timeout(d, async {
                grpc.ready()
                    .await
                    .map_err(|e| tonic::Status::from_error(e.into()))?;
                grpc.server_streaming(
                    req,
                    http::uri::PathAndQuery::from_static(SNAPSHOT),
                    tonic::codec::ProstCodec::<SnapshotRequest, SnapshotResponse>::default(),
                )
                .await
            })
            .await
            .map_err(|_| msg)?
            .map_err(|s| format!("Maintenance.Snapshot: {}", status_line(&s)))?
            .into_inner();
            let mut dec = SnapshotDecoder::default();
            loop {
                let (d, msg) = within("receiving");
                let next = tokio::time::timeout(d, stream.message())
                    .await
                    .map_err(|_| msg)?
                    .map_err(|s| format!("Maintenance.Snapshot: {}", status_line(&s)))?;
                let ev = match next {
                    Some(m) => dec.push(m)?,
                    None => Some(dec.end()?),
                };
                if let Some(ev) = ev {
                    let last = matches!(ev, Event::End { .. });
                    // A consumer that hung up failed already and says why.
                    if tx.send(Ok(ev)).is_err() || last {
                        return Ok(());
                    }
                }
            }
        });
        if let Err(e) = result {
            // As above: nobody left to tell.
            let _ = tx.send(Err(e));
        }
    }
}

/// What the decoder makes of the stream.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The first chunk, and the db size it tells.
    Start { db_size: u64, first: Vec<u8> },
    /// More of the file: db bytes, and last the 32-byte trailer (checked).
    Data(Vec<u8>),
    /// The stream ended where it should: the sha256 of the whole file
    /// (db and trailer).
    End { file_sha256: String },
}

/// Checks `Maintenance.Snapshot` as etcd sends it
/// (server/etcdserver/api/v3rpc/maintenance.go): the db in chunks, each
/// with `remaining_bytes` = db size - bytes sent so far, then one message
/// whose blob is the sha256 of the db, then the end of the stream. The file
/// it yields is what `etcdctl snapshot save` writes: db + that 32-byte
/// trailer, which `snapshot restore` verifies.
///
/// The trailer chunk is passed on only once it matched, and [`Event::End`]
/// only once the stream ended right after it: a consumer that writes what
/// it gets never holds a whole-looking file from a bad stream.
#[derive(Default)]
pub struct SnapshotDecoder {
    total: Option<u64>,
    got: u64,
    db: Sha256,
    file_sha256: Option<String>,
}

const TRAILER: usize = 32;

impl SnapshotDecoder {
    /// One message of the stream.
    pub fn push(&mut self, m: SnapshotResponse) -> Result<Option<Event>, String> {
        if self.file_sha256.is_some() {
            return Err(format!(
                "the snapshot stream is too long: a message of {} bytes after the sha256 trailer",
                m.blob.len()
            ));
        }
        let total = match self.total {
            Some(t) => t,
            None => {
                let t = m
                    .remaining_bytes
                    .checked_add(m.blob.len() as u64)
                    .ok_or_else(|| {
                        format!(
                            "the snapshot stream announces {} bytes after its first {}: more than \
                             a file can hold",
                            m.remaining_bytes,
                            m.blob.len()
                        )
                    })?;
                self.total = Some(t);
                t
            }
        };
        if self.got == total {
            // The trailer: the sha256 of the db.
            let want = self.db.clone().finalize();
            if m.blob.len() != TRAILER || m.remaining_bytes != 0 {
                return Err(format!(
                    "the snapshot stream is too long: {} more bytes after the {total} announced \
                     (expected the {TRAILER}-byte sha256 trailer)",
                    m.blob.len()
                ));
            }
            if m.blob.as_slice() != want.as_slice() {
                return Err(format!(
                    "the snapshot's sha256 trailer does not match its {total} bytes: expected {}, got {}",
                    hex(&want),
                    hex(&m.blob)
                ));
            }
            let mut file = self.db.clone();
            file.update(&m.blob);
            self.file_sha256 = Some(hex(&file.finalize()));
            return Ok(Some(Event::Data(m.blob)));
        }
        let got = self.got + m.blob.len() as u64;
        if got > total || m.remaining_bytes != total - got {
            return Err(format!(
                "the snapshot stream is inconsistent: after {got} of {total} bytes etcd says {} remain",
                m.remaining_bytes
            ));
        }
        self.db.update(&m.blob);
        let first = self.got == 0;
        self.got = got;
        Ok(Some(if first {
            Event::Start {
                db_size: total,
                first: m.blob,
            }
        } else {
            Event::Data(m.blob)
        }))
    }

    /// The stream ended.
    pub fn end(&mut self) -> Result<Event, String> {
        match (&self.file_sha256, self.total) {
            (Some(s), _) => Ok(Event::End {
                file_sha256: s.clone(),
            }),
            (None, None) => Err("the snapshot stream ended before any data".into()),
            (None, Some(t)) if self.got < t => Err(format!(
                "the snapshot stream ended early: {} of {t} bytes received",
                self.got
            )),
            (None, Some(t)) => Err(format!(
                "the snapshot stream ended without its sha256 trailer after {t} bytes"
            )),
        }
    }
}

/// The snapshot as it arrives: [`SnapshotStream::next_chunk`] yields the
/// file (db + trailer); [`SnapshotStream::finish`] returns its sha256.
pub struct SnapshotStream {
    rx: Receiver<Result<Event, String>>,
    receiver: Option<std::thread::JoinHandle<()>>,
    bounds: Bounds,
    url: String,
    started: Instant,
    db_size: u64,
    pending: Option<Vec<u8>>,
    done: Option<String>,
}

impl SnapshotStream {
    /// Write the snapshot, as it arrives, as the one file of a v3 archive
    /// described by `manifest` (whose `files` this fills in): etcd's bytes
    /// go through tar and the compressor as they arrive, nothing staged on
    /// disk. Returns the writer and the manifest as written. The archived
    /// file's hash is checked against the stream's own.
    pub fn archive<W: std::io::Write>(
        mut self,
        out: W,
        mut manifest: crate::archive::Manifest,
        level: i32,
        threads: u32,
    ) -> Result<(W, crate::archive::Manifest)> {
        manifest.files = vec![crate::archive::FileEntry {
            path: crate::archive::V3_SNAPSHOT_NAME.to_owned(),
            size: self.file_size(),
            sha256: String::new(),
        }];
        let url = self.url.clone();
        let (out, done) =
            crate::archive::write_streamed(out, &manifest, level, threads, |_, w| {
                // The chunks end only once the stream ended right after a
                // matching trailer (SnapshotDecoder).
                while let Some(chunk) = self
                    .next_chunk()
                    .with_context(|| format!("receiving the snapshot from etcd at {url}"))?
                {
                    w.write_all(&chunk)?;
                }
                Ok(())
            })?;
        let streamed = self.finish()?;
        // Two hashes of the same bytes, on two threads: they agree.
        ensure!(
            streamed == done.files[0].sha256,
            "snapshot.db hashed to {streamed} as received and {} as archived",
            done.files[0].sha256
        );
        Ok((out, done))
    }

    /// Size of the file it yields: the db and the sha256 trailer.
    pub fn file_size(&self) -> u64 {
        self.db_size + TRAILER as u64
    }

    pub fn db_size(&self) -> u64 {
        self.db_size
    }

    fn next_event(&mut self) -> Result<Event> {
        // The receiver bounds each wait on etcd; this bound only catches a
        // receiver that stopped without a word (it cannot: belt and braces).
        let wait = self.bounds.total.saturating_sub(self.started.elapsed()) + self.bounds.query;
        match self.rx.recv_timeout(wait) {
            Ok(Ok(ev)) => Ok(ev),
            Ok(Err(e)) => Err(anyhow::anyhow!(e)),
            Err(RecvTimeoutError::Timeout) => bail!(
                "the snapshot did not finish within {} ({})",
                humantime::format_duration(self.bounds.total),
                self.bounds.total_flag
            ),
            Err(RecvTimeoutError::Disconnected) => {
                bail!("the snapshot receiver stopped without a word (a bug)")
            }
        }
    }

    /// The next piece of the file (db bytes, last the checked trailer), or
    /// None once the stream ended right after a matching trailer.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        if self.done.is_some() {
            return Ok(None);
        }
        match self.next_event()? {
            Event::Data(d) | Event::Start { first: d, .. } => Ok(Some(d)),
            Event::End { file_sha256 } => {
                self.done = Some(file_sha256);
                Ok(None)
            }
        }
    }

    /// Wait for the end of the stream (after the whole file was read):
    /// returns the file's sha256, or why the stream is bad.
    pub fn finish(mut self) -> Result<String> {
        ensure!(
            self.pending.is_none(),
            "the snapshot was not read to its end"
        );
        let sha = match self.done.take() {
            Some(s) => s,
            None => match self.next_event()? {
                Event::End { file_sha256 } => file_sha256,
                _ => bail!(
                    "the snapshot stream is longer than the {} bytes announced",
                    self.db_size
                ),
            },
        };
        if let Some(h) = self.receiver.take() {
            // It has sent End, its last act.
            let _ = h.join();
        }
        Ok(sha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(remaining: u64, blob: &[u8]) -> SnapshotResponse {
        SnapshotResponse {
            header: None,
            remaining_bytes: remaining,
            blob: blob.to_vec(),
            version: String::new(),
        }
    }

    /// The messages etcd sends for `db` in chunks of `chunk` bytes.
    fn etcd_stream(db: &[u8], chunk: usize) -> Vec<SnapshotResponse> {
        let mut v = Vec::new();
        let mut sent = 0;
        for c in db.chunks(chunk) {
            sent += c.len();
            v.push(msg((db.len() - sent) as u64, c));
        }
        v.push(msg(0, &Sha256::digest(db)));
        v
    }

    fn run(msgs: Vec<SnapshotResponse>) -> Result<(Vec<u8>, String), String> {
        let mut d = SnapshotDecoder::default();
        let mut out = Vec::new();
        for m in msgs {
            match d.push(m)? {
                Some(Event::Start { first, .. }) => out.extend(first),
                Some(Event::Data(b)) => out.extend(b),
                other => panic!("{other:?}"),
            }
        }
        match d.end()? {
            Event::End { file_sha256 } => Ok((out, file_sha256)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_whole_stream_yields_db_and_trailer_as_etcdctl_saves_them() {
        let db: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        // 32 KiB chunks as etcd sends them, and a size that is a multiple
        // of the chunk (the last data message says 0 remain, like the trailer).
        for (db, chunk) in [
            (&db[..], 32 << 10),
            (&db[..65536], 32 << 10),
            (&db[..10], 3),
        ] {
            let (file, sha) = run(etcd_stream(db, chunk)).unwrap();
            let mut want = db.to_vec();
            want.extend_from_slice(&Sha256::digest(db));
            assert_eq!(file, want);
            assert_eq!(sha, hex(&Sha256::digest(&want)));
        }
    }

    #[test]
    fn short_long_and_bad_trailer_streams_are_refused() {
        let db = vec![7u8; 10_000];
        let good = etcd_stream(&db, 4096);

        let mut short = good.clone();
        short.truncate(2);
        let e = run(short).unwrap_err();
        assert!(e.contains("ended early: 8192 of 10000 bytes"), "{e}");

        let mut no_trailer = good.clone();
        no_trailer.pop();
        let e = run(no_trailer).unwrap_err();
        assert!(e.contains("without its sha256 trailer"), "{e}");

        let mut long = good.clone();
        long.push(msg(0, b"x"));
        let e = run(long).unwrap_err();
        assert!(e.contains("too long"), "{e}");

        // More data where the trailer should be.
        let mut long = good.clone();
        long.insert(3, msg(0, &[1u8; 100]));
        let e = run(long).unwrap_err();
        assert!(e.contains("too long"), "{e}");

        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last].blob[0] ^= 1;
        let e = run(bad).unwrap_err();
        assert!(
            e.contains("sha256 trailer does not match")
                && e.contains("expected")
                && e.contains("got"),
            "{e}"
        );

        // A flipped data byte: the trailer no longer matches.
        let mut flipped = good.clone();
        flipped[1].blob[5] ^= 1;
        assert!(run(flipped).unwrap_err().contains("does not match"));

        // remaining_bytes that disagree with what came.
        let mut lying = good.clone();
        lying[1].remaining_bytes += 1;
        assert!(run(lying).unwrap_err().contains("inconsistent"));

        assert!(run(vec![]).unwrap_err().contains("before any data"));
    }

    /// A first message announcing more than u64 bytes in all (its
    /// remaining_bytes plus its blob): an overflow, which panicked in a
    /// debug build and wrapped to a small total in a release build.
    #[test]
    fn a_size_past_u64_is_refused_not_an_overflow() {
        let e = run(vec![msg(u64::MAX, b"x")]).unwrap_err();
        assert!(e.contains("announces"), "{e}");
    }

    #[test]
    fn the_trailer_is_passed_on_only_once_checked() {
        let db = vec![1u8; 100];
        let mut msgs = etcd_stream(&db, 64);
        let last = msgs.len() - 1;
        msgs[last].blob[31] ^= 1;
        let mut d = SnapshotDecoder::default();
        assert!(matches!(
            d.push(msgs[0].clone()),
            Ok(Some(Event::Start { .. }))
        ));
        assert!(matches!(d.push(msgs[1].clone()), Ok(Some(Event::Data(_)))));
        assert!(d.push(msgs[2].clone()).is_err());
    }

    #[test]
    fn endpoint_url_takes_the_first_and_adds_a_scheme() {
        assert_eq!(
            endpoint_url("http://127.0.0.1:2379,http://b:2379", false).unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            endpoint_url("10.0.0.1:2379", true).unwrap(),
            "https://10.0.0.1:2379"
        );
        assert_eq!(
            endpoint_url(" 10.0.0.1:2379 ", false).unwrap(),
            "http://10.0.0.1:2379"
        );
        assert!(endpoint_url(" , ", false).is_err());
    }
}

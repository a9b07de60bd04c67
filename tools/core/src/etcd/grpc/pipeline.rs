//! Many `KV.Txn`s in flight, applied in the order given: the replay's
//! throughput without a round trip per revision, and without trusting etcd
//! to apply requests in the order they arrive (it does not promise to:
//! each request is proposed from a goroutine of its own).
//!
//! Every transaction after the first is guarded by a compare that holds
//! only once the one before it has applied: "the key it put has that
//! revision as its mod revision". One that reaches etcd early fails its
//! compare and changes nothing (a Txn whose taken branch is empty writes
//! no revision); it, and every one sent after it (guarded on it, so failed
//! too), are sent again in order once the ones before have answered. A
//! transaction that only deletes leaves no key to compare with: the one
//! after it is sent when it has answered. Each answer must name the
//! revision its transaction was meant to make.

use std::collections::VecDeque;

use anyhow::{bail, Result};
use tokio::task::JoinHandle;

use super::{request_ops, status_line, Client, Compare, TxnOp, TxnRequest, TxnResponse, TXN};

/// Transactions in flight at most (`ETCD2_BACKUP_REPLAY_WINDOW` sets
/// another), and the bytes they may hold together. Measured on etcd 3.6
/// (docs/benchmarks-capture.md): etcd reorders one pair in five even at two
/// in flight, and every early one costs its successors their place, so a
/// deeper window is slower (eight: 1,250-1,700 revisions/s onto a 1 GiB
/// base; 128: 950 onto a small one), two faster than one at a time
/// (2,000-2,500 against 1,350-1,600).
const WINDOW: usize = 2;
const WINDOW_BYTES: usize = 16 << 20;

/// A sequence of transactions, each to make the next revision.
pub struct TxnPipeline<'a> {
    client: &'a Client,
    inflight: VecDeque<InFlight>,
    bytes: usize,
    /// A key the last transaction sent put, and the revision it makes.
    guard: Option<(Vec<u8>, u64)>,
    /// Transactions sent again because they reached etcd early.
    pub resent: u64,
    /// The fault injector's: hold back every Nth transaction until the
    /// one after it is sent (`ETCD2_BACKUP_FAULT_REORDER=N`, for tests).
    reorder: Option<u64>,
    window: usize,
    held: Option<(u64, TxnRequest, usize)>,
}

struct InFlight {
    rev: u64,
    req: TxnRequest,
    size: usize,
    answer: JoinHandle<Result<TxnResponse, tonic::Status>>,
}

impl<'a> TxnPipeline<'a> {
    pub fn new(client: &'a Client) -> TxnPipeline<'a> {
        TxnPipeline {
            client,
            inflight: VecDeque::new(),
            bytes: 0,
            guard: None,
            resent: 0,
            reorder: std::env::var("ETCD2_BACKUP_FAULT_REORDER")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0),
            held: None,
            window: std::env::var("ETCD2_BACKUP_REPLAY_WINDOW")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(WINDOW),
        }
    }

    /// Send the transaction that must make revision `rev` (the one after the
    /// last sent, or after the member's revision for the first).
    pub fn send(&mut self, rev: u64, ops: Vec<TxnOp>) -> Result<()> {
        let next_guard = ops.iter().find_map(|op| match op {
            TxnOp::Put { key, .. } => Some((key.clone(), rev)),
            TxnOp::Delete { .. } => None,
        });
        let compare = match self.guard.take() {
            Some((key, prev)) if prev + 1 == rev => vec![Compare::mod_revision_is(key, prev)],
            _ => {
                // Nothing to compare with: the one before must have applied.
                self.finish()?;
                Vec::new()
            }
        };
        let req = TxnRequest {
            compare,
            success: request_ops(ops),
        };
        let size = prost::Message::encoded_len(&req);
        while !self.inflight.is_empty()
            && (self.inflight.len() >= self.window || self.bytes + size > WINDOW_BYTES)
        {
            self.settle_front()?;
        }
        self.bytes += size;
        if self.reorder.is_some_and(|n| rev.is_multiple_of(n))
            && next_guard.is_some()
            && self.held.is_none()
        {
            // The next one, guarded on this one, will reach etcd first.
            self.held = Some((rev, req, size));
        } else if let Some((held_rev, held, held_size)) = self.held.take() {
            let this = self.flight(rev, req, size);
            self.client.rt.block_on(async {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            });
            let held = self.flight(held_rev, held, held_size);
            self.inflight.extend([held, this]);
        } else {
            let f = self.flight(rev, req, size);
            self.inflight.push_back(f);
        }
        self.guard = next_guard;
        Ok(())
    }

    /// Wait for every transaction in flight to have applied.
    pub fn finish(&mut self) -> Result<()> {
        if let Some((rev, req, size)) = self.held.take() {
            let f = self.flight(rev, req, size);
            self.inflight.push_back(f);
        }
        while !self.inflight.is_empty() {
            self.settle_front()?;
        }
        Ok(())
    }

    /// `req` sent: what is then in flight.
    fn flight(&self, rev: u64, req: TxnRequest, size: usize) -> InFlight {
        InFlight {
            rev,
            answer: self.spawn(req.clone()),
            req,
            size,
        }
    }

    fn spawn(&self, req: TxnRequest) -> JoinHandle<Result<TxnResponse, tonic::Status>> {
        let q = self.client.bounds.query;
        let call = self.client.call::<TxnRequest, TxnResponse>(TXN, req);
        self.client.rt.spawn(async move {
            match tokio::time::timeout(q, call).await {
                Ok(r) => r.map(tonic::Response::into_inner),
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {}",
                    humantime::format_duration(q)
                ))),
            }
        })
    }

    /// The answer of the oldest transaction in flight.
    fn answer(&mut self, f: InFlight) -> Result<TxnResponse> {
        let rev = f.rev;
        self.bytes -= f.size;
        match self.client.rt.block_on(f.answer) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(s)) => bail!("replaying revision {rev}: KV.Txn: {}", status_line(&s)),
            Err(e) => bail!("replaying revision {rev}: the KV.Txn call failed: {e}"),
        }
    }

    fn settle_front(&mut self) -> Result<()> {
        let Some(f) = self.inflight.pop_front() else {
            return Ok(());
        };
        let (rev, req) = (f.rev, f.req.clone());
        let r = self.answer(f)?;
        if r.succeeded {
            return applied(rev, &r);
        }
        // Early: it, and everything after it (guarded on it), again in order.
        let mut again = vec![(rev, req)];
        while let Some(f) = self.inflight.pop_front() {
            let (rev, req) = (f.rev, f.req.clone());
            let r = self.answer(f)?;
            if r.succeeded {
                bail!(
                    "replaying revision {rev}: etcd applied it before revision {}: the replay \
                     would not reproduce the original history",
                    again[0].0
                );
            }
            again.push((rev, req));
        }
        tracing::debug!(
            "replay: {} transaction(s) from revision {rev} reached etcd early; sending them again",
            again.len()
        );
        self.resent += again.len() as u64;
        let mut again = again.into_iter();
        // The first alone: the one before it has applied, so it must now.
        if let Some((rev, req)) = again.next() {
            // Counted out of the window's bytes already: size 0.
            let f = self.flight(rev, req, 0);
            let r = self.answer(f)?;
            if !r.succeeded {
                bail!(
                    "replaying revision {rev}: its compare failed after the revision before it \
                     applied: the member does not hold the history replayed so far"
                );
            }
            applied(rev, &r)?;
        }
        // The rest in flight again, oldest first, ahead of anything newer.
        for (rev, req) in again {
            let size = prost::Message::encoded_len(&req);
            self.bytes += size;
            let f = self.flight(rev, req, size);
            self.inflight.push_back(f);
        }
        Ok(())
    }
}

/// A succeeded answer must name the revision it was to make.
fn applied(rev: u64, r: &TxnResponse) -> Result<()> {
    let got = r
        .header
        .as_ref()
        .map_or(0, |h| u64::try_from(h.revision).unwrap_or(0));
    if got != rev {
        bail!(
            "replaying revision {rev}, etcd answered with revision {got}: the replay would not \
             reproduce the original history"
        );
    }
    Ok(())
}

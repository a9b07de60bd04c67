//! Change segments, pure (no remote call here): their names, their bytes
//! (zstd-compressed JSON lines: a header, then one event per line), the
//! checks a reader makes of one segment, and of a chain of them before a
//! replay. docs/change-capture.md is the contract.
//!
//! ```text
//! <endpoint>/<machine-id>/changes/<CHAIN>/<FIRST>-<LAST>-<SHA>.seg.zst
//! ```

use std::io::{BufRead, Read, Write};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::hex;

pub const CHANGES_DIR: &str = "changes";
/// In a fetched `changes/`: where a point-in-time fetch asks the replay to
/// stop (docs/point-in-time.md).
pub const TARGET_NAME: &str = "TARGET.json";

/// `changes/TARGET.json`: replay up to and including `revision`, no
/// further.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayTarget {
    pub revision: u64,
}
pub const SEGMENT_FORMAT: u32 = 1;
const SUFFIX: &str = ".seg.zst";
/// How many hex digits of the object's sha256 its name carries.
const NAME_SHA: usize = 16;
/// Refused beyond this, decompressed: a segment closes at
/// `--segment-bytes` (MiBs), so anything near this is not one of ours.
const MAX_DECODED: u64 = 1 << 30;

/// A segment's name: the revisions it covers and its hash's prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    pub first: u64,
    pub last: u64,
    pub sha: String,
}

impl SegmentName {
    /// Its file name; None for anything that is not a segment's name
    /// (rclone's temporary files among them).
    pub fn parse(name: &str) -> Option<SegmentName> {
        let stem = name.strip_suffix(SUFFIX)?;
        let mut parts = stem.split('-');
        let (first, last, sha) = (parts.next()?, parts.next()?, parts.next()?);
        let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
        if parts.next().is_some()
            || !digits(first)
            || !digits(last)
            || sha.len() != NAME_SHA
            || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        Some(SegmentName {
            first: first.parse().ok()?,
            last: last.parse().ok()?,
            sha: sha.to_owned(),
        })
    }

    pub fn file_name(&self) -> String {
        format!("{:020}-{:020}-{}{SUFFIX}", self.first, self.last, self.sha)
    }
}

impl std::fmt::Display for SegmentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file_name())
    }
}

/// A lease first seen in a segment, with the TTL it was granted with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseSeen {
    pub id: i64,
    pub ttl: i64,
}

/// A lease found expired or revoked when the segment closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGone {
    pub id: i64,
    pub rev: u64,
}

/// A segment's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    pub format: u32,
    pub chain: String,
    pub seq: u64,
    /// The revision the chain's watch started at.
    pub start: u64,
    pub first: u64,
    pub last: u64,
    /// The whole sha256 of the previous segment's object; None for seq 0.
    pub prev: Option<String>,
    /// The generation the chain started from (for people).
    pub base: String,
    /// Whose changes: the member and its cluster (hex ids, as etcd's
    /// status gives them), and the host the watcher ran on.
    pub member_id: String,
    pub cluster_id: String,
    pub host: String,
    /// When the segment was opened and closed (Unix milliseconds).
    pub opened_unix_ms: u64,
    pub closed_unix_ms: u64,
    /// How many event lines follow the header.
    pub events: u64,
    /// Leases first seen here, with their TTLs (granted before the replay
    /// of this segment's first revision).
    pub leases: Vec<LeaseSeen>,
    /// Leases found gone when the segment closed.
    pub leases_gone: Vec<LeaseGone>,
}

/// One change, as the watch reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub rev: u64,
    /// When the watcher received it (Unix milliseconds).
    pub ms: u64,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Put {
        #[serde(with = "b64")]
        key: Vec<u8>,
        #[serde(with = "b64")]
        value: Vec<u8>,
        lease: i64,
        /// The key's create revision and version after the put.
        create: u64,
        ver: u64,
    },
    Del {
        #[serde(with = "b64")]
        key: Vec<u8>,
    },
}

impl Event {
    pub fn key(&self) -> &[u8] {
        match &self.op {
            Op::Put { key, .. } | Op::Del { key } => key,
        }
    }

    /// Roughly what it costs to hold (for `--segment-bytes`).
    pub fn size(&self) -> usize {
        64 + match &self.op {
            Op::Put { key, value, .. } => key.len() + value.len(),
            Op::Del { key } => key.len(),
        }
    }
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// A segment: its header and events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub header: SegmentHeader,
    pub events: Vec<Event>,
}

impl Segment {
    /// When the watcher received its newest event (Unix ms); None for a
    /// segment of no event (never written).
    pub fn received_to(&self) -> Option<u64> {
        self.events.iter().map(|e| e.ms).max()
    }

    /// The first revision of it with an event received after `t_ms`, if
    /// any: a replay to time `t_ms` stops before it
    /// (docs/point-in-time.md: the point is the newest revision every
    /// event up to which was received at or before the time).
    pub fn first_received_after(&self, t_ms: u64) -> Option<u64> {
        self.events.iter().find(|e| e.ms > t_ms).map(|e| e.rev)
    }
}

/// A segment as bytes, ready to upload: its name and whole sha256.
#[derive(Debug)]
pub struct Encoded {
    pub name: SegmentName,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

impl Segment {
    /// Its bytes and name. The header must agree with the events (the
    /// watcher builds both; a disagreement is our bug, refused here).
    pub fn encode(&self) -> Result<Encoded> {
        self.check()?;
        let mut enc = zstd::Encoder::new(Vec::new(), 3)?;
        serde_json::to_writer(&mut enc, &self.header)?;
        enc.write_all(b"\n")?;
        for e in &self.events {
            serde_json::to_writer(&mut enc, e)?;
            enc.write_all(b"\n")?;
        }
        let bytes = enc.finish()?;
        let sha256 = hex(&Sha256::digest(&bytes));
        Ok(Encoded {
            name: SegmentName {
                first: self.header.first,
                last: self.header.last,
                sha: sha256[..NAME_SHA].to_owned(),
            },
            sha256,
            bytes,
        })
    }

    /// Read `bytes` stored as `name`: its hash must match the name, its
    /// header the name and its events. Returns the segment and the whole
    /// sha256 (the next segment's `prev`).
    pub fn decode(name: &SegmentName, bytes: &[u8]) -> Result<(Segment, String)> {
        let sha256 = hex(&Sha256::digest(bytes));
        ensure!(
            sha256.starts_with(&name.sha),
            "segment {name} is corrupt: its bytes hash to {}…, not the {} its name says",
            &sha256[..NAME_SHA],
            name.sha
        );
        let dec =
            zstd::Decoder::new(bytes).with_context(|| format!("segment {name}: not zstd data"))?;
        let mut lines = std::io::BufReader::new(dec.take(MAX_DECODED)).lines();
        let mut next = || -> Result<Option<String>> {
            lines
                .next()
                .transpose()
                .with_context(|| format!("segment {name}: reading it"))
        };
        let head = next()?.with_context(|| format!("segment {name} is empty"))?;
        let header: SegmentHeader = serde_json::from_str(&head)
            .with_context(|| format!("segment {name}: its header does not parse"))?;
        let mut events = Vec::new();
        while let Some(line) = next()? {
            events.push(serde_json::from_str(&line).with_context(|| {
                format!("segment {name}: event {} does not parse", events.len())
            })?);
        }
        let seg = Segment { header, events };
        seg.check().with_context(|| format!("segment {name}"))?;
        ensure!(
            seg.header.first == name.first && seg.header.last == name.last,
            "segment {name}: its header says revisions {}-{}",
            seg.header.first,
            seg.header.last
        );
        Ok((seg, sha256))
    }

    /// The header agrees with the events: the count, the format, and
    /// revisions in order from `first` to `last`.
    fn check(&self) -> Result<()> {
        let h = &self.header;
        ensure!(
            h.format == SEGMENT_FORMAT,
            "segment format {} (this etcd2-backup reads {SEGMENT_FORMAT})",
            h.format
        );
        ensure!(
            h.events == self.events.len() as u64,
            "its header counts {} events, it holds {}",
            h.events,
            self.events.len()
        );
        ensure!(
            h.first <= h.last,
            "revisions {}-{} run backwards",
            h.first,
            h.last
        );
        ensure!(
            (h.seq == 0) == h.prev.is_none(),
            "seq {} with prev {:?}",
            h.seq,
            h.prev
        );
        let (Some(a), Some(b)) = (self.events.first(), self.events.last()) else {
            bail!("it holds no event");
        };
        ensure!(
            a.rev == h.first && b.rev == h.last,
            "its events run from revision {} to {}, its header says {}-{}",
            a.rev,
            b.rev,
            h.first,
            h.last
        );
        if let Some(w) = self.events.windows(2).find(|w| w[1].rev < w[0].rev) {
            bail!(
                "its events go back from revision {} to {}",
                w[0].rev,
                w[1].rev
            );
        }
        Ok(())
    }
}

/// A segment whose name and header were read, in its chain.
#[derive(Debug, Clone)]
pub struct Link {
    pub name: SegmentName,
    pub header: SegmentHeader,
    pub sha256: String,
}

/// What of a chain a replay from base revision `base` takes: the links
/// after the base, checked in order, up to the last revision they reach.
#[derive(Debug)]
pub struct Plan {
    /// Indexes into the links given, in replay order.
    pub take: Vec<usize>,
    /// The newest revision the taken links reach (`base` if none).
    pub reach: u64,
}

/// Why a chain stops short: the last revision it reaches and what breaks
/// it there.
#[derive(Debug)]
pub struct Broken {
    pub reach: u64,
    pub why: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (the changes reach revision {} and no further)",
            self.why, self.reach
        )
    }
}

/// Check `links` (one chain's, sorted by name) for a replay onto a base at
/// revision `base`: the chain started at or before `base + 1`; from the
/// first link reaching past `base`, each link is the next `seq`, names the
/// previous object's sha256, and starts at the previous `last + 1`. The
/// first problem is [`Broken`], with how far the links before it reach.
pub fn plan(base: u64, links: &[Link]) -> Result<Plan, Broken> {
    let mut take = Vec::new();
    let mut reach = base;
    let mut before: Option<&Link> = None;
    for (i, l) in links.iter().enumerate() {
        let h = &l.header;
        if h.last <= base {
            before = Some(l);
            continue;
        }
        let broken = |why: String| Broken { reach, why };
        match before {
            None if take.is_empty() => {
                if h.start > base + 1 {
                    return Err(broken(format!(
                        "chain {} starts at revision {}, after the base's {base} + 1",
                        h.chain, h.start
                    )));
                }
                if h.first > base + 1 {
                    return Err(broken(format!(
                        "the segments just after revision {base} are missing: the first one \
                         there, {}, starts at revision {}",
                        l.name, h.first
                    )));
                }
            }
            _ => {
                let p = before.expect("a link before this one");
                if h.seq != p.header.seq + 1 || h.first != p.header.last + 1 {
                    return Err(broken(format!(
                        "a segment is missing or out of order after {} (seq {}, revision {}): the \
                         next is {} (seq {})",
                        p.name, p.header.seq, p.header.last, l.name, h.seq
                    )));
                }
                if h.prev.as_deref() != Some(p.sha256.as_str()) {
                    return Err(broken(format!(
                        "segment {} does not follow {}: its prev hash names another segment",
                        l.name, p.name
                    )));
                }
            }
        }
        take.push(i);
        reach = h.last;
        before = Some(l);
    }
    Ok(Plan { take, reach })
}

/// The segments of one chain directory, by name (revision order); other
/// names are passed over.
pub fn segment_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<SegmentName> {
    let mut v: Vec<SegmentName> = names.into_iter().filter_map(SegmentName::parse).collect();
    v.sort();
    v
}

/// The base64 of a key, as segments and messages spell it.
pub fn key_b64(key: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: u64, key: &str) -> Event {
        Event {
            rev,
            ms: 1,
            op: Op::Put {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                lease: 0,
                create: rev,
                ver: 1,
            },
        }
    }

    fn segment(seq: u64, first: u64, last: u64, prev: Option<String>) -> Segment {
        let events: Vec<Event> = (first..=last).map(|r| put(r, &format!("/k{r}"))).collect();
        Segment {
            header: SegmentHeader {
                format: SEGMENT_FORMAT,
                chain: "c".into(),
                seq,
                start: 10,
                first,
                last,
                prev,
                base: "g".into(),
                member_id: "m".into(),
                cluster_id: "c".into(),
                host: "h".into(),
                opened_unix_ms: 0,
                closed_unix_ms: 0,
                events: events.len() as u64,
                leases: vec![],
                leases_gone: vec![],
            },
            events,
        }
    }

    /// A chain of segments covering 10..=14, 15..=19, 20..=24.
    fn chain() -> Vec<(Link, Encoded)> {
        let mut out: Vec<(Link, Encoded)> = Vec::new();
        for (seq, first) in [(0, 10), (1, 15), (2, 20)] {
            let prev = out.last().map(|(l, _)| l.sha256.clone());
            let s = segment(seq, first, first + 4, prev);
            let e = s.encode().unwrap();
            let (back, sha) = Segment::decode(&e.name, &e.bytes).unwrap();
            assert_eq!(back, s);
            out.push((
                Link {
                    name: e.name.clone(),
                    header: back.header,
                    sha256: sha,
                },
                e,
            ));
        }
        out
    }

    fn links(c: &[(Link, Encoded)]) -> Vec<Link> {
        c.iter().map(|(l, _)| l.clone()).collect()
    }

    #[test]
    fn names_round_trip_and_sort_by_revision_and_others_are_passed_over() {
        let c = chain();
        let name = c[1].0.name.file_name();
        assert_eq!(SegmentName::parse(&name).as_ref(), Some(&c[1].0.name));
        assert!(name.starts_with("00000000000000000015-00000000000000000019-"));
        for other in [
            format!("{name}.partial"),
            format!(".{name}"),
            "LATEST.json".into(),
            name.replace(".seg.zst", ".seg"),
            name.replace("-0000", "-x000"),
        ] {
            assert_eq!(SegmentName::parse(&other), None, "{other}");
        }
        let names = [
            c[2].0.name.file_name(),
            "junk".into(),
            c[0].0.name.file_name(),
        ];
        let sorted = segment_names(names.iter().map(String::as_str));
        assert_eq!(sorted, vec![c[0].0.name.clone(), c[2].0.name.clone()]);
    }

    #[test]
    fn a_flipped_byte_or_a_header_that_disagrees_is_refused() {
        let c = chain();
        let (l, e) = &c[0];
        let mut bad = e.bytes.clone();
        let i = bad.len() / 2;
        bad[i] ^= 0x20;
        let err = Segment::decode(&l.name, &bad).unwrap_err();
        assert!(format!("{err:#}").contains("is corrupt"), "{err:#}");

        // Well hashed, but stored under another segment's revisions.
        let renamed = SegmentName {
            first: 11,
            ..l.name.clone()
        };
        let err = Segment::decode(&renamed, &e.bytes).unwrap_err();
        assert!(
            format!("{err:#}").contains("its header says revisions 10-14"),
            "{err:#}"
        );

        let mut s = segment(0, 10, 12, None);
        s.header.events = 2;
        assert!(s.encode().is_err());
        let mut s = segment(0, 10, 12, None);
        s.events.swap(0, 1);
        assert!(format!("{:#}", s.encode().unwrap_err()).contains("run from revision 11"));
    }

    #[test]
    fn a_whole_chain_plans_from_just_after_the_base() {
        let l = links(&chain());
        let p = plan(9, &l).unwrap();
        assert_eq!((p.take, p.reach), (vec![0, 1, 2], 24));
        // The base holds revision 16: the first segment is skipped, the
        // second replays from 17 (events at or before 16 skipped then).
        let p = plan(16, &l).unwrap();
        assert_eq!((p.take, p.reach), (vec![1, 2], 24));
        let p = plan(24, &l).unwrap();
        assert_eq!((p.take, p.reach), (vec![], 24));
    }

    #[test]
    fn a_gap_a_duplicate_a_reordering_or_a_late_start_is_broken_with_its_reach() {
        let l = links(&chain());
        let missing = vec![l[0].clone(), l[2].clone()];
        let b = plan(9, &missing).unwrap_err();
        assert_eq!(b.reach, 14);
        assert!(b.why.contains("missing or out of order"), "{b}");

        let dup = vec![l[0].clone(), l[1].clone(), l[1].clone()];
        assert_eq!(plan(9, &dup).unwrap_err().reach, 19);

        let reordered = vec![l[0].clone(), l[2].clone(), l[1].clone()];
        assert_eq!(plan(9, &reordered).unwrap_err().reach, 14);

        // The right revisions and seq, another chain's object before it.
        let mut forged = l.clone();
        forged[1].header.prev = Some("0".repeat(64));
        let b = plan(9, &forged).unwrap_err();
        assert!(b.why.contains("prev hash"), "{b}");
        assert_eq!(b.reach, 14);

        // The chain's watch started after the base: revision 9 - not
        // captured, nothing to replay from.
        let b = plan(8, &l).unwrap_err();
        assert_eq!(b.reach, 8);
        assert!(b.why.contains("starts at revision 10"), "{b}");
    }
}

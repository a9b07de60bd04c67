//! etcd's `Maintenance.Snapshot` stream as it comes off the wire: gRPC
//! frames (a flag byte, a 4-byte big-endian length, a protobuf
//! SnapshotResponse), decoded as tonic does, fed to the checker
//! etcd2-snapshot writes the v3 snapshot through. Never a panic; a stream
//! it ends as whole yields exactly the announced db and its matching
//! sha256 trailer, and says the sha256 of what it yielded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sha2::{Digest, Sha256};

use etcd2_backup::etcd::grpc::{Event, SnapshotDecoder, SnapshotResponse};

fuzz_target!(|data: &[u8]| {
    let mut dec = SnapshotDecoder::default();
    let mut file = Vec::new();
    let mut db_size = None;
    let mut rest = data;
    loop {
        if rest.len() < 5 {
            break;
        }
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(msg) = rest.get(5..5 + len) else {
            return; // a cut frame: tonic fails the stream
        };
        rest = &rest[5 + len..];
        let Ok(m) = SnapshotResponse::decode(msg) else {
            return;
        };
        match dec.push(m) {
            // Empty chunks leave the decoder at 0 bytes, so it may say
            // Start again: the consumer takes a later one as data.
            Ok(Some(Event::Start { db_size: n, first })) => {
                assert!(db_size.is_none_or(|d| d == n), "Start with another size");
                db_size = Some(n);
                file.extend_from_slice(&first);
            }
            Ok(Some(Event::Data(d))) => {
                assert!(db_size.is_some(), "Data before Start");
                file.extend_from_slice(&d);
            }
            Ok(Some(Event::End { .. })) => panic!("End from push"),
            Ok(None) => {}
            Err(_) => return,
        }
    }
    if let Ok(Event::End { file_sha256 }) = dec.end() {
        let n = db_size.expect("End without Start");
        assert_eq!(file.len() as u64, n + 32, "the file is not db + trailer");
        let (db, trailer) = file.split_at(file.len() - 32);
        assert_eq!(
            Sha256::digest(db).as_slice(),
            trailer,
            "the trailer does not match"
        );
        let got: String = Sha256::digest(&file)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, file_sha256, "End's sha256 is not the file's");
    }
});

//! A generation's sidecar (`generations/<GEN>.json`) as the remote holds
//! it. The input is the generation's name (first line; the listing gives
//! it) and the sidecar's bytes. A sidecar that is accepted names only its
//! own generation and its archive beside it, and survives a write and read.
#![no_main]

use libfuzzer_sys::fuzz_target;

use etcd2_backup::rclone::Small;
use etcd2_backup::store::{self, Pointer, PointerState, Sidecar};

fuzz_target!(|data: &[u8]| {
    let (id, json) = match data.iter().position(|b| *b == b'\n') {
        Some(n) => (&data[..n], &data[n + 1..]),
        None => (&b""[..], data),
    };
    let Ok(id) = std::str::from_utf8(id) else {
        return;
    };
    let id = if store::valid_generation_id(id) {
        id
    } else {
        "20261202T150000.000Z-0123abcd"
    };
    let Ok(sc) = store::parse_sidecar(id, "r:/m/generations/x.json", json) else {
        return;
    };
    assert_eq!(sc.generation, id);
    assert_eq!(sc.archive, format!("{id}.{}", sc.codec.extension()));
    let back: Sidecar =
        serde_json::from_slice(&serde_json::to_vec(&sc).expect("serialises")).expect("parses");
    assert_eq!(back, sc);
    // The pointer push writes for it is one a reader follows.
    let p = Pointer::of(&sc);
    let bytes = serde_json::to_vec_pretty(&p).expect("serialises");
    match store::pointer_state(Small::Bytes(bytes), "r:/m/generations") {
        PointerState::Valid(q) => assert_eq!(q, p),
        PointerState::Damaged(e) => panic!("the pointer to an accepted sidecar is damaged: {e}"),
        PointerState::Missing => panic!("the pointer to an accepted sidecar is missing"),
    }
});

//! LATEST.json as the remote holds it: never a panic, and a pointer taken
//! as valid names a generation id (so no object outside generations/).
#![no_main]

use libfuzzer_sys::fuzz_target;

use etcd2_backup::rclone::Small;
use etcd2_backup::store::{self, Pointer, PointerState};

fuzz_target!(|data: &[u8]| {
    match store::pointer_state(Small::Bytes(data.to_vec()), "r:/m/generations") {
        PointerState::Valid(p) => {
            assert!(
                store::valid_generation_id(&p.generation),
                "{:?}",
                p.generation
            );
            assert!(!p.generation.contains('/'));
            let back: Pointer =
                serde_json::from_slice(&serde_json::to_vec(&p).expect("serialises"))
                    .expect("parses");
            assert_eq!(back, p);
        }
        PointerState::Missing => assert!(data.is_empty()),
        PointerState::Damaged(e) => assert!(!e.is_empty()),
    }
});

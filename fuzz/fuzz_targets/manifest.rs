//! manifest.json as a remote, an archive or a verified directory holds
//! it: parsing never panics, and a manifest that parses is written back
//! (as the writers and etcd2-fetch --into write it) to one that parses
//! equal.
#![no_main]

use libfuzzer_sys::fuzz_target;

use etcd2_backup::archive::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    let _ = m.total_size();
    let json = serde_json::to_vec_pretty(&m).expect("a parsed manifest serialises");
    let back: Manifest = serde_json::from_slice(&json).expect("a written manifest parses");
    assert_eq!(back, m, "manifest changed in a write and read");
});

//! What rclone answers, as the tools read it: `lsjson` output, rcd's
//! operations/list, operations/stat, operations/fsinfo and backend/command
//! answers, and its error replies. Never a panic; a listing sorts into generations whose
//! ids are ours (no name outside generations/); an error reply is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

use etcd2_backup::{rcd, rclone, store};

fn check_listing(entries: &[rclone::Entry]) {
    let l = store::Listing::from_entries(entries);
    for id in l.archives.keys().chain(&l.sidecars) {
        assert!(store::valid_generation_id(id), "generation {id:?}");
    }
    for (id, (name, _)) in &l.archives {
        assert!(name.starts_with(id.as_str()), "{name} for {id}");
    }
    for id in l.complete() {
        assert!(l.archives.contains_key(&id) && l.sidecars.contains(&id));
    }
    // A listed name joins below its directory and stays there.
    let dir = rclone::RemotePath::root(&rclone::Endpoint::parse("r:gen").unwrap());
    for e in entries {
        let p = dir.join(&e.name);
        assert_eq!(p.fs(), "r:gen");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(entries) = rclone::parse_lsjson(&text) {
        check_listing(&entries);
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
        if let Ok(entries) = rclone::parse_rc_list(v.clone()) {
            check_listing(&entries);
        }
        if let Ok(Some(e)) = rclone::parse_rc_stat(v.clone()) {
            check_listing(std::slice::from_ref(&e));
        }
        let _ = rclone::rc_result(v.clone());
        // Only hash types we compare can come out: the type says so.
        let _ = rclone::fsinfo_compared_hash(Some(&v));
    }
    let e = rcd::reply_error(500, &text);
    assert!(!e.contains('\n'), "an error of two lines: {e:?}");
});

//! What an operator types or a settings file gives as a value: durations,
//! RCLONE_ENDPOINT and machine-ids (the remote layout), etcd endpoints,
//! remote paths. Never a panic; a layout that is accepted keeps every
//! object under its machine's directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

use etcd2_backup::etcd::grpc;
use etcd2_backup::{cli, node, rcd, rclone, store};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    if let Ok(d) = cli::parse_duration(text) {
        assert!(d <= cli::MAX_DURATION);
        let _ = cmd_duration(d);
    }
    let (a, b) = text
        .split_once('\n')
        .unwrap_or((text, "0123456789abcdef0123456789abcdef"));
    if let Ok(l) = store::Layout::new(a, b) {
        node::validate_machine_id(&l.machine_id).expect("a layout's machine-id is valid");
        for p in [l.pointer(), l.generations(), l.legacy_previous()] {
            // Under the endpoint as given, and shown as rclone joins it.
            assert_eq!(p.fs(), l.endpoint, "{p} is not under {}", l.endpoint);
            assert!(p.to_string().starts_with(&l.endpoint), "{p}");
            assert_eq!(p.parent().join(p.name()), p, "{p} does not rejoin");
            let _ = rcd::servable(p.fs());
        }
        let base = l.base().rel().to_owned();
        assert!(l.pointer().rel().starts_with(&base) && l.generations().rel().starts_with(&base));
    }
    let _ = node::validate_machine_id(text);
    let _ = rclone::remote_name(text);
    let _ = rcd::servable(text);
    for tls in [false, true] {
        if let Ok(u) = grpc::endpoint_url(text, tls) {
            assert!(u.contains("://"), "{u} has no scheme");
        }
    }
    let (_, how) = cli::pick_endpoints(Some(a), Some(b));
    assert!(!how.is_empty());
});

fn cmd_duration(d: std::time::Duration) -> String {
    etcd2_backup::cmd::human_duration(d)
}

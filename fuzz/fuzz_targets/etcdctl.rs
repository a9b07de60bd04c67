//! What etcdctl prints, as the tools read it: `endpoint status`, `member
//! list` and `alarm list` in JSON, the versions the programs print, v2
//! `ls`, and the server's refusals. Never a panic; versions print as they
//! are found; alarms are named and never "none".
#![no_main]

use libfuzzer_sys::fuzz_target;

use etcd2_backup::etcd::{self, Version};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    if let Ok(s) = etcd::parse_endpoint_status(text) {
        let _ = etcd::hex_id(s.status.header.member_id);
    }
    if let Ok(l) = etcd::parse_member_list(text) {
        for m in &l.members {
            let _ = (m.started(), etcd::hex_id(m.id));
        }
    }
    if let Ok(alarms) = etcd::parse_alarm_list(text) {
        for a in &alarms {
            assert!(!a.alarm.is_empty() && a.alarm != "alarm 0", "{a:?}");
            assert!(u64::from_str_radix(&a.member_id, 16).is_ok(), "{a:?}");
        }
        let _ = etcd::describe_alarms(&alarms);
    }
    if let Some(v) = Version::find(text) {
        assert_eq!(Version::find(&v.to_string()), Some(v));
        let _ = (
            v.has_v2(),
            v.restore_bumps_revision("etcdutl"),
            v.restore_bumps_revision("etcdctl"),
        );
    }
    let _ = etcd::refusal(text);
    let _ = etcd::is_transient_reconfig_error(text);
    let _ = etcd::v2_api_disabled(text);
    let _ = etcd::parse_v2_ls_has_keys(text);
});

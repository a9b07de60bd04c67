//! The archive reader (etcd2-fetch, etcd2-verify, etcd2-push's check) on
//! whatever a remote or a file holds: compressed bytes as they arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    etcd2_backup_fuzz::check_archive(data);
});

//! The archive reader below the compression: the input is the tar stream
//! (its header checksums repaired, so that a changed header is read as
//! one), compressed here as etcd2-snapshot's gzip archives are. Mutating
//! compressed bytes rarely gets past the codec's own checksums; this
//! target reaches the tar and manifest checks.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut tar = data.to_vec();
    etcd2_backup_fuzz::fix_tar_checksums(&mut tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip into memory");
    let archive = gz.finish().expect("gzip into memory");
    etcd2_backup_fuzz::check_archive(&archive);
});

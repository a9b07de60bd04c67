//! The writer and the reader together: whatever files etcd2-snapshot is
//! given (any names a directory listing can give, any bytes), the archive
//! it writes reads back verified, to the manifest it wrote.
#![no_main]

use libfuzzer_sys::{arbitrary, fuzz_target};

use etcd2_backup::archive::{self, Api, Codec, FileEntry, Manifest, FORMAT_SUMMED};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    zstd: bool,
    files: Vec<(String, Vec<u8>)>,
    member_name: String,
    revision: Option<u64>,
}

/// A name `archive::list_files` can return: relative, `/`-separated
/// plain components, no NUL; not one of the archive's own entries.
fn listable(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && p != archive::MANIFEST_NAME
        && p != archive::SUMS_NAME
}

fuzz_target!(|input: Input| {
    if !input.files.iter().all(|(p, _)| listable(p)) {
        return;
    }
    let manifest = Manifest {
        format: FORMAT_SUMMED,
        tool: "etcd2-snapshot".into(),
        api: Api::V3,
        codec: if input.zstd { Codec::Zstd } else { Codec::Gzip },
        etcd_version: "3.4.23".into(),
        member_name: input.member_name,
        member_id: "8e9e05c52164694d".into(),
        cluster_id: "cdf818194e3a8c32".into(),
        revision: input.revision,
        raft_index: Some(4),
        key_count: Some(1),
        created_at: "2026-12-02T15:00:00Z".into(),
        created_unix: 1_795_000_000,
        host: "fuzz".into(),
        machine_id: Some("0123456789abcdef0123456789abcdef".into()),
        files: input
            .files
            .iter()
            .map(|(p, b)| FileEntry {
                path: p.clone(),
                size: b.len() as u64,
                sha256: String::new(),
            })
            .collect(),
        alarms: vec![],
        converted_from: None,
        imported_from: None,
    };
    let contents: std::collections::BTreeMap<&str, &[u8]> = input
        .files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    let written = archive::write_streamed(Vec::new(), &manifest, 1, 0, |f, w| {
        w.write_all(contents[f.path.as_str()])?;
        Ok(())
    });
    // The writer may refuse a name (tar cannot hold it); then there is
    // nothing to read back. What it writes, the reader must read: a backup
    // that cannot be restored is worse than none.
    let Ok((bytes, done)) = written else {
        return;
    };
    let unique = contents.len() == input.files.len();
    let (read, _, _) = match archive::verify_stream(bytes.as_slice(), None) {
        Ok(r) => r,
        Err(e) if !unique => {
            assert!(format!("{e:#}").contains("twice"), "{e:#}");
            return;
        }
        Err(e) => panic!("etcd2-snapshot wrote an archive it cannot read: {e:#}"),
    };
    assert!(unique, "an archive listing a file twice reads as verified");
    assert_eq!(read, done, "the archive reads back to another manifest");
    etcd2_backup_fuzz::check_archive(&bytes);
});

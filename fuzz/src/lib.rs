//! What the fuzz targets share: the archive reader's invariants, and the
//! tar checksum repair that lets the fuzzer change a tar header without
//! every change being refused at the checksum.
//!
//! A target fails (libFuzzer saves the input) on a panic anywhere below it,
//! and on a broken invariant, asserted here with the input's consequence.

use std::path::{Path, PathBuf};

use etcd2_backup::archive::{self, Manifest, MANIFEST_NAME};

/// Where the archive targets extract: `ETCD2_BACKUP_FUZZ_SCRATCH` (`make
/// fuzz` makes one per run and removes it, with whatever a crash left),
/// else memory (/dev/shm) where there is one, so that tens of thousands of
/// runs a minute touch no disk.
pub fn scratch() -> PathBuf {
    if let Some(d) = std::env::var_os("ETCD2_BACKUP_FUZZ_SCRATCH") {
        return PathBuf::from(d);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What every reader of an archive promises of the manifest it returns:
/// each file named once, by a plain relative path, with its sha256.
pub fn check_returned_manifest(m: &Manifest) {
    let mut seen = std::collections::BTreeSet::new();
    for f in &m.files {
        assert!(
            is_sha256(&f.sha256),
            "a verified archive's manifest has {:?} without its sha256: {:?}",
            f.path,
            f.sha256
        );
        assert!(seen.insert(&f.path), "{:?} listed twice", f.path);
        let p = Path::new(&f.path);
        assert!(
            p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
            "a verified archive names {:?}, which is not a plain relative path",
            f.path
        );
    }
}

/// The archive reader on `bytes`: it never panics, and what it accepts is
/// whole. An archive read as verified without extracting is read so with
/// extracting too (and the other way round), to the same manifest, the
/// size and sha256 of every byte of the input; extracted, it leaves only
/// the listed files, inside the destination, and the directory it leaves
/// is what `etcd2-restore` accepts (`verify_dir`).
pub fn check_archive(bytes: &[u8]) {
    let verified = archive::verify_stream(bytes, None);
    let tmp = tempfile::Builder::new()
        .prefix("etcd2-backup-fuzz.")
        .tempdir_in(scratch())
        .expect("a scratch directory");
    let dest = tmp.path().join("into");
    let extracted = archive::read_verified(bytes, Some(&dest));
    match (&verified, &extracted) {
        (Ok((m, size, sha)), Ok(m2)) => {
            assert_eq!(m, m2, "extracting returned another manifest");
            assert_eq!(*size, bytes.len() as u64, "verify_stream's size");
            assert_eq!(
                *sha,
                etcd2_backup::digest::sha256_hex(bytes),
                "verify_stream's sha256"
            );
            check_returned_manifest(m);
            archive::mark_verified_dir(m, &dest).expect("writing the verified dir's manifest");
            let again = archive::verify_dir(&dest)
                .expect("etcd2-restore refuses the directory that etcd2-fetch --into extracted");
            assert_eq!(&again, m, "verify_dir read another manifest");
            let mut on_disk = archive::list_files(&dest).expect("listing what was extracted");
            on_disk.retain(|p| p != MANIFEST_NAME);
            assert_eq!(
                on_disk.len(),
                m.files.len(),
                "extracted {on_disk:?} for the manifest's {:?}",
                m.files.iter().map(|f| &f.path).collect::<Vec<_>>()
            );
            let left: Vec<_> = std::fs::read_dir(tmp.path())
                .expect("listing the scratch dir")
                .map(|e| e.expect("an entry").file_name())
                .collect();
            assert_eq!(
                left,
                vec![std::ffi::OsString::from("into")],
                "written outside --into"
            );
        }
        (Ok(_), Err(e)) => {
            // Extracting refuses what verifying accepts only for a reason of
            // the file system: two listed paths that cannot both be files
            // (`a` and `a/b`), or one the kernel will not create.
            let text = format!("{e:#}");
            assert!(
                text.contains("creating "),
                "verifies but does not extract: {text}"
            );
        }
        (Err(e), Ok(_)) => panic!("extracts but does not verify: {e:#}"),
        (Err(_), Err(_)) => {}
    }
}

/// Give every tar header in `tar` the checksum it should have, walking
/// header by header as a reader does (a header, then its data rounded up
/// to 512 bytes), up to the first all-zero block. Headers whose size field
/// does not parse end the walk.
pub fn fix_tar_checksums(tar: &mut [u8]) {
    let mut at = 0usize;
    while at + 512 <= tar.len() {
        let block = &mut tar[at..at + 512];
        if block.iter().all(|b| *b == 0) {
            return;
        }
        block[148..156].copy_from_slice(b"        ");
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
        let text = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(text.as_bytes());
        let Some(size) = octal(&block[124..136]) else {
            return;
        };
        let Some(next) = size
            .checked_add(511)
            .map(|s| s / 512 * 512)
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| s.checked_add(at + 512))
        else {
            return;
        };
        at = next;
    }
}

fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(s, 8).ok()
}

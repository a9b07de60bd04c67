//! The settings file (/etc/etcd2-backup/etcd2-backup.env), an operator's:
//! the parser never panics; what it reads are valid names, each once; and
//! the file written from what it read (NAME=quote(value), as the installer
//! writes) reads back to the same, without a warning. The same bytes as a
//! settings drop-in (the installer's input) give a file it reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

use etcd2_backup::settings;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = settings::read(data) {
        let mut names = std::collections::BTreeSet::new();
        for (n, v) in &s.vars {
            assert!(
                n.bytes().next().is_some_and(|c| !c.is_ascii_digit())
                    && n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'),
                "read the name {n:?}"
            );
            assert!(names.insert(n), "{n} read twice");
            assert!(!v.contains('\0'));
        }
        // Invalid UTF-8 is refused only in a name or value (as systemd does).
        if let Ok(text) = std::str::from_utf8(data) {
            assert_eq!(settings::parse(text).as_ref(), Ok(&s.vars));
        }
        let written: String = s
            .vars
            .iter()
            .map(|(n, v)| format!("{n}={}\n", settings::quote(v)))
            .collect();
        let back = settings::read(written.as_bytes()).expect("our own file reads");
        assert_eq!(back.vars, s.vars, "written as {written:?}");
        assert!(back.notes.is_empty(), "{:?} for {written:?}", back.notes);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let out = settings::from_dropin(text, "# written by the installer\n");
        if !out.contains('\0') {
            settings::read(out.as_bytes()).expect("the installer's settings file reads");
        }
    }
});

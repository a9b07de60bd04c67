//! The version matrix, generated from scripts/versions (the one place the
//! etcd versions are pinned): a round trip per etcd build, and an upgrade
//! restore from each minor line's newest build to the next line's. Each
//! test's name carries its versions, so the matrix's rows show in the
//! test output (`versions::round_trip_on_etcd_3_7_3`).

use std::fmt::Write as _;

fn main() {
    let versions = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/versions");
    println!("cargo:rerun-if-changed={versions}");
    println!("cargo:rerun-if-changed=build.rs");
    let text = std::fs::read_to_string(versions).expect("reading scripts/versions");
    let mut etcd: Vec<(u32, u32, u32)> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() < 3 || w[0] != "etcd" {
                return None;
            }
            let n: Vec<u32> = w[1]
                .split('.')
                .map(|n| n.parse().expect("scripts/versions: a version is X.Y.Z"))
                .collect();
            assert_eq!(n.len(), 3, "scripts/versions: {} is not X.Y.Z", w[1]);
            Some((n[0], n[1], n[2]))
        })
        .collect();
    etcd.sort();
    let name = |v: (u32, u32, u32)| format!("{}_{}_{}", v.0, v.1, v.2);
    let dotted = |v: (u32, u32, u32)| format!("{}.{}.{}", v.0, v.1, v.2);
    let mut out = String::new();
    for &v in &etcd {
        writeln!(
            out,
            "#[test]\nfn round_trip_on_etcd_{}() {{\n    round_trip({:?});\n}}\n",
            name(v),
            dotted(v)
        )
        .unwrap();
    }
    // The whole cluster restored at once on every build but the system's
    // (tests/whole_cluster.rs runs that one).
    for l in text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
    {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() >= 3 && w[0] == "etcd" && w[2] != "system" {
            writeln!(
                out,
                "#[test]\nfn whole_cluster_restore_on_etcd_{}() {{\n    crate::whole_cluster::restored_at_once(Some(&bin_of({:?})));\n}}\n",
                w[1].replace('.', "_"),
                w[1]
            )
            .unwrap();
        }
    }
    // The newest build of each minor line, oldest line first.
    let mut lines: Vec<(u32, u32, u32)> = Vec::new();
    for &v in &etcd {
        match lines.last_mut() {
            Some(l) if (l.0, l.1) == (v.0, v.1) => *l = v,
            _ => lines.push(v),
        }
    }
    for w in lines.windows(2) {
        writeln!(
            out,
            "#[test]\nfn upgrade_restore_from_etcd_{}_to_etcd_{}() {{\n    upgrade_restore({:?}, {:?});\n}}\n",
            name(w[0]),
            name(w[1]),
            dotted(w[0]),
            dotted(w[1])
        )
        .unwrap();
    }
    let dest =
        std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("version_matrix.rs");
    std::fs::write(dest, out).expect("writing version_matrix.rs");
}

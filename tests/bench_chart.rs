//! The chart `make bench` draws (scripts/bench.d/svg.py), from statistics
//! made up here: round tick labels, and a panel only for what the run
//! measured. (The numbers themselves are the bench's, not a test's.)

use std::process::Command;

use harness::{require, run_ok, workspace};

/// svg.py's chart of a run that measured backups at three sizes but no
/// recovery, with times up to about 1.4 ks: its SVG text.
fn chart_of_a_run_without_recovery() -> String {
    require("python3", "python3");
    let script = r#"
import sys, types
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[1])
import svg
sizes = {"16MB": {"size_bytes": 16 << 20}, "256MB": {"size_bytes": 256 << 20}, "1GiB": {"size_bytes": 1 << 30}}
B = {}
for s, t in [("16MB", 2.7), ("256MB", 31.0), ("1GiB", 1430.0)]:
    B[(s, "v3", "local", "ours")] = {"wall_med": t, "bytes_up_med": t * 1e6}
    B[(s, "v3", "-", "floor-snap")] = {"wall_med": t / 2}
st = types.SimpleNamespace(B=B, R={}, sizes=sizes, size_names=list(sizes))
sys.stdout.write(svg.chart(st))
"#;
    let out = run_ok(
        Command::new("python3")
            .args(["-c", script])
            .arg(workspace().join("scripts/bench.d")),
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_bench_chart_has_round_ticks_and_no_empty_panel() {
    let svg = chart_of_a_run_without_recovery();
    let titles: Vec<&str> = svg
        .split("font-weight=\"bold\">")
        .skip(1)
        .map(|t| t.split('<').next().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Backup cycle, v3 API: wall time",
            "Backup cycle: bytes uploaded"
        ],
        "only the panels the run measured: {svg}"
    );
    let ticks: Vec<&str> = svg
        .split("text-anchor=\"end\">")
        .skip(1)
        .map(|t| t.split('<').next().unwrap())
        .collect();
    assert!(!ticks.is_empty(), "{svg}");
    for t in &ticks {
        let v: f64 = t
            .parse()
            .unwrap_or_else(|_| panic!("tick {t:?} is no plain number"));
        // 1, 2 or 5 times a power of ten, times a whole number.
        let round = [1.0, 2.0, 5.0].iter().any(|m| {
            (-3..5).any(|p| {
                let step = m * 10f64.powi(p);
                ((v / step) - (v / step).round()).abs() < 1e-9 && v / step <= 6.0
            })
        });
        assert!(v == 0.0 || round, "tick {t} is not a round step");
    }
    assert!(
        ticks.contains(&"1500"),
        "the top tick covers 1430 s: {ticks:?}"
    );
    // The page is as wide as its panels, so no title runs off it.
    assert!(svg.contains("width=\"765\""), "{}", &svg[..200]);
}

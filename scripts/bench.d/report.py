#!/usr/bin/env python3
"""report.py RUNS.jsonl META.json REPORT.md DOCS_DIR [BASELINE.json]: turn the raw runs of
scripts/bench into REPORT.md (docs/benchmarks.md), DOCS_DIR/summary.json and
DOCS_DIR/chart.svg. Standard library only. scripts/bench calls generate()
directly and leaves META.json (the host and run description) in build/bench,
so the report can be rebuilt from the runs without re-running the bench.

  stats.py     groups, medians, targets, the codec rule, summary.json
  svg.py       the chart
  markdown.py  the report's text; analysis.md (hand-written) is appended verbatim
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)

import markdown  # noqa: E402
import stats  # noqa: E402
import svg  # noqa: E402

TOOLS_LIST = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools", "tools.list")


def read_tools_list(path=TOOLS_LIST):
    """Our tools' names: tools/tools.list, one per line; blank lines and lines
    starting with # are ignored."""
    try:
        with open(path) as f:
            names = [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
    except OSError as e:
        raise SystemExit(f"bench: cannot read the list of our tools {path}: {e.strerror}")
    if not names:
        raise SystemExit(f"bench: {path} names no tool")
    return names


def load_runs(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def load_baseline(path):
    """The previous run's summary.json (docs/bench/baseline.json), or None
    when there is none; the report then says so."""
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def targets_text(st):
    """The Targets table (Markdown), as scripts/bench prints it at the end."""
    return markdown.targets13(st)


def generate(rows, meta, report_path, docs, tools=None, baseline=None):
    """Write report_path, docs/summary.json and docs/chart.svg; baseline: the
    path of the previous run's summary.json. Returns the statistics."""
    st = stats.compute(rows, meta, tools if tools is not None else read_tools_list(), load_baseline(baseline))
    with open(os.path.join(docs, "chart.svg"), "w") as f:
        f.write(svg.chart(st))
    lines = markdown.report(st)
    with open(os.path.join(docs, "summary.json"), "w") as f:
        f.write(json.dumps(st.summary, indent=1, default=str) + "\n")
    # the analysis written by hand lives in a separate file, appended
    # verbatim, so a re-run keeps it; it cites the numbers by name, not value
    extra = os.path.join(HERE, "analysis.md")
    if os.path.exists(extra):
        with open(extra) as f:
            lines.append(f.read())
    with open(report_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return st


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__.split("\n\n")[0])
    runs, meta, report_path, docs = sys.argv[1:5]
    with open(meta) as f:
        m = json.load(f)
    generate(load_runs(runs), m, report_path, docs,
             baseline=sys.argv[5] if len(sys.argv) == 6 else os.path.join(docs, "baseline.json"))
    print(report_path)


if __name__ == "__main__":
    main()

"""Statistics of scripts/bench's runs (standard library only): the groups and
their medians/min/max, the targets (issue 13: the backup cycle; issue 6:
recovery and freshness), the codec rule, and the summary written to
docs/bench/summary.json. No output here: svg.py draws the
chart and markdown.py writes the report from what compute() returns."""
import statistics as st
from collections import OrderedDict, defaultdict
from types import SimpleNamespace

MiB = 2 ** 20
REMOTES = ("local", "sftp", "s3")
COUNTED = ("rclone", "etcdctl", "etcdutl")  # spawns counted apart; our tools summed as "ours"
SEED_BOUND = 40.0  # seed README: 10000 tx / 1000 tx/s + 30 s
DEFAULT = "zstd-3-t0"  # the default codec configuration of etcd2-snapshot
# the run and host description, as scripts/bench passes it (strings)
MACHINE_KEYS = ("CPU_MODEL", "NPROC", "MEM_TOTAL", "KERNEL", "DISK", "ETCD_VER",
                "RCLONE_VER", "TOOL_VER", "GIT_REV", "REPORT_DATE")


def med(xs): return st.median(xs) if xs else None
def cpu(r): return r["user"] + r["sys"]


def group(rows, scn, *keys):
    """Runs of a scenario by keys; failed runs are reported apart, not timed."""
    g = OrderedDict()
    for r in rows:
        if r["scenario"] == scn and not r.get("failed"):
            g.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return g


def peaks(r):
    """{program: peak KiB} of one run, without etcd (a server, never in the
    measured tree anyway) and without the counting wrapper's shell (the
    instant before its exec, see spawns.py); a process seen only as a zombie
    (peak 0) is left out too."""
    return {k: v for k, v in r.get("peak_kib", {}).items() if v and k not in ("etcd", r.get("wrapper_shell"))}


def spawns_of(r, ours):
    """{rclone, etcdctl, etcdutl, ours: spawns} of one run (exact counts
    when the run has them, else the sampler's n_by_prog, a lower bound)."""
    sp = r.get("spawns")
    if sp is None:
        sp = r.get("n_by_prog", {})
    out = {p: sp.get(p, 0) for p in COUNTED}
    out["ours"] = sum(v for k, v in sp.items() if k in ours)
    return out


def stats(rs, ours):
    def ours_peak(r): return max([v for k, v in r.get("peak_kib", {}).items() if k in ours] or [0])

    def all_peak(r): return max(peaks(r).items(), key=lambda kv: kv[1], default=("–", 0))
    w = [r["wall"] for r in rs]
    top = max((all_peak(r) for r in rs), key=lambda kv: kv[1])
    sp = [spawns_of(r, ours) for r in rs]
    return {"n": len(rs), "wall_med": med(w), "wall_min": min(w), "wall_max": max(w),
            "all_peak_kib": top[1], "all_peak_prog": top[0],
            "spawns_med": {k: med([x[k] for x in sp]) for k in sp[0]},
            "spawns_exact": all("spawns" in r for r in rs),
            "spawns_bypassed": [r["spawns_bypassed"] for r in rs if r.get("spawns_bypassed")],
            "etcd_cpu_med": med([r["etcd_cpu"] for r in rs]) if all("etcd_cpu" in r for r in rs) else None,
            "cpu_med": med([cpu(r) for r in rs]),
            "ours_cpu_med": med([sum(v for k, v in r.get("cpu_by_prog", {}).items() if k in ours) for r in rs]),
            "ours_peak_kib": max(ours_peak(r) for r in rs),
            "peak_by_prog_kib": {p: max(peaks(r).get(p, 0) for r in rs)
                                 for p in sorted({p for r in rs for p in peaks(r)})},
            "rclone_calls_med": med([r.get("n_by_prog", {}).get("rclone", 0) for r in rs]),
            "server_cpu_med": med([r.get("server_cpu", 0) for r in rs]),
            "bytes_up_med": med([r["bytes_up"] for r in rs]) if "bytes_up" in rs[0] else None,
            "bytes_copy_med": med([r.get("bytes_remote_copy", 0) for r in rs]) if "bytes_up" in rs[0] else None,
            "out_bytes_med": med([r["out_bytes"] for r in rs]) if "out_bytes" in rs[0] else None}


def choose(C, size, interval, ncpu):
    """The codec rule, for a backup every INTERVAL s on NCPU cores (kept from
    the codec-only bench): eligible: slowest run within a third of the
    interval, median keeps at most NCPU-1 cores (+10%) busy; among eligible,
    archives within 3% of the smallest; of those the least CPU (5% or 0.05 s
    is a tie: the default wins ties, then its thread count, then its level,
    then the shortest wall). Adds "cores" to each configuration's stats."""
    names = [n for (s, n) in C if s == size and C[(s, n)]["codec"] != "floor"]
    if not names:
        return None
    S = {n: C[(size, n)] for n in names}
    for s in S.values():
        s["cores"] = s["cpu_med"] / s["wall_med"] if s["wall_med"] else 0
    bw, bc = interval / 3, (ncpu - 1) * 1.10
    elig = [n for n in names if S[n]["wall_max"] <= bw and S[n]["cores"] <= bc]
    if not elig:
        return {"best": min(names, key=lambda n: S[n]["wall_med"]), "elig": [], "names": names, "S": S, "bw": bw, "bc": bc}
    smallest = min(S[n]["out_bytes_med"] for n in elig)
    near = [n for n in elig if S[n]["out_bytes_med"] <= smallest * 1.03]
    least = min(S[n]["cpu_med"] for n in near)
    ties = [n for n in near if S[n]["cpu_med"] <= max(least * 1.05, least + 0.05)]
    d = S.get(DEFAULT)
    best = min(ties, key=lambda n: (n != DEFAULT, d is not None and S[n]["threads"] != d["threads"],
                                    d is not None and S[n]["level"] != d["level"], S[n]["wall_med"]))
    return {"best": best, "elig": elig, "names": names, "S": S, "bw": bw, "bc": bc}


def compute(rows, meta, ours, baseline=None):
    """rows: the runs (runs.jsonl); meta: the run/host description (strings,
    keys as in MACHINE_KEYS plus INTERVAL, NPROC, REPS, WRITE_RATE, T_RUN);
    ours: the names of our tools (tools/tools.list); baseline: the previous
    run's summary.json (a dict) or None. Returns a namespace with everything
    svg.py and markdown.py use, and .summary for summary.json."""
    ours = tuple(ours)
    interval = float(meta.get("INTERVAL") or "30")
    ncpu = int(meta.get("NPROC") or "2")
    sizes = OrderedDict()
    for r in rows:
        if r["scenario"] == "dataset":
            sizes[r["size"]] = r
    size_names = list(sizes)

    summary = {"machine": {k: meta.get(k) for k in MACHINE_KEYS},
               "config": {"sizes": size_names, "reps": int(meta.get("REPS") or "0"), "interval_s": interval,
                          "write_rate": float(meta.get("WRITE_RATE") or "0"),
                          "bench_wall_s": int(meta.get("T_RUN") or "0")},
               "datasets": sizes, "backup": {}, "recovery": {}, "codecs": {}, "freshness": {}, "targets": [],
               "targets_issue6": []}

    # backup, recovery (with median phases), codecs, freshness
    B = {k: stats(v, ours) for k, v in group(rows, "backup", "size", "api", "remote", "contender").items()}
    summary["backup"] = {"/".join(map(str, k)): v for k, v in B.items()}
    R = {k: stats(v, ours) for k, v in group(rows, "recovery", "size", "api", "contender").items()}
    for k, rs in group(rows, "recovery", "size", "api", "contender").items():
        ph = defaultdict(list)
        for r in rs:
            for p, t in r.get("phases", {}).items():
                ph[p].append(t)
        R[k]["phases_med"] = {p: med(t) for p, t in ph.items()}
    summary["recovery"] = {"/".join(map(str, k)): v for k, v in R.items()}
    C = {}
    for k, rs in group(rows, "codecs", "size", "contender").items():
        s = stats(rs, ours)
        s.update(codec=rs[0]["codec"], level=str(rs[0]["level"]), threads=rs[0]["threads"])
        C[k] = s
    snap_bytes = {}
    for (size, name), s in C.items():
        if name == "etcdctl snapshot save":
            snap_bytes[size] = s["out_bytes_med"]
    summary["codecs"] = {"/".join(map(str, k)): v for k, v in C.items()}
    F = [r for r in rows if r["scenario"] == "freshness"]
    summary["freshness"] = F

    # the targets of issue 13 (the backup cycle), in the order the issue
    # states them; each row: target, size, api, remote, what (the
    # measurement), value, limit, unit, met (True/False; None: no limit)
    base = (baseline or {}).get("backup", {})
    T13 = []

    def t13(order, name, size, api, remote, what, value, limit, unit, met):
        T13.append({"order": order, "target": name, "size": size, "api": api, "remote": remote, "what": what,
                    "value": value, "limit": limit, "unit": unit, "met": met})

    for size in size_names:
        small = sizes[size]["size_bytes"] <= 64 * MiB
        for api in ("v3", "v2"):
            fl = B.get((size, api, "-", "floor-snap"))
            lim = 2.0 if api == "v2" or small else 1.3
            floor_name = "`etcdctl snapshot save`" if api == "v3" else "`etcdctl backup`"
            for remote in REMOTES:
                o, g = B.get((size, api, remote, "ours")), B.get((size, api, remote, "orig"))
                if not o:
                    continue
                if fl:
                    x = o["wall_med"] / fl["wall_med"]
                    t13(1, f"backup wall ≤ {lim:g}× {floor_name} alone" + ("" if api == "v2" else
                        " (16–64 MB)" if small else " (256 MB, 1 GiB)"), size, api, remote,
                        f"{o['wall_med']:.2f} s / {fl['wall_med']:.2f} s", x, lim, "×", x <= lim)
                if g:
                    x = o["wall_med"] / g["wall_med"]
                    t13(2, "faster than the original procedure", size, api, remote,
                        f"{o['wall_med']:.2f} s / {g['wall_med']:.2f} s", x, 1.0, "×", x < 1.0)
                    if g["bytes_up_med"]:
                        x = o["bytes_up_med"] / g["bytes_up_med"]
                        t13(3, "bytes uploaded ≤ 0.4× the original's", size, api, remote,
                            f"{mib(o['bytes_up_med'])} / {mib(g['bytes_up_med'])} MiB", x, 0.4, "×", x <= 0.4)
                sp = o["spawns_med"]
                t13(5, "rclone spawns per cycle ≤ 3", size, api, remote,
                    ", ".join(f"{k} {v:g}" for k, v in sp.items()) + ("" if o["spawns_exact"] else " (sampled)")
                    + (" **wrappers bypassed**" if o["spawns_bypassed"] else ""),
                    sp["rclone"], 3, "", sp["rclone"] <= 3)
                b = base.get(f"{size}/{api}/{remote}/ours")
                if b:
                    t13(6, "CPU s per cycle ≤ the previous run's", size, api, remote,
                        f"{o['cpu_med']:.2f} s / {b['cpu_med']:.2f} s", o["cpu_med"], b["cpu_med"], "s",
                        o["cpu_med"] <= b["cpu_med"])
                else:
                    t13(6, "CPU s per cycle ≤ the previous run's", size, api, remote,
                        f"{o['cpu_med']:.2f} s; no previous figure", o["cpu_med"], None, "s", None)
        for api in ("v3", "v2"):
            worst = [(B[k]["all_peak_kib"], B[k]["all_peak_prog"], k) for k in B
                     if k[0] == size and k[1] == api and k[3] == "ours"]
            if not worst:
                continue
            kib, prog, k = max(worst)
            byprog = {}
            for kk in B:
                if kk[0] == size and kk[1] == api and kk[3] == "ours":
                    for p, v in B[kk]["peak_by_prog_kib"].items():
                        byprog[p] = max(byprog.get(p, 0), v)
            t13(4, "peak RSS of every process but etcd ≤ 64 MiB (at 1 GiB)", size, api, f"any (largest: {k[2]})",
                f"largest {prog}; by program: " + ", ".join(f"{p} {v / 1024:.1f}" for p, v in
                                                           sorted(byprog.items(), key=lambda kv: -kv[1])),
                kib / 1024, 64, "MiB", kib / 1024 <= 64)
    T13.sort(key=lambda t: t["order"])
    summary["targets"] = T13

    # the recovery and freshness targets of issue 6: (target, size, what, value, limit, met)
    targets = []

    def target(name, size, what, value, limit, met):
        targets.append({"target": name, "size": size, "what": what, "value": value, "limit": limit, "met": met})

    for size in size_names:
        seed = R.get((size, "v2", "seed"))
        for api in ("v2", "v3"):
            o = R.get((size, api, "ours"))
            if o and seed:
                x = o["wall_med"] / seed["wall_med"]
                target("recovery ≤ 1/3 of the seed procedure (at 256 MB)", size,
                       f"ours {api} {o['wall_med']:.1f} s / seed (v2) {seed['wall_med']:.1f} s", x, 1 / 3, x <= 1 / 3)
            pa = R.get((size, api, "parallel"))
            if o and pa:
                x = pa["wall_med"] / o["wall_med"]
                target("all-at-once recovery ≤ 0.5× founder+join (at 1 GiB)", size,
                       f"{api}: all at once {pa['wall_med']:.1f} s / founder+join {o['wall_med']:.1f} s", x, 0.5,
                       x <= 0.5)
            fl = R.get((size, api, "floor"))
            if o and fl:
                x = o["wall_med"] / fl["wall_med"]
                target("recovery ≤ 1.5× floor", size, f"{api}: ours {o['wall_med']:.1f} s / floor {fl['wall_med']:.1f} s", x, 1.5, x <= 1.5)
        for r in F:
            if r["size"] == size:
                res = r["result"]
                target("no acked write older than interval + cycle lost", size,
                       f"run {r['rep']}: oldest lost write {res['lost_oldest_age_s']:.1f} s old; bound {res['bound_s']:.1f} s",
                       res["lost_oldest_age_s"], res["bound_s"], res["lost_oldest_age_s"] <= res["bound_s"])
    summary["targets_issue6"] = targets

    # the codec rule per size that ran the codec matrix (adds "cores", which
    # summary.json then shows too)
    choices = {}
    for s in size_names:
        if any(ss == s for (ss, _) in C):
            choices[s] = choose(C, s, interval, ncpu)

    return SimpleNamespace(rows=rows, meta=meta, ours=ours, interval=interval, ncpu=ncpu,
                           sizes=sizes, size_names=size_names, B=B, R=R, C=C, F=F,
                           failed=[r for r in rows if r.get("failed")],
                           snap_bytes=snap_bytes, targets=targets, targets13=T13, choices=choices, summary=summary,
                           baseline=baseline)


def mib(x): return "–" if x is None else f"{x / MiB:.1f}"

#!/usr/bin/env python3
"""measure.py OUT.json [--server PID]... -- CMD ARGS...

Runs CMD and writes one JSON object to OUT.json:
  wall              seconds, from fork to exit (time.monotonic)
  user, sys         CPU seconds of CMD and every descendant it waited for
                    (wait4 rusage: exact)
  tree_maxrss_kib   wait4's ru_maxrss: the largest single process of the tree
  peak_kib          {program: largest VmHWM seen for any process of that name}
  cpu_by_prog       {program: CPU seconds, as last sampled} (lower bound: the
                    last <= 1 sample interval of each process is not seen)
  n_by_prog         {program: processes seen} (one living < 1 interval may be missed)
  server_cpu        CPU seconds the --server PIDs (rclone serve, etcd) used
                    meanwhile (from /proc/PID/stat, exact to the tick)
  rc                CMD's exit status

Why sample /proc: GNU time reports ru_maxrss of a process *including* the
children it waited for, so an etcd2-snapshot that runs etcdctl would be
charged etcdctl's memory. VmHWM is the kernel's own per-process high-water
mark of resident memory, so sampling it every INTERVAL (default 50 ms)
misses only what a process grows in its last interval before exit.
"""
import json, os, subprocess, sys, time

TICK = os.sysconf("SC_CLK_TCK")
INTERVAL = float(os.environ.get("MEASURE_INTERVAL", "0.05"))


def stat_of(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm may hold spaces and parens: split after the last ')'
    rest = s[s.rindex(")") + 2:].split()
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK  # ppid, utime+stime


def prog_of(pid):
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        try:
            with open(f"/proc/{pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return None


def hwm_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    argv = sys.argv[1:]
    out = argv.pop(0)
    servers = []
    while argv and argv[0] == "--server":
        argv.pop(0)
        servers.append(int(argv.pop(0)))
    if argv and argv[0] == "--":
        argv.pop(0)
    srv0 = sum((stat_of(p) or (0, 0.0))[1] for p in servers)
    t0 = time.monotonic()
    child = subprocess.Popen(argv)
    root = child.pid
    peak, cpu, progs = {}, {}, {}
    status = None
    while True:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
        parent = {}
        for p in pids:
            st = stat_of(p)
            if st:
                parent[p] = st
        tree, frontier = {root}, [root]
        while frontier:
            nxt = [p for p, (pp, _) in parent.items() if pp in frontier and p not in tree]
            tree.update(nxt)
            frontier = nxt
        for p in tree:
            # re-read each time: a forked shell becomes rclone on exec (and
            # exec starts a new VmHWM), so the last name seen is the program
            name = prog_of(p)
            if name is not None:
                progs[p] = name
            elif p not in progs:
                continue
            h = hwm_of(p)
            if h is not None:
                peak[p] = max(peak.get(p, 0), h)
            if p in parent:
                cpu[p] = parent[p][1]
        pid, st, ru = os.wait4(root, os.WNOHANG)
        if pid == root:
            status = st
            break
        time.sleep(INTERVAL)
    wall = time.monotonic() - t0
    srv1 = sum((stat_of(p) or (0, 0.0))[1] for p in servers)
    by_prog, cpu_prog, n_prog = {}, {}, {}
    for p, name in progs.items():
        by_prog[name] = max(by_prog.get(name, 0), peak.get(p, 0))
        n_prog[name] = n_prog.get(name, 0) + 1
        cpu_prog[name] = round(cpu_prog.get(name, 0.0) + cpu.get(p, 0.0), 3)
    rc = os.waitstatus_to_exitcode(status)
    json.dump({"wall": round(wall, 4), "user": round(ru.ru_utime, 3), "sys": round(ru.ru_stime, 3),
               "tree_maxrss_kib": ru.ru_maxrss, "peak_kib": by_prog, "cpu_by_prog": cpu_prog, "n_by_prog": n_prog,
               "server_cpu": round(srv1 - srv0, 3), "rc": rc}, open(out, "w"))
    sys.exit(rc)


if __name__ == "__main__":
    main()

"""Run one contender of scripts/bench and measure it (standard library only).

measure(cmds, timeout=...) runs CMD, or the pipeline CMD1 | CMD2 |
..., in a process group of its own, and returns one dict:
  wall              seconds, from the first fork to the last exit (time.monotonic)
  user, sys         CPU seconds of the commands and every descendant they waited
                    for (wait4 rusage: exact; summed over the pipeline's stages)
  tree_maxrss_kib   wait4's ru_maxrss: the largest single process of the tree
  peak_kib          {program: largest VmHWM seen for any process of that name}
  cpu_by_prog       {program: CPU seconds, as last sampled} (lower bound: the
                    last <= 1 sample interval of each process is not seen)
  n_by_prog         {program: processes seen} (one living < 1 interval may be missed)
  server_cpu        CPU seconds the `servers` PIDs (the remote's server: rclone
                    serve sftp, moto_server) used meanwhile (from
                    /proc/PID/stat, exact to the tick)
  etcd_cpu          the same for the `etcd` PID (the member backed up), when given
  rc                the exit status (a pipeline's: the last non-zero one, as
                    bash's pipefail; killed by signal N: 128+N)
and, not for the record, "_timed_out": True when the time bound was hit
(the group was then stopped: SIGTERM, 10 s, SIGKILL; rc 124, as timeout(1)),
and "_procs": {pid: (program, parent pid)} of every process seen.

Why sample /proc: GNU time reports ru_maxrss of a process *including* the
children it waited for, so an etcd2-snapshot that runs etcdctl would be
charged etcdctl's memory. VmHWM is the kernel's own per-process high-water
mark of resident memory, so sampling it every MEASURE_INTERVAL (default
50 ms) misses only what a process grows in its last interval before exit.

run(cmds, timeout=...) is the same without the sampling (for the
preparation steps that are not measured).
"""
import os
import signal
import subprocess
import time

TICK = os.sysconf("SC_CLK_TCK")
INTERVAL = float(os.environ.get("MEASURE_INTERVAL", "0.05"))
GRACE = 10.0  # seconds between SIGTERM and SIGKILL
LIVE = set()  # the Groups not all reaped yet (the caller's cleanup stops them)


def stat_of(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm may hold spaces and parens: split after the last ')'
    rest = s[s.rindex(")") + 2:].split()
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK  # ppid, utime+stime


def prog_of(pid, known):
    """The program PID runs: its executable's name; /proc/PID/comm (cut to 15
    characters) only for a process not named yet, since a zombie has no exe
    and must keep the name it had."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        if known:
            return None
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


def _exitcode(status):
    rc = os.waitstatus_to_exitcode(status)
    return 128 - rc if rc < 0 else rc


class Group:
    """The commands of one pipeline, in one new process group (not the
    terminal's foreground group: a Ctrl-C reaches only the bench, which then
    stops them)."""

    def __init__(self, cmds, stdin, stdout, stderr, env, cwd):
        self.procs, self.status, self.rusage = [], {}, {}
        prev = stdin
        try:
            for i, argv in enumerate(cmds):
                last = i == len(cmds) - 1
                kw = {"process_group": 0 if i == 0 else self.procs[0].pid}
                p = subprocess.Popen(argv, stdin=prev, stdout=stdout if last else subprocess.PIPE,
                                     stderr=stderr, env=env, cwd=cwd, **kw)
                if i > 0 and prev is not None:
                    prev.close()  # the reader has it now
                prev = None if last else p.stdout
                self.procs.append(p)
        except BaseException:
            if prev is not None and prev is not stdin:
                prev.close()
            self.kill_and_reap()
            raise
        self.pgid = self.procs[0].pid
        LIVE.add(self)

    def pids(self):
        return [p.pid for p in self.procs]

    def poll(self):
        """Reap what has exited (wait4: its rusage); True when all have."""
        for p in self.procs:
            if p.pid in self.status:
                continue
            try:
                pid, st, ru = os.wait4(p.pid, os.WNOHANG)
            except ChildProcessError:
                pid, st, ru = p.pid, 0, None
            if pid == p.pid:
                self.status[pid], self.rusage[pid] = st, ru
                p.returncode = _exitcode(st)
        if len(self.status) == len(self.procs):
            LIVE.discard(self)
            return True
        return False

    def signal(self, sig):
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_and_reap(self, grace=GRACE):
        """SIGTERM to the group, at most `grace` s, then SIGKILL; reap (bounded)."""
        if not self.procs:
            return
        self.pgid = self.procs[0].pid
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not self.poll() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.signal(signal.SIGKILL)  # also what is left of the group
        deadline = time.monotonic() + 10
        while not self.poll():
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {self.pids()} not gone 10 s after SIGKILL")
            time.sleep(0.05)

    def rc(self):
        rc = 0
        for p in self.procs:
            c = _exitcode(self.status[p.pid])
            if c:
                rc = c
        return rc


def _normalize(cmds):
    return [cmds] if cmds and isinstance(cmds[0], str) else cmds


def measure(cmds, *, timeout, servers=(), etcd=None, stdin=None, stdout=None, stderr=None, env=None, cwd=None):
    """Run and measure; see the module's doc."""
    cmds = _normalize(cmds)
    srv0 = sum((stat_of(p) or (0, 0.0))[1] for p in servers)
    etcd0 = (stat_of(etcd) or (0, 0.0))[1] if etcd else 0.0
    t0 = time.monotonic()
    g = Group(cmds, stdin, stdout, stderr, env, cwd)
    roots = set(g.pids())
    peak, cpu, progs, ppid = {}, {}, {}, {}
    timed_out = False
    try:
        while True:
            parent = {}
            for d in os.listdir("/proc"):
                if d.isdigit():
                    st = stat_of(int(d))
                    if st:
                        parent[int(d)] = st
            tree, frontier = set(roots), set(roots)
            while frontier:
                nxt = {p for p, (pp, _) in parent.items() if pp in frontier and p not in tree}
                tree.update(nxt)
                frontier = nxt
            for p in tree:
                # re-read each time: a forked shell becomes rclone on exec (and
                # exec starts a new VmHWM), so the last name seen is the program
                name = prog_of(p, p in progs)
                if name is not None:
                    progs[p] = name
                elif p not in progs:
                    continue
                h = hwm_of(p)
                if h is not None:
                    peak[p] = max(peak.get(p, 0), h)
                if p in parent:
                    cpu[p] = parent[p][1]
                    ppid.setdefault(p, parent[p][0])
            if g.poll():
                break
            if time.monotonic() - t0 > timeout:
                timed_out = True
                g.kill_and_reap()
                break
            time.sleep(INTERVAL)
    except BaseException:
        g.kill_and_reap()
        raise
    wall = time.monotonic() - t0
    srv1 = sum((stat_of(p) or (0, 0.0))[1] for p in servers)
    etcd1 = (stat_of(etcd) or (0, 0.0))[1] if etcd else 0.0
    by_prog, cpu_prog, n_prog = {}, {}, {}
    for p, name in progs.items():
        by_prog[name] = max(by_prog.get(name, 0), peak.get(p, 0))
        n_prog[name] = n_prog.get(name, 0) + 1
        cpu_prog[name] = round(cpu_prog.get(name, 0.0) + cpu.get(p, 0.0), 3)
    rus = [ru for ru in g.rusage.values() if ru is not None]
    out = {"wall": round(wall, 4),
           "user": round(sum(ru.ru_utime for ru in rus), 3), "sys": round(sum(ru.ru_stime for ru in rus), 3),
           "tree_maxrss_kib": max([ru.ru_maxrss for ru in rus] or [0]), "peak_kib": by_prog,
           "cpu_by_prog": cpu_prog, "n_by_prog": n_prog,
           "server_cpu": round(srv1 - srv0, 3), "rc": 124 if timed_out else g.rc(),
           "_procs": {p: (name, ppid.get(p)) for p, name in progs.items()}}
    if etcd:
        out["etcd_cpu"] = round(etcd1 - etcd0, 3)
    if timed_out:
        out["_timed_out"] = True
    return out


def run(cmds, *, timeout, stdin=None, stdout=None, stderr=None, env=None, cwd=None):
    """Run CMD or a pipeline in its own process group, at most `timeout` s
    (then stopped: SIGTERM, 10 s, SIGKILL). Returns (rc, timed_out)."""
    g = Group(_normalize(cmds), stdin, stdout, stderr, env, cwd)
    t0 = time.monotonic()
    try:
        while not g.poll():
            if time.monotonic() - t0 > timeout:
                g.kill_and_reap()
                return 124, True
            time.sleep(0.02)
    except BaseException:
        g.kill_and_reap()
        raise
    return g.rc(), False

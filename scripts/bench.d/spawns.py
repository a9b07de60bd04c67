"""Exact process spawn counts for scripts/bench (standard library only).

measure.py's n_by_prog comes from sampling /proc every 50 ms, so a process
that lives less than one interval (an `rclone lsjson`, an `etcdctl endpoint
status`) can be missed. For the counts the report shows, the bench runs a
contender with a PATH whose first directory holds one counting wrapper per
counted program:

    #!/bin/sh
    read up _ < /proc/uptime
    echo "rclone $$ $up" >> LOG
    exec /usr/bin/rclone "$@"

`exec` keeps the PID, the process group, stdin/stdout and signals, so the
program runs as it would have; the cost is one /bin/sh start (~1 ms) per
spawn, the same for every contender. The line also says when (the
kernel's uptime, 10 ms resolution, read by a shell builtin): the run's
record keeps each spawn's start relative to the run's (spawn_times), a
timeline of the cycle. Our own tools are started through such
wrappers too (by the bench, and by whatever finds them in PATH). A program
our tools resolve by PATH (rclone, etcdctl, etcdutl: tools/core cmd.rs
Program::find) cannot bypass them; one started by an absolute path could, so
each measurement is cross-checked by PID: a process the 50 ms sampler saw
running a wrapped program whose PID no wrapper logged is recorded in
`spawns_bypassed` (the report flags it). Not counted as such: a process seen
with its parent's program, which is a fork caught before its exec (it then
ran something else, e.g. etcdctl through its wrapper, under the same PID).
The ETCD2_BACKUP_RCLONE/ETCDCTL/ETCDUTL variables, which would name a binary
directly, are removed from the contender's environment."""
import os
import shutil

COUNTED = ("rclone", "etcdctl", "etcdutl")
DIRECT = ("ETCD2_BACKUP_RCLONE", "ETCD2_BACKUP_ETCDCTL", "ETCD2_BACKUP_ETCDUTL")


def _q(s):
    return "'" + s.replace("'", "'\\''") + "'"


class Spawns:
    def __init__(self, wdir, tools_bin, tools):
        """Wrappers in WDIR for rclone/etcdctl/etcdutl (those found in PATH)
        and for our TOOLS (in TOOLS_BIN); the log is WDIR/log."""
        self.dir = os.path.join(wdir, "bin")
        self.log = os.path.join(wdir, "log")
        os.makedirs(self.dir, exist_ok=True)
        open(self.log, "w").close()
        self.shell = os.path.basename(os.path.realpath("/bin/sh"))  # the wrapper, before its exec
        self.programs = {}
        for name in COUNTED:
            real = shutil.which(name)
            if real:  # no wrapper for a missing etcdutl: the tools must not find one
                self.programs[name] = os.path.realpath(real)
        for t in tools:
            self.programs[t] = os.path.join(tools_bin, t)
        self.ours = tuple(tools)
        for name, real in self.programs.items():
            p = os.path.join(self.dir, name)
            with open(p, "w") as f:
                f.write(f"#!/bin/sh\nread up _ < /proc/uptime\necho \"{name} $$ $up\" >> {_q(self.log)}\n"
                        f"exec {_q(real)} \"$@\"\n")
            os.chmod(p, 0o755)

    def tool(self, name):
        return os.path.join(self.dir, name)

    def env(self, base=None):
        e = dict(os.environ if base is None else base)
        for k in DIRECT:
            e.pop(k, None)
        e["PATH"] = self.dir + os.pathsep + e.get("PATH", "")
        return e

    def mark(self):
        """Where the log is now, and the uptime: call right before a run."""
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        return os.path.getsize(self.log), up

    def since(self, mark):
        """({program: spawns}, {pid logged}, [[program, start s]]) after
        mark (every counted program in the counts, 0 included)."""
        offset, t0 = mark
        counts, pids, times = {n: 0 for n in self.programs}, set(), []
        with open(self.log, "rb") as f:
            f.seek(offset)
            for line in f.read().decode(errors="replace").splitlines():
                w = line.split()
                if len(w) == 3 and w[0] in counts and w[1].isdigit():
                    counts[w[0]] += 1
                    pids.add(int(w[1]))
                    try:
                        times.append([w[0], round(max(0.0, float(w[2]) - t0), 2)])
                    except ValueError:
                        pass
        return {n: c for n, c in counts.items() if c or n in COUNTED}, pids, times

    def fields(self, mark, m):
        """The record's fields for one measurement m (measure.py's dict):
        spawns, and spawns_bypassed when the sampler saw a wrapped program
        run under a PID no wrapper logged."""
        sp, logged, times = self.since(mark)
        procs = m.get("_procs", {})
        bypassed = {}
        for pid, (name, ppid) in procs.items():
            if name in self.programs and pid not in logged and procs.get(ppid, (None,))[0] != name:
                bypassed[name] = bypassed.get(name, 0) + 1
        out = {"spawns": sp, "spawn_method": "PATH wrappers", "spawn_times": times}
        if bypassed:
            out["spawns_bypassed"] = bypassed
        return out

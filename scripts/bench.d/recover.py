#!/usr/bin/env python3
"""One recovery, from "three data dirs gone" to three healthy members with
every key verified (timed by scripts/bench under measure.py):

  recover.py ours|parallel|seed|floor v2|v3 RUN CLIENT_PORTS PEER_PORTS REMOTE MID HASHES BIN

RUN is the work dir, CLIENT_PORTS / PEER_PORTS three comma-separated ports on
127.0.0.1, REMOTE the rclone endpoint, MID the machine-id folder, HASHES the
keys and value hashes (verify.py), BIN our tools. Writes RUN/pids (every
member it started, for the caller to stop by PID: they are left running) and
RUN/phases (time stamps: start, restored, joined2, joined3, healthy, verified).

  ours   the README's recovery procedure with our tools, step for step (a
         joiner is added as a learner and promoted by etcd2-health --promote)
  parallel  the all-at-once procedure (docs/whole-cluster-restore.md, v3
         only): each of the three nodes fetches the same backup and runs
         etcd2-restore --whole-cluster, the three at the same time; then all
         three members start together and etcd2-health --members 3 checks
         them (one cluster ID, the same KV hash)
  seed   the seed README's procedure as written (recover-seed.sh, shell, as
         its units ran it: etcd2-restore.service (rm -rf, rclone copy, the Go
         program: etcd --force-new-cluster, poll cluster-health up to
         10 x 2 s, member update, kill), cp -r, start etcd; then per joiner
         etcd2-join.service (rm -rf, member add, drop-in), start etcd,
         `sleep 10`)
  floor  the least a recovery must do: fetch (one rclone copy), extract,
         restore/start the founder, member add retried until etcd's own
         reconfiguration guard lets it through, start each joiner
Every mode ends the same way: three members healthy, then every key checked.
Every wait is bounded and names what it waited for.
"""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import verify  # noqa: E402

STEP_TIMEOUT = 600  # s, any single command of a procedure


class Failed(Exception):
    pass


class _Alarm(Exception):
    pass


def _on_alarm(_sig, _frame):
    raise _Alarm()


def run_bounded(argv, timeout, what, env=None, stdout=None, stderr=None):
    """Run argv in a process group of its own and wait for it *blocking* (its
    end is seen at once, as a shell's wait would: no polling delay in the
    timed recovery), bounded by SIGALRM after `timeout` s. On the bound, or
    when recover.py itself is stopped, the step's group is killed. Returns
    (rc, stdout text when stdout is PIPE)."""
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, process_group=0)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        out = p.stdout.read().decode(errors="replace") if stdout == subprocess.PIPE else None
        rc = p.wait()
    except BaseException as e:
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        if isinstance(e, _Alarm):
            raise Failed(f"recover: {what}: not done within {timeout} s")
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if p.stdout:
            p.stdout.close()
    return rc, out


def run_all(argvs, timeout, what):
    """Run every argv at the same time, each in a process group of its own
    (three nodes doing their step at once), bounded by `timeout` s in all;
    on the bound, a failure or our stop, every group still running is
    killed. Fails naming the first that failed."""
    ps = [subprocess.Popen(a, stdin=subprocess.DEVNULL, process_group=0) for a in argvs]
    deadline = time.monotonic() + timeout
    try:
        for i, p in enumerate(ps):
            try:
                rc = p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise Failed(f"recover: {what}: not done within {timeout} s")
            if rc != 0:
                raise Failed(f"recover: {what} on node {i + 1} failed (exit {rc})")
    finally:
        for p in ps:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def _on_term(_sig, _frame):
    raise Failed("recover: stopped (SIGTERM)")


def main():
    if len(sys.argv) != 10:
        sys.exit(__doc__.split("\n\n")[1])
    mode, api, run, cports, pports, remote, mid, hashes, bindir = sys.argv[1:]
    C = [None] + cports.split(",")
    P = [None] + pports.split(",")
    if len(C) != 4 or len(P) != 4 or mode not in ("ours", "parallel", "seed", "floor") or api not in ("v2", "v3"):
        sys.exit(f"recover.py: bad arguments {sys.argv[1:]}")

    def url(i): return f"http://127.0.0.1:{C[i]}"
    def purl(i): return f"http://127.0.0.1:{P[i]}"
    def b(tool): return os.path.join(bindir, tool)

    def phase(name):
        with open(os.path.join(run, "phases"), "a") as f:
            f.write(f"{name} {time.time():.9f}\n")

    def sh(argv, what, env=None, stdout=subprocess.DEVNULL, stderr=None, timeout=STEP_TIMEOUT, check=True):
        """Run one step; fail naming it."""
        rc, out = run_bounded(argv, timeout, what, env=env, stdout=stdout, stderr=stderr)
        if check and rc != 0:
            raise Failed(f"recover: {what} failed (exit {rc})")
        return rc, out

    def out_of(argv, what, env=None):
        return sh(argv, what, env=env, stdout=subprocess.PIPE)[1]

    def etcdctl(v, *args):
        return ["env", f"ETCDCTL_API={v}", "etcdctl", *args]

    members = {}

    def start_member(i, extra_env=None, *flags):
        """What etcd2.service does on node i (its settings from the environment)."""
        env = dict(os.environ, **(extra_env or {}))
        log = open(os.path.join(run, f"e{i}.log"), "a")
        p = subprocess.Popen(["etcd", "--data-dir", os.path.join(run, f"e{i}"),
                              "--listen-client-urls", url(i), "--advertise-client-urls", url(i),
                              "--listen-peer-urls", purl(i), "--initial-advertise-peer-urls", purl(i),
                              "--quota-backend-bytes=8589934592", "--enable-v2=true", *flags],
                             env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        with open(os.path.join(run, "pids"), "a") as f:
            f.write(f"{p.pid}\n")
        members[i] = p
        return p

    def healthy(i):
        try:
            with urllib.request.urlopen(url(i) + "/health", timeout=1) as r:
                return b'"health":"true"' in r.read()
        except (OSError, ValueError):
            return False

    def log_tail(i):
        try:
            with open(os.path.join(run, f"e{i}.log")) as f:
                return " | ".join(f.read().splitlines()[-3:])
        except OSError:
            return ""

    def ready(i, secs=300):
        """What systemd's Type=notify start waits for (etcd serving): polled
        every 50 ms, at most `secs`."""
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            if members[i].poll() is not None:
                raise Failed(f"recover: e{i} exited: {log_tail(i)}")
            if healthy(i):
                return
            time.sleep(0.05)
        raise Failed(f"recover: e{i} not ready (/health) within {secs} s")

    def all_healthy(secs=300):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            if all(healthy(i) for i in (1, 2, 3)):
                return
            time.sleep(0.05)
        raise Failed(f"recover: the cluster did not get three healthy members (/health) within {secs} s")

    def dropin_env(path):
        """The Environment= settings of a systemd drop-in, unquoted."""
        env = {}
        with open(path) as f:
            for line in f:
                m = re.fullmatch(r'Environment="(.*)"', line.rstrip("\n"))
                if m:
                    v = re.sub(r'\\(.)|%%', lambda x: x.group(1) or "%", m.group(1))
                    k, _, v = v.partition("=")
                    env[k] = v
        return env

    def latest_archive():
        return json.loads(out_of(["rclone", "cat", f"{remote}/{mid}/LATEST.json"], "rclone cat LATEST.json"))["archive"]

    open(os.path.join(run, "pids"), "w").close()
    open(os.path.join(run, "phases"), "w").close()
    phase("start")
    for i in (1, 2, 3):
        os.makedirs(os.path.join(run, f"e{i}"), mode=0o700, exist_ok=True)
        os.chmod(os.path.join(run, f"e{i}"), 0o700)
    os.makedirs(os.path.join(run, "work"), exist_ok=True)

    if mode == "ours":
        sh([b("etcd2-fetch"), "-q", "--endpoint", remote, "--machine-id", mid, "--work-dir", f"{run}/work",
            "--into", f"{run}/restore"], "etcd2-fetch")
        sh([b("etcd2-restore"), "-q", "--data-dir", f"{run}/e1", "--name", "e1", "--peer-urls", purl(1),
            f"{run}/restore"], "etcd2-restore")
        start_member(1, {"ETCD_NAME": "e1"})
        sh([b("etcd2-health"), "-q", "--endpoints", url(1), "--members", "1", "--wait", "300s"], "etcd2-health --members 1")
        phase("restored")
        for i in (2, 3):
            sh([b("etcd2-wipe"), "-q", f"{run}/e{i}"], f"etcd2-wipe e{i}")
            sh([b("etcd2-member-add"), "-q", "--endpoints", url(1), "--name", f"e{i}", "--peer-urls", purl(i),
                "--dropin", f"{run}/e{i}-join.conf"], f"etcd2-member-add e{i}")
            start_member(i, dropin_env(f"{run}/e{i}-join.conf"))
            # the drop-in's ExecStartPost= and the README's next command: promote
            # the learner member-add added, once it caught up
            sh([b("etcd2-health"), "-q", "--endpoints", url(1), "--promote", f"e{i}", "--members", str(i),
                "--wait", "300s"], f"etcd2-health --promote e{i} --members {i}")
            phase(f"joined{i}")
    elif mode == "parallel":
        if api != "v3":
            raise Failed("recover: the all-at-once restore takes v3 backups only")
        ic = ",".join(f"e{i}={purl(i)}" for i in (1, 2, 3))
        nodes = []
        for i in (1, 2, 3):
            # what etcd2-restore-member@.service runs on node i
            fetch = [b("etcd2-fetch"), "-q", "--endpoint", remote, "--machine-id", mid, "--work-dir",
                     f"{run}/work{i}", "--into", f"{run}/restore{i}"]
            restore = [b("etcd2-restore"), "-q", "--whole-cluster", "--initial-cluster", ic, "--data-dir",
                       f"{run}/e{i}", "--name", f"e{i}", "--peer-urls", purl(i), f"{run}/restore{i}"]
            os.makedirs(f"{run}/work{i}", exist_ok=True)
            nodes.append(["bash", "-c", f"{shlex.join(fetch)} && {shlex.join(restore)}"])
        run_all(nodes, STEP_TIMEOUT, "etcd2-fetch && etcd2-restore --whole-cluster")
        phase("restored")
        for i in (1, 2, 3):
            start_member(i, {"ETCD_NAME": f"e{i}"})
        sh([b("etcd2-health"), "-q", "--endpoints", ",".join(url(i) for i in (1, 2, 3)), "--members", "3",
            "--wait", "300s"], "etcd2-health --members 3")
    elif mode == "seed":
        # the procedure's steps are shell, as the seed's units ran them; it
        # appends its members to RUN/pids and its phases to RUN/phases
        env = dict(os.environ, RUN=run, EP_REMOTE=remote, MID=mid,
                   C1=C[1], C2=C[2], C3=C[3], P1=P[1], P2=P[2], P3=P[3])
        errf = os.path.join(run, "seed.err")
        with open(errf, "w") as err:
            rc, _ = sh(["bash", os.path.join(HERE, "recover-seed.sh")], "the seed procedure", env=env,
                       stdout=None, stderr=err, timeout=1000, check=False)
        with open(errf) as f:
            msgs = [l for l in f.read().splitlines() if l.strip()]
        sys.stderr.write("".join(l + "\n" for l in msgs))
        if rc != 0:
            # its own words (the caller records them as the failure's reason)
            raise Failed(msgs[-1] if msgs else f"seed: the procedure failed (exit {rc})")
    else:  # floor
        arch = latest_archive()
        sh(["rclone", "copyto", f"{remote}/{mid}/generations/{arch}", f"{run}/work/{arch}"], "rclone copyto")
        if api == "v3":
            os.makedirs(f"{run}/x")
            sh(["tar", "--zstd", "-xf", f"{run}/work/{arch}", "-C", f"{run}/x"], "tar -x")
            os.rmdir(f"{run}/e1")
            sh(etcdctl(3, "snapshot", "restore", f"{run}/x/snapshot.db", "--name", "e1", "--data-dir", f"{run}/e1",
                       "--initial-cluster", f"e1={purl(1)}", "--initial-advertise-peer-urls", purl(1)),
               "etcdctl snapshot restore", stderr=subprocess.DEVNULL)
            start_member(1, {"ETCD_NAME": "e1"})
            ready(1)
        else:
            sh(["tar", "--zstd", "-xf", f"{run}/work/{arch}", "-C", f"{run}/e1", "member"], "tar -x")
            start_member(1, {"ETCD_NAME": "e1"}, "--force-new-cluster")
            ready(1)
            mid1 = out_of(etcdctl(3, "--endpoints", url(1), "member", "list"), "etcdctl member list")
            sh(etcdctl(3, "--endpoints", url(1), "member", "update", mid1.splitlines()[0].split(",")[0],
                       f"--peer-urls={purl(1)}"), "etcdctl member update")
        phase("restored")
        for i in (2, 3):
            deadline, add = time.monotonic() + 60, None
            while time.monotonic() < deadline:  # every 0.1 s, at most 60 s: etcd's guard decides
                rc, out = sh(etcdctl(3, "--endpoints", url(1), "member", "add", f"e{i}", f"--peer-urls={purl(i)}"),
                             f"etcdctl member add e{i}", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
                if rc == 0:
                    add = out
                    break
                time.sleep(0.1)
            if add is None:
                raise Failed(f"floor: member add e{i} refused for 60 s")
            with open(f"{run}/e{i}-add.out", "w") as f:
                f.write(add)
            env = {}
            for line in add.splitlines():
                if line.startswith("ETCD_") and not line.startswith("ETCD_INITIAL_ADVERTISE_PEER_URLS="):
                    k, _, v = line.replace('"', "").partition("=")
                    env[k] = v
            start_member(i, env)
            phase(f"joined{i}")

    all_healthy()
    phase("healthy")
    err = verify.check(api, hashes, [url(1), url(2), url(3)])
    if err:
        raise Failed(err)
    phase("verified")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_term)
    try:
        main()
    except Failed as e:
        sys.exit(str(e))

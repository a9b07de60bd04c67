# Shared helpers of scripts/bench (sourced). Every server is started on
# 127.0.0.1 by us, its PID remembered, and stopped by that PID; every wait
# loop is bounded.

PIDS=()        # everything we started that may still run
FAILMSG=""
log() { printf 'bench: %s\n' "$*" >&2; }
die() { FAILMSG="$*"; exit 1; }

# stop_pid PID: SIGTERM, wait at most 10 s, then SIGKILL. Only our own PIDs.
stop_pid() {
  local p=$1
  kill "$p" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
forget_pid() { local p=$1 i; for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" != "$p" ] || unset 'PIDS[$i]'; done; }

cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    echo "bench: FAILED (exit $rc): ${FAILMSG:-a command failed; see the output above}" >&2
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# size_bytes 16MB|256MiB|1GiB|1G -> bytes (MB, M and MiB all mean 2^20)
size_bytes() {
  python3 - "$1" <<'PY'
import re, sys
m = re.fullmatch(r"(\d+)\s*([KMG])?(i?B)?", sys.argv[1].strip(), re.I)
if not m: sys.exit(f"bad size {sys.argv[1]!r} (use e.g. 16MB, 256MB, 1GiB)")
print(int(m.group(1)) * {None: 1, "K": 2**10, "M": 2**20, "G": 2**30}[(m.group(2) or "").upper() or None])
PY
}

# start_etcd NAME DATADIR CPORT PPORT LOG [extra etcd flags...]; sets ETCD_STARTED
start_etcd() {
  local name=$1 dir=$2 c=$3 p=$4 logf=$5; shift 5
  etcd --name "$name" --data-dir "$dir" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --quota-backend-bytes=8589934592 --enable-v2=true "$@" >>"$logf" 2>&1 &
  ETCD_STARTED=$!
  PIDS+=("$ETCD_STARTED")
}

# wait_health URL SECONDS [PID]: until /health says true (bounded).
wait_health() {
  local url=$1 secs=$2 pid=${3:-} n
  n=$((secs * 20))
  for _ in $(seq 1 "$n"); do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if curl -fsS -m 1 "$url/health" 2>/dev/null | grep -q '"health":"true"'; then return 0; fi
    sleep 0.05
  done
  return 1
}

# measure OUT.json CMD...: run CMD under measure.py (wall, CPU, per-process peak RSS).
measure() {
  local out=$1; shift
  python3 "$BENCH_D/measure.py" "$out" "${MEASURE_SERVERS[@]}" -- "$@"
}

# rec MEASURE_JSON key=value...: append one run to the JSONL, merging the
# measurement with the given fields (values parsed as JSON when they are).
rec() {
  python3 - "$JSONL" "$@" <<'PY'
import json, sys
jsonl, mfile, kvs = sys.argv[1], sys.argv[2], sys.argv[3:]
r = json.load(open(mfile)) if mfile != "-" else {}
for kv in kvs:
    k, v = kv.split("=", 1)
    try: r[k] = json.loads(v)
    except ValueError: r[k] = v
open(jsonl, "a").write(json.dumps(r, sort_keys=True) + "\n")
PY
}

# tree_state DIR > FILE: path size mtime_ns inode of every file under DIR.
tree_state() {
  python3 - "$1" <<'PY'
import os, sys
root = sys.argv[1]
for d, _, fs in os.walk(root):
    for f in fs:
        p = os.path.join(d, f)
        try: st = os.stat(p)
        except OSError: continue
        print(f"{os.path.relpath(p, root)}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ino}")
PY
}
# tree_written BEFORE AFTER [PREFIX]: bytes of files new or changed between two
# tree_state listings (only paths starting with PREFIX when given).
tree_written() {
  python3 - "$@" <<'PY'
import sys
def load(f):
    return {l.split("\t")[0]: l.rstrip("\n").split("\t")[1:] for l in open(f) if l.strip()}
a, b = load(sys.argv[1]), load(sys.argv[2])
pre = sys.argv[3] if len(sys.argv) > 3 else ""
print(sum(int(v[0]) for p, v in b.items() if p.startswith(pre) and a.get(p) != v))
PY
}
wall_of() { python3 -c 'import json,sys; print("%.2f s" % json.load(open(sys.argv[1]))["wall"])' "$1"; }
# reps_for BYTES: BENCH_REPS, or BENCH_REPS_LARGE above BENCH_LARGE (so the
# 1 GiB runs keep `make bench` within half an hour on 2 cores).
reps_for() { if [ "$1" -gt "$LARGE_B" ]; then echo "$REPS_LARGE"; else echo "$REPS"; fi; }

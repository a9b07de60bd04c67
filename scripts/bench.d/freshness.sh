# Scenario 4, backup freshness under load (sourced by scripts/bench; runs
# last for a size, it crashes the v3 member). BENCH_FRESH_RUNS (default 1) times:
#   - writer.py puts BENCH_WRITE_RATE keys/s into the v3 member and logs each
#     acknowledged put;
#   - the backup loop runs etcd2-snapshot -o - | etcd2-push - every
#     BENCH_INTERVAL s, start to start (the timer's OnUnitActiveSec);
#   - after the first backup is published, at a random moment within the next
#     two intervals, etcd, the writer and the backup loop are SIGKILLed (the
#     node dies);
#   - the newest backup is fetched and restored with our tools into a fresh
#     member, and every acknowledged put missing from it is counted, with the
#     age it had at the crash.
# The crashed member is then restarted from its (intact) data dir.

run_freshness() {
  local label=$1 bytes=$2 runs=${BENCH_FRESH_RUNS:-1} r
  local WF=$W/fresh-work
  for r in $(seq 1 "$runs"); do
    rm -rf "$WF"; mkdir -p "$WF/work"
    local m; m=$(mid_for f "$r$r")
    python3 "$BENCH_D/writer.py" "$EP3" "$WRITE_RATE" "$WF/acks" "/fresh/$label-$r/" 2>"$WF/writer.err" &
    local wpid=$!; PIDS+=("$wpid")
    sleep 2   # the load is already running when the backup loop starts
    setsid bash -c 'interval=$0 bin=$1 ep=$2 wf=$3 m=$4 e=$5
      while :; do
        s=$(date +%s.%N); echo "start $s" >>"$wf/cycles"
        if "$bin/etcd2-snapshot" -q --api v3 --endpoints "$ep" --work-dir "$wf/work" --machine-id "$m" -o - \
           | "$bin/etcd2-push" -q --endpoint "$e" --machine-id "$m" --work-dir "$wf/work" --lock-file "$wf/work/push.lock" -; then
          echo "done $s $(date +%s.%N)" >>"$wf/cycles"
        else
          echo "failed $s $(date +%s.%N)" >>"$wf/cycles"
        fi
        now=$(date +%s.%N)
        sleep "$(python3 -c "import sys; print(max(0.0, float(sys.argv[1]) + float(sys.argv[2]) - float(sys.argv[3])))" "$s" "$interval" "$now")"
      done' "$INTERVAL" "$BIN" "$EP3" "$WF" "$m" "${ENDPOINT[local]}" 2>"$WF/loop.err" &
    local lpid=$!; PIDS+=("$lpid")
    # wait (bounded) for the first published backup
    local first=0
    for _ in $(seq 1 $((INTERVAL * 40 + 6000))); do
      grep -q '^done' "$WF/cycles" 2>/dev/null && { first=1; break; }
      kill -0 "$wpid" 2>/dev/null || die "[$label] freshness: writer died: $(cat "$WF/writer.err")"
      sleep 0.1
    done
    [ "$first" = 1 ] || die "[$label] freshness: no backup published (see $WF/loop.err)"
    local delay; delay=$(python3 -c "import random; print(round(random.uniform(0, 2 * $INTERVAL), 2))")
    log "[$label] freshness run $r: first backup published; crashing in $delay s"
    sleep "$delay"
    kill -0 "$wpid" 2>/dev/null || die "[$label] freshness: writer died: $(cat "$WF/writer.err")"
    local crash; crash=$(date +%s.%N)
    kill -9 "$ETCD3_PID" 2>/dev/null || true
    kill -9 -- "-$lpid" 2>/dev/null || true   # the loop's own process group (setsid)
    kill -9 "$wpid" 2>/dev/null || true
    wait "$ETCD3_PID" "$lpid" "$wpid" 2>/dev/null || true
    forget_pid "$ETCD3_PID"; forget_pid "$lpid"; forget_pid "$wpid"

    # restore the newest backup into a fresh member and read what it holds
    local rc rp rpid
    rc=$(free_port); rp=$(free_port)
    "$BIN/etcd2-fetch" -q --endpoint "${ENDPOINT[local]}" --machine-id "$m" --work-dir "$WF/work" --into "$WF/restore" \
      || die "[$label] freshness: fetch failed"
    mkdir -p "$WF/r1"; chmod 700 "$WF/r1"
    "$BIN/etcd2-restore" -q --data-dir "$WF/r1" --name e1 --peer-urls "http://127.0.0.1:$rp" "$WF/restore" \
      || die "[$label] freshness: restore failed"
    start_etcd e1 "$WF/r1" "$rc" "$rp" "$WF/r1.log"; rpid=$ETCD_STARTED
    wait_health "http://127.0.0.1:$rc" 60 "$rpid" || die "[$label] freshness: restored member not healthy"
    ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$rc" get "/fresh/$label-$r/" --prefix --keys-only >"$WF/restored-keys" \
      || die "[$label] freshness: reading the restored keys failed"
    stop_pid "$rpid"; forget_pid "$rpid"
    local result
    result=$(python3 - "$WF/acks" "$WF/restored-keys" "$WF/cycles" "$crash" "$INTERVAL" <<'PY'
import json, statistics, sys
acks = {int(l.split()[0]): float(l.split()[1]) for l in open(sys.argv[1]) if len(l.split()) == 2}
# keys of this run only (its own prefix): earlier runs' keys stay in the member
have = {int(l.strip().rsplit("/", 1)[1]) for l in open(sys.argv[2]) if l.startswith("/fresh/")}
crash, interval = float(sys.argv[4]), float(sys.argv[5])
cyc = [l.split() for l in open(sys.argv[3])]
done = [(float(c[1]), float(c[2])) for c in cyc if c[0] == "done"]
lost = sorted(s for s in acks if s not in have)
durs = [e - s for s, e in done]
last_start = max(s for s, e in done if e <= crash)
print(json.dumps({
    "acked": len(acks), "restored": len(have & set(acks)), "lost": len(lost),
    "lost_oldest_age_s": round(crash - acks[lost[0]], 3) if lost else 0.0,
    "lost_newest_age_s": round(crash - acks[lost[-1]], 3) if lost else 0.0,
    "lost_is_suffix": (not lost) or lost == list(range(lost[0], max(acks) + 1)),
    "backup_age_at_crash_s": round(crash - last_start, 3),
    "cycles_done": len(done), "cycles_failed": sum(1 for c in cyc if c[0] == "failed"),
    "cycle_median_s": round(statistics.median(durs), 3), "cycle_max_s": round(max(durs), 3),
    "bound_s": round(interval + max(durs), 3), "interval_s": interval,
    "write_rate": round(len(acks) / (max(acks.values()) - min(acks.values())), 1) if len(acks) > 1 else 0,
}))
PY
) || die "[$label] freshness: evaluation failed"
    rec - scenario=freshness size="$label" size_bytes="$bytes" contender=ours rep="$r" result="$result"
    log "[$label] freshness run $r: $result"
    # restart the crashed member from its own data dir for what follows
    start_etcd e1 "$DS/v3" "${EP3##*:}" "$P3" "$DS/v3.log" --initial-cluster "e1=http://127.0.0.1:$P3"; ETCD3_PID=$ETCD_STARTED
    wait_health "$EP3" 60 "$ETCD3_PID" || die "[$label] freshness: the crashed member did not come back: $(tail -n 3 "$DS/v3.log")"
  done
  rm -rf "$WF"
}

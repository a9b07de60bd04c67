# Scenario 2, recovery time (sourced by scripts/bench). Prepares, once per
# size, a backup of each data set on the local remote (ours: one push per
# API; the original: one etcd2-backup.service run of the v2 member), then
# alternates
#   ours-v3  ours-v2  seed-v2  floor-v3  floor-v2
# (recover.sh), each from empty data dirs to three healthy members with every
# key verified, timed under measure.py; the members are stopped by PID after.

run_recovery() {
  local label=$1 bytes=$2 rep i n who api out run pid
  local WR=$W/recovery-work; rm -rf "$WR"; mkdir -p "$WR/prep"
  local E=${ENDPOINT[local]}
  local m_o3 m_o2 m_s2
  m_o3=$(mid_for e 31); m_o2=$(mid_for e 21); m_s2=$(mid_for d 21)
  for api in v3 v2; do
    local ep dd m
    if [ "$api" = v3 ]; then ep=$EP3; dd=$DS/v3; m=$m_o3; else ep=$EP2; dd=$DS/v2; m=$m_o2; fi
    timeout 900 bash -c 'set -o pipefail
      "$0/etcd2-snapshot" -q --api "$1" --data-dir "$2" --endpoints "$3" --work-dir "$4" --machine-id "$5" -o - \
      | "$0/etcd2-push" -q --endpoint "$6" --machine-id "$5" --work-dir "$4" --lock-file "$4/push.lock" -' \
      "$BIN" "$api" "$dd" "$ep" "$WR/prep" "$m" "$E" || die "[$label] recovery: preparing our $api backup failed"
  done
  timeout 900 "$BENCH_D/orig-backup.sh" v2 "$DS/v2" "$WR/prep/orig" "$E" "$m_s2" "$EP2" \
    || die "[$label] recovery: preparing the original's backup failed"

  local contenders=(ours:v3 ours:v2 seed:v2 floor:v3 floor:v2)
  n=${#contenders[@]}
  for rep in $(seq 1 "$(reps_for "$bytes")"); do
    for i in $(seq 0 $((n - 1))); do
      IFS=: read -r who api <<<"${contenders[$(( (i + rep - 1) % n ))]}"
      run=$WR/run; rm -rf "$run"; mkdir -p "$run"
      local m=$m_o3 hashes=$DS/hashes
      [ "$api" = v2 ] && m=$m_o2
      [ "$who" = seed ] && m=$m_s2
      out=$WR/m.json
      local rc=0
      RUN=$run C1=$(free_port) C2=$(free_port) C3=$(free_port) P1=$(free_port) P2=$(free_port) P3=$(free_port) \
        EP_REMOTE=$E MID=$m HASHES=$hashes BIN=$BIN BENCH_D=$BENCH_D \
        measure "$out" timeout 1200 "$BENCH_D/recover.sh" "$who" "$api" >"$run/out.log" 2>&1 || rc=$?
      # the members it left running: ours to stop, by PID
      if [ -f "$run/pids" ]; then
        while read -r pid; do [ -n "$pid" ] && PIDS+=("$pid"); done <"$run/pids"
        while read -r pid; do [ -n "$pid" ] && { stop_pid "$pid"; forget_pid "$pid"; }; done <"$run/pids"
      fi
      if [ "$rc" != 0 ] && [ "$who" = seed ]; then
        # The seed procedure failing is a result, not a bench error: it is
        # recorded (and reported) as a failed run, and the others go on.
        local why; why=$(grep -v '^\s*$' "$run/out.log" | tail -n 1)
        rec "$out" scenario=recovery size="$label" size_bytes="$bytes" contender="$who" api="$api" rep="$rep" \
          failed=true reason="$why"
        log "[$label] recovery rep $rep $who $api: FAILED after $(wall_of "$out"): $why"
        rm -rf "$run"; continue
      fi
      [ "$rc" = 0 ] || die "[$label] recovery $who $api failed (exit $rc): $(tail -n 5 "$run/out.log")"
      rec "$out" scenario=recovery size="$label" size_bytes="$bytes" contender="$who" api="$api" rep="$rep" \
        phases="$(python3 -c 'import json,sys; p={l.split()[0]: float(l.split()[1]) for l in open(sys.argv[1])}; print(json.dumps({k: round(v-p["start"],3) for k,v in p.items()}))' "$run/phases")"
      log "[$label] recovery rep $rep $who $api: $(wall_of "$out")"
      rm -rf "$run"
    done
  done
  rm -rf "$WR"
}

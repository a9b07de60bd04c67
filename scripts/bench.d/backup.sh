# Scenario 1, the backup cycle (sourced by scripts/bench): per API and remote,
#   ours   etcd2-snapshot -o - | etcd2-push -
#   orig   the original etcd2-backup.service's commands (orig-backup.sh)
# and per API the floor:
#   floor-snap  etcdctl snapshot save (v3) / etcdctl backup (v2) alone
#   floor-read  a plain read of the member's data files (cat > /dev/null)
# Contenders alternate (the order rotates every repetition). One key changes
# before every run (see tick).

# tick API: change one key, as a live cluster does between two backups.
# Without it every cycle would back up identical bytes and the original's
# `rclone copy` (RCLONE_CHECKSUM=true) would skip them: a saving no cluster
# in use ever sees.
TICKS=0
tick() {
  TICKS=$((TICKS + 1))
  if [ "$1" = v3 ]; then
    curl -fsS -m 10 -X POST "$EP3/v3/kv/put" -d "{\"key\":\"L3RpY2s=\",\"value\":\"$(printf '%s' "$TICKS" | base64)\"}" >/dev/null
  else
    curl -fsS -m 10 -X PUT "$EP2/v2/keys/tick" -d "value=$TICKS" >/dev/null
  fi || die "writing the tick key failed"
}

mid_for() { printf '%s%029x%s' "$1" 0 "$2"; }   # mid_for PREFIX N: a 32-hex machine-id

run_backup() {
  local label=$1 bytes=$2 rep api remote who i m ep dd order n out before after up cp_bytes
  local WB=$W/backup-work; mkdir -p "$WB"
  local contenders=(ours:local orig:local ours:sftp orig:sftp floor-snap:- floor-read:-)
  for rep in $(seq 1 "$(reps_for "$bytes")"); do
    for api in v3 v2; do
      if [ "$api" = v3 ]; then ep=$EP3; dd=$DS/v3; else ep=$EP2; dd=$DS/v2; fi
      n=${#contenders[@]}
      for i in $(seq 0 $((n - 1))); do
        IFS=: read -r who remote <<<"${contenders[$(( (i + rep - 1) % n ))]}"
        out=$WB/m.json
        tick "$api"
        case "$who" in
          ours)
            m=$(mid_for b "$([ "$api" = v3 ] && echo 3 || echo 2)$([ "$remote" = local ] && echo 1 || echo 2)")
            tree_state "${LANDS[$remote]}" >"$WB/before"
            measure "$out" timeout 900 bash -c 'set -o pipefail
              "$0/etcd2-snapshot" -q --api "$1" --data-dir "$2" --endpoints "$3" --work-dir "$4" --machine-id "$5" -o - \
              | "$0/etcd2-push" -q --endpoint "$6" --machine-id "$5" --work-dir "$4" --lock-file "$4/push.lock" -' \
              "$BIN" "$api" "$dd" "$ep" "$WB/ours" "$m" "${ENDPOINT[$remote]}" \
              || die "[$label] ours $api $remote failed"
            tree_state "${LANDS[$remote]}" >"$WB/after"
            up=$(tree_written "$WB/before" "$WB/after" "$m/")
            rec "$out" scenario=backup size="$label" size_bytes="$bytes" api=$api remote=$remote contender=ours rep="$rep" bytes_up="$up" bytes_remote_copy=0 ;;
          orig)
            m=$(mid_for a "$([ "$api" = v3 ] && echo 3 || echo 2)$([ "$remote" = local ] && echo 1 || echo 2)")
            tree_state "${LANDS[$remote]}" >"$WB/before"
            measure "$out" timeout 900 "$BENCH_D/orig-backup.sh" "$api" "$dd" "$WB/orig" "${ENDPOINT[$remote]}" "$m" "$ep" 2>>"$W/commands.log" \
              || die "[$label] original procedure $api $remote failed (see $W/commands.log)"
            tree_state "${LANDS[$remote]}" >"$WB/after"
            up=$(tree_written "$WB/before" "$WB/after" "$m/")
            cp_bytes=$(tree_written "$WB/before" "$WB/after" "${m}_backup/")
            rec "$out" scenario=backup size="$label" size_bytes="$bytes" api=$api remote=$remote contender=orig rep="$rep" bytes_up="$up" bytes_remote_copy="$cp_bytes" ;;
          floor-snap)
            rm -rf "$WB/floor"; mkdir -p "$WB/floor"
            if [ "$api" = v3 ]; then
              measure "$out" timeout 900 env ETCDCTL_API=3 etcdctl --endpoints "$ep" snapshot save "$WB/floor/snapshot.db" >/dev/null 2>>"$W/commands.log" \
                || die "[$label] etcdctl snapshot save failed"
            else
              measure "$out" timeout 900 env ETCDCTL_API=2 etcdctl backup --data-dir "$dd" --backup-dir "$WB/floor" >/dev/null 2>>"$W/commands.log" \
                || die "[$label] etcdctl backup failed"
            fi
            rec "$out" scenario=backup size="$label" size_bytes="$bytes" api=$api remote=- contender=floor-snap rep="$rep" \
              out_bytes="$(du -sb "$WB/floor" | cut -f1)" ;;
          floor-read)
            measure "$out" timeout 900 bash -c 'find "$0" -type f -exec cat {} + >/dev/null' "$dd/member" \
              || die "[$label] reading the data dir failed"
            rec "$out" scenario=backup size="$label" size_bytes="$bytes" api=$api remote=- contender=floor-read rep="$rep" \
              out_bytes="$(du -sb "$dd/member" | cut -f1)" ;;
        esac
        log "[$label] backup rep $rep $api ${who}${remote:+ $remote}: $(wall_of "$out")"
      done
    done
  done
  rm -rf "$WB"
}

# Scenario 3, codecs (sourced by scripts/bench): one real
#   etcd2-snapshot --api v3 -o FILE --codec C --level L --threads T
# per configuration on the v3 data set, round-robin over BENCH_REPS, plus the
# floor (`etcdctl snapshot save` alone; `cat` of the snapshot).

run_codecs() {
  local label=$1 bytes=$2 rep cfg codec level threads ext out name obytes snap_bytes=0
  local WC=$W/codec-work; rm -rf "$WC"; mkdir -p "$WC/work"
  local configs=()
  for l in 1 3 6 9; do for t in 0 1 2; do configs+=("zstd:$l:$t"); done; done
  configs+=("gzip:1:0" "gzip:6:0" "floor:snapshot:0" "floor:cat:0")
  for rep in $(seq 1 "$(reps_for "$bytes")"); do
    for cfg in "${configs[@]}"; do
      IFS=: read -r codec level threads <<<"$cfg"
      case $codec in
        zstd|gzip)
          ext=tar.zst; [ "$codec" = gzip ] && ext=tar.gz
          out=$WC/out.$ext; rm -f "$out"
          measure "$WC/m.json" timeout 900 "$BIN/etcd2-snapshot" --api v3 -q --endpoints "$EP3" --work-dir "$WC/work" \
            --machine-id "$(mid_for c 00)" -o "$out" --codec "$codec" --level "$level" --threads "$threads" \
            || die "[$label] etcd2-snapshot --codec $codec --level $level --threads $threads failed"
          obytes=$(stat -c %s "$out"); name="$codec-$level-t$threads" ;;
        floor)
          if [ "$level" = snapshot ]; then
            rm -f "$WC/snap.db"
            measure "$WC/m.json" timeout 900 env ETCDCTL_API=3 etcdctl --endpoints "$EP3" snapshot save "$WC/snap.db" >/dev/null 2>>"$W/commands.log" \
              || die "[$label] etcdctl snapshot save failed"
            snap_bytes=$(stat -c %s "$WC/snap.db"); name="etcdctl snapshot save"
          else
            measure "$WC/m.json" sh -c 'cat "$1" >/dev/null' sh "$WC/snap.db" || die "cat failed"
            name="cat snapshot"
          fi
          obytes=$snap_bytes ;;
      esac
      rec "$WC/m.json" scenario=codecs size="$label" size_bytes="$bytes" contender="$name" codec="$codec" \
        level="\"$level\"" threads="$threads" rep="$rep" out_bytes="$obytes" snap_bytes="$snap_bytes"
    done
    log "[$label] codecs rep $rep done"
  done
  rm -rf "$WC"
}

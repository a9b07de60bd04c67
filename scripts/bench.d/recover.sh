#!/usr/bin/env bash
# One recovery, from "three data dirs gone" to three healthy members with
# every key verified (timed by the caller under measure.py):
#   recover.sh ours|seed|floor v2|v3
# Environment: RUN (work dir), C1..C3 / P1..P3 (client / peer ports), EP_REMOTE
# (rclone endpoint), MID (machine-id folder), HASHES (for verify.py), BIN,
# BENCH_D. Writes RUN/pids (the members it started, for the caller to stop by
# PID) and RUN/phases (time stamps: restored, joined2, joined3, healthy, verified).
#
#   ours   the README's recovery procedure with our tools, step for step
#   seed   the seed README's procedure as written: etcd2-restore.service (rm
#          -rf, rclone copy, the Go program: etcd --force-new-cluster, poll
#          cluster-health up to 10 x 2 s, member update, kill), cp -r, start
#          etcd; then per joiner etcd2-join.service (rm -rf, member add,
#          drop-in), start etcd, `sleep 10`
#   floor  the least a recovery must do: fetch (one rclone copy), extract,
#          restore/start the founder, member add retried until etcd's own
#          reconfiguration guard lets it through, start each joiner
set -euo pipefail
mode=$1 api=$2
C=("" "$C1" "$C2" "$C3"); P=("" "$P1" "$P2" "$P3")
url() { echo "http://127.0.0.1:${C[$1]}"; }
purl() { echo "http://127.0.0.1:${P[$1]}"; }
phase() { echo "$1 $(date +%s.%N)" >>"$RUN/phases"; }
: >"$RUN/pids"; : >"$RUN/phases"; phase start
mkdir -p "$RUN/e1" "$RUN/e2" "$RUN/e3" "$RUN/work"
chmod 700 "$RUN/e1" "$RUN/e2" "$RUN/e3"

# start_member I [etcd flags]: what etcd2.service does on node I; ETCD_* from the env.
start_member() {
  local i=$1; shift
  etcd --data-dir "$RUN/e$i" \
    --listen-client-urls "$(url "$i")" --advertise-client-urls "$(url "$i")" \
    --listen-peer-urls "$(purl "$i")" --initial-advertise-peer-urls "$(purl "$i")" \
    --quota-backend-bytes=8589934592 --enable-v2=true "$@" >>"$RUN/e$i.log" 2>&1 &
  echo $! >>"$RUN/pids"
  LAST=$!
}
# ready I: what systemd's Type=notify start waits for (etcd serving); polled
# every 50 ms, at most 300 s.
ready() {
  for _ in $(seq 1 6000); do
    kill -0 "$2" 2>/dev/null || { echo "e$1 exited: $(tail -n 3 "$RUN/e$1.log")" >&2; return 1; }
    curl -fsS -m 1 "$(url "$1")/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    sleep 0.05
  done
  echo "e$1 not ready within 300 s" >&2; return 1
}
all_healthy() {   # three members healthy, polled every 50 ms, at most 300 s
  for _ in $(seq 1 6000); do
    ok=0
    for i in 1 2 3; do curl -fsS -m 1 "$(url "$i")/health" 2>/dev/null | grep -q '"health":"true"' && ok=$((ok + 1)); done
    [ "$ok" = 3 ] && return 0
    sleep 0.05
  done
  echo "the cluster did not get three healthy members within 300 s" >&2; return 1
}
finish() {
  all_healthy; phase healthy
  python3 "$BENCH_D/verify.py" "$api" "$HASHES" "$(url 1)" "$(url 2)" "$(url 3)" >/dev/null
  phase verified
}
# dropin_env FILE: the Environment= lines of a systemd drop-in, as NAME=VALUE words.
dropin_env() { sed -n 's/^Environment="\(.*\)"$/\1/p' "$1"; }

case "$mode" in
ours)
  "$BIN/etcd2-fetch" -q --endpoint "$EP_REMOTE" --machine-id "$MID" --work-dir "$RUN/work" --into "$RUN/restore"
  "$BIN/etcd2-restore" -q --data-dir "$RUN/e1" --name e1 --peer-urls "$(purl 1)" "$RUN/restore"
  ETCD_NAME=e1 start_member 1
  "$BIN/etcd2-health" -q --endpoints "$(url 1)" --members 1 --wait 300s
  phase restored
  for i in 2 3; do
    "$BIN/etcd2-wipe" -q "$RUN/e$i"
    "$BIN/etcd2-member-add" -q --endpoints "$(url 1)" --name "e$i" --peer-urls "$(purl "$i")" --dropin "$RUN/e$i-join.conf"
    # shellcheck disable=SC2046 # word splitting of NAME=VALUE pairs is the point
    env $(dropin_env "$RUN/e$i-join.conf") bash -c "$(declare -f start_member url purl); $(declare -p C P RUN); start_member $i"
    "$BIN/etcd2-health" -q --endpoints "$(url 1)" --members "$i" --wait 300s
    phase "joined$i"
  done
  finish ;;
seed)
  R=$RUN/restore
  export RCLONE_CHECKSUM=true
  # etcd2-restore.service
  rm -rf "$RUN/e1/member"
  mkdir -p "$R"; rm -rf "$R/member"
  rclone copy "$EP_REMOTE/$MID" "$R"
  ls -R "$R" >/dev/null
  #   the etcd2-restore program
  etcd --name e1 --data-dir "$R" --force-new-cluster \
    --listen-client-urls "$(url 1)" --advertise-client-urls "$(url 1)" \
    --listen-peer-urls "$(purl 1)" --initial-advertise-peer-urls "$(purl 1)" --enable-v2=true >>"$RUN/restore.log" 2>&1 &
  rpid=$!; echo "$rpid" >>"$RUN/pids"
  up=0
  for _ in $(seq 1 10); do
    if ETCDCTL_API=2 etcdctl --endpoints "$(url 1)" cluster-health >/dev/null 2>&1; then up=1; break; fi
    sleep 2
  done
  [ "$up" = 1 ] || { echo "seed: restored etcd not healthy after 10 polls" >&2; exit 1; }
  id=$(ETCDCTL_API=2 etcdctl --endpoints "$(url 1)" member list | head -n 1 | cut -d: -f1)
  ETCDCTL_API=2 etcdctl --endpoints "$(url 1)" member update "$id" "$(purl 1)" >/dev/null
  kill "$rpid"; wait "$rpid" 2>/dev/null || true
  #   ExecStartPost: cp -r, chown -R etcd:etcd (we run as the owner already)
  cp -r "$R/member" "$RUN/e1/member"
  # systemctl start etcd2.service
  ETCD_NAME=e1 start_member 1; ready 1 "$LAST"
  phase restored
  for i in 2 3; do
    # etcd2-join.service: rm -rf <data>/member; etcd2-join <founder> <name> <peer url>
    rm -rf "$RUN/e$i/member"
    ETCDCTL_API=2 etcdctl --endpoints "$(url 1)" member add "e$i" "$(purl "$i")" >"$RUN/e$i-add.out"
    { echo '[Service]'; grep '^ETCD_' "$RUN/e$i-add.out" | sed 's/^\(ETCD_[A-Z_]*\)="\{0,1\}\([^"]*\)"\{0,1\}$/Environment="\1=\2"/'; } >"$RUN/e$i-join.conf"
    # systemctl start etcd2.service (with the drop-in)
    # shellcheck disable=SC2046
    env $(dropin_env "$RUN/e$i-join.conf") bash -c "$(declare -f start_member url purl); $(declare -p C P RUN); start_member $i; echo \$! >$RUN/e$i.pid"
    ready "$i" "$(cat "$RUN/e$i.pid")"
    phase "joined$i"
    sleep 10
  done
  finish ;;
floor)
  if [ "$api" = v3 ]; then
    arch=$(rclone cat "$EP_REMOTE/$MID/LATEST.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["archive"])')
    rclone copyto "$EP_REMOTE/$MID/generations/$arch" "$RUN/work/$arch"
    mkdir -p "$RUN/x"; tar --zstd -xf "$RUN/work/$arch" -C "$RUN/x"
    rm -rf "$RUN/e1"
    ETCDCTL_API=3 etcdctl snapshot restore "$RUN/x/snapshot.db" --name e1 --data-dir "$RUN/e1" \
      --initial-cluster "e1=$(purl 1)" --initial-advertise-peer-urls "$(purl 1)" >/dev/null 2>&1
    ETCD_NAME=e1 start_member 1; ready 1 "$LAST"
  else
    arch=$(rclone cat "$EP_REMOTE/$MID/LATEST.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["archive"])')
    rclone copyto "$EP_REMOTE/$MID/generations/$arch" "$RUN/work/$arch"
    tar --zstd -xf "$RUN/work/$arch" -C "$RUN/e1" member
    ETCD_NAME=e1 start_member 1 --force-new-cluster; ready 1 "$LAST"
    id=$(ETCDCTL_API=3 etcdctl --endpoints "$(url 1)" member list | head -n 1 | cut -d, -f1)
    ETCDCTL_API=3 etcdctl --endpoints "$(url 1)" member update "$id" --peer-urls="$(purl 1)" >/dev/null
  fi
  phase restored
  for i in 2 3; do
    added=0
    for _ in $(seq 1 600); do   # every 0.1 s, at most 60 s: etcd's guard decides
      if ETCDCTL_API=3 etcdctl --endpoints "$(url 1)" member add "e$i" --peer-urls="$(purl "$i")" >"$RUN/e$i-add.out" 2>/dev/null; then added=1; break; fi
      sleep 0.1
    done
    [ "$added" = 1 ] || { echo "floor: member add e$i refused for 60 s" >&2; exit 1; }
    # shellcheck disable=SC2046
    env $(grep '^ETCD_' "$RUN/e$i-add.out" | grep -v '^ETCD_INITIAL_ADVERTISE_PEER_URLS=' | tr -d '"') bash -c "$(declare -f start_member url purl); $(declare -p C P RUN); start_member $i; echo \$! >$RUN/e$i.pid"
    phase "joined$i"
  done
  finish ;;
*) echo "recover.sh: unknown mode $mode" >&2; exit 2 ;;
esac

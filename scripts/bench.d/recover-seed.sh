#!/usr/bin/env bash
# The seed README's recovery procedure as written, up to its last step (run by
# recover.py seed, which then waits for three healthy members and checks
# every key; all of it timed by scripts/bench). It stays shell because it
# reproduces the seed package's units, command for command:
#   etcd2-restore.service: rm -rf, rclone copy, the etcd2-restore Go program
#   (etcd --force-new-cluster, poll cluster-health up to 10 x 2 s, member
#   update, kill), cp -r; start etcd; then per joiner etcd2-join.service (rm
#   -rf, member add, drop-in), start etcd, `sleep 10`.
# Environment: RUN (work dir, e1..e3 made by the caller), C1..C3 / P1..P3
# (client / peer ports on 127.0.0.1), EP_REMOTE (rclone endpoint), MID
# (machine-id folder). Appends every etcd it starts to RUN/pids (the caller
# stops them by PID) and its phases (restored, joined2, joined3) to RUN/phases.
set -euo pipefail
C=("" "$C1" "$C2" "$C3"); P=("" "$P1" "$P2" "$P3")
url() { echo "http://127.0.0.1:${C[$1]}"; }
purl() { echo "http://127.0.0.1:${P[$1]}"; }
phase() { echo "$1 $(date +%s.%N)" >>"$RUN/phases"; }

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
# ready I PID: what systemd's Type=notify start waits for (etcd serving);
# polled every 50 ms, at most 300 s.
ready() {
  for _ in $(seq 1 6000); do
    kill -0 "$2" 2>/dev/null || { echo "e$1 exited: $(tail -n 3 "$RUN/e$1.log")" >&2; return 1; }
    curl -fsS -m 1 "$(url "$1")/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    sleep 0.05
  done
  echo "e$1 not ready within 300 s" >&2; return 1
}
# dropin_env FILE: the Environment= lines of a systemd drop-in, as NAME=VALUE words.
dropin_env() { sed -n 's/^Environment="\(.*\)"$/\1/p' "$1"; }

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
  # shellcheck disable=SC2046 # word splitting of NAME=VALUE pairs is the point
  env $(dropin_env "$RUN/e$i-join.conf") bash -c "$(declare -f start_member url purl); $(declare -p C P RUN); start_member $i; echo \$! >$RUN/e$i.pid"
  ready "$i" "$(cat "$RUN/e$i.pid")"
  phase "joined$i"
  sleep 10
done

#!/usr/bin/env bash
# The original package's etcd2-backup.service, command for command (see
# /work/shared/ORIGINAL.md), for the benchmark:
#   orig-backup.sh v2|v3 DATA_DIR BACKUP_DIR ENDPOINT MACHINE_ID CLIENT_URL
# v2 is what the unit ran; v3 replaces `etcdctl backup` by `etcdctl snapshot
# save` (issue 6: "etcdctl backup or snapshot save, then rclone copy of the
# result"). Differences, all in its favour: rclone runs natively instead of in
# a docker container. RCLONE_CHECKSUM=true came from its
# 30-etcd2-backup-restore.conf; rclone reads it as --checksum.
set -u
api=$1 data=$2 backup=$3 endpoint=$4 m=$5 ep=$6
export RCLONE_CHECKSUM=true
# ExecStartPre=/usr/bin/rm -rf ${ETCD_BACKUP_DIR}
rm -rf "$backup" || exit 1
# ExecStartPre=/usr/bin/mkdir -p ${ETCD_BACKUP_DIR}/member/snap
mkdir -p "$backup/member/snap" || exit 1
# ExecStartPre=/usr/bin/etcdctl backup --data-dir ... --backup-dir ...
if [ "$api" = v2 ]; then
  ETCDCTL_API=2 etcdctl backup --data-dir "$data" --backup-dir "$backup" >/dev/null || exit 1
else
  ETCDCTL_API=3 etcdctl --endpoints "$ep" snapshot save "$backup/snapshot.db" >/dev/null || exit 1
fi
# ExecStartPre=/usr/bin/touch ${ETCD_BACKUP_DIR}/member/snap/iamhereflag
touch "$backup/member/snap/iamhereflag" || exit 1
# ExecStartPre=-... rclone copy $RCLONE_ENDPOINT/%m $RCLONE_ENDPOINT/%m_backup  (may fail)
rclone copy "$endpoint/$m" "$endpoint/${m}_backup" 2>/dev/null || true
# ExecStart=... rclone copy ${ETCD_BACKUP_DIR} $RCLONE_ENDPOINT/%m/
exec rclone copy "$backup" "$endpoint/$m/"

#!/usr/bin/env bash
# Single-node Ceph (one mon, one OSD) with radosgw on 127.0.0.1: the S3 server of the native stack.
#
#   ceph.sh start   start a cluster in $BASE (refuses to clobber a running one; a stopped BlueStore
#                   cluster is restarted with its data)
#   ceph.sh stop    stop the daemons recorded in $BASE/pids (rgw first, mon last); WIPE=1 removes $BASE
#   ceph.sh status  exit 0 when radosgw answers
#
# Settings (environment): BASE, RGW_PORT (7480), MON_PORT (3300), MON_V1_PORT (6789),
# OSD_STORE=bluestore|memstore (bluestore: data on a sparse file of BLUESTORE_BLOCK_SIZE, default
# 64 GiB, kept across restarts; deleted objects free space inside it but never shrink it; memstore:
# RAM only, for throwaway test clusters), ACCESS_KEY/SECRET_KEY of the S3 user to create.
# Derived from the recipe measured on these machines (../shared/reference/ceph-rgw/start-rgw.sh).
set -euo pipefail

cmd=${1:-start}
BASE=${BASE:?BASE must name the cluster directory}
RGW_PORT=${RGW_PORT:-7480}
MON_PORT=${MON_PORT:-3300}
MON_V1_PORT=${MON_V1_PORT:-6789}
OSD_STORE=${OSD_STORE:-bluestore}
MEMSTORE_BYTES=${MEMSTORE_BYTES:-$((4*1024*1024*1024))}
BLUESTORE_BLOCK_SIZE=${BLUESTORE_BLOCK_SIZE:-$((64*1024*1024*1024))}
BLUESTORE_CACHE_SIZE=${BLUESTORE_CACHE_SIZE:-$((128*1024*1024))}
export CEPH_CONF=$BASE/ceph.conf

T0=$(date +%s.%N)
log() { awk -v t0="$T0" -v now="$(date +%s.%N)" -v m="$*" 'BEGIN{printf "[ceph %5.2fs] %s\n", now-t0, m}' >&2; }
ceph_() { timeout 30 ceph --connect-timeout 20 "$@"; }

rgw_answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RGW_PORT/" || true)" = 200 ]; }

stop() {
  for name in rgw.a osd.0 mon.a; do
    f=$BASE/pids/$name.pid
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      [ "$name" = rgw.a ] && touch "$BASE/run/rgw.stopping"
      # each daemon leads its own process group (setsid): signal the group, supervisor included
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"; }
      log "stopped $name (pid $pid)"
    fi
    rm -f "$f"
  done
  if [ "${WIPE:-0}" = 1 ]; then rm -rf "$BASE"; fi
  return 0
}

running() {
  [ -d "$BASE/pids" ] || return 1
  for f in "$BASE"/pids/*.pid; do
    [ -e "$f" ] || continue
    kill -0 "$(cat "$f")" 2>/dev/null && return 0
  done
  return 1
}

start_mon() {
  setsid ceph-mon -f -i a </dev/null >>"$BASE/log/mon.a.out" 2>&1 &
  echo $! > "$BASE/pids/mon.a.pid"
  ceph_ -s >/dev/null
  log "mon up"
}

start_daemons() {
  setsid ceph-osd -f -i 0 </dev/null >>"$BASE/log/osd.0.out" 2>&1 &
  echo $! > "$BASE/pids/osd.0.pid"
  for _ in $(seq 1 240); do
    ceph_ osd dump 2>/dev/null | grep -q '^osd.0 up' && break
    sleep 0.25
  done
  ceph_ osd dump | grep -q '^osd.0 up' || { echo "osd.0 did not come up" >&2; return 1; }
  log "osd.0 up ($OSD_STORE)"
  rm -f "$BASE/run/rgw.stopping"
  # radosgw (Pacific 16.2.15) has been seen to segfault in a messenger thread under load: a small
  # supervisor restarts it; its data lives in the OSD, so nothing is lost but the requests in flight.
  setsid bash -c 'while :; do
      radosgw -f -n client.rgw.a
      rc=$?
      [ -e "$0/run/rgw.stopping" ] && exit 0
      echo "radosgw exited with status $rc; restarting" >&2
      sleep 0.5
    done' "$BASE" </dev/null >>"$BASE/log/rgw.a.out" 2>&1 &
  echo $! > "$BASE/pids/rgw.a.pid"
  for _ in $(seq 1 480); do
    rgw_answers && break
    kill -0 "$(cat "$BASE/pids/rgw.a.pid")" 2>/dev/null || { tail -n 20 "$BASE/log/rgw.a.out" >&2; return 1; }
    sleep 0.25
  done
  rgw_answers || { echo "radosgw not answering on $RGW_PORT" >&2; return 1; }
  log "radosgw answering on 127.0.0.1:$RGW_PORT"
}

write_conf() {
  local fsid=$1 store_conf
  if [ "$OSD_STORE" = bluestore ]; then
    # bluestore block path stays unset: pointing it at $osd_data/block makes mkfs fail with ELOOP.
    store_conf="osd objectstore = bluestore
bluestore block create = true
bluestore block size = $BLUESTORE_BLOCK_SIZE
bluestore block db create = false
bluestore block wal create = false
bluestore cache autotune = false
bluestore cache size = $BLUESTORE_CACHE_SIZE
osd memory target = 1073741824"
  else
    store_conf="osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES"
  fi
  cat > "$CEPH_CONF" <<CONF
[global]
fsid = $fsid
mon initial members = a
mon host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
run dir = $BASE/run
admin socket = $BASE/run/\$cluster-\$name.asok
log file = $BASE/log/\$cluster-\$name.log
pid file = $BASE/run/\$cluster-\$name.pid
crash dir = $BASE/crash
log to stderr = false
err to stderr = true
mon cluster log file = $BASE/log/\$cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
mon warn on insecure global id reclaim allowed = false
debug ms = 0

[mon]
# a one-mon cluster commits maps in milliseconds instead of seconds
paxos propose interval = 0.05
paxos min wait = 0.01
mon data = $BASE/mon/\$cluster-\$id

[osd]
osd data = $BASE/osd/\$cluster-\$id
$store_conf
osd op num shards = 1
osd op num threads per shard = 2

[client.rgw.a]
# radosgw defaults to ms_mon_client_mode=secure, which auth=none cannot satisfy
ms mon client mode = crc
rgw data = $BASE/rgw/\$cluster-rgw.a
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw dns name = 127.0.0.1
rgw thread pool size = 64
rgw gc obj min wait = 5
rgw gc processor period = 10
CONF
}

start() {
  if running; then
    rgw_answers && { log "already running"; return 0; }
    echo "cluster in $BASE is partly running; run '$0 stop' first" >&2; return 1
  fi
  if [ "$OSD_STORE" = bluestore ] && [ -e "$BASE/osd/ceph-0/block" ] && [ -e "$BASE/created" ]; then
    log "restarting existing BlueStore cluster"
    start_mon
    start_daemons
    return 0
  fi
  rm -rf "$BASE"
  mkdir -p "$BASE"/{mon/ceph-a,osd/ceph-0,rgw/ceph-rgw.a,log,run,pids,crash}
  trap 'rc=$?; if [ $rc -ne 0 ]; then echo "ceph start failed (rc=$rc)" >&2; stop; fi' EXIT
  local fsid osd_uuid
  fsid=$(uuidgen); osd_uuid=$(uuidgen)
  write_conf "$fsid"
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]" "$BASE/monmap" >/dev/null
  ceph-authtool --create-keyring "$BASE/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-mon --mkfs -i a --monmap "$BASE/monmap" --keyring "$BASE/mon.keyring"
  start_mon
  ceph_ osd new "$osd_uuid" >/dev/null
  ceph-osd -i 0 --mkfs --osd-uuid "$osd_uuid" >"$BASE/log/osd.0.mkfs.out" 2>&1 \
    || { tail -n 30 "$BASE/log/osd.0.mkfs.out" >&2; exit 1; }
  log "osd.0 mkfs done ($OSD_STORE)"
  start_daemons
  radosgw-admin user create --uid=genobase --display-name=genobase \
    --access-key="${ACCESS_KEY:?}" --secret="${SECRET_KEY:?}" >"$BASE/user.json" 2>"$BASE/log/user-create.err"
  touch "$BASE/created"
  trap - EXIT
  log "S3 user genobase created"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) rgw_answers ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

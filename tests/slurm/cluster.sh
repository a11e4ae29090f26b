#!/usr/bin/env bash
# A real single-node SLURM (slurmctld + slurmd + slurmdbd on MariaDB) on localhost, for tests.
#
#   tests/slurm/cluster.sh install   # Debian packages (root, apt)
#   tests/slurm/cluster.sh start     # install if needed, start the daemons, wait until idle
#   tests/slurm/cluster.sh stop      # cancel jobs, stop the daemons by pid file, remove state
#   tests/slurm/cluster.sh status    # exit 0 when the cluster answers and the node is usable
#
# Needs root and Debian's slurm 22.05 packages; no systemd, no cgroups. State lives in
# $C2F_SLURM_STATE (default /tmp/c2f-slurm). Facts: ../shared/reference/local-slurm.md.
set -euo pipefail

STATE=${C2F_SLURM_STATE:-/tmp/c2f-slurm}
CONF=$STATE/slurm.conf
export SLURM_CONF=$CONF
PACKAGES="munge slurmctld slurmd slurm-client slurmdbd mariadb-server rsync"
DB_PORT=3307

log() { echo "[slurm $(date +%T)] $*" >&2; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 2))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "timed out waiting for $what"; return 1
}

install() {
  [ "$(id -u)" = 0 ] || { log "not root: cannot install or run SLURM daemons"; exit 3; }
  if command -v slurmctld >/dev/null && command -v mariadbd >/dev/null \
      && command -v slurmdbd >/dev/null && command -v rsync >/dev/null; then return 0; fi
  command -v apt-get >/dev/null || { log "no apt-get: install $PACKAGES yourself"; exit 3; }
  log "installing $PACKAGES"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=300 $PACKAGES >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
           --no-install-recommends -o DPkg::Lock::Timeout=300 $PACKAGES >/dev/null; }
}

status() {  # (a missing SLURM_CONF makes every client retry for 60 s: check it first)
  [ -f "$CONF" ] && scontrol ping 2>/dev/null | grep -q UP \
    && sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'
}

write_configs() {
  local host node
  host=$(hostname -s)
  # the node line as slurmd detects it (declaring more than it detects drains the node)
  node=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")
  cat >"$CONF" <<EOF
ClusterName=c2ftest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
KillWait=5
JobAcctGatherType=jobacct_gather/none
SchedulerParameters=sched_interval=2,bf_interval=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
$node
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$STATE/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/slurmdbd.log
EOF
  chmod 600 "$STATE/slurmdbd.conf"
  mkdir -p /etc/slurm
  ln -sfn "$CONF" /etc/slurm/slurm.conf  # for subprocesses started with a clean environment
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged
  wait_for 10 munged sh -c 'munge -n | unmunge'
  cp /run/munge/munged.pid "$STATE/munged.pid"  # ours: stopped with the rest
}

start_mariadb() {
  local sock=$STATE/mysql.sock
  mariadb-install-db --datadir="$STATE/mysql" --user=root >"$STATE/mariadb-install.log" 2>&1
  mariadbd --datadir="$STATE/mysql" --user=root --socket="$sock" --port=$DB_PORT \
    --bind-address=127.0.0.1 --pid-file="$STATE/mariadb.pid" --skip-log-bin \
    >"$STATE/mariadb.log" 2>&1 &
  wait_for 30 mariadbd mariadb --socket="$sock" -uroot -e 'select 1'
  mariadb --socket="$sock" -uroot -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start() {
  if status; then log "already running ($CONF)"; return 0; fi
  install
  stop_daemons
  rm -rf "$STATE" && mkdir -p "$STATE/ctld" "$STATE/spool"
  write_configs
  start_munge
  start_mariadb
  slurmdbd
  wait_for 30 slurmdbd sacctmgr -n list cluster
  sacctmgr -i add cluster c2ftest >/dev/null
  slurmctld
  wait_for 30 slurmctld sh -c 'scontrol ping | grep -q UP'
  slurmd
  wait_for 30 "an idle node" sh -c "sinfo -h -o %T | grep -qx idle"
  log "up: SLURM_CONF=$CONF ($(sinfo -h -o '%D node(s), %c cpus, %m MB'))"
}

stop_daemons() {
  local name pid
  for name in slurmd slurmctld slurmdbd mariadb munged; do
    [ -f "$STATE/$name.pid" ] || continue
    pid=$(cat "$STATE/$name.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/$name.pid"
  done
}

stop() {
  if status; then scancel --user="$(id -un)" 2>/dev/null || true; fi
  stop_daemons
  if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$CONF" ]; then
    rm -f /etc/slurm/slurm.conf
  fi
  rm -rf "$STATE"
  log "stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac

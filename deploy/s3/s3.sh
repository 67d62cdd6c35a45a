#!/usr/bin/env bash
# An S3-compatible server on 127.0.0.1 for the S3 code paths: moto's server mode
# (moto[server] from PyPI, pinned in requirements.txt), with the buckets the project uses.
#
#   deploy/s3/s3.sh install    create a Python virtualenv with moto[server] (first run only)
#   deploy/s3/s3.sh start      start it, wait until it answers, create the buckets
#   deploy/s3/s3.sh stop       stop it
#   deploy/s3/s3.sh status     print "running <endpoint>" or "stopped"; exit 0 / 3
#   deploy/s3/s3.sh endpoint   print the endpoint URL of the running server
#
# Environment:
#   USAGEFLOW_S3_PORT     port (default: 19000 if free, else any free port)
#   USAGEFLOW_S3_BUCKETS  buckets to create (default: "usageflow usageflow-test")
#   USAGEFLOW_STACK_DIR   where logs and the pid file live (default: ~/.cache/usageflow/stack)
#   USAGEFLOW_CACHE_DIR   where the virtualenv lives (default: ~/.cache/usageflow)
# Any access key and secret are accepted; the project's examples use usageflow / usageflow-secret.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
. "$here/../lib.sh"
venv="$cache_dir/s3-venv"
state="$stack_dir/s3"
pid_file="$state/pid"
stamp="$venv/.requirements-$(sha256sum "$here/requirements.txt" | cut -c1-16)"

log() { echo "s3.sh: $*" >&2; }

running() { pid_running "$pid_file"; }

install() {
  [ -f "$stamp" ] && return 0
  log "installing moto[server] into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
  touch "$stamp"
}

start() {
  install
  if running; then
    log "already running at $(cat "$state/endpoint")"
    return 0
  fi
  mkdir -p "$state"
  local port
  port="$(choose_port "${USAGEFLOW_S3_PORT:-}" "$state/port" 19000)"
  port_free "$port" || { log "port $port is in use"; exit 1; }
  echo "$port" >"$state/port"
  log "starting moto S3 server on 127.0.0.1:$port"
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$state/server.log" 2>&1 &
  echo $! >"$pid_file"
  local endpoint="http://127.0.0.1:$port" deadline=$((SECONDS + 60))
  until curl -sf -o /dev/null "$endpoint/moto-api/"; do
    if ! running; then
      log "server exited during start-up:"
      tail -n 30 "$state/server.log" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "server did not answer within 60 s"
      stop
      exit 1
    fi
    sleep 0.3
  done
  for bucket in ${USAGEFLOW_S3_BUCKETS:-usageflow usageflow-test}; do
    curl -sf -o /dev/null -X PUT "$endpoint/$bucket" || { log "could not create bucket $bucket"; exit 1; }
  done
  echo "$endpoint" >"$state/endpoint"
  log "running at $endpoint"
}

stop() {
  pid_stop "$pid_file" 10
  log "stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status)
    if running; then echo "running $(cat "$state/endpoint")"; else echo "stopped"; exit 3; fi
    ;;
  endpoint)
    running || { log "not running"; exit 3; }
    cat "$state/endpoint"
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

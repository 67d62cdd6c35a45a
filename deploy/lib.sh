# Shared helpers for the local stack scripts (sourced, not run).

# Prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# True when nothing listens on 127.0.0.1:$1.
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True when the process in pid file $1 is alive.
pid_running() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Stops the process in pid file $1: SIGTERM, then SIGKILL after $2 seconds (default 30).
pid_stop() {
  local pid_file="$1" grace="${2:-30}" pid
  if ! pid_running "$pid_file"; then
    rm -f "$pid_file"
    return 0
  fi
  pid="$(cat "$pid_file")"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + grace))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "process $pid did not stop within $grace s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$pid_file"
}

# Picks the port for a service: $1 = explicit port (may be empty), $2 = remembered port file,
# $3 = preferred port. Prints the port.
choose_port() {
  local explicit="$1" remembered="$2" preferred="$3"
  if [ -n "$explicit" ]; then
    echo "$explicit"
  elif [ -f "$remembered" ] && port_free "$(cat "$remembered")"; then
    cat "$remembered"
  elif port_free "$preferred"; then
    echo "$preferred"
  else
    free_port
  fi
}

stack_dir="${USAGEFLOW_STACK_DIR:-$HOME/.cache/usageflow/stack}"
cache_dir="${USAGEFLOW_CACHE_DIR:-$HOME/.cache/usageflow}"

#!/usr/bin/env bash
# A single-node Apache Kafka 4.x broker (KRaft, combined broker + controller) on 127.0.0.1.
#
#   deploy/kafka/kafka.sh install   fetch the broker jars from Maven Central (first run only)
#   deploy/kafka/kafka.sh start     format KRaft storage if needed, start, wait until it answers
#   deploy/kafka/kafka.sh stop      stop it cleanly (SIGTERM, then SIGKILL after 30 s)
#   deploy/kafka/kafka.sh restart   stop, then start on the same port with the same data
#   deploy/kafka/kafka.sh status    print "running <bootstrap>" or "stopped"; exit 0 / 3
#   deploy/kafka/kafka.sh bootstrap print the bootstrap address of the running broker
#   deploy/kafka/kafka.sh wipe      stop and delete the broker's data
#
# Environment:
#   USAGEFLOW_KAFKA_PORT   broker port (default: 19092 if free, else any free port)
#   USAGEFLOW_KAFKA_HOME   where the jars are kept (default: ~/.cache/usageflow/kafka-<version>)
#   USAGEFLOW_STACK_DIR    where data, logs and the pid file live (default: ~/.cache/usageflow/stack)
#   USAGEFLOW_KAFKA_HEAP   JVM heap (default: 768m)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
. "$here/../lib.sh"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
kafka_home="${USAGEFLOW_KAFKA_HOME:-$cache_dir/kafka-$version}"
state="$stack_dir/kafka"
pid_file="$state/pid"
# A fixed cluster id: the data directory belongs to this one local cluster.
cluster_id="VXNhZ2VmbG93TG9jYWwxAA"

log() { echo "kafka.sh: $*" >&2; }

running() { pid_running "$pid_file"; }

install() {
  if [ -f "$kafka_home/libs/kafka_2.13-$version.jar" ]; then
    return 0
  fi
  command -v java >/dev/null || { log "java (17 or newer) is required"; exit 1; }
  command -v mvn >/dev/null || { log "mvn is required to fetch the broker from Maven Central"; exit 1; }
  log "fetching Apache Kafka $version from Maven Central into $kafka_home/libs"
  local tmp="$kafka_home.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp/libs"
  rm -rf "$kafka_home"
  mv "$tmp" "$kafka_home"
}

write_config() {
  local port="$1" cport="$2"
  mkdir -p "$state/data"
  cat >"$state/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$state/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.min.session.timeout.ms=1000
group.min.session.timeout.ms=1000
log.retention.hours=168
message.max.bytes=4194304
EOF
  cat >"$state/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $state/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
EOF
}

java_args() {
  JAVA_ARGS=(-Xms256m -Xmx"${USAGEFLOW_KAFKA_HEAP:-768m}" -XX:+UseG1GC -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$state/log4j2.properties" -cp "$kafka_home/libs/*")
}

start() {
  install
  if running; then
    log "already running at $(cat "$state/bootstrap")"
    return 0
  fi
  mkdir -p "$state"
  local port cport
  port="$(choose_port "${USAGEFLOW_KAFKA_PORT:-}" "$state/port" 19092)"
  port_free "$port" || { log "port $port is in use"; exit 1; }
  cport="$(choose_port "" "$state/cport" 19093)"
  write_config "$port" "$cport"
  echo "$port" >"$state/port"
  echo "$cport" >"$state/cport"
  if [ ! -f "$state/data/meta.properties" ]; then
    log "formatting KRaft storage in $state/data"
    java_args
    java "${JAVA_ARGS[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$state/server.properties" \
      >"$state/format.log" 2>&1 || { cat "$state/format.log" >&2; exit 1; }
  fi
  log "starting broker on 127.0.0.1:$port"
  : >"$state/server.log"
  java_args
  nohup java "${JAVA_ARGS[@]}" kafka.Kafka "$state/server.properties" >"$state/stdout.log" 2>&1 &
  echo $! >"$pid_file"
  local deadline=$((SECONDS + 90))
  until grep -q "Kafka Server started" "$state/server.log" 2>/dev/null && ! port_free "$port"; do
    if ! running; then
      log "broker exited during start-up; last lines of its logs:"
      tail -n 30 "$state/stdout.log" "$state/server.log" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "broker did not answer within 90 s"
      tail -n 30 "$state/server.log" >&2 || true
      stop
      exit 1
    fi
    sleep 0.5
  done
  echo "127.0.0.1:$port" >"$state/bootstrap"
  log "running at 127.0.0.1:$port (logs: $state/server.log)"
}

stop() {
  pid_stop "$pid_file" 30
  log "stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  restart)
    stop
    USAGEFLOW_KAFKA_PORT="${USAGEFLOW_KAFKA_PORT:-$(cat "$state/port")}" start
    ;;
  status)
    if running; then echo "running $(cat "$state/bootstrap")"; else echo "stopped"; exit 3; fi
    ;;
  bootstrap)
    running || { log "not running"; exit 3; }
    cat "$state/bootstrap"
    ;;
  wipe)
    stop
    rm -rf "$state"
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Runs a standalone ZooKeeper from the Debian package `zookeeper`, without
# systemd, for development, end-to-end tests and CI.
#
#   deploy/zk.sh start [port]   # fresh server on 127.0.0.1:port (default 2181); waits until ready
#   deploy/zk.sh stop           # stops the server started from ZK_HOME
#   deploy/zk.sh status [port]  # exit 0 and print `srvr` when it answers (default: ZK_HOME's port)
#
# Environment:
#   ZK_HOME        working directory (config, data, log, pid); default <repo>/target/zk-test.
#                  `start` wipes it: this is a throwaway server, not a production ensemble.
#   ZK_TICK_MS     tickTime (default 500). Sessions expire at tick granularity, so a small tick
#                  keeps failover close to the session timeout.
#   ZK_START_SECS  how long `start` waits for `Mode: standalone` (default 30).
#
# Install the server with `apt-get install -y zookeeper`.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZK_HOME=${ZK_HOME:-$REPO_ROOT/target/zk-test}
ZK_TICK_MS=${ZK_TICK_MS:-500}
ZK_START_SECS=${ZK_START_SECS:-30}
ZK_JAR=/usr/share/java/zookeeper.jar
SLF4J_JAR=/usr/share/java/slf4j-simple.jar
cmd=${1:-start}
PORT=${2:-}
if [[ -z "$PORT" && "$cmd" != start && -f "$ZK_HOME/conf/zoo.cfg" ]]; then
  PORT=$(sed -n 's/^clientPort=//p' "$ZK_HOME/conf/zoo.cfg")
fi
PORT=${PORT:-2181}

die() { echo "zk.sh: $*" >&2; exit 1; }

running_pid() {
  [[ -f "$ZK_HOME/pid" ]] || return 1
  local pid
  pid=$(cat "$ZK_HOME/pid")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Sends a four-letter word; `timeout` because a connection accepted during
# startup can stay silent forever. No `nc` needed.
four_letter() {
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf '%s' '$2' >&3 && cat <&3" 2>/dev/null
}

stop() {
  local pid
  if pid=$(running_pid); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    echo "zookeeper (pid $pid) stopped"
  fi
  rm -f "$ZK_HOME/pid"
}

case "$cmd" in
start)
  [[ -f "$ZK_JAR" ]] || die "$ZK_JAR not found; install the server: apt-get install -y zookeeper"
  command -v java >/dev/null || die "java not found on PATH"
  [[ "$PORT" =~ ^[0-9]+$ ]] || die "invalid port: $PORT"
  if running_pid >/dev/null; then
    echo "zk.sh: a server from $ZK_HOME is running; restarting it fresh" >&2
    stop >/dev/null
  fi
  rm -rf "$ZK_HOME"
  mkdir -p "$ZK_HOME/data" "$ZK_HOME/conf"
  cat > "$ZK_HOME/conf/zoo.cfg" <<CFG
tickTime=$ZK_TICK_MS
dataDir=$ZK_HOME/data
clientPort=$PORT
clientPortAddress=127.0.0.1
minSessionTimeout=1000
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,stat,mntr
CFG
  CP="$ZK_HOME/conf:$ZK_JAR"
  [[ -f "$SLF4J_JAR" ]] && CP="$CP:$SLF4J_JAR"
  nohup java -Xms64m -Xmx256m -Dzookeeper.log.dir="$ZK_HOME" -cp "$CP" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZK_HOME/conf/zoo.cfg" \
    > "$ZK_HOME/server.log" 2>&1 < /dev/null &
  echo $! > "$ZK_HOME/pid"
  for _ in $(seq 1 $((ZK_START_SECS * 10))); do
    if four_letter "$PORT" srvr | grep -q '^Mode: standalone'; then
      echo "zookeeper ready on 127.0.0.1:$PORT (pid $(cat "$ZK_HOME/pid"), home $ZK_HOME)"
      exit 0
    fi
    running_pid >/dev/null || die "zookeeper exited during startup; see $ZK_HOME/server.log"
    sleep 0.1
  done
  stop >/dev/null
  die "zookeeper not ready within ${ZK_START_SECS}s; see $ZK_HOME/server.log" ;;
stop)
  stop ;;
status)
  out=$(four_letter "$PORT" srvr) || die "no zookeeper answering on 127.0.0.1:$PORT"
  echo "$out" ;;
*)
  die "usage: zk.sh start|stop|status [port]" ;;
esac

#!/usr/bin/env bash
# Stop the broker started by .ci/kafka-up.sh. Safe to call when nothing runs.
#
# Env knobs:
#   KAFKA_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (default 30)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
PID_FILE="${ROOT}/.data/kafka/kafka.pid"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

log() { echo "kafka-down: $*" >&2; }

# kill -0 also succeeds for zombies, and in containers whose PID 1 does not
# reap orphans the exited broker can stay a zombie forever; treat that as dead.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
  [[ -n "${state}" && "${state}" != "Z" ]]
}

if [[ ! -f "${PID_FILE}" ]]; then
  log "no pid file, nothing to stop"
  exit 0
fi

pid="$(cat "${PID_FILE}")"
if [[ ! "${pid}" =~ ^[0-9]+$ ]] || ! alive "${pid}"; then
  log "broker (pid '${pid}') is not running"
  rm -f "${PID_FILE}"
  exit 0
fi

# A stale pid file can outlive a reboot or container restart, and the pid may
# since have been reused by something else: only signal it if it is our broker.
if ! tr '\0' ' ' < "/proc/${pid}/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
  log "pid ${pid} is not a Kafka broker; removing stale pid file"
  rm -f "${PID_FILE}"
  exit 0
fi

# SIGTERM triggers Kafka's controlled shutdown (flushes logs, closes cleanly),
# which on one node takes a few seconds.
log "stopping broker (pid ${pid}) ..."
kill -TERM "${pid}" 2>/dev/null || true
deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
while alive "${pid}" && (( SECONDS < deadline )); do
  sleep 0.2
done

if alive "${pid}"; then
  log "still alive after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
  kill -KILL "${pid}" 2>/dev/null || true
  # Wait for the kernel to reap it so the ports are free for a restart.
  while alive "${pid}"; do sleep 0.1; done
fi

rm -f "${PID_FILE}"
log "stopped"

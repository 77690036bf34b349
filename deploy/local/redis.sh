#!/usr/bin/env bash
# deploy/local/redis.sh {start|stop|status}
#
# Runs a local Redis on 127.0.0.1 without Docker:
#
#   start   If something already answers PING on the port, use it. Otherwise
#           make sure redis-server is installed (apt-get when root), start our
#           own instance (AOF persistence, data in <state>/redis) and wait
#           until it answers PING.
#   stop    SHUTDOWN our instance (only if we started it: pid file).
#   status  Exit 0 and print "redis: up (127.0.0.1:PORT)" if it answers PING,
#           otherwise print "redis: down" and exit 1.
#
# Environment:
#   QI_LOCAL_STATE_DIR   state dir (default <repo root>/.local)
#   QI_LOCAL_REDIS_PORT  port (default 6379)
#
# Files: <state>/redis.pid, <state>/logs/redis.log, <state>/redis (AOF data).
set -euo pipefail

# shellcheck source=deploy/local/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

REDIS_PORT="${QI_LOCAL_REDIS_PORT:-6379}"
REDIS_ADDR="127.0.0.1:${REDIS_PORT}"
REDIS_DATA_DIR="${QI_LOCAL_STATE_DIR}/redis"
PID_FILE="${QI_LOCAL_STATE_DIR}/redis.pid"
REDIS_LOG="${QI_LOCAL_LOG_DIR}/redis.log"
START_TIMEOUT_S=20
STOP_TIMEOUT_S=30

usage() {
    echo "usage: $0 {start|stop|status}" >&2
    exit 2
}

# redis_answers : true if something on REDIS_ADDR replies PONG to PING.
redis_answers() {
    local reply=""
    if command -v redis-cli >/dev/null 2>&1; then
        reply="$(timeout 3 redis-cli -h 127.0.0.1 -p "${REDIS_PORT}" ping 2>/dev/null)" || true
    else
        # No redis-cli: speak RESP over bash's /dev/tcp.
        reply="$(
            exec 2>/dev/null
            exec 3<>"/dev/tcp/127.0.0.1/${REDIS_PORT}" || exit 1
            printf 'PING\r\n' >&3
            IFS= read -r -t 2 line <&3 && printf '%s' "${line}"
        )" || true
    fi
    [[ "${reply}" == "PONG" || "${reply}" == "+PONG"* ]]
}

# our_pid : print the pid of the redis-server we started, if still running.
# Removes a stale pid file.
our_pid() {
    local pid
    pid="$(read_pid "${PID_FILE}")"
    if [[ -n "${pid}" ]] && pid_cmdline_has "${pid}" "redis-server"; then
        # redis-server sets its process title to "redis-server 127.0.0.1:PORT".
        pid_cmdline_has "${pid}" "127.0.0.1:${REDIS_PORT}" \
            || die "our redis-server (pid ${pid}) runs on another port; stop it with that QI_LOCAL_REDIS_PORT first"
        printf '%s' "${pid}"
        return 0
    fi
    if [[ -f "${PID_FILE}" ]]; then
        info "removing stale pid file ${PID_FILE}"
        rm -f "${PID_FILE}"
    fi
    return 0
}

wait_until_ready() {
    local deadline=$((SECONDS + START_TIMEOUT_S))
    while ((SECONDS < deadline)); do
        redis_answers && return 0
        sleep 0.2
    done
    tail -n 20 "${REDIS_LOG}" >&2 2>/dev/null || true
    die "redis-server did not answer PING on ${REDIS_ADDR} within ${START_TIMEOUT_S}s; see ${REDIS_LOG}"
}

cmd_start() {
    ensure_state_dirs
    local pid
    pid="$(our_pid)"
    if redis_answers; then
        if [[ -n "${pid}" ]]; then
            echo "redis: already running (pid ${pid}, ${REDIS_ADDR})"
        else
            echo "redis: something not started by this script already answers PING on ${REDIS_ADDR}; using it"
        fi
        return 0
    fi
    if [[ -n "${pid}" ]]; then
        info "our redis-server (pid ${pid}) is running but not answering yet; waiting ..."
        wait_until_ready
        echo "redis: already running (pid ${pid}, ${REDIS_ADDR})"
        return 0
    fi
    if port_open "${REDIS_PORT}"; then
        die "port ${REDIS_PORT} is in use by something that does not answer Redis PING"
    fi

    # Installing Debian's redis-server may start the system service (on 6379)
    # where an init system allows it; if that one now answers, just use it.
    ensure_command redis-server redis-server
    if redis_answers; then
        echo "redis: the system redis-server service answers PING on ${REDIS_ADDR}; using it"
        return 0
    fi

    mkdir -p "${REDIS_DATA_DIR}"
    info "starting redis-server on ${REDIS_ADDR} (log: ${REDIS_LOG})"
    redis-server \
        --bind 127.0.0.1 \
        --port "${REDIS_PORT}" \
        --dir "${REDIS_DATA_DIR}" \
        --appendonly yes \
        --appendfsync everysec \
        --save '' \
        --daemonize yes \
        --pidfile "${PID_FILE}" \
        --logfile "${REDIS_LOG}"
    wait_until_ready
    echo "redis: up (${REDIS_ADDR}, pid $(read_pid "${PID_FILE}"))"
}

cmd_stop() {
    local pid
    pid="$(our_pid)"
    if [[ -z "${pid}" ]]; then
        if redis_answers; then
            echo "redis: not started by this script (no pid file); leaving whatever answers on ${REDIS_ADDR} alone"
        else
            echo "redis: not running"
        fi
        return 0
    fi
    info "stopping redis-server (pid ${pid}) ..."
    # AOF (appendfsync everysec) is flushed on shutdown; NOSAVE skips the RDB dump.
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -h 127.0.0.1 -p "${REDIS_PORT}" shutdown nosave >/dev/null 2>&1 || true
    else
        kill -TERM "${pid}" 2>/dev/null || true
    fi
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    while pid_alive "${pid}" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if pid_alive "${pid}"; then
        info "redis-server did not stop within ${STOP_TIMEOUT_S}s; sending SIGKILL"
        kill -KILL "${pid}" 2>/dev/null || true
    fi
    rm -f "${PID_FILE}"
    echo "redis: stopped"
}

cmd_status() {
    if redis_answers; then
        echo "redis: up (${REDIS_ADDR})"
        return 0
    fi
    echo "redis: down"
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) usage ;;
esac

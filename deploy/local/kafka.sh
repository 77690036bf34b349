#!/usr/bin/env bash
# deploy/local/kafka.sh {start|stop|status}
#
# Runs a real single-node Apache Kafka (KRaft, combined broker+controller) on
# 127.0.0.1 without Docker:
#
#   start   Resolve the Kafka jars with Maven (deploy/local/kafka/pom.xml) into
#           <state>/kafka-<version>/libs (cached), write server.properties and a
#           log4j2 config, format the KRaft storage once, start the broker in the
#           background and wait until it answers a metadata request.
#           If a Kafka broker already answers on the port (ours or anyone's),
#           it is used as-is.
#   stop    SIGTERM the broker we started (pid file), SIGKILL after 30 s.
#   status  Exit 0 and print "kafka: up (127.0.0.1:PORT)" if the broker answers
#           a metadata request, otherwise print "kafka: down" and exit 1.
#
# Environment:
#   QI_LOCAL_STATE_DIR            state dir (default <repo root>/.local)
#   QI_LOCAL_KAFKA_PORT           client (PLAINTEXT) port   (default 9092)
#   QI_LOCAL_KAFKA_CONTROLLER_PORT KRaft controller port    (default 9093)
#   KAFKA_VERSION                 org.apache.kafka:kafka_2.13 version (default 4.1.1)
#   QI_LOCAL_KAFKA_HEAP           JVM heap flags (default "-Xms512m -Xmx1g")
#
# Files: <state>/kafka.pid, <state>/logs/kafka.log (broker log),
#        <state>/logs/kafka.out (JVM stdout/stderr), <state>/kafka-data (log.dirs).
set -euo pipefail

# shellcheck source=deploy/local/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_PORT="${QI_LOCAL_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${QI_LOCAL_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${QI_LOCAL_KAFKA_HEAP:--Xms512m -Xmx1g}"
START_TIMEOUT_S=90
STOP_TIMEOUT_S=30

BOOTSTRAP="127.0.0.1:${KAFKA_PORT}"
POM="${QI_LOCAL_SCRIPT_DIR}/kafka/pom.xml"
CHECK_SRC="${QI_LOCAL_SCRIPT_DIR}/kafka/KafkaCheck.java"

DIST_DIR="${QI_LOCAL_STATE_DIR}/kafka-${KAFKA_VERSION}"
LIBS_DIR="${DIST_DIR}/libs"
LIBS_MARKER="${LIBS_DIR}/.complete"
CHECK_DIR="${DIST_DIR}/check-classes"
CONF_DIR="${QI_LOCAL_STATE_DIR}/kafka-config"
SERVER_PROPS="${CONF_DIR}/server.properties"
LOG4J_CONF="${CONF_DIR}/log4j2.xml"
CHECK_LOG4J_CONF="${CONF_DIR}/log4j2-check.xml"
DATA_DIR="${QI_LOCAL_STATE_DIR}/kafka-data"
CLUSTER_ID_FILE="${QI_LOCAL_STATE_DIR}/kafka-cluster-id"
PID_FILE="${QI_LOCAL_STATE_DIR}/kafka.pid"
BROKER_LOG="${QI_LOCAL_LOG_DIR}/kafka.log"
BROKER_OUT="${QI_LOCAL_LOG_DIR}/kafka.out"

usage() {
    echo "usage: $0 {start|stop|status}" >&2
    exit 2
}

# --- jars --------------------------------------------------------------------

# Copy the broker's runtime classpath into LIBS_DIR, unless a previous copy
# completed (marker file).
ensure_libs() {
    if [[ -f "${LIBS_MARKER}" ]]; then
        return 0
    fi
    ensure_command java openjdk-17-jdk-headless
    ensure_command mvn maven
    info "resolving Kafka ${KAFKA_VERSION} jars with Maven into ${LIBS_DIR} (first run downloads ~45 jars) ..."
    rm -rf "${LIBS_DIR}"
    mkdir -p "${LIBS_DIR}" "${QI_LOCAL_LOG_DIR}"
    local mvn_log="${QI_LOCAL_LOG_DIR}/kafka-mvn.log"
    if ! mvn -B -q -f "${POM}" \
        dependency:copy-dependencies \
        -DincludeScope=runtime \
        -DoutputDirectory="${LIBS_DIR}" \
        -Dkafka.version="${KAFKA_VERSION}" >"${mvn_log}" 2>&1; then
        tail -n 40 "${mvn_log}" >&2
        die "Maven could not resolve org.apache.kafka:kafka_2.13:${KAFKA_VERSION}; full output in ${mvn_log}"
    fi
    [[ -f "${LIBS_DIR}/kafka_2.13-${KAFKA_VERSION}.jar" ]] \
        || die "kafka_2.13-${KAFKA_VERSION}.jar missing from ${LIBS_DIR} after Maven run"
    touch "${LIBS_MARKER}"
    info "$(find "${LIBS_DIR}" -name '*.jar' | wc -l) jars ready"
}

# Compile the readiness probe (KafkaCheck.java) once per Kafka version.
ensure_check_classes() {
    if [[ -f "${CHECK_DIR}/KafkaCheck.class" && "${CHECK_DIR}/KafkaCheck.class" -nt "${CHECK_SRC}" ]]; then
        return 0
    fi
    ensure_command javac openjdk-17-jdk-headless
    mkdir -p "${CHECK_DIR}"
    javac -nowarn -d "${CHECK_DIR}" -cp "${LIBS_DIR}/*" "${CHECK_SRC}" \
        || die "could not compile ${CHECK_SRC}"
}

# --- readiness ---------------------------------------------------------------

# Quiet log4j2 config for the probe, so AdminClient retries don't spam stderr.
write_check_log4j_conf() {
    [[ -f "${CHECK_LOG4J_CONF}" ]] && return 0
    mkdir -p "${CONF_DIR}"
    cat >"${CHECK_LOG4J_CONF}" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="ERROR">
  <Appenders><Console name="stderr" target="SYSTEM_ERR"><PatternLayout pattern="%m%n"/></Console></Appenders>
  <Loggers><Root level="OFF"><AppenderRef ref="stderr"/></Root></Loggers>
</Configuration>
XML
}

# kafka_answers [TIMEOUT_MS] : true if a broker on BOOTSTRAP answers a metadata
# (DescribeCluster) request. Needs the jars; without them nothing of ours can be
# running, but someone else's broker might, so resolve them if needed.
kafka_answers() {
    local timeout_ms="${1:-5000}"
    port_open "${KAFKA_PORT}" || return 1
    ensure_libs
    ensure_check_classes
    write_check_log4j_conf
    java -Xmx64m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="${CHECK_LOG4J_CONF}" \
        -cp "${LIBS_DIR}/*:${CHECK_DIR}" KafkaCheck "${BOOTSTRAP}" "${timeout_ms}" >/dev/null 2>&1
}

# our_pid : print the pid of the broker we started, if it is still running.
# Removes a stale pid file.
our_pid() {
    local pid
    pid="$(read_pid "${PID_FILE}")"
    if [[ -n "${pid}" ]] && pid_cmdline_has "${pid}" "${SERVER_PROPS}"; then
        # server.properties is only rewritten when starting, so it still
        # describes the running broker.
        grep -q "^listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT}," "${SERVER_PROPS}" \
            || die "our broker (pid ${pid}) runs on another port; stop it with that QI_LOCAL_KAFKA_PORT first"
        printf '%s' "${pid}"
        return 0
    fi
    if [[ -f "${PID_FILE}" ]]; then
        info "removing stale pid file ${PID_FILE}"
        rm -f "${PID_FILE}"
    fi
    return 0
}

# --- configuration -----------------------------------------------------------

write_server_properties() {
    mkdir -p "${CONF_DIR}" "${DATA_DIR}"
    cat >"${SERVER_PROPS}" <<EOF
# Generated by deploy/local/kafka.sh -- edits are overwritten on every start.
# Single-node KRaft: this process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${CONTROLLER_PORT}

listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER

log.dirs=${DATA_DIR}

# One node: every internal topic must use replication factor 1.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Topics are created explicitly by the application / tests.
auto.create.topics.enable=false
num.partitions=4
delete.topic.enable=true
# Consumer groups join immediately (no 3 s initial rebalance delay).
group.initial.rebalance.delay.ms=0

# Small-machine settings.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.segment.bytes=67108864
log.retention.hours=72
log.retention.check.interval.ms=300000
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
EOF
}

write_log4j_conf() {
    mkdir -p "${CONF_DIR}" "${QI_LOCAL_LOG_DIR}"
    cat >"${LOG4J_CONF}" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by deploy/local/kafka.sh: broker log -> ${BROKER_LOG} -->
<!-- shutdownHook="disable": keep logging through Kafka's own shutdown hook
     (otherwise log4j stops first and the shutdown messages are lost). -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <RollingFile name="file" fileName="${BROKER_LOG}" filePattern="${BROKER_LOG}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="50 MB"/>
      <DefaultRolloverStrategy max="5"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.authorizer.logger" level="WARN"/>
    <Logger name="org.apache.kafka.controller" level="INFO"/>
    <Root level="INFO">
      <AppenderRef ref="file"/>
    </Root>
  </Loggers>
</Configuration>
EOF
}

# Format the KRaft storage once. The cluster id is generated on first use and
# persisted so a re-format (e.g. after deleting kafka-data) keeps the same id.
format_storage_once() {
    if [[ -f "${DATA_DIR}/meta.properties" ]]; then
        return 0
    fi
    local cluster_id
    if [[ -s "${CLUSTER_ID_FILE}" ]]; then
        cluster_id="$(<"${CLUSTER_ID_FILE}")"
    else
        cluster_id="$(java -cp "${LIBS_DIR}/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
        [[ -n "${cluster_id}" ]] || die "could not generate a cluster id with kafka.tools.StorageTool"
        printf '%s\n' "${cluster_id}" >"${CLUSTER_ID_FILE}"
    fi
    info "formatting KRaft storage in ${DATA_DIR} (cluster id ${cluster_id})"
    java -Dlog4j2.configurationFile="${CHECK_LOG4J_CONF}" -cp "${LIBS_DIR}/*" \
        kafka.tools.StorageTool format --ignore-formatted \
        -t "${cluster_id}" -c "${SERVER_PROPS}" >"${QI_LOCAL_LOG_DIR}/kafka-format.log" 2>&1 \
        || die "storage format failed, see ${QI_LOCAL_LOG_DIR}/kafka-format.log"
}

# --- commands ----------------------------------------------------------------

wait_until_ready() {
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT_S))
    while ((SECONDS < deadline)); do
        if ! pid_alive "${pid}"; then
            rm -f "${PID_FILE}"
            tail -n 30 "${BROKER_OUT}" "${BROKER_LOG}" >&2 2>/dev/null || true
            die "broker exited during startup; see ${BROKER_LOG} and ${BROKER_OUT}"
        fi
        if kafka_answers 3000; then
            return 0
        fi
        sleep 1
    done
    die "broker (pid ${pid}) did not answer within ${START_TIMEOUT_S}s; see ${BROKER_LOG}"
}

cmd_start() {
    ensure_state_dirs
    local pid
    pid="$(our_pid)"

    if [[ -n "${pid}" ]]; then
        # Our broker is running: it is either ready or still starting up.
        if ! kafka_answers; then
            info "broker (pid ${pid}) is running but not ready yet; waiting ..."
            wait_until_ready "${pid}"
        fi
        echo "kafka: already running (pid ${pid}, ${BOOTSTRAP})"
        return 0
    fi
    if kafka_answers; then
        echo "kafka: a broker not started by this script already answers on ${BOOTSTRAP}; using it"
        return 0
    fi
    if port_open "${KAFKA_PORT}"; then
        die "port ${KAFKA_PORT} is in use by something that does not answer as Kafka"
    fi
    if port_open "${CONTROLLER_PORT}"; then
        die "controller port ${CONTROLLER_PORT} is in use (set QI_LOCAL_KAFKA_CONTROLLER_PORT)"
    fi

    ensure_libs
    ensure_check_classes
    write_check_log4j_conf
    write_server_properties
    write_log4j_conf
    format_storage_once

    info "starting Kafka ${KAFKA_VERSION} on ${BOOTSTRAP} (log: ${BROKER_LOG})"
    # Word splitting of KAFKA_HEAP is intended (several JVM flags).
    # shellcheck disable=SC2086
    setsid java ${KAFKA_HEAP} \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="${LOG4J_CONF}" \
        -Dkafka.logs.dir="${QI_LOCAL_LOG_DIR}" \
        -cp "${LIBS_DIR}/*" \
        kafka.Kafka "${SERVER_PROPS}" \
        >"${BROKER_OUT}" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "${pid}" >"${PID_FILE}"

    local started=${SECONDS}
    wait_until_ready "${pid}"
    echo "kafka: up (${BOOTSTRAP}, pid ${pid}, ready after $((SECONDS - started))s)"
}

cmd_stop() {
    local pid
    pid="$(our_pid)"
    if [[ -z "${pid}" ]]; then
        if port_open "${KAFKA_PORT}"; then
            echo "kafka: not started by this script (no pid file); leaving whatever listens on ${BOOTSTRAP} alone"
        else
            echo "kafka: not running"
        fi
        return 0
    fi
    info "stopping broker (pid ${pid}) ..."
    kill -TERM "${pid}" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    while pid_alive "${pid}" && ((SECONDS < deadline)); do
        sleep 0.5
    done
    if pid_alive "${pid}"; then
        info "broker did not stop within ${STOP_TIMEOUT_S}s; sending SIGKILL"
        kill -KILL "${pid}" 2>/dev/null || true
        while pid_alive "${pid}"; do sleep 0.2; done
    fi
    rm -f "${PID_FILE}"
    echo "kafka: stopped"
}

cmd_status() {
    if kafka_answers; then
        echo "kafka: up (${BOOTSTRAP})"
        return 0
    fi
    echo "kafka: down"
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) usage ;;
esac

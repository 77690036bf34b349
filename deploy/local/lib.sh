#!/usr/bin/env bash
# Shared helpers for the deploy/local/*.sh scripts. Source it, don't run it.
#
# Defines:
#   QI_LOCAL_REPO_ROOT  repository root (two levels above this directory)
#   QI_LOCAL_STATE_DIR  state directory (default: <repo root>/.local)
#   QI_LOCAL_LOG_DIR    <state>/logs
# and small helpers for logging, pid files and installing Debian packages.

QI_LOCAL_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
QI_LOCAL_REPO_ROOT="$(cd "${QI_LOCAL_SCRIPT_DIR}/../.." && pwd)"
QI_LOCAL_STATE_DIR="${QI_LOCAL_STATE_DIR:-${QI_LOCAL_REPO_ROOT}/.local}"
QI_LOCAL_LOG_DIR="${QI_LOCAL_STATE_DIR}/logs"
export QI_LOCAL_SCRIPT_DIR QI_LOCAL_REPO_ROOT QI_LOCAL_STATE_DIR QI_LOCAL_LOG_DIR

# info MSG... : progress message on stderr, prefixed with the calling script's name.
info() {
    printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2
}

# die MSG... : print an error and exit 1.
die() {
    printf '%s: ERROR: %s\n' "$(basename "$0" .sh)" "$*" >&2
    exit 1
}

# ensure_state_dirs : create the state and log directories.
ensure_state_dirs() {
    mkdir -p "${QI_LOCAL_STATE_DIR}" "${QI_LOCAL_LOG_DIR}"
}

# pid_alive PID : true if PID is a running process.
pid_alive() {
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null
}

# pid_cmdline_has PID TEXT : true if PID is running and its command line contains TEXT.
# Guards against acting on a recycled pid that now belongs to something else.
pid_cmdline_has() {
    local pid="$1" text="$2" cmdline
    pid_alive "${pid}" || return 1
    cmdline="$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null)" || return 1
    [[ "${cmdline}" == *"${text}"* ]]
}

# read_pid FILE : print the pid stored in FILE (empty if missing or malformed).
read_pid() {
    local pid=""
    [[ -f "$1" ]] && pid="$(tr -dc '0-9' <"$1")"
    printf '%s' "${pid}"
}

# port_open PORT : true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ensure_command CMD DEBIAN_PACKAGE : make sure CMD is on PATH; if it is not,
# install DEBIAN_PACKAGE with apt-get when running as root, otherwise fail with
# a message telling the user what to install.
ensure_command() {
    local cmd="$1" pkg="$2"
    command -v "${cmd}" >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" -ne 0 ]]; then
        die "'${cmd}' not found. Install the Debian package '${pkg}' (sudo apt-get install ${pkg}) and re-run."
    fi
    info "'${cmd}' not found; installing Debian package '${pkg}' (apt-get) ..."
    mkdir -p "${QI_LOCAL_LOG_DIR}"
    local apt_log="${QI_LOCAL_LOG_DIR}/apt-${pkg}.log"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkg}"; } \
        >"${apt_log}" 2>&1; then
        tail -n 20 "${apt_log}" >&2
        die "apt-get install ${pkg} failed; full output in ${apt_log}"
    fi
    command -v "${cmd}" >/dev/null 2>&1 || die "installed '${pkg}' but '${cmd}' is still not on PATH"
}

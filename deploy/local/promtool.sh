#!/usr/bin/env bash
# deploy/local/promtool.sh -- make promtool available and print its path.
#
# promtool (`promtool check rules`, `promtool test rules` over deploy/prometheus/) comes from
# Debian's `prometheus` package. Without installing it system-wide (no root needed), this
# script downloads the package with `apt-get download` and extracts promtool alone with
# dpkg-deb into <state>/prometheus-<version>/ (about 20 MB downloaded, a few seconds).
#
# Safe to run repeatedly: an existing install is only checked (`promtool --version`). The
# path printed on stdout is, in this order:
#   $QI_PROMTOOL                           when set (must be executable);
#   <state>/prometheus/usr/bin/promtool    our own install (a symlink to the versioned dir);
#   promtool on PATH                       e.g. the Debian package installed system-wide;
#   otherwise the package is downloaded and extracted into <state>/, then its path.
# When the package list is missing and the script runs as root, `apt-get update` runs once.
# Any failure exits 1 with the reason (tests that need promtool fail, they never skip).
#
# Environment:
#   QI_LOCAL_STATE_DIR   state dir (default <repo root>/.local)
#   QI_PROMTOOL          use this promtool instead
#
# Files: <state>/prometheus-<version>/usr/bin/promtool, <state>/prometheus (symlink),
#        <state>/logs/promtool-apt.log (apt-get output).
set -euo pipefail

# shellcheck source=deploy/local/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

PACKAGE=prometheus
LINK="${QI_LOCAL_STATE_DIR}/prometheus"
OWN="${LINK}/usr/bin/promtool"
APT_LOG="${QI_LOCAL_LOG_DIR}/promtool-apt.log"
WORK_DIR=""

# works PATH : true if PATH is a promtool that runs.
works() {
    [[ -x "$1" ]] && "$1" --version >/dev/null 2>&1
}

# download DIR : `apt-get download` the package into DIR (an update first if root and needed).
download() {
    local dir="$1"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install Debian's '${PACKAGE}' package or set QI_PROMTOOL"
    if (cd "${dir}" && apt-get download "${PACKAGE}") >>"${APT_LOG}" 2>&1; then
        return 0
    fi
    [[ "$(id -u)" -eq 0 ]] || die "apt-get download ${PACKAGE} failed (see ${APT_LOG}); run 'sudo apt-get update' and try again, or set QI_PROMTOOL"
    info "apt-get download failed; refreshing the package lists (apt-get update) ..."
    DEBIAN_FRONTEND=noninteractive apt-get update -q >>"${APT_LOG}" 2>&1 \
        || die "apt-get update failed; see ${APT_LOG}"
    (cd "${dir}" && apt-get download "${PACKAGE}") >>"${APT_LOG}" 2>&1 \
        || die "apt-get download ${PACKAGE} failed; see ${APT_LOG}"
}

install_own() {
    command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found: install Debian's '${PACKAGE}' package or set QI_PROMTOOL"
    ensure_state_dirs
    local deb version target
    WORK_DIR="$(mktemp -d "${QI_LOCAL_STATE_DIR}/.promtool.XXXXXX")"
    trap 'rm -rf "${WORK_DIR}"' EXIT
    local work="${WORK_DIR}"
    info "downloading Debian's '${PACKAGE}' package for promtool (apt-get download) ..."
    : >"${APT_LOG}"
    download "${work}"
    deb="$(find "${work}" -maxdepth 1 -name "${PACKAGE}_*.deb" | head -n 1)"
    [[ -n "${deb}" ]] || die "apt-get download left no ${PACKAGE}_*.deb; see ${APT_LOG}"
    version="$(dpkg-deb -f "${deb}" Version)"
    target="${QI_LOCAL_STATE_DIR}/prometheus-${version//[^A-Za-z0-9.+-]/_}"
    mkdir -p "${work}/root"
    dpkg-deb --fsys-tarfile "${deb}" | tar -x -C "${work}/root" ./usr/bin/promtool \
        || die "could not extract usr/bin/promtool from ${deb}"
    works "${work}/root/usr/bin/promtool" || die "the extracted promtool does not run"
    # move into place atomically, so a concurrent run sees a whole install or none
    rm -rf "${target}.new"
    mv "${work}/root" "${target}.new"
    rm -rf "${target}"
    mv "${target}.new" "${target}"
    ln -sfn "$(basename "${target}")" "${LINK}"
    info "promtool ${version} installed in ${target}"
}

main() {
    if [[ -n "${QI_PROMTOOL:-}" ]]; then
        works "${QI_PROMTOOL}" || die "QI_PROMTOOL=${QI_PROMTOOL} does not run"
        printf '%s\n' "${QI_PROMTOOL}"
        return 0
    fi
    if works "${OWN}"; then
        printf '%s\n' "${OWN}"
        return 0
    fi
    local system
    if system="$(command -v promtool 2>/dev/null)" && works "${system}"; then
        printf '%s\n' "${system}"
        return 0
    fi
    install_own
    works "${OWN}" || die "promtool is still missing at ${OWN}"
    printf '%s\n' "${OWN}"
}

case "${1:-}" in
    "" | path) main ;;
    *)
        echo "usage: $0 [path]" >&2
        exit 2
        ;;
esac

#!/usr/bin/env bash
# deploy/local/chromium.sh -- make a headless Chromium available and print its path.
#
# The console's browser tests (tests/browser/) drive Debian's `chromium` package with
# Playwright for Python (`executable_path`); Playwright's own browser download is not used.
#
# Safe to run repeatedly. The path printed on stdout is, in this order:
#   $QI_CHROMIUM                  when set (must run);
#   chromium on PATH              Debian's package (/usr/bin/chromium);
#   otherwise, when running as root, the package is installed with
#   `apt-get install -y --no-install-recommends chromium` (an `apt-get update` first if the
#   package lists do not know it), then its path.
# Not root and not installed: exits 1 saying what to run (tests that need it fail, never skip).
#
# Environment:
#   QI_LOCAL_STATE_DIR   state dir (default <repo root>/.local), for the apt log
#   QI_CHROMIUM          use this Chromium instead
#
# Files: <state>/logs/chromium-apt.log (apt-get output).
set -euo pipefail

# shellcheck source=deploy/local/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

PACKAGE=chromium
APT_LOG="${QI_LOCAL_LOG_DIR}/chromium-apt.log"

# works PATH : true if PATH is a Chromium that runs.
works() {
    [[ -x "$1" ]] && "$1" --headless --no-sandbox --version >/dev/null 2>&1
}

install_package() {
    [[ "$(id -u)" -eq 0 ]] || die "Debian's '${PACKAGE}' package is missing; run 'sudo apt-get install -y --no-install-recommends ${PACKAGE}' or set QI_CHROMIUM"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install Chromium and set QI_CHROMIUM"
    ensure_state_dirs
    : >"${APT_LOG}"
    info "installing Debian's '${PACKAGE}' package (apt-get install) ..."
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGE}" >>"${APT_LOG}" 2>&1; then
        info "apt-get install failed; refreshing the package lists (apt-get update) ..."
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>"${APT_LOG}" 2>&1 \
            || die "apt-get update failed; see ${APT_LOG}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGE}" >>"${APT_LOG}" 2>&1 \
            || die "apt-get install ${PACKAGE} failed; see ${APT_LOG}"
    fi
}

main() {
    if [[ -n "${QI_CHROMIUM:-}" ]]; then
        works "${QI_CHROMIUM}" || die "QI_CHROMIUM=${QI_CHROMIUM} does not run"
        printf '%s\n' "${QI_CHROMIUM}"
        return 0
    fi
    local found
    if found="$(command -v chromium 2>/dev/null)" && works "${found}"; then
        printf '%s\n' "${found}"
        return 0
    fi
    install_package
    found="$(command -v chromium 2>/dev/null)" || die "chromium is still missing after apt-get install"
    works "${found}" || die "${found} does not run; see ${APT_LOG}"
    printf '%s\n' "${found}"
}

case "${1:-}" in
    "" | path) main ;;
    *)
        echo "usage: $0 [path]" >&2
        exit 2
        ;;
esac

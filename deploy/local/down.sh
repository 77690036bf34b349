#!/usr/bin/env bash
# deploy/local/down.sh -- stop the local Kafka and Redis started by up.sh.
#
# Only stops processes these scripts started (pid files in the state dir);
# data in the state dir is kept. Safe to run when nothing is running.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

rc=0
"${here}/kafka.sh" stop || rc=1
"${here}/redis.sh" stop || rc=1
exit "${rc}"

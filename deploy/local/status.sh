#!/usr/bin/env bash
# deploy/local/status.sh -- report whether local Kafka and Redis answer.
#
# Prints one line per service; exits 0 only if both are up.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

rc=0
"${here}/kafka.sh" status || rc=1
"${here}/redis.sh" status || rc=1
exit "${rc}"

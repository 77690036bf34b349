#!/usr/bin/env bash
# deploy/local/up.sh -- start local Redis and Kafka (no Docker) on 127.0.0.1.
#
# Safe to run repeatedly: services that already answer are left as they are,
# so a second run only performs the readiness checks.
# See deploy/local/README.md for ports, environment variables and logs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

"${here}/redis.sh" start
"${here}/kafka.sh" start

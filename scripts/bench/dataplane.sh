#!/usr/bin/env bash
# skein's dataplane beside a hand-built VXLAN link and a plain veth pair:
# iperf3 throughput and ping RTT. Needs root. Prints Markdown.
#   SECONDS_PER_RUN=5 RUNS=3 scripts/bench/dataplane.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
scripts/install-deps.sh
go run ./integration/dataplanebench -seconds "${SECONDS_PER_RUN:-5}" -runs "${RUNS:-3}"

#!/usr/bin/env bash
# skeind's overlay at scale: cold reconcile at 1,000 and 5,000 nodes, the
# latency of one added node, peak RSS. Needs root. Prints Markdown.
#   SIZES=1000,5000 ADDS=50 scripts/bench/overlay.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
scripts/install-deps.sh
go run ./integration/overlaybench -sizes "${SIZES:-1000,5000}" -adds "${ADDS:-50}"

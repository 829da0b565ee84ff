#!/usr/bin/env bash
# skeind's Service proxy from the static file, per backend: cold full sync
# at 1,000x10, 10,000x10 and 30,000x2 Services, one endpoint change at
# 10,000 (p50/p99 over 100), TCP connect latency to a ClusterIP at 100 to
# 30,000 Services. Needs root. Prints Markdown.
#   BACKENDS=nftables,iptables CHANGES=100 scripts/bench/proxy.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
scripts/install-deps.sh
go run ./integration/proxybench -backends "${BACKENDS:-nftables,iptables}" -changes "${CHANGES:-100}"

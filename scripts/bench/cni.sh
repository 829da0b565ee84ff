#!/usr/bin/env bash
# make bench: the skein plugin against bridge + host-local (pinned in
# go.mod), in one run, through libcni, inside network namespaces.
# Needs root. Prints a Markdown report; BENCHMARKS.md holds the last one.
#   PODS=200 CYCLES=320 CONCURRENCY=1,8,32 scripts/bench/cni.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
  echo "bench: needs root (it creates network namespaces)" >&2
  exit 1
fi
scripts/install-deps.sh
go run ./integration/cnibench -pods "${PODS:-200}" -cycles "${CYCLES:-320}" -concurrency "${CONCURRENCY:-1,8,32}"

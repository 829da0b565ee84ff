#!/usr/bin/env bash
# Runs each fuzz target for FUZZTIME (default 30s).
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-30s}
go test -run '^$' -fuzz '^FuzzLoad$' -fuzztime "$t" ./conf/
go test -run '^$' -fuzz '^FuzzAllocator$' -fuzztime "$t" ./ipam/
go test -run '^$' -fuzz '^FuzzBuild$' -fuzztime "$t" ./daemon/proxy/
go test -run '^$' -fuzz '^FuzzParseFile$' -fuzztime "$t" ./daemon/cluster/
go test -run '^$' -fuzz '^FuzzSplitItems$' -fuzztime "$t" ./daemon/cluster/
go test -run '^$' -fuzz '^FuzzQuery$' -fuzztime "$t" ./daemon/dns/

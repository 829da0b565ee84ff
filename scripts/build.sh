#!/usr/bin/env bash
# Builds skein's binaries, static (CGO_ENABLED=0), into bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.Version=${version}" -o bin/ ./plugins/skein ./daemon/cmd/skeind
echo "built bin/skein bin/skeind (${version})"

#!/usr/bin/env bash
# go vet and gofmt over the module; golangci-lint too when it is on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
if command -v golangci-lint >/dev/null 2>&1; then
  golangci-lint run ./...
fi
echo "lint: ok"

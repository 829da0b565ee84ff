#!/usr/bin/env bash
# go vet, gofmt and golangci-lint (pinned; built from the Go module proxy
# into .cache/bin the first time, which takes a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
GOLANGCI_LINT_VERSION=v2.15.0

go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi

bin=.cache/bin/golangci-lint
if ! [ -x "$bin" ] || ! "$bin" version 2>/dev/null | grep -q "${GOLANGCI_LINT_VERSION#v}"; then
  echo "lint: building golangci-lint ${GOLANGCI_LINT_VERSION} ..."
  GOBIN="$PWD/.cache/bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${GOLANGCI_LINT_VERSION}"
fi
"$bin" run ./...
echo "lint: ok"

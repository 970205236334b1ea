#!/bin/sh
# Builds bin/switchboard for the Node and browser tests (their `npm test`
# runs this first, outside every test's time limit), unless
# SWITCHBOARD_TEST_BINARY already names a binary: `make test` builds it once
# for the whole run and exports that. A build that is up to date is a no-op.
set -eu
if [ -n "${SWITCHBOARD_TEST_BINARY:-}" ]; then
	exit 0
fi
cd "$(dirname "$0")/.."
echo "test-binary: go build -o bin/switchboard ./cmd/switchboard" >&2
CGO_ENABLED=0 go build -trimpath -o bin/switchboard ./cmd/switchboard

# Switchboard build and test entry points. `make test` is what CI runs
# (.ci/run); set SWITCHBOARD_TEST_POSTGRES=auto to add the PostgreSQL leg.

GO          ?= go
PKGS        ?= ./...
# Whole-suite budget per package binary; the suite aims to finish well
# under 15 minutes on 2 cores.
TEST_TIMEOUT ?= 20m
GOTESTFLAGS ?=
BENCH       ?= .
BENCHTIME   ?= 1s
# Arguments for `make run`, e.g. ARGS="--client-listen 127.0.0.1:9008".
ARGS        ?=
# The binary every test that runs a server uses (internal/testbin, the Node
# and browser tests): built once per `make test`, before any test's deadline.
TEST_BINARY := $(CURDIR)/bin/switchboard

.PHONY: all build run test test-go test-js vet bench fmt clean

all: build

## build: static binary in bin/switchboard
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/switchboard ./cmd/switchboard

## run: everything on 127.0.0.1 with data in ./switchboard-data (not for production);
## ARGS="--client-listen 127.0.0.1:9008" passes more flags to serve
run: build
	bin/switchboard serve --dev $(ARGS)

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -l -w $$(git ls-files '*.go')

## test: prerequisites, the binary, go vet, go test, then the Node tests and the browser tests (Chromium)
# scripts/test-deps.sh prints the PostgreSQL URL (only) on stdout when
# SWITCHBOARD_TEST_POSTGRES is requested; the tests get the URL in its place.
# bin/switchboard is built first, outside every test's time limit (a cold
# build takes minutes on a small machine), and shared by all the tests
# through SWITCHBOARD_TEST_BINARY.
test:
	@set -e; \
	pg_url="$$(scripts/test-deps.sh)"; \
	if [ -n "$$pg_url" ]; then echo "make test: PostgreSQL leg on"; else echo "make test: SQLite only (SWITCHBOARD_TEST_POSTGRES=auto adds PostgreSQL)"; fi; \
	echo "$(MAKE) build"; \
	$(MAKE) --no-print-directory build; \
	export SWITCHBOARD_TEST_BINARY="$(TEST_BINARY)"; \
	echo "$(GO) vet $(PKGS)"; \
	$(GO) vet $(PKGS); \
	echo "$(GO) test -timeout $(TEST_TIMEOUT) $(GOTESTFLAGS) $(PKGS)"; \
	SWITCHBOARD_TEST_POSTGRES="$$pg_url" $(GO) test -timeout $(TEST_TIMEOUT) $(GOTESTFLAGS) $(PKGS); \
	if [ -f tests/js/package.json ]; then \
		echo "npm ci --prefix tests/js && npm test --prefix tests/js"; \
		npm ci --prefix tests/js; \
		SWITCHBOARD_TEST_POSTGRES="$$pg_url" npm test --prefix tests/js; \
	fi; \
	if [ -f tests/browser/package.json ]; then \
		echo "npm ci --prefix tests/browser && npm test --prefix tests/browser"; \
		npm ci --prefix tests/browser; \
		npm test --prefix tests/browser; \
	fi

## test-go: go test only, no prerequisites (quick loop)
test-go:
	$(GO) test -timeout $(TEST_TIMEOUT) $(GOTESTFLAGS) $(PKGS)

## bench: Go benchmarks (BENCH=regexp, BENCHTIME=1s or 100x)
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem $(PKGS)

clean:
	rm -rf bin

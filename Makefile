GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X github.com/prometheus/common/version.Version=$(VERSION) \
            -X github.com/prometheus/common/version.Revision=$(REVISION)

.PHONY: all build test test-short vet fmt fuzz unitcheck bench clean

all: vet build test

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o stormwatch ./cmd/stormwatch

# The full suite. Run as root: the kernel tests create network namespaces
# and boot a container (they skip, saying why, without root or a tool, and
# fail instead under CI=true). One package at a time: the kernel
# tests time alerts against queue overflows, and a 2-core machine running
# two suites at once blurs that. internal/testreport prints each package's
# result, the output of failed tests, the reason of every skip, and closes
# with counts; PKGS narrows the run.
PKGS ?= ./...
test:
	@test "$$($(GO) env CGO_ENABLED)" = 1 || { echo "make test: the race detector needs cgo: install a C compiler (Debian: gcc)"; exit 1; }
	$(GO) build -o build/testreport ./internal/testreport
	$(GO) test -race -count=1 -p 1 -timeout 30m -json $(PKGS) 2>&1 | build/testreport

# Unit tests only: -short skips every kernel test (namespaces, nft,
# daemons, the systemd container), so no root is needed.
test-short:
	$(GO) test -short -count=1 ./...

# golangci-lint with the repository's .golangci.yml. .ci/run installs it
# and sets GOLANGCI_LINT; otherwise it is built from the Go module proxy.
GOLANGCI_LINT ?= $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt needed"; exit 1)
	$(GOLANGCI_LINT) run ./...

fmt:
	gofmt -w .

# Every fuzz target (every func FuzzX in a _test.go file) for FUZZTIME
# each (default 30s). Minimizing a new input is bounded by
# FUZZMINIMIZETIME (the default is 60s, which would eat short runs).
FUZZTIME ?= 30s
FUZZMINIMIZETIME ?= 5s
fuzz:
	@set -e; \
	for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for target in $$($(GO) test -list '^Fuzz' $$dir | grep '^Fuzz'); do \
			echo "== $$dir $$target"; \
			$(GO) test $$dir -run '^$$' -fuzz "^$$target\$$" \
				-fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME); \
		done; \
	done

# The packaged unit under a real systemd in a container (root; part of
# make test too). BREAK=all (or mutation names, see
# deploy/internal/unitcheck) runs the negative runs instead: each check
# must fail when a drop-in removes its precondition.
unitcheck:
	STORMWATCH_UNITCHECK_BREAK=$(BREAK) $(GO) test -count=1 -v -timeout 60m -run '^TestUnitInContainer$$' ./deploy

# Collection cycle, /metrics, daemon CPU and memory against ss and
# node_exporter at 10k-200k sockets (root; see docs/benchmarks.md).
bench:
	scripts/bench.sh

clean:
	rm -f stormwatch

include deploy/deb.mk

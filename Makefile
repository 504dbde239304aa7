GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X github.com/prometheus/common/version.Version=$(VERSION) \
            -X github.com/prometheus/common/version.Revision=$(REVISION)

.PHONY: all build test test-short vet fmt fuzz bench clean

all: vet build test

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o stormwatch ./cmd/stormwatch

# The full suite. Run as root: the kernel tests create network namespaces
# (they skip, saying why, without root). One package at a time: the kernel
# tests time alerts against queue overflows, and a 2-core machine running
# two suites at once blurs that.
test:
	$(GO) test -race -count=1 -p 1 ./...

# Unit tests only: no namespaces, no root.
test-short:
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt needed"; exit 1)

fmt:
	gofmt -w .

# Each parser's fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./procfs -run '^$$' -fuzz FuzzParseConntrackStat -fuzztime $(FUZZTIME)
	$(GO) test ./procfs -run '^$$' -fuzz FuzzParseSysctl -fuzztime $(FUZZTIME)
	$(GO) test ./procfs -run '^$$' -fuzz FuzzParseSoftnetStat -fuzztime $(FUZZTIME)
	$(GO) test ./internal/sockdiag -run '^$$' -fuzz FuzzParseInetDiagMsg -fuzztime $(FUZZTIME)
	$(GO) test ./internal/netdev -run '^$$' -fuzz FuzzStringSet -fuzztime $(FUZZTIME)
	$(GO) test ./procfs -run '^$$' -fuzz FuzzParseProcessStat -fuzztime $(FUZZTIME)
	$(GO) test ./procfs -run '^$$' -fuzz FuzzSocketInode -fuzztime $(FUZZTIME)
	$(GO) test ./internal/valkey -run '^$$' -fuzz FuzzParseInfo -fuzztime $(FUZZTIME)
	$(GO) test ./internal/valkey -run '^$$' -fuzz FuzzParseClientList -fuzztime $(FUZZTIME)
	$(GO) test ./headroom -run '^$$' -fuzz FuzzParse$$ -fuzztime $(FUZZTIME)
	$(GO) test ./headroom -run '^$$' -fuzz FuzzParseQuery -fuzztime $(FUZZTIME)

# Collection cycle, /metrics, daemon CPU and memory against ss and
# node_exporter at 10k-200k sockets (root; see docs/benchmarks.md).
bench:
	scripts/bench.sh

clean:
	rm -f stormwatch

include deploy/deb.mk

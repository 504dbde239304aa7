# `make deb`: the Debian package, built with nfpm (deploy/nfpm.yaml).
# Included from the top-level Makefile, whose GO, VERSION and LDFLAGS it uses.
#
# nfpm runs through `go run`, fetched from the Go module proxy; v2.46.0 and
# later depend on modules outside the proxy (go.digitalxero.dev), so it stays
# on v2.45.x.

NFPM       ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DEB_ARCH   ?= $(shell $(GO) env GOARCH)
DEB_BUILD  ?= build/deb
DEB_DIST   ?= dist
# A Debian version from `git describe`: v1.2.0 -> 1.2.0,
# v1.2.0-3-gabc1234-dirty -> 1.2.0+3.gabc1234.dirty, untagged abc1234 ->
# 0.0.0+gabc1234.
DEB_VERSION ?= $(shell echo '$(VERSION)' | sed -E 's/^v//; s/^([0-9a-f]{7,})/0.0.0+g\1/; s/-([0-9]+)-g/+\1.g/; s/-dirty$$/.dirty/')
# Reproducible file times (nfpm reads it too).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

.PHONY: deb deb-clean

deb:
	rm -rf $(DEB_BUILD)
	mkdir -p $(DEB_BUILD) $(DEB_DIST)
	CGO_ENABLED=0 GOARCH=$(DEB_ARCH) $(GO) build -trimpath -ldflags "$(LDFLAGS) -s -w" -o $(DEB_BUILD)/stormwatch ./cmd/stormwatch
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DEB_BUILD)/stormwatch-host ./cmd/stormwatch
	sh deploy/manpage.sh $(DEB_BUILD)/stormwatch-host '$(VERSION)' | gzip -9n > $(DEB_BUILD)/stormwatch.1.gz
	STORMWATCH_DEB_VERSION='$(DEB_VERSION)' STORMWATCH_DEB_ARCH='$(DEB_ARCH)' STORMWATCH_DEB_BUILD='$(DEB_BUILD)' \
		$(NFPM) package --config deploy/nfpm.yaml --packager deb --target $(DEB_DIST)/

deb-clean:
	rm -rf $(DEB_BUILD) $(DEB_DIST)

# gslbd — run `make help` for the targets.

GO       ?= go
BIN      := bin/gslbd
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
EXAMPLE  := testdata/example
CONTRACT ?= ../shared/contract

.PHONY: help build run test testdeps testtools lint fuzz bench contract geodata clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/gslbd (trimmed paths, version stamped)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/gslbd
	$(GO) build -trimpath -o bin/demo-backends ./$(EXAMPLE)/backends

run: build ## serve testdata/example on 127.0.0.1:5353 (admin on :8053) with demo backends
	@$(BIN) check -config $(EXAMPLE)/gslbd.toml
	@sh $(EXAMPLE)/try.sh
	@bin/demo-backends & pid=$$!; trap 'kill $$pid 2>/dev/null' EXIT INT TERM; \
		$(BIN) serve -config $(EXAMPLE)/gslbd.toml

test: testdeps lint testtools ## run every test with the race detector (unit, wire, fuzz seeds, real dig/unbound/chromium end-to-end)
	$(GO) build ./$(EXAMPLE)/backends ./testdata/geo/gen ./cmd/gslbd/testdata/bigcity
	$(GO) test -race -count=1 -timeout 8m ./...

testdeps: ## install the programs the tests drive (dig, delv, unbound, chromium…) when root with apt, else print the command
	@sh tools/testdeps/testdeps.sh

# promtool checks contrib/prometheus and the dashboard's queries. When it is
# not on PATH, Debian's prometheus package is downloaded and only unpacked
# into .cache (never installed, so no Prometheus service appears).
PROMTOOL_DIR := .cache/prometheus
testtools: ## fetch what the tests need and apt-get does not install as a command (promtool, unpacked into .cache)
	@command -v promtool >/dev/null || [ -x $(PROMTOOL_DIR)/usr/bin/promtool ] || { \
		mkdir -p .cache && cd .cache && rm -f prometheus_*.deb && \
		{ apt-get download prometheus 2>/dev/null || { apt-get update -q && apt-get download prometheus; }; } && \
		dpkg-deb -x prometheus_*.deb prometheus && rm -f prometheus_*.deb && echo "unpacked promtool into $(PROMTOOL_DIR)"; }

lint: ## gofmt check, go vet, and go.mod/go.sum tidy (go mod tidy -diff)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./... ./$(EXAMPLE)/backends ./testdata/geo/gen ./cmd/gslbd/testdata/bigcity
	$(GO) mod tidy -diff

contract: ## run the black-box contract smoke test in ../shared/contract against this tree
	cd $(CONTRACT) && GSLBD_SRC=$(CURDIR) $(GO) test -count=1 ./...

fuzz: ## fuzz the packet path, TCP framing, the wire-table compile, gossip, admin bodies, config loaders and selection (FUZZTIME each, default 1m)
	$(GO) test -run '^$$' -fuzz '^FuzzHandle$$' -fuzztime $${FUZZTIME:-1m} ./dnsserver
	$(GO) test -run '^$$' -fuzz '^FuzzCompile$$' -fuzztime $${FUZZTIME:-1m} ./dnsserver
	$(GO) test -run '^$$' -fuzz '^FuzzTCPFraming$$' -fuzztime $${FUZZTIME:-1m} -fuzzminimizetime 5s ./dnsserver
	for t in Report Digest Drain StateReq State Full Leave Type; do \
		$(GO) test -run '^$$' -fuzz "^FuzzGossip$$t\$$" -fuzztime $${FUZZTIME:-1m} -fuzzminimizetime 5s ./cluster || exit 1; done
	$(GO) test -run '^$$' -fuzz '^FuzzDrainBody$$' -fuzztime $${FUZZTIME:-1m} -fuzzminimizetime 5s ./admin
	$(GO) test -run '^$$' -fuzz '^FuzzLoadZoneFile$$' -fuzztime $${FUZZTIME:-1m} ./zones/config
	$(GO) test -run '^$$' -fuzz '^FuzzLoadPoolFile$$' -fuzztime $${FUZZTIME:-1m} ./zones/config
	$(GO) test -run '^$$' -fuzz '^FuzzSelect$$' -fuzztime $${FUZZTIME:-1m} ./zones

bench: build ## gslbd vs gdnsd: dnsperf QPS, CPU, latency, ECS scopes, failover (docs/performance.md; BENCHFLAGS=-h)
	$(GO) run ./tools/bench -gslbd $(BIN) $(BENCHFLAGS)

geodata: ## regenerate testdata/geo/*.mmdb from its generator
	$(GO) run ./testdata/geo/gen -out testdata/geo

clean: ## remove build output
	rm -rf bin

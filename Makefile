# xlb: `make help` lists the targets.

# sudo resets PATH on many systems: fall back to the usual install place.
GO          ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
# One pinned compiler major version: the committed object is byte-for-byte
# what this clang produces (check-generated proves it).
CLANG       ?= clang-14
BPF_CFLAGS  ?= -O2 -g -Wall -Werror
# Formatter of the BPF C sources (.clang-format), pinned like the compiler.
CLANG_FORMAT ?= clang-format-14
export BPF2GO_CC     := $(CLANG)
export BPF2GO_CFLAGS := $(BPF_CFLAGS)
export BPF2GO_STRIP  ?= llvm-strip-14

BIN         := bin
TEST_FLAGS  ?= -count=1
# Privileged tiers skip (loudly) without root; XLB_REQUIRE_PRIV=1 (CI) makes
# those skips failures.

.PHONY: help generate build install test test-unit test-integration bench bench-go demo demo-ha screenshots fuzz lint format check-format check-generated check-printk clean bpffs

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Packages with a bpf2go directive and committed output.
BPF_PKGS    := ./bpf/ ./test/bench/benchbpf/
BPF_DIRS    := bpf/ test/bench/benchbpf/
# C sources under clang-format.
C_SOURCES   := $(wildcard bpf/*.c bpf/include/*.h test/bench/benchbpf/*.c test/bench/benchbpf/*.h)

generate: ## regenerate the bpf2go bindings (needs clang-14, llvm, libbpf-dev)
	$(GO) generate $(BPF_PKGS)

build: ## build xlbd and xlbctl into ./bin (no clang needed: bindings are committed)
	$(GO) build -o $(BIN)/ ./cmd/...

install: build ## install xlbd and xlbctl into /usr/local/bin and the systemd unit
	install -m 0755 $(BIN)/xlbd $(BIN)/xlbctl /usr/local/bin/
	install -m 0644 docs/xlbd.service /etc/systemd/system/xlbd.service

test: test-unit test-integration ## run every tier: unit, BPF test-run, veth integration

test-unit: bpffs ## pure Go and BPF_PROG_TEST_RUN tests (race detector on)
	$(GO) test -race $(TEST_FLAGS) ./...

test-integration: bpffs ## veth/netns lab tests (root)
	$(GO) test -tags integration $(TEST_FLAGS) -timeout 20m ./test/...

demo: ## xlb end to end: real xlbd and xlbctl, health checks, failover, drain, in network namespaces (root)
	@echo "Compiling the demo..."
	@$(GO) run ./test/demo/xlb-demo

demo-ha: ## xlb's HA: three xlbd nodes behind a BIRD router (BGP, ECMP), a node lost mid-stream, kill -9 and restart (root, bird2)
	@echo "Compiling the demo..."
	@$(GO) run ./test/demo/xlb-demo-ha

screenshots: bpffs ## the status page's screenshots in docs/ from a lab xlbd with traffic, by headless chromium (root, chromium)
	XLB_SCREENSHOT_DIR=$(CURDIR)/docs $(GO) test -tags integration -count=1 -run 'TestStatusPage$$' -v ./test/

# As root, mount bpffs when it is not (a fresh machine); without root the
# privileged tests skip and say so.
bpffs:
	@if [ "$$(id -u)" = 0 ] && ! mountpoint -q /sys/fs/bpf; then echo "mounting bpffs at /sys/fs/bpf"; mount -t bpf bpf /sys/fs/bpf; fi

bench: bpffs ## xlb beside same-run baselines: per-packet, veth Mpps, control plane, disruption, HAProxy (root; BENCH_QUICK=1: < 2 min)
	$(GO) run ./test/bench

# Fuzz targets, as PACKAGE:TARGET. make fuzz runs each for FUZZTIME, a
# duration (10m) or a count of inputs (200000x: what CI runs, as a count
# cannot meet Go 1.26's deadline race, golang/go#75804); plain
# go test runs their seed corpora (testdata/fuzz) with the unit tests.
# FuzzDataPlane (the XDP program against its Go model) needs root and
# skips loudly without it, as the other BPF test-run tests do.
FUZZ_TARGETS := ./cmd/config:FuzzParseConfig ./cmd/config:FuzzDecodeService ./cmd/config:FuzzDecodeBackend ./cmd/config:FuzzDecodeBGP ./loader:FuzzDataPlane
FUZZTIME ?= 30s
# Time spent minimising each new interesting input (go test's default is
# 60s, during which no new input runs: a short pass would do little else).
FUZZMINIMIZETIME ?= 5s

fuzz: ## run every fuzz target for FUZZTIME each (default 30s): config file and API bodies, the data plane against its model
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg; done

bench-go: ## Go micro-benchmarks of maps/ and loader/
	$(GO) test -run '^$$' -bench . -benchtime 2s ./maps/ ./loader/

# golangci-lint at one pinned version (.golangci.yaml lists the linters),
# built from the Go module proxy into ./bin/tools on first use.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(CURDIR)/bin/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)

$(GOLANGCI_LINT):
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) (once)"
	@mkdir -p $(CURDIR)/bin/tools/tmp
	GOFLAGS= GOBIN=$(CURDIR)/bin/tools/tmp $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(CURDIR)/bin/tools/tmp/golangci-lint $@

lint: check-printk check-format $(GOLANGCI_LINT) ## golangci-lint (gofmt, goimports, vet, staticcheck, errcheck, depguard, ...), printk policy, clang-format
	$(GOLANGCI_LINT) run ./...

format: $(GOLANGCI_LINT) ## gofmt and goimports the Go sources, clang-format the C sources
	$(GOLANGCI_LINT) fmt ./...
	$(CLANG_FORMAT) -i $(C_SOURCES)

check-format: ## fail if a C source is not clang-formatted (.clang-format)
	$(CLANG_FORMAT) --dry-run -Werror $(C_SOURCES)

check-generated: ## regenerate and fail if the committed bindings differ
	$(MAKE) generate
	git diff --exit-code -- $(BPF_DIRS) || { echo "bpf2go output is stale: run make generate and commit"; exit 1; }

check-printk: ## bpf_printk only behind DEBUG
	@if grep -n 'bpf_printk' bpf/*.c bpf/include/*.h | grep -v 'DEBUG'; then echo "bpf_printk outside #ifdef DEBUG"; exit 1; fi

clean: ## remove build output
	rm -rf $(BIN) out

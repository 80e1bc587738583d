# tcptrace. `make` builds; `sudo make test` runs every test (root: the
# integration tests load BPF programs and create network namespaces).

GO ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GENERATED := tracer/tcptrace_bpfel.go tracer/tcptrace_bpfel.o

.PHONY: all build deps generate check-generate test test-unit test-kernels lint clean install uninstall

all: build

build:
	$(GO) build -o tcptrace .

deps:
	./scripts/install-deps.sh

# Recompile bpf/ with clang through bpf2go (gen.go). The outputs are
# committed so that `go build` needs no clang.
generate: deps
	$(GO) generate ./...

# CI: the committed bpf2go outputs must be what `make generate` makes.
check-generate: generate
	@git diff --exit-code --stat -- $(GENERATED) || \
		{ echo "bpf2go outputs are stale: run 'make generate' and commit them" >&2; exit 1; }

# Every test: unit, golden, and the integration tests on the running kernel.
# One package at a time (-p 1): the integration tests measure the kernel's
# own timing (SYN backoff, TIME_WAIT reuse), which a podman build or a
# Prometheus in the next package would disturb on two cores.
test: deps
	$(GO) test -count=1 -p 1 ./...

# The pure-Go tests only (no root needed).
test-unit:
	$(GO) test -count=1 ./tracer/timeline/ ./output/ ./metrics/

# The integration tests inside Debian's Linux 6.1 and 6.12 under QEMU/TCG,
# older kernels than the host's (test/kernels/README.md), one after the
# other; every series runs even when one fails, and the target fails if any
# did. One series, or one test:
#   make test-kernels KERNEL_TEST_SERIES=6.12
#   make test-kernels KERNEL_TEST_ARGS="-test.run 'TestRefused'"
KERNEL_TEST_SERIES ?= 6.1 6.12
KERNEL_TEST_PKGS ?= ./tracer ./tracer/timeline ./output ./cmd
KERNEL_TEST_ARGS ?=
test-kernels:
	@failed=; for k in $(KERNEL_TEST_SERIES); do \
		echo "== Linux $$k under QEMU"; \
		KERNEL=$$k PKGS="$(KERNEL_TEST_PKGS)" bash test/kernels/run.sh test -- $(KERNEL_TEST_ARGS) || failed="$$failed $$k"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-kernels: failed on Linux$$failed" >&2; exit 1; fi

# A short fuzz of the decoder, of the batched path against the one-by-one
# path, and of the correlator (CI runs it; longer:
# make fuzz FUZZTIME=10m).
FUZZTIME ?= 15s
.PHONY: fuzz soak
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./tracer/
	$(GO) test -run '^$$' -fuzz '^FuzzQueue$$' -fuzztime $(FUZZTIME) ./tracer/
	$(GO) test -run '^$$' -fuzz '^FuzzCorrelator$$' -fuzztime $(FUZZTIME) ./tracer/timeline/
	$(GO) test -run '^$$' -fuzz '^FuzzPackExact$$' -fuzztime $(FUZZTIME) ./tracer/timeline/

# Five minutes of connection churn under tcptrace -o json (as root):
# records vs connections, lost events, RSS every 10 s, CPU. DURATION=60 for
# a shorter run.
soak:
	bash bench/soak.sh

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
		[ -z "$$unformatted" ] || { echo "gofmt needed: $$unformatted" >&2; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Overhead benchmark (as root): nginx and wrk in a network namespace of its
# own, under connection churn, under keep-alive and under a drop storm
# (churn with nftables dropping half the packets to the server); untraced
# vs bpftrace vs tcptrace configurations (and the build before the drop and
# syscall-failure programs, 766686b); rates, tracer CPU, BPF runs and run
# time (kernel.bpf_stats_enabled, restored at exit) in all and by program
# group (syscall hooks, kfree_skb, TCP), per connection and per dropped
# packet, ring-buffer records, drops counted vs dropped. Prints a table per
# workload with targets beside the figures and writes bench/results.json,
# never fails on a threshold. About 9.5 minutes. Settings such as ROUNDS,
# SECONDS_PER_RUN, WORKLOADS, CONFIGS, DROPSTORM_CONFIGS and
# BEFORE_TCPTRACE are read from the environment.
.PHONY: bench
bench:
	bash bench/overhead.sh

# The container image (deploy/Containerfile): a static binary and nothing
# else, FROM scratch, so no base image or registry is needed. The binary is
# built into a directory of its own, the build context, so podman reads only
# it. podman build needs no OCI runtime here (no RUN step).
#   make image IMAGE=registry.example/tcptrace:v1.2.3
IMAGE ?= localhost/tcptrace:dev
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PODMAN ?= podman
.PHONY: image
image:
	@ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && \
	CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags "-s -w -X github.com/tcptrace/tcptrace/cmd.Version=$(VERSION)" \
		-o "$$ctx/tcptrace" . && \
	$(PODMAN) build --layers=false -f deploy/Containerfile -t $(IMAGE) \
		--build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
		"$$ctx"
	@$(PODMAN) image ls $(IMAGE)

# Installs tcptrace, its man pages (tcptrace(1), one per subcommand) and its
# bash, zsh and fish completions where a Linux system looks for them:
#   make install                          # under /usr/local
#   make install PREFIX=/usr DESTDIR=pkg  # staged, for a package
# The pages and completions come from the real command tree
# (tools/gendocs); the binary is built with VERSION, as for the image.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
INSTALL ?= install
install:
	@gen=$$(mktemp -d) && trap 'rm -rf "$$gen"' EXIT && \
	$(GO) build -ldflags "-X github.com/tcptrace/tcptrace/cmd.Version=$(VERSION)" -o "$$gen/tcptrace" . && \
	$(GO) run ./tools/gendocs -o "$$gen" -version "$(VERSION)" && \
	$(INSTALL) -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)/man1" \
		"$(DESTDIR)$(BASHCOMPDIR)" "$(DESTDIR)$(ZSHCOMPDIR)" "$(DESTDIR)$(FISHCOMPDIR)" && \
	$(INSTALL) -m 755 "$$gen/tcptrace" "$(DESTDIR)$(BINDIR)/tcptrace" && \
	$(INSTALL) -m 644 "$$gen"/man1/*.1 "$(DESTDIR)$(MANDIR)/man1/" && \
	$(INSTALL) -m 644 "$$gen/bash/tcptrace" "$(DESTDIR)$(BASHCOMPDIR)/tcptrace" && \
	$(INSTALL) -m 644 "$$gen/zsh/_tcptrace" "$(DESTDIR)$(ZSHCOMPDIR)/_tcptrace" && \
	$(INSTALL) -m 644 "$$gen/fish/tcptrace.fish" "$(DESTDIR)$(FISHCOMPDIR)/tcptrace.fish" && \
	echo "installed $(DESTDIR)$(BINDIR)/tcptrace, its man pages and completions" && \
	cd "$$gen" && for f in man1/*.1; do echo "  $(DESTDIR)$(MANDIR)/$$f"; done

uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/tcptrace" \
		"$(DESTDIR)$(MANDIR)/man1/tcptrace.1" "$(DESTDIR)$(MANDIR)/man1/tcptrace-"*.1 \
		"$(DESTDIR)$(BASHCOMPDIR)/tcptrace" "$(DESTDIR)$(ZSHCOMPDIR)/_tcptrace" \
		"$(DESTDIR)$(FISHCOMPDIR)/tcptrace.fish"

clean:
	rm -f tcptrace

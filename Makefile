# etcd2-backup: build, test, demo, bench, package.
# `make demo` and `make test` install what they need (Debian packages) first.

CARGO   ?= cargo
PROFILE ?= debug
BUILD   := build
CARGO_FLAGS := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: all deps build static test lint fmt demo bench bench-capture fuzz package release deb clean

all: build

deps:
	./scripts/ensure-deps

# Portable builds: every program linked statically (glibc's crt-static, a
# static-pie), so one build runs on any x86_64 Linux with systemd whatever its
# libc. --target keeps the flag off build scripts and proc macros, which
# cannot be static. `make build` makes both: the tests drive the ordinary
# build and check the static one (tests/release.rs).
STATIC_TARGET := x86_64-unknown-linux-gnu
STATIC_ENV    := RUSTFLAGS='-C target-feature=+crt-static'
STATIC_BIN    := target/$(STATIC_TARGET)/release

build:
	$(CARGO) build --workspace $(CARGO_FLAGS)
	$(STATIC_ENV) $(CARGO) build --workspace --bins $(CARGO_FLAGS) --target $(STATIC_TARGET)

static:
	$(STATIC_ENV) $(CARGO) build --workspace --bins --release --target $(STATIC_TARGET)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The whole suite: unit tests next to the code, integration tests in tests/
# against real etcd members and real rclone remotes on loopback.
test: deps lint build
	$(CARGO) test --workspace $(CARGO_FLAGS)

fmt:
	$(CARGO) fmt --all

demo: deps
	$(CARGO) build --workspace --release
	./scripts/demo

# The backup cycle, recovery, codecs and freshness (docs/benchmarks.md), then
# change capture against the full cycle (docs/benchmarks-capture.md);
# `make bench-capture` runs the second alone.
bench: deps
	$(CARGO) build --workspace --release
	./scripts/bench
	./scripts/bench-capture

bench-capture: deps
	$(CARGO) build --workspace --release
	./scripts/bench-capture

# Every fuzz target in fuzz/ for FUZZ_SECONDS each, one after another,
# seeded from real archives and real etcdctl/rclone output (docs/fuzzing.md);
# corpus, crashes, logs and summary.txt in FUZZ_DIR. A crash fails it,
# naming the target and the input. `make fuzz FUZZ_TARGETS=archive` runs one.
# cargo-fuzz comes from `scripts/ensure-deps fuzz`; `make test` never
# builds the targets.
FUZZ_SECONDS ?= 60
FUZZ_DIR     ?= $(BUILD)/fuzz
FUZZ_TARGETS ?=
fuzz: deps
	$(CARGO) build --workspace --bins $(CARGO_FLAGS)
	BIN=$(CURDIR)/target/$(PROFILE) FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_DIR=$(FUZZ_DIR) \
	  ./scripts/fuzz $(FUZZ_TARGETS)

# The install tarball: the static release tools, units, the settings drop-in
# (CONF, edit it first), the operator's rclone.conf (RCLONE_CONF; required, it is packed
# and holds secrets), man pages, completions and the installer. Reproducible:
# every entry is stamped with the last commit's time. Optionally bundles
# rclone/etcdctl/etcd for hosts without them: make package WITH_RCLONE=/usr/bin/rclone
RCLONE_CONF ?= rclone.conf
CONF        ?= units/30-etcd2-backup-restore.conf
PACKAGE     ?= $(BUILD)/etcd2-backup.tgz
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
package: static
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(STATIC_BIN)/etcd2-backup-package \
	  --bin-dir $(STATIC_BIN) --units units --conf $(CONF) --rclone-conf $(RCLONE_CONF) \
	  $(if $(WITH_RCLONE),--with-rclone $(WITH_RCLONE)) \
	  $(if $(WITH_ETCDCTL),--with-etcdctl $(WITH_ETCDCTL)) \
	  $(if $(WITH_ETCD),--with-etcd $(WITH_ETCD)) \
	  --output $(PACKAGE)

# The generic release, secret-free (settings and rclone.conf are supplied at
# install time, docs/install.md): the systemd-sysext image etcd2-backup.raw
# (static tools in /usr/bin, units, man pages, completions) and its
# SHA256SUMS, in RELEASE_DIR. Reproducible like the tarball.
RELEASE_DIR ?= $(BUILD)/release
release: static
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(STATIC_BIN)/etcd2-backup-sysext \
	  --bin-dir $(STATIC_BIN) --units units --output $(RELEASE_DIR)/etcd2-backup.raw
	cd $(RELEASE_DIR) && sha256sum etcd2-backup.raw > SHA256SUMS

clean:
	$(CARGO) clean
	rm -rf $(BUILD)

# A .deb for Debian's etcd (etcd.service, /etc/default/etcd,
# /var/lib/etcd/default): release tools in /usr/bin, the units rewritten for
# etcd.service, a settings file with no remote and the metrics where Debian's
# prometheus-node-exporter reads them, man pages and completions. No rclone
# config, no secret. lintian-clean of errors (tests/deb.rs).
# cargo-deb comes from `make deps` (scripts/ensure-deps).
DEB_DIR ?= $(BUILD)/deb
deb: deps
	$(CARGO) build --workspace --release
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) target/release/etcd2-backup-stage \
	  --etcd-unit etcd.service --bin-dir /usr/bin --unit-dir /lib/systemd/system \
	  --metrics-dir /var/lib/prometheus/node-exporter --out $(DEB_DIR)
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(CARGO) deb -p etcd2-backup-package --no-build --output $(BUILD)/

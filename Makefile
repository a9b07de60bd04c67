# etcd2-backup: build, test, demo, bench, package.
# `make demo` and `make test` install what they need (Debian packages) first.

CARGO   ?= cargo
PROFILE ?= debug
BUILD   := build
CARGO_FLAGS := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: all deps build test lint fmt demo bench package deb clean

all: build

deps:
	./scripts/ensure-deps

build:
	$(CARGO) build --workspace $(CARGO_FLAGS)

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

bench: deps
	$(CARGO) build --workspace --release
	./scripts/bench

# The install tarball: release tools, units, the settings drop-in (CONF, edit
# it first), the operator's rclone.conf (RCLONE_CONF; required, it is packed
# and holds secrets), man pages, completions and the installer. Reproducible:
# every entry is stamped with the last commit's time. Optionally bundles
# rclone/etcdctl/etcd for hosts without them: make package WITH_RCLONE=/usr/bin/rclone
RCLONE_CONF ?= rclone.conf
CONF        ?= units/30-etcd2-backup-restore.conf
PACKAGE     ?= $(BUILD)/etcd2-backup.tgz
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
package:
	$(CARGO) build --workspace --release
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) target/release/etcd2-backup-package \
	  --bin-dir target/release --units units --conf $(CONF) --rclone-conf $(RCLONE_CONF) \
	  $(if $(WITH_RCLONE),--with-rclone $(WITH_RCLONE)) \
	  $(if $(WITH_ETCDCTL),--with-etcdctl $(WITH_ETCDCTL)) \
	  $(if $(WITH_ETCD),--with-etcd $(WITH_ETCD)) \
	  --output $(PACKAGE)

clean:
	$(CARGO) clean
	rm -rf $(BUILD)

# A .deb for Debian's etcd (etcd.service, /etc/default/etcd,
# /var/lib/etcd/default): release tools in /usr/bin, the units rewritten for
# etcd.service, an empty settings file. No rclone config, no secret.
# cargo-deb comes from `make deps` (scripts/ensure-deps).
DEB_DIR ?= $(BUILD)/deb
deb: deps
	$(CARGO) build --workspace --release
	target/release/etcd2-backup-stage --etcd-unit etcd.service --bin-dir /usr/bin \
	  --unit-dir /lib/systemd/system --out $(DEB_DIR)
	$(CARGO) deb -p etcd2-backup-package --no-build --output $(BUILD)/

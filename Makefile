# etcd2-backup: build, test, demo, bench, package.
# `make demo` and `make test` install what they need (Debian packages) first.

CARGO   ?= cargo
PROFILE ?= debug
BUILD   := build
CARGO_FLAGS := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: all deps build test lint fmt demo bench clean

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

clean:
	$(CARGO) clean
	rm -rf $(BUILD)

# qpc — the front door. `make run` starts a relay on ./data, `make test` runs
# every test. Both install what they need first.

CARGO ?= cargo
LISTEN ?= 127.0.0.1:7000
DATA_DIR ?= ./data

.PHONY: run test test-rust proto deps fmt clippy

# Router builds and packages: cross, ipk, size, test-openwrt.
include cross/cross.mk
# Benchmarks against Mosquitto: bench (and its smoke test).
include bench/bench.mk
# Fuzzing the wire codec: fuzz, fuzz-smoke.
include proto/fuzz.mk

# Debian packages the build and the tests use.
deps:
	@command -v protoc >/dev/null || { \
	  echo "installing protobuf-compiler (protoc, for the schema check)"; \
	  apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null; }
	@command -v tmux >/dev/null || { \
	  echo "installing tmux (the REPL's terminal test)"; \
	  apt-get update -qq && apt-get install -y -qq tmux >/dev/null; }
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }

run: deps
	$(CARGO) run -p qpc-server -- --listen $(LISTEN) --data-dir $(DATA_DIR)

# Everything: the Rust tests (real binaries on loopback, status and LuCI),
# the router build under qemu with its packages, and a short fuzzing run.
test: test-rust test-openwrt fuzz-smoke

# The integration tests start the real binaries, so build them first.
test-rust: deps bench-deps
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

# Regenerate proto/src/gen from proto/qpc/v1/*.proto.
proto: deps
	QPC_BLESS=1 $(CARGO) test -p qpc-proto --test codegen

fmt:
	$(CARGO) fmt --all

# Status, admin socket and LuCI page: status-deps, test-status, test-luci.
include daemon/status.mk

# Benchmarks: qpc-server measured against Mosquitto on loopback (issue 7).
# Included by the top-level Makefile.
#
#   make bench         builds qpc-server (release) and the load generator,
#                      installs mosquitto and valgrind when missing, runs the
#                      workloads A B A B and prints the table, the instruction
#                      counts and the `ratio NAME VALUE` lines (a few minutes)
#   make bench BENCH_ARGS="--messages 20000 --rounds 3"
#                      scales up (qpc-bench --help lists every flag)
#   make bench-smoke   the harness's smoke test alone (it also runs in make test)
#
# The load generator is built with the dev profile: the workspace's dev
# profile optimises every dependency (quinn, rustls, ring, rumqttc) at
# opt-level 2, which drives both relays faster than the size-tuned release
# profile would, and it shares the artifacts of `make test`.

BENCH_ARGS ?=
BENCH_TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

.PHONY: bench bench-smoke bench-deps

bench-deps:
	@[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || { \
	  echo "installing mosquitto (the broker qpc is compared with)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; }
	@command -v valgrind >/dev/null || { \
	  echo "installing valgrind (instruction counts)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }

bench: deps bench-deps
	$(CARGO) build --release -p qpc-server
	$(CARGO) build -p qpc-bench
	$(BENCH_TARGET_DIR)/debug/qpc-bench --qpc-server $(BENCH_TARGET_DIR)/release/qpc-server $(BENCH_ARGS)

bench-smoke: deps bench-deps
	$(CARGO) build -p qpc-server
	$(CARGO) test -p qpc-bench --test smoke -- --nocapture

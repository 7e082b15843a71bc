# Fuzzing of qpc-proto with cargo-fuzz (libFuzzer, nightly): the frame codec
# and every request decoder, targets in proto/fuzz/fuzz_targets, seeds in
# proto/fuzz/corpus/<target> (`make fuzz-corpus` regenerates them).
#
#   make fuzz         each target for FUZZ_SECONDS (10 s; long runs: 3600)
#   make fuzz-smoke   each target for FUZZ_SMOKE_SECONDS (5 s), for CI
#
# What a run discovers goes to proto/fuzz/work/corpus/<target> (git-ignored,
# kept between runs); crashes to proto/fuzz/artifacts/<target>, replayed with
# `cd proto && cargo +nightly fuzz run -a <target> fuzz/artifacts/<target>/<file>`.
# Works included from the root Makefile or on its own:
# `make -f proto/fuzz.mk fuzz-smoke`.

FUZZ_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))fuzz)
FUZZ_TARGETS := frame_request frame_response frame_push request_decoders kt_decoders
FUZZ_SECONDS ?= 10
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_TOOLCHAIN ?= nightly
CARGO ?= cargo
RUSTUP ?= rustup
# --debug-assertions: overflow checks and debug_assert! are part of the oracle.
FUZZ_BUILD_FLAGS ?= --debug-assertions

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-deps fuzz-corpus

fuzz-deps:
	@$(RUSTUP) toolchain list | grep -q '^$(FUZZ_TOOLCHAIN)' || { \
	  echo "installing the $(FUZZ_TOOLCHAIN) toolchain (cargo-fuzz needs it)"; \
	  $(RUSTUP) toolchain install $(FUZZ_TOOLCHAIN) --profile minimal; }
	@$(CARGO) fuzz --version >/dev/null 2>&1 || { \
	  echo "installing cargo-fuzz"; $(CARGO) install cargo-fuzz --locked; }

fuzz-build: fuzz-deps
	cd $(FUZZ_DIR)/.. && $(CARGO) +$(FUZZ_TOOLCHAIN) fuzz build $(FUZZ_BUILD_FLAGS)

# $(1): seconds per target. libFuzzer writes new inputs to the first corpus
# directory only, so the committed seeds stay untouched. The full output of a
# run is in proto/fuzz/work/<target>.log; a failing run prints the panic,
# the input (base64) and how to reproduce it.
define fuzz_run
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/work/corpus/$$t; \
	  log=$(FUZZ_DIR)/work/$$t.log; \
	  if ( cd $(FUZZ_DIR)/.. && $(CARGO) +$(FUZZ_TOOLCHAIN) fuzz run $(FUZZ_BUILD_FLAGS) $$t \
	      $(FUZZ_DIR)/work/corpus/$$t $(FUZZ_DIR)/corpus/$$t -- \
	      -max_total_time=$(1) -print_final_stats=1 ) >$$log 2>&1; then \
	    echo "fuzz $$t: $(1) s, $$(sed -n 's/^stat::number_of_executed_units: *//p' $$log) runs, \
	$$(ls $(FUZZ_DIR)/corpus/$$t | wc -l) seeds, $$(ls $(FUZZ_DIR)/work/corpus/$$t | wc -l) inputs in the work corpus, no crash"; \
	  else \
	    { grep -A4 'panicked at' $$log; sed -n '/^SUMMARY/,/^Error:/p' $$log; } | head -n 80 >&2; \
	    echo "fuzz target $$t FAILED: full log $$log, input in proto/fuzz/artifacts/$$t" >&2; \
	    exit 1; \
	  fi; \
	done
endef

fuzz: fuzz-build
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build
	$(call fuzz_run,$(FUZZ_SMOKE_SECONDS))

fuzz-corpus:
	cd $(FUZZ_DIR) && $(CARGO) run --quiet --example gen_corpus --no-default-features

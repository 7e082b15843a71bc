# Router builds: cross-compiling for the OpenWrt targets, .ipk packages and
# their tests. Included by the top-level Makefile; every target here also
# installs what it needs, on a fresh Debian machine without Docker.
#
#   make cross                     all four targets, one after the other
#   make cross TARGET=mipsel_24kc  one target (OpenWrt architecture names)
#   make ipk [TARGET=...]          qpc and qpc-client .ipk per built target
#   make size                      stripped binary and .ipk sizes
#   make test-openwrt              package, init script and qemu tests
#                                  (builds mipsel_24kc through cargo first)
#   make cross-deps                only the installs

QPC_ROOT ?= $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
CROSS_DIR := $(QPC_ROOT)/cross
CROSS_ALL_TARGETS := $(shell $(CROSS_DIR)/targets.sh list)
CROSS_TARGETS := $(if $(TARGET),$(TARGET),$(CROSS_ALL_TARGETS))
CROSS_OUT := $(QPC_ROOT)/out/cross
IPK_OUT := $(QPC_ROOT)/out/ipk
# The target the tests build when nothing is built yet: the weakest and most
# common router CPU.
CROSS_TEST_TARGET ?= mipsel_24kc

# Pinned: the versions the figures in cross/SIZES.md were measured with.
CROSS_ZIGLANG_VERSION ?= 0.17.1
CROSS_ZIGBUILD_VERSION ?= 0.24.0
CROSS_APT_PACKAGES := qemu-user busybox file xz-utils perl make llvm

.PHONY: cross ipk size test-openwrt cross-deps cross-deps-apt cross-deps-pip \
	cross-deps-rust cross-clean

cross: cross-deps
	@set -e; for t in $(CROSS_TARGETS); do $(CROSS_DIR)/build.sh $$t; done
	@$(CROSS_DIR)/size.sh $(CROSS_TARGETS)

ipk:
	@set -e; for t in $(CROSS_TARGETS); do \
		[ -x $(CROSS_OUT)/$$t/qpc-server ] || $(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) cross TARGET=$$t; \
		$(CROSS_DIR)/ipk.sh $$t $(CROSS_OUT)/$$t $(IPK_OUT); \
	done

size:
	@$(CROSS_DIR)/size.sh $(CROSS_TARGETS)

# Always through cargo, which rebuilds only what changed, so the tests never
# run stale binaries.
test-openwrt: cross-deps
	@$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) cross TARGET=$(CROSS_TEST_TARGET)
	@rm -f $(IPK_OUT)/*_$(CROSS_TEST_TARGET).ipk
	@$(CROSS_DIR)/ipk.sh $(CROSS_TEST_TARGET) $(CROSS_OUT)/$(CROSS_TEST_TARGET) $(IPK_OUT)
	@# the host client that walks through the README against the router build
	cd $(QPC_ROOT) && cargo build -p qpc --bin qpc
	@$(QPC_ROOT)/tests/openwrt/run.sh

cross-deps: cross-deps-apt cross-deps-pip cross-deps-rust

# Each install checks first, so a machine that has everything installs
# nothing and needs no network.
cross-deps-apt:
	@missing=""; for p in $(CROSS_APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "cross: apt-get install$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y --no-install-recommends $$missing || \
		{ apt-get update && apt-get install -y --no-install-recommends $$missing; }; \
	fi

cross-deps-pip:
	@python3 -m ziglang version 2>/dev/null | grep -qx '$(CROSS_ZIGLANG_VERSION)' && \
	cargo-zigbuild --version 2>/dev/null | grep -q ' $(CROSS_ZIGBUILD_VERSION)$$' || \
		python3 -m pip install --quiet 'ziglang==$(CROSS_ZIGLANG_VERSION)' \
			'cargo-zigbuild==$(CROSS_ZIGBUILD_VERSION)'

# -Zbuild-std compiles std from the toolchain's own sources.
cross-deps-rust:
	@rustup component list --installed 2>/dev/null | grep -qx rust-src || \
		rustup component add rust-src

cross-clean:
	rm -rf $(QPC_ROOT)/target/cross $(CROSS_OUT) $(IPK_OUT)

# The relay's status, admin socket and LuCI page: what their tests need.
# Included by the top-level Makefile; `make test` runs these tests with the
# rest (cargo test --workspace), after installing their tools here.
#
#   make test-status   the admin-channel and LuCI tests (daemon/tests/status.rs, luci.rs)
#   make test-luci     the LuCI tests with Chromium required: out/luci-qpc.png
#   make status-deps   only the installs (prometheus_client, node, chromium)

.PHONY: status-deps test-status test-luci

STATUS_CHROMIUM_PACKAGES := chromium fonts-dejavu-core
# zbarimg reads the page's QR code back; xgettext checks po/templates.
STATUS_TOOL_PACKAGES := zbar-tools gettext

# Each install checks first. Chromium is optional: if it cannot be
# installed, the screenshot test says so and skips (test-luci fails).
status-deps:
	@python3 -c 'import prometheus_client' 2>/dev/null || { \
	  echo "installing prometheus_client (the metrics file is checked with its parser)"; \
	  python3 -m pip install --quiet prometheus_client; }
	@command -v node >/dev/null || command -v nodejs >/dev/null || { \
	  echo "installing nodejs (node --check of the LuCI view)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends nodejs >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs >/dev/null; }; }
	@command -v zbarimg >/dev/null && command -v xgettext >/dev/null || { \
	  echo "installing $(STATUS_TOOL_PACKAGES) (QR code and translation template checks)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends $(STATUS_TOOL_PACKAGES) >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(STATUS_TOOL_PACKAGES) >/dev/null; }; }
	@command -v chromium >/dev/null || { \
	  echo "installing chromium (headless screenshot of the LuCI page)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends $(STATUS_CHROMIUM_PACKAGES) >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(STATUS_CHROMIUM_PACKAGES) >/dev/null; } || \
	  echo "chromium cannot be installed: the LuCI screenshot test will be skipped"; }

# The cargo tests of `make test` include these; give them their tools.
test-rust: status-deps

test-status: status-deps
	$(CARGO) build -p qpc-server
	$(CARGO) test -p qpc-server --test status --test luci

test-luci: status-deps
	$(CARGO) build -p qpc-server
	QPC_REQUIRE_CHROMIUM=1 $(CARGO) test -p qpc-server --test luci
	@echo "screenshot: out/luci-qpc.png"

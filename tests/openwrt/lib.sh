# Shared by the tests in tests/openwrt: counting and the closing line.
# shellcheck shell=sh

passed=0
failed=0
skipped=0

pass() {
	passed=$((passed + 1))
	echo "ok - $*"
}

fail() {
	failed=$((failed + 1))
	echo "FAIL - $*"
}

skip() {
	skipped=$((skipped + 1))
	echo "skip - $*"
}

# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
	local what="$1"
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}

# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
	if [ "$2" = "$3" ]; then
		pass "$1"
	else
		fail "$1: expected '$2', got '$3'"
	fi
}

# Prints the closing line and exits non-zero when anything failed.
finish() {
	if [ "$skipped" -gt 0 ]; then
		echo "$passed passed, $failed failed, $skipped skipped"
	else
		echo "$passed passed, $failed failed"
	fi
	[ "$failed" -eq 0 ]
}

QPC_ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

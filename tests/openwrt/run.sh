#!/bin/sh
# All router-side tests: the init script in its harness, every .ipk in
# out/ipk, and the qemu smoke of every target built in out/cross (CI builds
# only mipsel_24kc, the weakest and most common router CPU, for time).
# Exits non-zero when any failed; the last line totals them.
. "$(dirname "$0")/lib.sh"
here="$QPC_ROOT/tests/openwrt"

# run_suite SCRIPT ARGS...: runs one test script and adds its counts.
run_suite() {
	local out line p f s
	out="$(mktemp)"
	sh "$@" 2>&1 | tee "$out"
	line="$(tail -n 1 "$out")"
	rm -f "$out"
	case "$line" in
	*" passed, "*" failed"*)
		p="${line%% passed*}"
		f="${line#*passed, }"; f="${f%% failed*}"
		s=0
		case "$line" in *skipped*) s="${line#*failed, }"; s="${s%% skipped*}" ;; esac
		passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
		;;
	*)
		fail "$1 printed no result line"
		;;
	esac
}

run_suite "$here/test-init.sh"
run_suite "$here/test-ipk.sh"
built=0
for arch in $("$QPC_ROOT/cross/targets.sh" list); do
	if [ -x "$QPC_ROOT/out/cross/$arch/qpc-server" ]; then
		built=$((built + 1))
		run_suite "$here/qemu-smoke.sh" "$arch"
	fi
done
check "at least one target built for the qemu smoke" test "$built" -gt 0

echo "# tests/openwrt total"
finish

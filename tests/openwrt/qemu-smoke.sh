#!/bin/sh
# The cross-built qpc-server of one target, run under qemu-user: it starts
# on a keyed (SQLCipher) data dir, stops cleanly on SIGTERM, and starts
# again on the same dir. This catches a broken OpenSSL build: with
# OpenSSL's MIPS assembly the keyed database cannot be read back (measured:
# "file is not a database" on the first start, "the database key is wrong"
# on the restart; cross/SIZES.md). In between, the host `qpc` client
# goes through the README walkthrough against it, across a restart with a
# message queued. A wrong key must be refused.
#
# usage: tests/openwrt/qemu-smoke.sh OPENWRT_ARCH
#   QPC_SERVER_BIN  the binary to run (default out/cross/ARCH/qpc-server)
#   QPC_CLIENT_BIN  the host qpc client for the walkthrough (default
#                   target/debug/qpc or target/release/qpc)
#   QPC_SMOKE_TIMEOUT  seconds to wait for the daemon to listen (default 90)
. "$(dirname "$0")/lib.sh"

arch="${1:?usage: qemu-smoke.sh OPENWRT_ARCH}"
server="${QPC_SERVER_BIN:-$QPC_ROOT/out/cross/$arch/qpc-server}"
timeout="${QPC_SMOKE_TIMEOUT:-90}"
qemu="$("$QPC_ROOT/cross/targets.sh" qemu "$arch")" || exit 2

echo "# qemu smoke: $arch ($qemu $server)"
if [ ! -x "$server" ]; then
	fail "no qpc-server for $arch at $server (make cross TARGET=$arch)"
	finish
	exit 1
fi
if ! command -v "$qemu" >/dev/null 2>&1; then
	fail "$qemu not installed (make cross-deps-apt)"
	finish
	exit 1
fi

work="$(mktemp -d)"
data="$work/data"
key="smoke-$(od -A n -N 8 -t x1 /dev/urandom | tr -d ' \n')"
pid=""
cleanup() {
	[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# A UDP port nothing else holds right now.
port="$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

# start_server LOG [KEY]: starts qpc-server under qemu in the background.
start_server() {
	"$qemu" "$server" --listen "127.0.0.1:$port" --data-dir "$data" \
		--db-key "${2:-$key}" --registration open --log-level info > "$1" 2>&1 &
	pid=$!
}

# wait_listening LOG: until the daemon logs that it listens, or it exits.
wait_listening() {
	local waited=0
	while [ "$waited" -lt $((timeout * 5)) ]; do
		grep -q "accepting QUIC connections addr=" "$1" && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.2
		waited=$((waited + 1))
	done
	return 1
}

# stop_server: SIGTERM, then the exit status within 30 s in $status.
stop_server() {
	local waited=0
	kill -TERM "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 150 ]; do
		sleep 0.2
		waited=$((waited + 1))
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
		status="killed"
	else
		wait "$pid"
		status=$?
	fi
	pid=""
}

show_log() {
	sed 's/^/    | /' "$1"
}

# 1. First start: creates the keyed store and the certificate.
start_server "$work/first.log"
if wait_listening "$work/first.log"; then
	pass "first start listens ($(grep -o 'addr=[^ ]*' "$work/first.log" | head -n 1))"
else
	fail "first start: no 'accepting QUIC connections addr=' within ${timeout}s"
	show_log "$work/first.log"
fi
check "first start: server certificate written" test -s "$data/server-cert.der"
stop_server
check_eq "first start: SIGTERM stops it cleanly" 0 "$status"

# 2. Restart on the same keyed store (the SQLCipher reopen).
start_server "$work/second.log"
if wait_listening "$work/second.log"; then
	pass "restart on the same keyed data dir listens"
else
	fail "restart on the same keyed data dir: no 'accepting QUIC connections addr=' (SQLCipher reopen?)"
	show_log "$work/second.log"
fi

# ---------------------------------------------------------------------------
# WALKTHROUGH: the host `qpc` client against this server under qemu, the
# README's steps: two identities register, Alice creates a group and
# invites Bob, they exchange messages; then the relay restarts with Bob's
# next message queued, and Bob still gets it (nothing lost on SIGTERM).
# ---------------------------------------------------------------------------
client="${QPC_CLIENT_BIN:-}"
if [ -z "$client" ]; then
	for c in "$QPC_ROOT/target/debug/qpc" "$QPC_ROOT/target/release/qpc"; do
		[ -x "$c" ] && client="$c" && break
	done
fi

# qpc_as STATE SUBCOMMAND ARGS...: the client as one user; output in $out.
qpc_as() {
	local state="$1" sub="$2"
	shift 2
	out="$("$client" "$sub" --state "$work/$state.bin" --server "127.0.0.1:$port" \
		--ca-cert "$data/server-cert.der" "$@" 2>&1)"
	qpc_status=$?
}

# step DESCRIPTION EXPECTED_SUBSTRING STATE SUBCOMMAND ARGS...
step() {
	local what="$1" want="$2"
	shift 2
	qpc_as "$@"
	case "$out" in
	*"$want"*) [ "$qpc_status" = 0 ] && { pass "walkthrough: $what"; return 0; } ;;
	esac
	fail "walkthrough: $what (exit $qpc_status, wanted '$want'): $out"
	return 1
}

if [ -z "$client" ] || [ ! -x "$client" ]; then
	fail "walkthrough: no host qpc client (cargo build -p qpc, or QPC_CLIENT_BIN)"
elif ! grep -q "accepting QUIC connections" "$work/second.log"; then
	fail "walkthrough: the relay is not running"
else
	step "alice registers" "KeyPackage uploaded successfully." alice register-state
	step "bob registers" "KeyPackage uploaded successfully." bob register-state
	bob_key="$(echo "$out" | sed -n 's/^identity_key : *//p' | tr -d ' ')"
	qpc_as alice whoami
	alice_key="$(echo "$out" | sed -n 's/^identity_key : *//p' | tr -d ' ')"
	step "alice creates a group" "group created: demo-chat" alice create-group --group-id demo-chat
	step "alice invites bob" "invited peer (welcome queued)" alice invite --peer-key "$bob_key"
	step "bob joins" "joined group successfully" bob join
	step "alice sends" "message sent" alice send --peer-key "$bob_key" --msg "hello from the router"
	step "bob receives it" "plaintext: hello from the router" bob recv
	step "bob replies" "message sent" bob send --peer-key "$alice_key" --msg "queued across a restart"

	stop_server
	check_eq "walkthrough: SIGTERM with a message queued stops cleanly" 0 "$status"
	start_server "$work/third.log"
	if wait_listening "$work/third.log"; then
		pass "walkthrough: relay restarts"
	else
		fail "walkthrough: relay does not restart"
		show_log "$work/third.log"
	fi
	step "alice receives the queued reply after the restart" "plaintext: queued across a restart" alice recv
	qpc_as bob recv
	check_eq "walkthrough: nothing is delivered twice" "" "$(echo "$out" | grep 'plaintext:')"
fi

stop_server
check_eq "restart: SIGTERM stops it cleanly" 0 "$status"

# 3. The key is real: the same store with another key does not open.
start_server "$work/wrong.log" "not-the-key"
if wait_listening "$work/wrong.log"; then
	fail "a wrong db key was accepted"
	stop_server
else
	stop_server
	check "a wrong db key is refused (exit status $status)" test "$status" != 0
fi

finish

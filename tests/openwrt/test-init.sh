#!/bin/sh
# init.d/qpc, run in a harness (tests/openwrt/harness: stand-ins for
# /etc/rc.common, /lib/functions.sh and /lib/functions/procd.sh) against
# UCI configs: the qpc-server command line procd would get, the firewall
# rule, and refusals with a message for invalid values.
# Runs under busybox sh (OpenWrt's shell) when installed, else /bin/sh.
. "$(dirname "$0")/lib.sh"

harness="$QPC_ROOT/tests/openwrt/harness"
init="$QPC_ROOT/init.d/qpc"
shell="sh"
command -v busybox >/dev/null 2>&1 && shell="busybox sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# config NAME: a copy of the shipped uci/qpc with the relay enabled and the
# secrets the uci-defaults script would have set; then `set OPTION VALUE`.
config() {
	mkdir -p "$work/$1"
	sed -e "s/option enabled '0'/option enabled '1'/" \
		-e "s/option db_key ''/option db_key 'k3y'/" \
		-e "s/option registration_token ''/option registration_token 't0ken'/" \
		"$QPC_ROOT/uci/qpc" > "$work/$1/qpc"
	current="$work/$1"
}

# set OPTION VALUE: replaces an option line of the current config (or adds it).
set_option() {
	if grep -q "^[[:space:]]*option $1 " "$current/qpc"; then
		sed -i "s|^\([[:space:]]*\)option $1 .*|\1option $1 '$2'|" "$current/qpc"
	else
		printf "\toption %s '%s'\n" "$1" "$2" >> "$current/qpc"
	fi
}

# set_listen ENTRY...: replaces the listen list.
set_listen() {
	sed -i "/^[[:space:]]*list listen /d" "$current/qpc"
	for entry in "$@"; do
		printf "\tlist listen '%s'\n" "$entry" >> "$current/qpc"
	done
}

# run ACTION: runs the init script's hook; status in $rc, records in $log.
run() {
	log="$current/log"
	rm -f "$log"
	: > "$log"
	HARNESS_LOG="$log" UCI_CONFIG_DIR="$current" $shell "$harness/rc.common" "$init" "$1" \
		> "$current/stdout" 2> "$current/stderr"
	rc=$?
}

command_line() {
	sed -n 's/^command //p' "$log"
}

logged() {
	grep -F -e "$1" "$log" >/dev/null
}

echo "# init.d/qpc under $shell"

check "init script parses" $shell -n "$init"

config shipped
cp "$QPC_ROOT/uci/qpc" "$current/qpc"
run start
check_eq "shipped config (enabled 0): start succeeds" 0 "$rc"
check "shipped config: no instance is started" sh -c "! grep -q '^instance' '$log'"
check "shipped config: says how to enable" logged "uci set qpc.server.enabled=1"

config defaults
run start
check_eq "enabled: start succeeds" 0 "$rc"
check_eq "enabled: qpc-server command line" \
	"/usr/sbin/qpc-server --listen [::]:7000 --data-dir /etc/qpc --db-key k3y --registration token --registration-token t0ken --max-queue-messages 1000 --max-queue-bytes 8388608 --store-cap-bytes 33554432 --message-ttl-secs 1209600 --blob-max-bytes 16777216 --blob-account-bytes 33554432 --blob-cap-bytes 67108864 --blob-lifetime-secs 604800 --log-level info --syslog" \
	"$(command_line)"
check "enabled: runs as user qpc" logged "param user qpc"
check "enabled: group qpc" logged "param group qpc"
check "enabled: respawns" logged "param respawn 3600 5 5"
check "enabled: lets SIGTERM finish before the kill" logged "param term_timeout 15"
check "enabled: data dir created" logged "mkdir -p /etc/qpc"
check "enabled: data dir owned by qpc" logged "chown -R qpc:qpc /etc/qpc"
check "enabled: data dir private" logged "chmod 0700 /etc/qpc"
check "enabled: no firewall data unless asked" sh -c "! grep -q 'json array firewall' '$log'"

config listen
set_option port 7443
set_listen 0.0.0.0 fd00::1 "[::1]" "127.0.0.1:7001" "[fe80::1%br-lan]:7002"
set_option registration open
set_option log_level debug
set_option max_queue_messages ''
set_option store_cap_bytes ''
printf "\tlist hostname 'router.example.net'\n\tlist hostname '192.0.2.1'\n" >> "$current/qpc"
run start
check_eq "listen list, host names and open registration: command line" \
	"/usr/sbin/qpc-server --listen 0.0.0.0:7443 --listen [fd00::1]:7443 --listen [::1]:7443 --listen 127.0.0.1:7001 --listen [fe80::1%br-lan]:7002 --hostname router.example.net --hostname 192.0.2.1 --data-dir /etc/qpc --db-key k3y --registration open --max-queue-bytes 8388608 --message-ttl-secs 1209600 --blob-max-bytes 16777216 --blob-account-bytes 33554432 --blob-cap-bytes 67108864 --blob-lifetime-secs 604800 --log-level debug --syslog" \
	"$(command_line)"

config blobs
set_option blob_dir /mnt/sda1/qpc-blobs
set_option blob_lifetime_secs 3600
run start
check_eq "blob_dir on USB: start succeeds" 0 "$rc"
check "blob_dir: passed to the daemon" sh -c "sed -n 's/^command //p' '$log' | grep -q -- '--db-key k3y --blob-dir /mnt/sda1/qpc-blobs --registration'"
check "blob_lifetime_secs: passed to the daemon" sh -c "sed -n 's/^command //p' '$log' | grep -q -- '--blob-lifetime-secs 3600 '"
check "blob_dir: created" logged "mkdir -p /mnt/sda1/qpc-blobs"
check "blob_dir: owned by qpc, not recursively" logged "chown qpc:qpc /mnt/sda1/qpc-blobs"
check "blob_dir: private" logged "chmod 0700 /mnt/sda1/qpc-blobs"

config firewall
set_option open_firewall 1
set_listen "::" "192.168.1.1:7001" "[::1]:7000"
run start
check_eq "open_firewall: start succeeds" 0 "$rc"
check "open_firewall: firewall rules published as service data" logged "json array firewall"
check "open_firewall: UDP accept from wan" sh -c "grep -q 'json string proto=udp' '$log' && grep -q 'json string src=wan' '$log' && grep -q 'json string target=ACCEPT' '$log'"
check_eq "open_firewall: one rule per distinct port" "7000 7001" \
	"$(sed -n 's/^json string dest_port=//p' "$log" | tr '\n' ' ' | sed 's/ $//')"
check "open_firewall: firewall told to reload" logged "config_changed firewall"

# refuse CASE_NAME MESSAGE: the last run refused to start, said MESSAGE in
# the system log, and gave procd no instance.
refuse() {
	check "$1: start fails" test "$rc" -ne 0
	check "$1: no instance" sh -c "! grep -q '^instance' '$log'"
	if grep -F "logger -t qpc -p daemon.err" "$log" | grep -F -e "$2" >/dev/null; then
		pass "$1: logs \"$2\""
	else
		fail "$1: expected a logger message with \"$2\", log was: $(cat "$log")"
	fi
	check "$1: says it on stderr too" grep -q -F -e "$2" "$current/stderr"
}

config port70000
set_option port 70000
run start
refuse "port 70000" "invalid port '70000' (1-65535)"

config port-word
set_option port seven
run start
refuse "port 'seven'" "invalid port 'seven'"

config port-low
set_option port 443
run start
refuse "port 443" "below 1024"

config listen-port
set_listen "[::]:99999"
run start
refuse "listen with port 99999" "invalid port '99999' in listen '[::]:99999'"

config hostname
printf "\tlist hostname 'a b'\n" >> "$current/qpc"
run start
refuse "hostname with a space" "invalid hostname 'a b'"

config registration
set_option registration sometimes
run start
refuse "registration 'sometimes'" "unknown registration mode 'sometimes' (open, token or closed)"

config token-empty
set_option registration_token ''
run start
refuse "token mode without token" "registration_token is empty"

config key-empty
set_option db_key ''
run start
refuse "empty db_key" "db_key is empty"

config tmpfs
set_option data_dir /var/qpc
run start
refuse "data_dir on /var" "is in RAM"

config relative
set_option data_dir qpc-data
run start
refuse "relative data_dir" "not an absolute path"

config blob-tmpfs
set_option blob_dir /tmp/blobs
run start
refuse "blob_dir on /tmp" "blob_dir '/tmp/blobs' is in RAM"

config blob-limit
set_option blob_max_bytes 16M
run start
refuse "blob_max_bytes 16M" "invalid blob_max_bytes '16M'"

config limit
set_option max_queue_bytes 8M
run start
refuse "max_queue_bytes 8M" "invalid max_queue_bytes '8M'"

config loglevel
set_option log_level verbose
run start
refuse "log_level verbose" "unknown log_level 'verbose'"

config triggers
run triggers
check "reload trigger on the qpc config" logged "reload_trigger qpc"
run stop
check "stop tells the firewall to drop the rules" logged "config_changed firewall"

# The package's uci-defaults script, with a stand-in uci(1): fills in a
# random db_key and registration_token once, and keeps them afterwards.
defaults="$QPC_ROOT/openwrt/files/qpc.defaults"
mkdir -p "$work/defaults"
cp "$QPC_ROOT/uci/qpc" "$work/defaults/qpc"
uci_get() {
	UCI_CONFIG_DIR="$work/defaults" "$harness/bin/uci" -q get "$1"
}
UCI_CONFIG_DIR="$work/defaults" PATH="$harness/bin:$PATH" $shell "$defaults"
check_eq "uci-defaults: exits 0" 0 "$?"
key1="$(uci_get qpc.server.db_key)"
token1="$(uci_get qpc.server.registration_token)"
check "uci-defaults: db_key is 64 random hex digits" sh -c "echo '$key1' | grep -Eqx '[0-9a-f]{64}'"
check "uci-defaults: registration_token is 32 random hex digits" sh -c "echo '$token1' | grep -Eqx '[0-9a-f]{32}'"
UCI_CONFIG_DIR="$work/defaults" PATH="$harness/bin:$PATH" $shell "$defaults"
check_eq "uci-defaults: a second run keeps db_key" "$key1" "$(uci_get qpc.server.db_key)"
check_eq "uci-defaults: a second run keeps the token" "$token1" "$(uci_get qpc.server.registration_token)"
grep -v "option db_key\|option registration_token" "$QPC_ROOT/uci/qpc" > "$work/rest.want"
grep -v "option db_key\|option registration_token" "$work/defaults/qpc" > "$work/rest.got"
check "uci-defaults: the rest of the config untouched" cmp -s "$work/rest.want" "$work/rest.got"

finish

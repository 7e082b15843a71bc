#!/bin/sh
# init.d/qpc, run as root in a chroot whose only userland is busybox, with
# the harness (tests/openwrt/harness) standing in for /etc/rc.common,
# /lib/functions.sh, /lib/functions/procd.sh, /sbin/validate_data, uci and
# logger, and a chown with OpenWrt's busybox semantics (it follows symbolic
# links). mkdir, chmod, ls, id and the file system are real. Checks the
# qpc-server command line and environment procd would get, the firewall
# rules, what happens to the data directory, and the refusals.
. "$(dirname "$0")/lib.sh"

harness="$QPC_ROOT/tests/openwrt/harness"
init="$QPC_ROOT/init.d/qpc"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The relay's user in the chroot's /etc/passwd.
QPC_UID=7501

if ! command -v busybox >/dev/null 2>&1; then
	echo "installing busybox (OpenWrt's userland, for the init script tests)"
	apt-get install -y -qq busybox >/dev/null 2>&1 ||
		{ apt-get update -qq && apt-get install -y -qq busybox >/dev/null; }
fi
bb="$(command -v busybox)"

# The template every case copies: busybox and its libraries, the harness,
# the package's files, a passwd with the qpc user and an OpenWrt-like
# /proc/mounts (a plain file: the chroot has no proc).
template="$work/template"
mkdir -p "$template/bin" "$template/sbin" "$template/usr/bin" "$template/usr/sbin" \
	"$template/etc/config" "$template/etc/init.d" "$template/etc/uci-defaults" \
	"$template/lib/functions" "$template/lib/upgrade/keep.d" "$template/var/run" \
	"$template/proc" "$template/tmp" "$template/mnt" "$template/harness/bin" "$template/srv"
mkdir -p "$template/dev"
mknod -m 0666 "$template/dev/null" c 1 3
mknod -m 0444 "$template/dev/urandom" c 1 9
mkdir -p "$template/usr/lib" "$template/overlay" "$template/www" "$template/root"
# busybox and its libraries are hard-linked into every case (nothing
# changes them); the rest is copied.
base="$work/base"
mkdir -p "$base/bin"
cp "$bb" "$base/bin/busybox"
for lib in $(ldd "$bb" 2>/dev/null | grep -o '/[^ ]*'); do
	mkdir -p "$base${lib%/*}"
	cp -L "$lib" "$base$lib"
done
cp -al "$base/." "$template/"
chroot "$template" /bin/busybox --install -s /bin
(cd "$base" && find . -type f) | while IFS= read -r f; do rm -f "$template/$f"; done
cp "$harness/rc.common" "$template/etc/rc.common"
cp "$harness/lib/functions.sh" "$template/lib/functions.sh"
cp "$harness/lib/functions/procd.sh" "$template/lib/functions/procd.sh"
cp "$harness/sbin/validate_data" "$template/sbin/validate_data"
cp "$harness/bin/uci" "$harness/bin/chown" "$harness/bin/logger" "$template/harness/bin/"
cp "$init" "$template/etc/init.d/qpc"
cp "$QPC_ROOT/openwrt/files/qpc.defaults" "$template/etc/uci-defaults/90-qpc"
printf 'root:x:0:0:root:/root:/bin/ash\nqpc:x:%s:%s:qpc:/var/run/qpc:/bin/false\n' "$QPC_UID" "$QPC_UID" \
	> "$template/etc/passwd"
printf 'root:x:0:\nqpc:x:%s:\n' "$QPC_UID" > "$template/etc/group"
echo 'root:*:0:0:99999:7:::' > "$template/etc/shadow"
chmod 0600 "$template/etc/shadow"
printf '/dev/root /rom squashfs ro 0 0\noverlayfs:/overlay / overlay rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n/dev/mtdblock6 /overlay jffs2 rw 0 0\n' \
	> "$template/proc/mounts"
sed -e "s/option enabled '0'/option enabled '1'/" \
	-e "s/option db_key ''/option db_key 'k3y'/" \
	-e "s/option registration_token ''/option registration_token 't0ken'/" \
	"$QPC_ROOT/uci/qpc" > "$template/etc/config/qpc"

# config NAME: a fresh chroot for one case: the shipped uci/qpc with the
# relay enabled and the secrets uci-defaults would have set.
config() {
	root="$work/$1"
	cp -a "$template" "$root"
	cp -al "$base/." "$root/"
	current="$root/etc/config"
}

# set_option OPTION VALUE: replaces an option line of the config (or adds it).
set_option() {
	if grep -q "^[[:space:]]*option $1 " "$current/qpc"; then
		sed -i "s|^\([[:space:]]*\)option $1 .*|\1option $1 '$2'|" "$current/qpc"
	else
		printf "\toption %s '%s'\n" "$1" "$2" >> "$current/qpc"
	fi
}

# set_listen ENTRY...: replaces the listen list.
set_listen() {
	sed -i "/^[[:space:]]*list listen /d;/^[[:space:]]*option listen /d" "$current/qpc"
	for entry in "$@"; do
		printf "\tlist listen '%s'\n" "$entry" >> "$current/qpc"
	done
}

# in_root COMMAND...: runs a command in the current chroot.
in_root() {
	env -i PATH=/harness/bin:/bin:/sbin HARNESS_LOG=/harness.log chroot "$root" "$@"
}

# run ACTION: runs the init script's hook; status in $rc, records in $log.
run() {
	log="$root/harness.log"
	: > "$log"
	in_root /bin/sh /etc/rc.common /etc/init.d/qpc "$1" > "$root/stdout" 2> "$root/stderr"
	rc=$?
}

command_line() {
	sed -n 's/^command //p' "$log"
}

logged() {
	grep -F -e "$1" "$log" >/dev/null
}

not_logged() {
	! grep -F -e "$1" "$log" >/dev/null
}

# owner PATH (in the chroot): uid:gid of the path itself.
owner() {
	ls -ldn "$root$1" | awk '{ print $3 ":" $4 }'
}

mode() {
	ls -ld "$root$1" | awk '{ print $1 }'
}

echo "# init.d/qpc under busybox sh, in a chroot"

check "init script parses" "$bb" sh -n "$init"

config shipped
cp "$QPC_ROOT/uci/qpc" "$current/qpc"
run start
check_eq "shipped config (enabled 0): start succeeds" 0 "$rc"
check "shipped config: no instance is started" not_logged "instance"
check "shipped config: says how to enable" logged "uci set qpc.server.enabled=1"
check "shipped config: the data dir is not made" test ! -e "$root/etc/qpc"

config defaults
run start
check_eq "enabled: start succeeds" 0 "$rc"
check_eq "enabled: qpc-server command line" \
	"/usr/sbin/qpc-server --listen [::]:7000 --data-dir /etc/qpc --registration token --max-queue-messages 1000 --max-queue-bytes 8388608 --store-cap-bytes 33554432 --message-ttl-secs 1209600 --blob-max-bytes 16777216 --blob-account-bytes 33554432 --blob-cap-bytes 67108864 --blob-lifetime-secs 604800 --log-level info --syslog" \
	"$(command_line)"
check "enabled: the store key reaches the daemon in its environment" logged "param env QPC_DB_KEY=k3y"
check "enabled: the registration token too" logged "param+ env QPC_REGISTRATION_TOKEN=t0ken"
check "enabled: no secret on the command line" sh -c "! sed -n 's/^command //p' '$log' | grep -q -e k3y -e t0ken"
check "enabled: runs as user qpc" logged "param user qpc"
check "enabled: group qpc" logged "param group qpc"
check "enabled: respawns" logged "param respawn 3600 5 5"
check "enabled: lets SIGTERM finish before the kill" logged "param term_timeout 15"
check_eq "enabled: data dir made, owned by qpc" "$QPC_UID:$QPC_UID" "$(owner /etc/qpc)"
check_eq "enabled: data dir private" "drwx------" "$(mode /etc/qpc)"
check "enabled: only the data dir itself changes owner" logged "chown -h qpc:qpc /etc/qpc"
check "enabled: never a recursive chown" not_logged "chown -R"
check_eq "enabled: /var/run/qpc made for the admin socket, owned by qpc" "$QPC_UID:$QPC_UID" "$(owner /var/run/qpc)"
check_eq "enabled: /var/run/qpc private" "drwx------" "$(mode /var/run/qpc)"
check_eq "enabled: sysupgrade keeps the data dir" "/etc/qpc/" "$(cat "$root/lib/upgrade/keep.d/qpc" 2>/dev/null)"
check "enabled: no firewall data unless asked" not_logged "json array firewall"
check "enabled: no firewall reload with open_firewall '0'" not_logged "config_changed firewall"
run stop
check "enabled: no firewall reload at stop either" not_logged "config_changed firewall"
run start
check_eq "enabled: a second start succeeds on the relay's own directory" 0 "$rc"

config listen
set_option port 7443
set_listen 0.0.0.0 fd00::1 "[::1]" "127.0.0.1:7001" "[fe80::1%br-lan]:7002" "::ffff:192.0.2.1"
set_option registration open
set_option log_level debug
set_option max_queue_messages ''
set_option store_cap_bytes ''
printf "\tlist hostname 'router.example.net'\n\tlist hostname '192.0.2.1'\n" >> "$current/qpc"
run start
check_eq "listen list, host names and open registration: command line" \
	"/usr/sbin/qpc-server --listen 0.0.0.0:7443 --listen [fd00::1]:7443 --listen [::1]:7443 --listen 127.0.0.1:7001 --listen [fe80::1%br-lan]:7002 --listen [::ffff:192.0.2.1]:7443 --hostname router.example.net --hostname 192.0.2.1 --data-dir /etc/qpc --registration open --max-queue-bytes 8388608 --message-ttl-secs 1209600 --blob-max-bytes 16777216 --blob-account-bytes 33554432 --blob-cap-bytes 67108864 --blob-lifetime-secs 604800 --log-level debug --syslog" \
	"$(command_line)"
check "open registration: no token in the environment" not_logged "QPC_REGISTRATION_TOKEN"

# `uci set qpc.server.listen=...` makes an option, not a list.
config listen-option
sed -i "/^[[:space:]]*list listen /d" "$current/qpc"
printf "\toption listen '192.168.1.1'\n\toption hostname 'router.lan'\n" >> "$current/qpc"
run start
check_eq "listen and hostname as options: start succeeds" 0 "$rc"
check_eq "listen as an option: only that address" \
	"--listen 192.168.1.1:7000 --hostname router.lan" \
	"$(command_line | grep -o -e '--listen [^ ]*' -e '--hostname [^ ]*' | tr '\n' ' ' | sed 's/ $//')"
config listen-option-words
sed -i "/^[[:space:]]*list listen /d" "$current/qpc"
printf "\toption listen '192.168.1.1 [fd00::1]:7001'\n" >> "$current/qpc"
run start
check_eq "listen as an option of two words: both" \
	"--listen 192.168.1.1:7000 --listen [fd00::1]:7001" \
	"$(command_line | grep -o -e '--listen [^ ]*' | tr '\n' ' ' | sed 's/ $//')"

config firewall
set_option open_firewall 1
set_listen "::" "192.168.1.1:7001" "[::1]:7000" "[2001:db8::1]:7002" "0.0.0.0:7003"
run start
check_eq "open_firewall: start succeeds" 0 "$rc"
check "open_firewall: firewall rules published as service data" logged "json array firewall"
check "open_firewall: UDP accept from wan" sh -c "grep -q 'json string proto=udp' '$log' && grep -q 'json string src=wan' '$log' && grep -q 'json string target=ACCEPT' '$log'"
check_eq "open_firewall: one rule per address and port, none for loopback" "7000 7001 7002 7003" \
	"$(sed -n 's/^json string dest_port=//p' "$log" | tr '\n' ' ' | sed 's/ $//')"
check_eq "open_firewall: dest_ip for a named address" "192.168.1.1 2001:db8::1" \
	"$(sed -n 's/^json string dest_ip=//p' "$log" | tr '\n' ' ' | sed 's/ $//')"
check_eq "open_firewall: IPv6 rule has family ipv6" "ipv4 ipv6" \
	"$(sed -n 's/^json string family=//p' "$log" | tr '\n' ' ' | sed 's/ $//')"
check "open_firewall: firewall told to reload" logged "config_changed firewall"
run start
check "open_firewall: a start with the same rules does not reload it" not_logged "config_changed firewall"
set_listen "::"
run reload
check "open_firewall: a reload with other rules does" logged "config_changed firewall"
run stop
check "open_firewall: stop tells the firewall to drop the rules" logged "config_changed firewall"
run stop
check "open_firewall: a second stop does not" not_logged "config_changed firewall"

# refuse CASE_NAME MESSAGE: the last run refused to start, said MESSAGE in
# the system log, and gave procd no instance.
refuse() {
	check "$1: start fails" test "$rc" -ne 0
	check "$1: no instance" not_logged "instance"
	if grep -F "logger -t qpc -p daemon.err" "$log" | grep -F -e "$2" >/dev/null; then
		pass "$1: logs \"$2\""
	else
		fail "$1: expected a logger message with \"$2\", log was: $(cat "$log")"
	fi
	check "$1: says it on stderr too" grep -q -F -e "$2" "$root/stderr"
}

# The cases the LuCI form is held to as well (tests/openwrt/rules.txt):
# every malformed listen entry and every data_dir the relay must not own is
# refused before start, naming it; the good ones start.
rules="$QPC_ROOT/tests/openwrt/rules.txt"
grep -v '^#' "$rules" | while read -r kind verdict value; do
	config "rule"
	case "$kind" in
	listen) set_listen "::1" "$value" ;;
	data_dir) set_option data_dir "$value" ;;
	esac
	run start
	if [ "$verdict" = ok ]; then
		check_eq "$kind '$value': starts" 0 "$rc"
	else
		check "$kind '$value': refused" test "$rc" -ne 0
		check "$kind '$value': no instance" not_logged "instance"
		check "$kind '$value': logs why, naming it" sh -c "grep -F 'logger -t qpc -p daemon.err' '$log' | grep -q -F -e \"'\$1'\"" - "$value"
		if [ "$kind" = data_dir ] && [ -e "$root/${value#/}" ]; then
			check_eq "data_dir '$value': its owner is unchanged" "0:0" "$(owner "/${value#/}")"
		fi
	fi
	rm -rf "$root"
done > "$work/rules.out"
cat "$work/rules.out"
passed=$((passed + $(grep -c '^ok - ' "$work/rules.out")))
failed=$((failed + $(grep -c '^FAIL - ' "$work/rules.out")))
# Each kind of refusal says its own words.
for entry in garbage "[::1" "foo bar"; do
	config "listen-bad"
	set_listen "::" "$entry"
	run start
	refuse "listen '$entry'" "listen entry '$entry' is not an IP address"
	rm -rf "$root"
done
for entry in "1.2.3.4:80" "[::]:0"; do
	config "listen-bad-port"
	set_listen "$entry"
	run start
	refuse "listen '$entry'" "listen entry '$entry': port"
	rm -rf "$root"
done

config port70000
set_option port 70000
run start
refuse "port 70000" "port '70000' is not between 1024 and 65535"

config port-word
set_option port seven
run start
refuse "port 'seven'" "port 'seven' is not between"

config port-low
set_option port 443
run start
refuse "port 443" "port '443' is not between 1024 and 65535"

config hostname
printf "\tlist hostname 'a b'\n" >> "$current/qpc"
run start
refuse "hostname with a space" "invalid hostname 'a b'"

config peers
fp=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
printf "\tlist peer 'qpc://friends.example.net:7001#$fp'\n\tlist peer 'qpc://[fd00::2]#$fp'\n" >> "$current/qpc"
run start
check_eq "peers: start succeeds" 0 "$rc"
check_eq "peers: each one a --peer" \
	"--peer qpc://friends.example.net:7001#$fp --peer qpc://[fd00::2]#$fp" \
	"$(command_line | grep -o -e '--peer [^ ]*' | tr '\n' ' ' | sed 's/ $//')"

config peer-no-fingerprint
printf "\tlist peer 'qpc://friends.example.net:7001'\n" >> "$current/qpc"
run start
refuse "peer without a fingerprint" "invalid peer 'qpc://friends.example.net:7001'"

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

config limit
set_option max_queue_bytes 8M
run start
refuse "max_queue_bytes 8M" "invalid max_queue_bytes '8M'"

config ttl
set_option message_ttl_secs 99999999999
run start
refuse "message_ttl_secs of 3000 years" "message_ttl_secs '99999999999' is not between 60 and 31536000"

config schema
set_option max_queue_messages 0
run start
refuse "max_queue_messages 0 (outside the schema)" "does not pass its schema"

config loglevel
set_option log_level verbose
run start
refuse "log_level verbose" "unknown log_level 'verbose'"

config nouser
sed -i '/^qpc:/d' "$root/etc/passwd"
run start
refuse "no qpc user" "user 'qpc' does not exist"
check "no qpc user: the data dir is not made" test ! -e "$root/etc/qpc"

config tmpfs
set_option data_dir /var/qpc
run start
refuse "data_dir on /var" "is in RAM"

config relative
set_option data_dir qpc-data
run start
refuse "relative data_dir" "not an absolute path"

config system-dir
set_option data_dir /etc
run start
refuse "data_dir '/etc'" "is a system directory"

# Files (blobs) on a directory of their own, e.g. a USB disk.
config blob-dir
mkdir -p "$root/srv"
set_option blob_dir /srv/qpc-blobs
set_option blob_lifetime_secs 3600
run start
check_eq "blob_dir: start succeeds" 0 "$rc"
check "blob_dir: passed to the daemon" sh -c "sed -n 's/^command //p' '$log' | grep -q -- '--registration token --blob-dir /srv/qpc-blobs '"
check "blob_lifetime_secs: passed to the daemon" sh -c "sed -n 's/^command //p' '$log' | grep -q -- '--blob-lifetime-secs 3600 '"
check_eq "blob_dir: created and owned by the relay" "$QPC_UID:$QPC_UID" "$(owner /srv/qpc-blobs)"

config blob-tmpfs
set_option blob_dir /tmp/blobs
run start
refuse "blob_dir on /tmp" "blob_dir '/tmp/blobs' is in RAM"

config blob-limit
set_option blob_max_bytes 16M
run start
refuse "blob_max_bytes 16M" "invalid blob_max_bytes '16M'"

# A directory that holds files the relay did not make is not its own.
config foreign
mkdir -p "$root/srv/shared"
echo data > "$root/srv/shared/notes.txt"
set_option data_dir /srv/shared
run start
refuse "data_dir holding root's files" "holds 'notes.txt', which is not the relay's"
check_eq "data_dir holding root's files: its owner is unchanged" "0:0" "$(owner /srv/shared)"

config symlink-dir
ln -s /etc "$root/srv/qpc"
set_option data_dir /srv/qpc
run start
refuse "data_dir that is a symbolic link" "is a symbolic link"
check_eq "data_dir that is a symbolic link: /etc keeps its owner" "0:0" "$(owner /etc)"

config qpc-parent
mkdir -p "$root/srv/relay/data"
chown "$QPC_UID:$QPC_UID" "$root/srv/relay"
set_option data_dir /srv/relay/data
run start
refuse "data_dir inside a directory the relay owns" "its parent '/srv/relay' is owned by qpc"

# The relay plants links in its own directory; the next start (as root)
# must not follow them. The harness's chown follows links like OpenWrt's
# busybox, as the first check shows.
config symlink-plant
mkdir -p "$root/etc/qpc"
chown "$QPC_UID:$QPC_UID" "$root/etc/qpc"
ln -s /etc/shadow "$root/etc/qpc/x"
ln -s /etc "$root/etc/qpc/y"
chown -h "$QPC_UID:$QPC_UID" "$root/etc/qpc/x" "$root/etc/qpc/y"
cp -a "$root" "$work/plant-check"
env -i PATH=/harness/bin:/bin:/sbin chroot "$work/plant-check" chown -R qpc:qpc /etc/qpc
check_eq "symlink plant: the harness's chown -R follows links, as OpenWrt's does" "$QPC_UID:$QPC_UID" \
	"$(ls -ldn "$work/plant-check/etc/shadow" | awk '{ print $3 ":" $4 }')"
rm -rf "$work/plant-check"
run start
check_eq "symlink plant: start succeeds" 0 "$rc"
check_eq "symlink plant: /etc/shadow keeps its owner" "0:0" "$(owner /etc/shadow)"
check_eq "symlink plant: /etc/shadow keeps its mode" "-rw-------" "$(mode /etc/shadow)"
check_eq "symlink plant: /etc keeps its owner" "0:0" "$(owner /etc)"
check_eq "symlink plant: nothing outside the data dir changed owner" "" \
	"$(find "$root" -path "$root/etc/qpc" -prune -o -path "$root/var/run/qpc" -prune -o -user "$QPC_UID" -print)"
run start
check_eq "symlink plant: and a second start neither" "0:0" "$(owner /etc/shadow)"

# A data_dir on a USB disk, started before the disk is mounted.
config usb
set_option data_dir /mnt/sda1/qpc
printf "config mount\n\toption target '/mnt/sda1'\n\toption uuid 'c0ffee'\n\toption enabled '1'\n" \
	> "$current/fstab"
mkdir -p "$root/mnt/sda1"
run start
refuse "USB data_dir, disk not mounted" "data_dir '/mnt/sda1/qpc' is on /mnt/sda1, which is not mounted"
check "USB data_dir, disk not mounted: no store dir made on the flash" test ! -e "$root/mnt/sda1/qpc"
run triggers
check "USB data_dir: restarts when the disk is mounted" logged "mount_trigger restart /mnt/sda1"
echo "/dev/sda1 /mnt/sda1 ext4 rw 0 0" >> "$root/proc/mounts"
run start
check_eq "USB data_dir, disk mounted: start succeeds" 0 "$rc"
check_eq "USB data_dir, disk mounted: dir made, owned by qpc" "$QPC_UID:$QPC_UID" "$(owner /mnt/sda1/qpc)"
check_eq "USB data_dir: sysupgrade does not copy the disk" "" "$(cat "$root/lib/upgrade/keep.d/qpc" 2>/dev/null)"
set_option data_dir /mnt/sda1
run start
refuse "data_dir at a mount's root" "is the root of a mounted file system"
check_eq "data_dir at a mount's root: its owner is unchanged" "0:0" "$(owner /mnt/sda1)"

config usb-hotplug
set_option data_dir /mnt/usbstick/qpc
run start
refuse "data_dir under /mnt without fstab, not mounted" "is on /mnt/usbstick, which is not mounted"

config triggers
run triggers
check "reload trigger on the qpc config" logged "reload_trigger qpc"
check "validation schema published" logged "validation validate_qpc_section"
check "schema: listen" logged "json string listen=list(string)"
check "schema: port range" logged "json string port=and(uinteger,range(1024,65535))"
check "schema: registration" logged "json string registration=or('open','token','closed')"
check "no mount trigger for a data_dir on flash" not_logged "mount_trigger"

# The package's uci-defaults script, with uci's stand-in: fills in a random
# raw store key and registration token once, keeps them afterwards, and
# keeps the file's comments.
config defaults-script
cp "$QPC_ROOT/uci/qpc" "$current/qpc"
uci_get() {
	in_root /harness/bin/uci -q get "$1"
}
in_root /bin/sh /etc/uci-defaults/90-qpc
check_eq "uci-defaults: exits 0" 0 "$?"
key1="$(uci_get qpc.server.db_key)"
token1="$(uci_get qpc.server.registration_token)"
check "uci-defaults: db_key is a raw 256-bit key x'<64 hex>'" sh -c "echo \"\$1\" | grep -Eqx \"x'[0-9a-f]{64}'\"" - "$key1"
check "uci-defaults: registration_token is 32 random hex digits" sh -c "echo '$token1' | grep -Eqx '[0-9a-f]{32}'"
in_root /bin/sh /etc/uci-defaults/90-qpc
check_eq "uci-defaults: a second run keeps db_key" "$key1" "$(uci_get qpc.server.db_key)"
check_eq "uci-defaults: a second run keeps the token" "$token1" "$(uci_get qpc.server.registration_token)"
grep -v "option db_key\|option registration_token" "$QPC_ROOT/uci/qpc" > "$work/rest.want"
grep -v "option db_key\|option registration_token" "$current/qpc" > "$work/rest.got"
check "uci-defaults: the rest of the config untouched, comments included" cmp -s "$work/rest.want" "$work/rest.got"
# The key as the init script reads it reaches the daemon whole.
set_option enabled 1
run start
check "uci-defaults: the raw key reaches the daemon's environment whole" logged "param env QPC_DB_KEY=$key1"

finish

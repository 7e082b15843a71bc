# Test stand-in for OpenWrt's /lib/functions/procd.sh and jshn: instead of
# sending the instance to procd over ubus, each call is written to
# $HARNESS_LOG, one line per parameter, so a test can compare the command
# line, the environment and the service data a start would have produced.
# uci_load_validate calls /sbin/validate_data as procd.sh does (the
# harness's stand-in of ubox's validate_data there).

_procd_param=""
_procd_command=""

procd_open_instance() {
	_record "instance open${1:+ $1}"
}

procd_close_instance() {
	[ -n "$_procd_command" ] && _record "command$_procd_command"
	_procd_command=""
	_record "instance close"
}

# Quote each word the way it would be split back.
_procd_words() {
	local w out=""
	for w in "$@"; do
		out="$out $w"
	done
	echo "$out"
}

procd_set_param() {
	local param="$1"
	shift
	if [ "$param" = command ]; then
		_procd_command="$(_procd_words "$@")"
	else
		_record "param $param$(_procd_words "$@")"
	fi
}

procd_append_param() {
	local param="$1"
	shift
	if [ "$param" = command ]; then
		_procd_command="$_procd_command$(_procd_words "$@")"
	else
		_record "param+ $param$(_procd_words "$@")"
	fi
}

procd_open_data() { _record "data open"; }
procd_close_data() { _record "data close"; }
procd_add_reload_trigger() { _record "reload_trigger $*"; }

# As procd.sh: a mount trigger only for paths under a mount target of
# /etc/config/fstab.
procd_get_mountpoints() {
	(
		_harness_mount() {
			local target path="${2%/}/"
			config_get target "$1" target
			target="${target%/}/"
			[ "$target" != / ] && case "$path" in "$target"*) echo "${target%/}" ;; esac
		}
		local p
		config_load fstab || exit 0
		for p in "$@"; do
			config_foreach _harness_mount mount "$p"
		done
	) | sort -u
}
procd_add_restart_mount_trigger() {
	local m
	for m in $(procd_get_mountpoints "$@"); do
		_record "mount_trigger restart $m"
	done
}

# The schema goes to procd with the service: validate_data, given no
# section name, prints it as jshn calls.
procd_add_validation() {
	_record "validation $1"
	"$@"
}

# uci_load_validate PACKAGE TYPE NAME FUNCTION OPTION:TYPE[:DEFAULT]...:
# sets one shell variable per option from validate_data's output, then
# calls FUNCTION NAME STATUS (0 when every option passed).
uci_load_validate() {
	local package="$1" type="$2" name="$3" callback="$4" out status
	shift 4
	out="$(/sbin/validate_data "$package" "$type" "$name" "$@" 2>/dev/null)"
	status=$?
	eval "$out"
	[ -n "$callback" ] || return "$status"
	"$callback" "$name" "$status"
}
procd_set_config_changed() { _record "config_changed $*"; }

json_add_array() { _record "json array $1"; }
json_close_array() { _record "json array end"; }
json_add_object() { _record "json object${1:+ $1}"; }
json_close_object() { _record "json object end"; }
json_add_string() { _record "json string $1=$2"; }

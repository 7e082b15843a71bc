# Test stand-in for OpenWrt's /lib/functions/procd.sh and jshn: instead of
# sending the instance to procd over ubus, each call is written to
# $HARNESS_LOG, one line per parameter, so a test can compare the command
# line and the service data a start would have produced.

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
procd_set_config_changed() { _record "config_changed $*"; }

json_add_array() { _record "json array $1"; }
json_close_array() { _record "json array end"; }
json_add_object() { _record "json object${1:+ $1}"; }
json_close_object() { _record "json object end"; }
json_add_string() { _record "json string $1=$2"; }

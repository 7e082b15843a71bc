# Test stand-in for OpenWrt's /lib/functions.sh: the UCI reading part that
# init scripts use (config_load, config_get, config_get_bool,
# config_list_foreach), with the same CONFIG_<section>_<option> variables,
# config_foreach and user_exists. Runs inside the test's chroot, where
# mkdir, chown and the rest are real (tests/openwrt/harness/bin holds the
# OpenWrt-like chown and a recording logger).
# Reads $UCI_CONFIG_DIR/<package> (default /etc/config, uci's own file
# format). Records go to $HARNESS_LOG.

config_load() {
	local file="${UCI_CONFIG_DIR:-/etc/config}/$1" line kw name value section=""
	[ -f "$file" ] || return 1
	CONFIG_SECTIONS=""
	while IFS= read -r line || [ -n "$line" ]; do
		# leading blanks, comments and empty lines
		line="${line#"${line%%[![:space:]]*}"}"
		case "$line" in ''|'#'*) continue ;; esac
		kw="${line%%[[:space:]]*}"
		line="${line#"$kw"}"
		line="${line#"${line%%[![:space:]]*}"}"
		name="${line%%[[:space:]]*}"
		value="${line#"$name"}"
		value="${value#"${value%%[![:space:]]*}"}"
		name="$(_uci_unquote "$name")"
		value="$(_uci_unquote "$value")"
		case "$kw" in
		config)
			section="${value:-cfg$(( ${#CONFIG_SECTIONS} + 1 ))}"
			CONFIG_SECTIONS="$CONFIG_SECTIONS $section"
			export "CONFIG_${section}_TYPE=$name"
			;;
		option)
			export "CONFIG_${section}_${name}=$value"
			;;
		list)
			local n
			eval "n=\${CONFIG_${section}_${name}_LENGTH:-0}"
			n=$((n + 1))
			export "CONFIG_${section}_${name}_ITEM${n}=$value"
			export "CONFIG_${section}_${name}_LENGTH=$n"
			eval "CONFIG_${section}_${name}=\"\${CONFIG_${section}_${name}:+\$CONFIG_${section}_${name} }\$value\""
			;;
		esac
	done < "$file"
}

# 'value' or "value" or value
_uci_unquote() {
	case "$1" in
	\'*\') local v="${1#\'}"; echo "${v%\'}" ;;
	\"*\") local v="${1#\"}"; echo "${v%\"}" ;;
	*) echo "$1" ;;
	esac
}

config_get() {
	case "$#" in
	4) eval "export ${1}=\"\${CONFIG_${2}_${3}:-\$4}\"" ;;
	3) eval "export ${1}=\"\${CONFIG_${2}_${3}:-}\"" ;;
	2) eval "echo \"\${CONFIG_${1}_${2}:-}\"" ;;
	esac
}

config_get_bool() {
	local _tmp
	config_get _tmp "$2" "$3" "$4"
	case "$_tmp" in
	1|on|true|yes|enabled) _tmp=1 ;;
	0|off|false|no|disabled) _tmp=0 ;;
	*) _tmp="$4" ;;
	esac
	export "$1=$_tmp"
}

config_list_foreach() {
	local section="$1" option="$2" function="$3" len i val
	shift 3
	eval "len=\${CONFIG_${section}_${option}_LENGTH:-0}"
	i=1
	while [ "$i" -le "$len" ]; do
		eval "val=\"\${CONFIG_${section}_${option}_ITEM${i}}\""
		"$function" "$val" "$@"
		i=$((i + 1))
	done
}

config_foreach() {
	local function="$1" type="$2" section t
	shift 2
	for section in $CONFIG_SECTIONS; do
		eval "t=\"\${CONFIG_${section}_TYPE}\""
		[ -z "$type" ] || [ "$t" = "$type" ] || continue
		"$function" "$section" "$@"
	done
}

# As OpenWrt's: whether /etc/passwd has the user.
user_exists() {
	grep -qs "^${1}:" /etc/passwd
}

_record() {
	echo "$*" >> "${HARNESS_LOG:?}"
}

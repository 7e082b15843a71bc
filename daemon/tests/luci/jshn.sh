# Test stand-in for libubox's /usr/share/libubox/jshn.sh, for the rpcd
# backend on a machine without libubox: json_init, json_add_string,
# json_add_int, json_add_boolean, json_add_object, json_close_object,
# json_load, json_get_var and json_dump with jshn's meaning (json_load fails on text that
# is not a JSON object; json_dump prints one line). The document is kept as
# JSON text and changed by python3.
# shellcheck shell=sh

_jshn_doc='{}'
_jshn_path=''

_jshn_add() {
	_jshn_doc="$(python3 -c '
import json, sys
doc = json.loads(sys.argv[1])
obj = doc
for key in [k for k in sys.argv[2].split("/") if k]:
    obj = obj[key]
name, kind, value = sys.argv[3:6]
obj[name] = {"string": lambda v: v, "int": int, "bool": lambda v: v not in ("0", "", "false"),
             "object": lambda v: {}}[kind](value)
print(json.dumps(doc))
' "$_jshn_doc" "$_jshn_path" "$1" "$2" "$3")"
}

json_init() { _jshn_doc='{}'; _jshn_path=''; }
json_add_string() { _jshn_add "$1" string "$2"; }
json_add_int() { _jshn_add "$1" int "$2"; }
json_add_boolean() { _jshn_add "$1" bool "$2"; }
json_add_object() { _jshn_add "$1" object ""; _jshn_path="$_jshn_path/$1"; }
json_close_object() { _jshn_path="${_jshn_path%/*}"; }
json_load() {
	local doc
	doc="$(python3 -c 'import json, sys
d = json.loads(sys.argv[1])
assert isinstance(d, dict)
print(json.dumps(d))' "$1" 2>/dev/null)" || return 1
	_jshn_doc="$doc"
	_jshn_path=''
}
json_get_var() {
	local value
	value="$(python3 -c 'import json, sys
obj = json.loads(sys.argv[1])
for key in [k for k in sys.argv[2].split("/") if k]:
    obj = obj[key]
v = obj.get(sys.argv[3])
if v is None or isinstance(v, (dict, list)):
    sys.exit(1)
print(("1" if v else "0") if isinstance(v, bool) else v)' "$_jshn_doc" "$_jshn_path" "$2")" || { eval "$1=''"; return 1; }
	eval "$1=\$value"
}
json_dump() {
	python3 -c 'import json, sys
inner = json.dumps(json.loads(sys.argv[1]), separators=(", ", ": "))[1:-1]
print("{ " + inner + " }" if inner else "{ }")' "$_jshn_doc"
}

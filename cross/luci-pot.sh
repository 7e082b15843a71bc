#!/bin/sh
# Writes openwrt/luci-app-qpc/po/templates/qpc.pot: every string the LuCI
# page passes to _(), for translators (LuCI's build turns po/<lang>/qpc.po
# into the luci-i18n-qpc-<lang> packages). Needs xgettext (Debian gettext).
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
app="$root/openwrt/luci-app-qpc"
command -v xgettext >/dev/null || {
	echo "luci-pot: installing gettext (xgettext)"
	apt-get install -y -qq gettext >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gettext >/dev/null; }
}
mkdir -p "$app/po/templates"
{
	printf 'msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8"\n\n'
	xgettext --language=JavaScript --keyword=_ --from-code=UTF-8 --omit-header --no-location --sort-output -o - \
		"$app/htdocs/luci-static/resources/view/qpc.js" "$app/htdocs/luci-static/resources/qpc/qrcode.js"
} > "$app/po/templates/qpc.pot"
echo "luci-pot: $(grep -c '^msgid "..*"' "$app/po/templates/qpc.pot") strings in $app/po/templates/qpc.pot"

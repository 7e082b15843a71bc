#!/bin/sh
# Packs the cross-built binaries of one target into the .ipk files that the
# feed's openwrt/Makefile and openwrt/luci-app-qpc/Makefile would produce:
#   qpc_<version>-r<release>_<arch>.ipk         relay: qpc-server, init script,
#                                               UCI config, uci-defaults, sysctl
#   qpc-client_<version>-r<release>_<arch>.ipk  chat client: qpc
#   luci-app-qpc_<version>-r<release>_all.ipk   LuCI page (no binaries: one
#                                               package for every target)
# in the format OpenWrt's scripts/ipkg-build writes and opkg reads: a
# gzip'd tar of ./debian-binary, ./data.tar.gz and ./control.tar.gz.
#
# usage: cross/ipk.sh OPENWRT_ARCH BIN_DIR OUT_DIR
#
# Package metadata (release, license, section, user, descriptions) is read
# from openwrt/Makefile and the version from Cargo.toml, and the packaged
# files are init.d/qpc, uci/qpc and openwrt/files/*: the feed build and this
# one cannot drift apart.
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
arch="${1:?usage: cross/ipk.sh OPENWRT_ARCH BIN_DIR OUT_DIR}"
bin_dir="${2:?BIN_DIR missing}"
out_dir="${3:?OUT_DIR missing}"
feed="$root/openwrt/Makefile"

"$root/cross/targets.sh" triple "$arch" >/dev/null

# `NAME:=value` from the feed Makefile (first match).
feed_var() {
	sed -n "s/^[[:space:]]*$1:=[[:space:]]*//p" "$feed" | head -n 1
}

# The body of `define NAME ... endef` from the feed Makefile.
feed_define() {
	awk -v name="$1" '
		$0 == "define " name { inside = 1; next }
		inside && $0 == "endef" { exit }
		inside { print }
	' "$feed"
}

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$root/Cargo.toml")"
release="$(feed_var PKG_RELEASE)"
feed_version="$(feed_var PKG_VERSION)"
if [ "$feed_version" != "$version" ]; then
	echo "ipk: openwrt/Makefile PKG_VERSION ($feed_version) differs from Cargo.toml ($version)" >&2
	exit 1
fi
license="$(feed_var PKG_LICENSE)"
section="$(feed_var SECTION)"
userid="$(feed_var USERID)"
url="$(feed_var URL)"
maintainer="$(feed_var PKG_MAINTAINER)"
full_version="$version-r$release"

# Reproducible archives: every file owned by root, dated by the last commit.
epoch="${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}"
[ -n "$epoch" ] || epoch=0
tar_c() {
	tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name \
		--mtime="@$epoch" -cf - "$@"
}

# The scripts OpenWrt's package-pack.mk writes for every package: add the
# Require-User user, run uci-defaults, reload sysctl, enable and start the
# init script -- all in default_postinst, which does nothing live when
# IPKG_INSTROOT is set (image builds).
write_scripts() {
	cat > "$1/postinst" <<'EOF'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_postinst $0 $@
EOF
	cat > "$1/prerm" <<'EOF'
#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_prerm $0 $@
EOF
	chmod 0755 "$1/postinst" "$1/prerm"
}

# build_ipk NAME STAGING_DIR DESCRIPTION_DEFINE [Require-User]; the
# package's architecture is $pkg_arch (the target's unless set), its
# dependencies $depends, its feed source $source, its section $pkg_section
# and its description, when $description_text is set, that text.
build_ipk() {
	local name="$1" dir="$2" description="$3" user="${4:-}"
	local control="$dir/CONTROL" ipk tmp size
	local a="${pkg_arch:-$arch}"

	tmp="$dir.pack"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	(cd "$dir/data" && tar_c .) | gzip -9n > "$tmp/data.tar.gz"
	size="$(gzip -dc "$tmp/data.tar.gz" | wc -c | tr -d ' ')"

	{
		echo "Package: $name"
		echo "Version: $full_version"
		echo "Depends: ${depends:-libc}"
		echo "Source: ${source:-feeds/packages/net/qpc}"
		echo "SourceName: ${source_name:-qpc}"
		echo "License: $license"
		echo "Section: ${pkg_section:-$section}"
		[ -z "$user" ] || echo "Require-User: $user"
		echo "URL: $url"
		echo "Maintainer: $maintainer"
		echo "Architecture: $a"
		echo "Installed-Size: $size"
		printf 'Description: '
		if [ -n "${description_text:-}" ]; then
			echo " $description_text"
		else
			feed_define "$description" | sed -e 's,^[[:space:]]*, ,g'
		fi
	} > "$control/control"
	chmod 0644 "$control/control"
	[ -f "$control/postinst" ] || write_scripts "$control"

	(cd "$control" && tar_c .) | gzip -9n > "$tmp/control.tar.gz"
	echo "2.0" > "$tmp/debian-binary"
	ipk="$out_dir/${name}_${full_version}_${a}.ipk"
	(cd "$tmp" && tar_c ./debian-binary ./data.tar.gz ./control.tar.gz) | gzip -9n > "$ipk"
	rm -rf "$tmp"
	echo "ipk: $(basename "$ipk") ($(wc -c < "$ipk" | tr -d ' ') bytes)"
}

for bin in qpc-server qpc; do
	if [ ! -f "$bin_dir/$bin" ]; then
		echo "ipk: $bin_dir/$bin missing (make cross TARGET=$arch)" >&2
		exit 1
	fi
done

mkdir -p "$out_dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umask 022

# qpc: the relay.
d="$work/qpc/data"
mkdir -p "$d/usr/sbin" "$d/etc/init.d" "$d/etc/config" "$d/etc/uci-defaults" \
	"$d/etc/sysctl.d" "$d/lib/upgrade/keep.d" "$work/qpc/CONTROL"
install -m 0755 "$bin_dir/qpc-server" "$d/usr/sbin/qpc-server"
install -m 0755 "$root/init.d/qpc" "$d/etc/init.d/qpc"
# 0600 like the feed's INSTALL_CONF: it holds the store's key.
install -m 0600 "$root/uci/qpc" "$d/etc/config/qpc"
install -m 0755 "$root/openwrt/files/qpc.defaults" "$d/etc/uci-defaults/90-qpc"
install -m 0644 "$root/openwrt/files/qpc.sysctl" "$d/etc/sysctl.d/50-qpc.conf"
# What sysupgrade keeps (the init script rewrites it for another data_dir).
install -m 0644 "$root/openwrt/files/qpc.keep" "$d/lib/upgrade/keep.d/qpc"
feed_define Package/qpc/conffiles > "$work/qpc/CONTROL/conffiles"
chmod 0644 "$work/qpc/CONTROL/conffiles"
build_ipk qpc "$work/qpc" Package/qpc/description "$userid"

# qpc-client: the chat client, apart so that a relay-only router does not
# carry MLS.
d="$work/qpc-client/data"
mkdir -p "$d/usr/bin" "$work/qpc-client/CONTROL"
install -m 0755 "$bin_dir/qpc" "$d/usr/bin/qpc"
build_ipk qpc-client "$work/qpc-client" Package/qpc-client/description

# luci-app-qpc: the LuCI page, as luci.mk packs it (htdocs under /www,
# root/ as it is), with the postinst that makes LuCI and rpcd see it.
app="$root/openwrt/luci-app-qpc"
d="$work/luci-app-qpc/data"
mkdir -p "$d/www" "$work/luci-app-qpc/CONTROL"
(cd "$app/htdocs" && find . -type f) | while IFS= read -r f; do
	install -D -m 0644 "$app/htdocs/$f" "$d/www/$f"
done
(cd "$app/root" && find . -type f) | while IFS= read -r f; do
	mode=0644
	case "$f" in ./usr/libexec/rpcd/*) mode=0755 ;; esac
	install -D -m "$mode" "$app/root/$f" "$d/$f"
done
write_scripts "$work/luci-app-qpc/CONTROL"
cat >> "$work/luci-app-qpc/CONTROL/postinst" <<'EOF2'
[ -n "${IPKG_INSTROOT}" ] || { rm -f /tmp/luci-indexcache.*; rm -rf /tmp/luci-modulecache/; killall -HUP rpcd 2>/dev/null; }
exit 0
EOF2
luci_description="$(sed -n '/^LUCI_DESCRIPTION:=/,/[^\\]$/p' "$app/Makefile" | sed -e 's/^LUCI_DESCRIPTION:=//' -e 's/\\$//' -e 's/^[[:space:]]*//' | tr '\n' ' ' | tr -s ' ' | sed 's/ *$//')"
pkg_arch=all depends="libc, luci-base, rpcd, qpc" source=feeds/luci/applications/luci-app-qpc \
	source_name=luci-app-qpc pkg_section=luci \
	description_text="$luci_description" build_ipk luci-app-qpc "$work/luci-app-qpc" ""

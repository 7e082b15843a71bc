#!/bin/sh
# Every .ipk in out/ipk (or the directory given): unpacks with standard
# tools, carries the control fields and scripts opkg needs, installs files
# with the right modes, and holds binaries of its architecture.
# usage: tests/openwrt/test-ipk.sh [IPK_DIR]
. "$(dirname "$0")/lib.sh"

ipk_dir="${1:-$QPC_ROOT/out/ipk}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$QPC_ROOT/Cargo.toml")"
release="$(sed -n 's/^PKG_RELEASE:=//p' "$QPC_ROOT/openwrt/Makefile")"
MiB=1048576

field() {
	sed -n "s/^$1: //p" "$2"
}

# The ELF machine of a file from its header, for machines without `file`:
# class, byte order and e_machine.
elf_header() {
	od -A n -t x1 -N 20 "$1" | tr -d ' \n'
}

# mode_of LISTING PATH: the permission string of PATH in a `tar tv` listing.
mode_of() {
	awk -v p="$2" '$NF == p { print $1 }' "$1"
}

owner_of() {
	awk -v p="$2" '$NF == p { print $2 }' "$1"
}

found=0
for ipk in "$ipk_dir"/*.ipk; do
	[ -f "$ipk" ] || continue
	found=$((found + 1))
	base="$(basename "$ipk" .ipk)"
	name="${base%%_*}"
	rest="${base#"${name}_"}"
	pkg_version="${rest%%_*}"
	arch="${rest#"${pkg_version}_"}"
	echo "# $base.ipk"
	d="$work/$base"
	mkdir -p "$d"

	check_eq "$base: file name version is <version>-r<release>" "$version-r$release" "$pkg_version"
	if [ "$arch" = all ]; then
		elf=""
	elif ! elf="$("$QPC_ROOT/cross/targets.sh" elf "$arch" 2>/dev/null)"; then
		fail "$base: unknown architecture $arch"
		continue
	fi

	# opkg on OpenWrt reads a gzip'd tar; older ones an ar archive.
	if [ "$(head -c 7 "$ipk")" = "!<arch>" ]; then
		members="$(ar t "$ipk" | tr '\n' ' ')"
		(cd "$d" && ar x "$ipk")
	else
		check "$base: outer container is gzip" gzip -t "$ipk"
		members="$(tar -tzf "$ipk" | tr '\n' ' ')"
		tar -xzf "$ipk" -C "$d"
	fi
	check_eq "$base: outer members" "./debian-binary ./data.tar.gz ./control.tar.gz " "$members"
	check_eq "$base: debian-binary" "2.0" "$(cat "$d/debian-binary" 2>/dev/null)"

	mkdir -p "$d/control" "$d/data"
	check "$base: control.tar.gz unpacks" tar -xzf "$d/control.tar.gz" -C "$d/control"
	check "$base: data.tar.gz unpacks" tar -xzf "$d/data.tar.gz" -C "$d/data"
	tar -tvzf "$d/control.tar.gz" > "$d/control.list"
	tar -tvzf "$d/data.tar.gz" > "$d/data.list"

	c="$d/control/control"
	check_eq "$base: Package" "$name" "$(field Package "$c")"
	check_eq "$base: Version" "$version-r$release" "$(field Version "$c")"
	check_eq "$base: Architecture" "$arch" "$(field Architecture "$c")"
	case "$name" in
	luci-app-qpc) want_depends="libc, luci-base, rpcd, qpc" want_section=luci ;;
	*) want_depends=libc want_section=net ;;
	esac
	check_eq "$base: Depends" "$want_depends" "$(field Depends "$c")"
	check_eq "$base: License" "MIT" "$(field License "$c")"
	check_eq "$base: Section" "$want_section" "$(field Section "$c")"
	check "$base: Source" test -n "$(field Source "$c")"
	check "$base: Description" test -n "$(field Description "$c")"
	check_eq "$base: Installed-Size is the unpacked data size" \
		"$(gzip -dc "$d/data.tar.gz" | wc -c | tr -d ' ')" "$(field Installed-Size "$c")"
	check_eq "$base: control mode" "-rw-r--r--" "$(mode_of "$d/control.list" ./control)"

	for script in postinst prerm; do
		check_eq "$base: $script mode" "-rwxr-xr-x" "$(mode_of "$d/control.list" "./$script")"
		check "$base: $script parses" sh -n "$d/control/$script"
	done
	check "$base: postinst calls default_postinst" grep -q '^default_postinst \$0 \$@$' "$d/control/postinst"
	check "$base: postinst sources functions.sh from IPKG_INSTROOT" \
		grep -q '^\. \${IPKG_INSTROOT}/lib/functions.sh$' "$d/control/postinst"
	check "$base: prerm calls default_prerm" grep -q '^default_prerm \$0 \$@$' "$d/control/prerm"
	check "$base: every data file owned by root" \
		sh -c "awk '{ print \$2 }' '$d/data.list' | grep -qv '^0/0$' && exit 1 || exit 0"

	case "$name" in
	qpc)
		bin=usr/sbin/qpc-server
		check "$base: Require-User qpc=<uid>:qpc=<gid>" \
			sh -c "grep -Eq '^Require-User: qpc=[0-9]+:qpc=[0-9]+$' '$c'"
		check_eq "$base: conffiles" "/etc/config/qpc" "$(cat "$d/control/conffiles" 2>/dev/null)"
		check_eq "$base: qpc-server mode" "-rwxr-xr-x" "$(mode_of "$d/data.list" ./usr/sbin/qpc-server)"
		check_eq "$base: init script mode" "-rwxr-xr-x" "$(mode_of "$d/data.list" ./etc/init.d/qpc)"
		check_eq "$base: config mode (holds the key)" "-rw-------" "$(mode_of "$d/data.list" ./etc/config/qpc)"
		check_eq "$base: uci-defaults mode" "-rwxr-xr-x" "$(mode_of "$d/data.list" ./etc/uci-defaults/90-qpc)"
		check_eq "$base: sysctl mode" "-rw-r--r--" "$(mode_of "$d/data.list" ./etc/sysctl.d/50-qpc.conf)"
		check_eq "$base: sysupgrade keeps the store" "/etc/qpc/" "$(cat "$d/data/lib/upgrade/keep.d/qpc" 2>/dev/null)"
		check "$base: init script is init.d/qpc" cmp -s "$QPC_ROOT/init.d/qpc" "$d/data/etc/init.d/qpc"
		check "$base: config is uci/qpc" cmp -s "$QPC_ROOT/uci/qpc" "$d/data/etc/config/qpc"
		check "$base: init script uses procd" grep -q '^USE_PROCD=1$' "$d/data/etc/init.d/qpc"
		check "$base: shipped config leaves the relay off" \
			grep -q "^[[:space:]]*option enabled '0'" "$d/data/etc/config/qpc"
		check "$base: sysctl raises rmem_max and wmem_max" \
			sh -c "grep -q '^net.core.rmem_max=' '$d/data/etc/sysctl.d/50-qpc.conf' && grep -q '^net.core.wmem_max=' '$d/data/etc/sysctl.d/50-qpc.conf'"
		;;
	qpc-client)
		bin=usr/bin/qpc
		check "$base: no Require-User" sh -c "! grep -q '^Require-User' '$c'"
		check_eq "$base: qpc mode" "-rwxr-xr-x" "$(mode_of "$d/data.list" ./usr/bin/qpc)"
		check_eq "$base: only /usr/bin/qpc" "./usr/bin/qpc" \
			"$(awk '$1 !~ /^d/ { print $NF }' "$d/data.list" | tr '\n' ' ' | sed 's/ $//')"
		;;
	luci-app-qpc)
		check_eq "$base: architecture all (no binaries)" all "$arch"
		check "$base: no Require-User" sh -c "! grep -q '^Require-User' '$c'"
		app="$QPC_ROOT/openwrt/luci-app-qpc"
		for f in www/luci-static/resources/view/qpc.js www/luci-static/resources/qpc/qrcode.js \
			usr/share/luci/menu.d/luci-app-qpc.json usr/share/rpcd/acl.d/luci-app-qpc.json; do
			check_eq "$base: $f mode" "-rw-r--r--" "$(mode_of "$d/data.list" "./$f")"
		done
		check_eq "$base: rpcd backend mode" "-rwxr-xr-x" "$(mode_of "$d/data.list" ./usr/libexec/rpcd/qpc)"
		check "$base: view is the source's" cmp -s "$app/htdocs/luci-static/resources/view/qpc.js" \
			"$d/data/www/luci-static/resources/view/qpc.js"
		check "$base: rpcd backend is the source's" cmp -s "$app/root/usr/libexec/rpcd/qpc" "$d/data/usr/libexec/rpcd/qpc"
		check "$base: rpcd backend parses" sh -n "$d/data/usr/libexec/rpcd/qpc"
		check "$base: postinst makes LuCI and rpcd see the page" grep -q 'killall -HUP rpcd' "$d/control/postinst"
		check "$base: no ELF file" sh -c "! find '$d/data' -type f -exec head -c 4 {} \; | grep -q 'ELF'"
		continue
		;;
	*)
		fail "$base: unknown package $name"
		continue
		;;
	esac

	if [ -f "$d/data/$bin" ]; then
		if command -v file >/dev/null 2>&1; then
			desc="$(file -b "$d/data/$bin")"
			check "$base: $bin is $elf" sh -c "case '$desc' in '$elf'*) exit 0;; esac; exit 1"
			check "$base: $bin is static" sh -c "case '$desc' in *'statically linked'*) exit 0;; esac; exit 1"
		else
			skip "$base: file(1) not installed"
		fi
		# The ELF header alone: class, byte order, machine.
		hdr="$(elf_header "$d/data/$bin")"
		case "$arch" in
		mips_24kc) want="7f454c46010201......................0008" ;;
		mipsel_24kc) want="7f454c46010101......................0800" ;;
		arm_cortex-a7*) want="7f454c46010101......................2800" ;;
		aarch64*) want="7f454c46020101......................b700" ;;
		esac
		check "$base: ELF header of $bin matches $arch" sh -c "echo '$hdr' | grep -Eq '^$want'"
	else
		fail "$base: $bin missing"
	fi

	# Flash budgets of issue 4, for the weakest and most common router CPU.
	if [ "$arch" = mipsel_24kc ]; then
		size="$(wc -c < "$d/data/$bin" | tr -d ' ')"
		case "$name" in
		qpc)
			check "$base: qpc-server under 4 MiB stripped ($size bytes)" test "$size" -lt $((4 * MiB))
			ipk_size="$(wc -c < "$ipk" | tr -d ' ')"
			check "$base: .ipk under 2 MiB ($ipk_size bytes)" test "$ipk_size" -lt $((2 * MiB))
			;;
		esac
	fi
done

check "some .ipk found in $ipk_dir" test "$found" -gt 0
finish

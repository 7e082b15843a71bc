#!/bin/sh
# Stripped sizes of the cross-built binaries (bytes, MiB, xz -9 as a hint of
# what a squashfs image would hold) and of the .ipk files, per target.
# usage: cross/size.sh [OPENWRT_ARCH...]   (default: every target built)
root="$(cd "$(dirname "$0")/.." && pwd)"
[ "$#" -gt 0 ] || set -- $("$root/cross/targets.sh" list)

printf '%-26s %-11s %10s %8s %10s\n' target file bytes MiB xz
for arch in "$@"; do
	for f in "$root/out/cross/$arch/qpc-server" "$root/out/cross/$arch/qpc" \
		"$root/out/ipk/qpc_"*"_$arch.ipk" "$root/out/ipk/qpc-client_"*"_$arch.ipk"; do
		[ -f "$f" ] || continue
		bytes="$(wc -c < "$f" | tr -d ' ')"
		case "$f" in
		*.ipk) xz="-"; name="$(basename "$f" | sed 's/_.*//').ipk" ;;
		*) xz="$(xz -9 -T1 -c "$f" | wc -c | tr -d ' ')"; name="$(basename "$f")" ;;
		esac
		printf '%-26s %-11s %10s %8s %10s\n' "$arch" "$name" "$bytes" \
			"$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')" "$xz"
	done
done

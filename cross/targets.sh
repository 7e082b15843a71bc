#!/bin/sh
# The OpenWrt targets qpc is built for, and what each is called elsewhere.
# usage: targets.sh list
#        targets.sh triple|qemu|elf OPENWRT_ARCH
#   triple: the Rust target; qemu: the qemu-user binary that runs it;
#   elf: how `file` describes its executables.
set -eu

case "${1:-}" in
list)
	echo "mips_24kc mipsel_24kc arm_cortex-a7_neon-vfpv4 aarch64_cortex-a53"
	exit 0
	;;
triple|qemu|elf) ;;
*)
	echo "usage: $0 list | triple|qemu|elf OPENWRT_ARCH" >&2
	exit 2
	;;
esac

what="$1"
arch="${2:?OpenWrt architecture missing}"
case "$arch" in
mips_24kc) set -- mips-unknown-linux-musl qemu-mips "ELF 32-bit MSB executable, MIPS, MIPS32 rel2" ;;
mipsel_24kc) set -- mipsel-unknown-linux-musl qemu-mipsel "ELF 32-bit LSB executable, MIPS, MIPS32 rel2" ;;
arm_cortex-a7_neon-vfpv4) set -- armv7-unknown-linux-musleabihf qemu-arm "ELF 32-bit LSB executable, ARM, EABI5" ;;
aarch64_cortex-a53) set -- aarch64-unknown-linux-musl qemu-aarch64 "ELF 64-bit LSB executable, ARM aarch64" ;;
*)
	echo "unknown OpenWrt architecture '$arch' (one of: $("$0" list))" >&2
	exit 2
	;;
esac

case "$what" in
triple) echo "$1" ;;
qemu) echo "$2" ;;
elf) echo "$3" ;;
esac

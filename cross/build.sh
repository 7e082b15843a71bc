#!/bin/sh
# Cross-builds qpc-server and qpc for one OpenWrt target, static and sized
# for flash, and copies them to out/cross/<arch>/.
#
# usage: cross/build.sh OPENWRT_ARCH
#   mips_24kc | mipsel_24kc | arm_cortex-a7_neon-vfpv4 | aarch64_cortex-a53
#
# How (the why is in cross/SIZES.md):
#  - cargo-zigbuild: zig is the musl C compiler and the linker for all four.
#  - -Zbuild-std (RUSTC_BOOTSTRAP=1 on the installed toolchain, plus its
#    rust-src): rustup ships no std for mips/mipsel/armv7 musl, and a std
#    built with the release profile is smaller on aarch64 too.
#  - +crt-static with zig's own musl (link-self-contained=no): one file
#    that runs on any OpenWrt release of the architecture.
#  - No OpenSSL: SQLCipher runs on the relay's Rust crypto
#    (daemon/sqlcipher/README.md; the first word of cross/sqlite-flags).
# Environment knobs (for measurements): QPC_CROSS_PACKAGES (default
# "-p qpc-server -p qpc"), QPC_CROSS_STD_FEATURES (-Zbuild-std-features,
# default optimize_for_size, which also leaves out std's backtrace code),
# QPC_CROSS_PANIC, QPC_CROSS_RUSTFLAGS (extra), QPC_CROSS_TARGET_DIR,
# QPC_CROSS_SQLITE_FLAGS.
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
arch="${1:?usage: cross/build.sh OPENWRT_ARCH}"
triple="$("$root/cross/targets.sh" triple "$arch")"
target_dir="${QPC_CROSS_TARGET_DIR:-$root/target/cross}"
out="$root/out/cross/$arch"
packages="${QPC_CROSS_PACKAGES:--p qpc-server -p qpc}"
std_features="${QPC_CROSS_STD_FEATURES-optimize_for_size}"

triple_env="$(echo "$triple" | tr '[:lower:]-' '[:upper:]_')"
triple_cc="$(echo "$triple" | tr '-' '_')"

# No unwind tables anywhere: with panic=abort nothing unwinds, and they were
# a tenth of the binary (cross/SIZES.md). -fno-pic (after cc's own -fPIC, so
# it wins): SQLite and ring's C for a fixed address too, as the Rust code
# below (-179 KB on mipsel, cross/SIZES.md section 6).
cflags="-Os -fno-pic -fno-unwind-tables -fno-asynchronous-unwind-tables"
rustflags="-C target-feature=+crt-static -C link-self-contained=no -C force-unwind-tables=no"
# Code for a fixed address: the binary is a static, non-PIE executable
# anyway, and on MIPS position-independent code calls every function through
# the GOT and reloads $gp around each call. Non-PIC Rust code is 10 % smaller
# (-336 KB on mipsel, cross/SIZES.md section 6).
rustflags="$rustflags -C relocation-model=static"
# Panics abort without a message (QPC_CROSS_PANIC=immediate-abort, the
# default: 209 KB smaller, which keeps the relay under its 4 MiB budget; a
# crash then leaves only procd's respawn line in logread). QPC_CROSS_PANIC=abort
# keeps the panic message, for debugging a crash on a router.
if [ "${QPC_CROSS_PANIC:-immediate-abort}" = immediate-abort ]; then
	rustflags="$rustflags -Zunstable-options -Cpanic=immediate-abort"
fi
# SQLite as the store uses it (cross/sqlite-flags, read by libsqlite3-sys
# from LIBSQLITE3_FLAGS). Its first word, -DSQLCIPHER_CRYPTO_CC, puts
# SQLCipher on the relay's Rust crypto (daemon/sqlcipher/README.md; the
# include and link directories come from .cargo/config.toml). libsqlite3-sys turns on FTS3/5, R*Tree, JSON,
# STAT4, extension loading and more, which a queue of opaque blobs never
# needs (-515 KB on mipsel, cross/SIZES.md); nor does it use the date and
# time functions, the authorizer, tracing or declared column types (the
# last three lines of the file: -29 KB, section 6). A query using one of them
# fails on the router build alone, which the qemu walkthrough runs.
# QPC_CROSS_SQLITE_FLAGS replaces the list (keep -DSQLCIPHER_CRYPTO_CC).
sqlite_flags="$(cat "$root/cross/sqlite-flags")"

# pip puts cargo-zigbuild beside the python that installed it.
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
export PATH
export RUSTC_BOOTSTRAP=1
LIBSQLITE3_FLAGS="$(echo ${QPC_CROSS_SQLITE_FLAGS-$sqlite_flags})"
export LIBSQLITE3_FLAGS
export "CFLAGS_$triple_cc=$cflags"
export "CARGO_TARGET_${triple_env}_RUSTFLAGS=$rustflags ${QPC_CROSS_RUSTFLAGS:-}"

echo "cross: building $arch ($triple)"
start="$(date +%s)"
cd "$root"
# shellcheck disable=SC2086 # $packages is a list of words
cargo zigbuild --release --target "$triple" --target-dir "$target_dir" \
	-Zbuild-std=std,panic_abort \
	${std_features:+-Zbuild-std-features=$std_features} \
	$packages

mkdir -p "$out"
for bin in qpc-server qpc; do
	if [ -f "$target_dir/$triple/release/$bin" ]; then
		# Cargo's strip leaves MIPS's .pdr (procedure descriptors, 460 KB
		# in qpc-server) behind; llvm-strip removes it.
		llvm-strip --strip-all -o "$out/$bin" "$target_dir/$triple/release/$bin"
	fi
done
echo "cross: $arch built in $(( $(date +%s) - start ))s -> out/cross/$arch/"

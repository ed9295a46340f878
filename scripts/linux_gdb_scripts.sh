#!/bin/sh
# Fetch Linux's own gdb helpers (scripts/gdb: lx-version, lx-dmesg, lx-ps,
# $lx_current(), ...) for the kernel the Linux end-to-end tests boot.
# Debian's -dbg package ships the vmlinux but not these scripts, so they come
# from the matching linux-source package (only scripts/gdb is extracted), and
# their constants.py is generated as the kernel's scripts/gdb/linux/Makefile
# does it: the C preprocessor over constants.py.in, against the matching
# linux-headers packages (the flavour's generated headers and config, and the
# common headers), then everything up to the end-of-headers marker cut off.
# That step needs only headers and gcc: linux-kbuild (fixdep, modpost, ...)
# is for building modules and plays no part in it.
#
# The version comes from the vmlinux's own banner ("... Debian 6.1.192-3 ..."),
# so the scripts always match the kernel.  Nothing is installed; a finished
# tree is reused.  Prints the path of vmlinux-gdb.py (give it to gdb with
# `source`); progress goes to stderr.
#
#   scripts/linux_gdb_scripts.sh [VMLINUX]   ~150 MB download, ~20 s extract
#
# Without VMLINUX it asks scripts/linux_kernel.sh.  LINUX_GDB_CACHE overrides
# the cache directory (.cache/linux-gdb/).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LINUX_GDB_CACHE:-$root/.cache/linux-gdb}
vmlinux=${1:-$("$root/scripts/linux_kernel.sh")}

say() { echo "linux_gdb_scripts: $*" >&2; }

# "Linux version 6.1.0-57-cloud-amd64 (...) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)"
banner=$(grep -a -m 1 -o 'Linux version [^ ]* (.*Debian [^ ]*' "$vmlinux" | head -n 1)
release=$(echo "$banner" | sed -n 's/^Linux version \([^ ]*\) .*/\1/p')
version=$(echo "$banner" | sed -n 's/.* Debian \([^ ]*\)$/\1/p')
[ -n "$release" ] && [ -n "$version" ] ||
	{ say "no Debian kernel banner in $vmlinux"; exit 1; }

tree=$cache/$release-$version
if [ -f "$tree/scripts/gdb/linux/constants.py" ]; then
	echo "$tree/vmlinux-gdb.py"
	exit 0
fi

series=${release%%.0-*}                 # 6.1
common_pkg=${release%-*-*}-common           # 6.1.0-57-common (flavour cloud-amd64 cut)
pkgs="linux-source-$series=$version linux-headers-$release=$version linux-headers-$common_pkg=$version"

work=$cache/.work-$$
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs" "$work/root"
say "downloading $pkgs (~150 MB)"
# shellcheck disable=SC2086 # one word per package
if ! (cd "$work/debs" && apt-get download $pkgs >&2); then
	say "apt-get download failed: running apt-get update and trying once more"
	apt-get update >&2
	# shellcheck disable=SC2086
	(cd "$work/debs" && apt-get download $pkgs >&2) || {
		say "Debian $version is not in the archive (any more): a newer kernel replaced it;"
		say "remove .cache/linux/ (or \$LINUX_CACHE) for scripts/linux_kernel.sh to fetch the current one"
		exit 1
	}
fi

say "extracting scripts/gdb from linux-source-$series"
dpkg-deb --fsys-tarfile "$work"/debs/linux-source-*.deb |
	tar -xO --wildcards './usr/src/linux-source-*.tar.xz' |
	tar -xJ -C "$work" --wildcards 'linux-source-*/scripts/gdb/*'
for deb in "$work"/debs/linux-headers-*.deb; do dpkg-deb -x "$deb" "$work/root"; done

src=$(echo "$work"/linux-source-*)
flavour=$work/root/usr/src/linux-headers-$release
common=$work/root/usr/src/linux-headers-$common_pkg
gen=$src/scripts/gdb/linux/constants.py
say "generating constants.py with $(gcc -dumpfullversion 2>/dev/null || echo gcc)"
# The kernel's Makefile: $(CPP) -E -x c -P $(c_flags) constants.py.in, where c_flags carry
# NOSTDINC_FLAGS, LINUXINCLUDE (the include paths and the three -include files) and -D__KERNEL__.
gcc -E -x c -P -nostdinc -isystem "$(gcc -print-file-name=include)" \
	-I"$common/arch/x86/include" -I"$flavour/arch/x86/include/generated" \
	-I"$common/include" -I"$flavour/include" \
	-I"$common/arch/x86/include/uapi" -I"$flavour/arch/x86/include/generated/uapi" \
	-I"$common/include/uapi" -I"$flavour/include/generated/uapi" \
	-include "$common/include/linux/compiler-version.h" \
	-include "$common/include/linux/kconfig.h" \
	-include "$common/include/linux/compiler_types.h" \
	-D__KERNEL__ -m64 -DKBUILD_MODNAME='"constants"' \
	"$gen.in" >"$gen"
sed -i '1,/<!-- end-c-headers -->/d;' "$gen"
grep -q '^LX_CONFIG_DEBUG_INFO_REDUCED = ' "$gen" || { say "constants.py came out wrong"; exit 1; }

# The kernel build tree's layout: vmlinux-gdb.py beside scripts/gdb/ (it adds that to sys.path).
rm -rf "$tree"
mkdir -p "$tree/scripts"
mv "$src/scripts/gdb" "$tree/scripts/gdb"
cp "$tree/scripts/gdb/vmlinux-gdb.py" "$tree/vmlinux-gdb.py"
say "ready: $tree"
echo "$tree/vmlinux-gdb.py"

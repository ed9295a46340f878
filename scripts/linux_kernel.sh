#!/bin/sh
# Fetch the stock Linux kernel the Linux end-to-end tests boot: the vmlinux
# (ELF with DWARF and a PVH entry note) from Debian's cloud kernel -dbg
# package.  Only that one file is extracted, into .cache/linux/ (git-ignored);
# nothing is installed, /boot is never touched.  A cached vmlinux is reused.
# Prints the vmlinux's absolute path on stdout (progress goes to stderr).
#
#   scripts/linux_kernel.sh            ~280 MB download, ~20 s extract
#
# LINUX_CACHE overrides the cache directory.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LINUX_CACHE:-$root/.cache/linux}
boot=$cache/usr/lib/debug/boot
meta=linux-image-cloud-amd64-dbg

say() { echo "linux_kernel: $*" >&2; }

cached() {
	ls "$boot"/vmlinux-* 2>/dev/null | sort -V | tail -n 1
}

vmlinux=$(cached)
if [ -n "$vmlinux" ]; then
	echo "$vmlinux"
	exit 0
fi

# The versioned package the meta-package points at today, e.g.
# linux-image-6.1.0-56-cloud-amd64-dbg.
versioned() {
	apt-cache depends "$meta" 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64-dbg\)$/\1/p' | head -n 1
}

pkg=$(versioned)
if [ -z "$pkg" ]; then
	say "apt-cache does not know $meta: running apt-get update"
	apt-get update >&2
	pkg=$(versioned)
fi
[ -n "$pkg" ] || { say "cannot resolve $meta to a kernel package"; exit 1; }

mkdir -p "$cache"
deb=$(ls "$cache"/"${pkg}"_*.deb 2>/dev/null | tail -n 1 || true)
if [ -z "$deb" ]; then
	say "downloading $pkg (~280 MB)"
	(cd "$cache" && apt-get download "$pkg" >&2)
	deb=$(ls "$cache"/"${pkg}"_*.deb | tail -n 1)
fi

say "extracting the vmlinux from $(basename "$deb")"
dpkg-deb --fsys-tarfile "$deb" |
	tar -x -C "$cache" --wildcards './usr/lib/debug/boot/vmlinux-*'
vmlinux=$(cached)
[ -n "$vmlinux" ] || { say "no vmlinux in $deb"; exit 1; }
echo "$vmlinux"

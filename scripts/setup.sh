#!/bin/sh
# Set up a Debian 12 machine for rapido-mpio: the host tools the image is cut from, QEMU,
# and the Python environment in .venv. Safe to run again. --test adds what the tests need.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="make python3 python3-venv qemu-system-x86 busybox-static multipath-tools kpartx
dmsetup xfsprogs udev sg3-utils sg3-utils-udev fio kmod cpio zstd git"
for arg in "$@"; do
	case $arg in
	# what the test suite needs besides: Debian's kernel source and what builds it, and a
	# browser that screenshots the HTML report
	--test) PACKAGES="$PACKAGES shellcheck chromium linux-source-6.1 xz-utils build-essential bc flex bison libelf-dev libssl-dev" ;;
	# the benchmark's reference point
	--bench) PACKAGES="$PACKAGES dracut-core" ;;
	*) echo "usage: $0 [--test] [--bench]" >&2; exit 2 ;;
	esac
done

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
missing=$(for p in $PACKAGES; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
	grep -q 'install ok installed' || echo "$p"; done)
if [ -n "$missing" ]; then
	# shellcheck disable=SC2086 # one word per package
	echo "setup: installing Debian packages:" $missing
	$SUDO apt-get update -q
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

if [ ! -x .venv/bin/rapido-mpio ] || [ ! -f .venv/.installed ] || [ -n "$(find pyproject.toml -newer .venv/.installed)" ]; then
	echo "setup: creating the Python environment in .venv"
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[test]'
	touch .venv/.installed
fi
# bytecode for our own modules too (an editable install has none): a warm cut is ~0.1 s,
# and compiling them on every run would be a quarter of it
.venv/bin/python -m compileall -q rapido_mpio >/dev/null
echo "setup: done"

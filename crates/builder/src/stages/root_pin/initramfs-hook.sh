#!/bin/sh
# ceremony-os: what the root pin (live-boot component 9999-ceremony-os-root) needs in the initrd
# besides busybox: coreutils' sha256sum.
PREREQ=""
prereqs ()
{
	echo "${PREREQ}"
}
case "${1}" in
	prereqs)
		prereqs
		exit 0
		;;
esac
. /usr/share/initramfs-tools/hook-functions
copy_exec /usr/bin/sha256sum /usr/bin/sha256sum

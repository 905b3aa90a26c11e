#!/bin/sh
# ceremony-os: the root file system is the one this initrd records, and nothing else.
#
# live-boot sources every /lib/live/boot/????-* file in name order, so this one (9999, last)
# replaces live-boot's Verify_checksums, which Live() calls with the medium it found (the first
# disc, stick or partition holding /live/*.squashfs, removable devices first) before it mounts
# any image. The medium may offer one image, /live/filesystem.squashfs, beside the kernel and
# initrd. It is copied into memory, the copy's SHA-256 compared with the digest the build
# appended to this initrd (/conf/ceremony-os-root.conf), and only that copy is handed back to
# live-boot (livefs_root, a variable of Live()) to mount: a device cannot change what it served
# after the check, and nothing else on it is stacked. Anything else stops the boot, the reason on
# the screen and the serial console; no shell, no fallback to another device.

CEREMONY_OS_PIN=/conf/ceremony-os-root.conf
CEREMONY_OS_COPY=/run/live/ceremony-os-root
CEREMONY_OS_RECORD=/run/ceremony-os-root

ceremony_os_say ()
{
	for _tty in /dev/console /dev/tty0
	do
		if [ -c "${_tty}" ]
		then
			printf '%s\n' "$*" > "${_tty}" 2> /dev/null
		fi
	done
	printf '<5>%s\n' "$*" > /dev/kmsg 2> /dev/null
	return 0
}

ceremony_os_refuse ()
{
	ceremony_os_say "ceremony-os: REFUSED the root file system on ${1}: ${2}"
	ceremony_os_say "ceremony-os: this disc's root file system has SHA-256 ${ROOT_SHA256:-(not recorded)}"
	ceremony_os_say "ceremony-os: remove every other disc and USB stick, then start again. The boot stops here."
	while true
	do
		sleep 3600
	done
}

Verify_checksums ()
{
	_medium="${1}"
	_device="$(awk -v m="${_medium}" '$2 == m { print $1; exit }' /proc/mounts)"
	_offered="${_device:-${_medium}}"
	ROOT_SHA256=""
	if [ -r "${CEREMONY_OS_PIN}" ]
	then
		. "${CEREMONY_OS_PIN}"
	fi
	case "${ROOT_SHA256}" in
		*[!0-9a-f]*|"")
			ceremony_os_refuse "${_offered}" "this initrd records no root file system digest (${CEREMONY_OS_PIN})"
			;;
	esac
	if [ "${#ROOT_SHA256}" -ne 64 ]
	then
		ceremony_os_refuse "${_offered}" "the digest in ${CEREMONY_OS_PIN} is not a SHA-256"
	fi
	if [ -z "${_device}" ] || [ ! -d "${_medium}" ]
	then
		# live-boot also takes a device that is itself a squashfs (no /live/): never ours.
		ceremony_os_refuse "${_offered}" "it is not a disc or partition with /${LIVE_MEDIA_PATH}/"
	fi

	_images="${_medium}/${LIVE_MEDIA_PATH}"
	for _entry in "${_images}"/* "${_images}"/.*
	do
		if [ ! -e "${_entry}" ] && [ ! -L "${_entry}" ]
		then
			continue
		fi
		case "${_entry##*/}" in
			.|..|filesystem.squashfs|vmlinuz|initrd.img)
				;;
			*)
				ceremony_os_refuse "${_offered}" "/${LIVE_MEDIA_PATH}/${_entry##*/} is not on this disc (its /${LIVE_MEDIA_PATH}/ holds filesystem.squashfs, vmlinuz and initrd.img)"
				;;
		esac
	done
	_source="${_images}/filesystem.squashfs"
	if [ ! -f "${_source}" ]
	then
		ceremony_os_refuse "${_offered}" "/${LIVE_MEDIA_PATH}/filesystem.squashfs is missing"
	fi

	_bytes="$(stat -c %s "${_source}")"
	mkdir -p "${CEREMONY_OS_COPY}"
	if ! mount -t tmpfs -o "size=$((_bytes + 1048576)),mode=0700,nodev,nosuid,noexec" tmpfs "${CEREMONY_OS_COPY}"
	then
		ceremony_os_refuse "${_offered}" "no memory for a copy of its ${_bytes}-byte root file system"
	fi
	mkdir "${CEREMONY_OS_COPY}/${LIVE_MEDIA_PATH}"
	_copy="${CEREMONY_OS_COPY}/${LIVE_MEDIA_PATH}/filesystem.squashfs"
	ceremony_os_say "ceremony-os: checking the root file system on ${_device} (${_bytes} bytes, copied into memory)"
	if ! cp "${_source}" "${_copy}"
	then
		ceremony_os_refuse "${_offered}" "its /${LIVE_MEDIA_PATH}/filesystem.squashfs could not be read whole"
	fi
	_actual="$(/usr/bin/sha256sum "${_copy}")"
	_actual="${_actual%% *}"
	if [ "${_actual}" != "${ROOT_SHA256}" ]
	then
		umount "${CEREMONY_OS_COPY}"
		ceremony_os_refuse "${_offered}" "its /${LIVE_MEDIA_PATH}/filesystem.squashfs has SHA-256 ${_actual}, not this disc's"
	fi
	mount -o remount,ro "${CEREMONY_OS_COPY}"
	printf 'device=%s\nimage=/%s/filesystem.squashfs\nbytes=%s\nsha256=%s\n' \
		"${_device}" "${LIVE_MEDIA_PATH}" "${_bytes}" "${_actual}" > "${CEREMONY_OS_RECORD}"
	ceremony_os_say "ceremony-os: root file system from ${_device}: SHA-256 ${_actual}, as this disc's initrd records"
	livefs_root="${CEREMONY_OS_COPY}"
}

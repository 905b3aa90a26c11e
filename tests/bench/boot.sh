#!/usr/bin/env bash
# `make bench` (part 2): seconds from `ceremony-os boot` starting to the root shell on ttyS0 under
# TCG, for BIOS and UEFI, CD and USB. Reported, never asserted. Target (issue "Boot"): <= 30 s; a
# plain Debian live ISO of similar content took about 55 s here. With BENCH_TABLE=FILE, each figure
# is also appended to FILE for `table.py`.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Usage: boot.sh [ISO [PATH...]], PATH one of bios-cd bios-usb uefi-cd uefi-usb (default: all four).
iso=${1:-out/ceremony-os-0.1.0-amd64.iso}
shift || true
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(bios-cd bios-usb uefi-cd uefi-usb)
[ -f "$iso" ] || { echo "no ISO at $iso: run make iso first" >&2; exit 1; }
work=$(mktemp -d)
pid=
# The boot runs in its own session (no Ctrl-C reaches it): end it with the script.
trap '[ -z "$pid" ] || kill -- -"$pid" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# The product's own QEMU command line (`ceremony-os boot --accel tcg`), so the figures are what a
# user and the boot tests get under emulation. It runs in its own process group: QEMU goes with it
# when the shell is reached.
ceremony_os=${CEREMONY_OS:-target/release/ceremony-os}
[ -x "$ceremony_os" ] || { echo "no $ceremony_os: run make build first" >&2; exit 1; }

boot() { # name, ceremony-os boot options...
  local name=$1; shift
  local log=$work/$name.log start end
  start=$(date +%s.%N)
  setsid "$ceremony_os" boot --headless --accel tcg "$@" -- "$iso" </dev/null >"$log" 2>"$work/$name.err" &
  pid=$!
  until grep -q 'root@ceremony' "$log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "$name: ceremony-os boot exited before the shell" >&2; cat "$work/$name.err" >&2; return 1; fi
    sleep 0.2
  done
  end=$(date +%s.%N)
  kill -- -"$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
  python3 -c "print(f'{\"$name\":<10} {$end - $start:6.1f} s to the root shell')"
  if [ -n "${BENCH_TABLE:-}" ]; then
    python3 -c "print(f'boot to the root shell, $name\t{$end - $start:.1f}\ts\t\t\t<= 30 s')" >>"$BENCH_TABLE"
  fi
}

for path in "${paths[@]}"; do
  case $path in
    bios-cd) boot bios-cd ;;
    bios-usb) boot bios-usb --usb ;;
    uefi-cd) boot uefi-cd --uefi ;;
    uefi-usb) boot uefi-usb --uefi --usb ;;
    *) echo "unknown boot path $path (bios-cd, bios-usb, uefi-cd, uefi-usb)" >&2; exit 2 ;;
  esac
done

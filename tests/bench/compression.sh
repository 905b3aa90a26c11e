#!/usr/bin/env bash
# `make bench` (part 3): the squashfs compression table. For each candidate, mksquashfs seconds and
# size on the built image's normalized root (the `normalize` stage output in the store), the ISO
# size with that squashfs put in place of the built one, and seconds from QEMU start to the root
# shell under TCG (BIOS, CD; mean of BOOTS runs, default 2). Reported, never asserted.
# ONLY=REGEX measures only the candidates whose name matches.
# Usage: compression.sh BUILD_REPORT.json ISO    (the report is `ceremony-os build --json`'s)
set -euo pipefail
cd "$(dirname "$0")/../.."
report=$1; iso=$2; boots=${BOOTS:-2}
root=$(/usr/bin/python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
key = [s for s in r['stages'] if s['name'] == 'normalize'][0]['key']
print(f\"{r['stages_dir']}/normalize/{key}/out/rootfs\" if r['stages_dir'] else '')" "$report")
[ -n "$root" ] || { echo "$report names no stage cache (a --no-cache build keeps none)" >&2; exit 1; }
[ -d "$root" ] || { echo "no normalized root at $root" >&2; exit 1; }
work=$(mktemp -d /var/tmp/ceremony-os-compression.XXXXXX)
trap 'rm -rf "$work"' EXIT

candidates=(
  "xz 1M|-comp xz -Xbcj x86 -b 1M"
  "xz 256K|-comp xz -Xbcj x86 -b 256K"
  "zstd 19 1M|-comp zstd -Xcompression-level 19 -b 1M"
  "zstd 19 256K|-comp zstd -Xcompression-level 19 -b 256K"
  "zstd 15 128K|-comp zstd -Xcompression-level 15 -b 128K"
  "zstd 9 128K|-comp zstd -Xcompression-level 9 -b 128K"
  "zstd 3 128K|-comp zstd -Xcompression-level 3 -b 128K"
  "lz4 128K|-comp lz4 -b 128K"
)
printf '%-14s %10s %12s %9s %10s\n' candidate "build s" "squashfs MB" "ISO MB" "boot s"
for c in "${candidates[@]}"; do
  name=${c%%|*}; options=${c#*|}
  [[ $name =~ ${ONLY:-.} ]] || continue
  sq=$work/fs.squashfs; out=$work/variant.iso
  rm -f "$sq" "$out"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  SOURCE_DATE_EPOCH=0 mksquashfs "$root" "$sq" -noappend -no-xattrs -no-progress -quiet $options >/dev/null
  end=$(date +%s.%N)
  xorriso -indev "$iso" -outdev "$out" -boot_image any replay -map "$sq" /live/filesystem.squashfs -commit >/dev/null 2>&1
  total=0
  for _ in $(seq "$boots"); do
    t=$(tests/bench/boot.sh "$out" bios-cd | awk '{print $2}')
    total=$(/usr/bin/python3 -c "print($total + $t)")
  done
  /usr/bin/python3 -c "print(f'%-14s %10.1f %12.1f %9.1f %10.1f' % ('$name', $end - $start, $(stat -c %s "$sq") / 1e6, $(stat -c %s "$out") / 1e6, $total / $boots))"
done

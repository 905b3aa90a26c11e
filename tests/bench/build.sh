#!/usr/bin/env bash
# `make bench`: build benchmarks, reported and never asserted.
#
# ceremony-os cold build (empty stage cache, inputs already fetched), warm no-change rebuild,
# one-overlay-file rebuild and a witness's `verify` (a no-cache rebuild compared with the published
# manifest: what a witness waits for), seconds per stage and ISO size; beside the plain shell
# pipeline of the same package set (mmdebstrap -> mksquashfs xz -> xorriso) run on this machine in
# this run.
# Targets (issue "Build"): cold <= 0.5 x plain, one overlay file <= 0.2 x cold, warm no-change
# <= 5 s. With BENCH_TABLE=FILE, the figures are also appended to FILE for `table.py`.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
bin=$root/target/release/ceremony-os
work=$(mktemp -d /var/tmp/ceremony-os-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export CEREMONY_OS_STORE=$work/store

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }

echo "fetching inputs (not timed)"
"$bin" fetch image/ceremony.toml >/dev/null 2>&1
cp -r image "$work/image"
sed -i "s|^tools_workspace = .*|tools_workspace = \"$root\"|" "$work/image/ceremony.toml"
def=$work/image/ceremony.toml

run_build() { # name
  local start end
  start=$(now)
  "$bin" build "$def" --output "$work/out-$1" --json >"$work/$1.json" 2>"$work/$1.log"
  end=$(now)
  secs "$start" "$end"
}

cold=$(run_build cold)
warm=$(run_build warm)
echo "bench: $(date -u +%s)" >>"$work/image/overlay/etc/ceremony/README"
overlay=$(run_build overlay)
start=$(now)
"$bin" verify "$def" --expect "$work/out-overlay/ceremony-os.manifest.json" --json >"$work/verify.json" 2>"$work/verify.log"
verify=$(secs "$start" "$(now)")

echo "plain pipeline: mmdebstrap -> mksquashfs xz -> xorriso (same package set, same local repo)"
repo=$(python3 -c "import json;r=json.load(open('$work/cold.json'));print([s for s in r['stages'] if s['name']=='repo'][0]['key'])")
packages=$(python3 -c "
import tomllib;l=tomllib.load(open('$def'.replace('.toml','.lock'),'rb'))
print(','.join(p['name'] for p in l['image']['packages']))")
plain=$work/plain
mkdir -p "$plain/iso/live"
t0=$(now)
unshare --net -- mmdebstrap --quiet --variant=essential --mode=root --include="$packages" bookworm "$plain/root" \
  "deb [trusted=yes] copy://$CEREMONY_OS_STORE/stages/repo/$repo/out ./" 2>"$work/plain-mmdebstrap.log"
t1=$(now)
mksquashfs "$plain/root" "$plain/iso/live/filesystem.squashfs" -comp xz -noappend -no-progress >/dev/null
t2=$(now)
cp "$plain"/root/boot/vmlinuz-* "$plain/iso/live/vmlinuz"
cp "$plain"/root/boot/initrd.img-* "$plain/iso/live/initrd.img"
xorriso -as mkisofs -o "$plain/plain.iso" -r -J "$plain/iso" 2>/dev/null
t3=$(now)
plain_total=$(secs "$t0" "$t3")

python3 - "$work" "$cold" "$warm" "$overlay" "$verify" "$plain_total" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$(secs "$t2" "$t3")" "$plain/plain.iso" <<'PY'
import json, os, sys
work, cold, warm, overlay, verify, plain, p_mm, p_sq, p_iso, plain_iso = sys.argv[1:]
runs = {n: json.load(open(f"{work}/{n}.json")) for n in ("cold", "warm", "overlay")}
print()
print(f"{'stage':<11}{'cold s':>9}{'warm s':>9}{'1 file s':>10}")
for i, st in enumerate(runs["cold"]["stages"]):
    row = [runs[n]["stages"][i] for n in ("cold", "warm", "overlay")]
    fmt = lambda s: f"{s['seconds']:.1f}" + ("*" if s["cached"] else " ")
    print(f"{st['name']:<11}{fmt(row[0]):>9}{fmt(row[1]):>9}{fmt(row[2]):>10}")
print("(* = cached)")
print()
size = runs["cold"]["iso_size"]
plain_size = os.path.getsize(plain_iso)
cold, warm, overlay, verify, plain = map(float, (cold, warm, overlay, verify, plain))
print(f"cold build            {cold:8.1f} s   ({cold/plain:.2f} x plain; target <= 0.5)")
print(f"warm no-change        {warm:8.1f} s   (target <= 5)")
print(f"one overlay file      {overlay:8.1f} s   ({overlay/cold:.2f} x cold; target <= 0.2)")
print(f"witness verify        {verify:8.1f} s   (no-cache rebuild + compare; {verify/plain:.2f} x plain)")
print(f"plain pipeline        {plain:8.1f} s   (mmdebstrap {p_mm}, mksquashfs xz {p_sq}, xorriso {p_iso})")
print(f"ISO                   {size/1e6:8.1f} MB  (plain pipeline {plain_size/1e6:.1f} MB)")
table = os.environ.get("BENCH_TABLE")
if table:
    # figure, value, unit, ratio (or empty), what the ratio is to, target
    rows = [
        ("plain pipeline (mmdebstrap, mksquashfs xz, xorriso)", plain, "s", "", "", ""),
        ("cold build", cold, "s", cold / plain, "plain", "<= 0.5 x plain"),
        ("one overlay file changed", overlay, "s", overlay / cold, "cold", "<= 0.2 x cold"),
        ("warm build, nothing changed", warm, "s", "", "", "<= 5 s"),
        ("witness verify (no-cache rebuild + compare)", verify, "s", verify / plain, "plain", "reported"),
        ("ISO size", size / 1e6, "MB", size / plain_size, "plain", "reported"),
    ]
    with open(table, "a") as f:
        for row in rows:
            f.write("\t".join(str(c) for c in row) + "\n")
PY

#!/usr/bin/env bash
# `make bench`: a witness's time from a bare machine, reported and never asserted.
#
# From a fresh clone of this commit to a verdict, with every input of the image from the release
# inputs bundle (`ceremony-os vendor`, written here first, not timed) and an empty store and
# cargo home: the clone, `cargo build --release` of ceremony-os (its crates from crates.io, as a
# witness's cargo fetches them), then `verify --offline --vendor BUNDLE` against the published
# manifest (MANIFEST, from the build `make bench` just made). Setup (apt, the Rust toolchain) is
# excluded. With BENCH_TABLE=FILE, the figures are appended to FILE for `table.py`, the total as
# a ratio to the cold build found there.
# Usage: witness.sh MANIFEST
set -euo pipefail
manifest=$(realpath "$1")
cd "$(dirname "$0")/../.."
root=$(pwd)
work=$(mktemp -d /var/tmp/ceremony-os-witness.XXXXXX)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }

echo "writing the release inputs bundle (not timed)"
target/release/ceremony-os vendor "$work/bundle" image/ceremony.toml >/dev/null 2>"$work/vendor.log"

t0=$(now)
git clone --quiet "$root" "$work/clone"
t1=$(now)
(cd "$work/clone" && CARGO_HOME=$work/cargo-home cargo build --release --locked -p ceremony-os >"$work/cargo.log" 2>&1)
t2=$(now)
(cd "$work/clone" && CARGO_HOME=$work/empty-cargo-home target/release/ceremony-os --store "$work/store" \
  verify image/ceremony.toml --expect "$manifest" --offline --vendor "$work/bundle" >"$work/verify.out" 2>"$work/verify.log") \
  || { tail -20 "$work/verify.log"; exit 1; }
t3=$(now)
clone=$(secs "$t0" "$t1"); cargo=$(secs "$t1" "$t2"); verify=$(secs "$t2" "$t3"); total=$(secs "$t0" "$t3")
grep -E "^(MATCH|MISMATCH)" "$work/verify.log" || true

python3 - "$clone" "$cargo" "$verify" "$total" "$work/verify.log" <<'PY'
import os, re, sys
clone, cargo, verify, total = map(float, sys.argv[1:5])
log = open(sys.argv[5]).read()
stages = re.findall(r"^==> (\S+)\s+built\s+([0-9.]+)s", log, re.M)
print()
print(f"witness, fresh clone to verdict {total:8.1f} s")
print(f"  git clone                    {clone:8.1f} s")
print(f"  cargo build --release        {cargo:8.1f} s   (crates from crates.io, empty cargo home)")
print(f"  verify from the bundle       {verify:8.1f} s   (empty store; .debs, archive states and crates from the bundle)")
print("    " + ", ".join(f"{n} {s}" for n, s in stages))
table = os.environ.get("BENCH_TABLE")
if table:
    cold = next((float(l.split("\t")[1]) for l in open(table) if l.startswith("cold build\t")), None)
    rows = [
        ("witness: cargo build --release (fresh clone)", cargo, "s", "", "", "reported"),
        ("witness: verify from a bundle (empty store)", verify, "s", verify / cold if cold else "", "cold" if cold else "", "reported"),
        ("witness: fresh clone to verdict", total, "s", total / cold if cold else "", "cold" if cold else "", "reported"),
    ]
    with open(table, "a") as f:
        for row in rows:
            f.write("\t".join(str(c) for c in row) + "\n")
PY

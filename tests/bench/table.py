#!/usr/bin/env python3
"""`make bench` (last part): the one table of every figure the benchmarks appended to FILE.

Each line of FILE: figure, value, unit, ratio (or empty), what the ratio is to, target; tab
separated. Prints the figures with their targets and ratios; never fails on a figure (benchmarks
are not tests), only on a malformed file.
Usage: table.py FILE
"""
import sys


def main(path):
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            cells = line.rstrip("\n").split("\t")
            if len(cells) != 6:
                sys.exit(f"{path}:{number}: expected 6 tab-separated fields, got {len(cells)}")
            figure, value, unit, ratio, to, target = cells
            value = f"{float(value):.1f} {unit}"
            ratio = f"{float(ratio):.2f} x {to}" if ratio else ""
            rows.append((figure, value, ratio, target))
    header = ("figure", "value", "ratio", "target")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    line = lambda r: "  ".join(c.ljust(w) if i in (0, 3) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    print(line(header).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r).rstrip())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

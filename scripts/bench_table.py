#!/usr/bin/env python3
"""Condense criterion's console output into `name | median time | median throughput` rows.

Usage: cargo bench ... 2>&1 | python3 scripts/bench_table.py
"""
import re
import sys

name = None
rows = []
lines = sys.stdin.read().splitlines()
for i, line in enumerate(lines):
    m = re.match(r"^(\S[^:]*?)\s+time:\s+\[(\S+ \S+) (\S+ \S+) (\S+ \S+)\]", line)
    if m:
        rows.append([m.group(1), m.group(3), ""])
        continue
    m = re.match(r"^\s+time:\s+\[(\S+ \S+) (\S+ \S+) (\S+ \S+)\]", line)
    if m and i > 0:
        rows.append([lines[i - 1].strip(), m.group(2), ""])
        continue
    m = re.match(r"^\s+thrpt:\s+\[(\S+ \S+) (\S+ \S+) (\S+ \S+)\]", line)
    if m and rows:
        rows[-1][2] = m.group(2)
for r in rows:
    print(" | ".join(r))

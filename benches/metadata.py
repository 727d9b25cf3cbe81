#!/usr/bin/env python3
"""Generation-metadata scan speed: `iw-lab inspect --json` against `exiftool -j -r`.

The tree holds the generation-metadata fixture set (tests/fixtures/genmeta, 84 files of every
generator and container) copied `--copies` times (default 20). Each tool reads the whole tree,
output to /dev/null; one untimed warm-up each (so both read from the page cache), then
`--repeats` timed runs alternating which goes first; medians are reported as files per second
and as a ratio (target: iw-lab ≥ 10× exiftool's files/s).

Bytes read: iw-lab's own count (`--stats`, the bytes its reader pulled from each file), checked
independently by tracing the read syscalls with strace (`read`/`pread64` return values summed
over the process and its threads), against the files' total size.

  python benches/metadata.py [--copies 20] [--repeats 5]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import common

GENMETA = common.REPO / "tests" / "fixtures" / "genmeta"


def make_tree(root, copies):
    files = [p for p in sorted(GENMETA.rglob("*")) if p.is_file() and p.suffix.lower() in
             (".png", ".jpg", ".jpeg", ".webp")]
    n = 0
    total = 0
    for c in range(copies):
        for p in files:
            dest = root / f"copy{c:02d}" / p.relative_to(GENMETA)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
            n += 1
            total += p.stat().st_size
    return n, total


def traced_bytes(cmd, cwd):
    """Sum of bytes returned by read/pread64 over the process tree (strace)."""
    if not shutil.which("strace"):
        return None
    with tempfile.NamedTemporaryFile(suffix=".trace") as trace:
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=read,pread64", "-o", trace.name] + cmd,
                       cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total = 0
        pat = re.compile(r"^\d*\s*p?read(?:64)?\((\d+),.*=\s*(\d+)")
        for line in open(trace.name, errors="replace"):
            m = pat.search(line)
            if m:
                total += int(m.group(2))
        return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    exe = common.binary()
    if not shutil.which("exiftool"):
        raise SystemExit("exiftool not found (Debian: libimage-exiftool-perl)")
    with tempfile.TemporaryDirectory(prefix="iw-bench-meta-") as tmp:
        tmp = Path(tmp)
        tree = tmp / "tree"
        n, total = make_tree(tree, a.copies)
        ours = [exe, "inspect", "--json", str(tree)]
        theirs = ["exiftool", "-j", "-r", "-q", "-q", str(tree)]
        # Warm-ups (page cache, binaries), and a check that both see every file.
        _, p = common.run(ours, cwd=tmp)
        got = sum(1 for line in p.stdout.splitlines() if line.strip())
        assert got == n, f"iw-lab printed {got} of {n} files"
        _, p = common.run(theirs, cwd=tmp)
        assert len(json.loads(p.stdout)) == n
        t_ours, t_theirs = [], []
        for i in range(a.repeats):
            pair = [(ours, t_ours), (theirs, t_theirs)]
            if i % 2:
                pair.reverse()
            for cmd, acc in pair:
                wall, _ = common.run(cmd, cwd=tmp)
                acc.append(round(wall, 3))
        _, p = common.run(ours + ["--stats"], cwd=tmp)
        m = re.search(r"read (\d+) of (\d+) bytes", p.stderr)
        self_reported = int(m.group(1)) if m else None
        traced = traced_bytes(ours, tmp)
        fps_ours = n / common.median(t_ours)
        fps_theirs = n / common.median(t_theirs)
        print(json.dumps({
            "benchmark": "metadata",
            "files": n,
            "total_bytes": total,
            "iw_lab_s": t_ours,
            "exiftool_s": t_theirs,
            "iw_lab_files_per_s": round(fps_ours, 1),
            "exiftool_files_per_s": round(fps_theirs, 1),
            "ratio": round(fps_ours / fps_theirs, 2),
            "target_ratio_min": 10,
            "bytes_read_self_reported": self_reported,
            "bytes_read_traced": traced,
            "read_fraction_traced": round(traced / total, 4) if traced else None,
            "cpus": os.cpu_count(),
        }, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What the leaderboard's interval (F1 micro, 200 bootstrap resamples over images) costs
`iw-lab metrics`: the current build against a build without it (--baseline), side by side on
the same synthetic run, interleaved, median of --repeats fresh processes each.

The run is benches/analyses.py's: 10,000 tiny PNGs with kohya ground truth and two sidecar
taggers scoring 50 tags each (1,000,000 output rows). Scored at the experiment's 2 thresholds
and at 19 (`--thresholds 0.05,...,0.95`: 38 leaderboard rows, 38 resamplings).

  git worktree add /tmp/before <commit before the interval> && (cd /tmp/before && cargo build --release)
  cp $CARGO_TARGET_DIR/release/iw-lab /tmp/iw-lab-before    # then rebuild this checkout
  python benches/leaderboard_interval.py --baseline /tmp/iw-lab-before [--images 10000] [--repeats 5]
"""
import argparse
import json
import tempfile
from pathlib import Path

import analyses
import common

NINETEEN = ",".join(f"{t / 100:.2f}" for t in range(5, 100, 5))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, help="an iw-lab binary without the interval")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    exe = common.binary()
    with tempfile.TemporaryDirectory(prefix="iw-bench-") as tmp:
        tmp = Path(tmp)
        analyses.make(tmp / "data", a.images, 50)
        proj = tmp / "proj"
        analyses.write_project(proj, tmp / "data")
        _, p = common.run([exe, "run", "syn", "--quiet", "--json"], cwd=proj)
        run_id = json.loads(p.stdout)["run_id"]
        walls = {}
        for _ in range(a.repeats):
            for name, binary in (("with_interval", exe), ("baseline", a.baseline)):
                for label, extra in (("2_thresholds", []), ("19_thresholds", ["--thresholds", NINETEEN])):
                    wall, p = common.run([binary, "metrics", run_id, "--json", *extra], cwd=proj)
                    doc = json.loads(p.stdout)
                    if name == "with_interval":
                        assert all("f1_micro_ci" in v for v in doc["variants"]), "no interval"
                    walls.setdefault(f"{name}/{label}", []).append(wall)
        med = {k: common.median(v) for k, v in walls.items()}
        print(json.dumps({
            "benchmark": "leaderboard_interval",
            "images": a.images,
            "wall_s": {k: [round(x, 3) for x in v] for k, v in walls.items()},
            "median_s": {k: round(v, 3) for k, v in med.items()},
            "ratio_with_over_baseline": {
                label: round(med[f"with_interval/{label}"] / med[f"baseline/{label}"], 3)
                for label in ("2_thresholds", "19_thresholds")
            },
        }, indent=1))


if __name__ == "__main__":
    main()

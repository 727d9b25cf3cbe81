#!/usr/bin/env python3
"""Metrics, threshold sweep and co-occurrence over a synthetic run with 1,000,000 output rows:
target under 2 s.

The run is made by iw-lab itself from sidecar predictions (no model, no hand-written Parquet):
10,000 tiny PNGs, each with a kohya .txt ground truth (15 tags drawn Zipf-like from a
2,000-tag vocabulary) and two sidecar taggers scoring 50 tags per image (its ground-truth tags
with probability 0.8, plus frequent confusions) — 10,000 × 2 × 50 = 1,000,000 output rows.
Then, side by side on the same run (median of --repeats, each a fresh process reading the
Parquet tables in place):

  iw-lab metrics RUN --json                       # the baseline: scoring at 2 thresholds
  iw-lab analyze RUN --json                       # the target: metrics at the experiment's
                                                  # thresholds (post-processing `threshold t`
                                                  # entries), sweeps (all/general/character,
                                                  # exact curves + grid), 11 post-processing
                                                  # policies, tag statistics, co-occurrence
  iw-lab analyze RUN --json --bootstrap 200       # the same plus 200 bootstrap resamples

  python benches/analyses.py [--images 10000] [--tags 50] [--repeats 3]
"""
import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import common


def make(root, n_images, n_tags, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    vocab = [f"tag {i:04d}" for i in range(2000)]
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    images = root / "images"
    images.mkdir(parents=True)
    preds = [root / "preds_a", root / "preds_b"]
    for p in preds:
        p.mkdir()
    for i in range(n_images):
        Image.new("RGB", (2, 2), (i % 256, (i // 256) % 256, (i // 65536) % 256)).save(images / f"i{i:05d}.png")
        truth = rng.choice(len(vocab), size=15, replace=False, p=zipf)
        (images / f"i{i:05d}.txt").write_text(", ".join(vocab[k] for k in truth))
        for v, p in enumerate(preds):
            kept = [k for k in truth if rng.random() < 0.8]
            others = [k for k in rng.choice(len(vocab), size=3 * n_tags, replace=True, p=zipf) if k not in truth]
            tags = list(dict.fromkeys(kept + others))[:n_tags]
            scores = {vocab[k]: float(np.float32(rng.beta(5, 2) if k in truth else rng.beta(1.5 + v, 5)))
                      for k in tags}
            (p / f"i{i:05d}.json").write_text(json.dumps({"tags": scores}))


def write_project(proj, data):
    """A project whose experiment `syn` scores the two sidecar variants made by `make`."""
    for d in ("datasets", "models", "experiments"):
        (proj / d).mkdir(parents=True)
    (proj / "datasets" / "syn.yaml").write_text(f"path: {data / 'images'}\nground_truth:\n  - source: txt\n")
    for v in ("a", "b"):
        (proj / "models" / f"side-{v}.yaml").write_text(
            f"kind: sidecar\npath: {data / f'preds_{v}'}\nscore_floor: 0.0\n")
    (proj / "experiments" / "syn.yaml").write_text(
        "dataset: syn\nvariants:\n  - model: side-a\n    thresholds: [0.35, 0.5]\n"
        "  - model: side-b\n    thresholds: [0.35, 0.5]\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--tags", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    exe = common.binary()
    with tempfile.TemporaryDirectory(prefix="iw-bench-") as tmp:
        tmp = Path(tmp)
        make(tmp / "data", a.images, a.tags)
        proj = tmp / "proj"
        write_project(proj, tmp / "data")
        run_s, p = common.run([exe, "run", "syn", "--quiet", "--json"], cwd=proj)
        run_id = json.loads(p.stdout)["run_id"]
        rows = json.loads(common.run([exe, "query", run_id, "--json", "SELECT count(*) AS n FROM outputs"], cwd=proj)[1].stdout)["n"]
        timings = {}
        for name, cmd in (
            ("metrics", [exe, "metrics", run_id, "--json"]),
            ("analyze", [exe, "analyze", run_id, "--json"]),
            ("analyze_bootstrap_200", [exe, "analyze", run_id, "--json", "--bootstrap", "200"]),
        ):
            walls = []
            for _ in range(a.repeats):
                wall, p = common.run(cmd, cwd=proj)
                json.loads(p.stdout)  # one valid JSON document
                walls.append(wall)
            timings[name] = walls
        med = {k: common.median(v) for k, v in timings.items()}
        print(json.dumps({
            "benchmark": "analyses",
            "images": a.images,
            "variants": 2,
            "output_rows": rows,
            "run_s": round(run_s, 2),
            "wall_s": {k: [round(x, 3) for x in v] for k, v in timings.items()},
            "median_s": {k: round(v, 3) for k, v in med.items()},
            # `analyze` scores every variant at its experiment thresholds (the `threshold t`
            # post-processing entries equal `iw-lab metrics`), sweeps and counts co-occurrence:
            # the target's "metrics, sweep and co-occurrence" in one command.
            "target_s": 2.0,
            "target_over_analyze": round(2.0 / med["analyze"], 2),
            "analyze_over_metrics": round(med["analyze"] / med["metrics"], 2),
        }, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Warm rerun of a finished 1,000-image × 6-variant experiment: zero inferences, under 2 s wall.

Six variants = six different tagger-shaped ONNX models (three WD-style NHWC, three
JoyTag-style NCHW, 224 px inputs, 38–42 labels each, floor 0.01), over 1,000 distinct small PNGs.
The cold run (every cell inferred) is the side-by-side baseline; the warm rerun must copy all
6,000 cells from it (scan with the hash index, key lookup across runs, Parquet copy, scoring).

  python benches/warm_rerun.py [--images 1000] [--repeats 3]
"""
import argparse
import json
import tempfile
from pathlib import Path

import common


def six_models(tmp):
    """Six small taggers (three WD-shaped, three JoyTag-shaped, 224 px) as model files."""
    models = {}
    for i in range(6):
        preset = "wd" if i < 3 else "joytag"
        d = common.tagger_model(tmp / f"m{i}", preset=preset, size=224, seed=i + 1)
        labels = d / ("selected_tags.csv" if preset == "wd" else "top_tags.txt")
        models[f"m{i}"] = f"kind: onnx-tagger\nsource: {d / 'model.onnx'}\npreset: {preset}\nlabels: {labels}\n"
    return models


def write_project(proj, images, models):
    """A project whose experiment `six` runs the six models at two thresholds each."""
    common.write_project(proj, images, models)
    variants = "".join(f"  - model: m{i}\n    thresholds: [0.35, 0.5]\n" for i in range(6))
    (proj / "experiments" / "six.yaml").write_text(f"dataset: bench\nvariants:\n{variants}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    exe = common.binary()
    with tempfile.TemporaryDirectory(prefix="iw-bench-") as tmp:
        tmp = Path(tmp)
        common.noise_images(tmp / "images", a.images)
        write_project(tmp / "proj", tmp / "images", six_models(tmp))
        cold, p = common.run([exe, "run", "six", "--quiet", "--json"], cwd=tmp / "proj")
        doc = json.loads(p.stdout)
        assert doc["inferences"] == 6 * a.images, doc
        warm = []
        for _ in range(a.repeats):
            wall, p = common.run([exe, "run", "six", "--quiet", "--json"], cwd=tmp / "proj")
            d = json.loads(p.stdout)
            assert d["inferences"] == 0 and d["cache_hits"] == 6 * a.images, d
            warm.append(wall)
        rows = common.run([exe, "query", "latest", "--json", "SELECT count(*) AS n FROM outputs"], cwd=tmp / "proj")[1].stdout
        print(json.dumps({
            "benchmark": "warm_rerun",
            "images": a.images,
            "variants": 6,
            "cells": 6 * a.images,
            "output_rows": json.loads(rows)["n"],
            "cold_run_s": round(cold, 2),
            "warm_rerun_s": [round(x, 3) for x in warm],
            "warm_median_s": round(common.median(warm), 3),
            "warm_inferences": 0,
            "speedup_vs_cold": round(cold / common.median(warm), 1),
            "target_s": 2.0,
        }, indent=1))


if __name__ == "__main__":
    main()

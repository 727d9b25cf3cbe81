#!/usr/bin/env python3
"""Peak memory of a 10,000-image run stays under 500 MB: nothing holds all outputs in memory.

The same one-variant experiment (WD-shaped 448 px model, floor 0.01) runs over 1,000 and over
10,000 distinct small PNGs; peak RSS (the process and its children) is measured for each in a
fresh process. Flat memory means the ratio stays near 1 while the outputs grow tenfold.

  python benches/memory.py [--images 10000]
"""
import argparse
import json
import tempfile
from pathlib import Path

import common


def measure(exe, tmp, n, model):
    root = tmp / f"p{n}"
    common.noise_images(root / "images", n, side=96, seed=n)
    common.write_project(root / "proj", root / "images", {
        "wd": f"kind: onnx-tagger\nsource: {model / 'model.onnx'}\npreset: wd\nlabels: {model / 'selected_tags.csv'}\n",
    })
    (root / "proj" / "experiments" / "mem.yaml").write_text("dataset: bench\nvariants:\n  - model: wd\n")
    wall, out, rss = common.peak_rss_mb([exe, "run", "mem", "--quiet", "--json"], cwd=root / "proj")
    doc = json.loads(out)
    assert doc["inferences"] == n, doc
    rows = common.run([exe, "query", "latest", "--json", "SELECT count(*) AS n FROM outputs"], cwd=root / "proj")[1].stdout
    return {"images": n, "output_rows": json.loads(rows)["n"], "wall_s": round(wall, 1), "peak_rss_mb": round(rss, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10000)
    a = ap.parse_args()
    exe = common.binary()
    with tempfile.TemporaryDirectory(prefix="iw-bench-") as tmp:
        tmp = Path(tmp)
        model = common.tagger_model(tmp / "model")
        small = measure(exe, tmp, a.images // 10, model)
        big = measure(exe, tmp, a.images, model)
        print(json.dumps({
            "benchmark": "memory",
            "runs": [small, big],
            "peak_ratio_big_vs_small": round(big["peak_rss_mb"] / small["peak_rss_mb"], 2),
            "target_mb": 500,
        }, indent=1))


if __name__ == "__main__":
    main()

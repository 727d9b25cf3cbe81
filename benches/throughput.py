#!/usr/bin/env python3
"""Tagging throughput: decode → preprocess → infer → store, on 200 fixture-sized images with a
WD-shaped model (448×448 NHWC, made by tests/reference/make_tagger_model.py).

Baseline: the Python reference pipeline (tests/reference/tagger_reference.py's own functions,
one image at a time, as its main() does) in a loop, storing every probability to JSON.
iw-lab: `iw-lab run` of a one-variant experiment with --no-cache (every image inferred; scan,
hashing, Parquet writes and scoring included), as a subprocess.

Both run alternately, `--repeats` times each, in this one process; medians are compared.
Target (issue #2): iw-lab ≥ 2× the baseline's images per second.

  python benches/throughput.py [--images 200] [--repeats 3]
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import common

sys.path.insert(0, str(common.REFERENCE))
import onnxruntime as ort  # noqa: E402
import tagger_reference as ref  # noqa: E402


def python_pipeline(model, tags, paths, out_json):
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    size = inp.shape[1]
    labels = ref.read_labels(str(tags))
    results = []
    for p in paths:
        x = ref.preprocess(str(p), "wd", size)
        y = sess.run(None, {inp.name: x})[0][0]
        results.append({"path": str(p), "probs": {n: float(v) for (n, _), v in zip(labels, y)}})
    with open(out_json, "w") as f:
        json.dump(results, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    exe = common.binary()
    with tempfile.TemporaryDirectory(prefix="iw-bench-") as tmp:
        tmp = Path(tmp)
        paths = common.make_images(tmp / "images", a.images)
        model = common.tagger_model(tmp / "model")
        common.write_project(tmp / "proj", tmp / "images", {
            "wd": f"kind: onnx-tagger\nsource: {model / 'model.onnx'}\npreset: wd\nlabels: {model / 'selected_tags.csv'}\n",
        })
        (tmp / "proj" / "experiments" / "bench.yaml").write_text("dataset: bench\nvariants:\n  - model: wd\n")
        # Warm both (library downloads, page cache), then measure alternately.
        common.run([exe, "run", "bench", "--quiet", "--no-cache"], cwd=tmp / "proj")
        python_pipeline(model / "model.onnx", model / "selected_tags.csv", paths[:5], tmp / "warm.json")
        py, ours = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            python_pipeline(model / "model.onnx", model / "selected_tags.csv", paths, tmp / "py.json")
            py.append(time.perf_counter() - t)
            wall, p = common.run([exe, "run", "bench", "--quiet", "--no-cache", "--json"], cwd=tmp / "proj")
            doc = json.loads(p.stdout)
            assert doc["inferences"] == a.images, doc
            ours.append(wall)
        py_ips = a.images / common.median(py)
        our_ips = a.images / common.median(ours)
        print(json.dumps({
            "benchmark": "throughput",
            "images": a.images,
            "python_reference_s": [round(x, 3) for x in py],
            "iw_lab_s": [round(x, 3) for x in ours],
            "python_images_per_s": round(py_ips, 2),
            "iw_lab_images_per_s": round(our_ips, 2),
            "ratio": round(our_ips / py_ips, 2),
            "target_ratio": 2.0,
        }, indent=1))


if __name__ == "__main__":
    main()

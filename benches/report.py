#!/usr/bin/env python3
"""The HTML report for 10,000 images × 6 variants: generated in under 10 s, first render in
Chromium under 2 s.

The run is made by iw-lab itself from sidecar predictions: 10,000 photo-like 512×512 JPEGs
(gradients, shapes and noise, ~40 KB each), each with a kohya .txt ground truth (15 tags drawn
Zipf-like from a 2,000-tag vocabulary) and six sidecar taggers scoring 40 tags per image
(ground-truth tags kept with a variant-dependent probability, plus frequent confusions).
Then, side by side in one run of this script:

  iw-lab report RUN --out r.html --thumbs embed   # cold: thumbnail cache empty (every image
                                                  # decoded and downscaled)
  iw-lab report RUN --out r.html --thumbs embed   # warm: thumbnails from .iw-lab/thumbs
  iw-lab report RUN --out f.html                  # warm, the default (--thumbs auto: beside
                                                  # the page in f_files/ above 2,000 images)
  iw-lab analyze RUN --json --bootstrap 200       # baseline: the analyses alone, no page

and the page's first render in headless Chromium: the page's own mark `data-render-ms`
(performance.now() when the first page of image cards is built and laid out, counted from
navigation start: HTML parse, charts, JSON parse, grid render), median of --repeats fresh
browser processes; the time until embedded thumbnails are decoded (`data-thumbs-ms`) and the
browser process's wall time are reported beside it.

  python benches/report.py [--images 10000] [--variants 6] [--repeats 3]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import common


def make(root, n_images, n_variants, n_tags=40, seed=0):
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    vocab = [f"tag {i:04d}" for i in range(2000)]
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    images = root / "images"
    images.mkdir(parents=True)
    preds = [root / f"preds_{v}" for v in range(n_variants)]
    for p in preds:
        p.mkdir()
    # 32 textured backgrounds (gradient + noise), then per image a background, six random
    # ellipses and a marker pixel: every file distinct, photo-like in size and entropy
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float32) / 512.0
    bases = []
    for _ in range(32):
        c0, c1 = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
        t = (xx * rng.random() + yy * rng.random())[..., None] / 2.0
        noise = rng.normal(0, 12, size=(512, 512, 1)).astype(np.float32)
        bases.append(Image.fromarray((c0 * (1 - t) + c1 * t + noise).clip(0, 255).astype(np.uint8), "RGB"))
    for i in range(n_images):
        img = bases[i % len(bases)].copy()
        d = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = rng.integers(0, 450, size=2)
            w, h = rng.integers(20, 200, size=2)
            d.ellipse([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        img.putpixel((0, 0), (i % 256, (i // 256) % 256, 7))
        img.save(images / f"i{i:05d}.jpg", quality=85)
        truth = rng.choice(len(vocab), size=15, replace=False, p=zipf)
        (images / f"i{i:05d}.txt").write_text(", ".join(vocab[k] for k in truth))
        for v, p in enumerate(preds):
            keep = 0.6 + 0.05 * v
            kept = [k for k in truth if rng.random() < keep]
            others = [k for k in rng.choice(len(vocab), size=3 * n_tags, replace=True, p=zipf) if k not in truth]
            tags = list(dict.fromkeys(kept + others))[:n_tags]
            scores = {vocab[k]: round(float(rng.beta(5, 2) if k in truth else rng.beta(1.2 + 0.2 * v, 5)), 4)
                      for k in tags}
            (p / f"i{i:05d}.json").write_text(json.dumps({"tags": scores}))


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def first_render(browser, page):
    with tempfile.TemporaryDirectory(prefix="iw-chrome-") as profile:
        t = time.perf_counter()
        p = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--dump-dom", f"file://{page}"],
            capture_output=True, text=True)
        wall = time.perf_counter() - t
    head = p.stdout[:2000]
    m = re.search(r'data-render-ms="([0-9.]+)"', head)
    th = re.search(r'data-thumbs-ms="([0-9.]+)"', head)
    if not m or 'data-errors="' in head:
        raise SystemExit(f"page did not render cleanly: {head[:500]}\n{p.stderr[-2000:]}")
    cards = p.stdout.count('<div class="card"')
    return float(m.group(1)) / 1000.0, (float(th.group(1)) / 1000.0 if th else None), wall, cards


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--variants", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    exe = common.binary()
    browser = chromium()
    with tempfile.TemporaryDirectory(prefix="iw-bench-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        make(tmp / "data", a.images, a.variants)
        make_s = time.perf_counter() - t
        proj = tmp / "proj"
        for d in ("datasets", "models", "experiments"):
            (proj / d).mkdir(parents=True)
        (proj / "datasets" / "syn.yaml").write_text(f"path: {tmp / 'data' / 'images'}\nground_truth:\n  - source: txt\n")
        exp = "dataset: syn\nvariants:\n"
        for v in range(a.variants):
            (proj / "models" / f"side-{v}.yaml").write_text(
                f"kind: sidecar\npath: {tmp / 'data' / f'preds_{v}'}\nscore_floor: 0.0\n")
            exp += f"  - model: side-{v}\n    thresholds: [0.35, 0.5]\n"
        (proj / "experiments" / "syn.yaml").write_text(exp)
        run_s, p = common.run([exe, "run", "syn", "--quiet", "--json"], cwd=proj)
        run_id = json.loads(p.stdout)["run_id"]
        rows = json.loads(common.run([exe, "query", run_id, "--json", "SELECT count(*) AS n FROM outputs"], cwd=proj)[1].stdout)["n"]

        page = proj / "reports" / "r.html"
        cold_s, p = common.run([exe, "report", run_id, "--out", str(page), "--thumbs", "embed", "--json"], cwd=proj)
        cold = json.loads(p.stdout)
        warm, folder, analyze = [], [], []
        for _ in range(a.repeats):
            w, p = common.run([exe, "report", run_id, "--out", str(page), "--thumbs", "embed", "--json"], cwd=proj)
            warm.append(w)
            summary = json.loads(p.stdout)
            w, _ = common.run([exe, "report", run_id, "--out", str(proj / "reports" / "f.html"), "--json"], cwd=proj)
            folder.append(w)
            w, p = common.run([exe, "analyze", run_id, "--json", "--bootstrap", "200"], cwd=proj)
            json.loads(p.stdout)
            analyze.append(w)
        renders = []
        if browser:
            for _ in range(a.repeats):
                renders.append(first_render(browser, page))
            for _ in range(a.repeats):
                renders.append(first_render(browser, proj / "reports" / "f.html") + ("folder",))
        embed_r = [r for r in renders if len(r) == 4]
        folder_r = [r for r in renders if len(r) == 5]
        out = {
            "benchmark": "report",
            "images": a.images,
            "variants": a.variants,
            "output_rows": rows,
            "make_s": round(make_s, 1),
            "run_s": round(run_s, 2),
            "page_mb": round(summary["bytes"] / 1e6, 1),
            "page_folder_mb": round((proj / "reports" / "f.html").stat().st_size / 1e6, 1),
            "generate_cold_s": round(cold_s, 2),
            "generate_cold_inner_s": round(cold["seconds"], 2),
            "generate_warm_s": [round(x, 2) for x in warm],
            "generate_warm_folder_s": [round(x, 2) for x in folder],
            "analyze_bootstrap_200_s": [round(x, 2) for x in analyze],
            "target_generate_s": 10.0,
            "target_over_warm": round(10.0 / common.median(warm), 2),
            "target_over_warm_folder": round(10.0 / common.median(folder), 2),
            "steps_warm_embed_s": summary["steps"],
            "target_over_cold": round(10.0 / cold_s, 2),
            "warm_over_analyze": round(common.median(warm) / common.median(analyze), 2),
        }
        if embed_r:
            out.update({
                "render_s": [round(r[0], 3) for r in embed_r],
                "thumbs_ready_s": [round(r[1], 3) if r[1] else None for r in embed_r],
                "browser_wall_s": [round(r[2], 2) for r in embed_r],
                "cards": embed_r[0][3],
                "render_folder_s": [round(r[0], 3) for r in folder_r],
                "target_render_s": 2.0,
                "target_over_render": round(2.0 / common.median([r[0] for r in embed_r]), 2),
                "target_over_render_folder": round(2.0 / common.median([r[0] for r in folder_r]), 2),
                "browser": subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip(),
            })
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

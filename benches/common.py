"""Shared helpers for the benchmark scripts: a temporary iw-lab project, synthetic image sets
made from the decoding fixtures, and timing.

Every benchmark runs its baseline and iw-lab side by side in one process and prints the ratio.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "images"
REFERENCE = REPO / "tests" / "reference"


def binary():
    """The release binary (built by the caller: `cargo build --release`)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    exe = target / "release" / "iw-lab"
    if not exe.exists():
        sys.exit(f"{exe} not found: run `cargo build --release` first")
    return str(exe)


def make_images(out_dir, n, seed=0):
    """Writes n distinct images derived from the fixture photos (same sizes and formats:
    PNG, JPEG, WebP), so every file has its own content hash."""
    from PIL import Image, ImageOps

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bases = sorted(p for p in FIXTURES.iterdir() if p.suffix.lower() in {".png", ".jpg", ".webp"})
    paths = []
    for i in range(n):
        base = bases[(i + seed) % len(bases)]
        img = ImageOps.exif_transpose(Image.open(base))
        if img.mode not in ("RGB", "RGBA", "L"):
            img = img.convert("RGB")
        k = i // len(bases)
        if k % 2:
            img = ImageOps.mirror(img)
        img = img.rotate(90 * ((k // 2) % 4), expand=True)
        # One pixel marks the copy, so no two files share bytes.
        px = img.load()
        px[0, 0] = (i % 256) if img.mode == "L" else tuple([(i * 7) % 256] * len(img.getbands()))
        ext = base.suffix.lower()
        path = out_dir / f"img_{i:06d}{ext}"
        if ext == ".jpg":
            img.convert("RGB").save(path, quality=90)
        elif ext == ".webp":
            img.save(path, quality=90)
        else:
            img.save(path)
        paths.append(path)
    return paths


def write_project(root, images_dir, models):
    """A project with one dataset (no ground truth) and the given models {name: yaml}."""
    root = Path(root)
    for d in ("datasets", "models", "experiments"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "datasets" / "bench.yaml").write_text(f"path: {images_dir}\n")
    for name, text in models.items():
        (root / "models" / f"{name}.yaml").write_text(text)


def run(cmd, cwd, env=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode not in (0, 1):
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return wall, p


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def tagger_model(out_dir, preset="wd", size=448, seed=1):
    subprocess.run(
        [sys.executable, str(REFERENCE / "make_tagger_model.py"), "--preset", preset, "--out", str(out_dir),
         "--size", str(size), "--seed", str(seed)],
        check=True,
    )
    return Path(out_dir)


def noise_images(out_dir, n, side=64, seed=0):
    """Writes n distinct small noise PNGs (fast to make and decode)."""
    import numpy as np
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        p = out_dir / f"n_{i:06d}.png"
        Image.fromarray(arr).save(p, compress_level=1)
        paths.append(p)
    return paths


def peak_rss_mb(cmd, cwd, env=None):
    """Runs cmd under a fresh Python wrapper and returns (wall seconds, stdout, peak RSS in MB of
    cmd, including its children), so each measurement is independent."""
    wrapper = (
        "import resource, subprocess, sys, json, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'rc': p.returncode, 'wall': wall, 'rss_kb': rss, 'out': p.stdout, 'err': p.stderr}))\n"
    )
    p = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    r = json.loads(p.stdout)
    if r["rc"] not in (0, 1):
        sys.exit(f"command failed ({r['rc']}): {' '.join(cmd)}\n{r['err']}")
    return r["wall"], r["out"], r["rss_kb"] / 1024.0

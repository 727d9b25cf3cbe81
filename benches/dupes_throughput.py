"""Perceptual hashing throughput on the 200-image throughput set (common.make_images: the
fixture photos as PNG, JPEG and WebP, 64 px to 4233 px), all in one run:

- imagehash: `imagehash.phash(Image.open(f))` per file, one process (how its users call it);
- imagehash on a process pool of every core (the tuned peer);
- iw-lab: `iw-lab dupes FOLDER --method phash --json` in a fresh project (cold: scan, hash,
  store, group) and again (warm: the hashes come from the run store);
- decode only: Pillow opening and decoding every file (`Image.open(f).load()`), one process:
  the floor under imagehash's single-process time.

    .venv/bin/python benches/dupes_throughput.py [--repeats 3] [--method phash]
"""
import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def ih_hash(path):
    import imagehash
    from PIL import Image

    return str(imagehash.phash(Image.open(path)))


def decode(path):
    from PIL import Image

    im = Image.open(path)
    im.load()
    return im.size


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=200)
    args = ap.parse_args()
    exe = common.binary()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = [str(p) for p in common.make_images(tmp / "images", args.images)]
        n = len(files)
        results = {"imagehash": [], "imagehash_pool": [], "iwlab_cold": [], "iwlab_warm": [], "decode": []}
        with multiprocessing.Pool(cores) as pool:
            pool.map(ih_hash, files[:cores])  # start the workers before timing
            for r in range(args.repeats):
                results["decode"].append(timed(lambda: [decode(f) for f in files])[0])
                w, ref = timed(lambda: [ih_hash(f) for f in files])
                results["imagehash"].append(w)
                results["imagehash_pool"].append(timed(lambda: pool.map(ih_hash, files, chunksize=4))[0])
                proj = tmp / f"project{r}"
                proj.mkdir()
                cmd = [exe, "dupes", str(tmp / "images"), "--method", "phash", "--json"]
                results["iwlab_cold"].append(common.run(cmd, cwd=proj)[0])
                results["iwlab_warm"].append(common.run(cmd, cwd=proj)[0])
        print(f"{n} images, {cores} cores, median of {args.repeats}\n")
        print("| pipeline | seconds | images/s | vs imagehash |")
        print("|---|---|---|---|")
        base = statistics.median(results["imagehash"])
        for k, label in [
            ("imagehash", "imagehash.phash, one process"),
            ("imagehash_pool", f"imagehash.phash, pool of {cores}"),
            ("decode", "Pillow decode only, one process"),
            ("iwlab_cold", "iw-lab dupes (cold: scan, hash, store, group)"),
            ("iwlab_warm", "iw-lab dupes (warm: hashes from the store)"),
        ]:
            s = statistics.median(results[k])
            print(f"| {label} | {s:.2f} | {n / s:.0f} | {base / s:.2f}x |")


if __name__ == "__main__":
    main()

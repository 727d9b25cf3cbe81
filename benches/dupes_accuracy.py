"""Near-duplicate detection: `iw-lab dupes` against imagehash and imagededup's hashing methods on
one labelled set built at run time from real photos (scikit-image's sample photos and the decoding
fixtures made from them), with each tool's hashing time on that set.

    .venv/bin/python benches/dupes_accuracy.py [--out results.json] [--skip-iwlab] [--keep DIR]
    .venv/bin/python benches/dupes_accuracy.py --check-exact   # iw-lab's hashes vs imagehash/blockhash

Ground truth: two files are a duplicate pair iff they come from the same photo and neither is a
strong crop (a quarter or a half of the photo: a duplicate of nothing). Scored over all unordered
pairs of files: precision, recall and F1 at each tool's default distance, and at the best
distance by F1 from a sweep 0..bits.

imagededup is installed with --no-deps: torch, torchvision and matplotlib serve only its CNN and
plots, but its package __init__s import them. When they are missing, the three submodules that
need them (methods.cnn, utils.models, utils.plotter) are stubbed in sys.modules before
`imagededup.methods.hashing` is imported. torch itself is not faked: scipy and scikit-learn probe
sys.modules["torch"], and a fake there breaks them.
"""
import argparse
import importlib.util
import json
import logging
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
import types
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# Base photos shipped inside the scikit-image wheel (skimage/data; BSD / public domain / CC0, no
# download). Left out: synthetic images (color, logo, phantom, chessboards), the tiny LFW faces,
# and motorcycle_right (the stereo partner of motorcycle_left: another photo of the same scene).
SKIMAGE_PHOTOS = [
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg",
    "ihc.png", "microaneurysms.png", "moon.png", "motorcycle_left.png", "page.png", "retina.jpg",
    "rocket.jpg", "text.png",
]
# Decoding fixtures (tests/fixtures/images/SOURCES.md): every one is made from a photo above, so
# they add no base; these are added as they are, as duplicates of their source photo. Left out
# because their label is a matter of opinion: camera_alpha.png and brick_palette_transparent.png
# (what shows depends on the background), brick_tiny.png (a 64x40 crop, aspect changed),
# retina_wide.jpg (stretched 3:1) and the jpeg_*.jpg crops of it.
FIXTURE_MEMBERS = {
    "brick_palette.png": "brick", "camera_lossless_alpha.webp": "camera", "grass_gray.png": "grass",
    "gravel_gray16.png": "gravel", "horse_cmyk.jpg": "horse", "retina_lossy.webp": "retina",
    "retina_exif_rot6.jpg": "retina",  # upright only once its EXIF orientation is applied
}
# iw-lab's methods: (name, imagehash function of the same hash (None: blockhash), hash_size)
EXACT = [("phash", "phash", 8), ("phash16", "phash", 16), ("dhash", "dhash", 8), ("dhash16", "dhash", 16),
         ("ahash", "average_hash", 8), ("ahash16", "average_hash", 16), ("blockhash", None, 8),
         ("blockhash16", None, 16)]
IMAGEHASH = [("phash", 8), ("dhash", 8), ("average_hash", 8), ("whash", 8), ("phash", 16)]
IMAGEDEDUP = ["PHash", "DHash", "AHash", "WHash"]


# ---- the labelled set ----------------------------------------------------------------------

def variants(img, rng):
    """(name, image, extension, is_duplicate) for one base photo. Seeded parameters only."""
    w, h = img.size
    scale2 = min(2.0, 2048 / max(w, h))  # 200%, capped at 2048 px so the set stays small
    s512 = 512 / max(w, h)
    e = [rng.uniform(0.02, 0.05) for _ in range(4)]  # per-edge small crop
    crop = lambda l, t, r, b: img.crop((round(l * w), round(t * h), round(w - r * w), round(h - b * h)))  # noqa: E731
    up, down = 1 + rng.uniform(0.10, 0.20), 1 - rng.uniform(0.10, 0.20)
    out = [
        ("orig", img, "png", True),
        ("half", img.resize((round(w / 2), round(h / 2)), Image.LANCZOS), "png", True),
        ("double", img.resize((round(w * scale2), round(h * scale2)), Image.BICUBIC), "png", True),
        ("w512", img.resize((round(w * s512), round(h * s512)), Image.LANCZOS), "png", True),
        *[(f"q{q}", img, "jpg", True) for q in (95, 75, 50, 30)],
        ("crop2", crop(0.02, 0.02, 0.02, 0.02), "png", True),
        ("crop5", crop(*e), "jpg", True),
        ("bright", ImageEnhance.Brightness(img).enhance(up), "png", True),
        ("dark", ImageEnhance.Brightness(img).enhance(down), "png", True),
        ("mark", watermark(img, rng), "jpg", True),
        ("webp", img, "webp", True),
        ("blur", img.filter(ImageFilter.GaussianBlur(1.0)), "png", True),
    ]
    # Strong crops: a quadrant, and a half, of the photo (seeded which).
    qx, qy = rng.randrange(2), rng.randrange(2)
    out.append(("quarter", img.crop((qx * w // 2, qy * h // 2, (qx + 1) * w // 2, (qy + 1) * h // 2)), "png", False))
    side = rng.choice(["left", "right", "top", "bottom"])
    box = {"left": (0, 0, w // 2, h), "right": (w // 2, 0, w, h), "top": (0, 0, w, h // 2), "bottom": (0, h // 2, w, h)}
    out.append((f"half-{side}", img.crop(box[side]), "png", False))
    return out


def watermark(img, rng):
    """A text watermark in a seeded corner, in Pillow's default font, white with a black outline."""
    img = img.copy()
    w, h = img.size
    font = ImageFont.load_default(size=max(10, min(w, h) // 14))
    text = "(c) iw-lab 2026"
    l, t, r, b = ImageDraw.Draw(img).textbbox((0, 0), text, font=font, stroke_width=1)
    m = max(2, min(w, h) // 50)
    x = m if rng.random() < 0.5 else w - (r - l) - m
    y = m if rng.random() < 0.5 else h - (b - t) - m
    fill, stroke = (255, 0) if img.mode == "L" else ((255, 255, 255), (0, 0, 0))
    ImageDraw.Draw(img).text((x - l, y - t), text, font=font, fill=fill, stroke_width=1, stroke_fill=stroke)
    return img


def build_set(out_dir, seed):
    """Writes the set into out_dir (flat). Returns (sorted names, their group ids, base names,
    number of strong crops); each strong crop is a group of its own, so 'same group' is exactly
    'duplicate pair'."""
    import skimage.data

    data_dir = Path(skimage.data.__file__).parent
    rng = random.Random(seed)
    groups, bases = {}, []
    for fname in SKIMAGE_PHOTOS:
        path = data_dir / fname
        if not path.exists():  # only photos that ship in the wheel; never downloaded
            continue
        base = fname.rsplit(".", 1)[0]
        bases.append(base)
        img = Image.open(path)
        if img.mode in ("RGBA", "LA", "P"):  # horse.png: composite on white
            canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
            canvas.alpha_composite(img.convert("RGBA"))
            img = canvas.convert("RGB")
        for name, v, ext, dup in variants(img, rng):
            fn = f"{base}-{name}.{ext}"
            quality = int(name[1:]) if name[1:].isdigit() else 90 if ext == "jpg" else 80
            v.save(out_dir / fn, **({"compress_level": 1} if ext == "png" else {"quality": quality}))
            groups[fn] = base if dup else f"{fn} (strong crop)"
    for fname, base in FIXTURE_MEMBERS.items():
        shutil.copy(common.FIXTURES / fname, out_dir / f"fixture-{fname}")
        groups[f"fixture-{fname}"] = base
    names = sorted(groups)
    ids = {g: i for i, g in enumerate(sorted(set(groups.values())))}
    strong = sum(g.endswith("(strong crop)") for g in groups.values())
    return names, np.array([ids[groups[n]] for n in names]), bases, strong


# ---- scoring -------------------------------------------------------------------------------

def hex_distances(hexes, bits):
    """All-pairs Hamming distances of hex hashes (None: not hashed -> bits + 1, never a match)."""
    ok = np.array([x is not None for x in hexes])
    b = np.array([np.unpackbits(np.frombuffer(bytes.fromhex(x or "0" * (bits // 4)), np.uint8)) for x in hexes],
                 dtype=np.int32)
    d = b @ (1 - b).T + (1 - b) @ b.T
    d[~ok, :] = d[:, ~ok] = bits + 1
    return d


def pair_distances(pairs, index, bits):
    """A distance matrix from a tool's list of (a, b, distance); absent pairs are bits + 1. With
    bits=0 and distance 0, a mask (== 0) of the pairs the tool reported."""
    d = np.full((len(index), len(index)), bits + 1, dtype=np.int32)
    for a, b, dist in pairs:
        d[index[a], index[b]] = d[index[b], index[a]] = dist
    return d


def prf(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
            "tp": int(tp), "fp": int(fp), "fn": int(fn)}


def score(d, truth, bits, default=None, predicted=None):
    """Metrics at the default (a threshold, or the tool's own predicted pair mask) and at the best
    threshold by F1 (ties: the smaller threshold) over 0..bits."""
    iu = np.triu_indices(len(d), 1)
    dv = d[iu]
    pos = np.cumsum(np.bincount(dv[truth], minlength=bits + 2))[: bits + 1]
    neg = np.cumsum(np.bincount(dv[~truth], minlength=bits + 2))[: bits + 1]
    npos = int(truth.sum())
    sweep = [prf(pos[k], neg[k], npos - pos[k]) for k in range(bits + 1)]
    best = max(range(bits + 1), key=lambda k: (sweep[k]["f1"], -k))
    if predicted is not None:
        pv = predicted[iu]
        at_default = prf((pv & truth).sum(), (pv & ~truth).sum(), (~pv & truth).sum())
    else:
        at_default = sweep[default]
    return {"default": {"threshold": default, **at_default}, "best": {"threshold": best, **sweep[best]},
            "sweep_f1": [s["f1"] for s in sweep]}


# ---- the tools -----------------------------------------------------------------------------

def run_imagehash(files):
    """imagehash as its README uses it: hashfunc(Image.open(path)) (no EXIF orientation, alpha dropped)."""
    import imagehash

    out = {}
    for fn, size in IMAGEHASH:
        t = time.perf_counter()
        hexes = [str(getattr(imagehash, fn)(Image.open(p), hash_size=size)) for p in files]
        out[fn + ("" if size == 8 else str(size))] = (hexes, size * size, time.perf_counter() - t)
    return out


def import_imagededup():
    """imagededup.methods.hashing without torch/matplotlib (see the module docstring)."""
    stubs = {"imagededup.methods.cnn": ("CNN", "torch"), "imagededup.utils.models": ("CustomModel", "torchvision"),
             "imagededup.utils.plotter": ("plot_duplicates", "matplotlib")}
    for name, (attr, needs) in stubs.items():
        if importlib.util.find_spec(needs) is None and name not in sys.modules:
            stub = types.ModuleType(name)
            setattr(stub, attr, None)
            sys.modules[name] = stub
    from imagededup.methods import hashing

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("imagededup"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return hashing


def run_imagededup(folder, names):
    """Its own encode_images (timed: the hashing) and find_duplicates at its default distance."""
    hashing = import_imagededup()
    out = {}
    for cls in IMAGEDEDUP:
        method = getattr(hashing, cls)(verbose=False)
        t = time.perf_counter()
        enc = method.encode_images(image_dir=str(folder))
        secs = time.perf_counter() - t
        with warnings.catch_warnings():  # "num_enc_workers has no effect" (encodings given)
            warnings.simplefilter("ignore")
            dups = method.find_duplicates(encoding_map=enc)  # max_distance_threshold=10, its default
        pairs = [(a, b) for a, bs in dups.items() for b in bs]
        out[cls] = ([enc.get(n) for n in names], pairs, secs)
    return out


def iwlab(folder, project, method, *extra):
    wall, p = common.run([common.binary(), "dupes", str(folder), "--method", method, *extra, "--json"], cwd=project)
    return wall, json.loads(p.stdout)


def run_iwlab(folder, project):
    out = {}
    for m, _, size in EXACT:
        bits = size * size
        wall, default = iwlab(folder, project, m)  # its own default distance (timed)
        _, full = iwlab(folder, project, m, "--max-distance", str(bits))  # every pair, for the sweep
        out[m] = (default, full, bits, wall)
    return out


# ---- bit-exactness check -------------------------------------------------------------------

def reference_hashes(path):
    """Every method's reference hash of one file, on the pixels iw-lab decodes (tests/reference's
    decoder: EXIF orientation, 16-bit grey scaled, transparency on white, RGB). Blockhash: the
    blockhash-python reference ("precise", method 2), PyPI phash-blockhashio, if installed."""
    import imagehash

    sys.path.insert(0, str(common.REFERENCE))
    from tagger_reference import load_rgb_on_white

    try:
        import blockhash.core as bh  # not PyPI "blockhash": an unrelated SHA tool
    except ImportError:
        bh = None
    img = load_rgb_on_white(path)
    return {m: str(getattr(imagehash, fn)(img, hash_size=size)) if fn else bh.blockhash(img, size) if bh else None
            for m, fn, size in EXACT}


def check_exact(folders, project):
    """iw-lab's `--hashes` against the reference hashes, per method; mismatches listed."""
    report = {}
    for folder in folders:
        files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() != ".md")
        with multiprocessing.Pool() as pool:  # pure-Python blockhash: ~1 us a pixel
            refs = dict(zip((p.name for p in files), pool.map(reference_hashes, files)))
        for m, *_ in EXACT:
            if any(r[m] is None for r in refs.values()):
                print(f"{m}: no reference (pip install phash-blockhashio), not checked")
                continue
            _, got = iwlab(folder, project, m, "--hashes")
            got = {h["file"]: h["hash"].lower() for h in got["hashes"]}
            bad = [(f, r[m], got.get(f)) for f, r in refs.items() if got.get(f) != r[m]]
            r = report.setdefault(m, {"files": 0, "mismatches": 0, "missing": 0, "max_bits": 0, "examples": []})
            r["files"] += len(refs)
            r["mismatches"] += len(bad)
            r["missing"] += sum(g is None for *_, g in bad)
            r["max_bits"] = max([r["max_bits"], *(bin(int(h, 16) ^ int(g, 16)).count("1") for _, h, g in bad if g)])
            r["examples"] += [{"file": f"{Path(folder).name}/{f}", "reference": h, "iw-lab": g} for f, h, g in bad[:3]]
    print("| method | files | mismatches | missing | most bits off |\n|---|---|---|---|---|")
    for m, r in report.items():
        print(f"| {m} | {r['files']} | {r['mismatches']} | {r['missing']} | {r['max_bits']} |")
    return report


# ---- main ----------------------------------------------------------------------------------

def accuracy(folder, project, names, truth, with_iwlab):
    """One row per tool and method: the defaults, the best threshold, the hashing time."""
    index = {n: i for i, n in enumerate(names)}
    rows = []

    def add(tool, method, bits, secs, s):
        rows.append({"tool": tool, "method": method, "bits": bits, "seconds": round(secs, 3),
                     "images_per_s": round(len(names) / secs, 1), **s})

    for m, (hexes, bits, secs) in run_imagehash([folder / n for n in names]).items():
        # imagehash documents no cutoff (README: "hash1 - hash2 < threshold", no number); its
        # find_similar_images demo reports equal hashes: distance 0.
        add("imagehash", m, bits, secs, score(hex_distances(hexes, bits), truth, bits, default=0))
    for m, (hexes, pairs, secs) in run_imagededup(folder, names).items():
        pred = pair_distances([(a, b, 0) for a, b in pairs], index, 0) == 0
        add("imagededup", m, 64, secs, score(hex_distances(hexes, 64), truth, 64, default=10, predicted=pred))
    if with_iwlab:
        for m, (default, full, bits, secs) in run_iwlab(folder, project).items():
            pred = pair_distances([(p["a"], p["b"], 0) for p in default["pairs"]], index, 0) == 0
            d = pair_distances([(p["a"], p["b"], p["distance"]) for p in full["pairs"]], index, bits)
            add("iw-lab", m, bits, secs, score(d, truth, bits, default=default["max_distance"], predicted=pred))
    print("\n| tool | method | bits | default | P | R | F1 | best | P | R | F1 | hashing s | images/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        d, b = r["default"], r["best"]
        print(f"| {r['tool']} | {r['method']} | {r['bits']} | {d['threshold']} | {d['precision']:.3f} | "
              f"{d['recall']:.3f} | {d['f1']:.3f} | {b['threshold']} | {b['precision']:.3f} | "
              f"{b['recall']:.3f} | {b['f1']:.3f} | {r['seconds']:.2f} | {r['images_per_s']:.0f} |")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("--skip-iwlab", action="store_true", help="only the Python tools")
    ap.add_argument("--check-exact", action="store_true", help="compare iw-lab's hashes with imagehash/blockhash")
    ap.add_argument("--keep", help="build the set in this (new or empty) folder and keep it")
    args = ap.parse_args()
    if args.check_exact and args.skip_iwlab:
        sys.exit("--check-exact compares iw-lab's hashes: it needs iw-lab")

    tmp = Path(tempfile.mkdtemp(prefix="iw-dupes-"))
    folder = Path(args.keep) if args.keep else tmp / "set"
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        sys.exit(f"{folder} is not empty")
    project = tmp / "project"
    common.write_project(project, folder, {})
    try:
        names, group, bases, strong = build_set(folder, args.seed)
        iu = np.triu_indices(len(names), 1)
        truth = group[iu[0]] == group[iu[1]]
        versions = {p: metadata.version(p) for p in ("ImageHash", "imagededup", "pillow", "scikit-image")}
        info = {"seed": args.seed, "files": len(names), "base_photos": bases, "fixture_files": list(FIXTURE_MEMBERS),
                "strong_crops": strong, "pairs": len(truth), "positive_pairs": int(truth.sum()), "versions": versions}
        print(f"set: {len(names)} files from {len(bases)} photos ({strong} strong crops, {len(FIXTURE_MEMBERS)} "
              f"fixture files as they are), {len(truth)} pairs, {int(truth.sum())} duplicate pairs")
        results = {"set": info}
        if args.check_exact:
            results["check_exact"] = check_exact([folder, common.FIXTURES], project)
        else:
            results["results"] = accuracy(folder, project, names, truth, not args.skip_iwlab)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

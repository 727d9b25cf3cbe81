"""The reference perceptual hashes: Python's `imagehash` (pHash, dHash, aHash at 8 and 16) and
blockhash.io's reference implementation (`phash-blockhashio`, imported as `blockhash`), each
used exactly as its users call it on a file opened with Pillow.

Usage: phash_reference.py FOLDER  ->  {"rel/path": {"phash": hex, ...}, ...} on stdout.
"""
import json
import sys
from pathlib import Path

import imagehash
from PIL import Image
from blockhash.core import blockhash

EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def block_input(img):
    # What blockhash's own command line does before hashing.
    if img.mode in ("1", "L", "P"):
        return img.convert("RGB")
    if img.mode == "LA":
        return img.convert("RGBA")
    if img.mode not in ("RGB", "RGBA"):
        return img.convert("RGB")
    return img


def hashes(path):
    img = Image.open(path)
    block = block_input(img)
    return {
        "phash": str(imagehash.phash(img)),
        "phash16": str(imagehash.phash(img, hash_size=16)),
        "dhash": str(imagehash.dhash(img)),
        "dhash16": str(imagehash.dhash(img, hash_size=16)),
        "ahash": str(imagehash.average_hash(img)),
        "ahash16": str(imagehash.average_hash(img, hash_size=16)),
        "blockhash": blockhash(block, 8),
        "blockhash16": blockhash(block, 16),
    }


def main():
    root = Path(sys.argv[1])
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in EXTENSIONS:
            out[p.relative_to(root).as_posix()] = hashes(p)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

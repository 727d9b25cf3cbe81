#!/usr/bin/env python3
"""Decodes images the way tagger_reference.py does (EXIF orientation, 16-bit grey scaled,
transparency composited on white, RGB) and writes each as raw RGB bytes, for comparing
iw-lab's decoder pixel by pixel.

  decode_reference.py OUT_DIR IMG... > sizes.json   (OUT_DIR/<file name>.rgb per image)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tagger_reference import load_rgb_on_white  # noqa: E402

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
sizes = {}
for path in sys.argv[2:]:
    img = load_rgb_on_white(path)
    name = os.path.basename(path)
    with open(os.path.join(out, name + ".rgb"), "wb") as f:
        f.write(img.tobytes())
    sizes[name] = list(img.size)
json.dump(sizes, sys.stdout)

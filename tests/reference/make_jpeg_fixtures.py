"""Writes the JPEG decoding fixtures: one crop of `retina_wide.jpg` (scikit-image's retina,
CC0) saved by Pillow (libjpeg-turbo) as baseline and progressive JPEGs with 4:2:0, 4:2:2 and
4:4:4 chroma subsampling, some carrying an EXIF orientation, at odd sizes so partial MCUs and
chroma edges both matter.

    python tests/reference/make_jpeg_fixtures.py tests/fixtures/images
"""
import sys
from pathlib import Path

from PIL import Image

out = Path(sys.argv[1])
src = Image.open(out / "retina_wide.jpg").convert("RGB")
crop = src.crop((1500, 101, 1500 + 517, 101 + 389))


def exif(orientation):
    e = Image.Exif()
    e[0x0112] = orientation
    return e.tobytes()


# (name, quality, subsampling (2: 4:2:0, 1: 4:2:2, 0: 4:4:4), progressive, orientation)
CASES = [
    ("jpeg_420_baseline.jpg", 88, 2, False, None),
    ("jpeg_422_baseline.jpg", 88, 1, False, None),
    ("jpeg_444_baseline.jpg", 88, 0, False, None),
    ("jpeg_420_progressive.jpg", 85, 2, True, None),
    ("jpeg_422_progressive.jpg", 85, 1, True, None),
    ("jpeg_420_exif_rot6.jpg", 90, 2, False, 6),
    ("jpeg_422_exif_rot8.jpg", 90, 1, False, 8),
    ("jpeg_444_progressive_rot3.jpg", 90, 0, True, 3),
]
for name, quality, subsampling, progressive, orientation in CASES:
    kw = {"quality": quality, "subsampling": subsampling, "progressive": progressive}
    if orientation:
        kw["exif"] = exif(orientation)
    crop.save(out / name, **kw)
    print(name)

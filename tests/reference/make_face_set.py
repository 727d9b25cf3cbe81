#!/usr/bin/env python3
"""Writes a small, deterministic face-recognition set from three portraits, for tests and the
face benchmark.

  make_face_set.py --out DIR --astronaut astronaut.jpg --camera camera.png --kafka franz-kafka.jpg [--seed 0]

Layout (all JPEG, quality 95 unless said otherwise):
  DIR/enroll/<Person>/{original,mirror,scale1.5,bright1.3,rotate+10}.jpg
  DIR/test/<Person>/{crop,scale0.6,rotate-15,bright0.7,jpeg35,rotate+15}.jpg
  DIR/no-face/{background,noise}.jpg
Persons: "Eileen Collins" (astronaut), "Cameraman" (camera), "Franz Kafka" (kafka).

Augmentations:
  crop       centred crop keeping a fraction f ~ U(0.80, 0.90) (seeded) of width and height
             (the face is near the centre in all three photos, so it stays inside)
  scale      Pillow LANCZOS resize by 0.6 or 1.5 (scale1.5 is the one image allowed > 640 px)
  rotate     PIL rotate(angle, BICUBIC, expand=True, fillcolor black); positive = counter-clockwise
  bright     ImageEnhance.Brightness ×0.7 / ×1.3
  jpeg35     saved at JPEG quality 35
  mirror     left-right flip
Every image except scale1.5 is then fitted within 640 px on its longest side (LANCZOS), only
if larger. Colour inputs stay RGB; the grey camera photo is saved as an RGB JPEG.
no-face: a crop of camera.png's sky, buildings and grass (x 330..512, y 0..300) and a 300×200
uniform RGB noise image (numpy default_rng(seed)).
Every face image was checked with faces_reference.py to hold a face at score >= 0.6 and the
no-face images to hold none.
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tagger_reference import load_rgb_on_white  # noqa: E402

MAX_SIDE = 640
QUALITY = 95


def fit(img, limit=MAX_SIDE):
    w, h = img.size
    if max(w, h) <= limit:
        return img
    s = limit / max(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)


def scale(img, f):
    w, h = img.size
    return img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS)


def rotate(img, deg):
    return img.rotate(deg, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(0, 0, 0))


def centre_crop(img, frac):
    w, h = img.size
    cw, ch = round(w * frac), round(h * frac)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return img.crop((x0, y0, x0 + cw, y0 + ch))


def bright(img, f):
    return ImageEnhance.Brightness(img).enhance(f)


def save(img, path, quality=QUALITY, limit=True):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if limit:
        img = fit(img)
    img.convert("RGB").save(path, "JPEG", quality=quality)


def person_set(img, rng):
    enroll = {
        "original": img,
        "mirror": ImageOps.mirror(img),
        "scale1.5": scale(img, 1.5),
        "bright1.3": bright(img, 1.3),
        "rotate+10": rotate(img, 10),
    }
    test = {
        "crop": centre_crop(img, float(rng.uniform(0.80, 0.90))),
        "scale0.6": scale(img, 0.6),
        "rotate-15": rotate(img, -15),
        "bright0.7": bright(img, 0.7),
        "jpeg35": img,
        "rotate+15": rotate(img, 15),
    }
    return enroll, test


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--astronaut", required=True)
    ap.add_argument("--camera", required=True)
    ap.add_argument("--kafka", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    persons = [("Eileen Collins", a.astronaut), ("Cameraman", a.camera), ("Franz Kafka", a.kafka)]
    n = 0
    for idx, (name, path) in enumerate(persons):
        rng = np.random.default_rng([a.seed, idx])
        img = load_rgb_on_white(path)
        enroll, test = person_set(img, rng)
        for aug, im in enroll.items():
            save(im, os.path.join(a.out, "enroll", name, aug + ".jpg"), limit=aug != "scale1.5")
            n += 1
        for aug, im in test.items():
            save(im, os.path.join(a.out, "test", name, aug + ".jpg"), quality=35 if aug == "jpeg35" else QUALITY)
            n += 1
    cam = load_rgb_on_white(a.camera)
    save(cam.crop((330, 0, 512, 300)), os.path.join(a.out, "no-face", "background.jpg"))
    noise = np.random.default_rng([a.seed, 99]).integers(0, 256, size=(200, 300, 3), dtype=np.uint8)
    save(Image.fromarray(noise, "RGB"), os.path.join(a.out, "no-face", "noise.jpg"))
    total = sum(
        os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(a.out) for f in fs
    )
    print(f"{n} face images ({len(persons)} persons: 5 enroll + 6 test each), 2 no-face images, "
          f"{total / 1e6:.2f} MB in {a.out}")


if __name__ == "__main__":
    main()

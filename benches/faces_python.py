#!/usr/bin/env python3
"""Face detection + embedding throughput of a tuned Python pipeline: the peer iw-lab's face
pass is compared with.

  faces_python.py --yunet face_detection_yunet_2023mar.onnx --sface face_recognition_sface_2021dec.onnx
                  [--threads 2] [--decode-workers 2] [--repeats 3] [--score 0.6] [--nms 0.3] IMAGE_DIR

What a tuned Python user would write, with the same preprocessing as
tests/reference/faces_reference.py:
  - onnxruntime CPU sessions, intra_op_num_threads = --threads;
  - decoding (Pillow, EXIF orientation, alpha on white) and the 640×640 BILINEAR letterbox run in
    a ThreadPoolExecutor that prefetches ahead of inference (Pillow releases the GIL while it
    decodes and resizes), so decoding overlaps with the models;
  - YuNet outputs decoded and NMS'd with vectorised numpy;
  - alignment (Umeyama similarity to the ArcFace template) with a vectorised numpy bilinear
    warp (constant border 0), then one SFace run per face.
A warm-up pass over the folder is not counted; then --repeats timed passes.
Prints JSON: images, faces (per pass), seconds (median wall time of a pass), images_per_s,
model_seconds (median time inside the two sessions' run() calls, summed), detector_ms_per_image,
recognizer_ms_per_face (both from the medians of each model's time).
"""
import argparse
import json
import os
import statistics
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

INPUT = 640
STRIDES = (8, 16, 32)
FLOOR = 0.05
DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
EXTS = {".jpg", ".jpeg", ".png", ".webp"}
# Anchor grids per stride: (col, row) of every anchor, computed once.
GRIDS = {}
for _s in STRIDES:
    _n = INPUT // _s
    _r, _c = np.divmod(np.arange(_n * _n), _n)
    GRIDS[_s] = (_c.astype(np.float32), _r.astype(np.float32))
# Output pixel grid of the 112×112 aligned face.
_V, _U = np.mgrid[0:112, 0:112].astype(np.float64)


def session(path, threads, spin=False):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.log_severity_level = 3
    if not spin:
        # Two sessions alternate on the same cores: a session's workers spinning after its run()
        # would steal the other's CPU time.
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, sess_options=o, providers=["CPUExecutionProvider"])


def load(path):
    """Decode + letterbox (runs in a worker thread)."""
    img = ImageOps.exif_transpose(Image.open(path))
    if img.mode == "P" or "transparency" in img.info or img.mode in ("RGBA", "LA"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        bg.alpha_composite(img)
        img = bg
    img = img.convert("RGB")
    w, h = img.size
    s = min(INPUT / w, INPUT / h)
    nw, nh = max(1, int(np.floor(w * s + 0.5))), max(1, int(np.floor(h * s + 0.5)))
    small = np.asarray(img.resize((nw, nh), Image.Resampling.BILINEAR))
    x = np.zeros((1, 3, INPUT, INPUT), np.float32)
    x[0, :, :nh, :nw] = small[:, :, ::-1].transpose(2, 0, 1)  # BGR
    return np.asarray(img), x, nw / w, nh / h


def detect(outs, names, sx, sy, w, h, score_thr, nms_thr):
    d = dict(zip(names, outs))
    scores, boxes, lms = [], [], []
    for s in STRIDES:
        col, row = GRIDS[s]
        sc = np.sqrt(np.clip(d[f"cls_{s}"][0, :, 0], 0, 1) * np.clip(d[f"obj_{s}"][0, :, 0], 0, 1))
        keep = np.nonzero(sc >= FLOOR)[0]
        if keep.size == 0:
            continue
        b = d[f"bbox_{s}"][0, keep].astype(np.float64)
        k = d[f"kps_{s}"][0, keep].astype(np.float64)
        c, r = col[keep, None], row[keep, None]
        bw, bh = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
        cx, cy = (c[:, 0] + b[:, 0]) * s, (r[:, 0] + b[:, 1]) * s
        boxes.append(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1))
        lm = np.empty_like(k)
        lm[:, 0::2] = (k[:, 0::2] + c) * s
        lm[:, 1::2] = (k[:, 1::2] + r) * s
        lms.append(lm)
        scores.append(sc[keep].astype(np.float64))
    if not scores:
        return []
    scores, boxes, lms = np.concatenate(scores), np.concatenate(boxes), np.concatenate(lms)
    order = np.argsort(-scores, kind="stable")
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    kept = []
    while order.size:
        i = order[0]
        if scores[i] < score_thr:
            break  # the rest are survivors below the threshold: not reported
        kept.append(i)
        rest = order[1:]
        iw = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        order = rest[inter / (area[i] + area[rest] - inter) <= nms_thr]
    faces = []
    for i in kept:
        bx, by, bw, bh = boxes[i] / (sx, sy, sx, sy)
        x0, y0 = max(0.0, bx), max(0.0, by)
        lm = lms[i].reshape(5, 2) / (sx, sy)
        faces.append((scores[i], (x0, y0, min(w, bx + bw) - x0, min(h, by + bh) - y0), lm))
    return faces


def umeyama(src):
    ms, md = src.mean(0), DST.mean(0)
    sc, dc = src - ms, DST - md
    a = dc.T @ sc / len(src)
    d = np.array([1.0, -1.0 if np.linalg.det(a) < 0 else 1.0])
    u, s, vt = np.linalg.svd(a)
    r = (u * d) @ vt
    scale = (s * d).sum() / ((sc ** 2).sum() / len(src))
    return scale * r, md - scale * (r @ ms)


def align(rgb, lm):
    a, t = umeyama(lm)
    ia = np.linalg.inv(a)
    it = -ia @ t
    xs = ia[0, 0] * _U + ia[0, 1] * _V + it[0]
    ys = ia[1, 0] * _U + ia[1, 1] * _V + it[1]
    x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    h, w = rgb.shape[:2]
    out = np.zeros((112, 112, 3))
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[..., None]
            px = rgb[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
            out += np.where(ok, px * (wy * wx), 0.0)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def one_pass(paths, det, rec, workers, score_thr, nms_thr):
    det_in, det_out = det.get_inputs()[0].name, [o.name for o in det.get_outputs()]
    rec_in = rec.get_inputs()[0].name
    t_det = t_rec = 0.0
    n_faces = 0
    ahead = 2 * workers + 2
    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = iter(paths)
        queue = deque(pool.submit(load, p) for _, p in zip(range(ahead), it))
        while queue:
            rgb, x, sx, sy = queue.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                queue.append(pool.submit(load, nxt))
            t = time.perf_counter()
            outs = det.run(det_out, {det_in: x})
            t_det += time.perf_counter() - t
            faces = detect(outs, det_out, sx, sy, rgb.shape[1], rgb.shape[0], score_thr, nms_thr)
            for _, _, lm in faces:
                face = align(rgb, lm)
                blob = np.ascontiguousarray(face.transpose(2, 0, 1)[None], dtype=np.float32)
                t = time.perf_counter()
                e = rec.run(None, {rec_in: blob})[0][0]
                t_rec += time.perf_counter() - t
                e /= np.linalg.norm(e)
                n_faces += 1
    return n_faces, t_det, t_rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--yunet", required=True)
    ap.add_argument("--sface", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode-workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--spin", action="store_true", help="keep onnxruntime's spin-waiting (default off)")
    ap.add_argument("--score", type=float, default=0.6)
    ap.add_argument("--nms", type=float, default=0.3)
    ap.add_argument("image_dir")
    a = ap.parse_args()
    paths = sorted(str(p) for p in Path(a.image_dir).rglob("*") if p.is_file() and p.suffix.lower() in EXTS)
    if not paths:
        sys.exit(f"no images under {a.image_dir}")
    det, rec = session(a.yunet, a.threads, a.spin), session(a.sface, a.threads, a.spin)
    one_pass(paths, det, rec, a.decode_workers, a.score, a.nms)  # warm-up, not counted
    walls, dets, recs = [], [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        n_faces, t_det, t_rec = one_pass(paths, det, rec, a.decode_workers, a.score, a.nms)
        walls.append(time.perf_counter() - t)
        dets.append(t_det)
        recs.append(t_rec)
    secs = statistics.median(walls)
    print(json.dumps({
        "images": len(paths),
        "faces": n_faces,
        "seconds": secs,
        "images_per_s": len(paths) / secs,
        "model_seconds": statistics.median(d + r for d, r in zip(dets, recs)),
        "detector_ms_per_image": 1000 * statistics.median(dets) / len(paths),
        "recognizer_ms_per_face": 1000 * statistics.median(recs) / n_faces if n_faces else None,
        "threads": a.threads,
        "decode_workers": a.decode_workers,
        "repeats": a.repeats,
        "spin": a.spin,
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()

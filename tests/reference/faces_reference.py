#!/usr/bin/env python3
"""Reference pipeline for face detection (YuNet 2023mar) and face embeddings (SFace 2021dec),
used as an independent oracle in tests. Plain numpy, written from the models' published
pre/post-processing (OpenCV's FaceDetectorYN / FaceRecognizerSF), without OpenCV.

Usage:
  faces_reference.py --yunet Y.onnx --sface S.onnx [--score 0.6] [--nms 0.3] [--time] IMG... > out.json
Output: {"images": [{"path", "width", "height", "count_score",
                     "faces": [{"box": [x, y, w, h], "score", "landmarks": [x0, y0, ..., x4, y4],
                                "blur", "embedding": [128 floats, L2-normalised]}]}]}
With --time, a "timing" object is added: seconds spent inside each model's run() alone.

Algorithm (the Rust side implements the same):
 1. Decode to RGB uint8: tagger_reference.load_rgb_on_white (the function decode_reference.py
    uses: EXIF orientation applied, 16-bit grey scaled, transparency composited on white).
    W, H = the decoded size.
 2. Letterbox to 640x640: scale = min(640/W, 640/H); nw = max(1, floor(W*scale + 0.5)),
    nh = max(1, floor(H*scale + 0.5)); Pillow resize((nw, nh), BILINEAR); paste at the top-left
    of a black 640x640 canvas. Actual factors sx = nw/W, sy = nh/H.
 3. YuNet input: float32 [1, 3, 640, 640], channels B, G, R, values 0..255 (no normalisation).
 4. Decoding (float64), for stride s in (8, 16, 32), cols = 640 // s, anchor i: row = i // cols,
    col = i % cols; score = sqrt(clip(cls, 0, 1) * clip(obj, 0, 1));
    cx = (col + bbox0) * s, cy = (row + bbox1) * s, w = exp(bbox2) * s, h = exp(bbox3) * s,
    x = cx - w/2, y = cy - h/2; landmark k = ((kps[2k] + col) * s, (kps[2k+1] + row) * s).
    Candidates with score >= 0.05 are kept (candidate floor), in stride order then index order.
 5. NMS: stable sort by score descending; greedy: a box is dropped when its IoU with an already
    kept box is > nms (0.3). IoU on float (x, y, w, h): intersection area (clamped at 0) over
    union = w1*h1 + w2*h2 - inter.
 6. Survivors are mapped to the original image: x / sx, y / sy, w / sx, h / sy (landmarks too),
    then the box is clipped to the image: x1 = max(0, x), y1 = max(0, y), x2 = min(W, x + w),
    y2 = min(H, y + h), box = [x1, y1, x2 - x1, y2 - y1]. Landmarks are not clipped.
 7. Reported faces: survivors with score >= --score (0.6), by descending score.
    count_score: with survivors' scores s_1 >= s_2 >= ... and N faces reported,
    min(s_N if N > 0 else 1, 1 - s_{N+1} if an (N+1)th survivor exists else 1):
    how clearly the count N is separated from the threshold on both sides.
 8. Alignment: the similarity transform (rotation + uniform scale + translation, no reflection;
    Umeyama least squares) from the 5 landmarks (original pixels) to the ArcFace 112x112
    template ARCFACE_DST. Warp like OpenCV warpAffine (no half-pixel offsets): output pixel
    (u, v) samples the RGB image (float64) at inverse-transform(u, v) by bilinear interpolation;
    each of the 4 neighbour pixels outside the image contributes 0 (constant border 0). The
    result is rounded floor(v + 0.5) and clipped to 0..255 as uint8.
 9. SFace input: the aligned image, float32 [1, 3, 112, 112], channels R, G, B, values 0..255.
    Output fc1 [1, 128], L2-normalised.
10. blur: population variance (ddof 0) of the Laplacian [[0,1,0],[1,-4,1],[0,1,0]] of the
    aligned face's grey (0.299 R + 0.587 G + 0.114 B, float64 from the uint8 aligned image),
    over the interior pixels only (rows and columns 1..110, no padding).
onnxruntime sessions use intra_op_num_threads = 2 (CPU).

Needs: pillow, numpy, onnxruntime.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tagger_reference import load_rgb_on_white  # noqa: E402  (decode_reference.py's decoder)

INPUT = 640
STRIDES = (8, 16, 32)
CANDIDATE_FLOOR = 0.05
ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
ALIGNED = 112


def session(path, threads=2):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # SFace's graph warns about initializers listed as inputs
    # Two sessions alternate: idle workers spinning would steal the other's cores (timing only).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def round_half_up(x):
    return int(math.floor(x + 0.5))


def letterbox(img):
    """RGB PIL image -> (float32 [1,3,640,640] BGR tensor, sx, sy)."""
    w, h = img.size
    scale = min(INPUT / w, INPUT / h)
    nw = max(1, round_half_up(w * scale))
    nh = max(1, round_half_up(h * scale))
    resized = img.resize((nw, nh), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (INPUT, INPUT), (0, 0, 0))
    canvas.paste(resized, (0, 0))
    x = np.asarray(canvas, dtype=np.float32)[:, :, ::-1].transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x), nw / w, nh / h


def decode(outputs):
    """YuNet outputs (name -> array) -> list of (score, [x, y, w, h], [10 landmark coords])
    in the 640x640 letterbox space, score >= CANDIDATE_FLOOR."""
    cands = []
    for s in STRIDES:
        cols = INPUT // s
        cls = outputs[f"cls_{s}"].reshape(-1).astype(np.float64)
        obj = outputs[f"obj_{s}"].reshape(-1).astype(np.float64)
        bbox = outputs[f"bbox_{s}"].reshape(-1, 4).astype(np.float64)
        kps = outputs[f"kps_{s}"].reshape(-1, 10).astype(np.float64)
        for i in range(cls.shape[0]):
            score = math.sqrt(min(max(cls[i], 0.0), 1.0) * min(max(obj[i], 0.0), 1.0))
            if score < CANDIDATE_FLOOR:
                continue
            row, col = i // cols, i % cols
            b = bbox[i]
            cx = (col + b[0]) * s
            cy = (row + b[1]) * s
            w = math.exp(b[2]) * s
            h = math.exp(b[3]) * s
            lm = []
            for k in range(5):
                lm.append((kps[i, 2 * k] + col) * s)
                lm.append((kps[i, 2 * k + 1] + row) * s)
            cands.append((score, [cx - w / 2, cy - h / 2, w, h], lm))
    return cands


def iou(a, b):
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0.0, ix) * max(0.0, iy)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def nms(cands, thr):
    order = sorted(cands, key=lambda c: -c[0])  # Python's sort is stable
    kept = []
    for c in order:
        if all(iou(c[1], k[1]) <= thr for k in kept):
            kept.append(c)
    return kept


def umeyama(src, dst):
    """2x3 similarity matrix (no reflection) mapping src (n,2) onto dst (n,2), least squares."""
    n = src.shape[0]
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - ms, dst - md
    a = dc.T @ sc / n
    d = np.ones(2)
    if np.linalg.det(a) < 0:
        d[1] = -1.0
    u, s, vt = np.linalg.svd(a)
    r = u @ np.diag(d) @ vt
    var_src = (sc ** 2).sum() / n
    scale = (s * d).sum() / var_src
    t = md - scale * (r @ ms)
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = t
    return m


def warp_affine(rgb, m, size=ALIGNED):
    """OpenCV-style warpAffine (dst(u,v) = src(M^-1 (u,v))), bilinear, constant border 0,
    float64 arithmetic, rounded half up to uint8."""
    h, w = rgb.shape[:2]
    a = m[:, :2]
    inv_a = np.linalg.inv(a)
    inv_t = -inv_a @ m[:, 2]
    src = rgb.astype(np.float64)
    out = np.zeros((size, size, 3), dtype=np.float64)
    for v in range(size):
        for u in range(size):
            x = inv_a[0, 0] * u + inv_a[0, 1] * v + inv_t[0]
            y = inv_a[1, 0] * u + inv_a[1, 1] * v + inv_t[1]
            x0, y0 = math.floor(x), math.floor(y)
            fx, fy = x - x0, y - y0
            acc = np.zeros(3)
            for yy, wy in ((y0, 1.0 - fy), (y0 + 1, fy)):
                if yy < 0 or yy > h - 1:
                    continue
                for xx, wx in ((x0, 1.0 - fx), (x0 + 1, fx)):
                    if xx < 0 or xx > w - 1:
                        continue
                    acc += wy * wx * src[yy, xx]
            out[v, u] = acc
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def blur_score(aligned):
    g = aligned.astype(np.float64)
    g = 0.299 * g[:, :, 0] + 0.587 * g[:, :, 1] + 0.114 * g[:, :, 2]
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def count_score(survivor_scores, n):
    below = survivor_scores[n - 1] if n > 0 else 1.0
    above = 1.0 - survivor_scores[n] if len(survivor_scores) > n else 1.0
    return min(below, above)


class Pipeline:
    def __init__(self, yunet, sface, threads=2):
        self.det = session(yunet, threads)
        self.rec = session(sface, threads)
        self.det_in = self.det.get_inputs()[0].name
        self.det_out = [o.name for o in self.det.get_outputs()]
        self.rec_in = self.rec.get_inputs()[0].name
        self.det_seconds = 0.0
        self.rec_seconds = 0.0

    def detect(self, img, score_thr=0.6, nms_thr=0.3):
        """PIL RGB image -> (reported faces [(score, box, landmarks)], survivor scores)."""
        w, h = img.size
        x, sx, sy = letterbox(img)
        t = time.perf_counter()
        outs = self.det.run(self.det_out, {self.det_in: x})
        self.det_seconds += time.perf_counter() - t
        kept = nms(decode(dict(zip(self.det_out, outs))), nms_thr)
        faces = []
        for score, (bx, by, bw, bh), lm in kept:
            if score < score_thr:
                break
            bx, by, bw, bh = bx / sx, by / sy, bw / sx, bh / sy
            x1, y1 = max(0.0, bx), max(0.0, by)
            x2, y2 = min(float(w), bx + bw), min(float(h), by + bh)
            lm = [v / (sx if k % 2 == 0 else sy) for k, v in enumerate(lm)]
            faces.append((score, [x1, y1, x2 - x1, y2 - y1], lm))
        return faces, [c[0] for c in kept]

    def embed(self, rgb, landmarks):
        """RGB uint8 array (H, W, 3), 10 landmark coords -> (aligned uint8, unit embedding)."""
        m = umeyama(np.array(landmarks, dtype=np.float64).reshape(5, 2), ARCFACE_DST)
        aligned = warp_affine(rgb, m)
        x = np.ascontiguousarray(aligned.astype(np.float32).transpose(2, 0, 1)[None])
        t = time.perf_counter()
        e = self.rec.run(None, {self.rec_in: x})[0][0].astype(np.float64)
        self.rec_seconds += time.perf_counter() - t
        return aligned, e / np.linalg.norm(e)

    def analyse(self, path, score_thr=0.6, nms_thr=0.3):
        img = load_rgb_on_white(path)
        rgb = np.asarray(img)
        faces, survivors = self.detect(img, score_thr, nms_thr)
        out = []
        for score, box, lm in faces:
            aligned, emb = self.embed(rgb, lm)
            out.append({
                "box": box,
                "score": score,
                "landmarks": lm,
                "blur": blur_score(aligned),
                "embedding": emb.tolist(),
            })
        return {
            "path": path,
            "width": img.size[0],
            "height": img.size[1],
            "faces": out,
            "count_score": count_score(survivors, len(faces)),
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--yunet", required=True)
    ap.add_argument("--sface", required=True)
    ap.add_argument("--score", type=float, default=0.6)
    ap.add_argument("--nms", type=float, default=0.3)
    ap.add_argument("--time", action="store_true", help="add model-only timing")
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    p = Pipeline(a.yunet, a.sface)
    result = {"images": [p.analyse(path, a.score, a.nms) for path in a.images]}
    if a.time:
        n_faces = sum(len(i["faces"]) for i in result["images"])
        result["timing"] = {
            "detector_seconds": p.det_seconds,
            "recognizer_seconds": p.rec_seconds,
            "detector_ms_per_image": 1000 * p.det_seconds / len(a.images),
            "recognizer_ms_per_face": 1000 * p.rec_seconds / n_faces if n_faces else None,
        }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

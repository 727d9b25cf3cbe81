#!/usr/bin/env python3
"""Makes a random multi-label scoring case and its expected metrics, computed with
scikit-learn, as an independent oracle for `iw-lab metrics`.

Writes, under --out:
  images/img_NNN.png     tiny distinct PNGs
  images/img_NNN.txt     ground truth (kohya style); some images have an empty file (labelled,
                         no tags) and some none at all (unlabelled, not scored)
  preds/img_NNN.json     {"tags": {"tag": score}} with float32 scores (some empty), including
                         exact ties and scores exactly at a threshold
  expected.json          {"thresholds": [...], "variants": [{"threshold", "micro", "macro",
                         "samples", "map", "per_tag": [...]}]}

Definitions (as the issue fixes them): a tag is predicted when its float32 score is >= the
threshold (as float32); labels are those present in ground truth or predictions at that
threshold; precision_recall_fscore_support(average=..., zero_division=0); AP per tag with
average_precision_score (missing scores = 0) over tags with at least one positive; mAP = mean.

Needs numpy, pillow, scikit-learn.
"""
import argparse
import json
import os

import numpy as np
from PIL import Image
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

WORDS = ["cat", "dog", "sky", "tree", "red hair", "long hair", "smile", "outdoors", "night",
         "water", "flower", "car", "hat", "^_^", "solo", "1girl", "no humans", "rain", "book",
         "cup", "grass", "building", "cloud", "sword"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--thresholds", default="0.25,0.3,0.5,0.75")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    thresholds = [float(t) for t in a.thresholds.split(",")]
    os.makedirs(os.path.join(a.out, "images"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "preds"), exist_ok=True)
    vocab = WORDS[: 16 + a.seed % 8]
    truth, scores = {}, {}
    for i in range(a.images):
        name = f"img_{i:03d}"
        Image.new("RGB", (4, 4), (i % 256, (i * 7) % 256, 3)).save(os.path.join(a.out, "images", name + ".png"))
        kind = i % 10
        if kind != 9:  # every tenth image is unlabelled
            tags = [] if kind == 8 else list(rng.choice(vocab, size=int(rng.integers(1, 7)), replace=False))
            truth[name] = tags
            with open(os.path.join(a.out, "images", name + ".txt"), "w") as f:
                f.write(", ".join(tags))
        s = {}
        if kind != 7:  # some images have no predictions at all
            for t in rng.choice(vocab, size=int(rng.integers(1, 9)), replace=False):
                r = rng.random()
                if r < 0.1:
                    v = np.float32(0.3)  # exactly at a threshold (as float32)
                elif r < 0.2:
                    v = np.float32(0.5)
                elif r < 0.3:
                    v = np.float32(0.625)  # frequent ties for AP
                else:
                    v = np.float32(rng.random())
                s[str(t)] = v
        scores[name] = s
        with open(os.path.join(a.out, "preds", name + ".json"), "w") as f:
            json.dump({"tags": {k: float(v) for k, v in s.items()}}, f)

    names = sorted(truth)  # only labelled images are scored
    variants = []
    gt_tags = sorted({t for n in names for t in truth[n]})
    # AP: columns with at least one positive; missing scores are 0.
    aps = {}
    for t in gt_tags:
        y = np.array([t in truth[n] for n in names], dtype=int)
        sc = np.array([float(scores[n].get(t, np.float32(0))) for n in names])
        aps[t] = float(average_precision_score(y, sc))
    mean_ap = float(np.mean(list(aps.values()))) if aps else None
    for th in thresholds:
        t32 = np.float32(th)
        pred = {n: [t for t, v in scores[n].items() if v >= t32] for n in names}
        labels = sorted({t for n in names for t in truth[n]} | {t for n in names for t in pred[n]})
        Y = np.array([[t in truth[n] for t in labels] for n in names], dtype=int)
        P = np.array([[t in pred[n] for t in labels] for n in names], dtype=int)
        entry = {"threshold": th}
        for avg in ("micro", "macro", "samples"):
            p, r, f, _ = precision_recall_fscore_support(Y, P, average=avg, zero_division=0)
            entry[avg] = {"precision": float(p), "recall": float(r), "f1": float(f)}
        p, r, f, sup = precision_recall_fscore_support(Y, P, average=None, zero_division=0)
        entry["per_tag"] = [
            {"tag": t, "precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]),
             "support": int(sup[j]), "ap": aps.get(t)}
            for j, t in enumerate(labels)
        ]
        entry["map"] = mean_ap
        entry["images"] = len(names)
        variants.append(entry)
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump({"thresholds": thresholds, "variants": variants}, f, indent=1)


if __name__ == "__main__":
    main()

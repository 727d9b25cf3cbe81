#!/usr/bin/env python3
"""Independent oracle for `iw-lab analyze` and `iw-lab diff` (tests/analyses.rs).

  analyses_case.py make --out DIR --seed S --images N
      writes a random case: DIR/images/{,a/,b/c/}img_NNN.png (some carrying A1111 generation
      parameters with a sampler), their kohya .txt ground truth (some empty, some missing =
      unlabelled), two sidecar prediction folders DIR/preds_a, DIR/preds_b with float32 scores
      (exact ties, scores exactly at thresholds), and DIR/other/ (2 images, for "no shared
      images").

  analyses_case.py check --dump DIR --analyze A.json [--analyze B.json ...] [--diff D.json ...]
      DIR holds what `iw-lab query --json` printed of the run's tables (outputs.jsonl,
      cells.jsonl, ground_truth.jsonl, images.jsonl, run.json with the variants' thresholds);
      recomputes every number of the analyses from those stored scores with scikit-learn and
      NumPy, and fails (exit 1, one line per difference) where iw-lab differs by more than
      TOL = 1e-9. Only the stored scores and labels are shared with iw-lab; every decision
      (float32 thresholds, ratings by argmax, MCut, top-k, break-even, bootstrap draws) is
      recomputed here.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
from PIL import Image, PngImagePlugin
from sklearn.metrics import (average_precision_score, f1_score, precision_recall_curve,
                             precision_recall_fscore_support)

TOL = 1e-9
WORDS = ["1girl", "solo", "long hair", "smile", "outdoors", "sky", "cloud", "red hair",
         "blue eyes", "shirt", "tree", "cat", "flower", "rain", "night", "water", "grass",
         "hatsune miku", "kagamine rin", "hakurei reimu", "general", "sensitive"]
SAMPLERS = ["Euler a", "DPM++ 2M"]


def make(a):
    rng = np.random.default_rng(a.seed)
    out = a.out
    for d in ("images", "images/a", "images/b/c", "preds_a", "preds_a/a", "preds_a/b/c",
              "preds_b", "preds_b/a", "preds_b/b/c", "other"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    for i in range(a.images):
        folder = ["", "a/", "b/c/"][i % 3]
        rel = f"{folder}img_{i:03d}"
        img = Image.new("RGB", (4, 4), (i % 256, (i * 7) % 256, 5))
        info = None
        if i % 4 != 3:
            info = PngImagePlugin.PngInfo()
            info.add_text("parameters", f"1girl, smile\nNegative prompt: bad\nSteps: 20, Sampler: "
                          f"{SAMPLERS[i % 4 % 2]}, CFG scale: 7, Seed: {i}, Size: 4x4, Model: m{i % 2}")
        img.save(os.path.join(out, "images", rel + ".png"), pnginfo=info)
        kind = i % 10
        if kind != 9:  # unlabelled
            tags = [] if kind == 8 else list(rng.choice(WORDS, size=int(rng.integers(1, 7)), replace=False))
            with open(os.path.join(out, "images", rel + ".txt"), "w") as f:
                f.write(", ".join(tags))
        for side in ("preds_a", "preds_b"):
            s = {}
            if kind != 7:
                for t in rng.choice(WORDS[:20], size=int(rng.integers(1, 10)), replace=False):
                    r = rng.random()
                    v = (np.float32(0.3) if r < 0.1 else np.float32(0.5) if r < 0.2
                         else np.float32(0.625) if r < 0.3 else np.float32(rng.random()))
                    s[str(t)] = float(v)
            with open(os.path.join(out, side, rel + ".json"), "w") as f:
                json.dump({"tags": s}, f)
    for i in range(2):
        Image.new("RGB", (4, 4), (200, i, 9)).save(os.path.join(out, "other", f"o{i}.png"))
        with open(os.path.join(out, "other", f"o{i}.txt"), "w") as f:
            f.write("cat")
        for side in ("preds_a", "preds_b"):
            with open(os.path.join(out, side, f"o{i}.json"), "w") as f:
                json.dump({"tags": {"cat": 0.9}}, f)


# ----------------------------------------------------------------------------- checking

ERRORS = []


def close(ours, theirs, what):
    if ours is None or theirs is None:
        if ours is not theirs and not (ours is None and theirs is None):
            ERRORS.append(f"{what}: iw-lab {ours} vs reference {theirs}")
        return
    if isinstance(theirs, (list, tuple)):
        if len(ours) != len(theirs):
            ERRORS.append(f"{what}: length {len(ours)} vs {len(theirs)}")
            return
        for k, (x, y) in enumerate(zip(ours, theirs)):
            close(x, y, f"{what}[{k}]")
        return
    if isinstance(theirs, str):
        if ours != theirs:
            ERRORS.append(f"{what}: iw-lab {ours!r} vs reference {theirs!r}")
        return
    x, y = float(ours), float(theirs)
    if math.isnan(y) and math.isnan(x):
        return
    if not abs(x - y) <= TOL:
        ERRORS.append(f"{what}: iw-lab {x!r} vs reference {y!r}")


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Variant:
    """One variant's stored scores over its scored images."""

    def __init__(self, name, tables, labelled_only=True):
        self.name = name
        imgs = {r["path"]: r for r in tables["images"]}
        cells = {r["path"] for r in tables["cells"] if r["variant"] == name}
        self.paths = sorted(p for p in cells if (imgs[p]["labelled"] or not labelled_only))
        self.labelled = {p: bool(imgs[p]["labelled"]) for p in self.paths}
        self.hash = {p: imgs[p]["image_hash"] for p in self.paths}
        keep = set(self.paths)
        self.scores = {p: {} for p in self.paths}
        self.category = {}
        for r in tables["outputs"]:
            if r["variant"] == name and r["path"] in keep:
                s = np.float32(r["score"])
                old = self.scores[r["path"]].get(r["tag"])
                self.scores[r["path"]][r["tag"]] = s if old is None else max(old, s)
                self.category[r["tag"]] = r["category"]
        self.truth = {p: set() for p in self.paths}
        for r in tables["ground_truth"]:
            if r["path"] in keep and self.labelled[r["path"]]:
                self.truth[r["path"]].add(r["tag"])
        self.tags = sorted({t for p in self.paths for t in self.scores[p]} |
                           {t for p in self.paths for t in self.truth[p]})

    def scored(self):
        return [p for p in self.paths if self.labelled[p]]

    def rating(self, p):
        rs = [(t, s) for t, s in self.scores[p].items() if self.category.get(t) == "rating"]
        if not rs:
            return None
        return sorted(rs, key=lambda x: (-float(x[1]), x[0]))[0][0]

    def nonrating(self, p):
        """(tag, score) stored, score > 0, not a rating; by score desc then tag."""
        xs = [(t, s) for t, s in self.scores[p].items()
              if self.category.get(t) != "rating" and s > 0]
        return sorted(xs, key=lambda x: (-float(x[1]), x[0]))

    def at(self, p, t):
        t32 = np.float32(t)
        out = {tag for tag, s in self.nonrating(p) if s >= t32}
        r = self.rating(p)
        if r is not None:
            out.add(r)
        return out


def prf_sklearn(truth_sets, pred_sets):
    labels = sorted(set().union(*truth_sets, *pred_sets)) if truth_sets else []
    if not labels:
        z = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        return {"micro": z, "macro": z, "samples": z}, 0
    Y = np.array([[t in s for t in labels] for s in truth_sets], dtype=int)
    P = np.array([[t in s for t in labels] for s in pred_sets], dtype=int)
    out = {}
    for avg in ("micro", "macro", "samples"):
        p, r, f, _ = precision_recall_fscore_support(Y, P, average=avg, zero_division=0)
        out[avg] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    return out, len(labels)


def check_scores(ours, truth_sets, pred_sets, what):
    exp, labels = prf_sklearn(truth_sets, pred_sets)
    for avg in ("micro", "macro", "samples"):
        for m in ("precision", "recall", "f1"):
            close(ours[avg][m], exp[avg][m], f"{what}: {avg} {m}")
    close(ours["images"], len(truth_sets), f"{what}: images")
    close(ours["labels"], labels, f"{what}: labels")
    mean_tags = float(np.mean([len(s) for s in pred_sets])) if pred_sets else 0.0
    close(ours["mean_tags"], mean_tags, f"{what}: mean_tags")


def curve_points(y, s):
    """scikit-learn's curve, thresholds > 0 only, descending."""
    y = np.asarray(y, dtype=int)
    s = np.asarray(s, dtype=np.float64)
    if y.sum() == 0 or not (s > 0).any():
        return []
    p, r, th = precision_recall_curve(y, s)
    pts = []
    for k in range(len(th) - 1, -1, -1):
        if th[k] > 0:
            pr, rc = float(p[k]), float(r[k])
            f = 0.0 if pr + rc == 0 else 2 * pr * rc / (pr + rc)
            pts.append((float(th[k]), pr, rc, f))
    return pts


def break_even(pts):
    for i, (t, p, r, _) in enumerate(pts):
        if p - r == 0 and r > 0:
            return (t, p)
        if i > 0:
            t0, p0, r0, _ = pts[i - 1]
            d0, d1 = p0 - r0, p - r
            if d0 > 0 and d1 < 0:
                lam = d0 / (d0 - d1)
                return (t0 + lam * (t - t0), p0 + lam * (p - p0))
    return None


def best_f1(pts):
    best = None
    for pt in pts:
        if pt[3] > (best[3] if best else 0.0) + 1e-12:
            best = pt
    return best


def check_best(ours, pts, what):
    b = best_f1(pts)
    if b is None:
        if ours is not None:
            ERRORS.append(f"{what}: best_f1 {ours} vs none")
        return None
    if ours is None:
        ERRORS.append(f"{what}: no best_f1, reference {b}")
        return None
    close(ours["f1"], b[3], f"{what}: best f1")
    # equal F1 within rounding may sit at another threshold: ours must reach the maximum
    mine = [pt for pt in pts if abs(pt[0] - ours["threshold"]) == 0]
    if not mine or abs(mine[0][3] - b[3]) > TOL:
        ERRORS.append(f"{what}: best-F1 threshold {ours['threshold']} is not a maximum")
    else:
        close(ours["precision"], mine[0][1], f"{what}: best precision")
        close(ours["recall"], mine[0][2], f"{what}: best recall")
    return ours["threshold"]


def check_be(ours, pts, what):
    be = break_even(pts)
    if be is None or ours is None:
        if (be is None) != (ours is None):
            ERRORS.append(f"{what}: break_even {ours} vs {be}")
        return
    close(ours["threshold"], be[0], f"{what}: break-even threshold")
    close(ours["value"], be[1], f"{what}: break-even value")


def in_cat(v, tag, cat):
    c = v.category.get(tag)
    return {"all": True, "general": c == "general", "character": c == "character"}[cat]


def curve_points_fixed(y, s, fixed_tp, fixed_fp, positives):
    """The curve with predictions made at every threshold (ratings, by argmax) added to each
    point: over the distinct scores > 0, descending."""
    if positives == 0:
        return []
    pairs = sorted(((float(x), bool(t)) for x, t in zip(s, y) if x > 0), key=lambda p: -p[0])
    pts, tp, fp, i = [], fixed_tp, fixed_fp, 0
    while i < len(pairs):
        th = pairs[i][0]
        while i < len(pairs) and pairs[i][0] == th:
            tp += pairs[i][1]
            fp += not pairs[i][1]
            i += 1
        pr = tp / (tp + fp) if tp + fp else 0.0
        rc = tp / positives
        f = 0.0 if pr + rc == 0 else 2 * pr * rc / (pr + rc)
        pts.append((th, pr, rc, f))
    return pts


def check_variant_analysis(v, va, tables, thresholds, by_values):
    name = v.name
    imgs = v.scored()
    close(va["images"], len(imgs), f"{name}: images")
    # sweeps
    best_by_cat = {}
    for sw in va["sweeps"]:
        cat = sw["category"]
        # Thresholded pairs, and ratings (in `all`): predicted by argmax at every threshold.
        y, s, ry, rp = [], [], [], []
        for p in imgs:
            top = v.rating(p)
            for t in set(v.scores[p]) | v.truth[p]:
                if not in_cat(v, t, cat):
                    continue
                if v.category.get(t) == "rating":
                    ry.append(t in v.truth[p])
                    rp.append(t == top)
                else:
                    y.append(t in v.truth[p])
                    s.append(float(v.scores[p].get(t, 0.0)))
        what = f"{name} sweep {cat}"
        positives = int(sum(y) + sum(ry))
        close(sw["positives"], positives, f"{what}: positives")
        if ry:
            fixed_tp = sum(1 for a, b in zip(ry, rp) if a and b)
            fixed_fp = sum(1 for a, b in zip(ry, rp) if b and not a)
            pts = curve_points_fixed(y, s, fixed_tp, fixed_fp, positives)
        else:
            pts = curve_points(y, s)
        close(sw["curve_points"], len(pts) if positives else sw["curve_points"], f"{what}: points")
        best_by_cat[cat] = check_best(sw["best_f1"], pts, what)
        check_be(sw["break_even"], pts, what)
        ya = np.array(y + ry, dtype=int)
        sa = np.array(s, dtype=np.float32)
        for g in sw["grid"]:
            pred = np.concatenate([(sa > 0) & (sa >= np.float32(g["threshold"])),
                                   np.array(rp, dtype=bool)])
            if len(ya) == 0:
                exp = (0.0, 0.0, 0.0)
            else:
                p_, r_, f_, _ = precision_recall_fscore_support(ya, pred.astype(int), average="binary", zero_division=0)
                exp = (float(p_), float(r_), float(f_))
            for k, m in enumerate(("precision", "recall", "f1")):
                close(g[m], exp[k], f"{what} @ {g['threshold']}: {m}")
    # per-tag curves
    tag_best = {}
    if "tag_curves" in va:
        curves = {c["tag"]: c for c in va["tag_curves"]}
        expected_tags = [t for t in v.tags if v.category.get(t) != "rating"
                         and any(t in v.truth[p] for p in imgs)]
        close(sorted(curves), sorted(expected_tags), f"{name}: tags with curves")
        for t in expected_tags:
            c = curves.get(t)
            if c is None:
                continue
            y = [t in v.truth[p] for p in imgs]
            s = [float(v.scores[p].get(t, 0.0)) for p in imgs]
            pts = curve_points(y, s)
            what = f"{name} curve `{t}`"
            close(len(c["points"]), len(pts), f"{what}: points")
            for a, b in zip(c["points"], pts):
                close([a["threshold"], a["precision"], a["recall"], a["f1"]], list(b), f"{what}: point")
            tag_best[t] = check_best(c["best_f1"], pts, what)
            check_be(c["break_even"], pts, what)
    # post-processing
    truth_sets = [v.truth[p] for p in imgs]
    for pol in va["postprocess"]:
        k = pol["policy"]
        what = f"{name} post-processing {pol['name']}"
        if k["kind"] == "threshold":
            preds = [v.at(p, k["threshold"]) for p in imgs]
        elif k["kind"] == "category_thresholds":
            for c, t in k["thresholds"].items():
                close(t, best_by_cat.get(c), f"{what}: tuned {c} threshold")
            preds = []
            for p in imgs:
                s = {tag for tag, sc in v.nonrating(p)
                     if sc >= np.float32(k["thresholds"].get(v.category.get(tag), k["default"]))}
                r = v.rating(p)
                preds.append(s | ({r} if r else set()))
        elif k["kind"] == "tag_thresholds":
            close(k["default"], best_by_cat.get("all"), f"{what}: default threshold")
            preds = []
            for p in imgs:
                s = set()
                for tag, sc in v.nonrating(p):
                    th = tag_best.get(tag)
                    th = k["default"] if th is None else th
                    if sc >= np.float32(th):
                        s.add(tag)
                r = v.rating(p)
                preds.append(s | ({r} if r else set()))
        elif k["kind"] == "mcut":
            preds = []
            for p in imgs:
                xs = v.nonrating(p)
                sc = [float(s) for _, s in xs]
                if len(sc) < 2:
                    keep = len(sc)
                else:
                    gaps = [np.float32(sc[i]) - np.float32(sc[i + 1]) for i in range(len(sc) - 1)]
                    keep = int(np.argmax(gaps)) + 1
                r = v.rating(p)
                preds.append({t for t, _ in xs[:keep]} | ({r} if r else set()))
        elif k["kind"] == "top_k":
            preds = []
            for p in imgs:
                r = v.rating(p)
                preds.append({t for t, _ in v.nonrating(p)[:k["k"]]} | ({r} if r else set()))
        elif k["kind"] == "max_tags":
            preds = []
            for p in imgs:
                xs = [t for t, s in v.nonrating(p) if s >= np.float32(k["threshold"])][:k["max"]]
                r = v.rating(p)
                preds.append(set(xs) | ({r} if r else set()))
        else:
            ERRORS.append(f"{what}: unknown kind {k['kind']}")
            continue
        check_scores(pol, truth_sets, preds, what)
    # tag statistics
    t0 = va["threshold"]
    ts = va["tag_stats"]
    preds = {p: v.at(p, t0) for p in imgs}
    fp, fn, truth_n, pred_n = {}, {}, {}, {}
    for p in imgs:
        for t in preds[p]:
            pred_n[t] = pred_n.get(t, 0) + 1
            if t not in v.truth[p]:
                fp[t] = fp.get(t, 0) + 1
        for t in v.truth[p]:
            truth_n[t] = truth_n.get(t, 0) + 1
            if t not in preds[p]:
                fn[t] = fn.get(t, 0) + 1
    for f in ts["frequencies"]:
        close([f["truth"], f["predicted"]], [truth_n.get(f["tag"], 0), pred_n.get(f["tag"], 0)],
              f"{name} frequency `{f['tag']}`")
    close(len(ts["frequencies"]), len(set(truth_n) | set(pred_n)), f"{name}: frequency rows")
    for key, ref in (("false_positives", fp), ("false_negatives", fn)):
        got = {c["tag"]: c["count"] for c in ts[key]}
        if got != ref:
            ERRORS.append(f"{name} {key}: iw-lab {got} vs reference {ref}")
    never = {t: n for t, n in truth_n.items() if t not in v.category}
    cov = ts["coverage"]
    if {c["tag"]: c["count"] for c in cov["never_output"]} != never:
        ERRORS.append(f"{name} never output: {cov['never_output']} vs {never}")
    close(cov["truth_tags"], len(truth_n), f"{name}: truth tags")
    close(cov["misses_never_output"], sum(fn.get(t, 0) for t in never), f"{name}: misses never output")
    close(cov["misses_ordinary"], sum(n for t, n in fn.items() if t not in never), f"{name}: ordinary misses")
    # groups
    if "groups" in va:
        g = va["groups"]
        values = by_values[g["by"]]
        members = {}
        for p in imgs:
            for val in sorted(set(values.get(p, ["(none)"]))):
                members.setdefault(val, []).append(p)
        close(sorted(x["value"] for x in g["groups"]), sorted(members), f"{name}: groups by {g['by']}")
        for x in g["groups"]:
            ps = members.get(x["value"], [])
            check_scores(x, [v.truth[p] for p in ps], [v.at(p, g["threshold"]) for p in ps],
                         f"{name} group {g['by']}={x['value']}")


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next(self):
        M = 0xFFFFFFFFFFFFFFFF
        self.state = (self.state + 0x9E3779B97F4A7C15) & M
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        return z ^ (z >> 31)

    def below(self, n):
        return (self.next() * n) >> 64


def boot_stats(v, t, paths, idx):
    labels = sorted({x for p in paths for x in v.scores[p]} | {x for p in paths for x in v.truth[p]})
    Y = np.array([[x in v.truth[p] for x in labels] for p in paths], dtype=int)[idx]
    P = np.array([[x in v.at(p, t) for x in labels] for p in paths], dtype=int)[idx]
    S = np.array([[float(v.scores[p].get(x, 0.0)) for x in labels] for p in paths])[idx]
    f1 = float(f1_score(Y, P, average="micro", zero_division=0))
    aps = [average_precision_score(Y[:, j], S[:, j]) for j in range(len(labels)) if Y[:, j].sum() > 0]
    return f1, (float(np.mean(aps)) if aps else float("nan"))


def check_bootstrap(b, variants, thresholds_used):
    B, seed, conf = b["resamples"], b["seed"], b["confidence"]
    lo, hi = 100 * (1 - conf) / 2, 100 * (1 + conf) / 2
    for ci in b["variants"]:
        v = variants[ci["variant"]]
        paths = v.scored()
        n = len(paths)
        rng = SplitMix64(seed)
        draws = [[rng.below(n) for _ in range(n)] for _ in range(B)]
        t = ci["threshold"]
        f_est, m_est = boot_stats(v, t, paths, list(range(n)))
        vals = [boot_stats(v, t, paths, d) for d in draws]
        f = [x[0] for x in vals]
        m = [x[1] for x in vals if not math.isnan(x[1])]
        what = f"bootstrap {ci['variant']}"
        close([ci["f1_micro"]["estimate"], ci["f1_micro"]["low"], ci["f1_micro"]["high"]],
              [f_est, np.percentile(f, lo), np.percentile(f, hi)], f"{what} f1")
        close([ci["map"]["estimate"], ci["map"]["low"], ci["map"]["high"]],
              [m_est, np.percentile(m, lo), np.percentile(m, hi)], f"{what} map")
    for pd in b["paired"]:
        va, vb = variants[pd["a"]], variants[pd["b"]]
        common = sorted(set(va.scored()) & set(vb.scored()))
        n = len(common)
        close(pd["images"], n, "paired images")
        rng = SplitMix64(seed)
        draws = [[rng.below(n) for _ in range(n)] for _ in range(B)]
        ta, tb = thresholds_used[pd["a"]], thresholds_used[pd["b"]]
        k = 0 if pd["metric"] == "f1_micro" else 1
        est = boot_stats(vb, tb, common, list(range(n)))[k] - boot_stats(va, ta, common, list(range(n)))[k]
        d = [boot_stats(vb, tb, common, x)[k] - boot_stats(va, ta, common, x)[k] for x in draws]
        d = [x for x in d if not math.isnan(x)]
        what = f"paired {pd['b']} - {pd['a']} {pd['metric']}"
        close([pd["diff"]["estimate"], pd["diff"]["low"], pd["diff"]["high"], pd["b_better"]],
              [est, np.percentile(d, lo), np.percentile(d, hi), float(np.mean(np.array(d) > 0))], what)


def check_cooccurrence(co, tables):
    lab = sorted(r["path"] for r in tables["images"] if r["labelled"])
    sets = {p: set() for p in lab}
    for r in tables["ground_truth"]:
        if r["path"] in sets:
            sets[r["path"]].add(r["tag"])
    n = len(lab)
    close(co["images"], n, "co-occurrence images")
    single, pairs = {}, {}
    for s in sets.values():
        ts = sorted(s)
        for a in ts:
            single[a] = single.get(a, 0) + 1
        for i, a in enumerate(ts):
            for b in ts[i + 1:]:
                pairs[(a, b)] = pairs.get((a, b), 0) + 1
    eligible = {k: c for k, c in pairs.items() if c >= co["min_count"]}
    got = co["pairs"]
    for p in got:
        key = (p["a"], p["b"])
        c = pairs.get(key, 0)
        ca, cb = single.get(p["a"], 0), single.get(p["b"], 0)
        lift = c * n / (ca * cb) if ca and cb else float("nan")
        close([p["count"], p["count_a"], p["count_b"], p["lift"], p["pmi"]],
              [c, ca, cb, lift, float(np.log(lift))], f"pair {key}")
    if len(got) < len(eligible):
        worst = min(p["count"] for p in got) if got else 0
        missing = [k for k, c in eligible.items() if c > worst and k not in {(p["a"], p["b"]) for p in got}]
        if missing:
            ERRORS.append(f"co-occurrence: pairs more frequent than listed ones are missing: {missing[:5]}")
    else:
        close(len(got), len(eligible), "co-occurrence pairs")


def check_diff(d, tables_a, tables_b):
    va = Variant(d["a"]["variant"], tables_a, labelled_only=False)
    vb = Variant(d["b"]["variant"], tables_b, labelled_only=False)
    ha = {}
    for p in va.paths:
        ha.setdefault(va.hash[p], p)
    hb = {}
    for p in vb.paths:
        hb.setdefault(vb.hash[p], p)
    shared = sorted(set(ha) & set(hb))
    close([d["shared_images"], d["only_a"], d["only_b"]],
          [len(shared), len(ha) - len(shared), len(hb) - len(shared)], "diff image counts")
    ta, tb = d["a"]["threshold"], d["b"]["threshold"]
    gained, lost, changed = {}, {}, {}
    counts = {"a": {}, "b": {}}
    for h in shared:
        pa, pb = ha[h], hb[h]
        sa, sb = va.at(pa, ta), vb.at(pb, tb)
        g, l = sorted(sb - sa), sorted(sa - sb)
        for t in g:
            gained[t] = gained.get(t, 0) + 1
        for t in l:
            lost[t] = lost.get(t, 0) + 1
        if g or l:
            changed[h] = (g, l)
        for side, v, p, s in (("a", va, pa, sa), ("b", vb, pb, sb)):
            if v.labelled[p]:
                for t in s | v.truth[p]:
                    c = counts[side].setdefault(t, [0, 0, 0])
                    c[0] += t in s and t in v.truth[p]
                    c[1] += t in s and t not in v.truth[p]
                    c[2] += t not in s and t in v.truth[p]
    close(d["tags_gained"], sum(gained.values()), "diff tags gained")
    close(d["tags_lost"], sum(lost.values()), "diff tags lost")
    rows = {r["tag"]: r for r in d["tags"]}
    for t in set(gained) | set(lost):
        if t not in rows:
            ERRORS.append(f"diff: no row for changed tag `{t}`")
    for t, r in rows.items():
        close([r["gained"], r["lost"]], [gained.get(t, 0), lost.get(t, 0)], f"diff `{t}` gained/lost")
        for side in ("a", "b"):
            tp, fp, fn = counts[side].get(t, [0, 0, 0])
            y = [1] * tp + [0] * fp + [1] * fn
            pr = [1] * tp + [1] * fp + [0] * fn
            if y:
                p_, r_, _, _ = precision_recall_fscore_support(y, pr, average="binary", zero_division=0)
            else:
                p_, r_ = 0.0, 0.0
            close([r[f"precision_{side}"], r[f"recall_{side}"], r[f"support_{side}"]],
                  [float(p_), float(r_), tp + fn], f"diff `{t}` side {side}")
    for im in d["images"]:
        g, l = changed.get(im["image_hash"], ([], []))
        close([sorted(im["gained"]), sorted(im["lost"])], [g, l], f"diff image {im['path_a']}")
    if len(d["images"]) > 0:
        sizes = sorted((len(g) + len(l) for g, l in changed.values()), reverse=True)
        close([len(i["gained"]) + len(i["lost"]) for i in d["images"]], sizes[:len(d["images"])],
              "diff: images that changed most")


def load_tables(dump):
    t = {k: jsonl(os.path.join(dump, f"{k}.jsonl"))
         for k in ("outputs", "cells", "ground_truth", "images", "loras")}
    with open(os.path.join(dump, "run.json")) as f:
        t["run"] = json.load(f)
    return t


def check(a):
    tables = load_tables(a.dump)
    by_values = {"folder": {}, "sampler": {}, "generator": {}, "model": {}, "lora": {}}
    for r in tables["images"]:
        for k in ("folder", "sampler", "generator", "model"):
            by_values[k][r["path"]] = [r[k] if r[k] is not None else "(none)"]
    for r in tables["loras"]:
        by_values["lora"].setdefault(r["path"], []).append(r["lora"])
    for path in a.analyze:
        with open(path) as f:
            an = json.load(f)
        variants = {}
        used = {}
        for va in an["variants"]:
            v = Variant(va["variant"], tables)
            variants[v.name] = v
            used[v.name] = va["threshold"]
            check_variant_analysis(v, va, tables, None, by_values)
        check_cooccurrence(an["cooccurrence"], tables)
        if "bootstrap" in an:
            check_bootstrap(an["bootstrap"], variants, used)
    for path in a.diff:
        with open(path) as f:
            d = json.load(f)
        other = load_tables(a.other) if a.other else tables
        check_diff(d, tables, other)
    if ERRORS:
        print("\n".join(ERRORS[:60]), file=sys.stderr)
        print(f"{len(ERRORS)} differences", file=sys.stderr)
        sys.exit(1)
    print("ok")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--images", type=int, default=60)
    c = sub.add_parser("check")
    c.add_argument("--dump", required=True)
    c.add_argument("--other", help="dump of side B's run for --diff (default: --dump)")
    c.add_argument("--analyze", action="append", default=[])
    c.add_argument("--diff", action="append", default=[])
    a = ap.parse_args()
    make(a) if a.cmd == "make" else check(a)


if __name__ == "__main__":
    main()

"""Two builds of iw-lab side by side: the throughput, warm-rerun and analyses workloads of
`throughput.py`, `warm_rerun.py` and `analyses.py`, each run by a baseline binary (an older
build, e.g. main before a refactor) and the candidate (this checkout's release build),
alternating within every repeat so both see the same machine state. Each binary works in its
own copy of the project (same images, same models), so neither serves the other's cache.

    .venv/bin/python benches/versus.py --baseline /path/to/old/iw-lab [--repeats 5]

Prints JSON: per workload, both binaries' wall times, their medians, candidate/baseline of
the medians and the median of the per-repeat ratios (below 1 is faster).
"""
import argparse
import json
import shutil
import tempfile
from pathlib import Path

import analyses
import common
import warm_rerun as warm_rerun_bench


def alternate(cmds, repeats, check):
    """Runs each binary's command `repeats` times, alternating; returns the wall times."""
    walls = {k: [] for k in cmds}
    for _ in range(repeats):
        for name, (cmd, cwd) in cmds.items():
            wall, p = common.run(cmd, cwd=cwd)
            check(p)
            walls[name].append(wall)
    return walls


def summary(walls):
    med = {k: common.median(v) for k, v in walls.items()}
    return {
        "wall_s": {k: [round(x, 3) for x in v] for k, v in walls.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "candidate_over_baseline": round(med["candidate"] / med["baseline"], 3),
        # Each repeat runs both back to back: the median of those pairs' ratios is steadier
        # than the ratio of medians on a machine whose load drifts.
        "paired_ratio_median": round(common.median(
            [c / b for b, c in zip(walls["baseline"], walls["candidate"])]), 3),
    }


def throughput(tmp, exes, n, repeats):
    """decode → preprocess → infer → store of n fixture-derived images, WD-shaped 448 px model."""
    common.make_images(tmp / "images", n)
    model = common.tagger_model(tmp / "model")
    cmds = {}
    for name, exe in exes.items():
        proj = tmp / f"proj-{name}"
        common.write_project(proj, tmp / "images", {
            "wd": f"kind: onnx-tagger\nsource: {model / 'model.onnx'}\npreset: wd\nlabels: {model / 'selected_tags.csv'}\n",
        })
        (proj / "experiments" / "bench.yaml").write_text("dataset: bench\nvariants:\n  - model: wd\n")
        common.run([exe, "run", "bench", "--quiet", "--no-cache"], cwd=proj)  # warm up
        cmds[name] = ([exe, "run", "bench", "--quiet", "--no-cache", "--json"], proj)

    def check(p):
        assert json.loads(p.stdout)["inferences"] == n, p.stdout

    walls = alternate(cmds, repeats, check)
    out = summary(walls)
    out["images_per_s"] = {k: round(n / common.median(v), 2) for k, v in walls.items()}
    return out


def warm_rerun(tmp, exes, n, repeats):
    """Rerun of a finished n-image × 6-model experiment (every cell a cache hit)."""
    common.noise_images(tmp / "images", n)
    models = warm_rerun_bench.six_models(tmp)
    cmds = {}
    for name, exe in exes.items():
        proj = tmp / f"proj-{name}"
        warm_rerun_bench.write_project(proj, tmp / "images", models)
        _, p = common.run([exe, "run", "six", "--quiet", "--json"], cwd=proj)
        assert json.loads(p.stdout)["inferences"] == 6 * n, p.stdout
        cmds[name] = ([exe, "run", "six", "--quiet", "--json"], proj)

    def check(p):
        d = json.loads(p.stdout)
        assert d["inferences"] == 0 and d["cache_hits"] == 6 * n, d

    return summary(alternate(cmds, repeats, check))


def analyses_bench(tmp, exes, n, tags, repeats):
    """`metrics`, `analyze` and `analyze --bootstrap 200` over n images × 2 sidecar variants."""
    analyses.make(tmp / "data", n, tags)
    runs = {}
    for name, exe in exes.items():
        proj = tmp / f"proj-{name}"
        analyses.write_project(proj, tmp / "data")
        _, p = common.run([exe, "run", "syn", "--quiet", "--json"], cwd=proj)
        runs[name] = (exe, proj, json.loads(p.stdout)["run_id"])
    out = {}
    for label, args in (
        ("metrics", ["metrics"]),
        ("analyze", ["analyze"]),
        ("analyze_bootstrap_200", ["analyze", "--bootstrap", "200"]),
    ):
        cmds = {
            name: ([exe, args[0], run_id, "--json", *args[1:]], proj)
            for name, (exe, proj, run_id) in runs.items()
        }
        out[label] = summary(alternate(cmds, repeats, lambda p: json.loads(p.stdout)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, help="the older iw-lab binary")
    ap.add_argument("--candidate", help="the newer binary (default: this checkout's release build)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", choices=["throughput", "warm_rerun", "analyses"], action="append")
    a = ap.parse_args()
    exes = {"baseline": a.baseline, "candidate": a.candidate or common.binary()}
    for exe in exes.values():
        if not Path(exe).is_file():
            raise SystemExit(f"{exe}: not found")
    only = a.only or ["throughput", "warm_rerun", "analyses"]
    result = {"benchmark": "versus", "binaries": exes, "repeats": a.repeats}
    with tempfile.TemporaryDirectory(prefix="iw-versus-") as tmp:
        tmp = Path(tmp)
        if "throughput" in only:
            result["throughput_200_images"] = throughput(tmp / "t", exes, 200, a.repeats)
            shutil.rmtree(tmp / "t")
        if "warm_rerun" in only:
            result["warm_rerun_1000x6"] = warm_rerun(tmp / "w", exes, 1000, a.repeats)
            shutil.rmtree(tmp / "w")
        if "analyses" in only:
            result["analyses_10000x2x50"] = analyses_bench(tmp / "a", exes, 10000, 50, a.repeats)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Face detection + embedding throughput, all in one run on the same images:

- iw-lab: `iw-lab run` of a `faces` variant (YuNet + SFace, min_size 0 so every face is
  embedded, as the peer does) with --no-cache in a fresh project; the pipeline's own time
  (`timings.infer_s`: read, decode, letterbox, detect, align, embed, store) and the whole
  command's wall time;
- the tuned Python peer (benches/faces_python.py: onnxruntime with spinning off, decode on a
  thread pool ahead of inference, vectorised numpy), in-process after a warm-up pass;
  one iw-lab run and one peer run per round, interleaved, medians over the rounds;
- the models alone: the peer's time inside the two sessions' run() calls (the limit).

The images: tests/reference/make_face_set.py's set (35 images, 33 faces), each re-encoded at
four JPEG qualities so the run has 140 distinct files.

    .venv/bin/python benches/faces_throughput.py [--repeats 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def make_set(out):
    raw = Path(out) / "raw"
    subprocess.run([sys.executable, str(ROOT / "tests/reference/make_face_set.py"), "--out", str(raw),
                    "--astronaut", str(ROOT / "datasets/demo/astronaut.jpg"),
                    "--camera", str(ROOT / "datasets/demo/camera.png"),
                    "--kafka", str(ROOT / "tests/fixtures/clip/franz-kafka.jpg")], check=True,
                   stdout=subprocess.DEVNULL)
    from PIL import Image
    images = Path(out) / "images"
    images.mkdir()
    n = 0
    for f in sorted(raw.rglob("*.jpg")):
        im = Image.open(f).convert("RGB")
        for q in (95, 94, 93, 92):
            im.save(images / f"{n:03d}_q{q}.jpg", quality=q)
        n += 1
    return images


def iw_lab(images, model_files, repeats):
    out = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as proj:
            p = Path(proj)
            for d in ("datasets", "models", "experiments"):
                (p / d).mkdir()
            model = (ROOT / "models/faces.yaml").read_text().replace("min_size: 50", "min_size: 0")
            (p / "models/faces.yaml").write_text(model)
            (p / "datasets/set.yaml").write_text(f"path: {images}\n")
            (p / "experiments/e.yaml").write_text("dataset: set\nvariants:\n  - model: faces\n")
            import time
            t = time.perf_counter()
            r = subprocess.run([common.binary(), "run", "e", "--no-cache", "--json", "-q"], cwd=p,
                               capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t
            j = json.loads(r.stdout)
            out.append((j["timings"]["infer_s"], wall))
            show = json.loads(subprocess.run([common.binary(), "runs", "show", "latest", "--json"], cwd=p,
                                             capture_output=True, text=True, check=True).stdout)
            for f in show["models"]["faces"]["files"]:
                model_files[f["role"]] = f["path"]
    return out


def python_peer(images, files, repeats=1):
    return json.loads(subprocess.run([sys.executable, str(ROOT / "benches/faces_python.py"), "--yunet", files["detector"],
                                      "--sface", files["recognizer"], "--threads", str(os.cpu_count() or 2),
                                      "--repeats", str(repeats), str(images)],
                                     capture_output=True, text=True, check=True).stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = make_set(tmp)
        n = len(list(images.iterdir()))
        files = {}
        # Interleaved, one of each per round, so a drift of the machine hits both alike.
        ours, peer = [], []
        for _ in range(args.repeats):
            ours += iw_lab(images, files, 1)
            peer.append(python_peer(images, files))
        infer = statistics.median(o[0] for o in ours)
        wall = statistics.median(o[1] for o in ours)
        py_s = statistics.median(p["seconds"] for p in peer)
        models = statistics.median(p["model_seconds"] for p in peer)
        print(json.dumps({
            "images": n,
            "faces": peer[0]["faces"],
            "rounds": args.repeats,
            "iw_lab_pipeline_s": round(infer, 3),
            "iw_lab_command_s": round(wall, 3),
            "python_s": round(py_s, 3),
            "models_alone_s": round(models, 3),
            "iw_lab_images_per_s": round(n / infer, 1),
            "python_images_per_s": round(n / py_s, 1),
            "speedup_vs_python": round(py_s / infer, 2),
            "ratio_to_models_alone": round(infer / models, 2),
            "iw_lab_all_s": [round(o[0], 3) for o in ours],
            "python_all_s": [round(p["seconds"], 3) for p in peer],
        }, indent=1))


if __name__ == "__main__":
    main()

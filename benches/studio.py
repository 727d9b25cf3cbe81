#!/usr/bin/env python3
"""The studio at scale: `iw-lab serve` on a generated folder of small images.

    python3 benches/studio.py --bin target/release/iw-lab [--images 100000] [--json OUT]

Measures, against the issue's targets:
- browse: start-up (scan + loading the listing), the grid's first page (JSON, then its 120
  thumbnails fetched 6 at a time as a browser does, cold and warm), filtering by two tags and
  sorting (median and p95 over 20 tag pairs), autocomplete over the folder's distinct tags, and
  the server's peak memory (VmHWM);
- tagging: a tag save's round trip (p50/p99 over 500 saves on one keep-alive connection),
  autocomplete over 50,000 distinct tags, and 8 clients making 1,000 edits each on 24
  overlapping images (accepted, stale 409s; every accepted edit in the log; each file equal to
  the last accepted write).

Floors, measured in the same run: the studio's cheapest endpoint (`/api/info`, the HTTP round
trip itself) and the disk's durable write (write + fsync + rename + fsync of the folder, and an
fsynced log append, as every save does), so each figure is also a ratio to what the machine
allows.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import zlib


def png(seed):
    """An 8x8 RGB PNG whose pixels depend on seed (so every file hashes differently)."""
    rnd = random.Random(seed)
    rows = b"".join(b"\x00" + bytes(rnd.randrange(256) for _ in range(24)) for _ in range(8))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b""))


def make_folder(root, n, vocab, per_image, seed=1):
    rnd = random.Random(seed)
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    for i in range(n):
        sub = os.path.join(root, "f%03d" % (i // 1000))
        if i % 1000 == 0:
            os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "i%06d.png" % i), "wb") as f:
            f.write(png(i))
        tags = set(rnd.choices(vocab, weights, k=per_image))
        with open(os.path.join(sub, "i%06d.txt" % i), "w") as f:
            f.write(", ".join(sorted(tags)))


class Server:
    def __init__(self, binary, args, cwd):
        t0 = time.perf_counter()
        self.p = subprocess.Popen([binary, "serve", *args], cwd=cwd, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline()
        self.ready_s = time.perf_counter() - t0
        url = [w for w in line.split() if w.startswith("http://")][0]
        self.base, self.token = url.split("/?token=")
        self.host, port = self.base[len("http://"):].split(":")
        self.port = int(port)

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def get(self, conn, path):
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()

    def send(self, conn, method, path, body):
        data = json.dumps(body).encode()
        conn.request(method, path, body=data, headers={
            "Content-Type": "application/json", "X-IW-Token": self.token,
            "Origin": self.base})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")

    def peak_mb(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def stop(self):
        self.p.kill()
        self.p.wait()


def timed(fn, repeat):
    out = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))]


def disk_floor(folder, repeat=300):
    """What one durable save costs the disk: atomic replace + fsynced log append."""
    d = os.open(folder, os.O_RDONLY)
    log = open(os.path.join(folder, "floor.jsonl"), "ab")

    def once(i):
        tmp = os.path.join(folder, ".floor.tmp")
        with open(tmp, "wb") as f:
            f.write(b"tag %d, other" % i)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(folder, "floor.txt"))
        os.fsync(d)
        log.write(b'{"edit": %d}\n' % i)
        log.flush()
        os.fdatasync(log.fileno())

    ms = timed(once, repeat)
    os.close(d)
    return ms


def bench_browse(binary, work, n, out, keep=None):
    vocab = ["tag%05d" % i for i in range(50000)]
    folder = keep or os.path.join(work, "browse")
    marker = os.path.join(folder, ".complete-%d" % n)
    if not os.path.exists(marker):
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        make_folder(folder, n, vocab, 12)
        out["browse_generate_s"] = round(time.perf_counter() - t0, 1)
        open(marker, "w").close()
    project = os.path.join(work, "proj")
    os.makedirs(project, exist_ok=True)
    for run in ("cold", "warm"):
        s = Server(binary, [folder, "--port", "0"], project)
        out["browse_ready_s_" + run] = round(s.ready_s, 2)
        c = s.conn()
        floor = timed(lambda i: s.get(c, "/api/info"), 50)
        out["http_floor_ms_p50"] = round(statistics.median(floor), 3)
        t0 = time.perf_counter()
        status, body = s.get(c, "/api/grid/page?limit=120")
        assert status == 200, body
        page = json.loads(body)
        page_ms = (time.perf_counter() - t0) * 1000
        thumbs = [it["thumb"] + "?size=256" for it in page["items"]]
        t1 = time.perf_counter()
        fetch_parallel(s, thumbs, 6)
        out["first_page_json_ms_" + run] = round(page_ms, 1)
        out["first_page_with_thumbs_ms_" + run] = round(page_ms + (time.perf_counter() - t1) * 1000, 1)
        pairs = [(vocab[i], vocab[i + 1]) for i in range(20)]
        q = timed(lambda i: s.get(c, "/api/grid/page?limit=120&sort=tags&q=%s+%s" % pairs[i]), 20)
        out["filter2_sort_ms_p50_" + run] = round(statistics.median(q), 1)
        out["filter2_sort_ms_p95_" + run] = round(pct(q, 95), 1)
        ac = timed(lambda i: s.get(c, "/api/grid/complete?q=tag%03d" % (i * 7)), 30)
        out["browse_autocomplete_ms_p50_" + run] = round(statistics.median(ac), 1)
        out["browse_autocomplete_ms_p95_" + run] = round(pct(ac, 95), 1)
        out["browse_peak_mb_" + run] = round(s.peak_mb(), 1)
        s.stop()
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)


def fetch_parallel(s, paths, workers):
    todo = list(paths)
    lock = threading.Lock()

    def work():
        c = s.conn()
        while True:
            with lock:
                if not todo:
                    return
                p = todo.pop()
            status, body = s.get(c, p)
            assert status == 200, (p, status, body[:200])

    ts = [threading.Thread(target=work) for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def bench_tagging(binary, work, out):
    src = os.path.join(work, "shoot")
    os.makedirs(src)
    for i in range(1000):
        with open(os.path.join(src, "p%04d.png" % i), "wb") as f:
            f.write(png(10_000_000 + i))
    project = os.path.join(work, "proj")
    os.makedirs(project, exist_ok=True)
    s = Server(binary, ["--tag", src], project)
    outdir = os.path.join(src, "out")
    # 50,000 distinct tags in the session (50 per image), written as another tool would, then
    # the studio restarted so it counts them.
    for i in range(1000):
        with open(os.path.join(outdir, "img_%04d.txt" % (i + 1)), "w") as f:
            f.write(", ".join("word%02d thing%05d" % (j, i * 50 + j) for j in range(50)))
    s.stop()
    s = Server(binary, ["--tag", src], project)
    c = s.conn()
    status, body = s.get(c, "/api/tag/tags?limit=1")
    out["tagging_distinct_tags"] = json.loads(body)["distinct"]
    ac = timed(lambda i: s.get(c, "/api/tag/tags?limit=12&q=" + urllib.parse.quote("thing%03d" % (i * 3))), 100)
    out["tag_autocomplete_ms_p50"] = round(statistics.median(ac), 2)
    out["tag_autocomplete_ms_p99"] = round(pct(ac, 99), 2)
    versions = {}

    def save(i):
        img = 1000 - 1 - (i % 200)
        if img not in versions:
            _, b = s.get(c, "/api/tag/items/%d" % img)
            versions[img] = json.loads(b)["version"]
        st, r = s.send(c, "PUT", "/api/tag/items/%d" % img, {"tags": ["bench %d" % i, "x"], "version": versions[img]})
        assert st == 200, r
        versions[img] = r["version"]

    saves = timed(save, 500)
    out["tag_save_ms_p50"] = round(statistics.median(saves), 2)
    out["tag_save_ms_p99"] = round(pct(saves, 99), 2)
    floor = disk_floor(work)
    out["disk_floor_ms_p50"] = round(statistics.median(floor), 2)
    out["disk_floor_ms_p99"] = round(pct(floor, 99), 2)
    out.update(load(s, outdir, clients=8, edits=1000, images=24))
    out["tagging_peak_mb"] = round(s.peak_mb(), 1)
    s.stop()


def load(s, outdir, clients, edits, images):
    counts = {"accepted": 0, "stale": 0, "other": 0}
    lock = threading.Lock()

    def client(k):
        c = s.conn()
        rnd = random.Random(k)
        version = {}
        for n in range(edits):
            img = rnd.randrange(images)
            if img not in version:
                _, b = s.get(c, "/api/tag/items/%d" % img)
                version[img] = json.loads(b)["version"]
            st, r = s.send(c, "PUT", "/api/tag/items/%d" % img, {"tags": ["c%d e%d" % (k, n)], "version": version[img]})
            with lock:
                if st == 200:
                    counts["accepted"] += 1
                    version[img] = r["version"]
                elif st == 409:
                    counts["stale"] += 1
                    version[img] = r["version"]
                else:
                    counts["other"] += 1

    t0 = time.perf_counter()
    ts = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    secs = time.perf_counter() - t0
    with open(os.path.join(outdir, "iw-lab-edits.jsonl")) as f:
        log = [json.loads(line) for line in f]
    load_log = [e for e in log if e["new"] and e["new"][0].startswith("c") and " e" in e["new"][0]]
    last = {}
    for e in load_log:
        last[e["file"]] = e["new"]
    mismatched = 0
    for name, tags in last.items():
        with open(os.path.join(outdir, name)) as f:
            if f.read() != ", ".join(tags):
                mismatched += 1
    return {
        "load_edits": clients * edits,
        "load_accepted": counts["accepted"],
        "load_stale_409": counts["stale"],
        "load_other_status": counts["other"],
        "load_logged": len(load_log),
        "load_files_not_last_write": mismatched,
        "load_seconds": round(secs, 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--images", type=int, default=100000)
    ap.add_argument("--json")
    ap.add_argument("--keep", help="generate the browse folder here once and reuse it")
    ap.add_argument("--only", choices=["browse", "tagging"])
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    out = {"images": args.images}
    with tempfile.TemporaryDirectory(prefix="iw-studio-bench-") as work:
        if args.only != "tagging":
            bench_browse(binary, work, args.images, out, args.keep)
        if args.only != "browse":
            bench_tagging(binary, work, out)
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

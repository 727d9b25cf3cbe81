#!/usr/bin/env python3
"""Remakes the screenshots of the demo in docs/: the report of the README's demo run
(docs/report.png, docs/report-grid.png) and the same run in the studio
(docs/studio-demo.png, docs/studio-demo-image.png).

    scripts/screenshots.py [--binary PATH] [--out DIR]

It copies the demo project (datasets/, models/, experiments/) into a temporary folder, runs
`iw-lab run demo` and `iw-lab report latest` there, starts `iw-lab serve --run latest`, and
drives a headless Chromium through chromedriver's WebDriver API (Debian: `apt-get install
chromium chromium-driver`). Standard library only. The studio's own screenshots come from its
tests: `IW_LAB_SCREENSHOTS=docs cargo nextest run --test studio`.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WIDTH = 1400


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """A headless Chromium session over WebDriver."""

    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "goog:chromeOptions": {
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--hide-scrollbars",
                            "--allow-file-access-from-files",
                            f"--window-size={WIDTH},1100",
                        ]
                    }
                }
            }
        }
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        if path != "/session":
            path = f"/session/{self.session}{path}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["value"]

    def js(self, script):
        return self.call("POST", "/execute/sync", {"script": script, "args": []})

    def wait(self, condition, what, seconds=30):
        end = time.time() + seconds
        while time.time() < end:
            if self.js(f"return !!({condition});"):
                return
            time.sleep(0.2)
        sys.exit(f"timed out waiting for {what}")

    def size(self, height):
        self.call("POST", "/window/rect", {"width": WIDTH, "height": height})

    def shoot(self, out):
        time.sleep(0.5)
        png = base64.b64decode(self.call("GET", "/screenshot"))
        Path(out).write_bytes(png)
        print(f"wrote {out}")

    def close(self):
        self.call("DELETE", "")


def ready(url, seconds=20):
    """Waits until `url` answers (chromedriver's status endpoint)."""
    end = time.time() + seconds
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing answers at {url}")


def iw(binary, project, *args):
    return subprocess.run(
        [binary, "--project", str(project), "--quiet", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    ap.add_argument("--binary", default=str(Path(target) / "release" / "iw-lab"))
    ap.add_argument("--out", default=str(REPO / "docs"))
    a = ap.parse_args()
    out = Path(a.out)
    work = Path(tempfile.mkdtemp(prefix="iw-lab-shots-"))
    driver = server = b = None
    try:
        for d in ["datasets", "models", "experiments"]:
            shutil.copytree(REPO / d, work / d)
        iw(a.binary, work, "run", "demo")
        report = work / "report.html"
        iw(a.binary, work, "report", "latest", "--out", str(report))

        port = free_port()
        driver = subprocess.Popen(
            ["chromedriver", f"--port={port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ready(f"http://127.0.0.1:{port}/status")
        b = Browser(port)

        b.size(1100)
        b.call("POST", "/url", {"url": report.as_uri()})
        b.wait("document.querySelector('[data-ready=\"1\"]')", "the report's script")
        b.shoot(out / "report.png")
        b.size(900)
        b.js("document.getElementById('images').scrollIntoView();")
        b.shoot(out / "report-grid.png")

        server = subprocess.Popen(
            [a.binary, "--project", str(work), "serve", "--run", "latest"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = None
        for line in server.stdout:
            if "http://" in line:
                url = line[line.index("http://"):].split()[0]
                break
        if not url:
            sys.exit("the studio printed no address")
        # keep reading what it prints, so a full pipe never stalls it
        threading.Thread(target=server.stdout.read, daemon=True).start()
        b.call("POST", "/url", {"url": url})
        b.wait("document.querySelectorAll('#grid .cell').length === 13", "the studio's grid")
        b.shoot(out / "studio-demo.png")
        # the astronaut: her face boxed, each variant's tags against the ground truth
        b.js("document.querySelector(\"#grid .cell[data-id='0']\").click();")
        b.wait("document.querySelector('#detailpanel .chip')", "the studio's image view")
        b.shoot(out / "studio-demo-image.png")
    finally:
        if b:
            try:
                b.close()  # ends Chromium with the session
            except OSError:
                pass
        for p in (server, driver):
            if p:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

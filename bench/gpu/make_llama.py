#!/usr/bin/env python3
"""Writes the GPU check's big random LLaMA as GGUF, fast: LLaMA-7B's shape on the device
(n_embd 4096, 32 layers, n_ff 11008, F16: 6.74e9 parameters, 13.5 GB), generated with torch on
the GPU when torch sees one, else with numpy. The spec (shapes, weight scales: the project's
synthetic-model init, src/synth/llama.ts) comes from bench/gpu/models.mjs; the tokenizer (LLaMA's
32000-token vocabulary) is copied from a GGUF the project's generator wrote. Norm weights are F32
(1 + 0.3 N(0,1)), matrices F16 N(0, std). Reuses the file when it was written from the same spec.

  python3 bench/gpu/make_llama.py --spec big-spec.json --vocab-from check-f32.gguf --out big.gguf
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_gguf import GGML_F16, GGML_F32, Gguf, kv_f32, kv_str, kv_u32, write_gguf  # noqa: E402

SPEC_KEY = "tallrec.gpu_check.spec"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--spec", required=True)
    p.add_argument("--vocab-from", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto", help="auto (cuda when torch sees a GPU), cuda, cpu (numpy)")
    a = p.parse_args()
    spec = json.load(open(a.spec))
    spec_json = json.dumps(spec, sort_keys=True)
    if os.path.exists(a.out):
        try:
            if Gguf(a.out).meta.get(SPEC_KEY) == spec_json:
                print(json.dumps({"model": a.out, "reused": True}))
                return
        except Exception:
            pass

    torch = None
    device = "cpu"
    if a.device != "cpu":
        try:
            import torch as _torch
            if _torch.cuda.is_available():
                torch, device = _torch, "cuda"
        except ImportError:
            pass
        if a.device == "cuda" and device != "cuda":
            raise SystemExit("make_llama.py: --device cuda but torch sees no GPU")

    src = Gguf(a.vocab_from)
    vocab = [k for k in src.raw if k.startswith("tokenizer.")]
    n_vocab = len(src.meta["tokenizer.ggml.tokens"])
    d, L, H, Hkv, ff = spec["nEmbd"], spec["nLayer"], spec["nHead"], spec["nHeadKv"], spec["nFf"]
    hd = d // H
    kvs = [
        kv_str("general.architecture", "llama"),
        kv_str("general.type", "model"),
        kv_str("general.name", spec["name"]),
        kv_u32("llama.vocab_size", n_vocab),
        kv_u32("llama.context_length", spec["nCtxTrain"]),
        kv_u32("llama.embedding_length", d),
        kv_u32("llama.block_count", L),
        kv_u32("llama.feed_forward_length", ff),
        kv_u32("llama.rope.dimension_count", hd),
        kv_u32("llama.attention.head_count", H),
        kv_u32("llama.attention.head_count_kv", Hkv),
        kv_f32("llama.attention.layer_norm_rms_epsilon", spec["rmsEps"]),
        kv_f32("llama.rope.freq_base", spec["ropeFreqBase"]),
        kv_u32("general.file_type", 1),
        *[src.raw[k] for k in vocab],
        kv_u32("general.quantization_version", 2),
        kv_str(SPEC_KEY, spec_json),
    ]
    init = spec["init"]
    seed = int(spec["seed"])
    counter = [0]

    def normal(shape, std, mean=0.0, dtype=np.float16):
        counter[0] += 1
        n = int(np.prod(shape))
        if torch is not None:
            g = torch.Generator(device=device)
            g.manual_seed(seed * 1000003 + counter[0])
            t = torch.randn(n, generator=g, device=device, dtype=torch.float32).mul_(std).add_(mean)
            return t.to(torch.float16 if dtype == np.float16 else torch.float32).cpu().numpy().reshape(shape)
        rng = np.random.default_rng([seed, counter[0]])
        x = rng.standard_normal(n, dtype=np.float32)
        x *= std
        x += mean
        return x.astype(dtype, copy=False).reshape(shape)

    dims = {  # (out, in) as PyTorch holds them
        "attn_q": (H * hd, d), "attn_k": (Hkv * hd, d), "attn_v": (Hkv * hd, d), "attn_output": (d, H * hd),
        "ffn_gate": (ff, d), "ffn_up": (ff, d), "ffn_down": (d, ff),
    }
    tensors = [("token_embd.weight", (n_vocab, d), GGML_F16, lambda: normal((n_vocab, d), init["embd"]))]

    def norm(name):
        return (name, (d,), GGML_F32, lambda: normal((d,), init["normStd"], 1.0, np.float32))

    def lin(layer, w):
        shape = dims[w]
        std = spec["linearStd"][w]
        return (f"blk.{layer}.{w}.weight", shape, GGML_F16, lambda: normal(shape, std))

    for layer in range(L):
        tensors.append(norm(f"blk.{layer}.attn_norm.weight"))
        tensors += [lin(layer, w) for w in ("attn_q", "attn_k", "attn_v", "attn_output")]
        tensors.append(norm(f"blk.{layer}.ffn_norm.weight"))
        tensors += [lin(layer, w) for w in ("ffn_gate", "ffn_up", "ffn_down")]
    tensors.append(norm("output_norm.weight"))
    tensors.append(("output.weight", (n_vocab, d), GGML_F16, lambda: normal((n_vocab, d), init["head"] / math.sqrt(d))))

    t0 = time.time()
    write_gguf(a.out, kvs, tensors)
    params = sum(int(np.prod(s)) for _, s, _, _ in tensors)
    print(json.dumps({"model": a.out, "reused": False, "parameters": params, "bytes": os.path.getsize(a.out),
                      "device": device, "seconds": round(time.time() - t0, 2)}))


if __name__ == "__main__":
    main()

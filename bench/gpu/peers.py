#!/usr/bin/env python3
"""The GPU check's peers: the same model, adapter and token ids as tallrec, in PyTorch.

- "tallrec-evaluate": TALLRec's evaluate.py, as it scores: LlamaForCausalLM in fp16 with the PEFT
  LoRA (unmerged), batches of 32 left-padded prompts (pad id 0), `model.generate` with its
  GenerationConfig (temperature 0, top_p 1, top_k 40, num_beams 1) and max_new_tokens 128,
  output_scores; pYes = softmax over [Yes, No] of softmax(scores[0]) (tallrec's
  "tallrec-compat" rule). evaluate.py also calls torch.compile(model) on torch 2, but then calls
  model.generate, which the compiled wrapper passes to the uncompiled model: left out.
- "forward": one plain forward pass per batch (32, 64, 128), LoRA merged into the weights, the
  last position's logits only; pYes = softmax over the two logits (tallrec's default rule).
Weights come from tallrec's own GGUF files (q/k rows put back in Hugging Face's order), so both
sides score the same model; |ΔpYes| against tallrec's scores is reported.

`--selftest DIR` first checks, with numpy alone, that this GGUF -> Hugging Face conversion equals
the project's writer (src/synth/hf.ts) on the small check model and its adapter.

  python3 bench/gpu/peers.py --gguf big.gguf --lora big-lora.gguf --tokens tokens.json \
      --tallrec tallrec-scores.json --out peers.json [--selftest WORK] [--deadline EPOCH]
"""
import argparse
import json
import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_gguf import Gguf, gguf_to_hf, hparams, lora_to_peft, read_safetensors  # noqa: E402

YES, NO = 8241, 3782


def selftest(work):
    g = Gguf(os.path.join(work, "check-f32.gguf"))
    ref = read_safetensors(os.path.join(work, "check-hf", "model.safetensors"))
    mine = dict(gguf_to_hf(g))
    assert set(mine) == set(ref), f"names differ: {sorted(set(mine) ^ set(ref))[:5]}"
    worst = max(float(np.max(np.abs(np.asarray(mine[k], np.float32) - np.asarray(ref[k], np.float32)))) for k in ref)
    lora = Gguf(os.path.join(work, "check-lora-a.gguf"))
    pref = read_safetensors(os.path.join(work, "check-peft-a", "adapter_model.safetensors"))
    n = 0
    for layer, module, ab, arr in lora_to_peft(lora, hparams(g)):
        part = "self_attn" if module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
        key = f"base_model.model.model.layers.{layer}.{part}.{module}.lora_{ab}.weight"
        worst = max(worst, float(np.max(np.abs(np.asarray(arr, np.float32) - np.asarray(pref[key], np.float32)))))
        n += 1
    assert n == len(pref), f"{n} LoRA tensors converted, PEFT folder has {len(pref)}"
    return {"ok": worst == 0.0, "tensors": len(ref), "loraTensors": n, "maxAbsDiff": worst}


def pad_left(torch, seqs, device):
    n = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), n), dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, n - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, n - len(s):] = 1
    return ids.to(device), mask.to(device)


def build_model(torch, a, hp, device, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM
    from peft import LoraConfig, get_peft_model

    cfg = LlamaConfig(vocab_size=hp["vocab"], hidden_size=hp["embd"], intermediate_size=hp["ff"], num_hidden_layers=hp["layers"],
                      num_attention_heads=hp["heads"], num_key_value_heads=hp["heads_kv"], max_position_embeddings=max(hp["ctx"], 4096),
                      rms_norm_eps=hp["eps"], tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if abs(hp["rope_base"] - 10000.0) > 1e-6:
        raise SystemExit("the peer assumes RoPE base 10000 (transformers' default)")
    t0 = time.time()
    with torch.device(device):  # random init on the GPU (fast), replaced by the GGUF's weights below
        model = LlamaForCausalLM(cfg)
    model = model.to(dtype)
    g = Gguf(a.gguf)
    state = {}
    for name, arr in gguf_to_hf(g):
        state[name] = torch.from_numpy(np.ascontiguousarray(arr)).to(device=device, dtype=dtype)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if "rotary" not in m]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    del state
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.05, bias="none", task_type="CAUSAL_LM"))
    lora = Gguf(a.lora)
    alpha = float(lora.meta.get("adapter.lora.alpha", 16))
    mods = dict(model.named_modules())
    n = 0
    for layer, module, ab, arr in lora_to_peft(lora, hp):
        m = mods[f"base_model.model.model.layers.{layer}.self_attn.{module}"]
        lin = (m.lora_A if ab == "A" else m.lora_B)["default"]
        if tuple(lin.weight.shape) != arr.shape:
            raise RuntimeError(f"LoRA {layer}.{module}.{ab}: {tuple(lin.weight.shape)} vs {arr.shape}")
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(arr)))
        n += 1
        rank = arr.shape[0] if ab == "A" else arr.shape[1]
        if abs(m.scaling["default"] - alpha / rank) > 1e-9:
            raise RuntimeError(f"PEFT scaling {m.scaling['default']} != alpha/r {alpha / rank}")
    model = model.to(dtype) if dtype != torch.float32 else model
    model.eval()
    if device == "cuda":
        torch.cuda.synchronize()
    return model, {"seconds": round(time.time() - t0, 2), "loraTensors": n, "attention": getattr(model.config, "_attn_implementation", None)}


def compare(mine, theirs, key):
    if not theirs:
        return None
    d = [abs(x - y) for x, y in zip(mine, theirs[key])]
    return max(d) if d else None


def run_generate(torch, model, prompts, a, device, left):
    from transformers import GenerationConfig

    note = None
    greedy = dict(num_beams=1, max_new_tokens=a.max_new_tokens, pad_token_id=0, eos_token_id=2)
    try:
        gc = GenerationConfig(temperature=0, top_p=1.0, top_k=40, **greedy)  # evaluate.py's
    except Exception as e:
        gc, note = None, f"{type(e).__name__}: {e}"

    def batch(seqs):
        ids, mask = pad_left(torch, seqs, device)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gc, return_dict_in_generate=True, output_scores=True, max_new_tokens=a.max_new_tokens)
        probs = out.scores[0].float().softmax(dim=-1)
        p = probs[:, [YES, NO]].softmax(dim=-1)[:, 0]
        return p.tolist(), int(out.sequences.shape[1] - ids.shape[1])

    try:
        if gc is None:
            raise ValueError(note)
        batch(prompts[: a.batch])  # warm-up
    except Exception as e:  # a transformers that refuses temperature 0: the same greedy search, said plainly
        note = f"TALLRec's GenerationConfig(temperature=0, top_p=1, top_k=40) was refused ({type(e).__name__}: {str(e)[:300]}); used do_sample=False"
        gc = GenerationConfig(do_sample=False, **greedy)
        batch(prompts[: a.batch])
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    p_yes, new_tokens, done = [], [], 0
    for i in range(0, len(prompts), a.batch):
        if left() < 20:
            break
        p, n = batch(prompts[i:i + a.batch])
        p_yes += p
        new_tokens.append(n)
        done = i + len(p)
    if device == "cuda":
        torch.cuda.synchronize()
    s = time.time() - t0
    toks = sum(len(x) for x in prompts[:done])
    return {"system": "transformers+peft, TALLRec evaluate.py (fp16, batch 32, generate 128 new tokens)", "prompts": done, "batch": a.batch,
            "maxNewTokens": a.max_new_tokens, "generatedTokensPerBatch": new_tokens, "seconds": s, "pairsPerSecond": done / s if s else None,
            "promptTokensPerSecond": toks / s if s else None, "note": note}, p_yes


def run_forward(torch, model, prompts, bs, device, left):
    def batch(seqs):
        ids, mask = pad_left(torch, seqs, device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            try:
                out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=1)
            except TypeError:
                out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
        logits = out.logits[:, -1, :].float()
        two = logits[:, [YES, NO]]
        lse = torch.logsumexp(logits, dim=-1)
        return two[:, 0].tolist(), two[:, 1].tolist(), two.softmax(dim=-1)[:, 0].tolist(), lse.tolist()

    batch(prompts[:bs])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    ly, ln, p, lse, done = [], [], [], [], 0
    for i in range(0, len(prompts), bs):
        if left() < 10:
            break
        r = batch(prompts[i:i + bs])
        ly += r[0]
        ln += r[1]
        p += r[2]
        lse += r[3]
        done = i + len(r[0])
    if device == "cuda":
        torch.cuda.synchronize()
    s = time.time() - t0
    toks = sum(len(x) for x in prompts[:done])
    return {"system": f"transformers forward, LoRA merged (fp16, batch {bs}, last-token logits)", "prompts": done, "batch": bs, "seconds": s,
            "pairsPerSecond": done / s if s else None, "promptTokensPerSecond": toks / s if s else None}, {"logitYes": ly, "logitNo": ln, "pYes": p, "logSumExp": lse}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gguf")
    p.add_argument("--lora")
    p.add_argument("--tokens")
    p.add_argument("--tallrec", help="tallrec's scores of the same prompts (throughput.mjs --scores-out)")
    p.add_argument("--out", required=True)
    p.add_argument("--selftest", help="folder with the check model, its HF/PEFT layout (models.mjs)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--gen-prompts", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--fwd-batches", default="32,64,128")
    p.add_argument("--deadline", type=float, default=0)
    a = p.parse_args()
    left = (lambda: a.deadline - time.time()) if a.deadline > 0 else (lambda: float("inf"))
    res = {"selftest": None, "peers": [], "errors": []}

    def save():
        json.dump(res, open(a.out, "w"), indent=2)

    if a.selftest:
        try:
            res["selftest"] = selftest(a.selftest)
        except Exception as e:
            res["selftest"] = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        save()
    if not a.gguf:
        return
    try:
        import torch
        import transformers
        import peft
    except ImportError as e:
        res["skipped"] = f"no {e.name} here: the peers need torch, transformers and peft"
        save()
        return
    device = a.device if (a.device != "cuda" or torch.cuda.is_available()) else None
    if device is None:
        res["skipped"] = "torch sees no CUDA device"
        save()
        return
    res["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                       "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}
    dtype = torch.float16 if device == "cuda" else torch.float32
    tokens = json.load(open(a.tokens))
    prompts = tokens["independent"]
    theirs = json.load(open(a.tallrec)) if a.tallrec and os.path.exists(a.tallrec) else None
    hp = hparams(Gguf(a.gguf))
    try:
        model, info = build_model(torch, a, hp, device, dtype)
        res["load"] = info
        save()
    except Exception as e:
        res["errors"].append({"stage": "load", "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]})
        save()
        return
    try:
        r, p_yes = run_generate(torch, model, prompts[: a.gen_prompts], a, device, left)
        r["maxAbsDiffPYesCompat"] = compare(p_yes, theirs and {"pYesCompat": theirs["pYesCompat"][: len(p_yes)]}, "pYesCompat")
        res["peers"].append(r)
    except Exception as e:
        res["errors"].append({"stage": "generate", "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]})
    save()
    try:
        model = model.merge_and_unload()
    except Exception as e:
        res["errors"].append({"stage": "merge", "error": f"{type(e).__name__}: {e}"})
    for bs in [int(x) for x in a.fwd_batches.split(",") if x]:
        if left() < 15:
            res["errors"].append({"stage": f"forward {bs}", "error": "skipped: out of time"})
            continue
        try:
            r, v = run_forward(torch, model, prompts, bs, device, left)
            if theirs:
                n = len(v["pYes"])
                r["maxAbsDiffPYes"] = compare(v["pYes"], {"pYes": theirs["pYes"][:n]}, "pYes")
                r["maxAbsDiffLogit"] = max(compare(v["logitYes"], {"x": theirs["logitYes"][:n]}, "x"), compare(v["logitNo"], {"x": theirs["logitNo"][:n]}, "x"))
            res["peers"].append(r)
        except Exception as e:
            res["errors"].append({"stage": f"forward {bs}", "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]})
        save()
    save()


if __name__ == "__main__":
    main()

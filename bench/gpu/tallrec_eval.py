#!/usr/bin/env python3
"""Scores TALLRec prompts the way TALLRec's evaluate.py does, for a side-by-side with tallrec.

LlamaForCausalLM in fp16 with the PEFT LoRA adapter, batches of 32 left-padded prompts; the score
of a prompt is TALLRec's: softmax over the vocabulary at the first answer position, then a softmax
over the probabilities of "Yes" (8241) and "No" (3782). Also prints the two-logit softmax. Needs
torch, transformers and peft (present on the GPU machine; not a tallrec dependency).

  python3 bench/gpu/tallrec_eval.py --model HF_DIR --lora PEFT_DIR --data test.json \
      [--prompts 256] [--batch 32] [--out scores.json]
"""
import argparse
import json
import time

import torch
from peft import PeftModel
from transformers import LlamaForCausalLM, LlamaTokenizer, AutoTokenizer


def generate_prompt(instruction, input_text):
    # TALLRec's template, byte for byte (the "# noqa: E501" is part of it)
    if input_text:
        return f"""Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.  # noqa: E501

### Instruction:
{instruction}

### Input:
{input_text}

### Response:
"""
    return f"""Below is an instruction that describes a task. Write a response that appropriately completes the request.  # noqa: E501

### Instruction:
{instruction}

### Response:
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--lora")
    p.add_argument("--data", required=True)
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out")
    a = p.parse_args()

    rows = json.load(open(a.data))[: a.prompts]
    try:
        tok = LlamaTokenizer.from_pretrained(a.model)
    except Exception:
        tok = AutoTokenizer.from_pretrained(a.model)
    tok.padding_side = "left"
    tok.pad_token_id = 0
    model = LlamaForCausalLM.from_pretrained(a.model, torch_dtype=torch.float16, device_map="cuda")
    if a.lora:
        model = PeftModel.from_pretrained(model, a.lora, torch_dtype=torch.float16)
    model.eval()

    prompts = [generate_prompt(r["instruction"], r["input"]) for r in rows]
    yes, no = 8241, 3782
    out = []

    def run():
        res = []
        for i in range(0, len(prompts), a.batch):
            enc = tok(prompts[i : i + a.batch], return_tensors="pt", padding=True).to("cuda")
            with torch.no_grad():
                logits = model(**enc).logits[:, -1, :].float()
            probs = logits.softmax(dim=-1)
            compat = probs[:, [yes, no]].softmax(dim=-1)[:, 0]
            two = logits[:, [yes, no]].softmax(dim=-1)[:, 0]
            for k in range(logits.shape[0]):
                res.append({"logitYes": logits[k, yes].item(), "logitNo": logits[k, no].item(), "pYesCompat": compat[k].item(), "pYes": two[k].item()})
        return res

    run()  # warm-up
    torch.cuda.synchronize()
    t0 = time.time()
    out = run()
    torch.cuda.synchronize()
    seconds = time.time() - t0
    n_tokens = sum(len(tok(x)["input_ids"]) for x in prompts)
    print(json.dumps({"system": "transformers+peft fp16", "prompts": len(prompts), "batch": a.batch, "seconds": seconds,
                      "promptsPerSecond": len(prompts) / seconds, "promptTokensPerSecond": n_tokens / seconds}))
    if a.out:
        json.dump(out, open(a.out, "w"))


if __name__ == "__main__":
    main()

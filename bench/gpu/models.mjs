#!/usr/bin/env node
// The GPU check's inputs, all generated (no download): the small correctness models (F32 and F16,
// same weights) with two adapters, their Hugging Face / PEFT layout (for the Python peers'
// self-test), the big model's spec (bench/gpu/make_llama.py writes its weights) and its
// TALLRec-shaped LoRA, and the workload prompts.
//   node bench/gpu/models.mjs --dir WORK --mode gpu|cpu
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { SHAPES, SIZES, TALLREC_LORA, dist, log, now, workload, writeJson } from "./common.mjs";

const { values: a } = parseArgs({ options: { dir: { type: "string" }, mode: { type: "string", default: "gpu" } } });
if (!a.dir || !["gpu", "cpu"].includes(a.mode)) throw new Error("usage: models.mjs --dir WORK --mode gpu|cpu");
mkdirSync(a.dir, { recursive: true });
const synth = await import(join(dist, "synth", "index.js"));
const hf = await import(join(dist, "synth", "hf.js"));
const t0 = now();
const base = synth.LLAMA_PRESETS.tiny;

// the correctness models: n_embd 256, 2 layers, GQA 8/2, F32 and F16 with the same weights
const check = { ...base, ...SHAPES.check, name: "tallrec-gpu-check", seed: 2468 };
const checkF32 = { ...check, matrixType: "F32" };
const checkF16 = { ...check, matrixType: "F16", name: "tallrec-gpu-check-f16" };
const loraA = { ...TALLREC_LORA, seed: 303 };
const loraB = { r: 4, alpha: 8, targets: ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"], seed: 404 };
const files = {
  checkF32: join(a.dir, "check-f32.gguf"),
  checkF16: join(a.dir, "check-f16.gguf"),
  checkLoraA: join(a.dir, "check-lora-a.gguf"),
  checkLoraB: join(a.dir, "check-lora-b.gguf"),
  checkHf: join(a.dir, "check-hf"),
  checkPeftA: join(a.dir, "check-peft-a"),
  bigSpec: join(a.dir, "big-spec.json"),
  big: join(a.dir, "big.gguf"),
  bigLora: join(a.dir, "big-lora.gguf"),
  prompts: join(a.dir, "prompts.json"),
};
if (!existsSync(files.checkF32)) await synth.generateLlamaModel(files.checkF32, checkF32);
if (!existsSync(files.checkF16)) await synth.generateLlamaModel(files.checkF16, checkF16);
if (!existsSync(files.checkLoraA)) await synth.generateLora(files.checkLoraA, checkF32, loraA);
if (!existsSync(files.checkLoraB)) await synth.generateLora(files.checkLoraB, checkF32, loraB);
// the same F32 model and adapter A as Hugging Face / PEFT folders, written by the project's own
// writer: the Python peers convert GGUF to Hugging Face themselves and check it against these
if (!existsSync(join(files.checkHf, "config.json"))) await hf.writeHfLlamaModel(files.checkHf, checkF32, { tokenizer: "json" });
if (!existsSync(join(files.checkPeftA, "adapter_config.json"))) await hf.ggufLoraToPeft(files.checkLoraA, files.checkPeftA, { nHead: check.nHead, nHeadKv: check.nHeadKv });
log(`correctness models ready (${(now() - t0).toFixed(1)} s)`);

// the big model: LLaMA-7B's shape on the device; make_llama.py writes the weights (fast, with
// torch on the GPU), this writes the spec and the adapter (r 8, alpha 16, q and v: 8.4 MB)
const big = { ...base, ...SHAPES.big[a.mode], name: `tallrec-synth-llama-${a.mode === "gpu" ? "7b" : "mini"}-shape`, nCtxTrain: 2048, matrixType: "F16", seed: 7007 };
const spec = { ...big, linearStd: {} };
for (const w of ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]) spec.linearStd[w] = synth.linearStd(big, w);
writeJson(files.bigSpec, spec);
const t1 = now();
if (!existsSync(files.bigLora)) await synth.generateLora(files.bigLora, big, { ...TALLREC_LORA, seed: 77 });
log(`big-model adapter ready (${(now() - t1).toFixed(1)} s)`);

const sizes = SIZES[a.mode];
const w = await workload(sizes.prompts, sizes.candidates);
writeJson(files.prompts, w);
writeJson(join(a.dir, "models.json"), {
  files,
  check: { F32: checkF32, F16: checkF16, loraA, loraB },
  big: spec,
  bigLora: { ...TALLREC_LORA, seed: 77 },
  prompts: { source: w.source, independent: w.independent.length, ranking: w.ranking.length, user: w.user },
});
log(`models and prompts ready in ${a.dir} (${(now() - t0).toFixed(1)} s)`);

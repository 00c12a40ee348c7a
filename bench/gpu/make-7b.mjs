#!/usr/bin/env node
// Generates a LLaMA-7B-shaped random model (n_embd 4096, 32 layers, 32 heads, n_ff 11008, F16,
// LLaMA's 32000-token vocabulary: about 13.5 GB) and a TALLRec-shaped LoRA (r 8, alpha 16, q and
// v), as GGUF, and with --hf/--peft also in Hugging Face / PEFT layout for the transformers peer.
//   node bench/gpu/make-7b.mjs --out M.gguf --lora L.gguf [--hf DIR --peft DIR] [--layers 32]
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";

import { generateLlamaModel, generateLora, LLAMA_PRESETS } from "../../dist/synth/index.js";

const { values: a } = parseArgs({
  options: {
    out: { type: "string" },
    lora: { type: "string" },
    hf: { type: "string" },
    peft: { type: "string" },
    layers: { type: "string", default: "32" },
  },
});
if (!a.out || !a.lora) throw new Error("--out and --lora are required");
const spec = {
  ...LLAMA_PRESETS.bench,
  name: "tallrec-synth-llama7b-shape",
  nEmbd: 4096,
  nLayer: Number(a.layers),
  nHead: 32,
  nHeadKv: 32,
  nFf: 11008,
  nCtxTrain: 2048,
  matrixType: "F16",
  seed: 7007,
};
const loraOpts = { r: 8, alpha: 16, targets: ["attn_q", "attn_v"], seed: 77 };
const t0 = Date.now();
if (!existsSync(a.out)) await generateLlamaModel(a.out, spec);
if (!existsSync(a.lora)) await generateLora(a.lora, spec, loraOpts);
if (a.hf || a.peft) {
  // Hugging Face layout of the same weights (src/synth/hf.ts)
  const hf = await import("../../dist/synth/hf.js");
  if (a.hf && !existsSync(a.hf)) await hf.writeHfModel(a.hf, spec);
  if (a.peft && !existsSync(a.peft)) await hf.writePeftAdapter(a.peft, spec, loraOpts, { format: "safetensors" });
}
console.log(JSON.stringify({ model: a.out, lora: a.lora, hf: a.hf ?? null, peft: a.peft ?? null, seconds: (Date.now() - t0) / 1000 }));

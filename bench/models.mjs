// The models the benchmarks run on: "tiny" (the test model, generated into models/), "bench" (a
// generated 156M-parameter LLaMA, F16, made once into models/bench.gguf), or a GGUF path. Each
// preset comes with a TALLRec-shaped LoRA adapter (r 8, alpha 16, q and v).
import { existsSync } from "node:fs";
import { join } from "node:path";

import { ensureTestModels, generateLlamaModel, generateLora, LLAMA_PRESETS } from "../dist/synth/index.js";

/** { model, lora } for a preset name or a path (no adapter then). */
export async function benchModel(name, root) {
  const models = join(root, "models");
  if (name === "tiny") {
    const m = await ensureTestModels(models);
    return { model: m.tiny, lora: m.loraA };
  }
  if (name === "bench") {
    const model = join(models, "bench.gguf");
    const lora = join(models, "bench-lora.gguf");
    if (!existsSync(model)) await generateLlamaModel(model, "bench");
    if (!existsSync(lora)) await generateLora(lora, LLAMA_PRESETS.bench, { r: 8, alpha: 16, targets: ["attn_q", "attn_v"], seed: 7 });
    return { model, lora };
  }
  return { model: name, lora: undefined };
}

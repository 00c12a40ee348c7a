#!/usr/bin/env node
// Writes a scoring plan for the standalone harness: N TALLRec prompts tokenized and planned
// exactly as engine.score plans them (src/engine/plan.ts, the engine's context limits and round size),
// plus the engine's own scores of the same prompts (to check the harness's output against).
//   node bench/gpu/dump-plan.mjs --model M.gguf [--lora A.gguf] --out plan.bin [--prompts 256]
//        [--domain movie] [--ctx 4096] [--sequences 64] [--no-share] [--no-expected]
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { Engine } from "../../dist/index.js";
import { planScoring } from "../../dist/engine/plan.js";
import { renderPrompt } from "../../dist/engine/prompt.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const { values: a } = parseArgs({
  options: {
    model: { type: "string" },
    lora: { type: "string" },
    out: { type: "string", default: "plan.bin" },
    prompts: { type: "string", default: "256" },
    domain: { type: "string", default: "movie" },
    ctx: { type: "string", default: "4096" },
    sequences: { type: "string", default: "64" },
    "round-tokens": { type: "string" },
    "no-share": { type: "boolean", default: false },
    "no-expected": { type: "boolean", default: false },
    data: { type: "string", default: join(root, "..", "shared", "data") },
  },
});
if (!a.model) throw new Error("--model is required");
const rows = JSON.parse(readFileSync(join(a.data, "tallrec", a.domain, "test.json"), "utf8")).slice(0, Number(a.prompts));
const engine = await Engine.load({
  model: a.model,
  adapters: a.lora ? [{ name: "lora", path: a.lora }] : [],
  gpu: "cpu",
  contextSize: Number(a.ctx),
  sequences: Number(a.sequences),
  roundTokens: a["round-tokens"] ? Number(a["round-tokens"]) : undefined,
  kvLayout: "unified", // the plan below is the unified layout's, and the harness's context is unified
});
const info = engine.info;
const prompts = rows.map((r) => engine.tokenize(renderPrompt(r)));
const plan = planScoring(prompts, { nCtx: info.context.nCtx, nBatch: info.context.nBatch, nSeqMax: info.context.nSeqMax, roundCells: info.context.roundTokens }, { share: !a["no-share"] });
const header = Int32Array.of(plan.tokens.length, plan.seqIds.length, plan.steps.length, 2, plan.nOutputs, 0, rows.length, info.context.nCtx, info.context.nBatch, info.context.nUbatch, info.context.nSeqMax, 0);
const promptTokens = BigInt64Array.of(BigInt(plan.stats.promptTokens));
const targets = Int32Array.of(info.answerTokens.yes, info.answerTokens.no);
const parts = [Buffer.from("TRPLAN01"), header, plan.tokens, plan.pos, plan.out, plan.seqOffsets, plan.seqIds, plan.steps, targets, promptTokens];
writeFileSync(a.out, Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength)))));
// the prompt -> output slot map, and the engine's scores per prompt
writeFileSync(`${a.out}.json`, JSON.stringify({ outputOf: Array.from(plan.outputOf), stats: plan.stats, roundTokens: info.context.roundTokens }));
if (!a["no-expected"]) {
  const res = await engine.score(rows, { share: !a["no-share"] });
  writeFileSync(`${a.out}.expected.json`, JSON.stringify(res.map((r) => [r.logitYes, r.logitNo])));
}
await engine.close();
console.log(JSON.stringify({ plan: a.out, prompts: rows.length, ...plan.stats }));

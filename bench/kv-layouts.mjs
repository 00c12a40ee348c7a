#!/usr/bin/env node
// Which KV layout kvLayout "auto" picks for a prompt set, and the cost model's figures behind it:
//   node bench/kv-layouts.mjs --prompts bench/results/peers-prompts-tallrec.json [--model bench|tiny|7b|PATH.gguf] [--backend cpu|cuda]
// The prompt files are the token ids bench:peers writes (bench/results/peers-prompts-<workload>.json).
// Plans both layouts as the engine does (4096-cell context, 64 sequences, 8 streams, micro-batch 512)
// and prints each plan's tokens and cost (src/engine/cost.ts), with sharing on and off.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { COST_CONSTANTS, planCost } from "../dist/engine/cost.js";
import { planStreams } from "../dist/engine/plan-streams.js";
import { planScoring, roundBudget } from "../dist/engine/plan.js";
import { getMetadataNumber, openGgufSync } from "../dist/gguf/reader.js";

const { values: a } = parseArgs({ options: { prompts: { type: "string" }, model: { type: "string", default: "bench" }, backend: { type: "string", default: "cpu" } } });
if (!a.prompts) throw new Error("usage: node bench/kv-layouts.mjs --prompts FILE.json [--model bench|tiny|7b|PATH] [--backend cpu|cuda]");
const SHAPES = {
  tiny: { nEmbd: 64, nLayer: 2, nHead: 4, nHeadKv: 2, nFf: 172 },
  bench: { nEmbd: 1024, nLayer: 8, nHead: 16, nHeadKv: 4, nFf: 2816 },
  "7b": { nEmbd: 4096, nLayer: 32, nHead: 32, nHeadKv: 32, nFf: 11008 },
};
let shape = SHAPES[a.model];
if (!shape) {
  const g = openGgufSync(a.model);
  const n = (k) => getMetadataNumber(g, `llama.${k}`);
  shape = { nEmbd: n("embedding_length"), nLayer: n("block_count"), nHead: n("attention.head_count"), nHeadKv: n("attention.head_count_kv"), nFf: n("feed_forward_length") };
}
const prompts = JSON.parse(readFileSync(a.prompts, "utf8")).prompts.map((p) => Int32Array.from(p.tokens));
const nCtx = 4096;
const k = COST_CONSTANTS[a.backend];
for (const share of [true, false]) {
  const unified = planScoring(prompts, { nCtx, nBatch: nCtx, nSeqMax: 64, roundCells: roundBudget(shape, nCtx) }, { share });
  const streams = planStreams(prompts, { streams: 8, streamCells: 512, nBatch: nCtx }, { share });
  const cu = planCost(unified, "unified", shape, 512, k);
  const cs = planCost(streams, "streams", shape, 512, k);
  console.log(
    `sharing ${share ? "on " : "off"}: unified ${unified.stats.decodedTokens} tokens, cost ${cu.toFixed(0)}; streams ${streams.stats.decodedTokens} tokens (${streams.stats.paddingTokens} padding), cost ${cs.toFixed(0)} -> ${cs < cu ? "streams" : "unified"}`,
  );
}

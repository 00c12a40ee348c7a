#!/usr/bin/env node
// npm run bench:score [-- --model tiny|bench|PATH --prompts 200 --threads 2 --reps 3 --no-llama-bench]
//
// Scores TALLRec movie test prompts (with LoRA adapter A of the test models) three ways in one
// run, repetitions interleaved so that machine noise hits all alike:
//   shared   engine.score(all prompts), prefix sharing on (the default)
//   batched  engine.score(all prompts, { share: false })
//   single   one engine.score([prompt]) call per prompt
// and runs llama.cpp's llama-bench (built from the same bundled source with the same options,
// bench/setup.mjs) on the same model and threads for the prompt-processing limit (pp tokens/s).
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

import { Engine } from "../dist/index.js";
import { renderPrompt } from "../dist/engine/prompt.js";
import { buildLlamaTools, bundleInfo } from "../native/llama.mjs";
import { benchModel } from "./models.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: "tiny" },
    prompts: { type: "string", default: "200" },
    threads: { type: "string", default: "2" },
    reps: { type: "string", default: "3" },
    "single-max": { type: "string", default: "100" },
    "no-llama-bench": { type: "boolean", default: false },
    "no-lora": { type: "boolean", default: false },
    data: { type: "string", default: join(root, "..", "shared", "data") },
    json: { type: "string" },
    poll: { type: "string" },
  },
});
const nPrompts = Number(args.prompts);
const threads = Number(args.threads);
const reps = Number(args.reps);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const resolved = await benchModel(args.model, root);
  const model = resolved.model;
  const lora = args["no-lora"] ? undefined : resolved.lora;
  const rows = JSON.parse(readFileSync(join(args.data, "tallrec", "movie", "test.json"), "utf8")).slice(0, nPrompts);
  const engine = await Engine.load({ model, adapters: lora ? [{ name: "tallrec", path: lora }] : [], gpu: "auto", threads, threadPoll: args.poll === undefined ? undefined : Number(args.poll) });
  const promptTokens = rows.reduce((s, r) => s + engine.tokenize(renderPrompt(r)).length, 0);
  const singleRows = rows.slice(0, Math.min(rows.length, Number(args["single-max"])));
  const singleTokens = singleRows.reduce((s, r) => s + engine.tokenize(renderPrompt(r)).length, 0);

  const modes = {
    shared: async () => {
      const { stats } = await engine.scoreWithStats(rows);
      return { prompts: rows.length, tokens: promptTokens, decoded: stats.decodedTokens };
    },
    batched: async () => {
      const { stats } = await engine.scoreWithStats(rows, { share: false });
      return { prompts: rows.length, tokens: promptTokens, decoded: stats.decodedTokens };
    },
    single: async () => {
      let decoded = 0;
      for (const r of singleRows) {
        const { stats } = await engine.scoreWithStats([r], { share: false });
        decoded += stats.decodedTokens;
      }
      return { prompts: singleRows.length, tokens: singleTokens, decoded };
    },
  };
  await engine.score(rows.slice(0, 8)); // warm up
  const bin = args["no-llama-bench"] ? null : buildLlamaTools(bundleInfo(), { targets: ["llama-bench"] });
  // llama-bench's pp256 rate moves a lot on a shared machine: run it once per repetition, between
  // tallrec's modes, so the limit and tallrec see the same conditions.
  const llamaBenchOnce = () => {
    const out = execFileSync(join(bin, "llama-bench"), ["-m", model, "-p", "256", "-n", "0", "-t", String(threads), "-r", "2", "-fa", "0", "-o", "json"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return JSON.parse(out)[0].avg_ts;
  };
  const times = Object.fromEntries(Object.keys(modes).map((k) => [k, []]));
  const limits = [];
  const work = {};
  for (let r = 0; r < reps; r++) {
    for (const [name, fn] of Object.entries(modes)) {
      const t0 = performance.now();
      work[name] = await fn();
      times[name].push((performance.now() - t0) / 1000);
    }
    if (bin) limits.push(llamaBenchOnce());
  }
  const info = engine.info;
  await engine.close();
  const llamaBench = bin ? { tokensPerSecond: median(limits), runs: limits, test: "pp256" } : null;

  const rowsOut = Object.entries(modes).map(([name]) => {
    const s = median(times[name]);
    const w = work[name];
    return { mode: name, prompts: w.prompts, seconds: s, promptsPerSecond: w.prompts / s, promptTokensPerSecond: w.tokens / s, decodedTokensPerSecond: w.decoded / s };
  });
  const by = Object.fromEntries(rowsOut.map((r) => [r.mode, r]));
  const result = {
    date: new Date().toISOString(),
    command: `npm run bench:score -- ${process.argv.slice(2).join(" ")}`.trim(),
    model: { path: model, description: info.model.description, params: info.model.nParams },
    backend: info.backend,
    threads,
    prompts: rows.length,
    promptTokens,
    reps,
    modes: rowsOut,
    llamaBench,
    ratios: {
      sharedOverSingle: by.shared.promptsPerSecond / by.single.promptsPerSecond,
      batchedOverSingle: by.batched.promptsPerSecond / by.single.promptsPerSecond,
      sharedOverBatched: by.shared.promptsPerSecond / by.batched.promptsPerSecond,
      batchedTokensOverLlamaBench: llamaBench ? by.batched.decodedTokensPerSecond / llamaBench.tokensPerSecond : null,
      sharedEffectiveTokensOverLlamaBench: llamaBench ? by.shared.promptTokensPerSecond / llamaBench.tokensPerSecond : null,
    },
  };
  const f = (x, d = 1) => x.toFixed(d);
  console.log(`\n${result.model.description}, ${info.backend}, ${threads} threads, ${rows.length} TALLRec movie prompts (${promptTokens} tokens), LoRA ${lora ? "on" : "off"}, median of ${reps}\n`);
  console.log("| mode | prompts/s | prompt tokens/s | decoded tokens/s |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const r of rowsOut) console.log(`| ${r.mode} | ${f(r.promptsPerSecond)} | ${f(r.promptTokensPerSecond, 0)} | ${f(r.decodedTokensPerSecond, 0)} |`);
  if (llamaBench) console.log(`| llama-bench pp256 (no LoRA: it has no LoRA option) | | | ${f(llamaBench.tokensPerSecond, 0)} (runs: ${llamaBench.runs.map((x) => f(x, 0)).join(", ")}) |`);
  console.log("");
  for (const [k, v] of Object.entries(result.ratios)) if (v !== null) console.log(`${k}: ${f(v, 2)}x`);
  const file = args.json ?? join(root, "bench", "results", `score-${args.model.replace(/[^a-z0-9-]/gi, "_")}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(result, null, 2) + "\n");
}

await main();

#!/usr/bin/env node
// npm run bench:peers -- [--model tiny|bench|PATH] [--workload tallrec|rank] [--prompts 100]
//                        [--candidates 100] [--threads 2] [--reps 3] [--systems a,b,...] [--load N]
//
// tallrec against what a user would pick instead, on the same model, prompts (the same token ids)
// and threads, in one run, each system in its own process and each in its best honest
// configuration (see bench/peers/worker.mjs). Prints a table of prompts/s, tokens/s, ratios and
// peak RSS, and checks that every system produced the same pYes (a comparison of different
// answers is void). --load N starts N CPU-bound processes (busy loops) before the systems run and
// stops them after, so every system is measured under the same competing load. A system named
// with "/nolora" (e.g. tallrec-noshare/nolora, llama-server:off/nolora) runs without the adapter:
// its answers are checked against the first such system, and the summary gives each system's
// LoRA cost (prompts/s with the adapter over without).
//   workload tallrec: TALLRec movie test prompts with a LoRA adapter
//   workload rank:    one MovieLens-100K user's history with N candidate movies (Chat-REC's shape)
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { Engine, promptText, renderPrompt } from "../dist/index.js";
import { loadMovieLens100k } from "../dist/recsys/index.js";
import { buildLlamaTools, bundleInfo } from "../native/llama.mjs";
import { benchModel } from "./models.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values: a } = parseArgs({
  options: {
    model: { type: "string", default: "tiny" },
    workload: { type: "string", default: "tallrec" },
    prompts: { type: "string", default: "100" },
    candidates: { type: "string", default: "100" },
    threads: { type: "string", default: "2" },
    reps: { type: "string", default: "3" },
    systems: { type: "string", default: "tallrec,tallrec-noshare,node-llama-cpp,llama-server:on,llama-server:off" },
    data: { type: "string", default: join(root, "..", "shared", "data") },
    tolerance: { type: "string", default: "0.01" },
    load: { type: "string", default: "0" },
  },
});

/** One ML-100K user (the first with enough history) and N unseen candidate movies. */
async function rankPrompts(n) {
  const { interactions, items } = await loadMovieLens100k(join(a.data, "ml-100k"));
  const byUser = new Map();
  for (let i = 0; i < interactions.length; i++) {
    const u = interactions.users.id(interactions.userIdx[i]);
    if (!byUser.has(u)) byUser.set(u, []);
    byUser.get(u).push({ item: interactions.items.id(interactions.itemIdx[i]), rating: interactions.ratings[i], t: interactions.timestamps[i] });
  }
  const [user, rows] = [...byUser.entries()].find(([, r]) => r.filter((x) => x.rating >= 4).length >= 10 && r.filter((x) => x.rating <= 2).length >= 3);
  rows.sort((x, y) => x.t - y.t);
  const liked = rows
    .filter((x) => x.rating >= 4)
    .slice(-10)
    .map((x) => items.title(x.item));
  const disliked = rows
    .filter((x) => x.rating <= 2)
    .slice(-5)
    .map((x) => items.title(x.item));
  const seen = new Set(rows.map((x) => x.item));
  const candidates = items
    .ids()
    .filter((id) => !seen.has(id))
    .slice(0, n);
  return { user, texts: candidates.map((c) => promptText({ domain: "movie", liked, disliked, target: items.title(c) })) };
}

const median = (xs) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];

async function main() {
  const { model, lora } = await benchModel(a.model, root);
  const threads = Number(a.threads);
  let texts;
  let label;
  if (a.workload === "rank") {
    const r = await rankPrompts(Number(a.candidates));
    texts = r.texts;
    label = `ranking: ML-100K user ${r.user}, ${texts.length} candidates`;
  } else {
    const rows = JSON.parse(readFileSync(join(a.data, "tallrec", "movie", "test.json"), "utf8")).slice(0, Number(a.prompts));
    texts = rows.map(renderPrompt);
    label = `${texts.length} TALLRec movie test prompts`;
  }
  // one tokenization for every system: the same ids everywhere
  const engine = await Engine.load({ model, gpu: "cpu", threads: 1 });
  const prompts = texts.map((t) => ({ tokens: Array.from(engine.tokenize(t)) }));
  const description = engine.info.model.description;
  await engine.close();
  const promptTokens = prompts.reduce((s, p) => s + p.tokens.length, 0);
  const dir = join(root, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const promptsFile = join(dir, `peers-prompts-${a.workload}.json`);
  writeFileSync(promptsFile, JSON.stringify({ prompts }));

  const bin = buildLlamaTools(bundleInfo());
  // the competing load: N busy loops, each a process of its own, for the whole measurement
  const hogs = Array.from({ length: Number(a.load) }, () => spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }));
  const stopHogs = () => hogs.forEach((h) => h.kill("SIGKILL"));
  process.on("exit", stopHogs);
  const results = [];
  for (const spec of a.systems.split(",")) {
    const [base, variant] = spec.split("/");
    if (variant !== undefined && variant !== "nolora") throw new Error(`unknown system variant /${variant} in ${spec}`);
    const [system, cache] = base.split(":");
    const args = [join(root, "bench", "peers", "worker.mjs"), "--system", system, "--model", model, "--prompts", promptsFile, "--threads", String(threads), "--reps", a.reps, "--bin", bin];
    if (lora && variant !== "nolora") args.push("--lora", lora);
    if (cache) args.push("--cache", cache);
    process.stderr.write(`running ${spec} ...\n`);
    try {
      const out = execFileSync(process.execPath, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 64 << 20 });
      results.push({ name: spec, ...JSON.parse(out.trim().split("\n").pop()) });
    } catch (err) {
      results.push({ name: spec, error: String(err.message).split("\n")[0] });
    }
  }
  const benchOut = execFileSync(join(bin, "llama-bench"), ["-m", model, "-p", "256", "-n", "0", "-t", String(threads), "-r", "3", "-fa", "0", "-o", "json"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  stopHogs();
  const lb = JSON.parse(benchOut)[0];
  const limit = { tokensPerSecond: lb.avg_ts, stddev: lb.stddev_ts };

  const noLora = (r) => r.name.endsWith("/nolora");
  // answers are checked against tallrec's, else against the first system's with the adapter
  const refPYes = (results.find((r) => r.name === "tallrec" && !r.error) ?? results.find((r) => !noLora(r) && !r.error))?.pYes;
  const refNoLora = results.find((r) => noLora(r) && !r.error)?.pYes;
  for (const r of results) {
    if (r.error) continue;
    r.secondsMedian = median(r.seconds);
    r.promptsPerSecond = prompts.length / r.secondsMedian;
    r.promptTokensPerSecond = promptTokens / r.secondsMedian;
    const ref = noLora(r) ? refNoLora : refPYes;
    r.maxPYesDiff = ref ? Math.max(...r.pYes.map((p, i) => Math.abs(p - ref[i]))) : null;
    r.valid = r.maxPYesDiff !== null && r.maxPYesDiff <= Number(a.tolerance);
    delete r.pYes;
  }
  const by = Object.fromEntries(results.map((r) => [r.name, r]));
  const ratio = (x, y) => (by[x]?.promptsPerSecond && by[y]?.promptsPerSecond ? by[x].promptsPerSecond / by[y].promptsPerSecond : null);
  const summary = {
    tallrecOverNodeLlamaCpp: ratio("tallrec", "node-llama-cpp"),
    tallrecOverLlamaServerCacheOn: ratio("tallrec", "llama-server:on"),
    tallrecOverLlamaServerCacheOff: ratio("tallrec", "llama-server:off"),
    sharingOverNoSharing: ratio("tallrec", "tallrec-noshare"),
    noShareDecodedTokensOverLlamaBench: by["tallrec-noshare"]?.promptTokensPerSecond ? by["tallrec-noshare"].promptTokensPerSecond / limit.tokensPerSecond : null,
    sharedEffectiveTokensOverLlamaBench: by.tallrec?.promptTokensPerSecond ? by.tallrec.promptTokensPerSecond / limit.tokensPerSecond : null,
  };
  for (const r of results) if (noLora(r) && by[r.name.slice(0, -"/nolora".length)]) summary[`loraSpeed ${r.name.slice(0, -"/nolora".length)} (with / without)`] = ratio(r.name.slice(0, -"/nolora".length), r.name);
  const report = {
    date: new Date().toISOString(),
    command: `npm run bench:peers -- ${process.argv.slice(2).join(" ")}`.trim(),
    model: description,
    workload: label,
    promptTokens,
    threads,
    competingProcesses: Number(a.load),
    reps: Number(a.reps),
    results,
    llamaBench: limit,
    summary,
  };
  writeFileSync(join(dir, `peers-${a.model.replace(/[^a-z0-9-]/gi, "_")}-${a.workload}.json`), JSON.stringify(report, null, 2) + "\n");

  const f = (x, d = 1) => (x === null || x === undefined ? "—" : x.toFixed(d));
  console.log(`\n${description}, ${label} (${promptTokens} tokens), ${threads} threads, CPU, median of ${a.reps}${Number(a.load) ? `, beside ${a.load} CPU-bound process(es)` : ""}\n`);
  console.log("| system | prompts/s | prompt tokens/s | peak RSS (MB) | max abs. diff. pYes vs tallrec (or the first system; /nolora: vs the first /nolora) |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const r of results) {
    if (r.error) console.log(`| ${r.name} | failed: ${r.error} | | | |`);
    else console.log(`| ${r.name}${r.valid ? "" : " (VOID: different answers)"} | ${f(r.promptsPerSecond, 2)} | ${f(r.promptTokensPerSecond, 0)} | ${r.rss ? f(r.rss / 1048576, 0) : "—"} | ${f(r.maxPYesDiff, 5)} |`);
  }
  console.log(`| llama-bench pp256 (limit) | | ${f(limit.tokensPerSecond, 0)} ± ${f(limit.stddev, 0)} | | |`);
  console.log("");
  for (const [k, v] of Object.entries(summary)) console.log(`${k}: ${v === null ? "—" : `${v.toFixed(2)}x`}`);
}

await main();

#!/usr/bin/env node
// node bench/server.mjs [--model tiny|bench|PATH] [--lora PATH] [--prompts 256] [--threads N] [--gpu auto]
//                       [--duration 10] [--clients 1,8,64] [--items 1] [--max-batch 64] [--batch-wait-ms 2]
//
// Load benchmark of the HTTP server (tallrec serve's buildServer) against offline engine.score,
// on the same TALLRec movie test prompts, same engine and settings, in one run:
//   offline  engine.score(all prompts) in a loop (the engine's own throughput, maximal batches)
//   server   POST /v1/score with --items prompts per request (cycling through the prompts) from
//            autocannon at each --clients level, --duration seconds each, against 127.0.0.1
// The server (with its engine) runs in a child process so the load generator does not share its
// event loop; offline is measured in that child right before and right after each HTTP level
// (half its length each), and the level's ratio is against their mean, so that load from elsewhere
// on the machine hits a level and its reference alike. Also checks that the server's scores equal
// offline scores. Prints a markdown table and the ratio server/offline at the largest client count
// (exit code 1 below 0.8 or on any failed request); writes JSON to bench/results/.
import { fork } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({
  options: {
    child: { type: "boolean", default: false },
    model: { type: "string", default: "tiny" },
    lora: { type: "string" },
    prompts: { type: "string", default: "256" },
    threads: { type: "string", default: String(Math.max(1, availableParallelism() - 1)) },
    gpu: { type: "string", default: "auto" },
    duration: { type: "string", default: "10" },
    clients: { type: "string", default: "1,8,64" },
    items: { type: "string", default: "1" },
    "max-batch": { type: "string", default: "64" },
    "batch-wait-ms": { type: "string", default: "2" },
    data: { type: "string", default: join(root, "..", "shared", "data") },
    json: { type: "string" },
  },
});

function loadRows() {
  const rows = JSON.parse(readFileSync(join(args.data, "tallrec", "movie", "test.json"), "utf8")).slice(0, Number(args.prompts));
  return rows.map(({ instruction, input }) => ({ instruction, input }));
}

/** The model and a LoRA adapter for it: a preset generated into models/, or paths. */
async function resolveModel() {
  const { ensureTestModels, generateLlamaModel, generateLora, LLAMA_PRESETS } = await import("../dist/synth/index.js");
  const models = join(root, "models");
  if (args.model === "tiny") {
    const m = await ensureTestModels(models);
    return { model: m.tiny, lora: m.loraA };
  }
  if (args.model === "bench") {
    const model = join(models, "bench.gguf");
    const lora = join(models, "bench-lora.gguf");
    if (!existsSync(model)) await generateLlamaModel(model, "bench");
    if (!existsSync(lora)) await generateLora(lora, LLAMA_PRESETS.bench, { r: 8, alpha: 16, targets: ["attn_q", "attn_v"], seed: 7 });
    return { model, lora };
  }
  return { model: args.model, lora: args.lora };
}

// ---------------------------------------------------------------- child: engine + server
async function child() {
  const { Engine } = await import("../dist/index.js");
  const { buildServer } = await import("../dist/server/index.js");
  const { renderPrompt } = await import("../dist/engine/prompt.js");
  const { model, lora } = await resolveModel();
  const rows = loadRows();
  const engine = await Engine.load({ model, adapters: lora ? [{ name: "bench", path: lora }] : [], gpu: args.gpu, threads: Number(args.threads) });
  const app = await buildServer({
    engine,
    maxBatch: Number(args["max-batch"]),
    batchWaitMs: Number(args["batch-wait-ms"]),
    maxQueue: 8192,
    maxItems: Math.max(256, Number(args.items)),
    processMetrics: false,
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const info = engine.info;
  const offline = async (seconds) => {
    let prompts = 0;
    let decoded = 0;
    let last;
    const t0 = performance.now();
    do {
      const call = await engine.scoreWithStats(rows);
      last = call.results;
      prompts += rows.length;
      decoded += call.stats.decodedTokens;
    } while (performance.now() - t0 < seconds * 1000);
    const s = (performance.now() - t0) / 1000;
    return { prompts, seconds: s, promptsPerSecond: prompts / s, decodedTokensPerSecond: decoded / s, sample: last.slice(0, 16).map((r) => r.pYes) };
  };
  await engine.score(rows.slice(0, 8)); // warm up
  process.on("message", async (msg) => {
    if (msg.cmd === "offline") process.send({ id: msg.id, result: await offline(msg.seconds) });
    else if (msg.cmd === "metrics") process.send({ id: msg.id, result: await app.tallrec.metrics.registry.getMetricsAsJSON() });
    else if (msg.cmd === "close") {
      await app.close();
      process.send({ id: msg.id, result: true }, () => process.exit(0));
    }
  });
  process.send({
    ready: true,
    port: app.server.address().port,
    info: { backend: info.backend, model: info.model.description, nParams: info.model.nParams, threads: info.context.threads, nCtx: info.context.nCtx, nSeqMax: info.context.nSeqMax },
    promptTokens: rows.reduce((s, r) => s + engine.tokenize(renderPrompt(r)).length, 0),
  });
}

// ---------------------------------------------------------------- parent: load generator
async function parent() {
  const { default: autocannon } = await import("autocannon");
  const duration = Number(args.duration);
  const levels = args.clients.split(",").map(Number);
  const perRequest = Number(args.items);
  const rows = loadRows();

  const server = fork(fileURLToPath(import.meta.url), [...process.argv.slice(2), "--child"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  let nextId = 0;
  const pending = new Map();
  let onReady;
  const readyP = new Promise((r) => (onReady = r));
  server.on("message", (msg) => {
    if (msg.ready) onReady(msg);
    else pending.get(msg.id)?.(msg.result);
  });
  server.on("exit", (code) => {
    if (code) {
      console.error(`server process exited with ${code}`);
      process.exit(1);
    }
  });
  const ask = (cmd, extra = {}) =>
    new Promise((r) => {
      const id = ++nextId;
      pending.set(id, r);
      server.send({ cmd, id, ...extra });
    });
  const ready = await readyP;
  const url = `http://127.0.0.1:${ready.port}`;

  const bodies = [];
  for (let i = 0; i < rows.length; i += perRequest) bodies.push(JSON.stringify({ items: rows.slice(i, i + perRequest) }));

  // correctness: the server's scores for the first prompts equal offline engine.score's
  const before = await ask("offline", { seconds: duration / 2 });
  const check = await Promise.all(
    rows.slice(0, 16).map(async (r) => {
      const res = await fetch(`${url}/v1/score`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ items: [r] }) });
      return (await res.json()).results[0].pYes;
    }),
  );
  const maxDiff = Math.max(...check.map((p, i) => Math.abs(p - before.sample[i])));

  const runLevel = (connections, seconds = duration) =>
    new Promise((resolveRun, reject) => {
      let k = 0;
      autocannon(
        {
          url,
          connections,
          duration: seconds,
          requests: [
            {
              method: "POST",
              path: "/v1/score",
              headers: { "content-type": "application/json" },
              setupRequest: (req) => ({ ...req, body: bodies[k++ % bodies.length] }),
            },
          ],
        },
        (err, result) => (err ? reject(err) : resolveRun(result)),
      );
    });

  const batchStats = async () => {
    const metrics = await ask("metrics");
    const m = metrics.find((x) => x.name === "tallrec_batch_prompts");
    const get = (n) => m?.values.find((v) => v.metricName === n)?.value ?? 0;
    return { sum: get("tallrec_batch_prompts_sum"), count: get("tallrec_batch_prompts_count") };
  };

  await runLevel(Math.min(8, levels[levels.length - 1]), 2); // warm up the HTTP path
  // each level is bracketed by offline runs of half its length: its ratio is against their mean,
  // so that load from elsewhere on the machine hits the level and its reference alike
  const results = [];
  const offlineRuns = [before];
  for (const c of levels) {
    const off1 = await ask("offline", { seconds: duration / 2 });
    const b0 = await batchStats();
    const r = await runLevel(c);
    const b1 = await batchStats();
    const off2 = await ask("offline", { seconds: duration / 2 });
    offlineRuns.push(off1, off2);
    const ok = r["2xx"];
    const offline = (off1.promptsPerSecond + off2.promptsPerSecond) / 2;
    const pps = (ok * perRequest) / r.duration;
    results.push({
      clients: c,
      requests: ok,
      non2xx: r.non2xx,
      errors: r.errors,
      timeouts: r.timeouts,
      seconds: r.duration,
      requestsPerSecond: ok / r.duration,
      promptsPerSecond: pps,
      latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max },
      promptsPerEngineCall: (b1.sum - b0.sum) / Math.max(1, b1.count - b0.count),
      offlinePromptsPerSecond: offline,
      ratio: pps / offline,
    });
  }
  await ask("close");

  const offlinePps = offlineRuns.reduce((a, o) => a + o.promptsPerSecond, 0) / offlineRuns.length;
  const top = results[results.length - 1];
  const ratio = top.ratio;

  const table = [
    "| clients | server prompts/s | p50 ms | p99 ms | prompts per engine call | non-2xx | offline prompts/s (around the level) | server / offline |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...results.map(
      (r) =>
        `| ${r.clients} | ${r.promptsPerSecond.toFixed(1)} | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${r.promptsPerEngineCall.toFixed(1)} | ${r.non2xx + r.errors} | ${r.offlinePromptsPerSecond.toFixed(1)} | ${r.ratio.toFixed(2)} |`,
    ),
  ].join("\n");
  const command = `node bench/server.mjs ${process.argv.slice(2).join(" ")}`.trim();
  console.log(`\n${command}`);
  console.log(
    `model ${ready.info.model} (${ready.info.nParams} params), backend ${ready.info.backend}, ${ready.info.threads} threads, ${rows.length} TALLRec movie test prompts ` +
      `(${ready.promptTokens} tokens), ${perRequest} prompt(s) per request, max batch ${args["max-batch"]}, batch wait ${args["batch-wait-ms"]} ms, ${duration} s per level\n`,
  );
  console.log(table);
  console.log(
    `\noffline engine.score (${rows.length} prompts per call): ${offlinePps.toFixed(1)} prompts/s on average over ${offlineRuns.length} runs (${offlineRuns.map((o) => o.promptsPerSecond.toFixed(0)).join(", ")})`,
  );
  console.log(`server scores vs offline engine.score (16 prompts): max |ΔpYes| = ${maxDiff.toExponential(2)}`);
  console.log(`throughput at ${top.clients} clients: ${ratio.toFixed(2)}x offline (target >= 0.8) ${ratio >= 0.8 ? "PASS" : "FAIL"}`);

  const out = {
    date: new Date().toISOString(),
    command,
    engine: ready.info,
    prompts: rows.length,
    promptTokens: ready.promptTokens,
    itemsPerRequest: perRequest,
    maxBatch: Number(args["max-batch"]),
    batchWaitMs: Number(args["batch-wait-ms"]),
    durationSeconds: duration,
    offline: { runs: offlineRuns, promptsPerSecond: offlinePps },
    server: results,
    maxAbsDiffPYes: maxDiff,
    ratioAtMaxClients: ratio,
  };
  for (const o of offlineRuns) delete o.sample;
  const file = args.json ?? join(root, "bench", "results", `server-${out.date.replace(/[:.]/g, "-")}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(out, null, 2) + "\n");
  console.log(`\nwrote ${file}`);
  process.exitCode = ratio >= 0.8 && results.every((r) => r.non2xx + r.errors === 0) ? 0 : 1;
}

if (args.child) await child();
else await parent();

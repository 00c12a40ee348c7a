#!/usr/bin/env node
// One system of the peers benchmark, in its own process (so its memory is its own): loads the
// model, scores the workload's prompts `reps` times after a warm-up, and prints one JSON line:
// seconds per rep, the pYes of every prompt, and the process's peak RSS.
//   node bench/peers/worker.mjs --system S --model M.gguf [--lora A.gguf] --prompts FILE.json --threads N --reps R
// Systems:
//   tallrec           engine.score(all prompts), prefix sharing on
//   tallrec-noshare   engine.score(all prompts, { share: false })
//   tallrec-fixed     as tallrec, with adaptThreads off (always --threads threads)
//   tallrec-streams, tallrec-streams-noshare, tallrec-auto, tallrec-auto-noshare
//                     as tallrec / tallrec-noshare with kvLayout "streams" (or "auto"); tallrec-unified
//                     and tallrec-unified-noshare force "unified"; tallrec and tallrec-noshare use the
//                     default ("auto"). A tallrec system named with "+fa" runs with flash attention.
//   node-llama-cpp    node-llama-cpp 3.21.1 (its prebuilt libraries), one sequence, controlledEvaluate
//                     with next-token probabilities per prompt (its honest scoring configuration:
//                     with 4 or 8 sequences in flight it was no faster and mixed up results)
//   llama-server      llama.cpp's server (same bundled source and build options as tallrec), parallel
//                     slots, /completion with n_probs = vocabulary size; --cache on|off
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values: a } = parseArgs({
  options: {
    system: { type: "string" },
    model: { type: "string" },
    lora: { type: "string" },
    prompts: { type: "string" },
    threads: { type: "string", default: "2" },
    reps: { type: "string", default: "3" },
    cache: { type: "string", default: "on" },
    slots: { type: "string", default: "4" },
    port: { type: "string", default: String(18000 + (process.pid % 2000)) },
    bin: { type: "string" },
  },
});
const threads = Number(a.threads);
const [systemName, ...flags] = a.system.split("+");
const reps = Number(a.reps);
/** { tokens: number[] }[] — token ids with BOS, shared by every system */
const prompts = JSON.parse(readFileSync(a.prompts, "utf8")).prompts;
const YES = 8241;
const NO = 3782;

function peakRss() {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

function peakRssOf(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

async function timed(fn) {
  await fn(); // warm-up
  const seconds = [];
  let out;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    out = await fn();
    seconds.push((performance.now() - t0) / 1000);
  }
  return { seconds, pYes: out };
}

async function tallrec(share, adaptThreads = true, kvLayout = undefined) {
  const { Engine } = await import("../../dist/index.js");
  const flashAttention = flags.includes("fa");
  const engine = await Engine.load({ model: a.model, adapters: a.lora ? [{ name: "lora", path: a.lora }] : [], gpu: "cpu", threads, adaptThreads, kvLayout, flashAttention });
  const inputs = prompts.map((p) => ({ tokens: p.tokens }));
  let decoded = 0;
  const r = await timed(async () => {
    const { results: res, stats } = await engine.scoreWithStats(inputs, { share });
    decoded = stats.decodedTokens;
    return res.map((x) => x.pYes);
  });
  await engine.close();
  return { ...r, decodedTokens: decoded, rss: peakRss() };
}

async function nodeLlamaCpp() {
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, progressLogs: false });
  const model = await llama.loadModel({ modelPath: a.model });
  const maxLen = Math.max(...prompts.map((p) => p.tokens.length));
  const ctx = await model.createContext({
    contextSize: Math.max(512, maxLen + 16),
    sequences: 1,
    flashAttention: false,
    threads,
    lora: a.lora ? { adapters: [{ filePath: a.lora, scale: 1 }] } : undefined,
  });
  const seq = ctx.getSequence();
  const r = await timed(async () => {
    const out = [];
    for (const p of prompts) {
      await seq.clearHistory();
      const t = p.tokens;
      const res = await seq.controlledEvaluate([...t.slice(0, -1), [t[t.length - 1], { generateNext: { probabilities: true } }]]);
      const probs = res[res.length - 1].next.probabilities;
      const y = probs.get(YES) ?? 0;
      const n = probs.get(NO) ?? 0;
      out.push(y / (y + n));
    }
    return out;
  });
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
  return { ...r, decodedTokens: prompts.reduce((s, p) => s + p.tokens.length, 0), rss: peakRss() };
}

async function llamaServer() {
  const slots = Number(a.slots);
  const maxLen = Math.max(...prompts.map((p) => p.tokens.length));
  const args = ["-m", a.model, "-t", String(threads), "-tb", String(threads), "-np", String(slots), "-c", String(slots * (maxLen + 64)), "--port", a.port, "--host", "127.0.0.1", "-fa", "off", "--no-webui"];
  if (a.lora) args.push("--lora", a.lora);
  const server = spawn(join(a.bin, "llama-server"), args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  server.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  const base = `http://127.0.0.1:${a.port}`;
  try {
    for (let i = 0; ; i++) {
      try {
        const h = await fetch(`${base}/health`);
        if (h.ok) break;
      } catch {}
      if (i > 600 || server.exitCode !== null) throw new Error(`llama-server did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const nVocab = 32000;
    const one = async (p) => {
      const res = await fetch(`${base}/completion`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        // n_probs = the vocabulary: otherwise both answer tokens rarely appear. The bias makes the one
        // sampled token "Yes": left free, a random model's token can fail llama-server's output
        // format check (HTTP 500); the returned probabilities are taken before sampling.
        body: JSON.stringify({ prompt: p.tokens, n_predict: 1, n_probs: nVocab, post_sampling_probs: false, cache_prompt: a.cache === "on", temperature: 0, logit_bias: [[YES, 100]] }),
      });
      if (!res.ok) throw new Error(`llama-server: HTTP ${res.status}: ${await res.text()}`);
      const body = await res.json();
      const top = body.completion_probabilities[0].top_logprobs;
      const ly = top.find((x) => x.id === YES)?.logprob;
      const ln = top.find((x) => x.id === NO)?.logprob;
      if (ly === undefined || ln === undefined) throw new Error("llama-server did not return both answer tokens");
      return 1 / (1 + Math.exp(ln - ly));
    };
    const r = await timed(async () => {
      const out = new Array(prompts.length);
      let next = 0;
      await Promise.all(
        Array.from({ length: slots }, async () => {
          while (next < prompts.length) {
            const i = next++;
            out[i] = await one(prompts[i]);
          }
        }),
      );
      return out;
    });
    return { ...r, decodedTokens: null, rss: peakRssOf(server.pid) };
  } finally {
    const exited = new Promise((r) => server.once("exit", r));
    server.kill("SIGTERM");
    await exited;
  }
}

const run = {
  tallrec: () => tallrec(true),
  "tallrec-noshare": () => tallrec(false),
  "tallrec-fixed": () => tallrec(true, false),
  "tallrec-streams": () => tallrec(true, true, "streams"),
  "tallrec-streams-noshare": () => tallrec(false, true, "streams"),
  "tallrec-auto": () => tallrec(true, true, "auto"),
  "tallrec-auto-noshare": () => tallrec(false, true, "auto"),
  "tallrec-unified": () => tallrec(true, true, "unified"),
  "tallrec-unified-noshare": () => tallrec(false, true, "unified"),
  "node-llama-cpp": nodeLlamaCpp,
  "llama-server": llamaServer,
}[systemName];
if (!run) throw new Error(`unknown system ${a.system}`);
const result = await run();
process.stdout.write(JSON.stringify({ system: a.system, cache: a.system === "llama-server" ? a.cache : undefined, ...result }) + "\n");

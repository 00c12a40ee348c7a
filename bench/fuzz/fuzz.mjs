#!/usr/bin/env node
// Hostile-input fuzzer (issue 11): mutates GGUF models and adapters, PEFT checkpoints
// (safetensors, and PyTorch zip/pickle structure), batch CSV/JSONL/JSON inputs and HTTP requests,
// and runs each through the real entry points in child processes with time and memory limits:
// Engine.load/score and convertPeftLora in a watched worker, `tallrec batch` as a child, and a
// `tallrec serve` child for HTTP. A crash (signal), hang (time limit), memory blow-up, score that
// is not finite without an error, JavaScript bug, oversized output or 5xx is a failure, saved as a
// recipe (format + operations, a few hundred bytes) in test/fixtures/fuzz/ for the replay test.
//
//   npm run fuzz -- --seconds 600              # mutate for ten minutes
//   npm run fuzz -- --cases 40 --seed 7        # a fixed, seeded run
//   npm run fuzz -- --replay                   # rerun the saved recipes
//   options: --formats model,adapter,peft-safetensors,peft-bin,batch,http  --timeout-ms 30000
//            --max-rss-mb 1536  --json  --no-save  --fixtures DIR
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { openGgufSync } from "../../dist/gguf/reader.js";
import { Rng } from "./formats.mjs";
import { applyBatch, applyGguf, applyHttp, applyPeft, buildCorpus, planBatch, planGguf, planHttp, planPeft } from "./mutate.mjs";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const cli = join(repoRoot, "dist", "cli", "main.js");
const FORMATS = ["model", "adapter", "peft-safetensors", "peft-bin", "batch", "http"];
const WEIGHTS = { model: 3, adapter: 3, "peft-safetensors": 2, "peft-bin": 2, batch: 1, http: 3 };
/** Outcomes that are failures: what issue 11 says must never happen. */
const FAILURES = new Set(["crash", "hang", "oom", "silent-null", "internal", "oversize", "converted-refused", "server-error", "server-died", "bad-error-shape"]);

function parseArgs(argv) {
  const o = { seconds: 60, cases: Infinity, seed: Date.now() >>> 0, formats: FORMATS, timeoutMs: 30_000, maxRssMb: 1536, json: false, save: true, replay: false, fixtures: join(repoRoot, "test", "fixtures", "fuzz") };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === "--seconds") o.seconds = Number(next());
    else if (a === "--cases") o.cases = Number(next());
    else if (a === "--seed") o.seed = Number(next()) >>> 0;
    else if (a === "--formats") o.formats = next().split(",");
    else if (a === "--timeout-ms") o.timeoutMs = Number(next());
    else if (a === "--max-rss-mb") o.maxRssMb = Number(next());
    else if (a === "--fixtures") o.fixtures = resolve(next());
    else if (a === "--json") o.json = true;
    else if (a === "--no-save") o.save = false;
    else if (a === "--replay") o.replay = true;
    else if (a === "--help" || a === "-h") {
      process.stdout.write(
        readFileSync(fileURLToPath(import.meta.url), "utf8")
          .split("\n")
          .filter((l) => l.startsWith("//"))
          .map((l) => l.slice(3))
          .join("\n") + "\n",
      );
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  for (const f of o.formats) if (!FORMATS.includes(f)) throw new Error(`unknown format ${f} (known: ${FORMATS.join(", ")})`);
  return o;
}

/** Peak and current resident memory of a process, in bytes (Linux; 0 elsewhere). */
function memoryOf(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(s)?.[1] ?? 0) * 1024;
    return { rss: kb("VmRSS"), peak: kb("VmHWM") };
  } catch {
    return { rss: 0, peak: 0 };
  }
}

/** Runs a child to completion under a time and a memory limit. */
function runLimited(args, { timeoutMs, maxRss, cwd, env }) {
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, args, { cwd, env: { ...process.env, TALLREC_THREADS: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let killedFor = null;
    let peak = 0;
    child.stdout.setEncoding("utf8").on("data", (d) => (stdout = (stdout + d).slice(-20_000)));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr = (stderr + d).slice(-20_000)));
    const watch = setInterval(() => {
      const m = memoryOf(child.pid);
      peak = Math.max(peak, m.peak);
      if (m.rss > maxRss && !killedFor) {
        killedFor = "oom";
        child.kill("SIGKILL");
      }
    }, 50);
    const timer = setTimeout(() => {
      killedFor ??= "hang";
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("close", (code, signal) => {
      clearInterval(watch);
      clearTimeout(timer);
      resolveRun({ code, signal, stdout, stderr, killedFor, peak });
    });
  });
}

/** The worker child: runs GGUF and checkpoint cases in-process, one at a time, watched. */
class Worker {
  constructor(o) {
    this.o = o;
    this.child = null;
    this.peak = 0;
  }
  start() {
    this.child = spawn(process.execPath, [join(repoRoot, "bench", "fuzz", "worker.mjs")], { env: { ...process.env, TALLREC_THREADS: "1" }, stdio: ["pipe", "pipe", "pipe"] });
    this.buffer = "";
    this.stderr = "";
    this.pending = null;
    this.child.stdout.setEncoding("utf8").on("data", (d) => {
      this.buffer += d;
      let nl;
      while ((nl = this.buffer.indexOf("\n")) >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        if (line.startsWith("{") && this.pending) {
          const p = this.pending;
          this.pending = null;
          p.finish(JSON.parse(line));
        }
      }
    });
    this.child.stderr.setEncoding("utf8").on("data", (d) => (this.stderr = (this.stderr + d).slice(-4000)));
    this.child.on("close", (code, signal) => {
      const p = this.pending;
      this.pending = null;
      this.child = null;
      if (p) p.finish({ outcome: p.killedFor ?? "crash", detail: p.killedFor ? `killed (${p.killedFor})` : `worker died: ${signal ?? `exit ${code}`}; ${this.stderr.slice(-600)}` });
    });
  }
  run(c) {
    if (!this.child) this.start();
    const child = this.child;
    return new Promise((resolveCase) => {
      const pending = {
        killedFor: null,
        finish: (r) => {
          clearTimeout(timer);
          clearInterval(watch);
          resolveCase(r);
        },
      };
      const timer = setTimeout(() => {
        pending.killedFor = "hang";
        child.kill("SIGKILL");
      }, this.o.timeoutMs);
      const watch = setInterval(() => {
        const m = memoryOf(child.pid);
        this.peak = Math.max(this.peak, m.peak);
        if (m.rss > this.o.maxRssMb << 20 && !pending.killedFor) {
          pending.killedFor = "oom";
          child.kill("SIGKILL");
        }
      }, 50);
      this.pending = pending;
      child.stdin.write(`${JSON.stringify(c)}\n`);
    });
  }
  stop() {
    this.child?.stdin.end();
    this.child?.kill("SIGKILL");
  }
}

/** The `tallrec serve` child for HTTP cases, with a models folder holding the corpus adapter. */
class Server {
  constructor(o, corpus, work) {
    this.o = o;
    this.corpus = corpus;
    this.dir = join(work, "served");
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(join(this.dir, "small-lora.gguf"), readFileSync(corpus.adapter));
    writeFileSync(join(this.dir, "mutant.gguf"), readFileSync(corpus.adapter).subarray(0, 3000));
    this.child = null;
    this.peak = 0;
  }
  async start() {
    this.child = spawn(process.execPath, [cli, "--threads", "1", "serve", "--port", "0", "-m", this.corpus.model, "-l", `a=${this.corpus.adapter}`, "--models-dir", this.dir, "--batch-wait-ms", "0"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    this.url = await new Promise((ok, fail) => {
      this.child.stderr.setEncoding("utf8").on("data", (d) => {
        stderr = (stderr + d).slice(-8000);
        const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
        if (m) ok(m[1]);
      });
      this.child.on("exit", (code, signal) => fail(new Error(`serve exited (${code ?? signal}): ${stderr}`)));
    });
    this.stderrTail = () => stderr;
    for (let i = 0; i < 500; i++) {
      if ((await fetch(`${this.url}/health`)).status === 200) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error("the server never became ready");
  }
  alive() {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }
  async run(plan) {
    if (!this.alive()) await this.start();
    const req = applyHttp(plan);
    let res;
    try {
      res = await fetch(`${this.url}${req.url}`, { method: req.method, headers: req.headers, body: req.body, signal: AbortSignal.timeout(this.o.timeoutMs) });
    } catch (err) {
      await new Promise((r) => setTimeout(r, 100));
      if (!this.alive()) return { outcome: "server-died", detail: `${err.message}; ${this.child?.signalCode ?? this.child?.exitCode}; ${this.stderrTail().slice(-400)}` };
      return { outcome: err.name === "TimeoutError" ? "hang" : "refused", detail: err.message };
    }
    const text = await res.text();
    this.peak = Math.max(this.peak, memoryOf(this.child.pid).peak);
    if (memoryOf(this.child.pid).rss > this.o.maxRssMb << 20) return { outcome: "oom", detail: "server above the memory limit" };
    if (res.status >= 500 && res.status !== 503) return { outcome: "server-error", detail: `${res.status} ${text.slice(0, 300)}` };
    if (res.status >= 400) {
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        return { outcome: "bad-error-shape", detail: `${res.status} ${text.slice(0, 200)}` };
      }
      // { statusCode, error, code, message }, plus per-item results where items failed
      const shaped = body !== null && typeof body === "object" && body.statusCode === res.status && ["error", "code", "message"].every((k) => typeof body[k] === "string");
      if (!shaped) return { outcome: "bad-error-shape", detail: `${res.status} ${text.slice(0, 200)}` };
      return { outcome: "refused", detail: `${res.status} ${body.code}` };
    }
    if (/"pYes":null|NaN/.test(text)) return { outcome: "silent-null", detail: text.slice(0, 300) };
    return { outcome: "ok", detail: String(res.status) };
  }
  stop() {
    this.child?.kill("SIGKILL");
  }
}

/** Runs one recipe; returns its outcome. */
async function runRecipe(recipe, env) {
  const { corpus, worker, work, o } = env;
  const caseDir = mkdtempSync(join(work, "case-"));
  try {
    if (recipe.format === "model" || recipe.format === "adapter") {
      const src = recipe.format === "model" ? corpus.model : corpus.adapter;
      const file = join(caseDir, "mutant.gguf");
      try {
        await applyGguf(src, file, recipe.ops);
      } catch (err) {
        return { outcome: "unwritable", detail: err.message.slice(0, 200) };
      }
      return await worker.run(recipe.format === "model" ? { id: recipe.id, kind: "model", model: file } : { id: recipe.id, kind: "adapter", model: corpus.model, adapter: file });
    }
    if (recipe.format.startsWith("peft-")) {
      const fmt = recipe.format.slice(5);
      const dir = join(caseDir, "peft");
      try {
        await applyPeft(fmt === "bin" ? corpus.peftBin : corpus.peftSafetensors, dir, fmt, recipe.ops);
      } catch (err) {
        return { outcome: "unwritable", detail: err.message.slice(0, 200) };
      }
      return await worker.run({ id: recipe.id, kind: "peft", dir, out: join(caseDir, "out.gguf"), model: corpus.model });
    }
    if (recipe.format === "batch") {
      const input = join(caseDir, `input.${recipe.plan.format}`);
      applyBatch(recipe.plan, input);
      const out = join(caseDir, "out.csv");
      const r = await runLimited([cli, "--threads", "1", "batch", input, "-o", out, "-m", corpus.model, "-l", corpus.adapter, "--window", "4"], { timeoutMs: o.timeoutMs, maxRss: o.maxRssMb << 20 });
      if (r.killedFor) return { outcome: r.killedFor, detail: r.stderr.slice(-300) };
      if (r.signal) return { outcome: "crash", detail: `${r.signal}: ${r.stderr.slice(-300)}` };
      if (/Maximum call stack|TypeError|ReferenceError|\n\s+at /.test(r.stderr)) return { outcome: "internal", detail: r.stderr.slice(-400) };
      if (![0, 1, 2, 3].includes(r.code)) return { outcome: "crash", detail: `exit ${r.code}: ${r.stderr.slice(-300)}` };
      return { outcome: r.code === 0 ? "ok" : "refused", detail: `exit ${r.code}: ${r.stderr.trim().split("\n").pop()?.slice(0, 200) ?? ""}` };
    }
    if (recipe.format === "http") return await env.server().run(recipe.plan);
    return { outcome: "internal", detail: `unknown format ${recipe.format}` };
  } finally {
    rmSync(caseDir, { recursive: true, force: true });
  }
}

function newRecipe(rng, format, corpus, id) {
  if (format === "model" || format === "adapter") {
    const file = openGgufSync(format === "model" ? corpus.model : corpus.adapter);
    return { id, format, ops: planGguf(rng, file, format) };
  }
  if (format.startsWith("peft-")) {
    const fmt = format.slice(5);
    return { id, format, ops: planPeft(rng, fmt === "bin" ? corpus.peftBin : corpus.peftSafetensors, fmt) };
  }
  if (format === "batch") return { id, format, plan: planBatch(rng) };
  return { id, format, plan: planHttp(rng) };
}

function saveRecipe(o, recipe, result) {
  const { id: _id, ...stable } = recipe;
  const hash = createHash("sha256").update(JSON.stringify(stable)).digest("hex").slice(0, 12);
  mkdirSync(o.fixtures, { recursive: true });
  const path = join(o.fixtures, `${recipe.format}-${hash}.json`);
  if (!existsSync(path)) writeFileSync(path, `${JSON.stringify({ ...stable, found: { outcome: result.outcome, detail: result.detail, seed: recipe.seed } }, null, 2)}\n`);
  return path;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!existsSync(cli)) throw new Error("dist/ is missing: run `npx tsc -p tsconfig.json` first");
  const work = mkdtempSync(join(tmpdir(), "tallrec-fuzz-"));
  const corpus = await buildCorpus(repoRoot, join(tmpdir(), "tallrec-fuzz-corpus-v1"));
  const worker = new Worker(o);
  let server = null;
  const env = {
    corpus,
    worker,
    work,
    o,
    server: () => (server ??= new Server(o, corpus, work)),
  };
  const stats = {};
  const failures = [];
  const replayed = [];
  const t0 = Date.now();
  const count = (format, outcome) => {
    stats[format] ??= { mutants: 0 };
    stats[format].mutants++;
    stats[format][outcome] = (stats[format][outcome] ?? 0) + 1;
  };
  try {
    if (o.replay) {
      const files = existsSync(o.fixtures)
        ? readdirSync(o.fixtures)
            .filter((f) => f.endsWith(".json"))
            .sort()
        : [];
      for (const [i, f] of files.entries()) {
        const recipe = { ...JSON.parse(readFileSync(join(o.fixtures, f), "utf8")), id: i };
        delete recipe.found;
        const r = await runRecipe(recipe, env);
        count(recipe.format, r.outcome);
        replayed.push({ recipe: f, outcome: r.outcome, detail: r.detail });
        if (FAILURES.has(r.outcome)) failures.push({ recipe: f, ...r });
      }
    } else {
      const rng = new Rng(o.seed);
      const bag = o.formats.flatMap((f) => new Array(WEIGHTS[f]).fill(f));
      for (let i = 0; i < o.cases && (Date.now() - t0) / 1000 < o.seconds; i++) {
        const format = rng.pick(bag);
        const recipe = { ...newRecipe(rng, format, corpus, i), seed: `${o.seed}#${i}` };
        const r = await runRecipe(recipe, env);
        count(format, r.outcome);
        if (FAILURES.has(r.outcome)) {
          const saved = o.save ? saveRecipe(o, recipe, r) : null;
          failures.push({ recipe: saved ?? recipe, ...r });
          if (!o.json) process.stderr.write(`FAILURE ${format} ${r.outcome}: ${r.detail}\n`);
        }
      }
    }
  } finally {
    worker.stop();
    server?.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const total = Object.values(stats).reduce((s, x) => s + x.mutants, 0);
  const summary = {
    mode: o.replay ? "replay" : "fuzz",
    seed: o.seed,
    seconds: Math.round((Date.now() - t0) / 100) / 10,
    mutants: total,
    failures: failures.length,
    byFormat: stats,
    peakRssMb: { worker: Math.round(worker.peak / 2 ** 20), server: Math.round((server?.peak ?? 0) / 2 ** 20) },
    failed: failures,
    ...(o.replay ? { replayed } : {}),
  };
  if (o.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else {
    process.stdout.write(
      `${summary.mode}: ${total} mutants in ${summary.seconds} s (seed ${o.seed}), ${failures.length} failures; peak RSS worker ${summary.peakRssMb.worker} MB, server ${summary.peakRssMb.server} MB\n`,
    );
    for (const [f, s] of Object.entries(stats))
      process.stdout.write(
        `  ${f.padEnd(17)} ${Object.entries(s)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ")}\n`,
      );
  }
  process.exitCode = failures.length > 0 ? 1 : 0;
}

await main();

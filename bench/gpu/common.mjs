// Shared by the GPU check's Node stages (bench/gpu/run-gpu.sh runs them): paths, the model shapes
// of the two modes, the workload prompts, and small helpers.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const dist = join(root, "dist");

/**
 * Model shapes. "check": the small model of the correctness stage (n_embd 256, 2 layers, 8 heads
 * over 2 KV heads: grouped-query attention), written as F32 and as F16 with the same weights.
 * "big": LLaMA-7B's shape on the device (F16, 6.74e9 parameters, 13.5 GB); a shrunken model of
 * the same proportions for the CPU rehearsal.
 */
export const SHAPES = {
  check: { nEmbd: 256, nLayer: 2, nHead: 8, nHeadKv: 2, nFf: 688 },
  big: {
    gpu: { nEmbd: 4096, nLayer: 32, nHead: 32, nHeadKv: 32, nFf: 11008 },
    cpu: { nEmbd: 256, nLayer: 2, nHead: 4, nHeadKv: 4, nFf: 688 },
  },
};

/** The workload sizes of each mode. */
export const SIZES = {
  gpu: { prompts: 256, sweepPrompts: 128, candidates: 100, invariance: [1, 7, 64], switching: 16 },
  cpu: { prompts: 32, sweepPrompts: 16, candidates: 20, invariance: [1, 7, 64], switching: 8 },
};

/** TALLRec's LoRA shape: r 8, alpha 16, on q_proj and v_proj. */
export const TALLREC_LORA = { r: 8, alpha: 16, targets: ["attn_q", "attn_v"] };

export function readJson(path) {
  return JSON.parse(readFileSync(path, "utf8"));
}

export function writeJson(path, value) {
  writeFileSync(path, JSON.stringify(value, null, 2) + "\n");
}

/** Seconds since the epoch. */
export const now = () => Date.now() / 1000;

/** Parses --deadline (epoch seconds; 0 = none) into a "seconds left" function. */
export function deadlineFrom(value) {
  const d = Number(value ?? 0);
  return () => (d > 0 ? d - now() : Infinity);
}

export function log(msg) {
  process.stderr.write(`[gpu-check] ${msg}\n`);
}

/** Largest |a-b| / max(1, |b|). */
export function relDiff(a, b) {
  return Math.abs(a - b) / Math.max(1, Math.abs(b));
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const FIXTURE = join(root, "test", "fixtures", "tallrec", "movie", "test.json");
const QUOTED = /"((?:[^"\\]|\\.)*)"/g;

/** Deterministic stand-in titles when the TALLRec sample is not in the checkout. */
function syntheticTitles(n, seed = 1) {
  const a = ["Silent", "Crimson", "Last", "Midnight", "Golden", "Broken", "Hidden", "Distant", "Wild", "Quiet", "Burning", "Lost"];
  const b = ["River", "Summer", "Empire", "Garden", "Station", "Promise", "Harbor", "Frontier", "Letter", "Mirror", "Highway", "Island"];
  const out = [];
  let x = seed;
  for (let i = 0; out.length < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out.push(`${a[i % a.length]} ${b[Math.floor(i / a.length) % b.length]}${i >= a.length * b.length ? ` ${Math.floor(i / (a.length * b.length)) + 1}` : ""} (${1950 + (x % 48)})`);
  }
  return out;
}

/**
 * The workload: `n` TALLRec movie test prompts (TALLRec's own rows from the sample in
 * test/fixtures/tallrec when the checkout has it, else rows rendered from synthetic titles by
 * src/engine/prompt.ts), and a ranking request: the first row's user with `candidates` other movies.
 */
export async function workload(n, candidates) {
  const { renderPrompt, renderInput, INSTRUCTIONS } = await import(join(dist, "engine", "prompt.js"));
  let rows;
  let source;
  if (existsSync(FIXTURE)) {
    rows = readJson(FIXTURE).slice(0, n);
    source = "test/fixtures/tallrec/movie/test.json (TALLRec's movie test rows)";
  } else {
    const titles = syntheticTitles(n * 16);
    rows = Array.from({ length: n }, (_, i) => {
      const items = titles.slice(i * 11, i * 11 + 11);
      return { instruction: INSTRUCTIONS.movie, input: renderInput({ domain: "movie", liked: items.slice(0, 7), disliked: items.slice(7, 10), target: items[10] }) };
    });
    source = "synthetic titles rendered by src/engine/prompt.ts (test/fixtures/tallrec is absent)";
  }
  while (rows.length < n) rows.push(rows[rows.length % Math.max(1, rows.length)]);
  // ranking: the first row's history, the targets and history items of the other rows as candidates
  const [pref, unpref] = rows[0].input.split("\n");
  const own = new Set([...pref.matchAll(QUOTED), ...unpref.matchAll(QUOTED)].map((m) => m[1]));
  const pool = [];
  for (const r of rows.slice(1)) for (const m of r.input.matchAll(QUOTED)) if (!own.has(m[1]) && !pool.includes(m[1])) pool.push(m[1]);
  for (const t of syntheticTitles(candidates)) if (pool.length < candidates && !pool.includes(t)) pool.push(t);
  const liked = [...pref.matchAll(QUOTED)].map((m) => m[1]);
  const disliked = [...unpref.matchAll(QUOTED)].map((m) => m[1]);
  const ranking = pool.slice(0, candidates).map((target) => ({ instruction: INSTRUCTIONS.movie, input: renderInput({ domain: "movie", liked, disliked, target }) }));
  return { source, independent: rows.map(renderPrompt), ranking: ranking.map(renderPrompt), user: { liked: liked.length, disliked: disliked.length } };
}

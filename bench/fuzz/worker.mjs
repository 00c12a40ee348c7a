// Hostile-input fuzzer: the worker. Runs cases read as JSON lines on stdin through the real entry
// points in this process (Engine.load + score + close for GGUF models and adapters; convertPeftLora
// then, when it converts, loading and scoring the result), writing "START <id>" before each case
// and a JSON result line after it. The fuzzer watches this process: a signal, a hang or too much
// memory while a case is in flight is that case's failure.
import { createInterface } from "node:readline";
import { rmSync, statSync } from "node:fs";

const dist = new URL("../../dist/", import.meta.url);
const { Engine } = await import(new URL("engine/engine.js", dist).href);
const { convertPeftLora } = await import(new URL("convert/lora.js", dist).href);

const PROMPTS = [
  { domain: "movie", liked: ["Heat (1995)", "Fargo (1996)"], disliked: ["Jumanji (1995)"], target: "Casino (1995)" },
  {
    instruction: 'Given the user\'s preference and unpreference, identify whether the user will like the target movie by answering "Yes." or "No.".',
    input: 'User Preference: "Heat (1995)"\nUser Unpreference: \nWhether the user will like the target movie "Casino (1995)"?',
  },
];
/** Messages of JavaScript bugs, as opposed to refusals that name a problem. */
const INTERNAL = /Maximum call stack|Cannot read propert|Cannot set propert|is not a function|is not iterable|is not defined|Invalid array length|Invalid typed array length|Array buffer allocation failed|out of memory/i;
/** Largest adapter a 17 KB checkpoint may turn into. */
const MAX_OUTPUT = 64 << 20;

function failureOf(err) {
  const message = String(err?.message ?? err);
  return INTERNAL.test(message) ? { outcome: "internal", detail: message.slice(0, 500) } : { outcome: "refused", detail: message.slice(0, 300) };
}

async function scoreWith(model, adapter) {
  let engine;
  try {
    engine = await Engine.load({ model, adapters: adapter ? [{ name: "a", path: adapter }] : [], gpu: "cpu", threads: 1, contextSize: 512, batchSize: 512, sequences: 4 });
  } catch (err) {
    return failureOf(err);
  }
  try {
    const results = await engine.score(PROMPTS);
    for (const r of results) {
      if (r.error === undefined && ![r.pYes, r.logitYes, r.logitNo].every(Number.isFinite)) return { outcome: "silent-null", detail: JSON.stringify(r) };
    }
    return {
      outcome: results.some((r) => r.error !== undefined) ? "item-errors" : "ok",
      detail: results
        .map((r) => r.error ?? r.pYes)
        .join("; ")
        .slice(0, 300),
    };
  } catch (err) {
    return failureOf(err);
  } finally {
    await engine.close();
  }
}

async function run(c) {
  if (c.kind === "model") return scoreWith(c.model, null);
  if (c.kind === "adapter") return scoreWith(c.model, c.adapter);
  if (c.kind === "peft") {
    try {
      await convertPeftLora(c.dir, c.out, { base: c.model });
    } catch (err) {
      return failureOf(err);
    }
    const size = statSync(c.out).size;
    if (size > MAX_OUTPUT) return { outcome: "oversize", detail: `${size} bytes written` };
    const r = await scoreWith(c.model, c.out);
    rmSync(c.out, { force: true });
    return r.outcome === "refused" ? { outcome: "converted-refused", detail: r.detail } : { ...r, detail: `converted; ${r.detail}` };
  }
  return { outcome: "internal", detail: `unknown case kind ${c.kind}` };
}

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  process.stdout.write(`START ${c.id}\n`);
  const r = await run(c);
  process.stdout.write(`${JSON.stringify({ id: c.id, ...r })}\n`);
}

#!/usr/bin/env node
// Writes bench/gpu/check-prompts.json: the correctness stage's prompts with their token ids, so
// that the float64 reference (which needs ids) can run on the device while llama.cpp compiles,
// before any tokenizer is built. The device checks that the engine tokenizes them the same way.
// Prompts: TALLRec movie row 7 and book row 11 (a long one, with TALLRec's mojibake) from the
// sample in test/fixtures/tallrec, and a short prompt without an input section.
//   node bench/gpu/check-prompts.mjs   (needs the built addon and the test models: npm test)
import { join } from "node:path";

import { dist, readJson, root, writeJson } from "./common.mjs";

const { Engine } = await import(join(dist, "index.js"));
const { renderPrompt } = await import(join(dist, "engine", "prompt.js"));
const { ensureTestModels } = await import(join(dist, "synth", "index.js"));
const fixture = (d) => readJson(join(root, "test", "fixtures", "tallrec", d, "test.json"));
const texts = [renderPrompt(fixture("movie")[7]), renderPrompt(fixture("book")[11]), renderPrompt({ instruction: "Is it?", input: "" })];
const m = await ensureTestModels(join(root, "models"));
const engine = await Engine.load({ model: m.tiny, gpu: "cpu", threads: 1 });
const prompts = texts.map((text) => ({ text, tokens: Array.from(engine.tokenize(text)) }));
await engine.close();
writeJson(join(root, "bench", "gpu", "check-prompts.json"), { note: "written by bench/gpu/check-prompts.mjs; LLaMA token ids, BOS first", prompts });
console.log(prompts.map((p) => p.tokens.length).join(" "));

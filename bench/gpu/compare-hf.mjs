#!/usr/bin/env node
// Compares the harness's scores (GGUF path, llama.cpp) with transformers+peft's (Hugging Face
// path, tallrec_eval.py) on the same prompts: largest logit difference and pYes correlation.
//   node bench/gpu/compare-hf.mjs plan.bin values.bin hf-scores.json
import { readFileSync } from "node:fs";

const [planPath, valuesPath, hfPath] = process.argv.slice(2);
const buf = readFileSync(valuesPath);
const values = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
const { outputOf } = JSON.parse(readFileSync(`${planPath}.json`, "utf8"));
const hf = JSON.parse(readFileSync(hfPath, "utf8"));
let maxDiff = 0;
const a = [];
const b = [];
hf.forEach((h, i) => {
  const s = outputOf[i];
  const yes = values[2 * s];
  const no = values[2 * s + 1];
  maxDiff = Math.max(maxDiff, Math.abs(yes - h.logitYes), Math.abs(no - h.logitNo));
  a.push(1 / (1 + Math.exp(no - yes)));
  b.push(h.pYes);
});
const mean = (x) => x.reduce((s, v) => s + v, 0) / x.length;
const ma = mean(a);
const mb = mean(b);
let sab = 0, saa = 0, sbb = 0;
for (let i = 0; i < a.length; i++) {
  sab += (a[i] - ma) * (b[i] - mb);
  saa += (a[i] - ma) ** 2;
  sbb += (b[i] - mb) ** 2;
}
console.log(JSON.stringify({ prompts: hf.length, maxLogitDiff: maxDiff, pYesCorrelation: sab / Math.sqrt(saa * sbb) }));

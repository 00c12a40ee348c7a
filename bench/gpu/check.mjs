#!/usr/bin/env node
// Compares the harness's output (--out values.bin) with the engine's scores that dump-plan.mjs
// wrote beside the plan: prints the largest difference of the two answer logits.
//   node bench/gpu/check.mjs plan.bin values.bin
import { readFileSync } from "node:fs";

const [planPath, valuesPath] = process.argv.slice(2);
const buf = readFileSync(valuesPath);
const values = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
const { outputOf } = JSON.parse(readFileSync(`${planPath}.json`, "utf8"));
const expected = JSON.parse(readFileSync(`${planPath}.expected.json`, "utf8"));
let maxDiff = 0;
expected.forEach(([yes, no], i) => {
  const s = outputOf[i];
  maxDiff = Math.max(maxDiff, Math.abs(values[2 * s] - yes) / Math.max(1, Math.abs(yes)), Math.abs(values[2 * s + 1] - no) / Math.max(1, Math.abs(no)));
});
console.log(JSON.stringify({ prompts: expected.length, maxRelativeDiff: maxDiff }));
process.exitCode = maxDiff < 1e-3 ? 0 : 1;

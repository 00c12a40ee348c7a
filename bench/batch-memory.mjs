#!/usr/bin/env node
// npm run bench:batch-memory [-- --small 20000 --large 200000]
//
// `tallrec batch` must stream: its peak RSS on a large input should stay within 1.5x of its peak
// RSS on an input ten times smaller. Writes two CSVs of short structured rows (many users, a few
// candidates each), runs the built CLI on each with the tiny test model, samples the process's
// peak RSS (VmHWM), and prints both with the ratio and rows/s.
import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { ensureTestModels } from "../dist/synth/index.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values: a } = parseArgs({
  options: { small: { type: "string", default: "20000" }, large: { type: "string", default: "200000" }, threads: { type: "string", default: "2" } },
});
const dir = join(root, "bench", "results", "batch-memory");
mkdirSync(dir, { recursive: true });
const titles = ["Heat (1995)", "Casino (1995)", "Babe (1995)", "Fargo (1996)", "Se7en (1995)", "Twister (1996)", "Toy Story (1995)", "Jumanji (1995)"];

async function writeInput(path, rows) {
  const out = createWriteStream(path);
  out.write("user,liked,disliked,target\n");
  for (let i = 0; i < rows; i++) {
    const u = Math.floor(i / 4);
    const line = `u${u},${titles[u % 8]};${titles[(u + 3) % 8]},${titles[(u + 5) % 8]},${titles[i % 8]}\n`;
    if (!out.write(line)) await new Promise((r) => out.once("drain", r));
  }
  await new Promise((r) => out.end(r));
}

function run(input, output, model) {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [join(root, "dist", "cli", "main.js"), "--threads", a.threads, "--quiet", "batch", input, "-o", output, "-m", model, "--user-col", "user"], { stdio: "ignore" });
    let peak = 0;
    const poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        if (m) peak = Math.max(peak, Number(m[1]) * 1024);
      } catch {}
    }, 100);
    child.on("exit", (code) => {
      clearInterval(poll);
      if (code !== 0) reject(new Error(`tallrec batch exited with ${code}`));
      else resolvePromise({ peakRss: peak, seconds: (performance.now() - t0) / 1000 });
    });
  });
}

const { tiny } = await ensureTestModels(join(root, "models"));
const results = {};
for (const [name, rows] of [
  ["small", Number(a.small)],
  ["large", Number(a.large)],
]) {
  const input = join(dir, `${name}.csv`);
  const output = join(dir, `${name}-scores.csv`);
  await writeInput(input, rows);
  rmSync(output, { force: true });
  rmSync(`${output}.progress`, { force: true });
  const r = await run(input, output, tiny);
  results[name] = { rows, ...r, rowsPerSecond: rows / r.seconds };
  rmSync(input);
  rmSync(output);
}
const ratio = results.large.peakRss / results.small.peakRss;
const report = { date: new Date().toISOString(), command: `npm run bench:batch-memory -- ${process.argv.slice(2).join(" ")}`.trim(), ...results, ratio, pass: ratio <= 1.5 };
writeFileSync(join(root, "bench", "results", "batch-memory.json"), JSON.stringify(report, null, 2) + "\n");
const mb = (b) => (b / 1048576).toFixed(0);
console.log("| rows | peak RSS (MB) | seconds | rows/s |");
console.log("| ---: | ---: | ---: | ---: |");
for (const r of [results.small, results.large]) console.log(`| ${r.rows} | ${mb(r.peakRss)} | ${r.seconds.toFixed(1)} | ${r.rowsPerSecond.toFixed(0)} |`);
console.log(`\npeak RSS ratio large/small: ${ratio.toFixed(2)} (target <= 1.5: ${report.pass ? "met" : "MISSED"})`);

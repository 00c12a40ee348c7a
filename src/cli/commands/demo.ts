/** `tallrec demo`: the whole pipeline on a generated tiny model, with no arguments. */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { Command } from "commander";

import { Engine } from "../../engine/engine.js";
import { openRows } from "../../io/index.js";
import { ensureTestModels } from "../../synth/index.js";
import { allOptions, CliError, makeLog, positiveIntArg } from "../common.js";
import { parseLabel } from "../rows.js";
import { evaluate, type LabelledExample } from "../../eval/evaluate.js";

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** A few TALLRec-shaped rows for when the shared data is not there. */
const BUILT_IN = [
  { liked: ["Toy Story (1995)", "Babe (1995)"], disliked: ["Heat (1995)"], target: "Aladdin (1992)", label: 1 as const },
  { liked: ["Heat (1995)", "Casino (1995)"], disliked: ["Babe (1995)"], target: "Goodfellas (1990)", label: 1 as const },
  { liked: ["Fargo (1996)"], disliked: ["Jumanji (1995)"], target: "Twister (1996)", label: 0 as const },
  { liked: ["Star Wars (1977)", "Alien (1979)"], disliked: [], target: "Sense and Sensibility (1995)", label: 0 as const },
];

function dataFile(): string | null {
  const candidates = [
    process.env.TALLREC_DATA && join(process.env.TALLREC_DATA, "tallrec/movie/test.json"),
    resolve("../shared/data/tallrec/movie/test.json"),
    join(packageRoot, "../shared/data/tallrec/movie/test.json"),
  ].filter((p): p is string => !!p);
  return candidates.find((p) => existsSync(p)) ?? null;
}

export function demoCommand(): Command {
  return new Command("demo")
    .description("run end to end on a generated tiny random-weight model (no arguments needed)")
    .option("--rows <n>", "TALLRec movie test rows to evaluate", positiveIntArg("--rows"), 200)
    .option("--models <dir>", "where to generate the tiny models", join(packageRoot, "models"))
    .action(async (_o, command: Command) => {
      const o = allOptions<{ rows: number; models: string }>(command);
      const log = makeLog(o);
      const say = (s: string) => process.stdout.write(`${s}\n`);
      let paths;
      try {
        paths = await ensureTestModels(o.models);
      } catch (err) {
        throw new CliError(`cannot generate the demo model: ${(err as Error).message}`);
      }
      say("tallrec demo");
      say("NOTE: the model is a tiny random-weight LLaMA (real LLaMA vocabulary, 2 layers, 64 wide).");
      say("      Its scores, and the AUC below, are meaningless: this shows the pipeline, not a result.\n");

      const file = dataFile();
      const examples: LabelledExample[] = [];
      if (file) {
        const source = await openRows(file);
        for await (const row of source) {
          if (examples.length >= o.rows) break;
          if (row.error) continue;
          examples.push({ index: row.index, label: parseLabel(row.values.output, "output"), prompt: { instruction: String(row.values.instruction), input: String(row.values.input) } });
        }
        await source.close();
        say(`data:   ${file} (first ${examples.length} rows)`);
      } else {
        BUILT_IN.forEach((r, i) => examples.push({ index: i, label: r.label, prompt: { domain: "movie", liked: r.liked, disliked: r.disliked, target: r.target } }));
        say(`data:   ${BUILT_IN.length} built-in rows (../shared/data/tallrec not found)`);
      }
      say(`model:  ${paths.tiny}`);
      say(`lora:   ${paths.loraA} (r=8, alpha=16, q_proj and v_proj, like TALLRec's)\n`);

      const engine = await Engine.load({
        model: paths.tiny,
        adapters: [{ name: "movie", path: paths.loraA }],
        gpu: o.gpu,
        threads: o.threads,
        kvType: o.kvType,
        flashAttention: o.flashAttn === undefined ? undefined : o.flashAttn === "on",
      });
      try {
        const t0 = performance.now();
        const { perRow, metrics } = await evaluate(engine, examples, { chunk: 256 });
        const seconds = (performance.now() - t0) / 1000;
        const first = perRow.find((r) => !r.error);
        if (first) say(`first row: p(Yes) = ${first.softmax.toFixed(4)} (label ${first.label ? "Yes" : "No"}), logits yes ${first.logitYes.toFixed(3)} / no ${first.logitNo.toFixed(3)}`);
        say(`scored ${perRow.length} rows in ${seconds.toFixed(1)} s (${(perRow.length / seconds).toFixed(1)} rows/s, ${engine.info.backend})`);
        for (const rule of ["softmax", "tallrec-compat"] as const) say(`AUC (${rule}): ${metrics[rule].auc.toFixed(4)}   <- random weights: meaningless`);
      } finally {
        await engine.close();
      }
      say(`
With a real LLaMA-7B GGUF and a TALLRec adapter (see models/README.md), the same work is:
  tallrec eval ../shared/data/tallrec/movie/test.json -m models/llama-7b.gguf -l movie=models/tallrec-movie.gguf
  tallrec batch ../shared/data/tallrec/book/test.json -o scores.csv -m models/llama-7b.gguf -l book=models/tallrec-book.gguf
  tallrec score -m models/llama-7b.gguf -l models/tallrec-movie.gguf --liked "Heat (1995);Casino (1995)" --target "Goodfellas (1990)"`);
      log("");
    });
}

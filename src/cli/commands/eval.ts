/** `tallrec eval`: AUC, log loss and accuracy of a model + adapter on labelled prompts. */
import { Command, Option } from "commander";

import { formatCsvRow, formatJsonlRow, openRows, TextWriter, type RowFormat } from "../../io/index.js";
import type { MetricsSummary } from "../../eval/classification.js";
import { evaluate, shuffleInPlace, type LabelledExample } from "../../eval/evaluate.js";
import { SCORING_RULES, type ScoringRule } from "../../engine/scoring.js";
import { addModelOptions, allOptions, CliError, EXIT, loadEngine, makeLog, positiveIntArg, type ModelOptions } from "../common.js";
import { Progress } from "../progress.js";
import { DEFAULT_COLUMNS, parseLabel, promptReader, type ColumnOptions } from "../rows.js";
import { sameFileAs } from "../../io/same-file.js";
import { evalPlotSpec, plotFormat, writePlot } from "../../plots/index.js";

interface EvalOptions extends ModelOptions, Partial<ColumnOptions> {
  format?: RowFormat;
  labelCol?: string;
  adapter?: string;
  limit?: number;
  shuffle?: boolean;
  seed: number;
  out?: string;
  json?: boolean;
  chunk: number;
  plot?: string;
  plotTitle?: string;
}

export interface EvalReport {
  data: string;
  rows: number;
  scored: number;
  failed: number;
  seconds: number;
  rowsPerSecond: number;
  metrics: Record<ScoringRule, MetricsSummary>;
}

/** Reads labelled examples; rows that cannot be used are reported by index and skipped. */
async function readExamples(path: string, o: EvalOptions, log: (m: string) => void): Promise<{ examples: LabelledExample[]; bad: Array<{ index: number; error: string }> }> {
  const source = await openRows(path, { format: o.format });
  const columns = await source.columns();
  const cols: ColumnOptions = { ...DEFAULT_COLUMNS, ...definedOnly(o) };
  const { toPrompt } = promptReader(columns, cols);
  const labelCol = o.labelCol ?? (columns.includes("output") ? "output" : "label");
  if (!columns.includes(labelCol)) throw new CliError(`no label column "${labelCol}" (use --label-col); columns: ${columns.join(", ")}`, EXIT.USAGE);
  const examples: LabelledExample[] = [];
  const bad: Array<{ index: number; error: string }> = [];
  for await (const row of source) {
    if (row.error) {
      bad.push({ index: row.index, error: row.error });
      continue;
    }
    try {
      examples.push({ index: row.index, label: parseLabel(row.values[labelCol], labelCol), prompt: toPrompt(row.values) });
    } catch (err) {
      bad.push({ index: row.index, error: `row ${row.index} (line ${row.line}): ${(err as Error).message}` });
    }
  }
  for (const b of bad.slice(0, 5)) log(`skipped: ${b.error}`);
  if (bad.length > 5) log(`skipped ${bad.length - 5} more rows`);
  return { examples, bad };
}

function definedOnly(o: Partial<ColumnOptions>): Partial<ColumnOptions> {
  return Object.fromEntries(Object.entries(o).filter(([k, v]) => v !== undefined && k in DEFAULT_COLUMNS)) as Partial<ColumnOptions>;
}

export function evalCommand(): Command {
  const cmd = new Command("eval")
    .description("evaluate on labelled prompts (TALLRec JSON, JSONL, CSV): AUC, log loss, accuracy for both scoring rules")
    .argument("<data>", "TALLRec .json (instruction, input, output), .jsonl or .csv with a label column")
    .addOption(new Option("--format <format>", "input format (default: from the extension)").choices(["csv", "jsonl", "json"]))
    .option("--label-col <name>", 'label column (default "output", else "label"): Yes./No., yes/no, 1/0, true/false')
    .option("--adapter <name>", "adapter to use (default: the only one loaded)")
    .option("--limit <n>", "evaluate the first N rows (after --shuffle)", positiveIntArg("--limit"))
    .option("--shuffle", "shuffle rows before --limit")
    .option("--seed <n>", "shuffle seed", (v) => Number(v), 0)
    .option("-o, --out <file>", "write per-row predictions (.csv or .jsonl)")
    .option("--json", "print the report as JSON")
    .option("--chunk <n>", "rows per engine call", positiveIntArg("--chunk"), 256)
    .option("--plot <file>", "draw ROC (with AUC), reliability diagram and score histograms per label, both rules: FILE.svg, .png or .html")
    .option("--plot-title <text>", "title of the plot (default: the data, model and adapter)")
    .option("--instruction-col <name>", "instruction column")
    .option("--input-col <name>", "input column")
    .option("--liked-col <name>", "liked-items column")
    .option("--disliked-col <name>", "disliked-items column")
    .option("--target-col <name>", "target-item column")
    .addOption(new Option("--domain <domain>", "domain of structured rows").choices(["movie", "book"]))
    .option("--domain-col <name>", "domain column of structured rows")
    .option("--sep <s>", "list separator in CSV list columns")
    .addHelpText(
      "after",
      `
Example:
  tallrec eval ../shared/data/tallrec/movie/test.json -m models/llama-7b.gguf -l movie=models/movie.gguf -o preds.csv

Both rules come from one scoring pass: "softmax" (over the two answer logits) and
"tallrec-compat" (TALLRec's evaluate.py: vocabulary softmax, then a softmax of the two).`,
    )
    .action(async (data: string, _o, command: Command) => {
      const o = allOptions<EvalOptions>(command);
      if (o.out && o.out !== "-" && sameFileAs(o.out, [data])) throw new CliError(`the output ${o.out} is the input file ${data}: writing it would destroy the input`, EXIT.USAGE);
      const log = makeLog(o);
      if (o.plot !== undefined && !plotFormat(o.plot)) throw new CliError(`--plot ${o.plot}: the file must end in .svg, .png or .html`, EXIT.USAGE);
      if (o.plot && sameFileAs(o.plot, [data])) throw new CliError(`the plot ${o.plot} is the input file ${data}: writing it would destroy the input`, EXIT.USAGE);
      const { examples: all, bad } = await readExamples(data, o, log);
      let examples = o.shuffle ? shuffleInPlace(all, o.seed) : all;
      if (o.limit !== undefined) examples = examples.slice(0, o.limit);
      if (examples.length === 0) throw new CliError(`${data}: no usable rows`, EXIT.FAILURE, "empty");
      const engine = await loadEngine(o, o);
      const t0 = performance.now();
      const progress = new Progress("eval", examples.length, o.quiet);
      let result;
      try {
        result = await evaluate(engine, examples, { adapter: o.adapter, chunk: o.chunk, progress });
      } finally {
        await engine.close();
      }
      progress.finish();
      const seconds = (performance.now() - t0) / 1000;
      const failed = result.perRow.filter((r) => r.error).length + bad.length;
      const report: EvalReport = {
        data,
        rows: examples.length + bad.length,
        scored: examples.length - result.perRow.filter((r) => r.error).length,
        failed,
        seconds,
        rowsPerSecond: examples.length / seconds,
        metrics: result.metrics,
      };
      if (o.out) {
        const jsonl = /\.jsonl$|\.ndjson$/i.test(o.out);
        const w = new TextWriter(o.out);
        if (!jsonl) await w.write(formatCsvRow(["index", "label", "p_yes_softmax", "p_yes_compat", "logit_yes", "logit_no", "error"]));
        for (const r of result.perRow) {
          await w.write(
            jsonl
              ? formatJsonlRow({ index: r.index, label: r.label, p_yes_softmax: r.softmax, p_yes_compat: r.compat, logit_yes: r.logitYes, logit_no: r.logitNo, ...(r.error ? { error: r.error } : {}) })
              : formatCsvRow([r.index, r.label, r.error ? null : r.softmax, r.error ? null : r.compat, r.error ? null : r.logitYes, r.error ? null : r.logitNo, r.error ?? null]),
          );
        }
        await w.close();
      }
      if (o.plot) {
        const ok = result.perRow.filter((r) => r.error === undefined);
        const labels = ok.map((r) => r.label);
        const model = (o.model ?? process.env.TALLREC_MODEL ?? "").split(/[\\/]/).pop() ?? "";
        const title = o.plotTitle ?? `tallrec eval: ${data.split(/[\\/]/).slice(-2).join("/")}, ${model}${o.adapter ? ` + ${o.adapter}` : ""}, ${ok.length} rows`;
        await writePlot(
          o.plot,
          evalPlotSpec(title, [
            { rule: "softmax", labels, scores: ok.map((r) => r.softmax), auc: report.metrics.softmax.auc },
            { rule: "tallrec-compat", labels, scores: ok.map((r) => r.compat), auc: report.metrics["tallrec-compat"].auc },
          ]),
        );
        log(`plot: ${o.plot}`);
      }
      if (o.json) {
        process.stdout.write(JSON.stringify(report, null, 2) + "\n");
      } else {
        const f = (x: number, d = 4) => (Number.isNaN(x) ? "n/a" : x.toFixed(d));
        process.stdout.write(`${data}: ${report.scored} rows scored, ${report.failed} failed, ${f(report.rowsPerSecond, 1)} rows/s\n`);
        process.stdout.write(`${"scoring".padEnd(16)}${"AUC".padStart(8)}${"log loss".padStart(10)}${"accuracy".padStart(10)}${"positives".padStart(11)}\n`);
        for (const rule of SCORING_RULES) {
          const m = report.metrics[rule];
          process.stdout.write(`${rule.padEnd(16)}${f(m.auc).padStart(8)}${f(m.logLoss).padStart(10)}${f(m.accuracy).padStart(10)}${`${m.positives}/${m.n}`.padStart(11)}\n`);
        }
      }
      if (failed > 0) process.exitCode = EXIT.PARTIAL;
    });
  return addModelOptions(cmd);
}

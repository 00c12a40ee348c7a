/**
 * `tallrec batch`: score a CSV/JSONL/JSON file of user–item rows into a CSV/JSONL file, streaming
 * (constant memory), in input order, every row accounted for, resumable after an interruption.
 */
import { Command, Option } from "commander";

import { resolve as resolvePath } from "node:path";

import { DEFAULT_QUEUE_NAME, redactUrl, sha256Text } from "../../distributed/common.js";
import { QueueScorer } from "../../distributed/producer.js";
import type { ScoreInput, ScoreResult } from "../../engine/engine.js";
import { codeOf } from "../../errors.js";
import { formatCsvRow, formatJsonlRow, openResumableOutput, openRows, TextWriter, type Row, type RowFormat } from "../../io/index.js";
import { sameFileAs } from "../../io/same-file.js";
import { SCORING_RULES, type ScoringRule } from "../../engine/scoring.js";
import { addModelOptions, allOptions, CliError, EXIT, loadEngine, loraSpecs, makeLog, modelPath, positiveIntArg, type ModelOptions } from "../common.js";
import { Progress } from "../progress.js";
import { DEFAULT_COLUMNS, promptReader, type ColumnOptions, type RowToPrompt } from "../rows.js";

interface BatchOptions extends ModelOptions, Partial<ColumnOptions> {
  out: string;
  format?: RowFormat;
  outFormat?: "csv" | "jsonl";
  adapter?: string;
  scoring: ScoringRule;
  window: number;
  resume?: boolean;
  queue?: string;
  queueName: string;
  runId?: string;
  inflight: number;
}

/** What scores a window: the local engine, or the queue (`--queue`: src/distributed). */
interface WindowScorer {
  score(prompts: ScoreInput[], window: { first: number; rows: number }, signal: AbortSignal): Promise<ScoreResult[]>;
  /** The window is written and checkpointed. */
  done?(first: number): Promise<void>;
  close(): Promise<void>;
}

type OutFormat = "csv" | "jsonl";

/** The output format: --out-format, else from the extension, else CSV. */
function outputFormat(path: string, explicit?: OutFormat): OutFormat {
  if (explicit) return explicit;
  if (/\.(jsonl|ndjson|jsonlines)$/i.test(path)) return "jsonl";
  if (/\.json$/i.test(path)) throw new CliError(`${path}: write .jsonl or .csv (a JSON array cannot be streamed or resumed)`, EXIT.USAGE);
  return "csv";
}

function cell(v: unknown): string | number | null {
  if (v === undefined || v === null) return null;
  if (typeof v === "string" || typeof v === "number") return v;
  return JSON.stringify(v);
}

/**
 * Formats one output row: the input's columns, then p_yes, logit_yes, logit_no, error. A row whose
 * values cannot be written back (JSON nested too deep to serialize) keeps its place as an error row
 * with empty columns: the run goes on and --resume passes it.
 */
function formatRow(format: OutFormat, columns: readonly string[], row: Row, result: ScoreResult): string {
  try {
    return formatRowValues(format, columns, row, result);
  } catch (err) {
    const error = `line ${row.line}: the row cannot be written back (${(err as Error).message})`;
    return formatRowValues(format, columns, { ...row, values: Object.fromEntries(columns.map((c) => [c, null])) }, { error, code: "unsupported" });
  }
}

function formatRowValues(format: OutFormat, columns: readonly string[], row: Row, result: ScoreResult): string {
  const ok = result.error === undefined;
  if (format === "jsonl") {
    return formatJsonlRow({
      ...row.values,
      p_yes: ok ? result.pYes : null,
      logit_yes: ok ? result.logitYes : null,
      logit_no: ok ? result.logitNo : null,
      ...(ok ? {} : { error: result.error }),
    });
  }
  return formatCsvRow([...columns.map((c) => cell(row.values[c])), ok ? result.pYes : null, ok ? result.logitYes : null, ok ? result.logitNo : null, ok ? null : result.error]);
}

/** Scores one window of rows; rows that are unreadable or do not make a prompt get their error. */
async function scoreWindow(engine: WindowScorer, rows: Row[], toPrompt: RowToPrompt, signal: AbortSignal): Promise<ScoreResult[]> {
  const results: ScoreResult[] = new Array(rows.length);
  const prompts: ScoreInput[] = [];
  const at: number[] = [];
  rows.forEach((row, k) => {
    if (row.error) {
      results[k] = { error: row.error, code: "invalid_data" };
      return;
    }
    try {
      prompts.push(toPrompt(row.values));
      at.push(k);
    } catch (err) {
      results[k] = { error: `line ${row.line}: ${(err as Error).message}`, code: codeOf(err) === "internal" ? "invalid_input" : codeOf(err) };
    }
  });
  if (prompts.length > 0) {
    const scored = await engine.score(prompts, { first: rows[0].index, rows: rows.length }, signal);
    scored.forEach((r, j) => (results[at[j]] = r.error === undefined ? r : { error: `line ${rows[at[j]].line}: ${r.error}`, code: r.code }));
  }
  return results;
}

export function batchCommand(): Command {
  const cmd = new Command("batch")
    .description("score a file of user-item rows (CSV, JSONL or TALLRec JSON) into CSV or JSONL, streaming and resumable")
    .argument("<input>", 'input file, or "-" for stdin')
    .requiredOption("-o, --out <file>", 'output .csv or .jsonl, or "-" for stdout')
    .addOption(new Option("--format <format>", "input format (default: from the extension, else sniffed)").choices(["csv", "jsonl", "json"]))
    .addOption(new Option("--out-format <format>", "output format (default: from the extension, else csv)").choices(["csv", "jsonl"]))
    .option("--adapter <name>", "adapter to use (default: the only one loaded)")
    .addOption(new Option("--scoring <rule>", "scoring rule").choices([...SCORING_RULES]).default("softmax"))
    .option("--user-col <name>", "user column: a user's adjacent rows are kept in one window so their history is evaluated once")
    .option("--instruction-col <name>", 'instruction column (default "instruction")')
    .option("--input-col <name>", 'input column (default "input")')
    .option("--liked-col <name>", 'liked-items column (default "liked")')
    .option("--disliked-col <name>", 'disliked-items column (default "disliked")')
    .option("--target-col <name>", 'target-item column (default "target")')
    .addOption(new Option("--domain <domain>", "domain of structured rows (default movie)").choices(["movie", "book"]))
    .option("--domain-col <name>", "domain column of structured rows")
    .option("--sep <s>", 'separator of items in CSV list columns (default ";")')
    .option("--window <n>", "rows scored per engine call", positiveIntArg("--window"), 512)
    .option("--resume", "continue an interrupted run of the same command (same output file)")
    .option("--queue <url>", "score the windows on `tallrec worker` processes through a Redis-backed queue (BullMQ): redis://HOST:PORT[/DB]")
    .option("--queue-name <name>", "BullMQ queue name (with --queue)", DEFAULT_QUEUE_NAME)
    .option("--run-id <id>", "name of this run in the queue (with --queue; default: derived from the input, output and options)")
    .option("--inflight <n>", "most windows queued or being scored at once (with --queue)", positiveIntArg("--inflight"), 8)
    .addHelpText(
      "after",
      `
Output: the input's columns, then p_yes, logit_yes, logit_no, and error for rows that failed
(unreadable, missing a column, or longer than the context); such rows never stop the run.
Exit code 0 when every row was scored, 3 when some rows failed, 130 when interrupted (Ctrl-C
flushes what is scored; run again with --resume to continue where it stopped).

Examples:
  tallrec batch ../shared/data/tallrec/book/test.json -o book-scores.csv -m models/llama-7b.gguf -l book=models/book.gguf
  tallrec batch pairs.csv -o scores.jsonl --liked-col history --target-col item --sep "|" --user-col user_id --resume`,
    )
    .action(async (input: string, _o, command: Command) => {
      const o = allOptions<BatchOptions>(command);
      const log = makeLog(o);
      const format = outputFormat(o.out, o.outFormat);
      if (o.resume && o.out === "-") throw new CliError("--resume needs an output file, not stdout", EXIT.USAGE);
      // the same file under another name (./x, a symbolic or hard link) too: checked before anything is opened
      if (o.out !== "-" && input !== "-" && sameFileAs(o.out, [input])) throw new CliError(`the output ${o.out} is the input file ${input}: writing it would destroy the input`, EXIT.USAGE);

      const source = await openRows(input, { format: o.format });
      const columns = await source.columns();
      const cols: ColumnOptions = { ...DEFAULT_COLUMNS, ...Object.fromEntries(Object.entries(o).filter(([k, v]) => v !== undefined && k in DEFAULT_COLUMNS)) };
      const { toPrompt } = promptReader(columns, cols);
      const header = format === "csv" ? formatCsvRow([...columns, "p_yes", "logit_yes", "logit_no", "error"]) : "";

      // open the engine before touching the output: a bad model must not truncate an earlier run
      const fingerprint = JSON.stringify({ input, model: modelPath(o), loras: loraSpecs(o), adapter: o.adapter ?? null, scoring: o.scoring, cols, format });
      let engine: WindowScorer;
      if (o.queue) {
        if (o.runId !== undefined && !/^[A-Za-z0-9_.-]{1,100}$/.test(o.runId)) throw new CliError("--run-id: letters, digits, _ . - only (at most 100)", EXIT.USAGE);
        const flags = { kvType: o.kvType ?? null, flashAttn: o.flashAttn ?? null, ctx: o.ctx ?? null, batch: o.batch ?? null, sequences: o.sequences ?? null };
        const runId = o.runId ?? `run.${sha256Text(JSON.stringify({ fingerprint, out: o.out === "-" ? "-" : resolvePath(o.out), window: o.window, flags })).slice(0, 16)}`;
        const remote = await QueueScorer.open({ url: o.queue, queueName: o.queueName, runId, model: modelPath(o), adapters: loraSpecs(o), adapter: o.adapter ?? null, scoring: o.scoring, engine: flags }).catch(
          (err: Error) => {
            throw new CliError(err.message);
          },
        );
        log(`run ${runId}: windows go to queue ${o.queueName} on ${redactUrl(o.queue)}, at most ${o.inflight} at once`);
        engine = { score: (p, w, signal) => remote.score(p, w.first, w.rows, signal), done: (first) => remote.done(first), close: () => remote.close() };
      } else {
        const local = await loadEngine(o, o);
        engine = { score: (p, _w, signal) => local.score(p, { adapter: o.adapter, scoring: o.scoring, signal }), close: () => local.close() };
      }
      const out =
        o.out === "-"
          ? null
          : // checkpoints only at window ends (flushBytes never triggers), so a resumed run scores the
            // same windows as an uninterrupted one and writes the same bytes
            await openResumableOutput(o.out, { resume: !!o.resume, header, rowFormat: format === "csv" ? "csv" : "lines", fingerprint, flushBytes: Number.MAX_SAFE_INTEGER });
      const stdout = o.out === "-" ? new TextWriter(process.stdout) : null;
      if (stdout && header) await stdout.write(header);
      const startIndex = out?.startIndex ?? 0;
      if (out && o.resume) log(`resuming at row ${startIndex} (${out.resumeInfo.source}${out.resumeInfo.discardedBytes ? `, ${out.resumeInfo.discardedBytes} bytes of a partial row dropped` : ""})`);

      const abort = new AbortController();
      let interrupted = false;
      const onSignal = (sig: NodeJS.Signals) => {
        if (interrupted) process.exit(EXIT.INTERRUPTED); // second Ctrl-C: leave now
        interrupted = true;
        log(`\n${sig}: stopping; flushing the rows already scored`);
        abort.abort();
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);

      const progress = new Progress("batch", undefined, o.quiet);
      let written = 0;
      let failed = 0;
      const write = async (rows: Row[], results: ScoreResult[]) => {
        for (let k = 0; k < rows.length; k++) {
          const text = formatRow(format, columns, rows[k], results[k]);
          if (results[k].error !== undefined) failed++;
          if (out) await out.write(text, rows[k].index);
          else await stdout!.write(text);
          written++;
        }
        if (out) await out.flush(); // durable and checkpointed, window by window
        if (engine.done && rows.length > 0) await engine.done(rows[0].index);
        progress.update(startIndex + written, failed);
      };

      const userOf = (row: Row) => (o.userCol ? String(row.values[o.userCol] ?? "") : null);
      // windows being scored, oldest first: one locally (scored while the next is read), up to
      // --inflight through the queue; always written in input order
      const depth = o.queue ? o.inflight : 1;
      const pending: { rows: Row[]; results: Promise<ScoreResult[]> }[] = [];
      const settle = async (keep = 0) => {
        while (pending.length > keep) {
          const p = pending.shift()!;
          await write(p.rows, await p.results);
        }
      };
      let window: Row[] = [];
      const submit = async () => {
        if (window.length === 0) return;
        const rows = window;
        window = [];
        // score this window while the next one is read
        const results = scoreWindow(engine, rows, toPrompt, abort.signal);
        results.catch(() => {}); // handled when settled
        await settle(depth - 1);
        pending.push({ rows, results });
      };

      let error: unknown;
      try {
        for await (const row of source) {
          if (interrupted) break;
          if (row.index < startIndex) continue;
          if (window.length >= o.window) {
            const boundary = userOf(row) === null || userOf(row) !== userOf(window[window.length - 1]) || window.length >= 4 * o.window;
            if (boundary) await submit();
          }
          window.push(row);
        }
        if (!interrupted) await submit();
        await settle();
      } catch (err) {
        error = err;
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        await source.close();
        if (out) await out.close();
        if (stdout) await stdout.close();
        await engine.close();
        progress.finish();
      }
      if (interrupted) {
        log(`interrupted: rows 0..${startIndex + written - 1} are in ${o.out}; run the same command with --resume to continue`);
        process.exitCode = EXIT.INTERRUPTED;
        return;
      }
      if (error) throw error;
      log(`${written} rows written to ${o.out === "-" ? "stdout" : o.out}${failed ? `, ${failed} with errors (see the error column)` : ""}`);
      process.exitCode = failed > 0 ? EXIT.PARTIAL : EXIT.OK;
    });
  return addModelOptions(cmd);
}

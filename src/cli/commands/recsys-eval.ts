/**
 * `tallrec recsys-eval --data ../shared/data/ml-100k`: the classic recommenders alone and followed
 * by TALLRec re-ranking (when a model is given), precision / recall / NDCG at 5 and 10, and RMSE /
 * MAE of rating prediction, beside Chat-REC's published numbers.
 */
import { basename } from "node:path";

import { Command, Option } from "commander";

import { loadData, RECOMMENDER_KINDS, type RecommenderKind } from "../../chatrec/sources.js";
import { ChatRecError } from "../../chatrec/errors.js";
import { formatReport, runRecsysEval, type RecsysEvalReport } from "../../chatrec/eval.js";
import type { Engine } from "../../engine/engine.js";
import { SCORING_RULES, type ScoringRule } from "../../engine/scoring.js";
import { RecsysError } from "../../recsys/errors.js";
import { addModelOptions, allOptions, CliError, EXIT, loadEngine, makeLog, modelPath, positiveIntArg, splitList, type ModelOptions } from "../common.js";
import { Progress } from "../progress.js";
import { plotFormat, recsysPlotSpec, writePlot } from "../../plots/index.js";

interface RecsysEvalOptions extends ModelOptions {
  data?: string;
  ratings?: string;
  items?: string;
  split: "random" | "leave-last-out";
  testFraction: number;
  seed: number;
  ks: string;
  models: string;
  candidates: number;
  minRating?: number;
  users?: number;
  adapter?: string;
  scoring: ScoringRule;
  alpha: number;
  rerank: boolean;
  label?: string;
  json?: boolean;
  published: boolean;
  plot?: string;
  plotTitle?: string;
}

/** The `recsys-eval` command (commander), for the program in src/cli/main.ts. */
export function recsysEvalCommand(): Command {
  const cmd = new Command("recsys-eval")
    .description("evaluate the classic recommenders, and each followed by TALLRec re-ranking, on interaction data (Chat-REC's protocol)")
    .option("--data <dir>", "MovieLens-100K folder (u.data, u.item, u.genre)")
    .option("--ratings <file>", "interactions: u.data, or a CSV with user,item,rating,timestamp")
    .option("--items <file>", "items (titles for TALLRec): u.item, or a CSV with item,title,genres")
    .addOption(new Option("--split <kind>", "random: seeded split of the ratings (Chat-REC's); leave-last-out: each user's last rating").choices(["random", "leave-last-out"]).default("random"))
    .option("--test-fraction <f>", "test share of the random split", (v) => Number(v), 0.2)
    .option("--seed <n>", "seed of the split, the user sample and the MF models", (v) => Number(v), 42)
    .option("--ks <list>", "cut-offs, comma-separated", "5,10")
    .option("--models <list>", `recommenders, comma-separated (${RECOMMENDER_KINDS.join(", ")})`, "popularity,knn,bpr")
    .option("--candidates <n>", "candidates TALLRec re-ranks per user", positiveIntArg("--candidates"), 20)
    .option("--min-rating <r>", "only held-out ratings >= r are relevant (default: every held-out item)", (v) => Number(v))
    .option("--users <n>", "evaluate a seeded sample of N users (default: all)", positiveIntArg("--users"))
    .option("--adapter <name>", "TALLRec adapter (default: the only one loaded)")
    .addOption(new Option("--scoring <rule>", "scoring rule").choices([...SCORING_RULES]).default("softmax"))
    .option("--alpha <a>", "blend: alpha * z(recommender score) + (1 - alpha) * z(TALLRec log-odds); 0 = pYes alone", (v) => Number(v), 0)
    .option("--no-rerank", "classic recommenders only, even with a model")
    .option("--label <text>", 'what the model is, for the report (e.g. "LLaMA-7B + TALLRec movie adapter")')
    .option("--no-published", "leave out Chat-REC's published numbers")
    .option("--json", "print the report as JSON")
    .option("--plot <file>", "draw P@k, R@k and NDCG@k per recommender, alone and re-ranked: FILE.svg, .png or .html")
    .option("--plot-title <text>", "title of the plot")
    .addHelpText(
      "after",
      `
TALLRec re-ranking runs when a model is given (-m or $TALLREC_MODEL); without one, the classic rows only.

Examples:
  tallrec recsys-eval --data ../shared/data/ml-100k
  tallrec recsys-eval --data ../shared/data/ml-100k -m models/llama-7b.gguf -l movie=models/tallrec-movie.gguf --users 200`,
    )
    .action(async (_o, command: Command) => {
      const o = allOptions<RecsysEvalOptions>(command);
      const log = makeLog(o);
      if (!o.data && !o.ratings) throw new CliError("no data: pass --data DIR (MovieLens-100K) or --ratings FILE [--items FILE]", EXIT.USAGE);
      const ks = splitList(o.ks, ",").map(Number);
      if (ks.length === 0 || ks.some((k) => !Number.isInteger(k) || k < 1)) throw new CliError(`--ks must be positive integers, got ${JSON.stringify(o.ks)}`, EXIT.USAGE);
      const models = splitList(o.models, ",") as RecommenderKind[];
      for (const m of models) if (!RECOMMENDER_KINDS.includes(m)) throw new CliError(`--models: unknown recommender ${JSON.stringify(m)} (choose from ${RECOMMENDER_KINDS.join(", ")})`, EXIT.USAGE);
      if (!(o.testFraction > 0 && o.testFraction < 1)) throw new CliError("--test-fraction must be in (0, 1)", EXIT.USAGE);
      if (!(o.alpha >= 0 && o.alpha <= 1)) throw new CliError("--alpha must be in [0, 1]", EXIT.USAGE);
      if (!Number.isInteger(o.seed) || o.seed < 0) throw new CliError("--seed must be a non-negative integer", EXIT.USAGE);
      if (o.minRating !== undefined && !Number.isFinite(o.minRating)) throw new CliError("--min-rating must be a number", EXIT.USAGE);
      if (o.plot !== undefined && !plotFormat(o.plot)) throw new CliError(`--plot ${o.plot}: the file must end in .svg, .png or .html`, EXIT.USAGE);

      let data;
      try {
        data = await loadData(o.data ? { ml100k: o.data } : { ratings: o.ratings, items: o.items });
      } catch (err) {
        if (err instanceof ChatRecError) throw new CliError(err.message, EXIT.USAGE, err.code);
        throw err;
      }
      log(`data: ${data.description}: ${data.interactions.length} interactions, ${data.interactions.users.size} users, ${data.catalog.size} items`);
      const wantRerank = o.rerank && (o.model !== undefined || process.env.TALLREC_MODEL !== undefined);
      if (wantRerank && data.titlesMissing) throw new CliError("TALLRec re-ranking needs item titles: pass --items", EXIT.USAGE);
      if (!wantRerank && o.rerank) log("note: no model (-m or $TALLREC_MODEL): classic recommenders only");

      let engine: Engine | undefined;
      let report: RecsysEvalReport;
      const command_ = ["tallrec", ...process.argv.slice(2)].join(" ");
      try {
        if (wantRerank) engine = await loadEngine(o, o);
        let progress: Progress | undefined;
        report = await runRecsysEval(data.interactions, {
          split: o.split,
          testFraction: o.testFraction,
          seed: o.seed,
          ks,
          models,
          candidates: o.candidates,
          minRating: o.minRating,
          users: o.users,
          rerank: engine ? { engine, catalog: data.catalog, adapter: o.adapter, scoring: o.scoring, alpha: o.alpha, label: o.label ?? `${basename(modelPath(o))} (${engine.info.model.description})` } : undefined,
          onProgress: (done, total) => {
            progress ??= new Progress("re-ranking (users)", total, o.quiet);
            progress.update(done);
          },
        });
        progress?.finish();
      } catch (err) {
        if (err instanceof RecsysError || err instanceof ChatRecError) throw new CliError(err.message, EXIT.USAGE, err.code);
        throw err;
      } finally {
        await engine?.close();
      }
      if (o.plot) {
        const baseName = new Map(report.ranking.filter((r) => !r.reranked).map((r) => [r.model, r.name]));
        const title = o.plotTitle ?? `tallrec recsys-eval: ${basename(o.data ?? o.ratings ?? "")}, ${report.split} split, ${report.users} users${report.rerank ? `; re-ranked by ${report.rerank.label}` : ""}`;
        await writePlot(
          o.plot,
          recsysPlotSpec(
            title,
            report.ks,
            report.ranking.map((r) => ({ model: baseName.get(r.model) ?? r.model, reranked: r.reranked, at: r.at })),
          ),
        );
        log(`plot: ${o.plot}`);
      }
      if (o.json) process.stdout.write(`${JSON.stringify({ command: command_, data: data.description, ...report }, null, 2)}\n`);
      else {
        process.stdout.write(`${formatReport(report, { published: o.published })}\n`);
        process.stdout.write(`\n${report.seconds.toFixed(1)} s in all.\n`);
      }
    });
  return addModelOptions(cmd);
}

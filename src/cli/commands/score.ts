/** `tallrec score`: one user–item pair. */
import { Command, Option } from "commander";

import type { ScoreInput } from "../../engine/engine.js";
import { SCORING_RULES, type ScoringRule } from "../../engine/scoring.js";
import { addModelOptions, allOptions, CliError, EXIT, loadEngine, splitList, type ModelOptions } from "../common.js";

interface ScoreOptions extends ModelOptions {
  adapter?: string;
  instruction?: string;
  input?: string;
  liked?: string;
  disliked?: string;
  target?: string;
  domain: "movie" | "book";
  sep: string;
  scoring: ScoringRule;
  json?: boolean;
}

export function scoreCommand(): Command {
  const cmd = new Command("score")
    .description("score one user-item pair: the probability that the user likes the target")
    .option("--instruction <text>", "TALLRec instruction (with --input)")
    .option("--input <text>", "TALLRec input text (with --instruction)")
    .option("--liked <items>", "items the user liked, separated by --sep")
    .option("--disliked <items>", "items the user disliked, separated by --sep")
    .option("--target <item>", "the candidate item")
    .addOption(new Option("--domain <domain>", "item domain").choices(["movie", "book"]).default("movie"))
    .option("--sep <s>", "list separator for --liked/--disliked", ";")
    .option("--adapter <name>", "adapter to use (default: the only one loaded)")
    .addOption(new Option("--scoring <rule>", "scoring rule").choices([...SCORING_RULES]).default("softmax"))
    .option("--json", "print JSON: pYes, both logits, tokens, scoring rule")
    .addHelpText(
      "after",
      `
Examples:
  tallrec score -m models/llama-7b.gguf -l models/movie.gguf \\
    --liked "Toy Story (1995);Heat (1995)" --disliked "Jumanji (1995)" --target "Casino (1995)"
  tallrec score -m models/llama-7b.gguf --instruction "$(jq -r '.[0].instruction' test.json)" --input "$(jq -r '.[0].input' test.json)"`,
    )
    .action(async (_o, command: Command) => {
      const o = allOptions<ScoreOptions>(command);
      let input: ScoreInput;
      if (o.instruction !== undefined || o.input !== undefined) {
        if (o.instruction === undefined || o.input === undefined) throw new CliError("--instruction and --input go together", EXIT.USAGE);
        if (o.target !== undefined || o.liked !== undefined) throw new CliError("use either --instruction/--input or --liked/--disliked/--target", EXIT.USAGE);
        input = { instruction: o.instruction, input: o.input };
      } else {
        if (o.target === undefined) throw new CliError("missing --target (or --instruction and --input)", EXIT.USAGE);
        input = { domain: o.domain, liked: splitList(o.liked, o.sep), disliked: splitList(o.disliked, o.sep), target: o.target };
      }
      const engine = await loadEngine(o, o);
      try {
        const [r] = await engine.score([input], { adapter: o.adapter, scoring: o.scoring });
        // the pair could not be scored (too long, or non-finite logits): the run finished, the row failed
        if (r.error !== undefined) throw new CliError(r.error, EXIT.PARTIAL, r.code);
        if (o.json) {
          process.stdout.write(JSON.stringify({ pYes: r.pYes, logitYes: r.logitYes, logitNo: r.logitNo, tokens: r.tokens, scoring: o.scoring, adapter: o.adapter ?? engine.adapterNames()[0] ?? null }) + "\n");
        } else {
          process.stdout.write(`${r.pYes}\n`);
        }
      } finally {
        await engine.close();
      }
    });
  return addModelOptions(cmd);
}

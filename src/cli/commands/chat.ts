/**
 * `tallrec chat --user 42`: a Chat-REC conversation in the terminal. The recommender proposes,
 * TALLRec re-ranks, the model explains (streamed as it is generated); follow-ups refine the last
 * answer. Reads lines from stdin (a terminal or a pipe); `/help` lists the commands.
 */
import { createInterface } from "node:readline";

import { Command, Option } from "commander";

import { ChatRecError } from "../../chatrec/errors.js";
import { fitRecommender, loadData, loadRecommenderFile, RECOMMENDER_KINDS, RECOMMENDER_NAMES, type LoadedData, type RecommenderKind } from "../../chatrec/sources.js";
import { ChatRec, describeFilters, type Recommended, type SessionInfo } from "../../chatrec/pipeline.js";
import type { Recommender } from "../../recsys/base.js";
import { SCORING_RULES, type ScoringRule } from "../../engine/scoring.js";
import { addModelOptions, allOptions, CliError, EXIT, loadEngine, makeLog, positiveIntArg, type ModelOptions } from "../common.js";

interface ChatOptions extends ModelOptions {
  user: string;
  data?: string;
  ratings?: string;
  items?: string;
  recommender: RecommenderKind;
  recommenderFile?: string;
  saveRecommender?: string;
  adapter?: string;
  scoring: ScoringRule;
  count: number;
  candidates: number;
  alpha: number;
  explain: boolean;
  maxTokens: number;
  temperature: number;
  seed: number;
  modelIntent?: boolean;
  coldStart: boolean;
  history: number;
  json?: boolean;
  greeting: boolean;
}

const HELP = `Ask for movies in your own words, e.g.
  something lighter | darker | no horror | action from the 90s | older | newer
  not that one | not the second | not Heat | more like the second | more like Fargo
  I loved Heat | I hated Jumanji | something else | top 3 | start over
Commands:
  /help            this text
  /history         what TALLRec sees of the user (liked / disliked)
  /filters         the filters this conversation has built up
  /reset           a new conversation with the same user
  /user ID         a new conversation with another user
  /quit            leave (also /exit, or end of input)`;

function numberArg(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new CliError(`${name} must be a number in [${min}, ${max}]`, EXIT.USAGE);
    return n;
  };
}

function formatItem(r: Recommended): string {
  const genres = r.genres.filter((g) => g !== "unknown").join(", ");
  return `  ${String(r.rank).padStart(2)}. ${r.title}${genres ? ` [${genres}]` : ""}  p(yes)=${r.pYes.toFixed(3)}${r.coldStart ? "  (new: no ratings yet)" : ""}`;
}

/**
 * The REPL over a ChatRec: greets with recommendations (unless `greeting` is false), then answers
 * each input line, printing the ranked list and streaming the explanation; `/`-commands as in
 * `/help`. Works on a terminal and on a pipe. Resolves when the input ends or the user quits.
 */
export async function runChat(chat: ChatRec, user: string, io: { input: NodeJS.ReadableStream; output: NodeJS.WritableStream; json?: boolean; greeting?: boolean; interactive?: boolean }): Promise<void> {
  const out = (s: string) => io.output.write(s);
  let session: SessionInfo = chat.startSession(user);
  const describe = (s: SessionInfo) => {
    out(`Chat-REC with user ${s.user}${s.profile ? `, ${s.profile}` : ""} (${s.interactions} ratings)\n`);
    out(`  liked:    ${s.liked.join("; ") || "(none)"}\n`);
    out(`  disliked: ${s.disliked.join("; ") || "(none)"}\n`);
  };
  let current: AbortController | null = null;
  const onSigint = () => {
    if (current) {
      current.abort();
      out("\n(interrupted)\n");
    } else {
      process.exitCode = EXIT.INTERRUPTED;
      rl.close();
    }
  };
  const turn = async (message: string) => {
    current = new AbortController();
    let streamed = false;
    try {
      const r = await chat.turn(session.sessionId, message, {
        signal: current.signal,
        onRecommendations: io.json
          ? undefined
          : (recs, notes) => {
              if (recs.length === 0) out("  (nothing to recommend)\n");
              for (const x of recs) out(`${formatItem(x)}\n`);
              for (const n of notes) out(`  note: ${n}\n`);
            },
        onText: io.json
          ? undefined
          : (t) => {
              if (!streamed) out("assistant> ");
              streamed = true;
              out(t);
            },
      });
      if (io.json) out(`${JSON.stringify(r)}\n`);
      else if (streamed) out("\n");
    } catch (err) {
      if (current.signal.aborted) return;
      if (err instanceof ChatRecError) out(`error: ${err.message}\n`);
      else throw err;
    } finally {
      current = null;
    }
  };

  const rl = createInterface({ input: io.input, terminal: io.interactive ?? false });
  // the iterator buffers the lines that arrive while a turn runs (a piped input arrives at once)
  const lines = rl[Symbol.asyncIterator]();
  process.on("SIGINT", onSigint);
  rl.on("SIGINT", onSigint);
  try {
    if (!io.json) {
      describe(session);
      out("Type a request, or /help.\n");
    }
    if (io.greeting ?? true) await turn("");
    const prompt = () => io.interactive && !io.json && out("you> ");
    prompt();
    for (let next = await lines.next(); !next.done; next = await lines.next()) {
      const raw = next.value;
      const line = raw.trim();
      if (line.startsWith("/")) {
        const [cmd, ...args] = line.split(/\s+/);
        if (cmd === "/quit" || cmd === "/exit") break;
        else if (cmd === "/help") out(`${HELP}\n`);
        else if (cmd === "/history") describe(chat.session(session.sessionId));
        else if (cmd === "/filters") out(`filters: ${describeFilters(chat.session(session.sessionId).filters, chat.catalog) || "(none)"}\n`);
        else if (cmd === "/reset" || cmd === "/user") {
          const next = cmd === "/user" ? args.join(" ") : session.user;
          if (!next) out("error: /user needs an id\n");
          else {
            try {
              const s = chat.startSession(next);
              chat.endSession(session.sessionId);
              session = s;
              if (!io.json) describe(session);
              await turn("");
            } catch (err) {
              if (err instanceof ChatRecError) out(`error: ${err.message}\n`);
              else throw err;
            }
          }
        } else out(`error: unknown command ${cmd} (/help lists them)\n`);
      } else if (line !== "") {
        if (!io.json && !io.interactive) out(`you> ${line}\n`);
        await turn(line);
      }
      prompt();
    }
  } finally {
    process.off("SIGINT", onSigint);
    rl.close();
    chat.endSession(session.sessionId);
  }
}

/** The `chat` command (commander), for the program in src/cli/main.ts. */
export function chatCommand(): Command {
  const cmd = new Command("chat")
    .description("Chat-REC: talk about movies with a user's recommendations, re-ranked by TALLRec and explained by the model")
    .requiredOption("-u, --user <id>", "the user (an id of the interaction data)")
    .option("--data <dir>", "MovieLens-100K folder (u.data, u.item, u.genre)")
    .option("--ratings <file>", "interactions: u.data, or a CSV with user,item,rating,timestamp")
    .option("--items <file>", "items: u.item, or a CSV with item,title,genres")
    .addOption(new Option("--recommender <kind>", "candidate generator fitted on the data").choices([...RECOMMENDER_KINDS]).default("knn"))
    .option("--recommender-file <path>", "load a saved recommender instead of fitting one")
    .option("--save-recommender <path>", "save the fitted recommender")
    .option("--adapter <name>", "TALLRec adapter for scoring (default: the only one loaded)")
    .addOption(new Option("--scoring <rule>", "scoring rule").choices([...SCORING_RULES]).default("softmax"))
    .option("--count <n>", "recommendations per answer", positiveIntArg("--count"), 5)
    .option("--candidates <n>", "candidates re-ranked per answer", positiveIntArg("--candidates"), 20)
    .option("--alpha <a>", "weight of the recommender's score in the ranking (0: TALLRec's pYes alone)", numberArg("--alpha", 0, 1), 0)
    .option("--no-explain", "no explanations (recommendations only)")
    .option("--max-tokens <n>", "most tokens per explanation", positiveIntArg("--max-tokens"), 160)
    .option("--temperature <t>", "sampling temperature of explanations (0: greedy)", numberArg("--temperature", 0, 10), 0.7)
    .option("--seed <n>", "sampling seed", (v) => Number(v), 0)
    .option("--model-intent", "also ask the model to read requests into filters (validated)")
    .option("--no-cold-start", "no cold-start candidates from item text embeddings")
    .option("--history <n>", "most recent ratings TALLRec sees", positiveIntArg("--history"), 10)
    .option("--no-greeting", "wait for the first message instead of recommending at once")
    .option("--json", "print each answer as one JSON line (no streaming)")
    .addHelpText(
      "after",
      `
Example:
  tallrec chat --user 42 --data ../shared/data/ml-100k -m models/llama-7b.gguf -l movie=models/tallrec-movie.gguf
  printf 'something lighter\\nnot that one\\n' | tallrec chat --user 42 --data ../shared/data/ml-100k -m models/tiny.gguf -l models/tiny-lora-a.gguf

${HELP}`,
    )
    .action(async (_o, command: Command) => {
      const o = allOptions<ChatOptions>(command);
      const log = makeLog(o);
      if (!o.data && !o.ratings) throw new CliError("no data: pass --data DIR (MovieLens-100K) or --ratings FILE --items FILE", EXIT.USAGE);
      if (!Number.isInteger(o.seed) || o.seed < 0) throw new CliError("--seed must be a non-negative integer", EXIT.USAGE);
      // data and recommender first: a bad file or an unknown user is reported before the model loads
      let data: LoadedData;
      let recommender: Recommender;
      try {
        data = await loadData(o.data ? { ml100k: o.data } : { ratings: o.ratings, items: o.items });
        log(`data: ${data.description}: ${data.interactions.length} interactions, ${data.interactions.users.size} users, ${data.catalog.size} items`);
        if (data.titlesMissing) log("note: no --items file, so titles are item ids (TALLRec needs titles to be useful)");
        if (!data.interactions.users.has(o.user)) throw new ChatRecError("unknown_user", `unknown user ${JSON.stringify(o.user)}: not in the interaction data (${data.interactions.users.size} users)`);
        const t = performance.now();
        if (o.recommenderFile) {
          recommender = await loadRecommenderFile(o.recommenderFile);
          log(`loaded ${recommender.kind} from ${o.recommenderFile}`);
        } else {
          recommender = fitRecommender(o.recommender, data.interactions, { seed: 42 });
          log(`fitted ${RECOMMENDER_NAMES[o.recommender]} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
        }
        if (o.saveRecommender) {
          await recommender.save(o.saveRecommender);
          log(`saved ${recommender.kind} to ${o.saveRecommender}`);
        }
      } catch (err) {
        // the data and the user come from the command line: a usage error, with the error's own code
        if (err instanceof ChatRecError) throw new CliError(err.message, EXIT.USAGE, err.code);
        throw err;
      }
      const engine = await loadEngine(o, o);
      try {
        const chat = new ChatRec({
          engine,
          interactions: data.interactions,
          catalog: data.catalog,
          profiles: data.profiles,
          recommender,
          adapter: o.adapter,
          scoring: o.scoring,
          count: o.count,
          candidates: o.candidates,
          alpha: o.alpha,
          explain: o.explain ? { maxTokens: o.maxTokens, temperature: o.temperature, seed: o.seed } : false,
          modelIntent: o.modelIntent ?? false,
          coldStart: o.coldStart ? {} : false,
          history: { recent: o.history },
        });
        // a ChatRecError mid-session reaches main as it is: one line, and the exit status of its code
        await runChat(chat, o.user, { input: process.stdin, output: process.stdout, json: o.json, greeting: o.greeting, interactive: !!process.stdin.isTTY && !!process.stdout.isTTY });
      } finally {
        await engine.close();
      }
    });
  return addModelOptions(cmd);
}

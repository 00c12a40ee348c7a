/**
 * `tallrec chat` (the REPL, in-process over piped streams, and as a subprocess) and
 * `tallrec recsys-eval` (subprocess) on the built CLI modules in dist/.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ChatRec } from "../src/chatrec/index.js";
import { runChat } from "../src/cli/commands/chat.js";
import { Engine } from "../src/engine/engine.js";
import { IdIndex, Interactions, ItemCatalog, ItemKnnRecommender } from "../src/recsys/index.js";
import { hasRealMl100k, ml100kDir, repoRoot, syntheticMovieLens } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

const ITEMS = [
  ["1", "Toy Story (1995)", "Animation|Children's|Comedy"],
  ["2", "Aladdin (1992)", "Animation|Children's|Comedy|Musical"],
  ["3", "Babe (1995)", "Children's|Comedy|Drama"],
  ["4", "Heat (1995)", "Action|Crime|Thriller"],
  ["5", "Casino (1995)", "Crime|Drama"],
  ["6", "Seven (Se7en) (1995)", "Crime|Thriller"],
  ["7", "Fargo (1996)", "Crime|Drama|Thriller"],
  ["8", "Groundhog Day (1993)", "Comedy|Romance"],
  ["9", "Sleepless in Seattle (1993)", "Comedy|Romance"],
  ["10", "Mrs. Doubtfire (1993)", "Comedy"],
  ["11", "Jumanji (1995)", "Adventure|Children's|Fantasy"],
  ["12", "Scream (1996)", "Horror|Thriller"],
];

function ratings(): Array<{ user: string; item: string; rating: number; timestamp: number }> {
  const out = [];
  let ts = 1000;
  for (let u = 1; u <= 8; u++) for (let i = 1; i <= 12; i++) if ((i * 7 + u) % 4 !== 0) out.push({ user: String(u), item: String(i), rating: 1 + ((i + 2 * u) % 5), timestamp: ts++ });
  return out;
}

let engine: Engine;
let m: Awaited<ReturnType<typeof testModels>>;
let dir: string;

beforeAll(async () => {
  m = await testModels();
  engine = await Engine.load({ model: m.tiny, adapters: [{ name: "movie", path: m.loraA }], gpu: "cpu" });
  dir = mkdtempSync(join(tmpdir(), "tallrec-chatrec-"));
  writeFileSync(
    join(dir, "ratings.csv"),
    `user,item,rating,timestamp\n${ratings()
      .map((r) => `${r.user},${r.item},${r.rating},${r.timestamp}`)
      .join("\n")}\n`,
  );
  writeFileSync(join(dir, "items.csv"), `item,title,genres\n${ITEMS.map(([id, t, g]) => `${id},"${t}",${g}`).join("\n")}\n`);
});
afterAll(async () => {
  await engine?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the REPL on `lines`, returns everything it printed. */
async function repl(lines: string[], user = "3"): Promise<string> {
  const data = Interactions.fromRecords(ratings(), {
    items: new IdIndex(
      "item",
      ITEMS.map(([id]) => id),
    ),
  });
  const catalog = new ItemCatalog(ITEMS.map(([id, title, g]) => ({ id, title, genres: g.split("|") })));
  const chat = new ChatRec({ engine, interactions: data, catalog, recommender: new ItemKnnRecommender().fit(data), explain: { maxTokens: 8 }, count: 3, coldStart: false });
  const input = new PassThrough();
  const output = new PassThrough();
  let text = "";
  output.on("data", (b: Buffer) => (text += b.toString()));
  input.end(lines.map((l) => `${l}\n`).join(""));
  await runChat(chat, user, { input, output });
  return text;
}

/** The recommendation lists printed by the REPL, one array of titles per answer. */
function lists(out: string): string[][] {
  const blocks: string[][] = [];
  let cur: string[] | null = null;
  for (const line of out.split("\n")) {
    const m = /^\s+(\d+)\. (.*?)(?: \[[^\]]*\])?\s+p\(yes\)=/.exec(line);
    if (m) {
      if (m[1] === "1") blocks.push((cur = []));
      cur!.push(m[2]);
    }
  }
  return blocks;
}

describe("the chat REPL", () => {
  it("reads piped lines, streams answers, honours 'not that one', runs commands and stops at /quit", async () => {
    const out = await repl(["not that one", "/filters", "/history", "/help", "/bogus", "/user nobody", "something lighter", "/quit", "no comedy"]);
    expect(out).toMatch(/^Chat-REC with user 3 \(\d+ ratings\)\n {2}liked: {4}.*\n {2}disliked: .*\n/);
    const ls = lists(out);
    expect(ls.length).toBe(3); // greeting, "not that one", "something lighter"; nothing after /quit
    expect(ls[1]).not.toContain(ls[0][0]);
    expect(ls[2]).not.toContain(ls[0][0]);
    expect(out).toContain("you> not that one\n");
    expect(out).not.toContain("you> no comedy");
    expect(out.match(/^assistant> /gm)?.length).toBe(3);
    // each answer: the list first, then the streamed explanation
    const firstList = out.indexOf("   1. ");
    expect(firstList).toBeGreaterThan(0);
    expect(out.indexOf("assistant> ")).toBeGreaterThan(firstList);
    expect(out).toMatch(/filters: 1 movie left out\n/);
    expect(out).toContain("/reset");
    expect(out).toContain("error: unknown command /bogus (/help lists them)\n");
    expect(out).toContain('error: unknown user "nobody": not in the interaction data (8 users)\n');
  });

  it("/reset starts over with the same user; /user switches user", async () => {
    const out = await repl(["not that one", "/reset", "/user 5"]);
    const ls = lists(out);
    expect(ls.length).toBe(4);
    expect(ls[2]).toEqual(ls[0]); // a new conversation forgets the exclusion
    expect(out).toMatch(/Chat-REC with user 5 /);
  });
});

const RUNNER = `
import { Command, CommanderError } from "commander";
import { addGlobalOptions, CliError, EXIT } from "./dist/cli/common.js";
import { chatCommand } from "./dist/cli/commands/chat.js";
import { recsysEvalCommand } from "./dist/cli/commands/recsys-eval.js";
const program = new Command("tallrec").exitOverride();
addGlobalOptions(program);
for (const c of [chatCommand(), recsysEvalCommand()]) program.addCommand(c.exitOverride());
try {
  await program.parseAsync(process.argv.slice(1), { from: "user" });
} catch (err) {
  if (err instanceof CommanderError) process.exitCode = err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  else if (err instanceof CliError) { process.stderr.write("tallrec: " + err.message + "\\n"); process.exitCode = err.exitCode; }
  else { process.stderr.write("tallrec: " + err.message + "\\n"); process.exitCode = EXIT.FAILURE; }
}`;

function cli(args: string[], stdin = ""): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ["--input-type=module", "-e", RUNNER, "--", ...args], { cwd: repoRoot, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin!.end(stdin);
  });
}

describe("tallrec chat and recsys-eval as commands", () => {
  beforeAll(() => {
    if (!existsSync(join(repoRoot, "dist/cli/commands/chat.js"))) throw new Error("dist/ is missing: run npm run build");
  });

  it.skipIf(!hasRealMl100k)("chat: an unknown user of MovieLens-100K is a usage error with a clear message (real data)", async () => {
    const unknown = await cli(["chat", "--user", "99999", "--data", ml100kDir, "-m", m.tiny, "-l", m.loraA]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('tallrec: unknown user "99999": not in the interaction data (943 users)');
  });

  it("chat: an unknown user or bad data is a usage error with a clear message; a piped conversation works", async () => {
    const syn = await syntheticMovieLens();
    const unknown = await cli(["chat", "--user", "99999", "--data", syn.dir, "-m", m.tiny, "-l", m.loraA]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(`tallrec: unknown user "99999": not in the interaction data (${syn.users} users)`);
    const nodata = await cli(["chat", "--user", "1", "--data", join(dir, "nope"), "-m", m.tiny]);
    expect(nodata.code).toBe(2);
    expect(nodata.stderr).toMatch(/not a folder/);
    const ok = await cli(["chat", "--user", "2", "--ratings", join(dir, "ratings.csv"), "--items", join(dir, "items.csv"), "-m", m.tiny, "-l", m.loraA, "--count", "3", "--max-tokens", "6"], "not that one\n");
    expect(ok.code).toBe(0);
    const ls = lists(ok.stdout);
    expect(ls.length).toBe(2);
    expect(ls[1]).not.toContain(ls[0][0]);
    expect(ok.stderr).toMatch(/fitted Item-kNN/);
  });

  it("recsys-eval: classic rows without a model, TALLRec rows with one, as JSON", async () => {
    const base = ["recsys-eval", "--ratings", join(dir, "ratings.csv"), "--items", join(dir, "items.csv"), "--models", "popularity,knn", "--ks", "1,2", "--candidates", "4", "--test-fraction", "0.3"];
    const plain = await cli([...base, "--json"]);
    expect(plain.code).toBe(0);
    const p = JSON.parse(plain.stdout);
    expect(p.ranking.map((r: { name: string }) => r.name)).toEqual(["Popularity", "Item-kNN"]);
    expect(p.ratings.map((r: { name: string }) => r.name)).toEqual(["Global mean", "Item-kNN (item means, k=40)", "Biased MF"]);
    expect(plain.stderr).toMatch(/no model/);
    const withModel = await cli([...base, "--json", "-m", m.tiny, "-l", m.loraA, "--label", "tiny random-weight model"]);
    expect(withModel.code).toBe(0);
    const w = JSON.parse(withModel.stdout);
    expect(w.ranking.map((r: { name: string }) => r.name)).toEqual(["Popularity", "Item-kNN", "Popularity + TALLRec", "Item-kNN + TALLRec"]);
    expect(w.rerank).toMatchObject({ label: "tiny random-weight model", scoring: "softmax", failed: 0 });
    expect(w.rerank.prompts).toBeGreaterThan(0);
    // the plain rows do not depend on the model
    expect(w.ranking.slice(0, 2)).toEqual(p.ranking.map((r: object) => ({ ...r, fitSeconds: expect.any(Number), evalSeconds: expect.any(Number) })));
    const table = await cli([...base, "--no-published"]);
    expect(table.stdout).toMatch(/\| model \| P@1 \| R@1 \| NDCG@1 \| P@2 \| R@2 \| NDCG@2 \| seconds \|/);
    expect(table.stdout).toMatch(/\| Item-kNN \| 0\.\d{4} \|/);
    expect(table.stdout).not.toMatch(/Chat-REC \(arXiv/);
    const bad = await cli(["recsys-eval", "--ratings", join(dir, "ratings.csv"), "--models", "knn,lightgcn"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown recommender "lightgcn"/);
    const noTitles = await cli(["recsys-eval", "--ratings", join(dir, "ratings.csv"), "-m", m.tiny]);
    expect(noTitles.code).toBe(2);
    expect(noTitles.stderr).toMatch(/needs item titles: pass --items/);
  });
});

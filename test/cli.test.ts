/**
 * The built CLI (dist/cli/main.js, compiled by `npm test`'s pretest) run as a subprocess.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { parseCsv } from "../src/io/index.js";
import { Engine, type Score } from "../src/engine/engine.js";
import { fixturesDir, repoRoot, sampleFile, sampleRows } from "./helpers/data.js";
import { relDiff, testModels } from "./helpers/models.js";

const cli = join(repoRoot, "dist", "cli", "main.js");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, ...env }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let dir: string;
let m: Awaited<ReturnType<typeof testModels>>;

beforeAll(async () => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run "npm run build" (npm test does it in pretest)`);
  m = await testModels();
  dir = mkdtempSync(join(tmpdir(), "tallrec-cli-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("tallrec score", () => {
  it("prints pYes for structured fields, and JSON with both logits; TALLREC_MODEL works", async () => {
    const plain = await run(["score", "-m", m.tiny, "-l", m.loraA, "--liked", "Toy Story (1995);Heat (1995)", "--disliked", "Jumanji (1995)", "--target", "Casino (1995)"]);
    expect(plain.code).toBe(0);
    const p = Number(plain.stdout.trim());
    expect(p).toBeGreaterThan(0);
    expect(p).toBeLessThan(1);
    const json = await run(["score", "-l", m.loraA, "--liked", "Toy Story (1995);Heat (1995)", "--disliked", "Jumanji (1995)", "--target", "Casino (1995)", "--json"], { TALLREC_MODEL: m.tiny });
    expect(json.code).toBe(0);
    const r = JSON.parse(json.stdout) as { pYes: number; logitYes: number; logitNo: number; tokens: number; scoring: string };
    expect(r.pYes).toBe(p);
    expect(r.pYes).toBeCloseTo(1 / (1 + Math.exp(r.logitNo - r.logitYes)), 12);
    expect(r.scoring).toBe("softmax");
    expect(r.tokens).toBeGreaterThan(50);
  });

  it("scores a TALLRec row given as --instruction/--input like the library does", async () => {
    const row = sampleRows("movie")[2];
    const out = await run(["score", "-m", m.tiny, "-l", `movie=${m.loraA}`, "--instruction", row.instruction, "--input", row.input, "--json"]);
    expect(out.code).toBe(0);
    const engine = await Engine.load({ model: m.tiny, adapters: [{ name: "movie", path: m.loraA }], gpu: "cpu" });
    const [lib] = (await engine.score([row])) as Score[];
    await engine.close();
    expect(relDiff(JSON.parse(out.stdout).logitYes, lib.logitYes)).toBeLessThan(1e-4);
  });

  it("says what is wrong, with exit code 2 for usage and 1 for a bad model", async () => {
    const noModel = await run(["score", "--target", "x"], { TALLREC_MODEL: "" });
    expect(noModel.code).toBe(2);
    expect(noModel.stderr).toMatch(/no model: pass --model/);
    const missing = await run(["score", "-m", join(dir, "nope.gguf"), "--target", "x"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope\.gguf: cannot open/);
    const junk = join(dir, "junk.gguf");
    writeFileSync(junk, Buffer.from("GGUF\x03\x00\x00\x00garbage that is not a gguf header at all"));
    const bad = await run(["score", "-m", junk, "--target", "x"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/junk\.gguf/);
    const unknown = await run(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
  });
});

describe("tallrec batch", () => {
  it("scores every good row, marks each bad one, loses and duplicates nothing (quotes, newlines, UTF-8, Latin-1)", async () => {
    const input = join(dir, "pairs.csv");
    const longTitle = "Epic ".repeat(700);
    const rows = [
      "user,liked,disliked,target\n",
      'u1,"Toy Story (1995);Heat (1995)",Jumanji (1995),"Casino, The (1995)"\n',
      'u1,"Toy Story (1995);Heat (1995)",Jumanji (1995),"Babe\n(1995)"\n',
      "u2,Amélie (2001);東京物語 (1953),,Heat (1995)\n",
    ];
    const latin1 = Buffer.from("u3,L\xe9on (1994),Fargo (1996),Se7en (1995)\n", "latin1");
    const rest = ["\n", "u4,Alien (1979)\n", `u5,Alien (1979),,${longTitle}\n`, "u6,Heat (1995),,Fargo (1996)\n"];
    writeFileSync(input, Buffer.concat([Buffer.from(rows.join("")), latin1, Buffer.from(rest.join(""))]));
    const outPath = join(dir, "scores.csv");
    // exact mode (--kv-type f32): the row is scored in another batch than below, and in this mode
    // that changes its scores by float32 noise only (see the README's table of modes)
    const res = await run(["--ctx", "512", "--kv-type", "f32", "batch", input, "-o", outPath, "-m", m.tiny, "-l", m.loraA, "--window", "2", "--user-col", "user"]);
    expect(res.code).toBe(3); // some rows failed
    const out = parseCsv(readFileSync(outPath));
    expect(out.header).toEqual(["user", "liked", "disliked", "target", "p_yes", "logit_yes", "logit_no", "error"]);
    const recs = out.records.map((r) => r.fields);
    expect(recs.map((f) => f[0])).toEqual(["u1", "u1", "u2", "u3", "u4", "u5", "u6"]);
    expect(recs[0][3]).toBe("Casino, The (1995)");
    expect(recs[1][3]).toBe("Babe\n(1995)");
    expect(recs[2][1]).toBe("Amélie (2001);東京物語 (1953)");
    expect(recs[3][1]).toBe("Léon (1994)");
    for (const k of [0, 1, 2, 3, 6]) {
      expect(recs[k][7], `row ${k}`).toBe("");
      expect(Number(recs[k][4])).toBeGreaterThan(0);
    }
    expect(recs[4][7]).toMatch(/expected 4 fields, found 2/);
    expect(recs[4][4]).toBe("");
    expect(recs[5][7]).toMatch(/tokens but the context holds 512/);
    // the scores are the engine's
    const engine = await Engine.load({ model: m.tiny, adapters: [{ name: "a", path: m.loraA }], gpu: "cpu", contextSize: 512, kvType: "f32" });
    const [lib] = (await engine.score([{ domain: "movie", liked: ["Léon (1994)"], disliked: ["Fargo (1996)"], target: "Se7en (1995)" }])) as Score[];
    await engine.close();
    expect(relDiff(Number(recs[3][5]), lib.logitYes)).toBeLessThan(1e-4);
    expect(res.stderr).toMatch(/7 rows written.*2 with errors/);
  });

  it("reads TALLRec JSON and writes JSONL with the input fields passed through", async () => {
    const input = join(dir, "rows.json");
    writeFileSync(input, JSON.stringify(sampleRows("book").slice(0, 12)));
    const outPath = join(dir, "rows.jsonl");
    const res = await run(["batch", input, "-o", outPath, "-m", m.tiny, "-l", m.loraA]);
    expect(res.code).toBe(0);
    const lines = readFileSync(outPath, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(12);
    lines.forEach((l, i) => {
      expect(l.input).toBe(sampleRows("book")[i].input);
      expect(typeof l.p_yes).toBe("number");
    });
  });

  async function resumeCase(kill: "SIGKILL" | "SIGINT") {
    const rows = sampleRows("movie").slice(0, 240);
    const input = join(dir, `resume-${kill}.jsonl`);
    writeFileSync(input, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const args = (out: string) => ["batch", input, "-o", out, "-m", m.tiny, "-l", m.loraA, "--window", "16"];
    const whole = join(dir, `whole-${kill}.csv`);
    expect((await run(args(whole))).code).toBe(0);

    const part = join(dir, `part-${kill}.csv`);
    const child = spawn(process.execPath, [cli, ...args(part)], { stdio: "ignore" });
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    // wait for a few windows to be checkpointed, then interrupt
    const sidecar = `${part}.progress`;
    for (let i = 0; i < 600 && !(existsSync(sidecar) && readFileSync(sidecar, "utf8").split("\n").length > 4); i++) await new Promise((r) => setTimeout(r, 25));
    child.kill(kill);
    const code = await exited;
    const size = statSync(part).size;
    expect(size).toBeLessThan(statSync(whole).size); // it really stopped part-way
    if (kill === "SIGINT") expect(code).toBe(130);
    const resumed = await run([...args(part), "--resume"]);
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toMatch(/resuming at row [1-9]/);
    expect(readFileSync(part).equals(readFileSync(whole))).toBe(true);
  }

  it("--resume after kill -9 gives byte for byte the uninterrupted output", () => resumeCase("SIGKILL"));
  it("Ctrl-C flushes what is scored, exits 130, and --resume completes the same output", () => resumeCase("SIGINT"));
});

describe("tallrec eval", () => {
  it("reports AUC equal to an independent pairwise computation from its own predictions, for both rules", async () => {
    const outPath = join(dir, "preds.jsonl");
    const res = await run(["eval", sampleFile("movie"), "-m", m.tiny, "-l", m.loraA, "--limit", "120", "--shuffle", "--seed", "3", "-o", outPath, "--json"]);
    expect(res.code).toBe(0);
    const report = JSON.parse(res.stdout) as { scored: number; metrics: Record<string, { auc: number; n: number; accuracy: number }> };
    expect(report.scored).toBe(120);
    const preds = readFileSync(outPath, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { label: number; p_yes_softmax: number; p_yes_compat: number });
    expect(preds).toHaveLength(120);
    const pairwise = (key: "p_yes_softmax" | "p_yes_compat") => {
      let s = 0;
      let n = 0;
      for (const a of preds)
        for (const b of preds)
          if (a.label === 1 && b.label === 0) {
            s += a[key] > b[key] ? 1 : a[key] === b[key] ? 0.5 : 0;
            n++;
          }
      return s / n;
    };
    expect(report.metrics.softmax.auc).toBeCloseTo(pairwise("p_yes_softmax"), 12);
    expect(report.metrics["tallrec-compat"].auc).toBeCloseTo(pairwise("p_yes_compat"), 12);
    // shuffled with a seed: the same rows again with the same seed
    const again = await run(["eval", sampleFile("movie"), "-m", m.tiny, "-l", m.loraA, "--limit", "120", "--shuffle", "--seed", "3", "--json"]);
    expect(JSON.parse(again.stdout).metrics.softmax.auc).toBe(report.metrics.softmax.auc);
  });
});

describe("tallrec inspect and demo", () => {
  it("describes a model (with its Yes/No ids) and checks that an adapter fits", async () => {
    const model = await run(["inspect", m.tinyF16, "--json"]);
    expect(model.code).toBe(0);
    const info = JSON.parse(model.stdout);
    expect(info).toMatchObject({ kind: "model", architecture: "llama", quantization: "F16", layers: 2, heads: 4, kvHeads: 2, vocabulary: { size: 32000 } });
    expect(info.answerTokens).toMatchObject({ yes: 8241, no: 3782, yesPiece: "Yes", noPiece: "No" });
    const fits = await run(["inspect", m.loraA, "--model", m.tiny, "--json"]);
    expect(JSON.parse(fits.stdout)).toMatchObject({ kind: "lora adapter", rank: 8, alpha: 16, targets: ["attn_q", "attn_v"], fits: { ok: true } });
  });

  it("demo runs with no arguments and says the model is random", async () => {
    // the demo reads $TALLREC_DATA/tallrec/movie/test.json when there is one: the committed sample
    // here, so that it scores the same 40 rows on every machine
    const res = await run(["demo", "--rows", "40"], { TALLREC_DATA: fixturesDir });
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`data:   ${sampleFile("movie")} (first 40 rows)`);
    expect(res.stdout).toMatch(/random-weight/);
    expect(res.stdout).toMatch(/AUC \(softmax\): 0\.\d{4}/);
    expect(res.stdout).toMatch(/tallrec eval .* -m models\/llama-7b\.gguf/);
  });
});

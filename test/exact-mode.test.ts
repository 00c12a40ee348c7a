/**
 * The exact mode from every interface (README: "Exactness: modes and bounds"): `--kv-type f32` on
 * `tallrec score` and on `tallrec serve` give the float64 reference's logits within 1e-5 relative
 * on an F32 model with adapters; the default F16 KV cache stays within the error model's bound,
 * and the flags refuse values they do not know.
 */
import { execFile, spawn } from "node:child_process";
import { join } from "node:path";

import { beforeAll, describe, expect, it } from "vitest";

import { renderPrompt } from "../src/engine/prompt.js";
import { repoRoot, sampleRows } from "./helpers/data.js";
import { relDiff, testModels } from "./helpers/models.js";
import { cachedError, referenceBound } from "./reference/error-model.js";
import { loadLlamaTokenizer } from "../src/synth/vocab.js";

const cli = join(repoRoot, "dist", "cli", "main.js");
const EXACT = 1e-5;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let m: Awaited<ReturnType<typeof testModels>>;
let encode: (text: string) => number[];
beforeAll(async () => {
  m = await testModels();
  const tok = await loadLlamaTokenizer();
  encode = (text) => tok.encode(text, true, true);
});

const row = () => sampleRows("movie")[5];
// adapter b adapts all seven projections; loaded at scale 0.5
const adapters = () => [{ path: m.loraB, scale: 0.5 }];

describe("--kv-type and --flash-attn on the command line", () => {
  it("tallrec score --kv-type f32 equals the float64 reference within 1e-5 on an F32 model with an adapter", async () => {
    const r = row();
    const out = await run(["--kv-type", "f32", "score", "-m", m.tiny, "-l", `b=${m.loraB}:0.5`, "--instruction", r.instruction, "--input", r.input, "--json"]);
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    const got = JSON.parse(out.stdout) as { logitYes: number; logitNo: number };
    const want = cachedError({ model: m.tiny, adapters: adapters(), precision: { f32Rope: true }, tokens: encode(renderPrompt(r)), realizations: 0 });
    expect(relDiff(got.logitYes, want.yes)).toBeLessThan(EXACT);
    expect(relDiff(got.logitNo, want.no)).toBeLessThan(EXACT);
    // and the adapters are really applied: the base model is far from it
    const base = cachedError({ model: m.tiny, adapters: [], precision: { f32Rope: true }, tokens: encode(renderPrompt(r)), realizations: 0 });
    expect(Math.abs(got.logitYes - base.yes) + Math.abs(got.logitNo - base.no)).toBeGreaterThan(1e-2);
  });

  it("the default F16 KV cache stays within the error model's bound, and TALLREC_KV_TYPE sets the mode", async () => {
    const r = row();
    const args = ["score", "-m", m.tiny, "-l", `b=${m.loraB}:0.5`, "--instruction", r.instruction, "--input", r.input, "--json"];
    const out = await run(args);
    expect(out.code).toBe(0);
    const got = JSON.parse(out.stdout) as { logitYes: number; logitNo: number };
    const e = cachedError({ model: m.tiny, adapters: adapters(), precision: { f16Kv: true, f32Rope: true }, tokens: encode(renderPrompt(r)) });
    expect(Math.abs(got.logitYes - e.yes)).toBeLessThanOrEqual(referenceBound(e.sigmaYes, e.yes));
    expect(Math.abs(got.logitNo - e.no)).toBeLessThanOrEqual(referenceBound(e.sigmaNo, e.no));
    const viaEnv = await new Promise<string>((resolve, reject) => execFile(process.execPath, [cli, ...args], { env: { ...process.env, TALLREC_KV_TYPE: "f32" } }, (err, stdout) => (err ? reject(err) : resolve(stdout))));
    const exact = cachedError({ model: m.tiny, adapters: adapters(), precision: { f32Rope: true }, tokens: encode(renderPrompt(r)), realizations: 0 });
    expect(relDiff((JSON.parse(viaEnv) as { logitYes: number }).logitYes, exact.yes)).toBeLessThan(EXACT);
  });

  it("refuses an unknown KV type or flash-attention mode with exit code 2, naming the allowed values", async () => {
    const bad = await run(["--kv-type", "f64", "score", "-m", m.tiny, "--target", "x"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--kv-type.*f64.*f16, f32/s);
    const fa = await run(["--flash-attn", "maybe", "score", "-m", m.tiny, "--target", "x"]);
    expect(fa.code).toBe(2);
    expect(fa.stderr).toMatch(/--flash-attn.*maybe.*on, off/s);
  });

  it("tallrec serve --kv-type f32 answers /v1/score with the reference's logits within 1e-5", async () => {
    const child = spawn(process.execPath, [cli, "--threads", "1", "--kv-type", "f32", "serve", "--port", "0", "-m", m.tiny, "-l", `a=${m.loraA}`], { stdio: ["ignore", "ignore", "pipe"] });
    try {
      let stderr = "";
      const url = await new Promise<string>((resolve, reject) => {
        child.stderr!.setEncoding("utf8").on("data", (d: string) => {
          stderr += d;
          const hit = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
          if (hit) resolve(hit[1]);
        });
        child.on("exit", (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
      });
      let res: Response | undefined;
      for (let i = 0; i < 500; i++) {
        res = await fetch(`${url}/health`);
        if (res.status === 200) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const rows = sampleRows("movie").slice(0, 6);
      const scored = await fetch(`${url}/v1/score`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ adapter: "a", items: rows.map(({ instruction, input }) => ({ instruction, input })) }),
      });
      expect(scored.status).toBe(200);
      const body = (await scored.json()) as { results: Array<{ logitYes: number; logitNo: number }> };
      rows.forEach((r, i) => {
        const want = cachedError({ model: m.tiny, adapters: [{ path: m.loraA, scale: 1 }], precision: { f32Rope: true }, tokens: encode(renderPrompt(r)), realizations: 0 });
        expect(relDiff(body.results[i].logitYes, want.yes), `item ${i}`).toBeLessThan(EXACT);
        expect(relDiff(body.results[i].logitNo, want.no), `item ${i}`).toBeLessThan(EXACT);
      });
    } finally {
      child.kill("SIGTERM");
    }
  });
});

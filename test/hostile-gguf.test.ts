/**
 * Issue 11, hostile GGUFs (D1-D4, D6, D13): mutants of the generated tiny model and adapter that
 * abort or crash llama.cpp, or make it score NaN, are refused by tallrec before llama.cpp sees
 * them, with a message naming the problem; `inspect` says why; a score whose logits are not
 * finite is a per-item error (exit 3), never a null. Every run that could crash is a child
 * process: a crash fails the test instead of killing the runner. Each mutant is also given to
 * raw llama.cpp (the native addon without tallrec's checks), to show that the check is needed.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { rewriteGguf } from "../src/gguf/rewrite.js";
import { MUTANTS, rawLlamaScript, runCli, runNode, writeMutant } from "./helpers/hostile.js";
import { testModels } from "./helpers/models.js";

let dir: string;
let m: Awaited<ReturnType<typeof testModels>>;
const files = new Map<string, string>();

beforeAll(async () => {
  m = await testModels();
  dir = mkdtempSync(join(tmpdir(), "tallrec-hostile-gguf-"));
  for (const mu of MUTANTS) files.set(mu.name, await writeMutant(mu, mu.kind === "model" ? m.tiny : m.loraA, dir));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PAIR = ["--liked", "Heat (1995)", "--target", "Casino (1995)"];

describe("crashers and NaN-makers are refused before llama.cpp sees them", () => {
  it.each(MUTANTS.map((mu) => [mu.name, mu] as const))("%s: tallrec score refuses it, naming the problem", async (_name, mu) => {
    const file = files.get(mu.name)!;
    const args = mu.kind === "model" ? ["score", "-m", file, ...PAIR] : ["score", "-m", m.tiny, "-l", file, ...PAIR];
    const r = await runCli(args);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(mu.message);
    expect(r.stderr).toContain(file);
  });

  it.each(MUTANTS.map((mu) => [mu.name, mu.raw, mu] as const))("%s: unchecked, raw llama.cpp would %s", async (_name, _raw, mu) => {
    const file = files.get(mu.name)!;
    const r = await runNode(["-e", mu.kind === "model" ? rawLlamaScript(file) : rawLlamaScript(m.tiny, file)], { timeoutMs: 60_000 });
    if (mu.raw === "abort") expect(r.signal, r.stdout).toBe("SIGABRT");
    else if (mu.raw === "segfault") expect(r.signal, r.stdout).toBe("SIGSEGV");
    else if (mu.raw === "nan") expect(r.stdout).toMatch(/LOGITS NaN NaN/);
    else expect(r.stdout).toMatch(/THROWS/);
  });

  it("inspect says why an adapter or a model is refused (and exits 1), without loading it into llama.cpp", async () => {
    for (const name of ["alpha-string", "alpha-inf", "weight-inf", "lora-i32"]) {
      const r = await runCli(["inspect", files.get(name)!, "--json"]);
      expect(r.signal, r.stderr).toBeNull();
      expect(r.code, name).toBe(1);
      const info = JSON.parse(r.stdout) as { kind: string; valid: { ok: boolean; reason: string } };
      expect(info.kind).toBe("lora adapter");
      expect(info.valid.ok).toBe(false);
      expect(info.valid.reason).toMatch(MUTANTS.find((mu) => mu.name === name)!.message);
    }
    // D2 aborted in inspect itself (it loads the vocabulary)
    const r = await runCli(["inspect", files.get("vocab-duplicate")!, "--json"]);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code).toBe(1);
    const info = JSON.parse(r.stdout) as { valid: { ok: boolean; reason: string }; answerTokens?: unknown };
    expect(info.valid).toMatchObject({ ok: false });
    expect(info.valid.reason).toMatch(/twice/);
    expect(info.answerTokens).toBeUndefined();
    // and the good files are valid
    const good = await runCli(["inspect", m.loraA, "--json"]);
    expect(good.code).toBe(0);
    expect(JSON.parse(good.stdout).valid).toEqual({ ok: true });
  });
});

describe("non-finite scores are errors, never nulls", () => {
  it("a model whose logits overflow gives a per-item error: score exits 3 and prints no score", async () => {
    // finite weights (the model is not refused), but 3e38 everywhere in the output matrix overflows the logits
    const overflow = join(dir, "overflow.gguf");
    await rewriteGguf(m.tiny, overflow, {
      tensors: { "output.weight": { data: (old) => new Uint8Array(new Float32Array(old.length / 4).fill(3e38).buffer) } },
    });
    const r = await runCli(["score", "-m", overflow, ...PAIR, "--json"]);
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/non-finite logits/);
    expect(r.stdout).not.toMatch(/null/);
  });

  it("an adapter scale beyond the bound is refused at load (no 1e308 scales turning scores into NaN)", async () => {
    const r = await runCli(["score", "-m", m.tiny, "-l", `${m.loraA}:1e308`, ...PAIR]);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/scale must be a finite number within ±1000/);
  });
});

describe("names from files are escaped in messages (D13)", () => {
  it("control bytes and ANSI escapes in tensor names never reach the terminal raw", async () => {
    const evil = join(dir, "ansi.gguf");
    const name = "blk.0.\u001b[31mattn_q\u0007.weight";
    await rewriteGguf(m.loraA, evil, {
      tensors: { "blk.0.attn_q.weight.lora_a": { name: `${name}.lora_a` }, "blk.0.attn_q.weight.lora_b": { name: `${name}.lora_b` } },
    });
    const r = await runCli(["score", "-m", m.tiny, "-l", evil, ...PAIR]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/targets blk\.0\.\\x1b\[31mattn_q\\x07\.weight, which the model/);
    expect(r.stderr).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
    const inspect = await runCli(["inspect", evil]);
    expect(inspect.stdout + inspect.stderr).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
  });
});

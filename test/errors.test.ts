/**
 * Bad input: missing or corrupt models, adapters that do not fit, wrong option types. Each gets a
 * clear error naming the file and the problem, and nothing crashes the process; corrupt files also
 * go straight to llama.cpp (bypassing tallrec's own checks) in a child process that must survive.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Engine } from "../src/engine/engine.js";
import { generateLora, LLAMA_PRESETS } from "../src/synth/index.js";
import { repoRoot } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

let dir: string;
let m: Awaited<ReturnType<typeof testModels>>;

beforeAll(async () => {
  m = await testModels();
  dir = mkdtempSync(join(tmpdir(), "tallrec-errors-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Deterministic pseudo-random bytes. */
function noise(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    b[i] = s >>> 24;
  }
  return b;
}

describe("model files", () => {
  it("a missing model names the file", async () => {
    await expect(Engine.load({ model: join(dir, "missing.gguf"), gpu: "cpu" })).rejects.toThrow(/missing\.gguf: cannot open/);
  });

  it("a truncated model names the file and says it is truncated, at many cut points", async () => {
    const bytes = readFileSync(m.tinyF16);
    for (const cut of [0, 3, 8, 100, 5000, 700_000, bytes.length - 1000]) {
      const p = join(dir, `cut-${cut}.gguf`);
      writeFileSync(p, bytes.subarray(0, cut));
      await expect(Engine.load({ model: p, gpu: "cpu" }), `cut at ${cut}`).rejects.toThrow(new RegExp(`cut-${cut}\\.gguf: .*(truncated|magic|end|past)`, "i"));
    }
  });

  it("random bytes, with and without the GGUF magic, are refused", async () => {
    for (const [i, prefix] of [Buffer.alloc(0), Buffer.from("GGUF\x03\x00\x00\x00")].entries()) {
      const p = join(dir, `noise-${i}.gguf`);
      writeFileSync(p, Buffer.concat([prefix, noise(4096, i + 1)]));
      await expect(Engine.load({ model: p, gpu: "cpu" })).rejects.toThrow(new RegExp(`noise-${i}\\.gguf`));
    }
  });

  it("an adapter given as the model is refused as such", async () => {
    await expect(Engine.load({ model: m.loraA, gpu: "cpu" })).rejects.toThrow(/is a LoRA adapter, not a model/);
  });

  it("llama.cpp itself survives truncated and random GGUFs (child process, tallrec's checks bypassed)", () => {
    const bytes = readFileSync(m.tiny);
    const files: string[] = [];
    for (const cut of [4, 24, 1000, 400_000, 3_000_000, bytes.length - 64]) {
      const p = join(dir, `raw-cut-${cut}.gguf`);
      writeFileSync(p, bytes.subarray(0, cut));
      files.push(p);
    }
    for (let i = 0; i < 6; i++) {
      const p = join(dir, `raw-noise-${i}.gguf`);
      // a valid header followed by noise, and noise after the GGUF magic
      writeFileSync(p, i < 3 ? Buffer.concat([bytes.subarray(0, 2000 * (i + 1)), noise(8192, 99 + i)]) : Buffer.concat([Buffer.from("GGUF\x03\x00\x00\x00"), noise(8192, i)]));
      files.push(p);
    }
    const adapterCut = join(dir, "raw-lora-cut.gguf");
    writeFileSync(adapterCut, readFileSync(m.loraA).subarray(0, 3000));
    const script = `
      const { createRequire } = require("node:module");
      const b = require(${JSON.stringify(join(repoRoot, "build", "cpu", "Release", "tallrec.node"))});
      b.init();
      (async () => {
        let refused = 0;
        for (const f of ${JSON.stringify(files)}) {
          try { const model = await b.Model.load(f); model.dispose(); console.log("LOADED " + f); }
          catch (e) { refused++; if (!String(e.message).includes(f)) { console.log("UNNAMED " + e.message); } }
        }
        const model = await b.Model.load(${JSON.stringify(m.tiny)});
        try { await b.Lora.load(model, ${JSON.stringify(adapterCut)}); console.log("LOADED adapter"); }
        catch (e) { refused++; }
        console.log("REFUSED " + refused);
      })();`;
    const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 120_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/LOADED|UNNAMED/);
    expect(r.stdout).toMatch(new RegExp(`REFUSED ${files.length + 1}`));
  });
});

describe("adapters", () => {
  it("an adapter of another architecture, shape or layer count is refused before loading, naming what is wrong", async () => {
    const cases = [
      { mismatch: "architecture" as const, message: /architecture "qwen2" does not match the model's "llama"/ },
      { mismatch: "shape" as const, message: /shape mismatch for blk\.0\.attn_q\.weight/ },
      { mismatch: "layer" as const, message: /targets blk\.9\.attn_q\.weight, which the model .* does not have/ },
    ];
    for (const c of cases) {
      const p = join(dir, `lora-${c.mismatch}.gguf`);
      await generateLora(p, LLAMA_PRESETS.tiny, { r: 8, alpha: 16, targets: ["attn_q", "attn_v"], seed: 5, mismatch: c.mismatch });
      await expect(Engine.load({ model: m.tiny, adapters: [{ name: "x", path: p }], gpu: "cpu" })).rejects.toThrow(c.message);
    }
  });

  it("a model file given as an adapter, and a missing adapter, are refused", async () => {
    await expect(Engine.load({ model: m.tiny, adapters: [{ name: "x", path: m.tinyF16 }], gpu: "cpu" })).rejects.toThrow(/not a LoRA adapter/);
    await expect(Engine.load({ model: m.tiny, adapters: [{ name: "x", path: join(dir, "none.gguf") }], gpu: "cpu" })).rejects.toThrow(/none\.gguf: cannot open/);
  });

  it("loads and unloads adapters at run time; an unloaded adapter is unknown", async () => {
    const engine = await Engine.load({ model: m.tiny, gpu: "cpu" });
    try {
      const row = { instruction: "Q", input: "A" };
      await engine.loadAdapter({ name: "a", path: m.loraA });
      const copy = join(dir, "copy.gguf");
      copyFileSync(m.loraA, copy);
      await engine.loadAdapter({ name: "same", path: copy });
      const [a, same] = await Promise.all([engine.score([row], { adapter: "a" }), engine.score([row], { adapter: "same" })]);
      expect(a[0]).toEqual(same[0]);
      await expect(engine.loadAdapter({ name: "a", path: m.loraB })).rejects.toThrow(/already loaded/);
      await engine.unloadAdapter("a");
      await expect(engine.score([row], { adapter: "a" })).rejects.toThrow(/unknown adapter "a"/);
      expect(engine.adapterNames()).toEqual(["same"]);
    } finally {
      await engine.close();
    }
  });
});

describe("options", () => {
  it("wrong option types are refused with the option's name", async () => {
    await expect(Engine.load(undefined as never)).rejects.toThrow(/options object/);
    await expect(Engine.load({ model: 5 } as never)).rejects.toThrow(/options\.model must be the path/);
    await expect(Engine.load({ model: m.tiny, gpu: "tpu" as never })).rejects.toThrow(/gpu must be "auto", "cuda" or "cpu"/);
    await expect(Engine.load({ model: m.tiny, contextSize: 0 })).rejects.toThrow(/contextSize must be a positive integer/);
    await expect(Engine.load({ model: m.tiny, threads: 1.5 })).rejects.toThrow(/threads must be a positive integer/);
    await expect(Engine.load({ model: m.tiny, adapters: [{ name: "a" }] as never })).rejects.toThrow(/adapters\[0\] must be/);
    await expect(Engine.load({ model: m.tiny, sequences: 300, batchSize: 512 })).rejects.toThrow(/nSeqMax/);
  });

  it("a closed engine refuses calls", async () => {
    const engine = await Engine.load({ model: m.tiny, gpu: "cpu" });
    await engine.close();
    await expect(engine.score([{ instruction: "a", input: "b" }])).rejects.toThrow(/closed/);
    expect(() => engine.tokenize("x")).toThrow(/closed/);
  });
});

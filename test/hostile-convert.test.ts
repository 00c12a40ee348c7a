/**
 * Issue 11, untrusted checkpoints (D10-D12): convert-lora does bounded work whatever the files say.
 * - rank_pattern/alpha_pattern keys are matched in linear time: "(.*.*)*X" (exponential for a
 *   backtracking regex engine) converts at once, keys keep PEFT's `(.*\.)?key$` meaning, and
 *   syntax outside the supported subset is refused, not guessed;
 * - a few KB of pickle declaring rank 1e6 through zero-stride views is refused before anything is
 *   written (it wrote a 1.79 GB GGUF);
 * - a zip entry that inflates past its declared size stops there (a 1 MB .bin inflated to 1 GiB
 *   first), and a storage declaring far more bytes than its tensors use is refused unread;
 *   peak memory of a child process converting the bomb stays far below the bomb's size.
 * Conversions that could hang run in child processes with a time limit.
 */
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDeflateRaw } from "node:zlib";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { openWeightFile } from "../src/convert/checkpoint.js";
import { compilePatternKey } from "../src/convert/pattern.js";
import { PickleBuilder } from "../src/convert/pickle.js";
import { encodeRawZip, type RawZipEntry } from "../src/convert/zip.js";
import { TINY_LORA_A } from "../src/synth/index.js";
import { writePeftAdapter } from "../src/synth/hf.js";
import { repoRoot } from "./helpers/data.js";
import { runCli, runNode } from "./helpers/hostile.js";
import { testModels } from "./helpers/models.js";

let dir: string;
let m: Awaited<ReturnType<typeof testModels>>;

beforeAll(async () => {
  m = await testModels();
  dir = mkdtempSync(join(tmpdir(), "tallrec-hostile-convert-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function peft(name: string, format: "bin" | "safetensors", config: Record<string, unknown> = {}): Promise<string> {
  const ad = join(dir, name);
  await writePeftAdapter(ad, "tiny", TINY_LORA_A, { format });
  const cfgPath = join(ad, "adapter_config.json");
  writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, "utf8")), ...config }));
  return ad;
}

describe("rank/alpha pattern keys without backtracking (D10)", () => {
  it('"(.*.*)*X" converts at once (a backtracking engine spins for ever)', async () => {
    const ad = await peft("redos", "safetensors", { alpha_pattern: { "(.*.*)*X": 16, "(a|aa)+$": 4 }, rank_pattern: { "(.*.*)*X": 8 } });
    const out = join(dir, "redos.gguf");
    const t0 = performance.now();
    const r = await runCli(["convert-lora", ad, "-m", m.tiny, "-o", out], { timeoutMs: 60_000 });
    expect(r.signal, "killed at the time limit: the conversion hung").toBeNull();
    expect(r.code, r.stderr).toBe(0);
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect(existsSync(out)).toBe(true);
  });

  it("keys keep PEFT's meaning: the module's full name, or a suffix after a dot, the key read as a regular expression", () => {
    const name = "model.layers.1.self_attn.q_proj";
    const yes = ["q_proj", "self_attn.q_proj", name, `^${name}`, "layers\\.1\\.self_attn\\.(q|v)_proj", "layers.[0-9]+.self_attn.q_proj", "[^.]+_proj", "layers\\.\\d{1,2}\\..*q_proj"];
    const no = ["k_proj", "_proj", "q_pro", "^layers.1.self_attn.q_proj", "layers\\.2\\.self_attn\\.q_proj", "layers\\.\\d{2}\\..*q_proj", "(.*.*)*X"];
    for (const k of yes) expect(compilePatternKey(k).matches(name), k).toBe(true);
    for (const k of no) expect(compilePatternKey(k).matches(name), k).toBe(false);
    // linear time on keys that are exponential for backtracking engines
    for (const k of ["(.*.*)*X", "(a*)*b", "(a|a)*b", "(x+x+)+y", "((a+)+)+c"]) {
      const t0 = performance.now();
      expect(compilePatternKey(k).matches(`${"a".repeat(60)}.${"x".repeat(60)}`)).toBe(false);
      expect(performance.now() - t0, k).toBeLessThan(500);
    }
  });

  it("a key outside the supported syntax is refused, naming it", async () => {
    const ad = await peft("lookahead", "safetensors", { alpha_pattern: { "(?=q)q_proj": 32 } });
    const r = await runCli(["convert-lora", ad, "-m", m.tiny, "-o", join(dir, "lookahead.gguf")], { timeoutMs: 60_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/alpha_pattern key "\(\?=q\)q_proj" cannot be matched: an unsupported group/);
    expect(existsSync(join(dir, "lookahead.gguf"))).toBe(false);
  });
});

interface PickledTensor {
  name: string;
  key: string;
  numel: number;
  shape: number[];
  stride: number[];
}

/** A state dict pickle as torch.save writes it, with the given views (shapes and strides as given). */
function stateDictPickle(tensors: PickledTensor[]): Uint8Array {
  const p = new PickleBuilder().proto(2).emptyDict().put().mark();
  for (const t of tensors) {
    p.str(t.name).put();
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.mark();
    p.mark().str("storage").global("torch", "FloatStorage").str(t.key).str("cpu").int(t.numel).tuple().put().binpersid().put();
    p.int(0);
    p.mark();
    for (const d of t.shape) p.int(d);
    p.tuple().put();
    p.mark();
    for (const d of t.stride) p.int(d);
    p.tuple().put();
    p.bool(false);
    p.global("collections", "OrderedDict").emptyTuple().reduce().put();
    p.tuple().put().reduce().put();
  }
  return p.setitems().stop().finish();
}

/** A zip whose headers say what the test declares (sizes and CRCs may lie). */
const zip = (files: RawZipEntry[]): Buffer => Buffer.from(encodeRawZip(files));

/** `n` zero bytes deflated, built in 1 MiB steps (the bomb never exists inflated here). */
async function deflatedZeros(n: number): Promise<Uint8Array> {
  const d = createDeflateRaw({ level: 9 });
  const out: Buffer[] = [];
  d.on("data", (c: Buffer) => out.push(c));
  const chunk = Buffer.alloc(1 << 20);
  for (let left = n; left > 0; left -= chunk.length) if (!d.write(left >= chunk.length ? chunk : chunk.subarray(0, left))) await once(d, "drain");
  d.end();
  await once(d, "end");
  return Buffer.concat(out);
}

/** The tensors of a real PEFT .bin (names, shapes), to build hostile variants around. */
async function realTensors(): Promise<Array<{ name: string; shape: number[]; data: Uint8Array }>> {
  const ad = await peft(`real-${Math.random().toString(36).slice(2)}`, "bin");
  return openWeightFile(join(ad, "adapter_model.bin")).map((t) => ({ name: t.name, shape: [...t.shape], data: t.readBytes() }));
}

/** A PEFT folder whose adapter_model.bin is `bin`. */
async function peftWithBin(name: string, bin: Buffer, config: Record<string, unknown> = {}): Promise<string> {
  const ad = await peft(name, "bin", config);
  writeFileSync(join(ad, "adapter_model.bin"), bin);
  return ad;
}

describe("declared sizes are checked before the work (D11, D12)", () => {
  it("rank 1e6 through zero-stride views (a few KB of pickle) is refused before writing", async () => {
    const tensors = await realTensors();
    const views: PickledTensor[] = tensors.map((t, i) => {
      const isA = t.name.includes("lora_A");
      // lora_A (r, in): every row the same storage row; lora_B (out, r): every column the same storage column
      return isA ? { name: t.name, key: String(i), numel: t.shape[1], shape: [1e6, t.shape[1]], stride: [0, 1] } : { name: t.name, key: String(i), numel: t.shape[0], shape: [t.shape[0], 1e6], stride: [1, 0] };
    });
    const files: RawZipEntry[] = [{ name: "archive/data.pkl", body: stateDictPickle(views) }];
    views.forEach((v) => files.push({ name: `archive/data/${v.key}`, body: new Uint8Array(v.numel * 4) }));
    const bin = zip(files);
    expect(bin.length).toBeLessThan(20_000);
    const ad = await peftWithBin("stride0", bin, { r: 1e6 });
    const out = join(dir, "stride0.gguf");
    const r = await runCli(["convert-lora", ad, "-m", m.tiny, "-o", out], { timeoutMs: 60_000 });
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/rank 1000000 is outside 1\.\.\d+ \(the smaller side of blk\.0\.attn_q\.weight/);
    expect(existsSync(out)).toBe(false);
  });

  it("a storage that inflates past its declared size stops there; memory stays far below the bomb", async () => {
    const tensors = await realTensors();
    const bomb = await deflatedZeros(256 << 20); // 256 MiB of zeros in about 256 KB
    const views: PickledTensor[] = tensors.map((t, i) => ({ name: t.name, key: String(i), numel: t.shape[0] * t.shape[1], shape: t.shape, stride: [t.shape[1], 1] }));
    const files: RawZipEntry[] = [{ name: "archive/data.pkl", body: stateDictPickle(views) }];
    tensors.forEach((t, i) => files.push(i === 0 ? { name: `archive/data/${i}`, body: bomb, deflated: true, size: t.data.length } : { name: `archive/data/${i}`, body: t.data }));
    const ad = await peftWithBin("bomb", zip(files));
    expect(statSync(join(ad, "adapter_model.bin")).size).toBeLessThan(1 << 20);
    const out = join(dir, "bomb.gguf");
    // in a child that reports its peak memory
    const script = `
      const { convertPeftLora } = await import(${JSON.stringify(join(repoRoot, "dist", "convert", "lora.js"))});
      try { await convertPeftLora(${JSON.stringify(ad)}, ${JSON.stringify(out)}, { base: ${JSON.stringify(m.tiny)} }); console.log("CONVERTED"); }
      catch (e) { console.log("REFUSED " + e.message); }
      console.log("MAXRSS " + process.resourceUsage().maxRSS);`;
    const r = await runNode(["--input-type=module", "-e", script], { timeoutMs: 60_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.stdout).toMatch(new RegExp(`REFUSED .*zip entry archive/data/0 inflates to more than the ${tensors[0].data.length} bytes its header declares`));
    const maxRssKb = Number(/MAXRSS (\d+)/.exec(r.stdout)![1]);
    expect(maxRssKb * 1024).toBeLessThan(200 << 20);
    expect(existsSync(out)).toBe(false);
  });

  it("a storage that honestly declares far more bytes than its tensors use is refused unread", async () => {
    const tensors = await realTensors();
    const bomb = await deflatedZeros(64 << 20);
    const views: PickledTensor[] = tensors.map((t, i) => ({ name: t.name, key: String(i), numel: i === 0 ? 16 << 20 : t.shape[0] * t.shape[1], shape: t.shape, stride: [t.shape[1], 1] }));
    const files: RawZipEntry[] = [{ name: "archive/data.pkl", body: stateDictPickle(views) }];
    tensors.forEach((t, i) => files.push(i === 0 ? { name: `archive/data/${i}`, body: bomb, deflated: true, size: 64 << 20 } : { name: `archive/data/${i}`, body: t.data }));
    const ad = await peftWithBin("big-storage", zip(files));
    const r = await runCli(["convert-lora", ad, "-m", m.tiny, "-o", join(dir, "big-storage.gguf")], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/storage 0 declares 67108864 bytes but its tensors use 2048: refusing to inflate it/);
  });
});

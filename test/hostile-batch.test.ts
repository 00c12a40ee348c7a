/**
 * Issue 11, batch input (D8, D9), through the built CLI in child processes:
 * - an output that is the input under another name (./same.csv, a symbolic link, a hard link) is
 *   refused before anything is opened for writing, and the input is untouched; `eval -o` and the
 *   converters refuse the same;
 * - a row holding a value nested too deep to write back is an error row, the run goes on to the
 *   last row, and `--resume` after a kill -9 passes it and ends with the uninterrupted output.
 */
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, linkSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { parseCsv } from "../src/io/index.js";
import { sampleRows } from "./helpers/data.js";
import { cliPath, runCli } from "./helpers/hostile.js";
import { testModels } from "./helpers/models.js";

let dir: string;
let m: Awaited<ReturnType<typeof testModels>>;

beforeAll(async () => {
  m = await testModels();
  dir = mkdtempSync(join(tmpdir(), "tallrec-hostile-batch-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function csvInput(name: string): { path: string; bytes: Buffer } {
  const path = join(dir, name);
  const lines = ["user,liked,disliked,target"];
  for (let i = 0; i < 600; i++) lines.push(`u${i},Heat (1995),,Casino (1995)`);
  writeFileSync(path, lines.join("\n") + "\n");
  return { path, bytes: readFileSync(path) };
}

describe("an output that is the input is refused, the input untouched (D8)", () => {
  it("the same file by another spelling, through a symbolic link, and through a hard link", async () => {
    const { path, bytes } = csvInput("same.csv");
    symlinkSync(path, join(dir, "sym.csv"));
    linkSync(path, join(dir, "hard.csv"));
    const cases: Array<[string, string]> = [
      [path, join(dir, ".", "same.csv")],
      [path, join(dir, "sub", "..", "same.csv")],
      [path, join(dir, "sym.csv")],
      [join(dir, "sym.csv"), path],
      [path, join(dir, "hard.csv")],
    ];
    for (const [input, out] of cases) {
      const r = await runCli(["batch", input, "-o", out, "-m", m.tiny, "-l", m.loraA]);
      expect(r.signal).toBeNull();
      expect(r.code, `${input} -> ${out}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/is the input file .*: writing it would destroy the input/);
      expect(readFileSync(path).equals(bytes), `${input} -> ${out}`).toBe(true);
      expect(existsSync(`${out}.progress`)).toBe(false);
    }
    // also relative to the working directory, the way the issue found it
    const rel = await new Promise<{ code: number | null }>((resolve) => {
      const child = spawn(process.execPath, [cliPath, "batch", "same.csv", "-o", "./same.csv", "-m", m.tiny], { cwd: dir, stdio: "ignore" });
      child.on("close", (code) => resolve({ code }));
    });
    expect(rel.code).toBe(2);
    expect(readFileSync(path).equals(bytes)).toBe(true);
  });

  it("eval -o, quantize and convert-lora refuse to write over an input too", async () => {
    const data = join(dir, "eval.jsonl");
    writeFileSync(
      data,
      sampleRows("movie")
        .slice(0, 4)
        .map((r) => JSON.stringify(r))
        .join("\n") + "\n",
    );
    const before = readFileSync(data);
    const ev = await runCli(["eval", data, "-o", join(dir, ".", "eval.jsonl"), "-m", m.tiny, "-l", m.loraA]);
    expect(ev.code, ev.stderr).toBe(2);
    expect(readFileSync(data).equals(before)).toBe(true);

    const model = join(dir, "model.gguf");
    copyFileSync(m.tiny, model);
    const q = await runCli(["quantize", model, join(dir, ".", "model.gguf"), "Q8_0"]);
    expect(q.code, q.stderr).toBe(2);
    expect(q.stderr).toMatch(/would destroy the input/);
    const cl = await runCli(["convert-lora", dir, "-m", model, "-o", model]);
    expect(cl.code, cl.stderr).toBe(2);
    expect(readFileSync(model).equals(readFileSync(m.tiny))).toBe(true);
  });
});

describe("a huge field is refused before tokenizing (found by the fuzzer)", () => {
  it("a 2 MB input field is an error row at once (llama.cpp's tokenizer is quadratic on some long inputs: minutes for this one with a small vocabulary)", async () => {
    const input = join(dir, "huge.jsonl");
    const rows = sampleRows("movie")
      .slice(0, 4)
      .map((r) => JSON.stringify(r));
    rows.splice(2, 0, JSON.stringify({ instruction: "Answer Yes or No.", input: "y".repeat(2_000_000) }));
    writeFileSync(input, rows.join("\n") + "\n");
    const out = join(dir, "huge-out.jsonl");
    const t0 = performance.now();
    const r = await runCli(["batch", input, "-o", out, "-m", m.tiny, "-l", m.loraA], { timeoutMs: 60_000 });
    expect(r.signal, "killed at the time limit").toBeNull();
    expect(r.code, r.stderr).toBe(3);
    expect(performance.now() - t0).toBeLessThan(30_000);
    const lines = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { error?: string });
    expect(lines).toHaveLength(5);
    expect(lines[2].error).toMatch(/line 3: item \d+: the prompt has at least \d+ tokens \(\d+ bytes\) but the context holds 4096/);
  });
});

/** A value nested `depth` levels deep (JSON text, built without recursion). */
function deep(depth: number): string {
  return "[".repeat(depth) + "]".repeat(depth);
}

describe("a row that cannot be written back is an error row; the run goes on (D9)", () => {
  const rows = () => sampleRows("movie").slice(0, 96);
  const DEEP_AT = 70;

  function jsonlWithDeepRow(name: string): string {
    const path = join(dir, name);
    const lines = rows().map((r, i) => (i === DEEP_AT ? `{"instruction":${JSON.stringify(r.instruction)},"input":${JSON.stringify(r.input)},"meta":${deep(20_000)}}` : JSON.stringify(r)));
    writeFileSync(path, lines.join("\n") + "\n");
    return path;
  }

  it("JSONL and TALLRec JSON: every row is written, the deep one with its error (exit 3)", async () => {
    const input = jsonlWithDeepRow("deep.jsonl");
    for (const out of [join(dir, "deep-out.jsonl"), join(dir, "deep-out.csv")]) {
      const r = await runCli(["batch", input, "-o", out, "-m", m.tiny, "-l", m.loraA, "--window", "16"]);
      expect(r.signal).toBeNull();
      expect(r.code, r.stderr).toBe(3);
      expect(r.stderr).not.toMatch(/Maximum call stack/);
      const text = readFileSync(out, "utf8");
      expect(text).toMatch(new RegExp(`line ${deepLine()}: JSON nested deeper than 64 levels`));
      const n = out.endsWith(".csv") ? parseCsv(readFileSync(out)).records.length : text.trim().split("\n").length;
      expect(n).toBe(rows().length);
    }
    // a TALLRec JSON array with one such element
    const arr = join(dir, "deep.json");
    writeFileSync(
      arr,
      `[${rows()
        .slice(0, 6)
        .map((r, i) => (i === 3 ? `{"instruction":"x","input":"y","meta":${deep(20_000)}}` : JSON.stringify(r)))
        .join(",\n")}]`,
    );
    const r = await runCli(["batch", arr, "-o", join(dir, "deep-arr.jsonl"), "-m", m.tiny, "-l", m.loraA]);
    expect(r.code, r.stderr).toBe(3);
    const out = readFileSync(join(dir, "deep-arr.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { error?: string; p_yes: number | null });
    expect(out).toHaveLength(6);
    expect(out[3].error).toMatch(/element 3 .*JSON nested deeper than 64 levels/);
    expect(out.filter((o) => typeof o.p_yes === "number")).toHaveLength(5);
  });

  it("--resume after kill -9 passes the deep row and ends byte for byte as the uninterrupted run", async () => {
    const input = jsonlWithDeepRow("deep-resume.jsonl");
    const args = (out: string) => ["--threads", "1", "batch", input, "-o", out, "-m", m.tiny, "-l", m.loraA, "--window", "16"];
    const whole = join(dir, "whole.csv");
    expect((await runCli(args(whole).slice(2))).code).toBe(3);

    const part = join(dir, "part.csv");
    const child = spawn(process.execPath, [cliPath, ...args(part)], { stdio: "ignore" });
    const exited = new Promise<void>((r) => child.on("exit", () => r()));
    const sidecar = `${part}.progress`;
    for (let i = 0; i < 800 && !(existsSync(sidecar) && readFileSync(sidecar, "utf8").split("\n").length > 2); i++) await new Promise((r) => setTimeout(r, 10));
    child.kill("SIGKILL");
    await exited;
    expect(statSync(part).size).toBeLessThan(statSync(whole).size); // it really stopped part-way, before the deep row
    const resumed = await runCli([...args(part).slice(2), "--resume"]);
    expect(resumed.code, resumed.stderr).toBe(3);
    expect(readFileSync(part).equals(readFileSync(whole))).toBe(true);
  });

  /** The line the deep row is on (one row per line). */
  function deepLine(): number {
    return DEEP_AT + 1;
  }
});

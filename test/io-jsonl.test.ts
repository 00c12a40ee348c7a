import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { formatJsonlRow, JsonlWriter, parseJsonl, readJsonl, type JsonlRecord, type JsonlReadOptions } from "../src/io/jsonl.js";

const dir = mkdtempSync(join(tmpdir(), "tallrec-io-jsonl-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function* pieces(bytes: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let pos = 0;
  let k = 0;
  while (pos < bytes.length) {
    const n = sizes[k++ % sizes.length];
    yield bytes.subarray(pos, pos + n);
    pos += n;
  }
}

async function collect(source: Parameters<typeof readJsonl>[0], options?: JsonlReadOptions): Promise<JsonlRecord[]> {
  const out: JsonlRecord[] = [];
  for await (const r of readJsonl(source, options)) out.push(r);
  return out;
}

const utf8 = (s: string) => Buffer.from(s, "utf8");

describe("jsonl reader", () => {
  it("reads objects with line numbers and indices, skipping blank and whitespace-only lines", () => {
    const text = '{"user":"u1","label":1}\n\n   \t\n{"user":"u2","label":0}\r\n\r\n{"user":"u3"}';
    const recs = parseJsonl(text);
    expect(recs.map((r) => [r.line, r.index, r.value])).toEqual([
      [1, 0, { user: "u1", label: 1 }],
      [4, 1, { user: "u2", label: 0 }],
      [6, 2, { user: "u3" }],
    ]);
    expect(recs.every((r) => r.error === undefined && r.raw === undefined)).toBe(true);
    const bytes = utf8(text);
    expect(bytes.subarray(recs[1].byteStart, recs[1].byteEnd).toString()).toBe('{"user":"u2","label":0}\r\n');
  });

  it("skips a UTF-8 BOM", () => {
    const recs = parseJsonl(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), utf8('{"a":1}\n')]));
    expect(recs).toHaveLength(1);
    expect(recs[0].value).toEqual({ a: 1 });
  });

  it("reports invalid JSON and non-objects by line, and continues", () => {
    const recs = parseJsonl('{"a":1}\n{"a":\n[1,2]\n"str"\n42\nnull\ntrue\n{"a":2}\n');
    expect(recs.map((r) => r.value ?? null)).toEqual([{ a: 1 }, null, null, null, null, null, null, { a: 2 }]);
    expect(recs[1].error).toMatch(/^line 2: invalid JSON: /);
    expect(recs[1].raw).toBe('{"a":');
    expect(recs.slice(2, 7).map((r) => r.error)).toEqual([
      "line 3: expected a JSON object, found array",
      "line 4: expected a JSON object, found string",
      "line 5: expected a JSON object, found number",
      "line 6: expected a JSON object, found null",
      "line 7: expected a JSON object, found boolean",
    ]);
    expect(recs.map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it("decodes UTF-8 and flags a Latin-1 line", () => {
    const bytes = Buffer.concat([utf8('{"name":"東京物語"}\n'), Buffer.from('{"name":"Amélie"}\n', "latin1"), utf8('{"name":"Amélie"}\n')]);
    const recs = parseJsonl(bytes);
    expect(recs.map((r) => r.value?.name)).toEqual(["東京物語", "Amélie", "Amélie"]);
    expect(recs.map((r) => r.latin1 === true)).toEqual([false, true, false]);
  });

  it("reports an oversized line without buffering it and continues", async () => {
    const text = `{"a":1}\n{"big":"${"x".repeat(300)}"}\n{"a":3}\n`;
    for (const sizes of [[5], [1, 7], [1000]]) {
      const recs = await collect(pieces(utf8(text), sizes), { maxRecordBytes: 100 });
      expect(recs.map((r) => [r.line, r.value ?? null, r.error])).toEqual([
        [1, { a: 1 }, undefined],
        [2, null, "line 2: record exceeds 100 bytes"],
        [3, { a: 3 }, undefined],
      ]);
    }
  });

  it("gives the same records whatever the chunk boundaries", async () => {
    const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), utf8('{"t":"東京物語 🎬","n":1.5}\r\n\n'), Buffer.from('{"t":"Zoë"}\n', "latin1"), utf8('not json\n{"t":"a\\nb"}')]);
    const whole = parseJsonl(bytes);
    expect(whole.map((r) => r.value?.t ?? r.error)).toEqual(["東京物語 🎬", "Zoë", expect.stringMatching(/^line 4: invalid JSON/), "a\nb"]);
    for (let k = 1; k <= 7; k++) expect(await collect(pieces(bytes, [k]))).toEqual(whole);
    expect(await collect(Readable.from([bytes]))).toEqual(whole);
  });
});

describe("jsonl writer", () => {
  it("round-trips values through formatJsonlRow and the reader", () => {
    const values = [
      { user: "Amélie", items: ["東京物語", "a\nb", 'q"'], p: 0.1 + 0.2 },
      { nested: { x: [1, { y: null }] }, neg: -1e-300, big: 1e21 },
      { "": "", "\u2028": "\u2029" },
    ];
    const text = values.map(formatJsonlRow).join("");
    expect(text.split("\n")).toHaveLength(values.length + 1);
    expect(parseJsonl(text).map((r) => r.value)).toEqual(values);
    expect(formatJsonlRow({ x: NaN })).toBe('{"x":null}\n');
    expect(() => formatJsonlRow(undefined)).toThrow(/cannot write/);
  });

  it("JsonlWriter writes a file the reader reads back", async () => {
    const path = join(dir, "out.jsonl");
    const w = new JsonlWriter(path);
    await w.writeRow({ a: "Amélie", p_yes: 0.25 });
    await w.writeRow({ a: "東京物語", p_yes: null, error: "line 3: boom" });
    await w.close();
    expect(readFileSync(path, "utf8")).toBe('{"a":"Amélie","p_yes":0.25}\n{"a":"東京物語","p_yes":null,"error":"line 3: boom"}\n');
    expect((await collect(path)).map((r) => r.value)).toEqual([
      { a: "Amélie", p_yes: 0.25 },
      { a: "東京物語", p_yes: null, error: "line 3: boom" },
    ]);
  });
});

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { openRows, parseJsonArrayRows, sniffFormat, type Row, type RowSource } from "../src/io/table.js";

const dir = mkdtempSync(join(tmpdir(), "tallrec-io-table-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

async function all(src: RowSource): Promise<Row[]> {
  const out: Row[] = [];
  for await (const r of src) out.push(r);
  return out;
}

describe("openRows", () => {
  it("reads CSV by extension with values keyed by header, errors kept in order", async () => {
    const src = await openRows(file("a.csv", 'user,title,label\nu1,Amélie,1\nu2,東京物語\nu3,"x,y",0\n'));
    expect(src.format).toBe("csv");
    expect(src.delimiter).toBe(",");
    expect(await src.columns()).toEqual(["user", "title", "label"]);
    const rows = await all(src);
    expect(rows.map((r) => [r.index, r.line, r.values, r.error])).toEqual([
      [0, 2, { user: "u1", title: "Amélie", label: "1" }, undefined],
      [1, 3, { user: "u2", title: "東京物語" }, "line 3: expected 3 fields, found 2"],
      [2, 4, { user: "u3", title: "x,y", label: "0" }, undefined],
    ]);
    expect(rows[0].fields).toEqual(["u1", "Amélie", "1"]);
  });

  it("reads TSV with a tab delimiter and CSV with header: false", async () => {
    const tsv = await openRows(file("b.tsv", "a\tb\n1,5\t2\n"));
    expect(tsv.delimiter).toBe("\t");
    expect((await all(tsv))[0].values).toEqual({ a: "1,5", b: "2" });
    const semi = await openRows(file("c.csv", "a;b\n1;2\n"), { delimiter: ";" });
    expect((await all(semi))[0].values).toEqual({ a: "1", b: "2" });
    const noHeader = await openRows(file("d.csv", "x,y\n"), { header: false });
    expect((await all(noHeader)).map((r) => r.values)).toEqual([{ 0: "x", 1: "y" }]);
  });

  it("reads JSONL; columns() reads ahead past bad lines without losing rows", async () => {
    const src = await openRows(file("e.jsonl", 'oops\n[1]\n{"user":"u1","label":1}\n{"user":"u2","extra":true}\n'));
    expect(src.format).toBe("jsonl");
    expect(await src.columns()).toEqual(["user", "label"]);
    const rows = await all(src);
    expect(rows.map((r) => [r.index, r.line, r.values, r.error?.slice(0, 20)])).toEqual([
      [0, 1, {}, "line 1: invalid JSON"],
      [1, 2, {}, "line 2: expected a J"],
      [2, 3, { user: "u1", label: 1 }, undefined],
      [3, 4, { user: "u2", extra: true }, undefined],
    ]);
  });

  it("reads a TALLRec JSON array; each bad element gets an error naming its index", async () => {
    const text = [
      "[",
      '  {"instruction": "Given the user\'s preference [a, b], answer \\"Yes.\\" or No.", "input": "User Preference: \\"Amélie\\"", "output": "Yes."},',
      '  "just a string",',
      '  {"instruction": "x", "input": {"nested": [1, {"b": "]}"}]}, "output": "No."},',
      "  {broken json},",
      '  {"instruction": "東京物語", "input": "", "output": "No."},',
      "]",
    ].join("\n");
    const src = await openRows(file("f.json", text));
    expect(src.format).toBe("json");
    expect(await src.columns()).toEqual(["instruction", "input", "output"]);
    const rows = await all(src);
    expect(rows).toHaveLength(5);
    expect(rows.map((r) => r.index)).toEqual([0, 1, 2, 3, 4]);
    expect(rows.map((r) => r.line)).toEqual([2, 3, 4, 5, 6]);
    expect(rows[0].values).toEqual({
      instruction: 'Given the user\'s preference [a, b], answer "Yes." or No.',
      input: 'User Preference: "Amélie"',
      output: "Yes.",
    });
    expect(rows[1].error).toBe("element 1 (line 3): expected a JSON object, found string");
    expect(rows[2].values).toEqual({ instruction: "x", input: { nested: [1, { b: "]}" }] }, output: "No." });
    expect(rows[3].error).toMatch(/^element 3 \(line 5\): invalid JSON: /);
    expect(rows[4].values.instruction).toBe("東京物語");
    expect(rows.filter((r) => r.error).length).toBe(2);
  });

  it("flags a Latin-1 JSON element and accepts an empty array", () => {
    const rows = parseJsonArrayRows(Buffer.concat([Buffer.from('[{"n":"Amélie"},', "latin1"), Buffer.from('{"n":"Amélie"}]', "utf8")]));
    expect(rows.map((r) => [r.values.n, r.latin1 === true])).toEqual([
      ["Amélie", true],
      ["Amélie", false],
    ]);
    expect(parseJsonArrayRows(Buffer.from(" [ ] \n"))).toEqual([]);
  });

  it("rejects a .json file that is not an array before yielding rows", async () => {
    await expect(openRows(file("g.json", '{"a":1}'))).rejects.toThrow(/expected a JSON array/);
    await expect(openRows(file("h.json", '[{"a":1},\n{"a":2}'))).rejects.toThrow(/unterminated JSON array/);
    await expect(openRows(file("i.json", '[{"a":1}]\n[2]'))).rejects.toThrow(/line 2: unexpected data after the JSON array/);
    await expect(openRows(join(dir, "missing.csv"))).rejects.toThrow(/ENOENT/);
  });

  it("sniffs the format of stdin ('-') and of unknown extensions", async () => {
    const stdin = (s: string) => Readable.from([Buffer.from(s.slice(0, 2)), Buffer.from(s.slice(2))]);
    const json = await openRows("-", { stdin: stdin(' \n [{"a":1},{"a":2}]') });
    expect(json.format).toBe("json");
    expect((await all(json)).map((r) => r.values)).toEqual([{ a: 1 }, { a: 2 }]);
    const jsonl = await openRows("-", { stdin: stdin('{"a":1}\n{"a":2}\n') });
    expect(jsonl.format).toBe("jsonl");
    expect((await all(jsonl)).map((r) => r.values)).toEqual([{ a: 1 }, { a: 2 }]);
    const csv = await openRows("-", { stdin: stdin("a,b\n1,2\n") });
    expect(csv.format).toBe("csv");
    expect((await all(csv)).map((r) => r.values)).toEqual([{ a: "1", b: "2" }]);
    const txt = await openRows(file("j.txt", '\ufeff{"a":1}\n'));
    expect(txt.format).toBe("jsonl");
    const forced = await openRows("-", { stdin: stdin("[not,csv\n1,2\n"), format: "csv" });
    expect((await all(forced)).map((r) => r.values)).toEqual([{ "[not": "1", csv: "2" }]);
    expect(sniffFormat(Buffer.from("\ufeff  "))).toBeNull();
  });

  it("close() stops a stream source early", async () => {
    const src = await openRows(file("k.csv", "a\n1\n2\n3\n"));
    const it = src[Symbol.asyncIterator]();
    expect((await it.next()).value?.values).toEqual({ a: "1" });
    await src.close();
    expect((await it.next()).done).toBe(true);
  });
});

import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, describe, expect, it } from "vitest";
import { CsvParser, CsvWriter, csvRecordToObject, formatCsvField, formatCsvRow, parseCsv, readCsv, type CsvReadOptions, type CsvRecord } from "../src/io/csv.js";
import { decodeWindows1252 } from "../src/io/encoding.js";

const dir = mkdtempSync(join(tmpdir(), "tallrec-io-csv-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Yields `bytes` in pieces whose sizes cycle through `sizes`. */
async function* pieces(bytes: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let pos = 0;
  let k = 0;
  while (pos < bytes.length) {
    const n = sizes[k++ % sizes.length];
    yield bytes.subarray(pos, pos + n);
    pos += n;
  }
}

async function collect(source: Parameters<typeof readCsv>[0], options?: CsvReadOptions): Promise<{ header: string[] | null; records: CsvRecord[] }> {
  const reader = readCsv(source, options);
  const records: CsvRecord[] = [];
  for await (const r of reader) records.push(r);
  return { header: reader.header, records };
}

const utf8 = (s: string) => Buffer.from(s, "utf8");
const latin1 = (s: string) => Buffer.from(s, "latin1");

describe("csv reader: structure", () => {
  it("reads header and records with line numbers, indices and byte ranges", () => {
    const text = "id,name,score\n1,Ann,0.5\n2,Bob,0.25\n";
    const { header, records } = parseCsv(text);
    expect(header).toEqual(["id", "name", "score"]);
    expect(records.map((r) => r.fields)).toEqual([
      ["1", "Ann", "0.5"],
      ["2", "Bob", "0.25"],
    ]);
    expect(records.map((r) => [r.line, r.index])).toEqual([
      [2, 0],
      [3, 1],
    ]);
    expect(records.every((r) => r.error === undefined && r.latin1 === undefined)).toBe(true);
    const buf = utf8(text);
    expect(buf.subarray(records[0].byteStart, records[0].byteEnd).toString()).toBe("1,Ann,0.5\n");
    expect(buf.subarray(records[1].byteStart, records[1].byteEnd).toString()).toBe("2,Bob,0.25\n");
  });

  it("handles quoted fields: delimiters, doubled quotes, empty quoted and unquoted fields", () => {
    const { records } = parseCsv('a,b,c,d\n"x,y","say ""hi""","",\n', {});
    expect(records).toHaveLength(1);
    expect(records[0].fields).toEqual(["x,y", 'say "hi"', "", ""]);
    expect(records[0].error).toBeUndefined();
  });

  it("keeps LF and CRLF inside quoted fields and counts those lines", () => {
    const text = 'id,text\r\n1,"first\nsecond"\r\n2,"a\r\nb\r\n\r\nc"\r\n3,plain\r\n';
    const { records } = parseCsv(text);
    expect(records.map((r) => r.fields)).toEqual([
      ["1", "first\nsecond"],
      ["2", "a\r\nb\r\n\r\nc"],
      ["3", "plain"],
    ]);
    expect(records.map((r) => r.line)).toEqual([2, 4, 8]);
    expect(records.every((r) => r.error === undefined)).toBe(true);
  });

  it("accepts CRLF line ends, a final line without newline, and treats a lone CR as data", () => {
    const { header, records } = parseCsv("a,b\r\n1,x\ry\r\n2,z");
    expect(header).toEqual(["a", "b"]);
    expect(records.map((r) => r.fields)).toEqual([
      ["1", "x\ry"],
      ["2", "z"],
    ]);
    expect(records[1].byteEnd).toBe(Buffer.byteLength("a,b\r\n1,x\ry\r\n2,z"));
  });

  it("skips a UTF-8 BOM (header names are clean, offsets count it)", () => {
    const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), utf8("user,item\nu1,i1\n")]);
    const { header, records } = parseCsv(bytes);
    expect(header).toEqual(["user", "item"]);
    expect(records[0].fields).toEqual(["u1", "i1"]);
    expect(records[0].line).toBe(2);
    expect(bytes.subarray(records[0].byteStart, records[0].byteEnd).toString()).toBe("u1,i1\n");
  });

  it("skips blank lines but counts them in line numbers", () => {
    const { records } = parseCsv("a,b\n\n1,2\r\n\r\n\n3,4\n\n");
    expect(records.map((r) => [r.line, r.index, r.fields.join("|")])).toEqual([
      [3, 0, "1|2"],
      [6, 1, "3|4"],
    ]);
  });

  it("supports ';' and tab delimiters", () => {
    const semi = parseCsv('a;b\n"1;2";x,y\n', { delimiter: ";" });
    expect(semi.records[0].fields).toEqual(["1;2", "x,y"]);
    const tab = parseCsv('a\tb\n1,2\t"t\tu"\n', { delimiter: "\t" });
    expect(tab.records[0].fields).toEqual(["1,2", "t\tu"]);
    expect(() => parseCsv("a", { delimiter: '"' })).toThrow(/delimiter/);
    expect(() => parseCsv("a", { delimiter: ",," })).toThrow(/delimiter/);
  });

  it("header options: false (first record is data and sets the field count) and explicit names", () => {
    const none = parseCsv("1,2\n3,4,5\n", { header: false });
    expect(none.header).toBeNull();
    expect(none.records.map((r) => [r.index, r.fields.length])).toEqual([
      [0, 2],
      [1, 3],
    ]);
    expect(none.records[1].error).toBe("line 2: expected 2 fields, found 3");
    const named = parseCsv("1,2\n3,4\n", { header: ["x", "y"] });
    expect(named.header).toEqual(["x", "y"]);
    expect(named.records.map((r) => csvRecordToObject(named.header!, r))).toEqual([
      { x: "1", y: "2" },
      { x: "3", y: "4" },
    ]);
  });

  it("an empty input has no header and no records", () => {
    expect(parseCsv("")).toEqual({ header: null, headerRecord: null, records: [] });
    expect(parseCsv("\n\n").records).toEqual([]);
  });
});

describe("csv reader: encodings", () => {
  it("decodes UTF-8 names", () => {
    const { records } = parseCsv(utf8('id,name\n1,Amélie\n2,東京物語\n3,"Zoë, 🎬"\n'));
    expect(records.map((r) => r.fields[1])).toEqual(["Amélie", "東京物語", "Zoë, 🎬"]);
    expect(records.some((r) => r.latin1)).toBe(false);
  });

  it("decodes a Latin-1 record and flags it; a mixed file is right row by row", () => {
    const bytes = Buffer.concat([utf8("id,name\n"), utf8("1,Amélie\n"), latin1("2,Amélie\n"), utf8("3,東京物語\n"), latin1('4,"Zoë ""Ørsted"""\n'), utf8("5,Łódź\n")]);
    const { records } = parseCsv(bytes);
    expect(records.map((r) => r.fields[1])).toEqual(["Amélie", "Amélie", "東京物語", 'Zoë "Ørsted"', "Łódź"]);
    expect(records.map((r) => r.latin1 === true)).toEqual([false, true, false, true, false]);
    expect(records.every((r) => r.error === undefined)).toBe(true);
  });

  it("decodes bytes 0x80-0x9F as Windows-1252 (documented choice)", () => {
    const { records } = parseCsv(Buffer.concat([utf8("x\n"), Buffer.from([0x80, 0x20, 0x93, 0x71, 0x94, 0x85, 0x0a])]));
    expect(records[0].fields).toEqual(["€ “q”…"]);
    expect(records[0].latin1).toBe(true);
  });

  it("decodeWindows1252 maps 0x80-0x9F per the WHATWG index and every other byte like ISO-8859-1", () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const got = decodeWindows1252(all);
    expect(got.length).toBe(256);
    expect(got.slice(0x80, 0xa0)).toBe("€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008DŽ\u008F\u0090‘’“”•–—˜™š›œ\u009DžŸ");
    const iso = all.toString("latin1");
    expect(got.slice(0, 0x80)).toBe(iso.slice(0, 0x80));
    expect(got.slice(0xa0)).toBe(iso.slice(0xa0));
  });
});

describe("csv reader: malformed input never aborts", () => {
  it("reports a missing column and extra columns and continues", () => {
    const { records } = parseCsv("a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n");
    expect(records.map((r) => r.fields)).toEqual([
      ["1", "2", "3"],
      ["4", "5"],
      ["6", "7", "8", "9"],
      ["10", "11", "12"],
    ]);
    expect(records.map((r) => r.error)).toEqual([undefined, "line 3: expected 3 fields, found 2", "line 4: expected 3 fields, found 4", undefined]);
    expect(records.map((r) => r.index)).toEqual([0, 1, 2, 3]);
  });

  it("reports an unterminated quote at end of file without swallowing the following lines", () => {
    const text = 'id,name,score\n1,Ann,0.1\n2,"Amélie,0.5\n3,Bob,0.7\n4,Carol,0.9\n';
    const { records } = parseCsv(text);
    expect(records.map((r) => r.fields)).toEqual([
      ["1", "Ann", "0.1"],
      ["2", "Amélie,0.5"],
      ["3", "Bob", "0.7"],
      ["4", "Carol", "0.9"],
    ]);
    expect(records[1].error).toBe("line 3: unterminated quoted field; line 3: expected 3 fields, found 2");
    expect(records[1].line).toBe(3);
    expect(records.filter((r) => r.error).length).toBe(1);
    expect(records.map((r) => [r.index, r.line])).toEqual([
      [0, 2],
      [1, 3],
      [2, 4],
      [3, 5],
    ]);
  });

  it("an unterminated quote on the last line without newline is reported", () => {
    const { records } = parseCsv('a,b\n1,"xyz');
    expect(records).toHaveLength(1);
    expect(records[0].fields).toEqual(["1", "xyz"]);
    expect(records[0].error).toBe("line 2: unterminated quoted field");
  });

  it("resynchronises after a stray opening quote in the middle of a file", () => {
    const text = 'id,name,score\n1,"Amé,0.5\n2,"Bob",0.7\n3,"C, D",0.9\n';
    const { records } = parseCsv(text);
    expect(records.map((r) => r.fields)).toEqual([
      ["1", "Amé,0.5"],
      ["2", "Bob", "0.7"],
      ["3", "C, D", "0.9"],
    ]);
    expect(records[0].error).toMatch(/^line 2: unterminated quoted field/);
    expect(records[1].error).toBeUndefined();
    expect(records[2].error).toBeUndefined();
  });

  it("keeps a valid multi-line quoted field intact", () => {
    const { records } = parseCsv('a,b\n"x\ny",1\n"p\n\nq",2\n');
    expect(records.map((r) => r.fields)).toEqual([
      ["x\ny", "1"],
      ["p\n\nq", "2"],
    ]);
    expect(records.every((r) => !r.error)).toBe(true);
    // Spaces after the closing quote are reported but do not make it look like a stray quote.
    const sloppy = parseCsv('a,b\n"multi\nline"  ,1\n3,4\n').records;
    expect(sloppy.map((r) => [r.line, r.fields, r.error])).toEqual([
      [2, ["multi\nline  ", "1"], "line 3: unexpected character after closing quote"],
      [4, ["3", "4"], undefined],
    ]);
  });

  it("reports a quote inside an unquoted field and text after a closing quote, keeping the text", () => {
    const { records } = parseCsv('a,b,c\n1,ab"c,2\n3,"de"f,4\n5,6,7\n');
    expect(records.map((r) => r.fields)).toEqual([
      ["1", 'ab"c', "2"],
      ["3", "def", "4"],
      ["5", "6", "7"],
    ]);
    expect(records.map((r) => r.error)).toEqual(["line 2: quote in unquoted field", "line 3: unexpected character after closing quote", undefined]);
  });

  it("reports a record over the size limit, without buffering it, and continues", async () => {
    const big = "x".repeat(500);
    const text = `a,b\n1,${big}\n2,ok\n`;
    for (const sizes of [[text.length], [7], [1, 2, 3]]) {
      const { records } = await collect(pieces(utf8(text), sizes), { maxRecordBytes: 100 });
      expect(records.map((r) => [r.line, r.index, r.fields, r.error])).toEqual([
        [2, 0, [], "line 2: record exceeds 100 bytes"],
        [3, 1, ["2", "ok"], undefined],
      ]);
    }
  });

  it("cuts an oversized multi-line quoted record at its first line and recovers the rest", () => {
    const lines = Array.from({ length: 30 }, (_, i) => `${i + 2},v${i}`).join("\n");
    const text = `a,b\n1,"open\n${lines}\n`;
    const { records } = parseCsv(text, { maxRecordBytes: 64 });
    expect(records[0].fields).toEqual(["1", "open"]);
    expect(records[0].error).toBe("line 2: unterminated quoted field (record exceeds 64 bytes)");
    expect(records.slice(1).map((r) => r.fields)).toEqual(Array.from({ length: 30 }, (_, i) => [`${i + 2}`, `v${i}`]));
    expect(records.slice(1).every((r) => !r.error)).toBe(true);
  });
});

describe("csv reader: streaming", () => {
  // Every feature at once: BOM, CRLF, quotes, embedded newlines, Latin-1 and
  // UTF-8 multi-byte rows, blank lines, errors, unterminated quote at the end.
  const tricky = Buffer.concat([
    Buffer.from([0xef, 0xbb, 0xbf]),
    utf8('user,item,"note"\r\n'),
    utf8('u1,東京物語,"multi\r\nline ""quoted"""\r\n'),
    latin1("u2,Amélie,Zoë\n"),
    utf8("\n\r\n"),
    utf8('u3,"a,b",\n'),
    utf8("u4,missing\n"),
    utf8("u5,x,y,extra\n"),
    utf8('u6,bad"quote,z\n'),
    utf8("u7,🎬 film,ok\n"),
    utf8('u8,"never closed\nu9,after,x'),
  ]);

  it("gives the same records whatever the chunk boundaries (1..7 bytes, random)", async () => {
    const whole = parseCsv(tricky);
    expect(whole.records.length).toBe(9);
    expect(whole.records.map((r) => r.fields[0])).toEqual(["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"]);
    expect(whole.records[0].fields[2]).toBe('multi\r\nline "quoted"');
    expect(whole.records[1].latin1).toBe(true);
    expect(whole.records[7].error).toBe("line 12: unterminated quoted field; line 12: expected 3 fields, found 2");
    expect(whole.records.map((r) => r.line)).toEqual([2, 4, 7, 8, 9, 10, 11, 12, 13]);
    for (let k = 1; k <= 7; k++) {
      const got = await collect(pieces(tricky, [k]));
      expect(got.header).toEqual(["user", "item", "note"]);
      expect(got.records).toEqual(whole.records);
    }
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let t = 0; t < 20; t++) {
      const sizes = Array.from({ length: 16 }, () => 1 + Math.floor(rand() * 40));
      expect((await collect(pieces(tricky, sizes))).records).toEqual(whole.records);
    }
  });

  it("reads from a file path and from a Readable, with readHeader and named access", async () => {
    const path = join(dir, "in.csv");
    writeFileSync(path, "user_id,title,label\nu1,Amélie,1\nu2,東京物語,0\n");
    const reader = readCsv(path);
    expect(await reader.readHeader()).toEqual(["user_id", "title", "label"]);
    const rows: string[] = [];
    for await (const r of reader) rows.push(`${reader.get(r, "title")}:${reader.get(r, "label")}:${reader.get(r, "nope")}`);
    expect(rows).toEqual(["Amélie:1:undefined", "東京物語:0:undefined"]);

    const fromStream = await collect(Readable.from([utf8("a,b\n1,"), utf8("2\n")]));
    expect(fromStream.records.map((r) => r.fields)).toEqual([["1", "2"]]);
    await expect(collect(join(dir, "does-not-exist.csv"))).rejects.toThrow(/ENOENT/);
  });

  it("a reader can be abandoned early and cannot be iterated twice", async () => {
    const reader = readCsv(Readable.from([utf8("a\n1\n2\n3\n")]));
    for await (const r of reader) {
      expect(r.fields).toEqual(["1"]);
      break;
    }
    await expect(async () => {
      for await (const _ of reader) void _;
    }).rejects.toThrow(/only once/);
  });

  it("toObject maps missing fields to absent keys and ignores extras", () => {
    expect(csvRecordToObject(["a", "b", "a"], { line: 1, index: 0, fields: ["1"], byteStart: 0, byteEnd: 0 })).toEqual({ a: "1" });
    expect(csvRecordToObject(["a", "b", "a"], { line: 1, index: 0, fields: ["1", "2", "3", "4"], byteStart: 0, byteEnd: 0 })).toEqual({ a: "1", b: "2" });
  });

  it("streams a large input with many records in bounded memory", async () => {
    // ~24 MB generated lazily with a stray quote near the start; the record
    // limit is 1 MiB. After a forced GC, what the parser still holds must be
    // small (an implementation that kept the input would hold >16 MB here).
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const rows = 400_000;
    async function* gen(): AsyncGenerator<Buffer> {
      yield utf8('id,name,score\n0,"stray,0\n');
      let batch = "";
      for (let i = 1; i < rows; i++) {
        batch += `${i},name ${i} abcdefghijklmnopqrstuvwxyz,${i / 7}\n`;
        if (batch.length > 60_000) {
          yield utf8(batch);
          batch = "";
        }
      }
      yield utf8(batch);
    }
    const used = () => {
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const parser = new CsvParser({ maxRecordBytes: 1 << 20 });
    const baseline = used();
    let count = 0;
    let errors = 0;
    let retained = -1;
    let chunks = 0;
    for await (const chunk of gen()) {
      parser.push(chunk);
      for (let r = parser.shift(); r; r = parser.shift()) {
        if (r.index !== count) throw new Error(`index ${r.index} != ${count}`);
        count++;
        if (r.error) errors++;
      }
      if (++chunks === 300) retained = used() - baseline;
    }
    parser.end();
    for (let r = parser.shift(); r; r = parser.shift()) {
      count++;
      if (r.error) errors++;
    }
    expect(count).toBe(rows);
    expect(errors).toBe(1);
    expect(chunks).toBeGreaterThan(350);
    expect(retained).toBeGreaterThan(-1e9);
    expect(retained).toBeLessThan(8 * 1024 * 1024);
  });
});

describe("csv writer", () => {
  it("quotes only when needed", () => {
    expect(formatCsvRow(["plain", "a,b", 'say "x"', "l1\nl2", "c\rr", " lead", "trail\t", "in side", ""])).toBe('plain,"a,b","say ""x""","l1\nl2","c\rr"," lead","trail\t",in side,\n');
    expect(formatCsvRow(["a;b", "c,d"], { delimiter: ";", eol: "\r\n" })).toBe('"a;b";c,d\r\n');
    expect(formatCsvRow([null, undefined, true, 12n])).toBe(",,true,12\n");
    expect(formatCsvRow([""])).toBe('""\n');
    expect(formatCsvRow([null])).toBe('""\n');
    expect(formatCsvRow([])).toBe("\n");
  });

  it("formats numbers so they round-trip", () => {
    const nums = [0.1 + 0.2, 1 / 3, -0, 0, 1e21, 5e-324, -1.7976931348623157e308, 123456789012345680000, NaN, Infinity, -Infinity, 0.5];
    for (const n of nums) expect(Object.is(Number(formatCsvField(n)), n)).toBe(true);
    expect(formatCsvField(0.1 + 0.2)).toBe("0.30000000000000004");
    expect(formatCsvField(-0)).toBe("-0");
    expect(formatCsvField(1e21)).toBe("1e+21");
  });

  it("round-trips random rows through formatCsvRow and the reader, for each delimiter", () => {
    const alphabet = ["a", "Z", "0", " ", "\t", ",", ";", '"', "\n", "\r", "é", "東", "🎬", "'", "\\"];
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const str = () => Array.from({ length: Math.floor(rand() * 8) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join("");
    for (const delimiter of [",", ";", "\t"]) {
      const header = ["c1", "c2", "c3", "c4"];
      const rows = Array.from({ length: 300 }, () => header.map(str));
      const text = formatCsvRow(header, { delimiter }) + rows.map((r) => formatCsvRow(r, { delimiter })).join("");
      const { records } = parseCsv(text, { delimiter });
      expect(records.map((r) => r.fields)).toEqual(rows);
      expect(records.every((r) => !r.error)).toBe(true);
    }
    // One-column rows with empty values survive too.
    const one = ["x", "", "y", ""];
    const { records } = parseCsv(formatCsvRow(["h"]) + one.map((v) => formatCsvRow([v])).join(""));
    expect(records.map((r) => r.fields[0])).toEqual(one);
  });

  it("CsvWriter writes a file that reads back identically", async () => {
    const path = join(dir, "out.tsv");
    const w = new CsvWriter(path, { delimiter: "\t" });
    const rows = [
      ["user", "p_yes"],
      ["Amélie\tB", 0.25],
      ["東京物語", 1e-7],
      ['q"r', null],
    ];
    for (const r of rows) await w.writeRow(r);
    await w.close();
    expect(readFileSync(path, "utf8")).toBe('user\tp_yes\n"Amélie\tB"\t0.25\n東京物語\t1e-7\n"q""r"\t\n');
    const { records } = await collect(path, { delimiter: "\t" });
    expect(records.map((r) => r.fields)).toEqual([
      ["Amélie\tB", "0.25"],
      ["東京物語", "1e-7"],
      ['q"r', ""],
    ]);
  });

  it("CsvWriter waits for 'drain' when the stream signals backpressure", async () => {
    let release: (() => void) | null = null;
    const chunks: string[] = [];
    const sink = new Writable({
      highWaterMark: 8,
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk.toString());
        release = () => cb();
      },
    });
    const w = new CsvWriter(sink);
    let resolved = false;
    const p = w.writeRow(["a-long-enough-row", "to exceed the high water mark"]).then(() => {
      resolved = true;
    });
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(resolved).toBe(false);
    expect(release).not.toBeNull();
    release!();
    await p;
    expect(resolved).toBe(true);
    expect(chunks.join("")).toBe("a-long-enough-row,to exceed the high water mark\n");
    const small = w.writeRow(["x"]);
    // Not draining yet: the write callback has not been called for the new chunk.
    setImmediate(() => release!());
    await small;
    const closing = w.close();
    setImmediate(() => release!());
    await closing;
    expect(chunks.join("")).toBe("a-long-enough-row,to exceed the high water mark\nx\n");
  });
});

import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 as zlibCrc32 } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { crc32, openResumableOutput, ResumeMismatchError, type ResumableOutputOptions } from "../src/io/checkpoint.js";
import { formatCsvRow } from "../src/io/csv.js";

const dir = mkdtempSync(join(tmpdir(), "tallrec-io-ckpt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;
const fresh = (name = "out.csv") => join(mkdtempSync(join(dir, `${counter++}-`)), name);

const HEADER = formatCsvRow(["id", "user", "title", "p_yes", "error"]);
/** Deterministic output rows, some with quoted newlines and quotes (the hard case for scanning). */
const row = (i: number): string => formatCsvRow([i, `user ${i} Amélie`, i % 3 === 0 ? `multi\nline "${i}" 東京` : `t${i}`, i % 4 === 0 ? null : i / 7, i % 5 === 0 ? `line ${i}: boom` : ""]);
const N = 40;
const FP = "model=tiny;input=in.csv";

function opts(extra: Partial<ResumableOutputOptions> = {}): ResumableOutputOptions {
  return { resume: true, header: HEADER, fingerprint: FP, flushBytes: 150, durable: false, ...extra };
}

/** Writes rows from..to-1 then closes. */
async function writeRows(path: string, o: ResumableOutputOptions, to = N): Promise<number> {
  const w = await openResumableOutput(path, o);
  const start = w.startIndex;
  for (let i = start; i < to; i++) await w.write(row(i), i);
  await w.close();
  return start;
}

const expected = Buffer.from(HEADER + Array.from({ length: N }, (_, i) => row(i)).join(""), "utf8");
/** Byte offset where row i ends, i.e. just after its "\n". */
const rowEnd = (i: number) => Buffer.byteLength(HEADER + Array.from({ length: i + 1 }, (_, k) => row(k)).join(""));

describe("crc32", () => {
  it("matches zlib's CRC-32", () => {
    for (const s of ["", "a", "123456789", "東京物語 Amélie", "x".repeat(1000)]) {
      expect(crc32(Buffer.from(s))).toBe(zlibCrc32(Buffer.from(s)));
    }
    expect(crc32(Buffer.from("123456789"))).toBe(0xcbf43926);
    expect(crc32(Buffer.from("6789"), crc32(Buffer.from("12345")))).toBe(0xcbf43926);
  });
});

describe("openResumableOutput", () => {
  it("a fresh run writes the header and the rows in order, and a resume of a finished run is a no-op", async () => {
    const path = fresh();
    expect(await writeRows(path, opts({ resume: false, durable: true }))).toBe(0);
    expect(readFileSync(path)).toEqual(expected);
    expect(existsSync(`${path}.progress`)).toBe(true);
    const again = await openResumableOutput(path, opts());
    expect(again.startIndex).toBe(N);
    expect(again.resumeInfo).toMatchObject({ source: "progress", startIndex: N, discardedBytes: 0 });
    await again.close();
    expect(readFileSync(path)).toEqual(expected);
  });

  it("resume: false truncates an existing output; resume on a missing output starts fresh", async () => {
    const path = fresh();
    writeFileSync(path, "old,stuff\n1,2\n");
    await writeRows(path, opts({ resume: false }));
    expect(readFileSync(path)).toEqual(expected);
    const p2 = fresh();
    const w = await openResumableOutput(p2, opts());
    expect(w.resumeInfo).toMatchObject({ source: "fresh", startIndex: 0, detail: "output did not exist" });
    await w.close();
    expect(readFileSync(p2, "utf8")).toBe(HEADER);
  });

  it("truncates a torn last row and rows written after the last checkpoint", async () => {
    const path = fresh();
    const w = await openResumableOutput(path, opts({ resume: false, flushBytes: 1 << 20 }));
    for (let i = 0; i < 12; i++) await w.write(row(i), i);
    await w.flush();
    for (let i = 12; i < 15; i++) await w.write(row(i), i);
    await w.abort(); // rows 12..14 were only buffered: lost, as in a kill -9
    // Simulate a kill during a later write: a complete row and a torn one reached the file.
    appendFileSync(path, row(12) + row(13).slice(0, 9));
    const sizeBefore = statSync(path).size;
    const r = await openResumableOutput(path, opts());
    expect(r.startIndex).toBe(12);
    expect(r.resumeInfo).toMatchObject({ source: "progress", keptBytes: rowEnd(11), discardedBytes: sizeBefore - rowEnd(11) });
    expect(statSync(path).size).toBe(rowEnd(11));
    for (let i = 12; i < N; i++) await r.write(row(i), i);
    await r.close();
    expect(readFileSync(path)).toEqual(expected);
  });

  it("falls back to scanning the output when the sidecar is missing (torn row inside a quoted newline)", async () => {
    const path = fresh();
    await writeRows(path, opts({ resume: false }), 10);
    unlinkSync(`${path}.progress`);
    // Row 9 is "multi\nline": cut it just after its embedded newline.
    const cut = rowEnd(8) + row(9).indexOf("\n") + 1;
    truncateSync(path, cut);
    const r = await openResumableOutput(path, opts());
    expect(r.resumeInfo).toMatchObject({ source: "scan", startIndex: 9, keptBytes: rowEnd(8), detail: "progress file missing" });
    for (let i = 9; i < N; i++) await r.write(row(i), i);
    await r.close();
    expect(readFileSync(path)).toEqual(expected);
    // The sidecar was rebuilt: a second resume uses it.
    const again = await openResumableOutput(path, opts());
    expect(again.resumeInfo.source).toBe("progress");
    expect(again.startIndex).toBe(N);
    await again.abort();
  });

  it("ignores a torn or corrupt last sidecar line and uses the previous checkpoint", async () => {
    for (const damage of ["torn", "flipped", "garbage"] as const) {
      const path = fresh();
      await writeRows(path, opts({ resume: false }), 20);
      const sc = readFileSync(`${path}.progress`);
      const lines = sc.toString().split("\n").filter(Boolean);
      const lastCp = JSON.parse(lines[lines.length - 1].split("\t")[0]);
      const prevCp = JSON.parse(lines[lines.length - 2].split("\t")[0]);
      expect(lastCp.next).toBe(20);
      const lastStart = sc.length - Buffer.byteLength(lines[lines.length - 1]) - 1;
      if (damage === "torn") writeFileSync(`${path}.progress`, sc.subarray(0, sc.length - 5));
      else if (damage === "flipped") {
        const b = Buffer.from(sc);
        b[lastStart + 3] ^= 0x01; // still parseable-looking text, CRC no longer matches
        writeFileSync(`${path}.progress`, b);
      } else writeFileSync(`${path}.progress`, Buffer.concat([sc, Buffer.from('{"next":99,"bytes":1,"from":0,"crc":"00000000"}\tzz\n')]));
      const r = await openResumableOutput(path, opts());
      const want = damage === "garbage" ? lastCp.next : prevCp.next;
      expect(r.startIndex).toBe(want);
      expect(r.resumeInfo.source).toBe("progress");
      for (let i = want; i < N; i++) await r.write(row(i), i);
      await r.close();
      expect(readFileSync(path)).toEqual(expected);
    }
  });

  it("walks back when the output lost or zeroed its tail (power loss), and scans when the sidecar has no checkpoint", async () => {
    const path = fresh();
    await writeRows(path, opts({ resume: false }), 20);
    // Zero the last 4 bytes: same size, so only the CRC can tell.
    const b = readFileSync(path);
    b.fill(0, b.length - 4);
    writeFileSync(path, b);
    const r = await openResumableOutput(path, opts());
    expect(r.resumeInfo.source).toBe("progress");
    expect(r.startIndex).toBeLessThan(20);
    expect(r.startIndex).toBeGreaterThan(0);
    for (let i = r.startIndex; i < N; i++) await r.write(row(i), i);
    await r.close();
    expect(readFileSync(path)).toEqual(expected);

    const p2 = fresh();
    await writeRows(p2, opts({ resume: false }), 7);
    const meta = readFileSync(`${p2}.progress`, "utf8").split("\n")[0] + "\n";
    writeFileSync(`${p2}.progress`, meta);
    const r2 = await openResumableOutput(p2, opts());
    expect(r2.resumeInfo).toMatchObject({ source: "scan", startIndex: 7, detail: "progress file has no checkpoint" });
    await r2.abort();
  });

  it("refuses to resume a different run's output", async () => {
    const path = fresh();
    await writeRows(path, opts({ resume: false }), 5);
    await expect(openResumableOutput(path, opts({ fingerprint: "model=other" }))).rejects.toThrow(ResumeMismatchError);
    await expect(openResumableOutput(path, opts({ header: "id,other\n" }))).rejects.toThrow(/header differs/);
    unlinkSync(`${path}.progress`);
    await expect(openResumableOutput(path, opts({ header: "id,other\n" }))).rejects.toThrow(/does not start with this run's header/);
    // Nothing was modified by the refusals.
    expect(readFileSync(path)).toEqual(expected.subarray(0, rowEnd(4)));
  });

  it("validates writes: index order and line ending", async () => {
    const path = fresh();
    const w = await openResumableOutput(path, opts({ resume: false }));
    await expect(w.write(row(1), 1)).rejects.toThrow(/expected the row for input index 0, got 1/);
    await expect(w.write("no newline", 0)).rejects.toThrow(/must end with/);
    await w.write(row(0), 0);
    expect(w.nextIndex).toBe(1);
    await w.close();
    await expect(w.write(row(1), 1)).rejects.toThrow(/after close/);
    await expect(openResumableOutput(path, opts({ header: "no newline" }))).rejects.toThrow(/header must end/);
  });

  it("compacts the sidecar and still resumes correctly", async () => {
    const path = fresh();
    const w = await openResumableOutput(path, opts({ resume: false, flushBytes: 1, compactBytes: 400 }));
    for (let i = 0; i < 30; i++) await w.write(row(i), i);
    await w.abort();
    expect(statSync(`${path}.progress`).size).toBeLessThan(400 + 200);
    appendFileSync(path, row(30).slice(0, 3));
    expect(await writeRows(path, opts())).toBe(30);
    expect(readFileSync(path)).toEqual(expected);
  });

  it("scans JSONL output line by line (quotes in JSON strings do not matter)", async () => {
    const path = fresh("out.jsonl");
    const jrow = (i: number) => JSON.stringify({ i, s: i % 2 ? 'odd "quote' : "a\\b\nc" }) + "\n";
    const o = { resume: true, header: "", rowFormat: "lines" as const, durable: false, flushBytes: 1 };
    const w = await openResumableOutput(path, { ...o, resume: false });
    for (let i = 0; i < 9; i++) await w.write(jrow(i), i);
    await w.close();
    unlinkSync(`${path}.progress`);
    appendFileSync(path, jrow(9).slice(0, 7));
    const r = await openResumableOutput(path, o);
    expect(r.resumeInfo).toMatchObject({ source: "scan", startIndex: 9 });
    for (let i = 9; i < 12; i++) await r.write(jrow(i), i);
    await r.close();
    expect(readFileSync(path, "utf8")).toBe(Array.from({ length: 12 }, (_, i) => jrow(i)).join(""));
  });

  it("every crash point of an uninterrupted run resumes to byte-identical output", async () => {
    // Reference run; its sidecar lines tell where each flush ended.
    const refPath = fresh();
    await writeRows(refPath, opts({ resume: false, compactBytes: 1 << 30 }));
    const ref = readFileSync(refPath);
    expect(ref).toEqual(expected);
    const sc = readFileSync(`${refPath}.progress`);
    const scLines: Buffer[] = [];
    for (let p = 0; p < sc.length;) {
      const e = sc.indexOf(0x0a, p) + 1;
      scLines.push(sc.subarray(p, e));
      p = e;
    }
    const cps = scLines.slice(1).map((l) => JSON.parse(l.toString().split("\t")[0]) as { next: number; bytes: number });
    expect(cps.length).toBeGreaterThan(8);
    // The run's writes in order: OUT header; sidecar (meta + first checkpoint, atomically by rename);
    // then per flush: OUT chunk, sidecar checkpoint line. A kill leaves a prefix of this sequence,
    // the write in progress possibly partial.
    type State = { out: number; sc: number | null; want: number };
    const states: State[] = [];
    for (let p = 0; p <= cps[0].bytes; p++) states.push({ out: p, sc: null, want: 0 });
    let scLen = scLines[0].length + scLines[1].length;
    states.push({ out: cps[0].bytes, sc: scLen, want: 0 });
    for (let j = 1; j < cps.length; j++) {
      const step = 11; // every 11th byte plus both ends keeps the test fast
      for (let p = cps[j - 1].bytes + 1; p <= cps[j].bytes; p += p + step < cps[j].bytes ? step : 1) states.push({ out: p, sc: scLen, want: cps[j - 1].next });
      const line = scLines[j + 1].length;
      for (let p = 1; p < line; p += 17) states.push({ out: cps[j].bytes, sc: scLen + p, want: cps[j - 1].next });
      scLen += line;
      states.push({ out: cps[j].bytes, sc: scLen, want: cps[j].next });
    }
    expect(states.length).toBeGreaterThan(100);
    const path = fresh();
    for (const s of states) {
      writeFileSync(path, ref.subarray(0, s.out));
      if (s.sc === null) rmSync(`${path}.progress`, { force: true });
      else writeFileSync(`${path}.progress`, sc.subarray(0, s.sc));
      const start = await writeRows(path, opts());
      if (start !== s.want || !readFileSync(path).equals(ref)) {
        throw new Error(`crash state ${JSON.stringify(s)}: resumed at ${start}, output ${readFileSync(path).equals(ref) ? "ok" : "differs"}`);
      }
    }
  });

  it("with no sidecar at all, every prefix of the output resumes to byte-identical output", async () => {
    const path = fresh();
    const ends = Array.from({ length: N }, (_, i) => rowEnd(i));
    for (let len = 0; len <= expected.length; len += len < HEADER.length + 5 ? 1 : 13) {
      writeFileSync(path, expected.subarray(0, len));
      rmSync(`${path}.progress`, { force: true });
      const want = ends.filter((e) => e <= len).length;
      const start = await writeRows(path, opts());
      if (start !== want || !readFileSync(path).equals(expected)) {
        throw new Error(`prefix ${len}: resumed at ${start} (want ${want}), output ${readFileSync(path).equals(expected) ? "ok" : "differs"}`);
      }
    }
  });
});

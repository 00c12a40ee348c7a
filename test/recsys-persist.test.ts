import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  BiasedMfPredictor,
  BprRecommender,
  Interactions,
  ItemKnnRecommender,
  MODEL_FILE_VERSION,
  ModelFileError,
  PopularityRecommender,
  type Recommender,
  crc32,
  decodeModel,
  encodeModel,
  loadRecommender,
  recommenderFromBuffer,
} from "../src/recsys/index.js";

const dir = mkdtempSync(join(tmpdir(), "recsys-persist-"));

const data = Interactions.fromRecords(
  Array.from({ length: 300 }, (_, k) => ({
    user: `u${k % 23}`,
    item: `i${(k * 7 + (k % 5)) % 41}`,
    rating: 1 + (k % 5),
    timestamp: k,
  })),
);

const models: [string, () => Recommender, (path: string) => Promise<Recommender>, (b: Uint8Array) => Recommender][] = [
  ["popularity", () => new PopularityRecommender().fit(data), (p) => PopularityRecommender.load(p), (b) => PopularityRecommender.fromBuffer(b)],
  ["item-knn", () => new ItemKnnRecommender({ neighbours: 7, shrinkage: 2, weighting: "centered" }).fit(data), (p) => ItemKnnRecommender.load(p), (b) => ItemKnnRecommender.fromBuffer(b)],
  ["bpr", () => new BprRecommender({ factors: 6, epochs: 5, seed: 11 }).fit(data), (p) => BprRecommender.load(p), (b) => BprRecommender.fromBuffer(b)],
  ["biased-mf", () => new BiasedMfPredictor({ factors: 5, epochs: 5 }).fit(data), (p) => BiasedMfPredictor.load(p), (b) => BiasedMfPredictor.fromBuffer(b)],
];

function expectSameModel(a: Recommender, b: Recommender): void {
  expect(b.kind).toBe(a.kind);
  expect(b.users.ids()).toEqual(a.users.ids());
  expect(b.items.ids()).toEqual(a.items.ids());
  for (const u of a.users.ids()) {
    expect(b.scoreItems(u)).toEqual(a.scoreItems(u));
    expect(b.history(u)).toEqual(a.history(u));
  }
  expect(b.recommend("u3", 5)).toEqual(a.recommend("u3", 5));
}

describe("model save / load", () => {
  for (const [kind, make, load, fromBuffer] of models) {
    it(`${kind}: save → load gives identical scores, history and options`, async () => {
      const model = make();
      const path = join(dir, `${kind}.trrec`);
      await model.save(path);
      const loaded = await load(path);
      expectSameModel(model, loaded);
      expectSameModel(model, fromBuffer(model.toBuffer()));
      expectSameModel(model, await loadRecommender(path));
      if ("options" in model) expect((loaded as unknown as { options: unknown }).options).toEqual(model.options);
      expect(await readFile(path)).toEqual(model.toBuffer());
    });
  }

  it("keeps predictions and similarities of the MF models", () => {
    const mf = new BiasedMfPredictor({ factors: 5, epochs: 5 }).fit(data);
    const mf2 = BiasedMfPredictor.fromBuffer(mf.toBuffer());
    expect(mf2.predict("u1", "i3")).toBe(mf.predict("u1", "i3"));
    expect(mf2.mean).toBe(mf.mean);
    const bpr = new BprRecommender({ factors: 6, epochs: 5 }).fit(data);
    expect(BprRecommender.fromBuffer(bpr.toBuffer()).similar("i3", 4)).toEqual(bpr.similar("i3", 4));
    const knn = new ItemKnnRecommender().fit(data);
    expect(ItemKnnRecommender.fromBuffer(knn.toBuffer()).similar("i3", 4)).toEqual(knn.similar("i3", 4));
  });

  it("writes atomically, leaving no temporary files", async () => {
    const sub = mkdtempSync(join(dir, "atomic-"));
    await new PopularityRecommender().fit(data).save(join(sub, "m.bin"));
    expect(readdirSync(sub)).toEqual(["m.bin"]);
  });

  it("refuses to save an unfitted model", async () => {
    await expect(new BprRecommender().save(join(dir, "x.bin"))).rejects.toThrow(/not fitted/);
  });
});

describe("model file errors", () => {
  const good = new ItemKnnRecommender({ neighbours: 5 }).fit(data).toBuffer();
  const err = (bytes: Uint8Array): ModelFileError => {
    try {
      ItemKnnRecommender.fromBuffer(bytes, "m.bin");
    } catch (e) {
      expect(e).toBeInstanceOf(ModelFileError);
      return e as ModelFileError;
    }
    throw new Error("expected a ModelFileError");
  };

  it("has the documented layout", () => {
    expect(good.toString("latin1", 0, 8)).toBe("TRRECSYS");
    expect(good.readUInt32LE(8)).toBe(MODEL_FILE_VERSION);
    const header = JSON.parse(good.toString("utf8", 16, 16 + good.readUInt32LE(12))) as { kind: string; payloadBytes: number; crc32: number };
    expect(header.kind).toBe("item-knn");
    const start = (16 + good.readUInt32LE(12) + 7) & ~7;
    expect(good.length).toBe(start + header.payloadBytes);
    expect(crc32(good.subarray(start))).toBe(header.crc32);
    expect(crc32(Buffer.from("123456789"))).toBe(0xcbf43926); // standard CRC-32 check value
  });

  it("rejects truncated files with the expected and actual sizes", () => {
    expect(err(good.subarray(0, good.length - 1)).message).toBe(`m.bin: truncated: expected ${good.length} bytes, file has ${good.length - 1}`);
    expect(err(good.subarray(0, 20)).message).toMatch(/^m\.bin: truncated: header needs \d+ bytes, file has 20$/);
    expect(err(good.subarray(0, 4)).message).toBe("m.bin: not a tallrec model file (only 4 bytes)");
    expect(err(new Uint8Array(0)).message).toMatch(/not a tallrec model file/);
  });

  it("rejects wrong files, versions, kinds and corruption", () => {
    expect(err(Buffer.from('{"model": "json, not a model file"}')).message).toBe("m.bin: not a tallrec model file (bad magic bytes)");
    const v2 = Buffer.from(good);
    v2.writeUInt32LE(MODEL_FILE_VERSION + 1, 8);
    expect(err(v2).message).toBe(`m.bin: unsupported model file version ${MODEL_FILE_VERSION + 1} (this build reads version ${MODEL_FILE_VERSION})`);
    const flipped = Buffer.from(good);
    flipped[flipped.length - 3] ^= 0xff;
    expect(err(flipped).message).toBe("m.bin: corrupted: payload checksum mismatch");
    expect(err(Buffer.concat([good, Buffer.alloc(8)])).message).toBe("m.bin: corrupted: 8 unexpected trailing bytes");
    const badJson = Buffer.from(good);
    badJson[16] = 0x7d; // "}" where "{" was
    expect(err(badJson).message).toMatch(/^m\.bin: corrupted header/);
    const pop = new PopularityRecommender().fit(data).toBuffer();
    expect(err(pop).message).toBe('m.bin: holds a "popularity" model, not "item-knn"');
  });

  it("rejects a consistent file whose arrays do not fit the model", () => {
    const c = decodeModel(good, "m.bin");
    const short = encodeModel({ ...c, arrays: { ...c.arrays, "nbr.ptr": (c.arrays["nbr.ptr"] as Int32Array).subarray(1) } });
    expect(err(short).message).toMatch(/array "nbr\.ptr" has length/);
    const missing = { ...c.arrays };
    delete missing["seen.indices"];
    expect(err(encodeModel({ ...c, arrays: missing })).message).toMatch(/array "seen\.indices" \(i32\) is missing/);
    const badParams = encodeModel({ ...c, params: { ...c.params, neighbours: "many" } });
    expect(err(badParams).message).toMatch(/parameter "neighbours"/);
    expect(() => recommenderFromBuffer(encodeModel({ ...c, kind: "mystery" }), "m.bin")).toThrow('m.bin: unknown model kind "mystery"');
  });

  it("surfaces file-system errors and reports the path of bad files", async () => {
    await expect(loadRecommender(join(dir, "missing.bin"))).rejects.toMatchObject({ code: "ENOENT" });
    const path = join(dir, "junk.bin");
    writeFileSync(path, "not a model");
    await expect(BprRecommender.load(path)).rejects.toThrow(`${path}: not a tallrec model file (bad magic bytes)`);
  });
});

import { describe, expect, it } from "vitest";
import { Interactions, InvalidArgumentError, Rng, createRng, leaveLastOut, randomSplit } from "../src/recsys/index.js";

const rowsOf = (d: Interactions) => Array.from({ length: d.length }, (_, r) => d.record(r));

describe("Rng", () => {
  it("is deterministic per seed and differs across seeds", () => {
    const a = createRng(7);
    const b = new Rng(7);
    const c = new Rng(8);
    const xa = Array.from({ length: 5 }, () => a.nextUint32());
    const xb = Array.from({ length: 5 }, () => b.nextUint32());
    const xc = Array.from({ length: 5 }, () => c.nextUint32());
    expect(xa).toEqual(xb);
    expect(xa).not.toEqual(xc);
    for (const x of xa) expect(Number.isInteger(x) && x >= 0 && x < 2 ** 32).toBe(true);
  });

  it("draws uniform integers and floats in range", () => {
    const rng = new Rng(1);
    const counts = new Array<number>(10).fill(0);
    const n = 50_000;
    for (let k = 0; k < n; k++) {
      const v = rng.nextInt(10);
      expect(v >= 0 && v < 10 && Number.isInteger(v)).toBe(true);
      counts[v]++;
    }
    // Chi-square with 9 d.o.f.: P(χ² > 27.9) ≈ 0.001.
    const chi2 = counts.reduce((s, c) => s + (c - n / 10) ** 2 / (n / 10), 0);
    expect(chi2).toBeLessThan(27.9);
    let min = 1;
    let max = 0;
    for (let k = 0; k < 10_000; k++) {
      const f = rng.next();
      min = Math.min(min, f);
      max = Math.max(max, f);
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    expect(max - min).toBeGreaterThan(0.99);
  });

  it("draws standard normals", () => {
    const rng = new Rng(3);
    let s = 0;
    let s2 = 0;
    const n = 20_000;
    for (let k = 0; k < n; k++) {
      const z = rng.normal();
      s += z;
      s2 += z * z;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.05);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.05);
  });

  it("shuffles into a permutation and validates bounds", () => {
    const arr = Int32Array.from({ length: 50 }, (_, i) => i);
    new Rng(5).shuffle(arr);
    expect(Array.from(arr).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(Array.from(arr)).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(() => new Rng(1).nextInt(0)).toThrow(InvalidArgumentError);
    expect(() => new Rng(1).nextInt(2.5)).toThrow(InvalidArgumentError);
    expect(() => new Rng(Number.NaN)).toThrow(InvalidArgumentError);
  });
});

describe("leaveLastOut", () => {
  const data = Interactions.fromRecords([
    { user: "u1", item: "A", timestamp: 1 }, // 0
    { user: "u1", item: "B", timestamp: 3 }, // 1
    { user: "u1", item: "C", timestamp: 3 }, // 2: ties with row 1, comes later → held out
    { user: "u2", item: "A", timestamp: 5 }, // 3: u2's latest
    { user: "u2", item: "D", timestamp: 2 }, // 4
    { user: "u3", item: "B", timestamp: 9 }, // 5: u3's only interaction
    { user: "u1", item: "D", timestamp: 2 }, // 6
  ]);

  it("holds out each user's latest interaction, ties broken by row order", () => {
    const { train, test } = leaveLastOut(data);
    expect(rowsOf(test).map((r) => [r.user, r.item])).toEqual([
      ["u1", "C"],
      ["u2", "A"],
    ]);
    expect(rowsOf(train).map((r) => [r.user, r.item])).toEqual([
      ["u1", "A"],
      ["u1", "B"],
      ["u2", "D"],
      ["u3", "B"],
      ["u1", "D"],
    ]);
    expect(train.users).toBe(data.users);
    expect(test.items).toBe(data.items);
  });

  it("keeps users below minInteractions entirely in train", () => {
    const { train, test } = leaveLastOut(data, { minInteractions: 1 });
    expect(rowsOf(test).map((r) => [r.user, r.item])).toEqual([
      ["u1", "C"],
      ["u2", "A"],
      ["u3", "B"],
    ]);
    expect(train.length).toBe(4);
    expect(leaveLastOut(data, { minInteractions: 4 }).test.length).toBe(1); // only u1 has 4
    expect(() => leaveLastOut(data, { minInteractions: 0 })).toThrow(InvalidArgumentError);
  });
});

describe("randomSplit", () => {
  const big = Interactions.fromRecords(Array.from({ length: 1000 }, (_, k) => ({ user: `u${k % 37}`, item: `i${k % 101}`, timestamp: k })));
  const key = (d: Interactions) => rowsOf(d).map((r) => r.timestamp);

  it("puts round(n × fraction) rows in test, disjoint from train, in original order", () => {
    const { train, test } = randomSplit(big, { testFraction: 0.25, seed: 9 });
    expect(test.length).toBe(250);
    expect(train.length).toBe(750);
    const all = [...key(train), ...key(test)].sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 1000 }, (_, k) => k));
    const t = key(test);
    expect(t).toEqual([...t].sort((a, b) => a - b));
  });

  it("is deterministic for a seed and changes with the seed", () => {
    const a = randomSplit(big, { testFraction: 0.2, seed: 1 });
    const b = randomSplit(big, { testFraction: 0.2, seed: 1 });
    const c = randomSplit(big, { testFraction: 0.2, seed: 2 });
    expect(key(a.test)).toEqual(key(b.test));
    expect(key(a.test)).not.toEqual(key(c.test));
    expect(key(randomSplit(big).test)).toEqual(key(randomSplit(big, { seed: 42, testFraction: 0.2 }).test));
  });

  it("rejects fractions outside (0, 1)", () => {
    for (const f of [0, 1, -0.1, Number.NaN]) expect(() => randomSplit(big, { testFraction: f })).toThrow(InvalidArgumentError);
  });
});

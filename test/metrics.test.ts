import { describe, expect, it } from "vitest";
import { accuracy, auc, confusion, logLoss, summary } from "../src/eval/classification.js";

/** Independent O(n²) reference: over all (positive, negative) pairs, 1 if the positive scores higher, 1/2 if tied. */
function pairwiseAuc(labels: number[], scores: number[]): number {
  let sum = 0;
  let pairs = 0;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] !== 1) continue;
    for (let j = 0; j < labels.length; j++) {
      if (labels[j] !== 0) continue;
      pairs++;
      if (scores[i] > scores[j]) sum += 1;
      else if (scores[i] === scores[j]) sum += 0.5;
    }
  }
  return sum / pairs;
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

describe("auc", () => {
  it("labels [0,0,1,1], scores [0.1,0.4,0.35,0.8] → 0.75", () => {
    // Pairs (pos, neg): (0.35 > 0.1) 1, (0.35 < 0.4) 0, (0.8 > 0.1) 1, (0.8 > 0.4) 1 → 3 of 4.
    expect(auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])).toBe(0.75);
  });

  it("all scores tied → 0.5", () => {
    // 2 positives × 2 negatives = 4 pairs, every one tied: 4 × 1/2 / 4.
    expect(auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])).toBe(0.5);
  });

  it("ties across and within classes (pairwise by hand) → 1/3", () => {
    // positives 0.9, 0.3, 0.1; negatives 0.9, 0.3.
    // 0.9: vs 0.9 tie ½, vs 0.3 win 1   → 1.5
    // 0.3: vs 0.9 lose 0, vs 0.3 tie ½  → 0.5
    // 0.1: vs 0.9 0,      vs 0.3 0      → 0
    // total 2 of 3×2 = 6 pairs → 1/3
    expect(auc([1, 0, 1, 0, 1], [0.9, 0.9, 0.3, 0.3, 0.1])).toBeCloseTo(1 / 3, 15);
  });

  it("rank-sum with average ranks (by hand) → 7/18", () => {
    // sorted: 0.2(neg) 0.2(pos) | 0.6(pos) 0.6(neg) 0.6(pos) | 0.9(neg)
    // ranks:  1.5      1.5      | 4        4        4        | 6
    // R+ = 1.5 + 4 + 4 = 9.5; U = R+ − n+(n+ + 1)/2 = 9.5 − 6 = 3.5; AUC = 3.5 / (3 × 3) = 7/18
    expect(auc([0, 1, 1, 0, 1, 0], [0.2, 0.2, 0.6, 0.6, 0.6, 0.9])).toBeCloseTo(7 / 18, 15);
  });

  it("more tie cases by hand", () => {
    // positives 1, 0.5; negatives 1, 0:
    // (1 vs 1) tie ½, (1 vs 0) 1, (0.5 vs 1) 0, (0.5 vs 0) 1 → 2.5 / 4
    expect(auc([1, 0, 1, 0], [1, 1, 0.5, 0])).toBe(0.625);
    // same without the tie: (1 vs 0.7) 1, (1 vs 0) 1, (0.5 vs 0.7) 0, (0.5 vs 0) 1 → 3 / 4
    expect(auc([1, 0, 1, 0], [1, 0.7, 0.5, 0])).toBe(0.75);
    // one positive 0.4; negatives 0.4, 0.4, 0.1: ½ + ½ + 1 → 2 / 3
    expect(auc([1, 0, 0, 0], [0.4, 0.4, 0.4, 0.1])).toBeCloseTo(2 / 3, 15);
    // positives 0.8, 0.8; negatives 0.8, 0.2, 0.2, 0.2: each positive ½ + 3 → 2 × 3.5 / 8
    expect(auc([1, 1, 0, 0, 0, 0], [0.8, 0.8, 0.8, 0.2, 0.2, 0.2])).toBe(0.875);
  });

  it("perfect, reversed, and invariant to monotone transforms", () => {
    expect(auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])).toBe(1);
    expect(auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4])).toBe(0);
    const y = [0, 1, 1, 0, 1, 0, 0, 1];
    const s = [0.3, 0.7, 0.3, 0.1, 0.9, 0.7, 0.2, 0.5];
    expect(
      auc(
        y,
        s.map((v) => Math.log(v / (1 - v))),
      ),
    ).toBe(auc(y, s));
    expect(
      auc(
        y,
        s.map((v) => -v),
      ),
    ).toBeCloseTo(1 - auc(y, s), 15);
  });

  it("treats -0 and +0 as tied and handles infinities", () => {
    expect(auc([1, 0], [-0, 0])).toBe(0.5);
    expect(auc([1, 0, 0], [Infinity, 1e308, -Infinity])).toBe(1);
    expect(auc([0, 1], [Infinity, Infinity])).toBe(0.5);
  });

  it("is NaN with a single class or no data, and rejects bad input", () => {
    expect(auc([1, 1, 1], [0.1, 0.2, 0.3])).toBeNaN();
    expect(auc([0, 0], [0.1, 0.2])).toBeNaN();
    expect(auc([], [])).toBeNaN();
    expect(() => auc([0, 1], [0.1])).toThrow(/differ in length/);
    expect(() => auc([0, 2], [0.1, 0.2])).toThrow(/labels\[1\] = 2/);
    expect(() => auc([0, 1], [0.1, NaN])).toThrow(/scores\[1\]/);
  });

  it("matches the O(n²) pairwise definition on random data with many ties", () => {
    const rand = lcg(42);
    for (let t = 0; t < 40; t++) {
      const n = 2 + Math.floor(rand() * 300);
      const levels = 1 + Math.floor(rand() * 12); // few distinct scores → many ties
      const pPos = 0.05 + rand() * 0.9;
      const labels = Array.from({ length: n }, () => (rand() < pPos ? 1 : 0));
      const scores = Array.from({ length: n }, () => Math.floor(rand() * levels) / levels);
      if (!labels.includes(0) || !labels.includes(1)) {
        expect(auc(labels, scores)).toBeNaN();
        continue;
      }
      expect(auc(labels, scores)).toBeCloseTo(pairwiseAuc(labels, scores), 12);
      expect(auc(Float64Array.from(labels), Float64Array.from(scores))).toBe(auc(labels, scores));
    }
  });

  it("is fast on a million examples", () => {
    const rand = lcg(7);
    const n = 1_000_000;
    const labels = new Uint8Array(n);
    const scores = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      labels[i] = rand() < 0.3 ? 1 : 0;
      scores[i] = Math.round((labels[i] ? 0.6 : 0.4) * 100 + (rand() - 0.5) * 100) / 100;
    }
    const t = performance.now();
    const a = auc(labels, scores);
    expect(performance.now() - t).toBeLessThan(5000);
    expect(a).toBeGreaterThan(0.6);
    expect(a).toBeLessThan(0.8);
  });
});

describe("logLoss", () => {
  it("by hand", () => {
    // −(ln 0.8 + ln(1 − 0.3)) / 2 = (0.2231435513 + 0.3566749439) / 2 = 0.2899092476
    expect(logLoss([1, 0], [0.8, 0.3])).toBeCloseTo(0.2899092476, 9);
    // a single example: −ln 0.5 = ln 2
    expect(logLoss([1], [0.5])).toBeCloseTo(Math.LN2, 15);
  });

  it("clips like scikit-learn (eps 1e-15 by default)", () => {
    // p = 0 for a positive → clipped to 1e-15: −ln(1e-15) = 15 ln 10 = 34.5387763949
    expect(logLoss([1], [0])).toBeCloseTo(34.5387763949, 9);
    // p = 1 for a negative → clipped to 1 − 1e-15, which as a double is 1 − 9 × 2^-53 (doubles just below 1
    // are 2^-53 = 1.1102e-16 apart), so 1 − p = 9.992007222e-16 and −ln(9.992007222e-16) = 34.5395759923
    expect(logLoss([0], [1])).toBeCloseTo(34.5395759923, 9);
    // Perfect predictions still cost the clipping: −ln(1 − 1e-15) ≈ 1e-15
    expect(logLoss([1, 0], [1, 0])).toBeGreaterThan(0);
    expect(logLoss([1, 0], [1, 0])).toBeLessThan(2e-15);
    // Custom eps: −ln(0.01)
    expect(logLoss([1], [0], 0.01)).toBeCloseTo(Math.log(100), 12);
  });

  it("rejects non-probabilities and is NaN when empty", () => {
    expect(() => logLoss([1], [1.5])).toThrow(/probabilities/);
    expect(() => logLoss([1], [-0.1])).toThrow(/probabilities/);
    expect(() => logLoss([1], [NaN])).toThrow(/scores\[0\]/);
    expect(logLoss([], [])).toBeNaN();
  });
});

describe("accuracy and summary", () => {
  it("accuracy predicts 1 only when score > threshold", () => {
    // predictions at 0.5: [0, 0 (0.5 is not > 0.5), 1, 1] vs labels [0, 1, 1, 0] → correct: yes, no, yes, no → 0.5
    expect(accuracy([0, 1, 1, 0], [0.2, 0.5, 0.7, 0.6])).toBe(0.5);
    // at 0.65: [0, 0, 1, 0] → yes, no, yes, yes → 0.75
    expect(accuracy([0, 1, 1, 0], [0.2, 0.5, 0.7, 0.6], 0.65)).toBe(0.75);
    // at 0.4: [0, 1, 1, 1] → yes, yes, yes, no → 0.75
    expect(accuracy([0, 1, 1, 0], [0.2, 0.5, 0.7, 0.6], 0.4)).toBe(0.75);
    expect(accuracy([], [])).toBeNaN();
    expect(confusion([0, 1, 1, 0], [0.2, 0.5, 0.7, 0.6])).toEqual({ tp: 1, fp: 1, tn: 1, fn: 1 });
  });

  it("summary returns everything with counts (by hand)", () => {
    const labels = [0, 0, 1, 1, 1];
    const scores = [0.1, 0.6, 0.4, 0.8, 0.9];
    // AUC: positives 0.4, 0.8, 0.9 vs negatives 0.1, 0.6: 0.4 wins 1, 0.8 wins 2, 0.9 wins 2 → 5/6
    // predictions (> 0.5): [0, 1, 0, 1, 1] → tp 2 (0.8, 0.9), fp 1 (0.6), tn 1 (0.1), fn 1 (0.4)
    // log loss: −(ln 0.9 + ln 0.4 + ln 0.4 + ln 0.8 + ln 0.9) / 5
    const s = summary(labels, scores);
    expect(s).toMatchObject({ n: 5, positives: 3, negatives: 2, tp: 2, fp: 1, tn: 1, fn: 1, threshold: 0.5 });
    expect(s.auc).toBeCloseTo(5 / 6, 15);
    expect(s.accuracy).toBe(3 / 5);
    expect(s.precision).toBeCloseTo(2 / 3, 15);
    expect(s.recall).toBeCloseTo(2 / 3, 15);
    expect(s.f1).toBeCloseTo(2 / 3, 15);
    expect(s.meanScore).toBeCloseTo(2.8 / 5, 15);
    expect(s.logLoss).toBeCloseTo(-(2 * Math.log(0.9) + 2 * Math.log(0.4) + Math.log(0.8)) / 5, 12);
  });

  it("summary with one class and with non-probability scores", () => {
    const one = summary([1, 1], [0.2, 0.9]);
    expect(one.auc).toBeNaN();
    expect(one.recall).toBe(0.5);
    expect(one.accuracy).toBe(0.5);
    const logits = summary([0, 1], [-2, 3], { threshold: 0 });
    expect(logits.auc).toBe(1);
    expect(logits.accuracy).toBe(1);
    expect(logits.logLoss).toBeNaN();
    const none = summary([0, 0], [0.1, 0.2]);
    expect(none.precision).toBeNaN();
    expect(none.recall).toBeNaN();
    expect(none.f1).toBeNaN();
  });
});

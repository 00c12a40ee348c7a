/**
 * Small deterministic random number generation for synthetic weights:
 * xoshiro128** seeded through splitmix32, normals by Box-Muller. The same
 * (seed, stream name) always gives the same numbers on every platform.
 */
import { Xoshiro128 } from "../recsys/seed.js";

/** 32-bit FNV-1a hash of a string (to derive per-tensor streams from names). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A xoshiro128** generator with a stream name, and normal samples. */
export class Rng extends Xoshiro128 {
  private spare = NaN;

  /** Seeds the state from `seed` and an optional stream name (e.g. a tensor name). */
  constructor(seed: number, stream = "") {
    super(seed ^ hashString(stream));
  }

  /** A standard normal sample (Box-Muller, caching the second value). */
  normal(): number {
    if (!Number.isNaN(this.spare)) {
      const s = this.spare;
      this.spare = NaN;
      return s;
    }
    const u1 = (this.nextUint32() + 1) / 4294967297; // (0, 1]: log is finite
    const u2 = this.next();
    const r = Math.sqrt(-2 * Math.log(u1));
    const th = 2 * Math.PI * u2;
    this.spare = r * Math.sin(th);
    return r * Math.cos(th);
  }

  /** Fills a new Float32Array with `mean + std * N(0, 1)` samples. */
  normalArray(n: number, std: number, mean = 0): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + std * this.normal();
    return out;
  }
}

/**
 * Small seeded pseudo-random number generator shared by the recommender
 * modules (splits, model initialisation, SGD sampling).
 *
 * Algorithm: xoshiro128** (Blackman & Vigna) with its 128-bit state filled by
 * splitmix32 from a 32-bit seed. It is fast in pure JavaScript (32-bit integer
 * ops only), has a period of 2^128 − 1 and is fully deterministic across
 * platforms: the same seed always gives the same sequence.
 *
 * @module
 */

import { InvalidArgumentError } from "./errors.js";

/** Default seed used when a caller does not give one. */
export const DEFAULT_SEED = 42;

/** A deterministic pseudo-random generator. Not cryptographically secure. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /**
   * @param seed any finite number; it is reduced to an unsigned 32-bit integer
   *   (`seed >>> 0`), so seeds that differ only above 2^32 coincide.
   */
  constructor(seed: number = DEFAULT_SEED) {
    if (!Number.isFinite(seed)) throw new InvalidArgumentError(`seed must be a finite number, got ${seed}`);
    let x = seed >>> 0;
    const next = (): number => {
      // splitmix32
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // all-zero state is invalid
  }

  /** Next unsigned 32-bit integer, uniform on [0, 2^32). */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Next float, uniform on [0, 1), with 32 bits of randomness. */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /**
   * Next integer, uniform on [0, n) without modulo bias (rejection sampling).
   * @param n exclusive upper bound, an integer in [1, 2^32].
   */
  nextInt(n: number): number {
    if (!(n >= 1 && n <= 4294967296 && Number.isInteger(n))) {
      throw new InvalidArgumentError(`nextInt bound must be an integer in [1, 2^32], got ${n}`);
    }
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /** Standard normal deviate (Box–Muller, one value per call). */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Shuffles `array` in place (Fisher–Yates) and returns it. */
  shuffle<T extends { length: number; [i: number]: unknown }>(array: T): T {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }
}

/** Convenience factory: `createRng(seed)` is `new Rng(seed)`. */
export function createRng(seed: number = DEFAULT_SEED): Rng {
  return new Rng(seed);
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

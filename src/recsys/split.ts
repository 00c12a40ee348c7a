/**
 * Deterministic train/test splits. Both sides share the input's id maps, so
 * indices are comparable across them, and rows keep their original order.
 *
 * @module
 */

import { InvalidArgumentError } from "./errors.js";
import type { Interactions } from "./interactions.js";
import { DEFAULT_SEED, Rng } from "./seed.js";

/** A train/test pair over the same id maps. */
export interface Split {
  train: Interactions;
  test: Interactions;
}

/** Options of {@link leaveLastOut}. */
export interface LeaveLastOutOptions {
  /**
   * Users with fewer interactions than this keep all of them in `train` (and
   * get no test row). Default 2, so every held-out user keeps some history.
   */
  minInteractions?: number;
}

/**
 * Temporal leave-last-out: each user's last interaction by timestamp goes to
 * `test`, everything else to `train`.
 *
 * Ties (several interactions at the user's latest timestamp, common in
 * MovieLens where ratings are entered in batches) are broken by row order:
 * the one that comes last in the input is held out. The split is therefore a
 * pure function of the input.
 */
export function leaveLastOut(data: Interactions, options: LeaveLastOutOptions = {}): Split {
  const minInteractions = options.minInteractions ?? 2;
  if (!(Number.isInteger(minInteractions) && minInteractions >= 1)) {
    throw new InvalidArgumentError(`minInteractions must be an integer >= 1, got ${minInteractions}`);
  }
  const nUsers = data.users.size;
  const last = new Int32Array(nUsers).fill(-1);
  const count = new Int32Array(nUsers);
  const { userIdx, timestamps } = data;
  for (let row = 0; row < data.length; row++) {
    const u = userIdx[row];
    count[u]++;
    const cur = last[u];
    if (cur < 0 || timestamps[row] >= timestamps[cur]) last[u] = row;
  }
  const isTest = new Uint8Array(data.length);
  for (let u = 0; u < nUsers; u++) if (last[u] >= 0 && count[u] >= minInteractions) isTest[last[u]] = 1;
  return partition(data, isTest);
}

/** Options of {@link randomSplit}. */
export interface RandomSplitOptions {
  /** Fraction of rows put in `test`, in (0, 1). Default 0.2. */
  testFraction?: number;
  /** PRNG seed. Default {@link DEFAULT_SEED}. */
  seed?: number;
}

/**
 * Seeded random split of the rows: exactly `round(length × testFraction)`
 * rows, chosen uniformly with a seeded shuffle, go to `test`. The same seed
 * and input always give the same split.
 */
export function randomSplit(data: Interactions, options: RandomSplitOptions = {}): Split {
  const fraction = options.testFraction ?? 0.2;
  if (!(fraction > 0 && fraction < 1)) throw new InvalidArgumentError(`testFraction must be in (0, 1), got ${fraction}`);
  const rng = new Rng(options.seed ?? DEFAULT_SEED);
  const perm = new Int32Array(data.length);
  for (let k = 0; k < perm.length; k++) perm[k] = k;
  rng.shuffle(perm);
  const nTest = Math.round(data.length * fraction);
  const isTest = new Uint8Array(data.length);
  for (let k = 0; k < nTest; k++) isTest[perm[k]] = 1;
  return partition(data, isTest);
}

function partition(data: Interactions, isTest: Uint8Array): Split {
  const train: number[] = [];
  const test: number[] = [];
  for (let row = 0; row < data.length; row++) (isTest[row] ? test : train).push(row);
  return { train: data.subset(train), test: data.subset(test) };
}

/**
 * Most-popular baseline: every user gets the items with the most distinct
 * training users, minus the items they have seen. It is the floor any
 * personalised model must beat, and the cold-start fallback: it also scores
 * users without training interactions.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { BaseRecommender } from "./base.js";
import type { Interactions } from "./interactions.js";
import { decodeModel, requireArray, type StoredArray } from "./model-file.js";

/** Popularity recommender. Score of an item = number of distinct training users who interacted with it. */
export class PopularityRecommender extends BaseRecommender {
  /** Model kind stored in files. */
  static readonly KIND = "popularity";
  readonly kind = PopularityRecommender.KIND;
  protected readonly requiresHistory = false;
  private counts: Float32Array = new Float32Array(0);

  protected train(_train: Interactions): void {
    const seen = this.seen;
    const counts = new Float32Array(seen.cols);
    for (let p = 0; p < seen.indices.length; p++) counts[seen.indices[p]]++;
    this.counts = counts;
  }

  protected computeScores(_u: number): Float32Array {
    return this.counts.slice();
  }

  /** Popularity (distinct training users) of every item, by item index. */
  itemCounts(): Float32Array {
    this.state();
    return this.counts.slice();
  }

  protected stateForSave(): { params: Record<string, unknown>; arrays: Record<string, StoredArray> } {
    return { params: {}, arrays: { counts: this.counts } };
  }

  /** Reads a model saved by {@link PopularityRecommender.save}. @throws ModelFileError */
  static async load(path: string): Promise<PopularityRecommender> {
    return PopularityRecommender.fromBuffer(await readFile(path), path);
  }

  /** Decodes bytes made by {@link PopularityRecommender.toBuffer}. @throws ModelFileError */
  static fromBuffer(bytes: Uint8Array, label = "<buffer>"): PopularityRecommender {
    const contents = decodeModel(bytes, label, PopularityRecommender.KIND);
    const m = new PopularityRecommender();
    m.restoreState(contents, label);
    m.counts = requireArray(contents, label, "counts", "f32", m.items.size);
    return m;
  }
}

/**
 * Loading a saved model without knowing its kind in advance.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import type { Recommender } from "./base.js";
import { ModelFileError } from "./errors.js";
import { ItemKnnRecommender } from "./knn.js";
import { BiasedMfPredictor, BprRecommender } from "./mf.js";
import { decodeModel } from "./model-file.js";
import { PopularityRecommender } from "./popularity.js";

/** Any model this package can save. */
export type AnyRecommender = PopularityRecommender | ItemKnnRecommender | BprRecommender | BiasedMfPredictor;

/** Decodes a model of any kind from bytes. @throws ModelFileError */
export function recommenderFromBuffer(bytes: Uint8Array, label = "<buffer>"): AnyRecommender {
  const kind = decodeModel(bytes, label).kind;
  switch (kind) {
    case PopularityRecommender.KIND:
      return PopularityRecommender.fromBuffer(bytes, label);
    case ItemKnnRecommender.KIND:
      return ItemKnnRecommender.fromBuffer(bytes, label);
    case BprRecommender.KIND:
      return BprRecommender.fromBuffer(bytes, label);
    case BiasedMfPredictor.KIND:
      return BiasedMfPredictor.fromBuffer(bytes, label);
    default:
      throw new ModelFileError(label, `unknown model kind "${kind}"`);
  }
}

/** Reads a model file of any kind. @throws ModelFileError */
export async function loadRecommender(path: string): Promise<AnyRecommender & Recommender> {
  return recommenderFromBuffer(await readFile(path), path);
}

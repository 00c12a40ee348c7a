/**
 * Building a {@link ChatRec} from files: the data, a recommender fitted in-process (seconds on
 * MovieLens-100K) or loaded from a model file, and an engine.
 *
 * ```ts
 * const engine = await Engine.load({ model, adapters: [{ name: "movie", path: lora }] });
 * const chat = await createChatRec({ engine, data: { ml100k: "../shared/data/ml-100k" }, recommender: "knn" });
 * const { sessionId } = chat.startSession(42);
 * const r = await chat.turn(sessionId, "something lighter", { onText: (t) => process.stdout.write(t) });
 * ```
 *
 * @module
 */
import type { Recommender } from "../recsys/base.js";
import { fitRecommender, loadData, loadRecommenderFile, RECOMMENDER_NAMES, type DataSource, type RecommenderKind } from "./sources.js";
import { ChatRecError } from "./errors.js";
import { ChatRec, type ChatRecOptions } from "./pipeline.js";

/** Options of {@link createChatRec}: ChatRec's, with data and a recommender given as files or kinds. */
export interface ChatRecSetup extends Omit<ChatRecOptions, "interactions" | "catalog" | "recommender"> {
  data: DataSource;
  /** A kind fitted on the data (default "knn"), a model file, or a fitted recommender. */
  recommender?: RecommenderKind | { file: string } | Recommender;
  /** Save the fitted recommender here. */
  saveRecommender?: string;
  /** Seed of the MF models (default 42). */
  seed?: number;
  /** Progress notes. */
  log?: (message: string) => void;
}

/** Loads data, fits or loads the recommender, and builds the service. */
export async function createChatRec(setup: ChatRecSetup): Promise<ChatRec> {
  const log = setup.log ?? (() => {});
  const { data, recommender: spec = "knn", saveRecommender, seed, log: _log, ...rest } = setup;
  const loaded = await loadData(data);
  log(`data: ${loaded.description}: ${loaded.interactions.length} interactions, ${loaded.interactions.users.size} users, ${loaded.catalog.size} items`);
  if (loaded.titlesMissing) log("note: no item file, so titles are item ids (TALLRec needs titles to be useful)");
  let recommender: Recommender;
  if (typeof spec === "string") {
    const t = performance.now();
    recommender = fitRecommender(spec, loaded.interactions, { seed });
    log(`fitted ${RECOMMENDER_NAMES[spec]} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  } else if ("file" in spec) {
    recommender = await loadRecommenderFile(spec.file);
    log(`loaded ${recommender.kind} from ${spec.file}`);
    const unknown = recommender.users.ids().filter((u) => !loaded.interactions.users.has(u)).length;
    if (unknown === recommender.users.size) throw new ChatRecError("invalid_input", `${spec.file}: none of its users are in the data; was it trained on other data?`);
  } else recommender = spec;
  if (saveRecommender) {
    await recommender.save(saveRecommender);
    log(`saved ${recommender.kind} to ${saveRecommender}`);
  }
  return new ChatRec({ ...(loaded.profiles ? { profiles: loaded.profiles } : {}), ...rest, interactions: loaded.interactions, catalog: loaded.catalog, recommender });
}

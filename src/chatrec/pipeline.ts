/**
 * The Chat-REC service: a classic recommender proposes candidates, the TALLRec scorer re-ranks
 * them for the user, the model explains the choice, and a session carries the conversation so
 * that follow-ups ("something lighter", "not that one", "more like the second") re-rank without
 * starting over.
 *
 * One turn:
 * 1. read the message into an {@link Intent} (deterministic parser; optionally the model too);
 * 2. resolve its references against the last answer ("the second", "that one", a title) and fold
 *    it into the session's filters (genres, eras, mood, excluded items, "more like");
 * 3. candidates: the recommender's top `candidates` for the user that pass the filters (or the
 *    items most similar to the "more like" items), plus cold-start items found through their text
 *    embeddings; the user's own items and everything excluded never come back; when nothing
 *    passes, soft filters (years, mood, genres) are relaxed one at a time, with a note;
 * 4. re-rank with TALLRec (one engine call: the user's history is evaluated once), optionally
 *    blended with the recommender's score and the mood hint; keep the best `count`;
 * 5. explain with `engine.generate`, streamed to `onText`; record the turn in the session.
 *
 * @module
 */
import type { AdapterSelection } from "../engine/engine.js";
import type { Domain } from "../engine/prompt.js";
import { codeOf } from "../errors.js";
import { EmptyHistoryError, UnknownIdError } from "../recsys/errors.js";
import type { Id, Interactions } from "../recsys/interactions.js";
import { ItemCatalog, type ItemInfo } from "../recsys/items.js";
import type { ItemSimilarity, Recommender } from "../recsys/base.js";
import { PopularityRecommender } from "../recsys/popularity.js";
import type { ScoringRule } from "../engine/scoring.js";
import { embeddingsOf, nearestByText, type Embedder } from "./coldstart.js";
import { ChatRecError } from "./errors.js";
import { explain, type ExplainOptions } from "./explain.js";
import { HistoryIndex, splitRecent, titledHistory, titleOf, type HistoryOptions, type RatedItem } from "./history.js";
import { DARK_GENRES, LIGHT_GENRES, mergeModelIntent, parseIntent, readIntentWithModel, type Generator, type Intent, type ItemRef } from "./intent.js";
import { rerank, type RerankCandidate, type Scorer } from "./rerank.js";
import { emptyFilters, SessionStore, type Filters, type Session, type SessionStoreOptions } from "./session.js";

/** What the service needs from an engine: scoring and generation; embeddings for cold start. */
export interface ChatEngine extends Scorer, Generator, Partial<Embedder> {}

/** Cold-start options. */
export interface ColdStartOptions {
  /** Cold items added to each turn's candidates (default 3). */
  candidates?: number;
  /** Item descriptions by item id, embedded with the title and genres. */
  descriptions?: ReadonlyMap<string, string>;
}

/** Options of {@link ChatRec}. */
export interface ChatRecOptions {
  /** The engine: TALLRec scoring, generation, embeddings. */
  engine: ChatEngine;
  /** Ratings with timestamps: the users' histories. */
  interactions: Interactions;
  /** Item metadata: titles (the TALLRec targets), genres, years. */
  catalog: ItemCatalog;
  /** User profiles in words by user id, shown to the model in explanations (e.g. from u.user). */
  profiles?: ReadonlyMap<string, string>;
  /** A fitted candidate generator (usually trained on `interactions`). */
  recommender: Recommender;
  /** Item-to-item similarity for "more like X" (default: the recommender, when it has `similar`). */
  similarity?: ItemSimilarity | null;
  /** How histories are cut (default: TALLRec's 10 most recent, liked when rated >= 4). */
  history?: HistoryOptions;
  /** TALLRec domain (default "movie"). */
  domain?: Domain;
  /** Adapter(s) for scoring (default: the engine's default adapter). */
  adapter?: AdapterSelection;
  /** Scoring rule (default "softmax"). */
  scoring?: ScoringRule;
  /** Candidates re-ranked per turn (default 20). */
  candidates?: number;
  /** Recommendations per answer (default 5; a message may ask for another number). */
  count?: number;
  /** Weight of the recommender's score in the re-ranking blend, in [0, 1] (default 0: pYes alone). */
  alpha?: number;
  /** Weight of the mood hint (default 0.5 standard deviations). */
  hintWeight?: number;
  /** Explanations: options, or false for none (default: on, 160 tokens, temperature 0.7, seed 0). */
  explain?: false | ExplainOptions;
  /** Also ask the model to read requests into filters (validated; default false). */
  modelIntent?: boolean;
  /** Cold start through item text embeddings (default: on when the engine can embed); false: off. */
  coldStart?: false | ColdStartOptions;
  /** The session store, or its options. */
  sessions?: SessionStore | SessionStoreOptions;
}

/** A recommendation in an answer. */
export interface Recommended {
  rank: number;
  item: string;
  title: string;
  genres: string[];
  year?: number;
  /** TALLRec's probability that the user likes the item. */
  pYes: number;
  logitYes: number;
  logitNo: number;
  /** The score the answer is sorted by (pYes itself with alpha 0 and no hint). */
  score: number;
  /** The candidate generator's score (null for a cold-start item). */
  recScore: number | null;
  /** Found through item text embeddings (the item has no interactions). */
  coldStart: boolean;
}

/** A session as callers see it. */
export interface SessionInfo {
  sessionId: string;
  user: string;
  /** The user's profile in words, when known. */
  profile?: string;
  /** Titles TALLRec sees as liked / disliked. */
  liked: string[];
  disliked: string[];
  /** Items the user has interacted with. */
  interactions: number;
  turns: number;
  filters: Filters;
}

/** The answer to one message. */
export interface TurnResult {
  sessionId: string;
  user: string;
  /** 1-based turn number in the session. */
  turn: number;
  recommendations: Recommended[];
  /** The model's explanation ("" when explanations are off). */
  explanation: string;
  /** Why generation stopped (absent when explanations are off). */
  stopReason?: string;
  /** The session's filters after this message. */
  filters: Filters;
  /** What the message was read as. */
  intent: Intent;
  /** Whether the model's reading of the request was used (modelIntent). */
  intentSource: "parser" | "parser+model";
  /** Things the user should know (unknown titles, relaxed filters, fallbacks). */
  notes: string[];
  /** Candidates the engine could not score. */
  failed: Array<{ item: string; title: string; error: string }>;
  timings: { candidatesMs: number; rerankMs: number; explainMs: number };
}

/** Options of one turn. */
export interface TurnOptions {
  /** Receives the explanation as it is generated. */
  onText?: (piece: string) => void;
  /** Called with the recommendations and notes once they are ranked, before the explanation is generated. */
  onRecommendations?: (recommendations: readonly Recommended[], notes: readonly string[]) => void;
  /** Cancels the turn (scoring and generation stop). */
  signal?: AbortSignal;
  /** Explain this turn (default: the service's setting). */
  explain?: boolean;
  /** Recommendations this turn (default: the message's "top N", else the service's count). */
  count?: number;
}

/**
 * User ids that start cold: `new:` followed by anything (e.g. `new:3f2a`) names a user with no
 * ratings, when the data has no user of that id. The conversation builds their history ("I loved
 * Heat"), and candidates come from popularity until then.
 */
export const NEW_USER_PREFIX = "new:";

/** Whether `id` names a cold-start user (see {@link NEW_USER_PREFIX}). */
export function isNewUserId(id: string): boolean {
  return id.startsWith(NEW_USER_PREFIX) && id.length > NEW_USER_PREFIX.length && id.length <= 100;
}

/** The most characters a message may have. */
export const MAX_MESSAGE_CHARS = 2000;

/** Whether an item passes the filters. */
export function matchesFilters(info: ItemInfo | undefined, f: Filters): boolean {
  const hasYear = f.yearMin !== undefined || f.yearMax !== undefined;
  const constrained = f.genres.length > 0 || f.excludeGenres.length > 0 || hasYear || f.mood !== undefined;
  if (!info) return !constrained;
  if (f.genres.length > 0 && !info.genres.some((g) => f.genres.includes(g))) return false;
  if (info.genres.some((g) => f.excludeGenres.includes(g))) return false;
  if (hasYear) {
    if (info.year === undefined) return false;
    if (f.yearMin !== undefined && info.year < f.yearMin) return false;
    if (f.yearMax !== undefined && info.year > f.yearMax) return false;
  }
  if (f.mood === "lighter" && info.genres.some((g) => DARK_GENRES.includes(g))) return false;
  if (f.mood === "darker" && !info.genres.some((g) => DARK_GENRES.includes(g) || g === "Drama" || g === "Mystery")) return false;
  return true;
}

/** The filters in words ("genres: Comedy; years 1990–1999; lighter; 2 movies left out"). */
export function describeFilters(f: Filters, catalog?: ItemCatalog): string {
  const parts: string[] = [];
  if (f.genres.length) parts.push(`genres: ${f.genres.join(" or ")}`);
  if (f.excludeGenres.length) parts.push(`no ${f.excludeGenres.join(", ")}`);
  if (f.yearMin !== undefined && f.yearMax !== undefined) parts.push(f.yearMin === f.yearMax ? `from ${f.yearMin}` : `years ${f.yearMin}–${f.yearMax}`);
  else if (f.yearMin !== undefined) parts.push(`from ${f.yearMin} on`);
  else if (f.yearMax !== undefined) parts.push(`up to ${f.yearMax}`);
  if (f.mood) parts.push(f.mood);
  if (f.similarTo.length) parts.push(`like ${f.similarTo.map((i) => (catalog ? titleOf(catalog, i) : i)).join(", ")}`);
  if (f.excludeItems.length) parts.push(`${f.excludeItems.length} movie${f.excludeItems.length === 1 ? "" : "s"} left out`);
  return parts.join("; ");
}

function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

function ordinalWord(i: number): string {
  return ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"][i] ?? `#${i + 1}`;
}

function positiveInt(name: string, v: number | undefined, d: number): number {
  if (v === undefined) return d;
  if (!Number.isInteger(v) || v < 1) throw new ChatRecError("invalid_input", `${name} must be a positive integer, not ${v}`);
  return v;
}

/** The Chat-REC service. One instance serves many sessions; turns of one session run in order. */
export class ChatRec {
  /** The session store. */
  readonly sessions: SessionStore;
  /** Users' histories. */
  readonly histories: HistoryIndex;
  private catalogNow: ItemCatalog;
  private readonly descriptions = new Map<string, string>();
  private readonly itemCounts: Map<string, number>;
  private popularity: PopularityRecommender | undefined;
  private readonly similarity: ItemSimilarity | null;
  private readonly candidatesPerTurn: number;
  private readonly count: number;
  private readonly coldStart: { candidates: number } | null;

  constructor(private readonly options: ChatRecOptions) {
    if (!options || typeof options !== "object") throw new TypeError("ChatRec needs options");
    if (!options.engine || typeof options.engine.score !== "function") throw new TypeError("options.engine must be an Engine (score, generate, embed)");
    if (!options.recommender?.isFitted) throw new TypeError("options.recommender must be a fitted recommender");
    this.histories = new HistoryIndex(options.interactions, options.history);
    this.catalogNow = options.catalog;
    this.itemCounts = this.histories.itemCounts();
    const rec = options.recommender as Recommender & Partial<ItemSimilarity>;
    this.similarity = options.similarity !== undefined ? options.similarity : typeof rec.similar === "function" ? (rec as ItemSimilarity) : null;
    this.candidatesPerTurn = positiveInt("candidates", options.candidates, 20);
    this.count = positiveInt("count", options.count, 5);
    const alpha = options.alpha ?? 0;
    if (!(alpha >= 0 && alpha <= 1)) throw new ChatRecError("invalid_input", `alpha must be in [0, 1], not ${alpha}`);
    const canEmbed = typeof options.engine.embed === "function";
    this.coldStart = options.coldStart === false || !canEmbed ? null : { candidates: options.coldStart?.candidates ?? 3 };
    if (options.coldStart && options.coldStart.descriptions) for (const [k, v] of options.coldStart.descriptions) this.descriptions.set(k, v);
    this.sessions = options.sessions instanceof SessionStore ? options.sessions : new SessionStore(options.sessions);
  }

  /** The item catalog (including items added with {@link addItems}). */
  get catalog(): ItemCatalog {
    return this.catalogNow;
  }

  /**
   * Adds items (e.g. new movies nobody has rated): they can be recommended and explained through
   * their text (cold start). An id already in the catalog is rejected.
   */
  addItems(items: ReadonlyArray<ItemInfo & { description?: string }>): void {
    for (const it of items) {
      if (!it || typeof it.id !== "string" || !it.id || typeof it.title !== "string" || !it.title.trim()) throw new ChatRecError("invalid_input", "a new item needs a string id and a title");
      if (this.catalogNow.has(it.id)) throw new ChatRecError("invalid_input", `item ${JSON.stringify(it.id)} is already in the catalog`);
    }
    this.catalogNow = new ItemCatalog([...this.catalogNow, ...items.map(({ description: _d, ...info }) => ({ ...info, genres: info.genres ?? [] }))]);
    for (const it of items) if (it.description) this.descriptions.set(it.id, it.description);
  }

  /** Whether an item has interactions the recommender learnt from (else it is cold). */
  private isWarm(item: string): boolean {
    return this.options.recommender.items.has(item) && (this.itemCounts.get(item) ?? 0) > 0;
  }

  /** TALLRec's view of a user in a session: recent history plus what they said in the chat. */
  private userHistory(s: Session): { liked: string[]; disliked: string[]; all: RatedItem[] } {
    const h = !this.histories.has(s.user) && isNewUserId(s.user) ? { interactions: [] as RatedItem[] } : this.histories.get(s.user);
    const t = Number.MAX_SAFE_INTEGER;
    const said = [...s.liked.map((item) => ({ item, rating: 5, timestamp: t })), ...s.disliked.map((item) => ({ item, rating: 1, timestamp: t }))];
    const mentioned = new Set(said.map((x) => x.item));
    const merged = [...h.interactions.filter((x) => !mentioned.has(x.item)), ...said];
    const { liked, disliked } = splitRecent(merged, this.histories.options);
    return { liked, disliked, all: merged };
  }

  private info(s: Session): SessionInfo {
    const h = this.userHistory(s);
    const t = titledHistory(this.catalogNow, h);
    const profile = this.options.profiles?.get(s.user);
    return { sessionId: s.id, user: s.user, ...(profile ? { profile } : {}), liked: t.liked, disliked: t.disliked, interactions: h.all.length, turns: s.turnCount, filters: structuredClone(s.filters) };
  }

  /**
   * Starts a conversation with a user of the interaction data, or with a new user without ratings
   * (an id `new:...` that the data does not have: see {@link NEW_USER_PREFIX}).
   * @throws ChatRecError (unknown_user) for a user not in the data.
   */
  startSession(user: Id): SessionInfo {
    if ((typeof user !== "string" && typeof user !== "number") || String(user).trim() === "") throw new ChatRecError("invalid_input", "user must be a non-empty id");
    const id = String(user).trim();
    if (!this.histories.has(id) && !isNewUserId(id)) {
      throw new ChatRecError("unknown_user", `unknown user ${JSON.stringify(id)}: not in the interaction data (${this.histories.size} users)`);
    }
    return this.info(this.sessions.create(id));
  }

  /** A session's state. @throws ChatRecError (unknown_session) */
  session(sessionId: string): SessionInfo {
    return this.info(this.sessions.require(sessionId));
  }

  /** Ends a session; false when it did not exist (or expired). */
  endSession(sessionId: string): boolean {
    return this.sessions.delete(sessionId);
  }

  /**
   * Answers a message in a session. Turns of one session run one after another; different
   * sessions run concurrently (the engine queues their calls).
   * @throws ChatRecError (unknown_session, invalid_input)
   */
  async turn(sessionId: string, message: string, options: TurnOptions = {}): Promise<TurnResult> {
    const s = this.sessions.require(sessionId);
    if (typeof message !== "string") throw new ChatRecError("invalid_input", "message must be a string");
    if (message.length > MAX_MESSAGE_CHARS) throw new ChatRecError("invalid_input", `message is ${message.length} characters; at most ${MAX_MESSAGE_CHARS}`);
    if (options.count !== undefined) positiveInt("count", options.count, 1);
    const run = s.queue.then(() => this.runTurn(s, message, options));
    s.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * One message in a new or existing conversation: with `sessionId` it continues that session,
   * else it starts one for `user`.
   */
  async chat(request: { sessionId?: string; user?: Id; message: string }, options: TurnOptions = {}): Promise<TurnResult> {
    let id = request.sessionId;
    if (id === undefined) {
      if (request.user === undefined) throw new ChatRecError("invalid_input", "send a sessionId to continue a conversation, or a user to start one");
      id = this.startSession(request.user).sessionId;
    } else if (request.user !== undefined && this.sessions.require(id).user !== String(request.user)) {
      throw new ChatRecError("invalid_input", `session ${id} belongs to another user`);
    }
    return this.turn(id, request.message, options);
  }

  private resolve(ref: ItemRef, s: Session, notes: string[]): string | null {
    switch (ref.kind) {
      case "item":
        return ref.item;
      case "ordinal":
        if (s.last.length === 0) {
          notes.push(`"${ref.text}" refers to nothing yet: I have not recommended anything in this conversation`);
          return null;
        }
        if (ref.index >= s.last.length) {
          notes.push(`there is no ${ordinalWord(ref.index)} recommendation (I showed ${s.last.length})`);
          return null;
        }
        return s.last[ref.index].item;
      case "last":
        if (s.last.length === 0) {
          notes.push(`"${ref.text}" refers to nothing yet`);
          return null;
        }
        return s.last[s.last.length - 1].item;
      case "that": {
        const item = s.focus ?? s.last[0]?.item;
        if (item === undefined) notes.push(`"${ref.text}" refers to nothing yet`);
        return item ?? null;
      }
    }
  }

  /** Folds a message's intent into the session (filters, said-liked items, focus). */
  private applyIntent(s: Session, intent: Intent, notes: string[]): void {
    const f = s.filters;
    if (intent.reset) {
      s.filters = emptyFilters();
      s.shown.clear();
      s.focus = undefined;
      return this.applyIntent(s, { ...intent, reset: false }, notes);
    }
    const ids = (refs: ItemRef[]) => refs.map((r) => this.resolve(r, s, notes)).filter((x): x is string => x !== null);
    const excluded = ids(intent.exclude);
    const similar = ids(intent.similarTo);
    const liked = ids(intent.liked);
    const disliked = ids(intent.disliked);
    const mentioned = ids(intent.mentioned);
    for (const u of intent.unresolved) notes.push(`I could not find a movie called "${u}" in the catalog`);

    for (const i of excluded) if (!f.excludeItems.includes(i)) f.excludeItems.push(i);
    if (similar.length > 0) f.similarTo = similar;
    f.similarTo = f.similarTo.filter((i) => !f.excludeItems.includes(i));
    for (const i of liked) {
      s.disliked = s.disliked.filter((x) => x !== i);
      if (!s.liked.includes(i)) s.liked.push(i);
    }
    for (const i of disliked) {
      s.liked = s.liked.filter((x) => x !== i);
      if (!s.disliked.includes(i)) s.disliked.push(i);
    }
    if (intent.genres.length > 0) {
      f.genres = [...intent.genres];
      // a new genre request is a new direction, unless it came with "more like"
      if (similar.length === 0) f.similarTo = [];
    }
    for (const g of intent.excludeGenres) if (!f.excludeGenres.includes(g)) f.excludeGenres.push(g);
    f.excludeGenres = f.excludeGenres.filter((g) => !intent.genres.includes(g));
    f.genres = f.genres.filter((g) => !f.excludeGenres.includes(g));
    if (intent.mood) {
      f.mood = intent.mood;
      const away = intent.mood === "lighter" ? DARK_GENRES : LIGHT_GENRES;
      if (intent.genres.length === 0) f.genres = f.genres.filter((g) => !away.includes(g));
    }
    if (intent.yearMin !== undefined || intent.yearMax !== undefined) {
      f.yearMin = intent.yearMin;
      f.yearMax = intent.yearMax;
    } else if (intent.era) {
      const shownYears = s.last.map((x) => x.year).filter((y): y is number => y !== undefined);
      const base = median(
        shownYears.length
          ? shownYears
          : this.userHistory(s)
              .all.map((x) => this.catalogNow.get(x.item)?.year)
              .filter((y): y is number => y !== undefined),
      );
      if (base === undefined) notes.push(`I do not know the years of these movies, so "${intent.era}" changes nothing`);
      else if (intent.era === "newer") {
        f.yearMin = base + 1;
        f.yearMax = undefined;
      } else {
        f.yearMax = base - 1;
        f.yearMin = undefined;
      }
    }
    if (f.yearMin === undefined) delete f.yearMin;
    if (f.yearMax === undefined) delete f.yearMax;
    s.focus = mentioned.length > 0 ? mentioned[mentioned.length - 1] : undefined;
  }

  private popularityModel(): PopularityRecommender {
    this.popularity ??= new PopularityRecommender().fit(this.options.interactions);
    return this.popularity;
  }

  /** Candidates for a session under filters `f` (before relaxation). */
  private async candidatesFor(s: Session, f: Filters, excluded: Set<string>, notes: string[], signal?: AbortSignal): Promise<RerankCandidate[]> {
    const catalog = this.catalogNow;
    const rec = this.options.recommender;
    // "more like X" never offers X itself
    const anchors = new Set(f.similarTo);
    const pass = (id: string) => !excluded.has(id) && !anchors.has(id) && matchesFilters(catalog.get(id), f);
    const n = this.candidatesPerTurn;
    const out = new Map<string, RerankCandidate>();
    const add = (item: string, recScore: number) => {
      const prev = out.get(item);
      if (!prev || (Number.isFinite(recScore) && !(prev.recScore >= recScore))) out.set(item, { item, title: titleOf(catalog, item), recScore });
    };
    const textAnchors: ItemInfo[] = [];
    if (f.similarTo.length > 0) {
      for (const x of f.similarTo) {
        if (this.similarity && this.isWarm(x)) {
          for (const r of this.similarity.similar(x, n, { filter: (id) => pass(id) })) add(r.item, r.score);
        } else {
          const info = catalog.get(x);
          if (info) textAnchors.push(info);
        }
      }
      const ranked = [...out.values()].sort((a, b) => b.recScore - a.recScore).slice(0, n);
      out.clear();
      for (const c of ranked) out.set(c.item, c);
      if (textAnchors.length > 0 && this.coldStart && this.options.engine.embed) {
        // the anchor has no interactions: its neighbours by text, among all items
        const pool = [...catalog].filter((i) => pass(i.id));
        signal?.throwIfAborted();
        const near = await nearestByText(embeddingsOf(this.options.engine as Embedder), textAnchors, pool, { k: n, descriptions: this.descriptions });
        for (const r of near) if (!out.has(r.item)) out.set(r.item, { item: r.item, title: titleOf(catalog, r.item), recScore: NaN });
      } else if (textAnchors.length > 0 && !this.similarity) {
        notes.push("this recommender cannot find similar movies, and cold start is off");
      }
    } else {
      let recs;
      try {
        recs = rec.recommend(s.user, n, { exclude: "none", filter: (id) => pass(id) });
      } catch (err) {
        const emptyHistory = err instanceof EmptyHistoryError;
        if (!emptyHistory && !((err instanceof UnknownIdError && err.kind === "user") || codeOf(err) === "unknown_user")) throw err;
        notes.push(emptyHistory ? `user ${s.user} has no ratings the ${rec.kind} model learnt from, so these are popular movies` : `the ${rec.kind} model does not know user ${s.user}, so these are popular movies`);
        const popular = this.popularityModel();
        recs = popular.users.has(s.user)
          ? popular.recommend(s.user, n, { exclude: "none", filter: (id) => pass(id) })
          : // a new user (see NEW_USER_PREFIX): the most rated items
            [...this.itemCounts]
              .filter(([id]) => pass(id))
              .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
              .slice(0, n)
              .map(([item, count]) => ({ item, score: count }));
      }
      for (const r of recs) add(r.item, r.score);
    }
    // cold start: items without interactions, nearest to what the user liked
    if (this.coldStart && this.coldStart.candidates > 0 && this.options.engine.embed) {
      const cold = [...catalog].filter((i) => !this.isWarm(i.id) && pass(i.id) && !out.has(i.id));
      if (cold.length > 0) {
        const h = this.userHistory(s);
        // "more like X": near X; otherwise near what the user liked
        const info = (ids: readonly string[]) => ids.map((i) => catalog.get(i)).filter((x): x is ItemInfo => x !== undefined);
        let profile = info(f.similarTo.length > 0 ? f.similarTo : h.liked);
        if (profile.length === 0) profile = info(h.all.filter((x) => x.rating >= this.histories.options.likeThreshold).map((x) => x.item));
        signal?.throwIfAborted();
        if (profile.length > 0) {
          const near = await nearestByText(embeddingsOf(this.options.engine as Embedder), profile, cold, { k: this.coldStart.candidates, descriptions: this.descriptions });
          for (const r of near) out.set(r.item, { item: r.item, title: titleOf(catalog, r.item), recScore: NaN });
        } else {
          // nothing liked to compare with: the newest cold items
          const newest = [...cold].sort((a, b) => (b.year ?? 0) - (a.year ?? 0)).slice(0, this.coldStart.candidates);
          for (const i of newest) out.set(i.id, { item: i.id, title: i.title, recScore: NaN });
        }
      }
    }
    return [...out.values()];
  }

  private async runTurn(s: Session, message: string, options: TurnOptions): Promise<TurnResult> {
    const t0 = performance.now();
    const notes: string[] = [];
    const catalog = this.catalogNow;
    let intent = parseIntent(message, { catalog });
    let intentSource: TurnResult["intentSource"] = "parser";
    if (this.options.modelIntent && message.trim() !== "") {
      const m = await readIntentWithModel(this.options.engine, message, { genres: catalog.genres().filter((g) => g !== "unknown"), signal: options.signal }).catch(() => null);
      if (m) {
        intent = mergeModelIntent(intent, m);
        intentSource = "parser+model";
      }
    }
    const before = structuredClone(s.filters);
    const beforeLiked = [...s.liked];
    const beforeDisliked = [...s.disliked];
    const beforeShown = new Set(s.shown);
    const beforeFocus = s.focus;
    try {
      this.applyIntent(s, intent, notes);
      const history = this.userHistory(s);
      if (history.all.length === 0) notes.push(`user ${s.user} has no ratings yet: tell me a movie you liked ("I loved Heat")`);
      const excluded = new Set<string>([...history.all.map((x) => x.item), ...s.filters.excludeItems]);
      if (intent.more) for (const i of s.shown) excluded.add(i);

      // candidates, relaxing soft filters one at a time when nothing passes
      const f: Filters = structuredClone(s.filters);
      let candidates = await this.candidatesFor(s, f, excluded, notes, options.signal);
      const relaxations: Array<[string, (x: Filters) => boolean]> = [
        ["the years", (x) => (x.yearMin !== undefined || x.yearMax !== undefined ? (delete x.yearMin, delete x.yearMax, true) : false)],
        ["the mood", (x) => (x.mood !== undefined ? (delete x.mood, true) : false)],
        ["the genres", (x) => (x.genres.length > 0 ? ((x.genres = []), true) : false)],
        ['"more like"', (x) => (x.similarTo.length > 0 ? ((x.similarTo = []), true) : false)],
      ];
      for (const [what, relax] of relaxations) {
        if (candidates.length > 0) break;
        if (!relax(f)) continue;
        notes.push(`no movie matched everything you asked for, so I ignored ${what}`);
        candidates = await this.candidatesFor(s, f, excluded, notes, options.signal);
      }
      if (candidates.length === 0) notes.push("no movie is left to recommend: everything matching has been seen or left out");
      // what had to be relaxed stays relaxed: the next turn starts from what worked
      else s.filters = structuredClone(f);
      // mood hint
      for (const c of candidates) {
        const g = catalog.get(c.item)?.genres ?? [];
        if (f.mood === "lighter") c.hint = g.some((x) => LIGHT_GENRES.includes(x)) ? 1 : 0;
        else if (f.mood === "darker") c.hint = g.some((x) => DARK_GENRES.includes(x)) ? 1 : 0;
      }
      const t1 = performance.now();

      const titled = titledHistory(catalog, history);
      const { ranked, failed } =
        candidates.length === 0
          ? { ranked: [], failed: [] }
          : await rerank(this.options.engine, titled, candidates, {
              alpha: this.options.alpha,
              hintWeight: this.options.hintWeight,
              adapter: this.options.adapter,
              scoring: this.options.scoring,
              domain: this.options.domain,
              signal: options.signal,
            });
      for (const x of failed) notes.push(`could not score "${x.title}": ${x.error}`);
      const count = Math.min(options.count ?? intent.count ?? this.count, 50);
      const recommendations: Recommended[] = ranked.slice(0, count).map((r, k) => {
        const info = catalog.get(r.item);
        return {
          rank: k + 1,
          item: r.item,
          title: r.title,
          genres: info ? [...info.genres] : [],
          ...(info?.year !== undefined ? { year: info.year } : {}),
          pYes: r.pYes,
          logitYes: r.logitYes,
          logitNo: r.logitNo,
          score: r.score,
          recScore: Number.isFinite(r.recScore) ? r.recScore : null,
          coldStart: !this.isWarm(r.item),
        };
      });
      const t2 = performance.now();
      options.onRecommendations?.(recommendations, notes);

      let explanation = "";
      let stopReason: string | undefined;
      const explainOpts = this.options.explain;
      if (explainOpts !== false && options.explain !== false) {
        const g = await explain(
          this.options.engine,
          {
            profile: this.options.profiles?.get(s.user),
            liked: titled.liked,
            disliked: titled.disliked,
            request: message,
            items: recommendations.map((r) => ({ title: r.title, genres: r.genres, pYes: r.pYes, coldStart: r.coldStart })),
            dialogue: s.turns,
            constraints: describeFilters(f, catalog),
            notes,
          },
          { ...explainOpts, onText: options.onText, signal: options.signal },
        );
        explanation = g.text.trim();
        stopReason = g.stopReason;
      }
      const t3 = performance.now();

      s.last = recommendations.map((r) => ({ item: r.item, title: r.title, ...(r.year !== undefined ? { year: r.year } : {}) }));
      for (const r of recommendations) s.shown.add(r.item);
      this.sessions.addTurn(s, { role: "user", content: message });
      const list = recommendations.length ? `Recommended: ${recommendations.map((r) => `${r.rank}. ${r.title}`).join("; ")}.` : "Nothing to recommend.";
      this.sessions.addTurn(s, { role: "assistant", content: explanation ? `${list}\n${explanation}` : list, items: recommendations.map((r) => r.item) });
      s.turnCount++;
      return {
        sessionId: s.id,
        user: s.user,
        turn: s.turnCount,
        recommendations,
        explanation,
        ...(stopReason !== undefined ? { stopReason } : {}),
        filters: structuredClone(s.filters),
        intent,
        intentSource,
        notes,
        failed: failed.map((x) => ({ item: x.item, title: x.title, error: x.error })),
        timings: { candidatesMs: t1 - t0, rerankMs: t2 - t1, explainMs: t3 - t2 },
      };
    } catch (err) {
      // a failed or cancelled turn leaves the session as it was
      s.filters = before;
      s.liked = beforeLiked;
      s.disliked = beforeDisliked;
      s.shown = beforeShown;
      s.focus = beforeFocus;
      throw err;
    }
  }
}

/**
 * Chat-REC with the engine: the tiny random-weight test model scores, generates and embeds, so
 * these tests assert behaviour that holds for any model (orders follow pYes, exclusions hold, the
 * dialogue is kept, text streams, seeds reproduce), never the quality of the words.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ChatRec, ChatRecError, DARK_GENRES, rerank, tallrecPrompt, titledHistory, HistoryIndex, parseMovieLensUsers, type ChatEngine, type TurnResult } from "../src/chatrec/index.js";
import { Engine, type ScoreInput, type ScoreOptions, type ScoreStats } from "../src/engine/engine.js";
import type { ChatMessage } from "../src/engine/generation.js";
import { promptText } from "../src/engine/prompt.js";
import { IdIndex, Interactions, ItemCatalog, ItemKnnRecommender, loadMovieLens100k, type MovieLens100k } from "../src/recsys/index.js";
import { hasRealMl100k, ml100kDir, syntheticMovieLens } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

let engine: Engine;
/** The generated MovieLens-format data (test/helpers/data.ts), its folder, and item-kNN fitted on it. */
let ml: MovieLens100k;
let mlDir: string;
let knn: ItemKnnRecommender;

/** A small hand-made catalog: family comedies, crime thrillers, romances. */
const ITEMS = [
  ["1", "Toy Story (1995)", "Animation|Children's|Comedy"],
  ["2", "Aladdin (1992)", "Animation|Children's|Comedy|Musical"],
  ["3", "Lion King, The (1994)", "Animation|Children's|Musical"],
  ["4", "Babe (1995)", "Children's|Comedy|Drama"],
  ["5", "Heat (1995)", "Action|Crime|Thriller"],
  ["6", "Casino (1995)", "Crime|Drama"],
  ["7", "Seven (Se7en) (1995)", "Crime|Thriller"],
  ["8", "Scream (1996)", "Horror|Thriller"],
  ["9", "Fargo (1996)", "Crime|Drama|Thriller"],
  ["10", "Groundhog Day (1993)", "Comedy|Romance"],
  ["11", "Sleepless in Seattle (1993)", "Comedy|Romance"],
  ["12", "Casablanca (1942)", "Drama|Romance|War"],
  ["13", "Mrs. Doubtfire (1993)", "Comedy"],
  ["14", "Jumanji (1995)", "Adventure|Children's|Fantasy"],
] as const;

function smallCatalog(): ItemCatalog {
  return new ItemCatalog(ITEMS.map(([id, title, g]) => ({ id, title, genres: g.split("|"), year: Number(/\((\d{4})\)/.exec(title)![1]) })));
}

/** Users 1–4 like family films, 5–8 crime; "ghost" is a known user with no ratings. */
function smallData(): Interactions {
  const family = ["1", "2", "3", "4", "13", "14", "10"];
  const crime = ["5", "6", "7", "8", "9", "12", "11"];
  const recs: Array<{ user: string; item: string; rating: number; timestamp: number }> = [];
  let t = 0;
  for (let u = 1; u <= 8; u++) {
    const [mine, other] = u <= 4 ? [family, crime] : [crime, family];
    // each user skips one of their group's items, so there is something to recommend
    mine.forEach((item, k) => k !== u % mine.length && recs.push({ user: String(u), item, rating: 5 - (k % 2), timestamp: t++ }));
    recs.push({ user: String(u), item: other[u % other.length], rating: 1, timestamp: t++ });
  }
  const users = new IdIndex("user", [...new Set(recs.map((r) => r.user)), "ghost"]);
  return Interactions.fromRecords(recs, {
    users,
    items: new IdIndex(
      "item",
      ITEMS.map(([id]) => id),
    ),
  });
}

/** The engine, recording the messages of every generate call. */
function spy(e: Engine): ChatEngine & { prompts: ChatMessage[][] } {
  const prompts: ChatMessage[][] = [];
  return {
    prompts,
    score: (inputs, o) => e.score(inputs, o),
    embed: (texts) => e.embed(texts),
    generate: (p, o) => {
      if (typeof p !== "string") prompts.push([...p]);
      return e.generate(p, o);
    },
  };
}

beforeAll(async () => {
  const m = await testModels();
  engine = await Engine.load({ model: m.tiny, adapters: [{ name: "movie", path: m.loraA }], gpu: "cpu" });
  mlDir = (await syntheticMovieLens()).dir;
  ml = await loadMovieLens100k(mlDir);
  knn = new ItemKnnRecommender().fit(ml.interactions);
});
afterAll(async () => engine?.close());

const FAST = { maxTokens: 12 } as const;

describe("TALLRec re-ranking", () => {
  it("orders the candidates by engine.score's pYes exactly, scoring TALLRec's prompts with the history evaluated once", async () => {
    const history = titledHistory(ml.items, new HistoryIndex(ml.interactions).get("42"));
    const candidates = knn.recommend("42", 15).map((r) => ({ item: r.item, title: ml.items.title(r.item), recScore: r.score }));
    // the re-ranking's own call, with what it cost (scoreWithStats)
    let stats!: ScoreStats;
    const scorer = {
      score: async (p: ScoreInput[], o?: ScoreOptions) => {
        const r = await engine.scoreWithStats(p, o);
        stats = r.stats;
        return r.results;
      },
    };
    const { ranked, failed } = await rerank(scorer, history, candidates);
    expect(failed).toEqual([]);
    const prompts = candidates.map((c) => tallrecPrompt(history, c.title));
    const direct = (await engine.score(prompts)).map((r) => {
      if (r.error !== undefined) throw new Error(r.error);
      return r;
    });
    const expected = candidates
      .map((c, i) => ({ item: c.item, pYes: direct[i].pYes, i }))
      .sort((a, b) => b.pYes - a.pYes || a.i - b.i)
      .map((x) => x.item);
    expect(ranked.map((r) => r.item)).toEqual(expected);
    for (const r of ranked) expect(r.pYes).toBe(direct[candidates.findIndex((c) => c.item === r.item)].pYes);
    expect(ranked.map((r) => r.item)).not.toEqual(candidates.map((c) => c.item)); // re-ranking changed the order
    // every prompt shares the history: it is decoded once, not 15 times
    const t0 = engine.tokenize(promptText(prompts[0]));
    const t1 = engine.tokenize(promptText(prompts[1]));
    let shared = 0;
    while (t0[shared] === t1[shared]) shared++;
    expect(shared).toBeGreaterThan(100);
    expect(stats.prompts).toBe(15);
    // (the streams KV layout also decodes padding after short prompts' scored token: not prompt tokens)
    expect(stats.decodedTokens - stats.paddingTokens).toBeLessThanOrEqual(stats.promptTokens - 14 * shared);
  });

  it("blends with the recommender's score when alpha > 0 (alpha 1: the recommender's order)", async () => {
    const history = titledHistory(ml.items, new HistoryIndex(ml.interactions).get("42"));
    const candidates = knn.recommend("42", 10).map((r) => ({ item: r.item, title: ml.items.title(r.item), recScore: r.score }));
    const { ranked } = await rerank(engine, history, candidates, { alpha: 1 });
    expect(ranked.map((r) => r.item)).toEqual(candidates.map((c) => c.item));
  });
});

/**
 * A five-turn conversation with user 42 of a MovieLens-format data set; `profile` is what the
 * explanation prompt must say about the user.
 */
async function conversation(ml: MovieLens100k, knn: ItemKnnRecommender, profiles: Map<string, string>, profile: string): Promise<void> {
  const e = spy(engine);
  const chat = new ChatRec({ engine: e, interactions: ml.interactions, catalog: ml.items, recommender: knn, explain: FAST, profiles });
  const seen = new HistoryIndex(ml.interactions).seen("42");
  const { sessionId } = chat.startSession(42);
  const turns: TurnResult[] = [];
  const say = async (m: string) => {
    const r = await chat.turn(sessionId, m);
    turns.push(r);
    expect(r.recommendations.length).toBe(5);
    for (const x of r.recommendations) expect(seen.has(x.item)).toBe(false);
    return r;
  };
  const byPYes = (r: TurnResult) => r.recommendations.every((x, i, a) => i === 0 || a[i - 1].pYes >= x.pYes);

  const r0 = await say("");
  expect(byPYes(r0)).toBe(true);
  const r1 = await say("not that one");
  expect(r1.recommendations.map((x) => x.item)).not.toContain(r0.recommendations[0].item);
  expect(r1.filters.excludeItems).toEqual([r0.recommendations[0].item]);
  expect(byPYes(r1)).toBe(true);
  const r2 = await say("not the second");
  const gone = [r0.recommendations[0].item, r1.recommendations[1].item];
  for (const g of gone) expect(r2.recommendations.map((x) => x.item)).not.toContain(g);
  const r3 = await say("something lighter");
  for (const x of r3.recommendations) {
    expect(x.genres.some((g) => DARK_GENRES.includes(g))).toBe(false);
    expect(gone).not.toContain(x.item);
  }
  const anchor = r3.recommendations[1].item;
  const r4 = await say("more like the second");
  expect(r4.filters.similarTo).toEqual([anchor]);
  for (const x of r4.recommendations) {
    expect(knn.similarity(anchor, x.item)).toBeGreaterThan(0);
    expect(x.item).not.toBe(anchor);
    expect(gone).not.toContain(x.item);
  }
  expect(turns.map((t) => t.turn)).toEqual([1, 2, 3, 4, 5]);

  // the dialogue is kept, and the last explanation prompt carries the earlier turns
  const s = chat.sessions.require(sessionId);
  expect(s.turns.map((t) => t.role)).toEqual(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? "user" : "assistant")));
  expect(s.turns.filter((t) => t.role === "user").map((t) => t.content)).toEqual(["", "not that one", "not the second", "something lighter", "more like the second"]);
  expect(s.turns[1].items).toEqual(r0.recommendations.map((x) => x.item));
  const last = e.prompts[e.prompts.length - 1];
  const text = last.map((m) => m.content).join("\n");
  for (const m of ["not that one", "not the second", "something lighter"]) expect(text).toContain(m);
  expect(last[last.length - 1].content).toContain("Request: more like the second");
  expect(last[last.length - 1].content).toContain(`The user: ${profile}.`);
  expect(last[last.length - 1].content).toContain(r4.recommendations[0].title);
  expect(chat.session(sessionId).turns).toBe(5);
}

describe("a conversation on MovieLens-format data", () => {
  it("keeps its history over several turns, honours exclusions, moods and 'more like the second'", async () => {
    const profiles = parseMovieLensUsers(readFileSync(join(mlDir, "u.user"), "latin1"));
    const [, age, gender, occupation] = readFileSync(join(mlDir, "u.user"), "latin1").split("\n")[41].split("|");
    const job = occupation === "none" || occupation === "other" ? "" : `, ${occupation}`;
    await conversation(ml, knn, profiles, `a ${Number(age)}-year-old ${gender === "M" ? "man" : "woman"}${job}`);
  });

  it.skipIf(!hasRealMl100k)("keeps its history over several turns, honours exclusions, moods and 'more like the second' on MovieLens-100K (real data)", async () => {
    const real = await loadMovieLens100k(ml100kDir);
    const profiles = parseMovieLensUsers(readFileSync(join(ml100kDir, "u.user"), "latin1"));
    await conversation(real, new ItemKnnRecommender().fit(real.interactions), profiles, "a 30-year-old man, administrator");
  });

  it("streams the explanation before the answer is complete, after the recommendations are known", async () => {
    const chat = new ChatRec({ engine, interactions: ml.interactions, catalog: ml.items, recommender: knn, explain: { maxTokens: 24 } });
    const { sessionId } = chat.startSession("7");
    const events: Array<{ kind: "recs" | "text"; t: number; piece?: string }> = [];
    let done = 0;
    const r = await chat
      .turn(sessionId, "action movies", {
        onRecommendations: () => events.push({ kind: "recs", t: performance.now() }),
        onText: (piece) => events.push({ kind: "text", t: performance.now(), piece }),
      })
      .then((x) => ((done = performance.now()), x));
    const texts = events.filter((x) => x.kind === "text");
    expect(texts.length).toBeGreaterThan(3);
    expect(events[0].kind).toBe("recs");
    expect(texts[0].t).toBeLessThan(done);
    expect(
      texts
        .map((x) => x.piece)
        .join("")
        .trim(),
    ).toBe(r.explanation);
    expect(r.recommendations.every((x) => x.genres.includes("Action"))).toBe(true);
  });

  it("gives the same answer for the same seed", async () => {
    const run = async (seed: number) => {
      const chat = new ChatRec({ engine, interactions: ml.interactions, catalog: ml.items, recommender: knn, explain: { maxTokens: 16, temperature: 0.9, seed } });
      const { sessionId } = chat.startSession("100");
      const out = [];
      for (const m of ["", "not the first"]) out.push(await chat.turn(sessionId, m));
      return out.map((r) => ({ items: r.recommendations.map((x) => [x.item, x.pYes]), text: r.explanation }));
    };
    const a = await run(5);
    const b = await run(5);
    const c = await run(6);
    expect(b).toEqual(a);
    expect(c.map((x) => x.items)).toEqual(a.map((x) => x.items));
    expect(c.map((x) => x.text)).not.toEqual(a.map((x) => x.text));
  });
});

describe("bad input gets a clear answer", () => {
  it("unknown users, sessions and items, empty and out-of-range references", async () => {
    const chat = new ChatRec({ engine, interactions: ml.interactions, catalog: ml.items, recommender: knn, explain: false, candidates: 10 });
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e as ChatRecError;
      }
      throw new Error("did not throw");
    };
    const u = err(() => chat.startSession("99999"));
    expect(u).toBeInstanceOf(ChatRecError);
    expect(u.code).toBe("unknown_user");
    expect(u.message).toMatch(/unknown user "99999"/);
    expect(err(() => chat.startSession("")).code).toBe("invalid_input");
    await expect(chat.turn("no-such-session", "hi")).rejects.toMatchObject({ code: "unknown_session" });
    const { sessionId } = chat.startSession("42");
    await expect(chat.turn(sessionId, 42 as unknown as string)).rejects.toMatchObject({ code: "invalid_input" });
    await expect(chat.turn(sessionId, "x".repeat(5000))).rejects.toMatchObject({ code: "invalid_input" });

    const first = await chat.turn(sessionId, "not that one");
    expect(first.notes.join(" ")).toMatch(/refers to nothing yet/);
    expect(first.recommendations.length).toBe(5);
    const unknown = await chat.turn(sessionId, "not Foobar Quux");
    expect(unknown.notes).toContain('I could not find a movie called "Foobar Quux" in the catalog');
    expect(unknown.recommendations.length).toBe(5);
    const far = await chat.turn(sessionId, "not the ninth");
    expect(far.notes).toContain("there is no ninth recommendation (I showed 5)");
    expect(far.filters.excludeItems).toEqual([]);
    const none = await chat.turn(sessionId, "westerns from 1920");
    expect(none.notes).toContain("no movie matched everything you asked for, so I ignored the years");
    expect(none.recommendations.every((x) => x.genres.includes("Western"))).toBe(true);
    expect(chat.endSession(sessionId)).toBe(true);
    await expect(chat.turn(sessionId, "hi")).rejects.toMatchObject({ code: "unknown_session" });
  });

  it("a user with no ratings gets popular movies and a note; a user the recommender does not know too", async () => {
    const data = smallData();
    const catalog = smallCatalog();
    const rec = new ItemKnnRecommender().fit(data);
    const chat = new ChatRec({ engine, interactions: data, catalog, recommender: rec, explain: FAST, coldStart: false });
    const ghost = chat.startSession("ghost");
    expect(ghost.liked).toEqual([]);
    expect(ghost.interactions).toBe(0);
    const r = await chat.turn(ghost.sessionId, "");
    expect(r.recommendations.length).toBe(5);
    expect(r.notes.join(" ")).toMatch(/no ratings/);
    // a recommender fitted without user 8
    const without8 = data.subset(Array.from({ length: data.length }, (_, i) => i).filter((i) => data.users.id(data.userIdx[i]) !== "8"));
    const partial = new ItemKnnRecommender().fit(Interactions.fromRecords(Array.from({ length: without8.length }, (_, i) => without8.record(i))));
    const chat2 = new ChatRec({ engine, interactions: data, catalog, recommender: partial, explain: false, coldStart: false });
    const s8 = chat2.startSession("8");
    const r8 = await chat2.turn(s8.sessionId, "");
    expect(r8.notes.join(" ")).toMatch(/does not know user 8, so these are popular movies/);
    expect(r8.recommendations.length).toBeGreaterThan(0);
    for (const x of r8.recommendations) expect(new HistoryIndex(data).seen("8").has(x.item)).toBe(false);
  });
});

describe("cold start", () => {
  it("recommends a new movie nobody has rated through its text, and explains it as new", async () => {
    const data = smallData();
    const e = spy(engine);
    const chat = new ChatRec({ engine: e, interactions: data, catalog: smallCatalog(), recommender: new ItemKnnRecommender().fit(data), explain: FAST, coldStart: { candidates: 1 }, count: 50 });
    // user 5 likes crime; the new film's text equals one they liked, so its embedding is the nearest
    const h = chat.session(chat.startSession("5").sessionId);
    const likedInfo = chat.catalog.findByTitle(h.liked[h.liked.length - 1])[0];
    chat.addItems([
      { id: "new-1", title: "Zzyzx Road Musical (1997)", genres: ["Musical", "Children's"], year: 1997 },
      { id: "new-2", title: likedInfo.title, genres: [...likedInfo.genres], year: likedInfo.year },
    ]);
    expect(() => chat.addItems([{ id: "new-1", title: "Again", genres: [] }])).toThrow(/already in the catalog/);
    const { sessionId } = chat.startSession("5");
    const r = await chat.turn(sessionId, "");
    const cold = r.recommendations.filter((x) => x.coldStart);
    expect(cold.map((x) => x.item)).toEqual(["new-2"]);
    expect(cold[0].recScore).toBeNull();
    expect(e.prompts[e.prompts.length - 1].at(-1)!.content).toMatch(/new, not rated by anyone yet/);
    // "more like" a cold item: its neighbours by text (no recommender score), never itself
    const more = await chat.turn(sessionId, `more like #${cold[0].rank}`);
    expect(more.filters.similarTo).toEqual(["new-2"]);
    expect(more.recommendations.length).toBeGreaterThan(0);
    for (const x of more.recommendations) {
      expect(x.item).not.toBe("new-2");
      expect(x.recScore).toBeNull();
    }
  });
});

describe("the model reading requests", () => {
  it("falls back to the parser when the model's answer is not valid JSON, and merges it when it is", async () => {
    const base = { interactions: ml.interactions, catalog: ml.items, recommender: knn, explain: false as const, modelIntent: true };
    const withTiny = new ChatRec({ ...base, engine });
    const a = await withTiny.turn(withTiny.startSession("42").sessionId, "action movies from the 90s");
    expect(a.intentSource).toBe("parser");
    expect(a.filters).toMatchObject({ genres: ["Action"], yearMin: 1990, yearMax: 1999 });
    const fake: ChatEngine = {
      score: (i, o) => engine.score(i, o),
      embed: (t) => engine.embed(t),
      generate: async () => ({ text: '{"genres": ["Comedy"], "exclude_genres": ["Horror"], "year_min": null, "year_max": null, "mood": null}', tokens: 30, promptTokens: 50, stopReason: "eos" }),
    };
    const withFake = new ChatRec({ ...base, engine: fake });
    const b = await withFake.turn(withFake.startSession("42").sessionId, "action movies from the 90s");
    expect(b.intentSource).toBe("parser+model");
    expect(b.filters).toMatchObject({ genres: ["Action", "Comedy"], excludeGenres: ["Horror"], yearMin: 1990, yearMax: 1999 });
    for (const x of b.recommendations) expect(x.genres.includes("Horror")).toBe(false);
  });
});

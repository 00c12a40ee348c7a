/**
 * POST /v1/chat (and GET / DELETE /v1/chat/:sessionId) as a Fastify plugin, on a small hand-made
 * catalog with the tiny test model.
 */
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ChatRec, ChatRecError, SessionStore, type ChatService } from "../src/chatrec/index.js";
import { Engine } from "../src/engine/engine.js";
import { chatRoutes } from "../src/server/routes/chat.js";
import { IdIndex, Interactions, ItemCatalog, ItemKnnRecommender } from "../src/recsys/index.js";
import { testModels } from "./helpers/models.js";

const TITLES = [
  "Toy Story (1995)|Animation|Children's|Comedy",
  "Aladdin (1992)|Animation|Children's|Comedy|Musical",
  "Babe (1995)|Children's|Comedy|Drama",
  "Heat (1995)|Action|Crime|Thriller",
  "Casino (1995)|Crime|Drama",
  "Seven (Se7en) (1995)|Crime|Thriller",
  "Fargo (1996)|Crime|Drama|Thriller",
  "Groundhog Day (1993)|Comedy|Romance",
  "Sleepless in Seattle (1993)|Comedy|Romance",
  "Mrs. Doubtfire (1993)|Comedy",
  "Jumanji (1995)|Adventure|Children's|Fantasy",
  "Scream (1996)|Horror|Thriller",
];

let engine: Engine;
let data: Interactions;
let catalog: ItemCatalog;
let rec: ItemKnnRecommender;
let now = 0;
let store: SessionStore;
let app: FastifyInstance;

async function makeApp(service: ChatService): Promise<FastifyInstance> {
  // the server's validation settings
  const a = Fastify({ ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false, allowUnionTypes: true } } });
  await a.register(chatRoutes, { service });
  await a.ready();
  return a;
}

beforeAll(async () => {
  const m = await testModels();
  engine = await Engine.load({ model: m.tiny, adapters: [{ name: "movie", path: m.loraA }], gpu: "cpu" });
  catalog = new ItemCatalog(
    TITLES.map((t, i) => {
      const [title, ...genres] = t.split("|");
      return { id: String(i + 1), title, genres, year: Number(/\((\d{4})\)/.exec(title)![1]) };
    }),
  );
  const recs = [];
  let ts = 0;
  for (let u = 1; u <= 6; u++) {
    for (let i = 1; i <= 12; i++) if ((i + u) % 3 !== 0) recs.push({ user: String(u), item: String(i), rating: 1 + ((i * u) % 5), timestamp: ts++ });
  }
  data = Interactions.fromRecords(recs, { users: new IdIndex("user", ["1", "2", "3", "4", "5", "6"]), items: new IdIndex("item", catalog.ids()) });
  rec = new ItemKnnRecommender().fit(data);
  store = new SessionStore({ maxSessions: 3, ttlMs: 60_000, now: () => now });
  app = await makeApp(new ChatRec({ engine, interactions: data, catalog, recommender: rec, explain: { maxTokens: 10 }, count: 3, sessions: store, coldStart: false }));
});
afterAll(async () => {
  await app?.close();
  await engine?.close();
});

const post = (body: unknown) => app.inject({ method: "POST", url: "/v1/chat", payload: body as object });

describe("POST /v1/chat", () => {
  it("starts a conversation for a user and continues it by session id, honouring 'not that one'", async () => {
    const first = await post({ user: 2, message: "" });
    expect(first.statusCode).toBe(200);
    const a = first.json();
    expect(a).toMatchObject({ user: "2", turn: 1 });
    expect(typeof a.sessionId).toBe("string");
    expect(a.recommendations).toHaveLength(3);
    expect(typeof a.explanation).toBe("string");
    expect(Object.keys(a.recommendations[0]).sort()).toEqual(["coldStart", "genres", "item", "logitNo", "logitYes", "pYes", "rank", "recScore", "score", "title", "year"].sort());
    const second = await post({ sessionId: a.sessionId, message: "not that one" });
    expect(second.statusCode).toBe(200);
    const b = second.json();
    expect(b.turn).toBe(2);
    expect(b.recommendations.map((x: { item: string }) => x.item)).not.toContain(a.recommendations[0].item);
    expect(b.filters.excludeItems).toEqual([a.recommendations[0].item]);
    const info = await app.inject({ method: "GET", url: `/v1/chat/${a.sessionId}` });
    expect(info.statusCode).toBe(200);
    expect(info.json()).toMatchObject({ sessionId: a.sessionId, user: "2", turns: 2, filters: { excludeItems: [a.recommendations[0].item] } });
  });

  it("streams NDJSON: start, the ranked list, the explanation's pieces, then the result", async () => {
    const r = await post({ user: "3", message: "something lighter", stream: true });
    expect(r.statusCode).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^application\/x-ndjson/);
    const events = r.body
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(events[0]).toMatchObject({ type: "start", user: "3" });
    const texts = events.filter((e) => e.type === "text");
    expect(texts.length).toBeGreaterThan(1);
    const result = events[events.length - 1];
    expect(result.type).toBe("result");
    expect(result.sessionId).toBe(events[0].sessionId);
    expect(
      texts
        .map((e) => e.text)
        .join("")
        .trim(),
    ).toBe(result.explanation);
    // the ranked list comes once, before the first piece of the explanation, and is the result's
    const ranked = events.findIndex((e) => e.type === "recommendations");
    expect(events.filter((e) => e.type === "recommendations")).toHaveLength(1);
    expect(ranked).toBeGreaterThan(0);
    expect(ranked).toBeLessThan(events.findIndex((e) => e.type === "text"));
    expect(events[ranked].recommendations).toEqual(result.recommendations);
    expect(result.filters.mood).toBe("lighter");
    expect(result.intent).toBeUndefined();
  });

  it("answers bad requests with 400 and unknown users and sessions with 404, in the server's error shape", async () => {
    const cases: Array<[unknown, number, string | RegExp]> = [
      [{ message: "hi" }, 400, "invalid_input"],
      [{ user: "99999", message: "" }, 404, "unknown_user"],
      [{ sessionId: "no-such-session", message: "" }, 404, "unknown_session"],
      [{ user: 1 }, 400, /FST_ERR_VALIDATION/],
      [{ user: 1, message: "", bogus: true }, 400, /FST_ERR_VALIDATION/],
      [{ user: 1, message: 5 }, 400, /FST_ERR_VALIDATION/],
      [{ user: 1, message: "x".repeat(2001) }, 400, /FST_ERR_VALIDATION/],
      [{ user: 1, message: "", count: 0 }, 400, /FST_ERR_VALIDATION/],
    ];
    for (const [body, status, code] of cases) {
      const r = await post(body);
      expect(r.statusCode, JSON.stringify(body)).toBe(status);
      const j = r.json();
      expect(j.code).toMatch(code);
      expect(j.statusCode).toBe(status);
      expect(typeof j.message).toBe("string");
    }
    const mine = (await post({ user: 4, message: "", explain: false })).json();
    expect(mine.explanation).toBe("");
    const other = await post({ sessionId: mine.sessionId, user: 5, message: "" });
    expect(other.statusCode).toBe(400);
    expect(other.json().message).toMatch(/belongs to another user/);
  });

  it("ends sessions with DELETE, keeps at most maxSessions, and expires idle ones", async () => {
    const s = (await post({ user: 1, message: "", explain: false, count: 1 })).json().sessionId as string;
    expect((await app.inject({ method: "DELETE", url: `/v1/chat/${s}` })).statusCode).toBe(204);
    expect((await app.inject({ method: "GET", url: `/v1/chat/${s}` })).json().code).toBe("unknown_session");
    expect((await app.inject({ method: "DELETE", url: `/v1/chat/${s}` })).statusCode).toBe(404);

    const ids: string[] = [];
    for (const u of [1, 2, 3, 4]) ids.push((await post({ user: u, message: "", explain: false, count: 1 })).json().sessionId);
    expect(store.size).toBe(3);
    expect((await post({ sessionId: ids[0], message: "" })).statusCode).toBe(404); // evicted: least recently used
    expect((await post({ sessionId: ids[3], message: "", explain: false })).statusCode).toBe(200);
    now += 60_001;
    const expired = await post({ sessionId: ids[3], message: "" });
    expect(expired.statusCode).toBe(404);
    expect(expired.json().message).toMatch(/expired/);
    expect(store.size).toBe(0);
  });

  it("starts a session without a message with POST /v1/chat/sessions: 201 and the user's history, 404 unknown_user", async () => {
    const r = await app.inject({ method: "POST", url: "/v1/chat/sessions", payload: { user: 2 } });
    expect(r.statusCode).toBe(201);
    const s = r.json() as { sessionId: string; user: string; liked: string[]; disliked: string[] };
    expect(s.user).toBe("2");
    expect(s.liked.length + s.disliked.length).toBeGreaterThan(0);
    expect((await app.inject({ method: "GET", url: `/v1/chat/${s.sessionId}` })).json().user).toBe("2");
    const unknown = await app.inject({ method: "POST", url: "/v1/chat/sessions", payload: { user: "99999" } });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ statusCode: 404, error: "Not Found", code: "unknown_user" });
  });
});

describe("chat route errors", () => {
  // a service whose turns fail as given, to see what the route makes of each failure
  const failing = (err: Error): ChatService => ({
    startSession: (user) => ({ sessionId: "s1", user: String(user), profile: "", liked: [], disliked: [], interactions: 0, turns: 0, filters: {} }) as unknown as ReturnType<ChatService["startSession"]>,
    session: () => {
      throw new ChatRecError("unknown_session", "no such session");
    },
    turn: async () => {
      throw err;
    },
    endSession: () => false,
  });
  const ndjson = (body: string) =>
    body
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  it("answers each Chat-REC code with its status from the vocabulary, and the stream's error event carries the same code", async () => {
    for (const [code, status] of [
      ["busy", 409],
      ["unavailable", 503],
      ["invalid_input", 400],
      ["unknown_item", 404],
    ] as const) {
      const a = await makeApp(failing(new ChatRecError(code, `failed: ${code}`)));
      try {
        const r = await a.inject({ method: "POST", url: "/v1/chat", payload: { user: 1, message: "" } });
        expect(r.statusCode, code).toBe(status);
        expect(r.json()).toEqual({ statusCode: status, error: expect.any(String), code, message: `failed: ${code}` });
        const streamed = await a.inject({ method: "POST", url: "/v1/chat", payload: { user: 1, message: "", stream: true } });
        expect(streamed.statusCode).toBe(200);
        expect(ndjson(streamed.body).at(-1)).toEqual({ type: "error", code, message: `failed: ${code}` });
      } finally {
        await a.close();
      }
    }
  });

  it("does not show the message of an unexpected failure in the stream: code internal", async () => {
    const a = await makeApp(failing(new Error("secret detail")));
    try {
      const streamed = await a.inject({ method: "POST", url: "/v1/chat", payload: { user: 1, message: "", stream: true } });
      const last = ndjson(streamed.body).at(-1)!;
      expect(last.code).toBe("internal");
      expect(last.message).toMatch(/^internal error \(request /);
      expect(String(last.message)).not.toMatch(/secret/);
      expect((await a.inject({ method: "POST", url: "/v1/chat", payload: { user: 1, message: "" } })).statusCode).toBe(500);
    } finally {
      await a.close();
    }
  });
});

/**
 * Chat-REC behind `tallrec serve`: the server registers POST /v1/chat when given a chat service,
 * which answers 503 while the model loads and forwards once Chat-REC is ready.
 */
import { afterAll, beforeAll, expect, it } from "vitest";

import { createChatRec } from "../src/chatrec/setup.js";
import { PendingChat } from "../src/cli/commands/serve.js";
import { Engine } from "../src/engine/engine.js";
import { buildServer } from "../src/server/index.js";
import { syntheticMovieLens } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

let engine: Engine;
beforeAll(async () => {
  const m = await testModels();
  engine = await Engine.load({ model: m.tiny, adapters: [{ name: "movie", path: m.loraA }], gpu: "cpu" });
});
afterAll(async () => engine?.close());

it("serves /v1/chat: 503 until Chat-REC is ready, then sessions with follow-ups", async () => {
  const chat = new PendingChat();
  const app = await buildServer({ engine, chat, closeEngine: false });
  try {
    const early = await app.inject({ method: "POST", url: "/v1/chat", payload: { user: 42, message: "a comedy" } });
    expect(early.statusCode).toBe(503);
    expect(early.json().message).toMatch(/starting/);
    expect(early.json().code).toBe("unavailable");
    chat.ready(await createChatRec({ engine, data: { ml100k: (await syntheticMovieLens()).dir }, recommender: "knn" }));
    const first = await app.inject({ method: "POST", url: "/v1/chat", payload: { user: 42, message: "a comedy", explain: false } });
    expect(first.statusCode).toBe(200);
    const body = first.json() as { sessionId: string; recommendations: Array<{ item: string; genres: string[] }> };
    expect(body.recommendations.length).toBeGreaterThan(0);
    expect(body.recommendations.every((r) => r.genres.includes("Comedy"))).toBe(true);
    const top = body.recommendations[0].item;
    const next = await app.inject({ method: "POST", url: "/v1/chat", payload: { sessionId: body.sessionId, message: "not that one", explain: false } });
    expect(next.statusCode).toBe(200);
    expect(next.json().recommendations.map((r: { item: string }) => r.item)).not.toContain(top);
    const unknown = await app.inject({ method: "POST", url: "/v1/chat", payload: { user: 99999, message: "hi" } });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().code).toBe("unknown_user");
    // issue 11, D14: a session id past the router's parameter limit answers in the server's error shape
    for (const method of ["GET", "DELETE"] as const) {
      const long = await app.inject({ method, url: `/v1/chat/${"s".repeat(101)}` });
      expect(long.statusCode).toBeGreaterThanOrEqual(400);
      expect(long.statusCode).toBeLessThan(500);
      const j = long.json();
      expect(j.statusCode, method).toBe(long.statusCode);
      expect(typeof j.error).toBe("string");
      expect(typeof j.code).toBe("string");
      expect(typeof j.message).toBe("string");
    }
  } finally {
    await app.close();
  }
});

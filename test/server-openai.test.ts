/**
 * The OpenAI-compatible routes of `tallrec serve`, driven by the official `openai` npm client
 * against a real listening server (tiny test model, generated MovieLens-format data): models,
 * chat completions (plain and streamed, options honoured, the chatrec model with follow-ups),
 * embeddings (float and base64), and errors in OpenAI's shape.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createChatRec } from "../src/chatrec/setup.js";
import { PendingChat } from "../src/cli/commands/serve.js";
import { Engine } from "../src/engine/engine.js";
import { buildServer } from "../src/server/index.js";
import type { FastifyInstance } from "fastify";
import { syntheticMovieLens } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

const KEY = "sk-test-16";
let engine: Engine;
let app: FastifyInstance;
let client: OpenAI;
let base: string;

beforeAll(async () => {
  const m = await testModels();
  engine = await Engine.load({ model: m.tiny, adapters: [{ name: "movie", path: m.loraA }], gpu: "cpu" });
  const chat = new PendingChat();
  app = await buildServer({ engine, chat, closeEngine: false, apiKey: KEY, modelName: "tiny" });
  chat.ready(await createChatRec({ engine, data: { ml100k: (await syntheticMovieLens()).dir }, recommender: "knn", explain: { maxTokens: 8, temperature: 0 }, coldStart: false }));
  await app.listen({ host: "127.0.0.1", port: 0 });
  const addr = app.server.address() as { port: number };
  base = `http://127.0.0.1:${addr.port}/v1`;
  client = new OpenAI({ apiKey: KEY, baseURL: base, maxRetries: 0 });
});
afterAll(async () => {
  await app?.close();
  await engine?.close();
});

describe("OpenAI-compatible routes with the openai client", () => {
  it("models.list: the base model, the adapters and chatrec", async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(["tiny", "movie", "chatrec"]);
  });

  it("chat.completions.create: the engine's generation, honouring max_tokens, temperature 0, seed and stop", async () => {
    const messages = [{ role: "user" as const, content: "Say something about movies." }];
    const r = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 6, temperature: 0, seed: 1 });
    expect(r.object).toBe("chat.completion");
    expect(r.model).toBe("tiny");
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0].message.role).toBe("assistant");
    const direct = await engine.generate(messages, { maxTokens: 6, temperature: 0, seed: 1 });
    expect(r.choices[0].message.content).toBe(direct.text);
    expect(r.usage).toMatchObject({ prompt_tokens: direct.promptTokens, completion_tokens: direct.tokens, total_tokens: direct.promptTokens + direct.tokens });
    expect(r.choices[0].finish_reason).toBe(direct.stopReason === "length" ? "length" : "stop");
    // an adapter as the model, and top_p / stop passed through
    const a = await client.chat.completions.create({ model: "movie", messages, max_tokens: 6, temperature: 0.8, top_p: 0.9, seed: 3, stop: ["zzzz"] });
    const da = await engine.generate(messages, { adapter: "movie", maxTokens: 6, temperature: 0.8, topP: 0.9, seed: 3, stop: ["zzzz"] });
    expect(a.choices[0].message.content).toBe(da.text);
  });

  it("streams as server-sent events: the pieces add up to the non-streamed answer, usage at the end", async () => {
    const messages = [
      { role: "system" as const, content: "You are terse." },
      { role: "user" as const, content: "Name a film." },
    ];
    const stream = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish: string | null = null;
    let usage: unknown = null;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      expect(c.object).toBe("chat.completion.chunk");
      if (c.choices[0]) {
        text += c.choices[0].delta.content ?? "";
        finish = c.choices[0].finish_reason ?? finish;
      }
      if (c.usage) usage = c.usage;
    }
    const direct = await engine.generate(messages, { maxTokens: 8, temperature: 0 });
    expect(text).toBe(direct.text);
    expect(chunks).toBeGreaterThan(2);
    expect(finish).toBe(direct.stopReason === "length" ? "length" : "stop");
    expect(usage).toMatchObject({ completion_tokens: direct.tokens });
  });

  it("the chatrec model: recommendations for the user, follow-ups refer to the last answer (also streamed)", async () => {
    const first = await client.chat.completions.create({ model: "chatrec", user: "42", messages: [{ role: "user", content: "a comedy" }] });
    const text = first.choices[0].message.content!;
    const recs = (first as unknown as { chatrec: { recommendations: Array<{ rank: number; title: string; item: string; pYes: number }> } }).chatrec.recommendations;
    expect(recs.length).toBeGreaterThan(0);
    expect(text.startsWith(`1. ${recs[0].title} (pYes ${recs[0].pYes.toFixed(3)}`)).toBe(true);
    // the client sends the conversation back: "not that one" drops the first recommendation
    const history = [
      { role: "user" as const, content: "a comedy" },
      { role: "assistant" as const, content: text },
      { role: "user" as const, content: "not that one" },
    ];
    const stream = await client.chat.completions.create({ model: "chatrec", user: "42", messages: history, stream: true });
    let streamed = "";
    let result: { recommendations: Array<{ item: string; title: string }>; filters: { excludeItems: string[] }; turn: number } | undefined;
    for await (const c of stream) {
      streamed += c.choices[0]?.delta.content ?? "";
      const extra = (c as unknown as { chatrec?: typeof result }).chatrec;
      if (extra) result = extra;
    }
    expect(result).toBeDefined();
    expect(result!.turn).toBe(2);
    expect(result!.filters.excludeItems).toEqual([recs[0].item]);
    expect(result!.recommendations.map((r) => r.item)).not.toContain(recs[0].item);
    expect(streamed.startsWith(`1. ${result!.recommendations[0].title}`)).toBe(true);
    // a conversation the server never saw (another client): replayed, same filters
    const replay = await client.chat.completions.create({
      model: "chatrec",
      user: "42",
      messages: [
        { role: "user", content: "a comedy" },
        { role: "assistant", content: "(elsewhere)" },
        { role: "user", content: "not that one" },
      ],
    });
    expect((replay as unknown as { chatrec: { turn: number; filters: { excludeItems: string[] } } }).chatrec).toMatchObject({ turn: 2, filters: { excludeItems: [recs[0].item] } });
  });

  it("embeddings.create: engine.embed's vectors, as floats and as base64 (the client's default)", async () => {
    const direct = await engine.embed(["Heat (1995)", "Toy Story (1995)"]);
    const viaDefault = await client.embeddings.create({ model: "tiny", input: ["Heat (1995)", "Toy Story (1995)"] });
    const viaFloat = await client.embeddings.create({ model: "tiny", input: "Heat (1995)", encoding_format: "float" });
    expect(viaDefault.data).toHaveLength(2);
    for (const [i, d] of viaDefault.data.entries()) {
      expect(d.index).toBe(i);
      expect(d.embedding).toHaveLength(direct[i].length);
      d.embedding.forEach((x, k) => expect(x).toBe(direct[i][k]));
    }
    viaFloat.data[0].embedding.forEach((x, k) => expect(x).toBeCloseTo(direct[0][k], 6));
    expect(viaFloat.usage.prompt_tokens).toBe(engine.tokenize("Heat (1995)").length);
  });

  it("errors come in OpenAI's shape, and the client raises its error classes", async () => {
    await expect(client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "hi" }] })).rejects.toMatchObject({
      status: 404,
      error: { type: "invalid_request_error", param: "model", code: "model_not_found" },
    });
    await expect(client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "hi" }], temperature: 7 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(client.chat.completions.create({ model: "chatrec", messages: [{ role: "user", content: "hi" }] })).rejects.toMatchObject({ status: 400, error: { param: "user" } });
    await expect(client.chat.completions.create({ model: "chatrec", user: "99999", messages: [{ role: "user", content: "hi" }] })).rejects.toMatchObject({ status: 404, error: { code: "chat_unknown_user" } });
    const wrongKey = new OpenAI({ apiKey: "wrong", baseURL: base, maxRetries: 0 });
    await expect(wrongKey.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const raw = await fetch(`${base}/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" }, body: "{not json" });
    expect(raw.status).toBe(400);
    const body = (await raw.json()) as { error: { message: string; type: string } };
    expect(Object.keys(body)).toEqual(["error"]);
    expect(body.error).toMatchObject({ type: "invalid_request_error", message: "the body is not valid JSON" });
    // the existing routes keep tallrec's own error shape
    const score = await fetch(`${base}/score`, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" }, body: "{}" });
    expect(await score.json()).toMatchObject({ statusCode: 400, code: expect.any(String) });
  });
});

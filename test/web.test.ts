/// <reference lib="dom" />
/**
 * The web page of `tallrec serve` in a real browser: headless Chromium (the system's, through
 * puppeteer-core: nothing is downloaded) against a listening server with the tiny test model and
 * Chat-REC on the generated MovieLens-format data, behind an API key. The page asks for the key
 * once, shows a user's history, runs chat turns (streamed) and a ranking with both scoring rules;
 * what it shows is checked against the API's answers, server errors are shown as they are, and a
 * screenshot of each view goes to the test's temporary folder (and to $TALLREC_SCREENSHOTS when
 * set, which is how docs/web-*.png are made).
 *
 * Without Chromium the tests are skipped with the reason printed, except under CI=true, where
 * they fail: CI must run them (.ci/run installs the Debian package `chromium`).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { FastifyInstance } from "fastify";
import puppeteer, { type Browser, type HTTPResponse, type Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createChatRec } from "../src/chatrec/setup.js";
import { Engine } from "../src/engine/engine.js";
import { buildServer } from "../src/server/index.js";
import { syntheticMovieLens } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

/** The system Chromium: $CHROMIUM_PATH, else chromium / chromium-browser / google-chrome on PATH. */
function findChromium(): string | null {
  const env = process.env.CHROMIUM_PATH;
  if (env) return existsSync(env) ? env : null;
  for (const name of ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"]) {
    try {
      const p = execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim();
      if (p) return p;
    } catch {
      /* not on PATH */
    }
  }
  return null;
}

const chromium = findChromium();
const inCI = process.env.CI === "true" || process.env.CI === "1";
if (!chromium && !inCI) console.warn("test/web.test.ts: skipped: no Chromium found (install the Debian package `chromium`, or set CHROMIUM_PATH); CI=true makes this a failure");

it.runIf(!chromium && inCI)("CI needs Chromium for the browser tests", () => {
  throw new Error("CI=true but no Chromium was found (.ci/run installs the Debian package `chromium`; or set CHROMIUM_PATH)");
});

const KEY = "web-test-key";
let engine: Engine;
let app: FastifyInstance;
let base: string;
let browser: Browser;
let page: Page;
let shots: string;

const api = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${KEY}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

async function screenshot(name: string): Promise<void> {
  await page.screenshot({ path: join(shots, `${name}.png`) as `${string}.png`, fullPage: false });
  const out = process.env.TALLREC_SCREENSHOTS;
  if (out) {
    mkdirSync(out, { recursive: true });
    await page.screenshot({ path: join(out, `${name}.png`) as `${string}.png`, fullPage: false });
  }
}

/** The NDJSON events of the next streamed /v1/chat answer the page receives. */
function nextChatAnswer(): Promise<Array<Record<string, unknown>>> {
  return new Promise((resolve, reject) => {
    const onResponse = (res: HTTPResponse) => {
      if (!res.url().endsWith("/v1/chat") || res.request().method() !== "POST") return;
      page.off("response", onResponse);
      res.text().then(
        (t) =>
          resolve(
            t
              .trim()
              .split("\n")
              .map((l) => JSON.parse(l) as Record<string, unknown>),
          ),
        reject,
      );
    };
    page.on("response", onResponse);
  });
}

interface ShownItem {
  item: string;
  title: string;
  pYes: number;
  pYesText: string;
  recText: string;
  barWidth: string;
}

/** The ranked list of the last chat turn, as the page shows it. */
async function shownRecommendations(): Promise<ShownItem[]> {
  return page.$$eval("#conversation .turn:last-child ol.recs li", (lis) =>
    lis.map((li) => ({
      item: (li as HTMLElement).dataset.item!,
      title: li.querySelector(".title")!.childNodes[0].textContent!,
      pYes: Number((li as HTMLElement).dataset.pyes),
      pYesText: li.querySelector(".pyes")!.textContent!,
      recText: li.querySelector(".rec")!.textContent!,
      barWidth: (li.querySelector(".fill") as HTMLElement).style.width,
    })),
  );
}

describe.skipIf(!chromium)("the web page in headless Chromium", () => {
  beforeAll(async () => {
    shots = mkdtempSync(join(tmpdir(), "tallrec-web-"));
    const m = await testModels();
    engine = await Engine.load({ model: m.tiny, adapters: [{ name: "movie", path: m.loraA }], gpu: "cpu" });
    const chat = await createChatRec({ engine, data: { ml100k: (await syntheticMovieLens()).dir }, recommender: "knn", explain: { maxTokens: 12, temperature: 0 }, coldStart: false });
    app = await buildServer({ engine, chat, closeEngine: false, apiKey: KEY, modelName: "tiny" });
    await app.listen({ host: "127.0.0.1", port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    browser = await puppeteer.launch({ executablePath: chromium!, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"] });
    page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 760 });
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await engine?.close();
    if (shots) rmSync(shots, { recursive: true, force: true });
  });

  it("serves the page without the key, and the API only with it", async () => {
    const res = await fetch(`${base}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/html/);
    expect((await fetch(`${base}/app.js`)).status).toBe(200);
    expect((await fetch(`${base}/v1/adapters`)).status).toBe(401);
    // unknown paths keep the server's 404 (no wildcard route)
    const missing = await fetch(`${base}/nope.js`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: "not_found" });
  });

  it("asks for the API key once, shows a user's history, streams chat turns and follow-ups as the API answers them", async () => {
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${base}/`, { waitUntil: "load" });
    // the first API call (the adapters) gets a 401: the page asks for the key
    await page.waitForSelector("#key-form:not([hidden])");
    await page.type("#api-key", KEY);
    await page.click("#key-form button[type=submit]");
    await page.waitForFunction(() => document.body.dataset.ready === "true");
    expect(await page.evaluate(() => sessionStorage.getItem("tallrec-api-key"))).toBe(KEY);

    // a user: the history shown is the session's (the API's answer for the same user)
    await page.type("#user", "42");
    const answer = nextChatAnswer();
    await page.click("#user-form button[type=submit]");
    await page.waitForSelector("#history:not([hidden])");
    const expected = await api("POST", "/v1/chat/sessions", { user: 42 });
    expect(expected.status).toBe(201);
    const liked = await page.$$eval("#liked li", (lis) => lis.map((li) => li.textContent));
    const disliked = await page.$$eval("#disliked li", (lis) => lis.map((li) => li.textContent));
    expect(liked).toEqual((expected.body.liked as string[]).length ? expected.body.liked : ["(none)"]);
    expect(disliked).toEqual((expected.body.disliked as string[]).length ? expected.body.disliked : ["(none)"]);
    expect(await page.$eval("#history-title", (e) => e.textContent)).toBe(`User 42 · ${expected.body.interactions} ratings`);

    // the greeting turn: the list shown is the streamed result's, with pYes bars and the recommender's score
    const events = await answer;
    await page.waitForSelector('#conversation .turn[data-state="done"]');
    expect(events[0]).toMatchObject({ type: "start", user: "42" });
    // the ranked list arrived before the explanation's first words, and the page showed it then
    const rankedAt = events.findIndex((e) => e.type === "recommendations");
    expect(rankedAt).toBeGreaterThan(0);
    const firstText = events.findIndex((e) => e.type === "text");
    if (firstText >= 0) expect(rankedAt).toBeLessThan(firstText);
    expect(await page.$eval("#conversation .turn:last-child", (e) => (e as HTMLElement).dataset.ranked)).toBe("true");
    const result = events.at(-1) as { type: string; recommendations: Array<{ item: string; title: string; pYes: number; recScore: number | null }>; explanation: string };
    expect(result.type).toBe("result");
    const texts = events
      .filter((e) => e.type === "text")
      .map((e) => e.text)
      .join("");
    expect(result.explanation).toBe(texts.trim());
    const shown = await shownRecommendations();
    expect(shown.length).toBe(result.recommendations.length);
    expect(shown.length).toBeGreaterThan(0);
    shown.forEach((s, i) => {
      const r = result.recommendations[i];
      expect(s.item).toBe(r.item);
      expect(s.title).toBe(r.title);
      expect(s.pYes).toBe(r.pYes);
      expect(s.pYesText).toBe(r.pYes.toFixed(3));
      expect(s.recText).toBe(r.recScore === null ? "new item" : `rec ${r.recScore.toFixed(3)}`);
      expect(Number.parseFloat(s.barWidth)).toBeCloseTo(r.pYes * 100, 1);
    });
    expect(await page.$eval("#conversation .turn:last-child .explanation", (e) => e.textContent)).toBe(result.explanation);
    await screenshot("web-chat");

    // a follow-up: "not that one" leaves the first recommendation out
    const next = nextChatAnswer();
    await page.type("#message", "not that one");
    await page.click("#send");
    const events2 = await next;
    await page.waitForFunction(() => document.querySelectorAll('#conversation .turn[data-state="done"]').length === 2);
    const result2 = events2.at(-1) as { turn: number; recommendations: Array<{ item: string }>; filters: { excludeItems: string[] } };
    expect(result2.turn).toBe(2);
    expect(result2.filters.excludeItems).toEqual([result.recommendations[0].item]);
    const shown2 = await shownRecommendations();
    expect(shown2.map((s) => s.item)).toEqual(result2.recommendations.map((r) => r.item));
    expect(shown2.map((s) => s.item)).not.toContain(result.recommendations[0].item);
    // "more like the second" through its button
    const next3 = nextChatAnswer();
    await page.click('#chips button[data-say="more like the second"]');
    const result3 = (await next3).at(-1) as { turn: number; filters: { similarTo: string[] } };
    await page.waitForFunction(() => document.querySelectorAll('#conversation .turn[data-state="done"]').length === 3);
    expect(result3.turn).toBe(3);
    expect(result3.filters.similarTo).toEqual([result2.recommendations[1].item]);

    // a server error is shown as it is
    await page.$eval("#user", (e) => ((e as HTMLInputElement).value = ""));
    await page.type("#user", "99999");
    await page.click("#user-form button[type=submit]");
    await page.waitForSelector("#error:not([hidden])");
    const unknown = await api("POST", "/v1/chat/sessions", { user: "99999" });
    expect(unknown.status).toBe(404);
    expect(await page.$eval("#error", (e) => (e as HTMLElement).dataset.message)).toBe(unknown.body.message);
    expect(await page.$eval("#error", (e) => e.textContent)).toContain(`HTTP 404 · Not Found · ${unknown.body.code}`);
    expect(errors).toEqual([]);
  });

  it("starts cold: a new user without ratings, whose history the conversation builds", async () => {
    await page.click("#tab-chat");
    const answer = nextChatAnswer();
    await page.click("#cold");
    const events = await answer;
    await page.waitForFunction(() => document.querySelectorAll('#conversation .turn[data-state="done"]').length === 1);
    const start = events[0] as { sessionId: string; user: string };
    expect(start.user).toMatch(/^new:.+/);
    const result = events.at(-1) as { recommendations: Array<{ title: string; item: string }>; notes: string[] };
    expect(result.notes.some((n) => /has no ratings yet/.test(n))).toBe(true);
    expect(await page.$eval("#history-title", (e) => e.textContent)).toBe(`New user ${start.user.slice(4)} · 0 ratings`);
    expect(await page.$$eval("#liked li", (lis) => lis.map((li) => li.textContent))).toEqual(["(none)"]);
    const shown = await shownRecommendations();
    expect(shown.map((x) => x.item)).toEqual(result.recommendations.map((r) => r.item));
    const notes = await page.$$eval("#conversation .turn:last-child .notes p", (ps) => ps.map((p) => p.textContent));
    expect(notes).toEqual(result.notes.map((n) => `note: ${n}`));
    // "I loved <the first one>": it joins the liked history (the page shows the session's)
    const title = result.recommendations[0].title;
    const next = nextChatAnswer();
    await page.type("#message", `I loved ${title}`);
    await page.click("#send");
    await next;
    await page.waitForFunction((t) => Array.from(document.querySelectorAll("#liked li")).some((li) => li.textContent === t), {}, title);
    const s = await api("GET", `/v1/chat/${start.sessionId}`);
    expect(s.body.liked).toEqual([title]);
    expect(await page.$$eval("#liked li", (lis) => lis.map((li) => li.textContent))).toEqual([title]);
  });

  it("ranks candidates in the playground with both scoring rules, as /v1/rank does", async () => {
    await page.click("#tab-score");
    await page.waitForSelector("#view-score:not([hidden])");
    const adapters = await page.$$eval("#adapter option", (os) => os.map((o) => (o as HTMLOptionElement).value));
    expect(adapters).toEqual(["movie", "__base__"]);
    await page.select("#scoring", "both");
    await page.click("#rank");
    await page.waitForFunction(() => document.querySelector("#rankings")?.getAttribute("data-state") === "done");
    const liked = ["Toy Story (1995)", "Groundhog Day (1993)", "Babe (1995)"];
    const candidates = ["Aladdin (1992)", "Heat (1995)", "Seven (Se7en) (1995)", "Sleepless in Seattle (1993)", "Jumanji (1995)"];
    for (const scoring of ["softmax", "tallrec-compat"]) {
      const want = await api("POST", "/v1/rank", { adapter: "movie", scoring, domain: "movie", liked, disliked: ["Scream (1996)"], candidates });
      expect(want.status).toBe(200);
      const ranking = want.body.ranking as Array<{ id: number; index: number; pYes: number }>;
      const shown = await page.$$eval(`#rankings section[data-scoring="${scoring}"] li`, (lis) =>
        lis.map((li) => ({ id: (li as HTMLElement).dataset.id!, pYes: Number((li as HTMLElement).dataset.pyes), text: li.querySelector(".pyes")!.textContent!, title: li.querySelector(".title")!.textContent! })),
      );
      expect(shown.map((s) => s.id)).toEqual(ranking.map((r) => String(r.id)));
      expect(shown.map((s) => s.title)).toEqual(ranking.map((r) => candidates[r.index]));
      shown.forEach((s, i) => {
        expect(Math.abs(s.pYes - ranking[i].pYes)).toBeLessThan(1e-6);
        expect(s.text).toBe(ranking[i].pYes.toFixed(3));
      });
    }
    await screenshot("web-playground");
    // the base model, one rule; then an error from the server (no candidates) is shown as it is
    await page.select("#adapter", "__base__");
    await page.select("#scoring", "softmax");
    await page.$eval("#candidates", (e) => ((e as HTMLTextAreaElement).value = ""));
    await page.click("#rank");
    await page.waitForFunction(() => document.querySelector("#rankings")?.getAttribute("data-state") === "error");
    const want = await api("POST", "/v1/rank", { adapter: null, scoring: "softmax", domain: "movie", liked, disliked: ["Scream (1996)"], candidates: [] });
    expect(want.status).toBeGreaterThanOrEqual(400);
    expect(await page.$eval("#error", (e) => (e as HTMLElement).dataset.message)).toBe(want.body.message);
  });
});

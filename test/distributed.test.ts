/**
 * Issue 15: `tallrec batch --queue` with `tallrec worker` processes on a real redis-server (see
 * test/helpers/redis.ts): the output is byte for byte local batch's, a worker or the producer
 * killed with kill -9 loses and duplicates nothing, a worker with other adapters is refused.
 * Everything runs in the exact mode (--kv-type f32) like the other tests that compare batchings,
 * with the same --window on both sides.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { fitRecommender, loadData } from "../src/chatrec/sources.js";
import { ChatRec } from "../src/chatrec/pipeline.js";
import { RedisSessions } from "../src/chatrec/session-redis.js";
import { connectRedis, mismatch } from "../src/distributed/common.js";
import { repoRoot, sampleRows, syntheticMovieLens } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";
import { redisMissing, sayRedisSkipped, startRedis, type RedisServer } from "./helpers/redis.js";

const cli = join(repoRoot, "dist", "cli", "main.js");
const CI = process.env.CI === "true";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], timeoutMs = 90_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { maxBuffer: 64 << 20, timeout: timeoutMs, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A spawned CLI process whose stderr is collected; every one is killed in afterAll. */
interface Proc {
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
}
const procs: Proc[] = [];

function start(args: string[]): Proc {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const waiters: Array<() => void> = [];
  child.stderr!.on("data", (d: Buffer) => {
    log += d.toString();
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const p: Proc = {
    child,
    log: () => log,
    exited,
    waitFor: (re, timeoutMs = 60_000) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} in: ${log.slice(-2000)}`)), timeoutMs);
        const check = () => {
          if (re.test(log)) {
            clearTimeout(timer);
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(timer);
            reject(new Error(`exited (${child.exitCode ?? child.signalCode}) before ${re}: ${log.slice(-2000)}`));
          } else waiters.push(check);
        };
        child.on("exit", check);
        check();
      }),
  };
  procs.push(p);
  return p;
}

function kill9(p: Proc): Promise<number | null> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
  return p.exited;
}

const scoredIds = (log: string) => [...log.matchAll(/^scored (\S+)/gm)].map((m) => m[1]);

describe("distributed: matching a worker to a run", () => {
  const base = {
    model: { sha256: "a".repeat(64), file: "m.gguf" },
    adapters: [{ name: "movie", sha256: "b".repeat(64), scale: null }],
    engine: { kvType: "f32" as const, flashAttn: null, ctx: null, batch: null, sequences: null },
  };
  it("accepts the same digests and options, says what differs otherwise", () => {
    expect(mismatch(base, structuredClone(base))).toBeNull();
    expect(mismatch(base, { ...base, model: { sha256: "c".repeat(64), file: "other.gguf" } })).toMatch(/the model differs.*m\.gguf.*other\.gguf/);
    expect(mismatch(base, { ...base, adapters: [{ name: "movie", sha256: "d".repeat(64), scale: null }] })).toMatch(/the adapters differ/);
    expect(mismatch(base, { ...base, adapters: [{ name: "movie", sha256: "b".repeat(64), scale: 0.5 }] })).toMatch(/the adapters differ/);
    expect(mismatch(base, { ...base, engine: { ...base.engine, kvType: null } })).toMatch(/--kv-type differs \(the run's f32, this worker's default\)/);
  });
});

describe.skipIf(!!redisMissing && !CI)("distributed batch through BullMQ on redis-server", () => {
  let redis: RedisServer;
  let dir: string;
  let m: Awaited<ReturnType<typeof testModels>>;
  let input: string;
  let local: Buffer;
  const flags = ["--kv-type", "f32"];
  const batchArgs = (out: string, url: string, extra: string[] = []) => [...flags, "batch", input, "-o", out, "-m", m.tiny, "-l", m.loraA, "--window", "8", "--queue", url, ...extra];
  const workerArgs = (url: string, extra: string[] = []) => [...flags, "worker", "--queue", url, "-m", m.tiny, "-l", m.loraA, ...extra];

  beforeAll(async () => {
    if (redisMissing) throw new Error(`CI=true requires the Redis tests: ${redisMissing}; .ci/run installs it`);
    m = await testModels();
    dir = mkdtempSync(join(tmpdir(), "tallrec-dist-"));
    redis = await startRedis();
    // 96 TALLRec rows with two bad ones among them: unreadable JSON, and a row without a prompt
    const lines = sampleRows("movie")
      .slice(0, 96)
      .map((r) => JSON.stringify(r));
    lines.splice(40, 0, "{not json");
    lines.splice(61, 0, JSON.stringify({ something: "else" }));
    input = join(dir, "in.jsonl");
    writeFileSync(input, lines.join("\n") + "\n");
    const ref = await run([...flags, "batch", input, "-o", join(dir, "local.csv"), "-m", m.tiny, "-l", m.loraA, "--window", "8"]);
    expect(ref.code, ref.stderr).toBe(3);
    local = readFileSync(join(dir, "local.csv"));
  });

  afterAll(async () => {
    await Promise.all(procs.map(kill9));
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("two workers write byte for byte what local batch writes, bad rows kept with their error (exit 3)", async () => {
    const url = redis.url(1);
    const w = [start(workerArgs(url)), start(workerArgs(url))];
    await Promise.all(w.map((p) => p.waitFor(/waiting for jobs/)));
    const out = join(dir, "two.csv");
    const res = await run(batchArgs(out, url));
    expect(res.code, res.stderr).toBe(3);
    expect(res.stderr).toMatch(/98 rows written.*2 with errors/);
    expect(readFileSync(out).equals(local)).toBe(true);
    const ids = w.flatMap((p) => scoredIds(p.log()));
    expect(new Set(ids).size).toBe(ids.length); // each window scored once
    expect(ids.length).toBe(Math.ceil(98 / 8));
    for (const p of w) expect(scoredIds(p.log()).length).toBeGreaterThan(0); // both took work
    await Promise.all(w.map(kill9));
  });

  it("a worker killed with kill -9 mid-job loses nothing: another worker takes its job (stalled-job retry)", async () => {
    const url = redis.url(2);
    // short locks: the killed worker's job is found stalled within seconds
    const a = start(workerArgs(url, ["--lock-ms", "1500"]));
    const b = start(workerArgs(url, ["--lock-ms", "1500"]));
    await Promise.all([a, b].map((p) => p.waitFor(/waiting for jobs/)));
    const out = join(dir, "killed-worker.csv");
    const producer = run(batchArgs(out, url, ["--inflight", "4"]));
    // kill A while it holds a job: after it logged "scoring ID" for its second job
    await a.waitFor(/^scored .*\n(?:.*\n)*?scoring (\S+)/m);
    await kill9(a);
    const held = [...a.log().matchAll(/^scoring (\S+)/gm)].map((x) => x[1]).filter((id) => !scoredIds(a.log()).includes(id));
    expect(held.length).toBe(1);
    const res = await producer;
    expect(res.code, res.stderr).toBe(3);
    expect(readFileSync(out).equals(local)).toBe(true);
    // B scored the job A held when it died
    expect(scoredIds(b.log())).toContain(held[0]);
    expect(b.log()).toMatch(new RegExp(`scoring ${held[0].replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\(attempt 2`));
    await kill9(b);
  });

  it("the producer killed with kill -9, then --resume: the same output, no window scored twice", async () => {
    const url = redis.url(3);
    const w = start(workerArgs(url));
    await w.waitFor(/waiting for jobs/);
    const out = join(dir, "killed-producer.csv");
    const producer = start(batchArgs(out, url, ["--inflight", "3"]));
    const sidecar = `${out}.progress`;
    for (let i = 0; i < 2400 && !(existsSync(sidecar) && readFileSync(sidecar, "utf8").split("\n").length > 4); i++) await new Promise((r) => setTimeout(r, 25));
    await kill9(producer);
    expect(readFileSync(out).length).toBeLessThan(local.length); // it really stopped part-way
    const res = await run([...batchArgs(out, url, ["--inflight", "3"]), "--resume"]);
    expect(res.code, res.stderr).toBe(3);
    expect(res.stderr).toMatch(/resuming at row [1-9]/);
    expect(readFileSync(out).equals(local)).toBe(true);
    const ids = scoredIds(w.log());
    expect(new Set(ids).size).toBe(ids.length); // finished windows were not scored again
    expect(ids.length).toBe(Math.ceil(98 / 8));
    await kill9(w);
  });

  it("a worker with other adapter files refuses the run's jobs; the run stops with its reason", async () => {
    const url = redis.url(4);
    // the adapter has the run's name but other weights
    const w = start([...flags, "worker", "--queue", url, "-m", m.tiny, "-l", `tiny-lora-a=${m.loraB}`]);
    await w.waitFor(/waiting for jobs/);
    const res = await run(batchArgs(join(dir, "refused.csv"), url));
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/refused run .*the adapters differ \(the run's: tiny-lora-a \(sha256 [0-9a-f]{16}…\); this worker's: tiny-lora-a \(sha256 [0-9a-f]{16}…\)\)/);
    expect(w.log()).toMatch(/refused run/);
    await kill9(w);
  });

  it("tallrec serve --sessions: a Chat-REC session started on one replica continues on another; /health/live and /health/ready", async () => {
    const data = await syntheticMovieLens();
    const args = ["serve", "--port", "0", "-m", m.tiny, "-l", m.loraA, "--chat-data", data.dir, "--chat-recommender", "popularity", "--sessions", redis.url(5)];
    const replicas = [start(args), start(args)];
    const bases: string[] = [];
    for (const p of replicas) {
      await p.waitFor(/Server listening at http:\/\/127\.0\.0\.1:\d+/);
      bases.push(/Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(p.log())![1]);
    }
    const [a, b] = bases;
    expect((await fetch(`${a}/health/live`)).status).toBe(200); // live from the start, loaded or not
    await Promise.all(replicas.map((p) => p.waitFor(/Chat-REC ready.*sessions in redis:/)));
    for (const base of bases) {
      const ready = await fetch(`${base}/health/ready`);
      expect(ready.status).toBe(200);
      expect(((await ready.json()) as { status: string }).status).toBe("ok");
      expect((await fetch(`${base}/health`)).status).toBe(200);
    }
    const post = (base: string, body: object) => fetch(`${base}/v1/chat`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ explain: false, ...body }) });
    const first = await post(a, { user: 7, message: "a comedy please" });
    expect(first.status).toBe(200);
    const t1 = (await first.json()) as { sessionId: string; turn: number; recommendations: Array<{ item: string }>; filters: { genres: string[] } };
    expect(t1.turn).toBe(1);
    expect(t1.filters.genres).toContain("Comedy");
    // the follow-up goes to the other replica: it knows the session, its filters and what "that one" is
    const second = await post(b, { sessionId: t1.sessionId, message: "not that one" });
    expect(second.status).toBe(200);
    const t2 = (await second.json()) as { turn: number; recommendations: Array<{ item: string }>; filters: { genres: string[]; excludeItems: string[] } };
    expect(t2.turn).toBe(2);
    expect(t2.filters.genres).toContain("Comedy");
    expect(t2.filters.excludeItems).toContain(t1.recommendations[0].item);
    expect(t2.recommendations.map((r) => r.item)).not.toContain(t1.recommendations[0].item);
    // and back: replica A sees the turn B answered
    const seen = await fetch(`${a}/v1/chat/${t1.sessionId}`);
    expect(seen.status).toBe(200);
    expect(((await seen.json()) as { turns: number }).turns).toBe(2);
    const third = await post(a, { sessionId: t1.sessionId, message: "something lighter" });
    expect(((await third.json()) as { turn: number }).turn).toBe(3);
    // ended on B: gone on A too
    expect((await fetch(`${b}/v1/chat/${t1.sessionId}`, { method: "DELETE" })).status).toBe(204);
    expect((await fetch(`${a}/v1/chat/${t1.sessionId}`)).status).toBe(404);
    expect((await post(a, { sessionId: t1.sessionId, message: "more" })).status).toBe(404);
    await Promise.all(replicas.map(kill9));
  });

  it("Redis sessions keep the in-memory store's bounds and expiry, and one session's turns in order across replicas", async () => {
    // two services without a model (a stand-in scorer), sharing one Redis like two replicas
    const loaded = await loadData({ ml100k: (await syntheticMovieLens()).dir });
    const recommender = fitRecommender("popularity", loaded.interactions);
    const engine = {
      score: async (inputs: readonly unknown[]) => {
        await new Promise((r) => setTimeout(r, 20));
        return inputs.map((_, i) => ({ pYes: 1 / (i + 2), logitYes: 0, logitNo: 0, tokens: 1 }));
      },
      generate: async () => {
        throw new Error("explanations are off");
      },
    };
    const conns = [await connectRedis(redis.url(6)), await connectRedis(redis.url(6))];
    try {
      const make = (c: (typeof conns)[number]) =>
        new RedisSessions(new ChatRec({ engine: engine as never, interactions: loaded.interactions, catalog: loaded.catalog, recommender, explain: false, sessions: { maxSessions: 3, ttlMs: 1500 } }), c);
      const [a, b] = conns.map(make);
      const start = async () => {
        const { sessionId } = a.startSession("7");
        await a.sync(sessionId);
        return sessionId;
      };
      // turns sent to both replicas at once run one after the other
      const id = await start();
      const first = await a.turn(id, "a comedy");
      const [x, y] = await Promise.all([a.turn(id, "not that one"), b.turn(id, "not that one")]);
      expect([x.turn, y.turn].sort()).toEqual([2, 3]);
      const last = x.turn === 3 ? x : y;
      expect(last.filters.excludeItems).toHaveLength(2);
      expect(last.filters.excludeItems).toContain(first.recommendations[0].item);
      await b.load(id);
      expect(b.session(id).turns).toBe(3);
      // at most maxSessions (3): the least recently used go first, on every replica
      const more = [await start(), await start(), await start()];
      expect(await conns[0].zcard("tallrec:chat:sessions")).toBe(3);
      await b.load(id);
      expect(() => b.session(id)).toThrow(/unknown session/);
      await b.load(more[2]);
      expect(b.session(more[2]).user).toBe("7");
      // forgotten ttlMs after the last use
      await new Promise((r) => setTimeout(r, 1700));
      await b.load(more[2]);
      expect(() => b.session(more[2])).toThrow(/unknown session/);
      expect(await conns[0].exists(`tallrec:chat:session:${more[2]}`)).toBe(0);
    } finally {
      for (const c of conns) c.disconnect();
    }
  });
});

if (redisMissing && !CI) sayRedisSkipped("the distributed batch tests (test/distributed.test.ts)");

/**
 * Issue 12: every error code of src/errors.ts through every interface. For each code × interface
 * (the library, the CLI's exit status, the server's HTTP status) either a real trigger that
 * produces the code there, or an explicit `{ na }` saying why it cannot arise there. The first
 * test fails when a code has no entry for an interface, so a new code cannot be added untested.
 *
 * - library: `codeOf(err) === code` for a thrown error, or the per-item `code` of a score result;
 * - CLI: the built `tallrec` (dist/cli/main.js) exits with ERROR_CODES[code].exit and says why on
 *   stderr (exit 3, EXIT.PARTIAL, where a command finished and only an item failed, by design);
 * - HTTP: the status is ERROR_CODES[code].http and the body's `code` is the code.
 *
 * An entry with `deviation` is a place where the product disagrees with the table today: the test
 * pins what happens now (and says why), so that fixing it makes the test fail and the entry is
 * removed with the fix.
 *
 * It also renders the table of docs/errors.md from ERROR_CODES and {@link RAISED_BY}, and checks
 * that the file holds exactly those rows.
 */
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createChatRec } from "../src/chatrec/setup.js";
import { SessionStore } from "../src/chatrec/session.js";
import { convertHfModel } from "../src/convert/model.js";
import { Engine, type ScoreResult } from "../src/engine/engine.js";
import { loadBinding, type NativeContext, type NativeModel } from "../src/engine/native.js";
import { codeOf, ERROR_CODES, EXIT, TallrecError, type ErrorCode } from "../src/errors.js";
import { rewriteGguf } from "../src/gguf/rewrite.js";
import { IdIndex, ItemCatalog, ItemKnnRecommender, parseMovieLensRatings } from "../src/recsys/index.js";
import { buildServer, engineLoaded, type ServerEngine, type ServerOptions } from "../src/server/index.js";
import { writeHfLlamaModel } from "../src/synth/hf.js";
import { repoRoot, sampleRows, syntheticMovieLens } from "./helpers/data.js";
import { cliPath, runCli, type ChildRun } from "./helpers/hostile.js";
import { testModels } from "./helpers/models.js";
import { onePromptPlan } from "./helpers/plans.js";

const INTERFACES = ["library", "cli", "http"] as const;
type Interface = (typeof INTERFACES)[number];

/** A code that cannot arise through an interface, and why. */
interface NotApplicable {
  na: string;
}

/** What the product does today where it disagrees with ERROR_CODES (see the file's comment). */
interface Deviation {
  because: string;
}

interface LibraryCell {
  /** Throws (or rejects with) an error whose code is the cell's... */
  throws?: () => unknown;
  /** ...or returns score results whose first item failed with the cell's code. */
  perItem?: () => Promise<ScoreResult[]>;
  message: RegExp;
}

interface CliCell {
  run: () => Promise<ChildRun>;
  /** Matched against stderr (or `where`'s text). */
  message: RegExp;
  /** Where the message is, when not on stderr (a batch's output file). */
  where?: () => string;
  /** An exit status other than ERROR_CODES[code].exit: EXIT.PARTIAL for a failed item (by design), or a deviation. */
  exit?: { status: number } & ({ partial: string } | Deviation);
  skip?: string;
}

interface HttpReply {
  status: number;
  body: { code?: string; statusCode?: number; message?: string; error?: string };
}

interface HttpCell {
  request: () => Promise<HttpReply>;
  message: RegExp;
  /** A status and code other than the table's (a deviation). */
  got?: { status: number; code: ErrorCode } & Deviation;
}

type Cells = { library: LibraryCell | NotApplicable; cli: CliCell | NotApplicable; http: HttpCell | NotApplicable };

// ---- fixtures -----------------------------------------------------------------------------------

let m: Awaited<ReturnType<typeof testModels>>;
let dir: string;
/** The models folder the server may load adapters from (b.gguf, junk.gguf). */
let modelsDir: string;
let engine: Engine;
/** A server around `engine` with a models folder, Chat-REC, and small limits. */
let app: FastifyInstance;
const cleanups: Array<() => unknown> = [];

const SERVER_LIMITS = { maxItems: 4, bodyLimit: 64 * 1024 } as const;
/** The scheduler settings every server here gives the shared engine (restored after tests that change them). */
const restoreScheduler = () => engine.scheduler.configure({ maxBatch: 64, maxWaitMs: 2, maxQueue: 1024 });

const ITEM = { instruction: sampleRows("movie")[0].instruction, input: sampleRows("movie")[0].input };
/** A structured prompt of about 2100 tokens: longer than the 256-token context. */
const LONG = { domain: "movie" as const, liked: Array.from({ length: 300 }, (_, i) => `Movie ${i} (1995)`), disliked: [], target: "Casino (1995)" };
const PAIR = ["--liked", "Heat (1995)", "--target", "Casino (1995)"];

beforeAll(async () => {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run "npx tsc -p tsconfig.json" (npm test does it in pretest)`);
  m = await testModels();
  dir = mkdtempSync(join(tmpdir(), "tallrec-error-codes-"));
  modelsDir = join(dir, "models");
  mkdirSync(modelsDir);
  copyFileSync(m.loraB, join(modelsDir, "b.gguf"));
  writeFileSync(join(modelsDir, "junk.gguf"), Buffer.from("GGUF\x03\x00\x00\x00garbage that is not a gguf header at all"));
  writeFileSync(join(dir, "junk.gguf"), Buffer.from("GGUF\x03\x00\x00\x00garbage that is not a gguf header at all"));
  engine = await Engine.load({ model: m.tiny, adapters: [{ name: "a", path: m.loraA }], gpu: "cpu", threads: 1, contextSize: 256 });
  const chat = await createChatRec({ engine, data: { ml100k: (await syntheticMovieLens()).dir }, recommender: "popularity", explain: false });
  app = await buildServer({ engine, modelsDir, chat, closeEngine: false, processMetrics: false, ...SERVER_LIMITS });
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await app?.close();
  await engine?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A model whose logits overflow (finite weights, 3e38 in the output matrix): scores are non-finite (from hostile-gguf.test.ts). */
let overflowFile: Promise<string> | undefined;
function overflowModel(): Promise<string> {
  overflowFile ??= (async () => {
    const file = join(dir, "overflow.gguf");
    await rewriteGguf(m.tiny, file, { tensors: { "output.weight": { data: (old) => new Uint8Array(new Float32Array(old.length / 4).fill(3e38).buffer) } } });
    return file;
  })();
  return overflowFile;
}
let overflowEngine: Promise<Engine> | undefined;
function overflow(): Promise<Engine> {
  overflowEngine ??= overflowModel().then(async (model) => {
    const e = await Engine.load({ model, gpu: "cpu", threads: 1, contextSize: 256 });
    cleanups.push(() => e.close());
    return e;
  });
  return overflowEngine;
}

/** An engine (and a server around it) that was closed after the server started. */
let closedPair: Promise<{ engine: Engine; app: FastifyInstance }> | undefined;
function closed(): Promise<{ engine: Engine; app: FastifyInstance }> {
  closedPair ??= (async () => {
    const e = await Engine.load({ model: m.tiny, gpu: "cpu", threads: 1, contextSize: 256 });
    const a = await buildServer({ engine: e, closeEngine: false, processMetrics: false });
    cleanups.push(() => a.close());
    await e.close();
    return { engine: e, app: a };
  })();
  return closedPair;
}

/** The raw addon on the tiny model (for backend and busy, as test/native-errors.test.ts triggers them). */
let native: { model: NativeModel; ctx: NativeContext } | undefined;
async function nativeContext(): Promise<NativeContext> {
  if (!native) {
    const b = loadBinding("cpu").binding;
    const model = await b.Model.load(m.tiny);
    const ctx = await b.Context.create(model, { nCtx: 256, nBatch: 256, nUbatch: 256, nSeqMax: 4, threads: 1, threadsBatch: 1, poll: 0 });
    native = { model, ctx };
    cleanups.push(() => {
      ctx.dispose();
      model.dispose();
    });
  }
  return native.ctx;
}

/** A Hugging Face LLaMA folder whose config asks for a rope scaling tallrec does not convert. */
let yarnDir: Promise<string> | undefined;
function yarnCheckpoint(): Promise<string> {
  yarnDir ??= (async () => {
    const hf = join(dir, "hf-yarn");
    await writeHfLlamaModel(hf, "tiny", {});
    const cfg = JSON.parse(readFileSync(join(hf, "config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(hf, "config.json"), JSON.stringify({ ...cfg, rope_scaling: { type: "yarn", factor: 4 } }));
    return hf;
  })();
  return yarnDir;
}

async function inject(a: FastifyInstance, method: "GET" | "POST" | "DELETE", url: string, payload?: unknown, headers: Record<string, string> = {}): Promise<HttpReply> {
  const res = await a.inject({ method, url, ...(payload === undefined ? {} : { payload: payload as object }), headers });
  return { status: res.statusCode, body: res.json() };
}
const post = (url: string, payload: unknown, headers?: Record<string, string>) => inject(app, "POST", url, payload, headers);

/** A server of its own (closed after the run); it configures the shared engine's scheduler, restored after. */
async function otherServer(options: Partial<ServerOptions>): Promise<FastifyInstance> {
  const a = await buildServer({ engine, closeEngine: false, processMetrics: false, ...options } as ServerOptions);
  cleanups.push(() => a.close());
  return a;
}

/** Shuts the shared engine's scheduler: batches wait until the returned function is called. */
function gate(): { waiting: () => number; open: () => void } {
  let release!: () => void;
  const shut = new Promise<void>((r) => (release = r));
  let waiting = 0;
  const remove = engine.scheduler.intercept(async (_group, _items, next) => {
    waiting++;
    await shut;
    return next();
  });
  return {
    waiting: () => waiting,
    open: () => {
      release();
      remove();
    },
  };
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** `tallrec batch` on 240 rows, interrupted with SIGINT once a few windows are checkpointed (from test/cli.test.ts). */
async function interruptedBatch(): Promise<ChildRun> {
  const input = join(dir, "interrupt.jsonl");
  writeFileSync(
    input,
    sampleRows("movie")
      .slice(0, 240)
      .map((r) => JSON.stringify(r))
      .join("\n") + "\n",
  );
  const out = join(dir, "interrupt.csv");
  const child = spawn(process.execPath, [cliPath, "--threads", "1", "batch", input, "-o", out, "-m", m.tiny, "-l", m.loraA, "--window", "16"], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<ChildRun>((r) => child.on("close", (code, signal) => r({ code, signal, stdout, stderr })));
  const sidecar = `${out}.progress`;
  for (let i = 0; i < 1200 && !(existsSync(sidecar) && readFileSync(sidecar, "utf8").split("\n").length > 2); i++) await new Promise((r) => setTimeout(r, 25));
  child.kill("SIGINT");
  return exited;
}

/** `tallrec serve` on a port another server holds. */
async function serveOnTakenPort(): Promise<ChildRun> {
  const holder: Server = createServer();
  await new Promise<void>((r) => holder.listen(0, "127.0.0.1", r));
  const port = (holder.address() as { port: number }).port;
  try {
    return await runCli(["serve", "-m", m.tiny, "--host", "127.0.0.1", "--port", String(port)], { timeoutMs: 60_000 });
  } finally {
    holder.close();
  }
}

const gpuPresent = existsSync("/dev/nvidia0") && loadBinding("auto").backend === "cuda";

// ---- the table ------------------------------------------------------------------------------------

const CELLS: Record<ErrorCode, Cells> = {
  invalid_input: {
    library: { throws: () => engine.score("not an array" as never), message: /score\(\) takes an array of prompts/ },
    cli: { run: () => runCli(["score", "-m", m.tiny, "-l", `${m.loraA}:1e9`, ...PAIR]), message: /scale must be a finite number within ±1000/ },
    http: { request: () => inject(app, "POST", "/v1/score", "{not json", { "content-type": "application/json" }), message: /body is not valid JSON/ },
  },
  empty: {
    library: { throws: () => engine.score([]), message: /needs at least one prompt/ },
    cli: {
      run: () => {
        const file = join(dir, "header-only.csv");
        writeFileSync(file, "instruction,input,output\n");
        return runCli(["eval", file, "-m", m.tiny]);
      },
      message: /header-only\.csv: no usable rows/,
    },
    http: {
      request: () => post("/v1/score", { items: [] }),
      message: /body\/items must NOT have fewer than 1 items/,
      got: { status: 400, code: "invalid_input", because: "the request schema (minItems) refuses an empty list before the engine sees it, with code invalid_input, not empty" },
    },
  },
  too_long: {
    library: { perItem: () => engine.score([LONG]), message: /the prompt has \d+ tokens but the context holds 256/ },
    cli: {
      run: () => runCli(["score", "-m", m.tiny, "--ctx", "256", "--liked", LONG.liked.join(";"), "--target", LONG.target]),
      message: /the prompt has \d+ tokens but the context holds 256/,
      exit: { status: EXIT.PARTIAL, partial: "score finished and its one item failed: exit 3 (EXIT.PARTIAL), as for any failed item" },
    },
    http: { request: () => post("/v1/score", { items: [LONG] }), message: /body\/items\/0: the prompt has \d+ tokens but the context holds 256/ },
  },
  too_many_items: {
    library: {
      throws: async () => {
        engine.scheduler.configure({ maxBatch: 2 });
        try {
          return await engine.scoreWithStats([ITEM, ITEM, ITEM], { atomic: true });
        } finally {
          restoreScheduler();
        }
      },
      message: /an atomic job has at most maxBatch \(2\) items, not 3/,
    },
    cli: { na: "the CLI sizes its own engine calls (batch windows, Chat-REC candidates); no command submits an atomic call over maxBatch or more items than the queue holds" },
    http: { request: () => post("/v1/score", { items: [ITEM, ITEM, ITEM, ITEM, ITEM] }), message: /body\/items must NOT have more than 4 items/ },
  },
  too_large: {
    library: { na: "a size limit on request bodies exists only in the server (bodyLimit)" },
    cli: { na: "a size limit on request bodies exists only in the server (bodyLimit); the CLI streams its files" },
    http: { request: () => post("/v1/score", { items: [{ instruction: "x", input: "y".repeat(70_000) }] }), message: /body is larger than the limit of 65536 bytes/ },
  },
  unknown_adapter: {
    library: { throws: () => engine.score([ITEM], { adapter: "nope" }), message: /unknown adapter "nope" \(loaded: "a"\)/ },
    cli: { run: () => runCli(["score", "-m", m.tiny, "-l", m.loraA, "--adapter", "nope", ...PAIR]), message: /unknown adapter "nope"/ },
    http: { request: () => post("/v1/score", { adapter: "nope", items: [ITEM] }), message: /body\/adapter: no adapter named "nope" is loaded/ },
  },
  adapter_required: {
    library: {
      // an engine loaded with one adapter keeps it as its default; one loaded with two has none
      throws: async () => {
        const two = await Engine.load({
          model: m.tiny,
          adapters: [
            { name: "a", path: m.loraA },
            { name: "b", path: m.loraB },
          ],
          gpu: "cpu",
          threads: 1,
          contextSize: 256,
        });
        try {
          return await two.score([ITEM]);
        } finally {
          await two.close();
        }
      },
      message: /several adapters are loaded \(a, b\): choose one/,
    },
    cli: { run: () => runCli(["score", "-m", m.tiny, "-l", m.loraA, "-l", m.loraB, ...PAIR]), message: /several adapters are loaded \(tiny-lora-a, tiny-lora-b\)/ },
    http: {
      request: async () => {
        const load = await post("/v1/adapters", { name: "b", path: "b.gguf" });
        expect(load.status, JSON.stringify(load.body)).toBe(201);
        try {
          return await post("/v1/score", { items: [ITEM] });
        } finally {
          expect((await inject(app, "DELETE", "/v1/adapters/b")).status).toBe(200);
        }
      },
      message: /body\/adapter is required: several adapters are loaded \(a, b\)/,
    },
  },
  adapter_exists: {
    library: { throws: () => engine.loadAdapter({ name: "a", path: m.loraB }), message: /an adapter named "a" is already loaded/ },
    cli: { na: 'the CLI loads its adapters once, at start (-l); two with one name are a malformed option (invalid_input: adapter name "a" is used twice)' },
    http: { request: () => post("/v1/adapters", { name: "a", path: "b.gguf" }), message: /body\/name: an adapter named "a" is already loaded/ },
  },
  unknown_user: {
    library: { throws: () => new IdIndex("user", ["1", "2"]).indexOf("99999"), message: /unknown user id "99999"/ },
    cli: {
      run: async () => runCli(["chat", "--user", "99999", "--data", (await syntheticMovieLens()).dir, "-m", m.tiny]),
      message: /unknown user "99999": not in the interaction data/,
    },
    http: { request: () => post("/v1/chat", { user: 99999, message: "hi" }), message: /unknown user "99999"/ },
  },
  unknown_item: {
    library: { throws: () => new ItemCatalog([{ id: "1", title: "Toy Story (1995)", genres: [] }]).require("42"), message: /unknown item id "42" \(not in the item catalog\)/ },
    cli: { na: "no command takes an item id: items come from data files (unknown ones are invalid_data) or free text (Chat-REC)" },
    http: { na: "no route takes an item id: Chat-REC reads items from the message text" },
  },
  unknown_session: {
    library: { throws: () => new SessionStore().require("no-such-session"), message: /unknown session "no-such-session": it never existed or expired/ },
    cli: { na: "tallrec chat holds its one session in the process; sessions by id exist only in the server" },
    http: { request: () => inject(app, "GET", "/v1/chat/no-such-session"), message: /unknown session "no-such-session"/ },
  },
  not_found: {
    library: { throws: () => Engine.load({ model: join(dir, "nope.gguf"), gpu: "cpu" }), message: /nope\.gguf: cannot open/ },
    cli: { run: () => runCli(["score", "-m", join(dir, "nope.gguf"), ...PAIR]), message: /nope\.gguf: cannot open/ },
    http: { request: () => inject(app, "GET", "/v1/nope"), message: /no route GET \/v1\/nope/ },
  },
  forbidden: {
    library: { na: "only the server restricts what a caller may do (runtime adapter loading outside its models folder)" },
    cli: { na: "only the server restricts what a caller may do; the CLI runs with the user's own rights" },
    http: {
      request: async () => inject(await otherServer({}), "POST", "/v1/adapters", { name: "x", path: "b.gguf" }),
      message: /runtime adapter loading is disabled \(the server has no models folder\)/,
    },
  },
  unauthorized: {
    library: { na: "API keys exist only in the server" },
    cli: { na: "API keys exist only in the server (tallrec serve --api-key checks requests, not its own command line)" },
    http: { request: async () => inject(await otherServer({ apiKey: "s3cret" }), "POST", "/v1/score", { items: [ITEM] }), message: /an API key is required/ },
  },
  invalid_file: {
    library: { throws: () => Engine.load({ model: join(dir, "junk.gguf"), gpu: "cpu" }), message: /junk\.gguf/ },
    cli: { run: () => runCli(["score", "-m", join(dir, "junk.gguf"), ...PAIR]), message: /junk\.gguf/ },
    http: { request: () => post("/v1/adapters", { name: "junk", path: "junk.gguf" }), message: /body\/path: .*junk\.gguf/ },
  },
  invalid_data: {
    library: { throws: () => parseMovieLensRatings("1\t2\tx\t4\n", { file: "u.data" }), message: /field "rating": expected an integer from 1 to 5, got "x"/ },
    cli: {
      run: () => {
        const file = join(dir, "bad-row.jsonl");
        writeFileSync(file, `${JSON.stringify(ITEM)}\n{not json\n`);
        return runCli(["batch", file, "-o", join(dir, "bad-row.csv"), "-m", m.tiny]);
      },
      where: () => readFileSync(join(dir, "bad-row.csv"), "utf8"),
      message: /line 2: /,
      exit: { status: EXIT.PARTIAL, partial: "batch finished and one row failed: exit 3 (EXIT.PARTIAL); the row's error is in its error column" },
    },
    http: { na: "the server reads no data files per request: Chat-REC's data is read at startup (tallrec serve --chat-data)" },
  },
  unsupported: {
    library: { throws: async () => convertHfModel(await yarnCheckpoint(), join(dir, "yarn.gguf")), message: /rope scaling "yarn" is not supported/ },
    cli: { run: async () => runCli(["convert-model", await yarnCheckpoint(), "-o", join(dir, "yarn-cli.gguf")]), message: /rope scaling "yarn" is not supported/ },
    http: { na: "no route converts files: a checkpoint feature is unsupported only in the converters (an unsupported content type is unsupported_media_type)" },
  },
  unsupported_media_type: {
    library: { na: "the library takes no request bodies" },
    cli: { na: "the CLI reads files by their format (CSV, JSONL, TALLRec JSON), not by a declared content type" },
    http: { request: () => inject(app, "POST", "/v1/score", "<items/>", { "content-type": "application/xml" }), message: /./ },
  },
  uri_too_long: {
    library: { na: "the library takes no URLs" },
    cli: { na: "the CLI takes no URLs" },
    http: { request: () => inject(app, "GET", `/v1/chat/${"s".repeat(101)}`), message: /a path parameter is longer than 100 characters/ },
  },
  non_finite: {
    library: { perItem: async () => (await overflow()).score([ITEM]), message: /the model computed non-finite logits/ },
    cli: {
      run: async () => runCli(["score", "-m", await overflowModel(), ...PAIR]),
      message: /non-finite logits/,
      exit: { status: EXIT.PARTIAL, partial: "score finished and its one item failed: exit 3 (EXIT.PARTIAL), as for any failed item" },
    },
    http: {
      // the item's own result says non_finite; the request, none of whose items scored, is answered invalid_input
      request: async () => {
        const r = await inject(await otherServer({ engine: await overflow() }), "POST", "/v1/score", { items: [ITEM] });
        expect((r.body as { results?: Array<{ code?: string }> }).results?.[0]?.code).toBe("non_finite");
        return r;
      },
      message: /body\/items\/0: the model computed non-finite logits/,
      got: {
        status: 400,
        code: "invalid_input",
        because: "failIfNoneScored (src/server/routes/score.ts) answers a request none of whose items scored with too_long (413) when all were too long, else invalid_input (400), not the items' code (non_finite, 422)",
      },
    },
  },
  backend: {
    library: {
      // two decodes of 200 tokens into 256 KV cells: the second finds no slot (test/native-errors.test.ts)
      throws: async () => (await nativeContext()).run(onePromptPlan(400, [0, 0, 200, 0, 200, 400])),
      message: /^llama_decode: no KV cache slot for the batch/,
    },
    cli: gpuPresent
      ? { na: "the CLI's backend failure here is --gpu cuda without a usable GPU, and this machine has one" }
      : { run: () => runCli(["score", "-m", m.tiny, "--gpu", "cuda", ...PAIR]), message: /gpu "cuda" was asked for, but CUDA is not usable here/ },
    http: {
      na: "a request cannot make llama.cpp fail on a loaded engine (the engine plans within its context); an engine that fails to load is answered as unavailable (503, tested there)",
    },
  },
  not_ready: {
    library: { throws: () => new ItemKnnRecommender().recommend("1", 5), message: /is not fitted: call fit\(train\) or load\(path\) first/ },
    cli: { na: "every command fits or loads its recommender before using it" },
    http: { na: "the server's recommender is fitted or loaded before the server starts" },
  },
  busy: {
    library: {
      throws: async () => {
        const ctx = await nativeContext();
        // a long first call (32 rounds of 200 tokens), seen running before the second is made
        const steps: number[] = [];
        for (let i = 0; i < 32; i++) steps.push(0, 0, 200, 2, 0, 0);
        const first = ctx.run(onePromptPlan(200, steps));
        try {
          await until(() => ctx.info().busy, "the first call to run");
          return await ctx.run(onePromptPlan(100, [0, 0, 100]));
        } finally {
          await first;
        }
      },
      message: /the context is busy with another call/,
    },
    cli: { na: "one CLI process is the only user of its engine and of its one chat session" },
    http: { na: "only Chat-REC's Redis session store answers busy (a session mid-turn in another process): it needs redis-server; test/chatrec-http.test.ts checks the route's 409 with a failing service" },
  },
  aborted: {
    library: {
      throws: () => {
        const ac = new AbortController();
        ac.abort();
        return engine.score([ITEM], { signal: ac.signal });
      },
      message: /aborted/,
    },
    cli: { run: interruptedBatch, message: /interrupted: rows 0\.\.-?\d+ are in .*interrupt\.csv; run the same command with --resume/ },
    http: {
      // a client that disconnects while its request is queued: the answer (499) goes to no one, so it is read in onSend
      request: async () => {
        const a = await otherServer({ maxBatch: 4, batchWaitMs: 0 });
        const sent: HttpReply[] = [];
        a.addHook("onSend", async (_request, reply, payload) => {
          if (reply.statusCode >= 400) sent.push({ status: reply.statusCode, body: JSON.parse(String(payload)) });
          return payload;
        });
        await a.listen({ host: "127.0.0.1", port: 0 });
        const url = `http://127.0.0.1:${(a.server.address() as { port: number }).port}/v1/score`;
        const send = (items: unknown[], signal?: AbortSignal) => fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ items }), signal });
        const g = gate();
        try {
          const first = send([ITEM]);
          await until(() => g.waiting() === 1, "the first batch to run");
          const ac = new AbortController();
          const leaving = send([ITEM, ITEM], ac.signal);
          await until(() => a.tallrec.queue.queuedItems === 2, "the second request to be queued");
          ac.abort();
          await expect(leaving).rejects.toThrow();
          await until(() => sent.length === 1, "the answer to the departed client");
          g.open();
          expect((await first).status).toBe(200);
          return sent[0];
        } finally {
          g.open();
          restoreScheduler();
        }
      },
      message: /the client closed the connection/,
    },
  },
  timeout: {
    library: {
      throws: async () => {
        const signal = AbortSignal.timeout(1);
        await new Promise((r) => setTimeout(r, 20));
        return engine.score([ITEM], { signal });
      },
      message: /timed out|timeout/i,
    },
    cli: { na: "the CLI sets no time limit on its calls" },
    http: {
      request: async () => {
        const a = await otherServer({ timeoutMs: 200, batchWaitMs: 0 });
        const g = gate();
        try {
          return await inject(a, "POST", "/v1/score", { items: [ITEM] });
        } finally {
          g.open();
          restoreScheduler();
        }
      },
      message: /the request timed out after 200 ms/,
    },
  },
  queue_full: {
    library: {
      throws: async () => {
        engine.scheduler.configure({ maxQueue: 1 });
        try {
          return await engine.score([ITEM, ITEM]);
        } finally {
          restoreScheduler();
        }
      },
      message: /the queue is full \(0 of 1 items queued, 2 more requested\)/,
    },
    cli: { na: "one CLI process is the only user of its engine's queue, and sizes its calls to it" },
    http: {
      request: async () => {
        const a = await otherServer({ maxQueue: 2, maxBatch: 1, batchWaitMs: 0 });
        const g = gate();
        try {
          const first = inject(a, "POST", "/v1/score", { items: [ITEM] });
          await until(() => g.waiting() === 1, "the first batch to run");
          const queued = inject(a, "POST", "/v1/score", { items: [ITEM, ITEM] });
          await until(() => a.tallrec.queue.queuedItems === 2, "2 queued prompts");
          const refused = await inject(a, "POST", "/v1/score", { items: [ITEM] });
          g.open();
          expect((await first).status).toBe(200);
          expect((await queued).status).toBe(200);
          return refused;
        } finally {
          g.open();
          restoreScheduler();
        }
      },
      message: /the queue is full \(2 of 2 items queued, 1 more requested\); retry after \d+ s/,
    },
  },
  closed: {
    library: { throws: async () => (await closed()).engine.score([ITEM]), message: /the engine is closed/ },
    cli: { na: "a command closes its engine only when it is done with it" },
    http: { request: async () => inject((await closed()).app, "POST", "/v1/score", { items: [ITEM] }), message: /the server is shutting down/ },
  },
  loading: {
    library: { na: "Engine.load resolves only with a loaded engine: nothing can be called while it loads" },
    cli: { na: "a command waits for its model to load" },
    http: {
      request: async () => {
        let fail!: (err: Error) => void;
        const a = await buildServer({ engineFactory: () => new Promise<ServerEngine>((_, reject) => (fail = reject)), processMetrics: false });
        try {
          return await inject(a, "POST", "/v1/score", { items: [ITEM] });
        } finally {
          fail(new Error("never loaded"));
          await a.close();
        }
      },
      message: /the model is loading; retry shortly/,
    },
  },
  unavailable: {
    library: { na: "the library raises it only when the native addon is not built (src/engine/native.ts loadBinding), which a test run cannot undo" },
    cli: { run: serveOnTakenPort, message: /cannot listen on 127\.0\.0\.1:\d+: listen EADDRINUSE/ },
    http: {
      request: async () => {
        const a = await buildServer({ engineFactory: () => Engine.load({ model: join(dir, "nope.gguf"), gpu: "cpu" }), processMetrics: false });
        try {
          await engineLoaded(a).catch(() => {});
          return await inject(a, "POST", "/v1/score", { items: [ITEM] });
        } finally {
          await a.close();
        }
      },
      message: /the model failed to load: .*nope\.gguf: cannot open/,
    },
  },
  internal: {
    // internal is what any error without a code becomes: these are the unclassified failures found today
    library: { na: "every error the library raises carries a code; internal is what codeOf says of a foreign exception (a bug), tested through the CLI and HTTP below" },
    cli: { run: () => runCli(["batch", join(dir, "bad-row.jsonl"), "-o", join(dir, "no-such-folder", "out.csv"), "-m", m.tiny]), message: /ENOENT: no such file or directory, open '.*no-such-folder/ },
    http: {
      // a stand-in for a bug: an engine whose scoring throws a plain Error; its message is not shown
      request: async () => {
        const buggy: ServerEngine = {
          scoreWithStats: () => Promise.reject(new Error("secret detail")),
          scheduler: engine.scheduler,
          info: engine.info,
          adapterNames: () => engine.adapterNames(),
          loadAdapter: (s) => engine.loadAdapter(s),
          unloadAdapter: (n) => engine.unloadAdapter(n),
          close: async () => {},
        };
        const a = await otherServer({ engine: buggy });
        try {
          const r = await inject(a, "POST", "/v1/score", { items: [ITEM] });
          expect(r.body.message).not.toMatch(/secret/);
          return r;
        } finally {
          restoreScheduler();
        }
      },
      message: /^internal error/,
    },
  },
};

/** Where each code comes from, for docs/errors.md (hand-written; the rest of each row is ERROR_CODES). */
const RAISED_BY: Record<ErrorCode, string> = {
  invalid_input: "malformed arguments and options anywhere (Engine.load, score, generate, embed, prompts, recsys, Chat-REC); request fields that fail the schema; bad JSON",
  empty: "`Engine.score([])`, a prompt of no tokens (per item), a recommender for a user with no history; `tallrec eval` on a file with no usable rows",
  too_long: "a prompt longer than the context (a per-item failure of score, thrown by generate and embed); `POST /v1/score` and `/v1/rank` when every item is too long",
  too_many_items: "an atomic call over the scheduler's maxBatch; `POST /v1/score` over maxItems, `/v1/rank` over maxCandidates, a request over maxQueue",
  too_large: "a request body over the server's bodyLimit",
  unknown_adapter: "score or generate with an adapter that is not loaded (`--adapter`, `body/adapter`); `DELETE /v1/adapters/:name` of one not loaded",
  adapter_required: "score without an adapter while several are loaded and none is the default",
  adapter_exists: "`engine.loadAdapter` and `POST /v1/adapters` with a name already loaded",
  unknown_user: "recsys ids (`IdIndex.indexOf`, recommenders), Chat-REC (`tallrec chat --user`, `POST /v1/chat`, `POST /v1/chat/sessions`)",
  unknown_item: "recsys ids (`ItemCatalog.require`, recommenders)",
  unknown_session: "Chat-REC's session stores; `GET`/`DELETE /v1/chat/:sessionId`, `POST /v1/chat` with an unknown `sessionId`",
  not_found: "a model, adapter or checkpoint file that does not exist (Engine.load, converters, `tallrec score -m`); an unknown route; `POST /v1/adapters` with no such file",
  forbidden: "`POST` and `DELETE /v1/adapters` on a server without a models folder",
  unauthorized: "every route but /health on a server with an API key (`tallrec serve --api-key`)",
  invalid_file: "a malformed or truncated GGUF, adapter, checkpoint or recommender file (Engine.load, loadAdapter, converters, `tallrec inspect`); `POST /v1/adapters`",
  invalid_data: "a malformed row of a data file (recsys loaders, Chat-REC data); a malformed row of `tallrec batch` (per item)",
  unsupported: "converters given a model or adapter feature they do not convert (e.g. YaRN rope scaling)",
  unsupported_media_type: "a request body of a content type the server does not read",
  uri_too_long: "a path parameter over 100 characters (e.g. a chat session id)",
  non_finite: "a score whose logits are not finite (per item): weights or an adapter scale that overflow",
  backend: 'llama.cpp or the addon failing (a failed decode, out of memory); `gpu: "cuda"` / `--gpu cuda` without a usable GPU',
  not_ready: "a recommender used before fit or load",
  busy: "overlapping calls on one native context; a Chat-REC session mid-turn in the Redis store",
  aborted: "an AbortSignal (the `signal` option), a server client that disconnected, Ctrl-C in `tallrec batch`",
  timeout: "an AbortSignal.timeout given as `signal`; a server request over its timeoutMs",
  queue_full: "a call that does not fit the scheduler's maxQueue (retry after the time given); 429 with Retry-After",
  closed: "an engine, context or model used after close; a server shutting down",
  loading: "a server request while the model is loading (`buildServer({ engineFactory })`)",
  unavailable: "a server whose model failed to load, Chat-REC not configured or starting, `tallrec serve` that cannot listen or reach Redis, the native addon not built",
  internal: "anything without a code: a bug (its message is hidden from HTTP clients)",
};

// ---- the tests --------------------------------------------------------------------------------------

const CODES = Object.keys(ERROR_CODES) as ErrorCode[];

it("has an entry for every code through every interface, and nothing else", () => {
  expect(Object.keys(CELLS).sort()).toEqual([...CODES].sort());
  expect(Object.keys(RAISED_BY).sort()).toEqual([...CODES].sort());
  for (const code of CODES) {
    for (const i of INTERFACES) {
      const cell = CELLS[code][i] as unknown as Record<string, unknown> | undefined;
      expect(cell, `${code} × ${i}`).toBeDefined();
      if ("na" in cell!) expect(String(cell.na).length, `${code} × ${i}: say why`).toBeGreaterThan(10);
    }
  }
});

const testable = <C>(i: Interface) => CODES.flatMap((code) => (!("na" in CELLS[code][i]) ? [[code, CELLS[code][i] as C] as const] : []));

describe("library: codeOf(err), or the per-item code", () => {
  it.each(testable<LibraryCell>("library"))("%s", async (code, cell) => {
    if (cell.perItem) {
      const [r] = await cell.perItem();
      expect(r.error, JSON.stringify(r)).toMatch(cell.message);
      expect(r.code).toBe(code);
      return;
    }
    let err: unknown = null;
    try {
      await cell.throws!();
    } catch (e) {
      err = e;
    }
    expect(err, "expected an error").not.toBeNull();
    expect((err as Error).message).toMatch(cell.message);
    expect(codeOf(err)).toBe(code);
  });
});

describe("CLI: the exit status, and the message on stderr", () => {
  it.each(testable<CliCell>("cli"))("%s", async (code, cell) => {
    const r = await cell.run();
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(cell.exit?.status ?? ERROR_CODES[code].exit);
    expect(cell.where ? cell.where() : r.stderr).toMatch(cell.message);
  });
});

describe("HTTP: the status, and the body's code", () => {
  it.each(testable<HttpCell>("http"))("%s", async (code, cell) => {
    const r = await cell.request();
    const status = cell.got?.status ?? ERROR_CODES[code].http;
    expect(r.status, JSON.stringify(r.body)).toBe(status);
    expect(r.body.statusCode).toBe(status);
    expect(r.body.code).toBe(cell.got?.code ?? code);
    expect(r.body.message).toMatch(cell.message);
  });
});

// ---- docs/errors.md -----------------------------------------------------------------------------

const HEADER = ["| code | HTTP status | CLI exit status | meaning | raised by |", "| --- | --- | --- | --- | --- |"];
const cellText = (s: string) => s.replace(/\|/g, "\\|");
const rows = () => CODES.map((c) => `| \`${c}\` | ${ERROR_CODES[c].http} | ${ERROR_CODES[c].exit} | ${cellText(ERROR_CODES[c].meaning)} | ${cellText(RAISED_BY[c])} |`);

it("docs/errors.md holds exactly the table rendered from ERROR_CODES", () => {
  const doc = readFileSync(join(repoRoot, "docs", "errors.md"), "utf8").split("\n");
  const expected = [...HEADER, ...rows()];
  const actual = doc.filter((l) => l.startsWith("| "));
  expect(actual.join("\n"), `docs/errors.md is out of date; its table should be:\n\n${expected.join("\n")}\n`).toBe(expected.join("\n"));
});

// a TallrecError of every code keeps it (the vocabulary itself; the rest of this file is the interfaces)
it("a TallrecError's status is its code's", () => {
  for (const code of CODES) expect(new TallrecError(code, "x").status).toBe(ERROR_CODES[code].http);
});

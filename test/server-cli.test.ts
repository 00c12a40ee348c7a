/**
 * `tallrec serve` (dist/, compiled by `npm test`'s pretest) as a subprocess: listening, scoring,
 * the API key from the environment, refusing an open host without a key, a failed model load, and
 * graceful shutdown on SIGTERM with requests in flight.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

import { beforeAll, describe, expect, it } from "vitest";

import { isLoopback } from "../src/cli/commands/serve.js";
import { repoRoot, sampleRows } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

const dist = join(repoRoot, "dist");
// the program as src/cli/main.ts builds it, with the serve command added
const script = `
import { Command } from ${JSON.stringify(pathToFileURL(join(repoRoot, "node_modules", "commander", "index.js")).href)};
import { addGlobalOptions, CliError } from ${JSON.stringify(pathToFileURL(join(dist, "cli", "common.js")).href)};
import { serveCommand } from ${JSON.stringify(pathToFileURL(join(dist, "cli", "commands", "serve.js")).href)};
const program = addGlobalOptions(new Command("tallrec")).exitOverride();
program.addCommand(serveCommand().exitOverride());
try {
  await program.parseAsync(process.argv.slice(1), { from: "user" });
} catch (err) {
  process.stderr.write("tallrec: " + err.message + "\\n");
  process.exitCode = err instanceof CliError ? err.exitCode : (err.exitCode ?? 1);
}
`;

interface Served {
  child: ChildProcess;
  url: Promise<string>;
  exit: Promise<{ code: number | null; stderr: string }>;
}

function serve(args: string[], env: Record<string, string> = {}): Served {
  const child = spawn(process.execPath, ["--input-type=module", "-e", script, "--", "--threads", "1", "serve", "--port", "0", ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  let resolveUrl!: (u: string) => void;
  const url = new Promise<string>((r) => (resolveUrl = r));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
    const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
    if (m) resolveUrl(m[1]);
  });
  const exit = new Promise<{ code: number | null; stderr: string }>((r) => child.on("exit", (code) => r({ code, stderr })));
  const listening = Promise.race([url, exit.then((e) => Promise.reject(new Error(`exited ${e.code}: ${e.stderr}`)))]);
  listening.catch(() => {}); // awaited only by the tests that expect the server to listen
  return { child, url: listening, exit };
}

async function ready(url: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const res = await fetch(`${url}/health`);
    if (res.status === 200) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("the server never became ready");
}

let m: Awaited<ReturnType<typeof testModels>>;
beforeAll(async () => {
  if (!existsSync(join(dist, "cli", "commands", "serve.js"))) throw new Error("dist/ is missing: run `npx tsc -p tsconfig.json` (npm test does it in pretest)");
  m = await testModels();
});

describe("tallrec serve", () => {
  it("serves scores with the API key from TALLREC_API_KEY, and shuts down on SIGTERM answering requests in flight", async () => {
    const s = serve(["-m", m.tiny, "-l", `movie=${m.loraA}`, "--max-batch", "4", "--batch-wait-ms", "0"], { TALLREC_API_KEY: "k3y" });
    try {
      const url = await s.url;
      await ready(url);
      const auth = { "content-type": "application/json", authorization: "Bearer k3y" };
      expect((await fetch(`${url}/v1/adapters`)).status).toBe(401);
      const adapters = (await (await fetch(`${url}/v1/adapters`, { headers: auth })).json()) as { adapters: Array<{ name: string; path: string }>; default: string };
      expect(adapters.adapters.map((a) => [a.name, a.path])).toEqual([["movie", "tiny-lora-a.gguf"]]);
      expect(adapters.default).toBe("movie");
      // 48 requests of 4 prompts: more work than the server does before the signal
      const rows = sampleRows("movie").slice(0, 192);
      const inFlight = Array.from({ length: 48 }, (_, i) => fetch(`${url}/v1/score`, { method: "POST", headers: auth, body: JSON.stringify({ items: rows.slice(4 * i, 4 * i + 4) }) }));
      // wait until the server has accepted all of them (scored, running or queued), with work left
      const metric = (text: string, name: string) => Number(/^(\S+) (\S+)$/m.exec(text.split("\n").find((l) => l.startsWith(`${name} `)) ?? "x 0")![2]);
      let scored = 0;
      for (;;) {
        const text = await (await fetch(`${url}/metrics`, { headers: auth })).text();
        scored = metric(text, 'tallrec_prompts_scored_total{adapter="movie"}');
        if (scored + metric(text, "tallrec_queue_prompts") + metric(text, "tallrec_running_prompts") === 192) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(scored).toBeLessThan(192);
      s.child.kill("SIGTERM");
      const answers = await Promise.all(inFlight.map((p) => p.then(async (res) => ({ status: res.status, body: (await res.json()) as { model: string; results: Array<{ pYes: number }> } }))));
      expect(answers.map((a) => a.status)).toEqual(new Array(48).fill(200));
      expect(answers.every((a) => a.body.model === "tiny" && a.body.results.length === 4 && a.body.results.every((r) => typeof r.pYes === "number"))).toBe(true);
      const { code, stderr } = await s.exit;
      expect(code).toBe(0);
      expect(stderr).toContain('"signal":"SIGTERM"');
    } finally {
      s.child.kill("SIGKILL");
    }
  });

  it("refuses to bind a non-loopback address without an API key (exit 2)", async () => {
    const s = serve(["-m", m.tiny, "--host", "0.0.0.0"], { TALLREC_API_KEY: "" });
    const { code, stderr } = await s.exit;
    expect(code).toBe(2);
    expect(stderr).toContain("tallrec: refusing to bind 0.0.0.0 without an API key: pass --api-key (or set TALLREC_API_KEY), or --insecure");
  });

  it("exits 1 naming the file when the model cannot be loaded", async () => {
    const s = serve(["-m", join(repoRoot, "models", "missing.gguf")]);
    const { code, stderr } = await s.exit;
    expect(code).toBe(1);
    expect(stderr).toMatch(/tallrec: cannot load the model: .*missing\.gguf/);
  });

  it("knows which hosts are loopback", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "::ffff:127.0.0.1"]) expect(isLoopback(h), h).toBe(true);
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "example.com", "128.0.0.1"]) expect(isLoopback(h), h).toBe(false);
  });
});

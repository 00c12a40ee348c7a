#!/usr/bin/env node
// npm run bench:compare -- --base REV [--head REV] [--bench score|server] [--rounds 3] -- <the bench's own options>
//
// A benchmark of this checkout against an earlier commit, side by side in one run: the commit is
// checked out into a git worktree (its dist/ compiled there; the addon, node_modules and models/
// are this checkout's, so only the TypeScript differs; --head REV does the same for the other side,
// else it is this checkout as it is), and the two trees' bench/<bench>.mjs run
// one after the other, alternating which goes first, `--rounds` times. The figures compared are
// each bench's throughput (score: prompts/s per mode; server: prompts/s per client level and its
// offline engine.score) and the ratios head/base of their medians. Writes JSON to bench/results/.
//
// e.g. npm run bench:compare -- --base f59bd26 --bench score -- --model bench --prompts 100 --reps 1 --no-llama-bench
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    base: { type: "string" },
    head: { type: "string" },
    bench: { type: "string", default: "score" },
    rounds: { type: "string", default: "3" },
    data: { type: "string", default: join(root, "..", "shared", "data") },
  },
});
if (!args.base) throw new Error("--base REV is required (the commit to compare against)");
if (!["score", "server"].includes(args.bench)) throw new Error(`--bench must be score or server, not ${args.bench}`);
const rounds = Number(args.rounds);
const git = (...a) => execFileSync("git", a, { cwd: root, encoding: "utf8" }).trim();
const baseSha = git("rev-parse", "--verify", `${args.base}^{commit}`);
const headSha = args.head ? git("rev-parse", "--verify", `${args.head}^{commit}`) : git("rev-parse", "HEAD") + (git("status", "--porcelain", "--untracked-files=no") ? " (with uncommitted changes)" : "");

/** A worktree of `rev` with its own dist/, this checkout's addon, packages and models. */
function worktree(rev) {
  const sha = git("rev-parse", "--verify", `${rev}^{commit}`);
  const dir = join(tmpdir(), `tallrec-base-${sha.slice(0, 12)}`);
  if (!existsSync(join(dir, "dist", "index.js"))) {
    rmSync(dir, { recursive: true, force: true });
    git("worktree", "prune");
    git("worktree", "add", "--detach", dir, sha);
    // models/ holds a tracked README: replaced by the link, so both trees read the same model files
    for (const p of ["node_modules", "build", "models"]) {
      rmSync(join(dir, p), { recursive: true, force: true });
      symlinkSync(join(root, p), join(dir, p));
    }
    console.log(`[compare] compiling ${sha.slice(0, 12)} in ${dir}`);
    execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], { cwd: dir, stdio: "inherit" });
  }
  return dir;
}
const baseDir = worktree(baseSha);
const headDir = args.head ? worktree(args.head) : root;
const trees = { base: baseDir, head: headDir };
const out = join(root, "bench", "results");
mkdirSync(out, { recursive: true });
const figures = { base: [], head: [] };
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? ["base", "head"] : ["head", "base"];
  for (const which of order) {
    const json = join(tmpdir(), `tallrec-compare-${which}.json`);
    console.log(`[compare] round ${r + 1}/${rounds}: ${which}`);
    rmSync(json, { force: true });
    // bench/server.mjs exits 1 when the server falls below 0.8x offline: still a measurement here
    const run = spawnSync(process.execPath, [join(trees[which], "bench", `${args.bench}.mjs`), "--data", args.data, "--json", json, ...positionals], { cwd: trees[which], stdio: ["ignore", "ignore", "inherit"] });
    if (!existsSync(json)) throw new Error(`${which}: bench/${args.bench}.mjs wrote no result (exit ${run.status})`);
    figures[which].push(extract(JSON.parse(readFileSync(json, "utf8"))));
  }
}

/** The throughput figures of one run, by name. */
function extract(run) {
  if (args.bench === "score") return Object.fromEntries(run.modes.map((m) => [`${m.mode} prompts/s`, m.promptsPerSecond]));
  const f = { "offline prompts/s": run.offline.promptsPerSecond };
  for (const s of run.server) f[`server ${s.clients} clients prompts/s`] = s.promptsPerSecond;
  return f;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const names = Object.keys(figures.head[0]);
const rows = names.map((name) => {
  const b = figures.base.map((f) => f[name]);
  const h = figures.head.map((f) => f[name]);
  // per round ratios too: a round's two runs are closest in time, so their ratio is the least noisy
  const perRound = h.map((x, i) => x / b[i]);
  return { name, base: median(b), head: median(h), ratio: median(h) / median(b), perRound };
});
const command = `npm run bench:compare -- ${process.argv.slice(2).join(" ")}`;
console.log(`\n${command}\nbase ${baseSha.slice(0, 12)}, head ${headSha.slice(0, 12)}, ${rounds} rounds (order alternating)\n`);
console.log("| figure | base | head | head/base (medians) | per round |");
console.log("| --- | ---: | ---: | ---: | --- |");
for (const r of rows) console.log(`| ${r.name} | ${r.base.toFixed(1)} | ${r.head.toFixed(1)} | ${r.ratio.toFixed(3)} | ${r.perRound.map((x) => x.toFixed(3)).join(", ")} |`);
const file = join(out, `compare-${args.bench}-${baseSha.slice(0, 8)}.json`);
writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), command, base: baseSha, head: headSha, rounds, figures, rows }, null, 2) + "\n");
console.log(`\nwrote ${file}`);

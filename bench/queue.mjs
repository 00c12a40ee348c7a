// Distributed batch (issue 15): `tallrec batch --queue` with 1 and 2 `tallrec worker` processes
// against local `tallrec batch`, one llama.cpp thread per process, on one machine, in one run.
//
//   node bench/queue.mjs [--model tiny|bench|PATH.gguf] [--rows 516] [--window 32] [--reps 2]
//
// Each mode runs the whole input and a one-row input; rows/s = (rows - 1) / (t_all - t_one), so
// process start and model load (local batch loads its model, the workers are started beforehand)
// cancel out. Outputs are checked byte for byte against local batch. Bytes through Redis are
// redis-server's own counters (total_net_input_bytes + total_net_output_bytes) over the run.
// CPU ms per row adds up the CPU time of every process of a mode (the batch process; with the
// queue also the workers and redis-server), the same difference of two runs: unlike rows/s it
// does not depend on what else the machine is running.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { benchModel } from "./models.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "dist", "cli", "main.js");
const arg = (name, d) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : d;
};
const rowsWanted = Number(arg("rows", 516));
const window = Number(arg("window", 32));
const reps = Number(arg("reps", 2));
const { model, lora } = await benchModel(arg("model", "tiny"), root);

const dir = mkdtempSync(join(tmpdir(), "tallrec-bench-queue-"));
const rows = ["movie", "book"].flatMap((d) => JSON.parse(readFileSync(join(root, "test", "fixtures", "tallrec", d, "test.json"), "utf8")));
const all = join(dir, "all.jsonl");
const one = join(dir, "one.jsonl");
const picked = Array.from({ length: rowsWanted }, (_, i) => rows[i % rows.length]);
writeFileSync(all, picked.map((r) => JSON.stringify(r)).join("\n") + "\n");
writeFileSync(one, JSON.stringify(picked[0]) + "\n");

const env = { ...process.env, TALLREC_THREADS: "1" };
const modelArgs = ["-m", model, ...(lora ? ["-l", lora] : [])];

const port = await new Promise((resolve) => {
  const s = createServer().listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const redisBin = spawnSync("sh", ["-c", "command -v redis-server"], { encoding: "utf8" }).stdout.trim();
if (!redisBin) throw new Error("redis-server is not installed (Debian: apt-get install redis-server)");
const redis = spawn(redisBin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], { stdio: ["ignore", "pipe", "inherit"] });
await new Promise((resolve) => redis.stdout.on("data", (d) => /Ready to accept/.test(String(d)) && resolve()));
const url = `redis://127.0.0.1:${port}/0`;
const netBytes = () => {
  const info = execFileSync("redis-cli", ["-p", String(port), "info", "stats"], { encoding: "utf8" });
  const get = (k) => Number(new RegExp(`${k}:(\\d+)`).exec(info)[1]);
  return get("total_net_input_bytes") + get("total_net_output_bytes");
};

// CPU seconds of a process so far (Linux /proc; clock ticks of 10 ms)
const cpuOf = (pid) => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
};
let busy = []; // pids whose CPU time counts for the queue modes (workers, redis-server)
let workerPids = [];

/** Runs batch; wall seconds and CPU seconds (the batch process, by bash's `times`, plus `busy`). */
function timeBatch(input, out, extra) {
  const c0 = busy.reduce((s, pid) => s + cpuOf(pid), 0);
  const w0 = workerPids.reduce((s, pid) => s + cpuOf(pid), 0);
  const t = performance.now();
  const r = spawnSync("bash", ["-c", '"$@"; s=$?; times >&2; exit $s', "bash", process.execPath, cli, "--threads", "1", "batch", input, "-o", out, ...modelArgs, "--window", String(window), "-q", ...extra], {
    env,
    encoding: "utf8",
  });
  const wall = (performance.now() - t) / 1000;
  if (r.status !== 0) throw new Error(`batch ${extra.join(" ")} exited ${r.status}: ${r.stderr}`);
  const m = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(r.stderr.trim());
  const own = m ? Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]) : NaN;
  const workers = workerPids.reduce((s, pid) => s + cpuOf(pid), 0) - w0;
  return { wall, cpu: own + busy.reduce((s, pid) => s + cpuOf(pid), 0) - c0, workers: workerPids.length ? workers : own };
}

async function startWorkers(n) {
  const ws = [];
  for (let i = 0; i < n; i++) {
    const w = spawn(process.execPath, [cli, "--threads", "1", "worker", "--queue", url, ...modelArgs], { env, stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    await new Promise((resolve, reject) => {
      w.stderr.on("data", (d) => {
        log += d;
        if (/waiting for jobs/.test(log)) resolve();
      });
      w.on("exit", (c) => reject(new Error(`worker exited ${c}: ${log}`)));
    });
    ws.push(w);
  }
  return ws;
}

// the modes take turns within each repetition, so that other load on the machine falls on all of them
const local = join(dir, "local.csv");
const modes = [
  { name: "local batch", workers: 0, best: Infinity, bytes: 0, cpu: Infinity },
  { name: "queue, 1 worker", workers: 1, best: Infinity, bytes: 0, cpu: Infinity },
  { name: "queue, 2 workers", workers: 2, best: Infinity, bytes: 0, cpu: Infinity },
];
const load = [];
function measure(mode) {
  const extra = mode.workers ? ["--queue", url] : [];
  const tOne = timeBatch(one, join(dir, "one.csv"), extra);
  const b0 = mode.workers ? netBytes() : 0;
  const out = mode.workers ? join(dir, "queue.csv") : local;
  const tAll = timeBatch(all, out, extra);
  if (mode.workers) mode.bytes = netBytes() - b0;
  if (mode.workers && !readFileSync(out).equals(readFileSync(local))) throw new Error(`${mode.name}: output differs from local batch`);
  mode.best = Math.min(mode.best, tAll.wall - tOne.wall);
  mode.cpu = Math.min(mode.cpu, tAll.cpu - tOne.cpu);
  mode.scorer = Math.min(mode.scorer ?? Infinity, tAll.workers - tOne.workers);
  process.stderr.write(`${mode.name}: ${((rowsWanted - 1) / (tAll.wall - tOne.wall)).toFixed(1)} rows/s, ${((1000 * (tAll.cpu - tOne.cpu)) / (rowsWanted - 1)).toFixed(1)} CPU ms/row\n`);
}
const stop = async (ws) => {
  for (const w of ws) w.kill("SIGTERM");
  await Promise.all(ws.map((w) => new Promise((r) => (w.exitCode !== null ? r() : w.on("exit", r)))));
};
try {
  for (let r = 0; r < reps; r++) {
    load.push(loadavg()[0]);
    busy = [];
    workerPids = [];
    measure(modes[0]);
    const a = await startWorkers(1);
    busy = [redis.pid, a[0].pid];
    workerPids = [a[0].pid];
    measure(modes[1]);
    const b = await startWorkers(1);
    busy = [redis.pid, a[0].pid, b[0].pid];
    workerPids = [a[0].pid, b[0].pid];
    measure(modes[2]);
    await stop([...a, ...b]);
  }
} finally {
  redis.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
const results = modes.map((m) => ({ name: m.name, rps: (rowsWanted - 1) / m.best, bytes: m.bytes, cpuMs: (1000 * m.cpu) / (rowsWanted - 1), scorerMs: (1000 * m.scorer) / (rowsWanted - 1) }));
const [loc, w1, w2] = results;
console.log(
  `\n${rowsWanted} TALLRec rows, --window ${window}, one thread per process, model ${arg("model", "tiny")}; best of ${reps}; load average before each repetition: ${load.map((l) => l.toFixed(1)).join(", ")} on ${cpus().length} cores`,
);
console.log("| mode | rows/s | vs local batch | vs 1 worker | CPU ms per row: all processes | of which the scoring processes | bytes through Redis per row |");
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const r of results)
  console.log(
    `| ${r.name} | ${r.rps.toFixed(1)} | ${(r.rps / loc.rps).toFixed(2)}x | ${r === loc ? "" : `${(r.rps / w1.rps).toFixed(2)}x`} | ${r.cpuMs.toFixed(1)} | ${r.scorerMs.toFixed(1)} | ${r.bytes ? (r.bytes / rowsWanted).toFixed(0) : ""} |`,
  );
console.log(`\noutputs: byte for byte local batch's (checked). 2 workers / 1 worker = ${(w2.rps / w1.rps).toFixed(2)}x (target >= 1.6x); 1 worker / local = ${(w1.rps / loc.rps).toFixed(2)}x (target >= 0.8x)`);

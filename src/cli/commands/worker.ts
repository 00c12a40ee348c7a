/**
 * `tallrec worker`: takes window jobs of `tallrec batch --queue` runs from a Redis-backed BullMQ
 * queue and scores them with its own engine (GPU or CPU). Run any number, on any machines that
 * reach the Redis server and hold the same model and adapter files (compared by SHA-256).
 */
import { Command, InvalidArgumentError } from "commander";

import { DEFAULT_QUEUE_NAME, redactUrl } from "../../distributed/common.js";
import { ScoreWorker } from "../../distributed/worker.js";
import { addModelOptions, allOptions, EXIT, loadEngine, loraSpecs, makeLog, modelPath, positiveIntArg, type ModelOptions } from "../common.js";

interface WorkerOptions extends ModelOptions {
  queue: string;
  queueName: string;
  concurrency: number;
  lockMs: number;
}

function msArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 100) throw new InvalidArgumentError("--lock-ms must be an integer of at least 100");
  return n;
}

export function workerCommand(): Command {
  const cmd = new Command("worker")
    .description("score the windows of `tallrec batch --queue` runs taken from a Redis-backed queue (BullMQ)")
    .requiredOption("--queue <url>", "Redis server: redis://HOST:PORT[/DB]")
    .option("--queue-name <name>", "BullMQ queue name", DEFAULT_QUEUE_NAME)
    .option("--concurrency <n>", "jobs taken at once (the engine scores one at a time; 2 overlaps fetching with scoring)", positiveIntArg("--concurrency"), 1)
    .option("--lock-ms <ms>", "job lock duration: a killed worker's job goes to another worker after about this long", msArg, 30_000)
    .addHelpText(
      "after",
      `
A worker refuses a job whose run was started with another model, other adapters (compared by
SHA-256 of the files, names and scales) or other --kv-type/--flash-attn/--ctx/--batch/--sequences;
the run then stops with that reason. Stop a worker with Ctrl-C (SIGINT/SIGTERM): it finishes the
job it holds. A worker killed with kill -9 loses nothing: its job is given to another worker once
its lock expires (--lock-ms).

Example:
  redis-server --port 6379 &
  tallrec worker --queue redis://127.0.0.1:6379 -m models/llama-7b.gguf -l movie=models/movie.gguf &
  tallrec batch test.json -o scores.csv --queue redis://127.0.0.1:6379 -m models/llama-7b.gguf -l movie=models/movie.gguf`,
    )
    .action(async (_o, command: Command) => {
      const o = allOptions<WorkerOptions>(command);
      const log = makeLog(o);
      const model = modelPath(o);
      const engine = await loadEngine(o, o);
      let worker: ScoreWorker;
      try {
        worker = await ScoreWorker.start({
          url: o.queue,
          queueName: o.queueName,
          engine,
          model,
          adapters: loraSpecs(o),
          flags: { kvType: o.kvType ?? null, flashAttn: o.flashAttn ?? null, ctx: o.ctx ?? null, batch: o.batch ?? null, sequences: o.sequences ?? null },
          concurrency: o.concurrency,
          lockMs: o.lockMs,
          log,
        });
      } catch (err) {
        await engine.close();
        throw err;
      }
      log(`worker ${worker.name} waiting for jobs on ${redactUrl(o.queue)} (queue ${o.queueName})`);
      await new Promise<void>((resolve) => {
        let signalled = 0;
        const stop = (sig: NodeJS.Signals) => {
          if (++signalled > 1) process.exit(EXIT.INTERRUPTED);
          log(`${sig}: finishing the job in hand, then stopping`);
          resolve();
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
      });
      await worker.close();
      await engine.close();
      log(`worker ${worker.name}: ${worker.jobs} windows scored${worker.refused ? `, ${worker.refused} refused` : ""}`);
      process.exitCode = EXIT.OK;
    });
  return addModelOptions(cmd);
}

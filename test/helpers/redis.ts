/**
 * A real `redis-server` for the tests (Debian package `redis-server`): on a free loopback port,
 * 127.0.0.1 only, no persistence, in a temporary folder, killed in afterAll. Where it is absent the
 * tests that need it are skipped with the reason printed once; under CI (`CI=true`) they fail.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The redis-server binary, or null. */
export const redisServerBin: string | null = (() => {
  const r = spawnSync("sh", ["-c", "command -v redis-server"], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
})();

/** Why the Redis tests cannot run here (null: they can). Under CI a missing server is an error, not a skip. */
export const redisMissing = redisServerBin ? null : "redis-server is not installed (Debian: apt-get install redis-server)";

let said = false;
/** Prints the skip reason once per process. */
export function sayRedisSkipped(what: string): void {
  if (!redisMissing || said) return;
  said = true;
  process.stderr.write(`\nskipped: ${what}: ${redisMissing}\n`);
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  port: number;
  url(db?: number): string;
  stop(): Promise<void>;
}

/** Starts redis-server and resolves once it accepts connections. */
export async function startRedis(): Promise<RedisServer> {
  if (!redisServerBin) throw new Error(redisMissing!);
  const dir = mkdtempSync(join(tmpdir(), "tallrec-redis-"));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child: ChildProcess = spawn(redisServerBin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "yes"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let log = "";
    child.stdout!.on("data", (d: Buffer) => (log += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 10_000);
      const check = () => {
        if (/Ready to accept connections/i.test(log)) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      child.stdout!.on("data", check);
      child.on("exit", () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (ok) {
      return {
        port,
        url: (db = 0) => `redis://127.0.0.1:${port}/${db}`,
        stop: () =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.on("exit", () => resolve());
            child.kill("SIGKILL");
          }).finally(() => rmSync(dir, { recursive: true, force: true })),
      };
    }
    child.kill("SIGKILL");
    if (attempt >= 2) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server did not start: ${log.slice(-2000)}`);
    }
  }
}

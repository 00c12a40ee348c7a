/**
 * Chat-REC sessions shared through Redis, so that `tallrec serve` replicas behind a load balancer
 * continue each other's conversations (`tallrec serve --sessions redis://HOST:PORT[/DB]`).
 *
 * The service keeps using its in-memory {@link SessionStore} as the working copy; Redis holds the
 * shared copy, with the same bounds: a session expires `ttlMs` after its last use (the key's
 * PEXPIRE, renewed on every use) and at most `maxSessions` are kept (a sorted set by last use; the
 * least recently used go first). Before a session is read it is loaded from Redis (`load`), and
 * after it changes it is written back (`sync`). Turns of one session run one at a time across all
 * replicas (a Redis lock per session, released when the turn ends or after `lockMs`).
 *
 * @module
 */
import { randomUUID } from "node:crypto";

import type { Redis } from "ioredis";

import { ChatRecError } from "./errors.js";
import type { ChatService } from "./service.js";
import type { ChatRec, SessionInfo, TurnOptions, TurnResult } from "./pipeline.js";
import type { Session } from "./session.js";

/** Options of {@link RedisSessions}. */
export interface RedisSessionsOptions {
  /** Key prefix (default "tallrec:chat:"). */
  prefix?: string;
  /** Longest a turn holds its session's lock, ms (default 10 minutes). */
  lockMs?: number;
  /** Longest a turn waits for another replica's turn of the same session, ms (default 60 s; then 409 busy). */
  lockWaitMs?: number;
}

type Stored = Omit<Session, "shown" | "queue"> & { shown: string[] };

function toStored(s: Session): Stored {
  const { queue: _q, shown, ...rest } = s;
  return { ...rest, shown: [...shown] };
}

function fromStored(x: Stored): Session {
  return { ...x, shown: new Set(x.shown), queue: Promise.resolve() };
}

// drops the least recently used sessions beyond ARGV[1], atomically (concurrent syncs evict once)
const EVICT = `local n = redis.call("zcard", KEYS[1]) - tonumber(ARGV[1])
if n <= 0 then return {} end
local ids = redis.call("zrange", KEYS[1], 0, n - 1)
redis.call("zremrangebyrank", KEYS[1], 0, n - 1)
for _, id in ipairs(ids) do redis.call("del", ARGV[2] .. id) end
return ids`;

const RELEASE = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`;

/** A {@link ChatRec} whose sessions are shared through Redis. */
export class RedisSessions implements ChatService {
  private readonly prefix: string;
  private readonly lockMs: number;
  private readonly lockWaitMs: number;
  /** Sessions started here and not yet written to Redis. */
  private readonly unsynced = new Set<string>();

  constructor(
    readonly chat: ChatRec,
    private readonly redis: Redis,
    options: RedisSessionsOptions = {},
  ) {
    this.prefix = options.prefix ?? "tallrec:chat:";
    this.lockMs = options.lockMs ?? 10 * 60_000;
    this.lockWaitMs = options.lockWaitMs ?? 60_000;
  }

  private key(id: string): string {
    return `${this.prefix}session:${id}`;
  }
  private get index(): string {
    return `${this.prefix}sessions`;
  }
  private get ttlMs(): number {
    return this.chat.sessions.ttlMs;
  }

  startSession(user: string | number): SessionInfo {
    const info = this.chat.startSession(user);
    if (this.unsynced.size >= this.chat.sessions.maxSessions) for (const id of this.unsynced) if (!this.chat.sessions.get(id)) this.unsynced.delete(id);
    this.unsynced.add(info.sessionId);
    // shared at once also for callers that do not call sync() (it is queued on the connection
    // before any later command about this session)
    this.sync(info.sessionId).catch(() => {});
    return info;
  }
  session(sessionId: string): SessionInfo {
    return this.chat.session(sessionId);
  }
  endSession(sessionId: string): boolean {
    return this.chat.endSession(sessionId);
  }

  /** Makes this process's copy of the session the shared one (or forgets it when Redis has none). */
  async load(sessionId: string): Promise<void> {
    if (typeof sessionId !== "string" || sessionId === "") return;
    const raw = await this.redis.get(this.key(sessionId));
    if (raw === null) {
      if (!this.unsynced.has(sessionId)) this.chat.sessions.delete(sessionId); // ended or expired elsewhere
      return;
    }
    const s = fromStored(JSON.parse(raw) as Stored);
    const local = this.chat.sessions.get(sessionId);
    if (local) s.queue = local.queue; // turns in this process stay in order
    s.lastUsed = Date.now();
    this.chat.sessions.put(s);
    await this.redis.multi().pexpire(this.key(sessionId), this.ttlMs).zadd(this.index, s.lastUsed, sessionId).exec();
  }

  /** Writes this process's copy back to Redis; removes the shared one when the session is gone here. */
  async sync(sessionId: string): Promise<void> {
    const s = this.chat.sessions.get(sessionId);
    this.unsynced.delete(sessionId);
    if (!s) {
      await this.redis.multi().del(this.key(sessionId)).zrem(this.index, sessionId).exec();
      return;
    }
    const now = Date.now();
    await this.redis
      .multi()
      .set(this.key(s.id), JSON.stringify(toStored(s)), "PX", this.ttlMs)
      .zadd(this.index, s.lastUsed, s.id)
      .zremrangebyscore(this.index, "-inf", now - this.ttlMs)
      .exec();
    const evicted = (await this.redis.eval(EVICT, 1, this.index, this.chat.sessions.maxSessions, this.key(""))) as string[];
    for (const id of evicted) this.chat.sessions.delete(id);
  }

  /** One turn: waits for the session's lock, loads it, runs the turn here, writes it back. */
  async turn(sessionId: string, message: string, options: TurnOptions = {}): Promise<TurnResult> {
    if (typeof sessionId !== "string" || sessionId === "") throw new ChatRecError("invalid_input", "a session id must be a non-empty string");
    const lock = `${this.prefix}lock:${sessionId}`;
    const token = randomUUID();
    const deadline = Date.now() + this.lockWaitMs;
    while ((await this.redis.set(lock, token, "PX", this.lockMs, "NX")) !== "OK") {
      if (Date.now() > deadline) throw new ChatRecError("busy", `session ${JSON.stringify(sessionId)} is busy with another turn; try again`);
      if (options.signal?.aborted) throw new ChatRecError("busy", "cancelled while waiting for the session's previous turn");
      await new Promise((r) => setTimeout(r, 25));
    }
    try {
      await this.load(sessionId);
      const result = await this.chat.turn(sessionId, message, options);
      await this.sync(sessionId);
      return result;
    } finally {
      await this.redis.eval(RELEASE, 1, lock, token).catch(() => {});
    }
  }
}

/**
 * Conversation state and a bounded, expiring session store.
 *
 * A session holds the user, the dialogue so far, the filters the conversation has built up, the
 * last recommendations (what "the second" and "that one" refer to) and every item shown (what
 * "something else" leaves out). The store keeps at most `maxSessions` sessions, evicting the least
 * recently used, and forgets a session `ttlMs` after its last use (checked lazily on every access:
 * no timers).
 *
 * @module
 */
import { randomUUID } from "node:crypto";

import { ChatRecError } from "./errors.js";
import type { Mood } from "./intent.js";

/** The filters a conversation has built up. */
export interface Filters {
  /** Wanted genres (an item needs one of them); empty: any. */
  genres: string[];
  /** Genres an item must not have. */
  excludeGenres: string[];
  /** Release year range, inclusive. */
  yearMin?: number;
  yearMax?: number;
  mood?: Mood;
  /** Items never to recommend again in this conversation. */
  excludeItems: string[];
  /** Candidates come from items similar to these (item-to-item), when set. */
  similarTo: string[];
}

/** Blank filters. */
export function emptyFilters(): Filters {
  return { genres: [], excludeGenres: [], excludeItems: [], similarTo: [] };
}

/** One recommendation as a session remembers it. */
export interface ShownItem {
  item: string;
  title: string;
  year?: number;
}

/** One turn of the dialogue. */
export interface ChatTurn {
  role: "user" | "assistant";
  content: string;
  /** Items recommended in this turn (assistant turns). */
  items?: string[];
  at: number;
}

/** A conversation. */
export interface Session {
  readonly id: string;
  readonly user: string;
  readonly createdAt: number;
  lastUsed: number;
  /** The dialogue so far, oldest first. */
  turns: ChatTurn[];
  filters: Filters;
  /** The last recommendations, best first. */
  last: ShownItem[];
  /** Every item recommended in this session. */
  shown: Set<string>;
  /** The item "that one" refers to: the one last referred to by position or title. */
  focus?: string;
  /** Items the user said they liked / disliked in this conversation (added to the TALLRec history). */
  liked: string[];
  disliked: string[];
  /** Turns completed. */
  turnCount: number;
  /** Tail of the queue of this session's turns (turns of one session run one at a time). */
  queue: Promise<unknown>;
}

/** Options of {@link SessionStore}. */
export interface SessionStoreOptions {
  /** Most sessions kept (default 1000); the least recently used goes first. */
  maxSessions?: number;
  /** A session is forgotten this long after its last use, ms (default 30 minutes). */
  ttlMs?: number;
  /** Clock (default Date.now), for tests. */
  now?: () => number;
  /** Most dialogue turns kept per session (default 200); older ones are dropped. */
  maxTurns?: number;
}

/** Sessions by id, bounded (LRU) and expiring (TTL). */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  readonly maxSessions: number;
  readonly ttlMs: number;
  readonly maxTurns: number;
  private readonly now: () => number;
  /** Sessions dropped to stay within `maxSessions`, and dropped after `ttlMs`. */
  readonly dropped = { evicted: 0, expired: 0 };

  constructor(options: SessionStoreOptions = {}) {
    const int = (name: string, v: number | undefined, d: number) => {
      if (v === undefined) return d;
      if (!Number.isInteger(v) || v < 1) throw new ChatRecError("invalid_input", `${name} must be a positive integer, not ${v}`);
      return v;
    };
    this.maxSessions = int("maxSessions", options.maxSessions, 1000);
    this.ttlMs = int("ttlMs", options.ttlMs, 30 * 60_000);
    this.maxTurns = int("maxTurns", options.maxTurns, 200);
    this.now = options.now ?? Date.now;
  }

  /** Live sessions. */
  get size(): number {
    this.sweep();
    return this.sessions.size;
  }

  /** Starts a session for `user` (evicting the least recently used one when full). */
  create(user: string): Session {
    const t = this.now();
    const s: Session = {
      id: randomUUID(),
      user,
      createdAt: t,
      lastUsed: t,
      turns: [],
      filters: emptyFilters(),
      last: [],
      shown: new Set(),
      liked: [],
      disliked: [],
      turnCount: 0,
      queue: Promise.resolve(),
    };
    this.put(s);
    return s;
  }

  /** The session, marked as used now; undefined when unknown or expired. */
  get(id: string): Session | undefined {
    this.sweep();
    const s = this.sessions.get(id);
    if (!s) return undefined;
    s.lastUsed = this.now();
    this.sessions.delete(id);
    this.sessions.set(id, s);
    return s;
  }

  /**
   * Puts a session in the store (replacing one with its id) as the most recently used, evicting
   * the least recently used beyond `maxSessions`: for sessions kept elsewhere too (Redis, see
   * session-redis.ts) and brought here for a turn.
   */
  put(s: Session): void {
    this.sessions.delete(s.id);
    this.sweep();
    while (this.sessions.size >= this.maxSessions) {
      const oldest = this.sessions.keys().next().value as string;
      this.sessions.delete(oldest);
      this.dropped.evicted++;
    }
    this.sessions.set(s.id, s);
  }

  /** The session, or a ChatRecError (unknown_session) saying it is unknown or expired. */
  require(id: string): Session {
    if (typeof id !== "string" || id === "") throw new ChatRecError("invalid_input", "a session id must be a non-empty string");
    const s = this.get(id);
    if (!s) throw new ChatRecError("unknown_session", `unknown session ${JSON.stringify(id)}: it never existed or expired (sessions expire ${Math.round(this.ttlMs / 1000)} s after their last turn); start a new one`);
    return s;
  }

  /** Forgets a session; false when there was none. */
  delete(id: string): boolean {
    return this.sessions.delete(id);
  }

  /** Appends a turn, dropping the oldest beyond `maxTurns`. */
  addTurn(s: Session, turn: Omit<ChatTurn, "at">): void {
    s.turns.push({ ...turn, at: this.now() });
    if (s.turns.length > this.maxTurns) s.turns.splice(0, s.turns.length - this.maxTurns);
  }

  /** Drops expired sessions (the map is in least-recently-used order, so it stops at the first live one). */
  sweep(): void {
    const t = this.now();
    for (const [id, s] of this.sessions) {
      if (t - s.lastUsed < this.ttlMs) break;
      this.sessions.delete(id);
      this.dropped.expired++;
    }
  }
}

/**
 * What a Chat-REC front end (the HTTP routes, the OpenAI-compatible `chatrec` model, `tallrec
 * serve`'s pending service) needs of the recommender: a {@link ChatRec} or anything with the same
 * methods ({@link RedisSessions} wraps one to share its sessions).
 *
 * @module
 */
import type { SessionInfo, TurnOptions, TurnResult } from "./pipeline.js";

/** A {@link ChatRec} or anything with the same methods. */
export interface ChatService {
  startSession(user: string | number): SessionInfo;
  session(sessionId: string): SessionInfo;
  turn(sessionId: string, message: string, options?: TurnOptions): Promise<TurnResult>;
  endSession(sessionId: string): boolean;
  /**
   * Sessions kept in a store shared by several servers (`tallrec serve --sessions redis://...`,
   * session-redis.ts): `load` brings the shared copy of a session into this process before the
   * calls above read it, `sync` writes this process's copy back (or removes it when ended).
   * Without them sessions live in this process only.
   */
  load?(sessionId: string): Promise<void>;
  sync?(sessionId: string): Promise<void>;
}

/**
 * The scheduler: the one queue in front of an engine's scoring context. Every caller (the library's
 * `engine.score`, the HTTP routes, Chat-REC's re-ranking, the CLI) submits jobs (lists of items);
 * jobs submitted concurrently are merged into batches for one runner call at a time, grouped by a
 * key (adapter set, scoring rule, sharing), with a bounded wait, a bounded batch size, a bounded
 * queue, cancellation, and round-robin fairness between jobs. Generic over the item type, so its
 * rules are tested without a model (test/scheduler.test.ts).
 *
 * ```ts
 * const scheduler = new Scheduler({ run: (group, items, signal) => execute(group, items, signal), maxBatch: 64, maxWaitMs: 2, maxQueue: 1024 });
 * const { results } = await scheduler.submit(items, { group: { adapter: "movie" }, signal });
 * ```
 *
 * Rules:
 * - **One batch at a time.** The runner is never called again before its previous call settled.
 * - **Bounded wait.** When the runner is idle, a batch starts as soon as `maxBatch` items are
 *   queued or the oldest queued job has waited `maxWaitMs`; jobs that arrive while a batch runs go
 *   into the next one, which starts as soon as the runner is free.
 * - **Grouping.** A batch holds items of one group only (jobs whose `groupKey` is the same): the
 *   group of the job at the head of the queue, then every other queued job of that group, in queue
 *   order, until `maxBatch` items.
 * - **Fairness.** The room of a batch is shared among the group's queued jobs, max-min fair: each
 *   gets an equal share, and what a job does not need goes to the others. A job larger than its
 *   share is split: its first items go into this batch and it moves to the back of the queue, so a
 *   job queued behind a large one gets into the very next batch, and the large one still makes
 *   progress in every batch of its group. An `atomic` job (at most `maxBatch` items) is never
 *   split: it is taken whole when it fits (the job at the head of the queue always does) and else
 *   waits for the next batch; its items then share one runner call.
 * - **Bounded queue.** Items waiting (not yet handed to the runner) never exceed `maxQueue`;
 *   a submit that would exceed it is rejected with {@link QueueFullError} (code `queue_full`) at once.
 * - **Cancellation.** Aborting a job's signal rejects it at once and drops its items that are still
 *   queued; items already in a running batch finish with that batch and their results are dropped,
 *   unless every job in the batch was cancelled: then the batch's own signal (the runner's third
 *   argument) aborts too, so the runner can stop early.
 * - **Failure.** A runner error (or a result array of the wrong length) rejects every job with
 *   items in that batch; other jobs are unaffected.
 * - **Interceptors.** {@link Scheduler.intercept} wraps every runner call (tracing, a test's gate);
 *   {@link Scheduler.addBatchListener} observes each batch after it ran (metrics).
 */
import { TallrecError } from "../errors.js";

/** Why a submit was refused: the queue holds too many items (code `queue_full`, with `retryAfterSeconds`: 1–60, from recent throughput). */
export class QueueFullError extends TallrecError {
  declare readonly retryAfterSeconds: number;
  constructor(
    readonly queued: number,
    readonly limit: number,
    readonly requested: number,
    retryAfterSeconds: number,
  ) {
    super("queue_full", `the queue is full (${queued} of ${limit} items queued, ${requested} more requested)`, { retryAfterSeconds });
  }
}

/** A submit after {@link Scheduler.close} (code `closed`). */
export class SchedulerClosedError extends TallrecError {
  constructor() {
    super("closed", "the scheduler is closed and accepts no new work", { retryAfterSeconds: 5 });
  }
}

/** Bounds of a scheduler (see the module comment). */
export interface SchedulerBounds {
  /** Most items per runner call (default 64). */
  maxBatch?: number;
  /** Longest time the oldest queued job waits for others to join its batch, in ms (default 2). */
  maxWaitMs?: number;
  /** Most items queued (waiting for a batch) at once (default 1024). */
  maxQueue?: number;
}

/** Wraps a runner call: call `next()` to run the batch (or the next interceptor). */
export type Interceptor<I, R, G> = (group: G, items: readonly I[], next: () => Promise<R[]>) => Promise<R[]>;

export interface SchedulerOptions<I, R, G> extends SchedulerBounds {
  /**
   * Runs one batch: all items belong to `group`; must return one result per item, in order.
   * `signal` aborts when every job with items in the batch has been cancelled.
   */
  run: (group: G, items: I[], signal: AbortSignal) => Promise<R[]>;
  /** The key that decides which jobs may share a batch (default: JSON.stringify of the group). */
  groupKey?: (group: G) => string;
  /** Called after every batch (for metrics). */
  onBatch?: (info: BatchInfo<G>) => void;
}

/** What one batch was (passed to {@link SchedulerOptions.onBatch} and batch listeners). */
export interface BatchInfo<G> {
  group: G;
  /** Items in the batch. */
  items: number;
  /** Jobs with items in the batch. */
  jobs: number;
  /** How long the batch's oldest job had waited when the batch started, in ms. */
  waitedMs: number;
  /** How long the runner took, in ms. */
  runMs: number;
  /** The runner's error, when it failed. */
  error?: unknown;
  /** The batch's results, in item order, when it succeeded. */
  results?: readonly unknown[];
}

export interface SubmitOptions<G> {
  /** The job's group: only jobs of the same group (by `groupKey`) share a batch. */
  group: G;
  /** Cancels the job: queued items are dropped and the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Keep all items in one runner call (at most `maxBatch` items). */
  atomic?: boolean;
}

/** A job's outcome. */
export interface JobResult<R> {
  /** One result per submitted item, in order. */
  results: R[];
  /** Runner calls the job's items went into. */
  batches: number;
  /** Time from submit until the job's first item went to the runner, in ms. */
  queuedMs: number;
}

/** A snapshot of the scheduler's state (for health checks and metrics). */
export interface SchedulerStats {
  /** Jobs with items waiting for a batch. */
  queuedJobs: number;
  /** Items waiting for a batch (bounded by maxQueue). */
  queuedItems: number;
  /** Items in the running batch. */
  runningItems: number;
  /** Batches run so far. */
  batches: number;
  /** Items handed to the runner so far. */
  itemsRun: number;
  /** Jobs cancelled through their signal. */
  cancelled: number;
  /** Submits refused because the queue was full. */
  rejected: number;
  /** Recent throughput estimate, items per second (0 before the first batch). */
  itemsPerSecond: number;
}

interface Job<I, R, G> {
  items: I[];
  results: R[];
  group: G;
  key: string;
  atomic: boolean;
  enqueuedAt: number;
  startedAt: number;
  /** Index of the next item to hand to the runner. */
  next: number;
  /** Items whose results arrived. */
  done: number;
  batches: number;
  settled: boolean;
  resolve: (r: JobResult<R>) => void;
  reject: (err: unknown) => void;
  cleanup: () => void;
}

interface Segment<I, R, G> {
  job: Job<I, R, G>;
  from: number;
  count: number;
}

interface Exclusive {
  fn: () => unknown;
  resolve: (v: unknown) => void;
  reject: (err: unknown) => void;
}

function positive(name: string, v: number | undefined, fallback: number, allowZero = false): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v < (allowZero ? 0 : 1) || (!allowZero && !Number.isInteger(v))) {
    throw new TallrecError("invalid_input", `${name} must be a ${allowZero ? "non-negative number" : "positive integer"}, not ${JSON.stringify(v)}`);
  }
  return v;
}

/** Merges concurrently submitted jobs into bounded, grouped batches; see the module comment for the rules. */
export class Scheduler<I, R, G = string> {
  maxBatch: number;
  maxWaitMs: number;
  maxQueue: number;
  private readonly runFn: (group: G, items: I[], signal: AbortSignal) => Promise<R[]>;
  private readonly keyOf: (group: G) => string;
  private readonly listeners = new Set<(info: BatchInfo<G>) => void>();
  private interceptors: Array<Interceptor<I, R, G>> = [];

  private queue: Array<Job<I, R, G>> = [];
  private queuedItems = 0;
  private runningItems = 0;
  private running = false;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private exclusives: Exclusive[] = [];
  private idleWaiters: Array<() => void> = [];
  private counters = { batches: 0, itemsRun: 0, cancelled: 0, rejected: 0 };
  private rate = 0;

  constructor(options: SchedulerOptions<I, R, G>) {
    if (!options || typeof options.run !== "function") throw new TypeError("Scheduler needs a run(group, items) function");
    this.runFn = options.run;
    this.maxBatch = positive("maxBatch", options.maxBatch, 64);
    this.maxWaitMs = positive("maxWaitMs", options.maxWaitMs, 2, true);
    this.maxQueue = positive("maxQueue", options.maxQueue, 1024);
    this.keyOf = options.groupKey ?? ((g: G) => JSON.stringify(g) ?? "");
    if (options.onBatch) this.listeners.add(options.onBatch);
  }

  /** Changes the bounds (e.g. a server applying its limits to the engine it serves); applies from the next batch. */
  configure(bounds: SchedulerBounds): void {
    const maxBatch = positive("maxBatch", bounds.maxBatch, this.maxBatch);
    const maxWaitMs = positive("maxWaitMs", bounds.maxWaitMs, this.maxWaitMs, true);
    const maxQueue = positive("maxQueue", bounds.maxQueue, this.maxQueue);
    Object.assign(this, { maxBatch, maxWaitMs, maxQueue });
    this.pump();
  }

  /** Calls `fn` after every batch (for metrics); returns a function that removes it. */
  addBatchListener(fn: (info: BatchInfo<G>) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Wraps every runner call in `fn` (outermost last added); returns a function that removes it. */
  intercept(fn: Interceptor<I, R, G>): () => void {
    this.interceptors.push(fn);
    return () => {
      this.interceptors = this.interceptors.filter((f) => f !== fn);
    };
  }

  /**
   * Queues a job and resolves with one result per item once all its items were run. Rejects with
   * {@link QueueFullError} (queue bound), {@link SchedulerClosedError} (after close), code `empty`
   * (no items) or `too_many_items` (an atomic job over maxBatch), the signal's reason (cancelled),
   * or the runner's error.
   */
  submit(items: readonly I[], options: SubmitOptions<G>): Promise<JobResult<R>> {
    if (this.closed) return Promise.reject(new SchedulerClosedError());
    if (!Array.isArray(items) || items.length === 0) return Promise.reject(new TallrecError("empty", "a job needs at least one item"));
    const atomic = options.atomic ?? false;
    if (atomic && items.length > this.maxBatch) {
      return Promise.reject(new TallrecError("too_many_items", `an atomic job has at most maxBatch (${this.maxBatch}) items, not ${items.length}`));
    }
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.queuedItems + items.length > this.maxQueue) {
      this.counters.rejected++;
      return Promise.reject(new QueueFullError(this.queuedItems, this.maxQueue, items.length, this.retryAfterSeconds(items.length)));
    }
    return new Promise<JobResult<R>>((resolve, reject) => {
      const job: Job<I, R, G> = {
        items: items.slice(),
        results: new Array(items.length),
        group: options.group,
        key: this.keyOf(options.group),
        atomic,
        enqueuedAt: performance.now(),
        startedAt: -1,
        next: 0,
        done: 0,
        batches: 0,
        settled: false,
        resolve,
        reject,
        cleanup: () => {},
      };
      if (signal) {
        const onAbort = () => this.cancel(job, signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        job.cleanup = () => signal.removeEventListener("abort", onAbort);
      }
      this.queue.push(job);
      this.queuedItems += items.length;
      this.pump();
    });
  }

  /**
   * Runs `fn` alone: after the running batch (if any) and before the next one. For changes that
   * must not overlap a runner call (loading or unloading adapters).
   */
  exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.exclusives.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      this.pump();
    });
  }

  /** Current queue and totals. */
  get stats(): SchedulerStats {
    return {
      queuedJobs: this.queue.length,
      queuedItems: this.queuedItems,
      runningItems: this.runningItems,
      ...this.counters,
      itemsPerSecond: this.rate,
    };
  }

  /** A Retry-After estimate in whole seconds (1–60) for `extra` more items, from recent throughput. */
  retryAfterSeconds(extra = 0): number {
    if (this.rate <= 0) return 1;
    const s = Math.ceil((this.queuedItems + this.runningItems + extra) / this.rate);
    return Math.min(60, Math.max(1, s));
  }

  /** Stops accepting jobs; jobs already queued still run. */
  close(): void {
    this.closed = true;
  }

  /** True after {@link close}. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Rejects every queued job with `reason` (running batches finish); for a hard stop. */
  abortQueued(reason: unknown): void {
    for (const job of [...this.queue]) this.fail(job, reason);
    this.pump();
  }

  private isIdle(): boolean {
    return !this.running && this.queue.length === 0 && this.exclusives.length === 0;
  }

  private cancel(job: Job<I, R, G>, reason: unknown): void {
    if (job.settled) return;
    this.counters.cancelled++;
    this.fail(job, reason);
    this.pump();
  }

  /** Settles a job as failed and drops its queued items. */
  private fail(job: Job<I, R, G>, reason: unknown): void {
    this.dequeue(job);
    if (job.settled) return;
    job.settled = true;
    job.cleanup();
    job.reject(reason);
  }

  private dequeue(job: Job<I, R, G>): void {
    const i = this.queue.indexOf(job);
    if (i >= 0) {
      this.queue.splice(i, 1);
      this.queuedItems -= job.items.length - job.next;
      job.next = job.items.length;
    }
  }

  private pump(): void {
    if (this.running) return;
    if (this.exclusives.length > 0) {
      this.runExclusive(this.exclusives.shift()!);
      return;
    }
    if (this.queue.length === 0) {
      this.clearTimer();
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
      return;
    }
    const now = performance.now();
    let oldest = Infinity;
    for (const j of this.queue) oldest = Math.min(oldest, j.enqueuedAt);
    const waited = now - oldest;
    if (this.queuedItems >= this.maxBatch || waited >= this.maxWaitMs) {
      this.clearTimer();
      this.dispatch(waited);
    } else if (this.timer === null) {
      this.timer = setTimeout(
        () => {
          this.timer = null;
          this.pump();
        },
        Math.max(0, this.maxWaitMs - waited),
      );
    }
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private runExclusive(x: Exclusive): void {
    this.running = true;
    Promise.resolve()
      .then(x.fn)
      .then(x.resolve, x.reject)
      .finally(() => {
        this.running = false;
        this.pump();
      });
  }

  private dispatch(waitedMs: number): void {
    const head = this.queue[0];
    const key = head.key;
    // share the batch among the group's queued jobs (max-min fair, in queue order): each job gets
    // an equal share of the room, what a job does not need goes to the others; an atomic job is
    // taken whole when it fits (the head job always fits) and else waits for the next batch
    const take = new Map<Job<I, R, G>, number>();
    let room = this.maxBatch;
    let active = this.queue.filter((j) => j.key === key);
    while (room > 0 && active.length > 0) {
      const share = Math.max(1, Math.floor(room / active.length));
      const still: Array<Job<I, R, G>> = [];
      for (const job of active) {
        if (room === 0) break;
        const taken = take.get(job) ?? 0;
        const left = job.items.length - job.next - taken;
        if (job.atomic) {
          if (left <= room) {
            take.set(job, left);
            room -= left;
          }
          continue;
        }
        const n = Math.min(left, share, room);
        take.set(job, taken + n);
        room -= n;
        if (left > n) still.push(job);
      }
      active = still;
    }
    const segments: Array<Segment<I, R, G>> = [];
    const stay: Array<Job<I, R, G>> = [];
    const partial: Array<Job<I, R, G>> = [];
    const now = performance.now();
    for (const job of this.queue) {
      const count = take.get(job) ?? 0;
      if (count === 0) {
        stay.push(job);
        continue;
      }
      segments.push({ job, from: job.next, count });
      if (job.startedAt < 0) job.startedAt = now;
      job.next += count;
      job.batches++;
      if (job.next < job.items.length) partial.push(job);
    }
    // split jobs go to the back of the queue
    this.queue = [...stay, ...partial];
    const items: I[] = [];
    for (const s of segments) for (let k = 0; k < s.count; k++) items.push(s.job.items[s.from + k]);
    this.queuedItems -= items.length;
    this.runningItems = items.length;
    this.running = true;
    this.counters.batches++;
    this.counters.itemsRun += items.length;

    // the batch's own signal: aborted once every job with items in it was cancelled
    const batchAbort = new AbortController();
    const jobs = segments.map((s) => s.job);
    const watch = () => {
      if (jobs.every((j) => j.settled)) batchAbort.abort(new TallrecError("aborted", "every call in the batch was cancelled"));
    };
    const unwatch = jobs.map((j) => {
      const prev = j.cleanup;
      j.cleanup = () => {
        prev();
        queueMicrotask(watch);
      };
      return () => (j.cleanup = prev);
    });

    const t0 = performance.now();
    let call = (): Promise<R[]> => this.runFn(head.group, items, batchAbort.signal);
    for (const fn of this.interceptors) {
      const next = call;
      call = () => fn(head.group, items, next);
    }
    let p: Promise<R[]>;
    try {
      p = Promise.resolve(call());
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (results) => {
        if (!Array.isArray(results) || results.length !== items.length) {
          return { error: new Error(`the batch runner returned ${Array.isArray(results) ? results.length : typeof results} results for ${items.length} items`) as unknown };
        }
        return { results };
      },
      (error: unknown) => ({ error }),
    ).then((outcome: { results?: R[]; error?: unknown }) => {
      const runMs = performance.now() - t0;
      if (runMs > 0 && outcome.results) {
        const r = (items.length * 1000) / runMs;
        this.rate = this.rate === 0 ? r : 0.7 * this.rate + 0.3 * r;
      }
      this.running = false;
      this.runningItems = 0;
      for (const u of unwatch) u();
      const info: BatchInfo<G> = { group: head.group, items: items.length, jobs: segments.length, waitedMs, runMs, ...(outcome.results ? { results: outcome.results } : { error: outcome.error }) };
      for (const fn of this.listeners) {
        try {
          fn(info);
        } catch {
          // a metrics callback must not break batching
        }
      }
      if (outcome.results) {
        const results = outcome.results;
        let k = 0;
        for (const s of segments) {
          const job = s.job;
          for (let i = 0; i < s.count; i++) job.results[s.from + i] = results[k++];
          job.done += s.count;
          if (!job.settled && job.done === job.items.length) {
            job.settled = true;
            job.cleanup();
            job.resolve({ results: job.results, batches: job.batches, queuedMs: job.startedAt - job.enqueuedAt });
          }
        }
      } else {
        for (const s of segments) this.fail(s.job, outcome.error);
      }
      this.pump();
    });
  }
}

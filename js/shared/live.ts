/**
 * The browser half of a live loop (docs/architecture.md, "The Python ↔ browser contract"): user input is debounced, each request carries an id,
 * answers to older requests are dropped, and the last state shown is the last state set.
 *
 * - `update(state)` records the newest state; it goes out after `delay` ms without another update.
 * - At most one request is in flight: a state that arrives meanwhile waits, and is sent as soon as the
 *   answer comes (so a slow kernel never builds a queue of outdated requests, and the final state is
 *   always sent last).
 * - Every id is larger than any seen before, here or elsewhere (`knownId`: the id Python or another view
 *   of the same model used last).
 * - `answer(id)` says whether an answer is `"current"` (for the newest request sent, or newer: a state set
 *   by Python) or `"stale"` (an older request: drop it). `settled` is true when nothing is pending or in
 *   flight: the answer shown then belongs to the state the user set last.
 * - An answer that never comes (kernel busy or gone) ends the wait after `timeout` ms (`onTimeout`), so
 *   later input is sent again.
 */

export interface LiveOptions<S> {
  /** Quiet time (ms) after the last update before the state is sent. */
  delay: number;
  /** How long (ms) to wait for an answer before giving up on it. */
  timeout: number;
  /** Send `state` as request `id` (e.g. set synced traits and save them in one message). */
  send: (state: S, id: number) => void;
  /** The largest request id known outside this object (e.g. the model's `request_id`). */
  knownId?: () => number;
  /** Called when request `id` got no answer within `timeout` ms. */
  onTimeout?: (id: number) => void;
  /** Called when `busy` changes. */
  onBusy?: (busy: boolean) => void;
}

export type Verdict = "current" | "stale";

type Timer = ReturnType<typeof setTimeout>;

export class LiveRequests<S> {
  private pending: { state: S } | null = null;
  private debounceTimer: Timer | null = null;
  private answerTimer: Timer | null = null;
  private inFlight: number | null = null;
  private lastId: number;
  private wasBusy = false;
  private disposed = false;

  constructor(
    private readonly opts: LiveOptions<S>,
    initialId = 0,
  ) {
    this.lastId = initialId;
  }

  /** The newest id sent or answered. */
  get latestId(): number {
    return this.lastId;
  }

  /** The id of the request waiting for its answer, or null. */
  get inFlightId(): number | null {
    return this.inFlight;
  }

  /** Nothing waiting to be sent and no answer awaited. */
  get settled(): boolean {
    return this.pending === null && this.inFlight === null;
  }

  get busy(): boolean {
    return !this.settled;
  }

  /** A new state from the user: sent after `delay` ms without another update. */
  update(state: S): void {
    if (this.disposed) return;
    this.pending = { state };
    if (this.debounceTimer !== null) clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = null;
      this.flush();
    }, this.opts.delay);
    this.notifyBusy();
  }

  /** Send the pending state now, or as soon as the request in flight is answered. */
  flush(): void {
    if (this.disposed) return;
    if (this.debounceTimer !== null) {
      clearTimeout(this.debounceTimer);
      this.debounceTimer = null;
    }
    if (this.pending === null || this.inFlight !== null) return;
    const { state } = this.pending;
    this.pending = null;
    const id = Math.max(this.lastId, this.opts.knownId?.() ?? 0) + 1;
    this.lastId = id;
    this.inFlight = id;
    this.answerTimer = setTimeout(() => this.expire(id), this.opts.timeout);
    try {
      this.opts.send(state, id);
    } finally {
      this.notifyBusy();
    }
  }

  /** An answer to request `id` arrived: show it (`"current"`) or drop it (`"stale"`). */
  answer(id: number): Verdict {
    if (this.disposed || id < this.lastId) return "stale";
    this.lastId = id;
    if (this.inFlight !== null) {
      this.inFlight = null;
      if (this.answerTimer !== null) clearTimeout(this.answerTimer);
      this.answerTimer = null;
    }
    // a state that waited for this answer goes out now (unless its own quiet time is still running)
    if (this.pending !== null && this.debounceTimer === null) this.flush();
    this.notifyBusy();
    return "current";
  }

  /** Stop all timers; later calls do nothing. */
  dispose(): void {
    this.disposed = true;
    for (const t of [this.debounceTimer, this.answerTimer]) if (t !== null) clearTimeout(t);
    this.debounceTimer = this.answerTimer = null;
    this.pending = null;
    this.inFlight = null;
  }

  private expire(id: number): void {
    if (this.inFlight !== id) return;
    this.inFlight = null;
    this.answerTimer = null;
    this.opts.onTimeout?.(id);
    if (this.pending !== null && this.debounceTimer === null) this.flush();
    this.notifyBusy();
  }

  private notifyBusy(): void {
    const busy = this.busy;
    if (busy !== this.wasBusy) {
      this.wasBusy = busy;
      this.opts.onBusy?.(busy);
    }
  }
}

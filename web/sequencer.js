// Exactly-once, in order, on top of transports that may repeat or skip.
//
// Every transport delivers "at least once from the cursor", not "exactly once":
// a WebSocket subscription can get an event both in its backlog and live, an
// EventSource reconnect can overlap what it already had, and a frame can be lost
// in between. The event log's seq is gapless, so the reader can fix both itself:
//
//   seq <= cursor      a duplicate: drop it
//   seq == cursor + 1  the next one: show it and move the cursor
//   seq >  cursor + 1  a gap: read the missing range from the log's HTTP API first
//
// The same rules as the Python reference client, so every panel shows the same
// rows whatever its transport did.

export class Sequencer {
  #cursor;
  #queue = Promise.resolve();
  #closed = false;

  /**
   * @param {object} options
   * @param {number} options.cursor the last seq already shown (the channel head for live only)
   * @param {(after: number) => Promise<{events: object[], reset: boolean, oldest: number|null}>} options.fetchAfter
   *   one page of events after a cursor, from the log's HTTP API
   * @param {(event: object, how: {backfilled: boolean}) => void} options.deliver
   * @param {(info: object) => void} options.note  resets, duplicates, gaps, failures
   */
  constructor({ cursor, fetchAfter, deliver, note }) {
    this.#cursor = cursor;
    this.fetchAfter = fetchAfter;
    this.deliver = deliver;
    this.note = note;
  }

  /** The last seq shown: every connection resumes from here. */
  get cursor() {
    return this.#cursor;
  }

  /** Offer an event from a transport. Offers are handled one at a time, in arrival order,
   * so a backfill finishes before any later event is looked at. */
  offer(event) {
    return this.#enqueue(() => this.#accept(event));
  }

  /** The server says the cursor is outside the retained history: continue before `oldest`. */
  reset(oldest) {
    return this.#enqueue(async () => {
      if (oldest !== null && oldest - 1 < this.#cursor) {
        // Backward: either the log is behind the cursor (a wiped table, a
        // restarted local stack) or this reset answered an older cursor and
        // events overtook it. Only the log can tell: ask it about this cursor.
        const page = await this.fetchAfter(this.#cursor);
        if (!page.reset) return;
        oldest = page.oldest;
      }
      this.#reset(oldest);
    });
  }

  /** Resolves once every offer so far has been handled. */
  idle() {
    return this.#queue;
  }

  /** Stop delivering: a channel switch leaves offers of the old one in flight. */
  close() {
    this.#closed = true;
  }

  #enqueue(task) {
    // A failed task must not wedge the queue: it is reported, and the next one runs.
    this.#queue = this.#queue.then(task).catch((error) => {
      if (!this.#closed) this.note({ kind: "error", message: error.message });
    });
    return this.#queue;
  }

  async #accept(event) {
    if (this.#closed) return;
    if (event.seq <= this.#cursor) {
      this.note({ kind: "duplicate", seq: event.seq });
      return;
    }
    if (event.seq > this.#cursor + 1) {
      this.note({ kind: "gap", from: this.#cursor + 1, to: event.seq - 1 });
      // If this throws, the cursor has not moved past the gap, so nothing is
      // skipped: the next event that arrives tries the backfill again.
      await this.#backfill(event.seq - 1);
      // A backfill page can run past the gap and include this very event.
      if (event.seq <= this.#cursor) return;
    }
    this.#show(event, false);
  }

  async #backfill(upTo) {
    while (this.#cursor < upTo && !this.#closed) {
      const page = await this.fetchAfter(this.#cursor);
      if (page.reset) this.#reset(page.oldest);
      const fresh = page.events.filter((event) => event.seq > this.#cursor);
      if (fresh.length === 0) return; // the log has nothing more (yet)
      for (const event of fresh) this.#show(event, true);
    }
  }

  /** `oldest` answers this very cursor: move to just before it. */
  #reset(oldest) {
    if (oldest === null || oldest - 1 === this.#cursor || this.#closed) return;
    // Usually forward: the history before `oldest` has expired. Backward when the
    // log is behind the cursor: the panel starts over with what the log has now,
    // as the Python client does, rather than dropping every new event as a repeat.
    this.note({ kind: "reset", from: this.#cursor, oldest });
    this.#cursor = oldest - 1;
  }

  #show(event, backfilled) {
    if (this.#closed) return;
    this.#cursor = event.seq;
    this.deliver(event, { backfilled });
  }
}

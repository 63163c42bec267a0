// The three browser clients. Each one connects from its sequencer's cursor, hands
// every event to the sequencer (which drops repeats and fills gaps), reconnects
// by itself after a failure, and reports its state and what it spends.
//
// What is counted: requests or connections opened, messages received, and the
// bytes of message bodies (response bodies, SSE data, WebSocket frame payloads,
// frames sent). HTTP headers, CORS preflights, TLS, and SSE/WebSocket framing
// are not counted, so the figures compare payloads, not total traffic.

import { authParams, buildUrl, byteLength, channelPath, readEvents } from "./api.js";

/** Seconds one long poll waits (the API allows 0-25; the HTTP API cuts at 30): the same as
 * the Python client's client.config.DEFAULT_WAIT_SECONDS (a browser test holds them equal). */
export const LONG_POLL_SECONDS = 20;

/** API Gateway closes a WebSocket idle for 10 minutes
 * (eventlog.config.WEBSOCKET_IDLE_TIMEOUT_SECONDS). A ping every minute keeps it open and
 * notices a dead one soon: the Python client's client.config.WEBSOCKET_KEEPALIVE_SECONDS,
 * which `make cost` prices (a browser test holds them equal). */
export const WEBSOCKET_PING_MS = 60 * 1000;

const RECONNECT_FIRST_MS = 1000;
const RECONNECT_MAX_MS = 15000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Transport {
  #generation = 0;
  #delay = RECONNECT_FIRST_MS;

  /**
   * @param {object} options
   * @param {string} options.url the transport's endpoint (from the endpoints file)
   * @param {string} options.channel
   * @param {import("./sequencer.js").Sequencer} options.sequencer
   * @param {{request(): void, received(text: string): void, sent(text: string): void}} options.meter
   * @param {(state: "connecting"|"open"|"reconnecting"|"closed") => void} options.onState
   * @param {(message: string) => void} options.onNotice
   */
  constructor({ url, channel, sequencer, meter, onState, onNotice }) {
    Object.assign(this, { url, channel, sequencer, meter, onState, onNotice });
  }

  /** Connect from the sequencer's cursor. */
  start() {
    const generation = ++this.#generation;
    this.#delay = RECONNECT_FIRST_MS;
    this.onState("connecting");
    this.connect(generation);
  }

  /** Close the connection; nothing of it is delivered after this. */
  stop() {
    this.#generation++;
    this.disconnect();
    this.onState("closed");
  }

  // Every callback checks that its connection is still the current one: a
  // reply or message of a connection that was stopped must change nothing.
  isCurrent(generation) {
    return generation === this.#generation;
  }

  opened() {
    this.#delay = RECONNECT_FIRST_MS;
    this.onState("open");
  }

  /** Wait (doubling, with jitter so many clients do not return in step), then connect again. */
  async reconnectLater(generation, reason) {
    if (!this.isCurrent(generation)) return;
    this.disconnect();
    this.onState("reconnecting");
    // A no-break space keeps "1 s" together when the notice wraps.
    this.onNotice(`${reason}; reconnecting in ${Math.round(this.#delay / 1000)}\u00a0s.`);
    const delay = this.#delay * (0.8 + Math.random() * 0.4);
    this.#delay = Math.min(this.#delay * 2, RECONNECT_MAX_MS);
    await sleep(delay);
    if (this.isCurrent(generation)) this.connect(generation);
  }

  connect(_generation) {
    throw new Error("not implemented");
  }

  disconnect() {}
}

/** Long polling: one GET after the cursor at a time, each waiting up to LONG_POLL_SECONDS. */
export class PollingTransport extends Transport {
  #abort = null;

  async connect(generation) {
    this.#abort = new AbortController();
    const { signal } = this.#abort;
    // An empty reply for the same cursor has the same ETag, so a quiet channel
    // costs a 304 without a body after the first empty wait.
    let etag = null;
    // The first read does not wait, so the panel shows "open" as soon as the API
    // answers rather than after the first event or a whole empty wait.
    let wait = 0;
    while (this.isCurrent(generation)) {
      let reply;
      try {
        this.meter.request();
        reply = await readEvents(
          this.url,
          this.channel,
          { after: this.sequencer.cursor, wait },
          { etag, signal },
        );
      } catch (error) {
        this.reconnectLater(generation, `Poll failed (${error.message})`);
        return;
      }
      if (!this.isCurrent(generation)) return;
      this.meter.received(reply.text);
      this.opened();
      wait = LONG_POLL_SECONDS;
      if (reply.status === 304) continue;
      etag = reply.etag;
      if (reply.body.reset) this.sequencer.reset(reply.body.oldest);
      for (const event of reply.body.events) this.sequencer.offer(event);
      // The next read starts from the cursor these events move.
      await this.sequencer.idle();
    }
  }

  disconnect() {
    this.#abort?.abort();
    this.#abort = null;
  }
}

/** Server-Sent Events: one EventSource, which reconnects by itself with Last-Event-ID. */
export class SseTransport extends Transport {
  #source = null;
  #open = false; // one notice per outage, not one per failed retry

  async connect(generation) {
    // `after` only matters for this first request: on its own reconnects the
    // EventSource sends Last-Event-ID, which the server prefers.
    const url = buildUrl(this.url, `${channelPath(this.channel)}/stream`, {
      after: this.sequencer.cursor,
      ...(await authParams()),
    });
    if (!this.isCurrent(generation)) return;
    this.#open = false;
    const source = new EventSource(url);
    this.#source = source;
    this.meter.request();
    source.onopen = () => {
      if (!this.isCurrent(generation)) return;
      this.#open = true;
      this.opened();
    };
    source.onmessage = (message) => {
      if (!this.isCurrent(generation)) return;
      this.meter.received(message.data);
      this.sequencer.offer(JSON.parse(message.data));
    };
    source.addEventListener("reset", (message) => {
      if (!this.isCurrent(generation)) return;
      this.meter.received(message.data);
      this.sequencer.reset(JSON.parse(message.data).oldest);
    });
    // The token ran out: the browser's own reconnect would send the same one and be
    // refused, so reconnect here with a fresh token, from the cursor.
    source.addEventListener("expired", () => {
      if (!this.isCurrent(generation)) return;
      this.disconnect();
      this.onNotice("The token expired; reconnecting with a fresh one.");
      this.onState("reconnecting");
      this.connect(generation);
    });
    source.onerror = () => {
      if (!this.isCurrent(generation)) return;
      if (source.readyState === EventSource.CONNECTING) {
        // The browser retries after the server's `retry:` hint; that attempt is a request.
        if (this.#open) this.onNotice("Stream interrupted; the browser reconnects with Last-Event-ID.");
        this.#open = false;
        this.onState("reconnecting");
        this.meter.request();
      } else {
        // CLOSED: the browser gave up (a 503, or a reply that is not a stream)
        // and will not retry by itself.
        this.reconnectLater(generation, "The stream was refused");
      }
    };
  }

  disconnect() {
    this.#source?.close();
    this.#source = null;
  }
}

/** WebSocket: subscribe frames on one connection; pings keep an idle connection open. */
export class WebSocketTransport extends Transport {
  #socket = null;
  #pinger = null;

  async connect(generation) {
    const params = await authParams();
    if (!this.isCurrent(generation)) return;
    const url = new URL(this.url);
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
    const socket = new WebSocket(url);
    this.#socket = socket;
    this.meter.request();
    socket.onopen = () => {
      if (!this.isCurrent(generation)) return;
      this.opened();
      this.#send({ action: "subscribe", channel: this.channel, after: this.sequencer.cursor });
      this.#pinger = setInterval(() => this.#send({ action: "ping" }), WEBSOCKET_PING_MS);
    };
    socket.onmessage = (message) => {
      if (!this.isCurrent(generation)) return;
      this.meter.received(message.data);
      this.#handle(JSON.parse(message.data));
    };
    // Every failure ends in `close` (an `error` event comes first when it is one).
    socket.onclose = (close) => {
      this.#stopPinging();
      this.reconnectLater(generation, `Connection closed (code ${close.code})`);
    };
  }

  #handle(frame) {
    switch (frame.type) {
      case "event":
        this.sequencer.offer(frame.event);
        break;
      case "reset":
        this.sequencer.reset(frame.oldest);
        break;
      case "expired":
        // The server delivers nothing more and closes the connection: reconnect at once
        // with a fresh token, from the cursor.
        this.onNotice("The token expired; reconnecting with a fresh one.");
        this.#socket?.close(1000);
        break;
      case "error":
        this.onNotice(`server error ${frame.code}: ${frame.message}`);
        // The connection's token has expired: a new connection gets a fresh one.
        if (frame.code === "unauthorized") this.#socket?.close(1000);
        break;
      default:
        // subscribed, pong, published: nothing to show.
        break;
    }
  }

  #send(frame) {
    const text = JSON.stringify(frame);
    this.#socket.send(text);
    this.meter.sent(text);
  }

  #stopPinging() {
    clearInterval(this.#pinger);
    this.#pinger = null;
  }

  disconnect() {
    this.#stopPinging();
    const socket = this.#socket;
    this.#socket = null;
    if (!socket) return;
    socket.onclose = null;
    // Closing a socket that is still connecting makes the browser log an error;
    // let it open first, then close it.
    if (socket.readyState === WebSocket.CONNECTING) socket.onopen = () => socket.close(1000);
    else socket.close(1000);
  }
}

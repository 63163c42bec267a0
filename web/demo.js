// The demo page: a publish box and one panel per transport, all on one channel.
//
// Every panel starts at the same cursor (the channel's head when the page
// subscribes), so all three show the same rows; what differs is how each got
// them, what it spent, and how it behaves when its connection drops.

import {
  byteLength,
  configureAuth,
  fetchHead,
  loadEndpoints,
  OUTPUT_KEYS,
  publish,
  readEvents,
} from "./api.js";
import { Sequencer } from "./sequencer.js";
import { PollingTransport, SseTransport, WebSocketTransport } from "./transports.js";

const TRANSPORTS = { polling: PollingTransport, sse: SseTransport, websocket: WebSocketTransport };

/** Rows kept per panel: the DOM of a long-running page stays small. */
const MAX_ROWS = 200;

/** How long "Drop & resume" stays disconnected: long enough to publish into the gap. */
const RESUME_AFTER_MS = 1000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function formatBytes(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${(bytes / 1000).toFixed(1)} kB`;
  return `${(bytes / 1_000_000).toFixed(2)} MB`;
}

/** Delivery latency: from the publisher's clock if it stamped the data, else from the event's time. */
function latencyOf(event, now = Date.now()) {
  const sentAt = event.data?.sentAt;
  if (typeof sentAt === "number" && Number.isFinite(sentAt)) return now - sentAt;
  return now - Date.parse(event.time);
}

function describe(data) {
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  return JSON.stringify(data);
}

class Panel {
  constructor(element, endpoints) {
    this.element = element;
    this.name = element.dataset.transport;
    this.url = endpoints[this.name];
    // Gaps are read back from the log's HTTP API: an HTTP transport serves it itself.
    this.logApiUrl = this.name === "websocket" ? endpoints.logApi : this.url;
    this.log = element.querySelector(".events");
    this.list = this.log.querySelector("ol");
    this.stateElement = element.querySelector(".state");
    this.dropButton = element.querySelector(".drop");
    this.dropButton.addEventListener("click", () => this.dropAndResume());
    this.transport = null;
    this.sequencer = null;
    this.meter = {
      request: () => this.count("requests", 1),
      received: (text) => {
        this.count("messages", 1);
        this.count("bytesIn", byteLength(text));
      },
      sent: (text) => this.count("bytesOut", byteLength(text)),
    };
  }

  /** (Re)start on `channel` from `head`, clearing what the previous channel showed. */
  subscribe(channel, head) {
    this.transport?.stop();
    this.sequencer?.close();
    this.list.replaceChildren();
    this.stats = { requests: 0, messages: 0, bytesIn: 0, bytesOut: 0, duplicates: 0, backfilled: 0 };
    for (const name of Object.keys(this.stats)) this.count(name, 0);
    if (!this.url) {
      this.setState("closed");
      this.notice(`The endpoints file has no ${OUTPUT_KEYS[this.name]}: this transport is not deployed.`);
      return;
    }
    this.sequencer = new Sequencer({
      cursor: head,
      fetchAfter: (after) => this.backfillPage(channel, after),
      deliver: (event, how) => this.showEvent(event, how),
      note: (info) => this.noteSequencer(info),
    });
    this.transport = new TRANSPORTS[this.name]({
      url: this.url,
      channel,
      sequencer: this.sequencer,
      meter: this.meter,
      onState: (state) => this.setState(state),
      onNotice: (message) => this.notice(message),
    });
    this.transport.start();
    this.dropButton.disabled = false;
  }

  /** Close the connection, wait, and reconnect from this panel's cursor. */
  async dropAndResume() {
    const transport = this.transport;
    if (!transport) return;
    this.dropButton.disabled = true;
    transport.stop();
    this.notice(`Dropped after #${this.sequencer.cursor}; resuming in ${RESUME_AFTER_MS / 1000} s.`);
    await sleep(RESUME_AFTER_MS);
    // The channel may have changed meanwhile, with a new transport already running.
    if (transport === this.transport) {
      this.notice(`Resuming after #${this.sequencer.cursor}.`);
      transport.start();
    }
    this.dropButton.disabled = false;
  }

  async backfillPage(channel, after) {
    this.meter.request();
    const reply = await readEvents(this.logApiUrl, channel, { after });
    this.meter.received(reply.text);
    return reply.body;
  }

  showEvent(event, { backfilled }) {
    const latency = latencyOf(event);
    const row = document.createElement("li");
    row.className = backfilled ? "event backfilled" : "event";
    row.dataset.seq = String(event.seq);
    const seq = document.createElement("span");
    seq.className = "seq";
    seq.textContent = `#${event.seq}`;
    const data = document.createElement("span");
    data.className = "data";
    data.textContent = describe(event.data);
    data.title = JSON.stringify(event.data);
    const delay = document.createElement("span");
    delay.className = "latency";
    delay.textContent = `${Math.max(0, Math.round(latency))} ms`;
    delay.title = backfilled ? "delivery latency (read back after a gap)" : "delivery latency";
    row.append(seq, data, delay);
    if (backfilled) this.count("backfilled", 1);
    this.append(row);
  }

  noteSequencer(info) {
    switch (info.kind) {
      case "duplicate":
        // Expected (a WebSocket backlog overlapping live events): counted, not listed.
        this.count("duplicates", 1);
        break;
      case "gap":
        this.notice(`Missed #${info.from}–#${info.to}: reading them from the log.`);
        break;
      case "reset":
        this.notice(
          info.oldest - 1 > info.from
            ? `History before #${info.oldest} has expired: resuming at #${info.oldest}.`
            : `The log restarted (its newest is before #${info.from + 1}): starting over at #${info.oldest}.`,
        );
        break;
      default:
        this.notice(`Backfill failed (${info.message}); the next event retries it.`);
    }
  }

  notice(message) {
    const row = document.createElement("li");
    row.className = "notice";
    row.textContent = message;
    this.append(row);
  }

  append(row) {
    // Follow new rows only if the reader has not scrolled up to read older ones.
    const following = this.log.scrollTop + this.log.clientHeight >= this.log.scrollHeight - 8;
    this.list.append(row);
    while (this.list.children.length > MAX_ROWS) this.list.firstElementChild.remove();
    if (following) this.log.scrollTop = this.log.scrollHeight;
  }

  setState(state) {
    this.stateElement.dataset.state = state;
    this.stateElement.textContent = state;
  }

  count(name, amount) {
    this.stats[name] += amount;
    const value = this.stats[name];
    const text = name.startsWith("bytes") ? formatBytes(value) : String(value);
    this.element.querySelector(`[data-stat="${name}"]`).textContent = text;
  }
}

async function main() {
  const form = document.getElementById("publish-form");
  const channelInput = document.getElementById("channel");
  const messageInput = document.getElementById("message");
  const publishButton = document.getElementById("publish-button");
  const status = document.getElementById("publish-status");
  const endpointsLine = document.getElementById("endpoints");

  const say = (element, text, kind) => {
    element.textContent = text;
    element.dataset.kind = kind;
  };

  let endpoints;
  try {
    endpoints = await loadEndpoints();
  } catch (error) {
    say(endpointsLine, error.message, "error");
    return;
  }
  if (!endpoints.logApi) {
    // Publishing, the starting cursor and backfills go through the log's HTTP API,
    // which the polling API and the SSE service both serve.
    say(
      endpointsLine,
      `${endpoints.source} has neither ${OUTPUT_KEYS.polling} nor ${OUTPUT_KEYS.sse}: ` +
        "the page publishes through one of them.",
      "error",
    );
    return;
  }
  // A transport is deployed when the endpoints file has its key; the others' panels go.
  const missing = Object.entries(OUTPUT_KEYS).filter(([name]) => !endpoints[name]);
  const auth = {
    fixed: "token from the page address",
    dev: "development tokens from the local stack",
    none: "no token",
  }[configureAuth(endpoints)];
  say(
    endpointsLine,
    `Endpoints from ${endpoints.source}` +
      (missing.length ? `; not deployed: ${missing.map(([name]) => name).join(", ")}` : "") +
      `; ${auth}.`,
    "ok",
  );

  const elements = [...document.querySelectorAll(".panel[data-transport]")];
  for (const element of elements) element.hidden = !endpoints[element.dataset.transport];
  const panels = elements.filter((element) => !element.hidden).map(
    (element) => new Panel(element, endpoints),
  );

  // A newer channel switch wins over one whose head read is still in flight.
  let subscription = 0;
  let subscribed = null;
  async function subscribeAll(channel) {
    // Back to the channel already shown (after a typo, say): keep its rows.
    if (channel === subscribed) return;
    subscribed = channel;
    const mine = ++subscription;
    let head;
    try {
      head = await fetchHead(endpoints.logApi, channel);
    } catch (error) {
      say(status, `Cannot subscribe to ${channel}: ${error.message}`, "error");
      if (mine === subscription) subscribed = null; // let the next change retry it
      return;
    }
    if (mine !== subscription) return;
    for (const panel of panels) panel.subscribe(channel, head);
  }

  channelInput.addEventListener("change", () => {
    const valid = channelInput.checkValidity();
    channelInput.setAttribute("aria-invalid", String(!valid));
    if (valid) subscribeAll(channelInput.value);
  });

  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    say(status, "Publishing…", "pending");
    // The form does not validate itself: the API's own error (an RFC 9457
    // problem) is shown instead, the same one every other client gets.
    const channel = channelInput.value;
    const data = { text: messageInput.value, sentAt: Date.now() };
    try {
      const event = await publish(endpoints.logApi, channel, data);
      say(status, `Published #${event.seq} to ${event.channel}.`, "ok");
    } catch (error) {
      say(status, `Not published: ${error.message}`, "error");
    }
  });

  publishButton.disabled = false;
  await subscribeAll(channelInput.value);
}

main();

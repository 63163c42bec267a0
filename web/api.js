// The page's view of the deployment: where the endpoints are, how to authorize,
// and the log's HTTP API calls (publish, page read) the page makes outside a
// transport's own connection. The polling API and the SSE service both serve that
// API (functions/eventlog/http_api.py), so the page needs either one.

/** The output keys of the endpoints file (functions/eventlog/endpoints.py). */
export const OUTPUT_KEYS = {
  polling: "PollingApiUrl",
  sse: "SseUrl",
  websocket: "WebSocketUrl",
};

/** Where the local stack issues development tokens (eventlog.endpoints.LOCAL_DEV_TOKEN_URL). */
const DEV_TOKEN_URL_KEY = "LocalDevTokenUrl";

// --- Auth ------------------------------------------------------------------
// The only place a token comes from. Browsers cannot set headers on an
// EventSource or a WebSocket, so those take the token as a query parameter and
// fetch() sends it as a header. Where the token comes from, in this order:
//
// 1. `#token=<jwt>` in the page's address: a token your backend or identity
//    provider issued. A fragment is never sent to a server, so it never lands
//    in an access log.
// 2. The local stack's development endpoint (`LocalDevTokenUrl` in the
//    endpoints file, which only the local stack writes): asked for a token
//    again shortly before the last one expires.
// 3. Neither: no token, for a deployment with auth off.

/** Renew a development token this long before it expires (at most half its lifetime). */
const RENEW_BEFORE_MS = 30_000;

let tokenSource = { kind: "none" };
let devToken = null; // { value, renewAt }
let pendingToken = null;

/** Decide where tokens come from: call once the endpoints file is loaded. */
export function configureAuth(endpoints, pageUrl = window.location.href) {
  const fixed = new URLSearchParams(new URL(pageUrl).hash.slice(1)).get("token");
  if (fixed) tokenSource = { kind: "fixed", value: fixed };
  else if (endpoints.devTokenUrl) tokenSource = { kind: "dev", url: endpoints.devTokenUrl };
  else tokenSource = { kind: "none" };
  devToken = null;
  return tokenSource.kind;
}

async function fetchDevToken(url) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
    cache: "no-store",
  });
  if (!response.ok) throw await problem(response);
  const { token: value, expires_at: expiresAt } = await response.json();
  const lifetimeMs = expiresAt * 1000 - Date.now();
  devToken = { value, renewAt: expiresAt * 1000 - Math.min(RENEW_BEFORE_MS, lifetimeMs / 2) };
  return value;
}

async function token() {
  switch (tokenSource.kind) {
    case "fixed":
      return tokenSource.value;
    case "dev":
      if (devToken && Date.now() < devToken.renewAt) return devToken.value;
      // Every panel asks at once when the page starts: one request serves them all.
      pendingToken ??= fetchDevToken(tokenSource.url).finally(() => {
        pendingToken = null;
      });
      return pendingToken;
    default:
      return null;
  }
}

/** Headers that authorize a fetch() to the log's HTTP API (the polling API or the SSE service). */
export async function authHeaders() {
  const value = await token();
  return value ? { Authorization: `Bearer ${value}` } : {};
}

/** Query parameters that authorize an EventSource or WebSocket connection. */
export async function authParams() {
  const value = await token();
  return value ? { token: value } : {};
}

/** `base` + `path` with `params` in the query string (undefined values left out). */
export function buildUrl(base, path, params = {}) {
  const url = new URL(base.replace(/\/+$/, "") + path);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
  }
  return url.toString();
}

/** The channel as one URL path segment. */
export function channelPath(channel) {
  return `/channels/${encodeURIComponent(channel)}`;
}

/** UTF-8 length of a string: what it costs on the wire, framing aside. */
const encoder = new TextEncoder();
export function byteLength(text) {
  return encoder.encode(text).length;
}

// --- Endpoints ---------------------------------------------------------------

/**
 * Load the endpoints file: `?outputs=<url>` if given, else `outputs.json` next to
 * the page (the local stack serves it there; a deployed copy is uploaded there).
 * The file has the shape `cdk deploy --outputs-file` writes; an output may sit in
 * any stack as long as its key matches, as in eventlog.endpoints.
 */
export async function loadEndpoints(pageUrl = window.location.href) {
  const source = new URL(
    new URL(pageUrl).searchParams.get("outputs") || "outputs.json",
    pageUrl,
  ).toString();
  let stacks;
  try {
    const response = await fetch(source, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    stacks = await response.json();
  } catch (error) {
    throw new Error(
      `Could not load the endpoints file from ${source} (${error.message}). ` +
        "Start the local stack with `make dev`, or open this page with " +
        "?outputs=<url of a `cdk deploy --outputs-file` file>.",
    );
  }
  const outputs = Object.assign({}, ...Object.values(stacks ?? {}));
  const found = { source, devTokenUrl: outputs[DEV_TOKEN_URL_KEY] ?? null };
  for (const [name, key] of Object.entries(OUTPUT_KEYS)) found[name] = outputs[key] ?? null;
  // Where the log's HTTP API is: as eventlog.endpoints.Endpoints.log_api_url decides it.
  found.logApi = found.polling ?? found.sse;
  return found;
}

// --- Polling API calls -------------------------------------------------------

/** Raised for an error reply; `detail` comes from the RFC 9457 problem body. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function problem(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body.detail === "string") return new ApiError(response.status, body.detail);
  } catch {
    // Not a problem body (a proxy's error page, say): fall back to the status line.
  }
  return new ApiError(response.status, `HTTP ${response.status} ${response.statusText}`.trim());
}

/** Publish `data` to `channel`; resolves to the stored Event. */
export async function publish(logApiUrl, channel, data) {
  const response = await fetch(buildUrl(logApiUrl, `${channelPath(channel)}/events`), {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(await authHeaders()) },
    body: JSON.stringify({ data }),
  });
  if (!response.ok) throw await problem(response);
  return response.json();
}

/**
 * One read of the log's HTTP API. Resolves to `{status, body, text, etag}`: a 304
 * has no body, and `text` is the body as received, for counting what it cost.
 */
export async function readEvents(logApiUrl, channel, params, { etag, signal } = {}) {
  const headers = { ...(await authHeaders()) };
  if (etag) headers["If-None-Match"] = etag;
  const response = await fetch(buildUrl(logApiUrl, `${channelPath(channel)}/events`, params), {
    headers,
    signal,
    // The page revalidates itself with If-None-Match; the browser's cache would
    // answer some reads from memory and hide what the transport really costs.
    cache: "no-store",
  });
  if (response.status === 304) return { status: 304, body: null, text: "", etag };
  if (!response.ok) throw await problem(response);
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text), text, etag: response.headers.get("ETag") };
}

/**
 * The channel's current head: where a live-only subscription starts. A read
 * without a cursor starts at the head; if an event slipped in meanwhile, the
 * head is just before the first one returned.
 */
export async function fetchHead(logApiUrl, channel) {
  const { body } = await readEvents(logApiUrl, channel, { limit: 1 });
  return body.events.length ? body.events[0].seq - 1 : body.next;
}

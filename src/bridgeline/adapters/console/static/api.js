// The console's only ways to talk to the server: the same JSON API as every client, and the
// server-sent event stream read through fetch (EventSource could not report an HTTP error).
// Credentials are the browser's own HTTP Basic ones: same-origin requests carry them.

// Built on location.origin: a page opened as http://user:pass@host/ must not put the
// credentials in request URLs (fetch refuses such URLs).
export function apiUrl(path) {
  return new URL(path, location.origin).toString();
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function send(method, path, payload) {
  const init = { method, cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } };
  if (payload !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  let response;
  try {
    response = await fetch(apiUrl(path), init);
  } catch (error) {
    throw new ApiError(0, `cannot reach the server (${error.message})`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, body.error || `${response.status} ${response.statusText}`);
  }
  return body;
}

export const getJson = (path) => send("GET", path);
export const postJson = (path, payload) => send("POST", path, payload);

// Reads `text/event-stream` until the server ends it (or `signal` aborts); calls
// onMessage(eventName, data) for each message, skipping comments (heartbeats).
export async function readEventStream(path, onMessage, signal) {
  const response = await fetch(apiUrl(path), {
    cache: "no-store",
    credentials: "same-origin",
    headers: { Accept: "text/event-stream" },
    signal,
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new ApiError(response.status, body.error || `${response.status} ${response.statusText}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      dispatch(block, onMessage);
    }
  }
}

function dispatch(block, onMessage) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (data.length) onMessage(name, JSON.parse(data.join("\n")));
}

// Paths of the Plivo-compatible routes the buttons and the form use.
export function nodePath(phloId, nodeId) {
  return `/v1/phlo/${encodeURIComponent(phloId)}/multi_party_call/${encodeURIComponent(nodeId)}`;
}

export function memberPath(phloId, nodeId, address) {
  return `${nodePath(phloId, nodeId)}/members/${encodeURIComponent(address)}`;
}

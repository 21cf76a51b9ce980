// The live console: loads the state once, then follows the event stream. Each stream message
// carries the committed event and the conference's updated view, so nothing is refetched
// except callback deliveries (their status changes without an event).

import { getJson, memberPath, nodePath, postJson, readEventStream } from "./api.js";
import { ConferenceCard, formatDuration, h } from "./card.js";

const filter = new URLSearchParams(location.search).get("phlo_id");
const query = filter ? `?phlo_id=${encodeURIComponent(filter)}` : "";
const root = document.getElementById("phlos");
const connection = document.getElementById("conn");
const banner = document.getElementById("banner");

const model = {
  phlos: [], // phlo_summary JSON, in the server's order
  conferences: new Map(), // mpc_uuid -> {mpc_uuid, phlo_id, node_id, version, view, events, deliveries, stamp}
  clockSkew: 0, // server clock minus ours, ms
};
const cards = new Map(); // mpc_uuid -> ConferenceCard
const dismissed = new Set();
let stamp = 0;

function setConnection(state, text) {
  connection.dataset.state = state;
  connection.textContent = text;
}

function showBanner(text) {
  banner.hidden = !text;
  banner.textContent = text || "";
}

// ----------------------------------------------------------------------- model
function mergeEvents(known, more) {
  const bySeq = new Map(known.map((e) => [e.sequence, e]));
  for (const event of more) bySeq.set(event.sequence, event);
  return [...bySeq.values()].sort((a, b) => a.sequence - b.sequence);
}

function accept(entry, extraEvents = []) {
  const known = model.conferences.get(entry.mpc_uuid);
  // The newest 200 events, as the state endpoint sends: a long call must not grow the page without end.
  const events = mergeEvents(known ? known.events : [], [...(entry.events || []), ...extraEvents]).slice(-200);
  const deliveries = entry.deliveries || (known ? known.deliveries : []);
  const newer = !known || entry.version >= known.version;
  const base = newer ? entry : known;
  model.conferences.set(entry.mpc_uuid, {
    mpc_uuid: base.mpc_uuid,
    phlo_id: base.phlo_id,
    node_id: base.node_id,
    version: base.version,
    view: base.view,
    events,
    deliveries,
    stamp: ++stamp,
  });
}

async function loadState() {
  const state = await getJson(`/v1/console/state${query}`);
  model.clockSkew = state.server_time * 1000 - Date.now();
  model.phlos = state.phlos;
  for (const entry of state.conferences) accept(entry);
  render();
}

function onStreamMessage(name, data) {
  if (name === "hello") {
    setConnection("live", "live");
    loadState().catch((error) => showBanner(`Cannot load the state: ${error.message}`));
  } else if (name === "conference") {
    accept(data, data.event ? [data.event] : []);
    const known = model.phlos.some((p) => p.phlo_id === data.phlo_id);
    if (!known) loadState().catch(() => {});
    scheduleDeliveries(data.mpc_uuid);
    render();
  } else if (name === "overflow") {
    setConnection("connecting", "catching up…");
  }
}

// ----------------------------------------------------------------------- deliveries
const deliveryTimers = new Map();

function scheduleDeliveries(uuid, delay = 600) {
  clearTimeout(deliveryTimers.get(uuid));
  deliveryTimers.set(uuid, setTimeout(() => refreshDeliveries(uuid), delay));
}

async function refreshDeliveries(uuid) {
  deliveryTimers.delete(uuid);
  if (!model.conferences.has(uuid) || dismissed.has(uuid)) return;
  try {
    accept(await getJson(`/v1/console/conferences/${encodeURIComponent(uuid)}`));
    render();
  } catch {
    return; // the next event or reconnect brings it back
  }
  const entry = model.conferences.get(uuid);
  if (entry.deliveries.some((d) => d.status === "pending")) scheduleDeliveries(uuid, 2000);
}

// ----------------------------------------------------------------------- rendering
function sortConferences(a, b) {
  const live = (e) => (e.view.status === "live" ? 0 : 1);
  return live(a) - live(b) || (b.view.started_on || "").localeCompare(a.view.started_on || "");
}

// Sections and cards are kept and only moved when out of place: moving an element would
// take the focus away from a form being filled in.
const sections = new Map(); // phlo_id -> {root, nodes: Map(node_id -> {root, count, list, empty})}

function syncChildren(parent, wanted) {
  wanted.forEach((node, i) => {
    if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] || null);
  });
  while (parent.children.length > wanted.length) parent.lastElementChild.remove();
}

function nodeSection(phlo, node, parts) {
  let part = parts.get(node.node_id);
  if (!part) {
    part = { count: h("span", { class: "count" }), list: h("div", { class: "conferences" }) };
    part.empty = h("p", { class: "muted empty" }, "No live conferences.");
    part.root = h(
      "section",
      { class: "node", "data-phlo-id": phlo.phlo_id, "data-node-id": node.node_id },
      h("h2", {}, node.name, h("code", {}, node.node_id), part.count),
      part.list,
    );
    parts.set(node.node_id, part);
  }
  const entries = [...model.conferences.values()]
    .filter((e) => e.phlo_id === phlo.phlo_id && e.node_id === node.node_id && !dismissed.has(e.mpc_uuid))
    .sort(sortConferences);
  const live = entries.filter((e) => e.view.status === "live").length;
  part.count.textContent = `${live} live`;
  part.count.classList.toggle("busy", live > 0);
  const wanted = entries.map((entry) => {
    let card = cards.get(entry.mpc_uuid);
    if (card) card.update(entry);
    else cards.set(entry.mpc_uuid, (card = new ConferenceCard(entry, handlers)));
    return card.root;
  });
  syncChildren(part.list, wanted.length ? wanted : [part.empty]);
  return part.root;
}

function phloSection(phlo) {
  let section = sections.get(phlo.phlo_id);
  if (!section) {
    section = { nodes: new Map(), body: h("div", { class: "nodes" }) };
    section.root = h(
      "section",
      { class: "phlo", "data-phlo-id": phlo.phlo_id },
      h("h1", {}, "PHLO ", phlo.name, h("code", {}, phlo.phlo_id)),
      section.body,
    );
    sections.set(phlo.phlo_id, section);
  }
  syncChildren(
    section.body,
    phlo.nodes.map((node) => nodeSection(phlo, node, section.nodes)),
  );
  return section.root;
}

const noPhlos = h("p", { class: "muted empty" }, "No PHLOs yet: create one with `bridgeline phlo create`.");
let renderQueued = false;

function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    const wanted = model.phlos.map(phloSection);
    syncChildren(root, wanted.length ? wanted : [noPhlos]);
    for (const uuid of cards.keys()) if (!model.conferences.has(uuid) || dismissed.has(uuid)) cards.delete(uuid);
    tick();
  });
}

function tick() {
  const now = Date.now() + model.clockSkew;
  for (const cell of document.querySelectorAll("[data-since]")) {
    cell.textContent = formatDuration(now - Number(cell.dataset.since));
  }
}

// ----------------------------------------------------------------------- actions
const handlers = {
  async memberAction(entry, address, action, label) {
    const card = cards.get(entry.mpc_uuid);
    card.say("pending", `${label} ${address}…`);
    try {
      await postJson(memberPath(entry.phlo_id, entry.node_id, address), { action });
      card.say("ok", `${label} ${address}: done`);
    } catch (error) {
      card.say("error", `${label} ${address} refused (${error.status || "network"}): ${error.message}`);
    }
  },
  async mpcAction(entry, payload) {
    const card = cards.get(entry.mpc_uuid);
    const name = payload.action.replace("_", " ");
    const what = `${name[0].toUpperCase()}${name.slice(1)} ${payload.to || "?"}`;
    card.say("pending", `${what}…`);
    try {
      await postJson(nodePath(entry.phlo_id, entry.node_id), payload);
      card.say("ok", `${what}: done`);
    } catch (error) {
      card.say("error", `${what} refused (${error.status || "network"}): ${error.message}`);
    }
  },
  async recordingAction(entry, action, trigger) {
    const card = cards.get(entry.mpc_uuid);
    const what = `${action[0].toUpperCase()}${action.slice(1)} the recording`;
    card.say("pending", `${what}…`);
    try {
      await postJson(`${nodePath(entry.phlo_id, entry.node_id)}/recording`, { action, trigger_source: trigger });
      card.say("ok", `${what}: done`);
    } catch (error) {
      card.say("error", `${what} refused (${error.status || "network"}): ${error.message}`);
    }
  },
  dismiss(uuid) {
    dismissed.add(uuid);
    render();
  },
};

// ----------------------------------------------------------------------- connection
async function follow() {
  for (;;) {
    try {
      await readEventStream(`/v1/events/stream${query}`, onStreamMessage);
      setConnection("connecting", "reconnecting…");
      showBanner("");
    } catch (error) {
      setConnection("offline", "offline");
      showBanner(error.status ? `The event stream was refused: ${error.message}` : "The server cannot be reached; retrying…");
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

if (filter) document.getElementById("filter").textContent = `PHLO ${filter}`;
setInterval(tick, 1000);
follow();

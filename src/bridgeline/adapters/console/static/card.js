// One conference card: header, audio picture, members with their action buttons, the
// call/transfer form, the event timeline and the callback deliveries. The card's DOM is kept
// between updates so the form keeps what the user typed.

import { audioPicture, musicLabel } from "./audio.js";

export const MEMBER_ACTIONS = [
  ["hold", "Hold"],
  ["unhold", "Unhold"],
  ["mute", "Mute"],
  ["unmute", "Unmute"],
  ["hangup", "Hang up"],
  ["resume_call", "Resume"],
  ["voicemail_drop", "Voicemail"],
  ["abort_transfer", "Abort transfer"],
];
const EVENT_LABELS = {
  conference_started: "conference started",
  conference_ended: "conference ended",
  member_dialing: "dialing",
  member_ringing: "ringing",
  member_connected: "answered",
  member_held: "held",
  member_unheld: "unheld",
  member_muted: "muted",
  member_unmuted: "unmuted",
  member_left: "left",
  voicemail_started: "voicemail drop",
  transfer_started: "transfer started",
  transfer_answered: "transfer answered",
  transfer_completed: "transfer completed",
  transfer_aborted: "transfer aborted",
  transfer_failed: "transfer failed",
};

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// Plivo's timestamps ("2024-01-02 03:04:05.123456+00:00") in epoch milliseconds.
export function parseTime(text) {
  if (!text) return null;
  return Date.parse(text.replace(" ", "T").replace(/(\.\d{3})\d+/, "$1"));
}

export function formatDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(s / 3600);
  const rest = `${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  return hours ? `${hours}:${rest}` : rest;
}

export function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

const words = (text) => String(text).replaceAll("_", " ");

export function describeEvent(event) {
  const d = event.data || {};
  const label = EVENT_LABELS[event.event] || words(event.event);
  let subject = "";
  if (d.member_address) subject = d.role ? `${d.member_address} (${d.role})` : d.member_address;
  if (d.recording_id) subject = d.member_address ? `track of ${d.member_address}` : "conference";
  if (d.transfer_type) subject = `${d.transfer_type}: ${d.initiator} → ${d.target}`;
  const details = [d.reason, d.outcome, d.answered_by === "machine" ? "machine" : null].filter(Boolean);
  return { label, subject, details: details.map(words).join(", ") };
}

// A duration cell that the page's clock keeps ticking: since `from` (or fixed when `until`).
function durationCell(member) {
  const cell = h("td", { class: "dur" });
  const since = parseTime(member.status === "dialing" ? member.dialed_on : member.connected_on);
  if (member.status === "left") {
    const from = parseTime(member.connected_on);
    cell.textContent = from ? formatDuration(parseTime(member.left_on) - from) : "—";
  } else if (since) {
    cell.dataset.since = String(since);
  }
  return cell;
}

function hearsCell(member) {
  if (member.music) return h("td", { class: "hears music" }, `♪ ${musicLabel(member.music)}`);
  if (member.hears.length) return h("td", { class: "hears" }, member.hears.join(", "));
  const quiet = member.status === "left" || member.status === "dialing" ? "—" : "nobody";
  return h("td", { class: "hears none" }, quiet);
}

function memberRow(member, live, onAction) {
  const status = member.status === "left" ? `left · ${words(member.leave_reason || "")}` : words(member.status);
  const row = h(
    "tr",
    {
      "data-member": member.member_address,
      "data-status": member.status,
      "data-role": member.role,
      "data-mute": member.mute ? "true" : "false",
    },
    h("td", { class: "addr" }, member.member_address),
    h("td", {}, h("span", { class: `role role-${member.role}` }, member.role)),
    h(
      "td",
      {},
      h("span", { class: `badge status-${member.status}` }, status),
      member.mute && member.status !== "left" ? h("span", { class: "badge muted-flag" }, "muted") : null,
    ),
    durationCell(member),
    hearsCell(member),
    h("td", { class: "room" }, member.room === "main" ? "main" : "private"),
  );
  const actions = h("td", { class: "actions" });
  if (live && member.status !== "left") {
    for (const [action, label] of MEMBER_ACTIONS) {
      actions.append(
        h(
          "button",
          {
            type: "button",
            "data-action": action,
            title: `${action} ${member.member_address}`,
            onclick: () => onAction(member.member_address, action, label),
          },
          label,
        ),
      );
    }
  }
  row.append(actions);
  return row;
}

function membersTable(view, onAction) {
  const live = view.status === "live";
  const head = ["Member", "Role", "Status", "In call", "Hears", "Room", ""].map((t) => h("th", {}, t));
  const rows = view.members.map((m) => memberRow(m, live, onAction));
  const queued = view.queued.map((q) =>
    h("tr", { class: "queued" }, h("td", { class: "addr" }, q.address), h("td", {}, q.role), h("td", { colspan: 5 }, "queued")),
  );
  return h("table", { class: "members" }, h("thead", {}, h("tr", {}, head)), h("tbody", {}, rows, queued));
}

function timeline(events) {
  const items = [...events].reverse().map((event) => {
    const { label, subject, details } = describeEvent(event);
    return h(
      "li",
      { "data-event": event.event, "data-seq": event.sequence },
      h("time", {}, clockTime(event.at * 1000)),
      h("span", { class: `ev ev-${event.event}` }, label),
      h("span", { class: "subject" }, subject),
      details ? h("span", { class: "details" }, details) : null,
    );
  });
  return items.length ? h("ol", { class: "timeline" }, items) : h("p", { class: "muted" }, "no events yet");
}

function deliveriesTable(deliveries) {
  if (!deliveries.length) return h("p", { class: "muted" }, "none (no callback URL, or nothing sent yet)");
  const rows = deliveries.map((d) =>
    h(
      "tr",
      { "data-delivery": d.delivery_id, "data-status": d.status },
      h("td", {}, `#${d.sequence}`),
      h("td", {}, words(d.event || "")),
      h("td", {}, h("span", { class: `badge delivery-${d.status}` }, d.status)),
      h("td", {}, String(d.attempts)),
      h("td", { class: "muted" }, d.last_status_code ? `HTTP ${d.last_status_code}` : d.last_error || ""),
    ),
  );
  const head = ["Event", "", "Status", "Tries", "Last answer"].map((t) => h("th", {}, t));
  return h("table", { class: "deliveries" }, h("thead", {}, h("tr", {}, head)), h("tbody", {}, rows));
}

function mpcForm(onSubmit) {
  const form = h(
    "form",
    { class: "mpc-form", autocomplete: "off" },
    h(
      "select",
      { name: "action", "aria-label": "action" },
      h("option", { value: "call" }, "Call"),
      h("option", { value: "warm_transfer" }, "Warm transfer"),
      h("option", { value: "cold_transfer" }, "Cold transfer"),
    ),
    h("input", { name: "to", placeholder: "to, e.g. +14155550123", "aria-label": "to", size: 18 }),
    h("label", {}, "from ", h("select", { name: "trigger_source", "aria-label": "trigger source" })),
    h(
      "select",
      { name: "role", "aria-label": "role" },
      h("option", { value: "agent" }, "agent"),
      h("option", { value: "customer" }, "customer"),
    ),
    h("button", { type: "submit" }, "Send"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form).entries());
    onSubmit({ action: data.action, to: data.to.trim(), trigger_source: data.trigger_source, role: data.role });
  });
  return form;
}

// The conference recording: its state and the buttons that apply to it (the API's
// POST …/recording, on behalf of the first member on the line).
const RECORD_BUTTONS = {
  none: [["start", "Record"]],
  recording: [["pause", "Pause recording"], ["stop", "Stop recording"]],
  paused: [["resume", "Resume recording"], ["stop", "Stop recording"]],
};

function recordBar(view, onRecord) {
  const recording = view.recording;
  const state = recording && ["recording", "paused"].includes(recording.state) ? recording.state : "none";
  const label = state === "none" ? "not recording" : `${state} (${recording.format})`;
  const onLine = view.members.find((m) => m.status === "connected" || m.status === "on_hold");
  const buttons = view.status === "live" && onLine
    ? RECORD_BUTTONS[state].map(([action, text]) =>
        h("button", { type: "button", "data-record": action, onclick: () => onRecord(action, onLine.member_address) }, text),
      )
    : [];
  return h("div", { class: "record-bar", "data-recording": state }, h("span", { class: "badge rec" }, `● ${label}`), buttons);
}

function refreshTriggers(select, view) {
  const current = select.value;
  const choices = view.members.filter((m) => m.status !== "left").map((m) => m.member_address);
  select.replaceChildren(...choices.map((a) => h("option", { value: a }, a)));
  if (choices.includes(current)) select.value = current;
}

export class ConferenceCard {
  constructor(entry, handlers) {
    this.uuid = entry.mpc_uuid;
    this.stamp = -1;
    this.header = h("header", { class: "card-head" });
    this.picture = h("div", { class: "picture" });
    this.members = h("div", { class: "members-wrap" });
    this.feedback = h("p", { class: "feedback", role: "status", hidden: true });
    this.form = mpcForm((payload) => handlers.mpcAction(this.entry, payload));
    this.timeline = h("div", { class: "timeline-wrap" });
    this.deliveries = h("div", { class: "deliveries-wrap" });
    this.onAction = (address, action, label) => handlers.memberAction(this.entry, address, action, label);
    this.onRecord = (action, trigger) => handlers.recordingAction(this.entry, action, trigger);
    this.recording = h("div", { class: "record-wrap" });
    this.onDismiss = () => handlers.dismiss(this.uuid);
    const legend = h("p", { class: "legend" }, "→ hears   ♪ hears music   dashed: dialing or on hold");
    this.root = h(
      "article",
      { class: "conference", "data-mpc-uuid": entry.mpc_uuid },
      this.header,
      h(
        "div",
        { class: "card-body" },
        h(
          "section",
          { class: "left" },
          this.picture,
          legend,
          this.members,
          this.recording,
          this.feedback,
          this.form,
        ),
        h(
          "section",
          { class: "right" },
          h("h4", {}, "Timeline"),
          this.timeline,
          h("h4", {}, "Callbacks"),
          this.deliveries,
        ),
      ),
    );
    this.update(entry);
  }

  update(entry) {
    this.entry = entry;
    if (entry.stamp === this.stamp) return;
    this.stamp = entry.stamp;
    const view = entry.view;
    const live = view.status === "live";
    this.root.dataset.status = view.status;
    const started = parseTime(view.started_on);
    const head = [
      h("h3", {}, "Conference ", h("code", { title: view.mpc_uuid }, view.mpc_uuid.slice(0, 8))),
      h("span", { class: `badge conf-${view.status}` }, view.status),
      h("span", { class: "muted" }, `started ${started ? clockTime(started) : "?"}`),
    ];
    if (live) head.push(h("span", { class: "dur", "data-since": started }));
    else head.push(h("span", { class: "muted" }, `ended: ${words(view.end_reason || "")}`));
    const active = view.members.filter((m) => m.status !== "left").length;
    head.push(h("span", { class: "muted" }, `${active}/${view.max_participants} on the line`));
    if (view.phlo_run_id) head.push(h("span", { class: "muted" }, `run ${view.phlo_run_id.slice(0, 8)}`));
    if (!live) head.push(h("button", { type: "button", class: "dismiss", onclick: this.onDismiss }, "Dismiss"));
    this.header.replaceChildren(...head);
    this.picture.replaceChildren(audioPicture(view));
    this.members.replaceChildren(membersTable(view, this.onAction));
    this.recording.replaceChildren(recordBar(view, this.onRecord));
    this.form.hidden = !live;
    refreshTriggers(this.form.elements.trigger_source, view);
    this.timeline.replaceChildren(timeline(entry.events));
    this.deliveries.replaceChildren(deliveriesTable(entry.deliveries));
  }

  say(kind, text) {
    this.feedback.hidden = false;
    this.feedback.dataset.kind = kind;
    this.feedback.textContent = text;
  }
}
